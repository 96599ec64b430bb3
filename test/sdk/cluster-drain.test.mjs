// A node of a three-node cluster stopped with SIGTERM, then another killed with SIGKILL: the
// first drains as a single node does (exit 0); the @azure/web-pubsub-client clients (reliable
// protocol, autoReconnect, autoRejoinGroups) of both come back through the round-robin proxy on
// the nodes left as new connections (their sessions died with their node), rejoin their groups,
// and get every group send made after, once. Clients of the live nodes notice nothing.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster, hubName, randomSuffix, withPort } from "./harness.mjs";
import { serviceClient, startSdkClient } from "./helpers.mjs";

const hub = hubName("drain");
const c = {};
let svc; // REST on n1, which stays up
const clients = [];

const nodeOf = (connectionId) => connectionId.slice(0, connectionId.indexOf("_"));

before(async () => {
  c.cluster = await startCluster({ nodes: 3 });
  svc = serviceClient(c.cluster.nodes[0], hub);
  // Round robin: the three sockets land on n1, n2, n3.
  for (const name of ["a", "b", "c"]) {
    const sdk = await startSdkClient(
      svc,
      { userId: name, roles: ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"] },
      // Keep-alive loops off: they sleep 20 s and 40 s without watching stop().
      { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 },
      { urlTransform: (u) => withPort(u, c.cluster.proxy.port) },
    );
    clients.push({ name, sdk });
  }
});

after(async () => {
  for (const x of clients) {
    x.sdk.stop();
    await x.sdk.events.waitSeen((e) => e.event === "stopped", { timeout: 5000, what: "stopped" }).catch(() => {});
  }
  await c.cluster?.stop();
});

const connectedIds = (x) => x.sdk.events.filter((e) => e.event === "connected").map((e) => e.connectionId);
const currentId = (x) => connectedIds(x).at(-1);

const it = (name, fn) =>
  test(name, async (t) => {
    try {
      await fn();
    } catch (err) {
      t.diagnostic(c.cluster.diag());
      throw err;
    }
  });

it("SIGTERM on a node: its clients come back on the others and miss no later send", async () => {
  const nodes = new Set(clients.map((x) => nodeOf(currentId(x))));
  assert.equal(nodes.size, 3, `one client per node: ${clients.map((x) => currentId(x))}`);
  const g = `room-${randomSuffix()}`;
  for (const x of clients) await x.sdk.client.joinGroup(g);

  const victim = clients.find((x) => nodeOf(currentId(x)) === "n2");
  const others = clients.filter((x) => x !== victim);
  const n2 = c.cluster.nodes[1];
  const exit = await n2.stop(); // SIGTERM; SIGKILL only if it does not drain in time
  assert.deepEqual(exit, { code: 0, signal: null }, "n2 drained and exited 0 on SIGTERM");

  await victim.sdk.events.waitFor((e) => e.event === "disconnected", { timeout: 15000, what: "the victim's disconnected event" });
  const back = await victim.sdk.events.waitFor((e) => e.event === "connected" && nodeOf(e.connectionId) !== "n2", {
    timeout: 30000,
    what: "the victim connected again on n1 or n3",
  });
  assert.match(nodeOf(back.connectionId), /^n[13]$/);

  // autoRejoinGroups runs after the connected event: a group send is retried until the victim
  // has one (each try has its own tag), then one last send must reach every client once.
  await waitForGroupDelivery(victim, g);
  const tag = `after-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag });
  const done = `done-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag: done }); // sends from one node keep their order: a barrier
  for (const x of clients) {
    await x.sdk.groupMessages.waitFor((m) => m.data?.tag === done, { timeout: 10000, what: `${x.name}: ${done}` });
    assert.equal(x.sdk.groupMessages.filter((m) => m.data?.tag === tag).length, 1, `client ${x.name} got ${tag} once`);
  }
  for (const x of others) {
    assert.equal(x.sdk.events.filter((e) => e.event === "disconnected").length, 0, `client ${x.name} on a live node stayed connected`);
    assert.equal(connectedIds(x).length, 1, `client ${x.name} kept its connection`);
  }
});

it("SIGKILL on a node: its clients come back on the node left and miss no later send", async () => {
  const g = `room-${randomSuffix()}`;
  for (const x of clients) await x.sdk.client.joinGroup(g);
  const victims = clients.filter((x) => nodeOf(currentId(x)) === "n3");
  const others = clients.filter((x) => !victims.includes(x));
  assert.ok(victims.length > 0, `a client on n3: ${clients.map((x) => currentId(x))}`);
  const before = new Map(clients.map((x) => [x, connectedIds(x).length]));
  const exit = await c.cluster.nodes[2].kill();
  assert.equal(exit.signal, "SIGKILL");

  for (const x of victims) {
    const back = await x.sdk.events.waitFor((e) => e.event === "connected" && nodeOf(e.connectionId) === "n1", {
      timeout: 30000,
      what: `${x.name} connected again on n1`,
    });
    assert.equal(nodeOf(back.connectionId), "n1");
    await waitForGroupDelivery(x, g);
  }
  const tag = `after-kill-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag });
  const done = `done-kill-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag: done });
  for (const x of clients) {
    await x.sdk.groupMessages.waitFor((m) => m.data?.tag === done, { timeout: 10000, what: `${x.name}: ${done}` });
    assert.equal(x.sdk.groupMessages.filter((m) => m.data?.tag === tag).length, 1, `client ${x.name} got ${tag} once`);
  }
  for (const x of others) assert.equal(connectedIds(x).length, before.get(x), `client ${x.name} on n1 kept its connection`);
});

/** Send to the group until x gets one (its rejoin has landed). */
async function waitForGroupDelivery(x, g) {
  for (let i = 0; i < 50; i++) {
    const tag = `probe-${i}-${randomSuffix()}`;
    await svc.group(g).sendToAll({ tag });
    try {
      await x.sdk.groupMessages.waitFor((m) => m.data?.tag === tag, { timeout: 400, what: tag });
      return;
    } catch {
      /* not rejoined yet */
    }
  }
  throw new Error(`${x.name} never got a group message after it came back`);
}
