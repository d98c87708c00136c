#!/usr/bin/env python3
"""Cross-file checks of the Kubernetes deployment that no schema or linter sees.

Reads the overlays as `kubectl kustomize` rendered them (arguments) and checks
them against the server's sources, the Dockerfile, the plain-nginx test
configuration and each other:

- Deployment: probe paths are routes the server serves (readiness and startup
  /readyz, liveness /healthz) on the port it listens on (RSAM_ADDR, the
  Dockerfile's EXPOSE, the Service, the scrape annotations); every RSAM_*
  variable is one the server reads; the model volume is read-only at
  RSAM_MODEL; the grace period covers the preStop pause plus the request
  timeout; the uid is the Dockerfile's; the image tag is a Dockerfile stage
  that matches the overlay's device (GPU request only in the gpu overlay).
- Ingress: hashes on X-Rsam-Image-Id, and its retry, body-size and timeout
  annotations are those of deploy/lb/nginx.conf.template (what
  deploy/lb/run-lb-test.sh measures); the timeouts and body size sit above
  rsam's own so rsam answers 504 / 413 itself.
- HPA, Prometheus adapter: the HPA scales the Deployment on the metric the
  adapter rule serves, which the server exports; the rule's query, its
  template filled in, is valid PromQL (`promtool check rules`).
- PDB, NetworkPolicy, Service select the Deployment's pods.
- README.md tells how to deploy and sends the header in the batch example.

Prints one line per check and "N passed, M failed"; exits 1 on any failure.

Usage: k8s_consistency.py --promtool promtool gpu.yaml cpu.yaml monitoring.yaml
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
HEADER_VAR = "$http_x_rsam_image_id"

results: list[tuple[bool, str]] = []


def check(ok, what: str) -> bool:
    results.append((bool(ok), what))
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    return bool(ok)


def sources() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "src").rglob("*.rs")))


def objects(path: Path) -> dict[str, dict]:
    """kind -> object (one of each kind per rendered overlay)."""
    out = {}
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            out[doc["kind"]] = doc
    return out


def nginx_directives(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*(\w+)\s+([^;#]*);", line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s?)", value.strip())
    if not m:
        raise ValueError(f"not a duration in seconds: {value!r}")
    return float(m.group(1))


def dockerfile() -> tuple[set[str], str, str]:
    text = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I))
    users = re.findall(r"^USER\s+(\d+)", text, re.M)
    addr = re.findall(r"RSAM_ADDR=(\S+)", text)
    return stages, (users[-1] if users else ""), (addr[-1] if addr else "")


def check_overlay(name: str, objs: dict, src: str) -> tuple[dict, dict]:
    print(f"overlay {name}", flush=True)
    dep = objs.get("Deployment")
    if not check(dep is not None, "renders a Deployment"):
        return {}, {}
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the Deployment selects its own pods")
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}

    routes = set(re.findall(r'Method::GET,\s*"(/[^"]*)"', src))
    probes = {kind: c.get(kind, {}).get("httpGet", {}) for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    want = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for kind, path in want.items():
        got = probes[kind]
        check(got.get("path") == path and path in routes and got.get("port") in ("http", ports.get("http")),
              f"{kind}: GET {got.get('path')} on port {got.get('port')} (a server route: {got.get('path') in routes})")

    _, docker_uid, docker_addr = dockerfile()
    port = ports.get("http")
    check(env.get("RSAM_ADDR", "").endswith(f":{port}") and docker_addr.endswith(f":{port}"),
          f"container port http {port} = RSAM_ADDR {env.get('RSAM_ADDR')} = the Dockerfile's {docker_addr}")
    check(re.search(rf"^EXPOSE\s+{port}\b", (ROOT / "Dockerfile").read_text(), re.M) is not None,
          f"the Dockerfile exposes {port}")
    known = set(re.findall(r'env = "(RSAM_\w+)"', src))
    check(len(known) >= 10, f"the server reads {len(known)} RSAM_* variables")
    for var in sorted(env):
        check(var in known, f"{var} is a variable the server reads")
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true" and annotations.get("prometheus.io/port") == str(port)
          and annotations.get("prometheus.io/path") == "/metrics" and "/metrics" in routes,
          "scrape annotations: /metrics on the container port")

    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    model = next((m for m in mounts.values() if m["mountPath"] == env.get("RSAM_MODEL")), None)
    claim = volumes.get(model["name"], {}).get("persistentVolumeClaim") if model else None
    check(model and model.get("readOnly") and claim and claim.get("readOnly")
          and objs.get("PersistentVolumeClaim", {}).get("metadata", {}).get("name") == claim.get("claimName"),
          f"the model volume is the PVC {claim and claim.get('claimName')}, mounted read-only at RSAM_MODEL")
    tmp = mounts.get("tmp")
    check(tmp and tmp["mountPath"] == "/tmp" and "emptyDir" in volumes.get("tmp", {}), "a writable emptyDir at /tmp")

    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and sc.get("capabilities", {}).get("drop") == ["ALL"] and psc.get("runAsNonRoot") is True
          and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          "non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp")
    check(str(psc.get("runAsUser")) == docker_uid and str(sc.get("runAsUser")) == docker_uid,
          f"runs as uid {psc.get('runAsUser')}, the Dockerfile's USER {docker_uid}")

    pre_stop = c.get("lifecycle", {}).get("preStop", {})
    pause = (float(pre_stop["exec"]["command"][1]) if pre_stop.get("exec", {}).get("command", [""])[0] == "sleep"
             else float(pre_stop.get("sleep", {}).get("seconds", 0)))
    timeout = float(env.get("RSAM_REQUEST_TIMEOUT_S") or 0)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(pause > 0 and timeout > 0 and grace > pause + timeout,
          f"grace period {grace} s > preStop {pause:.0f} s + RSAM_REQUEST_TIMEOUT_S {timeout:.0f} s")

    stages, _, _ = dockerfile()
    image, _, tag = c["image"].rpartition(":")
    gpu = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    want_tag, want_device = ("cuda", "cuda") if name == "gpu" else ("cpu", "cpu")
    check(tag == want_tag and tag in stages, f"image {c['image']}: the Dockerfile's {want_tag} stage")
    check(env.get("RSAM_DEVICE", "").startswith(want_device), f"RSAM_DEVICE {env.get('RSAM_DEVICE')}")
    check((str(gpu) == "1") == (name == "gpu"), f"nvidia.com/gpu limit {gpu}")
    res = c.get("resources", {})
    check(all(k in res.get(kind, {}) for kind in ("requests", "limits") for k in ("cpu", "memory")),
          "cpu and memory requests and limits")

    svc = objs.get("Service", {})
    svc_port = next((p for p in svc.get("spec", {}).get("ports", []) if p.get("name") == "http"), {})
    check(svc.get("spec", {}).get("selector", {}).items() <= labels.items()
          and svc_port.get("targetPort") in ("http", port) and svc_port.get("port") == port,
          f"Service {svc.get('metadata', {}).get('name')} selects the pods, port {svc_port.get('port')} -> http")
    pdb = objs.get("PodDisruptionBudget", {})
    hpa = objs.get("HorizontalPodAutoscaler", {})
    check(pdb.get("spec", {}).get("selector", {}).get("matchLabels", {}).items() <= labels.items()
          and pdb["spec"].get("maxUnavailable", 99) < hpa.get("spec", {}).get("minReplicas", 0),
          "the PodDisruptionBudget selects the pods and leaves at least one of minReplicas")
    netpol = objs.get("NetworkPolicy", {})
    rule_ports = [p.get("port") for rule in netpol.get("spec", {}).get("ingress", []) for p in rule.get("ports", [])]
    check(netpol.get("spec", {}).get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
          and rule_ports and all(p in ("http", port) for p in rule_ports),
          "the NetworkPolicy selects the pods and opens only the http port")
    return dep, env


def check_ingress(objs: dict, env: dict) -> None:
    print("Ingress and deploy/lb/nginx.conf.template", flush=True)
    ing = objs.get("Ingress", {})
    ann = ing.get("metadata", {}).get("annotations", {})
    a = lambda key: ann.get(f"nginx.ingress.kubernetes.io/{key}", "")  # noqa: E731
    template = (ROOT / "deploy/lb/nginx.conf.template").read_text()
    nginx = nginx_directives(template)
    check(a("upstream-hash-by") == HEADER_VAR, f"upstream-hash-by {a('upstream-hash-by')!r} is {HEADER_VAR}")
    check(nginx.get("hash") == f"{HEADER_VAR} consistent", f"the template hashes: hash {nginx.get('hash')}")
    check(a("service-upstream") in ("", "false"), "routes to pod endpoints (service-upstream off)")
    check(a("proxy-next-upstream") == nginx.get("proxy_next_upstream"),
          f"proxy-next-upstream {a('proxy-next-upstream')!r} = the template's")
    check({"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(a("proxy-next-upstream").split()),
          "retries errors, timeouts, 502 and 503, POSTs included (non_idempotent)")
    check(a("proxy-next-upstream-tries") == nginx.get("proxy_next_upstream_tries"), "the same number of tries")
    check(a("proxy-request-buffering") == nginx.get("proxy_request_buffering") == "on",
          "request bodies are buffered (a retry resends them)")
    check(a("proxy-body-size") == nginx.get("client_max_body_size"),
          f"body size {a('proxy-body-size')} = the template's")
    body_mib = int(re.fullmatch(r"(\d+)m", a("proxy-body-size") or "0m").group(1))
    check(body_mib > int(env.get("RSAM_MAX_BODY_MIB") or 10**9),
          f"body size {body_mib} MiB > RSAM_MAX_BODY_MIB {env.get('RSAM_MAX_BODY_MIB')} (rsam answers 413)")
    for key, directive in (("proxy-connect-timeout", "proxy_connect_timeout"),
                           ("proxy-send-timeout", "proxy_send_timeout"),
                           ("proxy-read-timeout", "proxy_read_timeout")):
        check(a(key) and seconds(a(key)) == seconds(nginx.get(directive, "-1")),
              f"{key} {a(key)} s = the template's {directive} {nginx.get(directive)}")
    check(seconds(a("proxy-read-timeout") or "0") > float(env.get("RSAM_REQUEST_TIMEOUT_S") or 10**9),
          "read timeout > RSAM_REQUEST_TIMEOUT_S (rsam answers 504)")
    backends = [p["backend"]["service"] for r in ing.get("spec", {}).get("rules", [])
                for p in r.get("http", {}).get("paths", [])]
    paths = [p["path"] for r in ing.get("spec", {}).get("rules", []) for p in r.get("http", {}).get("paths", [])]
    svc = objs.get("Service", {}).get("metadata", {}).get("name")
    check(backends and all(b["name"] == svc and b["port"].get("name") == "http" for b in backends),
          f"every path goes to Service {svc} port http")
    check("/metrics" not in paths and "/v1" in paths, f"exposes {paths}, not /metrics")


def check_autoscaling(objs: dict, monitoring: dict, src: str, promtool: str) -> None:
    print("HorizontalPodAutoscaler and the Prometheus adapter rule", flush=True)
    hpa = objs.get("HorizontalPodAutoscaler", {}).get("spec", {})
    target = hpa.get("scaleTargetRef", {})
    check(target.get("kind") == "Deployment" and target.get("name") == objs["Deployment"]["metadata"]["name"],
          "the HPA scales the Deployment")
    metrics = [m["pods"]["metric"]["name"] for m in hpa.get("metrics", []) if m.get("type") == "Pods"]
    config = yaml.safe_load(monitoring.get("ConfigMap", {}).get("data", {}).get("config.yaml", "{}")) or {}
    rules = config.get("rules", [])
    served = {r.get("name", {}).get("as") for r in rules}
    check(metrics == ["rsam_queue_depth"] and set(metrics) <= served,
          f"the HPA's pods metric {metrics} is served by the adapter rule ({sorted(served)})")
    check(re.search(r'"rsam_queue_depth"', src) is not None, "the server exports rsam_queue_depth")
    scrape = yaml.safe_load((ROOT / "deploy/k8s/monitoring/prometheus-scrape.yml").read_text())
    relabels = [r for job in scrape["scrape_configs"] for r in job.get("relabel_configs", [])]
    labelled = {r.get("target_label") for r in relabels}
    for rule in rules:
        overrides = rule.get("resources", {}).get("overrides", {})
        check({"namespace", "pod"} <= set(overrides) and {"namespace", "pod"} <= labelled,
              "the rule maps the namespace and pod labels that the scrape job sets")
        # The adapter fills in these three fields for one pod's query.
        query = (rule["metricsQuery"].replace("<<.Series>>", rule["name"]["as"])
                 .replace("<<.LabelMatchers>>", 'namespace="rsam",pod=~"rsam-.*"')
                 .replace("<<.GroupBy>>", "pod"))
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump({"groups": [{"name": "adapter", "rules": [{"record": "adapter:query", "expr": query}]}]}, f)
            f.flush()
            run = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        check(run.returncode == 0, f"promtool check rules accepts the adapter query: {query}"
              + ("" if run.returncode == 0 else f"\n{run.stdout}{run.stderr}"))


def check_readme() -> None:
    print("README.md", flush=True)
    readme = (ROOT / "README.md").read_text()
    for overlay in ("gpu", "cpu"):
        check(f"kubectl apply -k deploy/k8s/overlays/{overlay}" in readme, f"README deploys the {overlay} overlay")
    batch = re.search(r"xargs[^`]*?```", readme, re.S)
    # Inside the example's `sh -c '...'`, cut's delimiter must not be in single quotes.
    check(batch and '-H "X-Rsam-Image-Id: $(sha256sum "$1" | cut -d" " -f1)"' in batch.group(0),
          "the README's batch example sends X-Rsam-Image-Id")
    check("deploy/lb/run-lb-test.sh" in readme, "README names the load-balancer test")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("gpu", type=Path)
    ap.add_argument("cpu", type=Path)
    ap.add_argument("monitoring", type=Path)
    args = ap.parse_args()
    src = sources()
    rendered = {"gpu": objects(args.gpu), "cpu": objects(args.cpu)}
    monitoring = objects(args.monitoring)
    for name, objs in rendered.items():
        _, env = check_overlay(name, objs, src)
        check_ingress(objs, env)
        check_autoscaling(objs, monitoring, src, args.promtool)
    check_readme()
    failed = [w for ok, w in results if not ok]
    print(f"k8s-consistency: {len(results) - len(failed)} passed, {len(failed)} failed", flush=True)
    for w in failed:
        print(f"  FAILED: {w}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
