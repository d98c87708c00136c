#!/usr/bin/env python3
"""Real-component test of the Kubernetes monitoring path: the pods scrape job
(deploy/k8s/monitoring/prometheus-scrape.yml) and the Prometheus adapter rule
that feeds the HorizontalPodAutoscaler (deploy/k8s/monitoring/prometheus-adapter.yaml).

No cluster here, so Kubernetes service discovery is stood in for by a file
with the same `__meta_kubernetes_*` labels that pod discovery gives each pod
(namespace, pod name, the prometheus.io annotations of
deploy/k8s/base/deployment.yaml) and an address on a port rsam does not
listen on, as for a pod with another container port. The job's relabelling
is the repository's, unchanged. Two `rsam serve` replicas (tiny model) stand
in for two pods, plus a third target whose annotation says not to scrape.
A real Prometheus (Debian's; its build has no Kubernetes discovery, hence
the file) scrapes them; the test checks that the relabelling keeps the two
annotated pods, scrapes the annotated port and path, and labels the series
with `namespace` and `pod`; then runs the adapter's seriesQuery and its
metricsQuery, the template filled in the way the adapter does for the HPA's
request, and expects one value per pod.

Everything listens on 127.0.0.1; every wait is bounded; every process is
stopped on exit.

Usage: k8s_monitoring_test.py --rsam target/debug/rsam
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRAPE = ROOT / "deploy/k8s/monitoring/prometheus-scrape.yml"
ADAPTER = ROOT / "deploy/k8s/monitoring/prometheus-adapter.yaml"
PODS = ["rsam-7d9f-0", "rsam-7d9f-1"]
NAMESPACE = "rsam"
PROCS: list[subprocess.Popen] = []


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(f"[k8s-monitoring-test] {msg}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], logfile: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(logfile, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    PROCS.append(proc)
    return proc


def stop_all() -> None:
    for proc in PROCS:
        if proc.poll() is None:
            proc.terminate()
    for proc in PROCS:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    PROCS.clear()


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in PROCS:
            if p.poll() is not None:
                raise Failure(f"{what}: {p.args[0]} exited with {p.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")


def query(prom: str, expr: str) -> list[dict]:
    status, body = get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise Failure(f"query failed ({status}): {expr}: {data.get('error')}")
    return data["data"]["result"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rsam", required=True)
    ap.add_argument("--model", default=str(ROOT / "tests/fixtures/rsam-tiny"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = ap.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="rsam-k8s-monitoring-"))
    results: list[tuple[bool, str]] = []

    def check(ok, what: str) -> None:
        results.append((bool(ok), what))
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)

    try:
        ports = [free_port() for _ in PODS]
        for pod, port in zip(PODS, ports):
            start([args.rsam, "serve", "--model", args.model, "--addr", f"127.0.0.1:{port}"], tmp / f"{pod}.log")
        for port in ports:
            wait_until(f"rsam :{port}", lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 120)

        # Pod discovery's labels for the two replicas and one pod that opts out.
        def pod_target(name: str, port: int, scrape: str) -> dict:
            return {"targets": ["127.0.0.1:9"], "labels": {
                "__meta_kubernetes_namespace": NAMESPACE,
                "__meta_kubernetes_pod_name": name,
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
                "__meta_kubernetes_pod_annotation_prometheus_io_port": str(port),
                "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            }}

        targets = [pod_target(p, port, "true") for p, port in zip(PODS, ports)]
        targets.append(pod_target("not-scraped-0", ports[0], "false"))
        (tmp / "pods.json").write_text(json.dumps(targets))
        config = yaml.safe_load(SCRAPE.read_text())
        jobs = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
        check(len(jobs) == 1 and jobs[0]["kubernetes_sd_configs"] == [{"role": "pod"}],
              f"{SCRAPE.name}: one job with Kubernetes pod discovery")
        job = jobs[0]
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [str(tmp / "pods.json")], "refresh_interval": "1s"}]
        config["scrape_configs"] = [job]
        config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        run = subprocess.run([args.promtool, "check", "config", str(tmp / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30)
        check(run.returncode == 0, "promtool check config: the job with file discovery in place of Kubernetes'"
              + ("" if run.returncode == 0 else f"\n{run.stdout}{run.stderr}"))

        prom_port = free_port()
        prom = f"http://127.0.0.1:{prom_port}"
        start([args.prometheus, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], tmp / "prometheus.log")
        wait_until("Prometheus", lambda: get(f"{prom}/-/ready")[0] == 200, 60)
        up = f'up{{job="{job["job_name"]}"}}'
        wait_until("both pods scraped twice",
                   lambda: len(query(prom, f"count_over_time({up}[1m]) >= 2 and {up} == 1")) == len(PODS), 30)

        series = query(prom, up)
        scraped = {s["metric"].get("pod"): s["metric"] for s in series}
        check(sorted(scraped) == sorted(PODS), f"the annotated pods are scraped, the opted-out one is not: {sorted(scraped)}")
        check(all(m.get("namespace") == NAMESPACE for m in scraped.values()), "series carry the namespace label")
        check(sorted(m["instance"] for m in scraped.values()) == sorted(f"127.0.0.1:{p}" for p in ports),
              "the annotation's port is scraped (the address is rewritten)")

        rules = yaml.safe_load(ADAPTER.read_text())["rules"]
        for rule in rules:
            found = query(prom, rule["seriesQuery"])
            check(sorted(s["metric"].get("pod") for s in found) == sorted(PODS),
                  f"adapter seriesQuery {rule['seriesQuery']} finds one series per pod")
            # What the adapter asks Prometheus for the HPA (pods metric of the pods it selects).
            expr = (rule["metricsQuery"].replace("<<.Series>>", rule["name"]["as"])
                    .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{"|".join(PODS)}"')
                    .replace("<<.GroupBy>>", "pod"))
            values = {s["metric"].get("pod"): float(s["value"][1]) for s in query(prom, expr)}
            check(sorted(values) == sorted(PODS) and all(v == 0 for v in values.values()),
                  f"adapter metricsQuery gives each pod its (idle, 0) queue depth: {expr} -> {values}")
        bad = [w for ok, w in results if not ok]
        print(f"k8s-monitoring-test: {len(results) - len(bad)} passed, {len(bad)} failed", flush=True)
        return 1 if bad else 0
    except Failure as e:
        print(f"\nFAILED: {e}", file=sys.stderr, flush=True)
        for logfile in sorted(tmp.glob("*.log")):
            print(f"--- {logfile.name}:\n" + "\n".join(logfile.read_text(errors="replace").splitlines()[-15:]),
                  file=sys.stderr)
        return 1
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
