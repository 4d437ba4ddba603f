// The web catalog as a person uses it: headless Chromium (Debian's, driven by
// playwright-core) walks Exosphere's server-rendered pages by their forms and links, first
// with JavaScript enabled, then with it disabled. Driven by tests/e2e/browser_catalog.rs,
// which starts the server over the 2015 fixture (with a README and usage numbers added).
//
// Usage: node catalog.mjs <server-url> <screenshot-dir> [--timeout SECONDS]
//
// The journey: the home page; type a word into its search box and submit; open a package
// from the results; read its README; follow a dependency; follow a dependent back; open the
// usage chart's numbers and change its range; search from the header and use the search
// page's order and filter form (Most added, Leave out core packages); a mistyped package URL
// (a 404 page) whose search form finds the package. Then the same journey with JavaScript
// disabled, which must still find and show the package (the 404 detour aside).
//
// On every step, whatever the pass:
//   * every request the page makes must go to the server's origin: the others are recorded
//     and aborted (so nothing leaves this machine even when a page is wrong), and every
//     subresource must load (no status of 400 or more, no failed request);
//   * no console error, no uncaught page error; Chromium's "Failed to load resource: ...
//     404" only on a step that expects a 404 document;
//   * no Content-Security-Policy violation: `securitypolicyviolation` events (reported from
//     an init script through a binding, so violations survive navigations; with JavaScript
//     off no listener runs) and console messages mentioning the Content Security Policy
//     (which Chromium logs either way);
//   * scripting really is on or off, as the pass says (how the page's parser reads a
//     <noscript>);
//   * with JavaScript on, axe-core (WCAG 2.0/2.1 A and AA rules) finds no violation, in the
//     light and the dark colour scheme;
//   * a full-page screenshot, <screenshot-dir>/<pass>-<nn>-<step>.png (and -dark.png of
//     the package page and the chart, in the dark colour scheme).
// Before each pass's journey, a "detectors" step plants a CSP violation and an off-host
// request and checks that the watchers above notice both, so a silent watcher cannot pass
// for a clean page.
//
// stdout: one JSON object per line: {"event":"step", "pass", "step", "url", "status", "ok",
// ...details, "problems" when not ok}, then {"event":"summary", "ok", counts...}.
// Any failure: the failing steps on stderr and exit status 1; also after --timeout seconds.

import { mkdirSync, readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { CHROMIUM } from "./chromium.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { timeout: { type: "string", default: "300" } },
});
if (positionals.length !== 2) {
  console.error("usage: node catalog.mjs <server-url> <screenshot-dir> [--timeout SECONDS]");
  process.exit(2);
}
const [serverUrl, shots] = positionals;
const origin = new URL(serverUrl).origin;
mkdirSync(shots, { recursive: true });
setTimeout(() => {
  console.error(`catalog journey: gave up after ${options.timeout} s`);
  process.exit(1);
}, Number(options.timeout) * 1000).unref();

// The WCAG 2.1 AA rule set: level A and AA rules of WCAG 2.0 and of 2.1.
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
const axeSource = readFileSync(join(here, "node_modules/axe-core/axe.min.js"), "utf8");
// The package the journey looks for, one it depends on, and a word that finds it.
const PACKAGE = "iron:router";
const DEPENDENCY = "iron:core";
const WORD = "router";
// A word that finds core packages and, through its README, PACKAGE too.
const BROAD_WORD = "meteor";
// A sentence of the README the test gives PACKAGE's latest version.
const README_SENTENCE = "A router that works on the server and the browser";
// A host:port on loopback where nothing listens: the planted off-host request's target, so
// not even a broken watcher sends anything off this machine.
const ELSEWHERE = "http://127.0.0.1:1";

const emit = (fields) => process.stdout.write(`${JSON.stringify(fields)}\n`);

const browser = await chromium.launch(CHROMIUM);

// Every step's line, for the summary.
const results = [];
const totals = {
  requests: 0,
  off_host_requests: 0,
  csp_violations: 0,
  console_errors: 0,
  axe_checks: 0,
  axe_violations: 0,
  screenshots: 0,
};

// A browser context for one pass with its watchers: what the page in it did since the
// last `take()`.
async function watchedContext(javaScript) {
  // No `bypassCSP`: the pages are checked under their own policy. axe-core is injected
  // with `page.evaluate(source)` (DevTools' Runtime.evaluate, which the page's CSP does
  // not govern) rather than `addScriptTag`, whose inline <script> `script-src 'none'`
  // would refuse, so one pass both audits the page and would catch any violation the page
  // causes. axe only reads the DOM and computed styles: anything it did that the policy
  // refused would show up here as a violation, never be hidden.
  const context = await browser.newContext({
    javaScriptEnabled: javaScript,
    viewport: { width: 1280, height: 900 },
    colorScheme: "light",
    locale: "en-GB",
  });
  const seen = {
    requests: [],
    offHost: [],
    failed: [],
    console: [],
    csp: [],
    pageErrors: [],
    document: null,
  };
  await context.exposeBinding("__exosphereCspViolation", (_source, violation) => {
    seen.csp.push(violation);
  });
  await context.addInitScript(() => {
    document.addEventListener(
      "securitypolicyviolation",
      (event) =>
        window.__exosphereCspViolation({
          directive: event.violatedDirective,
          blocked: event.blockedURI,
          source: event.sourceFile,
          sample: event.sample,
        }),
      true,
    );
  });
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    return route.abort("blockedbyclient");
  });
  context.on("request", (request) => {
    seen.requests.push(request.url());
    if (new URL(request.url()).origin !== origin) seen.offHost.push(request.url());
  });
  context.on("requestfailed", (request) => {
    seen.failed.push(`${request.url()}: ${request.failure()?.errorText}`);
  });
  context.on("response", (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame().parentFrame() === null) {
      seen.document = { url: response.url(), status: response.status() };
    } else if (response.status() >= 400) {
      seen.failed.push(`${response.url()}: ${response.status()}`);
    }
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("console", (message) => {
    const text = message.text();
    if (message.type() === "error" || /Content Security Policy/i.test(text)) {
      seen.console.push({ type: message.type(), text });
    }
  });
  page.on("pageerror", (error) => seen.pageErrors.push(String(error)));
  const take = () => {
    const taken = { ...seen, requests: [...seen.requests] };
    for (const list of ["requests", "offHost", "failed", "console", "csp", "pageErrors"]) {
      seen[list] = [];
    }
    return taken;
  };
  return { context, page, take };
}

// axe-core's WCAG 2.1 AA violations on the page as shown now.
async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.evaluate(axeSource);
  }
  return page.evaluate(async (tags) => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: tags },
      resultTypes: ["violations"],
    });
    return {
      violations: result.violations.map((violation) => ({
        id: violation.id,
        impact: violation.impact,
        help: violation.help,
        targets: violation.nodes.map((node) => node.target.join(" ")),
      })),
      passes: result.passes.length,
      // What axe could not decide (text over an image, say): listed, for a person to check.
      incomplete: result.incomplete.map((rule) => ({
        id: rule.id,
        targets: rule.nodes.map((node) => node.target.join(" ")),
      })),
    };
  }, AXE_TAGS);
}

// Whether the page's document runs scripts, as its HTML parser sees it: with scripting off,
// <noscript> holds elements; with it on, text. (A probe from outside the page, as the
// pages' CSP lets no script of theirs run either way.)
function scripting() {
  const probe = document.createElement("div");
  probe.innerHTML = "<noscript><p></p></noscript>";
  return probe.querySelector("noscript p") === null ? "on" : "off";
}

// One pass of the journey (`js` or `no-js`).
class Pass {
  constructor(name, watched) {
    this.name = name;
    this.page = watched.page;
    this.context = watched.context;
    this.take = watched.take;
    this.javaScript = name === "js";
    this.number = 0;
  }

  // Runs `action` (which navigates and checks what it sees, returning details for the
  // step's line), then the checks every step gets. `expect` is the status of the document
  // the step ends on; `audit`, whether axe checks it (with JavaScript on); `planted`, for the
  // detectors' step, a function that checks the watchers saw what it planted instead of
  // failing on it; `dark`, whether to take a dark-scheme screenshot too. Returns false when
  // the action itself failed: later steps start from where this one ends, so the pass stops.
  async step(name, action, { expect = 200, audit = true, planted = false, dark = false } = {}) {
    this.number += 1;
    const line = { event: "step", pass: this.name, step: name };
    const problems = [];
    let completed = true;
    let details = {};
    try {
      details = (await action()) || {};
    } catch (error) {
      problems.push(`the step failed: ${error.message.split("\n")[0]}`);
      completed = false;
    }
    line.url = this.page.url();
    if (completed) {
      line.scripting = await this.page.evaluate(scripting);
      if (line.scripting !== (this.javaScript ? "on" : "off")) {
        problems.push(`scripting is ${line.scripting} in the ${this.name} pass`);
      }
    }
    if (completed && audit && this.javaScript) {
      const scheme = {};
      for (const colorScheme of ["light", "dark"]) {
        await this.page.emulateMedia({ colorScheme });
        // Links fade their background colours in 0.1 s when motion is welcome: audit the
        // colours the scheme settles on, not a frame of the fade.
        await this.page.evaluate(() =>
          Promise.all(document.getAnimations().map((animation) => animation.finished)),
        );
        const found = await axe(this.page);
        totals.axe_checks += 1;
        totals.axe_violations += found.violations.length;
        scheme[colorScheme] = {
          violations: found.violations.length,
          passes: found.passes,
          incomplete: found.incomplete.length,
        };
        if (found.incomplete.length > 0) scheme[colorScheme].to_review = found.incomplete;
        for (const violation of found.violations) {
          problems.push(
            `axe (${colorScheme}): ${violation.id} (${violation.impact}): ${violation.help}: ` +
              violation.targets.join(" | "),
          );
        }
      }
      await this.page.emulateMedia({ colorScheme: "light" });
      line.axe = scheme;
    }
    const seen = this.take();
    line.status = seen.document?.status ?? null;
    if (completed && line.status !== expect) {
      problems.push(`the page answered ${line.status}, expected ${expect}`);
    }
    line.requests = seen.requests.length;
    if (!planted) {
      totals.requests += seen.requests.length;
      totals.off_host_requests += seen.offHost.length;
      totals.csp_violations += seen.csp.length;
      for (const url of seen.offHost) problems.push(`a request to another host: ${url}`);
      for (const failure of seen.failed) problems.push(`a request failed: ${failure}`);
      for (const violation of seen.csp) {
        problems.push(`a CSP violation: ${JSON.stringify(violation)}`);
      }
      const expected404 = (message) =>
        expect === 404 && /Failed to load resource: .*404/.test(message.text);
      for (const message of seen.console.filter((message) => !expected404(message))) {
        totals.console_errors += 1;
        problems.push(`console ${message.type}: ${message.text}`);
      }
      for (const error of seen.pageErrors) problems.push(`page error: ${error}`);
    } else {
      details = { ...details, ...planted(seen, problems) };
    }
    const file = `${this.name}-${String(this.number).padStart(2, "0")}-${name}`;
    try {
      await this.page.screenshot({ path: join(shots, `${file}.png`), fullPage: true });
      totals.screenshots += 1;
      line.screenshot = `${file}.png`;
      if (dark && completed) {
        await this.page.emulateMedia({ colorScheme: "dark" });
        await this.page.screenshot({ path: join(shots, `${file}-dark.png`), fullPage: true });
        await this.page.emulateMedia({ colorScheme: "light" });
        totals.screenshots += 1;
        line.screenshot_dark = `${file}-dark.png`;
      }
    } catch (error) {
      problems.push(`no screenshot: ${error.message}`);
    }
    Object.assign(line, details, { ok: problems.length === 0 });
    if (problems.length > 0) line.problems = problems;
    results.push(line);
    emit(line);
    return completed;
  }

  // Clicks what `locator` finds and waits for the page whose URL `arrived` accepts.
  async follow(locator, arrived) {
    await Promise.all([this.page.waitForURL(arrived), locator.click()]);
  }

  // The text of the package page's heading, which must be `name`.
  async expectPackage(name) {
    const heading = (await this.page.locator("#package-title").innerText()).trim();
    if (heading !== name) throw new Error(`the package page shows ${heading}, not ${name}`);
  }

  // The names in the result list, in order.
  async results() {
    return this.page.locator("#results > li > a").allInnerTexts();
  }
}

// Plants a CSP violation and an off-host request and checks the watchers saw both.
async function detectors(pass) {
  const { page } = pass;
  return pass.step(
    "detectors",
    async () => {
      await page.goto(`${serverUrl}/releases`);
      // Under `img-src 'self'` Chromium refuses this before any request is made.
      await page.evaluate((src) => {
        const image = document.createElement("img");
        image.src = src;
        image.alt = "";
        document.body.append(image);
      }, `${ELSEWHERE}/planted.png`);
      await page.waitForTimeout(300);
      // A navigation, which no CSP directive of the pages governs, in a second tab (the
      // route aborts it, and this tab stays on the catalog).
      const other = await pass.context.newPage();
      await other.goto(`${ELSEWHERE}/planted`).catch(() => {});
      await other.close();
    },
    {
      audit: false,
      planted: (seen, problems) => {
        const noticed = {
          csp_event: seen.csp.some((v) => v.blocked.startsWith(ELSEWHERE)),
          csp_console: seen.console.some((m) => /Content Security Policy/i.test(m.text)),
          off_host_request: seen.offHost.some((url) => url.startsWith(ELSEWHERE)),
        };
        for (const [watcher, saw] of Object.entries(noticed)) {
          // With scripting off no event listener runs, not even the init script's: there
          // the console is the CSP watcher.
          const works = pass.javaScript || watcher !== "csp_event";
          if (works && !saw) problems.push(`the ${watcher} watcher missed what was planted`);
        }
        return { noticed };
      },
    },
  );
}

// The journey; false when a step could not be taken.
async function journey(pass) {
  const { page } = pass;
  const main = page.locator("#main");
  const onPackage = (name) => (url) => url.pathname === `/package/${name}`;
  let before = [];
  const steps = [
    [
      "home",
      async () => {
        await page.goto(`${serverUrl}/`);
        const heading = await page.getByRole("heading", { level: 1 }).innerText();
        const mostAdded = await page.locator("#most-added li > a").allInnerTexts();
        if (mostAdded[0] !== PACKAGE) {
          throw new Error(`the most-added list starts with ${mostAdded[0]}`);
        }
        return { heading, most_added: mostAdded };
      },
    ],
    [
      "search",
      async () => {
        // The home page's own search form, by its label, as a person types into it.
        const form = main.getByRole("search");
        await form.getByRole("searchbox", { name: "Search packages" }).fill(WORD);
        await pass.follow(
          form.getByRole("button", { name: "Search" }),
          (url) => url.pathname === "/search" && url.searchParams.get("q") === WORD,
        );
        const names = await pass.results();
        if (!names.includes(PACKAGE)) throw new Error(`${PACKAGE} is not among ${names}`);
        return { results: names };
      },
    ],
    [
      "package",
      async () => {
        await pass.follow(
          page.locator("#results").getByRole("link", { name: PACKAGE, exact: true }),
          onPackage(PACKAGE),
        );
        await pass.expectPackage(PACKAGE);
        const add = await page.locator("#install code").innerText();
        return { install: add };
      },
      { dark: true },
    ],
    [
      "readme",
      async () => {
        const readme = page.locator("#readme");
        await readme.scrollIntoViewIfNeeded();
        const text = await readme.innerText();
        if (!text.includes(README_SENTENCE)) {
          throw new Error(`the README section shows no README: ${text.slice(0, 200)}`);
        }
        return { readme_heading: await readme.getByRole("heading").first().innerText() };
      },
    ],
    [
      "dependency",
      async () => {
        await pass.follow(
          page.locator("#dependencies").getByRole("link", { name: DEPENDENCY, exact: true }),
          onPackage(DEPENDENCY),
        );
        await pass.expectPackage(DEPENDENCY);
        const dependents = page.locator("#dependents-table tbody td:first-child");
        return { dependents: await dependents.allInnerTexts() };
      },
    ],
    [
      "dependent",
      async () => {
        await pass.follow(
          page.locator("#dependents").getByRole("link", { name: PACKAGE, exact: true }),
          onPackage(PACKAGE),
        );
        await pass.expectPackage(PACKAGE);
      },
    ],
    [
      "chart",
      async () => {
        const stats = page.locator("#stats");
        await stats.scrollIntoViewIfNeeded();
        const numbers = page.locator("#stats-numbers");
        await numbers.getByText("The numbers per period").click();
        if (!(await numbers.evaluate((details) => details.open))) {
          throw new Error("the numbers did not open");
        }
        if (!(await page.locator("#stats-table").isVisible())) {
          throw new Error("the table of numbers is not visible");
        }
        if ((await stats.locator("svg rect.bar-total").count()) === 0) {
          throw new Error("the chart has no bars");
        }
        return { totals: await stats.locator("p strong").allInnerTexts() };
      },
    ],
    [
      "chart-range",
      async () => {
        const shown = await page.locator("#stats p strong").allInnerTexts();
        await pass.follow(
          page
            .getByRole("navigation", { name: "Range of the adds chart" })
            .getByRole("link", { name: "90 days" }),
          (url) => onPackage(PACKAGE)(url) && url.searchParams.get("range") === "90d",
        );
        const current = await page
          .locator('#stats .ranges a[aria-current="true"]')
          .innerText();
        const totals = await page.locator("#stats p strong").allInnerTexts();
        // The table of numbers is in a closed <details> on the new page: its text content.
        const caption = await page.locator("#stats-table caption").textContent();
        if (current !== "90 days" || !caption.includes("90 days")) {
          throw new Error(`the range shown is ${current} (${caption})`);
        }
        if (JSON.stringify(totals) === JSON.stringify(shown)) {
          throw new Error(`90 days show the same totals as 30 days: ${totals}`);
        }
        const bars = await page.locator("#stats svg rect.bar-total").count();
        return { before: shown, totals, bars };
      },
      { dark: true },
    ],
    [
      "search-header",
      async () => {
        // The header's search box, on any page.
        const form = page.getByRole("search", { name: "Site search" });
        await form.getByRole("searchbox").fill(BROAD_WORD);
        await pass.follow(
          form.getByRole("button", { name: "Search" }),
          (url) => url.pathname === "/search" && url.searchParams.get("q") === BROAD_WORD,
        );
        before = await pass.results();
        if (before.every((name) => name.includes(":"))) {
          throw new Error(`no core package among the results to leave out: ${before}`);
        }
        return { results: before };
      },
    ],
    [
      "search-filters",
      async () => {
        const form = page.locator("#search-filters");
        await form.getByLabel("Order").selectOption({ label: "Most added (30 days)" });
        await form.getByLabel("Leave out core packages").check();
        await pass.follow(
          form.getByRole("button", { name: "Search" }),
          (url) =>
            url.searchParams.get("sort") === "most-added" &&
            url.searchParams.get("exclude_core") === "true" &&
            url.searchParams.get("q") === BROAD_WORD,
        );
        const names = await pass.results();
        const core = names.filter((name) => !name.includes(":"));
        if (names[0] !== PACKAGE || core.length > 0) {
          throw new Error(`most added without core packages: ${names}`);
        }
        const kept = {
          sort: await page.locator("#search-sort").inputValue(),
          exclude_core: await page.locator("#search-core").isChecked(),
        };
        if (kept.sort !== "most-added" || !kept.exclude_core) {
          throw new Error(`the form forgot what was chosen: ${JSON.stringify(kept)}`);
        }
        return { results: names, form: kept };
      },
    ],
  ];
  for (const [name, action, { dark = false } = {}] of steps) {
    // A dark-scheme screenshot of the richest pages too, with JavaScript on.
    if (!(await pass.step(name, action, { dark: dark && pass.javaScript }))) return false;
  }
  if (!pass.javaScript) return true;
  // A mistyped package address: a 404 page that still helps.
  const typo = "iron:ruoter";
  if (
    !(await pass.step(
      "not-found",
      async () => {
        await page.goto(`${serverUrl}/package/${typo}`);
        const message = await page.locator("#error-message").innerText();
        return { message };
      },
      { expect: 404 },
    ))
  ) {
    return false;
  }
  return pass.step("not-found-search", async () => {
    const form = main.getByRole("search");
    await form.getByRole("searchbox").fill(WORD);
    await pass.follow(
      form.getByRole("button", { name: "Search" }),
      (url) => url.pathname === "/search",
    );
    const names = await pass.results();
    if (names[0] !== PACKAGE) throw new Error(`the first result is ${names[0]}`);
    return { results: names };
  });
}

let journeys = 0;
try {
  for (const javaScript of [true, false]) {
    const watched = await watchedContext(javaScript);
    const pass = new Pass(javaScript ? "js" : "no-js", watched);
    await detectors(pass);
    if (await journey(pass)) journeys += 1;
    await watched.context.close();
  }
} catch (error) {
  results.push({ step: "(driver)", ok: false, problems: [String(error.stack || error)] });
} finally {
  await browser.close();
}

const failed = results.filter((line) => !line.ok);
emit({
  event: "summary",
  ok: failed.length === 0 && journeys === 2,
  steps: results.length,
  failed: failed.length,
  journeys,
  ...totals,
});
if (failed.length > 0 || journeys !== 2) {
  console.error(`catalog journey: ${failed.length} of ${results.length} steps failed`);
  for (const line of failed) {
    console.error(`  ${line.pass ?? ""} ${line.step} (${line.url ?? ""}):`);
    for (const problem of line.problems ?? []) console.error(`    ${problem}`);
  }
  process.exit(1);
}
