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
// - SignalR (serverless): startServer({signalr: true}), the app's negotiate endpoint, a recording
//   upstream, REST calls, a small MessagePack codec, @microsoft/signalr HubConnections and
//   signalrSuite() (one server + upstream + app per test file).

import { before, after, test } from "node:test";
import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
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

const built = new Map(); // Go package -> binary path, per process

/**
 * Returns the binary named by $envVar, or builds Go package pkg once per process into a temp dir
 * (removed at exit) and returns its path.
 */
async function goBinary(envVar, pkg, name) {
  const given = process.env[envVar];
  if (given) {
    if (!existsSync(given)) throw new Error(`${envVar}=${given} does not exist`);
    return given;
  }
  if (built.has(pkg)) return built.get(pkg);
  const dir = mkdtempSync(path.join(os.tmpdir(), `switchboard-sdk-${name}-`));
  const out = path.join(dir, name);
  try {
    await execFileP("go", ["build", "-o", out, pkg], { cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024, env: process.env });
  } catch (e) {
    throw new Error(`go build ${pkg} failed in ${REPO_ROOT}:\n${e.stderr || e.message}`);
  }
  built.set(pkg, out);
  process.on("exit", () => {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      /* ignore */
    }
  });
  return out;
}

/** Returns the path of the switchboard binary, building it once if $SWITCHBOARD_BIN is unset. */
export function buildServer() {
  return goBinary("SWITCHBOARD_BIN", "./cmd/switchboard", "switchboard");
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
 * Find the SignalR connection-string line (`Endpoint=http://<host>;Port=<port>;AccessKey=<key0>;
 * Version=1.0;`) in the server's stdout; undefined until it is there. The listener is always
 * reached on 127.0.0.1 whatever host the line names.
 */
function parseSignalrConnectionString(stdout, key0) {
  for (const raw of stdout.split(/\r?\n/)) {
    const line = raw.trim();
    const m = /^Endpoint=(https?:\/\/[^;:/]+);Port=(\d+);AccessKey=([^;]+);Version=1\.0;$/.exec(line);
    if (!m || m[3] !== key0) continue;
    const signalrPort = Number(m[2]);
    return {
      signalrPort,
      signalrEndpoint: `http://127.0.0.1:${signalrPort}`,
      signalrConnectionString: line,
    };
  }
  return undefined;
}

/**
 * Start a fresh Switchboard server. Resolves once GET /api/health answers 200 and the
 * connection-string line was printed on stdout.
 *
 * - `config`: YAML text of a configuration file; written to a temp file and passed with
 *   `--config` (flags still override it). The file is removed when the server stops.
 * - `port`: listen on this loopback port instead of a fresh free one (for a caller that must
 *   know the endpoint before the server starts, e.g. an event-handler backend's allowed origins).
 * - `signalr`: also start the SignalR (serverless) listener (`--set signalr.addr=127.0.0.1:0`,
 *   or `signalrPort` when given, which implies `signalr`); the result then also has
 *   `signalrEndpoint` ("http://127.0.0.1:<port>"), `signalrPort` and `signalrConnectionString`,
 *   parsed from the second connection-string line `Endpoint=…;Port=<port>;AccessKey=<key0>;…`,
 *   and /api/health must answer 200 on that listener too. Without it the listener is switched
 *   off (`--set signalr.addr=`).
 * - `keys`: use these two access keys instead of fresh random ones (a restarted server that
 *   must accept the tokens its predecessor's clients hold).
 */
export async function startServer({
  extraArgs = [],
  env = {},
  config,
  port: wantedPort,
  signalr = false,
  signalrPort: wantedSignalrPort,
  keys: wantedKeys,
} = {}) {
  const bin = await buildServer();
  const port = wantedPort ?? (await freePort());
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "switchboard-sdk-data-"));
  const keys = wantedKeys ? [...wantedKeys] : [randomAccessKey(), randomAccessKey()];
  const withSignalr = signalr || wantedSignalrPort !== undefined;
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
    // Without `signalr`, switch the SignalR listener off explicitly: its default address is a
    // fixed port (:8081), which concurrent servers would fight over.
    "--set",
    withSignalr ? `signalr.addr=127.0.0.1:${wantedSignalrPort ?? 0}` : "signalr.addr=",
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
  let signalrInfo = {};
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
    removeDirs();
    return r;
  };
  const removeDirs = () => {
    for (const dir of [dataDir, configDir]) {
      if (!dir) continue;
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* ignore */
      }
    }
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
    if (withSignalr) {
      // Line 2: Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key0>;Version=1.0;
      const m = await waitFor(() => parseSignalrConnectionString(stdout, keys[0]), {
        timeout: 5000,
        what: "stdout line Endpoint=http://127.0.0.1;Port=<port>;AccessKey=<key0>;Version=1.0;",
      });
      signalrInfo = m;
      if (wantedSignalrPort !== undefined && m.signalrPort !== wantedSignalrPort) {
        throw new Error(`SignalR listener printed port ${m.signalrPort}, expected ${wantedSignalrPort}`);
      }
      await waitFor(
        async () => {
          if (exited) {
            throw Object.assign(new Error(`server exited early: ${JSON.stringify(exited)}`), { fatal: true });
          }
          try {
            const res = await fetch(`${m.signalrEndpoint}/api/health`, { signal: AbortSignal.timeout(2000) });
            await res.arrayBuffer().catch(() => {});
            return res.status === 200;
          } catch {
            return false;
          }
        },
        { timeout: 15000, interval: 100, what: `GET ${m.signalrEndpoint}/api/health == 200` },
      );
    }
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
    ...signalrInfo,
    dataDir,
    stdout: () => stdout,
    stderr: () => stderr,
    diag,
    exited: () => exited,
    stop,
    /** SIGKILL the server (no drain), wait for it to exit and remove its directories. */
    kill: async () => {
      if (!exited) child.kill("SIGKILL");
      const r = await exitPromise;
      removeDirs();
      return r;
    },
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

// ---------------------------------------------------------------------------------------------
// SignalR (serverless) helpers: the app's negotiate endpoint, an upstream backend, REST calls,
// tokens, a small independent MessagePack codec, and @microsoft/signalr HubConnections.

/** `sha256=<UPPERCASE hex HMAC-SHA256(key utf8, connectionId)>`, as X-ASRS-Signature carries it. */
export function signalrSignature(key, connectionId) {
  return "sha256=" + createHmac("sha256", Buffer.from(key, "utf8")).update(connectionId, "utf8").digest("hex").toUpperCase();
}

/**
 * A client access token as an app's negotiate endpoint issues it: HS256 with the access key's
 * UTF-8 bytes, aud = `<endpoint>/client/?hub=<hub>`, the user id as `asrs.s.uid` (Management
 * SDK) or `nameid` (docs) per `claim`, plus any `claims`.
 */
export function signalrClientToken(endpoint, hub, key, { userId, claim = "asrs.s.uid", claims = {}, expiresInSec } = {}) {
  const payload = { aud: `${endpoint}/client/?hub=${hub}`, ...claims };
  if (userId !== undefined) payload[claim] = userId;
  return signJwt(payload, key, expiresInSec === undefined ? {} : { expiresInSec });
}

/**
 * The app's own negotiate endpoint (a node http server on 127.0.0.1). `route(opts)` returns a
 * base URL for HubConnectionBuilder.withUrl(); the client POSTs `<base>/negotiate?negotiateVersion=1`
 * and gets `{url: "<endpoint>/client/?hub=<hub>", accessToken}`. opts: `endpoint()` (the service
 * URL the client is sent to, e.g. a proxy's — a function so it may change between negotiates),
 * `hub`, `key()` (the signing key), `userId`, `claim`. Every request is recorded in `requests`.
 * `extra(req, res)` may serve other paths (the browser tests serve their page with it).
 */
export async function startAppNegotiate({ extra } = {}) {
  const routes = new Map();
  const requests = new Inbox("app negotiate requests");
  let n = 0;
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url, "http://app.invalid");
    requests.push({ method: req.method, url: req.url, headers: { ...req.headers } });
    const m = /^\/api\/([^/]+)\/negotiate$/.exec(u.pathname);
    if (m && routes.has(m[1]) && req.method === "POST") {
      const r = routes.get(m[1]);
      const endpoint = r.endpoint();
      const body = {
        url: `${endpoint}/client/?hub=${r.hub}`,
        accessToken: signalrClientToken(endpoint, r.hub, r.key(), { userId: r.userId, claim: r.claim, claims: r.claims }),
      };
      r.negotiations++;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
      return;
    }
    if (extra && (await extra(req, res, u))) return;
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("not found");
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin,
    requests,
    /** Register a negotiate route; returns {url, path, route}. */
    route({ endpoint, hub, key, userId, claim = "asrs.s.uid", claims }) {
      const id = `r${++n}_${randomSuffix(6)}`;
      const route = {
        endpoint: typeof endpoint === "function" ? endpoint : () => endpoint,
        key: typeof key === "function" ? key : () => key,
        hub,
        userId,
        claim,
        claims,
        negotiations: 0,
      };
      routes.set(id, route);
      return { url: `${origin}/api/${id}`, path: `/api/${id}`, route };
    },
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/**
 * The data-plane REST API of the SignalR listener, signed with `key` (default keys[0]): aud =
 * the request URL without its query. `call(method, path, {body, query, token})` answers
 * {status, headers, text, json}; paths under /api/hubs get `api-version=2022-06-01`.
 */
export function signalrRest(sb, { key } = {}) {
  const base = sb.signalrEndpoint;
  const esc = encodeURIComponent;
  const call = async (method, p, { body, query = {}, token, headers = {} } = {}) => {
    const u = new URL(base + p);
    if (p.startsWith("/api/hubs/") && !("api-version" in query)) u.searchParams.set("api-version", "2022-06-01");
    for (const [k, v] of Object.entries(query)) u.searchParams.append(k, v);
    const aud = `${base}${u.pathname}`;
    const auth = token === undefined ? signJwt({ aud }, key ?? sb.keys[0], { expiresInSec: 600 }) : token;
    const h = { ...headers };
    if (auth !== null) h.Authorization = `Bearer ${auth}`;
    let payload;
    if (body !== undefined) {
      payload = typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
      h["Content-Type"] ??= "application/json";
    }
    const res = await fetch(u, { method, headers: h, body: payload, signal: AbortSignal.timeout(15000) });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, json, url: u.toString() };
  };
  const expect = async (want, what, p) => {
    const r = await p;
    const ok = typeof want === "function" ? want(r.status) : r.status === want;
    if (!ok) throw new Error(`${what}: HTTP ${r.status} ${r.text.slice(0, 300)} (${r.url})`);
    return r;
  };
  const is2xx = (s) => s >= 200 && s < 300;
  const msg = (target, args) => ({ target, arguments: args });
  return {
    call,
    broadcast: (hub, target, args, opts = {}) =>
      expect(202, "broadcast", call("POST", `/api/hubs/${esc(hub)}/:send`, { body: opts.body ?? msg(target, args), query: opts.query })),
    toUser: (hub, user, target, args, opts = {}) =>
      expect(202, "send to user", call("POST", `/api/hubs/${esc(hub)}/users/${esc(user)}/:send`, { body: opts.body ?? msg(target, args) })),
    toGroup: (hub, group, target, args, opts = {}) =>
      expect(202, "send to group", call("POST", `/api/hubs/${esc(hub)}/groups/${esc(group)}/:send`, { body: opts.body ?? msg(target, args) })),
    toConnection: (hub, id, target, args, opts = {}) =>
      expect(202, "send to connection", call("POST", `/api/hubs/${esc(hub)}/connections/${esc(id)}/:send`, { body: opts.body ?? msg(target, args) })),
    addToGroup: (hub, group, id) =>
      expect(is2xx, "add connection to group", call("PUT", `/api/hubs/${esc(hub)}/groups/${esc(group)}/connections/${esc(id)}`)),
    addUserToGroup: (hub, user, group) =>
      expect(is2xx, "add user to group", call("PUT", `/api/hubs/${esc(hub)}/users/${esc(user)}/groups/${esc(group)}`)),
    closeConnection: (hub, id, reason) =>
      expect(is2xx, "close connection", call("DELETE", `/api/hubs/${esc(hub)}/connections/${esc(id)}`, { query: reason === undefined ? {} : { reason } })),
    v1: {
      broadcast: (hub, target, args) => expect(202, "v1 broadcast", call("POST", `/api/v1/hubs/${esc(hub)}`, { body: msg(target, args) })),
      toUser: (hub, user, target, args) =>
        expect(202, "v1 send to user", call("POST", `/api/v1/hubs/${esc(hub)}/users/${esc(user)}`, { body: msg(target, args) })),
      toGroup: (hub, group, target, args) =>
        expect(202, "v1 send to group", call("POST", `/api/v1/hubs/${esc(hub)}/groups/${esc(group)}`, { body: msg(target, args) })),
      toConnection: (hub, id, target, args) =>
        expect(202, "v1 send to connection", call("POST", `/api/v1/hubs/${esc(hub)}/connections/${esc(id)}`, { body: msg(target, args) })),
    },
  };
}

/** SignalR YAML config with upstreams (url templates) and optional signalr settings. */
export function signalrConfig({ upstreams = [], settings = {} } = {}) {
  let y = "signalr:\n  addr: 127.0.0.1:0\n";
  for (const [k, v] of Object.entries(settings)) y += `  ${k}: ${typeof v === "string" ? JSON.stringify(v) : v}\n`;
  if (upstreams.length) {
    y += "  upstreams:\n";
    for (const u of upstreams) {
      const { url, ...patterns } = typeof u === "string" ? { url: u } : u;
      y += `    - url_template: ${JSON.stringify(url)}\n`;
      for (const [k, v] of Object.entries(patterns)) y += `      ${k}: ${JSON.stringify(v)}\n`;
    }
  }
  return y;
}

// --- MessagePack: a small independent codec (the subset the hub protocol uses) ---------------

export function msgpackEncode(value) {
  const out = [];
  mpEnc(value, out);
  return Buffer.from(out);
}

function pushBE(out, n, bytes) {
  for (let i = bytes - 1; i >= 0; i--) out.push(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn));
}

function mpEnc(v, out) {
  if (v === null || v === undefined) out.push(0xc0);
  else if (v === false) out.push(0xc2);
  else if (v === true) out.push(0xc3);
  else if (typeof v === "number" && Number.isSafeInteger(v) && !Object.is(v, -0)) {
    if (v >= 0) {
      if (v < 0x80) out.push(v);
      else if (v < 0x100) out.push(0xcc, v);
      else if (v < 0x10000) (out.push(0xcd), pushBE(out, v, 2));
      else if (v < 0x100000000) (out.push(0xce), pushBE(out, v, 4));
      else (out.push(0xcf), pushBE(out, v, 8));
    } else if (v >= -32) out.push(v & 0xff);
    else if (v >= -128) out.push(0xd0, v & 0xff);
    else if (v >= -32768) (out.push(0xd1), pushBE(out, BigInt.asUintN(16, BigInt(v)), 2));
    else if (v >= -2147483648) (out.push(0xd2), pushBE(out, BigInt.asUintN(32, BigInt(v)), 4));
    else (out.push(0xd3), pushBE(out, BigInt.asUintN(64, BigInt(v)), 8));
  } else if (typeof v === "number") {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(v, 1);
    out.push(...b);
  } else if (typeof v === "string") {
    const b = Buffer.from(v, "utf8");
    if (b.length < 32) out.push(0xa0 | b.length);
    else if (b.length < 0x100) out.push(0xd9, b.length);
    else if (b.length < 0x10000) (out.push(0xda), pushBE(out, b.length, 2));
    else (out.push(0xdb), pushBE(out, b.length, 4));
    out.push(...b);
  } else if (v instanceof Uint8Array) {
    if (v.length < 0x100) out.push(0xc4, v.length);
    else if (v.length < 0x10000) (out.push(0xc5), pushBE(out, v.length, 2));
    else (out.push(0xc6), pushBE(out, v.length, 4));
    out.push(...v);
  } else if (Array.isArray(v)) {
    if (v.length < 16) out.push(0x90 | v.length);
    else if (v.length < 0x10000) (out.push(0xdc), pushBE(out, v.length, 2));
    else (out.push(0xdd), pushBE(out, v.length, 4));
    for (const x of v) mpEnc(x, out);
  } else if (typeof v === "object") {
    const entries = Object.entries(v);
    if (entries.length < 16) out.push(0x80 | entries.length);
    else if (entries.length < 0x10000) (out.push(0xde), pushBE(out, entries.length, 2));
    else (out.push(0xdf), pushBE(out, entries.length, 4));
    for (const [k, x] of entries) {
      mpEnc(k, out);
      mpEnc(x, out);
    }
  } else throw new Error(`msgpackEncode: unsupported ${typeof v}`);
}

/** Decode one MessagePack value; returns {value, end}. Integers beyond 2^53 come back as BigInt. */
export function msgpackDecode(buf, pos = 0) {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf);
  let p = pos;
  const need = (n) => {
    if (p + n > b.length) throw new Error(`msgpack: truncated at ${p} (need ${n} of ${b.length})`);
  };
  const big = (n) => {
    need(n);
    let x = 0n;
    for (let i = 0; i < n; i++) x = (x << 8n) | BigInt(b[p + i]);
    p += n;
    return x;
  };
  const num = (x) => (x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(x) : x);
  const str = (n) => {
    need(n);
    const s = b.toString("utf8", p, p + n);
    p += n;
    return s;
  };
  const bin = (n) => {
    need(n);
    const s = Buffer.from(b.subarray(p, p + n));
    p += n;
    return s;
  };
  const arr = (n) => {
    const a = [];
    for (let i = 0; i < n; i++) a.push(one());
    return a;
  };
  const map = (n) => {
    const o = {};
    for (let i = 0; i < n; i++) {
      const k = one();
      o[String(k)] = one();
    }
    return o;
  };
  const one = () => {
    need(1);
    const t = b[p++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(Number(big(1)));
      case 0xc5: return bin(Number(big(2)));
      case 0xc6: return bin(Number(big(4)));
      case 0xca: need(4); p += 4; return b.readFloatBE(p - 4);
      case 0xcb: need(8); p += 8; return b.readDoubleBE(p - 8);
      case 0xcc: return Number(big(1));
      case 0xcd: return Number(big(2));
      case 0xce: return Number(big(4));
      case 0xcf: return num(big(8));
      case 0xd0: return Number(BigInt.asIntN(8, big(1)));
      case 0xd1: return Number(BigInt.asIntN(16, big(2)));
      case 0xd2: return Number(BigInt.asIntN(32, big(4)));
      case 0xd3: return num(BigInt.asIntN(64, big(8)));
      case 0xd9: return str(Number(big(1)));
      case 0xda: return str(Number(big(2)));
      case 0xdb: return str(Number(big(4)));
      case 0xdc: return arr(Number(big(2)));
      case 0xdd: return arr(Number(big(4)));
      case 0xde: return map(Number(big(2)));
      case 0xdf: return map(Number(big(4)));
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
        const n = { 0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16 }[t];
        const type = Number(BigInt.asIntN(8, big(1)));
        return { ext: type, data: bin(n) };
      }
      case 0xc7: case 0xc8: case 0xc9: {
        const n = Number(big({ 0xc7: 1, 0xc8: 2, 0xc9: 4 }[t]));
        const type = Number(BigInt.asIntN(8, big(1)));
        return { ext: type, data: bin(n) };
      }
      default: throw new Error(`msgpack: unknown type byte 0x${t.toString(16)} at ${p - 1}`);
    }
  };
  const value = one();
  return { value, end: p };
}

/** VarInt length prefix (7 bits a byte, least significant first) + body: one hub-protocol record. */
export function varintFrame(body) {
  const pre = [];
  let n = body.length;
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    pre.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from(pre), body]);
}

/** Split VarInt-framed MessagePack records and decode each. */
export function parseMsgpackRecords(buf) {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf);
  const out = [];
  let p = 0;
  while (p < b.length) {
    let len = 0;
    let shift = 0;
    for (;;) {
      if (p >= b.length) throw new Error("msgpack record: truncated length");
      const x = b[p++];
      len += (x & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(x & 0x80)) break;
      if (shift > 35) throw new Error("msgpack record: length too long");
    }
    const body = b.subarray(p, p + len);
    if (body.length < len) throw new Error("msgpack record: truncated body");
    out.push(msgpackDecode(body).value);
    p += len;
  }
  return out;
}

/** Split 0x1E-terminated JSON records; returns {records, rest}. */
export function parseJsonRecords(text) {
  const parts = text.split("\x1e");
  const rest = parts.pop();
  return { records: parts.map((p) => JSON.parse(p)), rest };
}

// --- Upstream backend -------------------------------------------------------------------------

/**
 * An upstream (SignalR's webhook target) on 127.0.0.1: records every request as
 * {method, path, hub, category, event, headers, body (Buffer), contentType, message (the decoded
 * JSON object or MessagePack array), at} in `requests`, and answers with `respond(rec)` →
 * {status, headers, body} (default: `defaultUpstreamAnswer`). `template` is the url_template.
 */
export async function startUpstream({ respond = defaultUpstreamAnswer } = {}) {
  const requests = new Inbox("upstream requests");
  let seq = 0;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks);
      const u = new URL(req.url, "http://upstream.invalid");
      const segs = u.pathname.split("/").filter(Boolean).map(decodeURIComponent);
      const contentType = req.headers["content-type"] ?? "";
      let message;
      let decodeError;
      try {
        if (/^application\/x-msgpack/i.test(contentType)) message = msgpackDecode(body).value;
        else if (body.length) message = JSON.parse(body.toString("utf8"));
      } catch (e) {
        decodeError = e.message;
      }
      const rec = {
        seq: ++seq,
        method: req.method,
        path: u.pathname,
        hub: segs[1],
        category: segs[2],
        event: segs[3],
        headers: { ...req.headers },
        body,
        contentType,
        message,
        decodeError,
        status: undefined,
      };
      let answer;
      try {
        answer = (await respond(rec)) ?? { status: 200 };
      } catch (e) {
        answer = { status: 599, body: `test upstream failed: ${e.message}` };
      }
      rec.status = answer.status;
      requests.push(rec);
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? undefined);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    template: `${url}/upstream/{hub}/{category}/{event}`,
    requests,
    /** Requests of one connection (by X-ASRS-Connection-Id), in arrival order. */
    of: (connectionId) => requests.all.filter((r) => r.headers["x-asrs-connection-id"] === connectionId),
    close() {
      server.closeAllConnections();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Whether an upstream request came from a MessagePack client. */
export const isMsgpackRequest = (rec) => /^application\/x-msgpack/i.test(rec.contentType);

/** The invocation in an upstream request as {invocationId, target, arguments} for both protocols. */
export function upstreamInvocation(rec) {
  const m = rec.message;
  if (Array.isArray(m)) return { type: m[0], invocationId: m[2] ?? undefined, target: m[3], arguments: m[4], raw: m };
  return m ? { type: m.type, invocationId: m.invocationId, target: m.target, arguments: m.arguments, raw: m } : undefined;
}

/** A framed Completion for the requesting client's protocol: result, or error when `error`. */
export function completionFor(rec, { result, error } = {}) {
  const inv = upstreamInvocation(rec);
  if (isMsgpackRequest(rec)) {
    const arr = error !== undefined ? [3, {}, inv.invocationId, 1, error] : [3, {}, inv.invocationId, 3, result];
    return { status: 200, headers: { "Content-Type": "application/x-msgpack" }, body: varintFrame(msgpackEncode(arr)) };
  }
  const msg = { type: 3, invocationId: inv.invocationId };
  if (error !== undefined) msg.error = error;
  else msg.result = result;
  return { status: 200, headers: { "Content-Type": "application/json" }, body: JSON.stringify(msg) + "\x1e" };
}

/**
 * The test upstream's behaviour, by event (hub method) name:
 *  echo → result {echo: arguments, connectionId}; nothing → 204; empty → 200 with no body;
 *  explode → 500; missing → 404; refuse → a Completion with error "refused by upstream";
 *  any other message (e.g. a send()) → 200 with a text body that must never reach a client;
 *  connection events → 200.
 */
export function defaultUpstreamAnswer(rec) {
  if (rec.category !== "messages") return { status: 200 };
  const inv = upstreamInvocation(rec);
  switch (rec.event) {
    case "echo":
      return completionFor(rec, { result: { echo: inv.arguments, connectionId: rec.headers["x-asrs-connection-id"] } });
    case "nothing":
      return { status: 204 };
    case "empty":
      return { status: 200 };
    case "explode":
      return { status: 500, body: "boom" };
    case "missing":
      return { status: 404, body: "no such function" };
    case "refuse":
      return completionFor(rec, { error: "refused by upstream" });
    default:
      return { status: 200, headers: { "Content-Type": "text/plain" }, body: "this body must not reach the client" };
  }
}

// --- @microsoft/signalr HubConnections ----------------------------------------------------------

let signalrModules;
/** {signalR, MessagePackHubProtocol}: the CommonJS builds (they load `ws` and `eventsource` under Node). */
export function signalrLib() {
  if (!signalrModules) {
    const require = createRequire(import.meta.url);
    signalrModules = {
      signalR: require("@microsoft/signalr"),
      MessagePackHubProtocol: require("@microsoft/signalr-protocol-msgpack").MessagePackHubProtocol,
    };
  }
  return signalrModules;
}

/** A retry policy for withAutomaticReconnect: every 250 ms for up to 60 s. */
export const fastRetry = { nextRetryDelayInMilliseconds: (ctx) => (ctx.elapsedMilliseconds < 60000 ? 250 : null) };

/**
 * Build (and unless `start: false`, start) a HubConnection to the app URL `url`.
 * - transport: "WebSockets" | "ServerSentEvents" | "LongPolling" (forced: only that one)
 * - protocol: "json" | "messagepack"
 * - reconnect: a retry policy for withAutomaticReconnect, or false
 * - stateful: withStatefulReconnect()
 * - methods: client method names recorded into `inbox` as {target, args} (default ["newMessage"])
 * Returns {conn, inbox, events (reconnecting/reconnected/close as {event, error?, connectionId?}),
 * logs (the client's log lines), diag(), stop()}.
 */
export async function startHub(url, { transport = "WebSockets", protocol = "json", reconnect = false, stateful = false, methods = ["newMessage"], start = true, label = "hub" } = {}) {
  const { signalR, MessagePackHubProtocol } = signalrLib();
  const logs = [];
  const logger = {
    log(level, message) {
      logs.push(`${new Date().toISOString()} ${signalR.LogLevel[level]} ${message}`);
      if (logs.length > 400) logs.splice(0, logs.length - 400);
    },
  };
  let b = new signalR.HubConnectionBuilder()
    .withUrl(url, { transport: signalR.HttpTransportType[transport] })
    .configureLogging(logger);
  if (protocol === "messagepack") b = b.withHubProtocol(new MessagePackHubProtocol());
  if (reconnect) b = b.withAutomaticReconnect(reconnect);
  if (stateful) b = b.withStatefulReconnect();
  const conn = b.build();
  const inbox = new Inbox(`${label} ${transport}/${protocol} messages`);
  const events = new Inbox(`${label} ${transport}/${protocol} events`);
  for (const name of methods) conn.on(name, (...args) => inbox.push({ target: name, args }));
  conn.onreconnecting((error) => events.push({ event: "reconnecting", error: error?.message }));
  conn.onreconnected((connectionId) => events.push({ event: "reconnected", connectionId }));
  conn.onclose((error) => events.push({ event: "close", error: error?.message }));
  const h = {
    conn,
    inbox,
    events,
    logs,
    diag: () => `\n--- ${label} ${transport}/${protocol} client log (tail) ---\n${logs.slice(-60).join("\n")}`,
    stop: async () => {
      try {
        await conn.stop();
      } catch {
        /* ignore */
      }
    },
  };
  if (start) {
    try {
      await withTimeout(conn.start(), 30000, `${label} ${transport}/${protocol} start()`);
    } catch (e) {
      try {
        e.message += h.diag();
      } catch {
        /* ignore */
      }
      await h.stop();
      throw e;
    }
  }
  return h;
}

/**
 * One SignalR-enabled server per test file, with an upstream backend (`s.upstream`, all
 * patterns "*") and the app's negotiate endpoint (`s.app`); `s.sb` is startServer's result and
 * `s.rest` its REST API. `config(upstream)` may replace the YAML. `it(name, fn)` runs
 * fn(tc) with tc = {t, s, defer(fn), route(opts), client(routeOpts, hubOpts)} and appends the
 * server's and the clients' diagnostics to a failure; clients are stopped after the test.
 */
export function signalrSuite({ config, respond } = {}) {
  const s = {};
  before(async () => {
    s.upstream = await startUpstream(respond ? { respond } : {});
    s.app = await startAppNegotiate();
    s.sb = await startServer({
      signalr: true,
      config: config ? config(s.upstream) : signalrConfig({ upstreams: [s.upstream.template] }),
    });
    s.rest = signalrRest(s.sb);
  });
  after(async () => {
    await s.sb?.stop?.();
    await s.app?.close();
    await s.upstream?.close();
  });
  const it = (name, fn, opts = {}) =>
    test(name, opts, async (t) => {
      const cleanups = [];
      const clients = [];
      const tc = {
        t,
        s,
        defer: (f) => cleanups.push(f),
        /** An app negotiate route to the SignalR listener (or `endpoint`) signed with keys[0]. */
        route: ({ hub, userId, claim, claims, endpoint }) =>
          s.app.route({ endpoint: endpoint ?? s.sb.signalrEndpoint, key: () => s.sb.keys[0], hub, userId, claim, claims }),
        /** route() + startHub(); the client is stopped after the test. */
        client: async (routeOpts, hubOpts = {}) => {
          const r = tc.route(routeOpts);
          const h = await startHub(r.url, { label: routeOpts.userId ?? "anonymous", ...hubOpts });
          h.route = r;
          clients.push(h);
          cleanups.push(() => h.stop());
          return h;
        },
        clients,
      };
      try {
        await fn(tc);
      } catch (err) {
        let extra = "";
        for (const h of clients) extra += h.diag();
        extra += `\n--- upstream requests (last 30) ---\n${s.upstream.requests.all
          .slice(-30)
          .map((r) => `${r.method} ${r.path} conn=${r.headers["x-asrs-connection-id"]} -> ${r.status}`)
          .join("\n")}`;
        if (s.sb?.diag) extra += (s.sb.exited() ? `\n[server EXITED: ${JSON.stringify(s.sb.exited())}]` : "") + s.sb.diag();
        try {
          err.message = `${err.message}${extra}`;
        } catch {
          /* read-only message */
        }
        throw err;
      } finally {
        for (const f of cleanups.reverse()) {
          try {
            await f();
          } catch {
            /* ignore */
          }
        }
      }
    });
  return { s, it };
}

/** Check the X-ASRS-* headers of an upstream request. */
export function assertUpstreamHeaders(assert, rec, { connectionId, hub, category, event, userId, keys }) {
  const h = rec.headers;
  const label = `${rec.method} ${rec.path} ${JSON.stringify(h)}`;
  assert.equal(rec.method, "POST", label);
  assert.equal(h["x-asrs-connection-id"], connectionId, `X-ASRS-Connection-Id: ${label}`);
  assert.equal(h["x-asrs-hub"]?.toLowerCase(), hub.toLowerCase(), `X-ASRS-Hub: ${label}`);
  assert.equal(h["x-asrs-category"], category, `X-ASRS-Category: ${label}`);
  assert.equal(h["x-asrs-event"], event, `X-ASRS-Event: ${label}`);
  if (userId === undefined) assert.equal(h["x-asrs-user-id"], undefined, `no X-ASRS-User-Id for an anonymous connection: ${label}`);
  else assert.equal(h["x-asrs-user-id"], userId, `X-ASRS-User-Id: ${label}`);
  const sigs = (h["x-asrs-signature"] ?? "").split(",");
  for (const sig of sigs) assert.match(sig, /^sha256=[0-9A-F]{64}$/, `X-ASRS-Signature entries are bare, uppercase: ${label}`);
  assert.deepEqual(sigs.sort(), keys.map((k) => signalrSignature(k, connectionId)).sort(), `X-ASRS-Signature: one per access key: ${label}`);
  assert.equal(rec.hub?.toLowerCase(), hub.toLowerCase(), `{hub} in the url template: ${label}`);
  assert.equal(rec.category, category, `{category} in the url template: ${label}`);
  assert.equal(rec.event, event, `{event} in the url template: ${label}`);
}

// ---------------------------------------------------------------------------------------------
// Cluster: one NATS server, several Switchboard nodes on it, a round-robin TCP proxy in front

/**
 * Returns the path of a nats-server binary: $NATS_SERVER_BIN (`make test-sdk` builds bin/nats-server
 * from the module go.mod pins), else built once into a temp dir with `go build` from the same module.
 */
export function natsServerBin() {
  return goBinary("NATS_SERVER_BIN", "github.com/nats-io/nats-server/v2", "nats-server");
}

/**
 * Start `nats-server -a 127.0.0.1 -p <free port>` (core NATS; with `jetstream`, JetStream on, its
 * store in a temp directory removed by stop()) and wait until it accepts TCP connections.
 * Returns {url, port, stop(), diag()}.
 */
export async function startNats({ jetstream = false } = {}) {
  const bin = await natsServerBin();
  const port = await freePort();
  const args = ["-a", "127.0.0.1", "-p", String(port)];
  const storeDir = jetstream ? mkdtempSync(path.join(os.tmpdir(), "switchboard-sdk-nats-")) : null;
  if (storeDir) args.push("-js", "-sd", storeDir);
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding("utf8");
    s.on("data", (d) => {
      log += d;
      if (log.length > MAX_LOG) log = log.slice(-MAX_LOG);
    });
  }
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  child.on("error", (e) => {
    log += `\n[harness] spawn error: ${e.message}\n`;
  });
  const diag = () => `\n--- nats-server -p ${port} (tail) ---\n${log.slice(-3000)}`;
  const stop = async () => {
    if (exited) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => {
      if (!exited) child.kill("SIGKILL");
    }, 5000);
    const r = await exitPromise;
    clearTimeout(timer);
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
    return r;
  };
  try {
    await waitFor(
      () => {
        if (exited) throw Object.assign(new Error(`nats-server exited early: ${JSON.stringify(exited)}`), { fatal: true });
        return new Promise((resolve) => {
          const s = net.connect(port, "127.0.0.1");
          s.once("connect", () => {
            s.destroy();
            resolve(true);
          });
          s.once("error", () => resolve(false));
        });
      },
      { timeout: 15000, interval: 50, what: `nats-server accepting on 127.0.0.1:${port}` },
    );
  } catch (e) {
    await stop();
    throw new Error(`${e.message}${diag()}`);
  }
  return { url: `nats://127.0.0.1:${port}`, port, stop, diag };
}

/**
 * A round-robin TCP proxy: the i-th accepted connection is piped (both ways) to
 * targetPorts[i % n]. `connections` lists them in accept order as {port (the target), line (the
 * first line the client sent: its HTTP request line)}, `requests` every HTTP request line seen in
 * what clients sent (keep-alive connections carry several) as {port, line}; dropFrom(i) destroys
 * (RST both ways) the open ones from the i-th on and says how many it dropped. Returns {port,
 * accepted: () => count, connections, requests, dropFrom(i), close()}.
 */
export async function startRoundRobinProxy(targetPorts) {
  const sockets = new Set();
  const connections = [];
  const requests = [];
  const pairs = [];
  let accepted = 0;
  const server = net.createServer((client) => {
    const port = targetPorts[accepted++ % targetPorts.length];
    const upstream = net.connect(port, "127.0.0.1");
    const entry = { port, line: "" };
    connections.push(entry);
    pairs.push({ client, upstream });
    client.once("data", (d) => {
      entry.line = d.toString("latin1").split("\r\n")[0];
    });
    client.on("data", (d) => {
      for (const m of d.toString("latin1").matchAll(/(?:^|\r\n)((?:GET|POST|DELETE|OPTIONS) \S+ HTTP\/1\.[01])\r\n/g)) {
        requests.push({ port, line: m[1] });
      }
    });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  return {
    port: server.address().port,
    accepted: () => accepted,
    connections,
    requests,
    dropFrom(i) {
      let n = 0;
      for (const { client, upstream } of pairs.slice(i)) {
        if (client.destroyed) continue;
        n++;
        for (const s of [client, upstream]) (s.resetAndDestroy ? s.resetAndDestroy() : s.destroy());
      }
      return n;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/**
 * Start a NATS server and `nodes` Switchboard nodes on it (node ids n1, n2, …), sharing two access
 * keys, each with its own ports and data dir, plus a round-robin proxy in front of their main
 * ports (and one in front of their SignalR ports, `signalrProxy`, when they have them).
 * `clustered: false` starts the same nodes without cluster.nats_url (to see the suite fail);
 * `jetstream: true` turns JetStream on in the NATS server (durable history on a cluster).
 * Extra startServer options (e.g. signalr, config) apply to every node.
 * Returns {nats, nodes: [startServer results], proxy, signalrProxy, keys, diag(), stop()}.
 */
export async function startCluster({ nodes: count = 3, clustered = true, jetstream = false, ...opts } = {}) {
  const keys = [randomAccessKey(), randomAccessKey()];
  const c = { nodes: [], keys };
  c.diag = () => (c.nats ? c.nats.diag() : "") + c.nodes.map((n) => (n.exited() ? `\n[node EXITED: ${JSON.stringify(n.exited())}]` : "") + n.diag()).join("");
  c.stop = async () => {
    await c.proxy?.close();
    await c.signalrProxy?.close();
    await Promise.all(c.nodes.map((n) => n.stop()));
    await c.nats?.stop();
  };
  try {
    c.nats = await startNats({ jetstream });
    for (let i = 1; i <= count; i++) {
      const extraArgs = ["--set", `server.node_id=n${i}`];
      if (clustered) extraArgs.push("--set", `cluster.nats_url=${c.nats.url}`);
      c.nodes.push(await startServer({ ...opts, keys, extraArgs: [...extraArgs, ...(opts.extraArgs ?? [])] }));
    }
    c.proxy = await startRoundRobinProxy(c.nodes.map((n) => n.port));
    if (c.nodes[0].signalrPort) c.signalrProxy = await startRoundRobinProxy(c.nodes.map((n) => n.signalrPort));
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}
