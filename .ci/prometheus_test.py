#!/usr/bin/env python3
"""Real-component test of the monitoring stack.

Starts `rsam serve` on the tiny fixture model and a real Prometheus (Debian's
package) scraping it every second with the repository's own scrape config
(deploy/prometheus/prometheus.yml, only the target and intervals rewritten),
sends a bounded mix of traffic (cache misses and hits, image_id reuse, a
multipart PNG answer, a multi-query batch, concurrent requests, a refine
chain, evictions, 4xx errors), waits for the scrapes, then evaluates EVERY
PromQL expression of the Grafana dashboard through Prometheus' HTTP API. A
query that returns no finite sample fails the test. Also runs
`promtool check metrics` on a /metrics scrape and checks that the service
exports exactly the metric families the dashboard is built on.

Everything listens on 127.0.0.1; every wait is bounded; both processes are
stopped on exit, whatever happens.

Usage: prometheus_test.py --rsam target/debug/rsam [--model tests/fixtures/rsam-tiny]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The metric families the service exports and the dashboard is built on
# (README.md#metrics, openapi.yaml, src/server/metrics.rs): name -> (type, labels).
CONTRACT = {
    "rsam_http_requests_total": ("counter", {"route", "status"}),
    "rsam_http_request_duration_seconds": ("histogram", {"route"}),
    "rsam_stage_duration_seconds": ("histogram", {"stage"}),
    "rsam_feature_cache_hits_total": ("counter", set()),
    "rsam_feature_cache_misses_total": ("counter", set()),
    "rsam_feature_cache_evictions_total": ("counter", set()),
    "rsam_feature_cache_bytes": ("gauge", set()),
    "rsam_feature_cache_entries": ("gauge", set()),
    "rsam_queue_depth": ("gauge", set()),
    "rsam_inflight_requests": ("gauge", set()),
    "rsam_batch_size": ("histogram", set()),
    "rsam_model_info": ("gauge", {"model", "kind", "device", "dtype"}),
    "rsam_window_searches_total": ("counter", set()),
    "rsam_windows_encoded_total": ("counter", set()),
    "rsam_windows_per_search": ("histogram", set()),
}
STAGES = {"image_decode", "encode", "text", "decode", "postprocess"}

# Grafana's built-in variables, as the test substitutes them. The traffic
# phase takes well under a minute, so 1m windows see all of it.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "10m",
}

PROCS: list[subprocess.Popen] = []
WORKDIR: list[Path] = []


def log(msg: str) -> None:
    print(f"[prometheus-test] {msg}", flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    log("start: " + " ".join(cmd))
    out = open(logfile, "wb")
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    PROCS.append(proc)
    return proc


def stop_all() -> None:
    """Stops the processes this test started (by their own pid), bounded."""
    for proc in reversed(PROCS):
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in reversed(PROCS):
        if proc.poll() is None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    PROCS.clear()
    for d in WORKDIR:
        shutil.rmtree(d, ignore_errors=True)
    WORKDIR.clear()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def wait_until(what: str, check, timeout: float, interval: float = 0.25, procs=()):
    """Polls `check()` until it returns a truthy value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise Failure(f"{what}: process {p.args[0]} exited with {p.returncode}")
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_err = e
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_err})" if last_err else ""))


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post_json(url: str, payload) -> tuple[int, dict]:
    status, _, body = http("POST", url, json.dumps(payload).encode(), {"content-type": "application/json"})
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        raise Failure(f"POST {url}: status {status}, body is not JSON: {body[:200]!r}")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data, ctype) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def png(width: int, height: int, seed: int) -> bytes:
    """A small RGB PNG of deterministic noise (distinct bytes per seed)."""
    rows = bytearray()
    state = seed * 2654435761 % 2**32 or 1
    for _ in range(height):
        rows.append(0)
        for _ in range(width * 3):
            state = (state * 1103515245 + 12345) % 2**31
            rows.append(state >> 23)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------
# Traffic
# ---------------------------------------------------------------------------


class Traffic:
    def __init__(self, base: str, images: Path):
        self.base = base
        self.images = images
        self.sent: dict[tuple[str, int], int] = {}
        self.lock = threading.Lock()

    def count(self, route: str, status: int) -> None:
        with self.lock:
            self.sent[(route, status)] = self.sent.get((route, status), 0) + 1

    def expect(self, route: str, status: int, got: int, what: str, body=b"") -> None:
        self.count(route, got)
        if got != status:
            raise Failure(f"{what}: expected HTTP {status}, got {got}: {body!r:.300}")

    def segment(self, payload: dict, status: int = 200, what: str = "segment") -> dict:
        got, body = post_json(self.base + "/v1/segment", payload)
        self.expect("/v1/segment", status, got, what, body)
        return body

    def run(self) -> None:
        b64 = lambda p: base64.b64encode(p).decode()  # noqa: E731
        square = (self.images / "square.png").read_bytes()
        wide = (self.images / "wide.png").read_bytes()
        tall = (self.images / "tall.jpg").read_bytes()

        for path in ("/healthz", "/readyz", "/v1/model", "/openapi.yaml"):
            got, _, body = http("GET", self.base + path)
            self.expect(path, 200, got, f"GET {path}", body)

        # Evictions first (the server runs with --cache-mib 1: about 32
        # tiny-model entries): 40 distinct small images, each a miss.
        for seed in range(40):
            got, body = post_json(self.base + "/v1/images", {"image": b64(png(48, 40, seed + 1))})
            self.expect("/v1/images", 200, got, "warm a generated image", body)

        # Warm, then reuse by image_id (hits).
        got, warmed = post_json(self.base + "/v1/images", {"image": b64(square)})
        self.expect("/v1/images", 200, got, "warm square.png", warmed)
        image_id = warmed["image_id"]
        for text in ("the ship at the pier", "the large building", "a road"):
            r = self.segment({"image_id": image_id, "text": text, "outputs": ["rle"]}, what="segment by image_id")
            if not r.get("results") or "result_id" not in r["results"][0]:
                raise Failure(f"segment response without results[0].result_id: {r}")

        # A new image with text, points and a box (miss), then again (hit).
        wide_req = {"image": b64(wide), "text": "the airplane", "points": [[40, 30, 1]], "box": [10, 10, 120, 60],
                    "outputs": ["rle", "polygons"]}
        first = self.segment(wide_req, what="segment wide.png")
        self.segment(wide_req, what="segment wide.png again")

        # A windowed search over wide.png in 64 px windows: its windows are
        # encoded in pass 1 and come from the cache in pass 2.
        windowed = self.segment({"image": b64(wide), "text": "the airplane", "window": {"size": 64, "overlap": 16}},
                                what="windowed segment wide.png")
        if not windowed.get("window", {}).get("windows"):
            raise Failure(f"windowed segment response without window.windows: {windowed}")

        # Multipart with a JPEG, the mask as a PNG.
        body, ctype = multipart({"text": "the storage tank"}, {"image": ("tall.jpg", tall, "image/jpeg")})
        got, headers, data = http("POST", self.base + "/v1/segment", body, {"content-type": ctype, "accept": "image/png"})
        self.expect("/v1/segment", 200, got, "multipart segment with Accept: image/png", data)
        if not data.startswith(b"\x89PNG"):
            raise Failure("Accept: image/png did not answer a PNG")

        # Several queries in one request: one decode batch of 4.
        self.segment({"image_id": image_id, "queries": [
            {"text": "the ship"}, {"text": "the harbour"}, {"points": [[64, 64, 1]]}, {"box": [8, 8, 100, 90]},
        ]}, what="segment with queries")

        # Concurrent requests on one image (batched across requests).
        errors: list[str] = []

        def worker(i: int) -> None:
            try:
                self.segment({"image_id": image_id, "text": f"object number {i}"}, what="concurrent segment")
            except Exception as e:  # noqa: BLE001
                errors.append(str(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors or any(t.is_alive() for t in threads):
            raise Failure(f"concurrent segments failed: {errors[:3]}")

        # A refine chain.
        result_id = first["results"][0]["result_id"]
        for click in ([20, 20, 1], [100, 50, 0], [60, 40, 1]):
            got, refined = post_json(self.base + "/v1/refine", {"result_id": result_id, "points": [click]})
            self.expect("/v1/refine", 200, got, "refine", refined)
            result_id = refined["results"][0]["result_id"]

        # Client errors.
        self.segment({"image_id": image_id, "points": [[5000, 5, 1]]}, 422, "a point outside the image")
        self.segment({"image_id": "0" * 64, "text": "x"}, 404, "an unknown image_id")
        got, body = post_json(self.base + "/v1/refine", {"result_id": "nope", "points": [[1, 1, 1]]})
        self.expect("/v1/refine", 404, got, "an unknown result_id", body)
        got, _, body = http("POST", self.base + "/v1/segment", b"{not json", {"content-type": "application/json"})
        self.expect("/v1/segment", 400, got, "malformed JSON", body)
        error = json.loads(body).get("error", {})
        if not error.get("code") or not error.get("message"):
            raise Failure(f"error body is not {{'error': {{'code', 'message'}}}}: {body!r}")
        got, _, body = http("GET", self.base + "/no/such/route")
        self.expect("unmatched", 404, got, "an unknown route", body)
        got, _, body = http("GET", self.base + "/v1/segment")
        self.expect("/v1/segment", 405, got, "a wrong method", body)


# ---------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------


def prom_query(base: str, expr: str) -> list:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, _, body = http("GET", url, timeout=15)
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise Failure(f"query failed (HTTP {status}): {expr}\n  {data.get('errorType')}: {data.get('error')}")
    result = data["data"]
    if result["resultType"] == "scalar":
        return [{"metric": {}, "value": result["result"]}]
    if result["resultType"] != "vector":
        raise Failure(f"unexpected result type {result['resultType']} for {expr}")
    return result["result"]


def finite(sample) -> bool:
    try:
        return math.isfinite(float(sample["value"][1]))
    except (KeyError, ValueError, TypeError):
        return False


def scalar(base: str, expr: str) -> float:
    result = prom_query(base, expr)
    if not result:
        raise Failure(f"no data for {expr}")
    return float(result[0]["value"][1])


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel, rows included."""
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"{p.get('title', '?')} [{t.get('refId', '?')}]", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def _label(metric: dict) -> str:
    shown = {k: v for k, v in metric.items() if k not in ("__name__", "instance", "job")}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or "{}"


def substitute(expr: str, variables: dict[str, str]) -> str:
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise Failure(f"unknown Grafana variable ${name} in: {expr}")
        return variables[name]

    # ${name}, ${name:format} and $name
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def parse_exposition(text: str) -> dict[str, dict]:
    """Metric families of a text exposition: name -> {type, labels}."""
    families: dict[str, dict] = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families[m.group(1)] = {"type": m.group(2), "labels": set()}
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if not m:
            continue
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fam = families.get(name) or families.get(base)
        if fam is not None and m.group(3):
            fam["labels"] |= {kv.split("=", 1)[0] for kv in re.findall(r'(\w+)="', m.group(3))} - {"le"}
    return families


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rsam", required=True, help="the rsam binary")
    ap.add_argument("--model", default=str(ROOT / "tests/fixtures/rsam-tiny"))
    ap.add_argument("--prom-config", default=str(ROOT / "deploy/prometheus/prometheus.yml"))
    ap.add_argument("--dashboard", default=str(ROOT / "deploy/grafana/dashboards/rsam.json"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = ap.parse_args()

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="rsam-prom-test-"))
    WORKDIR.append(tmp)
    rsam_port, prom_port = free_port(), free_port()
    rsam_url, prom_url = f"http://127.0.0.1:{rsam_port}", f"http://127.0.0.1:{prom_port}"

    try:
        # -- rsam ------------------------------------------------------------
        env = dict(os.environ, RUST_LOG="warn")
        rsam = start([args.rsam, "serve", "--model", args.model, "--addr", f"127.0.0.1:{rsam_port}",
                      "--cache-mib", "1"], tmp / "rsam.log", env)
        wait_until("rsam /readyz", lambda: http("GET", rsam_url + "/readyz", timeout=2)[0] == 200, 180,
                   procs=[rsam])
        log(f"rsam ready on {rsam_url}")

        # -- /metrics: promtool lint and the metric contract ------------------
        status, headers, body = http("GET", rsam_url + "/metrics")
        if status != 200:
            raise Failure(f"GET /metrics answered {status}")
        (tmp / "metrics.txt").write_bytes(body)
        check = subprocess.run([args.promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        if check.returncode != 0:
            raise Failure("promtool check metrics failed:\n" + (check.stdout + check.stderr).decode())
        log("promtool check metrics: OK")

        # -- Prometheus with the repository's scrape config -------------------
        config = yaml.safe_load(Path(args.prom_config).read_text())
        config.setdefault("global", {}).update({"scrape_interval": "1s", "scrape_timeout": "1s",
                                                "evaluation_interval": "1s"})
        jobs = [j for j in config["scrape_configs"] if j["job_name"] == "rsam"]
        if len(jobs) != 1:
            raise Failure(f"{args.prom_config} has no single job 'rsam'")
        jobs[0]["static_configs"] = [{"targets": [f"127.0.0.1:{rsam_port}"]}]
        config["scrape_configs"] = jobs  # nothing but the service on loopback
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run([args.promtool, "check", "config", str(tmp / "prometheus.yml")],
                               capture_output=True, timeout=30)
        if check.returncode != 0:
            raise Failure("promtool check config (rewritten) failed:\n" + (check.stdout + check.stderr).decode())
        prom = start([args.prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                      f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                      "--log.level=warn"], tmp / "prometheus.log")
        wait_until("Prometheus /-/ready", lambda: http("GET", prom_url + "/-/ready", timeout=2)[0] == 200, 60,
                   procs=[prom, rsam])
        wait_until("the rsam target to be up",
                   lambda: any(float(s["value"][1]) == 1 for s in prom_query(prom_url, 'up{job="rsam"}')), 30,
                   procs=[prom, rsam])
        log(f"Prometheus ready on {prom_url}, scraping rsam")

        # -- traffic ---------------------------------------------------------
        # Twice: Prometheus sees no increase in a series whose first sample
        # already counts everything, so the first pass creates every series
        # (each route, status, stage) and is scraped; rates then show the
        # second pass.
        traffic = Traffic(rsam_url, Path(args.model) / "images")
        for phase in (1, 2):
            started = time.monotonic()
            traffic.run()
            log(f"pass {phase}: {sum(traffic.sent.values())} requests so far ({time.monotonic() - started:.1f} s): "
                + ", ".join(f"{r} {s}: {n}" for (r, s), n in sorted(traffic.sent.items())))
            # Wait until a scrape has seen every segment request, then more.
            n_segment = sum(n for (r, _), n in traffic.sent.items() if r == "/v1/segment")
            wait_until(f"Prometheus to scrape all {n_segment} /v1/segment requests",
                       lambda: scalar(prom_url, 'sum(rsam_http_requests_total{route="/v1/segment"})') >= n_segment,
                       30, interval=0.5, procs=[prom, rsam])
            time.sleep(2.5)

        # -- the service's own figures, through Prometheus ---------------------
        families = parse_exposition(http("GET", rsam_url + "/metrics")[2].decode())
        problems = []
        for name, (kind, labels) in CONTRACT.items():
            fam = families.get(name)
            if fam is None:
                problems.append(f"{name}: not exported")
            elif fam["type"] != kind:
                problems.append(f"{name}: type {fam['type']}, expected {kind}")
            elif fam["labels"] != labels:
                problems.append(f"{name}: labels {sorted(fam['labels'])}, expected {sorted(labels)}")
        extra = sorted(n for n in families if n.startswith("rsam_") and n not in CONTRACT)
        if extra:
            problems.append(f"exported but not in the contract (README, dashboard): {extra}")
        stages = {s["metric"].get("stage") for s in prom_query(prom_url, "rsam_stage_duration_seconds_count")}
        if stages != STAGES:
            problems.append(f"stages {sorted(stages)}, expected {sorted(STAGES)}")
        facts = {
            "cache hits > 0": "rsam_feature_cache_hits_total > 0",
            "cache misses > 0": "rsam_feature_cache_misses_total > 0",
            "cache evictions > 0": "rsam_feature_cache_evictions_total > 0",
            "a decode batch of more than one prompt": 'rsam_batch_size_count - on() rsam_batch_size_bucket{le="1"} > 0',
            "4xx answers counted (400, 404, 405, 422)": 'count(rsam_http_requests_total{status=~"400|404|405|422"}) >= 4',
            "unknown routes counted as route=\"unmatched\"": 'rsam_http_requests_total{route="unmatched",status="404"}',
            "refines counted": 'rsam_http_requests_total{route="/v1/refine",status="200"} >= 3',
            "model info": 'rsam_model_info{kind="rsam",device="cpu",dtype="f32"} == 1',
            "windowed searches counted": "rsam_window_searches_total >= 2",
            "windows encoded": "rsam_windows_encoded_total > 0",
        }
        for what, expr in facts.items():
            if not prom_query(prom_url, expr):
                problems.append(f"{what}: no data for {expr}")
        if problems:
            raise Failure("metrics contract:\n  " + "\n  ".join(problems))
        log(f"metric contract: {len(CONTRACT)} families, {len(facts)} facts: OK")

        # -- every dashboard query --------------------------------------------
        dashboard = json.loads(Path(args.dashboard).read_text())
        variables = dict(BUILTINS)
        for var in dashboard.get("templating", {}).get("list", []):
            variables[var["name"]] = var.get("allValue") or ".*"
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", query or "")
            if var.get("type") == "query":
                if not m:
                    raise Failure(f"variable {var['name']}: unsupported query {query!r}")
                url = (f"{prom_url}/api/v1/label/{m.group(2)}/values?"
                       + urllib.parse.urlencode({"match[]": m.group(1)}))
                values = json.loads(http("GET", url)[2]).get("data", [])
                if not values:
                    raise Failure(f"variable {var['name']}: {query} has no values")
                log(f"variable ${var['name']}: {query} -> {values}")
        queries = dashboard_queries(dashboard)
        if not queries:
            raise Failure("the dashboard has no queries")
        failed = []
        for title, expr in queries:
            promql = substitute(expr, variables)
            try:
                result = prom_query(prom_url, promql)
            except Failure as e:
                failed.append(f"{title}: {e}")
                continue
            good = [s for s in result if finite(s)]
            if not good:
                failed.append(f"{title}: no finite sample ({len(result)} series) for\n      {promql}")
            else:
                shown = ", ".join(f"{_label(s['metric'])}={float(s['value'][1]):.4g}" for s in result[:6])
                more = f" (+{len(result) - 6})" if len(result) > 6 else ""
                log(f"  ok  {title}: {len(good)}/{len(result)} finite: {shown}{more}")
        if failed:
            raise Failure(f"{len(failed)} of {len(queries)} dashboard queries returned no data:\n  - "
                          + "\n  - ".join(failed))
        log(f"all {len(queries)} dashboard queries return data")
        print(f"prometheus-test: {len(queries) + len(facts) + len(CONTRACT) + 2} passed, 0 failed", flush=True)
        return 0
    except Failure as e:
        print(f"\nFAILED: {e}", file=sys.stderr, flush=True)
        for name in ("rsam.log", "prometheus.log"):
            path = tmp / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-30:]
                print(f"--- last lines of {name}:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
