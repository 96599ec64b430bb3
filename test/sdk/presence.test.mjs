// Presence on a three-node cluster with the official clients: member notifications (hub config
// presence_notify) reach @azure/web-pubsub-client as server messages and @microsoft/signalr as
// invocations of "presence", a user with tabs on two nodes joins once and leaves once, the
// presence REST reads answer the same from every node, and a node killed with SIGKILL takes its
// users out: the survivors tell the members they left once its heartbeats stop (within 3 × 2 s
// plus one sweep). Group state: requests written and frames parsed with the client package's own
// protocol models (1.1.0 has no public API for them), on both JSON subprotocols.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster, hubName, signalrRest, startAppNegotiate, startHub, waitFor, signJwt } from "./harness.mjs";
import { serviceClient, startSdkClient, connectJson, WebPubSubJsonProtocol } from "./helpers.mjs";
import { WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";

const hub = hubName("presence");
const c = {};
const clients = [];

const CONFIG = `signalr:\n  addr: 127.0.0.1:0\nhubs:\n  _default:\n    presence_notify: ["room:*"]\n`;

before(async () => {
  c.cluster = await startCluster({ nodes: 3, signalr: true, config: CONFIG });
  c.svc = c.cluster.nodes.map((n) => serviceClient(n, hub));
});

after(async () => {
  for (const x of clients) x.stop();
  await c.app?.close();
  await c.cluster?.stop();
});

/** An SDK client of `user` connected directly to node i (0-based). */
async function clientOn(i, user) {
  const x = await startSdkClient(
    c.svc[i],
    { userId: user, roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"] },
    { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0, autoReconnect: false },
  );
  clients.push(x);
  return x;
}

/** The presence notifications a client got, as "event group user". */
const notices = (x) =>
  x.serverMessages.all.filter((m) => m.dataType === "json" && m.data?.type === "presence").map((m) => `${m.data.event} ${m.data.group} ${m.data.userId}`);

/** GET a presence read of `hub` on node i's Web PubSub REST API. */
async function rest(i, path) {
  const n = c.cluster.nodes[i];
  const url = `${n.endpoint}/api/hubs/${hub}${path}`;
  const aud = url.split("?")[0];
  const res = await fetch(url, { headers: { Authorization: `Bearer ${signJwt({ aud }, c.cluster.keys[0])}` }, signal: AbortSignal.timeout(15000) });
  assert.equal(res.status, 200, `${path} on n${i + 1}: ${res.status}`);
  return res.json();
}

const users = (page) => page.value.map((u) => `${u.userId}:${u.connections}`).join(" ");

test("a user's tabs on two nodes join once and leave once; every node answers the same", async () => {
  const watcher = await clientOn(0, "watcher");
  await watcher.client.joinGroup("room:1");
  await waitFor(() => notices(watcher).includes("joined room:1 watcher"), { what: "the watcher's own join" });

  const alice1 = await clientOn(1, "alice");
  await alice1.client.joinGroup("room:1");
  await waitFor(() => notices(watcher).includes("joined room:1 alice"), { what: "alice joined on n2" });
  const alice2 = await clientOn(2, "alice");
  await alice2.client.joinGroup("room:1");

  for (const i of [0, 1, 2]) {
    assert.equal(users(await rest(i, "/groups/room:1/users?maxpagesize=1")), "alice:2", `n${i + 1}, first page`);
    const p = await rest(i, "/presence");
    assert.deepEqual(p, { hub, connections: 3, users: 2, groups: 1, approximate: false }, `n${i + 1} presence`);
  }
  // A group message after alice's second join: nothing came before it but the first join.
  await alice2.client.sendToGroup("room:1", "after", "text");
  await waitFor(() => watcher.groupMessages.all.some((m) => m.data === "after"), { what: "the marker" });
  assert.deepEqual(notices(watcher), ["joined room:1 watcher", "joined room:1 alice"]);

  await alice1.client.leaveGroup("room:1");
  alice2.stop();
  await waitFor(() => notices(watcher).includes("left room:1 alice"), { what: "alice's last tab left" });
  assert.deepEqual(notices(watcher), ["joined room:1 watcher", "joined room:1 alice", "left room:1 alice"]);
});

test("SignalR members get an invocation of presence", async () => {
  c.app = await startAppNegotiate();
  const n2 = c.cluster.nodes[1];
  const r = c.app.route({ endpoint: n2.signalrEndpoint, key: c.cluster.keys[0], hub, userId: "sam" });
  const h = await startHub(r.url, { methods: ["presence"], label: "sam" });
  try {
    const rst = signalrRest(n2);
    const res = await rst.call("PUT", `/api/hubs/${hub}/groups/room:2/connections/${encodeURIComponent(h.conn.connectionId)}`);
    assert.equal(res.status, 200);
    const m = await h.inbox.waitFor((x) => x.target === "presence", { what: "presence invocation" });
    assert.deepEqual(m.args, [{ type: "presence", event: "joined", group: "room:2", userId: "sam" }]);
  } finally {
    await h.stop();
  }
});

test("group state through the client package's protocol models, across nodes", async () => {
  const members = [];
  for (const [i, user, proto] of [[0, "gina", WebPubSubJsonProtocol()], [1, "hal", WebPubSubJsonReliableProtocol()]]) {
    const conn = await connectJson(c.svc[i], {
      userId: user,
      roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"],
      groups: ["desk"],
      protocol: proto.name,
    });
    clients.push({ stop: () => conn.close() });
    // Every frame after "connected", parsed by the package (null: a kind it ignores).
    const parsed = async (what, pred) => {
      for (;;) {
        const f = await conn.inbox.next({ what });
        const m = proto.parseMessages(f.text);
        if (m && pred(m)) return m;
      }
    };
    const send = (msg) => new Promise((res, rej) => conn.ws.send(proto.writeMessage(msg), (e) => (e ? rej(e) : res())));
    members.push({ conn, proto, parsed, send });
  }
  const [g, h] = members;
  await h.send({ kind: "setGroupState", group: "desk", state: { status: "on call" }, ackId: 1 });
  const ack1 = await h.parsed("ack 1", (m) => m.kind === "ack");
  assert.deepEqual([ack1.ackId, ack1.success], [1, true]);

  await g.send({ kind: "subscribeGroupState", group: "desk", ackId: 1 });
  assert.equal((await g.parsed("subscribe ack", (m) => m.kind === "ack")).success, true);
  const snap = await g.parsed("snapshot", (m) => m.kind === "groupStateSnapshot");
  assert.equal(snap.group, "desk");
  assert.equal(snap.items.length, 1);
  assert.equal(snap.items[0].connectionId, h.conn.connectionId);
  assert.equal(snap.items[0].userId, "hal");
  assert.deepEqual(snap.items[0].state, { status: "on call" });
  assert.equal(typeof snap.items[0].updatedAt, "number");

  await h.send({ kind: "setGroupState", group: "desk", ackId: 2 }); // no state: cleared
  const upd = await g.parsed("update", (m) => m.kind === "groupStateUpdate");
  assert.equal(upd.items[0].connectionId, h.conn.connectionId);
  assert.equal(upd.items[0].state, undefined);
  assert.ok(upd.items[0].updatedAt >= snap.items[0].updatedAt);

  await g.send({ kind: "setGroupState", group: "elsewhere", state: { a: "b" }, ackId: 2 });
  const refused = await g.parsed("refused set", (m) => m.kind === "ack" && m.ackId === 2);
  assert.equal(refused.success, false);
  assert.equal(refused.error.name, "Forbidden");
});

test("a node killed with SIGKILL: its users leave within the heartbeat timeout", async () => {
  const watcher = clients[0];
  const bob = await clientOn(2, "bob");
  await bob.client.joinGroup("room:1");
  await waitFor(() => notices(watcher).includes("joined room:1 bob"), { what: "bob joined on n3" });
  const killed = Date.now();
  await c.cluster.nodes[2].kill();
  // Queries skip a node nobody serves any more at once; the notice waits for the heartbeats.
  await waitFor(async () => users(await rest(0, "/groups/room:1/users")) === "watcher:1", { timeout: 20000, what: "n1's listing without bob" });
  await waitFor(() => notices(watcher).includes("left room:1 bob"), { timeout: 30000, what: "bob's leave after n3 died" });
  console.log(`# bob's leave reached the watcher ${Date.now() - killed} ms after SIGKILL`);
});
