// examples/live-dashboard in headless Chromium: its publisher (imported from
// examples/live-dashboard, with its own node_modules) sends points to every segment's group
// through the SignalR REST API of a real server started with the example's switchboard.yaml;
// the page (@microsoft/signalr's browser build, served by the app) joins the ticked segments
// and charts only their points. Screenshots go to test/browser/screenshots/.
import { before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { startServer, launchBrowser, waitFor, REPO_ROOT, HERE } from "./harness.mjs";

const EXAMPLE = path.join(REPO_ROOT, "examples", "live-dashboard");
const { startDashboard } = await import(path.join(EXAMPLE, "server.mjs"));

const SHOTS = path.join(HERE, "screenshots");
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, `examples-live-dashboard-${name}.png`), fullPage: true });

let sb;
let app;
let browser;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  sb = await startServer({ config: readFileSync(path.join(EXAMPLE, "switchboard.yaml"), "utf8") });
  app = await startDashboard({
    connectionString: `Endpoint=http://127.0.0.1;Port=${sb.signalrPort};AccessKey=${sb.keys[0]};Version=1.0;`,
    intervalMs: 100,
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await app?.close();
  await sb?.stop();
});

test("examples/live-dashboard: the chart gets the points of the joined segments and none of the others", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  const received = () => page.evaluate(() => window.dash.received.map((p) => p.segment));
  const plotted = (segment) => page.$eval(`.chart[data-segment="${segment}"] polyline`, (el) => el.getAttribute("points").split(" ").filter(Boolean).length);
  try {
    await page.goto(`${app.url}/?segments=plant-a`);
    await page.waitForFunction(() => window.dash?.ready || window.dash?.errors.length, null, { timeout: 30000 });
    assert.deepEqual(await page.evaluate(() => window.dash.errors), []);
    assert.deepEqual(await page.evaluate(() => window.dash.joined), ["plant-a"]);

    // The chart of plant-a fills; every point the page got is plant-a's although the publisher
    // sends every segment.
    const startCounts = { ...app.stats };
    await waitFor(async () => (await plotted("plant-a")) >= 10, { what: "10 points on the plant-a chart", timeout: 30000 });
    for (const other of ["plant-b", "eurusd", "btc"]) {
      assert.ok(app.stats[other] >= startCounts[other] + 5, `the publisher kept sending ${other}: ${JSON.stringify(app.stats)}`);
      assert.equal(await page.$(`.chart[data-segment="${other}"]`), null, `no chart for ${other}`);
    }
    assert.deepEqual([...new Set(await received())], ["plant-a"], "only plant-a's points arrive");
    await shot(page, "plant-a");

    // Tick eurusd: its points arrive too. Untick plant-a: once eurusd has moved on after the
    // leave, no plant-a point arrives any more.
    await page.check(`#segments input[value=eurusd]`);
    await waitFor(async () => (await plotted("eurusd").catch(() => 0)) >= 5, { what: "5 points on the eurusd chart", timeout: 30000 });
    await page.uncheck(`#segments input[value=plant-a]`);
    await waitFor(async () => (await page.evaluate(() => window.dash.joined)).join() === "eurusd", { what: "plant-a left" });
    const afterLeave = async () => (await received()).slice(mark);
    let mark = (await received()).length;
    await waitFor(async () => (await afterLeave()).filter((s) => s === "eurusd").length >= 3, { what: "3 eurusd points after the leave" });
    mark = (await received()).length; // what was queued before the leave answered is behind us
    await waitFor(async () => (await afterLeave()).filter((s) => s === "eurusd").length >= 5, { what: "5 more eurusd points" });
    assert.deepEqual([...new Set(await afterLeave())], ["eurusd"], "after leaving plant-a only eurusd arrives");
    assert.ok((await received()).includes("plant-a"));
    assert.equal(await page.$(`.chart[data-segment="plant-a"]`), null);
    await shot(page, "eurusd");
    assert.deepEqual(errors, []);
    assert.equal(app.failures.count, 0, `publisher failures: ${app.failures.last}`);
  } catch (e) {
    await shot(page, "failure").catch(() => {});
    e.message += sb.diag();
    throw e;
  } finally {
    await context.close();
  }
});

test("examples/live-dashboard: a segment that is not valid percent-encoding is a 400 naming it, not a 502", async () => {
  for (const method of ["PUT", "DELETE"]) {
    const r = await fetch(`${app.url}/api/segments/%E0%A4%A/connections/c1`, { method });
    const body = await r.json();
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match(body.error, /segment/);
  }
});
