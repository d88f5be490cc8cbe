// Drives the Sluice dashboard in Debian's headless Chromium through what a visitor
// without the token and an operator with it see of dead letters, then with Redis gone.
// Usage: node dashboard-admin.mjs BASE_URL TOKEN PIPELINE SCREENSHOT
// 1. Without the token the page says dead letters need it; "replay all" is disabled.
// 2. With the token (typed once: kept in sessionStorage across a reload, never in
//    localStorage) it shows the pipeline's two dead letters; "replay all" is enabled.
// 3. It prints "kill redis" and waits for the test to stop Redis: the page then says the
//    dead letters cannot be read, with the daemon's answer (not that the daemon cannot
//    be reached); "replay all" is disabled and no count of 0 is shown.
// Exits non-zero on any mismatch.
import { launch, fail } from './launch.mjs';

const [base, token, pipeline, screenshot] = process.argv.slice(2);
const at = `section[data-pipeline="${pipeline}"]`;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  await page.goto(base + '/');
  const section = page.locator(at);
  await section.waitFor({ timeout: 10000 });
  await page.waitForFunction(
    (s) => document.querySelector(s + ' .dead-note')?.textContent === 'dead letters need the token',
    at, { timeout: 10000 });
  if (!(await section.locator('.replay-all').isDisabled())) fail('"replay all" is enabled without the token');
  console.log('without the token: dead letters need the token');

  await page.fill('#token', token);
  await page.dispatchEvent('#token', 'change');
  const twoShown = () => page.waitForFunction(
    (s) => document.querySelector(s + ' .dead-count')?.textContent === '(2)',
    at, { timeout: 10000 });
  await twoShown();
  if (await section.locator('.replay-all').isDisabled()) fail('"replay all" is disabled beside two dead letters');
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem('sluice-token'),
    local: localStorage.getItem('sluice-token'),
  }));
  if (stored.session !== token || stored.local !== null) fail(`token stored as ${JSON.stringify(stored)}`);
  await page.reload();
  await twoShown();
  console.log('with the token: two dead letters, the token kept across a reload');

  console.log('kill redis');
  await page.waitForFunction(
    (s) => (document.querySelector(s + ' .dead-note')?.textContent ?? '').startsWith('dead letters cannot be read: 503'),
    at, { timeout: 20000 });
  const shown = await section.evaluate((el) => ({
    note: el.querySelector('.dead-note').textContent,
    count: el.querySelector('.dead-count').textContent,
    replayAllDisabled: el.querySelector('.replay-all').disabled,
    message: document.getElementById('message').textContent,
  }));
  console.log(`with Redis down: ${JSON.stringify(shown)}`);
  if (shown.message.includes('cannot reach the daemon') || shown.message.includes('TypeError')) {
    fail(`the page says "${shown.message}" although the daemon answered`);
  }
  if (!shown.note.includes('redis unavailable')) fail(`the note does not give the daemon's answer: ${shown.note}`);
  if (!shown.replayAllDisabled) fail('"replay all" is enabled while the dead letters cannot be read');
  if (shown.count.includes('0')) fail(`a count is shown for dead letters that cannot be read: ${shown.count}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log('screenshot at ' + screenshot);
} finally {
  await browser.close();
}
