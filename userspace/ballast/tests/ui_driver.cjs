// Drives the agent's web page in headless Chromium (Debian's, through playwright-core)
// for the Rust tests: opens URL, then answers commands read from standard input, one a
// line: `wait SELECTOR` (ok once an element matches, within 30 s, without reloading the
// page: the page updates itself) and `text SELECTOR` (the element's text). Each answer is
// one line. Ends at end of input.
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "/opt/ballast-node/node_modules/playwright-core");
const readline = require("readline");

(async () => {
  const [url] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error("page error: " + e.message));
  await page.goto(url);
  console.log("loaded");
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, ...rest] = line.split(" ");
    const sel = rest.join(" ");
    try {
      if (cmd === "wait") {
        await page.waitForSelector(sel, { timeout: 30000 });
        console.log("ok");
      } else if (cmd === "text") {
        console.log(JSON.stringify(await page.locator(sel).first().innerText({ timeout: 5000 })));
      } else {
        console.log("unknown command");
      }
    } catch (e) {
      console.log("error " + String(e.message).split("\n")[0]);
    }
  }
  await browser.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
