// SignalR (serverless) connection loss with the official @microsoft/signalr client:
//  - withAutomaticReconnect() after the transport dies (TCP proxy drop): a NEW connection id,
//    the old one's upstream `disconnected`, the new one's `connected`, REST reaches the new id;
//  - a REST close (DELETE …/connections/<id>?reason=) stops the client even with automatic
//    reconnect, with the reason as the error;
//  - graceful shutdown (SIGTERM) sends Close{allowReconnect: true}: clients of every transport
//    reconnect to the restarted server;
//  - withStatefulReconnect() over WebSockets (JSON and MessagePack): the socket is dropped in the
//    middle of a numbered REST stream and of client sends, the client resumes the SAME connection,
//    and both directions arrive complete, in order, without duplicates.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  signalrSuite,
  startServer,
  startProxy,
  startAppNegotiate,
  startUpstream,
  startHub,
  signalrRest,
  signalrConfig,
  freePort,
  hubName,
  fastRetry,
  waitFor,
  upstreamInvocation,
} from "./harness.mjs";

const { s, it } = signalrSuite();

const COMBOS = [
  ["WebSockets", "json"],
  ["WebSockets", "messagepack"],
  ["ServerSentEvents", "json"],
  ["LongPolling", "json"],
  ["LongPolling", "messagepack"],
];

const upstreamEvent = (id, event) => (r) => r.headers["x-asrs-connection-id"] === id && r.event === event;

for (const [transport, protocol] of COMBOS) {
  it(`${transport}/${protocol}: automatic reconnect after the transport dies gets a new connection id; upstream sees the old one leave and the new one arrive`, async (tc) => {
    const hub = hubName("autorc");
    const proxy = await startProxy(s.sb.signalrPort);
    tc.defer(() => proxy.close());
    const h = await tc.client(
      { hub, userId: "rita", endpoint: `http://127.0.0.1:${proxy.port}` },
      { transport, protocol, reconnect: fastRetry },
    );
    const oldId = h.conn.connectionId;
    await s.upstream.requests.waitSeen(upstreamEvent(oldId, "connected"), { what: "connected (old id)" });
    await s.rest.toConnection(hub, oldId, "newMessage", ["before"]);
    await h.inbox.waitSeen((m) => m.args[0] === "before", { what: "message before the drop" });

    assert.ok(proxy.dropAll() >= 1, "the client's transport went through the proxy");
    const reconnected = await h.events.waitSeen((e) => e.event === "reconnected", { timeout: 45000, what: "onreconnected" });
    const kinds = h.events.all.map((e) => e.event);
    assert.ok(kinds.indexOf("reconnecting") >= 0 && kinds.indexOf("reconnecting") < kinds.indexOf("reconnected"), JSON.stringify(h.events.all));
    assert.equal(kinds.includes("close"), false, JSON.stringify(h.events.all));
    const newId = reconnected.connectionId;
    assert.equal(typeof newId, "string");
    assert.notEqual(newId, oldId, "a plain (not stateful) reconnect is a new connection");
    assert.equal(h.conn.connectionId, newId);
    assert.ok(h.route.route.negotiations >= 2, "the reconnect negotiated again through the app");

    // The new connection works both ways.
    await s.rest.toConnection(hub, newId, "newMessage", ["after"]);
    await h.inbox.waitSeen((m) => m.args[0] === "after", { what: "message to the new connection id" });
    assert.deepEqual(await h.conn.invoke("echo", "again"), { echo: ["again"], connectionId: newId });

    await s.upstream.requests.waitSeen(upstreamEvent(newId, "connected"), { what: "connected (new id)" });
    const gone = await s.upstream.requests.waitSeen(upstreamEvent(oldId, "disconnected"), {
      timeout: 45000,
      what: "disconnected (old id)",
    });
    assert.equal(JSON.parse(gone.body.toString("utf8")).type, 11);
    const oldSeq = s.upstream.of(oldId).map((r) => r.event);
    assert.deepEqual([oldSeq[0], oldSeq.at(-1)], ["connected", "disconnected"], JSON.stringify(oldSeq));
  });

  it(`${transport}/${protocol}: a REST close stops the client for good (no reconnect despite withAutomaticReconnect), reason as the error`, async (tc) => {
    const hub = hubName("restclose");
    const h = await tc.client({ hub, userId: "kim" }, { transport, protocol, reconnect: fastRetry });
    const id = h.conn.connectionId;
    await s.upstream.requests.waitSeen(upstreamEvent(id, "connected"), { what: "connected" });
    const reason = "kicked by test";
    await s.rest.closeConnection(hub, id, reason);
    const closed = await h.events.waitSeen((e) => e.event === "close", { timeout: 20000, what: "onclose" });
    assert.match(closed.error ?? "", /kicked by test/, `the reason reaches the client: ${JSON.stringify(closed)}`);
    assert.equal(h.events.find((e) => e.event === "reconnecting"), undefined, `no reconnect attempt: ${JSON.stringify(h.events.all)}`);
    assert.equal(h.conn.state, "Disconnected");
    assert.equal(h.route.route.negotiations, 1, "no second negotiate");
    const d = await s.upstream.requests.waitSeen(upstreamEvent(id, "disconnected"), { timeout: 20000, what: "disconnected" });
    assert.equal(JSON.parse(d.body.toString("utf8")).type, 11);
  });
}

for (const protocol of ["json", "messagepack"]) {
  it(`WebSockets/${protocol}: stateful reconnect across a dropped socket loses and duplicates nothing, in either direction`, async (tc) => {
    const hub = hubName("stateful");
    const proxy = await startProxy(s.sb.signalrPort);
    tc.defer(() => proxy.close());
    const h = await tc.client(
      { hub, userId: "sue", endpoint: `http://127.0.0.1:${proxy.port}` },
      { transport: "WebSockets", protocol, stateful: true, methods: ["seq"] },
    );
    const id = h.conn.connectionId;
    await s.upstream.requests.waitSeen(upstreamEvent(id, "connected"), { what: "connected" });
    const negotiate = proxy.requests.find((l) => l.startsWith("POST /client/negotiate"));
    assert.match(negotiate ?? "", /useStatefulReconnect=true/, `the client asked for stateful reconnect: ${proxy.requests}`);
    const wsOpens = () => proxy.requests.filter((l) => l.startsWith("GET /client/")).length;
    assert.equal(wsOpens(), 1);

    const send = (i) => s.rest.toConnection(hub, id, "seq", [i]);
    let n = 0;
    let tick = 0;
    // Phase 1: before the drop.
    while (n < 100) await send(++n);
    while (tick < 20) await h.conn.send("tick", ++tick);
    await h.inbox.waitSeen((m) => m.args[0] === 50, { what: "seq 50 before the drop" });
    // Phase 2: drop the socket (RST both ways) and keep sending both ways while it is down.
    assert.ok(proxy.dropAll() >= 1, "the WebSocket went through the proxy");
    while (n < 200) await send(++n);
    while (tick < 40) await h.conn.send("tick", ++tick);
    await waitFor(() => wsOpens() >= 2, { timeout: 30000, what: "the client's WebSocket reconnect through the proxy" });
    // Phase 3: after the reconnect.
    while (n < 300) await send(++n);
    while (tick < 60) await h.conn.send("tick", ++tick);
    await h.inbox.waitSeen((m) => m.args[0] === 300, { timeout: 30000, what: "seq 300" });
    // A last one, so that late duplicates would be in the list too.
    await send(++n);
    await h.inbox.waitSeen((m) => m.args[0] === n, { what: `seq ${n}` });
    const received = h.inbox.all.map((m) => m.args[0]);
    assert.deepEqual(received, Array.from({ length: n }, (_, i) => i + 1), "server → client: 1..N exactly once, in order");

    const ticksOf = () =>
      s.upstream
        .of(id)
        .filter((r) => r.event === "tick")
        .map((r) => upstreamInvocation(r)?.arguments?.[0]);
    await waitFor(() => ticksOf().includes(60), { timeout: 30000, what: "tick 60 at the upstream" });
    // A last round trip, so that late duplicate ticks would be in the list too.
    assert.deepEqual(await h.conn.invoke("echo", "resumed"), { echo: ["resumed"], connectionId: id });
    const ticks = ticksOf();
    assert.deepEqual(ticks, Array.from({ length: 60 }, (_, i) => i + 1), "client → upstream: 1..60 exactly once, in order");

    assert.equal(h.conn.connectionId, id, "the same connection");
    assert.equal(h.conn.state, "Connected");
    assert.deepEqual(h.events.all, [], "no reconnecting/close: the transport was resumed under the hub connection");
    const seq = s.upstream.of(id).map((r) => r.event);
    assert.equal(seq.filter((e) => e === "connected").length, 1, JSON.stringify(seq));
    assert.equal(seq.includes("disconnected"), false, `no disconnected for a resumed connection: ${JSON.stringify(seq)}`);
  });
}

test("graceful shutdown (SIGTERM) sends Close with allowReconnect: clients of every transport reconnect to the restarted server", async () => {
  const upstream = await startUpstream();
  const app = await startAppNegotiate();
  const port = await freePort();
  const signalrPort = await freePort();
  const config = signalrConfig({ upstreams: [upstream.template] });
  let sb = await startServer({ port, signalrPort, config });
  const keys = sb.keys;
  const clients = [];
  const diag = () => clients.map((c) => c.h.diag()).join("") + (sb?.diag?.() ?? "");
  try {
    for (const [transport, protocol] of COMBOS) {
      const hub = hubName("sigterm");
      const r = app.route({ endpoint: `http://127.0.0.1:${signalrPort}`, key: keys[0], hub, userId: "tess" });
      const h = await startHub(r.url, { transport, protocol, reconnect: fastRetry, label: "tess" });
      clients.push({ h, hub, transport, protocol, oldId: h.conn.connectionId });
    }
    await sb.stop(); // SIGTERM
    for (const c of clients) {
      await waitFor(() => c.h.logs.some((l) => l.includes("Close message received from server.")), {
        timeout: 15000,
        what: `${c.transport}/${c.protocol}: a Close message before the server went away`,
      });
      await c.h.events.waitSeen((e) => e.event === "reconnecting", { timeout: 15000, what: `${c.transport}/${c.protocol} onreconnecting` });
    }
    sb = await startServer({ port, signalrPort, config, keys });
    const rest = signalrRest(sb);
    for (const c of clients) {
      const rc = await c.h.events.waitSeen((e) => e.event === "reconnected", {
        timeout: 60000,
        what: `${c.transport}/${c.protocol} onreconnected`,
      });
      assert.notEqual(rc.connectionId, c.oldId);
      assert.equal(c.h.events.find((e) => e.event === "close"), undefined, `${c.transport}/${c.protocol}: ${JSON.stringify(c.h.events.all)}`);
      await rest.broadcast(c.hub, "newMessage", ["after-restart"]);
      await c.h.inbox.waitSeen((m) => m.args[0] === "after-restart", { what: `${c.transport}/${c.protocol} broadcast after the restart` });
    }
  } catch (err) {
    try {
      err.message += diag();
    } catch {
      /* ignore */
    }
    throw err;
  } finally {
    for (const c of clients) await c.h.stop();
    await sb?.stop();
    await app.close();
    await upstream.close();
  }
});
