// The chat page: one WebSocket to the gateway (or ?ws=wss://... for a deployed stage).
// Messages are inserted as text nodes, never as HTML.
const params = new URLSearchParams(location.search);
const defaultUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/local`;
const url = params.get("ws") || defaultUrl;
const log = document.getElementById("log");
const status = document.getElementById("status");
const form = document.getElementById("send");
const input = document.getElementById("message");
let socket;
let retry = 0;

function show(text, kind = "message") {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  log.append(item);
  log.scrollTop = log.scrollHeight;
}

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function connect() {
  socket = new WebSocket(url);
  socket.addEventListener("open", () => { retry = 0; setStatus("open", "connected"); });
  socket.addEventListener("close", () => {
    setStatus("closed", "reconnecting…");
    retry = Math.min(retry + 1, 6);
    setTimeout(connect, 250 * 2 ** retry);
  });
  socket.addEventListener("message", (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch { show(event.data); return; }
    if (data.type === "message") show(`${data.from}: ${data.text}`);
    else if (data.type === "error") show(`error (${data.code}): ${data.message}`, "error");
    else if (data.message) show(`gateway: ${data.message}`, "error");
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!input.value.trim() || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ action: "sendMessage", message: input.value }));
  input.value = "";
});

connect();
