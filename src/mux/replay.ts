/**
 * What a stream sent and its partner has not yet acknowledged, kept for a
 * resumed link to send again (docs/PROTOCOL.md, "Resumption"). It holds the
 * very Buffers that were written (no copy), from stream offset `start` on;
 * the partner's window bounds how much that is.
 */
export class ReplayBuffer {
  private chunks: Buffer[] = [];
  /** Index of the oldest chunk still kept (the array is compacted now and then). */
  private head = 0;
  /** Stream offset of the first byte kept. */
  start = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
  }

  /** Forgets the bytes below stream offset `offset` (the partner has them). */
  ackTo(offset: number): void {
    let drop = offset - this.start;
    if (drop <= 0) return;
    this.start = offset;
    const chunks = this.chunks;
    while (drop > 0 && this.head < chunks.length) {
      const oldest = chunks[this.head] as Buffer;
      if (oldest.length <= drop) {
        chunks[this.head++] = EMPTY;
        drop -= oldest.length;
      } else {
        chunks[this.head] = oldest.subarray(drop);
        drop = 0;
      }
    }
    if (this.head === chunks.length) this.clear();
    else if (this.head > 64 && this.head * 2 > chunks.length) {
      this.chunks = chunks.slice(this.head);
      this.head = 0;
    }
  }

  /** Forgets the bytes below `offset` and hands out the rest, oldest first; the buffer is then empty at `offset`. */
  takeFrom(offset: number): Buffer[] {
    this.ackTo(offset);
    const rest = this.chunks.slice(this.head);
    this.clear();
    return rest;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
  }
}

const EMPTY = Buffer.alloc(0);
