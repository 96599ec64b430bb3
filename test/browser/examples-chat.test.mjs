// examples/chat in headless Chromium: its backend (express + @azure/web-pubsub, imported from
// examples/chat, with its own node_modules) against a real server started with the example's
// switchboard.yaml, and its page (the checked-in esbuild bundle of @azure/web-pubsub-client).
// The pages' WebSockets go through a TCP proxy that can drop a user's sockets abruptly and hold
// back their recovery. Screenshots go to test/browser/screenshots/examples-chat-*.png.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { startServer, launchBrowser, waitFor, sleep, randomSuffix, REPO_ROOT, HERE } from "./harness.mjs";

const EXAMPLE = path.join(REPO_ROOT, "examples", "chat");
const { startChat } = await import(path.join(EXAMPLE, "server.mjs"));
const { bundle, OUTPUT } = await import(path.join(EXAMPLE, "build.mjs"));

const SHOTS = path.join(HERE, "screenshots");
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `examples-chat-${name}.png`), fullPage: true });

/**
 * A TCP proxy to the server's listener that knows whose WebSocket each connection is (the
 * `sub` of the access_token in its request line): dropUser() resets that user's connections
 * both ways (no close frame: what a lost network does), and while block() is on, that
 * user's new connections are reset as soon as they send their request.
 */
async function startUserProxy(targetPort) {
  const conns = new Set();
  const blocked = new Set();
  const log = []; // {user, recovery, refused}
  const userOf = (line) => {
    const m = /[?&]access_token=([^&\s]+)/.exec(line);
    if (!m) return undefined;
    try {
      return JSON.parse(Buffer.from(decodeURIComponent(m[1]).split(".")[1], "base64url")).sub;
    } catch {
      return undefined;
    }
  };
  const reset = (s) => {
    s.removeAllListeners("error");
    s.on("error", () => {});
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy();
    }
  };
  const server = net.createServer((client) => {
    client.once("data", (first) => {
      const line = first.toString("latin1").split("\r\n")[0];
      const user = userOf(line);
      const entry = { user, recovery: line.includes("awps_reconnection_token"), refused: blocked.has(user) };
      log.push(entry);
      if (entry.refused) return reset(client);
      const upstream = net.connect(targetPort, "127.0.0.1");
      const conn = { user, client, upstream };
      conns.add(conn);
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
      const done = () => {
        conns.delete(conn);
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) s.on("error", done).on("close", done);
    });
    client.on("error", () => {});
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    log,
    block: (user) => blocked.add(user),
    unblock: (user) => blocked.delete(user),
    dropUser(user) {
      let n = 0;
      for (const c of [...conns]) {
        if (c.user !== user) continue;
        conns.delete(c);
        c.client.unpipe();
        c.upstream.unpipe();
        reset(c.client);
        reset(c.upstream);
        n++;
      }
      return n;
    },
    close() {
      for (const c of conns) (c.client.destroy(), c.upstream.destroy());
      return new Promise((r) => server.close(() => r()));
    },
  };
}

let sb;
let proxy;
let chat;
let browser;
let dataDir;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  sb = await startServer({ config: readFileSync(path.join(EXAMPLE, "switchboard.yaml"), "utf8") });
  proxy = await startUserProxy(Number(new URL(sb.endpoint).port));
  dataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-example-chat-"));
  chat = await startChat({
    connectionString: `Endpoint=${sb.endpoint};AccessKey=${sb.keys[0]};Version=1.0;`,
    dataFile: path.join(dataDir, "messages.json"),
    clientEndpoint: proxy.origin,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await chat?.close();
  await proxy?.close();
  await sb?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("examples/chat: the checked-in public/app.js is what `make examples` builds from src/app.js", async () => {
  const built = await bundle();
  const checkedIn = readFileSync(OUTPUT);
  assert.ok(built.equals(checkedIn), `examples/chat/public/app.js is stale (${checkedIn.length} bytes checked in, ${built.length} built): run \`make examples\` and commit it`);
});

/** Opens the chat as `user` in `context`; resolves when it has joined and caught up. */
async function openChat(context, user, errors) {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${user}: ${e.message}`));
  await page.goto(`${chat.url}/?user=${user}&c=general`);
  await page.waitForFunction(() => window.chat?.ready || window.chat?.errors.length, null, { timeout: 30000 });
  assert.deepEqual(await page.evaluate(() => window.chat.errors), [], `${user}'s page started without errors`);
  return page;
}

const texts = (page) => page.$$eval("#messages li .text", (els) => els.map((e) => e.textContent));
const deliveries = (page, id) => page.evaluate((id) => window.chat.deliveries.filter((d) => d === id).length, id);

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
  await page.waitForSelector(`#messages li .text:text-is(${JSON.stringify(text)})`);
}

function post(key, user, text) {
  return fetch(`${chat.url}/api/conversations/general/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": key },
    body: JSON.stringify({ user, text }),
  });
}

test("examples/chat: two users chat; a retried POST arrives once; a dropped socket recovers what was sent meanwhile; a reload shows the history; a second tab of a user closes the first with the notice", async () => {
  const errors = [];
  const annCtx = await browser.newContext();
  const bobCtx = await browser.newContext();
  let ann;
  let bob;
  try {
    ann = await openChat(annCtx, "ann", errors);
    bob = await openChat(bobCtx, "bob", errors);

    // Two users chat in a conversation.
    await say(ann, "hello bob");
    await bob.waitForSelector(`#messages li .text:text-is("hello bob")`);
    await say(bob, "hi ann");
    await ann.waitForSelector(`#messages li .text:text-is("hi ann")`);
    await shot(bob, "1-conversation");

    // A message posted twice at once and then once more with the same Idempotency-Key: stored
    // once, and delivered once (the two concurrent POSTs both publish; Switchboard takes the
    // key once).
    const key = `k-${randomSuffix(12)}`;
    const [r1, r2] = await Promise.all([post(key, "bob", "only once"), post(key, "bob", "only once")]);
    assert.ok(r1.ok && r2.ok, `both POSTs answered ${r1.status} ${r2.status}`);
    const r3 = await post(key, "bob", "only once");
    assert.equal(r3.status, 200, "a retry of a published message answers 200");
    assert.equal((await post(key, "bob", "something else")).status, 422, "the key with another message is refused");
    const noKey = await fetch(`${chat.url}/api/conversations/general/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: "bob", text: "no key" }),
    });
    assert.equal(noKey.status, 400);
    assert.match((await noKey.json()).error, /Idempotency-Key header needed/);
    const badJson = await fetch(`${chat.url}/api/conversations/general/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": `k-${randomSuffix(12)}` },
      body: "{not json",
    });
    assert.equal(badJson.status, 400, "malformed JSON is the caller's error, not a 502");
    await say(bob, "after the retries");
    await ann.waitForSelector(`#messages li .text:text-is("after the retries")`);
    for (const [who, page] of [["ann", ann], ["bob", bob]]) {
      assert.equal(await deliveries(page, key), 1, `${who} got the retried message once`);
    }
    assert.equal((await texts(ann)).filter((t) => t === "only once").length, 1);

    // Ann's socket drops (reset both ways, no close frame) and her recovery is held back while
    // Bob sends three messages; then it goes through and the server replays them.
    const connectionId = await ann.evaluate(() => window.chat.connectionId);
    proxy.block("ann");
    assert.equal(proxy.dropUser("ann"), 1, "ann had one socket");
    await waitFor(() => proxy.log.some((e) => e.user === "ann" && e.recovery && e.refused), { what: "a refused recovery attempt of ann", timeout: 30000 });
    for (const t of ["while you were away 1", "while you were away 2", "while you were away 3"]) await say(bob, t);
    assert.ok(!(await texts(ann)).includes("while you were away 1"), "nothing reaches ann while her socket is down");
    await shot(ann, "2-dropped");
    proxy.unblock("ann");
    await ann.waitForSelector(`#messages li .text:text-is("while you were away 3")`, { timeout: 30000 });
    const got = (await texts(ann)).filter((t) => t.startsWith("while you were away"));
    assert.deepEqual(got, ["while you were away 1", "while you were away 2", "while you were away 3"]);
    assert.equal(await ann.evaluate(() => window.chat.connectionId), connectionId, "the same connection, recovered");
    assert.ok(proxy.log.some((e) => e.user === "ann" && e.recovery && !e.refused), "a recovery went through");
    assert.equal(await ann.evaluate(() => window.chat.status), "connected");
    await shot(ann, "3-recovered");

    // A reload shows the conversation from the group's history.
    const before = await texts(bob);
    await ann.reload();
    await ann.waitForFunction(() => window.chat?.ready, null, { timeout: 30000 });
    assert.deepEqual(await ann.evaluate(() => window.chat.deliveries), [], "nothing live since the reload: what shows came from the history");
    assert.deepEqual(await texts(ann), before, "after the reload ann sees what bob sees");
    assert.ok(before.includes("hello bob") && before.includes("while you were away 3"));
    await shot(ann, "4-reloaded");

    // A second tab of ann: the first gets the notice and stops (it does not reconnect and
    // close the second), the second keeps chatting.
    const ann2 = await openChat(annCtx, "ann", errors);
    await ann.waitForSelector("#notice:not([hidden])", { timeout: 15000 });
    const notice = await ann.evaluate(() => window.chat.notice);
    assert.equal(notice.event, "RemoveDuplicateSession");
    assert.equal(notice.connectionId, await ann2.evaluate(() => window.chat.connectionId));
    assert.match(await ann.textContent("#notice"), /opened this chat somewhere else/);
    await say(bob, "to the new tab");
    await ann2.waitForSelector(`#messages li .text:text-is("to the new tab")`);
    await sleep(1500); // time for a (wrong) reconnect of the old tab to close the new one
    assert.equal(await ann2.evaluate(() => window.chat.status), "connected");
    assert.equal(await ann.evaluate(() => window.chat.status), "closed");
    assert.ok(!(await texts(ann)).includes("to the new tab"), "the old tab is not connected");
    await shot(ann, "5-duplicate-session");
    assert.deepEqual(errors, []);
  } catch (e) {
    if (ann) await shot(ann, "failure-ann").catch(() => {});
    if (bob) await shot(bob, "failure-bob").catch(() => {});
    e.message += sb.diag();
    throw e;
  } finally {
    await annCtx.close();
    await bobCtx.close();
  }
});
