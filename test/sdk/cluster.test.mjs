// Cluster scenario: three Switchboard nodes on one NATS server (cluster.nats_url), the backend's
// WebPubSubServiceClient talking to node n1 only, @azure/web-pubsub-client clients connecting
// through a round-robin TCP proxy (the load balancer) so that they land on different nodes (and a
// reliable one whose socket the proxy drops recovering through it on another node), and
// @microsoft/signalr clients through a round-robin proxy of the SignalR ports (negotiate and
// WebSocket, event stream or polls on different nodes, a stateful reconnect on yet another)
// getting REST sends made on n1. Every send must
// reach exactly the clients it names, exactly once: "exactly once" is checked after a barrier
// (a unique sendToConnection from n1, which n1 orders after its earlier sends on every node).
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startCluster,
  hubName,
  randomSuffix,
  withPort,
  signalrConfig,
  signalrRest,
  startAppNegotiate,
  startHub,
  waitFor,
} from "./harness.mjs";
import { serviceClient, startSdkClient, barrierSdk, collectAll } from "./helpers.mjs";

const hub = hubName("cluster");
const c = {};
let svc; // the backend: REST on node n1 only
let clients = []; // [{name, user, sdk (startSdkClient result)}]

// Round robin, in start order: a→n1, b→n2, c→n3, d→n1. Users: a and c are both "alice".
const PLAN = [
  { name: "a", user: "alice" },
  { name: "b", user: "bob" },
  { name: "c", user: "alice" },
  { name: "d", user: "dave" },
];

const nodeOf = (connectionId) => connectionId.slice(0, connectionId.indexOf("_"));
/** The node id of the node a proxy connection went to (its main or SignalR port). */
const nodeAt = (port) => `n${c.cluster.nodes.findIndex((n) => n.port === port || n.signalrPort === port) + 1}`;
/** A query parameter of a proxied HTTP request line. */
const queryOf = (line, name) => new URL(line.split(" ")[1] ?? "/", "http://x").searchParams.get(name);
const byName = (n) => clients.find((x) => x.name === n);

/**
 * A client through the proxy: the token comes from n1 (the backend), the socket goes to the proxy.
 * Keep-alive pings and the keep-alive timeout monitor are off: the SDK's loops for them sleep 20 s
 * and 40 s without watching stop(), which kept this file's process alive ~40 s after its last test.
 */
function connectViaProxy(user, clientOpts = {}) {
  return startSdkClient(
    svc,
    { userId: user, roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"] },
    { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0, ...clientOpts },
    { urlTransform: (u) => withPort(u, c.cluster.proxy.port) },
  );
}

before(async () => {
  c.cluster = await startCluster({ nodes: 3, signalr: true, config: signalrConfig() });
  svc = serviceClient(c.cluster.nodes[0], hub);
  for (const p of PLAN) clients.push({ ...p, sdk: await connectViaProxy(p.user) });
});

/**
 * Stop a WebPubSubClient and wait for its `stopped` event while its node and the proxy are still
 * up, so that its close handshake completes (ws otherwise keeps a 30 s close timer).
 */
async function stopClient(x) {
  x.stop();
  await x.events.waitSeen((e) => e.event === "stopped", { timeout: 5000, what: "stopped" }).catch(() => {});
}

after(async () => {
  for (const x of clients) await stopClient(x.sdk);
  await c.cluster?.stop();
});

/** test() with the cluster's logs appended to a failure. */
const it = (name, fn) =>
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      try {
        err.message += `\n--- clients: ${clients.map((x) => `${x.name}=${x.sdk.connectionId}`).join(" ")}` + c.cluster.diag();
      } catch {
        /* read-only message */
      }
      throw err;
    }
  });

/**
 * After a barrier on every client: the messages whose data.tag is `tag` (server messages, or group
 * messages for a REST group send) arrived exactly once at each client named in `want` and never at
 * the others.
 */
async function assertServerDelivery(tag, want) {
  for (const x of clients) await barrierSdk(svc, x.sdk);
  for (const x of clients) {
    const got = [...x.sdk.serverMessages.all, ...x.sdk.groupMessages.all].filter((m) => m.data?.tag === tag).length;
    const seen = () => JSON.stringify([...x.sdk.serverMessages.all.slice(-6), ...x.sdk.groupMessages.all.slice(-3)]);
    assert.equal(got, want.includes(x.name) ? 1 : 0, `client ${x.name} (${x.sdk.connectionId}) got ${tag} ${got} times; last messages: ${seen()}`);
  }
}

it("clients behind the round-robin proxy land on different nodes", () => {
  const nodes = new Set(clients.map((x) => nodeOf(x.sdk.connectionId)));
  for (const n of nodes) assert.match(n, /^n[123]$/, "a connection id starts with its node's server.node_id");
  assert.ok(nodes.size >= 2, `clients on at least two nodes: ${[...clients.map((x) => x.sdk.connectionId)]}`);
  assert.ok(
    clients.some((x) => nodeOf(x.sdk.connectionId) !== "n1"),
    "some client is on a node other than n1, where the backend sends",
  );
});

it("sendToAll on n1 reaches every client on every node once", async () => {
  const tag = `all-${randomSuffix()}`;
  await svc.sendToAll({ tag });
  await assertServerDelivery(tag, ["a", "b", "c", "d"]);
});

it("sendToUser on n1 reaches the user's connections on every node once, and nobody else", async () => {
  assert.notEqual(nodeOf(byName("a").sdk.connectionId), nodeOf(byName("c").sdk.connectionId), "alice on two nodes");
  const tag = `user-${randomSuffix()}`;
  await svc.sendToUser("alice", { tag });
  await assertServerDelivery(tag, ["a", "c"]);
});

it("sendToConnection on n1 reaches a client held by another node, and only it", async () => {
  const target = clients.find((x) => nodeOf(x.sdk.connectionId) !== "n1");
  const tag = `conn-${randomSuffix()}`;
  await svc.sendToConnection(target.sdk.connectionId, { tag });
  await assertServerDelivery(tag, [target.name]);
});

it("a REST group send on n1 reaches the members that joined on their own nodes", async () => {
  const g = `g-${randomSuffix()}`;
  await byName("b").sdk.client.joinGroup(g);
  await byName("c").sdk.client.joinGroup(g);
  const tag = `group-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag });
  await assertServerDelivery(tag, ["b", "c"]);
});

it("group.addConnection on n1 for a client on another node, then a group send", async () => {
  const target = clients.find((x) => nodeOf(x.sdk.connectionId) !== "n1");
  const g = `added-${randomSuffix()}`;
  await svc.group(g).addConnection(target.sdk.connectionId);
  const tag = `added-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag });
  await assertServerDelivery(tag, [target.name]);
  // And removed again the same way: the next group send reaches nobody.
  await svc.group(g).removeConnection(target.sdk.connectionId);
  const tag2 = `removed-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag: tag2 });
  await assertServerDelivery(tag2, []);
});

it("a client's sendToGroup reaches the group's members on the other nodes once", async () => {
  const g = `cg-${randomSuffix()}`;
  const sender = byName("b"); // n2
  for (const n of ["a", "c", "d"]) await byName(n).sdk.client.joinGroup(g);
  const tag = `cg-${randomSuffix()}`;
  await sender.sdk.client.sendToGroup(g, { tag }, "json"); // waits for the ack
  for (const n of ["a", "c", "d"]) {
    const m = await byName(n).sdk.groupMessages.waitFor((x) => x.data?.tag === tag, { timeout: 10000, what: `group message ${tag}` });
    assert.equal(m.group, g);
    assert.equal(m.fromUserId, "bob");
  }
  // Ops from one node keep their order everywhere: a second group send from the same client is a
  // barrier for the first one; after it, each member has the first exactly once and the sender none.
  const done = `cg-done-${randomSuffix()}`;
  await sender.sdk.client.sendToGroup(g, { tag: done }, "json");
  for (const n of ["a", "c", "d"]) {
    const x = byName(n).sdk;
    await x.groupMessages.waitFor((m) => m.data?.tag === done, { timeout: 10000, what: `group message ${done}` });
    assert.equal(x.groupMessages.filter((m) => m.data?.tag === tag).length, 1, `client ${n} got ${tag} once`);
  }
  assert.equal(sender.sdk.groupMessages.filter((m) => m.data?.tag === tag).length, 0, "the sender is not a member");
});

it("closeConnection on n1 closes a client held by another node, and only it", async () => {
  // Proxy connections go round robin: open until one lands on a node other than n1.
  let victim;
  const extra = [];
  try {
    for (let i = 0; i < 3 && !victim; i++) {
      const x = await connectViaProxy("victim", { autoReconnect: false });
      extra.push(x);
      if (nodeOf(x.connectionId) !== "n1") victim = x;
    }
    assert.ok(victim, "a proxied connection on n2 or n3");
    assert.equal(await svc.connectionExists(victim.connectionId), true, "n1 sees the remote connection");
    await svc.closeConnection(victim.connectionId, { reason: "cluster-close" });
    await victim.events.waitFor((e) => e.event === "disconnected", { timeout: 10000, what: "the victim's disconnected event" });
    assert.equal(await svc.connectionExists(victim.connectionId), false, "gone on its node, seen from n1");
    // The others stay connected and still get sends.
    const tag = `after-close-${randomSuffix()}`;
    await svc.sendToAll({ tag });
    await assertServerDelivery(tag, ["a", "b", "c", "d"]);
    for (const x of clients) {
      assert.equal(x.sdk.events.filter((e) => e.event === "disconnected").length, 0, `client ${x.name} stayed connected`);
    }
  } finally {
    for (const x of extra) await stopClient(x);
  }
});

it("@microsoft/signalr clients through the proxy (negotiate and WebSocket on different nodes) get a REST send made on n1", async () => {
  const app = await startAppNegotiate();
  const px = c.cluster.signalrProxy;
  const hubs = [];
  try {
    const sigHub = hubName("clusterSignalr");
    const mark = px.accepted();
    // Which node each WebSocket reached, against the node that holds its connection (named by the
    // connection token, as by the connection id). The negotiate's fetch may reuse a kept-alive
    // connection the proxy pinned to a node: clients are started until one crossed (at most 4).
    const sockets = () => px.connections.slice(mark).filter((e) => e.line.startsWith("GET /client/") && queryOf(e.line, "id"));
    const crossed = () => sockets().filter((e) => nodeOf(queryOf(e.line, "id")) !== nodeAt(e.port));
    for (let i = 1; i <= 4 && (hubs.length < 2 || crossed().length === 0); i++) {
      const user = `sig-${i}`;
      const r = app.route({ endpoint: `http://127.0.0.1:${px.port}`, key: c.cluster.keys[0], hub: sigHub, userId: user });
      hubs.push(await startHub(r.url, { label: user }));
    }
    assert.equal(sockets().length, hubs.length, `one WebSocket per client: ${JSON.stringify(sockets())}`);
    assert.ok(crossed().length >= 1, `a WebSocket on another node than its negotiate: ${JSON.stringify(sockets().map((e) => [nodeAt(e.port), e.line]))}`);
    const rest = signalrRest(c.cluster.nodes[0]);
    const tag = `sig-${randomSuffix()}`;
    await rest.broadcast(sigHub, "newMessage", [tag]);
    await rest.toUser(sigHub, "sig-2", "newMessage", [`${tag}-user`]);
    // The user send was accepted after the broadcast by the same node: once it is there, the
    // broadcast is there too, exactly once, and the user send reached only its user.
    await hubs[1].inbox.waitFor((m) => m.args[0] === `${tag}-user`, { timeout: 10000, what: "send to user sig-2" });
    await hubs[0].inbox.waitSeen((m) => m.args[0] === tag, { timeout: 10000, what: "broadcast to sig-1" });
    for (const h of hubs) assert.equal(h.inbox.filter((m) => m.args[0] === tag).length, 1);
    await rest.toConnection(sigHub, hubs[0].conn.connectionId, "newMessage", [`${tag}-barrier`]);
    await hubs[0].inbox.waitSeen((m) => m.args[0] === `${tag}-barrier`, { timeout: 10000, what: "barrier to sig-1" });
    assert.equal(hubs[0].inbox.filter((m) => m.args[0] === `${tag}-user`).length, 0, "sig-1 did not get sig-2's message");
    // Client to server through the relay: a hub method call answers (no upstream: a completion
    // with an error, from the connection's node).
    await assert.rejects(hubs[0].conn.invoke("nothing"), /./, "an invocation gets its completion back through the relay");
  } finally {
    for (const h of hubs) await h.stop();
    await app.close();
  }
});

for (const transport of ["ServerSentEvents", "LongPolling"]) {
  it(`@microsoft/signalr over ${transport} through the proxy: stream or polls and POSTs on other nodes than the negotiate`, async () => {
    const app = await startAppNegotiate();
    const px = c.cluster.signalrProxy;
    let h;
    try {
      const sigHub = hubName(`cluster${transport}`);
      const r = app.route({ endpoint: `http://127.0.0.1:${px.port}`, key: c.cluster.keys[0], hub: sigHub, userId: "http-user" });
      // The client's fetches reuse kept-alive connections, which the proxy pinned to a node:
      // start clients until one sent its stream, a poll or a POST to another node than its
      // negotiate.
      const crossing = (mark) =>
        px.requests.slice(mark).find((e) => e.line.includes(" /client/?") && queryOf(e.line, "id") && nodeAt(e.port) !== nodeOf(h.conn.connectionId));
      let mark;
      for (let attempt = 1; attempt <= 4 && (attempt === 1 || !crossing(mark)); attempt++) {
        await h?.stop();
        mark = px.requests.length;
        h = await startHub(r.url, { transport, methods: ["seq"], label: transport });
      }
      const id = h.conn.connectionId;
      const rest = signalrRest(c.cluster.nodes[0]);
      for (let i = 1; i <= 30; i++) await rest.toConnection(sigHub, id, "seq", [i]);
      await h.inbox.waitSeen((m) => m.args[0] === 30, { timeout: 10000, what: "seq 30" });
      assert.deepEqual(h.inbox.all.map((m) => m.args[0]), Array.from({ length: 30 }, (_, i) => i + 1), "1..30 exactly once, in order");
      // A POST (an invocation, wherever the client's fetch sends it) and its completion back.
      await assert.rejects(h.conn.invoke("nothing"), /./, "an invocation gets its completion back");
      const requests = px.requests.slice(mark).filter((e) => queryOf(e.line, "id"));
      assert.ok(
        crossing(mark),
        `a ${transport} request of ${id} on another node: ${JSON.stringify(requests.map((e) => [nodeAt(e.port), e.line.split(" ")[0]]))}`,
      );
    } catch (err) {
      if (h) err.message += h.diag();
      throw err;
    } finally {
      await h?.stop();
      await app.close();
    }
  });
}

it("@microsoft/signalr stateful reconnect through the proxy to another node: nothing lost, nothing twice", async () => {
  const app = await startAppNegotiate();
  const px = c.cluster.signalrProxy;
  let h;
  try {
    const sigHub = hubName("clusterStateful");
    const r = app.route({ endpoint: `http://127.0.0.1:${px.port}`, key: c.cluster.keys[0], hub: sigHub, userId: "sue" });
    const mark = px.accepted();
    h = await startHub(r.url, { stateful: true, methods: ["seq"], label: "sue" });
    const id = h.conn.connectionId;
    const rest = signalrRest(c.cluster.nodes[0]);
    const sockets = () => px.connections.slice(mark).filter((e) => e.line.startsWith("GET /client/") && queryOf(e.line, "id"));
    const crossed = () => sockets().some((e) => nodeAt(e.port) !== nodeOf(id));
    let n = 0;
    const send = async (until) => {
      while (n < until) await rest.toConnection(sigHub, id, "seq", [++n]);
    };
    await send(50);
    await h.inbox.waitSeen((m) => m.args[0] === 50, { timeout: 10000, what: "seq 50 before the drop" });
    // Drop the WebSocket (RST both ways) while sends go on, until one of its sockets reached a node
    // other than the connection's (round robin: the next socket goes to the next node).
    for (let drop = 1; drop <= 3 && (drop === 1 || !crossed()); drop++) {
      const opened = sockets().length;
      assert.ok(px.dropFrom(mark) >= 1, "the WebSocket went through the proxy");
      await send(50 + drop * 50);
      await waitFor(() => sockets().length > opened, { timeout: 30000, what: `the WebSocket's reconnect ${drop} through the proxy` });
    }
    assert.ok(crossed(), `a WebSocket of ${id} on another node: ${JSON.stringify(sockets().map((e) => nodeAt(e.port)))}`);
    const last = n + 50;
    await send(last);
    await h.inbox.waitSeen((m) => m.args[0] === last, { timeout: 30000, what: `seq ${last}` });
    const received = h.inbox.all.map((m) => m.args[0]);
    assert.deepEqual(received, Array.from({ length: last }, (_, i) => i + 1), "1..N exactly once, in order");
    assert.equal(h.conn.connectionId, id, "the same connection");
    assert.deepEqual(h.events.all, [], "no reconnecting/close: the transport was resumed under the hub connection");
  } catch (err) {
    if (h) err.message += h.diag();
    throw err;
  } finally {
    await h?.stop();
    await app.close();
  }
});

it("a reliable WebPubSubClient whose socket the proxy drops recovers through it on another node: nothing lost, nothing twice", async () => {
  const px = c.cluster.proxy;
  const mark = px.accepted();
  const x = await connectViaProxy("rover");
  try {
    const g = `rel-${randomSuffix()}`;
    await x.client.joinGroup(g);
    const N = 200;
    const received = () => x.groupMessages.all.filter((m) => typeof m.data?.i === "number").map((m) => m.data.i);
    const drops = [];
    for (let i = 0; i < N; i++) {
      await svc.group(g).sendToAll({ i });
      if (i === 60 || i === 130) {
        if (i === 130) await waitFor(() => received().some((v) => v > 60), { timeout: 35000, what: "recovery after the first drop" });
        drops.push(px.dropFrom(mark));
      }
    }
    await svc.group(g).sendToAll({ end: true });
    await x.groupMessages.waitFor((m) => m.data?.end === true, { timeout: 60000, what: "end-of-sequence sentinel" });
    assert.ok(drops.every((d) => d >= 1), `each drop killed the live socket: ${drops}`);
    const got = received();
    const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !got.includes(i));
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => i), `0..${N - 1} exactly once, in order; missing ${missing.slice(0, 20)}`);
    const seq = x.groupMessages.all.map((m) => m.sequenceId);
    for (let i = 1; i < seq.length; i++) assert.equal(seq[i], seq[i - 1] + 1, `sequenceId gap at ${i}`);
    const names = x.events.all.map((e) => e.event);
    assert.equal(names.filter((e) => e === "connected").length, 1, "recovered, not reconnected");
    assert.equal(names.filter((e) => e === "disconnected").length, 0);
    const recoveries = px.connections.slice(mark).filter((e) => queryOf(e.line, "awps_connection_id") === x.connectionId);
    assert.ok(
      recoveries.some((e) => nodeAt(e.port) !== nodeOf(x.connectionId)),
      `a recovery of ${x.connectionId} through another node: ${JSON.stringify(recoveries.map((e) => nodeAt(e.port)))}`,
    );
    const members = (await collectAll(svc.group(g).listConnections())).map((m) => m.connectionId);
    assert.deepEqual(members, [x.connectionId], "group membership survives recovery");
  } finally {
    await stopClient(x);
  }
});
