// ws_deflate.js - the Node "ws" client with perMessageDeflate against wsgate: the extension
// must be negotiated, then text and binary messages of several sizes (compressed by ws past its
// threshold) are echoed byte- and type-exactly, and the close is 1000.
// Usage: node ws_deflate.js ws://127.0.0.1:PORT/PATH ['{"clientNoContextTakeover":true}']
'use strict';

const WebSocket = require('ws');

const url = process.argv[2];
if (!url) {
  console.error('usage: node ws_deflate.js ws://HOST:PORT/PATH [PERMESSAGE_DEFLATE_JSON]');
  process.exit(2);
}
const pmd = Object.assign({ threshold: 0 }, JSON.parse(process.argv[3] || '{}'));
const SIZES = [1, 100, 4096, 65536, 500000];
const failures = [];

function jsonOf(n) {
  let s = '';
  for (let i = 0; s.length < n; i++) s += JSON.stringify({ id: i, px: 100 + (i % 97) / 10 }) + '\n';
  return s.slice(0, n);
}

function binaryOf(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i % 3 === 0) ? (i * 31 + 7) & 0xff : 0;
  return b;
}

const cases = [];
for (const n of SIZES) {
  cases.push({ name: `text ${n}`, data: jsonOf(n), binary: false });
  cases.push({ name: `binary ${n}`, data: binaryOf(n), binary: true });
}

const ws = new WebSocket(url, { perMessageDeflate: pmd, maxPayload: 64 * 1024 * 1024 });
let idx = 0;
const timer = setTimeout(() => {
  failures.push(`timed out at case ${idx}`);
  finish();
}, 60000);

function finish() {
  clearTimeout(timer);
  if (failures.length) {
    for (const f of failures) console.error('FAIL: ' + f);
    process.exit(1);
  }
  console.log(`ok: ${cases.length} round trips, extensions: ${ws.extensions}`);
  process.exit(0);
}

function sendNext() {
  if (idx >= cases.length) {
    ws.close(1000, 'node done');
    return;
  }
  ws.send(cases[idx].data, { binary: cases[idx].binary, compress: true });
}

ws.on('open', () => {
  if (!/^permessage-deflate/.test(ws.extensions)) failures.push(`not negotiated: '${ws.extensions}'`);
  sendNext();
});
ws.on('message', (data, isBinary) => {
  const c = cases[idx];
  if (!c) {
    failures.push('unexpected extra message');
    return;
  }
  if (isBinary !== c.binary) failures.push(`${c.name}: echoed as ${isBinary ? 'binary' : 'text'}`);
  const want = c.binary ? c.data : Buffer.from(c.data, 'utf8');
  const got = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  if (!got.equals(want)) failures.push(`${c.name}: payload differs (${got.length} bytes)`);
  idx++;
  sendNext();
});
ws.on('close', (code, reason) => {
  if (idx < cases.length) failures.push(`closed early at ${cases[idx].name}: ${code} ${reason}`);
  if (code !== 1000) failures.push(`close code ${code} (reason ${reason}), expected 1000`);
  finish();
});
ws.on('error', (err) => {
  failures.push(`error: ${err.message}`);
  finish();
});
