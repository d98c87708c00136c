#!/usr/bin/env bash
# Installs a CUDA toolkit from PyPI wheels into a local folder, so that the
# `cuda` feature builds on a machine without a GPU or a system toolkit, and
# prints the environment to export:
#
#   eval "$(scripts/cuda-toolchain.sh)"            # nvcc + headers: enough for `cargo check --features cuda`
#   eval "$(scripts/cuda-toolchain.sh --link)"     # + libraries and a driver stub: `cargo build --features cuda`
#
# Every piece is pinned to CUDA 13.0: the lent H200s run driver 580 (CUDA
# 13.0), and PTX from a newer nvcc does not load there. nvidia-cuda-nvcc pulls
# nvvm and crt unpinned (13.5), whose ptxas output the 13.0 tools reject, so
# they are pinned and installed without dependency resolution.
# Idempotent: a second run only prints the exports.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dest=${RSAM_CUDA_DIR:-$root/.cuda}
link=0
[ "${1:-}" = "--link" ] && link=1

compile_pkgs=(
  nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
)
link_pkgs=(nvidia-cuda-nvrtc==13.0.88 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)

install() {
  local target=$1; shift
  if [ ! -f "$target/.complete" ]; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$target" "$@" >&2
    touch "$target/.complete"
  fi
}

install "$dest/compile" "${compile_pkgs[@]}"
cu=$dest/compile/nvidia/cu13
[ -x "$cu/bin/nvcc" ] || { echo "nvcc missing under $cu/bin" >&2; exit 1; }

if [ "$link" = 1 ]; then
  install "$dest/link-pkgs" "${link_pkgs[@]}"
  libdir=$dest/link
  mkdir -p "$libdir"
  # The wheels ship versioned sonames only; the linker wants plain names.
  for lib in "$dest"/link-pkgs/nvidia/cu13/lib/*.so.* "$cu"/lib/*.so.* "$dest"/link-pkgs/nvidia/*/lib/*.so.*; do
    [ -e "$lib" ] || continue
    base=$(basename "$lib"); plain=${base%%.so.*}.so
    ln -sf "$lib" "$libdir/$plain"
  done
  # libcuda.so is the driver, which no wheel ships: a link-only stub whose
  # soname is libcuda.so.1 and which defines every cu* symbol cudarc
  # declares. At run time the real driver's libcuda.so.1 is loaded instead.
  if [ ! -f "$libdir/libcuda.so" ]; then
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -n 1)
    [ -n "$cudarc" ] || { echo "cudarc sources not found: run 'cargo fetch' first" >&2; exit 1; }
    grep -rhoE 'pub fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/" | sed -E 's/pub fn (cu[A-Za-z0-9_]+)\(/\1/' \
      | sort -u | awk '{ printf "void %s(void) {}\n", $1 }' > "$libdir/cuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$libdir/libcuda.so" "$libdir/cuda_stub.c"
  fi
fi

echo "export PATH=\"$cu/bin:\$PATH\""
echo "export CUDA_ROOT=\"$cu\" CUDA_PATH=\"$cu\" CUDA_HOME=\"$cu\""
# No GPU to query here: the H200 is compute capability 9.0.
echo "export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
if [ "$link" = 1 ]; then
  echo "export RUSTFLAGS=\"-L $dest/link \${RUSTFLAGS:-}\""
fi
