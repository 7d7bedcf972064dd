#!/usr/bin/env bash
# Proxy benchmark: direct vs one weft hop vs nginx vs HAProxy, same run, loopback only.
# Prints latency at fixed request rates (open loop), the latency each hop adds, max
# throughput, RSS and CPU per 1,000 requests, RSS with 100 and 5,000 services configured,
# and PASS/MISS per target. About 3 minutes with the defaults. See bench/README.md.
#
#   bench/proxy.sh                         # installs what is missing, builds, runs
#   DURATION=15 RATES="1000 5000 10000" bench/proxy.sh
#   PROXY_THREADS=2 bench/proxy.sh         # worker threads/processes of every proxy
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing nginx and haproxy (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx haproxy >/dev/null
  else
    echo "note: nginx/haproxy missing and apt-get unavailable (not root?): those rows are skipped"
  fi
fi
if ! command -v oha >/dev/null && [ ! -x "$HOME/.cargo/bin/oha" ]; then
  echo "installing oha (cargo install oha --locked; takes a few minutes once)"
  cargo install oha --locked -q
fi
if ! command -v python3 >/dev/null; then
  echo "error: python3 is needed to drive the benchmark" >&2
  exit 1
fi

cargo build --release -q -p weft -p weft-proxy
exec python3 bench/proxy_bench.py
