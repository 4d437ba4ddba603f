// How both browser tests (run.mjs, catalog.mjs) start Chromium: Debian's package (browser
// downloads do not work offline), headless, with nothing of its own reaching the network
// (no background updates, sync or QUIC), so that every request the pages make is theirs.
export const CHROMIUM = {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
};
