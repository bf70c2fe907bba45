// browser_deflate.js - Debian's Chromium, driven by playwright-core, opens deflate_page.html
// and runs window.runPubsub against a pubsub route: the extension must be negotiated and every
// message come back equal with a clean close. (What went over the wire is checked by the
// Python side, which relays the socket.)
// Usage: node browser_deflate.js PAGE_URL WS_URL SIZES_JSON
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [pageUrl, wsUrl, sizesJson] = process.argv.slice(2);
if (!pageUrl || !wsUrl) {
  console.error('usage: node browser_deflate.js PAGE_URL WS_URL [SIZES_JSON]');
  process.exit(2);
}
const sizes = JSON.parse(sizesJson || '[2000, 10, 5000]');
const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  const failures = [];
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000,
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
    await page.goto(pageUrl, { timeout: 15000 });
    const r = await page.evaluate(([u, s]) => window.runPubsub(u, s), [wsUrl, sizes]);
    console.log('pubsub:', JSON.stringify(r));
    if (!r.opened) failures.push('not opened');
    if (!/^permessage-deflate/.test(r.extensions || '')) failures.push(`extensions '${r.extensions}'`);
    if (!r.equal || r.errors.length) failures.push(`messages: ${JSON.stringify(r)}`);
    if (!r.close || r.close.code !== 1000 || !r.close.wasClean) failures.push(`close ${JSON.stringify(r.close)}`);
  } catch (e) {
    failures.push(`exception: ${e && e.stack ? e.stack : e}`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (failures.length) {
    for (const f of failures) console.error('FAIL: ' + f);
    process.exit(1);
  }
  console.log('ok: chromium pubsub with permessage-deflate');
  process.exit(0);
})();
