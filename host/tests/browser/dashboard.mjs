// Drives the Sluice dashboard in Debian's headless Chromium.
// Usage: node dashboard.mjs BASE_URL TOKEN PIPELINE SCREENSHOT
// Checks that the numbers shown match the API, clicks pause and sees the pipeline pause
// (in the page and in the API), takes a screenshot. Exits non-zero on any mismatch.
import { launch, fail } from './launch.mjs';

const [base, token, pipeline, screenshot] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(base + '/');
  const section = page.locator(`section[data-pipeline="${pipeline}"]`);
  await section.waitFor({ timeout: 10000 });
  // Dead letters are shown with the token only.
  await page.fill('#token', token);
  await page.dispatchEvent('#token', 'change');
  // Let a few refreshes pass with traffic, then compare with the API within one refresh.
  await page.waitForFunction(
    (name) => Number(document.querySelector(`section[data-pipeline="${name}"] .throughput`)?.textContent) > 0
      && document.querySelectorAll(`section[data-pipeline="${name}"] tbody tr`).length > 0,
    pipeline, { timeout: 15000 });
  const shown = await section.evaluate((el) => ({
    state: el.querySelector('.state').textContent,
    digest: el.querySelector('.digest').textContent,
    dead: el.querySelectorAll('tbody tr').length,
  }));
  const api = await page.evaluate(async (name) => (await (await fetch('/v1/pipelines/' + name)).json()), pipeline);
  if (shown.state !== api.state) fail(`state shown ${shown.state}, API ${api.state}`);
  if (!api.plugin.startsWith(shown.digest)) fail(`digest shown ${shown.digest}, API ${api.plugin}`);
  const deadApi = await page.evaluate(async ([name, token]) => (await (await fetch(`/v1/pipelines/${name}/dead?count=20`,
    { headers: { Authorization: 'Bearer ' + token } })).json()).entries.length, [pipeline, token]);
  if (shown.dead !== deadApi) fail(`dead letters shown ${shown.dead}, API ${deadApi}`);
  console.log(`shown: ${JSON.stringify(shown)}; api: state=${api.state} throughput=${api.throughput}`);

  await section.locator('button.toggle').click();
  await page.waitForFunction(
    (name) => document.querySelector(`section[data-pipeline="${name}"] .state`)?.textContent === 'paused',
    pipeline, { timeout: 10000 });
  const after = await page.evaluate(async (name) => (await (await fetch('/v1/pipelines/' + name)).json()).state, pipeline);
  if (after !== 'paused') fail(`after clicking pause the API says ${after}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log('paused through the page; screenshot at ' + screenshot);
} finally {
  await browser.close();
}
