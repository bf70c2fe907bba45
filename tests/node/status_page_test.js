// status_page_test.js - Debian's Chromium opens wsgate's /status page and checks it shows live
// figures: the route table lists the given route with its open connections, and the state reads
// "ready". Usage: node status_page_test.js http://127.0.0.1:ADMIN/status ROUTE MIN_OPEN SHOT.png
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [url, route, minOpen, shot] = process.argv.slice(2);
const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  let ctx;
  let code = 1;
  try {
    ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true,
      args: ARGS, timeout: 90000 });
    const page = ctx.pages()[0] || await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // The page must be self-contained: any request other than the page and /metrics fails it.
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(url, { timeout: 30000 });
    const sel = `#routes tr[data-route="${route}"] td:nth-child(2)`;
    await page.waitForFunction(([s, n]) => {
      const td = document.querySelector(s);
      return td && Number(td.textContent) >= n;
    }, [sel, Number(minOpen)], { timeout: 20000 });
    const state = await page.textContent('#state');
    const open = await page.textContent(sel);
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    const base = new URL(url);
    const foreign = requests.filter((u) => new URL(u).host !== base.host);
    const bad = [];
    if (state !== 'ready') bad.push(`state is ${state}`);
    if (errors.length) bad.push(`page errors: ${errors.join('; ')}`);
    if (foreign.length) bad.push(`external requests: ${foreign.join(', ')}`);
    if (!requests.some((u) => u.endsWith('/metrics'))) bad.push('the page never fetched /metrics');
    if (bad.length) console.log('FAIL: ' + bad.join(' | '));
    else { console.log(`OK: ${route} shows ${open} open, state ${state}`); code = 0; }
  } catch (e) {
    console.log('FAIL: ' + e.message);
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.exit(code);
})();
