// examples/live-dashboard on a three-node cluster: its publisher (imported from
// examples/live-dashboard; `make test-sdk` installs its npm packages) sends every segment's
// points through node 1's SignalR REST API and adds connections to segment groups there, while
// the @microsoft/signalr client takes the app's negotiate answer to node 2's SignalR listener:
// it gets the points of the segment it joined, and none of the others.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import * as signalR from "@microsoft/signalr";
import { startCluster, withPort, waitFor, REPO_ROOT } from "./harness.mjs";

const { startDashboard } = await import(`${REPO_ROOT}/examples/live-dashboard/server.mjs`);

const c = {};

before(async () => {
  c.cluster = await startCluster({ nodes: 3, signalr: true });
  c.app = await startDashboard({ connectionString: c.cluster.nodes[0].signalrConnectionString, intervalMs: 100 });
});

after(async () => {
  await c.conn?.stop();
  await c.app?.close();
  await c.cluster?.stop();
});

test("examples/live-dashboard on a cluster: a client on another node than the publisher's gets its joined segment's points only", async (t) => {
  try {
    const neg = await (await fetch(`${c.app.url}/api/negotiate`, { method: "POST" })).json();
    const url = withPort(neg.url, c.cluster.nodes[1].signalrPort);
    const points = [];
    c.conn = new signalR.HubConnectionBuilder()
      .withUrl(url, { accessTokenFactory: () => neg.accessToken })
      .configureLogging(signalR.LogLevel.Warning)
      .build();
    c.conn.on("point", (p) => {
      points.push(p);
    });
    await c.conn.start();
    assert.ok(c.conn.connectionId.startsWith("n2"), `on node 2: ${c.conn.connectionId}`);

    const join = await fetch(`${c.app.url}/api/segments/btc/connections/${c.conn.connectionId}`, { method: "PUT" });
    assert.equal(join.status, 200, await join.text());
    const start = { ...c.app.stats };
    await waitFor(() => points.length >= 10, { what: "10 btc points", timeout: 30000 });
    assert.deepEqual([...new Set(points.map((p) => p.segment))], ["btc"]);
    assert.ok(c.app.stats["plant-a"] >= start["plant-a"] + 5, `the other segments were published too: ${JSON.stringify(c.app.stats)}`);
    assert.equal(c.app.failures.count, 0, c.app.failures.last);
  } catch (err) {
    t.diagnostic(c.cluster.diag());
    throw err;
  }
});
