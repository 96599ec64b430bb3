// The live dashboard's page: plain JavaScript, no build step. signalr.js is
// @microsoft/signalr's browser build, served by the app from node_modules.
//
// Connects through the app's negotiate endpoint (/api/negotiate), then, for each ticked
// segment, asks the app to add its connection to the segment's group; every "point" the
// publisher sends to a joined group is drawn on that segment's chart (the last 60 points).
const $ = (sel) => document.querySelector(sel);
const KEEP = 60;
const params = new URLSearchParams(location.search);
const initial = new Set((params.get("segments") ?? "plant-a,eurusd").split(",").filter(Boolean));

// What the tests (and the curious) can look at.
const dash = (window.dash = { received: [], joined: [], status: "connecting", ready: false, errors: [] });
const series = new Map(); // segment → {points: [{t, value}], el}

function setStatus(s) {
  dash.status = s;
  $("#status").textContent = s;
  $("#status").className = `status ${s}`;
}

function chart(segment) {
  const el = document.createElement("div");
  el.className = `chart ${segment.kind}`;
  el.dataset.segment = segment.name;
  el.innerHTML = `<h2><span></span><b class="last"></b></h2>
    <svg viewBox="0 0 600 140" preserveAspectRatio="none"><polyline points=""/></svg>`;
  el.querySelector("h2 span").textContent = `${segment.name} (${segment.kind})`;
  return el;
}

function draw(name) {
  const s = series.get(name);
  if (!s) return;
  const pts = s.points;
  const lo = Math.min(...pts.map((p) => p.value));
  const hi = Math.max(...pts.map((p) => p.value));
  const span = hi - lo || 1;
  s.el.querySelector("polyline").setAttribute(
    "points",
    pts.map((p, i) => `${((i / (KEEP - 1)) * 600).toFixed(1)},${(135 - ((p.value - lo) / span) * 130).toFixed(1)}`).join(" "),
  );
  const last = pts[pts.length - 1];
  s.el.querySelector(".last").textContent = last ? `${last.value}${s.segment.unit}` : "";
}

async function membership(name, join) {
  const r = await fetch(`/api/segments/${encodeURIComponent(name)}/connections/${encodeURIComponent(dash.connectionId)}`, {
    method: join ? "PUT" : "DELETE",
  });
  if (!r.ok) throw new Error(`${join ? "join" : "leave"} ${name}: ${r.status}`);
}

async function toggle(segment, on) {
  if (on && !series.has(segment.name)) {
    const el = chart(segment);
    $("#charts").append(el);
    series.set(segment.name, { segment, points: [], el });
    await membership(segment.name, true);
  } else if (!on && series.has(segment.name)) {
    await membership(segment.name, false);
    series.get(segment.name).el.remove();
    series.delete(segment.name);
  }
  dash.joined = [...series.keys()];
}

async function main() {
  const { segments } = await (await fetch("/api/segments")).json();
  const connection = (window.connection = new signalR.HubConnectionBuilder()
    .withUrl("/api")
    .withAutomaticReconnect()
    .configureLogging(signalR.LogLevel.Warning)
    .build());
  connection.on("point", (p) => {
    dash.received.push(p);
    const s = series.get(p.segment);
    if (!s) return; // left a moment ago
    s.points.push(p);
    if (s.points.length > KEEP) s.points.shift();
    draw(p.segment);
  });
  connection.onreconnecting(() => setStatus("reconnecting"));
  // A reconnect is a new connection: join its groups again.
  connection.onreconnected(async (id) => {
    dash.connectionId = id;
    for (const name of series.keys()) await membership(name, true);
    setStatus("connected");
  });
  connection.onclose(() => setStatus("closed"));
  await connection.start();
  dash.connectionId = connection.connectionId;
  setStatus("connected");

  for (const segment of segments) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = segment.name;
    box.checked = initial.has(segment.name);
    box.onchange = () =>
      toggle(segment, box.checked).catch((e) => {
        dash.errors.push(String(e));
        $("#error").textContent = e.message;
      });
    label.append(box, ` ${segment.name}`);
    $("#segments").append(label);
    if (box.checked) await toggle(segment, true);
  }
  dash.ready = true;
}

main().catch((e) => {
  dash.errors.push(String(e));
  setStatus("closed");
  $("#error").textContent = String(e.message || e);
});
