// Durable history: the official @azure/web-pubsub-client keeps working against groups that keep
// history (their messages carry extra "offset"/"epoch" fields, which the SDK ignores), both with
// its default reliable subprotocol and with json.webpubsub.azure.v1; a raw JSON client that
// resumes with its last offset gets exactly what it missed.
import assert from "node:assert/strict";
import { hubName, randomSuffix, sharedServer } from "./harness.mjs";
import { serviceClient, startSdkClient, connectJson, WebPubSubJsonProtocol } from "./helpers.mjs";

const { sb, it } = sharedServer({
  config: `hubs:
  _default:
    history:
      - {pattern: "hist-*", max_messages: 1000, max_age: 1h}
`,
});

const ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

for (const [name, opts] of [
  ["reliable (default)", {}],
  ["json", { protocol: WebPubSubJsonProtocol() }],
]) {
  it(`WebPubSubClient ${name}: join, receive and send in a history group`, async (t) => {
    const svc = serviceClient(sb, hubName());
    const g = "hist-" + randomSuffix();
    const c = await startSdkClient(svc, { userId: "alice", roles: ROLES }, opts);
    t.after(() => c.stop());
    await c.client.joinGroup(g);

    await svc.group(g).sendToAll({ n: 1 });
    await svc.group(g).sendToAll("two", { contentType: "text/plain" });
    const ack = await c.client.sendToGroup(g, { n: 3 }, "json");
    assert.equal(typeof ack.ackId, "number");

    const first = await c.groupMessages.waitFor((m) => m.data?.n === 1, { what: "json message" });
    assert.equal(first.group, g);
    assert.equal(first.dataType, "json");
    const second = await c.groupMessages.waitFor((m) => m.data === "two", { what: "text message" });
    assert.equal(second.dataType, "text");
    const third = await c.groupMessages.waitFor((m) => m.data?.n === 3, { what: "client message" });
    assert.equal(third.fromUserId, "alice");
    assert.equal(c.groupMessages.all.length, 3, "each message once");
    assert.equal(c.events.all.filter((e) => e.event === "disconnected").length, 0);
  });
}

it("a raw JSON client resumes with its last offset and gets exactly what it missed", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "hist-" + randomSuffix();
  const a = await connectJson(svc, { roles: ROLES });
  t.after(() => a.close());
  a.ws.send(JSON.stringify({ type: "joinGroup", group: g, ackId: 1 }));
  const joined = await a.inbox.waitFor((f) => f.json?.type === "ack" && f.json.ackId === 1, { what: "join ack" });
  assert.equal(joined.json.success, true);
  assert.equal(joined.json.offset, 0, "a new stream starts at 0");

  await svc.group(g).sendToAll("m1", { contentType: "text/plain" });
  const m1 = await a.inbox.waitFor((f) => f.json?.type === "message" && f.json.data === "m1", { what: "m1" });
  assert.equal(m1.json.offset, 1);
  assert.equal(typeof m1.json.epoch, "string");
  a.close();

  // Missed while away.
  await svc.group(g).sendToAll("m2", { contentType: "text/plain" });
  await svc.group(g).sendToAll("m3", { contentType: "text/plain" });

  const b = await connectJson(svc, { roles: ROLES });
  t.after(() => b.close());
  b.ws.send(JSON.stringify({ type: "joinGroup", group: g, ackId: 1, offset: 1, epoch: m1.json.epoch }));
  const ack = await b.inbox.waitFor((f) => f.json?.type === "ack", { what: "recovering join ack" });
  assert.equal(ack.json.recovered, true);
  assert.equal(ack.json.offset, 3);
  await svc.group(g).sendToAll("m4", { contentType: "text/plain" });
  await b.inbox.waitFor((f) => f.json?.data === "m4", { what: "m4" });
  const got = b.inbox.all.filter((f) => f.json?.type === "message").map((f) => [f.json.offset, f.json.data]);
  assert.deepEqual(got, [
    [2, "m2"],
    [3, "m3"],
    [4, "m4"],
  ]);
});
