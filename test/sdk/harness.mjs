// Test harness for the Switchboard SDK end-to-end suite.
//
// - buildServer(): builds ./cmd/switchboard once per run (or uses $SWITCHBOARD_BIN).
// - startServer(): starts `switchboard serve` on a free loopback port with a fresh data dir
//   and two random access keys, waits for /api/health, and returns
//   {endpoint, connectionString, keys, port, stop(), stderr(), stdout()}. Optional: a YAML
//   `config` (written to a temp file, passed as --config) and a pre-picked `port`.
// - startProxy(port): a TCP proxy that can abruptly drop every client socket.
// - small helpers: waitFor (deadline polling), Inbox (async message queue), raw `ws`
//   clients, HS256 JWT minting, hub names, diagnostics wrapper.

import { before, after, test } from "node:test";
import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import WebSocket from "ws";

const execFileP = promisify(execFile);

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "..", "..");

// ---------------------------------------------------------------------------------------------
// Generic helpers

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `cond` until it returns a truthy value (which is returned) or the deadline passes.
 * `cond` may be async. Throws an Error naming `what` on timeout.
 */
export async function waitFor(cond, { timeout = 10000, interval = 20, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch (e) {
      if (e && e.fatal) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      const extra = lastErr ? ` (last error: ${lastErr.message ?? lastErr})` : "";
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${extra}`);
    }
    await sleep(interval);
  }
}

/** Reject `p` if it does not settle within `ms`. */
export function withTimeout(p, ms, what = "operation") {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function randomSuffix(n = 8) {
  return randomBytes(n).toString("hex").slice(0, n);
}

/** Hub names must match ^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$ */
export function hubName(prefix = "hub") {
  return `${prefix}_${randomSuffix(10)}`;
}

/**
 * An append-only inbox of received items with cursor-based consumption.
 *  - all: everything ever received
 *  - next(): the next item after the cursor (waits)
 *  - waitFor(pred): the first item after the cursor matching pred (waits); the cursor moves
 *    past it
 *  - find(pred): first item anywhere in `all` matching pred (no wait)
 */
export class Inbox {
  constructor(label = "inbox") {
    this.label = label;
    this.all = [];
    this.cursor = 0;
    this._waiters = new Set();
  }
  push(item) {
    this.all.push(item);
    for (const w of [...this._waiters]) w();
  }
  _wait(fnCheck, timeout, what) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const r = fnCheck();
        if (r !== undefined) {
          cleanup();
          resolve(r);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new Error(
            `[${this.label}] timed out after ${timeout} ms waiting for ${what}; ` +
              `received so far (${this.all.length}): ${describeItems(this.all.slice(-10))}`,
          ),
        );
      }, timeout);
      const cleanup = () => {
        clearTimeout(timer);
        this._waiters.delete(check);
      };
      this._waiters.add(check);
      check();
    });
  }
  next({ timeout = 10000, what = "next item" } = {}) {
    return this._wait(
      () => {
        if (this.cursor < this.all.length) return this.all[this.cursor++];
        return undefined;
      },
      timeout,
      what,
    );
  }
  waitFor(pred, { timeout = 10000, what = "matching item" } = {}) {
    return this._wait(
      () => {
        for (let i = this.cursor; i < this.all.length; i++) {
          if (pred(this.all[i])) {
            this.cursor = i + 1;
            return this.all[i];
          }
        }
        return undefined;
      },
      timeout,
      what,
    );
  }
  /** Like waitFor, but searches everything ever received and does not move the cursor. */
  waitSeen(pred, { timeout = 10000, what = "matching item" } = {}) {
    return this._wait(() => this.all.find(pred), timeout, what);
  }
  waitCount(n, { timeout = 10000, what } = {}) {
    return this._wait(
      () => (this.all.length >= n ? this.all.length : undefined),
      timeout,
      what ?? `${n} items`,
    );
  }
  find(pred) {
    return this.all.find(pred);
  }
  filter(pred) {
    return this.all.filter(pred);
  }
}

function describeItems(items) {
  return items
    .map((it) => {
      try {
        if (it && typeof it === "object" && "text" in it && "isBinary" in it) {
          return it.isBinary ? `<binary ${it.data.length} bytes>` : it.text;
        }
        return JSON.stringify(it, (k, v) => (v instanceof ArrayBuffer ? `<ArrayBuffer ${v.byteLength}>` : v));
      } catch {
        return String(it);
      }
    })
    .join(" | ")
    .slice(0, 3000);
}

// ---------------------------------------------------------------------------------------------
// JWT (HS256) minting, independent of the SDKs

function b64url(buf) {
  return Buffer.from(buf).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

export function signJwt(payload, key, { expiresInSec = 3600, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const body = { iat: now, exp: now + expiresInSec, ...payload };
  if (body.exp === null) delete body.exp;
  const h = b64url(JSON.stringify(header));
  const p = b64url(JSON.stringify(body));
  const sig = b64url(createHmac("sha256", Buffer.from(key, "utf8")).update(`${h}.${p}`).digest());
  return `${h}.${p}.${sig}`;
}

export function decodeJwt(token) {
  const [h, p] = token.split(".");
  const dec = (s) => JSON.parse(Buffer.from(s.replace(/-/g, "+").replace(/_/g, "/"), "base64").toString("utf8"));
  return { header: dec(h), payload: dec(p) };
}

// ---------------------------------------------------------------------------------------------
// Server build & lifecycle

let builtBinary; // per-process cache

/** Returns the path of the switchboard binary, building it once if $SWITCHBOARD_BIN is unset. */
export async function buildServer() {
  if (process.env.SWITCHBOARD_BIN) {
    if (!existsSync(process.env.SWITCHBOARD_BIN)) {
      throw new Error(`SWITCHBOARD_BIN=${process.env.SWITCHBOARD_BIN} does not exist`);
    }
    return process.env.SWITCHBOARD_BIN;
  }
  if (builtBinary) return builtBinary;
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchboard-sdk-bin-"));
  const out = path.join(dir, "switchboard");
  try {
    await execFileP("go", ["build", "-o", out, "./cmd/switchboard"], {
      cwd: REPO_ROOT,
      maxBuffer: 64 * 1024 * 1024,
      env: process.env,
    });
  } catch (e) {
    throw new Error(`go build ./cmd/switchboard failed in ${REPO_ROOT}:\n${e.stderr || e.message}`);
  }
  builtBinary = out;
  process.on("exit", () => {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  });
  return out;
}

/** Pick a free loopback TCP port (listen on :0, read the port, close). */
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

/** Random access key shaped like an Azure key (base64 with +, / and = padding possible). */
export function randomAccessKey() {
  return randomBytes(32).toString("base64");
}

const MAX_LOG = 2 * 1024 * 1024;

/**
 * Start a fresh Switchboard server. Resolves once GET /api/health answers 200 and the
 * connection-string line was printed on stdout.
 *
 * - `config`: YAML text of a configuration file; written to a temp file and passed with
 *   `--config` (flags still override it). The file is removed when the server stops.
 * - `port`: listen on this loopback port instead of a fresh free one (for a caller that must
 *   know the endpoint before the server starts, e.g. an event-handler backend's allowed origins).
 */
export async function startServer({ extraArgs = [], env = {}, config, port: wantedPort } = {}) {
  const bin = await buildServer();
  const port = wantedPort ?? (await freePort());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-sdk-data-"));
  const keys = [randomAccessKey(), randomAccessKey()];
  let configDir;
  const configArgs = [];
  if (config !== undefined) {
    configDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-sdk-config-"));
    const file = path.join(configDir, "switchboard.yaml");
    writeFileSync(file, config);
    configArgs.push("--config", file);
  }
  const args = [
    "serve",
    ...configArgs,
    "--addr",
    `127.0.0.1:${port}`,
    "--data-dir",
    dataDir,
    "--access-key",
    keys[0],
    "--access-key",
    keys[1],
    ...extraArgs,
  ];
  // The server reads SWITCHBOARD_* variables as settings and refuses unknown ones, so the
  // harness's own SWITCHBOARD_BIN must not leak into its environment.
  const childEnv = { ...process.env, ...env };
  delete childEnv.SWITCHBOARD_BIN;
  const child = spawn(bin, args, {
    cwd: dataDir,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (d) => {
    stdout += d;
    if (stdout.length > MAX_LOG) stdout = stdout.slice(-MAX_LOG);
  });
  child.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > MAX_LOG) stderr = stderr.slice(-MAX_LOG);
  });
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  child.on("error", (e) => {
    stderr += `\n[harness] spawn error: ${e.message}\n`;
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const expectedLine = `Endpoint=${endpoint};AccessKey=${keys[0]};Version=1.0;`;

  const diag = () =>
    `\n--- switchboard ${args.map((a) => (keys.includes(a) ? "<key>" : a)).join(" ")} ---\n` +
    (config !== undefined ? `--- config ---\n${config}\n` : "") +
    `--- stdout (tail) ---\n${stdout.slice(-4000)}\n--- stderr (tail) ---\n${stderr.slice(-8000)}`;

  const stop = async () => {
    if (exited) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, 5000);
    const r = await exitPromise;
    clearTimeout(timer);
    for (const dir of [dataDir, configDir]) {
      if (!dir) continue;
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* ignore */
      }
    }
    return r;
  };

  try {
    await waitFor(
      async () => {
        if (exited) {
          throw Object.assign(new Error(`server exited early: ${JSON.stringify(exited)}`), { fatal: true });
        }
        try {
          const res = await fetch(`${endpoint}/api/health`, { signal: AbortSignal.timeout(2000) });
          await res.arrayBuffer().catch(() => {});
          return res.status === 200;
        } catch {
          return false;
        }
      },
      { timeout: 30000, interval: 100, what: `GET ${endpoint}/api/health == 200` },
    );
    // The connection string line must be printed on stdout.
    await waitFor(() => stdout.split(/\r?\n/).some((l) => l.trim() === expectedLine), {
      timeout: 5000,
      what: `stdout line ${expectedLine.replace(keys[0], "<key0>")}`,
    });
  } catch (e) {
    await stop();
    throw new Error(`switchboard did not start: ${e.message}${diag()}`);
  }

  return {
    port,
    endpoint,
    keys,
    connectionString: expectedLine,
    connectionStringFor: (key) => `Endpoint=${endpoint};AccessKey=${key};Version=1.0;`,
    dataDir,
    stdout: () => stdout,
    stderr: () => stderr,
    diag,
    exited: () => exited,
    stop,
  };
}

/**
 * One server shared by the tests of a file: `sb` is filled in before the first test (its fields
 * are those of startServer's result) and stopped after the last; `it` is test() with the
 * server's diagnostics appended to failures.
 */
export function sharedServer(opts) {
  const sb = {};
  before(async () => {
    Object.assign(sb, await startServer(opts));
  });
  after(async () => {
    await sb.stop?.();
  });
  const it = (name, fn) => test(name, withDiag(() => sb, fn));
  return { sb, it };
}

/**
 * Wrap a test body so that on failure the server's stdout/stderr tail is appended to the error
 * message (and checked for an unexpected server exit).
 */
export function withDiag(getServer, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      const sb = getServer();
      if (sb) {
        const extra = (sb.exited() ? `\n[server EXITED: ${JSON.stringify(sb.exited())}]` : "") + sb.diag();
        try {
          err.message = `${err.message}${extra}`;
        } catch {
          /* some errors have read-only messages */
        }
      }
      throw err;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// TCP proxy that can abruptly kill every client connection

export async function startProxy(targetPort, { targetHost = "127.0.0.1" } = {}) {
  const pairs = new Set();
  const blackholes = new Set();
  const requests = []; // first line(s) of each accepted connection (HTTP request line)
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    const upstream = net.connect(targetPort, targetHost);
    const pair = { client, upstream };
    pairs.add(pair);
    let sniffed = false;
    client.on("data", (d) => {
      if (!sniffed) {
        sniffed = true;
        requests.push(d.toString("latin1").split("\r\n")[0]);
      }
    });
    client.pipe(upstream);
    upstream.pipe(client);
    const done = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", done);
    upstream.on("error", done);
    client.on("close", done);
    upstream.on("close", done);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = server.address().port;
  return {
    port,
    requests,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    /**
     * Abruptly kill every proxied connection: RST to the client and, unless `halfOpen`, RST to
     * the server. With `halfOpen: true` the server-side socket is left open as a black hole
     * (everything the server writes is read and discarded, nothing is ever sent to it), which is
     * what the server sees when a NAT/mobile network silently loses a connection.
     */
    dropAll({ halfOpen = false } = {}) {
      const n = pairs.size;
      for (const pair of [...pairs]) {
        const { client, upstream } = pair;
        pairs.delete(pair);
        client.unpipe?.();
        upstream.unpipe?.();
        client.removeAllListeners("close");
        client.removeAllListeners("error");
        client.on("error", () => {});
        try {
          client.resetAndDestroy();
        } catch {
          client.destroy();
        }
        if (halfOpen) {
          upstream.removeAllListeners("close");
          upstream.removeAllListeners("error");
          upstream.on("error", () => {});
          upstream.on("data", () => {}); // discard, keep the server's writes flowing
          upstream.resume();
          blackholes.add(upstream);
        } else {
          try {
            upstream.resetAndDestroy();
          } catch {
            upstream.destroy();
          }
        }
      }
      return n;
    },
    close() {
      this.dropAll();
      for (const b of blackholes) b.destroy();
      blackholes.clear();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket clients (plain `ws`)

export const JSON_PROTOCOL = "json.webpubsub.azure.v1";
export const JSON_RELIABLE_PROTOCOL = "json.reliable.webpubsub.azure.v1";

/**
 * Open a plain `ws` WebSocket. Resolves {ws, inbox, closed, protocol} when open; rejects with
 * an Error carrying `statusCode` (and `body`) if the upgrade is refused.
 * Each inbox item: {data: Buffer, isBinary, text (utf8 string), json (parsed or undefined)}.
 */
export function openWs(url, { protocols, headers, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const ws = protocols === undefined ? new WebSocket(url, { headers }) : new WebSocket(url, protocols, { headers });
    const inbox = new Inbox(`ws ${protocols ?? "(no subprotocol)"}`);
    let closeInfo;
    const closed = new Promise((r) => {
      ws.on("close", (code, reason) => {
        closeInfo = { code, reason: reason.toString("utf8") };
        r(closeInfo);
      });
    });
    ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      const text = isBinary ? undefined : buf.toString("utf8");
      let json;
      if (!isBinary) {
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
      }
      inbox.push({ data: buf, isBinary, text, json, at: Date.now() });
    });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`WebSocket open timed out after ${timeout} ms: ${url}`));
    }, timeout);
    ws.on("unexpected-response", (req, res) => {
      clearTimeout(timer);
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (body += d));
      // Destroy the request only once the body was read (destroying it at once loses the body).
      res.on("end", () => {
        const err = new Error(`upgrade refused: HTTP ${res.statusCode} ${body.slice(0, 500)}`);
        err.statusCode = res.statusCode;
        err.headers = res.headers;
        err.body = body;
        reject(err);
        req.destroy();
      });
      res.on("error", () => {
        const err = new Error(`upgrade refused: HTTP ${res.statusCode}`);
        err.statusCode = res.statusCode;
        reject(err);
        req.destroy();
      });
    });
    ws.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on("open", () => {
      clearTimeout(timer);
      resolve({
        ws,
        inbox,
        closed,
        get closeInfo() {
          return closeInfo;
        },
        protocol: ws.protocol,
        sendJson: (obj) =>
          new Promise((res, rej) => ws.send(JSON.stringify(obj), (err) => (err ? rej(err) : res()))),
        close: () => {
          try {
            ws.terminate();
          } catch {
            /* ignore */
          }
        },
      });
    });
  });
}

/** Append query parameters to a URL string. */
export function withQuery(url, params) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.append(k, v);
  return u.toString();
}

/** Replace the port of a URL string. */
export function withPort(url, port) {
  const u = new URL(url);
  u.port = String(port);
  return u.toString();
}

export function ensureDir(p) {
  mkdirSync(p, { recursive: true });
  return p;
}
