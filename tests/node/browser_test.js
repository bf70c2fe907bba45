// browser_test.js - Debian's Chromium, driven by playwright-core, opens echo_page.html and runs
// the page's WebSocket round trips against wsgate.
// Usage: node browser_test.js PAGE_URL WS_BASE   (WS_BASE like ws://127.0.0.1:PORT)
// Exits 0 only when every check passed; prints each failure otherwise.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [pageUrl, wsBase] = process.argv.slice(2);
if (!pageUrl || !wsBase) {
  console.error('usage: node browser_test.js PAGE_URL ws://HOST:PORT');
  process.exit(2);
}
const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function check(failures, name, cond, detail) {
  if (!cond) failures.push(`${name}: ${JSON.stringify(detail)}`);
}

function checkRun(failures, label, r, wantProtocol) {
  check(failures, `${label} opened`, r.opened, r);
  check(failures, `${label} errors`, r.errors.length === 0, r.errors);
  check(failures, `${label} protocol`, r.protocol === wantProtocol, r.protocol);
  check(failures, `${label} text echoed equal`, r.textOk, r);
  check(failures, `${label} text type`, r.textType === 'string', r.textType);
  check(failures, `${label} binary echoed equal`, r.binaryOk, r.binaryLength);
  check(failures, `${label} binary type`, r.binaryType === 'arraybuffer', r.binaryType);
  check(failures, `${label} close code`, r.close && r.close.code === 1000, r.close);
  check(failures, `${label} wasClean`, r.close && r.close.wasClean === true, r.close);
  check(failures, `${label} close reason`, r.close && r.close.reason === 'browser done', r.close);
}

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  const failures = [];
  let ctx;
  try {
    // A persistent context is how playwright takes a fresh --user-data-dir.
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 30000,
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('console', (m) => console.log('page console:', m.text()));
    page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
    await page.goto(pageUrl, { timeout: 15000 });
    const plain = await page.evaluate(([u]) => window.runEcho(u), [`${wsBase}/echo`]);
    console.log('echo:', JSON.stringify(plain));
    checkRun(failures, '/echo', plain, '');
    const chat = await page.evaluate(([u, p]) => window.runEcho(u, p),
      [`${wsBase}/chat`, ['superchat', 'chat']]);
    console.log('chat:', JSON.stringify(chat));
    checkRun(failures, '/chat', chat, 'chat');
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
  console.log('ok: browser round trips, subprotocol and clean close');
  process.exit(0);
})();
