// Group presence events and one session per user, with the published SDKs:
// - a backend written with @azure/web-pubsub-express's WebPubSubEventHandler (onConnected,
//   onGroupJoined, onGroupLeft, onDisconnected), unchanged, behind a hub whose event handler
//   sets group_presence_events: [joined, left]; the first joined is answered 500 by a middleware
//   in front of it, so the server's retry is what the handler sees;
// - @azure/web-pubsub-client and @microsoft/signalr clients of a hub with
//   max_connections_per_user: 1 (close_oldest and reject_new) seeing the duplicate-session
//   notice, the close reason, and the refusal.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import express from "express";
import WebSocket from "ws";
import { WebPubSubEventHandler } from "@azure/web-pubsub-express";
import { startServer, hubName, Inbox, waitFor, withTimeout, startAppNegotiate, startHub } from "./harness.mjs";
import { serviceClient, startSdkClient, rejects } from "./helpers.mjs";

const gpHub = hubName("gp");
const soloHub = hubName("solo");
const onlyHub = hubName("only");
const s = {};

before(async () => {
  // The express backend: every event it takes is recorded as "<event> <group>" per connection.
  s.events = new Inbox("presence events");
  let failedOnce = false;
  const app = express();
  app.use((req, res, next) => {
    if (req.headers["ce-type"] === "azure.webpubsub.gp.joined" && !failedOnce) {
      failedOnce = true;
      res.status(500).end("try again");
      return;
    }
    next();
  });
  const rec = (event) => (req) => s.events.push({ id: req.context.connectionId, user: req.context.userId, event, group: req.group });
  const handler = new WebPubSubEventHandler(gpHub, {
    onConnected: rec("connected"),
    onGroupJoined: rec("joined"),
    onGroupLeft: rec("left"),
    onDisconnected: rec("disconnected"),
  });
  app.use(handler.getMiddleware());
  s.backend = http.createServer(app);
  await new Promise((resolve) => s.backend.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${s.backend.address().port}/api/webpubsub/hubs/${gpHub}`;
  s.app = await startAppNegotiate();
  s.sb = await startServer({
    signalr: true,
    config: `signalr:
  addr: 127.0.0.1:0
hubs:
  ${gpHub}:
    event_handlers:
      - url_template: ${JSON.stringify(url)}
        system_events: [connected, disconnected]
        group_presence_events: [joined, left]
  ${soloHub}:
    max_connections_per_user: 1
    on_connection_limit: close_oldest
  ${onlyHub}:
    max_connections_per_user: 1
    on_connection_limit: reject_new
`,
  });
});

after(async () => {
  await s.sb?.stop();
  await s.app?.close();
  s.backend?.closeAllConnections();
  await new Promise((r) => (s.backend ? s.backend.close(() => r()) : r()));
});

test("express onGroupJoined/onGroupLeft get every join and leave in order, a failed one retried", async () => {
  const svc = serviceClient(s.sb, gpHub);
  const c = await startSdkClient(
    svc,
    { userId: "ann", groups: ["tok"], roles: ["webpubsub.joinLeaveGroup"] },
    { autoReconnect: false, autoRejoinGroups: false },
  );
  const id = c.connectionId;
  try {
    await c.client.joinGroup("g1");
    await svc.group("g2").addConnection(id);
    await svc.addConnectionsToGroups(["g3"], "userId eq 'ann'");
    await c.client.leaveGroup("g1");
    await svc.group("g2").removeConnection(id);
    await svc.closeConnection(id, { reason: "done" });
    const mine = () => s.events.all.filter((e) => e.id === id).map((e) => `${e.event}${e.group ? " " + e.group : ""}`);
    await waitFor(() => mine().at(-1) === "disconnected", { timeout: 30000, what: "the disconnected event" });
    const got = mine();
    const tail = got.slice(-3, -1).sort(); // g3 and tok are left together at the close, in any order
    assert.deepEqual(
      [...got.slice(0, -3), ...tail, got.at(-1)],
      ["connected", "joined tok", "joined g1", "joined g2", "joined g3", "left g1", "left g2", "left g3", "left tok", "disconnected"],
    );
    assert.ok(s.events.all.filter((e) => e.id === id).every((e) => e.user === "ann"), "every event names the user");
  } finally {
    c.stop();
  }
});

test("close_oldest: the older @azure/web-pubsub-client gets the RemoveDuplicateSession notice and the close reason", async () => {
  const svc = serviceClient(s.sb, soloHub);
  const old = await startSdkClient(svc, { userId: "solo" }, { autoReconnect: false });
  const fresh = await startSdkClient(svc, { userId: "solo" }, { autoReconnect: false });
  try {
    const notice = await old.serverMessages.next({ timeout: 15000, what: "the duplicate-session notice" });
    assert.equal(notice.dataType, "json");
    assert.equal(notice.data.event, "RemoveDuplicateSession");
    assert.equal(notice.data.connectionId, fresh.connectionId);
    const closed = await old.events.waitFor((e) => e.event === "disconnected", { timeout: 15000, what: "disconnected" });
    assert.match(closed.message?.message ?? "", /max_connections_per_user/);
    await svc.sendToUser("solo", "still here", { contentType: "text/plain" });
    const m = await fresh.serverMessages.next({ timeout: 15000, what: "a message to the user" });
    assert.equal(m.data, "still here");
  } finally {
    old.stop();
    fresh.stop();
  }
});

test("reject_new: a user's second @azure/web-pubsub-client cannot start", async () => {
  const svc = serviceClient(s.sb, onlyHub);
  const first = await startSdkClient(svc, { userId: "only" }, { autoReconnect: false });
  try {
    const { url } = await svc.getClientAccessToken({ userId: "only" });
    // The SDK's own client only reports a failed socket; a ws client shows the answer.
    const { status, body } = await new Promise((resolve, reject) => {
      const ws = new WebSocket(url, "json.webpubsub.azure.v1");
      ws.on("unexpected-response", (_req, res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      });
      ws.on("open", () => {
        ws.close();
        reject(new Error("the second connection was accepted"));
      });
      ws.on("error", () => {});
    });
    assert.equal(status, 409);
    assert.match(body, /max_connections_per_user/);
  } finally {
    first.stop();
  }
});

test("close_oldest: the older @microsoft/signalr connection gets RemoveDuplicateSession, then a Close without reconnect", async () => {
  const route = () => s.app.route({ endpoint: s.sb.signalrEndpoint, key: () => s.sb.keys[0], hub: soloHub, userId: "sr" });
  const old = await startHub(route().url, { label: "old", methods: ["RemoveDuplicateSession"], reconnect: { nextRetryDelayInMilliseconds: () => 100 } });
  const fresh = await startHub(route().url, { label: "fresh", methods: ["RemoveDuplicateSession"] });
  try {
    const n = await old.inbox.next({ timeout: 15000, what: "RemoveDuplicateSession" });
    assert.equal(n.args[0].connectionId, fresh.conn.connectionId);
    const closed = await old.events.waitFor((e) => e.event === "close" || e.event === "reconnecting", { timeout: 15000, what: "close" });
    assert.equal(closed.event, "close", "the client must not reconnect");
    assert.match(closed.error ?? "", /max_connections_per_user/);
    assert.equal(fresh.conn.state, "Connected");
    assert.equal(fresh.inbox.all.length, 0);
  } finally {
    await old.stop();
    await fresh.stop();
  }
});

test("reject_new: a user's second @microsoft/signalr connection fails to start with the reason", async () => {
  const route = () => s.app.route({ endpoint: s.sb.signalrEndpoint, key: () => s.sb.keys[0], hub: onlyHub, userId: "sr1" });
  const first = await startHub(route().url, { label: "first" });
  try {
    const second = await startHub(route().url, { label: "second", start: false });
    await assert.rejects(withTimeout(second.conn.start(), 15000, "second start()"), /409|max_connections_per_user/);
  } finally {
    await first.stop();
  }
});
