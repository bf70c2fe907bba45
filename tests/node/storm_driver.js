// storm_driver.js - N clients of clients/js/wsgate-client.js (with "ws") through a balancer,
// for the reconnect-storm test and bench. Each client learns its instance from the route's
// welcome message ({"type":"welcome","id":"<instance>-..."}) and measures the latency of the
// published messages {"ts": epoch ms}. Opens are paced at OPEN_RATE a second so the initial
// fill does not count as a storm. Prints "ready" when all N are open (again each time they
// are), then runs until stdin says "stop" and writes the record to OUT as JSON:
//   opens:   [[t_ms, instance, client, n_th_open]]   (from the welcome)
//   closes:  [[t_ms, instance, client, code, delay_ms]]
//   lat:     [[t_ms, latency_ms, instance, open_t_ms]]  (messages received; LAT_EVERY below)
//   loop:    [[t_ms, lag_ms, worker]]  (each generator process's event-loop lag, every 50 ms)
//   refusals: [[t_ms, client, status, Wsgate-Retry or null]]  (upgrades answered with no 101)
//   workers: [{worker, clients, lag_p99_ms, lag_max_ms}]  (per generator process)
// WORKERS > 1 spreads the clients over that many Node processes (child_process.fork of this
// file), each its own share of the clients and of OPEN_RATE; this process then only
// coordinates: it sums their open counts for "ready", and merges their records (client
// numbers stay 0..N-1). One process driving 3,000 clients lagged 5.7 s in a storm: every
// reconnect it noticed late came back late, whatever the gateway said. LAT_EVERY k records
// the latency of every k-th client only (the probes, which measure it, use 1).
// Usage: node storm_driver.js WS_URL N OPEN_RATE OUT [WORKERS [LAT_EVERY]]
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const [url, nArg, rateArg, out, wArg, latArg, roleArg, offArg, idArg] = process.argv.slice(2);
const N = Number(nArg), RATE = Number(rateArg);
const WORKERS = Math.max(1, Number(wArg || 1));
const LAT_EVERY = Math.max(1, Number(latArg || 1));

function lagStats(loop) {
  const xs = loop.map((l) => l[1]).sort((a, b) => a - b);
  return {
    lag_p99_ms: xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))] : 0,
    lag_max_ms: xs.length ? xs[xs.length - 1] : 0,
  };
}

// Runs n clients numbered offset..offset+n-1; hooks.open(delta) on each open (+1) and close
// of an open client (-1); returns stop(), which closes them and gives the record.
async function runClients(n, rate, offset, worker, hooks) {
  const WebSocket = require('ws');
  const { WsgateClient } = await import(path.join(__dirname, '..', '..', 'clients', 'js',
    'wsgate-client.js'));
  const rec = { opens: [], closes: [], lat: [], loop: [], refusals: [] };
  // Every refused upgrade: [t_ms, client, HTTP status, wsgate's hint (Wsgate-Retry) or null].
  // A refusal without the hint (the balancer's own 503, say) sends the client into its
  // exponential backoff instead of its slot.
  class RecordingWebSocket extends WebSocket {
    constructor(u, protocols, i) {
      super(u, protocols);
      this.on('unexpected-response', (req, res) => {
        rec.refusals.push([Date.now(), i, res.statusCode, res.headers['wsgate-retry'] || null]);
      });
    }
  }
  // This process's own event-loop lag (a 50 ms timer's lateness): how late the load
  // generator itself notices anything, which is not the gateway's doing.
  let due = Date.now() + 50;
  const lagTimer = setInterval(() => {
    const now = Date.now();
    rec.loop.push([now, Math.max(0, now - due), worker]);
    due = now + 50;
  }, 50);
  const clients = [];
  for (let j = 0; j < n; j++) {
    const i = offset + j;
    const st = { inst: null, openT: 0, n: 0 };
    const withLat = i % LAT_EVERY === 0;
    const WS = class extends RecordingWebSocket {
      constructor(u, protocols) { super(u, protocols, i); }
    };
    const make = () => new WsgateClient(url, {
      WebSocket: WS, minDelay: 500, maxDelay: 10000,
      onMessage(data, m) {
        const now = Date.now();
        if (m && m.type === 'welcome') {
          st.inst = m.id.split('-')[0];
          st.openT = now;
          st.n++;
          rec.opens.push([now, st.inst, i, st.n]);
          hooks.open(1);
          return;
        }
        if (withLat && m && typeof m.ts === 'number') rec.lat.push([now, now - m.ts, st.inst, st.openT]);
      },
      onClose(ev, delay) {
        if (st.inst !== null) hooks.open(-1);
        rec.closes.push([Date.now(), st.inst, i, ev.code, delay]);
        st.inst = null;
      },
    });
    clients.push(null);
    setTimeout(() => { clients[j] = make(); }, Math.floor(j * 1000 / rate));
  }
  return () => {
    clearInterval(lagTimer);
    clients.forEach((c) => c && c.close());
    rec.workers = [{ worker, clients: n, ...lagStats(rec.loop) }];
    return rec;
  };
}

function stdinStop(fn) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => { if (line.trim() === 'stop') fn(); });
}

async function single() {
  let open = 0;
  const stop = await runClients(N, RATE, 0, 0, {
    open(d) { open += d; if (d > 0 && open === N) console.log('ready'); },
  });
  stdinStop(() => {
    fs.writeFileSync(out, JSON.stringify(stop()));
    console.log('done');
    process.exit(0);
  });
}

// A worker: its share of the clients; open counts and the stop go over IPC; its record goes
// to its own file (a 3,000-client record is too big to pass as one IPC message comfortably).
async function worker() {
  let pending = 0;
  // Open/close deltas batched per turn: one IPC message per turn, not per client.
  const flush = () => { if (pending !== 0) { process.send({ d: pending }); pending = 0; } };
  let scheduled = false;
  const stop = await runClients(N, RATE, Number(offArg), Number(idArg), {
    open(d) {
      pending += d;
      if (!scheduled) { scheduled = true; setImmediate(() => { scheduled = false; flush(); }); }
    },
  });
  process.on('message', (m) => {
    if (m !== 'stop') return;
    fs.writeFileSync(out, JSON.stringify(stop()));
    process.send('done', () => process.exit(0));
  });
  process.on('disconnect', () => process.exit(0)); // the coordinator is gone
}

function coordinator() {
  const { fork } = require('child_process');
  const kids = [];
  let open = 0, done = 0, offset = 0;
  for (let w = 0; w < WORKERS; w++) {
    const n = Math.floor(N / WORKERS) + (w < N % WORKERS ? 1 : 0);
    const file = `${out}.w${w}`;
    const k = fork(__filename, [url, String(n), String(RATE / WORKERS), file, '1',
      String(LAT_EVERY), 'worker', String(offset), String(w)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    kids.push({ k, file });
    offset += n;
    k.on('message', (m) => {
      if (m && typeof m.d === 'number') {
        open += m.d;
        if (m.d > 0 && open === N) console.log('ready');
      } else if (m === 'done' && ++done === WORKERS) {
        const rec = { opens: [], closes: [], lat: [], loop: [], refusals: [], workers: [] };
        for (const { file } of kids) {
          const r = JSON.parse(fs.readFileSync(file, 'utf8'));
          for (const key of Object.keys(rec)) for (const x of r[key]) rec[key].push(x);
          fs.unlinkSync(file);
        }
        for (const key of ['opens', 'closes', 'lat', 'loop', 'refusals']) rec[key].sort((a, b) => a[0] - b[0]);
        fs.writeFileSync(out, JSON.stringify(rec));
        console.log('done');
        process.exit(0);
      }
    });
    k.on('exit', (code) => {
      if (code !== 0 && done < WORKERS) {
        console.error(`storm_driver: worker ${w} exited ${code}`);
        process.exit(1);
      }
    });
  }
  stdinStop(() => kids.forEach(({ k }) => k.send('stop')));
}

(async () => {
  if (roleArg === 'worker') await worker();
  else if (WORKERS > 1) coordinator();
  else await single();
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
