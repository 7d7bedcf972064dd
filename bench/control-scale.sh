#!/usr/bin/env bash
# Control-plane scale (issue 4): one control plane (a child process, so its RSS and CPU
# are its own), 1,000 Services x 4 endpoints in 50 namespaces (one in ten with a
# VirtualService canary split and a DestinationRule), 2,000 simulated proxies (tonic
# clients speaking the real push protocol, ACKing every resource, multiplexed over 20
# HTTP/2 connections) on 127.0.0.1. Measures the time until every proxy has its full
# config ACKed, one-endpoint changes until every affected proxy has them (p50/p99), RSS
# and CPU. Runs twice: every proxy seeing every service (Istio's default) and a Sidecar
# egress scope of 3 namespaces per namespace.
#
#   bench/control-scale.sh                       # both scopes, full size
#   SERVICES=200 PROXIES_PER_SERVICE=1 bench/control-scale.sh
#   SCOPES=scoped CHANGES=100 bench/control-scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SERVICES=${SERVICES:-1000}
NAMESPACES=${NAMESPACES:-50}
ENDPOINTS=${ENDPOINTS:-4}
PROXIES_PER_SERVICE=${PROXIES_PER_SERVICE:-2}
CHANGES=${CHANGES:-50}
SCOPES=${SCOPES:-"scoped all"}
# 2,000 streams share 20 connections; the child and the clients need a few fds each.
ulimit -n 65536 2>/dev/null || true
cargo build --release -q -p weft-control --example scale
for scope in $SCOPES; do
  flag=""
  [ "$scope" = scoped ] && flag="--scoped"
  echo
  ./target/release/examples/scale run $flag \
    --services "$SERVICES" --namespaces "$NAMESPACES" --endpoints "$ENDPOINTS" \
    --proxies-per-service "$PROXIES_PER_SERVICE" --changes "$CHANGES"
done
echo
echo "targets: full push <= 2 s, one-endpoint change p99 <= 100 ms, RSS <= 200 MB"
