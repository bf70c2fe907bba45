// backend_ws_echo.js - a Node "ws" echo server used as a proxy backend by the integration suite
// and the proxy benchmark. Echoes every message with its type; on the text "please-close" it
// closes with 4000 "bye"; on "please-vanish" it drops TCP without a close frame; on "headers?"
// it answers with the upgrade request's URL and headers as JSON. It prints one JSON line per
// event on stdout: {"listening":PORT} first, then {"open":{url,headers,protocol}} and
// {"close":CODE,"reason":...,"url":...}.
// Usage: node backend_ws_echo.js [--port N] [--host H] [--protocol first|none|NAME]
//        [--cert FILE --key FILE] [--quiet]
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const WebSocket = require('ws');

const opts = { port: 0, host: '127.0.0.1', protocol: 'first', cert: null, key: null, quiet: false };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const next = () => {
    if (i + 1 >= process.argv.length) throw new Error(`${a} needs a value`);
    return process.argv[++i];
  };
  if (a === '--port') opts.port = Number(next());
  else if (a === '--host') opts.host = next();
  else if (a === '--protocol') opts.protocol = next();
  else if (a === '--cert') opts.cert = next();
  else if (a === '--key') opts.key = next();
  else if (a === '--quiet') opts.quiet = true;
  else {
    console.error(`backend_ws_echo.js: unknown argument ${a}`);
    process.exit(2);
  }
}

function report(obj) {
  if (!opts.quiet || obj.listening !== undefined) process.stdout.write(JSON.stringify(obj) + '\n');
}

const server = opts.cert
  ? https.createServer({ cert: fs.readFileSync(opts.cert), key: fs.readFileSync(opts.key) })
  : http.createServer();

const wss = new WebSocket.Server({
  server,
  maxPayload: 256 * 1024 * 1024,
  perMessageDeflate: false,
  // "first": the first subprotocol offered; "none": none; else that name when offered.
  handleProtocols: (protocols) => {
    const offered = [...protocols];
    if (opts.protocol === 'none' || offered.length === 0) return false;
    if (opts.protocol === 'first') return offered[0];
    return opts.protocol;
  },
});

wss.on('connection', (ws, req) => {
  const info = { url: req.url, headers: req.headers, protocol: ws.protocol };
  report({ open: info });
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      const text = data.toString('utf8');
      if (text === 'please-close') {
        ws.close(4000, 'bye');
        return;
      }
      if (text === 'please-vanish') {
        ws.terminate();
        return;
      }
      if (text === 'headers?') {
        ws.send(JSON.stringify(info));
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) =>
    report({ close: code, reason: reason.toString('utf8'), url: req.url }));
  ws.on('error', (err) => report({ error: String(err) }));
});

server.listen(opts.port, opts.host, () => report({ listening: server.address().port }));

function stop() {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
