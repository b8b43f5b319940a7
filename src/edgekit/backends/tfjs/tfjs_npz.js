// .npz files (numpy's savez: a zip of .npy entries) read and written without dependencies.
// Reads stored and deflated entries (zip64 sizes included); writes stored entries with CRC-32.
'use strict';
const fs = require('fs');
const zlib = require('zlib');

const DTYPES = {
  '<f4': 'float32', '<f8': 'float64', '<i4': 'int32', '<i8': 'int64', '|u1': 'uint8', '|i1': 'int8',
  '|b1': 'bool', '<i2': 'int16', '<u2': 'uint16', '<f2': 'float16', '<u4': 'uint32', '<u8': 'uint64',
};
const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array,
  int8: Int8Array, bool: Uint8Array, int16: Int16Array, uint16: Uint16Array, float16: Uint16Array,
  uint32: Uint32Array, uint64: BigUint64Array,
};
const DESCR = { float32: '<f4', int32: '<i4', uint8: '|u1', bool: '|b1', int64: '<i8', float64: '<f8' };

function parseNpy(buf) {
  if (buf.readUInt32BE(0) !== 0x934e554d) throw new Error('not a .npy entry');
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error('Fortran-ordered arrays are not supported');
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const dtype = DTYPES[descr];
  if (!dtype) throw new Error(`unsupported dtype ${descr}`);
  const body = buf.subarray(start + hlen);
  const copy = new Uint8Array(body.length); // aligned copy for the typed array
  copy.set(body);
  return { dtype, shape, data: new ARRAYS[dtype](copy.buffer) };
}

function readNpz(path) {
  const buf = fs.readFileSync(path);
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  if (eocd < 0) throw new Error(`${path} is not a zip file`);
  let count = buf.readUInt16LE(eocd + 10);
  let cd = buf.readUInt32LE(eocd + 16);
  if (cd === 0xffffffff || count === 0xffff) { // zip64 end of central directory
    const loc = eocd - 20;
    const rec = Number(buf.readBigUInt64LE(loc + 8));
    count = Number(buf.readBigUInt64LE(rec + 32));
    cd = Number(buf.readBigUInt64LE(rec + 48));
  }
  const out = {};
  for (let i = 0, p = cd; i < count; i++) {
    const method = buf.readUInt16LE(p + 10);
    let csize = buf.readUInt32LE(p + 20);
    let usize = buf.readUInt32LE(p + 24);
    const nlen = buf.readUInt16LE(p + 28), xlen = buf.readUInt16LE(p + 30), clen = buf.readUInt16LE(p + 32);
    let off = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nlen);
    let x = p + 46 + nlen;
    const xend = x + xlen;
    while (x < xend) { // zip64 extra: the fields that are 0xffffffff above, in order
      const id = buf.readUInt16LE(x), size = buf.readUInt16LE(x + 2);
      if (id === 1) {
        let q = x + 4;
        if (usize === 0xffffffff) { usize = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (csize === 0xffffffff) { csize = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (off === 0xffffffff) { off = Number(buf.readBigUInt64LE(q)); q += 8; }
      }
      x += 4 + size;
    }
    const data = off + 30 + buf.readUInt16LE(off + 26) + buf.readUInt16LE(off + 28);
    let raw = buf.subarray(data, data + csize);
    if (method === 8) raw = zlib.inflateRawSync(raw);
    else if (method !== 0) throw new Error(`${name}: zip method ${method} is not supported`);
    out[name.replace(/\.npy$/, '')] = parseNpy(raw);
    p += 46 + nlen + xlen + clen;
  }
  return out;
}

const CRC = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function npyBytes(arr) {
  const descr = DESCR[arr.dtype];
  if (!descr) throw new Error(`cannot write dtype ${arr.dtype}`);
  const shape = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const head = Buffer.alloc(10);
  head.writeUInt32BE(0x934e554d, 0);
  head[4] = 0x50; head[5] = 0x59; head[6] = 1; head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = Buffer.from(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
}

// Write {name: {dtype, shape, data}} to path (through a temporary name: never a half-written file).
function writeNpz(path, arrays) {
  const locals = [], centrals = [];
  let offset = 0;
  for (const [key, arr] of Object.entries(arrays)) {
    const name = Buffer.from(`${key}.npy`, 'utf8');
    const body = npyBytes(arr);
    const crc = crc32(body);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(body.length, 18); lh.writeUInt32LE(body.length, 22); lh.writeUInt16LE(name.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(body.length, 20); ch.writeUInt32LE(body.length, 24); ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, body);
    centrals.push(ch, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(centrals.length / 2, 8);
  end.writeUInt16LE(centrals.length / 2, 10); end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  const tmp = `${path}.part`;
  fs.writeFileSync(tmp, Buffer.concat([...locals, cd, end]));
  fs.renameSync(tmp, path);
}

module.exports = { readNpz, writeNpz };
