// storm_driver.js - N clients of clients/js/wsgate-client.js (with "ws") through a balancer,
// for the reconnect-storm test and bench. Each client learns its instance from the route's
// welcome message ({"type":"welcome","id":"<instance>-..."}) and measures the latency of the
// published messages {"ts": epoch ms}. Opens are paced at OPEN_RATE a second so the initial
// fill does not count as a storm. Prints "ready" when all N are open, then runs until stdin
// says "stop" and writes the record to OUT as JSON:
//   opens:   [[t_ms, instance, client, n_th_open]]   (from the welcome)
//   closes:  [[t_ms, instance, client, code, delay_ms]]
//   lat:     [[t_ms, latency_ms, instance, open_t_ms]]  (every message received)
// Usage: node storm_driver.js WS_URL N OPEN_RATE OUT
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const WebSocket = require('ws');

const [url, nArg, rateArg, out] = process.argv.slice(2);
const N = Number(nArg), RATE = Number(rateArg);

(async () => {
  const { WsgateClient } = await import(path.join(__dirname, '..', '..', 'clients', 'js',
    'wsgate-client.js'));
  const rec = { opens: [], closes: [], lat: [] };
  const state = []; // per client: {inst, openT, n}
  let open = 0;
  const clients = [];
  for (let i = 0; i < N; i++) {
    state.push({ inst: null, openT: 0, n: 0 });
    const st = state[i];
    const make = () => new WsgateClient(url, {
      WebSocket, minDelay: 500, maxDelay: 10000,
      onMessage(data, m) {
        const now = Date.now();
        if (m && m.type === 'welcome') {
          st.inst = m.id.split('-')[0];
          st.openT = now;
          st.n++;
          rec.opens.push([now, st.inst, i, st.n]);
          open++;
          if (open === N) console.log('ready');
          return;
        }
        if (m && typeof m.ts === 'number') rec.lat.push([now, now - m.ts, st.inst, st.openT]);
      },
      onClose(ev, delay) {
        if (st.inst !== null) open--;
        rec.closes.push([Date.now(), st.inst, i, ev.code, delay]);
        st.inst = null;
      },
    });
    clients.push(null);
    setTimeout(() => { clients[i] = make(); }, Math.floor(i * 1000 / RATE));
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (line.trim() !== 'stop') return;
    clients.forEach((c) => c && c.close());
    fs.writeFileSync(out, JSON.stringify(rec));
    console.log('done');
    process.exit(0);
  });
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
