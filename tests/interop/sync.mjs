// Interop client: a DDP implementation that is not ours (npm `ddp`, oortcloud/node-ddp-client,
// which speaks raw WebSocket through faye-websocket like the `meteor` tool, spec §1.1) syncs
// the whole catalog exactly like the tool (spec §3.3), watches the `changes` publication
// (§4.3) and reads a daily stats file (§7.2). Driven by tests/interop.rs.
//
// Usage: node sync.mjs <base-url> [--stats-day YYYY-MM-DD] [--catalog-out FILE] [--timeout SECONDS]
//
// stdout: one JSON object per line, each with an `event`:
//   page     one per sync page: {page, sizes: {collection: n}, resetData, upToDate}
//   synced   the initial sync is done: {pages, resetData: [per page], counts: {collection: n}}
//   changes  the `changes` documents at `ready`: {docs: [{id, collection, changes}]}
//   change   a live `changed` on `changes`: {id, collection, changes, previous}
//   stats    the parsed daily file: {day, rows: [...]}
//   ready    waiting for commands on stdin
//   resynced after `wait-change`: the follow-up sync, {pages, resetData, ids: {collection: [_id]}}
// stdin commands (one per line):
//   wait-change <collection>  wait for a live `changed` of that collection's counter, sync
//                             again from the last token (what third-party mirrors do), exit 0
//   exit                      exit 0 (so does end of input)
// Any protocol violation: a message on stderr and exit status 1; also after --timeout seconds.

import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import DDPClient from "ddp";

const COLLECTIONS = ["packages", "versions", "builds", "releaseTracks", "releaseVersions"];
// Top-level string fields the tool copies into its SQLite columns, besides `_id` (spec §3.4).
const COLUMNS = {
  packages: ["name"],
  versions: ["packageName", "version"],
  builds: ["versionId"],
  releaseTracks: ["name"],
  releaseVersions: ["track", "version"],
};

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    "stats-day": { type: "string" },
    "catalog-out": { type: "string" },
    timeout: { type: "string", default: "60" },
  },
});
if (positionals.length !== 1) {
  console.error("usage: node sync.mjs <base-url> [--stats-day DAY] [--catalog-out FILE] [--timeout S]");
  process.exit(2);
}
const base = positionals[0];

function emit(event, fields) {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function fail(message) {
  console.error(`interop client: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

process.on("uncaughtException", (error) => fail(`uncaught ${error?.stack ?? error}`));
process.on("unhandledRejection", (error) => fail(`unhandled ${error?.stack ?? error}`));
const timeoutSeconds = Number(options.timeout);
const watchdog = setTimeout(
  () => fail(`gave up after ${timeoutSeconds} s (a missing \`updated\`, §1.2, or a sync that never reaches upToDate, §3.3?)`),
  timeoutSeconds * 1000,
);

// Spec §1.1 `toWebsocketUrl`: http → ws, https → wss, then append `/websocket`.
const wsUrl = `${base.replace(/^http/, "ws").replace(/\/?$/, "/")}websocket`;
const client = new DDPClient({ url: wsUrl, autoReconnect: false, maintainCollections: true, ddpVersion: "1" });

let closing = false;
client.on("socket-close", (code, reason) => closing || fail(`the server closed the WebSocket (${code} ${reason})`));
client.on("socket-error", (error) => fail(`WebSocket error: ${error?.message ?? error}`));

// The library is lenient where Meteor's own client throws (spec §1.2, "Client constraints"),
// so every raw frame is checked here too.
const known = new Map(); // collection → Set of document ids
client.on("message", (text) => {
  const message = JSON.parse(text);
  check(message && typeof message === "object" && typeof message.msg === "string", `§1.2: a frame without \`msg\`: ${text}`);
  const ids = known.get(message.collection) ?? new Set();
  known.set(message.collection, ids);
  switch (message.msg) {
    case "error":
      fail(`the server answered with a protocol error (§1.3): ${text}`);
      break;
    case "added":
      check(!ids.has(message.id), `§1.2: \`added\` for a document already present: ${text}`);
      ids.add(message.id);
      break;
    case "changed":
      check(ids.has(message.id), `§1.2: \`changed\` for an unknown document: ${text}`);
      break;
    case "removed":
      check(ids.delete(message.id), `§1.2: \`removed\` for an unknown document: ${text}`);
      break;
    case "addedBefore":
    case "movedBefore":
      fail(`§1.2: the server must never send ${message.msg}: ${text}`);
      break;
  }
});

function connect() {
  return new Promise((resolve, reject) => {
    client.connect((error) => (error ? reject(new Error(`DDP connect failed: ${error}`)) : resolve()));
  });
}

// Resolves once both `result` and `updated` arrived, like the tool's MethodInvoker (§1.2).
function call(method, params) {
  return new Promise((resolve, reject) => {
    let result;
    let haveResult = false;
    let haveUpdated = false;
    const settle = () => haveResult && haveUpdated && resolve(result);
    client.call(
      method,
      params,
      (error, value) => {
        if (error) {
          reject(new Error(`${method} failed (§1.4: the tool aborts): ${JSON.stringify(error) ?? error}`));
          return;
        }
        result = value;
        haveResult = true;
        settle();
      },
      () => {
        haveUpdated = true;
        settle();
      },
    );
  });
}

function subscribe(name) {
  return new Promise((resolve, reject) => {
    client.subscribe(name, [], (error) =>
      error ? reject(new Error(`nosub for ${name}: ${JSON.stringify(error)}`)) : resolve(),
    );
  });
}

// Checks one page against what the tool needs (§3.2, §3.4, §3.6) and fails otherwise.
function checkPage(result, page) {
  const where = `page ${page}`;
  check(result && typeof result === "object", `§3.2: ${where}: the result is not an object`);
  check(!("collectionsCompressed" in result), `§3.7: ${where}: compressed collections were not asked for`);
  const collections = result.collections;
  check(collections && typeof collections === "object", `§3.2: ${where}: \`collections\` is missing`);
  for (const name of COLLECTIONS) {
    // Meteor 3 iterates each array with for...of on every page: a missing key crashes it.
    check(Array.isArray(collections[name]), `§3.2: ${where}: \`collections.${name}\` is not an array`);
    for (const record of collections[name]) {
      check(typeof record?._id === "string", `§3.4: ${where}: a ${name} record without a string _id`);
      for (const field of COLUMNS[name]) {
        check(typeof record[field] === "string", `§3.4: ${where}: ${name} ${record._id} lacks string \`${field}\``);
      }
      if (name === "builds") {
        check(typeof record.build?.url === "string", `§3.6: ${where}: build ${record._id} without build.url`);
      }
    }
  }
  const token = result.syncToken;
  check(token && typeof token === "object" && !Array.isArray(token), `§3.2: ${where}: \`syncToken\` is not an object`);
  check(token.format === "1.1", `§3.5: ${where}: the token must echo format "1.1", got ${JSON.stringify(token.format)}`);
  check(typeof result.upToDate === "boolean", `§3.2: ${where}: \`upToDate\` is not a boolean`);
}

// The tool's loop (§3.3) from `token`, applied to `catalog` (collection → Map _id → record).
async function syncLoop(catalog, token) {
  const resetData = [];
  const ids = Object.fromEntries(COLLECTIONS.map((name) => [name, []]));
  for (let page = 1; ; page++) {
    const result = await call("syncNewPackageData", [token, {}]);
    checkPage(result, page);
    if (result.resetData) {
      // Step 3: wipe every local table before applying this page.
      for (const name of COLLECTIONS) catalog[name].clear();
    }
    resetData.push(result.resetData ?? null);
    // Step 6: upsert by _id.
    for (const name of COLLECTIONS) {
      for (const record of result.collections[name]) {
        catalog[name].set(record._id, record);
        ids[name].push(record._id);
      }
    }
    const sizes = Object.fromEntries(COLLECTIONS.map((name) => [name, result.collections[name].length]));
    emit("page", { page, sizes, resetData: result.resetData ?? null, upToDate: result.upToDate });
    // Step 7: stop on upToDate (the "collections deep-equals {}" exit cannot happen with five keys).
    if (result.upToDate) return { pages: page, resetData, ids, token: result.syncToken };
    const empty = COLLECTIONS.every((name) => result.collections[name].length === 0);
    check(
      !empty || JSON.stringify(result.syncToken) !== JSON.stringify(token),
      `§3.3: page ${page} is empty, not upToDate and returns the same token: the tool would loop forever`,
    );
    token = result.syncToken;
  }
}

// The catalog as a dump (catalog-dump.md), records re-encoded with the library's EJSON.
function writeCatalog(catalog, file) {
  const lines = COLLECTIONS.flatMap((name) =>
    [...catalog[name].values()].map((doc) => `{"collection":${JSON.stringify(name)},"doc":${client.EJSON.stringify(doc)}}\n`),
  );
  writeFileSync(file, lines.join(""));
}

// GET /stats/v1/<day>, parsed the way consumers do (§7.2): trim, split on \n, JSON.parse.
async function fetchStats(day) {
  const url = `${base.replace(/\/$/, "")}/stats/v1/${day}`;
  const response = await fetch(url);
  check(response.status === 200, `§7.2: GET ${url} answered ${response.status}`);
  const body = (await response.text()).trim();
  const rows = body === "" ? [] : body.split("\n").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      return fail(`§7.2: a stats line is not JSON: ${line}`);
    }
  });
  for (const row of rows) check(row && typeof row === "object" && !Array.isArray(row), `§7.2: a stats line is not an object`);
  return rows;
}

// --- main -----------------------------------------------------------------------------------

await connect();

const catalog = Object.fromEntries(COLLECTIONS.map((name) => [name, new Map()]));
const initial = await syncLoop(catalog, { format: "1.1" }); // §3.3 step 1: the default token
const counts = Object.fromEntries(COLLECTIONS.map((name) => [name, catalog[name].size]));
if (options["catalog-out"]) writeCatalog(catalog, options["catalog-out"]); // before `synced`
emit("synced", { pages: initial.pages, resetData: initial.resetData, counts });

// §4.3: one document per catalog collection, `collection` + numeric `changes`.
const liveChanges = [];
let changeWaiter = null;
let subscribed = false;
client.observe("changes", undefined, (id, oldFields) => {
  if (!subscribed) return;
  const doc = client.collections.changes[id];
  const change = { id, collection: doc.collection, changes: doc.changes, previous: oldFields.changes };
  liveChanges.push(change);
  emit("change", change);
  changeWaiter?.();
});
await subscribe("changes");
subscribed = true;
const docs = Object.entries(client.collections.changes ?? {}).map(([id, doc]) => ({
  id,
  collection: doc.collection,
  changes: doc.changes,
}));
for (const name of COLLECTIONS) {
  const doc = docs.find((d) => d.collection === name);
  check(doc && typeof doc.changes === "number", `§4.3: no \`changes\` document with a numeric counter for ${name}`);
}
emit("changes", { docs });

if (options["stats-day"]) {
  emit("stats", { day: options["stats-day"], rows: await fetchStats(options["stats-day"]) });
}

emit("ready");
for await (const line of createInterface({ input: process.stdin })) {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === "exit") break;
  check(command === "wait-change" && COLLECTIONS.includes(argument), `unknown command ${JSON.stringify(line)}`);
  while (!liveChanges.some((change) => change.collection === argument)) {
    await new Promise((resolve) => {
      changeWaiter = resolve;
    });
  }
  const change = liveChanges.find((c) => c.collection === argument);
  check(change.changes > change.previous, `§4.3: the counter must grow, got ${change.previous} → ${change.changes}`);
  // Step 1 again: the stored token; only what changed since should come back.
  const again = await syncLoop(catalog, initial.token);
  emit("resynced", { pages: again.pages, resetData: again.resetData, ids: again.ids });
  break;
}

clearTimeout(watchdog);
closing = true;
client.close();
process.exit(0);
