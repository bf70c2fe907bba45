// browser_history_test.js - Chromium (playwright-core) opens history_page.html, which follows a
// channel with history; after RELOAD_AT messages the page is reloaded mid-stream and resumes with
// ?since=; exits 0 when the page got offsets FIRST.. FIRST+N-1 exactly once, in order, across the
// reload (no gap notice either: the history keeps them all).
// With RESUME=protocol the page resumes through the 'wsgate.since.<encoded>' subprotocol instead
// of the URL, and the test also checks the server named that token in its 101.
// 'ready' is printed once the page's WebSocket is open (subscribed); the test publishes then.
// Usage: node browser_history_test.js PAGE_URL WS_URL N RELOAD_AT [RESUME]
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [pageUrl, wsUrl, nArg, reloadArg, resumeArg] = process.argv.slice(2);
const RESUME = resumeArg || 'query';
const N = Number(nArg);
const RELOAD_AT = Number(reloadArg);
const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  let ctx;
  let failure = null;
  try {
    ctx = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 60000,
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    const url = `${pageUrl}?ws=${encodeURIComponent(wsUrl)}&resume=${RESUME}`;
    await page.goto(url, { timeout: 30000 });
    // 'ready' (the test starts publishing) only once the page's WebSocket is open: the 101
    // comes after the subscription, so no message is published before the page can get it
    const openBy = Date.now() + 30000;
    while (!(await page.evaluate(() => window.state().open))) {
      if (Date.now() > openBy) throw new Error('the page did not connect within 30 s');
      await sleep(10);
    }
    console.log('ready');
    let st;
    for (;;) {
      st = await page.evaluate(() => window.state());
      if (st.got.length >= RELOAD_AT) break;
      await sleep(10);
    }
    console.log(`reloading after ${st.got.length} messages at ${st.pos}`);
    await page.reload({ timeout: 30000 });
    const deadline = Date.now() + 30000;
    for (;;) {
      st = await page.evaluate(() => window.state());
      if (st.got.length >= N || Date.now() > deadline) break;
      await sleep(20);
    }
    const first = st.got[0];
    const want = Array.from({ length: N }, (_, i) => first + i);
    if (st.loads !== 2) failure = `page loaded ${st.loads} times`;
    else if (RESUME === 'protocol' && !String(st.protocol).startsWith('wsgate.since.')) {
      failure = `resumed connection's protocol is ${JSON.stringify(st.protocol)}`;
    }
    else if (JSON.stringify(st.got) !== JSON.stringify(want)) {
      const i = st.got.findIndex((v, k) => v !== want[k]);
      failure = `got ${st.got.length} of ${N}; first difference at ${i}: ${st.got.slice(i, i + 5)}`;
    } else if (st.errors.length) failure = `errors ${st.errors}`;
  } catch (e) {
    failure = `exception: ${e && e.stack ? e.stack : e}`;
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (failure) {
    console.error('FAIL: ' + failure);
    process.exit(1);
  }
  console.log(`ok: ${N} messages exactly once in order across a reload`);
  process.exit(0);
})();
