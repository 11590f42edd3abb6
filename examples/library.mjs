// The library API in a few lines: a pair on loopback relaying to an echo target.
// Run: node examples/library.mjs   (after npm ci). The test suite runs it too.
import net from 'node:net';
import { once } from 'node:events';
import { startServer, startClient, createLogger } from '../dist/src/index.js';

// The target application: an echo server on 127.0.0.3 (any free port).
const target = net.createServer((socket) => socket.pipe(socket));
target.listen(0, '127.0.0.3');
await once(target, 'listening');
const { port } = target.address();

const logger = createLogger({ level: 'info', format: 'text', write: (line) => process.stderr.write(line) });
const secret = 'example-secret-that-is-long-enough-0123456789';

// The server relays user connections on 127.0.0.2:<port>; the client connects them to 127.0.0.3.
const server = await startServer({ port: 0, host: '127.0.0.1', ports: [{ host: '127.0.0.2', port }], secret, logger });
const client = await startClient({ host: '127.0.0.1', port: server.linkAddress.port, target: '127.0.0.3', secret, logger });
await once(server, 'link-up');

server.on('stream-close', (s) => console.log(`stream ${s.id} on port ${s.port}: ${s.bytesOut} B out, ${s.bytesIn} B in`));

const user = net.connect(port, '127.0.0.2');
user.end('hello through tcpipe');
let reply = '';
for await (const chunk of user) reply += chunk;
console.log(`reply: ${reply}`);

await Promise.all([client.stop(), server.stop()]);
target.close();
