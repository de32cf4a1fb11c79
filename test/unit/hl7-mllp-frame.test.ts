/** MLLP deframing on the receiving side: split frames, several frames per chunk, junk, limits. */
import { describe, expect, it } from 'vitest';
import { CR, FS, MllpDeframer, MllpFrameTooLargeError, VT, frame } from '../../src/mllp/mllp-frame.js';
import { parseMllpUrl } from '../../src/mllp/mllp-url.js';

const A = 'MSH|^~\\&|A|B|C|D|20250101||ACK^O01^ACK|1|P|2.5.1\rMSA|AA|X1\r';
const B = 'MSH|^~\\&|A|B|C|D|20250101||ACK^O01^ACK|2|P|2.5.1\rMSA|AA|X2\r';
const texts = (frames: Buffer[]): string[] => frames.map((f) => f.toString('utf8'));

describe('MllpDeframer', () => {
  it('frames as 0x0B payload 0x1C 0x0D', () => {
    const f = frame(Buffer.from('x'));
    expect([...f]).toEqual([VT, 0x78, FS, CR]);
  });

  it('returns two frames that arrive in one chunk, in order', () => {
    const d = new MllpDeframer();
    expect(texts(d.push(Buffer.concat([frame(Buffer.from(A)), frame(Buffer.from(B))])))).toEqual([A, B]);
    expect(d.pendingBytes).toBe(0);
  });

  it('reassembles a frame split across chunks, byte by byte too (FS and CR in separate reads)', () => {
    const bytes = Buffer.concat([frame(Buffer.from(A)), frame(Buffer.from(B))]);
    const d = new MllpDeframer();
    const out: Buffer[] = [];
    for (const byte of bytes) out.push(...d.push(Buffer.from([byte])));
    expect(texts(out)).toEqual([A, B]);
  });

  it('keeps the start of the next frame that shares a chunk with the end of one', () => {
    const bytes = Buffer.concat([frame(Buffer.from(A)), frame(Buffer.from(B))]);
    const cut = bytes.length - 10;
    const d = new MllpDeframer();
    expect(texts(d.push(bytes.subarray(0, cut)))).toEqual([A]);
    expect(texts(d.push(bytes.subarray(cut)))).toEqual([B]);
  });

  it('handles multi-byte UTF-8 split between chunks and a 0x1C not followed by 0x0D inside a frame', () => {
    const payload = Buffer.concat([Buffer.from('NTE|1||😀 café'), Buffer.from([FS, 0x41]), Buffer.from('\r')]);
    const bytes = frame(payload);
    const d = new MllpDeframer();
    const first = d.push(bytes.subarray(0, 15));
    expect(first).toEqual([]);
    const [f] = d.push(bytes.subarray(15));
    expect(f!.equals(payload)).toBe(true);
  });

  it('drops bytes outside frames and counts them', () => {
    const d = new MllpDeframer();
    expect(texts(d.push(Buffer.concat([Buffer.from('\r\nnoise'), frame(Buffer.from(A)), Buffer.from('tail')])))).toEqual([A]);
    expect(d.discardedBytes).toBe(11);
  });

  it('refuses a frame that never ends past the limit', () => {
    const d = new MllpDeframer(1024);
    expect(() => d.push(Buffer.concat([Buffer.from([VT]), Buffer.alloc(2048, 0x41)]))).toThrow(MllpFrameTooLargeError);
  });
});

describe('MLLP URLs', () => {
  it('parses mllp:// and mllps://, refuses the rest', () => {
    expect(parseMllpUrl('mllp://lab.example.org:2575')).toEqual({ tls: false, host: 'lab.example.org', port: 2575 });
    expect(parseMllpUrl('mllps://10.0.0.5:6661')).toEqual({ tls: true, host: '10.0.0.5', port: 6661 });
    expect(parseMllpUrl('mllp://[::1]:2575')).toEqual({ tls: false, host: '::1', port: 2575 });
    expect(parseMllpUrl('http://lab:2575')).toBeUndefined();
    expect(parseMllpUrl('mllp://lab')).toBeUndefined();
    expect(parseMllpUrl('mllp://user:pw@lab:2575')).toBeUndefined();
    expect(parseMllpUrl('mllp://lab:70000')).toBeUndefined();
  });
});
