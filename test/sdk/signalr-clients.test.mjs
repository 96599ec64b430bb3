// SignalR (serverless) with the official @microsoft/signalr client (+ signalr-protocol-msgpack),
// unchanged, for every transport × protocol: the app's negotiate redirect, REST sends of every
// kind (2022-06-01 and v1 paths) with arguments of every JSON type, invocations and sends
// reaching the upstream (headers, signature, body) with result / void / error completions, and
// the connected / disconnected upstream events in order.
//
// One server per file (signalrSuite): the SignalR listener, one upstream (all patterns "*") and
// the test's own "app negotiate" endpoint; every test uses fresh hub names.
import assert from "node:assert/strict";
import {
  signalrSuite,
  hubName,
  randomSuffix,
  msgpackDecode,
  isMsgpackRequest,
  upstreamInvocation,
  assertUpstreamHeaders,
  startHub,
} from "./harness.mjs";

const { s, it } = signalrSuite();

// ServerSentEvents carries text only: MessagePack over SSE is tested to fail below.
const COMBOS = [
  ["WebSockets", "json"],
  ["WebSockets", "messagepack"],
  ["ServerSentEvents", "json"],
  ["LongPolling", "json"],
  ["LongPolling", "messagepack"],
];

// Arguments of every JSON type, nested objects, empty containers, non-ASCII text, and integers
// up to ±(2^53 - 1), which must come out exactly (MessagePack clients get them re-encoded).
const ARGS = [
  "text é✓🎉",
  0,
  -1,
  42,
  1.5,
  9007199254740991,
  -9007199254740991,
  true,
  false,
  null,
  [1, "two", [3, []]],
  { nested: { list: [1, 2, { deep: "yes" }], none: null, f: 2.25, big: 4294967296, neg: -70000 }, "": "empty key", é: {} },
];

/**
 * Per-connection ordering barrier: send a marker to h's connection and wait for it. Messages
 * the REST API accepted before the marker were delivered (or dropped) by then.
 */
async function barrier(hub, h) {
  const marker = `marker-${randomSuffix()}`;
  await s.rest.toConnection(hub, h.conn.connectionId, "newMessage", [marker]);
  await h.inbox.waitSeen((m) => m.args[0] === marker, { what: `barrier ${marker}` });
}

const got = (h, first) => h.inbox.waitSeen((m) => m.args[0] === first, { what: `message "${first}"` });
const never = (h, first) =>
  assert.equal(
    h.inbox.find((m) => m.args[0] === first),
    undefined,
    `${h.conn.connectionId} must not receive "${first}"; got ${JSON.stringify(h.inbox.all)}`,
  );

for (const [transport, protocol] of COMBOS) {
  it(`${transport}/${protocol}: negotiate redirect; broadcast, user, group and connection sends via REST (2022-06-01 and v1) arrive intact, only where addressed`, async (tc) => {
    const hub = hubName("sends");
    const opts = { transport, protocol };
    // Both user-id claim styles: asrs.s.uid (Management SDK) and nameid (docs).
    const alice = await tc.client({ hub, userId: "alice", claim: "asrs.s.uid" }, opts);
    const bob = await tc.client({ hub, userId: "bob", claim: "nameid" }, opts);

    // The redirect flow: the client asked the app first, exactly once, with negotiateVersion=1.
    for (const h of [alice, bob]) {
      assert.equal(h.route.route.negotiations, 1, "the app negotiate endpoint answered once");
      const req = s.app.requests.find((r) => r.url.startsWith(`${h.route.path}/`));
      assert.equal(req.method, "POST");
      assert.equal(req.url, `${h.route.path}/negotiate?negotiateVersion=1`);
      assert.equal(typeof h.conn.connectionId, "string");
      assert.ok(h.conn.connectionId.length > 0, "connectionId from the service's negotiate");
    }
    assert.notEqual(alice.conn.connectionId, bob.conn.connectionId);

    // Broadcast (2022-06-01, camelCase body): everything arrives exactly as sent.
    await s.rest.broadcast(hub, "newMessage", ["bc", ...ARGS]);
    for (const h of [alice, bob]) {
      const m = await got(h, "bc");
      assert.deepEqual(m.args, ["bc", ...ARGS], `broadcast arguments intact (${transport}/${protocol})`);
    }
    // Broadcast (v1).
    await s.rest.v1.broadcast(hub, "newMessage", ["bc-v1", { k: [1, null] }]);
    for (const h of [alice, bob]) assert.deepEqual((await got(h, "bc-v1")).args, ["bc-v1", { k: [1, null] }]);

    // User sends: PascalCase body (Management SDK) on 2022-06-01, camelCase on v1.
    await s.rest.toUser(hub, "alice", undefined, undefined, { body: { Target: "newMessage", Arguments: ["to-alice", ...ARGS] } });
    assert.deepEqual((await got(alice, "to-alice")).args, ["to-alice", ...ARGS]);
    await s.rest.v1.toUser(hub, "bob", "newMessage", ["to-bob-v1", 7]);
    assert.deepEqual((await got(bob, "to-bob-v1")).args, ["to-bob-v1", 7]);
    await barrier(hub, alice);
    await barrier(hub, bob);
    never(bob, "to-alice");
    never(alice, "to-bob-v1");

    // Connection → group, then group sends (2022-06-01 and v1).
    const g1 = `g1-${randomSuffix()}`;
    await s.rest.addToGroup(hub, g1, alice.conn.connectionId);
    await s.rest.toGroup(hub, g1, "newMessage", ["to-g1", ...ARGS]);
    assert.deepEqual((await got(alice, "to-g1")).args, ["to-g1", ...ARGS]);
    await s.rest.v1.toGroup(hub, g1, "newMessage", ["to-g1-v1", "x"]);
    assert.deepEqual((await got(alice, "to-g1-v1")).args, ["to-g1-v1", "x"]);
    // User → group (bob's existing connection joins).
    const g2 = `g2-${randomSuffix()}`;
    await s.rest.addUserToGroup(hub, "bob", g2);
    await s.rest.toGroup(hub, g2, "newMessage", ["to-g2", { deep: { er: [true] } }]);
    assert.deepEqual((await got(bob, "to-g2")).args, ["to-g2", { deep: { er: [true] } }]);
    await barrier(hub, alice);
    await barrier(hub, bob);
    never(bob, "to-g1");
    never(bob, "to-g1-v1");
    never(alice, "to-g2");

    // Connection sends (2022-06-01 and v1).
    await s.rest.toConnection(hub, bob.conn.connectionId, "newMessage", ["to-bob-conn", ...ARGS]);
    assert.deepEqual((await got(bob, "to-bob-conn")).args, ["to-bob-conn", ...ARGS]);
    await s.rest.v1.toConnection(hub, alice.conn.connectionId, "newMessage", ["to-alice-conn-v1", -2]);
    assert.deepEqual((await got(alice, "to-alice-conn-v1")).args, ["to-alice-conn-v1", -2]);
    await barrier(hub, alice);
    await barrier(hub, bob);
    never(alice, "to-bob-conn");
    never(bob, "to-alice-conn-v1");

    // Each message arrived once.
    for (const h of [alice, bob]) {
      const firsts = h.inbox.all.map((m) => m.args[0]);
      assert.equal(new Set(firsts).size, firsts.length, `no duplicates: ${JSON.stringify(firsts)}`);
      assert.equal(h.events.all.length, 0, `no reconnect/close events: ${JSON.stringify(h.events.all)}`);
    }
  });

  it(`${transport}/${protocol}: invoke/send reach the upstream (headers, signature, body); result, void and error completions; connected/disconnected in order`, async (tc) => {
    const hub = hubName("upstream");
    const { keys } = s.sb;
    const h = await tc.client({ hub, userId: "carol" }, { transport, protocol });
    const id = h.conn.connectionId;
    const expectHeaders = (rec, category, event) =>
      assertUpstreamHeaders(assert, rec, { connectionId: id, hub, category, event, userId: "carol", keys });
    const ofMine = (pred) => (r) => r.headers["x-asrs-connection-id"] === id && pred(r);

    // connected: JSON {"type":10} whatever the client's protocol.
    const connected = await s.upstream.requests.waitSeen(ofMine((r) => r.event === "connected"), { what: "connections/connected" });
    expectHeaders(connected, "connections", "connected");
    assert.match(connected.contentType, /^application\/json/i);
    assert.deepEqual(JSON.parse(connected.body.toString("utf8")), { type: 10 });

    // invoke → upstream → the upstream's Completion relayed verbatim.
    const args = [1, "a", { x: [1, 2], n: null }, 9007199254740991];
    const result = await h.conn.invoke("echo", ...args);
    assert.deepEqual(result, { echo: args, connectionId: id }, "the upstream's result comes back");
    const echo = await s.upstream.requests.waitSeen(ofMine((r) => r.event === "echo"), { what: "messages/echo" });
    expectHeaders(echo, "messages", "echo");
    assert.equal(echo.decodeError, undefined, `upstream body must decode: ${echo.body.toString("hex")}`);
    if (protocol === "messagepack") {
      assert.ok(isMsgpackRequest(echo), `Content-Type application/x-msgpack, got ${echo.contentType}`);
      assert.ok(Array.isArray(echo.message), "body = the msgpack Invocation array (no VarInt prefix)");
      assert.equal(msgpackDecode(echo.body).end, echo.body.length, "exactly one msgpack value, nothing after it");
    } else {
      assert.match(echo.contentType, /^application\/json/i);
      assert.notEqual(echo.body.at(-1), 0x1e, "no 0x1E record separator in the upstream body");
    }
    const inv = upstreamInvocation(echo);
    assert.equal(inv.type, 1);
    assert.equal(typeof inv.invocationId, "string");
    assert.ok(inv.invocationId.length > 0);
    assert.equal(inv.target, "echo");
    assert.deepEqual(inv.arguments, args);

    // 204 and an empty 200 → void completion.
    assert.ok((await h.conn.invoke("nothing", 1)) == null, "204 → void completion");
    assert.ok((await h.conn.invoke("empty")) == null, "empty 200 → void completion");
    // Other statuses → "Invocation failed, status code N".
    await assert.rejects(h.conn.invoke("explode", 2), /Invocation failed, status code 500/);
    await assert.rejects(h.conn.invoke("missing"), /Invocation failed, status code 404/);
    // A Completion with an error from the upstream, verbatim.
    await assert.rejects(h.conn.invoke("refuse"), /refused by upstream/);

    // send(): forwarded without invocationId; the upstream's answer never reaches the client.
    await h.conn.send("notify", 7, "x");
    const notify = await s.upstream.requests.waitSeen(ofMine((r) => r.event === "notify"), { what: "messages/notify" });
    expectHeaders(notify, "messages", "notify");
    const n = upstreamInvocation(notify);
    assert.equal(n.type, 1);
    assert.equal(n.target, "notify");
    assert.deepEqual(n.arguments, [7, "x"]);
    if (protocol === "messagepack") assert.equal(n.raw[2], null, "send(): nil invocationId");
    else assert.equal("invocationId" in n.raw, false, `send(): no invocationId key: ${notify.body}`);

    // The connection is intact after the errors and the ignored answer.
    assert.deepEqual(await h.conn.invoke("echo", "still alive"), { echo: ["still alive"], connectionId: id });
    assert.equal(h.events.all.length, 0, `no close/reconnect: ${JSON.stringify(h.events.all)}`);

    // stop → disconnected {"type":11} without an error.
    await h.conn.stop();
    const disconnected = await s.upstream.requests.waitSeen(ofMine((r) => r.event === "disconnected"), {
      timeout: 30000,
      what: "connections/disconnected",
    });
    expectHeaders(disconnected, "connections", "disconnected");
    assert.match(disconnected.contentType, /^application\/json/i);
    const d = JSON.parse(disconnected.body.toString("utf8"));
    assert.equal(d.type, 11);
    if (transport === "ServerSentEvents") {
      // SSE has no explicit end: the client sends its Close message without awaiting it and
      // closes the EventSource at once, so the server may see a vanished client first.
      if (d.error) tc.t.diagnostic(`SSE stop reported as: ${JSON.stringify(d)}`);
      assert.ok(d.error === undefined || typeof d.error === "string", JSON.stringify(d));
    } else {
      assert.ok(!d.error, `a clean stop (WebSocket close / DELETE) has no error: ${JSON.stringify(d)}`);
    }

    // Order: connected first, disconnected last, once each; the invocations in between.
    const seq = s.upstream.of(id).map((r) => `${r.category}/${r.event}`);
    assert.equal(seq[0], "connections/connected", JSON.stringify(seq));
    assert.equal(seq.at(-1), "connections/disconnected", JSON.stringify(seq));
    assert.equal(seq.filter((x) => x === "connections/connected").length, 1, JSON.stringify(seq));
    assert.equal(seq.filter((x) => x === "connections/disconnected").length, 1, JSON.stringify(seq));
    assert.deepEqual(
      seq.slice(1, -1).sort(),
      ["echo", "nothing", "empty", "explode", "missing", "refuse", "notify", "echo"].map((e) => `messages/${e}`).sort(),
    );
    // The invokes were awaited one after the other, so they reached the upstream in that order.
    assert.deepEqual(
      seq.filter((x) => x !== "messages/notify").slice(1, 8),
      ["echo", "nothing", "empty", "explode", "missing", "refuse", "echo"].map((e) => `messages/${e}`),
    );
  });
}

it("ServerSentEvents/messagepack: start() fails (SSE is text-only and the negotiate response says so)", async (tc) => {
  const hub = hubName("ssemp");
  const r = tc.route({ hub, userId: "sam" });
  const h = await startHub(r.url, { transport: "ServerSentEvents", protocol: "messagepack", start: false });
  tc.defer(() => h.stop());
  await assert.rejects(h.conn.start(), (e) => {
    assert.match(e.message, /'ServerSentEvents' does not support Binary/, e.message + h.diag());
    return true;
  });
  assert.equal(r.route.negotiations, 1, "the redirect was followed before the transport was refused");
});

it("anonymous connection (token without a user id): no X-ASRS-User-Id; broadcast still reaches it", async (tc) => {
  const hub = hubName("anon");
  const h = await tc.client({ hub }, { transport: "WebSockets", protocol: "json" });
  const id = h.conn.connectionId;
  assert.deepEqual(await h.conn.invoke("echo", "anon"), { echo: ["anon"], connectionId: id });
  const rec = s.upstream.requests.find((r) => r.headers["x-asrs-connection-id"] === id && r.event === "echo");
  assertUpstreamHeaders(assert, rec, { connectionId: id, hub, category: "messages", event: "echo", userId: undefined, keys: s.sb.keys });
  await s.rest.broadcast(hub, "newMessage", ["to-all"]);
  await got(h, "to-all");
});
