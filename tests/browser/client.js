// The browser test page's script: the npm DDP client `ddp.js` over the npm `sockjs-client`,
// forced to one SockJS transport. DDP itself (connect, ping/pong, method and subscription
// messages) is all ddp.js's; this file only ties its events to promises. run.mjs bundles
// it for the browser with esbuild on every run, and tests/browser.rs drives it.

import ddpJs from "ddp.js";
import SockJS from "sockjs-client";

// ddp.js 2 is Babel-compiled CommonJS that sets `exports.default`; under Node's ESM rules,
// which esbuild follows in this `"type": "module"` package, the default import is the whole
// `exports` object.
const DDP = ddpJs.default;

// Waits for the first of `events` whose message satisfies `accept(event, message)`; fails
// if the connection closes or the server answers with a DDP `error` first. ddp.js emits
// events asynchronously, so a wait set up right after sending cannot miss its answer.
// Listeners return nothing: ddp.js's event emitter drops a listener that returns `true`.
function next(ddp, events, accept) {
  return new Promise((resolve, reject) => {
    const handlers = events.map((event) => [
      event,
      (message) => {
        if (accept(event, message)) {
          stop();
          resolve({ event, message });
        }
      },
    ]);
    const onClose = () => {
      stop();
      reject(new Error(`the connection closed while waiting for ${events.join("/")}`));
    };
    const onError = (message) => {
      stop();
      reject(new Error(`DDP error from the server: ${JSON.stringify(message)}`));
    };
    const stop = () => {
      for (const [event, handler] of handlers) ddp.off(event, handler);
      ddp.off("disconnected", onClose);
      ddp.off("error", onError);
    };
    for (const [event, handler] of handlers) ddp.on(event, handler);
    ddp.on("disconnected", onClose);
    ddp.on("error", onError);
  });
}

// Opens ddp.js over sockjs-client restricted to `transport`, and resolves once DDP is
// connected, with the SockJS object (to tell which transport it used), the `connect`
// message ddp.js proposed and the server's `connected` answer (version negotiation).
async function open(serverUrl, transport) {
  let sockjs = null;
  const ddp = new DDP({
    endpoint: `${serverUrl}/sockjs`,
    // ddp.js calls `new SocketConstructor(endpoint)`; a constructor that returns an object
    // yields that object, so this plugs in sockjs-client with the forced transport.
    SocketConstructor: function ForcedTransportSockJS(url) {
      sockjs = new SockJS(url, null, { transports: [transport] });
      return sockjs;
    },
    // A failure must surface as an error here, not as a retry in ten seconds.
    autoReconnect: false,
  });
  let proposed = null;
  ddp.socket.on("message:out", (message) => {
    if (message.msg === "connect") proposed = message;
  });
  // ddp.js ignores a `failed` answer to its version proposal; watch for it so it fails
  // fast with the server's answer instead of waiting for the test's timeout.
  // ddp.js's own `connected` event carries no message: keep the server's answer here.
  let refused = null;
  let connected = null;
  ddp.socket.on("message:in", (message) => {
    if (message.msg === "connected") connected = message;
    if (message.msg === "failed") {
      refused = message;
      ddp.disconnect();
    }
  });
  try {
    await next(ddp, ["connected"], () => true);
  } catch (error) {
    throw new Error(`${transport}: DDP did not connect: ${JSON.stringify(refused) || error.message}`);
  }
  return { ddp, sockjs, proposed, connected };
}

// Calls a method and resolves with its result once both `result` and `updated` arrived.
async function call(ddp, method, params) {
  const id = ddp.method(method, params);
  const [answer] = await Promise.all([
    next(ddp, ["result"], (_, message) => message.id === id),
    next(ddp, ["updated"], (_, message) => message.methods.includes(id)),
  ]);
  if (answer.message.error) {
    throw new Error(`${method}: ${JSON.stringify(answer.message.error)}`);
  }
  return answer.message.result;
}

// Subscribes to `changes` (spec §4.3) and resolves with each collection's counter once the
// subscription is ready and all five documents were added.
async function subscribeChanges(ddp) {
  const counters = {};
  const allAdded = next(ddp, ["added"], (_, message) => {
    if (message.collection !== "changes") return false;
    counters[message.fields.collection] = message.fields.changes;
    return Object.keys(counters).length === 5;
  });
  const id = ddp.sub("changes", []);
  const ready = await next(
    ddp,
    ["ready", "nosub"],
    (event, message) => (event === "ready" ? message.subs.includes(id) : message.id === id),
  );
  if (ready.event !== "ready") {
    throw new Error(`changes: ${JSON.stringify(ready.message)}`);
  }
  await allAdded;
  return counters;
}

// Keeps every live `changed` of the `changes` collection from the moment it is called, so
// a change that lands before the test asks for it is not lost.
function recordChanges(ddp) {
  const seen = [];
  let closed = false;
  let wake = () => {};
  ddp.on("changed", (message) => {
    if (message.collection === "changes") {
      seen.push(message);
      wake();
    }
  });
  ddp.on("disconnected", () => {
    closed = true;
    wake();
  });
  return async (collection) => {
    for (;;) {
      const hit = seen.find((message) => message.id === collection);
      if (hit) return hit.fields;
      if (closed) throw new Error(`the connection closed while waiting for ${collection} to change`);
      await new Promise((resolve) => {
        wake = resolve;
      });
    }
  };
}

let session = null;

// What run.mjs drives: connect, run the `meteor` tool's sync loop (spec §3.3) until
// `upToDate`, subscribe to `changes` (§4.3), and report what arrived.
window.connectAndSync = async function (serverUrl, transport) {
  const { ddp, sockjs, proposed, connected } = await open(serverUrl, transport);
  const waitChange = recordChanges(ddp);
  let token = { format: "1.1" };
  const counts = {};
  let pages = 0;
  for (;;) {
    const page = await call(ddp, "syncNewPackageData", [token, {}]);
    pages += 1;
    for (const [name, records] of Object.entries(page.collections)) {
      counts[name] = (counts[name] || 0) + records.length;
    }
    token = page.syncToken;
    if (page.upToDate) break;
  }
  const changes = await subscribeChanges(ddp);
  session = { ddp, waitChange };
  return { used: sockjs.transport, proposed, connected, pages, counts, changes };
};

// Waits for a live `changed` of one collection's counter, then closes the connection.
window.waitChange = async function (collection) {
  const fields = await session.waitChange(collection);
  session.ddp.disconnect();
  return fields;
};
