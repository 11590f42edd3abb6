/**
 * The agent as a man in the middle: the tests' one relay (../relay.ts)
 * listening inside this namespace, recording what each connection sent
 * towards its upstream and dropping connections on command; and a replayer
 * that sends captured bytes again from here.
 */
import net from 'node:net';
import { FrameType } from '../../../src/protocol/constants.js';
import { FrameDecoder, parseCodeAndReason } from '../../../src/protocol/decode.js';
import { createRelay, type ChaosRelay } from '../relay.js';
import { bool, errCode, num, str, waker, type Args, type Json, type Op } from './common.js';

const relays = new Map<number, ChaosRelay>();

function relayOn(args: Args): ChaosRelay {
  const relay = relays.get(num(args, 'port'));
  if (relay === undefined) throw new Error(`no forwarder on port ${num(args, 'port')}`);
  return relay;
}

/**
 * Listens on host:port and forwards each connection to toHost:toPort, both
 * ways, half-closes included; records the first `recordBytes` bytes each
 * connection sent towards toHost (a man in the middle's capture).
 */
async function forwardStart(args: Args): Promise<Json> {
  const port = num(args, 'port');
  const relay = await createRelay(str(args, 'toHost'), num(args, 'toPort'), {
    listenHost: str(args, 'host', '127.0.0.1'),
    listenPort: port,
    recordBytes: num(args, 'recordBytes', 64 * 1024),
  });
  relays.set(port, relay);
  return { port };
}

function forwardConns(args: Args): Json {
  return relayOn(args).conns.map((c) => ({
    id: c.id,
    upstreamConnected: c.upstreamConnected,
    connectedAt: c.connectedAt,
    total: c.upBytes,
    closed: c.closed,
    recorded: Buffer.concat(c.up).toString('base64'),
  }));
}

/**
 * Drops every open forwarded connection as a middlebox would: mode 'rst'
 * resets both of its sockets, 'fin' stops forwarding and closes both
 * orderly (a FIN each way, no goodbye from either end).
 */
function forwardDrop(args: Args): Json {
  const relay = relayOn(args);
  const mode = str(args, 'mode', 'rst');
  return { dropped: mode === 'rst' ? relay.cut() : relay.drop() };
}

/**
 * Replays captured client bytes (base64 `data`) to host:port on a new
 * connection, as a tcpipe client would send them: the preface and the HELLO
 * first, the rest once the server answered (or at once with split=false).
 * Reports what the server did: the frame types it sent, its GOAWAY, and
 * whether it closed the connection within `timeoutMs`.
 */
async function replay(args: Args): Promise<Json> {
  const host = str(args, 'host');
  const port = num(args, 'port');
  const data = Buffer.from(str(args, 'data'), 'base64');
  const timeoutMs = num(args, 'timeoutMs', 5000);
  const split = bool(args, 'split', true);
  // The preface (8 bytes), then the HELLO frame: a 10-byte header whose length is at offset 6.
  let first = data.length;
  if (split && data.length >= 18) first = Math.min(data.length, 18 + data.readUInt32BE(14));
  const started = performance.now();
  const socket = net.connect({ host, port });
  socket.setNoDelay(true);
  let err: string | null = null;
  let closed = false;
  let recv = 0;
  const frames: number[] = [];
  let goaway: { code: number; reason: string } | null = null;
  let decodeError: string | null = null;
  const { poke, until } = waker();
  const decoder = new FrameDecoder({ maxDataPayload: 1024 * 1024 });
  socket.on('data', (chunk: Buffer) => {
    recv += chunk.length;
    if (decodeError === null) {
      try {
        decoder.push(chunk);
        for (let f = decoder.next(); f !== null; f = decoder.next()) {
          if (frames.length < 64) frames.push(f.type);
          if (f.type === FrameType.GOAWAY) goaway = parseCodeAndReason(f.payload);
        }
      } catch (e) {
        decodeError = e instanceof Error ? e.message : String(e);
      }
    }
    poke();
  });
  socket.on('error', (e) => (err ??= errCode(e)));
  socket.on('close', () => {
    closed = true;
    poke();
  });
  const connected = await new Promise<boolean>((resolve) => {
    socket.once('connect', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  let sent = 0;
  if (connected) {
    socket.write(data.subarray(0, first));
    sent = first;
    await until(() => closed || frames.length > 0 || decodeError !== null, Math.min(3000, timeoutMs));
    if (!closed && first < data.length) {
      socket.write(data.subarray(first));
      sent = data.length;
    }
    await until(() => closed, timeoutMs);
  }
  const closedByServer = closed;
  socket.destroy();
  return { connected, sent, recv, frames, goaway, decodeError, err, closedByServer, ms: Math.round(performance.now() - started) };
}

export const forwardOps: Readonly<Record<string, Op>> = {
  'forward-start': forwardStart,
  'forward-conns': forwardConns,
  'forward-drop': forwardDrop,
  replay,
};
