#!/usr/bin/env python3
"""Cross-file checks of the deployment files that no single linter sees.

- Dockerfile: stages `cpu` and `cuda` exist and `cuda` is last (the default
  target); every runtime stage runs as a non-root user, exposes 8080 and has a
  HEALTHCHECK on /readyz; the compose file's build targets exist.
- .dockerignore: every file the crate reads at compile time
  (include_str!/include_bytes! in src/) is in the build context.
- docker-compose.yml: bind-mount sources exist in the repository; the GPU
  service reserves an nvidia device; the CPU service is in the `cpu` profile;
  the Prometheus targets are compose services on the port the image listens on.
- Grafana: the datasource uid that every panel and variable uses is the one
  provisioned; the datasource URL is the compose Prometheus; the dashboard
  provider reads the folder compose mounts; the home dashboard exists; panel
  ids are unique, panels do not overlap, every panel has a description and a
  unit; every metric of the service is on the dashboard.
- README.md: documents every metric, every `rsam serve` flag and RSAM_*
  variable (read from src/cli/args/serve.rs), and names `cargo test` as the test
  command that .ci/run runs.

Prints one line per check and "N passed, M failed"; exits 1 on any failure.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
METRICS = [
    "rsam_http_requests_total",
    "rsam_http_request_duration_seconds",
    "rsam_stage_duration_seconds",
    "rsam_feature_cache_hits_total",
    "rsam_feature_cache_misses_total",
    "rsam_feature_cache_evictions_total",
    "rsam_feature_cache_bytes",
    "rsam_feature_cache_entries",
    "rsam_queue_depth",
    "rsam_inflight_requests",
    "rsam_batch_size",
    "rsam_model_info",
    "rsam_window_searches_total",
    "rsam_windows_encoded_total",
    "rsam_windows_per_search",
]
STAGES = ["image_decode", "encode", "text", "decode", "postprocess"]

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> bool:
    results.append((bool(ok), what))
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return bool(ok)


def default_of(value: str) -> str:
    """`${VAR:-default}` -> default (compose interpolation with no env)."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


# ---------------------------------------------------------------------------
# Dockerfile and .dockerignore
# ---------------------------------------------------------------------------


def dockerfile_stages() -> list[dict]:
    stages = []
    cur = None
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            cur = {"base": m.group(1), "name": (m.group(2) or "").lower(), "lines": []}
            stages.append(cur)
        elif cur is not None:
            cur["lines"].append((word, rest))
    return stages


def check_dockerfile() -> None:
    print("Dockerfile", flush=True)
    stages = dockerfile_stages()
    names = [s["name"] for s in stages]
    check("cpu" in names and "cuda" in names, f"named stages cpu and cuda exist ({', '.join(names)})")
    check(names[-1:] == ["cuda"], "cuda is the last stage, so the default target")
    for s in stages:
        if s["name"] not in ("cpu", "cuda"):
            continue
        lines = s["lines"]
        users = [r for w, r in lines if w == "USER"]
        check(users and users[-1].split(":")[0] not in ("0", "root"),
              f"{s['name']}: runs as a non-root user ({users[-1] if users else 'no USER'})")
        check(any(w == "EXPOSE" and "8080" in r.split() for w, r in lines), f"{s['name']}: EXPOSE 8080")
        hc = [r for w, r in lines if w == "HEALTHCHECK"]
        check(hc and "/readyz" in hc[0] and "curl" in hc[0], f"{s['name']}: HEALTHCHECK curls /readyz")
        env = " ".join(r for w, r in lines if w == "ENV")
        check("RSAM_ADDR=0.0.0.0:8080" in env and "RSAM_MODEL=/models/rsam" in env,
              f"{s['name']}: listens on 0.0.0.0:8080, model from /models/rsam")
        check(any(w == "ENTRYPOINT" and '"rsam"' in r for w, r in lines), f"{s['name']}: ENTRYPOINT rsam")
    cuda_builder = next((s for s in stages if s["name"] == "cuda-builder"), None)
    check(cuda_builder and any("--features cuda" in r for w, r in cuda_builder["lines"] if w == "RUN"),
          "cuda-builder builds with --features cuda")
    check(cuda_builder and any(w == "ARG" and r.startswith("CUDA_COMPUTE_CAP=90") for w, r in cuda_builder["lines"]),
          "CUDA_COMPUTE_CAP build argument defaults to 90")
    check(any("cargo chef cook" in r for s in stages for w, r in s["lines"]),
          "dependencies are cooked in their own layer (cargo-chef)")

    print(".dockerignore", flush=True)
    rules = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.strip().startswith("#")]
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    check(rules[:1] == ["*"], ".dockerignore lets in only what it names")
    for needed in ("Cargo.toml", "Cargo.lock", "src"):
        check(needed in allowed, f"{needed} is in the build context")
    included = set()
    for src in (ROOT / "src").rglob("*.rs"):
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', src.read_text()):
            included.add((src.parent / m.group(1)).resolve().relative_to(ROOT).as_posix())
    for path in sorted(included):
        ok = any(path == a or path.startswith(a + "/") for a in allowed)
        check(ok and (ROOT / path).exists(), f"compile-time include {path} is in the build context")
    manifest = (ROOT / "Cargo.toml").read_text()
    check(not re.search(r"^\s*build\s*=", manifest, re.M) and not (ROOT / "build.rs").exists()
          or "build.rs" in allowed, "no build script outside the build context")


# ---------------------------------------------------------------------------
# docker-compose.yml and Prometheus
# ---------------------------------------------------------------------------


def check_compose() -> dict:
    print("docker-compose.yml", flush=True)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    stage_names = {s["name"] for s in dockerfile_stages()}
    for name, svc in services.items():
        build = svc.get("build")
        if isinstance(build, dict) and build.get("target"):
            check(build["target"] in stage_names, f"{name}: build target {build['target']} is a Dockerfile stage")
        for vol in svc.get("volumes", []):
            if isinstance(vol, dict) and vol.get("type") == "bind":
                source = default_of(vol["source"])
                check((ROOT / source).exists(), f"{name}: bind source {source} exists")
    rsam = services.get("rsam", {})
    devices = rsam.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    check(any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices),
          "rsam reserves an nvidia GPU")
    check(rsam.get("build", {}).get("target") == "cuda", "rsam runs the cuda image")
    cpu = services.get("rsam-cpu", {})
    check(cpu.get("profiles") == ["cpu"] and cpu.get("build", {}).get("target") == "cpu",
          "rsam-cpu runs the cpu image in the cpu profile")
    for name in ("rsam", "rsam-cpu"):
        vols = [v for v in services.get(name, {}).get("volumes", []) if isinstance(v, dict)]
        check(any(v.get("target") == "/models/rsam" and v.get("read_only") for v in vols),
              f"{name}: the model directory is mounted read-only at /models/rsam")

    print("deploy/prometheus/prometheus.yml", flush=True)
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    check("rsam" in jobs, "a scrape job named rsam (the dashboard's up{job=\"rsam\"})")
    targets = [t for sc in jobs.get("rsam", {}).get("static_configs", []) for t in sc.get("targets", [])]
    for t in targets:
        host, _, port = t.partition(":")
        check(host in services and port == "8080", f"target {t} is a compose service on the image's port 8080")
    check({"rsam:8080", "rsam-cpu:8080"} <= set(targets), "both rsam and rsam-cpu are scraped")
    return compose


# ---------------------------------------------------------------------------
# Grafana
# ---------------------------------------------------------------------------


def mount_target(compose: dict, service: str, source: str) -> str | None:
    for v in compose["services"][service].get("volumes", []):
        if isinstance(v, dict) and v.get("type") == "bind" and v["source"].rstrip("/") == source:
            return v["target"]
    return None


def check_grafana(compose: dict) -> None:
    print("Grafana provisioning and dashboard", flush=True)
    ds_file = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    datasources = ds_file["datasources"]
    prom_ds = [d for d in datasources if d["type"] == "prometheus"]
    check(len(prom_ds) == 1 and prom_ds[0].get("uid"), "one Prometheus datasource with a fixed uid")
    uid = prom_ds[0]["uid"]
    url = prom_ds[0].get("url", "")
    check(url == "http://prometheus:9090" and "prometheus" in compose["services"],
          f"datasource URL {url} is the compose prometheus service")
    check(mount_target(compose, "grafana", "./deploy/grafana/provisioning/datasources")
          == "/etc/grafana/provisioning/datasources", "datasources provisioning is mounted")
    check(mount_target(compose, "grafana", "./deploy/grafana/provisioning/dashboards")
          == "/etc/grafana/provisioning/dashboards", "dashboards provisioning is mounted")
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/rsam.yml").read_text())["providers"]
    dash_mount = mount_target(compose, "grafana", "./deploy/grafana/dashboards")
    check(dash_mount and any(p["options"]["path"] == dash_mount for p in providers),
          f"the dashboard provider reads {dash_mount}, where compose mounts deploy/grafana/dashboards")
    home = compose["services"]["grafana"].get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    check(dash_mount and home.startswith(dash_mount + "/")
          and (ROOT / "deploy/grafana/dashboards" / home[len(dash_mount) + 1:]).exists(),
          f"the home dashboard {home} is in the repository")
    env = compose["services"]["grafana"].get("environment", {})
    check(str(env.get("GF_AUTH_ANONYMOUS_ENABLED")).lower() == "true"
          and env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer", "anonymous viewer access")

    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/rsam.json").read_text())
    check(bool(dashboard.get("uid")) and dashboard.get("id") is None,
          "the dashboard has a fixed uid and no instance-specific id")
    panels = []

    def walk(ps):
        for p in ps:
            panels.append(p)
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    ids = [p["id"] for p in panels]
    check(len(ids) == len(set(ids)), "panel ids are unique")
    refs = []
    exprs = []
    for p in panels:
        if p["type"] == "row":
            continue
        refs.append((p["title"], p.get("datasource")))
        for t in p.get("targets", []):
            refs.append((f"{p['title']} {t.get('refId')}", t.get("datasource")))
            exprs.append(t.get("expr", ""))
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        unit = defaults.get("unit") or p.get("options", {}).get("yAxis", {}).get("unit")
        check(bool(p.get("description")), f"panel '{p['title']}' has a description")
        if p["type"] != "table":
            check(bool(unit), f"panel '{p['title']}' has a unit ({unit})")
        if p["type"] in ("stat", "timeseries", "bargauge"):
            check(bool(defaults.get("thresholds", {}).get("steps")), f"panel '{p['title']}' has thresholds")
        if p["type"] == "timeseries":
            legend = p.get("options", {}).get("legend", {})
            check(legend.get("showLegend") and all(t.get("legendFormat") for t in p["targets"]),
                  f"panel '{p['title']}' shows a legend with named series")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            refs.append((f"variable ${var['name']}", var.get("datasource")))
    bad = [(w, d) for w, d in refs if not (isinstance(d, dict) and d.get("uid") == uid and d.get("type") == "prometheus")]
    check(not bad, f"every panel, query and variable uses datasource uid {uid}" + (f": not {bad[:3]}" if bad else ""))
    # No overlapping panels on the grid.
    cells = {}
    overlap = []
    for p in panels:
        g = p.get("gridPos")
        if not g:
            continue
        for yy in range(g["y"], g["y"] + g["h"]):
            for xx in range(g["x"], g["x"] + g["w"]):
                if (xx, yy) in cells:
                    overlap.append((cells[(xx, yy)], p["title"]))
                cells[(xx, yy)] = p["title"]
    check(not overlap and all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels),
          "panels fit the 24-column grid without overlapping" + (f": {overlap[:2]}" if overlap else ""))
    text = "\n".join(exprs)
    for metric in METRICS:
        check(re.search(rf"\b{metric}(_bucket|_sum|_count)?\b", text) is not None, f"the dashboard shows {metric}")
    check(all(re.search(r"by \((?:route|route, le|le, route)\)", e) for e in exprs
              if "rsam_http_request_duration_seconds_bucket" in e and "route=\"/v1/segment\"" not in e),
          "request latency quantiles are per route")
    for q in ("0.5", "0.95", "0.99"):
        check(f"histogram_quantile({q}, sum by (route, le) (rate(rsam_http_request_duration_seconds_bucket" in text,
              f"request latency p{q[2:].ljust(2, '0')} per route")
    check("sum by (route, status)" in text, "request rate by route and status")


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------


def check_readme() -> None:
    print("README.md", flush=True)
    readme = (ROOT / "README.md").read_text()
    for metric in METRICS:
        check(metric in readme, f"README documents {metric}")
    for stage in STAGES:
        check(f"`{stage}`" in readme, f"README names the stage {stage}")
    cli = (ROOT / "src/cli/args/serve.rs").read_text()
    args = re.findall(r"pub (\w+): [^,]+,", cli.split("pub struct ServeArgs", 1)[1].split("\n}\n", 1)[0])
    envs = re.findall(r'env = "(RSAM_\w+)"', cli)
    check(len(args) >= 10 and len(envs) >= 10, f"src/cli/args/serve.rs: {len(args)} serve flags, {len(envs)} RSAM_* variables")
    for a in args:
        flag = "--" + a.replace("_", "-")
        check(f"`{flag}" in readme, f"README documents serve {flag}")
    for e in envs:
        check(e in readme, f"README documents {e}")
    head = readme[:2500]
    check(re.search(r"^cargo run --release -- serve$", head, re.M) is not None,
          "README starts with the command that serves the bundled demo model (no --model)")
    run = (ROOT / ".ci/run").read_text()
    check(re.search(r"^cargo test$", run, re.M) is not None and "\ncargo test\n" in head,
          "the README's test command is the one .ci/run runs (cargo test)")


def main() -> int:
    check_dockerfile()
    compose = check_compose()
    check_grafana(compose)
    check_readme()
    failed = [w for ok, w in results if not ok]
    print(f"deploy-consistency: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    for w in failed:
        print(f"  FAILED: {w}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
