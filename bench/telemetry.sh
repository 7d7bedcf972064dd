#!/usr/bin/env bash
# Telemetry cost: the weft-proxy gateway hop with Istio metrics + access log + 1% tracing
# vs with all telemetry off, CPU per 1,000 requests, same run. See bench/README.md.
#
#   bench/telemetry.sh
#   DURATION=10 RATES="1000 5000" ROUNDS=5 bench/telemetry.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
  else
    echo "error: nginx is needed (upstream and collector)" >&2
    exit 1
  fi
fi
if ! command -v oha >/dev/null && [ ! -x "$HOME/.cargo/bin/oha" ]; then
  cargo install oha --locked -q
fi
cargo build --release -q -p weft -p weft-proxy
exec python3 bench/telemetry_bench.py
