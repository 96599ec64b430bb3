// The chat page. Bundled with @azure/web-pubsub-client into public/app.js by build.mjs
// (`make examples`); edit this file, then rebuild.
//
// - Connects with the official client's default protocol, json.reliable.webpubsub.azure.v1: a
//   dropped socket is recovered (the server replays what the page missed) without a new
//   connection.
// - Joins the group of every conversation, then reads each group's durable history through
//   the backend, so a reload catches up; messages are keyed by id, so one that comes both live
//   and from the history shows once.
// - Sends through the backend (persist-then-broadcast) with an Idempotency-Key made once per
//   message and reused on retries.
// - When the same user opens the chat elsewhere, the server (max_connections_per_user: 1,
//   close_oldest) sends this page a RemoveDuplicateSession notice and closes it: the page says
//   so and stops (it does not reconnect, which would close the other one).
import { WebPubSubClient } from "@azure/web-pubsub-client";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const user = params.get("user");

// What the tests (and the curious) can look at.
const debug = (window.chat = { deliveries: [], status: "starting", notice: null, ready: false, errors: [] });

const conversations = new Map(); // name → Map(id → message)
let current = params.get("c") || "general";

function setStatus(s) {
  debug.status = s;
  const el = $("#status");
  el.textContent = s;
  el.className = `status ${s.replace(/\s.*/, "")}`;
}

function add(m) {
  const msgs = conversations.get(m.conversation);
  if (!msgs || !m.id || msgs.has(m.id)) return;
  msgs.set(m.id, m);
  if (m.conversation === current) render();
  else renderList();
}

function renderList() {
  const ul = $("#conversations");
  ul.replaceChildren(
    ...[...conversations.keys()].map((name) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `?user=${encodeURIComponent(user)}&c=${encodeURIComponent(name)}`;
      a.textContent = `# ${name}`;
      a.dataset.conversation = name;
      if (name === current) a.className = "current";
      a.onclick = (e) => {
        e.preventDefault();
        current = name;
        history.replaceState(null, "", a.href);
        render();
      };
      li.append(a);
      return li;
    }),
  );
}

function render() {
  renderList();
  $("#title").textContent = `# ${current}`;
  const list = $("#messages");
  const msgs = [...(conversations.get(current)?.values() ?? [])].sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
  list.replaceChildren(
    ...msgs.map((m) => {
      const li = document.createElement("li");
      li.dataset.id = m.id;
      if (m.user === user) li.className = "mine";
      const who = document.createElement("b");
      who.textContent = m.user;
      const when = document.createElement("time");
      when.textContent = new Date(m.time).toLocaleTimeString();
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = m.text;
      li.append(who, " ", when, text);
      return li;
    }),
  );
  list.scrollTop = list.scrollHeight;
}

async function send(text) {
  const key = crypto.randomUUID(); // one per message, the same on every retry
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await fetch(`/api/conversations/${encodeURIComponent(current)}/messages`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify({ user, text }),
      });
      if (r.ok) return add({ ...(await r.json()) });
      if (r.status < 500 || attempt >= 3) throw new Error(`${r.status}: ${(await r.json().catch(() => ({}))).error ?? r.statusText}`);
    } catch (e) {
      if (attempt >= 3 || !(e instanceof TypeError)) throw e;
    }
    await new Promise((ok) => setTimeout(ok, 500 * attempt));
  }
}

async function catchUp(name) {
  const r = await fetch(`/api/conversations/${encodeURIComponent(name)}/history`);
  if (!r.ok) throw new Error(`history of ${name}: ${r.status}`);
  for (const m of (await r.json()).messages) add(m);
}

async function main() {
  if (!user) {
    $("#login").hidden = false;
    $("#chat").hidden = true;
    return;
  }
  $("#me").textContent = user;
  const names = (await (await fetch("/api/conversations")).json()).conversations;
  for (const name of names) conversations.set(name, new Map());
  if (!conversations.has(current)) current = names[0];
  render();

  const client = (window.client = new WebPubSubClient({
    getClientAccessUrl: async () => {
      const r = await fetch(`/api/negotiate?user=${encodeURIComponent(user)}`);
      if (!r.ok) throw new Error(`negotiate: ${r.status}`);
      return (await r.json()).url;
    },
  }));
  client.on("connected", (e) => {
    debug.connectionId = e.connectionId;
    setStatus("connected");
  });
  client.on("disconnected", (e) => setStatus(debug.notice ? "closed" : `reconnecting (${e.message || "connection lost"})`));
  client.on("stopped", () => setStatus(debug.notice ? "closed" : "stopped"));
  client.on("group-message", (e) => {
    const m = e.message.data;
    debug.deliveries.push(m?.id);
    if (m && typeof m === "object") add(m);
  });
  client.on("server-message", (e) => {
    const d = e.message.data;
    if (d && typeof d === "object" && d.event === "RemoveDuplicateSession") {
      debug.notice = d;
      $("#notice").hidden = false;
      $("#notice-text").textContent = `You opened this chat somewhere else, so this window is disconnected. (${d.reason})`;
      client.stop();
      setStatus("closed");
    }
  });

  await client.start();
  // Join first, then read the history: a message sent in between comes live, from the
  // history, or both, and shows once.
  for (const name of names) await client.joinGroup(`conversation:${name}`);
  for (const name of names) await catchUp(name);
  debug.ready = true;

  $("#compose").onsubmit = async (e) => {
    e.preventDefault();
    const input = $("#text");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    try {
      await send(text);
    } catch (err) {
      debug.errors.push(String(err));
      input.value = text;
      $("#error").textContent = `Not sent: ${err.message}`;
    }
  };
}

main().catch((e) => {
  debug.errors.push(String(e));
  setStatus("error");
  $("#error").textContent = String(e.message || e);
});
