// One command per example: `node examples/run.mjs chat|live-dashboard` (what `make example-chat`
// and `make example-live-dashboard` run, after building the server and installing the
// example's npm packages). It starts bin/switchboard with the example's switchboard.yaml and
// its own data directory (examples/<name>/data), reads the connection strings the server
// prints, starts the example's backend with them, and prints the URL to open. Ctrl-C stops
// both (the backend first, then the server, gracefully), as do SIGTERM and SIGHUP.
//
// Ports: EXAMPLE_PORT (the backend, default 3000), EXAMPLE_SERVER_PORT (Switchboard's Web
// PubSub listener, default 8090) and EXAMPLE_SIGNALR_PORT (its SignalR listener, default 8091).
// EXAMPLE_HOST (default 127.0.0.1) is where all three listen. EXAMPLE_DATA_DIR replaces
// examples/<name>/data.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..");
const name = process.argv[2];
const examples = { chat: "startChat", "live-dashboard": "startDashboard" };
if (!examples[name]) {
  console.error(`usage: node examples/run.mjs ${Object.keys(examples).join("|")}`);
  process.exit(2);
}
const host = process.env.EXAMPLE_HOST || "127.0.0.1";
const port = Number(process.env.EXAMPLE_PORT || 3000);
const serverPort = Number(process.env.EXAMPLE_SERVER_PORT || 8090);
const signalrPort = Number(process.env.EXAMPLE_SIGNALR_PORT || 8091);
const bin = process.env.SWITCHBOARD_BIN || path.join(ROOT, "bin", "switchboard");
const dir = path.join(HERE, name);
const dataDir = process.env.EXAMPLE_DATA_DIR || path.join(dir, "data");
mkdirSync(dataDir, { recursive: true });

let stopping = false;
const env = { ...process.env };
for (const k of Object.keys(env)) if (k.startsWith("SWITCHBOARD_")) delete env[k]; // the server refuses unknown ones
const server = spawn(
  bin,
  ["serve", "--config", path.join(dir, "switchboard.yaml"), "--addr", `${host}:${serverPort}`, "--data-dir", dataDir, "--set", `signalr.addr=${host}:${signalrPort}`],
  // detached: its own process group, so a Ctrl-C reaches only this script, which stops the
  // backend first and then the server.
  { env, stdio: ["ignore", "pipe", "inherit"], detached: true },
);
process.on("exit", () => server.exitCode === null && server.kill("SIGTERM"));
const serverExited = new Promise((resolve) => server.on("exit", (code, signal) => resolve({ code, signal })));
serverExited.then((e) => {
  if (!stopping) {
    console.error(`switchboard exited: ${JSON.stringify(e)}`);
    process.exit(1);
  }
});

// Stops the backend (once started) and then the server. From the start: a signal's default kills
// this script alone, without the "exit" handler, and the server, in its own process group, would
// go on listening (a Ctrl-C while it starts; SIGHUP: the terminal closed).
let app;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("\nstopping…");
  await app?.close();
  server.kill("SIGTERM");
  await serverExited;
  process.exit(0);
};
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, stop);

// The server prints the Web PubSub connection string, then the SignalR one.
const connectionStrings = await new Promise((resolve) => {
  const lines = [];
  let buf = "";
  server.stdout.setEncoding("utf8").on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line.startsWith("Endpoint=")) lines.push(line);
      if (lines.length === 2) resolve(lines);
    }
  });
});
server.stdout.resume();
const [webpubsub, signalr] = connectionStrings;
// Wait for the listener: the strings are printed as the server starts.
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`http://${host}:${serverPort}/api/health`)).ok) break;
  } catch (e) {
    if (i > 100) throw e;
  }
  await new Promise((r) => setTimeout(r, 100));
}

const mod = await import(`./${name}/server.mjs`);
const log = (line) => console.log(`[${name}] ${line}`);
app = await mod[examples[name]]({
  connectionString: name === "chat" ? webpubsub : signalr,
  host,
  port,
  dataFile: path.join(dataDir, "messages.json"),
  log,
});
console.log(`\nSwitchboard: http://${host}:${serverPort}/ (dashboard; log in with the key in ${path.relative(process.cwd(), dataDir)}/access-key)`);
console.log(`\n  Open ${app.url}/ ${name === "chat" ? "(two browsers, two names: chat between them)" : ""}\n\nCtrl-C stops.`);
