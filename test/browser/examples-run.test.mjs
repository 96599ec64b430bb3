// The examples' one command (`make example-chat` / `make example-live-dashboard` run
// `node examples/run.mjs <name>`): it starts the server with the example's switchboard.yaml and
// the backend with the connection string the server printed, prints the URL to open, and a
// Ctrl-C (SIGINT) stops both and exits 0; so does a hangup (SIGHUP: the terminal closed), which
// would otherwise kill run.mjs alone and leave the server, in its own process group, listening.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { buildServer, freePort, waitFor, randomSuffix, REPO_ROOT } from "./harness.mjs";

async function run(name, check, signal = "SIGINT") {
  const [port, serverPort, signalrPort] = [await freePort(), await freePort(), await freePort()];
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `switchboard-example-run-${name}-`));
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "examples", "run.mjs"), name], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      SWITCHBOARD_BIN: await buildServer(),
      EXAMPLE_PORT: String(port),
      EXAMPLE_SERVER_PORT: String(serverPort),
      EXAMPLE_SIGNALR_PORT: String(signalrPort),
      EXAMPLE_DATA_DIR: dataDir,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d) => (out += d));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(() => out.includes(`Open ${url}/`), { what: `"Open ${url}/" in the output`, timeout: 30000 });
    await check(url);
    child.kill(signal);
    assert.deepEqual(await exited, { code: 0, signal: null }, `${signal} exits 0`);
    for (const p of [port, serverPort, signalrPort]) {
      await assert.rejects(fetch(`http://127.0.0.1:${p}/`), `nothing listens on ${p} after ${signal}`);
    }
  } catch (e) {
    e.message += `\n--- run.mjs output ---\n${out.slice(-4000)}`;
    throw e;
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  }
}

test("examples/run.mjs chat: the backend talks to the server it started; Ctrl-C stops both", () =>
  run("chat", async (url) => {
    const neg = await (await fetch(`${url}/api/negotiate?user=ann`)).json();
    assert.match(neg.url, /^ws:\/\/127\.0\.0\.1:\d+\/client\/hubs\/chat\?access_token=/);
    const r = await fetch(`${url}/api/conversations/general/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": `k-${randomSuffix(12)}` },
      body: JSON.stringify({ user: "ann", text: "hello" }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    const history = await (await fetch(`${url}/api/conversations/general/history`)).json();
    assert.deepEqual(history.messages.map((m) => [m.offset, m.text]), [[1, "hello"]]);
    assert.equal((await fetch(`${url}/`)).status, 200);
  }));

test("examples/run.mjs live-dashboard: the publisher sends through the server it started; Ctrl-C stops both", () =>
  run("live-dashboard", async (url) => {
    await waitFor(async () => (await (await fetch(`${url}/api/stats`)).json()).published["plant-a"] >= 2, { what: "points published" });
    const stats = await (await fetch(`${url}/api/stats`)).json();
    assert.equal(stats.failures.count, 0, stats.failures.last);
    assert.equal((await fetch(`${url}/signalr.js`)).status, 200);
  }));

test("examples/run.mjs chat: a hangup (the terminal closed) stops the backend and the server too", () =>
  run("chat", async () => {}, "SIGHUP"));

// A Ctrl-C while the server is still starting (run.mjs waits for its connection strings) stops it
// too: the server is a stand-in that never prints them and records the SIGTERM it gets.
test("examples/run.mjs: a Ctrl-C during the server's start stops the server", async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-example-run-start-"));
  const fake = path.join(dir, "fake-switchboard");
  writeFileSync(
    fake,
    `#!/bin/sh\ntrap 'echo term > "${dir}/term"; exit 0' TERM\necho $$ > "${dir}/pid.tmp" && mv "${dir}/pid.tmp" "${dir}/pid"\nwhile :; do sleep 0.05; done\n`,
    { mode: 0o755 },
  );
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "examples", "run.mjs"), "chat"], {
    cwd: REPO_ROOT,
    env: { ...process.env, SWITCHBOARD_BIN: fake, EXAMPLE_DATA_DIR: path.join(dir, "data") },
    stdio: "ignore",
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  try {
    await waitFor(() => existsSync(path.join(dir, "pid")), { what: "the stand-in server started" });
    child.kill("SIGINT");
    assert.deepEqual(await exited, { code: 0, signal: null }, "Ctrl-C during the start exits 0");
    assert.ok(existsSync(path.join(dir, "term")), "the server got SIGTERM");
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    if (!existsSync(path.join(dir, "term")) && existsSync(path.join(dir, "pid"))) {
      process.kill(Number(readFileSync(path.join(dir, "pid"), "utf8")), "SIGKILL"); // the orphan run.mjs left
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
