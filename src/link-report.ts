/**
 * What an instance says when its link changes: the log lines (names and
 * wording are part of the contract, README "Logs") and the public events.
 */
import type { EventEmitter } from 'node:events';
import { ErrorCodes } from './errors.js';
import type { LinkPeer } from './link/link-session.js';
import type { Logger } from './log/logger.js';
import type { ResumeInfo, SessionEnd } from './mux/session.js';
import type { TcpipeEvents } from './options.js';

export class LinkReport {
  constructor(
    private readonly logger: Logger,
    private readonly events: EventEmitter<TcpipeEvents>,
    /** --resume, for the held line. */
    private readonly graceSeconds: number,
  ) {}

  up(peer: LinkPeer): void {
    this.logger.info('link_up', `link up with ${peer.address} (${peer.hello.software || 'unknown software'})${of(peer)}`, { peer: peer.address, ...who(peer) });
    this.events.emit('link-up', { peer: peer.address, ...who(peer) });
  }

  /** The session ended; `streams` connections close with it. */
  down(peer: LinkPeer, end: SessionEnd, streams: number): void {
    const code = end.error?.code;
    if (code === ErrorCodes.RESUME_EXPIRED || code === ErrorCodes.RESUME_FAILED) {
      const event = code === ErrorCodes.RESUME_EXPIRED ? 'resume_expired' : 'resume_failed';
      this.logger.warn(event, `${end.reason}; closing ${streams} held connections`, { peer: peer.address, reason: end.reason, streams });
    } else {
      this.logger.info('link_down', `link down with ${peer.address}${of(peer)}: ${end.reason}${streams > 0 ? ` (closing ${streams} connections)` : ''}`, {
        peer: peer.address,
        reason: end.reason,
        ...who(peer),
      });
    }
    this.events.emit('link-down', { peer: peer.address, reason: end.reason, ...who(peer) });
  }

  held(peer: LinkPeer, end: SessionEnd, streams: number): void {
    this.logger.warn(
      'link_held',
      `link lost with ${peer.address}${of(peer)}: ${end.reason}; holding ${streams} connections for up to ${this.graceSeconds}s to resume`,
      { peer: peer.address, reason: end.reason, streams },
    );
    this.events.emit('link-held', { peer: peer.address, reason: end.reason, streams });
  }

  resumed(peer: LinkPeer, info: ResumeInfo): void {
    this.logger.info('link_resumed', `link resumed with ${peer.address}${of(peer)}: ${info.streams} connections resumed, ${info.replayedBytes} bytes sent again`, {
      peer: peer.address,
      streams: info.streams,
      replayed_bytes: info.replayedBytes,
    });
    this.events.emit('link-resumed', { peer: peer.address, streams: info.streams, replayedBytes: info.replayedBytes });
  }
}

/** A server with many sites names the client in its link lines and events. */
function who(peer: LinkPeer): { client?: string } {
  return peer.client !== undefined ? { client: peer.client } : {};
}

function of(peer: LinkPeer): string {
  return peer.client !== undefined ? `, client '${peer.client}'` : '';
}
