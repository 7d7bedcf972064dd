#!/usr/bin/env python3
"""Telemetry cost benchmark driver (run it through bench/telemetry.sh).

The same `weft-proxy` gateway hop as bench/proxy.sh (100 services, config pushed by a
`weft control` process), measured twice in one run, on 127.0.0.1:

- **off**: `defaultProviders.metrics: []` (no Istio metrics), no access log, no tracing;
- **on**: Istio's standard metrics, an access log in Istio's default text format written
  to a file (`envoyFileAccessLog`), and tracing at 1% to a Zipkin collector (an nginx
  location answering 202).

For each, CPU seconds of the proxy per 1,000 requests at fixed open-loop rates, then the
ratio on/off against the issue's target (at most 10% more CPU). The two setups alternate
ROUNDS times and the medians are reported, so drift on a shared machine hits both.
Standard library only; every process it starts is stopped at the end.
"""

import os
import statistics
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
TARGET_RATIO = 1.10

# No default metrics provider: Istio metrics off (the proxy's own health metrics stay).
OFF = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultProviders:
      metrics: []
"""

ON = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: file-log
      envoyFileAccessLog: {path: %(log)s}
    - name: zipkin
      zipkin: {service: 127.0.0.1, port: %(zipkin)d}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: file-log}]
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 1
"""


def collector_conf(work, port):
    """nginx accepting Zipkin POSTs (202, body discarded)."""
    d = os.path.join(work, "collector")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    pb.write(conf, f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ return 202; }}
  }}
}}
""")
    return ["nginx", "-p", d, "-c", conf, "-e", f"{d}/error.log"]


def start_weft(work, name, upstream, extra_yaml):
    listen, admin, grpc, debug = (pb.free_port() for _ in range(4))
    cfg, registry = pb.weft_mesh(work, name, pb.SERVICES_SMALL, listen, upstream)
    with open(os.path.join(cfg, "telemetry.yaml"), "w") as f:
        f.write(extra_yaml)
    cp = pb.start([pb.WEFT, "control", "--config-dir", cfg, "--registry", registry,
                   "--listen", f"127.0.0.1:{grpc}", "--debug", f"127.0.0.1:{debug}",
                   "--token", "bench"],
                  os.path.join(work, f"{name}-control.log"), pb.weft_env())
    pb.wait_for(f"weft control ({name})", lambda: pb.port_open(grpc), 60, cp)
    p = pb.start([pb.WEFT_PROXY, "--control", f"127.0.0.1:{grpc}", "--token", "bench",
                  "--id", "gateway-0.bench", "--admin", f"127.0.0.1:{admin}"],
                 os.path.join(work, f"{name}.log"), pb.weft_env())
    pb.wait_for(f"weft ({name})", lambda: pb.ok_through(listen), 120, p)
    return p, cp, listen, admin


def istio_metrics_on(admin):
    _, body = pb.http_get(admin, host="127.0.0.1", path="/stats/prometheus")
    return b"istio_requests_total{" in body


def cpu_per_1k(port, pid):
    pb.oha(port, ["-c", str(pb.OPEN_CONNS), "-q", "1000"], pb.WARMUP)
    out = {}
    for rate in pb.RATES:
        before = pb.cpu_seconds(pid)
        r = pb.oha(port, ["-c", str(pb.OPEN_CONNS), "-q", str(rate), "--latency-correction"],
                   pb.DURATION)
        if r["errors"]:
            sys.exit(f"error: {r['errors']} failed requests at {rate} rps")
        out[rate] = (pb.cpu_seconds(pid) - before) / max(r["total"], 1) * 1000
    return out


def main():
    for tool in (pb.WEFT, pb.WEFT_PROXY, pb.OHA):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            sys.exit(f"error: {tool} not found (run bench/telemetry.sh)")
    work = tempfile.mkdtemp(prefix="weft-telemetry-bench-")
    samples = {"off": {r: [] for r in pb.RATES}, "on": {r: [] for r in pb.RATES}}
    log_lines = 0
    try:
        up = pb.free_port()
        p = pb.start(pb.nginx_conf(work, "upstream", up, 1), os.path.join(work, "upstream.log"))
        pb.wait_for("upstream nginx", lambda: pb.ok_through(up), 10, p)
        zipkin = pb.free_port()
        pb.start(collector_conf(work, zipkin), os.path.join(work, "collector.log"))
        pb.wait_for("zipkin collector", lambda: pb.port_open(zipkin), 10)
        access_log = os.path.join(work, "access.log")
        setups = {"off": OFF, "on": ON % {"log": access_log, "zipkin": zipkin}}
        for round_ in range(ROUNDS):
            for name, yaml in setups.items():
                print(f"  round {round_ + 1}/{ROUNDS}: telemetry {name}", flush=True)
                proxy, cp, port, admin = start_weft(work, f"{name}-{round_}", up, yaml)
                for rate, v in cpu_per_1k(port, proxy.pid).items():
                    samples[name][rate].append(v)
                if istio_metrics_on(admin) != (name == "on"):
                    sys.exit(f"error: Istio metrics are not {name} in the `{name}` setup")
                pb.stop(proxy)
                pb.stop(cp)
        if os.path.exists(access_log):
            with open(access_log) as f:
                log_lines = sum(1 for _ in f)
    finally:
        pb.stop_all()
    print()
    print(f"Telemetry cost: CPU seconds of the proxy per 1,000 requests, median of {ROUNDS} "
          f"rounds, {pb.DURATION}s per point, {pb.OPEN_CONNS} connections, "
          f"{pb.THREADS} worker thread(s)")
    print("on = Istio metrics + access log to a file + 1% tracing (Zipkin); off = none")
    print()
    print(f"| rate | off | on | on/off | target (<= {TARGET_RATIO:.2f}) |")
    print("|---|---|---|---|---|")
    for rate in pb.RATES:
        off = statistics.median(samples["off"][rate])
        on = statistics.median(samples["on"][rate])
        ratio = on / off if off else float("nan")
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        print(f"| {rate} rps | {off:.4f} | {on:.4f} | {ratio:.3f} | {verdict} |")
    print()
    print(f"access log lines written in the `on` runs: {log_lines} (the log is really on)")
    if log_lines == 0:
        sys.exit("error: the access log stayed empty: telemetry was not on")
    if os.environ.get("KEEP_WORK") != "1":
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
