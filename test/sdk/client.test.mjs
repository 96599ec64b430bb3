// Client protocol through @azure/web-pubsub-client (WebPubSubClient), with the server side driven
// by @azure/web-pubsub (WebPubSubServiceClient).
import assert from "node:assert/strict";
import { hubName, randomSuffix, waitFor, sharedServer } from "./harness.mjs";
import {
  serviceClient,
  startSdkClient,
  barrierSdk,
  rejects,
  collectAll,
  WebPubSubJsonProtocol,
} from "./helpers.mjs";

const { sb, it } = sharedServer();

const ALL_ROLES = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];
const NO_RETRY = { messageRetryOptions: { maxRetries: 0 } };

async function client(t, svc, tokenOpts = {}, clientOpts = {}, extra = {}) {
  const c = await startSdkClient(svc, tokenOpts, clientOpts, extra);
  t.after(() => c.stop());
  return c;
}

// ---------------------------------------------------------------------------------------------

it("connected event carries connectionId and userId; the service sees the connection", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await client(t, svc, { userId: "u1" });
  assert.equal(typeof c.connectionId, "string");
  assert.ok(c.connectionId.length > 0, "connectionId must be non-empty");
  assert.equal(c.userId, "u1");
  assert.equal(await svc.connectionExists(c.connectionId), true);
  assert.equal(await svc.userExists("u1"), true);
  const anon = await client(t, svc, {});
  assert.ok(anon.connectionId && anon.connectionId !== c.connectionId, "distinct connection ids");
  assert.ok(anon.userId == null || anon.userId === "", `anonymous userId should be absent, got ${anon.userId}`);
  assert.equal(c.events.filter((e) => e.event === "connected").length, 1);
});

it("joinGroup / sendToGroup echo / noEcho / leaveGroup", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "chat-" + randomSuffix();
  const a = await client(t, svc, { userId: "alice", roles: ALL_ROLES });
  const b = await client(t, svc, { userId: "bob", roles: ALL_ROLES });
  await a.client.joinGroup(g);
  await b.client.joinGroup(g);
  assert.equal(await svc.groupExists(g), true);
  const members = await collectAll(svc.group(g).listConnections());
  assert.deepEqual(members.map((m) => m.connectionId).sort(), [a.connectionId, b.connectionId].sort());

  // Echo (noEcho=false): both the sender and the other member get it.
  const echoTag = "echo-" + randomSuffix();
  const ack = await a.client.sendToGroup(g, { tag: echoTag }, "json");
  assert.equal(typeof ack.ackId, "number", "sendToGroup resolves with the ack");
  for (const c of [a, b]) {
    const m = await c.groupMessages.waitFor((x) => x.data?.tag === echoTag, { what: `echo at ${c.userId}` });
    assert.equal(m.group, g);
    assert.equal(m.fromUserId, "alice");
    assert.equal(m.dataType, "json");
    assert.deepEqual(m.data, { tag: echoTag });
  }

  // noEcho=true: the other member gets it, the sender does not.
  const quietTag = "quiet-" + randomSuffix();
  await a.client.sendToGroup(g, { tag: quietTag }, "json", { noEcho: true });
  const got = await b.groupMessages.waitFor((x) => x.data?.tag === quietTag);
  assert.equal(got.fromUserId, "alice");
  await barrierSdk(svc, a);
  assert.equal(a.groupMessages.find((x) => x.data?.tag === quietTag), undefined, "noEcho: sender got its own message");

  // leaveGroup: b no longer receives.
  await b.client.leaveGroup(g);
  const afterLeave = "after-leave-" + randomSuffix();
  await a.client.sendToGroup(g, { tag: afterLeave }, "json");
  await a.groupMessages.waitFor((x) => x.data?.tag === afterLeave);
  await barrierSdk(svc, b);
  assert.equal(b.groupMessages.find((x) => x.data?.tag === afterLeave), undefined, "left member still got a message");
  const after = await collectAll(svc.group(g).listConnections());
  assert.deepEqual(after.map((m) => m.connectionId), [a.connectionId]);
});

it("json / text / binary payloads round-trip between clients (binary arrives as ArrayBuffer)", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "payload-" + randomSuffix();
  const a = await client(t, svc, { userId: "sender", roles: ALL_ROLES });
  const b = await client(t, svc, { userId: "receiver", roles: ALL_ROLES });
  await b.client.joinGroup(g);
  const bytes = new Uint8Array(256);
  for (let i = 0; i < 256; i++) bytes[i] = i;
  const sends = [
    ["json", { nested: { arr: [1, "two", null, true, 3.5] }, s: "ünïcödé ✓" }],
    ["json", "a bare json string"],
    ["json", 42],
    ["json", [1, 2, 3]],
    ["text", "plain text with \"quotes\" and\nnewline ✓"],
    ["binary", bytes.buffer.slice(0)],
    ["binary", new Uint8Array([0xff, 0x00, 0x7f]).buffer],
  ];
  for (const [dt, data] of sends) await a.client.sendToGroup(g, data, dt);
  for (const [dt, data] of sends) {
    const m = await b.groupMessages.next({ what: `${dt} message` });
    assert.equal(m.dataType, dt);
    assert.equal(m.group, g);
    assert.equal(m.fromUserId, "sender");
    if (dt === "binary") {
      assert.ok(m.data instanceof ArrayBuffer, `binary must arrive as ArrayBuffer, got ${Object.prototype.toString.call(m.data)}`);
      assert.deepEqual(Buffer.from(m.data), Buffer.from(data));
    } else {
      assert.deepEqual(m.data, data);
    }
  }
});

it("server -> user / group / connection delivery to SDK clients", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "srv-" + randomSuffix();
  const u1 = await client(t, svc, { userId: "u1", groups: [g] });
  const u2 = await client(t, svc, { userId: "u2" });

  await svc.sendToUser("u1", { to: "user" });
  let m = await u1.serverMessages.waitFor((x) => x.data?.to === "user");
  assert.equal(m.dataType, "json");
  assert.deepEqual(m.data, { to: "user" });

  await svc.sendToConnection(u2.connectionId, "to-conn", { contentType: "text/plain" });
  m = await u2.serverMessages.waitFor((x) => x.data === "to-conn");
  assert.equal(m.dataType, "text");

  await svc.group(g).sendToAll(Buffer.from([1, 2, 3, 4]));
  m = await u1.groupMessages.waitFor((x) => x.dataType === "binary");
  assert.equal(m.group, g);
  assert.ok(m.data instanceof ArrayBuffer);
  assert.deepEqual([...new Uint8Array(m.data)], [1, 2, 3, 4]);

  await svc.sendToAll(new Uint8Array([5, 6]).buffer);
  for (const c of [u1, u2]) {
    m = await c.serverMessages.waitFor((x) => x.dataType === "binary");
    assert.deepEqual([...new Uint8Array(m.data)], [5, 6]);
  }

  await barrierSdk(svc, u2);
  assert.equal(u2.serverMessages.find((x) => x.data?.to === "user"), undefined, "u2 got u1's message");
  assert.equal(u2.groupMessages.all.length, 0, "u2 is not in the group");
});

it("filters and excludedConnections on sendToAll and group sends", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "flt-" + randomSuffix();
  const u1 = await client(t, svc, { userId: "u1", groups: [g] });
  const u2 = await client(t, svc, { userId: "u2", groups: [g] });
  const u3 = await client(t, svc, { userId: "u3" });
  const everyone = [u1, u2, u3];
  const gotServer = (c, tag) => c.serverMessages.find((x) => x.data?.tag === tag) !== undefined;
  const gotGroup = (c, tag) => c.groupMessages.find((x) => x.data?.tag === tag) !== undefined;
  const settle = async () => {
    for (const c of everyone) await barrierSdk(svc, c);
  };

  const t1 = "f1-" + randomSuffix();
  await svc.sendToAll({ tag: t1 }, { filter: "userId eq 'u1'" });
  const t2 = "f2-" + randomSuffix();
  await svc.sendToAll({ tag: t2 }, { excludedConnections: [u1.connectionId, u3.connectionId] });
  const t3 = "f3-" + randomSuffix();
  await svc.sendToAll({ tag: t3 }, { filter: `userId ne 'u1' and connectionId ne '${u3.connectionId}'` });
  const t4 = "f4-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: t4 }, { filter: "userId eq 'u2'" });
  const t5 = "f5-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: t5 }, { excludedConnections: [u2.connectionId] });
  const t6 = "f6-" + randomSuffix();
  await svc.sendToAll({ tag: t6 }, { filter: `'${g}' in groups` });
  const t7 = "f7-" + randomSuffix();
  await svc.sendToUser("u1", { tag: t7 }, { filter: "userId eq 'u2'" });
  await settle();

  const actual = {
    [t1]: everyone.filter((c) => gotServer(c, t1)).map((c) => c.userId),
    [t2]: everyone.filter((c) => gotServer(c, t2)).map((c) => c.userId),
    [t3]: everyone.filter((c) => gotServer(c, t3)).map((c) => c.userId),
    [t4]: everyone.filter((c) => gotGroup(c, t4)).map((c) => c.userId),
    [t5]: everyone.filter((c) => gotGroup(c, t5)).map((c) => c.userId),
    [t6]: everyone.filter((c) => gotServer(c, t6)).map((c) => c.userId),
    [t7]: everyone.filter((c) => gotServer(c, t7)).map((c) => c.userId),
  };
  assert.deepEqual(actual, {
    [t1]: ["u1"], // filter userId eq 'u1'
    [t2]: ["u2"], // excluded u1,u3
    [t3]: ["u2"], // filter with and + connectionId
    [t4]: ["u2"], // group send + filter
    [t5]: ["u1"], // group send + excluded
    [t6]: ["u1", "u2"], // 'g' in groups
    [t7]: [], // sendToUser u1 restricted by a filter that excludes u1
  });
});

it("a client without join/send roles is refused with ack error Forbidden", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "locked-" + randomSuffix();
  const c = await client(t, svc, { userId: "plain" }, NO_RETRY);
  const err = await rejects(() => c.client.joinGroup(g), "joinGroup without role");
  assert.equal(err.errorDetail?.name, "Forbidden", `joinGroup error: ${err.message} ${JSON.stringify(err.errorDetail)}`);
  assert.equal(await svc.groupExists(g), false, "refused join must not create membership");
  const err2 = await rejects(() => c.client.sendToGroup(g, "x", "text"), "sendToGroup without role");
  assert.equal(err2.errorDetail?.name, "Forbidden", `sendToGroup error: ${JSON.stringify(err2.errorDetail)}`);
  const err3 = await rejects(() => c.client.leaveGroup(g), "leaveGroup without role");
  assert.equal(err3.errorDetail?.name, "Forbidden", `leaveGroup error: ${JSON.stringify(err3.errorDetail)}`);
  // The connection survives refused operations.
  assert.equal(await svc.connectionExists(c.connectionId), true);
});

it("webpubsub.joinLeaveGroup.<g> allows only <g>; grantPermission then allows another; revoke removes it", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g1 = "only-" + randomSuffix();
  const g2 = "other-" + randomSuffix();
  const c = await client(t, svc, { userId: "scoped", roles: [`webpubsub.joinLeaveGroup.${g1}`, `webpubsub.sendToGroup.${g1}`] }, NO_RETRY);
  await c.client.joinGroup(g1);
  assert.equal(await svc.groupExists(g1), true);
  const e1 = await rejects(() => c.client.joinGroup(g2), "joinGroup(g2)");
  assert.equal(e1.errorDetail?.name, "Forbidden");
  assert.equal(await svc.groupExists(g2), false);

  // Scoped send role.
  const tag = "scoped-" + randomSuffix();
  await c.client.sendToGroup(g1, { tag }, "json");
  await c.groupMessages.waitFor((x) => x.data?.tag === tag);
  const e2 = await rejects(() => c.client.sendToGroup(g2, { tag }, "json"), "sendToGroup(g2)");
  assert.equal(e2.errorDetail?.name, "Forbidden");

  await svc.grantPermission(c.connectionId, "joinLeaveGroup", { targetName: g2 });
  assert.equal(await svc.hasPermission(c.connectionId, "joinLeaveGroup", { targetName: g2 }), true);
  await c.client.joinGroup(g2);
  assert.equal(await svc.groupExists(g2), true);
  await c.client.leaveGroup(g2);
  assert.equal(await svc.groupExists(g2), false);

  await svc.revokePermission(c.connectionId, "joinLeaveGroup", { targetName: g2 });
  const e3 = await rejects(() => c.client.joinGroup(g2), "joinGroup(g2) after revoke");
  assert.equal(e3.errorDetail?.name, "Forbidden");

  // A send permission granted over REST for all groups.
  await svc.grantPermission(c.connectionId, "sendToGroup");
  await c.client.sendToGroup(g2, "granted", "text"); // no member; must still ack success
});

it("groups in getClientAccessToken are joined automatically", async (t) => {
  const svc = serviceClient(sb, hubName());
  const ga = "auto-a-" + randomSuffix();
  const gb = "auto-b-" + randomSuffix();
  const c = await client(t, svc, { userId: "auto", groups: [ga, gb] });
  assert.equal(await svc.groupExists(ga), true);
  assert.equal(await svc.groupExists(gb), true);
  const members = await collectAll(svc.group(gb).listConnections());
  assert.deepEqual(members, [{ connectionId: c.connectionId, userId: "auto" }]);
  await svc.group(ga).sendToAll({ from: "ga" });
  const m = await c.groupMessages.waitFor((x) => x.data?.from === "ga");
  assert.equal(m.group, ga);
});

it("REST closeConnection with reason: SDK client (json protocol, no autoReconnect) sees disconnected with that reason, then stopped", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await client(t, svc, { userId: "kick" }, { protocol: WebPubSubJsonProtocol(), autoReconnect: false });
  const reason = "kicked by admin " + randomSuffix();
  await svc.closeConnection(c.connectionId, { reason });
  const d = await c.events.waitFor((e) => e.event === "disconnected", { what: "SDK disconnected event" });
  assert.equal(d.connectionId, c.connectionId);
  assert.equal(d.message?.message, reason, `disconnected message: ${JSON.stringify(d.message)}`);
  await c.events.waitFor((e) => e.event === "stopped", { what: "SDK stopped event" });
  assert.equal(await svc.connectionExists(c.connectionId), false);
});

it("REST closeUserConnections on a reliable SDK client: recovery is refused (1008), SDK reports disconnected with the reason", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await client(t, svc, { userId: "rk" }, { autoReconnect: false });
  const reason = "reliable kick";
  const t0 = Date.now();
  await svc.closeUserConnections("rk", { reason });
  // The reliable client tries to recover; the service must refuse with 1008, after which the
  // SDK emits disconnected (with the last disconnected message) and stops.
  const d = await c.events.waitFor((e) => e.event === "disconnected", { timeout: 40000, what: "SDK disconnected event" });
  assert.equal(d.message?.message, reason);
  await c.events.waitFor((e) => e.event === "stopped", { timeout: 10000 });
  // The recovery attempt must be refused at once (close 1008), not left to the SDK's 30 s give-up.
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 10000, `SDK reported disconnected only after ${elapsed} ms: recovery was not refused with 1008`);
  assert.equal(await svc.connectionExists(c.connectionId), false);
  assert.equal(c.events.filter((e) => e.event === "connected").length, 1);
});

it("SDK keepalive: with a short liveness timeout the service's pongs keep the connection up", async (t) => {
  // The JS client pings every keepAliveIntervalInMs and closes the socket when nothing was received
  // for keepAliveTimeoutInMs; only the service's {"type":"pong"} keeps a quiet connection alive.
  const svc = serviceClient(sb, hubName());
  const c = await client(
    t,
    svc,
    { userId: "quiet" },
    { protocol: WebPubSubJsonProtocol(), autoReconnect: false, keepAliveIntervalInMs: 500, keepAliveTimeoutInMs: 2000 },
  );
  // Observation window: 3x the liveness timeout with no traffic except the SDK's pings.
  await new Promise((r) => setTimeout(r, 6000));
  const bad = c.events.all.filter((e) => e.event === "disconnected" || e.event === "stopped");
  assert.deepEqual(bad, [], "the client dropped a quiet connection: no pong from the service?");
  assert.equal(await svc.connectionExists(c.connectionId), true);
});

it("sendEvent without an event handler is acked or refused, never left hanging", async (t) => {
  // No upstream is configured for this hub: the service must answer the ackId (success or an
  // error ack) so that the SDK call settles.
  const svc = serviceClient(sb, hubName());
  const c = await client(t, svc, { userId: "ev" }, NO_RETRY);
  let settled = false;
  const p = c.client
    .sendEvent("myevent", { a: 1 }, "json")
    .then(() => "acked")
    .catch((e) => `error:${e.errorDetail?.name ?? e.message}`)
    .finally(() => (settled = true));
  await waitFor(() => settled, { timeout: 15000, what: "sendEvent to settle (ack)" });
  t.diagnostic(`sendEvent without handler -> ${await p}`);
});
