// Switchboard dashboard: polls /dashboard/api/overview every 1.5 s, streams
// /dashboard/api/trace (Server-Sent Events), and drives the publish console,
// token tool and connection inspector. No dependencies.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const POLL_MS = 1500;
const HISTORY = 60; // chart points
const MAX_TRACE_ROWS = 500;

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))));
}

async function call(method, path, body) {
  const opts = { method, headers: { "X-Switchboard-Dashboard": "1" }, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  if (res.status === 401) {
    location.href = "/dashboard/login";
    throw new Error("logged out");
  }
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

// ---- tabs
function showTab() {
  const name = (location.hash || "#overview").slice(1);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("active", s.id === "tab-" + name);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.tab === name);
}

// ---- charts
const series = { msgsIn: [], msgsOut: [], bytesIn: [], bytesOut: [], slow: [], rest: [], upstream: [], p50: [], p99: [] };
let last = null;

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

// draw draws each line's points; with dots, also a dot on each (for series
// with few points, such as the latency of polls that saw sends).
function draw(svg, lines, dots = false) {
  const SVG = "http://www.w3.org/2000/svg";
  const max = Math.max(1, ...lines.flatMap((l) => l.data));
  const shapes = lines.flatMap((l) => {
    const xy = l.data.map((v, i) => [(i * 300) / (HISTORY - 1), 80 - (v / max) * 76]);
    const p = document.createElementNS(SVG, "polyline");
    p.setAttribute("points", xy.map(([x, y]) => `${x},${y}`).join(" "));
    p.setAttribute("class", l.cls);
    if (!dots) return [p];
    return [p, ...xy.map(([x, y]) => {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", x);
      c.setAttribute("cy", y);
      c.setAttribute("r", 2);
      c.setAttribute("class", l.cls);
      return c;
    })];
  });
  svg.replaceChildren(...shapes);
}

// quantile estimates the q-quantile of the observations between two polls
// of a cumulative histogram ({buckets: [{le, count}], count}) as Prometheus'
// histogram_quantile does: linear within the bucket that holds it; past the
// last bound, the last bound. null when nothing was observed.
function quantile(q, cur, prev) {
  const n = cur.count - (prev ? prev.count : 0);
  if (!(n > 0)) return null;
  const rank = q * n;
  let lo = 0, below = 0;
  for (let i = 0; i < cur.buckets.length; i++) {
    const b = cur.buckets[i];
    const c = b.count - (prev && prev.buckets[i] ? prev.buckets[i].count : 0);
    if (c >= rank) return lo + (b.le - lo) * (c > below ? (rank - below) / (c - below) : 1);
    lo = b.le;
    below = c;
  }
  return lo;
}

const fmt = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e3 ? (n / 1e3).toFixed(1) + "k" : (Math.round(n * 10) / 10).toString());

// growth returns what grew between the last poll and o, summed over the
// nodes present (and answering) in both: counters, and the delivery latency
// histogram's buckets; and each node's message rates for the nodes table.
function growth(o, dt) {
  const sum = {}, buckets = new Map(), perNode = {};
  let count = 0;
  for (const n of o.nodes) {
    const prev = last.nodes.get(n.node_id);
    if (n.error || !prev) continue;
    const r = {};
    for (const [k, v] of Object.entries(n.counters)) {
      const d = Math.max(0, v - (prev.c[k] || 0));
      sum[k] = (sum[k] || 0) + d;
      r[k] = d / dt;
    }
    perNode[n.node_id] = r;
    const d = n.latency.count - prev.lat.count;
    if (d <= 0) continue; // nothing new, or the node restarted
    count += d;
    for (const b of n.latency.buckets) {
      const pb = prev.lat.buckets.find((x) => x.le === b.le);
      buckets.set(b.le, (buckets.get(b.le) || 0) + b.count - (pb ? pb.count : 0));
    }
  }
  const lat = { count, buckets: [...buckets].sort((a, b) => a[0] - b[0]).map(([le, c]) => ({ le, count: c })) };
  return { sum, lat, perNode };
}

let nodeRates = {};

function rates(o) {
  const now = Date.parse(o.time);
  if (last) {
    const dt = Math.max(0.001, (now - last.t) / 1000);
    const g = growth(o, dt);
    nodeRates = g.perNode;
    const r = (k) => (g.sum[k] || 0) / dt;
    push(series.msgsIn, r("messages_in"));
    push(series.msgsOut, r("messages_out"));
    push(series.bytesIn, r("bytes_in"));
    push(series.bytesOut, r("bytes_out"));
    push(series.slow, r("slow_consumer_closes"));
    // delivery latency of the sends written between two polls, in ms
    const p50 = quantile(0.5, g.lat, null), p99 = quantile(0.99, g.lat, null);
    if (p50 !== null) {
      push(series.p50, 1000 * p50);
      push(series.p99, 1000 * p99);
      draw($("#chart-delivery"), [{ data: series.p50, cls: "in" }, { data: series.p99, cls: "out" }], true);
      $("#rate-delivery").textContent = `p50 ${fmt(1000 * p50)} · p99 ${fmt(1000 * p99)}`;
    }
    // mean time of this node's calls made between two polls, in ms (0 when none)
    const mean = (k) => {
      const n = (o.counters[k + "_count"] || 0) - (last.c[k + "_count"] || 0);
      return n > 0 ? (1000 * ((o.counters[k + "_seconds_sum"] || 0) - (last.c[k + "_seconds_sum"] || 0))) / n : 0;
    };
    push(series.rest, mean("rest_request"));
    push(series.upstream, mean("upstream_request"));
    draw($("#chart-latency"), [{ data: series.rest, cls: "in" }, { data: series.upstream, cls: "out" }]);
    $("#rate-latency").textContent = `${fmt(series.rest.at(-1))} · ${fmt(series.upstream.at(-1))}`;
    draw($("#chart-msgs"), [{ data: series.msgsIn, cls: "in" }, { data: series.msgsOut, cls: "out" }]);
    draw($("#chart-bytes"), [{ data: series.bytesIn, cls: "in" }, { data: series.bytesOut, cls: "out" }]);
    draw($("#chart-slow"), [{ data: series.slow, cls: "out" }]);
    $("#rate-msgs").textContent = `${fmt(series.msgsIn.at(-1))} in · ${fmt(series.msgsOut.at(-1))} out`;
    $("#rate-bytes").textContent = `${fmt(series.bytesIn.at(-1))} in · ${fmt(series.bytesOut.at(-1))} out`;
  }
  const slow = o.nodes.reduce((n, x) => n + (x.counters.slow_consumer_closes || 0), 0);
  $("#total-slow").textContent = `${slow} in total`;
  last = { t: now, c: o.counters, nodes: new Map(o.nodes.filter((n) => !n.error).map((n) => [n.node_id, { c: n.counters, lat: n.latency }])) };
}

function render(o) {
  $("#node-id").textContent = "node " + o.node_id;
  const cl = o.cluster || {};
  const seen = new Map((cl.enabled ? cl.nodes : []).map((n) => [n.node_id, n]));
  rates(o);
  fill($("#nodes tbody"), o.nodes.map((n) => {
    const hb = seen.get(n.node_id) || {};
    const r = nodeRates[n.node_id];
    const status = n.error ? n.error : n.local ? "this node" : hb.last_seen ? "seen " + new Date(hb.last_seen).toLocaleTimeString() : "";
    return [n.node_id, n.error ? hb.connections ?? "" : n.connections, r ? fmt(r.messages_in || 0) : "", r ? fmt(r.messages_out || 0) : "",
      hb.started ? new Date(hb.started).toLocaleString() : "", status];
  }));
  $("#nats").textContent = cl.enabled ? `NATS ${cl.nats.status} ${cl.nats.url || ""} · JetStream ${cl.jetstream && cl.jetstream.enabled ? "on" : "off"}` : "single node (no cluster)";
  const hubs = [], groups = [];
  for (const ns of o.namespaces) {
    for (const h of ns.hubs) hubs.push([ns.name, h.name, h.connections, h.users, h.groups]);
    for (const g of ns.top_groups) groups.push([ns.name, g.hub, g.group, g.members]);
  }
  groups.sort((a, b) => b[3] - a[3]);
  fill($("#hubs tbody"), hubs);
  fill($("#groups tbody"), groups.slice(0, 20));
  fill($("#streams tbody"), o.streams.map((s) => [s.ns, s.hub, s.group, s.bytes < 0 ? "?" : fmt(s.bytes), s.messages,
    s.first_offset, s.last_offset, s.epoch, `${s.max_messages} msgs · ${s.max_age}`]));
  const up = o.upstream;
  const statuses = Object.entries(up.requests).sort().map(([s, n]) => `${s}: ${n}`).join(" · ") || "none yet";
  fill($("#upstream tbody"), [["requests by status", statuses], ["retries", up.retries], ["dropped", up.dropped], ["queued", up.queued]]);
  $("#history").replaceChildren(tree(o.history));
  $("#connectors").replaceChildren(tree(o.connectors));
}

// tree renders a JSON value as nested tables: an array of objects as rows
// under the union of their keys, an object as key/value rows.
function tree(v, depth = 0) {
  if (depth > 6 || v === null || typeof v !== "object") return document.createTextNode(v == null ? "" : String(v));
  if (Array.isArray(v)) {
    if (v.length === 0) return el("span", { class: "muted" }, "none");
    if (v.every((x) => x && typeof x === "object" && !Array.isArray(x))) {
      const keys = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return el("table", { class: "tree" }, el("thead", {}, el("tr", {}, ...keys.map((k) => el("th", {}, k)))),
        el("tbody", {}, ...v.map((x) => el("tr", {}, ...keys.map((k) => el("td", {}, tree(x[k], depth + 1)))))));
    }
    return document.createTextNode(v.map((x) => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", "));
  }
  const entries = Object.entries(v);
  if (entries.length === 0) return el("span", { class: "muted" }, "none");
  return el("table", { class: "tree" }, el("tbody", {}, ...entries.map(([k, x]) => el("tr", {}, el("th", {}, k), el("td", {}, tree(x, depth + 1))))));
}

async function poll() {
  try {
    render(await call("GET", "/dashboard/api/overview"));
  } catch (e) {
    $("#node-id").textContent = "overview: " + e.message;
  }
  setTimeout(poll, POLL_MS);
}

// ---- live trace
let source = null;

function traceDetail(e) {
  switch (e.kind) {
    case "connected": return `${e.protocol || "no subprotocol"}${e.groups ? " groups " + e.groups.join(",") : ""}`;
    case "disconnected": return `reason: ${e.reason || "(none)"}`;
    case "message": return `to ${e.target}${e.target_name ? " " + e.target_name : ""} · ${e.type} · ${e.size} B`;
    case "webhook": return `${e.event} ${e.url} → ${e.status || e.error} in ${e.ms} ms`;
  }
  return "";
}

function startTrace(ev) {
  ev?.preventDefault();
  stopTrace();
  const q = new URLSearchParams();
  for (const [k, v] of new FormData($("#trace-form"))) if (v) q.set(k, v);
  source = new EventSource("/dashboard/api/trace?" + q);
  $("#trace-status").textContent = "connecting…";
  source.onopen = () => ($("#trace-status").textContent = "watching" + (q.toString() ? " (" + q + ")" : ""));
  source.onerror = () => ($("#trace-status").textContent = "disconnected; retrying");
  source.addEventListener("dropped", (m) => ($("#trace-status").textContent = `watching · ${m.data} events dropped (too many to show)`));
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const who = [e.conn, e.user && "user " + e.user].filter(Boolean).join(" · ");
    const row = el("tr", { class: "k-" + e.kind }, el("td", {}, new Date(e.time).toLocaleTimeString()), el("td", {}, e.kind), el("td", {}, e.node), el("td", {}, e.hub), el("td", {}, who), el("td", {}, traceDetail(e)));
    const tbody = $("#trace tbody");
    tbody.prepend(row);
    while (tbody.rows.length > MAX_TRACE_ROWS) tbody.lastElementChild.remove();
  };
}

function stopTrace() {
  if (source) source.close();
  source = null;
  $("#trace-status").textContent = "stopped";
}

// ---- publish, token, inspector
function formObject(form) {
  const o = {};
  for (const [k, v] of new FormData(form)) o[k] = v;
  return o;
}

async function publish(ev) {
  ev.preventDefault();
  const f = formObject(ev.target);
  const out = $("#publish-result");
  try {
    const r = await call("POST", "/dashboard/api/send", { ns: f.ns, hub: f.hub, target: f.target, name: f.name, content_type: f.content_type, data: f.data, base64: !!f.base64 });
    out.textContent = `sent (${r.bytes} bytes)`;
  } catch (e) {
    out.textContent = "error: " + e.message;
  }
}

const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

async function token(ev) {
  ev.preventDefault();
  const f = formObject(ev.target);
  const out = $("#token-result");
  try {
    const r = await call("POST", "/dashboard/api/token", { ns: f.ns, hub: f.hub, user: f.user, roles: list(f.roles), groups: list(f.groups), minutes: Number(f.minutes) || 0 });
    out.textContent = JSON.stringify(r, null, 2);
  } catch (e) {
    out.textContent = "error: " + e.message;
  }
}

let inspected = null;

async function inspect(ev) {
  ev?.preventDefault();
  const f = formObject($("#inspect-form"));
  const tbody = $("#inspect-result tbody");
  $("#inspect-close").disabled = true;
  try {
    const c = await call("GET", "/dashboard/api/conn?" + new URLSearchParams(f));
    inspected = f;
    const rows = [["id", c.id], ["hub", c.hub], ["node", c.node + (c.local ? " (this node)" : "")]];
    rows.push(["user", c.user || "(anonymous)"], ["groups", (c.groups || []).join(", ") || "(none)"], ["protocol", c.protocol || "(none)"], ["dialect", c.dialect], ["connected", new Date(c.connected).toLocaleString()], ["queue", `${c.queued_items} items, ${c.queued_bytes} bytes`]);
    fill(tbody, rows);
    $("#inspect-close").disabled = false;
  } catch (e) {
    inspected = null;
    fill(tbody, [["error", e.message]]);
  }
}

async function closeConn(ev) {
  ev.preventDefault();
  if (!inspected) return;
  const reason = new FormData(ev.target).get("reason");
  try {
    await call("POST", "/dashboard/api/close", { ns: inspected.ns, hub: inspected.hub, id: inspected.id, reason });
    $("#close-result").textContent = `closing ${inspected.id}`;
  } catch (e) {
    $("#close-result").textContent = "error: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  window.addEventListener("hashchange", showTab);
  showTab();
  $("#trace-form").addEventListener("submit", startTrace);
  $("#trace-stop").addEventListener("click", stopTrace);
  $("#trace-clear").addEventListener("click", () => $("#trace tbody").replaceChildren());
  $("#publish-form").addEventListener("submit", publish);
  $("#token-form").addEventListener("submit", token);
  $("#inspect-form").addEventListener("submit", inspect);
  $("#close-form").addEventListener("submit", closeConn);
  $("#logout").addEventListener("click", async () => {
    await call("POST", "/dashboard/logout").catch(() => {});
    location.href = "/dashboard/login";
  });
  poll();
});
