// The live-dashboard example: a publisher of simulated telemetry (IoT sensors and market
// prices) and the page that draws it, through Switchboard's SignalR (serverless) listener.
//
// - The publisher sends one point per segment every `intervalMs` to the segment's group with
//   SignalR's serverless REST API (POST /api/v1/hubs/{hub}/groups/{group}, target "point"),
//   signed with the access key as Azure's Management SDK does.
// - The page (public/) connects with @microsoft/signalr's browser build (served from
//   node_modules, no CDN) through this app's negotiate endpoint, and joins the segments the
//   viewer ticks: the app adds its connection to the segment's group (PUT …/groups/{group}/
//   connections/{connectionId}) and removes it (DELETE) when unticked.
//
//   POST   /api/negotiate                          {url, accessToken} for the SignalR listener
//   GET    /api/segments                           the segments
//   PUT    /api/segments/:s/connections/:conn      join  (group segment:<s>)
//   DELETE /api/segments/:s/connections/:conn      leave
//   GET    /api/stats                              points published per segment
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const SEGMENTS = [
  { name: "plant-a", kind: "iot", unit: "°C", base: 21, step: 0.4 },
  { name: "plant-b", kind: "iot", unit: "°C", base: 35, step: 0.8 },
  { name: "eurusd", kind: "market", unit: "", base: 1.08, step: 0.002 },
  { name: "btc", kind: "market", unit: "$", base: 60000, step: 150 },
];
export const groupOf = (segment) => `segment:${segment}`;

/** Endpoint (with Port) and AccessKey of a SignalR connection string. */
export function parseConnectionString(cs) {
  const parts = Object.fromEntries(
    cs
      .split(";")
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf("=");
        return [p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim()];
      }),
  );
  if (!parts.endpoint || !parts.accesskey) throw new Error("connection string needs Endpoint and AccessKey");
  const u = new URL(parts.endpoint);
  if (parts.port) u.port = parts.port;
  return { endpoint: u.origin, key: parts.accesskey };
}

function jwt(key, claims, ttlSec) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ ...claims, iat: now, exp: now + ttlSec })}`;
  return `${head}.${createHmac("sha256", Buffer.from(key, "utf8")).update(head).digest("base64url")}`;
}

const STATIC = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
};

/**
 * Starts the app and the publisher. connectionString: Switchboard's SignalR one. Resolves to
 * {url, stats, close()}.
 */
export async function startDashboard({ connectionString, hub = "telemetry", host = "127.0.0.1", port = 0, intervalMs = 500, log = () => {} }) {
  const { endpoint, key } = parseConnectionString(connectionString);
  const signalrJs = readFileSync(path.join(HERE, "node_modules/@microsoft/signalr/dist/browser/signalr.min.js"));
  const stats = Object.fromEntries(SEGMENTS.map((s) => [s.name, 0]));
  const failures = { count: 0, last: "" };

  async function rest(method, p, body) {
    const r = await fetch(endpoint + p, {
      method,
      headers: { Authorization: `Bearer ${jwt(key, { aud: endpoint + p }, 300)}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(5000),
    });
    await r.arrayBuffer();
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status}`);
    return r.status;
  }
  const groupPath = (s) => `/api/v1/hubs/${encodeURIComponent(hub)}/groups/${encodeURIComponent(groupOf(s))}`;

  // The simulation: a random walk per segment, one point per tick, published to its group.
  const values = Object.fromEntries(SEGMENTS.map((s) => [s.name, s.base]));
  let ticking = false;
  const timer = setInterval(async () => {
    if (ticking) return; // a slow server: skip a tick rather than pile up sends
    ticking = true;
    const t = Date.now();
    await Promise.all(
      SEGMENTS.map(async (s) => {
        values[s.name] = Math.max(0, values[s.name] + (Math.random() - 0.5) * 2 * s.step);
        const point = { segment: s.name, t, value: Number(values[s.name].toPrecision(6)) };
        try {
          await rest("POST", groupPath(s.name), { target: "point", arguments: [point] });
          stats[s.name]++;
        } catch (e) {
          failures.count++;
          failures.last = e.message;
        }
      }),
    );
    ticking = false;
  }, intervalMs);

  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url, "http://app.invalid");
    const json = (status, body) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    try {
      if (req.method === "GET" && STATIC[u.pathname]) {
        const [file, type] = STATIC[u.pathname];
        res.writeHead(200, { "Content-Type": type });
        return res.end(readFileSync(path.join(HERE, "public", file)));
      }
      if (req.method === "GET" && u.pathname === "/signalr.js") {
        res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8" });
        return res.end(signalrJs);
      }
      if (req.method === "GET" && u.pathname === "/api/segments") return json(200, { segments: SEGMENTS });
      if (req.method === "GET" && u.pathname === "/api/stats") return json(200, { published: stats, failures });
      // The app's negotiate: @microsoft/signalr POSTs <base>/negotiate and follows {url, accessToken}.
      if (req.method === "POST" && u.pathname === "/api/negotiate") {
        const url = `${endpoint}/client/?hub=${encodeURIComponent(hub)}`;
        return json(200, { url, accessToken: jwt(key, { aud: url }, 3600) });
      }
      const m = /^\/api\/segments\/([^/]+)\/connections\/([^/]+)$/.exec(u.pathname);
      if (m && (req.method === "PUT" || req.method === "DELETE")) {
        let segment;
        try {
          segment = decodeURIComponent(m[1]);
        } catch {
          return json(400, { error: "the segment in the path is not valid percent-encoding" });
        }
        if (!SEGMENTS.some((s) => s.name === segment)) return json(404, { error: `no segment ${segment}` });
        await rest(req.method, `${groupPath(segment)}/connections/${m[2]}`);
        return json(200, { segment, joined: req.method === "PUT" });
      }
      json(404, { error: "not found" });
    } catch (e) {
      log(`error: ${e.message}`);
      json(502, { error: e.message });
    }
  });
  await new Promise((resolve, reject) => server.listen(port, host, resolve).once("error", reject));
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${server.address().port}`;
  log(`publishing ${SEGMENTS.length} segments every ${intervalMs} ms to ${endpoint} hub ${hub}`);
  return {
    url,
    stats,
    failures,
    close: () =>
      new Promise((resolve) => {
        clearInterval(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
