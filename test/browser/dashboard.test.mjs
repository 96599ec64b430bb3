// The dashboard in headless Chromium against a real server, with a real Web PubSub client
// (a WebSocket on json.webpubsub.azure.v1, in a second page): log in, the live trace shows
// the client connecting, the overview counts it, a console message reaches it, the token tool
// mints a URL, the inspector shows it and closes it with a reason. Screenshots of each page
// go to test/browser/screenshots/ (gitignored).
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { startServer, startNats, launchBrowser, waitFor, hubName, signJwt, HERE } from "./harness.mjs";

const SHOTS = path.join(HERE, "screenshots");
let sb;
let browser;

// Every hub keeps the history of its hist:* groups (the history streams panel).
const HISTORY = `hubs:\n  _default:\n    history:\n      - {pattern: "hist:*", max_messages: 50, max_age: 1h}\n`;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  sb = await startServer({ config: HISTORY });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await sb?.stop();
});

const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `dashboard-${name}.png`), fullPage: true });

/** Opens a json.webpubsub.azure.v1 client in its own page; resolves to {page, id}. */
async function openClient(context, hub, user, groups, server = sb) {
  const page = await context.newPage();
  const aud = `${server.endpoint}/client/hubs/${hub}`;
  const token = signJwt({ aud, sub: user, role: ["webpubsub.joinLeaveGroup"], "webpubsub.group": groups }, server.keys[0]);
  const url = `${aud.replace(/^http/, "ws")}?access_token=${encodeURIComponent(token)}`;
  const id = await page.evaluate(
    (url) =>
      new Promise((resolve, reject) => {
        window.msgs = [];
        const ws = (window.ws = new WebSocket(url, "json.webpubsub.azure.v1"));
        ws.onmessage = (m) => {
          const msg = JSON.parse(m.data);
          window.msgs.push(msg);
          if (msg.event === "connected") resolve(msg.connectionId);
        };
        ws.onclose = (e) => {
          window.wsClosed = { code: e.code, reason: e.reason };
          reject(new Error(`closed ${e.code} ${e.reason}`));
        };
      }),
    url,
  );
  return { page, id, msgs: () => page.evaluate(() => window.msgs), closed: () => page.evaluate(() => window.wsClosed) };
}

test("dashboard: login, live trace, overview, publish console, token tool, connection inspector", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // (the refused login is a 401 the console reports as a failed load)
  page.on("console", (m) => m.type() === "error" && !m.text().includes("status of 401") && errors.push(m.text()));
  const hub = hubName("dash");
  try {
    // / redirects to the dashboard, which asks for a login.
    await page.goto(sb.endpoint + "/");
    assert.equal(new URL(page.url()).pathname, "/dashboard/login");
    await page.fill("#key", "not-a-key");
    await page.click("#login-button");
    await page.waitForSelector("text=That key is not valid.");
    await shot(page, "login");
    await page.fill("#key", sb.keys[1]);
    await page.click("#login-button");
    await page.waitForURL(/\/dashboard\/$/);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === "switchboard_dashboard");
    assert.ok(session && session.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));

    // The live trace, filtered on the hub, shows the client connecting.
    await page.click("a[data-tab=trace]");
    await page.fill("#trace-form input[name=hub]", hub);
    await page.click("#trace-start");
    await page.waitForSelector("#trace-status:has-text('watching')");
    const client = await openClient(context, hub, "ann", ["room"]);
    await page.waitForSelector(`#trace tr.k-connected:has-text("${client.id}")`);

    // The overview counts it.
    await page.click("a[data-tab=overview]");
    await page.waitForSelector(`#hubs tr:has-text("${hub}")`);
    const hubRow = await page.textContent(`#hubs tr:has-text("${hub}")`);
    assert.match(hubRow, /webpubsub\s*\S+\s*1\s*1\s*1/);
    await page.waitForSelector(`#groups tr:has-text("room")`);
    await page.waitForSelector("#nodes tbody tr");
    await page.waitForSelector("#chart-msgs polyline.out", { state: "attached" });
    await shot(page, "overview");

    // The publish console's message arrives at the client.
    await page.click("a[data-tab=publish]");
    await page.fill("#publish-form input[name=hub]", hub);
    await page.selectOption("#publish-form select[name=target]", "group");
    await page.fill("#publish-form input[name=name]", "room");
    await page.fill("#publish-form textarea[name=data]", "hello from the dashboard");
    await page.click("#publish-send");
    await page.waitForSelector("#publish-result:has-text('sent')");
    await waitFor(async () => (await client.msgs()).some((m) => m.type === "message" && m.data === "hello from the dashboard"), {
      what: "the console's message at the client",
    });
    await shot(page, "publish");

    // The delivery latency chart gets a point: the message above was written to the client's
    // socket between two polls.
    await page.click("a[data-tab=overview]");
    await page.waitForSelector("#rate-delivery:has-text('p99')");
    await page.waitForSelector("#chart-delivery circle.out", { state: "attached" });
    assert.match(await page.textContent("#rate-delivery"), /^p50 [\d.]+k? · p99 [\d.]+k?$/);

    // Two console sends to a group that keeps history: the streams panel lists it at offset 2.
    await page.click("a[data-tab=publish]");
    await page.fill("#publish-form input[name=name]", "hist:1");
    for (const text of ["kept 1", "kept 2"]) {
      await page.fill("#publish-form textarea[name=data]", text);
      await page.evaluate(() => (document.querySelector("#publish-result").textContent = ""));
      await page.click("#publish-send");
      await page.waitForSelector("#publish-result:has-text('sent')");
    }
    await page.click("a[data-tab=overview]");
    const row = await page.waitForSelector(`#streams tr:has-text("hist:1"):has-text("${hub}")`);
    await waitFor(async () => {
      const cells = await row.$$eval("td", (tds) => tds.map((td) => td.textContent));
      // ns, hub, group, bytes, messages, first, last, epoch, retention
      return cells[4] === "2" && cells[5] === "1" && cells[6] === "2" && /^[0-9a-f]{16}$/.test(cells[7]) && cells[8] === "50 msgs · 1h0m0s";
    }, { what: "hist:1 at offsets 1 to 2 with its epoch and retention" }).catch(async (e) => {
      e.message += ` row: ${await page.textContent(`#streams tr:has-text("hist:1")`)}`;
      throw e;
    });
    await shot(page, "streams");

    // The token tool mints a client URL for a user with roles and groups, and a negotiate answer.
    await page.click("a[data-tab=token]");
    await page.fill("#token-form input[name=hub]", hub);
    await page.fill("#token-form input[name=user]", "bob");
    await page.fill("#token-form input[name=roles]", "webpubsub.sendToGroup");
    await page.fill("#token-form input[name=groups]", "room, lobby");
    await page.click("#token-make");
    await page.waitForSelector("#token-result:has-text('access_token')");
    const tok = JSON.parse(await page.textContent("#token-result"));
    assert.ok(tok.url.startsWith(`ws://`) && tok.url.includes(`/client/hubs/${hub}?access_token=`), tok.url);
    const claims = JSON.parse(Buffer.from(tok.token.split(".")[1], "base64url"));
    assert.equal(claims.sub, "bob");
    assert.deepEqual(claims["webpubsub.group"], ["room", "lobby"]);
    await shot(page, "token");
    await page.selectOption("#token-form select[name=ns]", "signalr");
    await page.click("#token-make");
    await page.waitForSelector("#token-result:has-text('accessToken')");
    const neg = JSON.parse(await page.textContent("#token-result"));
    assert.equal(neg.url, `${sb.signalrEndpoint}/client/?hub=${hub}`);

    // The inspector shows the client and closes it with a reason.
    await page.click("a[data-tab=inspect]");
    await page.fill("#inspect-form input[name=hub]", hub);
    await page.fill("#inspect-form input[name=id]", client.id);
    await page.click("#inspect-look");
    await page.waitForSelector("#inspect-result tr:has-text('ann')");
    const details = await page.textContent("#inspect-result");
    assert.match(details, /room/);
    assert.match(details, /json\.webpubsub\.azure\.v1/);
    await shot(page, "inspector");
    await page.fill("#close-form input[name=reason]", "closed from the browser");
    await page.click("#inspect-close");
    await waitFor(async () => (await client.msgs()).some((m) => m.event === "disconnected" && m.message === "closed from the browser"), {
      what: "the disconnected message with the reason",
    });
    await waitFor(async () => (await client.closed())?.code, { what: "the client's socket closing" }).catch(async (e) => {
      e.message += ` readyState=${await client.page.evaluate(() => window.ws.readyState)} closed=${JSON.stringify(await client.page.evaluate(() => window.wsClosed))} msgs=${JSON.stringify(await client.msgs())}`;
      throw e;
    });

    // The trace shows the close and its reason, and the console's message.
    await page.click("a[data-tab=trace]");
    await page.waitForSelector(`#trace tr.k-disconnected:has-text("closed from the browser")`);
    await page.waitForSelector(`#trace tr.k-message:has-text("room")`);
    await shot(page, "trace");
    assert.deepEqual(errors, []);
  } catch (e) {
    await shot(page, "failure").catch(() => {});
    e.message += sb.diag();
    throw e;
  } finally {
    await context.close();
  }
});

test("dashboard: the nodes of a cluster, their connections summed", async () => {
  const nats = await startNats();
  const nodes = [];
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  const hub = hubName("dashc");
  try {
    for (const id of ["n1", "n2"]) {
      nodes.push(await startServer({ keys: nodes[0]?.keys, extraArgs: ["--set", `server.node_id=${id}`, "--set", `cluster.nats_url=${nats.url}`] }));
    }
    const [n1, n2] = nodes;
    await page.goto(n1.endpoint + "/dashboard/login");
    await page.fill("#key", n1.keys[0]);
    await page.click("#login-button");
    await page.waitForURL(/\/dashboard\/$/);
    // A client on each node: node n1's dashboard lists both nodes with one connection each, and
    // the hub with the two.
    await openClient(context, hub, "ann", ["room"], n1);
    await openClient(context, hub, "bob", ["room"], n2);
    for (const id of ["n1", "n2"]) {
      await waitFor(async () => /^n\d1/.test(((await page.textContent(`#nodes tr:has-text("${id}")`).catch(() => "")) || "").replace(/\s+/g, "")), {
        what: `node ${id} listed with 1 connection`,
      }).catch(async (e) => {
        e.message += ` nodes: ${await page.textContent("#nodes")}`;
        throw e;
      });
    }
    assert.match(await page.textContent(`#nodes tr:has-text("n1")`), /this node/);
    await page.waitForSelector(`#hubs tr:has-text("${hub}")`);
    await waitFor(async () => /webpubsub\s*\S+\s*2\s*2\s*2/.test(await page.textContent(`#hubs tr:has-text("${hub}")`)), {
      what: "the hub with 2 connections, 2 users, 2 groups (one per node)",
    });
    await waitFor(async () => /room\s*2/.test(await page.textContent(`#groups tr:has-text("room")`)), { what: "room with its 2 members" });
    await shot(page, "cluster");
    assert.deepEqual(errors, []);
  } catch (e) {
    await shot(page, "cluster-failure").catch(() => {});
    e.message += nodes.map((n) => n.diag()).join("");
    throw e;
  } finally {
    await context.close();
    for (const n of nodes) await n.stop();
    await nats.stop();
  }
});
