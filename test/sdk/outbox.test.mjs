// PostgreSQL outbox connector end to end: the seeds' chat flow. The test starts a real
// PostgreSQL 15 (Debian's postgresql-15: initdb and pg_ctl as the postgres user when run as
// root, in a temporary directory, on a free loopback port), applies the DDL that
// `switchboard connectors schema postgres` prints, and writes each chat message and its outbox
// row in ONE transaction (psql); an official @azure/web-pubsub-client in the conversation's
// group gets them in order, a poison row holds nothing up, a row can name its own target (a
// user), and a client that was away catches up from the group's history.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, it } from "node:test";
import { buildServer, freePort, signJwt, startServer } from "./harness.mjs";
import { serviceClient, startSdkClient } from "./helpers.mjs";

const PG = "/usr/lib/postgresql/15/bin";
const havePg = fs.existsSync(path.join(PG, "initdb"));
if (!havePg && process.env.SWITCHBOARD_REQUIRE_POSTGRES === "1") {
  throw new Error(`PostgreSQL 15 is required but ${PG}/initdb is missing: make postgres installs it`);
}

let dir, port, sb, bin;

/** Runs a program of PostgreSQL as its owner (the postgres user when this runs as root). */
function pg(prog, args, opts = {}) {
  const cmd = process.getuid?.() === 0 ? ["runuser", ["-u", "postgres", "--", path.join(PG, prog), ...args]] : [path.join(PG, prog), args];
  return execFileSync(cmd[0], cmd[1], { cwd: dir, encoding: "utf8", ...opts });
}

/** Runs SQL in the test's database. */
function sql(text) {
  return pg("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-tA"], {
    input: text,
  });
}

before(async () => {
  if (!havePg) return;
  bin = await buildServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-outbox-sdk-"));
  if (process.getuid?.() === 0) execFileSync("chown", ["postgres", dir]);
  port = await freePort();
  pg("initdb", ["-D", path.join(dir, "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
  pg("pg_ctl", ["-D", path.join(dir, "data"), "-l", path.join(dir, "log"), "-w", "-o",
    `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off`, "start"]);
  const ddl = execFileSync(bin, ["connectors", "schema", "postgres", "--partitions", "4"], { encoding: "utf8" });
  sql(ddl);
  sql(`CREATE TABLE conversations (id text PRIMARY KEY, last_message_at timestamptz);
       CREATE TABLE messages (id bigserial PRIMARY KEY, conversation_id text NOT NULL, author text NOT NULL, body text NOT NULL);
       INSERT INTO conversations VALUES ('c-42', NULL), ('c-43', NULL);`);
  sb = await startServer({
    config: `hubs:
  chat:
    history:
      - {pattern: "conversation:*", max_messages: 1000, max_age: 1h}
connectors:
  - name: chat
    type: postgres_outbox
    dsn: "postgres://postgres@127.0.0.1:${port}/postgres"
    dead_letter_table: switchboard_outbox_dead_letter
    hub: chat
    group: "conversation:{key}"
    ordering: target
`,
  });
});

after(async () => {
  await sb?.stop();
  if (dir) {
    spawnSync(process.getuid?.() === 0 ? "runuser" : path.join(PG, "pg_ctl"),
      process.getuid?.() === 0
        ? ["-u", "postgres", "--", path.join(PG, "pg_ctl"), "-D", path.join(dir, "data"), "-m", "immediate", "-w", "stop"]
        : ["-D", path.join(dir, "data"), "-m", "immediate", "-w", "stop"]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The app's transaction: the message and its outbox row commit together. */
function postMessage(conv, author, body, n) {
  const payload = JSON.stringify({ author, body, n }).replaceAll("'", "''");
  sql(`BEGIN;
UPDATE conversations SET last_message_at = now() WHERE id = '${conv}';
INSERT INTO messages (conversation_id, author, body) VALUES ('${conv}', '${author}', '${body}');
INSERT INTO switchboard_outbox (partition_key, payload) VALUES ('${conv}', convert_to('${payload}', 'UTF8'));
COMMIT;`);
}

it("WebPubSubClient gets its conversation's messages in order from the outbox, and catches up after being away", { skip: !havePg && "PostgreSQL 15 is not installed (make postgres)" }, async (t) => {
  const svc = serviceClient(sb, "chat");
  const opts = { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 };
  const ana = await startSdkClient(svc, { userId: "ana", roles: ["webpubsub.joinLeaveGroup.conversation:c-42"] }, opts);
  t.after(() => ana.stop());
  await ana.client.joinGroup("conversation:c-42");

  postMessage("c-42", "ana", "Hello!", 1);
  postMessage("c-43", "bob", "other conversation", 2);
  sql(`INSERT INTO switchboard_outbox (partition_key, payload) VALUES ('c-42', convert_to('{not json', 'UTF8'));`); // poison
  postMessage("c-42", "bob", "Hi ana", 3);
  sql(`INSERT INTO switchboard_outbox (partition_key, target_kind, target, content_type, payload)
       VALUES ('c-42', 'user', 'ana', 'text/plain', convert_to('typing…', 'UTF8'));`);

  const m3 = await ana.groupMessages.waitFor((m) => m.data?.n === 3, { what: "the second message of c-42", timeout: 30000 });
  assert.equal(m3.group, "conversation:c-42");
  assert.equal(m3.dataType, "json");
  assert.deepEqual(ana.groupMessages.all.map((m) => m.data.n), [1, 3], "the conversation's messages once each, in order");
  const direct = await ana.serverMessages.waitFor((m) => m.data === "typing…", { what: "the row sent to the user" });
  assert.equal(direct.dataType, "text");
  assert.equal(sql(`SELECT reason FROM switchboard_outbox_dead_letter`).trim(), "data");

  // Away: two messages are posted meanwhile; the group's history has them (the catch-up read
  // a client makes when it comes back, from the last offset it saw).
  await ana.stop();
  postMessage("c-42", "bob", "are you there?", 4);
  postMessage("c-42", "bob", "ping", 5);
  const url = `${sb.endpoint}/api/hubs/chat/groups/${encodeURIComponent("conversation:c-42")}/messages?api-version=2024-12-01&limit=100`;
  let seen = [];
  for (let i = 0; i < 300 && seen.length < 4; i++) {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${signJwt({ aud: url.split("?")[0] }, sb.keys[0])}` } });
    assert.equal(res.status, 200, await res.clone().text());
    seen = (await res.json()).messages.map((m) => m.data.n);
    if (seen.length < 4) await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(seen, [1, 3, 4, 5], "the history of the conversation, once each, in order");
});
