// What Meteor's own server would send: each `result` frame compressed on its own by Node's
// zlib at its default level (6), as a Node server with permessage-deflate does. Reads the
// frames file `deflate.mjs` writes (one frame per line) and prints one JSON line: frames,
// their text bytes, the compressed bytes and Node's zlib version. A benchmark helper for
// docs/BENCHMARKS.md ("bytes against Node's zlib"), not a test.
//
// Usage: node deflate.mjs ws://HOST:PORT/websocket plain frames.txt && node zlib-reference.mjs frames.txt

import { readFileSync } from "node:fs";
import zlib from "node:zlib";

if (process.argv.length !== 3) {
  console.error("usage: node zlib-reference.mjs <frames-file>");
  process.exit(2);
}
const frames = readFileSync(process.argv[2], "utf8").split("\n").filter((frame) => frame.length);
let text = 0;
let compressed = 0;
for (const frame of frames) {
  const bytes = Buffer.from(frame);
  text += bytes.length;
  compressed += zlib.deflateRawSync(bytes, { level: 6 }).length;
}
console.log(JSON.stringify({ frames: frames.length, text, node_zlib_level6: compressed, zlib: process.versions.zlib }));
