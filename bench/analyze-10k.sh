#!/usr/bin/env bash
# Time `weft analyze` over a generated mesh of 10,000 resources (2,000 services, each with a
# Service, a Workload, a VirtualService with a canary split, a DestinationRule with subsets
# and an AuthorizationPolicy), spread over 200 files. One service in 20 routes to a
# misspelt host, so the analyzers also do their "did you mean" searches.
#
#   bench/analyze-10k.sh            # builds release, generates, runs 5 times, prints timings
#   RESOURCES_DIR=/tmp/x bench/analyze-10k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p weft
dir=${RESOURCES_DIR:-$(mktemp -d)}
python3 - "$dir" <<'PY'
import os, sys
out = sys.argv[1]
services = 2000
per_file = 10
for f in range(services // per_file):
    docs = []
    for i in range(f * per_file, (f + 1) * per_file):
        ns = f"team{i % 20}"
        name = f"svc{i}"
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 8080}}""")
        docs.append(f"""apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}, version: v1}}}}
spec:
  command: server
  ports: [{{name: http, port: 8080}}]""")
        target = f"svc-{i}" if i % 20 == 0 else name
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - match: [{{headers: {{user-type: {{exact: vip}}}}}}]
    route: [{{destination: {{host: {target}, subset: v1}}}}]
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {name}, subset: v1}}, weight: 10}}
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset"}}""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 100}}}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}""")
        docs.append(f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/{ns}/sa/default"]}}}}]
    to: [{{operation: {{methods: [GET, POST], paths: ["/api/*"]}}}}]""")
    with open(os.path.join(out, f"mesh-{f:03}.yaml"), "w") as fh:
        fh.write("\n---\n".join(docs) + "\n")
PY
count=$(cat "$dir"/*.yaml | grep -c '^kind:')
echo "generated $count resources in $(ls "$dir" | wc -l) files under $dir"
times=()
for run in 1 2 3 4 5; do
  start=$(date +%s%N)
  ./target/release/weft analyze -o json "$dir" > /tmp/weft-analyze-10k.json || true
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "weft analyze, $count resources: runs (ms): ${times[*]}"
echo "  min $(echo "$sorted" | head -1) ms, median $(echo "$sorted" | sed -n 3p) ms"
echo "  findings: $(grep -c '"code"' /tmp/weft-analyze-10k.json || true) (see /tmp/weft-analyze-10k.json)"
