// The weft dashboard: reads the control plane's /api/* every few seconds and draws the
// service graph (SVG, laid out here: no library, works offline), golden signals, config
// status, proxies and traces.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
let selectedTrace = null;

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function fmtRate(v) { return v >= 10 ? v.toFixed(0) : v.toFixed(1); }
function fmtPct(v) { return (v * 100).toFixed(v > 0 && v < 0.01 ? 2 : 1) + "%"; }
function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(v < 10 ? 1 : 0) + " ms";
}
function fmtUs(us) { return fmtMs(us / 1000); }

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function windowSeconds() { return document.getElementById("window").value; }

// ---------------------------------------------------------------------------------------
// Graph
// ---------------------------------------------------------------------------------------

// Columns by longest path from the callers (cycles are cut where they close).
function layers(nodes, edges) {
  const out = new Map(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let moved = false;
    for (const e of edges) {
      if (e.source === e.destination) continue;
      const want = out.get(e.source) + 1;
      if (want > out.get(e.destination) && want < nodes.length) {
        out.set(e.destination, want);
        moved = true;
      }
    }
    if (!moved) break;
  }
  return out;
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function edgeClass(e) {
  if (e.rps === 0 && e.tcp_connections_per_second === 0) return "idle";
  if (e.error_rate >= 0.05) return "bad";
  if (e.error_rate > 0.01) return "warn";
  return "ok";
}

function edgeLabel(e) {
  const lock = e.mtls === "mutual_tls" ? "mTLS · " : e.mtls === "partial" ? "partly mTLS · " : "";
  if (e.protocol === "tcp") {
    return lock + fmtRate(e.tcp_connections_per_second) + " conn/s · " +
      fmtRate(e.tcp_bytes_per_second / 1024) + " KiB/s";
  }
  return lock + fmtRate(e.rps) + " rps · " + fmtPct(e.error_rate) + " err · p99 " + fmtMs(e.p99_ms);
}

function drawGraph(g) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  document.getElementById("graph-empty").hidden = g.nodes.length > 0;
  const W = 190, H = 44, COL = 450, ROW = 86, PAD = 24;
  const layer = layers(g.nodes, g.edges);
  const columns = [];
  for (const n of g.nodes) {
    const l = layer.get(n.id);
    (columns[l] = columns[l] || []).push(n);
  }
  const pos = new Map();
  let maxRows = 1;
  columns.forEach((col, c) => {
    (col || []).forEach((n, r) => pos.set(n.id, { x: PAD + c * COL, y: PAD + r * ROW }));
    maxRows = Math.max(maxRows, (col || []).length);
  });
  const width = PAD * 2 + Math.max(columns.length - 1, 0) * COL + W;
  const height = PAD * 2 + (maxRows - 1) * ROW + H + 30;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", height);
  const defs = el("defs", {}, svg);
  for (const cls of ["ok", "warn", "bad", "idle"]) {
    const m = el("marker", {
      id: "arrow-" + cls, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
    }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead " + cls,
      fill: { ok: "#2f9e44", warn: "#e67700", bad: "#e03131", idle: "#adb5bd" }[cls] }, m);
  }
  const edgesLayer = el("g", { class: "edges" }, svg);
  const pairCount = new Map();
  for (const e of g.edges) {
    const a = pos.get(e.source), b = pos.get(e.destination);
    if (!a || !b) continue;
    const pair = e.source + "→" + e.destination;
    const nth = pairCount.get(pair) || 0;
    pairCount.set(pair, nth + 1);
    const cls = edgeClass(e);
    const group = el("g", {
      class: "edge " + cls + (e.mtls === "mutual_tls" ? " mtls" : " plain"),
      "data-source": e.source,
      "data-destination": e.destination,
      "data-service": e.service,
      "data-protocol": e.protocol,
      "data-rps": e.rps.toFixed(2),
      "data-error-rate": e.error_rate.toFixed(4),
      "data-p99": e.p99_ms === null ? "" : e.p99_ms.toFixed(1),
      "data-mtls": e.mtls,
      "data-reporter": e.reporter,
    }, edgesLayer);
    let d, lx, ly;
    const bend = nth * 26;
    if (e.source === e.destination) {
      d = `M${a.x + W - 30},${a.y} C${a.x + W},${a.y - 50} ${a.x + W + 40},${a.y} ${a.x + W},${a.y + H / 2}`;
      lx = a.x + W + 10; ly = a.y - 24;
    } else if (b.x > a.x) {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const mx = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mx},${y1 + bend} ${mx},${y2 + bend} ${x2},${y2}`;
      lx = mx; ly = (y1 + y2) / 2 + bend - 6;
    } else {
      // Back or same-column edge: loop below the boxes.
      const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y + H;
      const dip = Math.max(y1, y2) + 40 + bend;
      d = `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`;
      lx = (x1 + x2) / 2; ly = dip - 8;
    }
    el("path", { d, "marker-end": `url(#arrow-${cls})` }, group);
    const label = el("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, group);
    label.textContent = edgeLabel(e);
    const title = el("title", {}, group);
    title.textContent = `${e.source} → ${e.destination} (${e.service}), reported by the ${e.reporter}`;
  }
  const nodesLayer = el("g", { class: "nodes" }, svg);
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const group = el("g", {
      class: "node " + n.kind, "data-node": n.id, "data-workload": n.workload,
      "data-version": n.version, transform: `translate(${p.x},${p.y})`,
    }, nodesLayer);
    el("rect", { width: W, height: H, rx: 6 }, group);
    const name = el("text", { x: 10, y: 18, class: "name" }, group);
    name.textContent = n.kind === "workload" ? n.workload : n.id;
    const sub = el("text", { x: 10, y: 34, class: "version" }, group);
    sub.textContent = n.kind === "workload"
      ? `${n.version === "unknown" ? "no version" : n.version} · ${n.namespace}`
      : n.kind === "service" ? "service, no workload" : "outside the mesh";
  }
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

function sparkline(points) {
  if (!points.length) return "";
  const w = 160, h = 28, max = Math.max(...points.map((p) => p.rps), 0.001);
  const t0 = points[0].t, span = Math.max(points[points.length - 1].t - t0, 1);
  const coords = points.map((p) =>
    `${((p.t - t0) / span * w).toFixed(1)},${(h - p.rps / max * (h - 2) - 1).toFixed(1)}`);
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">` +
    `<polyline points="${coords.join(" ")}"/></svg>`;
}

async function drawServices(s) {
  const rows = await Promise.all(s.services.map(async (svc) => {
    let spark = "";
    try {
      const sig = await getJson(`/api/services/${encodeURIComponent(svc.service)}/signals`);
      spark = sparkline(sig.points);
    } catch (_) { /* a service that just went away */ }
    return `<tr class="service" data-service="${esc(svc.service)}">` +
      `<td>${esc(svc.service)}</td><td>${svc.workloads.map(esc).join("<br>")}</td>` +
      `<td class="num">${fmtRate(svc.rps)}</td><td class="num">${fmtPct(svc.error_rate)}</td>` +
      `<td class="num">${fmtMs(svc.p50_ms)}</td><td class="num">${fmtMs(svc.p99_ms)}</td>` +
      `<td>${spark}</td></tr>`;
  }));
  document.querySelector("#services tbody").innerHTML =
    rows.join("") || `<tr><td colspan="7" class="muted">no traffic yet</td></tr>`;
}

function drawConfig(report) {
  const order = { rejected: 0, error: 1, accepted: 2 };
  const objects = [...report.objects].sort((a, b) =>
    (order[a.status] ?? 3) - (order[b.status] ?? 3) ||
    (a.kind + a.namespace + a.name).localeCompare(b.kind + b.namespace + b.name));
  const rows = objects.map((o) => {
    const reasons = o.errors.map((e) => (e.field ? e.field + ": " : "") + e.reason)
      .concat(o.nacks);
    const name = o.namespace ? `${o.namespace}/${o.name}` : o.name;
    return `<tr class="config-row ${esc(o.status)}" data-kind="${esc(o.kind)}" ` +
      `data-name="${esc(name)}" data-status="${esc(o.status)}">` +
      `<td>${esc(o.kind)}</td><td>${esc(name)}</td>` +
      `<td><span class="badge ${esc(o.status)}">${esc(o.status)}</span></td>` +
      `<td class="reason">${reasons.map(esc).join("<br>")}</td>` +
      `<td class="num">${o.programmed} of ${o.proxies}</td>` +
      `<td class="muted" title="${esc(o.origin)}">${esc(o.origin.split("/").pop())}</td></tr>`;
  });
  for (const r of report.rejected_resources) {
    rows.unshift(`<tr class="config-row rejected" data-kind="resource" ` +
      `data-name="${esc(r.resource)}" data-status="nacked">` +
      `<td>resource</td><td>${esc(r.resource)}</td>` +
      `<td><span class="badge NACKED">NACKed by ${esc(r.proxy)}</span></td>` +
      `<td class="reason">${esc(r.reason)}</td><td></td>` +
      `<td class="muted">${r.origins.map(esc).join(", ")}</td></tr>`);
  }
  document.querySelector("#config tbody").innerHTML =
    rows.join("") || `<tr><td colspan="6" class="muted">no config objects</td></tr>`;
}

function drawProxies(proxies) {
  const rows = proxies.map((p) => {
    const scrape = !p.admin_address ? `<span class="muted">no admin address</span>`
      : !p.scrape ? `<span class="muted">${esc(p.admin_address)}</span>`
      : p.scrape.ok ? `<span class="badge ok">ok</span> ${p.scrape.samples} samples`
      : `<span class="badge failed">failed</span> ${esc(p.scrape.error)}`;
    const nacks = p.nacks.length ? `<br><span class="reason">${p.nacks.map(esc).join("<br>")}</span>` : "";
    return `<tr class="proxy" data-proxy="${esc(p.id)}" data-sync="${p.sync}">` +
      `<td>${esc(p.id)}<br><span class="muted">${esc(p.address)}</span></td>` +
      `<td>${esc(p.identity)}</td>` +
      `<td>${esc(p.config_version.slice(0, 12))}<br><span class="muted">` +
      `${p.resources_acked} resources acked</span></td>` +
      `<td><span class="badge ${p.sync}">${p.sync}</span>${nacks}</td>` +
      `<td>${esc(p.cert_expiry || "–")}</td><td>${scrape}</td></tr>`;
  });
  document.querySelector("#proxies tbody").innerHTML =
    rows.join("") || `<tr><td colspan="6" class="muted">no proxy connected</td></tr>`;
}

function drawTraces(list) {
  if (!selectedTrace && list.traces.length) selectedTrace = list.traces[0].trace_id;
  const rows = list.traces.map((t) =>
    `<tr class="trace${t.trace_id === selectedTrace ? " selected" : ""}${t.errors ? " failed" : ""}" ` +
    `data-trace="${esc(t.trace_id)}"><td>${esc(t.root || "(no root)")}` +
    `<br><span class="muted">${esc(t.trace_id)}</span></td>` +
    `<td>${t.services.map(esc).join(", ")}</td><td class="num">${t.spans}</td>` +
    `<td class="num">${fmtUs(t.duration_us)}</td></tr>`);
  document.querySelector("#traces tbody").innerHTML =
    rows.join("") || `<tr><td colspan="4" class="muted">no traces yet</td></tr>`;
  for (const tr of document.querySelectorAll("#traces tbody tr.trace")) {
    tr.onclick = () => { selectedTrace = tr.dataset.trace; refresh(); };
  }
}

async function drawWaterfall() {
  const box = document.getElementById("waterfall");
  if (!selectedTrace) return;
  let t;
  try { t = await getJson(`/api/traces/${selectedTrace}`); } catch (_) { return; }
  const total = Math.max(t.duration_us, 1);
  box.innerHTML = `<h3>${esc(t.root)} <span class="muted">${fmtUs(t.duration_us)}, ` +
    `${t.spans} spans</span></h3>` + t.span_list.map((s) => {
    const left = (s.offset_us / total * 100).toFixed(2);
    const width = Math.max(s.duration / total * 100, 0.3).toFixed(2);
    const status = s.tags && s.tags["http.status_code"] ? " " + s.tags["http.status_code"] : "";
    return `<div class="span-row${s.error ? " error" : ""}" data-span="${esc(s.id)}">` +
      `<div class="span-name" style="padding-left:${s.depth * 12}px" title="${esc(s.name)}">` +
      `${esc(s.service)} <span class="kind">${esc(s.kind || "")}${esc(status)}</span><br>` +
      `${esc(s.name)}</div><div class="span-track"><div class="span-bar" ` +
      `style="left:${left}%;width:${width}%"></div></div>` +
      `<div class="num">${fmtUs(s.duration)}</div></div>`;
  }).join("");
}

// ---------------------------------------------------------------------------------------

async function refresh() {
  const w = windowSeconds();
  try {
    const [graph, services, config, proxies, traces] = await Promise.all([
      getJson(`/api/graph?window=${w}`), getJson(`/api/services?window=${w}`),
      getJson("/api/config"), getJson("/api/proxies"), getJson("/api/traces?limit=50"),
    ]);
    drawGraph(graph);
    drawConfig(config);
    drawProxies(proxies);
    drawTraces(traces);
    await Promise.all([drawServices(services), drawWaterfall()]);
    const rejected = config.objects.filter((o) => o.status !== "accepted").length;
    document.getElementById("summary").textContent =
      `${proxies.length} proxies · ${graph.edges.length} edges · ` +
      `${config.objects.length} config objects (${rejected} not accepted) · ` +
      `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    document.getElementById("summary").textContent = "cannot reach the control plane: " + e.message;
  }
}

document.getElementById("window").onchange = refresh;
refresh();
setInterval(refresh, REFRESH_MS);
