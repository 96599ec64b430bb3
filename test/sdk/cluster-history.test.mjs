// Durable history on a three-node cluster (NATS with JetStream): sends through every node keep one
// gapless offset sequence, the official @azure/web-pubsub-client gets them all once through the
// round-robin proxy, an Idempotency-Key retried through another node is not delivered twice, and
// a raw JSON client whose node is killed with SIGKILL resumes from its last offset on another node
// with exactly what it missed.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startCluster, hubName, randomSuffix, withPort, openWs } from "./harness.mjs";
import { serviceClient, startSdkClient } from "./helpers.mjs";

const hub = hubName("chist");
const c = {};
const ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

before(async () => {
  c.cluster = await startCluster({
    nodes: 3,
    jetstream: true,
    config: `hubs:
  _default:
    history:
      - {pattern: "hist-*", max_messages: 1000, max_age: 1h}
`,
  });
  c.svc = c.cluster.nodes.map((n) => serviceClient(n, hub)); // REST on each node
});

after(async () => {
  await c.cluster?.stop();
});

const it = (name, fn) =>
  test(name, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      t.diagnostic(c.cluster.diag());
      throw err;
    }
  });

const nodeOf = (connectionId) => connectionId.slice(0, connectionId.indexOf("_"));

/** A raw json.webpubsub.azure.v1 client through the proxy (or straight to node i). */
async function rawClient(node) {
  const { url } = await c.svc[0].getClientAccessToken({ userId: "raw", roles: ROLES });
  const port = node === undefined ? c.cluster.proxy.port : c.cluster.nodes[node].port;
  const ws = await openWs(withPort(url, port), { protocols: "json.webpubsub.azure.v1" });
  const connected = await ws.inbox.waitFor((f) => f.json?.event === "connected", { what: "connected" });
  return { ...ws, connectionId: connected.json.connectionId };
}

async function join(x, group, ackId, extra = {}) {
  x.ws.send(JSON.stringify({ type: "joinGroup", group, ackId, ...extra }));
  const ack = await x.inbox.waitFor((f) => f.json?.type === "ack" && f.json.ackId === ackId, { what: `join ack ${ackId}` });
  assert.equal(ack.json.success, true, JSON.stringify(ack.json));
  return ack.json;
}

const messages = (x) => x.inbox.all.filter((f) => f.json?.type === "message").map((f) => [f.json.offset, f.json.data]);

it("sends through every node keep one gapless sequence; an SDK client behind the proxy gets each once", async (t) => {
  const g = `hist-${randomSuffix()}`;
  const sdk = await startSdkClient(c.svc[0], { userId: "sdk", roles: ROLES }, { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 }, {
    urlTransform: (u) => withPort(u, c.cluster.proxy.port),
  });
  t.after(() => sdk.stop());
  await sdk.client.joinGroup(g);
  const raw = await rawClient(2);
  t.after(() => raw.close());
  await join(raw, g, 1);

  const N = 30;
  for (let i = 1; i <= N; i++) await c.svc[i % 3].group(g).sendToAll(`m${i}`, { contentType: "text/plain" });
  await raw.inbox.waitFor((f) => f.json?.data === `m${N}`, { what: `m${N}`, timeout: 15000 });
  assert.deepEqual(
    messages(raw),
    Array.from({ length: N }, (_, i) => [i + 1, `m${i + 1}`]),
    "offsets 1..N in order, whichever node accepted each send",
  );
  await sdk.groupMessages.waitFor((m) => m.data === `m${N}`, { what: `sdk m${N}`, timeout: 15000 });
  const got = sdk.groupMessages.all.map((m) => m.data);
  assert.deepEqual(got, Array.from({ length: N }, (_, i) => `m${i + 1}`), "the SDK client got every send once, in order");

  // The same Idempotency-Key through another node (the service SDK passes it as a custom header):
  // accepted, not stored or delivered again.
  const key = `k-${randomSuffix()}`;
  const opts = { contentType: "text/plain", requestOptions: { customHeaders: { "Idempotency-Key": key } } };
  await c.svc[0].group(g).sendToAll("once", opts);
  await c.svc[2].group(g).sendToAll("once", opts);
  await c.svc[1].group(g).sendToAll("barrier", { contentType: "text/plain" });
  await raw.inbox.waitFor((f) => f.json?.data === "barrier", { what: "barrier" });
  assert.deepEqual(messages(raw).slice(N), [
    [N + 1, "once"],
    [N + 2, "barrier"],
  ]);
});

it("a raw client whose node is killed resumes from its last offset on another node with exactly what it missed", async (t) => {
  const g = `hist-${randomSuffix()}`;
  const a = await rawClient(1); // on n2
  assert.equal(nodeOf(a.connectionId), "n2");
  await join(a, g, 1);
  await c.svc[0].group(g).sendToAll("before", { contentType: "text/plain" });
  const m = await a.inbox.waitFor((f) => f.json?.data === "before", { what: "before" });
  const { offset, epoch } = m.json;

  await c.cluster.nodes[1].kill(); // SIGKILL n2
  for (const [i, s] of [
    [0, "gone-1"],
    [2, "gone-2"],
  ])
    await c.svc[i].group(g).sendToAll(s, { contentType: "text/plain" });

  const b = await rawClient(2); // n3
  t.after(() => b.close());
  const ack = await join(b, g, 1, { offset, epoch });
  assert.equal(ack.recovered, true, JSON.stringify(ack));
  await c.svc[0].group(g).sendToAll("after", { contentType: "text/plain" });
  await b.inbox.waitFor((f) => f.json?.data === "after", { what: "after" });
  assert.deepEqual(messages(b), [
    [offset + 1, "gone-1"],
    [offset + 2, "gone-2"],
    [offset + 3, "after"],
  ]);
});
