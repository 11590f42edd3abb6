/**
 * The relay of one stream: a local TCP socket (the user's connection on the
 * entry side, the target connection on the exit side) joined to its stream.
 *
 * Backpressure both ways: the socket is paused while the stream holds unsent
 * bytes (no window, or the link is busy); window credit goes back to the
 * partner only for bytes the socket has taken (write() returned true, or on
 * 'drain'). A FIN is relayed as a FIN after the data; anything abnormal is
 * relayed as a reset.
 */
import type net from 'node:net';
import { errorMessage } from '../errors.js';
import { ResetCode } from '../protocol/constants.js';
import type { Stream, StreamSink } from '../mux/stream.js';

const EMPTY = Buffer.alloc(0);
/**
 * Corked bytes written at once, without waiting for the end of the turn: a
 * busy link can deliver up to 32 reads of 64 KiB in one poll phase, and the
 * target should not wait for all of them.
 */
const COALESCE_BYTES = 256 * 1024;
/** A first piece smaller than this is written at once, uncorked: interactive traffic pays no extra latency. */
const DIRECT_BYTES = 2048;
/**
 * While the socket is paused, it is probed this often for a reset: a paused
 * socket whose read buffer is full stops reading, so the kernel's RST goes
 * unseen until it reads again. docs/PROTOCOL.md bounds the relay of a reset
 * at 1 s; a probe is one empty write (no byte on the wire).
 */
const RESET_PROBE_MS = 250;

/**
 * Closes a socket abortively (RST). Not while its FIN may be pending (end()
 * called, its last bytes handed to the kernel, 'finish' not yet come): libuv
 * refuses to reset a socket that is shutting down (UV_EINVAL), and Node then
 * drops the handle without closing it: no 'close', a leaked descriptor, and a
 * process that spins at exit waiting for it (issue 17: fault scenario 9's
 * client after SIGTERM). Its FIN is then on its way anyway: a plain close.
 */
function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.writableEnded && !socket.writableFinished && socket.writableLength === 0) socket.destroy();
  else socket.resetAndDestroy();
}

export interface PipeEvents {
  /** The socket is gone; `reason` is empty for a clean close in both directions. */
  onClosed(pipe: StreamPipe, reason: string): void;
}

export class StreamPipe implements StreamSink {
  /** Bytes written to the socket but not yet credited back (waiting for 'drain'). */
  private uncredited = 0;
  private socketError: Error | null = null;
  private resetByPartner = false;
  private closedReason: string | null = null;
  /** RESET code that ended the stream (either side's), or -1. */
  closeCode = -1;

  private readonly onSocketData = (chunk: Buffer): void => {
    if (!this.stream.write(chunk)) this.pauseSocket();
  };
  /** Probes a paused socket for a reset while it waits for window (see RESET_PROBE_MS). */
  private resetProbe: NodeJS.Timeout | null = null;
  private readonly probeForReset = (): void => {
    const socket = this.socket;
    if (socket.destroyed || !socket.isPaused()) return this.stopResetProbe();
    // An empty write reports a pending ECONNRESET (the kernel checks the socket's error
    // before the length); Node then destroys the socket and handleSocketClose relays the reset.
    // Once this side has ended its writes, only reading again would see the RST.
    if (socket.writable && !socket.writableEnded && !this.corked) socket.write(EMPTY, this.onResetProbed);
  };
  private readonly onResetProbed = (err?: Error | null): void => {
    if (err !== null && err !== undefined) this.socketError ??= err;
  };
  private readEnded = false;
  private readonly onSocketEnd = (): void => {
    this.readEnded = true;
    if (!this.socket.writable) {
      this.stream.end();
      return;
    }
    // libuv reports a reset that arrives after a partial read as end-of-stream (POLLHUP).
    // An empty write surfaces the pending error first, so a reset is never relayed as a FIN;
    // on success the FIN follows every byte already handed to the stream.
    this.uncorkNow();
    this.socket.write(EMPTY, this.onEndProbed);
  };
  private readonly onEndProbed = (err?: Error | null): void => {
    if (err !== null && err !== undefined) this.socketError ??= err; // the socket closes; handleSocketClose resets
    else this.stream.end();
  };
  /** Credits what the socket took. 'drain' does not come once the socket is ending: 'finish' and 'close' credit too. */
  private readonly onSocketDrain = (): void => {
    const credit = this.uncredited;
    this.uncredited = 0;
    if (credit > 0) this.stream.consume(credit);
  };
  private readonly onSocketError = (err: Error): void => {
    this.socketError ??= err;
  };
  private readonly onSocketClose = (): void => this.handleSocketClose();
  /**
   * Set while the socket is corked by onData: the pieces of DATA delivered in
   * one event-loop turn (a 64 KiB frame split over two link reads, TLS's 16 KiB
   * records) leave in one writev instead of one write each.
   */
  private corked = false;
  private readonly uncorkTurn = (): void => this.uncorkNow();

  constructor(
    readonly socket: net.Socket,
    readonly stream: Stream,
    private readonly events: PipeEvents,
  ) {
    stream.attach(this);
    socket.on('data', this.onSocketData);
    socket.on('end', this.onSocketEnd);
    socket.on('drain', this.onSocketDrain);
    socket.on('finish', this.onSocketDrain);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
  }

  /** Starts relaying what the socket receives (sockets are accepted paused). */
  start(): void {
    this.socket.resume();
  }

  // ---- StreamSink --------------------------------------------------------

  onData(chunk: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!this.corked) {
      // A small first piece (a keystroke, a request, a ping) goes out at once: no wait for the end of the turn.
      if (chunk.length < DIRECT_BYTES) {
        if (socket.write(chunk)) this.stream.consume(chunk.length);
        else this.uncredited += chunk.length;
        return;
      }
      // Uncorked after the poll phase: every link read of this turn is in by then.
      this.corked = true;
      socket.cork();
      setImmediate(this.uncorkTurn);
    }
    // Corked, write() says false once a turn's bytes pass the high-water mark: those are credited on 'drain'.
    if (socket.write(chunk)) this.stream.consume(chunk.length);
    else this.uncredited += chunk.length;
    // Enough is waiting: write it now rather than hold the target back until the turn ends.
    if (socket.writableLength >= COALESCE_BYTES) this.uncorkNow();
  }

  onEnd(): void {
    this.uncorkNow();
    if (!this.socket.destroyed) this.socket.end();
  }

  onReset(code: number, reason: string): void {
    this.resetByPartner = true;
    this.closeCode = code;
    this.closedReason = reason;
    this.uncorkNow();
    resetSocket(this.socket);
  }

  /** Entry side: the exit side reached its target (a refusal comes as a reset before this). */
  accepted = false;

  onAccept(): void {
    this.accepted = true;
  }

  onWritable(): void {
    this.stopResetProbe();
    if (!this.socket.destroyed) this.socket.resume();
  }

  private pauseSocket(): void {
    this.socket.pause();
    if (this.resetProbe === null) {
      this.resetProbe = setInterval(this.probeForReset, RESET_PROBE_MS);
      this.resetProbe.unref();
    }
  }

  private stopResetProbe(): void {
    if (this.resetProbe === null) return;
    clearInterval(this.resetProbe);
    this.resetProbe = null;
  }

  /** Closes the local socket abortively and tells the partner (shutdown, limits). */
  abort(code: number, reason: string): void {
    this.closedReason = reason;
    this.closeCode = code;
    this.stream.reset(code, reason);
    this.uncorkNow();
    resetSocket(this.socket);
  }

  /** Writes what this turn corked (before end(), the FIN probe, a reset, and at the end of the turn). */
  private uncorkNow(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private handleSocketClose(): void {
    this.stopResetProbe();
    const { stream } = this;
    // Whatever was written is delivered or lost with the socket: either way it leaves the receive budget.
    this.onSocketDrain();
    if (!this.resetByPartner && this.closedReason === null) {
      // Closed cleanly both ways: the stream may still be sending what the socket
      // gave it, then its FIN; that needs no socket. Anything else lost bytes.
      const clean = this.socketError === null && this.readEnded && this.socket.writableFinished;
      if (!clean && stream.state !== 'closed') {
        // The socket died before both directions finished: the partner must see a reset.
        const why = this.socketError !== null ? errorMessage(this.socketError) : 'connection closed before the stream finished';
        this.closedReason = `${stream.isEntry ? 'user application' : 'target'}: ${why}`;
        stream.reset(ResetCode.PEER_RESET, this.closedReason);
      }
    }
    this.events.onClosed(this, this.closedReason ?? '');
  }
}
