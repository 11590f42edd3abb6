/**
 * A link's end, error and close events, seen by the session as one "link
 * lost" with its reason. Once unwatched, a late socket error is swallowed:
 * it must not crash the process.
 */
import type { Duplex } from 'node:stream';
import { ErrorCodes, TcpipeError, errorMessage } from '../errors.js';

export class LinkWatch {
  constructor(private readonly onLost: (error: TcpipeError | null, reason: string) => void) {}

  private readonly onEnd = (): void => this.onLost(null, 'link closed by the partner');
  private readonly onError = (err: Error): void => {
    const reason = `link error: ${errorMessage(err)}`;
    this.onLost(new TcpipeError(ErrorCodes.LINK_CLOSED, reason), reason);
  };
  private readonly onClose = (): void => this.onLost(null, 'link closed');

  watch(link: Duplex): void {
    link.on('end', this.onEnd);
    link.on('error', this.onError);
    link.on('close', this.onClose);
  }

  unwatch(link: Duplex): void {
    link.off('end', this.onEnd);
    link.off('close', this.onClose);
    link.off('error', this.onError);
    link.on('error', ignore);
  }
}

function ignore(): void {}
