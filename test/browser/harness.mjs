// Harness of the browser suite (self-contained: test/browser has its own node_modules).
//
// - buildServer()/startServer(): like test/sdk's — builds ./cmd/switchboard once (or uses
//   $SWITCHBOARD_BIN), starts `switchboard serve` with two random access keys and the SignalR
//   listener (`--set signalr.addr=127.0.0.1:0`), parses the second stdout line
//   `Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key0>;Version=1.0;`, and waits for
//   /api/health on both listeners.
// - startUpstream(): a SignalR upstream recording every request; `echo` answers a JSON Completion.
// - startApp(): the page's origin: serves the test page, @microsoft/signalr's browser bundle,
//   and the app's negotiate endpoint (redirect to the SignalR listener with a signed token).
// - launchBrowser(): Chromium from /usr/bin/chromium (or $CHROMIUM_BIN) via playwright-core.
import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "..", "..");
const execFileP = promisify(execFile);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `cond` until truthy (returned) or the deadline passes. */
export async function waitFor(cond, { timeout = 15000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      if (e?.fatal) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr.message})` : ""}`);
    }
    await sleep(interval);
  }
}

export const randomSuffix = (n = 8) => randomBytes(n).toString("hex").slice(0, n);
export const hubName = (prefix = "hub") => `${prefix}_${randomSuffix(10)}`;

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** HS256 JWT signed with the access key's UTF-8 bytes; iat/exp added. */
export function signJwt(payload, key, { expiresInSec = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const p = b64url(JSON.stringify({ iat: now, exp: now + expiresInSec, ...payload }));
  const sig = createHmac("sha256", Buffer.from(key, "utf8")).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}

export function signalrSignature(key, connectionId) {
  return "sha256=" + createHmac("sha256", Buffer.from(key, "utf8")).update(connectionId, "utf8").digest("hex").toUpperCase();
}

let builtBinary;
export async function buildServer() {
  if (process.env.SWITCHBOARD_BIN) {
    if (!existsSync(process.env.SWITCHBOARD_BIN)) throw new Error(`SWITCHBOARD_BIN=${process.env.SWITCHBOARD_BIN} does not exist`);
    return process.env.SWITCHBOARD_BIN;
  }
  if (builtBinary) return builtBinary;
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-browser-bin-"));
  const out = path.join(dir, "switchboard");
  try {
    await execFileP("go", ["build", "-o", out, "./cmd/switchboard"], { cwd: REPO_ROOT, maxBuffer: 64 << 20 });
  } catch (e) {
    throw new Error(`go build ./cmd/switchboard failed in ${REPO_ROOT}:\n${e.stderr || e.message}`);
  }
  builtBinary = out;
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return out;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function healthy(url) {
  try {
    const res = await fetch(`${url}/api/health`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer().catch(() => {});
    return res.status === 200;
  } catch {
    return false;
  }
}

/**
 * Start `switchboard serve` with the SignalR listener, `config` (YAML), the access `keys` (two random
 * ones by default) and `extraArgs` (e.g. `--set cluster.nats_url=…`). Resolves to
 * {endpoint, signalrEndpoint, signalrPort, keys, stop(), diag()}.
 */
export async function startServer({ config, keys, extraArgs = [] } = {}) {
  const bin = await buildServer();
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-browser-data-"));
  keys ??= [randomBytes(32).toString("base64"), randomBytes(32).toString("base64")];
  const args = ["serve", "--addr", `127.0.0.1:${port}`, "--data-dir", dataDir, "--access-key", keys[0], "--access-key", keys[1]];
  if (config !== undefined) {
    const file = path.join(dataDir, "switchboard.yaml");
    writeFileSync(file, config);
    args.splice(1, 0, "--config", file);
  }
  args.push("--set", "signalr.addr=127.0.0.1:0", ...extraArgs);
  const env = { ...process.env };
  delete env.SWITCHBOARD_BIN; // the server refuses unknown SWITCHBOARD_* settings
  const child = spawn(bin, args, { cwd: dataDir, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (d) => (stdout = (stdout + d).slice(-(1 << 20))));
  child.stderr.setEncoding("utf8").on("data", (d) => (stderr = (stderr + d).slice(-(1 << 20))));
  let exited = null;
  const exitPromise = new Promise((resolve) => child.on("exit", (code, signal) => resolve((exited = { code, signal }))));
  const endpoint = `http://127.0.0.1:${port}`;
  const diag = () =>
    `\n--- switchboard stdout (tail) ---\n${stdout.slice(-3000)}\n--- switchboard stderr (tail) ---\n${stderr.slice(-8000)}`;
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => exited || child.kill("SIGKILL"), 5000);
      await exitPromise;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  const fatalIfExited = () => {
    if (exited) throw Object.assign(new Error(`server exited early: ${JSON.stringify(exited)}`), { fatal: true });
  };
  let signalrPort;
  try {
    await waitFor(async () => (fatalIfExited(), healthy(endpoint)), { timeout: 30000, what: `${endpoint}/api/health` });
    signalrPort = await waitFor(
      () => {
        for (const line of stdout.split(/\r?\n/)) {
          const m = /^Endpoint=https?:\/\/[^;:/]+;Port=(\d+);AccessKey=([^;]+);Version=1\.0;$/.exec(line.trim());
          if (m && m[2] === keys[0]) return Number(m[1]);
        }
        return undefined;
      },
      { timeout: 5000, what: "stdout line Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key0>;Version=1.0;" },
    );
    await waitFor(async () => (fatalIfExited(), healthy(`http://127.0.0.1:${signalrPort}`)), {
      timeout: 15000,
      what: "SignalR listener /api/health",
    });
  } catch (e) {
    await stop();
    throw new Error(`switchboard did not start: ${e.message}${diag()}`);
  }
  return { endpoint, signalrPort, signalrEndpoint: `http://127.0.0.1:${signalrPort}`, keys, stop, diag, exited: () => exited };
}

/** REST call on the SignalR listener signed with keys[0] (aud = URL without query). */
export async function rest(sb, method, p, body) {
  const u = new URL(sb.signalrEndpoint + p);
  if (p.startsWith("/api/hubs/")) u.searchParams.set("api-version", "2022-06-01");
  const token = signJwt({ aud: `${sb.signalrEndpoint}${u.pathname}` }, sb.keys[0], { expiresInSec: 600 });
  const res = await fetch(u, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(15000),
  });
  const text = await res.text();
  return { status: res.status, text };
}

/** The upstream: records requests; `echo` answers a JSON Completion, the rest 200 empty. */
export async function startUpstream() {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const segs = new URL(req.url, "http://u.invalid").pathname.split("/").filter(Boolean).map(decodeURIComponent);
      let message;
      try {
        message = body ? JSON.parse(body) : undefined;
      } catch {
        message = undefined;
      }
      const rec = { path: req.url, hub: segs[1], category: segs[2], event: segs[3], headers: { ...req.headers }, body, message };
      requests.push(rec);
      if (rec.category === "messages" && rec.event === "echo" && message?.invocationId) {
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ type: 3, invocationId: message.invocationId, result: { echo: message.arguments } }) + "\x1e");
        return;
      }
      res.writeHead(200);
      res.end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    template: `${url}/upstream/{hub}/{category}/{event}`,
    requests,
    close: () => (server.closeAllConnections(), new Promise((r) => server.close(() => r()))),
  };
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>switchboard signalr browser test</title>
<script src="/signalr.js"></script>
<script>
  window.received = [];
  window.errors = [];
  // Connect through the app's negotiate endpoint (same origin as this page); the redirect sends
  // the client cross-origin to the SignalR listener.
  window.connectHub = async (base, transport) => {
    const conn = new signalR.HubConnectionBuilder()
      .withUrl(base, { transport: signalR.HttpTransportType[transport] })
      .configureLogging(signalR.LogLevel.Information)
      .build();
    conn.on("newMessage", (...args) => window.received.push(args));
    conn.onclose((e) => window.errors.push("closed: " + (e && e.message)));
    await conn.start();
    window.conn = conn;
    return conn.connectionId;
  };
</script></head><body><p>SignalR browser test page</p></body></html>`;

/**
 * The app origin: GET / (the page), GET /signalr.js (the package's browser bundle), and
 * POST /api/<route>/negotiate → {url: <signalrEndpoint>/client/?hub=<hub>, accessToken}.
 */
export async function startApp(sb) {
  const bundle = readFileSync(path.join(HERE, "node_modules/@microsoft/signalr/dist/browser/signalr.js"));
  const routes = new Map();
  const requests = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, "http://app.invalid");
    requests.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    if (req.method === "GET" && u.pathname === "/") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      return res.end(PAGE);
    }
    if (req.method === "GET" && u.pathname === "/signalr.js") {
      res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8" });
      return res.end(bundle);
    }
    const m = /^\/api\/([^/]+)\/negotiate$/.exec(u.pathname);
    if (req.method === "POST" && m && routes.has(m[1])) {
      const { hub, userId } = routes.get(m[1]);
      const aud = `${sb.signalrEndpoint}/client/?hub=${hub}`;
      res.writeHead(200, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ url: aud, accessToken: signJwt({ aud, "asrs.s.uid": userId }, sb.keys[0]) }));
    }
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  let n = 0;
  return {
    origin,
    requests,
    /** A negotiate route; returns its path (the page resolves it against its origin). */
    route(hub, userId) {
      const id = `r${++n}`;
      routes.set(id, { hub, userId });
      return `/api/${id}`;
    },
    close: () => (server.closeAllConnections(), new Promise((r) => server.close(() => r()))),
  };
}

let builtNats;
/** A nats-server binary: $NATS_SERVER_BIN (`make nats-server` builds bin/nats-server), else built once. */
async function natsServerBin() {
  if (process.env.NATS_SERVER_BIN) return process.env.NATS_SERVER_BIN;
  const made = path.join(REPO_ROOT, "bin", "nats-server");
  if (existsSync(made)) return made;
  if (builtNats) return builtNats;
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-browser-nats-"));
  const out = path.join(dir, "nats-server");
  await execFileP("go", ["build", "-o", out, "github.com/nats-io/nats-server/v2"], { cwd: REPO_ROOT, maxBuffer: 64 << 20 });
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return (builtNats = out);
}

/** Start a core NATS server on a free loopback port; resolves to {url, stop()}. */
export async function startNats() {
  const bin = await natsServerBin();
  const port = await freePort();
  const child = spawn(bin, ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  let exited = null;
  const exitPromise = new Promise((resolve) => child.on("exit", (code, signal) => resolve((exited = { code, signal }))));
  const stop = async () => {
    if (!exited) {
      child.kill("SIGTERM");
      await exitPromise;
    }
  };
  const accepts = () =>
    new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1");
      c.once("connect", () => (c.destroy(), resolve(true)));
      c.once("error", () => resolve(false));
    });
  try {
    await waitFor(async () => {
      if (exited) throw Object.assign(new Error(`nats-server exited: ${JSON.stringify(exited)}`), { fatal: true });
      return accepts();
    }, { timeout: 15000, what: `nats-server on 127.0.0.1:${port}` });
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `nats://127.0.0.1:${port}`, stop };
}

export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export function launchBrowser() {
  const executablePath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`${executablePath} not found: install Debian's chromium (make test-browser does) or set CHROMIUM_BIN`);
  }
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS });
}
