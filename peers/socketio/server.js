// A Socket.IO 4.8 chat server with connection state recovery and the Redis
// Streams adapter: the "peer" the harness checks (see README.md here).
//
// Usage: node server.js --port 3000 --redis redis://127.0.0.1:6379
//   (or PORT / REDIS_URL in the environment). Port 0 picks a free port.
// Prints `socketio peer listening on 127.0.0.1:<port>` once Redis is
// connected and the port is bound; GET /healthz answers 200 from then on.
//
// Wire contract (namespace "/"):
//   handshake auth  { device: "<sender name>" }   (+ pid/offset on recovery)
//   "join"  { conv }                      ack { ok: true } | { ok: false, error }
//   "send"  { conv, client_msg_id, body } ack { ok: true, status: "accepted",
//                                               offset } |
//                                             { ok: true, status: "duplicate" } |
//                                             { ok: false, error }
//   server -> room: "message" { conv, sender, client_msg_id, body }, offset
//     (the offset, appended by Socket.IO itself, is the entry id in the
//     adapter's Redis stream; clients send it back as auth.offset).
//
// Injectable flaw (for the harness's flaw test): SIO_FLAW=drop_recovered_first
// drops the first missed message of every successful recovery, while the
// client is still told `recovered: true`.
"use strict";

const http = require("node:http");
const { parseArgs } = require("node:util");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const FLAWS = new Set(["drop_recovered_first"]);

function readConfig() {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      redis: { type: "string" },
      host: { type: "string" },
    },
  });
  const portText = values.port ?? process.env.PORT ?? "3000";
  const port = Number.parseInt(portText, 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535 || String(port) !== portText.trim()) {
    throw new Error(`invalid port ${JSON.stringify(portText)}: expected an integer 0..65535`);
  }
  const flaw = process.env.SIO_FLAW || "";
  if (flaw !== "" && !FLAWS.has(flaw)) {
    throw new Error(`unknown SIO_FLAW ${JSON.stringify(flaw)}: known flaws are ${[...FLAWS].join(", ")}`);
  }
  return {
    port,
    host: values.host ?? process.env.HOST ?? "127.0.0.1",
    redisUrl: values.redis ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379",
    // Upstream defaults are 10 000 entries and 2 minutes. The stream is also
    // the authoritative log the harness reads back, so it is kept longer by
    // default; set SIO_STREAM_MAXLEN=10000 to test the upstream default.
    streamMaxLen: positiveInt("SIO_STREAM_MAXLEN", 1_000_000),
    maxDisconnectionMs: positiveInt("SIO_MAX_DISCONNECTION_MS", 120_000),
    flaw,
  };
}

function positiveInt(name, fallback) {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number.parseInt(text, 10);
  if (!Number.isInteger(value) || value <= 0 || String(value) !== text.trim()) {
    throw new Error(`invalid ${name} ${JSON.stringify(text)}: expected a positive integer`);
  }
  return value;
}

// Conversation ids and client message ids become Redis keys and room names:
// keep them short and printable so a hostile client cannot bloat keys.
const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX_BODY_BYTES = 64 * 1024;
const DEDUP_TTL_SECONDS = 24 * 60 * 60;

async function main() {
  const config = readConfig();
  const redis = createClient({ url: config.redisUrl });
  redis.on("error", (err) => console.error(`socketio peer: redis error: ${err.message}`));
  await redis.connect();

  let ready = false;
  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" });
      res.end(ready ? "ok\n" : "starting\n");
      return;
    }
    res.writeHead(404).end();
  });

  const io = new Server(httpServer, {
    transports: ["websocket"],
    connectionStateRecovery: {
      maxDisconnectionDuration: config.maxDisconnectionMs,
      skipMiddlewares: true,
    },
    adapter: createAdapter(redis, { maxLen: config.streamMaxLen }),
  });
  const nsp = io.of("/");

  if (config.flaw === "drop_recovered_first") injectDropRecoveredFirst(nsp.adapter);

  io.on("connection", (socket) => {
    if (!socket.recovered) {
      const device = socket.handshake.auth?.device;
      socket.data.device = typeof device === "string" && ID_PATTERN.test(device) ? device : socket.id;
    }

    socket.on("join", (request, ack) => {
      if (typeof ack !== "function") return;
      const conv = request?.conv;
      if (typeof conv !== "string" || !ID_PATTERN.test(conv)) {
        ack({ ok: false, error: "join needs { conv } with 1-128 characters [A-Za-z0-9_.:-]" });
        return;
      }
      socket.join(conv);
      ack({ ok: true });
    });

    socket.on("send", (request, ack) => {
      if (typeof ack !== "function") return;
      acceptSend(redis, nsp, socket, request).then(ack, (err) => {
        ack({ ok: false, error: `send failed: ${err.message}` });
      });
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(config.port, config.host, resolve);
  });
  ready = true;
  const { port } = httpServer.address();
  const flawNote = config.flaw ? ` (FLAW ${config.flaw} injected)` : "";
  console.log(`socketio peer listening on ${config.host}:${port}${flawNote}`);

  const shutdown = () => {
    io.close(() => {
      redis.quit().finally(() => process.exit(0));
    });
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

// Accepts one send: dedup by (conv, client_msg_id) across instances, then one
// broadcast through the adapter, whose Redis stream entry id becomes the
// message's offset (the same id every receiver gets as the last argument).
async function acceptSend(redis, nsp, socket, request) {
  const conv = request?.conv;
  const clientMsgId = request?.client_msg_id;
  const body = request?.body;
  if (typeof conv !== "string" || !ID_PATTERN.test(conv)) {
    return { ok: false, error: "send needs conv with 1-128 characters [A-Za-z0-9_.:-]" };
  }
  if (typeof clientMsgId !== "string" || !ID_PATTERN.test(clientMsgId)) {
    return { ok: false, error: "send needs client_msg_id with 1-128 characters [A-Za-z0-9_.:-]" };
  }
  if (typeof body !== "string" || Buffer.byteLength(body) > MAX_BODY_BYTES) {
    return { ok: false, error: `send needs a string body of at most ${MAX_BODY_BYTES} bytes` };
  }
  if (!socket.rooms.has(conv)) {
    return { ok: false, error: `not joined to ${conv}` };
  }
  const dedupKey = `sio:dedup:${conv}:${clientMsgId}`;
  const fresh = await redis.set(dedupKey, "pending", { NX: true, EX: DEDUP_TTL_SECONDS });
  if (fresh === null) {
    const offset = await redis.get(dedupKey);
    return { ok: true, status: "duplicate", offset: offset === "pending" ? null : offset };
  }
  const payload = { conv, sender: socket.data.device, client_msg_id: clientMsgId, body };
  // This is what `io.to(conv).emit("message", payload)` does, kept explicit
  // because the awaited broadcast leaves the offset appended to packet.data.
  const packet = { type: 2, data: ["message", payload], nsp: "/" };
  await nsp.adapter.broadcast(packet, { rooms: new Set([conv]), except: new Set(), flags: {} });
  const offset = packet.data.length === 3 ? packet.data[2] : null;
  if (offset === null) {
    // The adapter swallows a failed XADD and still delivers locally: the
    // message reached this instance's sockets but is in no log. Tell the
    // sender the truth: it is not durably accepted.
    return { ok: false, error: "broadcast was not persisted to the Redis stream" };
  }
  await redis.set(dedupKey, offset, { XX: true, EX: DEDUP_TTL_SECONDS });
  return { ok: true, status: "accepted", offset };
}

// The flaw test's bug: a recovery that silently loses its first missed packet.
function injectDropRecoveredFirst(adapter) {
  const restoreSession = adapter.restoreSession.bind(adapter);
  adapter.restoreSession = async (pid, offset) => {
    const session = await restoreSession(pid, offset);
    if (session && session.missedPackets.length > 0) {
      const dropped = session.missedPackets.shift();
      console.error(`socketio peer: FLAW dropped missed packet at offset ${dropped[dropped.length - 1]}`);
    }
    return session;
  };
}

main().catch((err) => {
  console.error(`socketio peer: ${err.message}`);
  process.exit(1);
});
