// node_ws_echo.js - the baseline from the `ws` tutorial: a Node WebSocket echo server.
// Usage: NODE_PATH=/work/main/tests/node/node_modules node bench/node_ws_echo.js [port]
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9003);
// perMessageDeflate is already off by default on a ws server; said here so nobody wonders.
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node_ws_echo: ws ${require('ws/package.json').version} listening on 127.0.0.1:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
