// Group streams between two official @azure/web-pubsub-client clients: openGroupStream on one,
// onGroupStream on the other. Fragments are reassembled in order; an abort reaches the
// receiver as the stream's error; a stream left idle is closed on both sides; a sender whose
// socket drops in the middle (reliable protocol, through a proxy) resumes, and the receiver gets
// every fragment once, in order, and so does a reliable receiver dropped in the middle.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, startProxy, hubName, randomSuffix, withPort, waitFor, Inbox } from "./harness.mjs";
import { serviceClient, startSdkClient, rejects } from "./helpers.mjs";

let sb;
const clients = [];

before(async () => {
  sb = await startServer();
});
after(async () => {
  for (const c of clients) c.stop();
  await sb?.stop();
});

const roles = ["webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"];

async function pair(t, { senderUrl, receiverUrl } = {}) {
  const hub = hubName("stream");
  const svc = serviceClient(sb, hub);
  const group = "g-" + randomSuffix();
  const receiver = await startSdkClient(svc, { userId: "rx", roles }, {}, receiverUrl ? { urlTransform: receiverUrl } : {});
  const sender = await startSdkClient(svc, { userId: "tx", roles }, {}, senderUrl ? { urlTransform: senderUrl } : {});
  clients.push(receiver, sender);
  await receiver.client.joinGroup(group);
  const streams = new Inbox("inbound streams"); // {streamId, parts, error, done}
  receiver.client.onGroupStream(async (stream) => {
    const rec = { streamId: stream.streamId, group: stream.groupName, parts: [], error: undefined, done: false };
    try {
      for await (const m of stream) rec.parts.push(m.data);
    } catch (err) {
      rec.error = err;
    }
    rec.done = true;
    streams.push(rec);
  });
  return { group, svc, sender: sender.client, receiver, streams };
}

test("openGroupStream → onGroupStream: fragments reassembled in order", async (t) => {
  const { group, sender, streams } = await pair(t);
  const w = await sender.openGroupStream(group);
  for (let i = 0; i < 50; i++) await w.write(`part-${i};`, "text");
  await w.write({ last: true }, "json");
  await w.end();
  const s = await streams.waitFor((r) => r.streamId === w.streamId, { what: "the reassembled stream" });
  assert.equal(s.error, undefined);
  assert.equal(s.group, group);
  assert.deepEqual(s.parts, [...Array.from({ length: 50 }, (_, i) => `part-${i};`), { last: true }]);
});

test("abort: the receiver's stream fails with the sender's error", async (t) => {
  const { group, sender, streams } = await pair(t);
  const w = await sender.openGroupStream(group);
  await w.write("before", "text");
  await w.abort({ message: "gave up", userErrorCode: "E42" });
  const s = await streams.waitFor((r) => r.streamId === w.streamId, { what: "the aborted stream" });
  assert.deepEqual(s.parts, ["before"]);
  assert.equal(s.error?.name, "StreamAborted");
  assert.equal(s.error?.message, "gave up");
  assert.equal(s.error?.userErrorCode, "E42");
});

test("a member that joins mid-stream gets the rest of it as a stream (handleFromStart skips it)", async (t) => {
  const { group, sender, svc } = await pair(t);
  const w = await sender.openGroupStream(group);
  await w.write("early", "text");
  const late = await startSdkClient(svc, { userId: "late", roles });
  clients.push(late);
  const got = new Inbox("late streams");
  const skipped = [];
  late.client.onGroupStream(async (stream) => {
    const parts = [];
    for await (const m of stream) parts.push([m.stream.streamSequenceId, m.data]);
    got.push({ streamId: stream.streamId, parts });
  });
  late.client.onGroupStream((stream) => skipped.push(stream.streamId), { handleFromStart: true });
  await late.client.joinGroup(group);
  await w.write("late-1", "text");
  await w.write("late-2", "text");
  await w.end();
  const s = await got.waitFor((r) => r.streamId === w.streamId, { what: "the late member's stream" });
  assert.deepEqual(s.parts, [
    [2, "late-1"],
    [3, "late-2"],
  ]);
  assert.deepEqual(skipped, [], "handleFromStart: a stream first seen mid-way is skipped");
});

test("a stream left idle is closed: the sender's writer and the receiver's stream get IdleTimeout", async (t) => {
  const { group, sender, streams } = await pair(t);
  const w = await sender.openGroupStream(group, { idleTimeoutInMs: 1000 });
  const errors = [];
  w.onError((e) => errors.push(e));
  await w.write("only", "text");
  const s = await streams.waitFor((r) => r.streamId === w.streamId, { what: "the idle stream's end" });
  assert.deepEqual(s.parts, ["only"]);
  assert.equal(s.error?.name, "IdleTimeout");
  await waitFor(() => errors.length > 0, { what: "the sender's IdleTimeout" });
  assert.equal(errors[0].name, "IdleTimeout");
  await rejects(() => w.write("late", "text"), "a write to the closed stream");
});

test("reliable clients whose sockets drop mid-stream (receiver, then sender) recover: every fragment once, in order", async (t) => {
  const proxy = await startProxy(sb.port); // the sender's
  const rproxy = await startProxy(sb.port); // the receiver's
  t.after(() => proxy.close());
  t.after(() => rproxy.close());
  const { group, sender, streams } = await pair(t, {
    senderUrl: (u) => withPort(u, proxy.port),
    receiverUrl: (u) => withPort(u, rproxy.port),
  });
  const w = await sender.openGroupStream(group);
  const N = 200;
  for (let i = 0; i < N; i++) {
    if (i === N / 4) {
      assert.equal(rproxy.dropAll(), 1, "the drop must kill the receiver's connection");
    }
    if (i === N / 2) {
      assert.equal(proxy.dropAll(), 1, "the drop must kill the sender's connection");
    }
    await w.write(i, "json"); // waits while the client recovers
  }
  await w.end();
  const s = await streams.waitFor((r) => r.streamId === w.streamId, { timeout: 40000, what: "the stream across the drop" });
  assert.equal(s.error, undefined);
  assert.deepEqual(s.parts, Array.from({ length: N }, (_, i) => i));
  assert.ok(proxy.accepted >= 2 && rproxy.accepted >= 2, "both reconnected");
});
