'use strict';
// The limits of docs/protocol.md section 22: the nesting depth of a JSON message (checked
// over the raw text, before or while parsing, never by recursing), the UTF-8 bytes of one
// string and the compact-JSON bytes of one field value in an op's `fields` or `args`, the
// bytes of a record after an op (a rejection, `record-too-large`), and the bytes of a pull
// page's changes. A terminal refuses a write that breaks them at write time.

const { canonical } = require('./canonical');
const { JsonBigInt, JsonFloat } = require('./json');

const DEFAULT_LIMITS = Object.freeze({
  max_depth: 64,
  max_string_bytes: 32 * 1024,
  max_field_bytes: 64 * 1024,
  max_record_bytes: 256 * 1024,
  max_push_growth_bytes: 16 * 1024 * 1024,
  max_page_bytes: 4 * 1024 * 1024,
});

// Levels above an op's `fields` (or `args`) in a batch: the body, `ops`, the op.
const FIELDS_LEVEL = 4;

class LimitError extends Error {
  // `problem`: the extension members of the 422 `limit-exceeded` problem (section 16).
  constructor(message, problem) {
    super(message);
    this.problem = problem;
  }
}

// The deepest nesting of arrays and objects in JSON `text` (the outer value is level 1),
// brackets inside strings not counted. Linear, no recursion; malformed text is the parser's.
function textDepth(text) {
  let depth = 0;
  let deepest = 0;
  for (let k = 0; k < text.length; k += 1) {
    const ch = text[k];
    if (ch === '"') {
      for (k += 1; k < text.length && text[k] !== '"'; k += 1) if (text[k] === '\\') k += 1;
    } else if (ch === '[' || ch === '{') {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (ch === ']' || ch === '}') {
      depth -= 1;
    }
  }
  return deepest;
}

function checkDepth(text, maxDepth) {
  const deepest = textDepth(text);
  if (deepest > maxDepth) {
    throw new LimitError(`the JSON nests ${deepest} levels deep; the limit is ${maxDepth}`,
      { limit: 'depth', max: maxDepth });
  }
}

// Whether a parsed value nests deeper than `max` (iterative).
function tooDeep(value, max) {
  const stack = [[value, 1]];
  while (stack.length) {
    const [item, depth] = stack.pop();
    if (item === null || typeof item !== 'object' || item instanceof JsonFloat || item instanceof JsonBigInt) continue;
    if (depth > max) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

// `path` + the member `key` as JSONPath (RFC 9535), as the server writes it.
function memberPath(path, key) {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return `${path}.${key}`;
  let quoted = '';
  for (const c of key) {
    if (c === "'" || c === '\\') quoted += '\\' + c;
    else if (c < ' ') quoted += '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0');
    else quoted += c;
  }
  return `${path}['${quoted}']`;
}

const utf8Bytes = (s) => Buffer.byteLength(s, 'utf8');

// Bytes of `value` as compact JSON (the canonical form has the same bytes, in another
// member order); null for a value outside the JSON profile (refused for that, section 3).
function encodedSize(value) {
  try {
    return utf8Bytes(canonical(value));
  } catch {
    return null;
  }
}

function strings(value, path, max) {
  const stack = [[value, path]];
  while (stack.length) {
    const [item, where] = stack.pop();
    if (typeof item === 'string') {
      if (item.length * 3 > max && utf8Bytes(item) > max) {
        throw new LimitError(`the string at ${where} is longer than ${max} UTF-8 bytes`,
          { limit: 'string_bytes', max, path: where });
      }
    } else if (Array.isArray(item)) {
      for (let k = item.length - 1; k >= 0; k -= 1) stack.push([item[k], `${where}[${k}]`]);
    } else if (item !== null && typeof item === 'object' && !(item instanceof JsonFloat) && !(item instanceof JsonBigInt)) {
      const keys = Object.keys(item);
      for (let k = keys.length - 1; k >= 0; k -= 1) {
        stack.push([item[keys[k]], memberPath(where, keys[k])]);
        stack.push([keys[k], where]);
      }
    }
  }
}

function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let k = 0; k < Math.min(x.length, y.length); k += 1) {
    const d = x[k].codePointAt(0) - y[k].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

// Check a write's `fields` (or a command's `args`) at `path` (`$[0].fields`): its nesting
// as it will sit in a batch, every string, every field's value. Throws LimitError.
function checkValueLimits(values, path, limits = DEFAULT_LIMITS, depth = true) {
  if (values === null || typeof values !== 'object' || Array.isArray(values)) return;
  if (depth && tooDeep(values, limits.max_depth - FIELDS_LEVEL + 1)) {
    throw new LimitError(`the value at ${path} nests too deeply for a batch`,
      { limit: 'depth', max: limits.max_depth });
  }
  // In code point order, as the server goes through them.
  for (const name of Object.keys(values).sort(byCodePoint)) {
    const where = memberPath(path, name);
    strings(name, where, limits.max_string_bytes);
    const size = encodedSize(values[name]);
    if (size === null) return;
    if (size > limits.max_field_bytes) {
      throw new LimitError(`the value at ${where} is ${size} bytes`,
        { limit: 'field_bytes', max: limits.max_field_bytes, path: where });
    }
    if (size > limits.max_string_bytes) strings(values[name], where, limits.max_string_bytes);
  }
}

// Section 8.2 step 10a over a batch's ops, in order.
function checkBatchLimits(ops, limits = DEFAULT_LIMITS) {
  ops.forEach((op, index) => {
    checkValueLimits(op.fields, `$[${index}].fields`, limits, false);
    checkValueLimits(op.args, `$[${index}].args`, limits, false);
  });
}

// Whether a record's fields after an op are too large (the op is rejected).
function recordTooLarge(record, limits = DEFAULT_LIMITS) {
  if (record === null || record.deleted) return false;
  const size = encodedSize(record.fields);
  return size !== null && size > limits.max_record_bytes;
}

// Section 9.1: a page's changes take at most max_page_bytes (each change's compact JSON
// and a separator), unless the page holds one change.
function pageWithinLimit(changes, limits = DEFAULT_LIMITS) {
  if (changes.length <= 1) return true;
  let total = 0;
  for (const change of changes) total += encodedSize(change) + 1;
  return total <= limits.max_page_bytes;
}

module.exports = {
  DEFAULT_LIMITS,
  FIELDS_LEVEL,
  LimitError,
  checkBatchLimits,
  checkDepth,
  checkValueLimits,
  encodedSize,
  memberPath,
  pageWithinLimit,
  recordTooLarge,
  textDepth,
};
