// Browser client: headless Chromium (Debian's, driven by playwright-core) loads a page from
// its own loopback port, whose script (client.js) connects to Exosphere's SockJS endpoint
// (spec §1.1) across origins with the npm DDP client ddp.js over the npm sockjs-client,
// forcing one transport at a time. client.js is bundled for the browser here, with
// esbuild, on every run, so no build step can be forgotten or stale. Driven by
// tests/browser.rs.
//
// Usage: node run.mjs <server-url> <transport>... [--timeout SECONDS] [--page-port PORT]
//
// The page's own server listens on --page-port (0: any free port) and also serves
// sockjs-client's dist bundle at /sockjs.min.js, for a server started with
// `--sockjs-client-url http://127.0.0.1:PORT/sockjs.min.js` (the iframe transports load it
// from the server's iframe page; the public CDN is out of reach on a closed network).
//
// stdout: one JSON object per line, each with an `event`:
//   synced   per transport, after the sync loop and the `changes` subscription:
//            {transport, used, proposed, connected, pages, counts, changes}
//   changed  per transport, after `wait-change <collection>` on stdin: {transport, fields}
// Any failure: a message on stderr and exit status 1; also after --timeout seconds.

import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { CHROMIUM } from "./chromium.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    timeout: { type: "string", default: "120" },
    "page-port": { type: "string", default: "0" },
  },
});
if (positionals.length < 2) {
  console.error(
    "usage: node run.mjs <server-url> <transport>... [--timeout SECONDS] [--page-port PORT]",
  );
  process.exit(2);
}
const [serverUrl, ...transports] = positionals;
setTimeout(() => {
  console.error(`browser client: gave up after ${options.timeout} s`);
  process.exit(1);
}, Number(options.timeout) * 1000).unref();

// ddp.js and sockjs-client are CommonJS packages written for bundlers: one IIFE for the
// page. sockjs-client's `browser` field swaps its Node drivers for the browser's own
// WebSocket, EventSource and XMLHttpRequest; `global` is Browserify's name for the window.
const bundle = await build({
  entryPoints: [join(here, "client.js")],
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "chrome120",
  define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
  write: false,
  logLevel: "warning",
});
const files = {
  "/": ["text/html; charset=utf-8", readFileSync(join(here, "page.html"))],
  "/client.js": ["application/javascript", bundle.outputFiles[0].contents],
  // The same version as the page's own sockjs-client, as the iframe page requires.
  "/sockjs.min.js": [
    "application/javascript",
    readFileSync(join(here, "node_modules/sockjs-client/dist/sockjs.min.js")),
  ],
};
// The page's own origin: another loopback port than the server's, so every SockJS request
// is cross-origin and CORS is exercised.
const pages = createServer((request, response) => {
  const file = files[new URL(request.url, "http://x").pathname];
  if (!file) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { "content-type": file[0] }).end(file[1]);
});
await new Promise((done) => pages.listen(Number(options["page-port"]), "127.0.0.1", done));
const pageUrl = `http://127.0.0.1:${pages.address().port}/`;

const lines = createInterface({ input: process.stdin });
const commands = lines[Symbol.asyncIterator]();
const emit = (event, fields) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);

const profile = mkdtempSync(join(tmpdir(), "exosphere-chromium-"));
const context = await chromium.launchPersistentContext(profile, CHROMIUM);
let failed = false;
try {
  for (const transport of transports) {
    const page = await context.newPage();
    page.on("pageerror", (error) => console.error(`page error (${transport}): ${error}`));
    await page.goto(pageUrl);
    const synced = await page.evaluate(
      ([url, name]) => window.connectAndSync(url, name),
      [serverUrl, transport],
    );
    emit("synced", { transport, ...synced });
    const command = await commands.next();
    const [verb, collection] = (command.value || "").split(" ");
    if (verb !== "wait-change") throw new Error(`unexpected command ${command.value}`);
    const fields = await page.evaluate((name) => window.waitChange(name), collection);
    emit("changed", { transport, fields });
    await page.close();
  }
} catch (error) {
  console.error(`browser client: ${error.stack || error}`);
  failed = true;
} finally {
  await context.close();
  pages.close();
  lines.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
