// The chat example's backend: express and the official @azure/web-pubsub server SDK, pointed at
// Switchboard's connection string.
//
//   GET  /api/negotiate?user=U             a client URL for U (getClientAccessToken: may join
//                                          every conversation's group)
//   GET  /api/conversations                the conversations
//   POST /api/conversations/:c/messages    {user, text} with an Idempotency-Key header: stored
//                                          first, then published to group conversation:<c>
//                                          with the same Idempotency-Key (persist-then-
//                                          broadcast; a retried POST does not send twice)
//   GET  /api/conversations/:c/history     the group's durable history, read from Switchboard
//                                          (GET /api/hubs/{hub}/groups/{group}/messages)
//   GET  /                                 the page (public/index.html, public/app.js)
//
// Messages are stored in one JSON file (rewritten on each message: fine for an example, not
// for production). Users are who the page says they are: put your login in front of it.
import express from "express";
import { WebPubSubServiceClient } from "@azure/web-pubsub";
import { createHmac } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const CONVERSATIONS = ["general", "random", "ops"];
export const groupOf = (conversation) => `conversation:${conversation}`;

const USER = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY = /^[A-Za-z0-9_.:-]{8,128}$/;
const MAX_TEXT = 2000;

/** Endpoint and AccessKey of a Web PubSub connection string. */
export function parseConnectionString(cs) {
  const parts = Object.fromEntries(
    cs
      .split(";")
      .filter(Boolean)
      .map((p) => {
        const i = p.indexOf("=");
        return [p.slice(0, i).trim().toLowerCase(), p.slice(i + 1).trim()];
      }),
  );
  if (!parts.endpoint || !parts.accesskey) throw new Error("connection string needs Endpoint and AccessKey");
  const u = new URL(parts.endpoint);
  if (parts.port) u.port = parts.port;
  return { endpoint: u.origin, key: parts.accesskey };
}

/** A server token (HS256 with the access key) for one REST path, as the SDK makes them. */
function serverToken(key, audience) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ aud: audience, iat: now, exp: now + 300 })}`;
  return `${head}.${createHmac("sha256", Buffer.from(key, "utf8")).update(head).digest("base64url")}`;
}

/** The message store: one JSON file, {messages: {id: message}}. */
class Store {
  constructor(file) {
    this.file = file;
    this.messages = new Map();
    if (file && existsSync(file)) {
      for (const m of Object.values(JSON.parse(readFileSync(file, "utf8")).messages ?? {})) this.messages.set(m.id, m);
    }
  }
  get(id) {
    return this.messages.get(id);
  }
  put(m) {
    this.messages.set(m.id, m);
    this.save();
  }
  save() {
    if (!this.file) return;
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ messages: Object.fromEntries(this.messages) }));
    renameSync(tmp, this.file); // a crash leaves the old file or the new one, never half of one
  }
}

const problem = (res, status, message) => res.status(status).json({ error: message });

/**
 * Starts the backend. connectionString: Switchboard's Web PubSub one. clientEndpoint: the
 * origin browsers reach Switchboard at, when it is not the connection string's (a proxy in
 * front of it). Resolves to {url, store, close()}.
 */
export async function startChat({ connectionString, hub = "chat", host = "127.0.0.1", port = 0, dataFile, clientEndpoint, log = () => {} }) {
  const { endpoint, key } = parseConnectionString(connectionString);
  const service = new WebPubSubServiceClient(connectionString, hub, { allowInsecureConnection: endpoint.startsWith("http:") });
  const store = new Store(dataFile);
  const app = express();
  app.disable("x-powered-by");
  app.use(express.json({ limit: "16kb" }));

  app.get("/api/conversations", (_req, res) => res.json({ conversations: CONVERSATIONS }));

  app.get("/api/negotiate", async (req, res, next) => {
    try {
      const user = String(req.query.user ?? "");
      if (!USER.test(user)) return problem(res, 400, "user must be 1-64 letters, digits, '_', '.' or '-'");
      const { url } = await service.getClientAccessToken({
        userId: user,
        roles: CONVERSATIONS.map((c) => `webpubsub.joinLeaveGroup.${groupOf(c)}`),
        expirationTimeInMinutes: 60,
      });
      let clientUrl = url;
      if (clientEndpoint) {
        const u = new URL(url);
        const to = new URL(clientEndpoint);
        u.protocol = to.protocol === "https:" ? "wss:" : "ws:";
        u.host = to.host;
        clientUrl = u.toString();
      }
      res.json({ url: clientUrl });
    } catch (e) {
      next(e);
    }
  });

  // Persist, then broadcast. The Idempotency-Key names the message: a retried POST (the page
  // retries a send whose answer it did not get) finds it stored and does not store it again;
  // if it was not published yet (the first attempt failed after storing, or is still
  // publishing), it publishes it with the same Idempotency-Key, and Switchboard delivers a key
  // it already accepted only once.
  app.post("/api/conversations/:conversation/messages", async (req, res, next) => {
    try {
      const conversation = req.params.conversation;
      if (!CONVERSATIONS.includes(conversation)) return problem(res, 404, `no conversation ${JSON.stringify(conversation)}`);
      const id = req.get("Idempotency-Key") ?? "";
      if (!KEY.test(id)) return problem(res, 400, "Idempotency-Key header needed: 8-128 letters, digits, '_', '.', ':' or '-'");
      const { user, text } = req.body ?? {};
      if (typeof user !== "string" || !USER.test(user)) return problem(res, 400, "user must be 1-64 letters, digits, '_', '.' or '-'");
      if (typeof text !== "string" || text.trim() === "" || text.length > MAX_TEXT) return problem(res, 400, `text must be 1-${MAX_TEXT} characters`);
      let message = store.get(id);
      if (message && (message.user !== user || message.text !== text || message.conversation !== conversation)) {
        return problem(res, 422, "this Idempotency-Key was used for another message");
      }
      const replayed = message?.published === true;
      if (!message) {
        message = { id, conversation, user, text, time: new Date().toISOString(), published: false };
        store.put(message);
      }
      if (!message.published) {
        const { published: _, ...payload } = message;
        let offset;
        await service.group(groupOf(conversation)).sendToAll(payload, {
          requestOptions: { customHeaders: { "Idempotency-Key": id } },
          onResponse: (r) => (offset = r.headers.get("x-switchboard-offset")),
        });
        message = { ...message, published: true, offset: offset ? Number(offset) : undefined };
        store.put(message);
        log(`message ${id} from ${user} to ${conversation} published (offset ${offset})`);
      }
      const { published: _, ...out } = message;
      res.status(replayed ? 200 : 201).json(out);
    } catch (e) {
      next(e);
    }
  });

  // The catch-up after a reload: the group's durable history as Switchboard keeps it (the
  // server token is made here; the SDK has no call for this Switchboard API).
  app.get("/api/conversations/:conversation/history", async (req, res, next) => {
    try {
      const conversation = req.params.conversation;
      if (!CONVERSATIONS.includes(conversation)) return problem(res, 404, `no conversation ${JSON.stringify(conversation)}`);
      const p = `/api/hubs/${encodeURIComponent(hub)}/groups/${encodeURIComponent(groupOf(conversation))}/messages`;
      const r = await fetch(`${endpoint}${p}?after=0&limit=1000`, {
        headers: { Authorization: `Bearer ${serverToken(key, endpoint + p)}` },
        signal: AbortSignal.timeout(10000),
      });
      if (r.status === 404) return res.json({ messages: [] }); // nothing kept yet
      if (!r.ok) throw new Error(`history of ${conversation}: ${r.status} ${await r.text()}`);
      const page = await r.json();
      res.json({
        offset: page.offset,
        epoch: page.epoch,
        messages: page.messages.filter((m) => m.dataType === "json").map((m) => ({ ...m.data, offset: m.offset })),
      });
    } catch (e) {
      next(e);
    }
  });

  app.use(express.static(path.join(HERE, "public"), { index: "index.html" }));
  app.use((err, _req, res, _next) => {
    // express.json's own refusals (malformed JSON, a body over the limit) keep their 4xx.
    if (err.status >= 400 && err.status < 500) return problem(res, err.status, `bad request body: ${err.message}`);
    log(`error: ${err.stack || err}`);
    problem(res, 502, `the message server did not take it: ${err.message}`);
  });

  const server = await new Promise((resolve, reject) => {
    const s = app.listen(port, host, () => resolve(s)).once("error", reject);
  });
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${server.address().port}`;
  return {
    url,
    store,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
