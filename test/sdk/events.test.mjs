// Event handlers (upstream webhooks): a backend written with the published
// @azure/web-pubsub-express WebPubSubEventHandler, unchanged, behind the hub's `event_handlers`
// configuration. Clients are @azure/web-pubsub-client WebPubSubClients and plain `ws` sockets.
//
// Every test starts its own express backend on 127.0.0.1:<random port> and its own server whose
// YAML config points the test's hub(s) at that backend; the server's port is picked first so that
// the backend's `allowedEndpoints` (abuse protection) can name the server's public endpoint.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createHmac } from "node:crypto";
import express from "express";
import { WebPubSubEventHandler } from "@azure/web-pubsub-express";
import {
  startServer,
  freePort,
  hubName,
  randomSuffix,
  waitFor,
  withTimeout,
  Inbox,
  openWs,
  JSON_PROTOCOL,
} from "./harness.mjs";
import {
  serviceClient,
  startSdkClient,
  connectJson,
  barrierSdk,
  barrierJson,
  rejects,
  collectAll,
  WebPubSubClient,
  WebPubSubJsonProtocol,
} from "./helpers.mjs";

// A fresh object per use: WebPubSubClient fills defaults (protocol included) into the options
// object it is given, so a shared one would leak one client's defaults into the next.
const noRetry = () => ({ messageRetryOptions: { maxRetries: 0 } });
const RELIABLE_PROTOCOL = "json.reliable.webpubsub.azure.v1";

// ---------------------------------------------------------------------------------------------
// Per-test context: the server, the express backend, and cleanups run last-in first-out (clients
// first, then the server, which may still flush disconnected events to the backend, then the
// backend).

class Ctx {
  constructor(t) {
    this.t = t;
    this.cleanups = [];
    this.sb = undefined;
    this.backends = [];
  }

  defer(fn) {
    this.cleanups.push(fn);
  }

  async cleanup() {
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* ignore */
      }
    }
  }

  /** Pick the server's port up front; `origin` is its public endpoint. */
  async pickServerPort() {
    this.serverPort ??= await freePort();
    this.origin = `http://127.0.0.1:${this.serverPort}`;
    return this.serverPort;
  }

  /**
   * Start an express app with one WebPubSubEventHandler middleware per entry of `handlers`
   * ({hub, ...WebPubSubEventHandlerOptions}); allowedEndpoints defaults to the server's endpoint.
   * Every request the app gets is recorded in `requests` (method, path, headers, then status and
   * WebHook-Allowed-Origin when the answer is sent); requests no handler takes answer 404.
   */
  async backend(handlers) {
    await this.pickServerPort();
    const app = express();
    const requests = new Inbox("backend requests");
    app.use((req, res, next) => {
      const rec = { method: req.method, path: req.originalUrl, headers: { ...req.headers }, status: undefined };
      res.on("finish", () => {
        rec.status = res.statusCode;
        rec.allowedOrigin = res.getHeader("webhook-allowed-origin");
      });
      requests.push(rec);
      next();
    });
    for (const { hub, ...options } of handlers) {
      const h = new WebPubSubEventHandler(hub, { allowedEndpoints: [this.origin], ...options });
      app.use(h.getMiddleware());
    }
    app.use((req, res) => {
      res.status(404).end("no WebPubSubEventHandler took this request");
    });
    const server = http.createServer(app);
    await new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    const url = `http://127.0.0.1:${server.address().port}`;
    const b = { url, requests, server };
    this.backends.push(b);
    this.defer(
      () =>
        new Promise((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    return b;
  }

  /** Start the server with `config` (YAML) on the pre-picked port, public endpoint = origin. */
  async server(config, extraArgs = []) {
    await this.pickServerPort();
    this.sb = await startServer({
      port: this.serverPort,
      config,
      extraArgs: ["--public-endpoint", this.origin, ...extraArgs],
    });
    const sb = this.sb;
    this.defer(() => sb.stop());
    return sb;
  }

  async sdkClient(svc, tokenOpts = {}, clientOpts = {}) {
    const c = await startSdkClient(svc, tokenOpts, clientOpts);
    this.defer(() => c.stop());
    return c;
  }

  async jsonClient(svc, opts = {}) {
    const c = await connectJson(svc, opts);
    this.defer(() => c.close());
    return c;
  }

  async rawClient(url, opts = {}) {
    const c = await openWs(url, opts);
    this.defer(() => c.close());
    return c;
  }

  diag() {
    let out = "";
    if (this.sb) {
      out += (this.sb.exited() ? `\n[server EXITED: ${JSON.stringify(this.sb.exited())}]` : "") + this.sb.diag();
    }
    for (const b of this.backends) {
      out += `\n--- backend ${b.url}: ${b.requests.all.length} requests (last 40) ---\n`;
      out += b.requests.all
        .slice(-40)
        .map(
          (r) =>
            `${r.method} ${r.path} ce-type=${r.headers["ce-type"] ?? "-"} ce-connectionid=${
              r.headers["ce-connectionid"] ?? "-"
            } -> ${r.status ?? "(pending)"}`,
        )
        .join("\n");
    }
    return out;
  }
}

const it = (name, fn) =>
  test(name, async (t) => {
    const ctx = new Ctx(t);
    t.after(() => ctx.cleanup());
    try {
      await fn(t, ctx);
    } catch (err) {
      try {
        err.message = `${err.message}${ctx.diag()}`;
      } catch {
        /* some errors have read-only messages */
      }
      throw err;
    }
  });

/**
 * YAML for `hubs:` with event handlers. hubs: [{hub, handlers: [{url, userEvents, systemEvents,
 * timeout}]}]; strings are written as JSON (valid YAML flow scalars).
 */
function configYaml(hubs, extra = "") {
  let y = "hubs:\n";
  for (const { hub, handlers } of hubs) {
    y += `  ${hub}:\n    event_handlers:\n`;
    for (const h of handlers) {
      y += `      - url_template: ${JSON.stringify(h.url)}\n`;
      y += `        user_events: ${JSON.stringify(h.userEvents ?? [])}\n`;
      y += `        system_events: ${JSON.stringify(h.systemEvents ?? [])}\n`;
      if (h.timeout) y += `        timeout: ${h.timeout}\n`;
    }
  }
  return y + extra;
}

const ALL_SYSTEM = ["connect", "connected", "disconnected"];

/** Copy of the interesting parts of an express request object (they are mutated later). */
const snap = (req) =>
  JSON.parse(JSON.stringify(req, (k, v) => (v && v.type === "Buffer" && Array.isArray(v.data) ? v.data : v)));

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Wrap a handler callback so that a bug in it fails the test instead of crashing the process. */
function guard(errors, fn) {
  return (...args) => {
    try {
      const r = fn(...args);
      if (r && typeof r.catch === "function") r.catch((e) => errors.push(e));
    } catch (e) {
      errors.push(e);
    }
  };
}

function assertNoHandlerErrors(errors) {
  assert.deepEqual(
    errors.map((e) => e.stack ?? String(e)),
    [],
    "backend handler callbacks threw",
  );
}

// ---------------------------------------------------------------------------------------------

it("connect: handleConnect sets userId and groups for an anonymous token; rejecting a named user fails the upgrade with 401", async (t, ctx) => {
  const hub = hubName("connect");
  const g = "assigned-" + randomSuffix();
  const errors = [];
  const connects = new Inbox("handleConnect");
  const backend = await ctx.backend([
    {
      hub,
      path: "/eventhandler",
      handleConnect: guard(errors, (req, res) => {
        connects.push(snap(req));
        if (req.claims?.sub?.[0] === "mallory") {
          res.fail(401, "not allowed");
          return;
        }
        res.success({ userId: "assigned-user", groups: [g] });
      }),
    },
  ]);
  await ctx.server(
    configYaml([
      {
        hub,
        handlers: [{ url: `${backend.url}/eventhandler/{event}`, userEvents: [], systemEvents: ["connect"], timeout: "5s" }],
      },
    ]),
  );
  const svc = serviceClient(ctx.sb, hub);

  // Token without a user: the connect handler assigns one and a group.
  const c = await ctx.sdkClient(svc, {});
  assert.equal(c.userId, "assigned-user", "the connected event carries the userId set by handleConnect");
  const req = await connects.waitFor((r) => r.context?.connectionId === c.connectionId, {
    what: `connect request for ${c.connectionId}`,
  });
  assert.equal(req.context.hub.toLowerCase(), hub.toLowerCase());
  assert.ok(!req.context.userId, `anonymous token: ce-userId should be absent, got ${req.context.userId}`);
  assert.equal(req.claims?.sub, undefined, `anonymous token has no sub claim: ${JSON.stringify(req.claims)}`);
  assert.ok(
    Array.isArray(req.subprotocols) && req.subprotocols.includes(RELIABLE_PROTOCOL),
    `connect request lists the offered subprotocols: ${JSON.stringify(req.subprotocols)}`,
  );
  assert.equal(await svc.userExists("assigned-user"), true);
  const members = await collectAll(svc.group(g).listConnections());
  assert.deepEqual(
    members.map((m) => m.connectionId),
    [c.connectionId],
  );
  const tag = "to-group-" + randomSuffix();
  await svc.group(g).sendToAll({ tag });
  const m = await c.groupMessages.waitFor((x) => x.data?.tag === tag, { what: "REST message to the assigned group" });
  assert.equal(m.group, g);
  assert.equal(m.dataType, "json");
  assert.deepEqual(m.data, { tag });

  // A named user the handler rejects: the SDK client's start fails (and does not hang)...
  const sdk = new WebPubSubClient(
    { getClientAccessUrl: async () => (await svc.getClientAccessToken({ userId: "mallory" })).url },
    { autoReconnect: false },
  );
  ctx.defer(() => sdk.stop());
  const err = await rejects(() => withTimeout(sdk.start(), 20000, "rejected WebPubSubClient.start()"), "start()");
  assert.doesNotMatch(err.message, /timed out after/, "WebPubSubClient.start() must fail, not hang");
  await connects.waitFor((r) => r.claims?.sub?.[0] === "mallory", { what: "connect request for mallory" });

  // ...and a plain WebSocket sees the upgrade answered 401 with the handler's reason.
  const { url } = await svc.getClientAccessToken({ userId: "mallory" });
  for (const protocols of [JSON_PROTOCOL, undefined]) {
    const e = await rejects(() => openWs(url, { protocols, timeout: 15000 }), "upgrade of a rejected user");
    assert.equal(e.statusCode, 401, `upgrade (${protocols ?? "no subprotocol"}): ${e.message}`);
    assert.match(e.body ?? "", /not allowed/, `401 body carries the handler's reason: ${JSON.stringify(e.body)}`);
  }
  assert.equal(await svc.userExists("mallory"), false);
  assertNoHandlerErrors(errors);
});

it("connected / disconnected: onConnected then onDisconnected, once each, with connectionId and userId (client stop, REST close)", async (t, ctx) => {
  const hub = hubName("lifecycle");
  const errors = [];
  const events = new Inbox("connected/disconnected");
  const backend = await ctx.backend([
    {
      hub,
      path: "/eventhandler",
      onConnected: guard(errors, (req) => {
        events.push({ event: "connected", connectionId: req.context.connectionId, userId: req.context.userId });
      }),
      onDisconnected: guard(errors, (req) => {
        events.push({
          event: "disconnected",
          connectionId: req.context.connectionId,
          userId: req.context.userId,
          reason: req.reason,
        });
      }),
    },
  ]);
  // A short recovery window: a stopped reliable client's session ends when it expires.
  await ctx.server(
    configYaml(
      [{ hub, handlers: [{ url: `${backend.url}/eventhandler/{event}`, userEvents: [], systemEvents: ALL_SYSTEM, timeout: "5s" }] }],
      "reliable:\n  recovery_window: 2s\n",
    ),
  );
  const svc = serviceClient(ctx.sb, hub);
  const seen = (ev, id) => (e) => e.event === ev && e.connectionId === id;

  const cases = [
    ["json client stop()", "u-stop", { protocol: WebPubSubJsonProtocol() }, (c) => c.stop()],
    ["reliable client stop()", "u-rstop", {}, (c) => c.stop()],
    ["REST closeConnection", "u-rest", {}, (c) => svc.closeConnection(c.connectionId, { reason: "closed by the test" })],
  ];
  const ids = {};
  for (const [label, userId, clientOpts, end] of cases) {
    const c = await ctx.sdkClient(svc, { userId }, { autoReconnect: false, ...clientOpts });
    ids[label] = c.connectionId;
    const connected = await events.waitSeen(seen("connected", c.connectionId), { what: `${label}: onConnected` });
    assert.equal(connected.userId, userId, `${label}: onConnected userId`);
    await end(c);
    // Reliable sessions end when the (2 s) recovery window expires, hence the longer deadline.
    const disconnected = await events.waitSeen(seen("disconnected", c.connectionId), {
      timeout: 20000,
      what: `${label}: onDisconnected`,
    });
    assert.equal(disconnected.userId, userId, `${label}: onDisconnected userId`);
    t.diagnostic(`${label}: disconnected reason ${JSON.stringify(disconnected.reason)}`);
  }

  // Once each, connected before disconnected, for every connection, and for no other.
  for (const [label] of cases) {
    const mine = events.all.filter((e) => e.connectionId === ids[label]).map((e) => e.event);
    assert.deepEqual(mine, ["connected", "disconnected"], `${label}: events of ${ids[label]}`);
  }
  const known = new Set(Object.values(ids));
  assert.deepEqual(
    events.all.filter((e) => !known.has(e.connectionId)),
    [],
    "events for connections the test did not open",
  );
  assertNoHandlerErrors(errors);
});

it("user events: json / text / binary echo through handleUserEvent (ack after the handler answered); raw ws frames echoed", async (t, ctx) => {
  const hub = hubName("userevent");
  const errors = [];
  const calls = new Inbox("handleUserEvent");
  let release;
  const gate = new Promise((r) => (release = r));
  // The express handler's default path (/api/webpubsub/hubs/<hub>/) and a {hub} placeholder.
  const backend = await ctx.backend([
    {
      hub,
      handleUserEvent: guard(errors, (req, res) => {
        calls.push(snap(req));
        const answer = () => {
          switch (req.context.eventName) {
            case "echo":
              res.success(JSON.stringify(req.data), "json");
              break;
            case "shout":
              res.success(`echo:${req.data}`, "text");
              break;
            case "bin":
              res.success(Buffer.concat([Buffer.from([0xee]), req.data]), "binary");
              break;
            case "quiet":
              res.success();
              break;
            case "message": // raw (no subprotocol) frames
              if (req.dataType === "text") res.success(`echo:${req.data}`, "text");
              else res.success(req.data, "binary");
              break;
            default:
              res.fail(400, "unexpected event " + req.context.eventName);
          }
        };
        if (req.context.eventName === "echo") gate.then(answer);
        else answer();
      }),
    },
  ]);
  await ctx.server(
    configYaml([
      {
        hub,
        handlers: [
          { url: `${backend.url}/api/webpubsub/hubs/{hub}/{event}`, userEvents: ["*"], systemEvents: [], timeout: "10s" },
        ],
      },
    ]),
  );
  const svc = serviceClient(ctx.sb, hub);
  const c = await ctx.sdkClient(svc, { userId: "ev" }, noRetry());

  // json: the handler holds its answer; no ack may arrive before it answers.
  let settled = false;
  const p = c.client.sendEvent("echo", { x: 1 }, "json").finally(() => (settled = true));
  p.catch(() => {});
  const req = await calls.waitFor((r) => r.context.eventName === "echo", { what: "echo event at the handler" });
  assert.equal(req.dataType, "json");
  assert.deepEqual(req.data, { x: 1 });
  assert.equal(req.context.connectionId, c.connectionId);
  assert.equal(req.context.userId, "ev");
  assert.equal(req.context.hub.toLowerCase(), hub.toLowerCase());
  await barrierSdk(svc, c);
  assert.equal(settled, false, "sendEvent was acked before the handler answered");
  assert.equal(c.serverMessages.find((m) => m.data?.x === 1), undefined, "echo delivered before the handler answered");
  release();
  const ack = await withTimeout(p, 10000, "sendEvent('echo') ack");
  assert.equal(ack.isDuplicated, false);
  // The handler's answer is delivered before the ack, so it is already here.
  const echo = c.serverMessages.find((m) => m.data?.x === 1);
  assert.ok(echo, `echo must arrive before the ack; server messages: ${JSON.stringify(c.serverMessages.all)}`);
  assert.equal(echo.dataType, "json");
  assert.deepEqual(echo.data, { x: 1 });

  // text
  await withTimeout(c.client.sendEvent("shout", "hello", "text"), 10000, "sendEvent('shout') ack");
  const shout = c.serverMessages.find((m) => m.data === "echo:hello");
  assert.ok(shout, `text echo must arrive before the ack; server messages: ${JSON.stringify(c.serverMessages.all)}`);
  assert.equal(shout.dataType, "text");
  const textReq = calls.find((r) => r.context.eventName === "shout");
  assert.equal(textReq.dataType, "text");
  assert.equal(textReq.data, "hello");

  // binary
  await withTimeout(c.client.sendEvent("bin", new Uint8Array([1, 2, 3]).buffer, "binary"), 10000, "sendEvent('bin') ack");
  const bin = c.serverMessages.find((m) => m.dataType === "binary");
  assert.ok(bin, `binary echo must arrive before the ack; server messages: ${JSON.stringify(c.serverMessages.all)}`);
  assert.ok(bin.data instanceof ArrayBuffer, "binary arrives as ArrayBuffer");
  assert.deepEqual([...new Uint8Array(bin.data)], [0xee, 1, 2, 3]);
  const binReq = calls.find((r) => r.context.eventName === "bin");
  assert.equal(binReq.dataType, "binary");
  assert.deepEqual(binReq.data, [1, 2, 3]);

  // An empty answer: acked, nothing delivered.
  const before = c.serverMessages.all.length;
  await withTimeout(c.client.sendEvent("quiet", { q: true }, "json"), 10000, "sendEvent('quiet') ack");
  await barrierSdk(svc, c);
  assert.deepEqual(
    c.serverMessages.all.slice(before).filter((m) => !m.data?.marker),
    [],
    "an empty handler answer must not be delivered to the client",
  );

  // Raw (no subprotocol) client: every frame is a `message` event; the answer comes back as one
  // frame, text for text/plain, binary for application/octet-stream.
  const { url } = await svc.getClientAccessToken({ userId: "raw" });
  const raw = await ctx.rawClient(url);
  assert.equal(raw.ws.protocol, "");
  raw.ws.send("hello raw");
  const f1 = await raw.inbox.next({ what: "echo of the text frame" });
  assert.equal(f1.isBinary, false, "text answer must be a text frame");
  assert.equal(f1.text, "echo:hello raw");
  raw.ws.send(Buffer.from([9, 8, 7]), { binary: true });
  const f2 = await raw.inbox.next({ what: "echo of the binary frame" });
  assert.equal(f2.isBinary, true, "binary answer must be a binary frame");
  assert.deepEqual([...f2.data], [9, 8, 7]);
  const rawReqs = calls.filter((r) => r.context.eventName === "message");
  assert.deepEqual(
    rawReqs.map((r) => [r.dataType, r.data, r.context.userId]),
    [
      ["text", "hello raw", "raw"],
      ["binary", [9, 8, 7], "raw"],
    ],
  );
  assertNoHandlerErrors(errors);
});

it("connection state: res.setState in handleConnect is seen by later user events, connected and disconnected", async (t, ctx) => {
  const hub = hubName("state");
  const errors = [];
  const seen = new Inbox("states");
  const backend = await ctx.backend([
    {
      hub,
      path: "/eventhandler",
      handleConnect: guard(errors, (req, res) => {
        res.setState("k", "v");
        res.success();
      }),
      onConnected: guard(errors, (req) => seen.push({ event: "connected", states: { ...req.context.states } })),
      onDisconnected: guard(errors, (req) => seen.push({ event: "disconnected", states: { ...req.context.states } })),
      handleUserEvent: guard(errors, (req, res) => {
        const states = { ...req.context.states };
        seen.push({ event: req.context.eventName, states });
        if (req.context.eventName === "set") res.setState("n", 1);
        res.success(JSON.stringify(states), "json");
      }),
    },
  ]);
  await ctx.server(
    configYaml([
      {
        hub,
        handlers: [{ url: `${backend.url}/eventhandler/{event}`, userEvents: ["*"], systemEvents: ALL_SYSTEM, timeout: "5s" }],
      },
    ]),
  );
  const svc = serviceClient(ctx.sb, hub);
  const c = await ctx.sdkClient(svc, { userId: "st" }, { ...noRetry(), protocol: WebPubSubJsonProtocol(), autoReconnect: false });

  await withTimeout(c.client.sendEvent("peek", { n: 1 }, "json"), 10000, "sendEvent('peek') ack");
  assert.deepEqual((await seen.waitSeen((e) => e.event === "peek")).states, { k: "v" }, "user event sees the state set by connect");
  const first = await c.serverMessages.next({ what: "state echo" });
  assert.deepEqual(first.data, { k: "v" });

  // A user event's setState updates the state for the events after it.
  await withTimeout(c.client.sendEvent("set", { n: 2 }, "json"), 10000, "sendEvent('set') ack");
  await withTimeout(c.client.sendEvent("peek2", { n: 3 }, "json"), 10000, "sendEvent('peek2') ack");
  assert.deepEqual((await seen.waitSeen((e) => e.event === "peek2")).states, { k: "v", n: 1 });

  const connected = await seen.waitSeen((e) => e.event === "connected", { what: "onConnected" });
  assert.deepEqual(connected.states, { k: "v" }, "connected carries the state set by connect");
  c.stop();
  const disconnected = await seen.waitSeen((e) => e.event === "disconnected", { timeout: 20000, what: "onDisconnected" });
  assert.deepEqual(disconnected.states, { k: "v", n: 1 }, "disconnected carries the latest state");
  assertNoHandlerErrors(errors);
});

it("handler down: connect to an unreachable handler answers 5xx; a user-event handler answering 500 gives an error ack and the connection stays usable", async (t, ctx) => {
  const downHub = hubName("down");
  const failHub = hubName("fail");
  const errors = [];
  const calls = new Inbox("failing handleUserEvent");
  const backend = await ctx.backend([
    {
      hub: failHub,
      path: "/eventhandler",
      handleUserEvent: guard(errors, (req, res) => {
        calls.push(snap(req));
        res.fail(500, "boom");
      }),
    },
  ]);
  const closedPort = await freePort(); // nothing listens there
  await ctx.server(
    configYaml([
      {
        hub: downHub,
        handlers: [{ url: `http://127.0.0.1:${closedPort}/eventhandler/{event}`, userEvents: ["*"], systemEvents: ALL_SYSTEM, timeout: "2s" }],
      },
      {
        hub: failHub,
        handlers: [{ url: `${backend.url}/eventhandler/{event}`, userEvents: ["*"], systemEvents: [], timeout: "5s" }],
      },
    ]),
  );

  // Unreachable connect handler: the upgrade is answered with a 5xx, not left hanging.
  const down = serviceClient(ctx.sb, downHub);
  const { url } = await down.getClientAccessToken({ userId: "d" });
  for (const protocols of [JSON_PROTOCOL, undefined]) {
    const e = await rejects(() => openWs(url, { protocols, timeout: 20000 }), "upgrade with the connect handler down");
    assert.ok(
      e.statusCode >= 500 && e.statusCode <= 599,
      `upgrade (${protocols ?? "no subprotocol"}) must be answered with a 5xx, got: ${e.message}`,
    );
  }
  const sdk = new WebPubSubClient({ getClientAccessUrl: async () => url }, { autoReconnect: false });
  ctx.defer(() => sdk.stop());
  const startErr = await rejects(() => withTimeout(sdk.start(), 25000, "WebPubSubClient.start()"), "start()");
  assert.doesNotMatch(startErr.message, /timed out after/, "WebPubSubClient.start() must fail, not hang");
  assert.equal(await down.userExists("d"), false);

  // A user-event handler answering 500: error ack, connection unharmed.
  const svc = serviceClient(ctx.sb, failHub);
  const roles = ["webpubsub.joinLeaveGroup"];
  const c = await ctx.sdkClient(svc, { userId: "f", roles }, noRetry());
  const err = await rejects(
    () => withTimeout(c.client.sendEvent("doomed", { a: 1 }, "json"), 15000, "sendEvent to a failing handler"),
    "sendEvent to a handler answering 500",
  );
  assert.doesNotMatch(err.message, /timed out after/, "sendEvent must be answered with an error ack, not hang");
  assert.ok(err.errorDetail?.name, `an error ack (with error.name) is expected, got: ${err.name}: ${err.message} ${JSON.stringify(err.errorDetail)}`);
  t.diagnostic(`SDK error ack: ${JSON.stringify(err.errorDetail)}`);
  await calls.waitSeen((r) => r.context.eventName === "doomed", { what: "the event at the handler" });
  const g = "still-usable-" + randomSuffix();
  await withTimeout(c.client.joinGroup(g), 10000, "joinGroup after the error ack");
  const tag = "after-error-" + randomSuffix();
  await svc.group(g).sendToAll({ tag });
  await c.groupMessages.waitFor((m) => m.data?.tag === tag, { what: "group message after the error ack" });
  assert.equal(c.events.find((e) => e.event === "disconnected"), undefined, "the connection must not be dropped");
  assert.equal(await svc.connectionExists(c.connectionId), true);

  // The same, frame-exact, with a plain json.webpubsub.azure.v1 socket: error ack, then ping/pong
  // and joinGroup still work.
  const j = await ctx.jsonClient(svc, { userId: "fj", roles });
  await j.sendJson({ type: "event", event: "doomed", ackId: 1, dataType: "text", data: "x" });
  const ackFrame = await j.inbox.waitFor((f) => f.json?.type === "ack", { what: "error ack" });
  assert.equal(ackFrame.json.ackId, 1);
  assert.equal(ackFrame.json.success, false, `error ack expected: ${ackFrame.text}`);
  assert.equal(typeof ackFrame.json.error?.name, "string", `error ack carries error.name: ${ackFrame.text}`);
  await j.sendJson({ type: "ping" });
  const pong = await j.inbox.waitFor((f) => f.json?.type === "pong", { what: "pong after the error ack" });
  assert.deepEqual(pong.json, { type: "pong" });
  await j.sendJson({ type: "joinGroup", group: g, ackId: 2 });
  const joinAck = await j.inbox.waitFor((f) => f.json?.type === "ack", { what: "joinGroup ack" });
  assert.deepEqual(joinAck.json, { type: "ack", ackId: 2, success: true });
  await barrierJson(svc, j);
  assert.equal(j.ws.readyState, j.ws.OPEN, "the json socket must stay open");
  assertNoHandlerErrors(errors);
});

it("CloudEvents requests: abuse-protection OPTIONS first, full ce-* header set, ce-signature with both access keys", async (t, ctx) => {
  const hub = hubName("headers");
  const errors = [];
  const backend = await ctx.backend([
    {
      hub,
      path: "/eventhandler",
      handleConnect: guard(errors, (req, res) => res.success()),
      onConnected: guard(errors, () => {}),
      onDisconnected: guard(errors, () => {}),
      handleUserEvent: guard(errors, (req, res) => res.success()),
    },
  ]);
  await ctx.server(
    configYaml([
      {
        hub,
        handlers: [{ url: `${backend.url}/eventhandler/{event}`, userEvents: ["*"], systemEvents: ALL_SYSTEM, timeout: "5s" }],
      },
    ]),
  );
  const svc = serviceClient(ctx.sb, hub);
  const c = await ctx.sdkClient(svc, { userId: "sig-user" }, { protocol: WebPubSubJsonProtocol(), autoReconnect: false });
  await withTimeout(c.client.sendEvent("hello", { h: 1 }, "json"), 10000, "sendEvent('hello') ack");
  c.stop();
  const id = c.connectionId;
  const byType = (type) => (r) => r.method === "POST" && r.headers["ce-type"] === type && r.headers["ce-connectionid"] === id;
  const types = ["sys.connect", "sys.connected", "user.hello", "sys.disconnected"].map((x) => `azure.webpubsub.${x}`);
  for (const type of types) {
    await backend.requests.waitSeen(byType(type), { timeout: 15000, what: `${type} for ${id}` });
  }
  const host = "127.0.0.1";
  const origins = [host, `${host}:${ctx.serverPort}`];

  // Abuse protection: an OPTIONS with ce-awpsversion and the origin before the first POST,
  // answered 200 by express with the allowed origin.
  const firstPost = backend.requests.all.findIndex((r) => r.method === "POST");
  const options = backend.requests.all.slice(0, firstPost).filter((r) => r.method === "OPTIONS");
  assert.ok(options.length >= 1, `an OPTIONS request must precede the first POST: ${ctx.diag()}`);
  for (const o of options) {
    assert.equal(o.headers["ce-awpsversion"], "1.0", "OPTIONS carries ce-awpsversion");
    assert.ok(origins.includes(o.headers["webhook-request-origin"]), `OPTIONS origin ${o.headers["webhook-request-origin"]}`);
  }
  assert.equal(options.at(-1).status, 200, "express accepted the abuse-protection request");

  const sig = (key) => "sha256=" + createHmac("sha256", Buffer.from(key, "utf8")).update(id, "utf8").digest("hex");
  const expectedSigs = ctx.sb.keys.map(sig).sort();
  const ceIds = [];
  for (const type of types) {
    const r = backend.requests.find(byType(type));
    const h = r.headers;
    const label = `${type}: ${JSON.stringify(h)}`;
    const eventName = type.split(".").at(-1);
    assert.equal(h["ce-specversion"], "1.0", label);
    assert.equal(h["ce-awpsversion"], "1.0", label);
    assert.match(h["ce-source"] ?? "", new RegExp(`^(/hubs/${escapeRe(hub)})?/client/${escapeRe(id)}$`, "i"), label);
    assert.match(h["ce-id"] ?? "", /^\d+$/, label);
    ceIds.push(h["ce-id"]);
    assert.match(h["ce-time"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, label);
    assert.equal(h["ce-hub"]?.toLowerCase(), hub.toLowerCase(), label);
    assert.equal(h["ce-connectionid"], id, label);
    assert.equal(h["ce-eventname"], eventName, label);
    assert.equal(h["ce-userid"], "sig-user", label);
    assert.ok(origins.includes(h["webhook-request-origin"]), label);
    assert.match(h["content-type"] ?? "", /^application\/json/, label);
    assert.deepEqual(
      (h["ce-signature"] ?? "")
        .split(",")
        .map((s) => s.trim().toLowerCase())
        .sort(),
      expectedSigs,
      `ce-signature must hold one sha256 per access key: ${label}`,
    );
    assert.ok(r.status >= 200 && r.status < 300, `express took the request (${r.status}): ${label}`);
  }
  const userReq = backend.requests.find(byType("azure.webpubsub.user.hello"));
  assert.equal(userReq.headers["ce-subprotocol"], JSON_PROTOCOL);
  assert.equal(new Set(ceIds).size, ceIds.length, `ce-id unique within the connection: ${ceIds}`);
  assertNoHandlerErrors(errors);
});
