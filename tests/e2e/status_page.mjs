// Opens signalr-edge's status page in headless Chromium (Debian's package, driven by
// playwright-core) and answers commands on stdin, one JSON line each on stdout:
//   snap         what the page shows now: refresh count, cards, each endpoint's health and
//                request count, refusal reasons, page errors
//   shot <path>  a screenshot of the whole page
//   quit
// Usage: node status_page.mjs <status page URL> [chromium path]
import { chromium } from "playwright-core";
import * as readline from "node:readline";

const url = process.argv[2];
const executablePath = process.argv[3] ?? "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
await page.goto(url);

const snap = () => page.evaluate(() => {
  const val = (id) => document.getElementById(id).textContent;
  const endpoints = {};
  for (const tr of document.querySelectorAll("#endpoints tbody tr")) {
    endpoints[tr.dataset.endpoint] = {
      health: tr.querySelector('[data-field="health"]').textContent,
      requests: Number(tr.querySelector('[data-field="requests"]').textContent),
    };
  }
  const refusals = {};
  for (const tr of document.querySelectorAll("#refusals tbody tr")) {
    refusals[tr.dataset.reason] = Number(tr.children[1].textContent);
  }
  return {
    refreshes: Number(document.body.dataset.refreshes || 0),
    phase: val("phase"), generation: val("generation"), rps: val("rps"),
    ws: val("ws"), error: val("err"), endpoints, refusals,
  };
});

for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/, 2);
  try {
    if (cmd === "snap") console.log(JSON.stringify({ ...(await snap()), pageErrors: errors }));
    else if (cmd === "shot") { await page.screenshot({ path: arg, fullPage: true }); console.log(JSON.stringify({ shot: arg })); }
    else if (cmd === "quit") break;
  } catch (e) {
    console.log(JSON.stringify({ failed: String(e) }));
  }
}
await browser.close();
