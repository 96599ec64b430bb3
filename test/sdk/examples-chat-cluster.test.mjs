// examples/chat on a three-node cluster (NATS with JetStream, the example's switchboard.yaml on
// every node): its backend (imported from examples/chat, with its own node_modules; `make
// test-sdk` installs them) talks REST to node 1, and @azure/web-pubsub-client users get their
// URLs from the backend's negotiate but connect to nodes 2 and 3 (and 1). A retried POST is delivered
// once on both, the backend's history read (node 1) has what was sent, and a second session of
// a user on another node closes the first with the RemoveDuplicateSession notice.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { WebPubSubClient } from "@azure/web-pubsub-client";
import { startCluster, randomSuffix, withPort, waitFor, REPO_ROOT } from "./harness.mjs";

const EXAMPLE = path.join(REPO_ROOT, "examples", "chat");
const { startChat } = await import(path.join(EXAMPLE, "server.mjs"));

const c = {};

before(async () => {
  c.cluster = await startCluster({ nodes: 3, jetstream: true, config: readFileSync(path.join(EXAMPLE, "switchboard.yaml"), "utf8") });
  c.dataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-example-chat-cluster-"));
  c.chat = await startChat({ connectionString: c.cluster.nodes[0].connectionString, dataFile: path.join(c.dataDir, "messages.json") });
});

after(async () => {
  for (const x of c.clients ?? []) await x.client.stop();
  await c.chat?.close();
  await c.cluster?.stop();
  if (c.dataDir) rmSync(c.dataDir, { recursive: true, force: true });
});

/** A chat user as the page is one: URL from the backend, joins every conversation; on node i. */
async function user(name, node) {
  const x = { name, got: [], notices: [], events: [] };
  x.client = new WebPubSubClient(
    {
      getClientAccessUrl: async () => {
        const r = await fetch(`${c.chat.url}/api/negotiate?user=${name}`);
        assert.equal(r.status, 200);
        return withPort((await r.json()).url, c.cluster.nodes[node].port);
      },
    },
    // No keep-alive pings: a stopped client's pending keep-alive delay holds the process ~40 s.
    { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 },
  );
  x.client.on("group-message", (e) => x.got.push(e.message.data));
  x.client.on("server-message", (e) => {
    x.notices.push(e.message.data);
    if (e.message.data?.event === "RemoveDuplicateSession") x.client.stop(); // as the page does
  });
  x.client.on("connected", (e) => (x.connectionId = e.connectionId));
  x.client.on("disconnected", (e) => x.events.push(["disconnected", e.message]));
  await x.client.start();
  for (const conv of ["general", "random", "ops"]) await x.client.joinGroup(`conversation:${conv}`);
  (c.clients ??= []).push(x);
  return x;
}

function post(key, user, text) {
  return fetch(`${c.chat.url}/api/conversations/general/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": key },
    body: JSON.stringify({ user, text }),
  });
}

test("examples/chat on a cluster: messages through the backend reach users on other nodes once, the history has them, a second session on another node closes the first", async (t) => {
  try {
    const ann = await user("ann", 1);
    const bob = await user("bob", 2);
    const nodeOf = (id) => id.slice(0, id.indexOf("_"));
    assert.notEqual(nodeOf(ann.connectionId), nodeOf(bob.connectionId), `ann and bob on different nodes: ${ann.connectionId} ${bob.connectionId}`);

    const key = `k-${randomSuffix(12)}`;
    const [r1, r2] = await Promise.all([post(key, "bob", "once"), post(key, "bob", "once")]);
    assert.ok(r1.ok && r2.ok, `${r1.status} ${r2.status}`);
    assert.equal((await post(key, "bob", "once")).status, 200);
    assert.equal((await post(`k-${randomSuffix(12)}`, "ann", "barrier")).status, 201);
    for (const x of [ann, bob]) {
      await waitFor(() => x.got.some((m) => m.text === "barrier"), { what: `barrier at ${x.name}` });
      assert.deepEqual(
        x.got.map((m) => m.text),
        ["once", "barrier"],
        `${x.name} got each message once`,
      );
    }

    const history = await (await fetch(`${c.chat.url}/api/conversations/general/history`)).json();
    assert.deepEqual(
      history.messages.map((m) => [m.offset, m.text]),
      [
        [1, "once"],
        [2, "barrier"],
      ],
    );

    // ann opens a second session, on node 1: the first (node 2) gets the notice and is closed.
    const ann2 = await user("ann", 0);
    assert.notEqual(nodeOf(ann2.connectionId), nodeOf(ann.connectionId));
    await waitFor(() => ann.notices.some((n) => n?.event === "RemoveDuplicateSession"), { what: "the notice at ann's first session" });
    const notice = ann.notices.find((n) => n?.event === "RemoveDuplicateSession");
    assert.equal(notice.connectionId, ann2.connectionId);
    await waitFor(() => ann.events.length > 0, { what: "ann's first session disconnected" });
  } catch (err) {
    t.diagnostic(c.cluster.diag());
    throw err;
  }
});
