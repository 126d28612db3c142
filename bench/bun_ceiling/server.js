// The compiled ceiling of bench/run.py: bench/ceiling_server.py's broadcast server on Bun.
//
// Bun.serve's WebSockets are uWebSockets (C++) underneath: the frames are parsed, and a
// topic's subscribers written to, in native code; only the handlers below are JavaScript.
// Exactly what ceiling_server.py does: a client joins the rooms named by `?room=` (comma
// separated; lobby when none) when it connects, and a text frame {"room": ..., "text": ...}
// from a member of that room is broadcast as it came, byte for byte, to every member of the
// room, the sender included (server.publish: ws.publish would leave the sender out).
// Anything else (binary frames, bad JSON, a room it is not in) is ignored.
//
//     node_modules/.bin/bun server.js --port 0    # prints "listening on PORT" once bound

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const hostname = option("--host", "127.0.0.1");
const port = Number(option("--port", "0"));

const server = Bun.serve({
  hostname,
  port,
  fetch(req, srv) {
    const params = new URL(req.url).searchParams;
    const rooms = params
      .getAll("room")
      .flatMap((value) => value.split(","))
      .filter((room) => room !== "");
    if (srv.upgrade(req, { data: { rooms: rooms.length ? rooms : ["lobby"] } })) {
      return undefined;
    }
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    // As ceiling_server.py: messages up to 128 KiB, no compression (the load generator
    // offers none), no limit a broadcast could hit (websockets.broadcast has none either:
    // a slow client's frames pile up in its buffer).
    maxPayloadLength: 128 * 1024,
    perMessageDeflate: false,
    backpressureLimit: 1024 * 1024 * 1024,
    closeOnBackpressureLimit: false,
    open(ws) {
      for (const room of ws.data.rooms) ws.subscribe(room);
    },
    message(ws, message) {
      if (typeof message !== "string") return;
      let room;
      try {
        room = JSON.parse(message).room;
      } catch {
        return;
      }
      if (typeof room === "string" && ws.isSubscribed(room)) {
        server.publish(room, message);
      }
    },
    // Subscriptions end with the connection: nothing to clean up.
  },
});

console.log(`listening on ${server.port}`);

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.stop(true);
    process.exit(0);
  });
}
