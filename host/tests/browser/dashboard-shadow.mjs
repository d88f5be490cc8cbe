// Drives the Sluice dashboard in Debian's headless Chromium through a shadow run.
// Usage: node dashboard-shadow.mjs BASE_URL TOKEN PIPELINE SCREENSHOT
// 1. Without the token no shadow panel is shown.
// 2. With the token the panel shows the candidate's counts and a difference (the test
//    attached a candidate that rounds paidAmount, and sent orders).
// 3. "promote" (confirmed) makes it the running plugin: the panel goes, and the
//    pipeline's incidents say it was promoted.
// Exits non-zero on any mismatch.
import { launch, fail } from './launch.mjs';

const [base, token, pipeline, screenshot] = process.argv.slice(2);
const at = `section[data-pipeline="${pipeline}"]`;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(base + '/');
  const section = page.locator(at);
  await section.waitFor({ timeout: 10000 });
  await page.waitForFunction(() => document.body.dataset.refreshed, null, { timeout: 10000 });
  if (!(await section.locator('.shadow').isHidden())) fail('the shadow panel shows without the token');
  console.log('without the token: no shadow panel');

  await page.fill('#token', token);
  await page.dispatchEvent('#token', 'change');
  await page.waitForFunction(
    (s) => / differed/.test(document.querySelector(s + ' .shadow-summary')?.textContent ?? '')
      && document.querySelector(s + ' .shadow-differences li'),
    at, { timeout: 15000 });
  await section.locator('.shadow').evaluate((d) => { d.open = true; });
  const shown = await section.evaluate((el) => ({
    summary: el.querySelector('.shadow-summary').textContent,
    difference: el.querySelector('.shadow-differences li').textContent,
  }));
  console.log(`with the token: ${JSON.stringify(shown)}`);
  if (!/\d+ compared, \d+ agreed, [1-9]\d* differed/.test(shown.summary)) fail(`counts: ${shown.summary}`);
  if (!shown.difference.includes('paidAmount')) fail(`difference: ${shown.difference}`);
  await page.screenshot({ path: screenshot, fullPage: true });

  await section.locator('.promote').click();
  await page.waitForFunction(
    (s) => document.querySelector(s + ' .shadow').hidden
      && /shadow promoted/.test(document.querySelector(s + ' .incidents')?.textContent ?? ''),
    at, { timeout: 15000 });
  console.log('promoted: the panel is gone, the incident is shown');
} finally {
  await browser.close();
}
