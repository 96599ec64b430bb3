// The protobuf subprotocols (protobuf.webpubsub.azure.v1, protobuf.reliable.webpubsub.azure.v1)
// with protobufjs as a second, independent implementation of the checked-in .proto: a protobuf
// protocol for the official @azure/web-pubsub-client (its reconnection and sequence-ack logic,
// our protobufjs encoding) talking to official JSON clients through groups, every data type
// both ways plus REST sends by content type; recovery of the reliable protobuf client over
// dropped sockets (nothing lost, nothing twice); and a bare protobufjs socket for the frames'
// byte form and bad input.
import assert from "node:assert/strict";
import path from "node:path";
import protobuf from "protobufjs";
import { startProxy, hubName, randomSuffix, waitFor, openWs, withPort, sharedServer, REPO_ROOT } from "./harness.mjs";
import { serviceClient, startSdkClient } from "./helpers.mjs";

const { sb, it } = sharedServer();

const root = protobuf.loadSync(path.join(REPO_ROOT, "internal/dialect/webpubsub/clientpb/webpubsub.client.proto"));
const Upstream = root.lookupType("azure.webpubsub.UpstreamMessage");
const Downstream = root.lookupType("azure.webpubsub.DownstreamMessage");
const Any = root.lookupType("google.protobuf.Any");

const num = (v) => (v == null ? v : typeof v === "number" ? v : Number(v.toString()));
const toArrayBuffer = (u8) => u8.buffer.slice(u8.byteOffset, u8.byteOffset + u8.byteLength);

/** A serialized google.protobuf.Any holding the given type URL and value bytes. */
function anyBytes(typeUrl, value) {
  return Any.encode(Any.create({ type_url: typeUrl, value })).finish();
}

function messageData(dataType, data) {
  switch (dataType) {
    case "text":
      return { textData: data };
    case "json":
      return { jsonData: JSON.stringify(data) };
    case "binary":
      return { binaryData: new Uint8Array(data) };
    case "protobuf":
      return { protobufData: Any.decode(new Uint8Array(data)) };
    default:
      throw new TypeError(`dataType ${dataType} is not supported`);
  }
}

// d.data names the member of the oneof that is set (unset members read as their defaults).
function fromMessageData(d) {
  switch (d.data) {
    case "textData":
      return ["text", d.textData];
    case "jsonData":
      return ["json", JSON.parse(d.jsonData)];
    case "binaryData":
      return ["binary", toArrayBuffer(d.binaryData)];
    case "protobufData":
      return ["protobuf", toArrayBuffer(Any.encode(d.protobufData).finish())];
    default:
      return [undefined, undefined];
  }
}

/** A WebPubSubClientProtocol for the official client, encoding with protobufjs. */
function protobufProtocol({ reliable }) {
  return {
    name: reliable ? "protobuf.reliable.webpubsub.azure.v1" : "protobuf.webpubsub.azure.v1",
    isReliableSubProtocol: reliable,
    parseMessages(input) {
      const m = Downstream.decode(new Uint8Array(input));
      if (m.ackMessage) {
        const a = m.ackMessage;
        return { kind: "ack", ackId: num(a.ackId), success: a.success, error: a.error ? { name: a.error.name, message: a.error.message } : undefined };
      }
      if (m.systemMessage?.connectedMessage) {
        const c = m.systemMessage.connectedMessage;
        return { kind: "connected", connectionId: c.connectionId, userId: c.userId, reconnectionToken: c.reconnectionToken };
      }
      if (m.systemMessage?.disconnectedMessage) return { kind: "disconnected", message: m.systemMessage.disconnectedMessage.reason };
      if (m.dataMessage) {
        const d = m.dataMessage;
        const [dataType, data] = d.data ? fromMessageData(d.data) : [undefined, undefined];
        const sequenceId = reliable ? num(d.sequenceId) : undefined;
        if (d.from === "group") return { kind: "groupData", group: d.group, dataType, data, sequenceId };
        if (d.from === "server") return { kind: "serverData", dataType, data, sequenceId };
      }
      return null;
    },
    writeMessage(message) {
      let up;
      switch (message.kind) {
        case "joinGroup":
          up = { joinGroupMessage: { group: message.group, ackId: message.ackId } };
          break;
        case "leaveGroup":
          up = { leaveGroupMessage: { group: message.group, ackId: message.ackId } };
          break;
        case "sendToGroup":
          up = { sendToGroupMessage: { group: message.group, ackId: message.ackId, noEcho: message.noEcho, data: messageData(message.dataType, message.data) } };
          break;
        case "sendEvent":
          up = { eventMessage: { event: message.event, ackId: message.ackId, data: messageData(message.dataType, message.data) } };
          break;
        case "sequenceAck":
          up = { sequenceAckMessage: { sequenceId: message.sequenceId } };
          break;
        default: // ping: the published .proto has none (the client tolerates the failure)
          throw new TypeError(`${message.kind} has no protobuf form`);
      }
      return toArrayBuffer(Upstream.encode(Upstream.fromObject(up)).finish());
    },
  };
}

const roles = ["webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"];
// No keep-alive pings: a stopped client's pending keep-alive delay holds the process ~40 s.
const quiet = { keepAliveIntervalInMs: 0, keepAliveTimeoutInMs: 0 };

it("official clients: protobuf ⇄ JSON through a group, every data type, and REST by content type", async (t) => {
  const hub = hubName("pb");
  const svc = serviceClient(sb, hub);
  const g = "g-" + randomSuffix();
  const pb = await startSdkClient(svc, { userId: "pb", roles }, { ...quiet, protocol: protobufProtocol({ reliable: true }) });
  const js = await startSdkClient(svc, { userId: "js", roles }, quiet);
  t.after(() => {
    pb.stop();
    js.stop();
  });
  assert.equal(pb.userId, "pb");
  await pb.client.joinGroup(g);
  await js.client.joinGroup(g);
  const any = new Uint8Array(anyBytes("type.googleapis.com/google.protobuf.StringValue", new Uint8Array([0x0a, 0x02, 0x68, 0x69])));

  // protobuf → JSON
  await pb.client.sendToGroup(g, "hello", "text", { noEcho: true });
  await pb.client.sendToGroup(g, { a: [1, 2] }, "json", { noEcho: true });
  await pb.client.sendToGroup(g, toArrayBuffer(new Uint8Array([0, 1, 2])), "binary", { noEcho: true });
  await pb.client.sendToGroup(g, toArrayBuffer(any), "protobuf", { noEcho: true });
  const fromPb = [];
  for (let i = 0; i < 4; i++) fromPb.push(await js.groupMessages.next({ what: `protobuf client's message ${i}` }));
  assert.deepEqual(fromPb.map((m) => [m.dataType, m.fromUserId, m.group]), [
    ["text", "pb", g],
    ["json", "pb", g],
    ["binary", "pb", g],
    ["protobuf", "pb", g],
  ]);
  assert.equal(fromPb[0].data, "hello");
  assert.deepEqual(fromPb[1].data, { a: [1, 2] });
  assert.deepEqual(new Uint8Array(fromPb[2].data), new Uint8Array([0, 1, 2]));
  assert.deepEqual(new Uint8Array(fromPb[3].data), any, "a protobuf Any reaches JSON clients as the serialized Any");

  // JSON → protobuf
  await js.client.sendToGroup(g, "hi pb", "text", { noEcho: true });
  await js.client.sendToGroup(g, { n: 1 }, "json", { noEcho: true });
  await js.client.sendToGroup(g, toArrayBuffer(new Uint8Array([9])), "binary", { noEcho: true });
  await js.client.sendToGroup(g, toArrayBuffer(any), "protobuf", { noEcho: true });
  // REST, by content type
  await svc.group(g).sendToAll({ rest: true });
  await svc.group(g).sendToAll("rest text", { contentType: "text/plain" });
  await svc.group(g).sendToAll(Buffer.from([7, 7]), { contentType: "application/octet-stream" });
  const toPb = [];
  for (let i = 0; i < 7; i++) toPb.push(await pb.groupMessages.next({ what: `message ${i} to the protobuf client` }));
  assert.deepEqual(toPb.map((m) => m.dataType), ["text", "json", "binary", "protobuf", "json", "text", "binary"]);
  assert.equal(toPb[0].data, "hi pb");
  assert.deepEqual(toPb[1].data, { n: 1 });
  assert.deepEqual(new Uint8Array(toPb[2].data), new Uint8Array([9]));
  assert.deepEqual(new Uint8Array(toPb[3].data), any);
  assert.deepEqual(toPb[4].data, { rest: true });
  assert.equal(toPb[5].data, "rest text");
  assert.deepEqual(new Uint8Array(toPb[6].data), new Uint8Array([7, 7]));
  const seq = toPb.map((m) => m.sequenceId);
  for (let i = 1; i < seq.length; i++) assert.equal(seq[i], seq[i - 1] + 1, `sequence ids ${JSON.stringify(seq)}`);

  // Acks with the JSON protocols' error names.
  await assert.rejects(pb.client.sendToGroup(" ", "x", "text", { fireAndForget: false }), (e) => e.errorDetail?.name === "BadRequest");
});

it("reliable protobuf: recovery over dropped sockets, nothing lost, nothing twice", async (t) => {
  const hub = hubName("pbrel");
  const svc = serviceClient(sb, hub);
  const proxy = await startProxy(sb.port);
  const g = "seq-" + randomSuffix();
  const c = await startSdkClient(svc, { userId: "rel", roles }, { ...quiet, protocol: protobufProtocol({ reliable: true }) }, { urlTransform: (u) => withPort(u, proxy.port) });
  t.after(() => {
    c.stop();
    return proxy.close();
  });
  await c.client.joinGroup(g);
  const N = 300;
  const received = () => c.groupMessages.all.filter((m) => typeof m.data?.i === "number").map((m) => m.data.i);
  const drops = [];
  for (let i = 0; i < N; i++) {
    await svc.group(g).sendToAll({ i });
    if (i === 100) drops.push(proxy.dropAll());
    if (i === 200) {
      await waitFor(() => received().some((x) => x > 100), { timeout: 35000, what: "recovery after the first drop" });
      drops.push(proxy.dropAll());
    }
  }
  await svc.group(g).sendToAll({ end: true });
  await c.groupMessages.waitFor((m) => m.data?.end === true, { timeout: 60000, what: "end-of-sequence sentinel" });
  assert.ok(drops.every((n) => n >= 1), `each drop must kill the live connection: ${JSON.stringify(drops)}`);
  assert.deepEqual(received(), Array.from({ length: N }, (_, i) => i));
  const names = c.events.all.map((e) => e.event);
  assert.equal(names.filter((n) => n === "connected").length, 1, "recovered, not reconnected");
  assert.equal(names.filter((n) => n === "disconnected").length, 0);
  assert.ok(proxy.requests.slice(1).every((r) => r.includes(`awps_connection_id=${encodeURIComponent(c.connectionId)}`)), "reconnects are recoveries");
});

it("bare protobufjs socket: connected, a data message's fields, a malformed frame closes 1007", async (t) => {
  const hub = hubName("pbraw");
  const svc = serviceClient(sb, hub);
  const { url } = await svc.getClientAccessToken({ userId: "u", groups: ["g"] });
  const c = await openWs(url, { protocols: "protobuf.webpubsub.azure.v1" });
  t.after(() => c.close());
  assert.equal(c.protocol, "protobuf.webpubsub.azure.v1");
  const first = await c.inbox.next({ what: "connected" });
  assert.ok(first.isBinary);
  const hello = Downstream.decode(first.data).systemMessage.connectedMessage;
  assert.equal(hello.userId, "u");
  assert.ok(hello.connectionId);
  assert.equal(hello.reconnectionToken, "", "no reconnection token without reliable");
  await svc.group("g").sendToAll("hey", { contentType: "text/plain" });
  const m = await c.inbox.next({ what: "data message" });
  assert.deepEqual(Downstream.toObject(Downstream.decode(m.data)), { dataMessage: { from: "group", group: "g", data: { textData: "hey" } } });
  c.ws.send(Buffer.from([0x32, 0x05, 0x0a]));
  const closed = await c.closed;
  assert.equal(closed.code, 1007);
  assert.match(closed.reason, /not a protobuf UpstreamMessage/);
});
