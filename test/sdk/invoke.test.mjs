// Client invocations: the official @azure/web-pubsub-client's invokeEvent against a backend
// written with the official @azure/web-pubsub-express WebPubSubEventHandler, unchanged: the
// handler's answer (res.success with a body and data type) is invokeEvent's result, its
// res.fail an InvocationError, a handler that does not answer in time a Timeout error, and an
// AbortSignal cancels the invocation (cancelInvocation), which ends the handler's request.
//
// One server and one express backend for the file; the server's port is picked first so that
// the backend's allowedEndpoints (abuse protection) can name it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import express from "express";
import { WebPubSubEventHandler } from "@azure/web-pubsub-express";
import { startServer, startProxy, freePort, hubName, Inbox, sleep, waitFor, withPort } from "./harness.mjs";
import { serviceClient, startSdkClient, rejects, WebPubSubJsonProtocol } from "./helpers.mjs";

const hub = hubName("invoke");
const slowHub = hubName("invokeslow"); // its handler's timeout is 1 s
const EVENTS = ["add", "shout", "bin", "empty", "fail", "slow", "held"];

let sb, backend, origin;
const handled = new Inbox("handleUserEvent");
const slowRequests = new Inbox("slow requests"); // {hub, closedEarly} when one ends unanswered
const clients = [];
const held = new Inbox("held answers"); // the res of each "held" event, answered by the test

function eventHandler(hubName) {
  return new WebPubSubEventHandler(hubName, {
    allowedEndpoints: [origin],
    handleUserEvent(req, res) {
      handled.push({ hub: hubName, event: req.context.eventName, data: req.data, dataType: req.dataType });
      switch (req.context.eventName) {
        case "add":
          res.success(JSON.stringify({ sum: req.data.a + req.data.b }), "json");
          break;
        case "shout":
          res.success(String(req.data).toUpperCase(), "text");
          break;
        case "bin":
          res.success(Buffer.concat([Buffer.from([0xee]), req.data]), "binary");
          break;
        case "empty":
          res.success();
          break;
        case "fail":
          res.fail(400, "order not found");
          break;
        case "slow":
          break; // never answers: the server gives up or cancels
        case "held":
          held.push(res);
          break;
        default:
          res.fail(500, "unexpected event " + req.context.eventName);
      }
    },
  });
}

before(async () => {
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  const app = express();
  app.use((req, res, next) => {
    if (req.headers["ce-eventname"] === "slow") {
      const h = req.headers["ce-hub"];
      res.on("close", () => {
        if (!res.writableEnded) slowRequests.push({ hub: h });
      });
    }
    next();
  });
  app.use(eventHandler(hub).getMiddleware());
  app.use(eventHandler(slowHub).getMiddleware());
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  backend = { server, url: `http://127.0.0.1:${server.address().port}` };
  const handler = (h, timeout) =>
    `  ${h}:\n    event_handlers:\n      - url_template: ${JSON.stringify(`${backend.url}/api/webpubsub/hubs/{hub}/{event}`)}\n` +
    `        user_events: ${JSON.stringify(EVENTS)}\n        timeout: ${timeout}\n`;
  sb = await startServer({
    port,
    // A small replay buffer: the official client never acknowledges an invokeResponse by itself.
    config: `hubs:\n${handler(hub, "60s")}${handler(slowHub, "1s")}invoke:\n  timeout: 60s\nreliable:\n  replay_messages: 50\n`,
    extraArgs: ["--public-endpoint", origin],
  });
});

after(async () => {
  for (const c of clients) c.stop();
  await sb?.stop();
  if (backend) {
    backend.server.closeAllConnections();
    await new Promise((r) => backend.server.close(r));
  }
});

async function client(h, protocol, sdkOpts) {
  const opts = { messageRetryOptions: { maxRetries: 0 } };
  if (protocol) opts.protocol = protocol;
  const c = await startSdkClient(serviceClient(sb, h), { userId: "inv" }, opts, sdkOpts);
  clients.push(c);
  return c.client;
}

for (const [name, protocol] of [
  ["json.reliable.webpubsub.azure.v1 (the default)", undefined],
  ["json.webpubsub.azure.v1", WebPubSubJsonProtocol()],
]) {
  test(`${name}: invokeEvent returns the handler's answer with its data type`, async () => {
    const c = await client(hub, protocol);
    const sum = await c.invokeEvent("add", { a: 2, b: 40 }, "json");
    assert.equal(sum.dataType, "json");
    assert.deepEqual(sum.data, { sum: 42 });
    const shout = await c.invokeEvent("shout", "hello é", "text");
    assert.equal(shout.dataType, "text");
    assert.equal(shout.data, "HELLO É");
    const bin = await c.invokeEvent("bin", new Uint8Array([1, 2]).buffer, "binary");
    assert.equal(bin.dataType, "binary");
    assert.deepEqual([...new Uint8Array(bin.data)], [0xee, 1, 2]);
    const empty = await c.invokeEvent("empty", "x", "text");
    assert.equal(empty.data, undefined);
    const req = handled.find((r) => r.event === "add");
    assert.deepEqual([req.dataType, req.data], ["json", { a: 2, b: 40 }], "the handler got the invocation as a user event");
    // Several at once, answered independently.
    const all = await Promise.all([1, 2, 3, 4].map((i) => c.invokeEvent("add", { a: i, b: i }, "json")));
    assert.deepEqual(
      all.map((r) => r.data.sum),
      [2, 4, 6, 8],
    );
  });
}

test("a reliable client that only invokes is not closed for the answers it never acknowledges", async () => {
  // @azure/web-pubsub-client 1.1.0 reads no sequenceId from an invokeResponse, so it acknowledges
  // none; 120 answers with no data message between them would overflow a 50-message replay buffer.
  const c = await client(hub);
  const events = clients.at(-1).events;
  for (let i = 0; i < 120; i++) {
    assert.equal((await c.invokeEvent("add", { a: i, b: 1 }, "json")).data.sum, i + 1);
  }
  assert.equal(events.find((e) => e.event === "disconnected"), undefined, "the client was disconnected");
});

test("a handler's res.fail is an InvocationError carrying its status and detail", async () => {
  const c = await client(hub);
  const err = await rejects(() => c.invokeEvent("fail", { id: 7 }, "json"), "invokeEvent of a failing handler");
  assert.equal(err.name, "InvocationError");
  assert.equal(err.errorDetail?.name, "EventHandlerError");
  assert.match(err.errorDetail?.message, /400: order not found/);
  // The connection stays usable.
  assert.equal((await c.invokeEvent("shout", "ok", "text")).data, "OK");
});

test("a handler that does not answer in time gives a Timeout error, and its request ends", async () => {
  const c = await client(slowHub);
  const err = await rejects(() => c.invokeEvent("slow", "zzz", "text"), "invokeEvent of a slow handler");
  assert.equal(err.name, "InvocationError");
  assert.equal(err.errorDetail?.name, "Timeout");
  await slowRequests.waitFor((r) => r.hub === slowHub, { what: "the timed-out request to end" });
});

test("an AbortSignal cancels the invocation: the handler's request is cancelled", async () => {
  const c = await client(hub);
  const ac = new AbortController();
  const p = c.invokeEvent("slow", "wait", "text", { abortSignal: ac.signal });
  await handled.waitFor((r) => r.hub === hub && r.event === "slow", { what: "the slow invocation at the handler" });
  ac.abort();
  const err = await rejects(() => p, "an aborted invokeEvent");
  assert.equal(err.name, "InvocationError");
  assert.match(err.message, /abortSignal/);
  // Neither timeout (60 s) can end it first: the client's cancelInvocation did.
  await slowRequests.waitFor((r) => r.hub === hub, { what: "the cancelled request to end at the handler" });
  assert.equal((await c.invokeEvent("shout", "still here", "text")).data, "STILL HERE");
});

test("an event no handler takes gives NoEventHandler", async () => {
  const c = await client(hub);
  const err = await rejects(() => c.invokeEvent("nobodyHandlesThis", "x", "text"), "invokeEvent without a handler");
  assert.equal(err.errorDetail?.name, "NoEventHandler");
});

test("a reliable client whose socket drops mid-invocation recovers; later invocations work", async (t) => {
  // The server keeps the invocation running across the drop and replays its answer after the
  // recovery (Go tests check that a client reading sequence ids gets it once). The official client
  // 1.1.0 fails its pending invokeEvent when the socket drops and ignores the replayed answer.
  const proxy = await startProxy(sb.port);
  t.after(() => proxy.close());
  const c = await client(hub, undefined, { urlTransform: (u) => withPort(u, proxy.port) });
  const events = clients.at(-1).events;
  const p = c.invokeEvent("held", "x", "text");
  p.catch(() => {});
  const res = await held.next({ what: "the held invocation at the handler" });
  assert.equal(proxy.dropAll(), 1, "the drop must kill the client's connection");
  const err = await rejects(() => p, "the invocation pending at the drop");
  assert.match(err.message, /disconnected/);
  res.success("late", "text"); // answered while the client is away (or recovering)
  await waitFor(() => proxy.accepted >= 2, { what: "the recovery connection" });
  let after;
  for (let i = 0; i < 200 && after === undefined; i++) {
    try {
      after = await c.invokeEvent("shout", "recovered", "text");
    } catch {
      await sleep(50); // still recovering
    }
  }
  assert.equal(after?.data, "RECOVERED");
  assert.equal(events.find((e) => e.event === "disconnected"), undefined, "the drop was a recovery, not a new connection");
});
