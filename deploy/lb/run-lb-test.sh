#!/usr/bin/env bash
# Cache-affine load balancing with a real nginx: rsam replicas (tiny model)
# on loopback behind Debian's nginx, hashing on X-Rsam-Image-Id like the
# Ingress. Measures cache hit ratios (consistent hash vs one server vs
# round-robin) and throughput, then kills a replica mid-run; exits non-zero
# unless every assertion of deploy/lb/lb_test.py holds. Run by
# .ci/deploy-checks; figures in BENCHMARKS.md.
#
#   deploy/lb/run-lb-test.sh [--rsam target/debug/rsam] [lb_test.py options]
#
# Installs Debian's nginx if it is missing (as root; its service is not
# started). nginx runs in the foreground with its own config, pid, logs and
# temp paths in a temporary directory; every process is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

rsam=${CARGO_TARGET_DIR:-target}/debug/rsam
if [ "${1:-}" = "--rsam" ]; then
  rsam=$2
  shift 2
fi
timeout_s=${LB_TEST_TIMEOUT_S:-240}

[ -x "$rsam" ] || { echo "no rsam binary at $rsam (cargo test --no-run builds it)" >&2; exit 1; }
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  [ "$(id -u)" = 0 ] || { echo "apt-get needs root: install Debian's nginx package" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
"$nginx" -v 2>&1

workdir=$(mktemp -d "${TMPDIR:-/tmp}/rsam-lb-test.XXXXXX")
# nginx's workers run as nobody when the test runs as root: they must reach
# their temp paths inside.
chmod 0755 "$workdir"
: > "$workdir/pids"
cleanup() {
  # lb_test.py stops what it started and empties the pid list; whatever is
  # still listed (it was killed) is stopped here, by pid.
  local pid
  while read -r pid; do
    kill -TERM "$pid" 2>/dev/null || true
  done < "$workdir/pids"
  sleep 1
  while read -r pid; do
    kill -KILL "$pid" 2>/dev/null || true
  done < "$workdir/pids"
  rm -rf "$workdir"
}
trap cleanup EXIT

# In the background, so that a signal to this script is handled at once (bash
# runs traps only between foreground commands) and passed on: lb_test.py
# stops its processes on SIGTERM.
timeout --kill-after=10 "$timeout_s" \
  python3 deploy/lb/lb_test.py --rsam "$rsam" --nginx "$nginx" --workdir "$workdir" "$@" &
test_pid=$!
trap 'kill -TERM "$test_pid" 2>/dev/null; wait "$test_pid"; exit 143' TERM
trap 'kill -TERM "$test_pid" 2>/dev/null; wait "$test_pid"; exit 130' INT
wait "$test_pid"
