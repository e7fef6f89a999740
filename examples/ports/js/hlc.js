'use strict';
// The hybrid logical clock of docs/protocol.md section 5: 48 bits of milliseconds and a
// 16-bit counter packed in one unsigned 64-bit integer (BigInt here; a JS number cannot
// hold it), 16 lowercase hex digits on the wire.

const MAX_MS = (1n << 48n) - 1n;
const MAX_HLC = (1n << 64n) - 1n;

class ClockError extends Error {}

function toWire(hlc) {
  if (hlc < 0n || hlc > MAX_HLC) throw new ClockError(`HLC ${hlc} out of range`);
  return hlc.toString(16).padStart(16, '0');
}

function fromWire(text) {
  if (typeof text !== 'string' || !/^[0-9a-f]{16}$/.test(text)) {
    throw new ClockError(`HLC ${JSON.stringify(text)} is not 16 lowercase hex digits`);
  }
  return BigInt('0x' + text);
}

const millisOf = (hlc) => hlc >> 16n;
const counterOf = (hlc) => hlc & 0xffffn;

const max = (...xs) => xs.reduce((a, b) => (b > a ? b : a));

class HybridClock {
  // wall(): integer milliseconds (a Number or BigInt); maxDriftMs: null for no bound.
  constructor(wall, last = 0n, maxDriftMs = 300000) {
    this.wall = wall;
    this.last = last;
    this.maxDriftMs = maxDriftMs === null ? null : BigInt(maxDriftMs);
  }

  physical() {
    const ms = BigInt(this.wall());
    if (ms < 0n || ms > MAX_MS) throw new ClockError(`wall clock ${ms} outside 0..2^48-1`);
    return ms;
  }

  commit(value) {
    if (value > MAX_HLC) throw new ClockError('the clock would pass 2^64-1');
    this.last = value;
    return value;
  }

  now() {
    const pt = this.physical() << 16n;
    return this.commit(max(this.last + 1n, pt));
  }

  update(remote) {
    const ms = this.physical();
    if (this.maxDriftMs !== null && millisOf(remote) - ms > this.maxDriftMs) {
      throw new ClockError('remote clock too far ahead');
    }
    return this.commit(max(this.last + 1n, remote + 1n, ms << 16n));
  }
}

// Section 5.3: order writes by (hlc, node_id as UTF-8 bytes). Returns <0, 0 or >0.
function compareStamps(a, b) {
  const ha = fromWire(a[0]);
  const hb = fromWire(b[0]);
  if (ha !== hb) return ha < hb ? -1 : 1;
  return Buffer.compare(Buffer.from(a[1], 'utf8'), Buffer.from(b[1], 'utf8'));
}

module.exports = { ClockError, HybridClock, compareStamps, counterOf, fromWire, millisOf, toWire };
