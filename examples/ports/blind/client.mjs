#!/usr/bin/env node
// A fynlo-sync terminal written from docs/protocol.md alone (the "blind port").
//
// Node 20, standard library only. It implements the JSON profile (section 3), the
// canonical form and checksum (4), the HLC (5), ops and batches (6), enrollment and
// tokens (7), push (8), pull (9), op application with the built-in strategies and the
// orders domain (11, 12, 13, 15) and the terminal's outbox and rebase (14).
//
// Usage (every command prints one JSON line on stdout):
//   node client.mjs enroll   --state F --base-url URL --code CODE
//   node client.mjs scenario --state F [--order-id ID]
//   node client.mjs patch    --state F --collection C --record R --fields JSON
//   node client.mjs command  --state F --collection C --record R --name N --args JSON
//   node client.mjs sync     --state F [--page-size N]
//   node client.mjs view     --state F
//   node client.mjs vectors  DIR          (runs docs/protocol/vectors against this port)
//
// --wall-skew-ms N shifts this terminal's wall clock by N ms (a terminal whose clock runs
// ahead), so a test can decide which of two concurrent writes is newer.
//
// The state file holds what section 7 and 14 say a terminal must keep durably: the
// tokens, the node id, the next seq, the clock, the cursor, the server's records, the
// local view and the outbox.

import { createHash, randomUUID } from "node:crypto";
import { readFileSync, writeFileSync, renameSync, existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const MAX_INT = 9007199254740991;
const MAX_HLC = (1n << 64n) - 1n;
const MAX_MS = (1 << 24) * (1 << 24) - 1; // 2^48 - 1
const DRIFT_MS = 300000;
const PROBLEM_BASE = "https://fynlo.dev/problems/";
let wallSkew = 0;
const wall = () => Date.now() + wallSkew;

// ---------------------------------------------------------------------------------
// Section 3: a JSON parser that keeps what JSON.parse loses.
// Floats come back as JFloat (so the canonical form can refuse them), integers beyond
// 2^53-1 as BigInt (refused as integer-range), escaped lone surrogates as they are
// (refused as surrogate). Objects have a null prototype, so a member called
// "__proto__" is an ordinary member.

export class JFloat {
  constructor(text) {
    this.text = text;
  }
}

export class CanonicalError extends Error {
  constructor(reason, path) {
    super(`${reason} at ${path}`);
    this.reason = reason;
    this.path = path;
  }
}

export function obj(entries) {
  const o = Object.create(null);
  if (entries) for (const [k, v] of entries) o[k] = v;
  return o;
}

export function parseJSON(text) {
  let i = 0;
  const n = text.length;
  const fail = (msg) => {
    throw new SyntaxError(`${msg} at offset ${i}`);
  };
  const ws = () => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const str = () => {
    i++; // opening quote
    let out = "";
    let start = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else fail("bad escape");
        start = i;
      } else i++;
    }
  };
  const num = () => {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === "-") fail("bad number");
    i += m[0].length;
    if (m[2] !== undefined || m[3] !== undefined) return new JFloat(m[0]);
    const big = BigInt(m[0]);
    if (big > BigInt(MAX_INT) || big < -BigInt(MAX_INT)) return big;
    const v = Number(big);
    return v === 0 ? 0 : v; // -0 is the integer 0
  };
  const value = () => {
    ws();
    if (i >= n) fail("unexpected end");
    const c = text[i];
    if (c === "{") {
      i++;
      const o = obj();
      ws();
      if (text[i] === "}") {
        i++;
        return o;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a member name");
        const k = str();
        if (Object.hasOwn(o, k)) fail(`duplicate member ${JSON.stringify(k)}`);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        o[k] = value();
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return o;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const a = [];
      ws();
      if (text[i] === "]") {
        i++;
        return a;
      }
      for (;;) {
        a.push(value());
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return a;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    return num();
  };
  const v = value();
  ws();
  if (i !== n) fail("trailing text");
  return v;
}

// ---------------------------------------------------------------------------------
// Section 4: canonical form (RFC 8785 for float-free values) and checksum.

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JFloat);
const isInt = (v) => typeof v === "number" && Number.isInteger(v) && Math.abs(v) <= MAX_INT;

function wellFormed(s) {
  return typeof s.isWellFormed === "function"
    ? s.isWellFormed()
    : !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

function canonString(s, path) {
  if (!wellFormed(s)) throw new CanonicalError("surrogate", path);
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else if (c < 0x20) out += "\\u00" + c.toString(16).padStart(2, "0");
    else out += s[k];
  }
  return out + '"';
}

export function canonical(v, path = "$") {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (v instanceof JFloat) throw new CanonicalError("float", path);
  if (typeof v === "bigint") throw new CanonicalError("integer-range", path);
  if (typeof v === "number") {
    if (!Number.isFinite(v) || !Number.isInteger(v)) throw new CanonicalError("float", path);
    if (Math.abs(v) > MAX_INT) throw new CanonicalError("integer-range", path);
    return String(v); // String(-0) is "0"
  }
  if (typeof v === "string") return canonString(v, path);
  if (Array.isArray(v)) return "[" + v.map((x, k) => canonical(x, `${path}[${k}]`)).join(",") + "]";
  if (typeof v === "object") {
    // Default sort compares UTF-16 code units, which is what section 4.1 asks for.
    const keys = Object.keys(v).sort();
    return (
      "{" +
      keys
        .map((k) => {
          const kp = `${path}.${k}`;
          return canonString(k, kp) + ":" + canonical(v[k], kp);
        })
        .join(",") +
      "}"
    );
  }
  throw new CanonicalError("float", path); // undefined, functions: not JSON at all
}

export const md5hex = (text) => createHash("md5").update(Buffer.from(text, "utf8")).digest("hex");
export const checksum = (v) => md5hex(canonical(v));
const same = (a, b) => canonical(a) === canonical(b);

// Deep copy into null-prototype objects (records, fields).
function clone(v) {
  if (Array.isArray(v)) return v.map(clone);
  if (isObject(v)) return obj(Object.keys(v).map((k) => [k, clone(v[k])]));
  return v;
}

// Code point order (sections 11, 12 and 13 sort field names this way, not by UTF-16).
function cmpCodePoint(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let k = 0; k < Math.min(x.length, y.length); k++) {
    const d = x[k].codePointAt(0) - y[k].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}
const sortedKeys = (o) => Object.keys(o).sort(cmpCodePoint);

// ---------------------------------------------------------------------------------
// Section 5: the hybrid logical clock, on BigInt.

export class ClockError extends Error {}

export function hlcFromWire(w) {
  if (typeof w !== "string" || !/^[0-9a-f]{16}$/.test(w)) throw new ClockError(`bad HLC wire form ${JSON.stringify(w)}`);
  return BigInt("0x" + w);
}
export const hlcToWire = (h) => h.toString(16).padStart(16, "0");

export class Clock {
  constructor(last = 0n, maxDrift = DRIFT_MS) {
    this.last = last;
    this.maxDrift = maxDrift;
  }
  clone() {
    return new Clock(this.last, this.maxDrift);
  }
  static pt(wall) {
    if (!Number.isInteger(wall) || wall < 0 || wall > MAX_MS) throw new ClockError(`wall clock ${wall} out of range`);
    return BigInt(wall) << 16n;
  }
  now(wall) {
    const pt = Clock.pt(wall);
    if (this.last + 1n > MAX_HLC) throw new ClockError("clock exhausted");
    const next = this.last + 1n > pt ? this.last + 1n : pt;
    this.last = next;
    return next;
  }
  update(wall, remote) {
    const pt = Clock.pt(wall);
    const m = typeof remote === "bigint" ? remote : hlcFromWire(remote);
    if (this.maxDrift !== null && (m >> 16n) - BigInt(wall) > BigInt(this.maxDrift)) {
      throw new ClockError("remote clock too far ahead");
    }
    if (this.last + 1n > MAX_HLC || m + 1n > MAX_HLC) throw new ClockError("clock exhausted");
    let next = this.last + 1n;
    if (m + 1n > next) next = m + 1n;
    if (pt > next) next = pt;
    this.last = next;
    return next;
  }
}

// ---------------------------------------------------------------------------------
// Sections 11 and 12: applying an op. Pure: (record, op, registry, s) -> result.

function stampNewer(a, b) {
  // section 5.3: HLC (fixed-width wire text compares like the number), then node id as UTF-8 bytes
  if (a[0] !== b[0]) return a[0] > b[0];
  return Buffer.compare(Buffer.from(a[1], "utf8"), Buffer.from(b[1], "utf8")) > 0;
}

const lww = (c) => (stampNewer(c.incoming_stamp, c.server_stamp) ? { r: "incoming" } : { r: "server" });

function smartMerge(c) {
  if (c.kind === "set") {
    const out = Array.isArray(c.server_value) ? [...c.server_value] : [];
    const seen = new Set(out.map((x) => canonical(x)));
    for (const x of Array.isArray(c.incoming_value) ? c.incoming_value : []) {
      const k = canonical(x);
      if (!seen.has(k)) {
        seen.add(k);
        out.push(x);
      }
    }
    return { r: "value", value: out };
  }
  if (c.kind === "state" && Array.isArray(c.states) && c.states.length > 0) {
    const si = c.states.indexOf(c.server_value);
    const ii = c.states.indexOf(c.incoming_value);
    if (si >= 0 && ii >= 0 && si !== ii) return ii > si ? { r: "incoming" } : { r: "server" };
    return lww(c);
  }
  if (c.kind === "map" && isObject(c.server_value) && isObject(c.incoming_value)) {
    const incomingWins = lww(c).r === "incoming";
    const winner = incomingWins ? c.incoming_value : c.server_value;
    const loser = incomingWins ? c.server_value : c.incoming_value;
    const merged = obj();
    for (const k of Object.keys(loser)) merged[k] = loser[k];
    for (const k of Object.keys(winner)) merged[k] = winner[k];
    return { r: "value", value: obj(sortedKeys(merged).map((k) => [k, merged[k]])) };
  }
  return lww(c);
}

export const STRATEGIES = {
  server_wins: () => ({ r: "server" }),
  client_wins: () => ({ r: "incoming" }),
  manual: () => ({ r: "park" }),
  smart_merge: smartMerge,
};

function typeOk(spec, v) {
  if (v === null) return !spec.required;
  let ok;
  switch (spec.type) {
    case "str":
      ok = typeof v === "string";
      break;
    case "int":
    case "money":
      ok = isInt(v);
      break;
    case "bool":
      ok = typeof v === "boolean";
      break;
    case "list":
      ok = Array.isArray(v);
      break;
    case "object":
      ok = isObject(v);
      break;
    default:
      ok = true; // any
  }
  if (spec.kind === "counter" && !isInt(v)) ok = false;
  return ok;
}

function schemaCheck(schema, values, byCommand) {
  for (const name of sortedKeys(values)) {
    const spec = Object.hasOwn(schema.fields, name) ? schema.fields[name] : null;
    if (!spec) {
      if (schema.strict !== false) return "unknown-field";
      continue;
    }
    if (spec.command_only && !byCommand) return "command-only-field";
    if (!typeOk(spec, values[name])) return "invalid-field";
  }
  return null;
}

function requiredCheck(schema, fields) {
  for (const name of sortedKeys(schema.fields)) {
    if (schema.fields[name].required && (!Object.hasOwn(fields, name) || fields[name] === null)) return "invalid-field";
  }
  return null;
}

const reject = (reason) => ({ status: "rejected", reason, record: null, conflict: null });

function strategyFor(schema, field) {
  const fs = schema.field_strategies || {};
  const name = Object.hasOwn(fs, field) ? fs[field] : schema.strategy;
  const fn = STRATEGIES[name];
  if (!fn) throw new Error(`strategy ${name} is not implemented by this port`);
  return fn;
}

const OP_MEMBERS = ["op_id", "node_id", "seq", "hlc", "base_seq", "collection", "record_id", "kind", "fields", "name", "args"];

function park(cur, op, contested, s) {
  const stamp = [op.hlc, op.node_id, s];
  const fields = obj([
    ["collection", op.collection],
    ["record_id", op.record_id],
    ["op", obj(OP_MEMBERS.map((k) => [k, op[k] === undefined ? null : clone(op[k])]))],
    ["server", cur ? clone(cur) : null],
    ["contested", [...contested].sort(cmpCodePoint)],
    ["state", "open"],
    ["resolved_by", null],
    ["resolution_op_id", null],
  ]);
  const conflictId = `${op.node_id}:${op.seq}`;
  const conflict = obj([["conflict_id", conflictId], ...Object.entries(fields)]);
  const record = {
    collection: "conflicts",
    record_id: conflictId,
    fields,
    stamps: obj(Object.keys(fields).map((k) => [k, [...stamp]])),
    deleted: false,
    deleted_stamp: null,
    version: s,
  };
  return { status: "conflict", reason: null, record: null, conflict, conflictRecord: record };
}

function finish(schema, cur, op, fields, stamps, s, status) {
  const stamp = [op.hlc, op.node_id, s];
  if (schema.derive) {
    const d = schema.derive(fields);
    if (d.reject) return reject(d.reject);
    for (const k of sortedKeys(d.fields)) {
      if (!Object.hasOwn(fields, k) || !same(fields[k], d.fields[k])) {
        fields[k] = d.fields[k];
        stamps[k] = [...stamp];
      }
    }
  }
  const record = {
    collection: op.collection,
    record_id: op.record_id,
    fields,
    stamps,
    deleted: false,
    deleted_stamp: null,
    version: s !== 0 ? s : cur ? cur.version : 0,
  };
  return { status, reason: null, record, conflict: null };
}

export function applyOp(cur, op, registry, s) {
  const schema = Object.hasOwn(registry, op.collection) ? registry[op.collection] : null;
  if (!schema) return reject("unknown-collection");
  const stamp = [op.hlc, op.node_id, s];
  const contested = (f) => {
    const st = cur && Object.hasOwn(cur.stamps, f) ? cur.stamps[f] : null;
    return st !== null && st[2] > op.base_seq && st[1] !== op.node_id;
  };

  if (op.kind === "command") {
    const commands = schema.commands || {};
    if (!Object.hasOwn(commands, op.name)) return reject("unknown-command");
    const live = cur && !cur.deleted ? cur : null;
    const res = commands[op.name](live ? live.fields : null, op.args || obj(), op);
    if (res.reject) return reject(res.reject);
    const r = schemaCheck(schema, res.patch, true);
    if (r) return reject(r);
    const fields = live ? clone(live.fields) : obj();
    const stamps = live ? clone(live.stamps) : obj();
    for (const k of Object.keys(res.patch)) {
      fields[k] = clone(res.patch[k]);
      stamps[k] = [...stamp];
    }
    const req = requiredCheck(schema, fields);
    if (req) return reject(req);
    return finish(schema, cur, op, fields, stamps, s, "applied");
  }

  if (op.kind === "delete") {
    if (op.collection === "conflicts") return reject("command-only-field");
    if (!cur) return reject("record-not-found");
    if (cur.deleted) return { status: "applied", reason: null, record: null, conflict: null };
    let status = "applied";
    const rivals = Object.keys(cur.stamps)
      .filter(contested)
      .map((f) => cur.stamps[f]);
    if (rivals.length > 0) {
      const newest = rivals.reduce((a, b) => (stampNewer(b, a) ? b : a));
      const res = strategyFor(schema, "_deleted")({
        field: "_deleted",
        kind: "lww",
        server_value: false,
        server_stamp: newest,
        incoming_value: true,
        incoming_stamp: stamp,
        states: schema.states,
      });
      if (res.r === "park") return park(cur, op, ["_deleted"], s);
      const deletes = res.r === "incoming" || (res.r === "value" && res.value === true);
      if (!deletes) return { status: "merged", reason: "kept-server", record: null, conflict: null };
      status = "merged";
    }
    const record = clone(cur);
    record.deleted = true;
    record.deleted_stamp = [...stamp];
    record.version = s !== 0 ? s : cur.version;
    return { status, reason: null, record, conflict: null };
  }

  // put and patch (11.6)
  const given = op.fields || obj();
  const bad = schemaCheck(schema, given, false);
  if (bad) return reject(bad);
  const kindOf = (f) => (Object.hasOwn(schema.fields, f) ? schema.fields[f].kind : "lww");
  const add = (a, b) => (isInt(a) ? a : 0) + (isInt(b) ? b : 0);

  if (!cur || cur.deleted) {
    let status = "applied";
    if (!cur) {
      if (op.kind === "patch") return reject("record-not-found");
    } else {
      const ds = cur.deleted_stamp;
      if (ds[2] > op.base_seq && ds[1] !== op.node_id) {
        const res = strategyFor(schema, "_deleted")({
          field: "_deleted",
          kind: "lww",
          server_value: true,
          server_stamp: ds,
          incoming_value: false,
          incoming_stamp: stamp,
          states: schema.states,
        });
        if (res.r === "park") return park(cur, op, ["_deleted"], s);
        const undeletes = res.r === "incoming" || (res.r === "value" && res.value === false);
        if (!undeletes) return { status: "merged", reason: "kept-server", record: null, conflict: null };
        status = "merged";
      } else if (op.kind === "patch") return reject("record-deleted");
    }
    const fromTombstone = cur && op.kind === "patch";
    const fields = fromTombstone ? clone(cur.fields) : obj();
    const stamps = fromTombstone ? clone(cur.stamps) : obj();
    for (const f of sortedKeys(given)) {
      fields[f] = kindOf(f) === "counter" && op.kind === "patch" ? add(fields[f], given[f]) : clone(given[f]);
      stamps[f] = [...stamp];
    }
    const req = requiredCheck(schema, fields);
    if (req) return reject(req);
    if (schema.validate) {
      const v = schema.validate(null, fields, op);
      if (v) return reject(v);
    }
    return finish(schema, cur, op, fields, stamps, s, status);
  }

  const fields = clone(cur.fields);
  const stamps = clone(cur.stamps);
  let status = "applied";
  const parked = [];
  for (const f of sortedKeys(given)) {
    const v = given[f];
    const kind = kindOf(f);
    if (kind === "counter") {
      fields[f] = add(fields[f], v);
      stamps[f] = [...stamp];
      continue;
    }
    if (!contested(f)) {
      fields[f] = clone(v);
      stamps[f] = [...stamp];
      continue;
    }
    const res = strategyFor(schema, f)({
      field: f,
      kind,
      server_value: Object.hasOwn(cur.fields, f) ? cur.fields[f] : null,
      server_stamp: cur.stamps[f],
      incoming_value: v,
      incoming_stamp: stamp,
      states: schema.states,
    });
    if (res.r === "park") parked.push(f);
    else if (res.r === "server") status = "merged";
    else {
      fields[f] = clone(res.r === "incoming" ? v : res.value);
      stamps[f] = [...stamp];
      status = "merged";
    }
  }
  if (parked.length > 0) return park(cur, op, parked, s);
  const after = obj(Object.keys(given).map((f) => [f, fields[f]]));
  const bad2 = schemaCheck(schema, after, false);
  if (bad2) return reject(bad2);
  if (schema.validate) {
    const v = schema.validate(cur.fields, fields, op);
    if (v) return reject(v);
  }
  return finish(schema, cur, op, fields, stamps, s, status);
}

// ---------------------------------------------------------------------------------
// Section 15: the orders domain; section 13: the conflicts collection.

const ORDER_STATES = ["open", "sent", "ready", "served", "closed", "voided"];
const TRANSITIONS = {
  absent: { open: "open" },
  open: { add_line: "open", remove_line: "open", send_to_kitchen: "sent", close: "closed", void: "voided" },
  sent: { add_line: "open", remove_line: "sent", mark_ready: "ready", void: "voided" },
  ready: { add_line: "open", serve: "served", void: "voided" },
  served: { add_line: "open", close: "closed", void: "voided" },
  closed: {},
  voided: {},
};

const present = (args, k) => Object.hasOwn(args, k) && args[k] !== null;

function orderCommand(name, body) {
  return (fields, args, op) => {
    const state = fields ? fields.status : "absent";
    const table = Object.hasOwn(TRANSITIONS, state) ? TRANSITIONS[state] : {};
    if (!Object.hasOwn(table, name)) return { reject: "illegal-transition" };
    const res = body(fields, args, op);
    if (res.reject) return res;
    res.patch.status = table[name];
    return res;
  };
}

const ORDER_COMMANDS = {
  open: orderCommand("open", (_f, args, op) => {
    const c = present(args, "currency") ? args.currency : null;
    if (typeof c !== "string" || !/^[A-Z]{3}$/.test(c)) return { reject: "invalid-argument" };
    if (present(args, "table") && typeof args.table !== "string") return { reject: "invalid-argument" };
    return {
      patch: obj([
        ["table", present(args, "table") ? args.table : null],
        ["currency", c],
        ["lines", obj()],
        ["opened_by", op.node_id],
      ]),
    };
  }),
  add_line: orderCommand("add_line", (fields, args) => {
    const a = (k) => (present(args, k) ? args[k] : null);
    if (typeof a("line_id") !== "string") return { reject: "invalid-argument" };
    if (!isInt(a("qty"))) return { reject: "invalid-argument" };
    if (!isInt(a("unit_price"))) return { reject: "invalid-argument" };
    if (!(a("qty") > 0) || !(a("unit_price") >= 0)) return { reject: "invalid-argument" };
    const lines = isObject(fields.lines) ? clone(fields.lines) : obj();
    if (Object.hasOwn(lines, a("line_id"))) return { reject: "duplicate-line" };
    if (typeof a("item") !== "string") return { reject: "invalid-argument" };
    lines[a("line_id")] = obj([
      ["item", a("item")],
      ["qty", a("qty")],
      ["unit_price", a("unit_price")],
      ["sent", false],
    ]);
    return { patch: obj([["lines", lines]]) };
  }),
  remove_line: orderCommand("remove_line", (fields, args) => {
    const id = present(args, "line_id") ? args.line_id : null;
    if (typeof id !== "string") return { reject: "invalid-argument" };
    const lines = isObject(fields.lines) ? clone(fields.lines) : obj();
    if (!Object.hasOwn(lines, id)) return { reject: "line-not-found" };
    if (lines[id].sent === true) return { reject: "line-already-sent" };
    delete lines[id];
    return { patch: obj([["lines", lines]]) };
  }),
  send_to_kitchen: orderCommand("send_to_kitchen", (fields) => {
    const lines = isObject(fields.lines) ? clone(fields.lines) : obj();
    if (Object.keys(lines).length === 0) return { reject: "empty" };
    for (const k of Object.keys(lines)) lines[k].sent = true;
    return { patch: obj([["lines", lines]]) };
  }),
  mark_ready: orderCommand("mark_ready", () => ({ patch: obj() })),
  serve: orderCommand("serve", () => ({ patch: obj() })),
  close: orderCommand("close", () => ({ patch: obj() })),
  void: orderCommand("void", (_f, args) => {
    if (present(args, "reason") && typeof args.reason !== "string") return { reject: "invalid-argument" };
    return { patch: obj([["void_reason", present(args, "reason") ? args.reason : null]]) };
  }),
};

const field = (type, kind, required = false, command_only = false) => ({ type, kind, required, command_only });

export const ORDERS = {
  name: "orders",
  strategy: "smart_merge",
  field_strategies: {},
  states: ORDER_STATES,
  strict: true,
  fields: {
    status: field("str", "state", true, true),
    table: field("str", "lww"),
    currency: field("str", "lww", true, true),
    lines: field("object", "map", false, true),
    total: field("money", "lww", false, true),
    opened_by: field("str", "lww", false, true),
    note: field("str", "lww"),
    covers: field("int", "lww"),
    tags: field("list", "set"),
    void_reason: field("str", "lww", false, true),
  },
  commands: ORDER_COMMANDS,
  derive(fields) {
    let total = 0n;
    const lines = isObject(fields.lines) ? fields.lines : obj();
    for (const k of Object.keys(lines)) {
      const l = lines[k];
      if (isObject(l) && isInt(l.qty) && isInt(l.unit_price)) total += BigInt(l.qty) * BigInt(l.unit_price);
    }
    if (total > BigInt(MAX_INT)) return { reject: "invalid-field" };
    return { fields: obj([["total", Number(total)]]) };
  },
  validate(before) {
    if (before && (before.status === "closed" || before.status === "voided")) return "order-closed";
    return null;
  },
};

export const CONFLICTS = {
  name: "conflicts",
  strategy: "server_wins",
  field_strategies: {},
  states: ["open", "resolved"],
  strict: true,
  fields: {
    collection: field("str", "lww", false, true),
    record_id: field("str", "lww", false, true),
    op: field("object", "lww", false, true),
    server: field("any", "lww", false, true),
    contested: field("list", "lww", false, true),
    state: field("str", "state", false, true),
    resolved_by: field("any", "lww", false, true),
    resolution_op_id: field("any", "lww", false, true),
  },
  commands: {
    resolve(fields, args, op) {
      if (!fields) return { reject: "record-not-found" };
      if (fields.state !== "open") return { reject: "illegal-transition" };
      const rid = Object.hasOwn(args, "resolution_op_id") ? args.resolution_op_id : null;
      if (rid !== null && typeof rid !== "string") return { reject: "invalid-argument" };
      return {
        patch: obj([
          ["state", "resolved"],
          ["resolved_by", op.node_id],
          ["resolution_op_id", rid],
        ]),
      };
    },
  },
};

export const REGISTRY = { orders: ORDERS, conflicts: CONFLICTS };

// ---------------------------------------------------------------------------------
// Sections 7, 8, 9 and 14: the terminal.

const recordKey = (collection, recordId) => JSON.stringify([collection, recordId]);

export class ProblemError extends Error {
  constructor(status, problem) {
    super(`HTTP ${status}: ${problem && problem.type}`);
    this.status = status;
    this.problem = problem;
  }
}

export class Terminal {
  constructor(path) {
    this.path = path;
    this.s = existsSync(path) ? parseJSON(readFileSync(path, "utf8")) : null;
    this.log = { requests: 0, refreshes: 0, retries: 0 };
  }

  save() {
    const tmp = this.path + ".tmp";
    writeFileSync(tmp, JSON.stringify(this.s));
    renameSync(tmp, this.path);
  }

  get clock() {
    return new Clock(hlcFromWire(this.s.hlc_last));
  }

  // One HTTP exchange; refresh once on 401 (section 7); back off on 5xx and network errors (14.4).
  async http(method, path, body, { auth = true } = {}) {
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (auth) headers.Authorization = `Bearer ${this.s.access_token}`;
      let res;
      try {
        this.log.requests++;
        res = await fetch(this.s.base_url + path, { method, headers, body });
      } catch (err) {
        if (attempt >= 4) throw err;
        this.log.retries++;
        await backoff(attempt);
        continue;
      }
      const text = await res.text();
      const ctype = res.headers.get("content-type") || "";
      let parsed = null;
      try {
        parsed = text ? parseJSON(text) : null;
      } catch {
        parsed = null;
      }
      if (res.status === 401 && auth && !refreshed) {
        refreshed = true;
        await this.refresh();
        continue;
      }
      if (res.status >= 500 && attempt < 4) {
        this.log.retries++;
        await backoff(attempt);
        continue;
      }
      return { status: res.status, ctype, body: parsed, text, wwwAuth: res.headers.get("www-authenticate") };
    }
  }

  storeTokens(t) {
    this.s.access_token = t.access_token;
    this.s.refresh_token = t.refresh_token;
    this.s.token_expires_in = t.expires_in;
  }

  async enroll(baseUrl, code) {
    this.s = {
      base_url: baseUrl.replace(/\/$/, ""),
      node_id: null,
      tenant_id: null,
      access_token: null,
      refresh_token: null,
      next_seq: 1,
      hlc_last: hlcToWire(0n),
      cursor: 0,
      server: {},
      view: {},
      outbox: [],
      kept_outcomes: [],
    };
    const r = await this.http("POST", "/v1/auth/device", JSON.stringify({ enrollment_code: code }), { auth: false });
    if (r.status !== 200) throw new ProblemError(r.status, r.body);
    this.storeTokens(r.body);
    this.s.node_id = r.body.node_id;
    this.s.tenant_id = r.body.tenant_id;
    this.save();
    return r.body;
  }

  async refresh() {
    this.log.refreshes++;
    const r = await this.http("POST", "/v1/auth/refresh", JSON.stringify({ refresh_token: this.s.refresh_token }), {
      auth: false,
    });
    if (r.status !== 200) throw new ProblemError(r.status, r.body);
    this.storeTokens(r.body); // durably, before using it (section 7)
    this.save();
  }

  // Section 14.1: a local write. Returns {ok, op, predicted} or {ok: false, reason}.
  write(collection, recordId, kind, { fields = null, name = null, args = null } = {}) {
    const clock = this.clock;
    const hlc = clock.now(wall());
    const op = {
      op_id: randomUUID(),
      node_id: this.s.node_id,
      seq: this.s.next_seq,
      hlc: hlcToWire(hlc),
      base_seq: this.s.cursor,
      collection,
      record_id: recordId,
      kind,
      fields,
      name,
      args,
    };
    canonical(op); // section 3: refuse values outside the profile before anything is consumed
    if (fields && Object.keys(fields).some((k) => k.startsWith("_"))) return { ok: false, reason: "reserved-field" };
    const key = recordKey(collection, recordId);
    const cur = Object.hasOwn(this.s.view, key) ? this.s.view[key] : null;
    const res = applyOp(cur, op, REGISTRY, 0);
    if (res.status === "rejected") return { ok: false, reason: res.reason };
    if (res.record) this.s.view[key] = res.record;
    this.s.outbox.push({ op, acked: false, ack_cursor: null, outcome: null, predicted: res.status });
    this.s.next_seq += 1;
    this.s.hlc_last = hlcToWire(clock.last);
    this.save();
    return { ok: true, op, predicted: res.status };
  }

  batchBody(ops) {
    return JSON.stringify({ protocol: 1, node_id: this.s.node_id, ops, checksum: checksum(ops) });
  }

  async pushBody(text) {
    const r = await this.http("POST", "/v1/sync/push", text);
    return r;
  }

  ack(seqLimit, cursor) {
    for (const e of this.s.outbox) {
      if (e.op.seq <= seqLimit) {
        e.acked = true;
        e.ack_cursor = e.ack_cursor === null ? cursor : Math.min(e.ack_cursor, cursor);
      }
    }
  }

  // Section 8 / 14.2: push the unacknowledged ops, oldest first, in batches.
  async push(batchSize = 100) {
    const results = [];
    for (;;) {
      const pending = this.s.outbox.filter((e) => !e.acked).slice(0, batchSize);
      if (pending.length === 0) return results;
      const ops = pending.map((e) => e.op);
      const r = await this.pushBody(this.batchBody(ops));
      if (r.status !== 200) throw new ProblemError(r.status, r.body);
      this.handlePushResult(r.body, ops);
      results.push(summarisePush(ops, r.body));
    }
  }

  handlePushResult(res, ops) {
    if (res.node_id !== this.s.node_id || res.outcomes.length !== ops.length) {
      throw new Error("push result does not match the batch");
    }
    res.outcomes.forEach((o, k) => {
      if (o.op_id !== ops[k].op_id || o.seq !== ops[k].seq) throw new Error("outcome order differs from the batch");
      const e = this.s.outbox.find((x) => x.op.op_id === o.op_id);
      if (e && o.status !== "duplicate") e.outcome = o;
      const plain = o.status === "applied" || (o.status === "duplicate" && o.original === "applied");
      if (!plain && !this.s.kept_outcomes.some((x) => x.op_id === o.op_id && x.status === o.status)) {
        this.s.kept_outcomes.push(o);
      }
    });
    this.ack(res.high_water, res.cursor);
    this.save();
  }

  // Section 9: pull until caught up. Returns page statistics.
  async pull(limit = 1000) {
    const stats = { pages: 0, changes: 0, checksums_verified: 0, checksum_failures: 0, records: 0 };
    for (;;) {
      const since = this.s.cursor;
      const r = await this.http("GET", `/v1/sync/pull?cursor=${since}&limit=${limit}`);
      if (r.status !== 200) throw new ProblemError(r.status, r.body);
      const page = r.body;
      // 9.3 step 1: over the array as received, and since must be what we asked for
      if (page.since !== since || checksum(page.changes) !== page.checksum) {
        stats.checksum_failures++;
        if (stats.checksum_failures > 3) throw new Error("page checksum keeps failing");
        await backoff(stats.checksum_failures);
        continue;
      }
      stats.checksums_verified++;
      stats.pages++;
      stats.changes += page.changes.length;
      this.applyPage(page);
      if (!page.more) break;
    }
    stats.records = Object.keys(this.s.server).length;
    return stats;
  }

  applyPage(page) {
    const touched = new Set();
    let ownMax = 0;
    let maxHlc = null;
    for (const ch of page.changes) {
      const rec = ch.record;
      const key = recordKey(rec.collection, rec.record_id);
      this.s.server[key] = rec; // the last occurrence wins
      touched.add(key);
      if (ch.node_id === this.s.node_id) ownMax = Math.max(ownMax, ch.node_seq);
      const stamps = Object.values(rec.stamps);
      if (rec.deleted_stamp) stamps.push(rec.deleted_stamp);
      for (const st of stamps) if (maxHlc === null || st[0] > maxHlc) maxHlc = st[0];
    }
    if (ownMax > 0) this.ack(ownMax, page.cursor);
    const keep = [];
    for (const e of this.s.outbox) {
      if (e.acked && e.ack_cursor <= page.cursor) touched.add(recordKey(e.op.collection, e.op.record_id));
      else keep.push(e);
    }
    this.s.outbox = keep;
    for (const key of touched) this.rebase(key);
    if (maxHlc !== null) {
      const clock = this.clock;
      try {
        clock.update(wall(), maxHlc);
        this.s.hlc_last = hlcToWire(clock.last);
      } catch (err) {
        if (!(err instanceof ClockError)) throw err; // a drift refusal is ignored (5.2)
      }
    }
    this.s.cursor = page.cursor;
    this.save();
  }

  // Section 14.3: view = pending ops applied over the server's record, s = 0.
  rebase(key) {
    let rec = Object.hasOwn(this.s.server, key) ? this.s.server[key] : null;
    for (const e of this.s.outbox) {
      if (recordKey(e.op.collection, e.op.record_id) !== key) continue;
      const res = applyOp(rec, e.op, REGISTRY, 0);
      if (res.record) rec = res.record;
    }
    if (rec) this.s.view[key] = rec;
    else delete this.s.view[key];
  }

  liveView() {
    const out = {};
    for (const key of Object.keys(this.s.view).sort()) {
      const rec = this.s.view[key];
      if (!rec.deleted) out[`${rec.collection}/${rec.record_id}`] = rec;
    }
    return out;
  }

  summaryBase() {
    const view = this.liveView();
    return {
      node_id: this.s.node_id,
      tenant_id: this.s.tenant_id,
      cursor: this.s.cursor,
      next_seq: this.s.next_seq,
      outbox: this.s.outbox.length,
      kept_outcomes: this.s.kept_outcomes,
      view,
      view_md5: checksum(view),
      http: this.log,
    };
  }
}

function summarisePush(ops, res) {
  return {
    seqs: ops.map((o) => o.seq),
    high_water: res.high_water,
    cursor: res.cursor,
    statuses: res.outcomes.map((o) => o.status),
    reasons: res.outcomes.map((o) => o.reason),
    originals: res.outcomes.map((o) => o.original),
  };
}

function backoff(n) {
  const cap = Math.min(30000, 200 * 2 ** n);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
}

const problemSummary = (r) => ({
  status: r.status,
  content_type: r.ctype.split(";")[0].trim(),
  type: r.body && r.body.type,
  code: r.body && typeof r.body.type === "string" ? r.body.type.replace(PROBLEM_BASE, "") : null,
  expected: r.body ? r.body.expected : undefined,
});

// ---------------------------------------------------------------------------------
// The scenario: everything the brief asks the port to show, against a live server.

async function scenario(t, orderId) {
  const out = { mode: "scenario", order_id: orderId, writes: [], pushes: [] };
  const predicted = new Map(); // seq -> predicted status
  const w = (kind, opts) => {
    const r = t.write("orders", orderId, kind, opts);
    out.writes.push(r.ok ? { seq: r.op.seq, kind, name: opts.name || null, predicted: r.predicted } : { refused: r.reason });
    if (r.ok) predicted.set(r.op.seq, r.predicted);
    return r;
  };
  const line = (id, item, qty, price) => ({ name: "add_line", args: { line_id: id, item, qty, unit_price: price } });

  // Section 7: a request without a valid token is refused; refresh tokens rotate.
  const bogus = await fetch(t.s.base_url + "/v1/sync/pull?cursor=0", { headers: { Authorization: "Bearer nope" } });
  const bogusBody = parseJSON(await bogus.text());
  out.unauthenticated = {
    status: bogus.status,
    type: bogusBody.type,
    www_authenticate: bogus.headers.get("www-authenticate"),
  };
  const oldRefresh = t.s.refresh_token;
  await t.refresh();
  out.refresh = { rotated: t.s.refresh_token !== oldRefresh, expires_in: t.s.token_expires_in };

  // Ops 1..3: open the order and add two lines; one locally refused write in between.
  w("command", { name: "open", args: { currency: "EUR", table: "T4" } });
  w("command", line("l1", "Soup", 2, 450));
  const seqBefore = t.s.next_seq;
  const dup = w("command", line("l1", "Soup again", 1, 450));
  out.local_refusal = { reason: dup.reason, seq_consumed: t.s.next_seq !== seqBefore };
  w("command", line("l2", "Bread", 1, 300));

  // Push them as one batch; keep the exact body to replay it.
  const first = t.s.outbox.filter((e) => !e.acked).map((e) => e.op);
  const body1 = t.batchBody(first);
  const r1 = await t.pushBody(body1);
  if (r1.status !== 200) throw new ProblemError(r1.status, r1.body);
  t.handlePushResult(r1.body, first);
  out.pushes.push(summarisePush(first, r1.body));

  // Replay the same bytes: every op is a duplicate; nothing moves (8.3).
  const r2 = await t.pushBody(body1);
  if (r2.status !== 200) throw new ProblemError(r2.status, r2.body);
  t.handlePushResult(r2.body, first);
  out.replay = summarisePush(first, r2.body);

  // Ops 4..7: a direct patch of plain fields, a set field, then send to the kitchen.
  w("patch", { fields: { note: "window seat" } });
  w("patch", { fields: { covers: 2 } });
  w("patch", { fields: { tags: ["vip"] } });
  w("command", { name: "send_to_kitchen", args: {} });

  // A gap: push the new ops without the first one (a probe; the outbox is not renumbered).
  const pending = t.s.outbox.filter((e) => !e.acked).map((e) => e.op);
  const g = await t.pushBody(t.batchBody(pending.slice(1)));
  out.gap = { ...problemSummary(g), sent_first_seq: pending[1].seq };

  // A tampered body: the checksum of the true ops, the ops altered on the way.
  const tampered = JSON.parse(JSON.stringify(pending));
  tampered[0].fields.note = "tampered";
  const tb = JSON.stringify({ protocol: 1, node_id: t.s.node_id, ops: tampered, checksum: checksum(pending) });
  const tr = await t.pushBody(tb);
  out.tamper = { ...problemSummary(tr), local_md5_of_tampered: checksum(tampered) };

  // The real push, in batches of 3 (pending ops 4..7 go as [4,5,6] and [7]).
  out.pushes.push(...(await t.push(3)));

  // What this terminal predicts the server holds (section 14.3), before it pulls.
  const key = recordKey("orders", orderId);
  const predictedRecord = t.s.view[key];

  // Pull in small pages until caught up, verifying each page.
  out.pull = await t.pull(3);
  const pulled = t.s.server[key];
  const shape = (rec) => ({
    fields: rec.fields,
    stamps: obj(Object.keys(rec.stamps).map((k) => [k, rec.stamps[k].slice(0, 2)])), // seq 0 locally
    deleted: rec.deleted,
  });
  out.prediction_equals_server_record = Boolean(pulled) && same(shape(predictedRecord), shape(pulled));

  // Predictions (14.3) against what the server said.
  const mism = [];
  for (const p of out.pushes) {
    p.statuses.forEach((st, k) => {
      const guess = predicted.get(p.seqs[k]);
      if (guess !== undefined && st !== guess) mism.push({ seq: p.seqs[k], predicted: guess, server: st });
    });
  }
  out.prediction_mismatches = mism;
  return out;
}

// ---------------------------------------------------------------------------------
// Vectors (section 18): the kinds this port implements.

function runVectors(dir) {
  const load = (f) => parseJSON(readFileSync(join(dir, f), "utf8"));
  const res = {};
  const fails = [];
  const tally = (file, name, ok, info) => {
    res[file] = res[file] || { passed: 0, failed: 0 };
    res[file][ok ? "passed" : "failed"]++;
    if (!ok) fails.push({ file, name, ...info });
  };

  for (const v of load("canonical.json")) {
    let got;
    try {
      got = { canonical: canonical(v.input) };
    } catch (err) {
      if (!(err instanceof CanonicalError)) throw err;
      got = { error: err.reason };
    }
    const ok = v.error !== undefined ? got.error === v.error : got.canonical === v.canonical;
    tally("canonical.json", v.name, ok, { got });
  }

  for (const v of load("checksum.json")) {
    const c = canonical(v.ops);
    tally("checksum.json", v.name, c === v.canonical && md5hex(c) === v.md5, { got: md5hex(c) });
  }

  for (const v of load("hlc.json")) {
    const clock = new Clock(hlcFromWire(v.last), v.max_drift_ms);
    let ok = true;
    const info = [];
    for (const st of v.steps) {
      const before = clock.last;
      let got = null;
      let err = null;
      try {
        if (st.op === "now") got = clock.now(st.wall);
        else if (st.op === "update") got = clock.update(st.wall, st.remote);
        else got = hlcFromWire(st.wire);
      } catch (e) {
        if (!(e instanceof ClockError)) throw e;
        err = "clock";
      }
      let good;
      if (st.error !== undefined) good = err === st.error && clock.last === before;
      else {
        good = err === null;
        if (good && st.expect !== undefined) good = hlcToWire(got) === st.expect;
        if (good && st.expect_ms !== undefined) good = got >> 16n === BigInt(st.expect_ms);
        if (good && st.expect_counter !== undefined) good = (got & 0xffffn) === BigInt(st.expect_counter);
      }
      if (!good) {
        ok = false;
        info.push({ step: st, got: got === null ? err : hlcToWire(got) });
      }
    }
    tally("hlc.json", v.name, ok, { info });
  }

  for (const v of load("conflicts.json")) {
    const reg = { [v.collection.name]: v.collection, conflicts: CONFLICTS };
    const got = applyOp(v.server, v.op, reg, v.seq);
    const want = v.expect;
    const ok =
      got.status === want.status &&
      got.reason === want.reason &&
      same(got.record, want.record) &&
      same(got.conflict, want.conflict);
    tally("conflicts.json", v.name, ok, { got: { status: got.status, reason: got.reason } });
  }

  for (const v of load("orders_state.json")) {
    const got = applyOp(v.record, v.op, REGISTRY, v.seq);
    const want = v.expect;
    const ok = got.status === want.status && got.reason === want.reason && same(got.record, want.record);
    const allowed = got.status !== "rejected" || got.reason !== "illegal-transition";
    const next = got.record ? got.record.fields.status : null;
    tally("orders_state.json", v.name, ok && allowed === v.allowed && (!v.allowed || next === v.next), {
      got: { status: got.status, reason: got.reason },
    });
  }

  // push.json: every accepted batch's checksum, every page checksum, every checksum-mismatch's expected.
  for (const v of load("push.json")) {
    let ok = true;
    let checked = 0;
    for (const st of v.steps) {
      const exp = st.expect;
      if (st.push) {
        const body = st.push.body !== undefined ? st.push.body : null;
        if (!body || !isObject(body) || !Array.isArray(body.ops)) continue;
        let sum = null;
        try {
          sum = checksum(body.ops);
        } catch (e) {
          if (!(e instanceof CanonicalError)) throw e;
        }
        if (exp.status === 200) {
          checked++;
          if (sum !== body.checksum) ok = false;
        } else if (exp.problem && exp.problem.type === PROBLEM_BASE + "checksum-mismatch") {
          checked++;
          if (sum !== exp.problem.expected) ok = false;
        }
      } else if (st.pull && exp.status === 200) {
        checked++;
        if (checksum(exp.body.changes) !== exp.body.checksum) ok = false;
      }
    }
    tally("push.json", v.name, ok, { checked });
  }
  return { mode: "vectors", results: res, failures: fails };
}

// ---------------------------------------------------------------------------------
// Command line.

function parseArgs(argv) {
  const opts = { _: [] };
  for (let k = 0; k < argv.length; k++) {
    if (argv[k].startsWith("--")) opts[argv[k].slice(2)] = argv[++k];
    else opts._.push(argv[k]);
  }
  return opts;
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  const o = parseArgs(rest);
  wallSkew = Number(o["wall-skew-ms"] || 0);
  const emit = (x) => process.stdout.write(JSON.stringify(x) + "\n");
  if (cmd === "vectors") {
    const r = runVectors(o._[0] || "docs/protocol/vectors");
    emit(r);
    return r.failures.length === 0 ? 0 : 1;
  }
  if (!o.state) throw new Error("--state FILE is required");
  const t = new Terminal(o.state);
  if (cmd === "enroll") {
    const tokens = await t.enroll(o["base-url"], o.code);
    emit({ mode: "enroll", node_id: tokens.node_id, tenant_id: tokens.tenant_id, token_type: tokens.token_type });
    return 0;
  }
  if (!t.s) throw new Error(`no state in ${o.state}: enroll first`);
  if (cmd === "scenario") {
    const r = await scenario(t, o["order-id"] || `o-${randomUUID().slice(0, 8)}`);
    emit({ ...r, ...t.summaryBase() });
    return 0;
  }
  if (cmd === "patch" || cmd === "command") {
    const r =
      cmd === "patch"
        ? t.write(o.collection, o.record, "patch", { fields: parseJSON(o.fields) })
        : t.write(o.collection, o.record, "command", { name: o.name, args: parseJSON(o.args || "{}") });
    emit({ mode: cmd, ok: r.ok, reason: r.reason || null, seq: r.ok ? r.op.seq : null, predicted: r.predicted || null });
    return r.ok ? 0 : 1;
  }
  if (cmd === "sync") {
    const pushes = await t.push(Number(o["batch-size"] || 100));
    const pull = await t.pull(Number(o["page-size"] || 1000));
    emit({ mode: "sync", pushes, pull, ...t.summaryBase() });
    return 0;
  }
  if (cmd === "view") {
    emit({ mode: "view", ...t.summaryBase() });
    return 0;
  }
  throw new Error(`unknown command ${cmd}`);
}

// Run as a program; importing the module (to reuse the pieces) runs nothing.
const invoked = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (invoked) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      const info = { error: String(err && err.message ? err.message : err) };
      if (err instanceof ProblemError) info.problem = err.problem;
      process.stderr.write(JSON.stringify(info) + "\n");
      process.exit(2);
    },
  );
}
