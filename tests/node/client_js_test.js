// client_js_test.js - clients/js/wsgate-client.js under Node with the "ws" package (Node 18
// has no global WebSocket). Scenarios (argv[2]):
//   contract            against a tiny "ws" server here that speaks the delivery contract
//                       (pos, since=, resume, gap, close reason retry=/since=, heartbeat),
//                       and an upgrade nobody answers given up after openTimeout
//   echo URL HB         against wsgate: echo, the app heartbeat HB is liveness only
//   admission URL N     N clients at once against a 1/s budget: refused ones obey
//                       Retry-After (>= 1 s) and all end up open
//   drain URL           prints "open", then the close (code, reason, delay) when wsgate is
//                       drained, then "reopened" once a gateway answers again
// Prints "ok: ..." and exits 0, or "FAIL: ..." and exits 1.
'use strict';

const path = require('path');
const WebSocket = require('ws');

const CLIENT = path.join(__dirname, '..', '..', 'clients', 'js', 'wsgate-client.js');

function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
}

function until(pred, ms, what) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const iv = setInterval(() => {
      if (pred()) {
        clearInterval(iv);
        resolve();
      } else if (Date.now() - t0 > ms) {
        clearInterval(iv);
        fail(`${what} not within ${ms} ms`);
      }
    }, 10);
  });
}

async function contract(C) {
  const { WsgateClient, parseCloseReason, sinceParam, backoffDelay } = C;
  // Pure parts first.
  const r = parseCloseReason('retry=3.2 since=ab_C-9:17 future=x junk');
  if (r.retry !== 3.2 || r.since !== 'ab_C-9:17' || r.future !== 'x') fail(`parse ${JSON.stringify(r)}`);
  if (parseCloseReason('going away').retry !== undefined) fail('free text parsed as a hint');
  if (sinceParam({ chat: 'E:3' }) !== 'E:3') fail('one-channel since');
  if (sinceParam({ a: 'E:1', b: 'F:2' }) !== 'a@E:1,b@F:2') fail('several-channel since');
  const o = { minDelay: 100, maxDelay: 1000, factor: 2 };
  if (backoffDelay(0, o, () => 0.999) > 100 || backoffDelay(10, o, () => 0.999) > 1000 ||
      backoffDelay(3, o, () => 0.5) !== 400) fail('backoff caps');

  // A server that speaks the contract: each connection's since= is recorded.
  const wss = new WebSocket.Server({ host: '127.0.0.1', port: 0 });
  await new Promise((res) => wss.on('listening', res));
  const port = wss.address().port;
  const seen = []; // since= of each connection
  let conn = 0;
  wss.on('connection', (sock, req) => {
    const u = new URL(req.url, 'http://x');
    seen.push(u.searchParams.get('since'));
    conn++;
    if (conn === 1) {
      for (let i = 1; i <= 3; i++) {
        sock.send(JSON.stringify({ type: 'message', channel: 'chat', pos: `E:${i}`, data: `m${i}` }));
      }
      sock.send('hb');
      setTimeout(() => sock.close(1001, 'retry=0.3'), 50);
    } else if (conn === 2) {
      // Resumed from E:3: a gap (4..6 trimmed), then E:7; then a drain whose reason
      // carries since= (one channel).
      sock.send(JSON.stringify({ type: 'gap', channel: 'chat', epoch: 'E', from: 4, to: 6, reason: 'trimmed' }));
      sock.send(JSON.stringify({ type: 'message', channel: 'chat', pos: 'E:7', data: 'm7' }));
      setTimeout(() => sock.close(1012, 'retry=0.1 since=E:9'), 50);
    } else if (conn === 3) {
      // A resume message names the positions of several channels before the close.
      sock.send(JSON.stringify({ type: 'resume', since: { chat: 'E:9', news: 'N:2' } }));
      setTimeout(() => sock.close(1013, 'retry=0.1'), 50);
    } else if (conn === 4) {
      // Silent: the client's heartbeat timeout must give up on this one.
    }
  });
  const got = [], gaps = [], closes = [];
  const c = new WsgateClient(`ws://127.0.0.1:${port}/chat?x=1`, {
    WebSocket, heartbeatMessage: 'hb', heartbeatTimeout: 400, minDelay: 50, maxDelay: 200,
    onMessage: (d) => got.push(d),
    onGap: (g) => gaps.push(g),
    onClose: (ev, delay) => closes.push([ev.code, ev.reason, delay]),
  });
  await until(() => conn >= 5, 8000, 'five connections');
  c.close();
  wss.close();
  const data = got.map((d) => JSON.parse(d).data);
  if (data.join(',') !== 'm1,m2,m3,m7') fail(`messages ${data} (heartbeat delivered, or lost)`);
  if (gaps.length !== 1 || gaps[0].from !== 4 || gaps[0].to !== 6) fail(`gaps ${JSON.stringify(gaps)}`);
  if (seen[0] !== null || seen[1] !== 'E:3' || seen[2] !== 'E:9' || seen[3] !== 'chat@E:9,news@N:2' ||
      seen[4] !== 'chat@E:9,news@N:2') fail(`since sent ${JSON.stringify(seen)}`);
  if (closes[0][2] !== 300 || closes[1][2] !== 100 || closes[2][2] !== 100) fail(`hint delays ${JSON.stringify(closes)}`);
  if (closes[3][0] !== 4000 || closes[3][2] > 200) fail(`heartbeat timeout ${JSON.stringify(closes[3])}`);
  console.log(`ok: contract (5 connections, since ${JSON.stringify(seen)}, 1 gap, hints obeyed)`);
  await openTimeout(C);
}

// A server that accepts TCP and never answers the upgrade: the attempt is given up after
// openTimeout (close 4001) and retried, not waited for forever.
async function openTimeout(C) {
  const net = require('net');
  let accepts = 0;
  const socks = [];
  const srv = net.createServer((s) => { accepts++; socks.push(s); });
  await new Promise((res) => srv.listen(0, '127.0.0.1', res));
  const closes = [];
  const c = new C.WsgateClient(`ws://127.0.0.1:${srv.address().port}/x`, {
    WebSocket, openTimeout: 300, minDelay: 50, maxDelay: 100,
    onClose: (ev, delay) => closes.push([ev.code, ev.reason, delay]),
  });
  await until(() => accepts >= 2, 3000, 'a retry after the open timeout');
  c.close();
  socks.forEach((s) => s.destroy());
  srv.close();
  if (closes.length < 1 || closes[0][0] !== 4001 || closes[0][1] !== 'open timeout') fail(`open timeout ${JSON.stringify(closes)}`);
  console.log(`ok: open timeout (${accepts} attempts, close ${closes[0][0]})`);
}

async function echo(C, url, hb) {
  let opened = 0;
  const got = [];
  const c = new C.WsgateClient(url, {
    WebSocket, heartbeatMessage: hb, heartbeatTimeout: 3000,
    onOpen: () => { opened++; c.send('hello'); },
    onMessage: (d) => got.push(String(d)),
  });
  await until(() => got.includes('hello'), 5000, 'echo');
  await new Promise((r) => setTimeout(r, 1500)); // several heartbeats (ping_interval 300ms)
  c.close();
  if (opened !== 1) fail(`opened ${opened} times: heartbeats did not keep it alive`);
  if (got.some((d) => d === hb)) fail('the heartbeat message was delivered to the application');
  console.log(`ok: echo with heartbeat, ${got.length} message(s)`);
}

async function admission(C, url, n) {
  const clients = [];
  const refusals = [];
  let open = 0;
  const t0 = Date.now();
  for (let i = 0; i < n; i++) {
    clients.push(new C.WsgateClient(url, {
      WebSocket, minDelay: 50, maxDelay: 100,
      onOpen: () => { open++; },
      onClose: (ev, delay) => refusals.push(delay),
    }));
  }
  await until(() => open === n, 30000, `all ${n} open`);
  const el = Date.now() - t0;
  clients.forEach((c) => c.close());
  // Backoff alone (max 100 ms) would retry at once; the hints (Wsgate-Retry) are at least
  // 100 ms, and the return slots of 6 clients at 2 a second reach past a second.
  if (refusals.length === 0) fail('nothing was refused: the budget did not apply');
  if (refusals.some((d) => d < 100)) fail(`a refusal retried before its hint: ${refusals}`);
  if (Math.max(...refusals) < 1000) fail(`the refusals were not paced by the hints: ${refusals}`);
  console.log(`ok: admission ${n} open in ${el} ms after ${refusals.length} refusal(s), delays ${refusals}`);
}

async function drain(C, url) {
  let opens = 0;
  const c = new C.WsgateClient(url, {
    WebSocket, minDelay: 100, maxDelay: 200,
    onOpen: () => { opens++; console.log(opens === 1 ? 'open' : 'reopened'); },
    onClose: (ev, delay) => { if (ev.code !== 1006) console.log(`close ${ev.code} ${ev.reason} ${delay}`); },
  });
  await until(() => opens >= 2, 20000, 'reopen');
  c.close();
  console.log('ok: drain');
}

(async () => {
  const C = await import(CLIENT);
  const [mode, url, arg] = process.argv.slice(2);
  if (mode === 'contract') await contract(C);
  else if (mode === 'echo') await echo(C, url, arg);
  else if (mode === 'admission') await admission(C, url, Number(arg));
  else if (mode === 'drain') await drain(C, url);
  else fail(`unknown mode ${mode}`);
  process.exit(0);
})().catch((e) => fail(e && e.stack || e));
