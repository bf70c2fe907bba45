// node_ws_broadcast.js - the Node baseline for fan-out: the `ws` README's "broadcast to all
// other clients" server. Every message is sent to every other open client.
// Usage: NODE_PATH=/work/main/tests/node/node_modules node bench/node_ws_broadcast.js [port]
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 9004);
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients)
      if (client !== ws && client.readyState === WebSocket.OPEN)
        client.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node_ws_broadcast: ws ${require('ws/package.json').version} listening on 127.0.0.1:${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
