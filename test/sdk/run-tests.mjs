// Runs every *.test.mjs in this folder with node's built-in test runner, building the server
// binary once up front (unless $SWITCHBOARD_BIN is already set) and sharing it via
// $SWITCHBOARD_BIN with every test file. Extra arguments are passed to `node --test`
// (e.g. `npm test -- --test-name-pattern=ping`); arguments ending in .test.mjs select files.
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

const args = ["--test", "--test-concurrency=1", "--test-timeout=300000", ...flags, ...files];
const child = spawn(process.execPath, args, {
  cwd: HERE,
  stdio: "inherit",
  env: { ...process.env, SWITCHBOARD_BIN: bin },
});
child.on("exit", (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
