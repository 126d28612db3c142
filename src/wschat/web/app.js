// The chat page: renders what ChatConnection receives. Text from the network is only ever
// put into the page with textContent, never as HTML. With config.json's signIn, people sign
// in to the stage's issuer (signin.js) and the chat names them from their token.
import { ChatConnection, ChatStore } from "./connection.js";
import { SignIn } from "./signin.js";

const $ = (id) => document.getElementById(id);
const saved = {
  get: (key, fallback) => {
    try { return JSON.parse(localStorage.getItem(`wschat.${key}`)) ?? fallback; } catch { return fallback; }
  },
  set: (key, value) => {
    try { localStorage.setItem(`wschat.${key}`, JSON.stringify(value)); } catch { /* private mode */ }
  },
};

// config.json: {websocketUrl, signIn}; {unavailable: message} when it answers 503 (the issuer
// cannot be read); nothing from a static host without the gateway.
async function loadConfig() {
  const none = { websocketUrl: null, signIn: null };
  let response;
  try {
    response = await fetch("config.json", { cache: "no-store" });
  } catch {
    return none;
  }
  if (response.status === 503) {
    let message = "";
    try { message = (await response.json()).message; } catch { /* the text below */ }
    return { ...none, unavailable: message || "Sign-in is unavailable right now. Try again in a moment." };
  }
  if (!response.ok) return none;
  try { return { ...none, ...(await response.json()) }; } catch { return none; }
}

function websocketUrl(config) {
  // A page that signs in talks to its own stage only: its token goes nowhere else.
  const fromQuery = new URLSearchParams(location.search).get("ws");
  if (fromQuery && !config.signIn) return fromQuery;
  if (config.websocketUrl) return config.websocketUrl;
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/local`;
}

const store = new ChatStore();
const state = {
  active: saved.get("active", "lobby"),
  pending: new Map(), // clientId -> {key, text}
  notices: new Map(), // conversation key -> [{afterId, text}]
  scrollToBottom: true,
};
// Typing indicators (protocol: ``typing``): sent at most every TYPING_SEND_MS per conversation
// while the box has text; each person shown for TYPING_SHOW_MS after their last one, then faded.
const TYPING_SEND_MS = 3000;
const TYPING_SHOW_MS = 5000;
const TYPING_FADE_MS = 300; // matches .typing-text's transition
const typing = {
  who: new Map(), // conversation key -> Map(name -> the timer that ends their "typing")
  sentAt: new Map(), // conversation key -> when we last told it we were typing
  fadeTimer: null,
};
let connection;
let signIn = null;
let noticeTimer;
let signInAction = null;

function clientId() {
  return `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
}

// The sign-in panel stays until its button is used: "text" and what the button does.
function showSignInPanel(text, label = "Sign in", action = startSignIn) {
  $("signin-message").textContent = text;
  $("signin-action").textContent = label;
  signInAction = action;
  $("signin-panel").hidden = false;
}

async function startSignIn() {
  $("signin-panel").hidden = true;
  try {
    await signIn.begin();
  } catch (error) {
    showSignInPanel(error.message);
  }
}

function signOut() {
  connection.close();
  store.conversations.clear();
  store.directs.clear();
  state.pending.clear();
  for (const key of [...typing.who.keys()]) forgetTyping(key);
  render();
  if (!signIn.signOut()) {
    onStatus({ state: "signed-out" });
    showSignInPanel("You are signed out.");
  }
}

function addSystemLine(key, text) {
  const lines = state.notices.get(key) || [];
  lines.push({ afterId: store.lastId(key), text });
  state.notices.set(key, lines.slice(-50));
}

function isRoom(key) { return !key.startsWith("@"); }

function setActive(key) {
  state.active = key;
  saved.set("active", key);
  store.conversation(key).unread = 0;
  state.scrollToBottom = true;
  $("app").classList.remove("menu-open");
  $("menu-toggle").setAttribute("aria-expanded", "false");
  if (!isRoom(key) && connection && store.sorted(key).length === 0) connection.loadOlder(key);
  render();
  $("message-input").focus();
}

// --- rendering ------------------------------------------------------------------------------

function renderLists() {
  const roomList = $("room-list");
  roomList.replaceChildren();
  const rooms = connection ? [...connection.rooms].sort() : ["lobby"];
  for (const room of rooms) roomList.append(conversationItem(room, `#${room}`));
  const dmList = $("dm-list");
  dmList.replaceChildren();
  for (const user of store.directUsers().sort()) dmList.append(conversationItem(`@${user}`, `@${user}`));
}

function conversationItem(key, label) {
  const item = el("li");
  const button = el("button");
  button.type = "button";
  button.append(el("span", "", label));
  const unread = store.conversation(key).unread;
  if (unread && key !== state.active) button.append(el("span", "badge", String(unread)));
  if (key === state.active) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => setActive(key));
  item.append(button);
  return item;
}

function renderMembers() {
  const key = state.active;
  const members = isRoom(key) ? store.conversation(key).members : [connection?.name, key.slice(1)].filter(Boolean);
  const list = $("member-list");
  list.replaceChildren();
  for (const name of [...new Set(members)].sort()) {
    const item = el("li", "", name);
    if (name === connection?.name) item.append(el("span", "you", " (you)"));
    list.append(item);
  }
  $("member-count").textContent = `(${new Set(members).size})`;
  // Everyone is always in lobby (the page falls back to it): there is no leaving it.
  $("leave-button").hidden = !isRoom(key) || key === "lobby";
}

const FRIENDLY_ERRORS = {
  rate_limited: "You are sending faster than the chat allows; wait a moment. Your message is back in the box.",
  not_in_room: "You are not in that room any more: join it again to talk there.",
  no_such_user: "Nobody by that name is online right now.",
  unavailable: "The chat cannot store messages right now; try again in a moment.",
};

function messageItem(message, me, previous) {
  const item = el("li", "message");
  if (message.from === me) item.classList.add("mine");
  // Consecutive messages from one person within five minutes read as one block.
  if (previous && previous.from === message.from && message.ts - previous.ts < 5 * 60 * 1000) {
    item.classList.add("continued");
  }
  item.append(el("span", "from", message.from));
  item.append(el("span", "text", message.text));
  const time = el("time", "", formatTime(message.ts));
  time.dateTime = new Date(message.ts).toISOString();
  item.append(time);
  item.dataset.id = message.id;
  return item;
}

function renderMessages() {
  const key = state.active;
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const previousHeight = box.scrollHeight;
  const list = $("message-list");
  list.replaceChildren();
  const me = connection?.name;
  const notices = state.notices.get(key) || [];
  for (const notice of notices.filter((n) => n.afterId === null)) list.append(el("li", "system", notice.text));
  let previous = null;
  for (const message of store.sorted(key)) {
    list.append(messageItem(message, me, previous));
    previous = message;
    for (const notice of notices.filter((n) => n.afterId === message.id)) list.append(el("li", "system", notice.text));
  }
  for (const [, pending] of state.pending) {
    if (pending.key !== key) continue;
    const item = messageItem({ from: me, text: pending.text, ts: Date.now(), id: "" }, me);
    item.classList.add("pending");
    item.querySelector("time").textContent = "sending…";
    list.append(item);
  }
  $("load-older").hidden = !store.conversation(key).more;
  if (state.scrollToBottom || atBottom) box.scrollTop = box.scrollHeight;
  else if (state.keepOffset) box.scrollTop = box.scrollHeight - previousHeight + box.scrollTop;
  state.scrollToBottom = false;
  state.keepOffset = false;
}

// --- typing -------------------------------------------------------------------------------

// Someone is typing: in a room, or to us (then it shows in our conversation with them).
function onTyping(frame) {
  const me = connection.name;
  if (typeof frame.from !== "string" || frame.from === me) return;
  const key = typeof frame.room === "string" ? frame.room : `@${frame.from}`;
  let people = typing.who.get(key);
  if (!people) typing.who.set(key, (people = new Map()));
  clearTimeout(people.get(frame.from));
  people.set(frame.from, setTimeout(() => stopTyping(key, frame.from, { fade: true }), TYPING_SHOW_MS));
  if (key === state.active) renderTyping();
}

// ``name`` is no longer typing in ``key``: their time ran out (fade), or they sent, left, renamed.
function stopTyping(key, name, { fade = false } = {}) {
  const people = typing.who.get(key);
  if (!people || !people.has(name)) return;
  clearTimeout(people.get(name));
  people.delete(name);
  if (people.size === 0) typing.who.delete(key);
  if (key === state.active) renderTyping({ fade });
}

function forgetTyping(key) {
  for (const timer of typing.who.get(key)?.values() ?? []) clearTimeout(timer);
  typing.who.delete(key);
}

function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return "several people are typing…";
}

// The line under the open conversation. Its text changes only when who is typing does, so the
// live region announces each change once, not every event.
function renderTyping({ fade = false } = {}) {
  const node = $("typing-text");
  const text = typingText([...(typing.who.get(state.active)?.keys() ?? [])].sort());
  clearTimeout(typing.fadeTimer);
  if (text) {
    node.classList.remove("fading");
    if (node.textContent !== text) node.textContent = text;
    node.hidden = false;
  } else if (fade && !node.hidden) {
    node.classList.add("fading");
    typing.fadeTimer = setTimeout(() => renderTyping(), TYPING_FADE_MS);
  } else {
    node.classList.remove("fading");
    node.hidden = true;
    node.textContent = "";
  }
}

// The composer has text: tell the open conversation, at most every TYPING_SEND_MS, and only
// while connected (a typing frame kept for the next connection would be stale by then).
function sendTyping() {
  const key = state.active;
  if (!connection?.isOpen || !$("message-input").value.trim()) return;
  if (!isRoom(key) && key.slice(1) === connection.name) return;
  const now = Date.now();
  if (now - (typing.sentAt.get(key) ?? -Infinity) < TYPING_SEND_MS) return;
  typing.sentAt.set(key, now);
  connection.send(isRoom(key) ? { action: "typing", room: key } : { action: "typing", to: key.slice(1) });
}

function render() {
  const key = state.active;
  $("title").textContent = isRoom(key) ? `#${key}` : key;
  $("message-input").placeholder = `Message ${isRoom(key) ? `#${key}` : key}`;
  document.title = `${$("title").textContent} · wschat`;
  renderLists();
  renderMembers();
  renderMessages();
  renderTyping();
}

// --- frames ---------------------------------------------------------------------------------

function onFrame(frame) {
  const me = connection.name;
  switch (frame.type) {
    case "message":
    case "direct": {
      const key = frame.type === "message" ? frame.room : frame.key;
      if (frame.clientId) state.pending.delete(frame.clientId);
      if (frame.isNew && key !== state.active) store.conversation(key).unread += 1;
      stopTyping(key, frame.from); // what they were typing has arrived
      break;
    }
    case "typing":
      onTyping(frame);
      return; // nothing else on the page changes
    case "ack":
      // Stored: the message event itself will replace the pending line.
      break;
    case "history":
      if (frame.before) state.keepOffset = true;
      break;
    case "joined":
      if (frame.name === me) {
        if (state.joining === frame.room) { state.joining = null; setActive(frame.room); }
        saved.set("rooms", [...connection.rooms]);
      } else addSystemLine(frame.room, `${frame.name} joined`);
      break;
    case "left":
      if (frame.name === me) {
        store.conversations.delete(frame.room);
        forgetTyping(frame.room);
        saved.set("rooms", [...connection.rooms]);
        if (state.active === frame.room) setActive("lobby");
      } else {
        stopTyping(frame.room, frame.name);
        addSystemLine(frame.room, `${frame.name} left`);
      }
      break;
    case "renamed":
      stopTyping(frame.room, frame.from);
      addSystemLine(frame.room, `${frame.from} is now ${frame.to}`);
      break;
    case "hello":
      $("name-input").value = frame.name;
      $("signed-in-name").textContent = frame.name;
      saved.set("name", frame.name);
      saved.set("rooms", frame.rooms);
      if (isRoom(state.active) && !frame.rooms.includes(state.active)) state.active = "lobby";
      break;
    case "error": {
      const friendly = FRIENDLY_ERRORS[frame.code] || frame.message;
      showNotice(`${friendly} (${frame.code})`);
      if (frame.code === "rate_limited" || frame.code === "too_long" || frame.code === "not_in_room") {
        // The frame was not accepted: give its text back instead of losing it.
        const input = $("message-input");
        const texts = [...state.pending.values()].filter((p) => p.key === state.active).map((p) => p.text);
        if (texts.length && !input.value) input.value = texts.join("\n");
        state.pending.clear();
      }
      break;
    }
    default:
      if (frame.message && frame.connectionId) showNotice(`gateway: ${frame.message}`);
  }
  render();
}

function onStatus({ state: reported, detail }) {
  // Closed after signing out: say so, not "offline".
  const status = reported === "closed" && signIn && !signIn.signedIn ? "signed-out" : reported;
  const labels = {
    connecting: "connecting…", open: "connected", reconnecting: "reconnecting…", closed: "offline", error: "error",
    "signed-out": "signed out", refused: "refused",
  };
  $("app").dataset.online = String(status === "open");
  const pill = $("status");
  pill.dataset.state = status;
  pill.textContent = labels[status] || status;
  pill.title = detail || "";
  if (status === "refused") {
    signIn.forget();
    showSignInPanel("Signed-in session refused — sign in again.");
  } else if (status === "signed-out" && $("signin-panel").hidden) {
    showSignInPanel("Your session has ended — sign in again.");
  } else if (status === "open") {
    $("signin-panel").hidden = true;
  }
}

// --- forms ----------------------------------------------------------------------------------

function send(text) {
  const key = state.active;
  const id = clientId();
  const frame = isRoom(key)
    ? { action: "sendMessage", room: key, message: text, clientId: id }
    : { action: "direct", to: key.slice(1), message: text, clientId: id };
  state.pending.set(id, { key, text });
  typing.sentAt.delete(key); // they stop showing us typing when this arrives; the next key says so
  state.scrollToBottom = true;
  connection.send(frame);
  render();
}

function bindForms() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("message-input");
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send(text);
  });
  $("message-input").addEventListener("input", sendTyping);
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    connection.send({ action: "setName", name: $("name-input").value.trim() });
  });
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("join-input").value.trim().toLowerCase();
    $("join-input").value = "";
    if (connection.rooms.has(room)) { setActive(room); return; }
    state.joining = room;
    connection.send({ action: "join", room });
  });
  $("dm-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("dm-input").value.trim();
    $("dm-input").value = "";
    store.directs.add(user);
    setActive(`@${user}`);
  });
  $("leave-button").addEventListener("click", () => {
    if (isRoom(state.active)) connection.send({ action: "leave", room: state.active });
  });
  $("load-older").addEventListener("click", () => connection.loadOlder(state.active));
  $("messages").addEventListener("scroll", () => {
    const box = $("messages");
    if (box.scrollTop === 0 && store.conversation(state.active).more) connection.loadOlder(state.active);
  });
  $("signin-action").addEventListener("click", () => signInAction?.());
  $("sign-out").addEventListener("click", signOut);
  $("menu-toggle").addEventListener("click", () => {
    const open = $("app").classList.toggle("menu-open");
    $("menu-toggle").setAttribute("aria-expanded", String(open));
  });
}

// Signed in and ready to connect (true), or showing why not.
async function signedIn() {
  $("name-form").hidden = true; // the token names the person
  $("signed-in").hidden = false;
  $("sign-out").hidden = false;
  try {
    await signIn.completeRedirect();
  } catch (error) {
    onStatus({ state: "signed-out" });
    showSignInPanel(error.message);
    return false;
  }
  if (signIn.signedIn) return true;
  await startSignIn(); // to the issuer's login page
  return false;
}

async function main() {
  bindForms();
  const config = await loadConfig();
  if (config.signIn) signIn = new SignIn(config.signIn);
  const token = signIn ? () => signIn.idToken() : null;
  connection = new ChatConnection(websocketUrl(config), store, { token });
  if (!signIn) connection.name = saved.get("name", null);
  for (const room of saved.get("rooms", [])) connection.rooms.add(room);
  connection.addEventListener("frame", (event) => onFrame(event.detail.frame));
  connection.addEventListener("status", (event) => onStatus(event.detail));
  window.wschat = { connection, store }; // for the console and for tests
  render();
  if (config.unavailable) {
    onStatus({ state: "error", detail: config.unavailable });
    showSignInPanel(config.unavailable, "Try again", () => location.reload());
    return;
  }
  if (signIn && !(await signedIn())) return;
  connection.open();
}

main();
