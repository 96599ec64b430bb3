// Reliable protocol (json.reliable.webpubsub.azure.v1): recovery after an abrupt TCP drop
// through a proxy, buffered replay and sequenceAck, and refused recoveries (close 1008).
import assert from "node:assert/strict";
import { startProxy, hubName, randomSuffix, waitFor, openWs, withQuery, withPort, signJwt, JSON_RELIABLE_PROTOCOL, withTimeout, sharedServer } from "./harness.mjs";
import { serviceClient, startSdkClient, connectJson, collectAll } from "./helpers.mjs";

const { sb, it } = sharedServer();

function closedWithin(c, ms, what) {
  return withTimeout(c.closed, ms, `${what}: socket close`);
}

// ---------------------------------------------------------------------------------------------

async function sdkRecoveryScenario(t, { halfOpen }) {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const proxy = await startProxy(sb.port);
  t.after(() => proxy.close());
  const g = "seq-" + randomSuffix();
  const c = await startSdkClient(
    svc,
    { userId: "reliable-user", roles: ["webpubsub.joinLeaveGroup"] },
    {}, // default protocol: json.reliable.webpubsub.azure.v1
    { urlTransform: (u) => withPort(u, proxy.port) },
  );
  t.after(() => c.stop());
  assert.equal(proxy.accepted, 1, "the client must connect through the proxy");
  await c.client.joinGroup(g);

  const N = 300;
  const received = () => c.groupMessages.all.filter((m) => typeof m.data?.i === "number").map((m) => m.data.i);
  const drops = [];
  for (let i = 0; i < N; i++) {
    await svc.group(g).sendToAll({ i });
    if (i === 100) {
      drops.push({ at: i, killed: proxy.dropAll({ halfOpen }) });
    }
    if (i === 200) {
      // Make sure the first recovery completed (messages published after the first drop arrive),
      // then drop again.
      await waitFor(() => received().some((x) => x > 100), { timeout: 35000, what: "recovery after the first drop" });
      drops.push({ at: i, killed: proxy.dropAll({ halfOpen }) });
    }
  }
  await svc.group(g).sendToAll({ end: true });
  await c.groupMessages.waitFor((m) => m.data?.end === true, {
    timeout: 60000,
    what: "end-of-sequence sentinel",
  });
  t.diagnostic(`drops: ${JSON.stringify(drops)}; proxy accepted ${proxy.accepted} connections`);
  t.diagnostic(`SDK events: ${JSON.stringify(c.events.all.filter((e) => !e.event.endsWith("message")).map((e) => e.event))}`);

  assert.ok(drops.every((d) => d.killed >= 1), `each drop must kill the live connection: ${JSON.stringify(drops)}`);
  const got = received();
  const expected = Array.from({ length: N }, (_, i) => i);
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    const missing = expected.filter((i) => !got.includes(i));
    const dups = got.filter((x, idx) => got.indexOf(x) !== idx);
    assert.fail(
      `received ${got.length} of ${N}; missing ${JSON.stringify(missing.slice(0, 50))}; duplicates ` +
        `${JSON.stringify(dups.slice(0, 50))}; out-of-order=${got.some((x, i) => i > 0 && x < got[i - 1])}`,
    );
  }
  // Sequence ids seen by the SDK are consecutive (no gaps that the SDK papered over).
  const seq = c.groupMessages.all.map((m) => m.sequenceId);
  assert.ok(seq.every((s) => typeof s === "number"), "every reliable data message carries a sequenceId");
  for (let i = 1; i < seq.length; i++) assert.equal(seq[i], seq[i - 1] + 1, `sequenceId gap at ${i}: ${seq[i - 1]} -> ${seq[i]}`);

  // Recovery, not a new connection: connected once, no disconnected/stopped, same connection id.
  const names = c.events.all.map((e) => e.event);
  assert.equal(names.filter((n) => n === "connected").length, 1, "connected must fire once only");
  assert.equal(names.filter((n) => n === "disconnected").length, 0, "disconnected must not fire on a recovered drop");
  assert.equal(names.filter((n) => n === "stopped").length, 0);
  assert.equal(await svc.connectionExists(c.connectionId), true);
  const recoveries = proxy.requests.slice(1);
  assert.ok(recoveries.length >= 2, `expected >= 2 reconnect requests, proxy saw ${JSON.stringify(proxy.requests)}`);
  for (const r of recoveries) {
    assert.ok(
      r.includes(`awps_connection_id=${encodeURIComponent(c.connectionId)}`) && r.includes("awps_reconnection_token="),
      `reconnect request is not a recovery of ${c.connectionId}: ${r}`,
    );
  }
  const members = (await collectAll(svc.group(g).listConnections())).map((m) => m.connectionId);
  assert.deepEqual(members, [c.connectionId], "group membership survives recovery");
}

it("WebPubSubClient recovers through abrupt TCP drops (RST both ways): 300 group messages, exactly 0..299 in order", (t) =>
  sdkRecoveryScenario(t, { halfOpen: false }));

it("WebPubSubClient recovers when the server still holds the dead TCP connection (half-open): exactly 0..299 in order", (t) =>
  sdkRecoveryScenario(t, { halfOpen: true }));

it("raw reliable client: un-acked messages are replayed after recovery with original sequenceIds; sequenceAck honoured", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const g = "replay-" + randomSuffix();
  const { url } = await svc.getClientAccessToken({ userId: "raw-rel", groups: [g] });
  const c1 = await openWs(url, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c1.close());
  const connected = (await c1.inbox.next({ what: "connected" })).json;
  assert.equal(connected?.event, "connected");
  const { connectionId, reconnectionToken } = connected;
  assert.ok(reconnectionToken, "reconnectionToken missing");

  for (let i = 1; i <= 5; i++) await svc.sendToConnection(connectionId, { i });
  const first = [];
  for (let i = 1; i <= 5; i++) first.push((await c1.inbox.waitFor((f) => f.json?.type === "message")).json);
  assert.deepEqual(first.map((m) => [m.sequenceId, m.data.i]), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5]]);

  // Ack up to 3, and make sure the service processed it (frames are handled in order; the pong
  // comes after).
  await c1.sendJson({ type: "sequenceAck", sequenceId: 3 });
  await c1.sendJson({ type: "ping" });
  await c1.inbox.waitFor((f) => f.json?.type === "pong");

  // Abrupt drop (no close frame), then more traffic while detached.
  c1.ws.terminate();
  await c1.closed;
  for (let i = 6; i <= 7; i++) await svc.sendToConnection(connectionId, { i });
  await svc.group(g).sendToAll({ i: 8 });
  assert.equal(await svc.connectionExists(connectionId), true, "a detached reliable connection still exists");

  // Recover. The original access_token is reused by the SDK, so use it as-is here.
  const recoverUrl = withQuery(url, { awps_connection_id: connectionId, awps_reconnection_token: reconnectionToken });
  const c2 = await openWs(recoverUrl, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c2.close());
  assert.equal(c2.ws.protocol, JSON_RELIABLE_PROTOCOL);
  const replay = [];
  while (replay.length < 5) {
    const f = await c2.inbox.next({ what: `replayed message #${replay.length}` });
    if (f.json?.type === "system" && f.json.event === "connected") {
      assert.equal(f.json.connectionId, connectionId, "a connected message on recovery must keep the connectionId");
      continue;
    }
    replay.push(f.json);
  }
  assert.deepEqual(
    replay.map((m) => [m.type, m.from, m.sequenceId, m.data?.i]),
    [
      ["message", "server", 4, 4],
      ["message", "server", 5, 5],
      ["message", "server", 6, 6],
      ["message", "server", 7, 7],
      ["message", "group", 8, 8],
    ],
    "replay must be exactly the un-acked messages (4..8) in order with their original sequenceIds",
  );
  // Continues numbering after recovery; group membership survives.
  await svc.group(g).sendToAll({ i: 9 });
  const m9 = await c2.inbox.waitFor((f) => f.json?.type === "message");
  assert.deepEqual([m9.json.sequenceId, m9.json.data.i, m9.json.group], [9, 9, g]);
  assert.equal(c1.closeInfo?.code, 1006, "sanity: first transport was dropped abruptly");
});

it("recovery ignores an expired access_token (the SDK reuses the original URL)", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const c1 = await connectJson(svc, { userId: "exp", protocol: JSON_RELIABLE_PROTOCOL });
  t.after(() => c1.close());
  c1.ws.terminate();
  await c1.closed;
  await svc.sendToConnection(c1.connectionId, { after: "drop" });
  const expired = signJwt(
    { aud: `${sb.endpoint}/client/hubs/${hub}`, sub: "exp", exp: Math.floor(Date.now() / 1000) - 600 },
    sb.keys[0],
  );
  const url = `ws://127.0.0.1:${sb.port}/client/hubs/${hub}?access_token=${expired}` +
    `&awps_connection_id=${encodeURIComponent(c1.connectionId)}&awps_reconnection_token=${encodeURIComponent(c1.connected.reconnectionToken)}`;
  const c2 = await openWs(url, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c2.close());
  const m = await c2.inbox.waitFor((f) => f.json?.type === "message", { what: "replayed message" });
  assert.deepEqual(m.json.data, { after: "drop" });
  assert.equal(c2.closeInfo, undefined);
});

it("recovery with a wrong awps_reconnection_token: upgrade accepted, then close 1008", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const { url } = await svc.getClientAccessToken({ userId: "wrong" });
  const c1 = await openWs(url, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c1.close());
  const connected = (await c1.inbox.next()).json;
  c1.ws.terminate();
  await c1.closed;

  const results = {};
  const attempt = async (label, params) => {
    let c;
    try {
      c = await openWs(withQuery(url, params), { protocols: JSON_RELIABLE_PROTOCOL });
    } catch (e) {
      results[label] = `upgrade refused: ${e.statusCode ?? e.message}`;
      return;
    }
    t.after(() => c.close());
    const info = await closedWithin(c, 10000, label).catch((e) => ({ code: e.message }));
    results[label] = info.code;
  };
  await attempt("wrong token", {
    awps_connection_id: connected.connectionId,
    awps_reconnection_token: "wrong-" + randomSuffix(20),
  });
  await attempt("token of another connection", {
    awps_connection_id: "unknown-" + randomSuffix(),
    awps_reconnection_token: connected.reconnectionToken,
  });
  await attempt("unknown connection id", {
    awps_connection_id: "unknown-" + randomSuffix(),
    awps_reconnection_token: "x",
  });
  assert.deepEqual(results, {
    "wrong token": 1008,
    "token of another connection": 1008,
    "unknown connection id": 1008,
  });
});

it("a connection closed over REST cannot be recovered (1008 even with the right token)", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const { url } = await svc.getClientAccessToken({ userId: "closed" });
  const c1 = await openWs(url, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c1.close());
  const connected = (await c1.inbox.next()).json;
  await svc.closeConnection(connected.connectionId, { reason: "done" });
  const d = await c1.inbox.waitFor((f) => f.json?.type === "system" && f.json.event === "disconnected");
  assert.equal(d.json.message, "done");
  await closedWithin(c1, 10000, "after closeConnection");
  const c2 = await openWs(
    withQuery(url, { awps_connection_id: connected.connectionId, awps_reconnection_token: connected.reconnectionToken }),
    { protocols: JSON_RELIABLE_PROTOCOL },
  );
  t.after(() => c2.close());
  const info = await closedWithin(c2, 10000, "recovery of a closed connection");
  assert.equal(info.code, 1008);
  assert.equal(await svc.connectionExists(connected.connectionId), false);
});

it("SDK client kicked over REST: recovery refused, new connection started, joined groups re-joined", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "rejoin-" + randomSuffix();
  const c = await startSdkClient(svc, { userId: "again", roles: ["webpubsub.joinLeaveGroup"] });
  t.after(() => c.stop());
  await c.client.joinGroup(g);
  const firstId = c.connectionId;
  await svc.closeConnection(firstId, { reason: "go away" });
  const d = await c.events.waitFor((e) => e.event === "disconnected", { timeout: 15000, what: "disconnected" });
  assert.equal(d.message?.message, "go away");
  const second = await c.events.waitFor((e) => e.event === "connected", { timeout: 15000, what: "second connected" });
  assert.notEqual(second.connectionId, firstId, "a fresh connection gets a new connectionId");
  assert.equal(second.userId, "again");
  await waitFor(
    async () => {
      const ids = (await collectAll(svc.group(g).listConnections())).map((m) => m.connectionId);
      return ids.length === 1 && ids[0] === second.connectionId;
    },
    { timeout: 10000, what: "the new connection to be re-joined to the group" },
  );
  assert.equal(await svc.connectionExists(firstId), false);
});

it("recovery while the old transport is still open replaces it; ackId history survives recovery", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const g = "stale-" + randomSuffix();
  const { url } = await svc.getClientAccessToken({ userId: "stale", roles: ["webpubsub.joinLeaveGroup"] });
  const c1 = await openWs(url, { protocols: JSON_RELIABLE_PROTOCOL });
  t.after(() => c1.close());
  const connected = (await c1.inbox.next()).json;
  await c1.sendJson({ type: "joinGroup", group: g, ackId: 5 });
  const a1 = await c1.inbox.waitFor((f) => f.json?.type === "ack");
  assert.deepEqual(a1.json, { type: "ack", ackId: 5, success: true });
  await svc.sendToConnection(connected.connectionId, { n: 1 });
  await c1.inbox.waitFor((f) => f.json?.data?.n === 1);

  // Recover on a second transport without closing the first.
  const c2 = await openWs(
    withQuery(url, { awps_connection_id: connected.connectionId, awps_reconnection_token: connected.reconnectionToken }),
    { protocols: JSON_RELIABLE_PROTOCOL },
  );
  t.after(() => c2.close());
  const old = await withTimeout(c1.closed, 10000, "the stale transport to be closed");
  t.diagnostic(`stale transport closed with ${JSON.stringify(old)}`);
  // Then new traffic, and a repeated ackId on the same logical connection.
  await svc.sendToConnection(connected.connectionId, { n: 2 });
  const m2 = await c2.inbox.waitFor((f) => f.json?.data?.n === 2);
  assert.equal(m2.json.sequenceId, 2);
  await c2.sendJson({ type: "leaveGroup", group: g, ackId: 5 });
  const a2 = await c2.inbox.waitFor((f) => f.json?.type === "ack");
  assert.equal(a2.json.success, false);
  assert.equal(a2.json.error?.name, "Duplicate", `ack after recovery: ${a2.text}`);
  assert.equal(await svc.groupExists(g), true, "group membership kept; duplicate leave not executed");
  // The client never acked n=1 (sequenceId 1): it must be replayed on the new transport, before n=2.
  const data = c2.inbox.all.filter((f) => f.json?.type === "message").map((f) => [f.json.sequenceId, f.json.data.n]);
  assert.deepEqual(data, [[1, 1], [2, 2]], "un-acked message must be replayed on the replacing transport");
});
