// SignalR (serverless) wire details with plain fetch and `ws`, byte-exact where the official
// clients depend on it: the negotiate response's exact shape, 401s for bad tokens, CORS with
// credentials, the handshake (success `{}␞`, failure `{"error":…}␞` then close), REST sends
// framed without invocationId, the long-polling status codes (first poll 200 empty at once,
// 400 without id, 404 for an unknown id) and stateful reconnect only when asked and allowed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  signalrSuite,
  startServer,
  startAppNegotiate,
  startHub,
  signalrClientToken,
  signalrConfig,
  signalrRest,
  signJwt,
  openWs,
  parseJsonRecords,
  hubName,
  randomAccessKey,
  withTimeout,
} from "./harness.mjs";

const { s, it } = signalrSuite();

const TRANSPORTS = [
  { transport: "WebSockets", transferFormats: ["Text", "Binary"] },
  { transport: "ServerSentEvents", transferFormats: ["Text"] },
  { transport: "LongPolling", transferFormats: ["Text", "Binary"] },
];

const token = (hub, opts = {}) => signalrClientToken(s.sb.signalrEndpoint, hub, opts.key ?? s.sb.keys[0], { userId: "u1", ...opts });

async function negotiate(hub, { bearer = token(hub), query = "", origin, endpoint = s.sb.signalrEndpoint } = {}) {
  const headers = { "X-Requested-With": "XMLHttpRequest" };
  if (bearer !== null) headers.Authorization = `Bearer ${bearer}`;
  if (origin) headers.Origin = origin;
  const res = await fetch(`${endpoint}/client/negotiate?hub=${hub}&negotiateVersion=1${query}`, {
    method: "POST",
    headers,
    body: "",
    signal: AbortSignal.timeout(15000),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const clientUrl = (hub, params = {}) => {
  const u = new URL(`${s.sb.signalrEndpoint}/client/`);
  u.searchParams.set("hub", hub);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
};

it("negotiate answers the exact v1 shape: negotiateVersion, connectionId, connectionToken, availableTransports in order", async () => {
  const hub = hubName("neg");
  const r = await negotiate(hub);
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/i);
  assert.deepEqual(Object.keys(r.json).sort(), ["availableTransports", "connectionId", "connectionToken", "negotiateVersion"], r.text);
  assert.equal(r.json.negotiateVersion, 1);
  for (const k of ["connectionId", "connectionToken"]) {
    assert.equal(typeof r.json[k], "string");
    assert.match(r.json[k], /^[A-Za-z0-9_.~-]+$/, `${k} must be URL-safe: ${r.json[k]}`);
  }
  assert.notEqual(r.json.connectionId, r.json.connectionToken, "the token is a separate secret");
  assert.deepEqual(r.json.availableTransports, TRANSPORTS);
  const again = await negotiate(hub);
  assert.notEqual(again.json.connectionId, r.json.connectionId, "a fresh connection per negotiate");
  assert.notEqual(again.json.connectionToken, r.json.connectionToken);

  // Only when asked: useStatefulReconnect.
  const stateful = await negotiate(hub, { query: "&useStatefulReconnect=true" });
  assert.equal(stateful.status, 200, stateful.text);
  assert.equal(stateful.json.useStatefulReconnect, true, stateful.text);
  assert.deepEqual(stateful.json.availableTransports, TRANSPORTS);

  // Both access keys sign valid tokens; the user id may be in nameid.
  const second = await negotiate(hub, { bearer: token(hub, { key: s.sb.keys[1], claim: "nameid" }) });
  assert.equal(second.status, 200, second.text);
  // The audience's port and hub casing do not matter (the Management SDK drops the port, docs keep casing).
  const noPort = signJwt({ aud: `http://127.0.0.1/client/?hub=${hub.toUpperCase()}`, "asrs.s.uid": "u1" }, s.sb.keys[0]);
  assert.equal((await negotiate(hub, { bearer: noPort })).status, 200);
});

it("negotiate without a token, or with a bad one, answers 401", async () => {
  const hub = hubName("neg401");
  const ep = s.sb.signalrEndpoint;
  const aud = `${ep}/client/?hub=${hub}`;
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const cases = {
    "no token": null,
    "garbage": "not.a.jwt",
    "wrong key": signalrClientToken(ep, hub, randomAccessKey(), { userId: "u1" }),
    // The key must be used as its UTF-8 bytes, not base64-decoded.
    "base64-decoded key": (() => {
      const h = b64({ alg: "HS256", typ: "JWT" });
      const p = b64({ aud, exp: now + 600, "asrs.s.uid": "u1" });
      const sig = createHmac("sha256", Buffer.from(s.sb.keys[0], "base64")).update(`${h}.${p}`).digest("base64url");
      return `${h}.${p}.${sig}`;
    })(),
    "expired (10 min)": signJwt({ aud, "asrs.s.uid": "u1", iat: now - 3600, exp: now - 600 }, s.sb.keys[0]),
    "no exp": signJwt({ aud, "asrs.s.uid": "u1", exp: null }, s.sb.keys[0]),
    "other hub": signalrClientToken(ep, `${hub}x`, s.sb.keys[0], { userId: "u1" }),
    "alg none": `${b64({ alg: "none", typ: "JWT" })}.${b64({ aud, exp: now + 600, "asrs.s.uid": "u1" })}.`,
  };
  for (const [name, bearer] of Object.entries(cases)) {
    const r = await negotiate(hub, { bearer });
    assert.equal(r.status, 401, `${name}: ${r.status} ${r.text}`);
  }
  // The same token is fine when valid (so the 401s above are about the token).
  assert.equal((await negotiate(hub)).status, 200);
});

it("CORS: preflights echo the Origin with credentials; the negotiate answer carries them too", async () => {
  const hub = hubName("cors");
  const origin = "http://app.example.test:5173";
  const requested = ["authorization", "x-requested-with", "x-signalr-user-agent", "content-type"];
  const cases = [
    [`${s.sb.signalrEndpoint}/client/negotiate?hub=${hub}&negotiateVersion=1`, "POST"],
    [clientUrl(hub, { id: "whatever" }), "GET"],
    [clientUrl(hub, { id: "whatever" }), "POST"],
    [clientUrl(hub, { id: "whatever" }), "DELETE"],
  ];
  for (const [url, method] of cases) {
    const res = await fetch(url, {
      method: "OPTIONS",
      headers: { Origin: origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": requested.join(",") },
      signal: AbortSignal.timeout(15000),
    });
    await res.arrayBuffer();
    const label = `OPTIONS ${url} (${method}): ${res.status} ${JSON.stringify([...res.headers])}`;
    assert.ok(res.status === 200 || res.status === 204, label);
    assert.equal(res.headers.get("access-control-allow-origin"), origin, label);
    assert.equal(res.headers.get("access-control-allow-credentials"), "true", label);
    const methods = (res.headers.get("access-control-allow-methods") ?? "").toUpperCase().split(",").map((x) => x.trim());
    assert.ok(methods.includes(method), `${method} allowed: ${label}`);
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(",").map((x) => x.trim());
    for (const h of requested) assert.ok(allowed.includes(h), `${h} allowed: ${label}`);
  }
  const r = await negotiate(hub, { origin });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get("access-control-allow-origin"), origin);
  assert.equal(r.headers.get("access-control-allow-credentials"), "true");
});

it("WebSocket handshake: bad protocol or version gets {\"error\":…}␞ and a close; a good one {}␞, then REST sends arrive as invocations without invocationId", async () => {
  const hub = hubName("hs");
  const auth = { Authorization: `Bearer ${token(hub)}` };
  for (const bad of [{ protocol: "xyz", version: 1 }, { protocol: "json", version: 99 }]) {
    const n = await negotiate(hub);
    const c = await openWs(clientUrl(hub, { id: n.json.connectionToken }), { headers: auth });
    c.ws.send(JSON.stringify(bad) + "\x1e");
    const f = await c.inbox.next({ what: `handshake answer to ${JSON.stringify(bad)}` });
    assert.equal(f.isBinary, false);
    assert.ok(f.text.endsWith("\x1e"), `record separator: ${JSON.stringify(f.text)}`);
    const { records } = parseJsonRecords(f.text);
    assert.equal(typeof records[0].error, "string", f.text);
    assert.ok(records[0].error.length > 0, f.text);
    assert.equal("type" in records[0], false, f.text);
    await withTimeout(c.closed, 15000, "the server closes the socket after a failed handshake");
  }

  // Unknown connection token: 404 before the upgrade.
  await assert.rejects(openWs(clientUrl(hub, { id: "no-such-connection" }), { headers: auth }), (e) => e.statusCode === 404);

  const n = await negotiate(hub);
  const c = await openWs(clientUrl(hub, { id: n.json.connectionToken }), { headers: auth });
  try {
    c.ws.send('{"protocol":"json","version":1}\x1e');
    const f = await c.inbox.next({ what: "handshake response" });
    assert.equal(f.isBinary, false, "JSON: text frames");
    // Other records may follow the handshake response in the same frame.
    assert.ok(f.text.startsWith("{}\x1e"), `handshake response {}␞: ${JSON.stringify(f.text)}`);
    const rest = signalrRest(s.sb);
    await rest.broadcast(hub, "newMessage", ["hi", { n: 1 }]);
    await rest.toConnection(hub, n.json.connectionId, "direct", []);
    let buffered = f.text.slice(3);
    const records = [];
    while (records.filter((r) => r.type === 1).length < 2) {
      if (!buffered.includes("\x1e")) buffered += (await c.inbox.next({ what: "invocations" })).text;
      const p = parseJsonRecords(buffered);
      records.push(...p.records);
      buffered = p.rest;
    }
    const invocations = records.filter((r) => r.type === 1);
    assert.deepEqual(invocations, [
      { type: 1, target: "newMessage", arguments: ["hi", { n: 1 }] },
      { type: 1, target: "direct", arguments: [] },
    ]);
    for (const r of records) assert.ok(r.type === 1 || r.type === 6, `only invocations and pings: ${JSON.stringify(records)}`);
  } finally {
    c.close();
  }
});

it("long polling: 400 without id, 404 for an unknown id, first poll 200 empty at once, handshake by POST, DELETE ends it", async () => {
  const hub = hubName("lp");
  const auth = { Authorization: `Bearer ${token(hub)}` };
  const get = (params) => fetch(clientUrl(hub, params), { headers: auth, signal: AbortSignal.timeout(20000) });

  const noId = await get({ _: String(Date.now()) });
  assert.equal(noId.status, 400, await noId.text());
  const unknown = await get({ id: "no-such-connection", _: String(Date.now()) });
  assert.equal(unknown.status, 404, await unknown.text());
  const postUnknown = await fetch(clientUrl(hub, { id: "no-such-connection" }), {
    method: "POST",
    headers: { ...auth, "Content-Type": "text/plain;charset=UTF-8" },
    body: '{"type":6}\x1e',
    signal: AbortSignal.timeout(20000),
  });
  assert.equal(postUnknown.status, 404, await postUnknown.text());

  const n = await negotiate(hub);
  const id = n.json.connectionToken;
  // The first poll returns at once (the JS client waits for it before sending its handshake);
  // the 20 s abort is far below the server's poll hold, so a held poll fails here.
  const first = await get({ id, _: String(Date.now()) });
  assert.equal(first.status, 200);
  assert.equal((await first.arrayBuffer()).byteLength, 0, "the first poll is empty");

  const hs = await fetch(clientUrl(hub, { id }), {
    method: "POST",
    headers: { ...auth, "Content-Type": "text/plain;charset=UTF-8" },
    body: '{"protocol":"json","version":1}\x1e',
    signal: AbortSignal.timeout(20000),
  });
  assert.equal(hs.status, 200, await hs.text());
  const second = await get({ id, _: String(Date.now()) });
  assert.equal(second.status, 200);
  const body = await second.text();
  assert.ok(body.startsWith("{}\x1e"), `the handshake response comes in a poll: ${JSON.stringify(body)}`);

  const del = await fetch(clientUrl(hub, { id }), { method: "DELETE", headers: auth, signal: AbortSignal.timeout(20000) });
  await del.arrayBuffer();
  assert.ok(del.status >= 200 && del.status < 300, `DELETE: ${del.status}`);
  const after = await get({ id, _: String(Date.now()) });
  await after.arrayBuffer();
  assert.ok(after.status === 204 || after.status === 404, `a poll after DELETE ends the connection: ${after.status}`);
});

it("REST: health is anonymous on the SignalR listener; sends need a valid token", async () => {
  const hub = hubName("rest");
  for (const p of ["/api/health", "/api/v1/health"]) {
    const r = await fetch(`${s.sb.signalrEndpoint}${p}`, { signal: AbortSignal.timeout(15000) });
    await r.arrayBuffer();
    assert.equal(r.status, 200, p);
  }
  const rest = s.rest;
  const msg = { target: "t", arguments: [] };
  assert.equal((await rest.call("POST", `/api/hubs/${hub}/:send`, { body: msg, token: null })).status, 401);
  const wrong = signJwt({ aud: `${s.sb.signalrEndpoint}/api/hubs/${hub}/:send` }, randomAccessKey());
  assert.equal((await rest.call("POST", `/api/hubs/${hub}/:send`, { body: msg, token: wrong })).status, 401);
  assert.equal((await rest.call("POST", `/api/hubs/${hub}/:send`, { body: msg })).status, 202);
  assert.equal((await rest.call("POST", `/api/v1/hubs/${hub}`, { body: msg })).status, 202);
});

test("stateful_reconnect: false — negotiate never grants it, and a withStatefulReconnect() client still connects", async () => {
  const app = await startAppNegotiate();
  const sb = await startServer({ signalr: true, config: signalrConfig({ settings: { stateful_reconnect: false } }) });
  let h;
  try {
    const hub = hubName("nostate");
    const t = signalrClientToken(sb.signalrEndpoint, hub, sb.keys[0], { userId: "u" });
    const res = await fetch(`${sb.signalrEndpoint}/client/negotiate?hub=${hub}&negotiateVersion=1&useStatefulReconnect=true`, {
      method: "POST",
      headers: { Authorization: `Bearer ${t}` },
      signal: AbortSignal.timeout(15000),
    });
    const body = await res.json();
    assert.equal(res.status, 200);
    assert.equal(body.useStatefulReconnect, undefined, JSON.stringify(body));
    const r = app.route({ endpoint: sb.signalrEndpoint, key: sb.keys[0], hub, userId: "u" });
    h = await startHub(r.url, { transport: "WebSockets", stateful: true });
    await signalrRest(sb).toConnection(hub, h.conn.connectionId, "newMessage", ["ok"]);
    await h.inbox.waitSeen((m) => m.args[0] === "ok", { what: "message" });
  } catch (err) {
    try {
      err.message += (h?.diag() ?? "") + sb.diag();
    } catch {
      /* ignore */
    }
    throw err;
  } finally {
    await h?.stop();
    await sb.stop();
    await app.close();
  }
});
