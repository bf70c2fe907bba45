// client_browser_test.js - Debian's Chromium (playwright-core) loads client_page.html, which
// imports clients/js/wsgate-client.js as an ES module with the browser's own WebSocket, and
// runs N clients against wsgate (with an admission budget, some are refused first).
// Usage: node client_browser_test.js PAGE_URL WS_URL N HEARTBEAT
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [pageUrl, wsUrl, n, hb] = process.argv.slice(2);
const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  const failures = [];
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000,
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
    await page.goto(pageUrl, { timeout: 15000 });
    await page.waitForFunction(() => window.moduleLoaded === true, null, { timeout: 10000 });
    const r = await page.evaluate(([u, k, h]) => window.runClient(u, k, h), [wsUrl, Number(n), hb]);
    console.log('result:', JSON.stringify(r));
    if (r.opened !== Number(n)) failures.push(`opened ${r.opened} of ${n}`);
    if (r.echoed !== Number(n)) failures.push(`echoed ${r.echoed} of ${n}`);
    if (r.heartbeatsShown !== 0) failures.push(`heartbeat shown ${r.heartbeatsShown} times`);
    if (r.failuresBeforeOpen === 0) failures.push('no refusal: the budget did not apply');
  } catch (e) {
    failures.push(`exception: ${e && e.stack ? e.stack : e}`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (failures.length) {
    for (const f of failures) console.error('FAIL: ' + f);
    process.exit(1);
  }
  console.log('ok: browser client module');
  process.exit(0);
})();
