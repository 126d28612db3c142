// The chat connection: one WebSocket, reconnect with backoff, catch-up after reconnect.
// No DOM here: the page listens to the events this emits.
//
// Events (EventTarget): "status" {state}, "hello" {name, rooms, connectionId},
// "frame" {frame} for every server frame after it is applied to the store.
//
// Messages change after they arrive (``edited``, ``deleted``, ``reaction``): the store applies
// those events to the messages it holds, and history pages carry each message as it is now, so
// a reconnect asks again for the newest messages it holds (up to REFRESH_MESSAGES of each
// conversation), not only for what is newer: what changed while it was away shows.
//
// Signed in (a ``token`` function, resolving to the ID token or null), each connect carries
// ?token= instead of ?name= (the stage's authorizer names the person). No token: status
// "signed-out", no connect. A handshake that fails before any with a token was accepted:
// status "refused", no reconnecting (the browser sees a refusal only as a close).

const MAX_BACKOFF_MS = 10000;
const HISTORY_PAGE = 50;
// Messages sent at the same moment can arrive out of id order, so catch-up starts this far
// before the newest id seen, and messages already shown are dropped by id.
const CATCH_UP_REWIND_MS = 10000;
const ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
// After a reconnect, the newest this many messages of each conversation are fetched again, for
// the edits, deletes and reactions made to them meanwhile (older ones stay as they were seen).
const REFRESH_MESSAGES = 200;

// The smallest message id of a moment a little before ``id``'s (ids start with 10 base32
// characters of epoch milliseconds).
export function rewound(id, ms = CATCH_UP_REWIND_MS) {
  let time = 0;
  for (const char of id.slice(0, 10)) time = time * 32 + ID_ALPHABET.indexOf(char);
  time = Math.max(0, time - ms);
  let prefix = "";
  for (let i = 0; i < 10; i += 1) {
    prefix = ID_ALPHABET[time % 32] + prefix;
    time = Math.floor(time / 32);
  }
  return prefix + "0".repeat(id.length - 10);
}

export class ChatConnection extends EventTarget {
  constructor(url, store, { token = null } = {}) {
    super();
    this.url = url;
    this.store = store;
    this.token = token;
    this.accepted = false; // a connect with a token was let in
    this.socket = null;
    this.attempt = 0;
    this.name = null;
    this.rooms = new Set(["lobby"]);
    this.pending = [];
    this.closedByUser = false;
  }

  // The URL for the next connection: our token (or name) and rooms ride along on $connect.
  connectUrl(token = null) {
    const url = new URL(this.url);
    if (token) url.searchParams.set("token", token);
    else if (this.name) url.searchParams.set("name", this.name);
    const extra = [...this.rooms].filter((room) => room !== "lobby");
    if (extra.length) url.searchParams.set("room", extra.join(","));
    return url.toString();
  }

  async open() {
    this.closedByUser = false;
    this.emit("status", { state: this.attempt ? "reconnecting" : "connecting" });
    let token = null;
    if (this.token) {
      try { token = await this.token(); } catch { token = null; }
      if (this.closedByUser) return;
      if (!token) {
        this.emit("status", { state: "signed-out" });
        return;
      }
    }
    let socket;
    let opened = false;
    try {
      socket = new WebSocket(this.connectUrl(token));
    } catch (error) {
      this.emit("status", { state: "error", detail: String(error) });
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      opened = true;
      if (token) this.accepted = true;
      this.attempt = 0;
      this.emit("status", { state: "open" });
      this.send({ action: "hello" });
      for (const frame of this.pending.splice(0)) this.send(frame);
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closedByUser) {
        this.emit("status", { state: "closed" });
        return;
      }
      // Refused handshakes (bad name, auth) close before "open" with code 1006. A token never
      // let in is taken as refused: retrying it would be refused forever.
      if (token && !opened && !this.accepted) {
        this.emit("status", { state: "refused", code: event.code });
        return;
      }
      const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.attempt) * (0.75 + Math.random() / 2);
      this.attempt += 1;
      this.emit("status", { state: "reconnecting", detail: `retrying in ${Math.round(delay / 100) / 10}s`, code: event.code });
      setTimeout(() => this.open(), delay);
    });
  }

  close() {
    this.closedByUser = true;
    if (this.socket) this.socket.close(1000, "bye");
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.isOpen) {
      // Kept until the next open; frames are small and few while offline.
      // Not kept: what a new connection asks for itself (hello, history, rooms) or what would
      // be stale by then (read marks are sent again for what is shown).
      if (!["hello", "history", "rooms", "read"].includes(frame.action)) this.pending.push(frame);
      return false;
    }
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame.type === "hello") {
      this.name = frame.name;
      this.rooms = new Set(frame.rooms);
      this.store.setRooms(frame.rooms);
      this.emit("hello", frame);
      this.catchUp();
    } else if ((frame.type === "joined" || frame.type === "left") && frame.name === this.name) {
      if (frame.type === "joined") this.rooms.add(frame.room);
      else this.rooms.delete(frame.room);
    } else if (frame.type === "renamed" && frame.from === this.name) {
      this.name = frame.to;
    } else if (frame.type === "kicked" && frame.user === this.name) {
      this.rooms.delete(frame.room); // out of it, on every tab: no catching up there
    }
    this.store.apply(frame, this.name);
    this.emit("frame", { frame });
    if (frame.type === "history" && frame.after && frame.more && frame.messages.length) {
      // Catching up and there is more: ask for the next page after the newest we got.
      const next = { action: "history", after: frame.messages[frame.messages.length - 1].id, limit: HISTORY_PAGE };
      if (frame.with) next.with = frame.with;
      else next.room = frame.room;
      this.send(next);
    }
  }

  // Older messages of a conversation, for scrolling back.
  loadOlder(key) {
    const before = this.store.oldestId(key);
    const frame = { action: "history", limit: HISTORY_PAGE };
    if (before) frame.before = before;
    if (key.startsWith("@")) frame.with = key.slice(1);
    else frame.room = key;
    this.send(frame);
  }

  // After (re)connecting: fetch what each room missed, or its newest page the first time.
  catchUp() {
    // "after" a little before the REFRESH_MESSAGES-th newest message held: what was missed,
    // and the messages held as they are now (pages follow one another until "more" is false).
    for (const room of this.rooms) {
      const from = this.store.refreshFrom(room, REFRESH_MESSAGES);
      if (from) this.send({ action: "history", room, after: rewound(from), limit: HISTORY_PAGE });
      else this.send({ action: "history", room, limit: HISTORY_PAGE });
      this.send({ action: "who", room });
    }
    for (const user of this.store.directUsers()) {
      const from = this.store.refreshFrom(`@${user}`, REFRESH_MESSAGES);
      const frame = { action: "history", with: user, limit: HISTORY_PAGE };
      if (from) frame.after = rewound(from);
      this.send(frame);
    }
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

// Conversations by key: a room name, or "@name" for direct messages with name.
// Messages are kept by id, so a message seen twice (live and in a catch-up page) shows once.
export class ChatStore {
  constructor() {
    this.conversations = new Map();
    this.directs = new Set();
  }

  conversation(key) {
    let conversation = this.conversations.get(key);
    if (!conversation) {
      // readUpTo: the user's read mark there (``read`` events), the newest id read.
      conversation = { key, messages: new Map(), members: [], more: null, unread: 0, notices: [], readUpTo: null };
      this.conversations.set(key, conversation);
    }
    return conversation;
  }

  setRooms(rooms) {
    for (const room of rooms) this.conversation(room);
  }

  directUsers() {
    return [...this.directs];
  }

  lastId(key) {
    const conversation = this.conversations.get(key);
    if (!conversation || conversation.messages.size === 0) return null;
    let last = null;
    for (const id of conversation.messages.keys()) if (last === null || id > last) last = id;
    return last;
  }

  oldestId(key) {
    const conversation = this.conversations.get(key);
    if (!conversation || conversation.messages.size === 0) return null;
    let first = null;
    for (const id of conversation.messages.keys()) if (first === null || id < first) first = id;
    return first;
  }

  // The id of the ``count``-th newest message held of ``key`` (the oldest, when fewer are held).
  refreshFrom(key, count) {
    const conversation = this.conversations.get(key);
    if (!conversation || conversation.messages.size === 0) return null;
    const ids = [...conversation.messages.keys()].sort();
    return ids[Math.max(0, ids.length - count)];
  }

  // How many messages held of ``key`` are newer than ``id`` (deleted ones do not count).
  countAfter(key, id) {
    let count = 0;
    for (const message of this.conversations.get(key)?.messages.values() ?? []) {
      if (message.id > id && !message.deleted) count += 1;
    }
    return count;
  }

  message(key, id) {
    return this.conversations.get(key)?.messages.get(id) ?? null;
  }

  sorted(key) {
    const conversation = this.conversations.get(key);
    if (!conversation) return [];
    return [...conversation.messages.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  addMessage(key, message) {
    const conversation = this.conversation(key);
    const known = conversation.messages.get(message.id);
    conversation.messages.set(message.id, known ? merged(known, message) : message);
    return !known;
  }

  // An ``edited``, ``deleted`` or ``reaction`` event, applied to the message it is about when
  // it is held (one not held yet shows as it is now when a history page brings it).
  change(frame, me) {
    if (typeof frame.id !== "string") return;
    let key;
    if (typeof frame.room === "string") key = frame.room;
    else if (typeof frame.from === "string" && typeof frame.to === "string") key = `@${frame.from === me ? frame.to : frame.from}`;
    else return;
    frame.key = key;
    const message = this.message(key, frame.id);
    if (!message) return;
    frame.known = true;
    if (frame.type === "edited") {
      if (message.deleted || (message.editedAt ?? 0) > (frame.editedAt ?? 0)) return;
      message.text = String(frame.text ?? "");
      message.editedAt = frame.editedAt;
    } else if (frame.type === "deleted") {
      message.deleted = true;
      message.text = "";
      message.reactions = {};
      delete message.editedAt;
    } else if (typeof frame.emoji === "string" && Array.isArray(frame.users)) {
      if (message.deleted) return;
      const reactions = { ...(message.reactions || {}) };
      if (frame.users.length) reactions[frame.emoji] = frame.users.map(String);
      else delete reactions[frame.emoji];
      message.reactions = reactions;
    }
  }

  directKey(message, me) {
    const other = message.from === me ? message.to : message.from;
    this.directs.add(other);
    return `@${other}`;
  }

  apply(frame, me) {
    switch (frame.type) {
      case "message":
        frame.isNew = this.addMessage(frame.room, frame);
        break;
      case "direct":
        frame.key = this.directKey(frame, me);
        frame.isNew = this.addMessage(frame.key, frame);
        break;
      case "history": {
        const key = frame.with ? `@${frame.with}` : frame.room;
        if (frame.with) this.directs.add(frame.with);
        const conversation = this.conversation(key);
        // A history message is the message as it is now: no "reactions" means none.
        for (const message of frame.messages) this.addMessage(key, { reactions: {}, ...message });
        // Without "after", "more" tells whether older messages exist.
        if (!frame.after) conversation.more = frame.more;
        frame.key = key;
        break;
      }
      case "presence":
        this.conversation(frame.room).members = frame.members;
        break;
      case "joined":
      case "left":
      case "renamed":
        this.conversation(frame.room).members = frame.members;
        break;
      case "edited":
      case "deleted":
      case "reaction":
        this.change(frame, me);
        break;
      case "read": {
        // Our read mark moved (on this tab or another of ours): what is past it stays unread.
        const key = typeof frame.room === "string" ? frame.room : typeof frame.with === "string" ? `@${frame.with}` : null;
        const conversation = key && this.conversations.get(key);
        if (!conversation || typeof frame.upTo !== "string") break;
        if (!conversation.readUpTo || frame.upTo > conversation.readUpTo) conversation.readUpTo = frame.upTo;
        conversation.unread = Math.min(conversation.unread, this.countAfter(key, conversation.readUpTo));
        frame.key = key;
        break;
      }
      case "kicked": {
        const conversation = this.conversations.get(frame.room);
        if (conversation) conversation.members = conversation.members.filter((name) => name !== frame.user);
        break;
      }
      default:
        break;
    }
  }
}

// The same message seen again (live and in a history page, or in a later page): the newer of
// the two. A delete is final; an edit is newer by its editedAt; reactions are the later copy's.
function merged(known, incoming) {
  if (known.deleted) return known;
  const result = { ...known, ...incoming };
  if (!incoming.deleted && (known.editedAt ?? 0) > (incoming.editedAt ?? 0)) {
    result.text = known.text;
    result.editedAt = known.editedAt;
  }
  return result;
}
