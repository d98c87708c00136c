#!/usr/bin/env python3
"""Cache-affine load balancing, measured with a real nginx.

Runs `rsam serve` replicas (the tiny fixture model) on loopback behind
Debian's nginx configured like the Ingress (deploy/lb/nginx.conf.template:
`hash $http_x_rsam_image_id consistent;`, POSTs retried on the next upstream).
A client sends N synthetic images x M sentences in random order, each request
with the whole image file and `X-Rsam-Image-Id: <hex SHA-256 of the file>`.
The cache figures come from the replicas' own /metrics
(rsam_feature_cache_hits_total, rsam_feature_cache_misses_total). Phases:

  single       the requests to ONE rsam: the hits a single server gets
  hash         the same requests through nginx, consistent hash, R replicas
  round-robin  another image set through nginx without the hash line
  kill         the hash phase's requests again; one replica is killed
               (SIGKILL) halfway through

Asserts: hash hits >= 0.95 x single hits; every image answered by one
replica in the hash phase; in the kill phase no request fails, some were
retried on another replica, and the survivors encode again exactly the
killed replica's images that they were sent, nothing else (their miss
counters and the responses' `cached` flags agree). Also checks that the
response's image_id is the header's value and that rsam_feature_cache_bytes
is entries x the per-image size computed from the model's config.json.

Everything listens on 127.0.0.1, every wait is bounded, all processes are
stopped on exit. Started by deploy/lb/run-lb-test.sh (which installs nginx
and owns the work directory). Exit status 0 only when every assertion holds.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
HASH_LINE = "hash $http_x_rsam_image_id consistent;"
SENTENCES = [
    "the storage tank",
    "the airplane on the left",
    "the ship near the harbor",
    "the white vehicle",
    "the bridge across the river",
    "the tennis court",
    "the large building",
    "the road in the middle",
    "the second storage tank from the left",
    "the small boat",
    "the windmill",
    "the parking lot",
]

PROCS: list[subprocess.Popen] = []
PIDS_FILE: list[Path] = []


class Failure(Exception):
    pass


def log(msg: str) -> None:
    print(f"[lb-test] {msg}", flush=True)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], logfile: Path, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=open(logfile, "wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    PROCS.append(proc)
    # The shell wrapper kills what is listed here if this process dies uncleanly.
    with open(PIDS_FILE[0], "a") as f:
        f.write(f"{proc.pid}\n")
    return proc


def stop_all() -> None:
    """Stops every process this test started, by its own pid, bounded."""
    for proc in reversed(PROCS):
        if proc.poll() is None:
            proc.terminate()  # nginx: fast shutdown, workers included
    deadline = time.monotonic() + 10
    for proc in reversed(PROCS):
        if proc.poll() is None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    PROCS.clear()
    if PIDS_FILE:
        PIDS_FILE[0].write_text("")


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def wait_until(what: str, check, timeout: float, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise Failure(f"{what}: {p.args[0]} exited with {p.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


def get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def cache_counters(port: int) -> dict[str, float]:
    status, body = get(port, "/metrics")
    if status != 200:
        raise Failure(f"GET /metrics on :{port} answered {status}")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r"(rsam_feature_cache_\w+) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    for name in ("rsam_feature_cache_hits_total", "rsam_feature_cache_misses_total"):
        if name not in out:
            raise Failure(f":{port}/metrics has no {name}")
    return out


def png(size: int, rng: random.Random) -> bytes:
    """An RGB PNG of random pixels: distinct bytes, so a distinct image_id."""
    raw = b"".join(b"\x00" + rng.randbytes(size * 3) for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def segment_body(image: bytes, text: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="scene.png"\r\n'
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------


class Images:
    def __init__(self, count: int, size: int, rng: random.Random):
        self.files = [png(size, rng) for _ in range(count)]
        self.ids = [hashlib.sha256(f).hexdigest() for f in self.files]


def workload(images: Images, sentences: int, rng: random.Random) -> list[tuple[int, str]]:
    """Every image with every sentence, in random order."""
    jobs = [(i, SENTENCES[s]) for i in range(len(images.files)) for s in range(sentences)]
    rng.shuffle(jobs)
    return jobs


def run_phase(port: int, images: Images, jobs, concurrency: int, halfway=None) -> tuple[list[dict], float]:
    """Sends `jobs` with `concurrency` clients (keep-alive connections, no
    client-side retry). `halfway()` runs once half of the jobs are answered
    while the other clients carry on. Returns one record per job."""
    records: list[dict] = []
    lock = threading.Lock()
    cursor = iter(jobs)
    half = threading.Event()

    def next_job():
        with lock:
            return next(cursor, None)

    def client():
        conn = None
        while (job := next_job()) is not None:
            image, text = job
            record = {"image": image, "status": None, "cached": None, "upstream": "", "error": None}
            body, ctype = segment_body(images.files[image], text)
            headers = {"Content-Type": ctype, "X-Rsam-Image-Id": images.ids[image]}
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", "/v1/segment", body, headers)
                resp = conn.getresponse()
                payload = resp.read()
                record["status"] = resp.status
                record["upstream"] = resp.getheader("X-Rsam-Upstream", "")
                if resp.status == 200:
                    answer = json.loads(payload)
                    record["cached"] = answer["cached"]
                    if answer["image_id"] != images.ids[image]:
                        record["error"] = f"image_id {answer['image_id']} != header {images.ids[image]}"
                else:
                    record["error"] = payload[:200].decode(errors="replace")
            except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
                record["error"] = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                records.append(record)
                if len(records) * 2 >= len(jobs):
                    half.set()
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    if halfway is not None:
        if not half.wait(timeout=60):
            raise Failure("the first half of the kill phase did not finish in 60 s")
        halfway()
    for t in threads:
        t.join(timeout=120)
        if t.is_alive():
            raise Failure("a client did not finish in 120 s")
    return records, time.monotonic() - started


def failed(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] != 200 or r["error"]]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def feature_bytes_per_image(model: Path) -> int:
    """image_embed d x S/16 x S/16, high_res_s0 d/8 x S/4 x S/4, high_res_s1
    d/4 x S/8 x S/8, f32."""
    config = json.loads((model / "config.json").read_text())
    d, s = config["d_model"], config["image_size"]
    return 4 * (d * (s // 16) ** 2 + d // 8 * (s // 4) ** 2 + d // 4 * (s // 8) ** 2)


def start_rsam(args, port: int, workdir: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, RUST_LOG="warn")
    return start([args.rsam, "serve", "--model", str(args.model), "--addr", f"127.0.0.1:{port}"],
                 workdir / f"{name}.log", env)


def start_nginx(args, workdir: Path, name: str, ports: list[int], balance_hash: bool) -> tuple[subprocess.Popen, int]:
    listen = free_port()
    home = workdir / name
    home.mkdir()
    home.chmod(0o755)  # nginx workers (nobody, when run as root) create their temp dirs here
    conf = TEMPLATE.read_text()
    if HASH_LINE not in conf:
        raise Failure(f"{TEMPLATE} has no '{HASH_LINE}' line")
    if not balance_hash:
        conf = conf.replace(HASH_LINE, "# round-robin (the comparison run)")
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports)
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = (conf.replace("@DIR@", str(home)).replace("@SERVERS@", servers)
            .replace("@LISTEN@", f"127.0.0.1:{listen}").replace("@USER@", user))
    (home / "nginx.conf").write_text(conf)
    base = [args.nginx, "-p", str(home), "-e", str(home / "error.log"), "-c", str(home / "nginx.conf")]
    check = subprocess.run(base + ["-t"], capture_output=True, timeout=30)
    if check.returncode != 0:
        raise Failure(f"nginx -t ({name}) failed:\n{(check.stdout + check.stderr).decode()}")
    proc = start(base, home / "stdout.log")
    wait_until(f"nginx ({name}) on :{listen}", lambda: get(listen, "/healthz", timeout=2)[0] == 200, 20, [proc])
    return proc, listen


def totals(ports: list[int]) -> dict[str, float]:
    sums: dict[str, float] = {}
    for p in ports:
        for k, v in cache_counters(p).items():
            sums[k] = sums.get(k, 0) + v
    return sums


def delta(after: dict, before: dict, key: str) -> int:
    return int(after[f"rsam_feature_cache_{key}_total"] - before[f"rsam_feature_cache_{key}_total"])


def phase_summary(name: str, records, seconds: float, hits: int, misses: int) -> dict:
    total = hits + misses
    out = {
        "phase": name,
        "requests": len(records),
        "failed": len(failed(records)),
        "seconds": round(seconds, 2),
        "requests_per_s": round(len(records) / seconds, 1),
        "hits": hits,
        "misses": misses,
        "hit_ratio": round(hits / total, 4) if total else 0.0,
    }
    log(f"{name:12s} {out['requests']} requests in {out['seconds']} s ({out['requests_per_s']}/s), "
        f"{out['failed']} failed; hits {hits}, misses {misses}, hit ratio {out['hit_ratio']:.3f}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rsam", required=True, help="the rsam binary")
    ap.add_argument("--nginx", required=True, help="the nginx binary")
    ap.add_argument("--workdir", required=True, type=Path, help="an empty directory, removed by the caller")
    ap.add_argument("--model", type=Path, default=ROOT / "tests/fixtures/rsam-tiny")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--images", type=int, default=48, help="distinct images per set (N)")
    ap.add_argument("--sentences", type=int, default=8, help=f"sentences per image (M, at most {len(SENTENCES)})")
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--min-relative-hits", type=float, default=0.95)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not 1 <= args.sentences <= len(SENTENCES) or args.images < 2 or args.replicas < 2:
        ap.error(f"need --images >= 2, --replicas >= 2 and 1 <= --sentences <= {len(SENTENCES)}")

    PIDS_FILE.append(args.workdir / "pids")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    rng = random.Random(args.seed)
    results: list[tuple[bool, str]] = []

    def check(ok: bool, what: str) -> None:
        results.append((bool(ok), what))
        print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    try:
        size = json.loads((args.model / "config.json").read_text())["image_size"]
        set_a, set_b = Images(args.images, size, rng), Images(args.images, size, rng)
        log(f"{args.images} images x {args.sentences} sentences per set, {size} px PNGs, "
            f"{args.replicas} replicas, {args.concurrency} concurrent clients")

        # -- rsam: one alone, R behind nginx ------------------------------------
        single = free_port()
        replicas = [free_port() for _ in range(args.replicas)]
        procs = [start_rsam(args, single, args.workdir, "single")]
        procs += [start_rsam(args, p, args.workdir, f"replica{i}") for i, p in enumerate(replicas)]
        for port, proc in zip([single] + replicas, procs):
            wait_until(f"rsam :{port} /readyz", lambda: get(port, "/readyz", timeout=2)[0] == 200, 120, [proc])
        replica_procs = dict(zip(replicas, procs[1:]))
        _, hash_port = start_nginx(args, args.workdir, "nginx-hash", replicas, balance_hash=True)
        _, rr_port = start_nginx(args, args.workdir, "nginx-rr", replicas, balance_hash=False)
        log(f"rsam single :{single}, replicas {replicas}; nginx hash :{hash_port}, round-robin :{rr_port}")

        # -- single server --------------------------------------------------------
        jobs_a = workload(set_a, args.sentences, rng)
        before = cache_counters(single)
        records, secs = run_phase(single, set_a, jobs_a, args.concurrency)
        after = cache_counters(single)
        single_sum = phase_summary("single", records, secs, delta(after, before, "hits"), delta(after, before, "misses"))

        # -- consistent hash ---------------------------------------------------------
        jobs_a = workload(set_a, args.sentences, rng)
        before = totals(replicas)
        records, secs = run_phase(hash_port, set_a, jobs_a, args.concurrency)
        after = totals(replicas)
        hash_sum = phase_summary("hash", records, secs, delta(after, before, "hits"), delta(after, before, "misses"))
        owner: dict[int, set[str]] = {}
        for r in records:
            owner.setdefault(r["image"], set()).add(r["upstream"])
        spread = [i for i, ups in owner.items() if len(ups) != 1]
        check(not spread and len(owner) == args.images,
              f"hash: each of the {len(owner)} images answered by one replica"
              + (f" (not {len(spread)}, e.g. {sorted(owner[spread[0]])})" if spread else ""))
        owner_of = {i: next(iter(ups)) for i, ups in owner.items()}
        per_replica = {f"127.0.0.1:{p}": sum(1 for u in owner_of.values() if u == f"127.0.0.1:{p}") for p in replicas}
        log(f"hash: images per replica {per_replica}")

        # -- round-robin --------------------------------------------------------------
        jobs_b = workload(set_b, args.sentences, rng)
        before = totals(replicas)
        records, secs = run_phase(rr_port, set_b, jobs_b, args.concurrency)
        after = totals(replicas)
        rr_sum = phase_summary("round-robin", records, secs, delta(after, before, "hits"),
                               delta(after, before, "misses"))

        # -- per-image feature bytes against the model's config -------------------------
        per_image = feature_bytes_per_image(args.model)
        for port in replicas:
            c = cache_counters(port)
            check(c["rsam_feature_cache_bytes"] == c["rsam_feature_cache_entries"] * per_image,
                  f":{port}: rsam_feature_cache_bytes {c['rsam_feature_cache_bytes']:.0f} = "
                  f"{c['rsam_feature_cache_entries']:.0f} entries x {per_image} bytes (from config.json)")
            check(c.get("rsam_feature_cache_evictions_total", -1) == 0, f":{port}: no evictions (the figures compare)")

        # -- kill one replica halfway --------------------------------------------------
        victim_addr = max(per_replica, key=per_replica.get)
        victim = int(victim_addr.rsplit(":", 1)[1])
        survivors = [p for p in replicas if p != victim]
        victim_images = {i for i, u in owner_of.items() if u == victim_addr}
        jobs_a = workload(set_a, args.sentences, rng)
        before = totals(survivors)

        def kill_victim():
            log(f"kill: SIGKILL replica :{victim} ({len(victim_images)} of {args.images} images)")
            replica_procs[victim].send_signal(signal.SIGKILL)

        records, secs = run_phase(hash_port, set_a, jobs_a, args.concurrency, halfway=kill_victim)
        after = totals(survivors)
        kill_sum = phase_summary("kill", records, secs, delta(after, before, "hits"), delta(after, before, "misses"))
        check(replica_procs[victim].wait(timeout=10) == -signal.SIGKILL, f"kill: replica :{victim} died of SIGKILL")
        retried = [r for r in records if "," in r["upstream"]]
        on_survivor = [r for r in records if r["status"] == 200 and r["upstream"].rsplit(", ", 1)[-1] != victim_addr]
        reencoded = {r["image"] for r in on_survivor if r["cached"] is False}
        moved = {r["image"] for r in on_survivor if r["image"] in victim_images}
        wrong = sorted(reencoded - victim_images)
        kill_sum.update({"retried": len(retried), "victim_images": len(victim_images),
                         "victim_images_moved": len(moved), "reencoded": len(reencoded)})
        log(f"kill: {len(retried)} requests retried on another replica; {len(moved)} of the killed replica's "
            f"{len(victim_images)} images moved to the survivors, {len(reencoded)} images encoded again "
            f"(survivors' misses {kill_sum['misses']})")
        check(kill_sum["failed"] == 0, f"kill: no request failed ({kill_sum['failed']} of {len(records)})"
              + (f": {failed(records)[:3]}" if kill_sum["failed"] else ""))
        check(len(retried) > 0, f"kill: requests sent to the dead replica were retried on another ({len(retried)})")
        check(moved and not wrong, f"kill: only the killed replica's images were encoded again "
              f"({len(reencoded)} images, all of them the killed replica's)" + (f"; not {wrong[:5]}" if wrong else ""))
        check(reencoded == moved, "kill: each moved image was encoded on its new replica"
              + (f"; not {sorted(moved - reencoded)[:5]}" if reencoded != moved else ""))
        check(kill_sum["misses"] == len(moved),
              f"kill: survivors' rsam_feature_cache_misses_total rose by {kill_sum['misses']} "
              f"= {len(moved)} moved images (each encoded once)")

        # -- the figures ------------------------------------------------------------------
        for s in (single_sum, hash_sum, rr_sum):
            check(s["failed"] == 0, f"{s['phase']}: no request failed ({s['failed']} of {s['requests']})")
        relative = hash_sum["hits"] / single_sum["hits"] if single_sum["hits"] else 0.0
        rr_relative = rr_sum["hits"] / single_sum["hits"] if single_sum["hits"] else 0.0
        log(f"hits relative to one server: hash {relative:.3f}, round-robin {rr_relative:.3f} "
            f"(goal for hash >= {args.min_relative_hits})")
        check(relative >= args.min_relative_hits,
              f"hash: {hash_sum['hits']} hits = {relative:.3f} x a single server's {single_sum['hits']} "
              f"(>= {args.min_relative_hits})")
        figures = {
            "images": args.images, "sentences": args.sentences, "replicas": args.replicas,
            "concurrency": args.concurrency, "feature_bytes_per_image": per_image,
            "relative_hits_hash": round(relative, 4), "relative_hits_round_robin": round(rr_relative, 4),
            "phases": [single_sum, hash_sum, rr_sum, kill_sum],
        }
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures), flush=True)
        bad = [what for ok, what in results if not ok]
        print(f"lb-test: {len(results) - len(bad)} passed, {len(bad)} failed", flush=True)
        if bad:
            raise Failure("\n  ".join(bad))
        return 0
    except Failure as e:
        print(f"\nlb-test FAILED:\n  {e}", file=sys.stderr, flush=True)
        for logfile in sorted(args.workdir.glob("*.log")) + sorted(args.workdir.glob("nginx-*/error.log")):
            tail = logfile.read_text(errors="replace").splitlines()[-15:]
            if tail:
                print(f"--- last lines of {logfile.relative_to(args.workdir)}:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
