'use strict';
// A JSON parser (RFC 8259) that keeps what JSON.parse loses and docs/protocol.md section 3
// needs: a number token with a fraction or an exponent is a float even when its value is
// whole (`1.0`), and an integer token beyond 2^53-1 must be seen as such, not rounded.
//
// Values: null, true, false, strings (JS strings: UTF-16, lone surrogates kept as given),
// numbers that are safe integers (JS numbers; `-0` stays -0), JsonFloat and JsonBigInt
// wrappers for the other number tokens, arrays, and objects with a null prototype (so a
// member named `__proto__` is an ordinary member).

class JsonFloat {
  constructor(text) { this.text = text; }
}

class JsonBigInt {
  constructor(text) { this.text = text; }
}

class JsonSyntaxError extends Error {}

function parse(text) {
  let i = 0;
  const fail = (what) => { throw new JsonSyntaxError(`${what} at offset ${i}`); };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i += 1;
  };
  const expect = (ch) => {
    if (text[i] !== ch) fail(`expected ${JSON.stringify(ch)}`);
    i += 1;
  };

  function string() {
    expect('"');
    let out = '';
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const ch = text[i];
      if (ch === '"') { i += 1; return out; }
      if (ch.charCodeAt(0) < 0x20) fail('control character in string');
      if (ch !== '\\') { out += ch; i += 1; continue; }
      const esc = text[i + 1];
      i += 2;
      const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (esc in simple) { out += simple[esc]; continue; }
      if (esc !== 'u') fail('bad escape');
      const hex = text.slice(i, i + 4);
      if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('bad \\u escape');
      out += String.fromCharCode(parseInt(hex, 16)); // surrogates pair up by themselves
      i += 4;
    }
  }

  function number() {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    if (!m || m[0] === '' || m[0] === '-') fail('bad number');
    i += m[0].length;
    if (m[2] !== undefined || m[3] !== undefined) return new JsonFloat(m[0]);
    const n = Number(m[0]);
    if (!Number.isSafeInteger(n)) return new JsonBigInt(m[0]);
    return n;
  }

  function value() {
    ws();
    const ch = text[i];
    if (ch === '{') {
      i += 1;
      const obj = Object.create(null);
      ws();
      if (text[i] === '}') { i += 1; return obj; }
      for (;;) {
        ws();
        const key = string();
        ws();
        expect(':');
        obj[key] = value();
        ws();
        if (text[i] === ',') { i += 1; continue; }
        expect('}');
        return obj;
      }
    }
    if (ch === '[') {
      i += 1;
      const arr = [];
      ws();
      if (text[i] === ']') { i += 1; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ',') { i += 1; continue; }
        expect(']');
        return arr;
      }
    }
    if (ch === '"') return string();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    return number();
  }

  const result = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return result;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    && !(v instanceof JsonFloat) && !(v instanceof JsonBigInt);
}

module.exports = { JsonBigInt, JsonFloat, JsonSyntaxError, isObject, parse };
