// SDK-level helpers shared by the test files.
import { WebPubSubServiceClient } from "@azure/web-pubsub";
import { WebPubSubClient, WebPubSubJsonProtocol } from "@azure/web-pubsub-client";
import { Inbox, openWs, JSON_PROTOCOL, randomSuffix, withTimeout } from "./harness.mjs";

export { WebPubSubServiceClient, WebPubSubClient, WebPubSubJsonProtocol };

/** A server SDK client for `hub`, built from the server's printed connection string. */
export function serviceClient(sb, hub, { key } = {}) {
  const cs = key ? sb.connectionStringFor(key) : sb.connectionString;
  // No automatic retries: a 5xx or dropped request from the server must fail the test, not be
  // papered over by the pipeline's retry policy.
  return new WebPubSubServiceClient(cs, hub, { allowInsecureConnection: true, retryOptions: { maxRetries: 0 } });
}

/**
 * Connect a raw `ws` client with subprotocol json.webpubsub.azure.v1 (or `protocol`) using a
 * token from the server SDK. Waits for the `connected` system frame (which must be first).
 * Returns {ws, inbox, connectionId, userId, connected (parsed frame), close()}.
 */
export async function connectJson(svc, { userId, roles, groups, protocol = JSON_PROTOCOL } = {}) {
  const { url } = await svc.getClientAccessToken({ userId, roles, groups });
  const c = await openWs(url, { protocols: protocol });
  const first = await c.inbox.next({ timeout: 10000, what: "connected system frame" });
  if (!first.json || first.json.type !== "system" || first.json.event !== "connected") {
    c.close();
    throw new Error(`first frame is not a connected system message: ${first.text ?? "<binary>"}`);
  }
  return { ...c, connectionId: first.json.connectionId, userId: first.json.userId, connected: first.json };
}

/** Connect a raw `ws` client with no subprotocol. */
export async function connectRaw(svc, { userId, roles, groups } = {}) {
  const { url } = await svc.getClientAccessToken({ userId, roles, groups });
  return openWs(url);
}

/** Unique marker payload used as an ordering barrier. */
export function marker(tag = "marker") {
  return { marker: `${tag}-${randomSuffix(12)}` };
}

/**
 * Ordering barrier for "must NOT receive" assertions: sends a unique marker to the connection over
 * REST (sendToConnection) and waits until it arrives. Messages to one connection are delivered in
 * order, so anything that was going to arrive from earlier sends has arrived by then; callers then
 * check `conn.inbox.all` for the unwanted (uniquely tagged) message.
 */
export async function barrierJson(svc, conn, { timeout = 10000 } = {}) {
  const m = marker("barrier");
  await svc.sendToConnection(conn.connectionId, m);
  await conn.inbox.waitFor((f) => f.json?.type === "message" && f.json?.data?.marker === m.marker, {
    timeout,
    what: `barrier ${m.marker}`,
  });
  return conn.inbox.all;
}

/** JSON-protocol data frames (type=message) in a list of inbox items. */
export const dataFrames = (items) => items.filter((f) => f.json?.type === "message").map((f) => f.json);

/**
 * Create and start a @azure/web-pubsub-client WebPubSubClient; records every event.
 * Resolves after the SDK's `connected` event.
 */
export async function startSdkClient(svc, tokenOpts = {}, clientOpts = {}, { urlTransform } = {}) {
  const events = new Inbox("sdk events");
  const groupMessages = new Inbox("sdk group-message");
  const serverMessages = new Inbox("sdk server-message");
  const urls = [];
  const client = new WebPubSubClient(
    {
      getClientAccessUrl: async () => {
        const { url } = await svc.getClientAccessToken(tokenOpts);
        const u = urlTransform ? urlTransform(url) : url;
        urls.push(u);
        return u;
      },
    },
    clientOpts,
  );
  for (const ev of ["connected", "disconnected", "stopped", "rejoin-group-failed"]) {
    client.on(ev, (e) => events.push({ event: ev, ...e }));
  }
  client.on("group-message", (e) => {
    events.push({ event: "group-message" });
    groupMessages.push(e.message);
  });
  client.on("server-message", (e) => {
    events.push({ event: "server-message" });
    serverMessages.push(e.message);
  });
  await withTimeout(client.start(), 15000, "WebPubSubClient.start()");
  const connected = await events.waitFor((e) => e.event === "connected", {
    timeout: 10000,
    what: "SDK connected event",
  });
  return {
    client,
    events,
    groupMessages,
    serverMessages,
    urls,
    connectionId: connected.connectionId,
    userId: connected.userId,
    stop: () => {
      try {
        client.stop();
      } catch {
        /* ignore */
      }
    },
  };
}

/** Same as barrierJson but for a WebPubSubClient (waits on its server-message inbox). */
export async function barrierSdk(svc, c, { timeout = 10000 } = {}) {
  const m = marker("barrier");
  await svc.sendToConnection(c.connectionId, m);
  await c.serverMessages.waitFor((msg) => msg.data?.marker === m.marker, {
    timeout,
    what: `barrier ${m.marker}`,
  });
}

/** Run `fn`, expect it to reject; return the error. */
export async function rejects(fn, what = "operation") {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error(`expected ${what} to fail, but it succeeded`);
}

/** Collect an SDK paged iterator by pages. */
export async function collectPages(iterOrPromise) {
  // WebPubSubGroup.listConnections() returns Promise<PagedAsyncIterableIterator>.
  const iter = await iterOrPromise;
  const pages = [];
  for await (const page of iter.byPage()) pages.push([...page]);
  return pages;
}

export async function collectAll(iterOrPromise) {
  const iter = await iterOrPromise;
  const out = [];
  for await (const item of iter) out.push(item);
  return out;
}
