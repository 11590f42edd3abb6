/**
 * The stream lists of a resumed link (docs/PROTOCOL.md, "Stream lists"): this
 * side's entries, the partner's entries applied to the streams held here, and
 * answers for streams that finished here meanwhile (from the tombstones a
 * resumable session keeps). The session owns the streams and the link; this
 * owns what only a resumption needs.
 */
import { ProtocolError } from '../errors.js';
import { Flag, GoAwayCode, ResetCode, ResumeKind } from '../protocol/constants.js';
import { encodeOpenWithOrigin, encodeReset, encodeResume, encodeResumedWindow, encodeWindow, u32 } from '../protocol/encode.js';
import { parseResumedReceived, parseWindow } from '../protocol/decode.js';
import type { Frame } from '../protocol/frame.js';
import type { Stream } from './stream.js';
import type { ResumeInfo } from './types.js';

/** How a finished stream ended: its RESET, or closed both ways. */
type Tombstone = { readonly code: number; readonly reason: string } | 'closed';

/** Finished streams remembered per session (their RESET or FIN-ack may have been lost with a link). */
const MAX_TOMBSTONES = 4096;

/** The session's streams as a resumption sees them. */
export interface HeldStreams {
  readonly streams: ReadonlyMap<number, Stream>;
  /** Next id this side will open (ids below it were opened here). */
  readonly nextStreamId: number;
  /** Highest id the partner opened. */
  readonly lastPeerStreamId: number;
  readonly write: (frame: Buffer) => void;
}

export class Resumption {
  private readonly tombstones = new Map<number, Tombstone>();
  private replayed = 0;
  private resumed = 0;
  /** Streams the partner listed on the link now resuming (by Stream.key). */
  private readonly listed = new Set<number>();

  /** A stream of a resumable session finished: remember how. */
  remember(stream: Stream): void {
    if (this.tombstones.size >= MAX_TOMBSTONES) {
      const oldest = this.tombstones.keys().next();
      if (oldest.done !== true) this.tombstones.delete(oldest.value);
    }
    this.tombstones.set(stream.key, stream.state === 'reset' ? { code: stream.resetCode, reason: stream.closeReason } : 'closed');
  }

  /** This side's list on a new link: an entry per held stream, then DONE. */
  listFrames(held: HeldStreams): Buffer[] {
    this.replayed = 0;
    this.resumed = 0;
    this.listed.clear();
    const frames: Buffer[] = [];
    for (const stream of held.streams.values()) {
      const entry = stream.resumeEntry();
      frames.push(encodeResumedWindow(stream.id, entry.flags, entry.consumed, entry.window, entry.received));
    }
    frames.push(encodeResume(ResumeKind.DONE, u32(held.lastPeerStreamId)));
    return frames;
  }

  /** One entry of the partner's list. */
  applyEntry(frame: Frame, held: HeldStreams): void {
    const ours = (frame.flags & Flag.LOCAL) !== 0;
    const id = frame.streamId;
    const key = id * 2 + (ours ? 0 : 1);
    const update = parseWindow(frame.payload);
    const stream = held.streams.get(key);
    if (stream !== undefined) {
      this.listed.add(key);
      this.resumed++;
      this.replayed += stream.resumeFrom(parseResumedReceived(frame.payload), update.consumed, update.window, frame.flags);
      return;
    }
    if (ours ? id >= held.nextStreamId : id > held.lastPeerStreamId) {
      // Opened by the partner while the link was down: its OPEN comes after the lists.
      if (!ours) return;
      throw new ProtocolError(GoAwayCode.PROTOCOL_ERROR, `resumed entry for unknown stream ${id}`);
    }
    // Finished here: say how, since what said so may have been lost with the old link.
    const replyFlags = ours ? 0 : Flag.LOCAL;
    const tomb = this.tombstones.get(key);
    if (tomb === 'closed') held.write(encodeWindow(id, replyFlags | Flag.FIN_RECEIVED, 0, 0));
    else held.write(encodeReset(id, replyFlags, tomb?.code ?? ResetCode.INTERNAL, tomb?.reason ?? 'the stream ended while the link was down'));
  }

  /**
   * The partner's list is complete: streams this side opened above the last id
   * it saw are opened again, from byte 0. Streams it did not list and still
   * holds here wait for its answer to this side's entry (RESET or FIN-ack).
   */
  finish(peerLastOpened: number, held: HeldStreams): ResumeInfo {
    for (const stream of held.streams.values()) {
      if (this.listed.has(stream.key)) continue;
      if (stream.isEntry && stream.id > peerLastOpened) {
        held.write(encodeOpenWithOrigin(stream.id, 0, stream.port, stream.origin));
        this.replayed += stream.resumeFrom(0, 0, 0, 0);
        this.resumed++;
      }
    }
    this.listed.clear();
    return { streams: this.resumed, replayedBytes: this.replayed };
  }
}
