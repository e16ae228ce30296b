// Opens the demo chat page in headless Chromium (Debian's package, driven by playwright-core),
// sends a message over each transport and waits to see it come back through the edge.
// Usage: node browser.mjs <demo URL> [chromium path]
import { chromium } from "playwright-core";

const url = process.argv[2];
const executablePath = process.argv[3] ?? "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e}`));
  await page.goto(url);
  for (const transport of ["WebSockets", "ServerSentEvents", "LongPolling"]) {
    try {
      await page.selectOption("#transport", transport);
      await page.waitForFunction(
        (t) => document.querySelector("#status").textContent.endsWith(`over ${t}`) &&
          !document.querySelector("#go").disabled,
        transport, { timeout: 15000 });
      const text = `hello over ${transport} ${Math.random().toString(36).slice(2)}`;
      await page.fill("#text", text);
      await page.click("#go");
      await page.waitForFunction(
        (t) => [...document.querySelectorAll("#log li")].some((li) => li.textContent === t),
        text, { timeout: 15000 });
      const status = await page.textContent("#status");
      console.log(JSON.stringify({ transport, ok: true, status }));
    } catch (e) {
      failed += 1;
      console.log(JSON.stringify({ transport, ok: false, error: String(e).split("\n")[0] }));
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
