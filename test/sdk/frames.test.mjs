// Byte-exact frames with plain `ws` WebSockets: json.webpubsub.azure.v1, json.reliable, and raw
// (no subprotocol) clients; upgrade authentication failures.
import assert from "node:assert/strict";
import { hubName, randomSuffix, signJwt, openWs, JSON_PROTOCOL, JSON_RELIABLE_PROTOCOL, withTimeout, waitFor, sharedServer } from "./harness.mjs";
import { serviceClient, connectJson, barrierJson, rejects } from "./helpers.mjs";

const { sb, it } = sharedServer();

async function conn(t, svc, opts) {
  const c = await connectJson(svc, opts);
  t.after(() => c.close());
  return c;
}

const clientUrl = (hub) => `ws://127.0.0.1:${sb.port}/client/hubs/${hub}`;
const clientAud = (hub) => `${sb.endpoint}/client/hubs/${hub}`;

// ---------------------------------------------------------------------------------------------

it("json.webpubsub.azure.v1: subprotocol echoed; first frame is the connected system message", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const { url } = await svc.getClientAccessToken({ userId: "frame-user" });
  const c = await openWs(url, { protocols: JSON_PROTOCOL });
  t.after(() => c.close());
  assert.equal(c.ws.protocol, JSON_PROTOCOL, "Sec-WebSocket-Protocol must be echoed exactly");
  const first = await c.inbox.next({ what: "first frame" });
  assert.equal(first.isBinary, false, "connected must be a text frame");
  assert.ok(first.json, `first frame is not JSON: ${first.text}`);
  assert.equal(first.json.type, "system");
  assert.equal(first.json.event, "connected");
  assert.equal(first.json.userId, "frame-user");
  assert.equal(typeof first.json.connectionId, "string");
  assert.ok(first.json.connectionId.length > 0);
  assert.ok(/^[A-Za-z0-9_-]+$/.test(first.json.connectionId), `connectionId should be URL-safe: ${first.json.connectionId}`);
  assert.equal(first.json.reconnectionToken, undefined, "non-reliable protocol must not get a reconnectionToken");
  assert.ok(
    first.text.startsWith('{"type":"system","event":"connected"'),
    `connected frame must start with {"type":"system","event":"connected" — got ${first.text}`,
  );
  assert.equal(await svc.connectionExists(first.json.connectionId), true);
});

it("REST sends arrive byte-for-byte: json Hello world!, text Hi there!", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, {});
  await svc.sendToAll({ message: "Hello world!" });
  await svc.sendToAll("Hi there!", { contentType: "text/plain" });
  const f1 = await c.inbox.next({ what: "json message frame" });
  const f2 = await c.inbox.next({ what: "text message frame" });
  assert.equal(f1.isBinary, false);
  assert.equal(f1.text, '{"type":"message","from":"server","dataType":"json","data":{"message":"Hello world!"}}');
  assert.equal(f2.isBinary, false);
  assert.equal(f2.text, '{"type":"message","from":"server","dataType":"text","data":"Hi there!"}');
});

it("REST binary send arrives as dataType binary with standard padded base64", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, {});
  const bytes = Buffer.from([0xfb, 0xff, 0xfe, 0x00, 0x01]); // base64 has + / and =
  await svc.sendToAll(bytes);
  const f = await c.inbox.next({ what: "binary message frame" });
  assert.equal(f.isBinary, false, "json subprotocol must use text frames even for binary data");
  assert.deepEqual(f.json, { type: "message", from: "server", dataType: "binary", data: "+//+AAE=" });
  assert.equal(f.text, '{"type":"message","from":"server","dataType":"binary","data":"+//+AAE="}');
});

it('{"type":"ping"} is answered with {"type":"pong"}', async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, {});
  c.ws.send('{"type":"ping"}');
  const f = await c.inbox.next({ what: "pong" });
  assert.equal(f.isBinary, false);
  assert.deepEqual(f.json, { type: "pong" });
  assert.equal(f.text, '{"type":"pong"}');
});

it("joinGroup ack, repeated ackId -> Duplicate, no role -> Forbidden", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "ack-" + randomSuffix();
  const c = await conn(t, svc, { userId: "acker", roles: ["webpubsub.joinLeaveGroup"] });
  await c.sendJson({ type: "joinGroup", group: g, ackId: 1 });
  const a1 = await c.inbox.waitFor((f) => f.json?.type === "ack", { what: "ack 1" });
  assert.deepEqual(a1.json, { type: "ack", ackId: 1, success: true });
  assert.equal(await svc.groupExists(g), true);

  await c.sendJson({ type: "joinGroup", group: g, ackId: 1 });
  const a2 = await c.inbox.waitFor((f) => f.json?.type === "ack", { what: "duplicate ack" });
  assert.equal(a2.json.ackId, 1);
  assert.equal(a2.json.success, false);
  assert.equal(a2.json.error?.name, "Duplicate", `ack: ${a2.text}`);
  assert.equal(typeof a2.json.error?.message, "string");

  // A different operation re-using the ackId is still a duplicate (not executed).
  await c.sendJson({ type: "leaveGroup", group: g, ackId: 1 });
  const a3 = await c.inbox.waitFor((f) => f.json?.type === "ack", { what: "duplicate ack for leaveGroup" });
  assert.equal(a3.json.error?.name, "Duplicate");
  assert.equal(await svc.groupExists(g), true, "a duplicate-ackId leaveGroup must not execute");

  const plain = await conn(t, svc, { userId: "plain" });
  await plain.sendJson({ type: "joinGroup", group: g, ackId: 7 });
  const a4 = await plain.inbox.waitFor((f) => f.json?.type === "ack", { what: "forbidden ack" });
  assert.equal(a4.json.ackId, 7);
  assert.equal(a4.json.success, false);
  assert.equal(a4.json.error?.name, "Forbidden", `ack: ${a4.text}`);
  await plain.sendJson({ type: "sendToGroup", group: g, ackId: 8, dataType: "text", data: "x" });
  const a5 = await plain.inbox.waitFor((f) => f.json?.type === "ack", { what: "forbidden send ack" });
  assert.equal(a5.json.error?.name, "Forbidden", `ack: ${a5.text}`);
  await barrierJson(svc, c);
  assert.equal(c.inbox.find((f) => f.json?.from === "group"), undefined, "a forbidden send was delivered");
});

it("client sendToGroup frames: group message shape with fromUserId; ack; noEcho", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "gs-" + randomSuffix();
  const roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
  const a = await conn(t, svc, { userId: "ua", roles, groups: [g] });
  const b = await conn(t, svc, { userId: "ub", roles, groups: [g] });
  await a.sendJson({ type: "sendToGroup", group: g, ackId: 11, dataType: "json", data: { x: 1 } });
  // The ack and the echoed message may arrive in either order.
  const ack = await a.inbox.waitSeen((f) => f.json?.type === "ack");
  assert.deepEqual(ack.json, { type: "ack", ackId: 11, success: true });
  for (const c of [a, b]) {
    const m = await c.inbox.waitSeen((f) => f.json?.type === "message" && f.json.from === "group");
    assert.deepEqual(m.json, { type: "message", from: "group", group: g, fromUserId: "ua", dataType: "json", data: { x: 1 } });
  }
  await a.sendJson({ type: "sendToGroup", group: g, ackId: 12, noEcho: true, dataType: "text", data: "quiet" });
  const m2 = await b.inbox.waitFor((f) => f.json?.data === "quiet");
  assert.deepEqual(m2.json, { type: "message", from: "group", group: g, fromUserId: "ua", dataType: "text", data: "quiet" });
  await barrierJson(svc, a);
  assert.equal(a.inbox.find((f) => f.json?.data === "quiet"), undefined, "noEcho sender got its own message");
  // sendToGroup without ackId: no ack is sent, message still delivered.
  await a.sendJson({ type: "sendToGroup", group: g, dataType: "binary", data: "AQID" });
  const m3 = await b.inbox.waitFor((f) => f.json?.dataType === "binary");
  assert.deepEqual(m3.json, { type: "message", from: "group", group: g, fromUserId: "ua", dataType: "binary", data: "AQID" });
});

it("raw client (no subprotocol): no system frames; json -> text frame of the JSON, text -> text, binary -> binary", async (t) => {
  const svc = serviceClient(sb, hubName());
  const { url } = await svc.getClientAccessToken({ userId: "raw" });
  const c = await openWs(url);
  t.after(() => c.close());
  assert.equal(c.ws.protocol, "", "no subprotocol must be selected when none was offered");
  await svc.sendToAll({ message: "Hello world!" });
  await svc.sendToAll("Hi there!", { contentType: "text/plain" });
  await svc.sendToAll(Buffer.from([0, 1, 2, 3, 255]));
  await svc.sendToAll("Hello"); // application/json string -> text frame with quotes
  const frames = [];
  for (let i = 0; i < 4; i++) frames.push(await c.inbox.next({ what: `raw frame #${i}` }));
  assert.deepEqual(
    frames.map((f) => ({ isBinary: f.isBinary, data: f.isBinary ? [...f.data] : f.text })),
    [
      { isBinary: false, data: '{"message":"Hello world!"}' },
      { isBinary: false, data: "Hi there!" },
      { isBinary: true, data: [0, 1, 2, 3, 255] },
      { isBinary: false, data: '"Hello"' },
    ],
  );
});

it("raw client in a group receives client group messages: text/json as text frames, binary as binary frame", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "mix-" + randomSuffix();
  const { url } = await svc.getClientAccessToken({ userId: "rawg", groups: [g] });
  const raw = await openWs(url);
  t.after(() => raw.close());
  const sender = await conn(t, svc, { userId: "s", roles: ["webpubsub.sendToGroup"] });
  await sender.sendJson({ type: "sendToGroup", group: g, ackId: 1, dataType: "text", data: "t1" });
  await sender.sendJson({ type: "sendToGroup", group: g, ackId: 2, dataType: "json", data: { j: [1, 2] } });
  await sender.sendJson({ type: "sendToGroup", group: g, ackId: 3, dataType: "binary", data: "AAEC" });
  const frames = [];
  for (let i = 0; i < 3; i++) frames.push(await raw.inbox.next({ what: `raw group frame #${i}` }));
  assert.equal(frames[0].isBinary, false);
  assert.equal(frames[0].text, "t1");
  assert.equal(frames[1].isBinary, false);
  assert.deepEqual(JSON.parse(frames[1].text), { j: [1, 2] });
  assert.equal(frames[2].isBinary, true);
  assert.deepEqual([...frames[2].data], [0, 1, 2]);
});

it("upgrade rejected with 401: bad signature, token for another hub, expired, missing", async () => {
  const hub = hubName();
  const cases = {
    "bad signature": `${clientUrl(hub)}?access_token=${signJwt({ aud: clientAud(hub), sub: "x" }, "wrong-key")}`,
    "token for another hub": `${clientUrl(hub)}?access_token=${signJwt({ aud: clientAud("otherhub"), sub: "x" }, sb.keys[0])}`,
    expired: `${clientUrl(hub)}?access_token=${signJwt(
      { aud: clientAud(hub), sub: "x", exp: Math.floor(Date.now() / 1000) - 3600 },
      sb.keys[0],
    )}`,
    "garbage token": `${clientUrl(hub)}?access_token=not.a.jwt`,
    missing: clientUrl(hub),
  };
  // Also: a real SDK token for another hub, used on this hub's URL.
  const other = await serviceClient(sb, hubName("other")).getClientAccessToken({ userId: "x" });
  cases["SDK token for another hub"] = `${clientUrl(hub)}?access_token=${other.token}`;

  const results = {};
  for (const [name, url] of Object.entries(cases)) {
    for (const protocols of [JSON_PROTOCOL, undefined]) {
      const label = `${name} (${protocols ?? "no subprotocol"})`;
      try {
        const c = await openWs(url, { protocols });
        c.close();
        results[label] = "upgraded";
      } catch (e) {
        results[label] = e.statusCode ?? `error: ${e.message}`;
      }
    }
  }
  const expected = Object.fromEntries(Object.keys(results).map((k) => [k, 401]));
  assert.deepEqual(results, expected);
});

it("token in the Authorization header and the /client/?hub= form are accepted", async (t) => {
  const hub = hubName();
  const token = signJwt({ aud: clientAud(hub), sub: "hdr" }, sb.keys[0]);
  const c1 = await openWs(clientUrl(hub), { protocols: JSON_PROTOCOL, headers: { authorization: `Bearer ${token}` } });
  t.after(() => c1.close());
  const f1 = await c1.inbox.next();
  assert.equal(f1.json?.event, "connected");
  assert.equal(f1.json?.userId, "hdr");

  const svc = serviceClient(sb, hub);
  const tok = await svc.getClientAccessToken({ userId: "qhub" });
  const c2 = await openWs(`ws://127.0.0.1:${sb.port}/client/?hub=${hub}&access_token=${tok.token}`, {
    protocols: JSON_PROTOCOL,
  });
  t.after(() => c2.close());
  const f2 = await c2.inbox.next();
  assert.equal(f2.json?.event, "connected");
  assert.equal(f2.json?.userId, "qhub");
  assert.equal(await svc.connectionExists(f2.json.connectionId), true, "?hub= connection is in the right hub");
});

it("json.reliable.webpubsub.azure.v1: echoed; connected has reconnectionToken; data messages numbered from 1", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, { userId: "rel", protocol: JSON_RELIABLE_PROTOCOL });
  assert.equal(c.ws.protocol, JSON_RELIABLE_PROTOCOL);
  assert.equal(typeof c.connected.reconnectionToken, "string");
  assert.ok(c.connected.reconnectionToken.length > 0);
  c.ws.send('{"type":"ping"}');
  for (let i = 0; i < 3; i++) await svc.sendToConnection(c.connectionId, { i });
  // The pong and the REST messages travel different paths: their order is not fixed.
  const frames = (type) => c.inbox.all.filter((f) => f.json?.type === type).map((f) => f.json);
  await waitFor(() => frames("pong").length === 1 && frames("message").length === 3, { what: "a pong and 3 messages" });
  assert.deepEqual(frames("pong")[0], { type: "pong" }, "pong carries no sequenceId");
  const msgs = frames("message");
  assert.deepEqual(
    msgs,
    [0, 1, 2].map((i) => ({ type: "message", from: "server", dataType: "json", data: { i }, sequenceId: i + 1 })),
  );
});

it("protocol violations close the connection (invalid JSON)", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, {});
  c.ws.send("this is not json");
  const info = await withTimeout(c.closed, 10000, "connection close after invalid JSON");
  t.diagnostic(`close after invalid JSON: ${JSON.stringify(info)}`);
  assert.notEqual(info.code, 1000, "a protocol violation should not be a normal closure");
});

it("several offered subprotocols: the service picks exactly one it supports", async (t) => {
  const svc = serviceClient(sb, hubName());
  const { url } = await svc.getClientAccessToken({ userId: "multi" });
  const c = await openWs(url, { protocols: ["x.unknown.v1", JSON_PROTOCOL] });
  t.after(() => c.close());
  assert.equal(c.ws.protocol, JSON_PROTOCOL);
  const first = await c.inbox.next();
  assert.equal(first.json?.event, "connected");
});

it("a binary frame on the json subprotocol closes the connection", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, {});
  c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  const info = await withTimeout(c.closed, 10000, "connection close after a binary frame");
  t.diagnostic(`close after binary frame: ${JSON.stringify(info)}`);
  assert.notEqual(info.code, 1000);
  assert.notEqual(info.code, 1006, "the service should close with a close frame, not drop the TCP connection");
});
