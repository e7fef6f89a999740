'use strict';
// The canonical form and the checksum of docs/protocol.md section 4, written from the spec
// (no JSON.stringify: the escaping rules below are the spec's table, so this port checks
// that the table is complete).

const crypto = require('node:crypto');
const { JsonBigInt, JsonFloat, isObject } = require('./json');

const MAX_SAFE = 9007199254740991;

class CanonicalError extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason; // 'float' | 'integer-range' | 'surrogate'
  }
}

const SHORT = { 0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

function str(s) {
  let out = '"';
  for (let k = 0; k < s.length; k += 1) {
    const u = s.charCodeAt(k);
    if (u >= 0xd800 && u <= 0xdbff) {
      const next = s.charCodeAt(k + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) throw new CanonicalError('surrogate', 'lone high surrogate');
      out += s[k] + s[k + 1];
      k += 1;
    } else if (u >= 0xdc00 && u <= 0xdfff) {
      throw new CanonicalError('surrogate', 'lone low surrogate');
    } else if (u in SHORT) {
      out += SHORT[u];
    } else if (u < 0x20) {
      out += '\\u00' + u.toString(16).padStart(2, '0');
    } else {
      out += s[k];
    }
  }
  return out + '"';
}

// Compare two strings as sequences of UTF-16 code units, unsigned, shorter prefix first.
function compareUtf16(a, b) {
  const n = Math.min(a.length, b.length);
  for (let k = 0; k < n; k += 1) {
    const d = a.charCodeAt(k) - b.charCodeAt(k);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function canonical(v) {
  if (v === null) return 'null';
  if (v === true) return 'true';
  if (v === false) return 'false';
  if (typeof v === 'string') return str(v);
  if (v instanceof JsonFloat) throw new CanonicalError('float', `float ${v.text}`);
  if (v instanceof JsonBigInt) throw new CanonicalError('integer-range', `integer ${v.text}`);
  if (typeof v === 'bigint') {
    if (v > BigInt(MAX_SAFE) || v < -BigInt(MAX_SAFE)) throw new CanonicalError('integer-range', `${v}`);
    return v.toString();
  }
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new CanonicalError('float', `float ${v}`);
    if (!Number.isSafeInteger(v)) throw new CanonicalError('integer-range', `integer ${v}`);
    return Object.is(v, -0) ? '0' : String(v);
  }
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (isObject(v)) {
    const keys = Object.keys(v).sort(compareUtf16);
    return '{' + keys.map((k) => str(k) + ':' + canonical(v[k])).join(',') + '}';
  }
  throw new TypeError(`not a JSON value: ${typeof v}`);
}

function checksum(v) {
  return crypto.createHash('md5').update(Buffer.from(canonical(v), 'utf8')).digest('hex');
}

module.exports = { CanonicalError, canonical, checksum, compareUtf16 };
