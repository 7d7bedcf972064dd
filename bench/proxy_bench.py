#!/usr/bin/env python3
"""Proxy benchmark driver (run it through bench/proxy.sh, which installs and builds).

One run, all on 127.0.0.1: an nginx upstream answering `200 ok`, then the same load
against it directly, through one `weft-proxy` hop (the lean proxy binary, gateway mode,
100 services configured, config pushed by a `weft control` process as in production),
through nginx and through HAProxy. Prints latency per load point, the latency each hop
adds over direct, closed-loop throughput, RSS and CPU per 1,000 requests, idle RSS with
100 and 5,000 services configured (control-plane mode; the multi-tool `weft proxy
--control` and `--config-dir` mode as extra rows),
and PASS/MISS per target. ONLY_RSS=1 measures the RSS points only.

Every process it starts is stopped at the end (also on Ctrl-C); every load is bounded by
its duration. Standard library only.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEFT = os.environ.get("WEFT_BIN", os.path.join(ROOT, "target", "release", "weft"))
# The lean proxy binary (data plane only), what `weft up` runs when it is next to `weft`.
WEFT_PROXY = os.environ.get("WEFT_PROXY_BIN",
                            os.path.join(ROOT, "target", "release", "weft-proxy"))
OHA = os.environ.get("OHA_BIN") or shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")
DURATION = int(os.environ.get("DURATION", "10"))  # seconds per load point
WARMUP = int(os.environ.get("WARMUP", "2"))
RATES = [int(r) for r in os.environ.get("RATES", "1000 5000").split()]
OPEN_CONNS = int(os.environ.get("OPEN_CONNS", "16"))  # open-loop connection pool
MAX_CONNS = int(os.environ.get("MAX_CONNS", "64"))  # closed-loop concurrency
# Worker threads / processes of every proxy under test (weft: tokio workers).
THREADS = int(os.environ.get("PROXY_THREADS", "1"))
SERVICES_SMALL = int(os.environ.get("SERVICES_SMALL", "100"))
SERVICES_LARGE = int(os.environ.get("SERVICES_LARGE", "5000"))
HOST = "svc0.bench.example"
TICKS = os.sysconf("SC_CLK_TCK")

# Targets from the issue.
TARGET_ADDED_P50_US = 60
TARGET_ADDED_P99_US = 250
TARGET_RSS_SMALL_MB = 10
TARGET_RSS_LARGE_MB = 25
TARGET_CPU_PER_1K = 0.05

procs = []  # everything started, stopped in reverse order at exit


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, env=None):
    out = open(log, "w")
    p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                         start_new_session=True)
    p.log_path = log
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for p in reversed(procs):
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    procs.clear()


def wait_for(what, check, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"error: {what} exited with {proc.returncode}; see {proc.log_path}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"error: {what} not ready after {timeout}s")


def http_get(port, host=HOST, path="/"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def ok_through(port):
    status, _ = http_get(port)
    return status == 200


# ---------------------------------------------------------------- process accounting

def tree(pid):
    """pid and its direct children (nginx master + workers)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return pids


def status_kb(pid, field):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / TICKS


def rss_mb(pid):
    return status_kb(pid, "VmRSS") / 1024


def settled_rss_mb(pid):
    """RSS once it stops moving (a config was just applied), polled, bounded."""
    last, deadline = -1.0, time.time() + 5
    while time.time() < deadline:
        now = rss_mb(pid)
        if abs(now - last) < 0.05:
            return now
        last = now
        time.sleep(0.25)
    return last


# ---------------------------------------------------------------- load

def oha(port, extra, duration):
    args = [OHA, "--no-tui", "--output-format", "json", "-z", f"{duration}s",
            "--host", HOST, *extra, f"http://127.0.0.1:{port}/"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        sys.exit(f"error: oha failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    codes = r.get("statusCodeDistribution", {})
    total = sum(codes.values())
    good = codes.get("200", 0)
    pct = r.get("latencyPercentiles", {})
    return {
        "rps": r["summary"]["requestsPerSec"],
        "total": total,
        # Requests still in flight when the duration ends are cut off by oha, not failed.
        "errors": total - good + sum(n for e, n in r.get("errorDistribution", {}).items()
                                     if e != "aborted due to deadline"),
        "p50": (pct.get("p50") or 0) * 1e6,
        "p90": (pct.get("p90") or 0) * 1e6,
        "p99": (pct.get("p99") or 0) * 1e6,
    }


def measure(name, port, pid):
    print(f"  {name}: warm-up {WARMUP}s", flush=True)
    oha(port, ["-c", str(OPEN_CONNS), "-q", "1000"], WARMUP)
    res = {"open": {}}
    for rate in RATES:
        print(f"  {name}: open loop {rate} rps for {DURATION}s", flush=True)
        before = cpu_seconds(pid) if pid else 0
        r = oha(port, ["-c", str(OPEN_CONNS), "-q", str(rate), "--latency-correction"], DURATION)
        if pid:
            r["cpu_per_1k"] = (cpu_seconds(pid) - before) / max(r["total"], 1) * 1000
        res["open"][rate] = r
    print(f"  {name}: closed loop, {MAX_CONNS} connections for {DURATION}s", flush=True)
    rss_before = rss_mb(pid) if pid else 0
    res["max"] = oha(port, ["-c", str(MAX_CONNS)], DURATION)
    if pid:
        res["rss_idle"] = rss_before
        res["rss_load"] = rss_mb(pid)
        res["rss_peak"] = status_kb(pid, "VmHWM") / 1024
    return res


# ---------------------------------------------------------------- configs

def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def nginx_conf(work, name, listen, workers, upstream=None):
    """nginx answering `200 ok` itself, or (with `upstream`) proxying to it over pooled
    keep-alive connections."""
    d = os.path.join(work, name)
    if upstream is None:
        pool, location = "", 'return 200 "ok\\n";'
    else:
        pool = (f"upstream up {{ server 127.0.0.1:{upstream}; keepalive 128; "
                f"keepalive_requests 1000000; }}")
        location = 'proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";'

    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    write(conf, f"""
worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  {pool}
  server {{
    listen 127.0.0.1:{listen} backlog=4096;
    location / {{ {location} }}
  }}
}}
""")
    return ["nginx", "-p", d, "-c", conf, "-e", f"{d}/error.log"]


def haproxy_conf(work, listen, upstream, threads):
    conf = os.path.join(work, "haproxy.cfg")
    write(conf, f"""
global
  nbthread {threads}
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend bench
  bind 127.0.0.1:{listen}
  default_backend upstream
backend upstream
  server up 127.0.0.1:{upstream} maxconn 4096
""")
    return ["haproxy", "-db", "-f", conf]


def weft_mesh(work, name, services, listen, upstream):
    """A gateway proxy with `services` Services, each with a VirtualService on the gateway
    and one instance (no sidecar, so plaintext) serving on the upstream port."""
    d = os.path.join(work, name)
    cfg = os.path.join(d, "config")
    os.makedirs(cfg, exist_ok=True)
    docs = ["""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  selector: {app: bench-gateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]"""]
    instances = [f"- {{name: gateway-0, namespace: bench, workload: gateway, "
                 f"labels: {{app: bench-gateway}}, address: 127.0.0.1, "
                 f"proxy: {{capture: gateway, ports: {{80: \"127.0.0.1:{listen}\"}}}}}}"]
    for i in range(services):
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc{i}, namespace: bench}}
spec:
  selector: {{app: svc{i}}}
  ports: [{{name: http, port: 80, targetPort: http}}]""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc{i}, namespace: bench}}
spec:
  hosts: [svc{i}.bench.example]
  gateways: [bench]
  http:
  - route: [{{destination: {{host: svc{i}}}}}]""")
        instances.append(f"- {{name: svc{i}-0, namespace: bench, workload: svc{i}, "
                         f"labels: {{app: svc{i}}}, address: 127.0.0.1, "
                         f"ports: {{http: {upstream}}}}}")
    write(os.path.join(cfg, "mesh.yaml"), "\n---\n".join(docs) + "\n")
    registry = os.path.join(d, "registry.yaml")
    write(registry, "instances:\n" + "\n".join(instances) + "\n")
    return cfg, registry


def weft_env():
    return dict(os.environ, TOKIO_WORKER_THREADS=str(THREADS),
                RUST_LOG=os.environ.get("WEFT_LOG", "info"))


def start_weft(work, name, services, upstream, mode="control"):
    """A gateway proxy with `services` services. `control` (production): the lean
    `weft-proxy` binary takes compiled config from a `weft control` process (started here,
    not measured); `control-multi`: the same with the multi-tool `weft proxy --control`;
    `config-dir`: `weft proxy` loads and compiles the YAML itself. Returns the proxy
    process, its listen port and the seconds from start until it routes."""
    listen, admin = free_port(), free_port()
    cfg, registry = weft_mesh(work, name, services, listen, upstream)
    began = time.time()
    if mode in ("control", "control-multi"):
        grpc, debug = free_port(), free_port()
        cp = start([WEFT, "control", "--config-dir", cfg, "--registry", registry,
                    "--listen", f"127.0.0.1:{grpc}", "--debug", f"127.0.0.1:{debug}",
                    "--token", "bench"],
                   os.path.join(work, f"{name}-control.log"), weft_env())
        wait_for(f"weft control ({name})", lambda: port_open(grpc), 60, cp)
        proxy = [WEFT_PROXY] if mode == "control" else [WEFT, "proxy"]
        args = proxy + ["--control", f"127.0.0.1:{grpc}", "--token", "bench"]
    else:
        args = [WEFT, "proxy", "--config-dir", cfg, "--registry", registry]
    p = start(args + ["--id", "gateway-0.bench", "--admin", f"127.0.0.1:{admin}"],
              os.path.join(work, f"{name}.log"), weft_env())
    wait_for(f"weft ({name}, {services} services, {mode})", lambda: ok_through(listen), 120, p)
    return p, listen, time.time() - began


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def stop(p):
    """Stops one process started by `start` (and forgets it)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def rss_point(work, name, services, upstream, mode):
    """Idle RSS of a weft proxy with `services` services, then stops it (and its control
    plane). Checks that the last service routes first."""
    started = len(procs)
    point = {"services": services, "mode": mode, "rss": None, "ready": None}
    try:
        p, port, ready = start_weft(work, name, services, upstream, mode)
        status, _ = http_get(port, host=f"svc{services - 1}.bench.example")
        if status != 200:
            raise SystemExit(f"answered {status} for the last service")
        point.update(rss=settled_rss_mb(p.pid), ready=ready)
    except SystemExit as e:
        # A point that fails is reported as such; the others still run.
        print(f"  weft ({mode}) with {services} services failed: {e}", flush=True)
        point["error"] = str(e)
    for q in reversed(procs[started:]):
        stop(q)
    del procs[started:]
    return point


# ---------------------------------------------------------------- report

def fmt(v, unit=""):
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:,.1f}{unit}"


def verdict(ok):
    return "PASS" if ok else "MISS"


def report(results, rss_points):
    direct = results.get("direct")
    if direct is not None:
        report_load(results)
    print()
    print("weft proxy RSS idle by config size (VmRSS once the config is applied and it routes;")
    print("`control`: the `weft-proxy` binary, config pushed by `weft control`, as in production,")
    print("the control plane not counted; `control-multi`: the same with the multi-tool")
    print("`weft proxy --control`; `config-dir`: `weft proxy` also loads and compiles the YAML)")
    print(f"  {'mode':<14} {'services':>8} {'RSS':>9} {'ready after':>12}")
    for r in rss_points:
        if r["rss"] is None:
            print(f"  {r['mode']:<14} {r['services']:>8,}    failed ({r['error']})")
        else:
            print(f"  {r['mode']:<14} {r['services']:>8,} {r['rss']:>7.1f}MB "
                  f"{r['ready']:>11.1f}s")
    rss = {(r["mode"], r["services"]): r["rss"] for r in rss_points}
    small = rss[("control", SERVICES_SMALL)] or float("inf")
    large = rss[("control", SERVICES_LARGE)] or float("inf")
    print()
    print("targets")
    rows = target_rows(results) if direct is not None else []
    rows += [(f"RSS idle, {SERVICES_SMALL} services <= {TARGET_RSS_SMALL_MB} MB (control)",
              f"{small:.1f} MB", small <= TARGET_RSS_SMALL_MB),
             (f"RSS idle, {SERVICES_LARGE} services <= {TARGET_RSS_LARGE_MB} MB (control)",
              f"{large:.1f} MB", large <= TARGET_RSS_LARGE_MB)]
    if direct is not None:
        cpu = max(results["weft"]["open"][r]["cpu_per_1k"] for r in RATES)
        rows.append((f"CPU per 1,000 requests <= {TARGET_CPU_PER_1K} s (worst load point)",
                     f"{cpu:.4f} s", cpu <= TARGET_CPU_PER_1K))
    for what, got, ok in rows:
        print(f"  {verdict(ok)}  {what:<52} {got}")
    if direct is not None:
        errors = sum(r["open"][k]["errors"] for r in results.values() for k in RATES)
        errors += sum(r["max"]["errors"] for r in results.values())
        if errors:
            print(f"  note: {errors} requests failed or were not 200 (see the tables)")


def report_load(results):
    direct = results["direct"]
    names = [n for n in ("weft", "nginx", "haproxy") if n in results]
    print()
    print(f"proxy benchmark: {DURATION}s per load point, open loop on {OPEN_CONNS} "
          f"keep-alive connections (latency-corrected), closed loop on {MAX_CONNS}; "
          f"{THREADS} worker thread(s)/process(es) per proxy; {os.cpu_count()} CPUs")
    for rate in RATES:
        print()
        print(f"open loop at {rate:,} req/s — latency µs (added over direct)"
              f"{'':8}  added p99 vs weft")
        print(f"  {'setup':<8} {'p50':>15} {'p90':>15} {'p99':>17} {'errors':>7}  "
              f"{'ratio':>6}")
        d = direct["open"][rate]
        print(f"  {'direct':<8} {fmt(d['p50']):>15} {fmt(d['p90']):>15} "
              f"{fmt(d['p99']):>17} {d['errors']:>7}")
        weft_added = results["weft"]["open"][rate]["p99"] - d["p99"]
        for n in names:
            r = results[n]["open"][rate]
            added = {k: r[k] - d[k] for k in ("p50", "p90", "p99")}
            ratio = added["p99"] / weft_added if weft_added > 0 else float("nan")
            print(f"  {n:<8} {fmt(r['p50']) + ' (+' + fmt(added['p50']) + ')':>15} "
                  f"{fmt(r['p90']) + ' (+' + fmt(added['p90']) + ')':>15} "
                  f"{fmt(r['p99']) + ' (+' + fmt(added['p99']) + ')':>17} "
                  f"{r['errors']:>7}  {ratio:>5.2f}x")
    print()
    print("closed loop (max throughput), memory and CPU of the proxy process(es)")
    print(f"  {'setup':<8} {'req/s':>9} {'x direct':>9} {'RSS idle':>9} {'RSS load':>9} "
          f"{'RSS peak':>9} " + " ".join(f"{'CPU-s/1k@' + str(r):>14}" for r in RATES))
    print(f"  {'direct':<8} {fmt(direct['max']['rps']):>9} {'1.00':>9}")
    for n in names:
        r = results[n]
        cpu = " ".join(f"{r['open'][rate]['cpu_per_1k']:>14.4f}" for rate in RATES)
        print(f"  {n:<8} {fmt(r['max']['rps']):>9} "
              f"{r['max']['rps'] / direct['max']['rps']:>9.2f} "
              f"{r['rss_idle']:>7.1f}MB {r['rss_load']:>7.1f}MB {r['rss_peak']:>7.1f}MB {cpu}")


def target_rows(results):
    direct, w = results["direct"], results["weft"]
    d1 = direct["open"][1000] if 1000 in direct["open"] else direct["open"][RATES[0]]
    w1 = w["open"][1000] if 1000 in w["open"] else w["open"][RATES[0]]
    added50, added99 = w1["p50"] - d1["p50"], w1["p99"] - d1["p99"]
    rows = [(f"added p50 at 1,000 rps <= {TARGET_ADDED_P50_US} µs", f"{added50:.0f} µs",
             added50 <= TARGET_ADDED_P50_US),
            (f"added p99 at 1,000 rps <= {TARGET_ADDED_P99_US} µs", f"{added99:.0f} µs",
             added99 <= TARGET_ADDED_P99_US)]
    if "haproxy" in results:
        for rate in RATES:
            hap = results["haproxy"]["open"][rate]["p99"] - direct["open"][rate]["p99"]
            mine = w["open"][rate]["p99"] - direct["open"][rate]["p99"]
            rows.append((f"added p99 at {rate:,} rps <= HAProxy's ({hap:.0f} µs)",
                         f"{mine:.0f} µs", mine <= hap))
    return rows


def main():
    for tool in (WEFT, WEFT_PROXY, OHA):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            sys.exit(f"error: {tool} not found (run bench/proxy.sh, which builds/installs it)")
    work = tempfile.mkdtemp(prefix="weft-bench-")
    results = {}
    try:
        up = free_port()
        p = start(nginx_conf(work, "upstream", up, 1), os.path.join(work, "upstream.log"))
        wait_for("upstream nginx", lambda: ok_through(up), 10, p)

        rss_points = []
        if os.environ.get("ONLY_RSS") != "1":
            weft, weft_port, _ = start_weft(work, "weft", SERVICES_SMALL, up)
            setups = [("direct", up, None), ("weft", weft_port, weft.pid)]
            if shutil.which("nginx"):
                ngx = free_port()
                p = start(nginx_conf(work, "proxy", ngx, THREADS, upstream=up),
                          os.path.join(work, "nginx.log"))
                wait_for("nginx proxy", lambda: ok_through(ngx), 10, p)
                setups.append(("nginx", ngx, p.pid))
            if shutil.which("haproxy"):
                hap = free_port()
                p = start(haproxy_conf(work, hap, up, THREADS),
                          os.path.join(work, "haproxy.log"))
                wait_for("haproxy", lambda: ok_through(hap), 10, p)
                setups.append(("haproxy", hap, p.pid))

            print(f"work dir {work}; upstream nginx on 127.0.0.1:{up}")
            for name, port, pid in setups:
                results[name] = measure(name, port, pid)
            # Only the upstream stays for the RSS points.
            for q in reversed(procs[1:]):
                stop(q)
            del procs[1:]

        points = [("control", SERVICES_SMALL), ("control", SERVICES_LARGE),
                  ("control-multi", SERVICES_SMALL),
                  ("config-dir", SERVICES_SMALL), ("config-dir", SERVICES_LARGE)]
        for mode, services in points:
            print(f"  weft ({mode}) with {services} services: idle RSS", flush=True)
            rss_points.append(rss_point(work, f"rss-{mode}-{services}", services, up, mode))
    finally:
        stop_all()
    report(results, rss_points)
    if os.environ.get("KEEP_WORK") != "1":
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
