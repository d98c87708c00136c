#!/usr/bin/env bash
# The one script to run when a GPU is lent (issue 20): parity of the tiny
# fixture model on the GPU in f32 and bf16 against the official logits, a
# multi-prompt decode, `rsam bench` of base+ at 800 px in f32 / bf16 with
# encode batches 1 / 4 / 8, and the GPU's memory; one summary under $OUT.
#
# Two steps:
#   1. Here (no GPU needed): build the CUDA binary, release, linked against
#      the PyPI toolkit and the driver stub of scripts/cuda-toolchain.sh:
#        scripts/gpu-check.sh --prepare          # -> .gpu-check/rsam
#   2. On the device machine, from the repository root, in ONE run call
#      (carry: [".gpu-check"], timeout_s 600):
#        bash scripts/gpu-check.sh
#      Results land in $OUT (summary.md, bench-*.txt, parity.txt).
#
# Dry run on the CPU (checks the script and the CLI calls it makes):
#   OUT=/tmp/gpu-check scripts/gpu-check.sh --bin target/debug/rsam --device cpu --quick
#
# Options: --bin PATH (default .gpu-check/rsam), --device D (default
# cuda:0), --quick (the fixture's config instead of base+ for the bench,
# one iteration: for dry runs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bin=.gpu-check/rsam
device=cuda:0
quick=0
prepare=0
while [ $# -gt 0 ]; do
  case $1 in
    --prepare) prepare=1 ;;
    --bin) bin=$2; shift ;;
    --device) device=$2; shift ;;
    --quick) quick=1 ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$prepare" = 1 ]; then
  eval "$(scripts/cuda-toolchain.sh --link)"
  cargo build --release --features cuda --bin rsam
  mkdir -p .gpu-check
  cp target/release/rsam .gpu-check/rsam
  strip .gpu-check/rsam
  echo "gpu-check: .gpu-check/rsam is $(du -m .gpu-check/rsam | cut -f1) MiB (carry allows 64 MiB in all)"
  exit 0
fi

out=${OUT:-$root/.gpu-check/out}
mkdir -p "$out"
summary=$out/summary.md
[ -x "$bin" ] || { echo "gpu-check: no binary at $bin (run --prepare here first, carry .gpu-check)" >&2; exit 1; }

on_gpu=0
case $device in cuda*) on_gpu=1 ;; esac

# The CUDA libraries the binary links (cuBLAS, cuRAND, NVRTC, the runtime)
# come from the device machine's toolkit / PyTorch wheels: find their folders.
if [ "$on_gpu" = 1 ]; then
  libdirs=$(timeout 120 find / -xdev \( -path /proc -o -path /sys \) -prune -o \
    \( -name 'libcublas.so.13' -o -name 'libcublasLt.so.13' -o -name 'libcurand.so.10' \
       -o -name 'libnvrtc.so.13' -o -name 'libcudart.so.13' \) -print 2>/dev/null \
    | xargs -r -n1 dirname | sort -u | paste -sd: - || true)
  export LD_LIBRARY_PATH="${libdirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

{
  echo "# gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); device: $device; binary: $bin"
  if [ "$on_gpu" = 1 ]; then
    echo
    echo '```'
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || echo "nvidia-smi failed"
    echo '```'
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  fi
} >"$summary"

# Peak GPU memory while a command runs (nvidia-smi sampled every 100 ms).
# Writes it to the file named first.
peak_gpu_mib() {
  local peak=$1; shift
  if [ "$on_gpu" != 1 ]; then
    echo "n/a (cpu)" >"$peak"
    "$@"
    return
  fi
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$peak.samples" 2>/dev/null &
  local sampler=$!
  local status=0
  "$@" || status=$?
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  sort -n "$peak.samples" | tail -n 1 >"$peak"
  rm -f "$peak.samples"
  return "$status"
}

fixture=tests/fixtures/rsam-tiny
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Parity: every at-size fixture case (square.png, no refinement) through
# `rsam segment` on the device, logits against the official ones.
parity() {
  local dtype=$1
  python3 - "$bin" "$device" "$dtype" "$fixture" "$work" <<'PY'
import json, struct, subprocess, sys, math

rsam, device, dtype, fixture, work = sys.argv[1:]

def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for key, meta in header.items():
        if key == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[key] = list(struct.unpack(f"<{(b - a) // 4}f", data[a:b]))
    return out

def npy(path):
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
        major = f.read(2)[0]
        n = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = f.read(n).decode()
        assert "'<f4'" in header, header
        data = f.read()
    return list(struct.unpack(f"<{len(data) // 4}f", data))

def corr(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb)

expected = safetensors(f"{fixture}/expected.safetensors")
cases = json.load(open(f"{fixture}/cases.json"))["cases"]
worst_diff, worst_corr, failed = 0.0, 1.0, 0
for case in cases:
    if case["image"] != "square.png" or "refine_of" in case:
        continue
    i = case["index"]
    args = [rsam, "segment", "--model", fixture, "--image", f"{fixture}/images/square.png",
            "--device", device, "--dtype", dtype, "--logits-out", f"{work}/case{i}.npy"]
    if case.get("text"):
        args += ["--text", case["text"]]
    for x, y, label in case.get("points", []):
        args += ["--point", f"{x},{y},{label}"]
    if case.get("box"):
        args += ["--box", ",".join(str(v) for v in case["box"])]
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        print(f"case {i}: rsam segment failed: {run.stderr.strip()[-500:]}")
        failed += 1
        continue
    got, want = npy(f"{work}/case{i}.npy"), expected[f"case{i}.low_res_logits"]
    diff = max(abs(a - b) for a, b in zip(got, want))
    r = corr(got, want)
    worst_diff, worst_corr = max(worst_diff, diff), min(worst_corr, r)
    print(f"case {i}: max |logit diff| {diff:.2e}, correlation {r:.6f}")
ok = failed == 0 and (worst_diff < 1e-3 if dtype == "f32" else worst_corr >= 0.99)
print(f"{dtype}: worst diff {worst_diff:.2e}, worst correlation {worst_corr:.6f}, failed {failed}: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}

status=0
for dtype in f32 bf16; do
  echo "== parity $dtype" >>"$out/parity.txt"
  if parity "$dtype" >>"$out/parity.txt" 2>&1; then result=PASS; else result=FAIL; status=1; fi
  echo "- parity $dtype on $device: $result ($(tail -n 1 "$out/parity.txt"))" >>"$summary"
done

# Bench: encode batches 1 / 4 / 8 (the GPU's throughput grows with the
# batch) and decodes of 1 and 8 prompts (a multi-prompt decode on the GPU).
if [ "$quick" = 1 ]; then
  config=$fixture/config.json iters=1
else
  config=base-plus-800 iters=5
fi
for dtype in f32 bf16; do
  log=$out/bench-$dtype.txt
  peak=$work/peak-$dtype
  if peak_gpu_mib "$peak" "$bin" bench --config "$config" --device "$device" --dtype "$dtype" \
    --encode-batches 1,4,8 --decode-batches 1,8 --iters "$iters" --warmup 1 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED; status=1
  fi
  {
    echo
    echo "## bench $dtype ($config, $device): $result, peak GPU memory $(cat "$peak") MiB"
    echo '```'
    sed -n '/^{/q;p' "$log" | tail -n 40
    grep -E '"(load_seconds|rss_after_load_mib|rss_peak_mib)"' "$log" || true
    echo '```'
  } >>"$summary"
done

echo >>"$summary"
echo "overall: $([ "$status" = 0 ] && echo PASS || echo FAIL)" >>"$summary"
cat "$summary"
exit "$status"
