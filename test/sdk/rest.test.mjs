// REST operations through @azure/web-pubsub (WebPubSubServiceClient), with results observed by
// raw json.webpubsub.azure.v1 WebSocket clients.
import assert from "node:assert/strict";
import { hubName, waitFor, signJwt, decodeJwt, openWs, randomSuffix, withTimeout, sharedServer } from "./harness.mjs";
import { serviceClient, connectJson, barrierJson, dataFrames, rejects, collectPages, collectAll } from "./helpers.mjs";

const { sb, it } = sharedServer();

/** Connect and register cleanup. */
async function conn(t, svc, opts) {
  const c = await connectJson(svc, opts);
  t.after(() => c.close());
  return c;
}

const INVALID_FILTER_MESSAGE =
  "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'. (Parameter 'filter')";

// ---------------------------------------------------------------------------------------------

it("sendToAll: json, text and binary (Buffer and ArrayBuffer) reach every connection with exact payloads", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const a = await conn(t, svc, { userId: "ua" });
  const b = await conn(t, svc, {}); // anonymous

  await svc.sendToAll({ hello: "world", n: 1, arr: [1, "x", null, true] });
  await svc.sendToAll("plain text ✓", { contentType: "text/plain" });
  await svc.sendToAll(Buffer.from([0, 1, 2, 250, 255]));
  const ab = new Uint8Array([9, 8, 7]).buffer;
  await svc.sendToAll(ab);
  await svc.sendToAll("a json string"); // no contentType => application/json "\"a json string\""

  for (const c of [a, b]) {
    const got = [];
    for (let i = 0; i < 5; i++) {
      const f = await c.inbox.waitFor((x) => x.json?.type === "message", { what: `message #${i}` });
      assert.equal(f.isBinary, false, "json subprotocol frames must be text frames");
      got.push(f.json);
    }
    assert.deepEqual(got[0], {
      type: "message",
      from: "server",
      dataType: "json",
      data: { hello: "world", n: 1, arr: [1, "x", null, true] },
    });
    assert.deepEqual(got[1], { type: "message", from: "server", dataType: "text", data: "plain text ✓" });
    assert.deepEqual(got[2], { type: "message", from: "server", dataType: "binary", data: "AAEC+v8=" });
    assert.deepEqual(got[3], { type: "message", from: "server", dataType: "binary", data: "CQgH" });
    assert.deepEqual(got[4], { type: "message", from: "server", dataType: "json", data: "a json string" });
  }
});

it("sendToUser reaches every connection of that user only (user ids are case-sensitive)", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const u1a = await conn(t, svc, { userId: "u1" });
  const u1b = await conn(t, svc, { userId: "u1" });
  const u2 = await conn(t, svc, { userId: "u2" });
  const U1 = await conn(t, svc, { userId: "U1" });
  const tag = `to-u1-${randomSuffix()}`;
  await svc.sendToUser("u1", { tag });
  for (const c of [u1a, u1b]) {
    const f = await c.inbox.waitFor((x) => x.json?.data?.tag === tag);
    assert.deepEqual(f.json, { type: "message", from: "server", dataType: "json", data: { tag } });
  }
  for (const c of [u2, U1]) {
    await barrierJson(svc, c);
    assert.equal(c.inbox.find((x) => x.json?.data?.tag === tag), undefined, `user ${c.userId} must not get u1's message`);
  }
  // Sending to a user that does not exist still succeeds (202).
  await svc.sendToUser("nobody-" + randomSuffix(), "x", { contentType: "text/plain" });
});

it("sendToConnection reaches exactly that connection", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const a = await conn(t, svc, { userId: "same" });
  const b = await conn(t, svc, { userId: "same" });
  const tag = `to-a-${randomSuffix()}`;
  await svc.sendToConnection(a.connectionId, tag, { contentType: "text/plain" });
  const f = await a.inbox.waitFor((x) => x.json?.data === tag);
  assert.deepEqual(f.json, { type: "message", from: "server", dataType: "text", data: tag });
  await barrierJson(svc, b);
  assert.equal(b.inbox.find((x) => x.json?.data === tag), undefined);
  // Unknown connection: still 202 (no throw).
  await svc.sendToConnection("no-such-connection-" + randomSuffix(), { x: 1 });
});

it("group(...).sendToAll reaches members only, as from:group messages", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const g = "grp-" + randomSuffix();
  const m1 = await conn(t, svc, { userId: "m1", groups: [g] });
  const m2 = await conn(t, svc, { userId: "m2", groups: [g] });
  const out = await conn(t, svc, { userId: "out" });
  const tag = `g-${randomSuffix()}`;
  await svc.group(g).sendToAll({ tag });
  await svc.group(g).sendToAll("txt-" + tag, { contentType: "text/plain" });
  await svc.group(g).sendToAll(Buffer.from("bin-" + tag));
  for (const c of [m1, m2]) {
    const f1 = await c.inbox.waitFor((x) => x.json?.type === "message" && x.json.from === "group");
    const f2 = await c.inbox.waitFor((x) => x.json?.type === "message" && x.json.from === "group");
    const f3 = await c.inbox.waitFor((x) => x.json?.type === "message" && x.json.from === "group");
    for (const [f, dataType, data] of [
      [f1, "json", { tag }],
      [f2, "text", "txt-" + tag],
      [f3, "binary", Buffer.from("bin-" + tag).toString("base64")],
    ]) {
      assert.equal(f.json.type, "message");
      assert.equal(f.json.from, "group");
      assert.equal(f.json.group, g);
      assert.equal(f.json.dataType, dataType);
      assert.deepEqual(f.json.data, data);
      assert.ok(f.json.fromUserId == null, `REST-originated group message must not carry fromUserId (got ${f.json.fromUserId})`);
    }
  }
  await barrierJson(svc, out);
  assert.equal(dataFrames(out.inbox.all).filter((m) => m.from === "group").length, 0, "non-member received a group message");
  // Sending to an empty/nonexistent group is still 202.
  await svc.group("empty-" + randomSuffix()).sendToAll({ x: 1 });
});

it("connectionExists / userExists / groupExists: true and false", async (t) => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  const g = "exists-" + randomSuffix();
  const c = await conn(t, svc, { userId: "exists-user", groups: [g] });
  assert.equal(await svc.connectionExists(c.connectionId), true, "connectionExists(live)");
  assert.equal(await svc.connectionExists("nope-" + randomSuffix()), false, "connectionExists(unknown)");
  assert.equal(await svc.userExists("exists-user"), true, "userExists(live)");
  assert.equal(await svc.userExists("Exists-User"), false, "userExists is case-sensitive");
  assert.equal(await svc.userExists("nobody-" + randomSuffix()), false, "userExists(unknown)");
  assert.equal(await svc.groupExists(g), true, "groupExists(with member)");
  assert.equal(await svc.groupExists("nogroup-" + randomSuffix()), false, "groupExists(unknown)");
  // Hubs isolate everything.
  const other = serviceClient(sb, hubName("other"));
  assert.equal(await other.connectionExists(c.connectionId), false, "connection must not exist in another hub");
  assert.equal(await other.userExists("exists-user"), false, "user must not exist in another hub");
  assert.equal(await other.groupExists(g), false, "group must not exist in another hub");
  // A group exists only while it has members.
  await svc.group(g).removeConnection(c.connectionId);
  assert.equal(await svc.groupExists(g), false, "groupExists after its last member left");
  // After the connection is closed, existence turns false.
  c.close();
  await waitFor(async () => (await svc.connectionExists(c.connectionId)) === false, {
    what: "connectionExists false after the socket closed",
  });
  await waitFor(async () => (await svc.userExists("exists-user")) === false, {
    what: "userExists false after the socket closed",
  });
});

it("HEAD existence 404s carry x-ms-error-code Warning.*.NotExisted and no body", async () => {
  const svc = serviceClient(sb, hubName());
  const seen = {};
  const cap = (name) => ({
    onResponse: (raw) => {
      seen[name] = { status: raw.status, code: raw.headers.get("x-ms-error-code"), body: raw.bodyAsText ?? "" };
    },
  });
  assert.equal(await svc.connectionExists("nope", cap("conn")), false);
  assert.equal(await svc.userExists("nope", cap("user")), false);
  assert.equal(await svc.groupExists("nope", cap("group")), false);
  assert.deepEqual(seen, {
    conn: { status: 404, code: "Warning.Connection.NotExisted", body: "" },
    user: { status: 404, code: "Warning.User.NotExisted", body: "" },
    group: { status: 404, code: "Warning.Group.NotExisted", body: "" },
  });
});

/** Assert that `c` receives a `disconnected` system frame with `reason`, then the socket closes. */
async function expectKicked(c, reason) {
  const f = await c.inbox.waitFor((x) => x.json?.type === "system" && x.json?.event === "disconnected", {
    what: "disconnected system message",
  });
  assert.equal(f.json.message, reason, "disconnected.message must carry the REST reason");
  const info = await withTimeout(c.closed, 10000, "socket close after the disconnected message");
  return info;
}

async function expectNotKicked(svc, c) {
  await barrierJson(svc, c);
  assert.equal(
    c.inbox.find((x) => x.json?.type === "system" && x.json?.event === "disconnected"),
    undefined,
    `connection ${c.connectionId} must not be disconnected`,
  );
  assert.equal(c.closeInfo, undefined, "socket must still be open");
  assert.equal(await svc.connectionExists(c.connectionId), true);
}

it("closeConnection with reason: disconnected system message, then close; others unaffected", async (t) => {
  const svc = serviceClient(sb, hubName());
  const a = await conn(t, svc, { userId: "a" });
  const b = await conn(t, svc, { userId: "b" });
  const reason = "bye now " + randomSuffix();
  await svc.closeConnection(a.connectionId, { reason });
  const info = await expectKicked(a, reason);
  t.diagnostic(`close frame after closeConnection: ${JSON.stringify(info)}`);
  assert.equal(await svc.connectionExists(a.connectionId), false);
  await expectNotKicked(svc, b);
  // Unknown connection id: still 204 (no throw).
  await svc.closeConnection("unknown-" + randomSuffix(), { reason: "x" });
});

it("closeAllConnections with reason closes every connection of the hub (and only that hub)", async (t) => {
  const svc = serviceClient(sb, hubName());
  const otherSvc = serviceClient(sb, hubName("other"));
  const a = await conn(t, svc, { userId: "a" });
  const b = await conn(t, svc, {});
  const o = await conn(t, otherSvc, { userId: "a" });
  const reason = "maintenance " + randomSuffix();
  await svc.closeAllConnections({ reason });
  await expectKicked(a, reason);
  await expectKicked(b, reason);
  await expectNotKicked(otherSvc, o);
});

it("closeAllConnections honours excluded connections", async (t) => {
  const svc = serviceClient(sb, hubName());
  const a = await conn(t, svc, { userId: "a" });
  const keep = await conn(t, svc, { userId: "keep" });
  await svc.closeAllConnections({ reason: "r", excluded: [keep.connectionId] });
  await expectKicked(a, "r");
  await expectNotKicked(svc, keep);
});

it("closeUserConnections with reason closes only that user's connections", async (t) => {
  const svc = serviceClient(sb, hubName());
  const u1 = await conn(t, svc, { userId: "u1" });
  const u1b = await conn(t, svc, { userId: "u1" });
  const u2 = await conn(t, svc, { userId: "u2" });
  const reason = "user kicked";
  await svc.closeUserConnections("u1", { reason });
  await expectKicked(u1, reason);
  await expectKicked(u1b, reason);
  await expectNotKicked(svc, u2);
  assert.equal(await svc.userExists("u1"), false);
  await svc.closeUserConnections("ghost-" + randomSuffix());
});

it("group.closeAllConnections with reason closes only the group's members", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "room-" + randomSuffix();
  const m = await conn(t, svc, { userId: "m", groups: [g] });
  const n = await conn(t, svc, { userId: "n" });
  const reason = "room closed";
  await svc.group(g).closeAllConnections({ reason });
  await expectKicked(m, reason);
  await expectNotKicked(svc, n);
  assert.equal(await svc.groupExists(g), false);
});

it("group addConnection / removeConnection change delivery and membership", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "dyn-" + randomSuffix();
  const c = await conn(t, svc, { userId: "c" });
  assert.equal(await svc.groupExists(g), false);
  await svc.group(g).addConnection(c.connectionId);
  assert.equal(await svc.groupExists(g), true);
  const tag1 = "in-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: tag1 });
  const f = await c.inbox.waitFor((x) => x.json?.data?.tag === tag1);
  assert.equal(f.json.from, "group");
  assert.equal(f.json.group, g);
  // Adding twice is fine.
  await svc.group(g).addConnection(c.connectionId);
  await svc.group(g).removeConnection(c.connectionId);
  assert.equal(await svc.groupExists(g), false);
  const tag2 = "out-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: tag2 });
  await barrierJson(svc, c);
  assert.equal(c.inbox.find((x) => x.json?.data?.tag === tag2), undefined, "removed connection still got a group message");
  // Removing again is idempotent (204).
  await svc.group(g).removeConnection(c.connectionId);
});

it("group addUser / removeUser apply to all of the user's connections", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "users-" + randomSuffix();
  const a1 = await conn(t, svc, { userId: "alice" });
  const a2 = await conn(t, svc, { userId: "alice" });
  const bob = await conn(t, svc, { userId: "bob" });
  await svc.group(g).addUser("alice");
  assert.equal(await svc.groupExists(g), true);
  const tag1 = "u-in-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: tag1 });
  await a1.inbox.waitFor((x) => x.json?.data?.tag === tag1);
  await a2.inbox.waitFor((x) => x.json?.data?.tag === tag1);
  await barrierJson(svc, bob);
  assert.equal(bob.inbox.find((x) => x.json?.data?.tag === tag1), undefined);
  const members = await collectAll(svc.group(g).listConnections());
  assert.deepEqual(
    members.map((m) => m.connectionId).sort(),
    [a1.connectionId, a2.connectionId].sort(),
    "listConnections after addUser",
  );
  for (const m of members) assert.equal(m.userId, "alice");

  await svc.group(g).removeUser("alice");
  assert.equal(await svc.groupExists(g), false);
  const tag2 = "u-out-" + randomSuffix();
  await svc.group(g).sendToAll({ tag: tag2 });
  for (const c of [a1, a2]) {
    await barrierJson(svc, c);
    assert.equal(c.inbox.find((x) => x.json?.data?.tag === tag2), undefined, "removed user still got a group message");
  }
});

it("removeUserFromAllGroups and removeConnectionFromAllGroups", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g1 = "g1-" + randomSuffix();
  const g2 = "g2-" + randomSuffix();
  const u = await conn(t, svc, { userId: "u", groups: [g1, g2] });
  const v = await conn(t, svc, { userId: "v", groups: [g1, g2] });
  const w = await conn(t, svc, { userId: "w", groups: [g1] });

  await svc.removeUserFromAllGroups("u");
  await svc.removeConnectionFromAllGroups(v.connectionId);
  assert.equal(await svc.groupExists(g2), false, "g2 must be empty after both of its members were removed");
  assert.equal(await svc.groupExists(g1), true, "g1 still has w");
  const tag = "all-" + randomSuffix();
  await svc.group(g1).sendToAll({ tag });
  await svc.group(g2).sendToAll({ tag });
  await w.inbox.waitFor((x) => x.json?.data?.tag === tag);
  for (const c of [u, v]) {
    await barrierJson(svc, c);
    assert.equal(c.inbox.find((x) => x.json?.data?.tag === tag), undefined, `${c.userId} is still in a group`);
  }
  const g1members = await collectAll(svc.group(g1).listConnections());
  assert.deepEqual(g1members.map((m) => m.connectionId), [w.connectionId]);
  // Idempotent for unknown user / connection.
  await svc.removeUserFromAllGroups("ghost-" + randomSuffix());
  await svc.removeConnectionFromAllGroups("ghost-" + randomSuffix());
});

it("addConnectionsToGroups / removeConnectionsFromGroups with an OData filter", async (t) => {
  const svc = serviceClient(sb, hubName());
  const ga = "fa-" + randomSuffix();
  const gb = "fb-" + randomSuffix();
  const alice1 = await conn(t, svc, { userId: "alice" });
  const alice2 = await conn(t, svc, { userId: "alice" });
  const bob = await conn(t, svc, { userId: "bob" });
  const anon = await conn(t, svc, {});

  await svc.addConnectionsToGroups([ga, gb], "userId eq 'alice'");
  const inA = await collectAll(svc.group(ga).listConnections());
  const inB = await collectAll(svc.group(gb).listConnections());
  const alices = [alice1.connectionId, alice2.connectionId].sort();
  assert.deepEqual(inA.map((m) => m.connectionId).sort(), alices, "members of ga after addConnectionsToGroups");
  assert.deepEqual(inB.map((m) => m.connectionId).sort(), alices, "members of gb after addConnectionsToGroups");

  // A filter on connectionId and on groups membership.
  await svc.addConnectionsToGroups([gb], `connectionId eq '${bob.connectionId}'`);
  assert.deepEqual(
    (await collectAll(svc.group(gb).listConnections())).map((m) => m.connectionId).sort(),
    [...alices, bob.connectionId].sort(),
  );

  await svc.removeConnectionsFromGroups([ga], "userId eq 'alice'");
  assert.equal(await svc.groupExists(ga), false, "ga must be empty");
  await svc.removeConnectionsFromGroups([gb], `'${gb}' in groups and userId ne 'alice'`);
  assert.deepEqual(
    (await collectAll(svc.group(gb).listConnections())).map((m) => m.connectionId).sort(),
    alices,
    "bob removed from gb by the `in groups` filter; alices stay",
  );

  const tag = "flt-" + randomSuffix();
  await svc.group(gb).sendToAll({ tag });
  await alice1.inbox.waitFor((x) => x.json?.data?.tag === tag);
  await alice2.inbox.waitFor((x) => x.json?.data?.tag === tag);
  for (const c of [bob, anon]) {
    await barrierJson(svc, c);
    assert.equal(c.inbox.find((x) => x.json?.data?.tag === tag), undefined);
  }
});

it("grantPermission / revokePermission / hasPermission", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, { userId: "p" });
  const g = "perm-" + randomSuffix();
  assert.equal(await svc.hasPermission(c.connectionId, "joinLeaveGroup", { targetName: g }), false);
  assert.equal(await svc.hasPermission(c.connectionId, "sendToGroup", { targetName: g }), false);

  await svc.grantPermission(c.connectionId, "joinLeaveGroup", { targetName: g });
  assert.equal(await svc.hasPermission(c.connectionId, "joinLeaveGroup", { targetName: g }), true);
  assert.equal(
    await svc.hasPermission(c.connectionId, "joinLeaveGroup", { targetName: g + "-other" }),
    false,
    "a grant for one group must not apply to another",
  );
  assert.equal(await svc.hasPermission(c.connectionId, "sendToGroup", { targetName: g }), false);

  await svc.grantPermission(c.connectionId, "sendToGroup"); // all groups
  assert.equal(await svc.hasPermission(c.connectionId, "sendToGroup", { targetName: g }), true);
  assert.equal(await svc.hasPermission(c.connectionId, "sendToGroup", { targetName: "anything" }), true);

  await svc.revokePermission(c.connectionId, "joinLeaveGroup", { targetName: g });
  assert.equal(await svc.hasPermission(c.connectionId, "joinLeaveGroup", { targetName: g }), false);

  // Revoke for an unknown connection succeeds; check for an unknown connection is false.
  await svc.revokePermission("ghost-" + randomSuffix(), "sendToGroup", { targetName: g });
  assert.equal(await svc.hasPermission("ghost-" + randomSuffix(), "sendToGroup", { targetName: g }), false);
});

it("revokePermission without targetName -> 400 Error.BadRequest (invalid group name)", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, { userId: "rv" });
  const err = await rejects(() => svc.revokePermission(c.connectionId, "joinLeaveGroup"), "revoke without targetName");
  assert.equal(err.statusCode, 400, `status (error: ${err.message})`);
  const body = JSON.parse(err.response?.bodyAsText ?? "null");
  assert.equal(body?.code, "Error.BadRequest");
  assert.equal(body?.message, "Invalid group name. Valid group name should be in between 1 and 1024 characters long.");
});

it("grantPermission for an unknown connection -> 404 Info.Connection.NotExisted", async () => {
  const svc = serviceClient(sb, hubName());
  const id = "ghost" + randomSuffix();
  const err = await rejects(() => svc.grantPermission(id, "joinLeaveGroup", { targetName: "g" }), "grantPermission(unknown)");
  assert.equal(err.statusCode, 404, `status (error: ${err.message})`);
  assert.equal(err.response?.headers.get("content-type"), "application/json; charset=utf-8");
  assert.deepEqual(JSON.parse(err.response?.bodyAsText ?? "null"), {
    code: "Info.Connection.NotExisted",
    message: `Connection \`${id}\` is not found.`,
    target: "Connection",
    details: null,
    innererror: null,
  });
});

it("group.addConnection for an unknown connection -> 404 (Error.Connection.NotExisted)", async () => {
  const svc = serviceClient(sb, hubName());
  const id = "ghost" + randomSuffix();
  const err = await rejects(() => svc.group("g").addConnection(id), "addConnection(unknown)");
  assert.equal(err.statusCode, 404, `status (error: ${err.message})`);
  assert.equal(err.response?.headers.get("content-type"), "application/json; charset=utf-8");
  assert.deepEqual(JSON.parse(err.response?.bodyAsText ?? "null"), {
    code: "Error.Connection.NotExisted",
    message: `Connection \`${id}\` is not found.`,
    target: "Connection",
    details: null,
    innererror: null,
  });
});

it("group.listConnections paging with 6 members (top, maxPageSize, byPage)", async (t) => {
  const svc = serviceClient(sb, hubName());
  const g = "page-" + randomSuffix();
  const members = [];
  for (let i = 0; i < 6; i++) members.push(await conn(t, svc, { userId: `pu${i}`, groups: [g] }));
  const allIds = members.map((m) => m.connectionId).sort();
  const userOf = Object.fromEntries(members.map((m) => [m.connectionId, m.userId]));
  const grp = svc.group(g);

  const checkItems = (items, n, label) => {
    assert.equal(items.length, n, `${label}: item count`);
    const ids = items.map((i) => i.connectionId);
    assert.equal(new Set(ids).size, n, `${label}: duplicate connection ids ${JSON.stringify(ids)}`);
    for (const it of items) {
      assert.ok(allIds.includes(it.connectionId), `${label}: unknown connection ${it.connectionId}`);
      assert.equal(it.userId, userOf[it.connectionId], `${label}: userId of ${it.connectionId}`);
    }
  };

  // No options: everything.
  const plain = await collectAll(grp.listConnections());
  checkItems(plain, 6, "no options");
  assert.deepEqual(plain.map((i) => i.connectionId).sort(), allIds);

  // top=6 -> 1 page of 6
  let pages = await collectPages(grp.listConnections({ top: 6 }));
  assert.deepEqual(pages.map((p) => p.length), [6], "top=6 page sizes");
  checkItems(pages.flat(), 6, "top=6");
  checkItems(await collectAll(grp.listConnections({ top: 6 })), 6, "top=6 (items)");

  // top=3 -> 1 page of 3
  pages = await collectPages(grp.listConnections({ top: 3 }));
  assert.deepEqual(pages.map((p) => p.length), [3], "top=3 page sizes");
  checkItems(pages.flat(), 3, "top=3");

  // maxPageSize=2 -> 3 pages, 6 in all
  pages = await collectPages(grp.listConnections({ maxPageSize: 2 }));
  assert.deepEqual(pages.map((p) => p.length), [2, 2, 2], "maxPageSize=2 page sizes");
  checkItems(pages.flat(), 6, "maxPageSize=2");
  assert.deepEqual(pages.flat().map((i) => i.connectionId).sort(), allIds);
  checkItems(await collectAll(grp.listConnections({ maxPageSize: 2 })), 6, "maxPageSize=2 (items)");

  // top=5 & maxPageSize=2 -> 3 pages, 5 in all
  pages = await collectPages(grp.listConnections({ top: 5, maxPageSize: 2 }));
  assert.deepEqual(pages.map((p) => p.length), [2, 2, 1], "top=5,maxPageSize=2 page sizes");
  checkItems(pages.flat(), 5, "top=5,maxPageSize=2");
  checkItems(await collectAll(grp.listConnections({ top: 5, maxPageSize: 2 })), 5, "top=5,maxPageSize=2 (items)");

  // Missing group -> empty list
  assert.deepEqual(await collectAll(svc.group("missing-" + randomSuffix()).listConnections()), []);
});

it("getClientAccessToken: url shape, token claims, and the url connects", async (t) => {
  const hub = hubName("Tok");
  const svc = serviceClient(sb, hub);
  const tok = await svc.getClientAccessToken({ userId: "tu", roles: ["webpubsub.joinLeaveGroup"], groups: ["tg"] });
  const u = new URL(tok.url);
  assert.equal(u.protocol, "ws:");
  assert.equal(u.host, `127.0.0.1:${sb.port}`, "host equals the endpoint host");
  assert.equal(u.pathname, `/client/hubs/${hub}`);
  assert.equal(u.searchParams.get("access_token"), tok.token);
  assert.equal(tok.baseUrl, `ws://127.0.0.1:${sb.port}/client/hubs/${hub}`);
  const { payload } = decodeJwt(tok.token);
  assert.equal(payload.aud, `http://127.0.0.1:${sb.port}/client/hubs/${hub}`);
  assert.equal(payload.sub, "tu");

  const c = await conn(t, svc, { userId: "tu", groups: ["tg"] });
  assert.equal(c.userId, "tu");
  assert.equal(typeof c.connectionId, "string");
  assert.ok(c.connectionId.length > 0);
  assert.equal(await svc.groupExists("tg"), true, "token groups are joined on connect");
});

it("invalid OData filter -> 400 with the exact service message (sendToAll, group send, sendToUser, add/removeConnectionsToGroups)", async () => {
  const svc = serviceClient(sb, hubName());
  const cases = [
    ["sendToAll", () => svc.sendToAll("x", { filter: "invalid filter" })],
    ["group.sendToAll", () => svc.group("g").sendToAll({ a: 1 }, { filter: "invalid filter" })],
    ["sendToUser", () => svc.sendToUser("u", "x", { contentType: "text/plain", filter: "invalid filter" })],
    ["addConnectionsToGroups", () => svc.addConnectionsToGroups(["g"], "invalid filter")],
    ["removeConnectionsFromGroups", () => svc.removeConnectionsFromGroups(["g"], "invalid filter")],
  ];
  const failures = [];
  for (const [name, fn] of cases) {
    let err;
    try {
      await fn();
      failures.push(`${name}: succeeded`);
      continue;
    } catch (e) {
      err = e;
    }
    // The body is application/problem+json, which core-client does not parse, so the RestError's
    // message is the raw body text; the SDK's own tests read JSON.parse(error.message).message.
    let inner;
    try {
      inner = JSON.parse(err.message).message;
    } catch {
      inner = `<error.message is not JSON: ${err.message}>`;
    }
    if (err.statusCode !== 400) failures.push(`${name}: statusCode ${err.statusCode} (message ${JSON.stringify(err.message)})`);
    else if (inner !== INVALID_FILTER_MESSAGE) failures.push(`${name}: message ${JSON.stringify(inner)}`);
  }
  assert.deepEqual(failures, []);
});

it("invalid OData filter error body: problem+json shape and headers", async () => {
  const svc = serviceClient(sb, hubName());
  const err = await rejects(() => svc.sendToAll({ a: 1 }, { filter: "invalid filter" }), "sendToAll with invalid filter");
  assert.equal(err.statusCode, 400);
  const res = err.response;
  assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
  assert.equal(res.headers.get("x-ms-error-code"), "Error.BadRequest");
  const body = JSON.parse(res.bodyAsText);
  assert.equal(body.code, "Error.BadRequest");
  assert.equal(body.message, INVALID_FILTER_MESSAGE);
  assert.equal(body.target, "filter");
  assert.equal(body.title, "One or more validation errors occurred.");
  assert.equal(body.status, 400);
  assert.ok(body.errors && Array.isArray(body.errors.filter), `errors.filter must be an array, body=${res.bodyAsText}`);
  for (const k of ["type", "detail", "instance", "extensions"]) assert.ok(k in body, `body has "${k}"`);
});

it("responses carry api-supported-versions (SDK onResponse and raw fetch)", async () => {
  const hub = hubName();
  const svc = serviceClient(sb, hub);
  let raw;
  await svc.sendToAll({ a: 1 }, { onResponse: (r) => (raw = r) });
  assert.equal(raw.status, 202);
  assert.ok(raw.headers.get("api-supported-versions"), "api-supported-versions header missing on sendToAll");

  const url = `${sb.endpoint}/api/hubs/${hub}/:send?api-version=2024-12-01`;
  const token = signJwt({ aud: url }, sb.keys[0]);
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ hi: 1 }),
  });
  assert.equal(res.status, 202);
  assert.ok(res.headers.get("api-supported-versions"), "api-supported-versions header missing on raw POST :send");
});

it("REST auth: both access keys work; aud with or without query; wrong key / expired / no token -> 401", async (t) => {
  const hub = hubName();
  const c = await conn(t, serviceClient(sb, hub), { userId: "auth" });
  // SDK with the second key.
  const svc2 = serviceClient(sb, hub, { key: sb.keys[1] });
  await svc2.sendToConnection(c.connectionId, { via: "key2" });
  await c.inbox.waitFor((x) => x.json?.data?.via === "key2");
  assert.equal(await svc2.connectionExists(c.connectionId), true);

  const url = `${sb.endpoint}/api/hubs/${hub}/connections/${c.connectionId}/:send?api-version=2024-12-01`;
  const post = (token) =>
    fetch(url, {
      method: "POST",
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-type": "text/plain" },
      body: "raw",
    }).then(async (r) => {
      await r.arrayBuffer();
      return r.status;
    });
  const noQuery = url.split("?")[0];
  assert.equal(await post(signJwt({ aud: url }, sb.keys[1])), 202, "key 2, aud with query");
  assert.equal(await post(signJwt({ aud: noQuery }, sb.keys[0])), 202, "key 1, aud without query");
  assert.equal(await post(signJwt({ aud: url }, "not-the-key")), 401, "wrong key");
  assert.equal(await post(signJwt({ aud: url, exp: Math.floor(Date.now() / 1000) - 3600 }, sb.keys[0])), 401, "expired");
  assert.equal(await post(undefined), 401, "no token");
  assert.equal(
    await post(signJwt({ aud: `${sb.endpoint}/api/hubs/${hub}/:send` }, sb.keys[0])),
    401,
    "token for a different path",
  );
});

it("health: HEAD and GET /api/health answer 200", async () => {
  const head = await fetch(`${sb.endpoint}/api/health?api-version=2024-12-01`, { method: "HEAD" });
  assert.equal(head.status, 200);
  const get = await fetch(`${sb.endpoint}/api/health`);
  assert.equal(get.status, 200);
  await get.arrayBuffer();
});

it("client token signed with the second access key connects (raw ws)", async (t) => {
  const hub = hubName();
  const aud = `${sb.endpoint}/client/hubs/${hub}`;
  const token = signJwt({ aud, sub: "k2user" }, sb.keys[1]);
  const c = await openWs(`ws://127.0.0.1:${sb.port}/client/hubs/${hub}?access_token=${token}`, {
    protocols: "json.webpubsub.azure.v1",
  });
  t.after(() => c.close());
  const first = await c.inbox.next();
  assert.equal(first.json?.event, "connected");
  assert.equal(first.json?.userId, "k2user");
});

it("user ids and group names with reserved characters (/, space, %, ?, #, unicode) route correctly", async (t) => {
  const svc = serviceClient(sb, hubName());
  const user = "team/alice smith%20?#ü";
  const group = "room/1 #a?b=c&d%2F ✓";
  const c = await conn(t, svc, { userId: user, groups: [group] });
  assert.equal(c.userId, user);
  assert.equal(await svc.userExists(user), true, "userExists with reserved characters");
  assert.equal(await svc.userExists("team"), false, "the '/' must not split the user id");
  assert.equal(await svc.groupExists(group), true, "groupExists with reserved characters");
  assert.equal(await svc.groupExists("room"), false);
  await svc.sendToUser(user, { to: "user" });
  await c.inbox.waitFor((f) => f.json?.data?.to === "user", { what: "sendToUser with reserved characters" });
  await svc.group(group).sendToAll({ to: "group" });
  const g = await c.inbox.waitFor((f) => f.json?.data?.to === "group", { what: "group send with reserved characters" });
  assert.equal(g.json.group, group);
  const members = await collectAll(svc.group(group).listConnections());
  assert.deepEqual(members, [{ connectionId: c.connectionId, userId: user }]);
  await svc.group(group).removeUser(user);
  assert.equal(await svc.groupExists(group), false);
  await svc.group(group).addUser(user);
  assert.equal(await svc.groupExists(group), true);
  await svc.closeUserConnections(user, { reason: "reason with spaces & symbols ✓" });
  await expectKicked(c, "reason with spaces & symbols ✓");
});

it("hub names are case-insensitive (token for ChatHub, REST on chathub)", async (t) => {
  const base = hubName("Case");
  const upper = serviceClient(sb, base.toUpperCase());
  const lower = serviceClient(sb, base.toLowerCase());
  const c = await conn(t, upper, { userId: "cased" });
  assert.equal(await lower.connectionExists(c.connectionId), true);
  await lower.sendToUser("cased", { via: "lower" });
  await c.inbox.waitFor((f) => f.json?.data?.via === "lower");
});

it("sends with messageTtlSeconds and empty bodies are accepted (202) and delivered", async (t) => {
  const svc = serviceClient(sb, hubName());
  const c = await conn(t, svc, { userId: "ttl", groups: ["ttlg"] });
  let status;
  const onResponse = (r) => (status = r.status);
  await svc.sendToAll({ ttl: 1 }, { messageTtlSeconds: 60, onResponse });
  assert.equal(status, 202);
  await svc.group("ttlg").sendToAll("ttl-g", { contentType: "text/plain", messageTtlSeconds: 300 });
  await svc.sendToUser("ttl", { ttl: 3 }, { messageTtlSeconds: 0 });
  await c.inbox.waitFor((f) => f.json?.data?.ttl === 1);
  await c.inbox.waitFor((f) => f.json?.data === "ttl-g");
  await c.inbox.waitFor((f) => f.json?.data?.ttl === 3);
  await svc.sendToConnection(c.connectionId, "", { contentType: "text/plain", onResponse });
  assert.equal(status, 202, "empty text body must be accepted");
  const f = await c.inbox.waitFor((x) => x.json?.type === "message", { what: "empty text message" });
  assert.deepEqual(f.json, { type: "message", from: "server", dataType: "text", data: "" });
});
