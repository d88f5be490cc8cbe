// Drives the Sluice dashboard in Debian's headless Chromium for a daemon with a warning.
// Usage: node dashboard-warning.mjs BASE_URL EXPECTED SCREENSHOT
// Checks that the page shows the daemon-wide warnings the API gives, once, on top, one
// containing EXPECTED; takes a screenshot. Exits non-zero on any mismatch.
import { launch, fail } from './launch.mjs';

const [base, expected, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(base + '/');
  await page.waitForFunction(() => document.querySelectorAll('#warnings li').length > 0, null, { timeout: 15000 });
  const shown = await page.evaluate(() => [...document.querySelectorAll('#warnings li')].map(li => li.textContent));
  const api = await page.evaluate(async () => (await (await fetch('/v1/pipelines')).json())[0].warnings);
  if (JSON.stringify(shown) !== JSON.stringify(api)) fail(`warnings shown ${JSON.stringify(shown)}, API ${JSON.stringify(api)}`);
  if (!shown.some(w => w.includes(expected))) fail(`no warning shown contains "${expected}": ${JSON.stringify(shown)}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`shown: ${JSON.stringify(shown)}; screenshot at ${screenshot}`);
} finally {
  await browser.close();
}
