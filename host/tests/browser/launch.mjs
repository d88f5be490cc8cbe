// Debian's headless Chromium as the dashboard checks launch it, and their failure exit.
import { chromium } from 'playwright-core';

export const launch = () => chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

export const fail = (message) => { console.error('FAIL: ' + message); process.exit(1); };
