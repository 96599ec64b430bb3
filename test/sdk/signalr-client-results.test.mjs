// SignalR client results (2024-12-01 `:invoke`) with the official @microsoft/signalr client:
// a handler registered with connection.on() that returns a value answers an invocation that
// carries an id, and the REST call answers 200 {"result", "protocol"} with it (MessagePack
// results converted to JSON). A handler that throws, or a method with no handler, makes the
// REST call fail with the client's error; a connection that does not exist is a 404.
//
// Server-to-client streams (`…/streams/{id}/:send`, `:complete`) are not tested here: the JS
// client only routes a StreamItem to a stream it opened itself with connection.stream(), and
// serverless mode answers such a stream invocation with an error, so it cannot observe one.
// internal/server tests them at the protocol level.
import assert from "node:assert/strict";
import { signalrSuite, hubName } from "./harness.mjs";

const { s, it } = signalrSuite();

const invoke = (hub, id, target, args) =>
  s.rest.call("POST", `/api/hubs/${encodeURIComponent(hub)}/connections/${encodeURIComponent(id)}/:invoke`, {
    body: { target, arguments: args },
    query: { "api-version": "2024-12-01" },
  });

for (const protocol of ["json", "messagepack"]) {
  it(`WebSockets/${protocol}: a handler's return value is the :invoke result`, async (tc) => {
    const hub = hubName("results");
    const h = await tc.client({ hub, userId: "alice" }, { protocol });
    const seen = [];
    h.conn.on("ask", async (n, text) => {
      seen.push([n, text]);
      return { doubled: n * 2, text: `${text}!`, list: [1, null, true], big: 9007199254740991 };
    });
    h.conn.on("fail", () => {
      throw new Error("nope");
    });

    const r = await invoke(hub, h.conn.connectionId, "ask", [21, "é✓"]);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {
      result: { doubled: 42, text: "é✓!", list: [1, null, true], big: 9007199254740991 },
      protocol,
    });
    assert.deepEqual(seen, [[21, "é✓"]]);

    // Method names match ignoring case, as the client lower-cases them.
    const upper = await invoke(hub, h.conn.connectionId, "ASK", [1, "x"]);
    assert.equal(upper.status, 200, upper.text);
    assert.equal(upper.json.result.doubled, 2);

    const failed = await invoke(hub, h.conn.connectionId, "fail", []);
    assert.equal(failed.status, 500, failed.text);
    assert.equal(failed.headers.get("x-ms-error-code"), "Error.Invocation.Failed");
    assert.match(failed.json.message, /nope/);

    const unhandled = await invoke(hub, h.conn.connectionId, "nobodyHandlesThis", []);
    assert.equal(unhandled.status, 500, unhandled.text);
    assert.match(unhandled.json.message, /Client didn't provide a result/);

    const missing = await invoke(hub, "no-such-connection", "ask", [1, "x"]);
    assert.equal(missing.status, 404, missing.text);
    assert.equal(missing.headers.get("x-ms-error-code"), "Error.Connection.NotExisted");

    // The connection is still fine: a plain send arrives.
    await s.rest.toConnection(hub, h.conn.connectionId, "newMessage", ["after"]);
    await h.inbox.waitSeen((m) => m.args[0] === "after", { what: "a send after the invocations" });
  });
}
