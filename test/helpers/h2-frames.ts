/**
 * A pass-through between a node:http2 client session and its socket that parses the client's
 * outgoing HTTP/2 frames, so a test can rewrite or withhold individual frames on the wire
 * (test/adapters/raw.ts splices repeated header fields in; test/helpers/h2-unacked.ts withholds
 * SETTINGS ACKs). Bytes from the server pass through untouched.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

const PREFACE_LENGTH = 24;
export const FRAME_HEADER = 9;

export abstract class OutgoingFrameFilter extends Duplex {
  #pending = Buffer.alloc(0);
  #prefaceLeft = PREFACE_LENGTH;

  constructor(private readonly inner: Socket) {
    super();
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.on('end', () => this.push(null));
    inner.on('error', (error) => this.destroy(error));
    inner.on('close', () => this.destroy());
  }

  /** One complete outgoing frame (9-byte header included): what to send instead, or undefined to withhold it. */
  protected abstract rewriteFrame(frame: Buffer): Buffer | undefined;

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    const out: Buffer[] = [];
    if (this.#prefaceLeft > 0) {
      const n = Math.min(this.#prefaceLeft, this.#pending.length);
      out.push(this.#pending.subarray(0, n));
      this.#pending = this.#pending.subarray(n);
      this.#prefaceLeft -= n;
    }
    while (this.#prefaceLeft === 0 && this.#pending.length >= FRAME_HEADER) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < FRAME_HEADER + length) break;
      const frame = this.rewriteFrame(this.#pending.subarray(0, FRAME_HEADER + length));
      this.#pending = this.#pending.subarray(FRAME_HEADER + length);
      if (frame !== undefined) out.push(frame);
    }
    if (out.length === 0) callback();
    else this.inner.write(Buffer.concat(out), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.inner.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.inner.destroy();
    callback(error);
  }
}
