// Kafka connector end to end: records produced into a Kafka (the hidden `switchboard bench
// kafka-broker`, franz-go's in-process kfake, spawned by the test) reach an official
// @azure/web-pubsub-client: a topic of account updates keyed by customer, each record to the
// group named after its customer (a history group), a record routed by its headers to a user, and
// a poison record that holds nothing up; and an official @microsoft/signalr client, through a
// second connector into the SignalR hub of the same name, as invocations of accountUpdated.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import readline from "node:readline";
import { after, before, it } from "node:test";
import { buildServer, startAppNegotiate, startHub, startServer } from "./harness.mjs";
import { serviceClient, startSdkClient } from "./helpers.mjs";

let broker, brokerAddr, sb, answers, app;

/** Produce one record and wait for the broker's {"offset"} answer. */
async function produce(rec) {
  broker.stdin.write(JSON.stringify({ topic: "account-updates", partition: 0, ...rec }) + "\n");
  const { value, done } = await answers.next();
  assert.ok(!done, "kafka-broker ended");
  const a = JSON.parse(value);
  assert.equal(a.error, undefined, `produce: ${a.error}`);
  return a.offset;
}

before(async () => {
  const bin = await buildServer();
  broker = spawn(bin, ["bench", "kafka-broker", "--topic", "account-updates:2"], { stdio: ["pipe", "pipe", "inherit"] });
  answers = readline.createInterface({ input: broker.stdout })[Symbol.asyncIterator]();
  const first = (await answers.next()).value ?? "";
  assert.match(first, /^KAFKA /);
  brokerAddr = first.slice("KAFKA ".length);
  app = await startAppNegotiate();
  sb = await startServer({
    signalr: true,
    config: `hubs:
  accounts:
    history:
      - {pattern: "customer:*", max_messages: 1000, max_age: 1h}
connectors:
  - name: accounts
    type: kafka
    brokers: ["${brokerAddr}"]
    topics: [account-updates]
    consumer_group: switchboard
    start_offset: earliest
    hub: accounts
    group: "customer:{value.customerId}"
  - name: accounts_signalr
    type: kafka
    namespace: signalr
    brokers: ["${brokerAddr}"]
    topics: [account-updates]
    consumer_group: switchboard-signalr
    start_offset: earliest
    hub: accounts
    user: "{key}"
    invocation: accountUpdated
`,
  });
});

after(async () => {
  await app?.close();
  await sb?.stop();
  broker?.stdin.end();
  broker?.kill("SIGTERM");
});

it("WebPubSubClient gets the records of its customer, in order, and a record routed to its user", async (t) => {
  const svc = serviceClient(sb, "accounts");
  // No SDK keep-alive loops: their un-abortable sleeps would keep the file's process alive 40 s.
  const c = await startSdkClient(
    svc,
    { userId: "c-17", roles: ["webpubsub.joinLeaveGroup.customer:c-17"] },
    { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 },
  );
  t.after(() => c.stop());
  await c.client.joinGroup("customer:c-17");

  await produce({ key: "c-17", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-17", n: 1 }) });
  await produce({ key: "c-18", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-18", n: 2 }) });
  await produce({ key: "c-17", value: "{not json" }); // poison: skipped, holds nothing up
  await produce({ key: "c-17", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-17", n: 3 }) });
  await produce({ key: "c-17", value: "hello c-17", headers: { "switchboard-user": "c-17", "content-type": "text/plain" } });

  const m3 = await c.groupMessages.waitFor((m) => m.data?.n === 3, { what: "the second record of c-17", timeout: 30000 });
  assert.equal(m3.group, "customer:c-17");
  assert.equal(m3.dataType, "json");
  assert.deepEqual(
    c.groupMessages.all.map((m) => m.data.n),
    [1, 3],
    "the customer's records once each, in order, and none of another customer",
  );
  const direct = await c.serverMessages.waitFor((m) => m.data === "hello c-17", { what: "the record routed to the user" });
  assert.equal(direct.dataType, "text");
});

it("a @microsoft/signalr client gets the records of its user as invocations of accountUpdated", async (t) => {
  const r = app.route({ endpoint: sb.signalrEndpoint, hub: "accounts", key: sb.keys[0], userId: "c-42" });
  const h = await startHub(r.url, { methods: ["accountUpdated"], label: "c-42" });
  t.after(() => h.stop());
  await produce({ key: "c-42", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-42", n: 1 }) });
  await produce({ key: "c-43", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-43", n: 2 }) });
  await produce({ key: "c-42", value: JSON.stringify({ type: "AccountListUpdated", customerId: "c-42", n: 3 }) });
  await h.inbox.waitFor((m) => m.args[0]?.n === 3, { what: "the second record of c-42", timeout: 30000 });
  assert.deepEqual(
    h.inbox.all.map((m) => [m.target, m.args.length, m.args[0].n]),
    [
      ["accountUpdated", 1, 1],
      ["accountUpdated", 1, 3],
    ],
    "the user's records once each, in order, and none of another user",
  );
});
