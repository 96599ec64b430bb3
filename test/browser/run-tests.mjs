// Runs every *.test.mjs in this folder with node's built-in test runner, building the server
// binary once up front (unless $SWITCHBOARD_BIN is already set) and sharing it via
// $SWITCHBOARD_BIN. Extra arguments go to `node --test`; arguments ending in .test.mjs select files.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import path from "node:path";
import { buildServer, HERE } from "./harness.mjs";

const passthrough = process.argv.slice(2);
const explicitFiles = passthrough.filter((a) => a.endsWith(".test.mjs"));
const flags = passthrough.filter((a) => !a.endsWith(".test.mjs"));
const files = explicitFiles.length
  ? explicitFiles
  : readdirSync(HERE)
      .filter((f) => f.endsWith(".test.mjs"))
      .sort()
      .map((f) => path.join(HERE, f));

let bin;
try {
  bin = await buildServer();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}

// --test-force-exit: each file's process exits once its tests are done. Without it, Node 20.20
// sometimes never exits after every test of a file passed: gdb shows the main thread spinning in
// uv_run under Environment::CleanupHandles (FreeEnvironment, after the JavaScript finished), so
// the file is reported "cancelled" after the timeout (CI, stop 23: signalr-reconnect.test.mjs; 1 run
// in about 10 here). process.exit() does not take that teardown path.
const args = ["--test", "--test-concurrency=1", "--test-timeout=120000", "--test-force-exit", ...flags, ...files];
const child = spawn(process.execPath, args, { cwd: HERE, stdio: "inherit", env: { ...process.env, SWITCHBOARD_BIN: bin } });
child.on("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
