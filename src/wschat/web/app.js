// The chat page: renders what ChatConnection receives. Text from the network is only ever
// put into the page with textContent, never as HTML. With config.json's signIn, people sign
// in to the stage's issuer (signin.js) and the chat names them from their token.
//
// Each message has an action bar (shown on hover or when focus is in the message): a reaction
// button, and for your own messages Edit and Delete. Editing happens in place (Enter saves,
// Escape cancels; Up in an empty composer edits your last message); Delete asks first, in the
// message itself. Reactions show as chips under the message; a chip toggles yours.
//
// Rooms: unread badges come from hello's ``unread`` counts and messages arriving elsewhere; the
// open conversation, scrolled to its bottom, sends ``read`` with its newest id, and a ``read``
// event (from this tab or another of the same user) clears the badge. "Browse rooms" lists the
// public directory and has the "New room" form; the People column invites, and each person's
// menu moderates (the server says ``forbidden`` to those who may not). Moderation acts show as
// lines in the room; kicked, the room leaves the list; muted, the composer says until when.
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
  // The one open panel on a message: {kind: "edit" | "confirm" | "picker", key, id, draft}.
  panel: null,
  pendingEdits: new Map(), // message id -> the text sent, shown until its ``edited`` arrives
  readSent: new Map(), // conversation key -> the newest ``upTo`` this connection sent
  roles: new Map(), // room -> Map(user -> "owner" | "moderator"), as events told us
  mutes: new Map(), // room -> Map(user -> muted until, epoch ms)
  topics: new Map(), // room -> its topic, from the directory and roomCreated
  invitations: [], // [{room, by}]: invitations to us not acted on
  directory: { rooms: [], more: false, loading: false }, // the "Browse rooms" panel's list
  memberMenu: null, // {room, user}: the open menu in the People column
  creating: null, // the room a createRoom was sent for
};
const MUTE_SECONDS = 600; // "Mute 10 min"
const DIRECTORY_PAGE = 50;
const QUICK_EMOJIS = ["👍", "❤️", "😂", "🎉", "👀"];
const MAX_EMOJI_CHARS = 16; // the server's limit (protocol: react)
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
let muteTimer;
let readTimer = null;
const READ_EVERY_MS = 300;

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
  state.panel = null;
  state.pendingEdits.clear();
  state.readSent.clear();
  state.invitations = [];
  state.memberMenu = null;
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
  state.panel = null;
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
  if (unread && key !== state.active) {
    const badge = el("span", "badge", unread > 99 ? "99+" : String(unread));
    badge.setAttribute("aria-label", `${unread > 99 ? "over 99" : unread} unread`);
    button.append(badge);
  }
  if (key === state.active) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => setActive(key));
  item.append(button);
  return item;
}

function renderMembers() {
  const key = state.active;
  const members = isRoom(key) ? store.conversation(key).members : [connection?.name, key.slice(1)].filter(Boolean);
  const list = $("member-list");
  // The list is built anew: focus in it (a menu button or item) is put back where it was.
  const focusKey = list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  list.replaceChildren();
  const me = connection?.name;
  // Lobby is everyone's: nobody owns or moderates it, so it has no menus and no invitations.
  const moderated = isRoom(key) && key !== "lobby";
  const menu = state.memberMenu;
  if (menu && (menu.room !== key || !members.includes(menu.user))) state.memberMenu = null;
  for (const name of [...new Set(members)].sort()) {
    const item = el("li", "member");
    item.append(el("span", "member-name", name));
    const role = state.roles.get(key)?.get(name);
    if (role) item.append(el("span", "role", role === "owner" ? "owner" : "mod"));
    if (mutedUntil(key, name)) item.append(el("span", "role muted-tag", "muted"));
    if (name === me) item.append(el("span", "you", " (you)"));
    else if (moderated && role !== "owner") item.append(...memberMenu(key, name, role));
    list.append(item);
  }
  if (focusKey) list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
  $("member-count").textContent = `(${new Set(members).size})`;
  // Everyone is always in lobby (the page falls back to it): there is no leaving it.
  $("leave-button").hidden = !moderated;
  $("invite-form").hidden = !moderated;
}

// A person's menu in the People column: the toggle, and (when open) its items.
function memberMenu(room, user, role) {
  const open = state.memberMenu?.room === room && state.memberMenu?.user === user;
  // Its "⋯" is drawn by the style sheet: the item's text stays the person's name.
  const toggle = button("", () => toggleMemberMenu(room, user), {
    className: "member-menu-button", focusKey: `menu:${user}`, ariaLabel: `Actions for ${user}`, title: `Moderate ${user}`,
  });
  toggle.setAttribute("aria-haspopup", "menu");
  toggle.setAttribute("aria-expanded", String(open));
  if (!open) return [toggle];
  const items = el("ul", "member-menu");
  items.setAttribute("role", "menu");
  items.setAttribute("aria-label", `Actions for ${user}`);
  const entries = [
    role === "moderator"
      ? ["Remove moderator", { action: "setRole", room, user, role: "member" }]
      : ["Make moderator", { action: "setRole", room, user, role: "moderator" }],
    mutedUntil(room, user)
      ? ["Unmute", { action: "mute", room, user, seconds: 0 }]
      : ["Mute 10 min", { action: "mute", room, user, seconds: MUTE_SECONDS }],
    ["Kick", { action: "kick", room, user }],
  ];
  for (const [label, frame] of entries) {
    const entry = el("li");
    entry.setAttribute("role", "none");
    const item = button(label, () => {
      connection.send(frame);
      closeMemberMenu();
    }, { className: frame.action === "kick" ? "danger" : "", focusKey: `menu:${user}:${label}` });
    item.setAttribute("role", "menuitem");
    entry.append(item);
    items.append(entry);
  }
  items.addEventListener("keydown", (event) => {
    const buttons = [...items.querySelectorAll("button")];
    const at = buttons.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      closeMemberMenu();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      buttons[(at + step + buttons.length) % buttons.length].focus();
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      buttons[event.key === "Home" ? 0 : buttons.length - 1].focus();
    }
  });
  return [toggle, items];
}

function toggleMemberMenu(room, user) {
  const open = state.memberMenu?.room === room && state.memberMenu?.user === user;
  state.memberMenu = open ? null : { room, user };
  renderMembers();
  const target = open ? `menu:${user}` : null;
  if (target) focusMember(target);
  else $("member-list").querySelector('[role="menuitem"]')?.focus();
}

function closeMemberMenu() {
  const user = state.memberMenu?.user;
  state.memberMenu = null;
  renderMembers();
  if (user) focusMember(`menu:${user}`);
}

function focusMember(focusKey) {
  $("member-list").querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}

// When ``user`` (by default us) is muted in ``room`` until, or null.
function mutedUntil(room, user = connection?.name) {
  const until = state.mutes.get(room)?.get(user);
  return until && until > Date.now() ? until : null;
}

// The composer of a room we are muted in says so, until the mute ends.
function renderComposer() {
  const key = state.active;
  const input = $("message-input");
  const until = isRoom(key) ? mutedUntil(key) : null;
  input.disabled = Boolean(until);
  $("send-button").disabled = Boolean(until);
  $("composer").classList.toggle("muted", Boolean(until));
  input.placeholder = until
    ? `You are muted in #${key} until ${formatTime(until)}`
    : `Message ${isRoom(key) ? `#${key}` : key}`;
  clearTimeout(muteTimer);
  if (until) muteTimer = setTimeout(render, Math.min(until - Date.now() + 50, 2 ** 31 - 1));
}

function roleMap(room) {
  let roles = state.roles.get(room);
  if (!roles) state.roles.set(room, (roles = new Map()));
  return roles;
}

function setMuted(room, user, until) {
  let mutes = state.mutes.get(room);
  if (!mutes) state.mutes.set(room, (mutes = new Map()));
  if (until) mutes.set(user, until);
  else mutes.delete(user);
}

function forDuration(until) {
  const minutes = Math.round((until - Date.now()) / 60000);
  if (minutes < 1) return "for less than a minute";
  if (minutes < 120) return `for ${minutes} minute${minutes === 1 ? "" : "s"}`;
  return `until ${new Date(until).toLocaleString([], { dateStyle: "medium", timeStyle: "short" })}`;
}

// --- read marks -----------------------------------------------------------------------------

// The open conversation, shown to its bottom on a visible tab: tell the server (and so our
// other tabs) it is read up to its newest message. At most one ``read`` per READ_EVERY_MS:
// a burst of messages is read once, not a frame each (reads count against the rate limit).
function markRead() {
  if (readTimer === null) readTimer = setTimeout(sendRead, READ_EVERY_MS);
}

function sendRead() {
  readTimer = null;
  const key = state.active;
  if (!connection?.isOpen || document.visibilityState === "hidden") return;
  if (isRoom(key) ? !connection.rooms.has(key) : !connection.name) return;
  const box = $("messages");
  if (box.scrollHeight - box.scrollTop - box.clientHeight >= 40) return;
  const newest = store.lastId(key);
  if (!newest) return;
  const read = store.conversations.get(key)?.readUpTo;
  const sent = state.readSent.get(key);
  if ((read && read >= newest) || (sent && sent >= newest)) return;
  state.readSent.set(key, newest);
  connection.send({ action: "read", ...place(key), upTo: newest });
}

// --- the room directory ---------------------------------------------------------------------

function openDirectory({ focus = "list" } = {}) {
  const panel = $("rooms-panel");
  const wasOpen = !panel.hidden;
  panel.hidden = false;
  $("browse-rooms").setAttribute("aria-expanded", "true");
  $("app").classList.remove("menu-open");
  if (!wasOpen) loadDirectory();
  renderDirectory();
  if (focus === "create") $("create-name").focus();
  else {
    const first = $("directory-list").querySelector("button");
    // The list is still coming: its first Join takes focus when it arrives.
    state.directory.focusFirst = !first;
    (first ?? $("rooms-panel-close")).focus();
  }
}

function closeDirectory({ focus = true } = {}) {
  const panel = $("rooms-panel");
  state.directory.focusFirst = false;
  if (panel.hidden) return;
  panel.hidden = true;
  $("browse-rooms").setAttribute("aria-expanded", "false");
  if (focus) $("browse-rooms").focus();
}

function loadDirectory(after = null) {
  const directory = state.directory;
  if (!after) directory.rooms = [];
  directory.loading = true;
  const frame = { action: "rooms", limit: DIRECTORY_PAGE };
  if (after) frame.after = after;
  connection.send(frame);
}

function joinRoom(room) {
  if (connection.rooms.has(room)) {
    closeDirectory({ focus: false });
    setActive(room);
    return;
  }
  state.joining = room;
  connection.send({ action: "join", room });
}

function renderDirectory() {
  const directory = state.directory;
  const list = $("directory-list");
  const focusKey = list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  list.replaceChildren();
  for (const info of directory.rooms) {
    const item = el("li", "directory-item");
    const about = el("div", "directory-about");
    about.append(el("strong", "", `#${info.room}`));
    const members = Number.isFinite(info.members) ? info.members : 0;
    about.append(el("span", "directory-count", `${members} member${members === 1 ? "" : "s"}`));
    if (info.topic) about.append(el("span", "directory-topic", info.topic));
    item.append(about);
    const inIt = connection?.rooms.has(info.room);
    item.append(button(inIt ? "Open" : "Join", () => joinRoom(info.room), {
      focusKey: `dir:${info.room}`, ariaLabel: `${inIt ? "Open" : "Join"} #${info.room}`,
    }));
    list.append(item);
  }
  if (focusKey) list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
  $("directory-empty").hidden = directory.loading || directory.rooms.length > 0;
  $("directory-more").hidden = !directory.more;
  $("directory-more").disabled = directory.loading;
}

// --- invitations ----------------------------------------------------------------------------

function renderInvitations() {
  const box = $("invitations");
  box.replaceChildren();
  for (const invitation of state.invitations) {
    const line = el("p", "invitation");
    line.append(el("span", "", `${invitation.by} invited you to #${invitation.room}`));
    line.append(button(`Join #${invitation.room}`, () => {
      dismissInvitation(invitation.room);
      joinRoom(invitation.room);
    }, { className: "primary" }));
    line.append(button("Dismiss", () => dismissInvitation(invitation.room), {
      ariaLabel: `Dismiss the invitation to #${invitation.room}`,
    }));
    box.append(line);
  }
}

function dismissInvitation(room) {
  state.invitations = state.invitations.filter((invitation) => invitation.room !== room);
  renderInvitations();
}

const FRIENDLY_ERRORS = {
  rate_limited: "You are sending faster than the chat allows; wait a moment. Your message is back in the box.",
  private_room: "That room is private: only people invited to it can join.",
  room_exists: "A room by that name already exists: pick another name, or join it.",
  not_in_room: "You are not in that room any more: join it again to talk there.",
  no_such_user: "Nobody by that name is online right now.",
  unavailable: "The chat cannot store messages right now; try again in a moment.",
  no_such_message: "That message is not there any more (it was deleted).",
  too_many_reactions: "That message has as many different reactions as it can take.",
};

// Where a message lives, as edit/delete/react frames name it.
function place(key) {
  return isRoom(key) ? { room: key } : { with: key.slice(1) };
}

function button(label, onClick, { className = "", focusKey = "", title = "", ariaLabel = "" } = {}) {
  const node = el("button", className, label);
  node.type = "button";
  if (focusKey) node.dataset.focusKey = focusKey;
  if (title) node.title = title;
  if (ariaLabel) node.setAttribute("aria-label", ariaLabel);
  node.addEventListener("click", onClick);
  return node;
}

function messageItem(message, me, previous) {
  const item = el("li", "message");
  const mine = message.from === me;
  if (mine) item.classList.add("mine");
  // Consecutive messages from one person within five minutes read as one block.
  if (previous && previous.from === message.from && message.ts - previous.ts < 5 * 60 * 1000) {
    item.classList.add("continued");
  }
  item.append(el("span", "from", message.from));
  const panel = state.panel && state.panel.id === message.id && message.id ? state.panel : null;
  if (message.deleted) {
    item.classList.add("deleted");
    item.append(el("span", "text", "message deleted"));
  } else {
    const pendingText = state.pendingEdits.get(message.id);
    const text = el("span", "text", pendingText ?? message.text);
    if (pendingText !== undefined) text.classList.add("saving");
    item.append(text);
    if (panel?.kind === "edit") {
      text.hidden = true;
      item.append(editor(panel));
    } else if (message.editedAt || pendingText !== undefined) {
      const edited = el("span", "edited", pendingText !== undefined ? "(saving…)" : "(edited)");
      if (message.editedAt) edited.title = `edited ${new Date(message.editedAt).toLocaleString()}`;
      item.append(edited);
    }
  }
  const time = el("time", "", formatTime(message.ts));
  time.dateTime = new Date(message.ts).toISOString();
  item.append(time);
  item.dataset.id = message.id;
  if (!message.id || message.deleted) return item;

  // Focus anywhere in the message shows its action bar (a tap focuses the message itself).
  item.tabIndex = -1;
  item.dataset.focusKey = `${message.id}:item`;
  const picking = panel?.kind === "picker";
  const actions = el("span", "actions");
  actions.setAttribute("role", "group");
  actions.setAttribute("aria-label", `Actions for ${message.from}'s message`);
  const react = button("☺+", () => openPanel(picking ? null : { kind: "picker", id: message.id, draft: "" }), {
    className: "react-button", focusKey: `${message.id}:react`, title: "Add a reaction", ariaLabel: "Add reaction",
  });
  react.setAttribute("aria-expanded", String(picking));
  actions.append(react);
  if (mine) {
    actions.append(button("Edit", () => startEdit(message.id, `${message.id}:edit`), {
      focusKey: `${message.id}:edit`, title: "Edit (↑ in an empty message box edits your last message)",
    }));
    actions.append(button("Delete", () => openPanel({ kind: "confirm", id: message.id, returnTo: `${message.id}:delete` }), {
      focusKey: `${message.id}:delete`, className: "danger",
    }));
  }
  item.append(actions);
  if (panel) item.classList.add("open");
  if (panel?.kind === "confirm") item.append(deleteConfirm(message));
  if (picking) item.append(picker(message, me));
  const chips = reactionChips(message, me);
  if (chips) item.append(chips);
  return item;
}

// The message's text in a box: Enter saves, Shift+Enter is a new line, Escape cancels.
function editor(panel) {
  const box = el("span", "editor");
  const input = el("textarea");
  input.value = panel.draft;
  input.maxLength = 4000;
  input.rows = Math.min(8, panel.draft.split("\n").length);
  input.dataset.focusKey = `${panel.id}:editor`;
  input.setAttribute("aria-label", "Edit message");
  input.addEventListener("input", () => { panel.draft = input.value; });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      saveEdit();
    } else if (event.key === "Escape") {
      event.preventDefault();
      closePanel();
    }
  });
  const row = el("span", "editor-row");
  row.append(el("span", "hint", "Enter to save · Esc to cancel"));
  row.append(button("Cancel", closePanel, { focusKey: `${panel.id}:edit-cancel` }));
  row.append(button("Save", saveEdit, { className: "primary", focusKey: `${panel.id}:edit-save` }));
  box.append(input, row);
  return box;
}

function deleteConfirm(message) {
  const box = el("div", "confirm");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Confirm delete");
  box.append(el("span", "", "Delete this message? Everyone will see it as deleted."));
  box.append(button("Delete", () => confirmDelete(message.id), {
    className: "danger confirm-delete", focusKey: `${message.id}:confirm-delete`, ariaLabel: "Yes, delete it",
  }));
  box.append(button("Cancel", closePanel, { focusKey: `${message.id}:confirm-cancel` }));
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closePanel(); }
  });
  return box;
}

// A few quick emojis, and a box for any other.
function picker(message, me) {
  const box = el("div", "picker");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Pick a reaction");
  for (const emoji of QUICK_EMOJIS) {
    const mine = reactedWith(message, emoji, me);
    const quick = button(emoji, () => { closePanel({ focus: `${message.id}:react` }); toggleReaction(message, emoji); }, {
      className: "quick", focusKey: `${message.id}:quick:${emoji}`, ariaLabel: `React ${emoji}`,
    });
    quick.setAttribute("aria-pressed", String(mine));
    box.append(quick);
  }
  const form = el("form", "other-emoji");
  const input = el("input");
  input.value = state.panel.draft;
  input.maxLength = MAX_EMOJI_CHARS;
  input.size = 6;
  input.autocomplete = "off";
  input.placeholder = "other…";
  input.dataset.focusKey = `${message.id}:other`;
  input.setAttribute("aria-label", "Another emoji");
  input.addEventListener("input", () => { if (state.panel) state.panel.draft = input.value; });
  form.append(input, button("Add", () => form.requestSubmit(), { focusKey: `${message.id}:other-add` }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const emoji = input.value.trim();
    if (!emoji) return;
    if ([...emoji].length > MAX_EMOJI_CHARS || emoji.length > MAX_EMOJI_CHARS || /\s/.test(emoji)) {
      showNotice(`A reaction is one emoji (at most ${MAX_EMOJI_CHARS} characters, no spaces).`);
      return;
    }
    closePanel({ focus: `${message.id}:react` });
    toggleReaction(message, emoji);
  });
  box.append(form);
  box.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closePanel({ focus: `${message.id}:react` }); }
  });
  return box;
}

function reactedWith(message, emoji, me) {
  return Boolean(me && message.reactions?.[emoji]?.includes(me));
}

// "👍 2" chips under the message; yours pressed; the title says who.
function reactionChips(message, me) {
  const entries = Object.entries(message.reactions || {}).filter(([, users]) => users.length);
  if (!entries.length) return null;
  const box = el("div", "reactions");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Reactions");
  for (const [emoji, users] of entries) {
    const mine = reactedWith(message, emoji, me);
    const chip = button("", () => toggleReaction(message, emoji), {
      className: mine ? "chip mine" : "chip", focusKey: `${message.id}:chip:${emoji}`, title: users.join(", "),
    });
    chip.append(el("span", "emoji", emoji), " ", el("span", "count", String(users.length)));
    chip.setAttribute("aria-pressed", String(mine));
    box.append(chip);
  }
  return box;
}

// --- changing messages ----------------------------------------------------------------------

function openPanel(panel, { focus } = {}) {
  state.panel = panel ? { key: state.active, ...panel } : null;
  render();
  const target = focus ?? (panel && {
    edit: `${panel.id}:editor`, confirm: `${panel.id}:confirm-delete`, picker: `${panel.id}:quick:${QUICK_EMOJIS[0]}`,
  }[panel.kind]);
  if (target) focusIn(target);
}

// Close the open panel; focus goes back to ``focus`` (a focus key), to where the panel was
// opened from, or to the composer.
function closePanel({ focus } = {}) {
  const back = focus ?? state.panel?.returnTo;
  state.panel = null;
  render();
  if (!back || !focusIn(back)) $("message-input").focus();
}

function focusIn(focusKey) {
  const node = $("message-list").querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
  if (!node) return false;
  node.focus();
  if (node.tagName === "TEXTAREA" || node.tagName === "INPUT") node.setSelectionRange(node.value.length, node.value.length);
  node.closest("li")?.scrollIntoView({ block: "nearest" });
  return true;
}

// Edit your message ``id`` in place; ``returnTo``: the focus key focus goes back to after
// (the composer when none).
function startEdit(id, returnTo = null) {
  const message = store.message(state.active, id);
  if (!message || message.deleted || message.from !== connection?.name) return;
  openPanel({ kind: "edit", id, returnTo, draft: state.pendingEdits.get(id) ?? message.text });
}

function lastOwnMessage(key) {
  const me = connection?.name;
  const messages = store.sorted(key);
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    if (messages[i].from === me && !messages[i].deleted) return messages[i];
  }
  return null;
}

function saveEdit() {
  const panel = state.panel;
  if (!panel || panel.kind !== "edit") return;
  const message = store.message(panel.key, panel.id);
  const text = panel.draft;
  if (!message || message.deleted) { closePanel(); return; }
  if (!text.trim()) { openPanel({ kind: "confirm", id: panel.id }); return; } // emptied: delete?
  if (text === (state.pendingEdits.get(panel.id) ?? message.text)) { closePanel(); return; }
  state.pendingEdits.set(panel.id, text);
  connection.send({ action: "edit", ...place(panel.key), id: panel.id, message: text });
  closePanel();
}

function confirmDelete(id) {
  const key = state.panel?.key ?? state.active;
  connection.send({ action: "delete", ...place(key), id });
  closePanel({ focus: "" }); // the message is going: back to the composer
}

function toggleReaction(message, emoji) {
  const on = !reactedWith(message, emoji, connection?.name);
  connection.send({ action: "react", ...place(state.active), id: message.id, emoji, on });
}

function renderMessages() {
  const key = state.active;
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const previousHeight = box.scrollHeight;
  const list = $("message-list");
  // The list is built anew: focus in it (a button, the edit box) is put back where it was.
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  const focusKey = focused?.dataset.focusKey;
  const selection = focused && "selectionStart" in focused ? [focused.selectionStart, focused.selectionEnd] : null;
  const panel = state.panel;
  if (panel && (panel.key !== key || !store.message(key, panel.id) || store.message(key, panel.id).deleted)) {
    state.panel = null;
  }
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
  if (focusKey) {
    const again = list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
    if (again) {
      again.focus({ preventScroll: true });
      if (selection && "setSelectionRange" in again) again.setSelectionRange(...selection);
    } else if (panel && !state.panel) $("message-input").focus(); // its message went
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
  $("title").title = (isRoom(key) && state.topics.get(key)) || "";
  document.title = `${$("title").textContent} · wschat`;
  renderLists();
  renderMembers();
  renderMessages();
  renderTyping();
  renderComposer();
  renderDirectory();
  renderInvitations();
  markRead();
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
    case "edited":
    case "deleted":
    case "reaction":
      if (frame.type !== "reaction") state.pendingEdits.delete(frame.id);
      if (!frame.known || frame.key !== state.active) return; // shows when that page is loaded
      break;
    case "ack":
      // Stored: the message event itself will replace the pending line.
      break;
    case "history":
      if (frame.before) state.keepOffset = true;
      break;
    case "joined":
      if (frame.name === me) {
        dismissInvitation(frame.room);
        if (state.joining === frame.room) {
          state.joining = null;
          closeDirectory({ focus: false });
          setActive(frame.room);
        }
        saved.set("rooms", [...connection.rooms]);
      } else addSystemLine(frame.room, `${frame.name} joined`);
      break;
    case "read":
      break; // the store moved the mark and the badge
    case "rooms": {
      const directory = state.directory;
      const known = new Set(directory.rooms.map((info) => info.room));
      for (const info of Array.isArray(frame.rooms) ? frame.rooms : []) {
        if (!info || typeof info.room !== "string" || known.has(info.room)) continue;
        known.add(info.room);
        directory.rooms.push(info);
        if (typeof info.topic === "string") state.topics.set(info.room, info.topic);
      }
      directory.more = Boolean(frame.more);
      directory.loading = false;
      if (directory.focusFirst) {
        directory.focusFirst = false;
        renderDirectory();
        if (document.activeElement === $("rooms-panel-close")) $("directory-list").querySelector("button")?.focus();
      }
      break;
    }
    case "roomCreated":
      if (typeof frame.room !== "string") return;
      if (frame.owner) roleMap(frame.room).set(frame.owner, "owner");
      if (frame.topic) state.topics.set(frame.room, frame.topic);
      addSystemLine(frame.room, `${frame.owner} created #${frame.room}${frame.private ? " (private: invite people to it)" : ""}${frame.topic ? ` — ${frame.topic}` : ""}`);
      if (state.creating === frame.room) {
        state.creating = null;
        state.joining = frame.room; // its joined follows
        $("create-form").reset();
      }
      break;
    case "invited":
      if (frame.user === me && frame.by !== me) {
        if (!connection.rooms.has(frame.room) && !state.invitations.some((i) => i.room === frame.room)) {
          state.invitations.push({ room: frame.room, by: frame.by });
        }
      } else if (frame.by === me) {
        addSystemLine(frame.room, `${frame.by} invited ${frame.user}`);
        showNotice(`Invited ${frame.user} to #${frame.room}.`);
      }
      break;
    case "roleChanged":
      if (frame.role === "moderator") roleMap(frame.room).set(frame.user, "moderator");
      else roleMap(frame.room).delete(frame.user);
      if (connection.rooms.has(frame.room)) {
        addSystemLine(frame.room, frame.role === "moderator"
          ? `${frame.by} made ${frame.user} a moderator`
          : `${frame.by} removed ${frame.user} as moderator`);
      }
      break;
    case "muted":
      setMuted(frame.room, frame.user, typeof frame.until === "number" ? frame.until : null);
      if (connection.rooms.has(frame.room)) {
        addSystemLine(frame.room, typeof frame.until === "number"
          ? `${frame.by} muted ${frame.user} ${forDuration(frame.until)}`
          : `${frame.by} unmuted ${frame.user}`);
      }
      break;
    case "kicked":
      if (frame.user === me) {
        // Out of the room on every tab: it leaves the list (connection.js dropped it).
        store.conversations.delete(frame.room);
        state.notices.delete(frame.room);
        forgetTyping(frame.room);
        saved.set("rooms", [...connection.rooms]);
        showNotice(`${frame.by} removed you from #${frame.room}.`);
        if (state.active === frame.room) setActive("lobby");
      } else {
        stopTyping(frame.room, frame.user);
        addSystemLine(frame.room, `${frame.by} kicked ${frame.user}`);
      }
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
      // An edit still unanswered may have been lost with the old connection: show the stored
      // text (the catch-up brings it as it is now; an edit that did go through follows live).
      state.pendingEdits.clear();
      state.readSent.clear(); // a read sent to the old connection may have been lost
      for (const [room, count] of Object.entries(frame.unread || {})) {
        if (Number.isInteger(count) && count >= 0 && store.conversations.has(room)) store.conversation(room).unread = count;
      }
      $("name-input").value = frame.name;
      $("signed-in-name").textContent = frame.name;
      saved.set("name", frame.name);
      saved.set("rooms", frame.rooms);
      if (isRoom(state.active) && !frame.rooms.includes(state.active)) state.active = "lobby";
      break;
    case "error": {
      const friendly = FRIENDLY_ERRORS[frame.code] || frame.message;
      showNotice(`${friendly} (${frame.code})`);
      if (frame.action === "join" || frame.action === "createRoom") {
        state.joining = null;
        state.creating = null;
        if (frame.action === "createRoom" && !$("rooms-panel").hidden) $("create-name").focus();
      }
      if (frame.code === "muted" && typeof frame.message === "string") {
        // Muted without this page having seen it (e.g. before a reload): the server says how long.
        const seconds = Number(/for (\d+) s more/.exec(frame.message)?.[1]);
        if (seconds && isRoom(state.active)) setMuted(state.active, me, Date.now() + seconds * 1000);
      }
      if (frame.action === "edit") {
        // Not saved: the message shows its stored text again (errors do not say which edit).
        state.pendingEdits.clear();
      } else if (frame.action === "delete" || frame.action === "react") {
        // Nothing to give back.
      } else if (["rate_limited", "too_long", "not_in_room", "muted"].includes(frame.code)) {
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
    } else if (event.key === "ArrowUp" && !event.target.value && !event.shiftKey && !event.altKey
      && !event.ctrlKey && !event.metaKey && !event.isComposing) {
      // As in Slack: Up in an empty box edits your last message here.
      const last = lastOwnMessage(state.active);
      if (last) { event.preventDefault(); startEdit(last.id); }
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
  $("browse-rooms").addEventListener("click", () => {
    if ($("rooms-panel").hidden) openDirectory();
    else closeDirectory();
  });
  $("new-room").addEventListener("click", () => openDirectory({ focus: "create" }));
  $("rooms-panel-close").addEventListener("click", () => closeDirectory());
  $("rooms-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape") { event.preventDefault(); closeDirectory(); }
  });
  $("directory-more").addEventListener("click", () => {
    const last = state.directory.rooms[state.directory.rooms.length - 1];
    if (last) loadDirectory(last.room);
    renderDirectory();
  });
  $("create-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("create-name").value.trim().toLowerCase();
    const topic = $("create-topic").value.trim();
    const frame = { action: "createRoom", room, private: $("create-private").checked };
    if (topic) frame.topic = topic;
    state.creating = room;
    connection.send(frame);
  });
  $("invite-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const user = $("invite-input").value.trim();
    if (!user || !isRoom(state.active)) return;
    $("invite-input").value = "";
    connection.send({ action: "invite", room: state.active, user });
  });
  document.addEventListener("visibilitychange", markRead);
  window.addEventListener("focus", markRead);
  $("leave-button").addEventListener("click", () => {
    if (isRoom(state.active)) connection.send({ action: "leave", room: state.active });
  });
  $("load-older").addEventListener("click", () => connection.loadOlder(state.active));
  $("messages").addEventListener("scroll", () => {
    const box = $("messages");
    if (box.scrollTop === 0 && store.conversation(state.active).more) connection.loadOlder(state.active);
    markRead(); // scrolled down to the newest
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
