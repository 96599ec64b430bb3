// @microsoft/signalr's browser bundle in headless Chromium against Switchboard's SignalR
// listener, over WebSockets and over LongPolling. The page (and the app's negotiate endpoint)
// are on the test's own origin, so everything after the redirect is cross-origin with
// credentials (the JS client's default): preflights, Access-Control-Allow-Origin echo and
// Access-Control-Allow-Credentials: true must all be right, or the browser refuses.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer,
  startUpstream,
  startApp,
  launchBrowser,
  rest,
  waitFor,
  hubName,
  randomSuffix,
  signalrSignature,
} from "./harness.mjs";

let sb;
let upstream;
let app;
let browser;

before(async () => {
  upstream = await startUpstream();
  sb = await startServer({ config: `signalr:\n  addr: 127.0.0.1:0\n  upstreams:\n    - url_template: ${JSON.stringify(upstream.template)}\n` });
  app = await startApp(sb);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await sb?.stop();
  await app?.close();
  await upstream?.close();
});

for (const transport of ["WebSockets", "LongPolling"]) {
  test(`browser, ${transport}: connects cross-origin, receives a REST broadcast and a group send, invoke reaches the upstream and returns its result`, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const consoleLines = [];
    const sockets = [];
    const requests = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    page.on("websocket", (ws) => sockets.push(ws.url()));
    page.on("request", (r) => requests.push(r));
    try {
      await page.goto(app.origin + "/");
      const hub = hubName("browser");
      const user = `u-${randomSuffix(4)}`;
      const id = await page.evaluate(({ base, transport }) => window.connectHub(base, transport), {
        base: app.route(hub, user),
        transport,
      });
      assert.equal(typeof id, "string");
      assert.ok(id.length > 0);

      // The redirect was followed: the negotiate went cross-origin to the SignalR listener,
      // with the page's Origin.
      const negotiate = requests.find((r) => r.url().startsWith(`${sb.signalrEndpoint}/client/negotiate?`));
      assert.ok(negotiate, `negotiate at the SignalR listener: ${requests.map((r) => r.url()).join(" ")}`);
      assert.equal((await negotiate.allHeaders()).origin, app.origin);
      assert.match(negotiate.url(), new RegExp(`[?&]hub=${hub}(&|$)`));

      if (transport === "WebSockets") {
        // Browsers cannot set headers on a WebSocket: the token travels as access_token.
        const ws = sockets.find((u) => u.startsWith(`ws://127.0.0.1:${sb.signalrPort}/client/`));
        assert.ok(ws, `a WebSocket to the SignalR listener: ${JSON.stringify(sockets)}`);
        const q = new URL(ws).searchParams;
        assert.ok(q.get("access_token"), `access_token in the query: ${ws}`);
        assert.ok(q.get("id"), `id in the query: ${ws}`);
        assert.equal(q.get("hub"), hub);
      } else {
        assert.deepEqual(sockets, [], "LongPolling opens no WebSocket");
        const polls = requests.filter((r) => r.method() === "GET" && r.url().startsWith(`${sb.signalrEndpoint}/client/?`));
        assert.ok(polls.length >= 1, "long polls went to the SignalR listener");
      }

      // REST broadcast.
      const bc = await rest(sb, "POST", `/api/hubs/${hub}/:send`, { target: "newMessage", arguments: ["bc", { n: 1, list: [true, null] }] });
      assert.equal(bc.status, 202, bc.text);
      const got = (first) =>
        waitFor(() => page.evaluate((f) => window.received.find((a) => a[0] === f), first), { what: `"${first}" in the page` });
      assert.deepEqual(await got("bc"), ["bc", { n: 1, list: [true, null] }]);

      // Group send.
      const group = `g-${randomSuffix()}`;
      const add = await rest(sb, "PUT", `/api/hubs/${hub}/groups/${group}/connections/${encodeURIComponent(id)}`);
      assert.ok(add.status >= 200 && add.status < 300, `add to group: ${add.status} ${add.text}`);
      const gs = await rest(sb, "POST", `/api/hubs/${hub}/groups/${group}/:send`, { target: "newMessage", arguments: ["grp", 42] });
      assert.equal(gs.status, 202, gs.text);
      assert.deepEqual(await got("grp"), ["grp", 42]);

      // invoke → upstream → result.
      const result = await page.evaluate(() => window.conn.invoke("echo", 1, "b", { c: [2] }));
      assert.deepEqual(result, { echo: [1, "b", { c: [2] }] });
      const rec = upstream.requests.find((r) => r.event === "echo" && r.headers["x-asrs-connection-id"] === id);
      assert.ok(rec, "the invocation reached the upstream");
      assert.equal(rec.headers["x-asrs-user-id"], user);
      assert.equal(rec.headers["x-asrs-hub"]?.toLowerCase(), hub.toLowerCase());
      assert.deepEqual(rec.headers["x-asrs-signature"].split(",").sort(), sb.keys.map((k) => signalrSignature(k, id)).sort());
      assert.deepEqual(rec.message.arguments, [1, "b", { c: [2] }]);

      assert.deepEqual(await page.evaluate(() => window.errors), [], "the connection stayed up");
      await page.evaluate(() => window.conn.stop());
      await waitFor(() => upstream.requests.find((r) => r.event === "disconnected" && r.headers["x-asrs-connection-id"] === id), {
        timeout: 30000,
        what: "upstream disconnected after stop()",
      });
    } catch (err) {
      try {
        err.message += `\n--- page console ---\n${consoleLines.slice(-40).join("\n")}${sb.diag()}`;
      } catch {
        /* ignore */
      }
      throw err;
    } finally {
      await context.close();
    }
  });
}
