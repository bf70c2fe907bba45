// ws_roundtrip.js - the Node "ws" client against wsgate: round-trips text and binary messages
// of 0, 125, 126, 65535, 65536 bytes and 16 MiB, checks each echo byte- and type-exactly, then
// closes with 1000. Usage: node ws_roundtrip.js ws://127.0.0.1:PORT/echo
// Exits 0 only when everything matched; prints every failure otherwise.
'use strict';

const WebSocket = require('ws');

const url = process.argv[2];
if (!url) {
  console.error('usage: node ws_roundtrip.js ws://HOST:PORT/PATH');
  process.exit(2);
}

const SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024];
const failures = [];

function textOf(n) {
  // Multi-byte characters, exactly n UTF-8 bytes: repeat whole characters, then replace a
  // character cut by the end with ASCII.
  const unit = Buffer.from('κόσμε-心跳-😀-', 'utf8');
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = unit[i % unit.length];
  let i = n - 1;
  while (i >= 0 && (b[i] & 0xc0) === 0x80) i--;
  if (i >= 0) {
    const lead = b[i];
    const len = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (i + len > n) b.fill(0x61, i);
  }
  const t = b.toString('utf8');
  if (Buffer.byteLength(t) !== n || t.includes('\ufffd')) throw new Error(`textOf(${n}) broken`);
  return t;
}

function binaryOf(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
}

const cases = [];
for (const n of SIZES) {
  cases.push({ name: `text ${n}`, data: textOf(n), binary: false });
  cases.push({ name: `binary ${n}`, data: binaryOf(n), binary: true });
}

const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
let idx = 0;
const timer = setTimeout(() => {
  failures.push(`timed out at case ${idx} (${cases[idx] ? cases[idx].name : 'close'})`);
  finish();
}, 60000);

function finish() {
  clearTimeout(timer);
  if (failures.length) {
    for (const f of failures) console.error('FAIL: ' + f);
    process.exit(1);
  }
  console.log(`ok: ${cases.length} round trips and close 1000`);
  process.exit(0);
}

function sendNext() {
  if (idx >= cases.length) {
    ws.close(1000, 'node done');
    return;
  }
  const c = cases[idx];
  ws.send(c.data, { binary: c.binary });
}

ws.on('open', sendNext);
ws.on('message', (data, isBinary) => {
  const c = cases[idx];
  if (!c) {
    failures.push('unexpected extra message');
    return;
  }
  if (isBinary !== c.binary) {
    failures.push(`${c.name}: echoed as ${isBinary ? 'binary' : 'text'}`);
  }
  const want = c.binary ? c.data : Buffer.from(c.data, 'utf8');
  const got = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  if (got.length !== want.length) {
    failures.push(`${c.name}: length ${got.length} != ${want.length}`);
  } else if (!got.equals(want)) {
    failures.push(`${c.name}: payload differs`);
  }
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
