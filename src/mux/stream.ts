/**
 * One relayed user connection inside a session: its state, its send side
 * (in send-buffer.ts: the bytes waiting, the credit granted by the partner, the replay) and
 * its receive side (credit this side grants, in receive-window.ts). It knows
 * nothing of sockets: the endpoint glue (endpoints/pipe) feeds it with
 * `write`/`end` and receives through a StreamSink.
 */
import type { Clock } from '../clock.js';
import { ProtocolError } from '../errors.js';
import { Flag, GoAwayCode } from '../protocol/constants.js';
import { encodeAccept, encodeReset, encodeWindow } from '../protocol/encode.js';
import type { Origin } from '../protocol/frame.js';
import { ReceiveWindow, type WindowBudget } from './receive-window.js';
import type { RoundTripView } from './round-trip.js';
import type { SendingStream, StreamSender } from './sender.js';
import { SendBuffer } from './send-buffer.js';
import { channels } from '../observe.js';
import {
  StreamState,
  canReceive,
  canSend,
  isFinished,
  nextState,
  type StreamEvent,
  type StreamStateValue,
} from './stream-state.js';

/** Where a stream delivers what the partner sent. */
export interface StreamSink {
  /** Bytes for the local socket; call `stream.consume(n)` once the socket took them. */
  onData(chunk: Buffer): void;
  /** The partner half-closed: no more data will come. */
  onEnd(): void;
  /** The stream is torn down (by the partner, a limit, or the link's loss). */
  onReset(code: number, reason: string): void;
  /** Entry side only: the exit side reached the target. */
  onAccept(): void;
  /** `write` returned false earlier and the stream can take more now. */
  onWritable(): void;
}

/**
 * What a stream is given: narrow callbacks, never the session. The session
 * builds one per session and shares it among its streams.
 */
export interface StreamContext {
  readonly sender: StreamSender;
  /** Lends receive window beyond the initial one. */
  readonly windows: WindowBudget;
  /** `bytes` left the receive buffers (consumed or dropped). */
  readonly released: (bytes: number) => void;
  readonly roundTrip: RoundTripView;
  readonly clock: Clock;
  /** Resumable session: keep sent bytes until the partner acknowledges them. */
  readonly resumable: boolean;
  /** The stream is done and may be forgotten. */
  readonly finished: (stream: Stream) => void;
}

export interface StreamWindows {
  readonly sendWindow: number;
  readonly receiveWindow: number;
  readonly maxWindow: number;
}

export class Stream implements SendingStream {
  state: StreamStateValue = StreamState.OPENING;
  readonly openedAt: number;
  closeReason = '';
  resetCode = -1;

  private sink: StreamSink | null = null;
  /** LOCAL flag for frames this side sends: set when the receiver is the entry side. */
  private readonly sendFlags: number;

  /** Send side: bytes waiting, the partner's credit, and what a resumed link may send again. */
  private readonly sendBuffer: SendBuffer;
  private finRequested = false;
  private writableWanted = false;
  /** The partner confirmed our FIN (WINDOW with FIN_RECEIVED): nothing of this direction is left to replay. */
  private finAcked = false;
  /** A resumed link lost our FIN: send it again after the replayed bytes. */
  private finResend = false;
  /** Observers only: why this stream waits to send, as last published. */
  private blockedFor: 'window' | 'link' | null = null;

  /** Receive side: the credit this side grants, and its growth. */
  readonly receiveWindow: ReceiveWindow;

  constructor(
    readonly id: number,
    /** True when this side opened the stream (the entry side). */
    readonly isEntry: boolean,
    readonly port: number,
    private readonly context: StreamContext,
    windows: StreamWindows,
    /** The user's addresses carried by the OPEN (capability origin); null when it carried none. */
    readonly origin: Origin | null = null,
  ) {
    this.sendFlags = isEntry ? 0 : Flag.LOCAL;
    this.sendBuffer = new SendBuffer(windows.sendWindow, context.resumable);
    this.openedAt = context.clock.now();
    this.receiveWindow = new ReceiveWindow(windows.receiveWindow, windows.maxWindow, this.openedAt);
  }

  /** Payload bytes received from the partner. */
  get receivedBytes(): number {
    return this.receiveWindow.received;
  }

  /** Map key: the two sides allocate ids independently. */
  get key(): number {
    return this.id * 2 + (this.isEntry ? 0 : 1);
  }

  get bufferedToSend(): number {
    return this.sendBuffer.waiting;
  }

  /** Payload bytes sent to the partner. */
  get sentBytes(): number {
    return this.sendBuffer.sent;
  }

  get hasSink(): boolean {
    return this.sink !== null;
  }

  attach(sink: StreamSink): void {
    this.sink = sink;
  }

  // ---- called by the endpoint glue -------------------------------------

  /** Queues bytes for the partner. False: hold further writes until onWritable. */
  write(chunk: Buffer): boolean {
    if (!canSend(this.state) || this.finRequested) return true;
    if (chunk.length === 0) return true;
    this.sendBuffer.push(chunk);
    this.context.sender.schedule(this);
    if (this.sendBuffer.waiting === 0) return true;
    this.writableWanted = true;
    return false;
  }

  /** Half-close: a FIN follows the bytes already written. */
  end(): void {
    if (!canSend(this.state) || this.finRequested) return;
    this.finRequested = true;
    this.sendFinIfReady();
  }

  /** Exit side: the target answered, the stream is open. */
  accept(): void {
    if (this.isEntry || this.state !== StreamState.OPENING) return;
    this.transition('accept');
    this.context.sender.sendFrame(encodeAccept(this.id));
  }

  /** Tears the stream down and tells the partner. */
  reset(code: number, reason: string): void {
    if (isFinished(this.state)) return;
    this.context.sender.sendFrame(encodeReset(this.id, this.sendFlags, code, reason));
    this.finishReset(code, reason, false);
  }

  /** The local socket took `bytes` of what onData delivered. */
  consume(bytes: number): void {
    if (this.state === StreamState.RESET) return;
    const due = this.receiveWindow.consume(bytes);
    this.context.released(bytes);
    if (due && canReceive(this.state)) this.sendWindowUpdate();
  }

  // ---- called by the session -------------------------------------------

  handleAccept(): void {
    if (!this.isEntry) throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `ACCEPT for stream ${this.id} opened by the partner`);
    this.transition('accept');
    this.sink?.onAccept();
    this.sendFinIfReady();
    if (this.sendBuffer.waiting > 0) this.context.sender.schedule(this);
  }

  handleData(payload: Buffer, fin: boolean): void {
    if (!canReceive(this.state) || (this.isEntry && this.state === StreamState.OPENING)) {
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `DATA on stream ${this.id} in state ${this.state}`);
    }
    const length = payload.length;
    if (length > 0) {
      if (!this.receiveWindow.receive(length)) {
        throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `stream ${this.id} overran its window`);
      }
      this.sink?.onData(payload);
    }
    if (fin) {
      if (this.state === StreamState.OPENING) {
        throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `FIN on stream ${this.id} before ACCEPT`);
      }
      this.transition('recv-fin');
      // Resumable: confirm the FIN, so the partner can forget the stream (a lost FIN would be resent).
      if (this.context.resumable) {
        this.context.sender.sendFrame(encodeWindow(this.id, this.sendFlags | Flag.FIN_RECEIVED, this.receiveWindow.consumed, this.receiveWindow.advertised));
      }
      this.sink?.onEnd();
      if (this.canForget()) this.context.finished(this);
    }
  }

  /** The partner received our FIN (and so every byte before it). */
  handleFinAcked(): void {
    if (this.finAcked || this.state === StreamState.RESET) return;
    if (this.state !== StreamState.LOCAL_CLOSED && this.state !== StreamState.CLOSED) {
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `stream ${this.id}: FIN acknowledged before it was sent`);
    }
    this.finAcked = true;
    this.sendBuffer.acknowledgeAll();
    if (this.state === StreamState.CLOSED) this.context.finished(this);
  }

  /** This side's entry in a resumed link's stream list. */
  resumeEntry(): { flags: number; consumed: number; window: number; received: number } {
    const finReceived = this.state === StreamState.REMOTE_CLOSED || this.state === StreamState.CLOSED;
    let flags = this.sendFlags;
    if (finReceived) flags |= Flag.FIN_RECEIVED;
    if (!this.isEntry && this.state !== StreamState.OPENING) flags |= Flag.ACCEPTED;
    const rw = this.receiveWindow;
    return { flags, consumed: rw.consumed, window: rw.advertised, received: rw.received };
  }

  /**
   * The partner's entry on a resumed link: it holds `received` bytes of this
   * direction, so what follows them is sent again (and the FIN, if it lacks
   * it); its window and ACCEPT are taken as if they had just arrived.
   */
  resumeFrom(received: number, consumed: number, window: number, flags: number): number {
    const send = this.sendBuffer;
    if (received < send.replayStart || received > send.sent || consumed > received) {
      throw new ProtocolError(
        GoAwayCode.PROTOCOL_ERROR,
        `stream ${this.id}: resumed at byte ${received}, outside the ${send.replayStart}..${send.sent} this side can replay`,
      );
    }
    const again = send.rewindTo(received);
    send.grant(consumed, window);
    const sentFin = this.state === StreamState.LOCAL_CLOSED || this.state === StreamState.CLOSED;
    if ((flags & Flag.FIN_RECEIVED) !== 0) {
      if (!sentFin || send.waiting !== 0) {
        throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `stream ${this.id}: resumed with a FIN this side did not send`);
      }
      this.finAcked = true;
    } else if (sentFin && !this.finAcked) {
      this.finResend = true;
    }
    if ((flags & Flag.ACCEPTED) !== 0 && this.isEntry && this.state === StreamState.OPENING) {
      this.transition('accept');
      this.sink?.onAccept();
    }
    return again;
  }

  /** The link is live again after a resumption: send what waits. */
  afterResume(): void {
    if (this.state === StreamState.RESET) return;
    if (this.state === StreamState.CLOSED && this.finAcked && this.sendBuffer.waiting === 0) {
      this.context.finished(this);
      return;
    }
    if (this.sendBuffer.waiting > 0) this.context.sender.schedule(this);
    else this.sendFinIfReady();
  }

  /** A closed stream is forgotten once nothing of it may need sending again. */
  private canForget(): boolean {
    return isFinished(this.state) && (this.state === StreamState.RESET || !this.context.resumable || this.finAcked);
  }

  handleWindow(consumed: number, window: number): void {
    if (consumed > this.sendBuffer.sent) {
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `WINDOW on stream ${this.id} acknowledges bytes never sent`);
    }
    if (this.sendBuffer.grant(consumed, window) && this.sendBuffer.waiting > 0) this.context.sender.schedule(this);
    if (channels.blocked.hasSubscribers) this.observeBlocked();
  }

  handleReset(code: number, reason: string): void {
    this.finishReset(code, reason, true);
  }

  /** The link is gone: no frame can be sent. */
  abort(code: number, reason: string): void {
    if (isFinished(this.state)) return;
    this.finishReset(code, reason, true);
  }

  /**
   * Sends up to `frames` DATA frames within the window. Returns true when
   * data and window remain (the sender queues it again).
   */
  flush(frames: number): boolean {
    // A reset stream may still sit in the send queue: it sends nothing (not even a FIN to resend).
    // A closed one may not be done: a resumed link rewinds it to what the partner holds.
    if (this.state === StreamState.RESET) return false;
    const sender = this.context.sender;
    const send = this.sendBuffer;
    const frame = sender.maxFrame;
    for (let sent = 0; send.waiting > 0 && sent < frames && send.credit > 0; sent++) {
      sender.sendData(this.id, this.sendFlags, send.take(frame));
      if (sender.congested) break;
    }
    if (channels.blocked.hasSubscribers) this.observeBlocked();
    if (send.waiting === 0) {
      this.sendFinIfReady();
      if (this.writableWanted) {
        this.writableWanted = false;
        this.sink?.onWritable();
      }
      return false;
    }
    return send.credit > 0;
  }

  // ---- internals -------------------------------------------------------

  private transition(event: StreamEvent): void {
    const next = nextState(this.state, event);
    if (next === null) {
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `stream ${this.id}: ${event} not allowed in state ${this.state}`);
    }
    this.state = next;
  }

  private sendFinIfReady(): void {
    if (this.sendBuffer.waiting > 0 || !this.context.sender.dataOpen) return;
    if (this.finResend) {
      this.finResend = false;
      this.context.sender.sendData(this.id, this.sendFlags | Flag.FIN, EMPTY);
      return;
    }
    if (!this.finRequested) return;
    if (this.state !== StreamState.OPEN && this.state !== StreamState.REMOTE_CLOSED) return;
    this.finRequested = false;
    this.transition('send-fin');
    this.context.sender.sendData(this.id, this.sendFlags | Flag.FIN, EMPTY);
    if (this.canForget()) this.context.finished(this);
  }

  private sendWindowUpdate(): void {
    const before = this.receiveWindow.size;
    const rttMs = this.context.roundTrip.forGrowth;
    const window = this.receiveWindow.update(this.context.clock.now(), rttMs, this.context.windows);
    this.context.sender.sendFrame(encodeWindow(this.id, this.sendFlags, this.receiveWindow.consumed, window));
    if (channels.window.hasSubscribers) {
      channels.window.publish({ stream: this.tag, before, after: this.receiveWindow.size, consumed: this.receiveWindow.consumed, rttMs });
    }
  }

  /** How observers name the stream (observe.ts). */
  get tag(): string {
    return `${this.id}${this.isEntry ? 'e' : 'x'}`;
  }

  /** Observers only: tells when this stream starts or stops waiting with bytes to send. */
  private observeBlocked(): void {
    const send = this.sendBuffer;
    const why = send.waiting === 0 ? null : send.credit <= 0 ? 'window' : this.context.sender.congested ? 'link' : null;
    if (why === this.blockedFor) return;
    if (this.blockedFor !== null) channels.unblocked.publish({ stream: this.tag });
    if (why !== null) channels.blocked.publish({ stream: this.tag, why });
    this.blockedFor = why;
  }

  private finishReset(code: number, reason: string, notifySink: boolean): void {
    this.transition('reset');
    this.resetCode = code;
    this.closeReason = reason;
    this.sendBuffer.clear();
    // Bytes delivered to the sink but never consumed are dropped with it.
    const unconsumed = this.receiveWindow.dropUnconsumed();
    if (unconsumed > 0) this.context.released(unconsumed);
    this.context.finished(this);
    if (notifySink) this.sink?.onReset(code, reason);
  }
}

const EMPTY = Buffer.alloc(0);
