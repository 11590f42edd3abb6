/**
 * The baseline relay: `net.createServer` + `pipe()` both ways, nothing else.
 *   node dist/bench/node-relay.js <listen-host> <listen-port> <target-host> <target-port>
 * TCP_NODELAY is set on both sockets, as tcpipe sets it, so that the two
 * differ only by what tcpipe adds (multiplexing, framing, flow control).
 */
import net from 'node:net';

const [listenHost, listenPort, targetHost, targetPort] = process.argv.slice(2);
if (listenHost === undefined || listenPort === undefined || targetHost === undefined || targetPort === undefined) {
  process.stderr.write('usage: node-relay <listen-host> <listen-port> <target-host> <target-port>\n');
  process.exit(2);
}

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  const upstream = net.connect({ host: targetHost, port: Number(targetPort), allowHalfOpen: true, noDelay: true });
  const abort = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', abort);
  upstream.on('error', abort);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.on('error', (err) => {
  process.stderr.write(`node-relay: ${err.message}\n`);
  if (!server.listening) process.exit(1);
});
server.listen({ host: listenHost, port: Number(listenPort), backlog: 4096 }, () => {
  process.stderr.write(`node-relay: ${listenHost}:${listenPort} -> ${targetHost}:${targetPort}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
