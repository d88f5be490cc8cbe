// Drives the Sluice dashboard in Debian's headless Chromium for a pipeline that cannot
// use Redis. Usage: node dashboard-error.mjs BASE_URL PIPELINE EXPECTED SCREENSHOT
// Checks that the page shows state `error` (marked as such) with the reason the API
// gives, containing EXPECTED; takes a screenshot. Exits non-zero on any mismatch.
import { launch, fail } from './launch.mjs';

const [base, pipeline, expected, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(base + '/');
  const section = page.locator(`section[data-pipeline="${pipeline}"]`);
  await section.waitFor({ timeout: 10000 });
  await page.waitForFunction(
    (name) => document.querySelector(`section[data-pipeline="${name}"] .state`)?.textContent === 'error',
    pipeline, { timeout: 15000 });
  const shown = await section.evaluate((el) => ({
    marked: el.querySelector('.state').classList.contains('error'),
    fault: el.querySelector('.fault').textContent,
  }));
  const api = await page.evaluate(async (name) => (await (await fetch('/v1/pipelines/' + name)).json()), pipeline);
  if (!shown.marked) fail('the state is not marked as an error');
  if (!shown.fault.includes(api.error)) fail(`reason shown "${shown.fault}", API "${api.error}"`);
  if (!shown.fault.includes(expected)) fail(`reason shown "${shown.fault}" lacks "${expected}"`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`shown: ${JSON.stringify(shown)}; screenshot at ${screenshot}`);
} finally {
  await browser.close();
}
