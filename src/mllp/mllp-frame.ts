/**
 * MLLP framing (release 1): `0x0B` + message + `0x1C 0x0D`. The deframer keeps whatever follows
 * the last complete frame, so frames split across TCP reads and several frames in one read both
 * come out whole and in order (MLLP framing).
 */

export const VT = 0x0b;
export const FS = 0x1c;
export const CR = 0x0d;

/** Largest frame accepted (16 MiB): a peer that never sends FS CR cannot exhaust memory. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

export function frame(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([VT]), payload, Buffer.from([FS, CR])]);
}

export class MllpFrameTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`an MLLP frame exceeded ${limit} bytes without its end block`);
    this.name = 'MllpFrameTooLargeError';
  }
}

export class MllpDeframer {
  private buffer: Buffer = Buffer.alloc(0);
  /** Bytes seen outside any frame (before a VT), counted and dropped. */
  discardedBytes = 0;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Adds a chunk; returns the payloads of the frames it completed (without VT, FS, CR). */
  push(chunk: Buffer): Buffer[] {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    const frames: Buffer[] = [];
    for (;;) {
      const start = this.buffer.indexOf(VT);
      if (start === -1) {
        this.discardedBytes += this.buffer.length;
        this.buffer = Buffer.alloc(0);
        break;
      }
      if (start > 0) {
        this.discardedBytes += start;
        this.buffer = this.buffer.subarray(start);
      }
      const end = this.findEnd();
      if (end === -1) {
        if (this.buffer.length > this.maxFrameBytes) {
          this.buffer = Buffer.alloc(0);
          throw new MllpFrameTooLargeError(this.maxFrameBytes);
        }
        break;
      }
      frames.push(Buffer.from(this.buffer.subarray(1, end)));
      this.buffer = this.buffer.subarray(end + 2);
    }
    return frames;
  }

  /** Index of the FS of the first FS CR pair after the VT at 0, or -1. */
  private findEnd(): number {
    let from = 1;
    for (;;) {
      const fs = this.buffer.indexOf(FS, from);
      if (fs === -1 || fs + 1 >= this.buffer.length) return -1;
      if (this.buffer[fs + 1] === CR) return fs;
      from = fs + 1;
    }
  }

  /** Bytes of an incomplete frame held back. */
  get pendingBytes(): number {
    return this.buffer.length;
  }

  reset(): void {
    this.buffer = Buffer.alloc(0);
  }
}
