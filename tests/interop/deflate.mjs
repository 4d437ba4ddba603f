// Interop client for WebSocket compression (permessage-deflate, RFC 7692): syncs the whole
// catalog over raw DDP (spec §1.1, §3.3) with one of three WebSocket stacks and writes every
// `result` frame, exactly as received, to a file, so the test can compare the stacks byte for
// byte. Driven by tests/e2e/interop.rs.
//
// Usage: node deflate.mjs <ws-url> <stack> <frames-out> [--compress-collections] [--timeout S]
//   stack: plain  Node's `ws` without the extension
//          ws     Node's `ws` with perMessageDeflate (what Node and browsers offer)
//          faye   faye-websocket with the `permessage-deflate` module (the `meteor` tool's stack)
//
// stdout: one JSON object per line, each with an `event`:
//   open    the WebSocket is open: {extensions: the server's Sec-WebSocket-Extensions answer, or ""}
//   synced  upToDate reached: {pages}
// Anything else (an error, a close, a timeout): a message on stderr and exit status 1.

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import deflate from "permessage-deflate";
import FayeWebSocket from "faye-websocket";
import WebSocket from "ws";

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "compress-collections": { type: "boolean", default: false },
    timeout: { type: "string", default: "60" },
  },
});
if (positionals.length !== 3) {
  console.error("usage: node deflate.mjs <ws-url> <plain|ws|faye> <frames-out> [--compress-collections]");
  process.exit(2);
}
const [url, stack, framesOut] = positionals;

function fail(message) {
  console.error(`deflate client (${stack}): ${message}`);
  process.exit(1);
}
process.on("uncaughtException", (error) => fail(`uncaught ${error?.stack ?? error}`));
const watchdog = setTimeout(() => fail("timed out"), Number(options.timeout) * 1000);

function emit(event, fields) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

// The same small interface over both libraries: send(text), onText(fn), extensions().
function open(onOpen, onText) {
  if (stack === "faye") {
    const socket = new FayeWebSocket.Client(url, [], { extensions: [deflate] });
    socket.on("open", () => onOpen(socket.headers["sec-websocket-extensions"] ?? "", (text) => socket.send(text)));
    socket.on("message", (event) => onText(event.data));
    socket.on("close", (event) => closed || fail(`closed: ${event.code} ${event.reason}`));
    socket.on("error", (event) => fail(`error: ${event.message}`));
    return () => socket.close();
  }
  if (stack !== "plain" && stack !== "ws") fail(`unknown stack ${stack}`);
  const socket = new WebSocket(url, { perMessageDeflate: stack === "ws", maxPayload: 256 << 20 });
  let extensions = "";
  socket.on("upgrade", (response) => {
    extensions = response.headers["sec-websocket-extensions"] ?? "";
  });
  socket.on("open", () => onOpen(extensions, (text) => socket.send(text)));
  socket.on("message", (data, isBinary) => (isBinary ? fail("binary frame") : onText(data.toString("utf8"))));
  socket.on("close", (code, reason) => closed || fail(`closed: ${code} ${reason}`));
  socket.on("error", (error) => fail(`error: ${error.message}`));
  return () => socket.close();
}

let closed = false;
const frames = [];
let send;
let nextId = 1;
let waiting = null;

function call(method, params) {
  const id = String(nextId++);
  send(JSON.stringify({ msg: "method", id, method, params }));
  return new Promise((resolve) => {
    waiting = { id, resolve };
  });
}

const close = open(
  async (extensions, sender) => {
    send = sender;
    emit("open", { extensions });
    send(JSON.stringify({ msg: "connect", version: "1", support: ["1"] }));
  },
  async (text) => {
    const message = JSON.parse(text);
    if (message.msg === "ping") send(JSON.stringify({ msg: "pong" }));
    if (message.msg === "connected") sync().catch((error) => fail(error?.stack ?? error));
    if (message.msg === "result" && waiting?.id === message.id) {
      frames.push(text);
      if (message.error) fail(`method error: ${text}`);
      waiting.resolve(message.result);
    }
  },
);

async function sync() {
  const syncOptions = options["compress-collections"] ? { compressCollections: true } : {};
  let token = { format: "1.1" };
  for (let page = 1; ; page++) {
    const result = await call("syncNewPackageData", [token, syncOptions]);
    token = result.syncToken;
    if (result.upToDate) {
      writeFileSync(framesOut, frames.join("\n"));
      emit("synced", { pages: page });
      closed = true;
      clearTimeout(watchdog);
      close();
      return;
    }
  }
}
