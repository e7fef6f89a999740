'use strict';
// Applying a put, patch or delete to a record, with the built-in conflict strategies:
// docs/protocol.md sections 11 and 12, written from the spec alone. Commands (11.4) are
// domain code and are not ported here.

const { canonical } = require('./canonical');
const { compareStamps } = require('./hlc');
const { isObject } = require('./json');

class Rejected extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

const clone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const jsonEqual = (a, b) => canonical(a) === canonical(b);
// Section 11.1: names in ascending code point order (not UTF-16 order).
const byCodePoint = (a, b) => {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let k = 0; k < Math.min(x.length, y.length); k += 1) if (x[k] !== y[k]) return x[k] - y[k];
  return x.length - y.length;
};
const names = (obj) => Object.keys(obj).sort(byCodePoint);

function typeOk(type, v) {
  switch (type) {
    case 'any': return true;
    case 'int': case 'money': return typeof v === 'number' && Number.isInteger(v);
    case 'str': return typeof v === 'string';
    case 'bool': return typeof v === 'boolean';
    case 'list': return Array.isArray(v);
    default: return isObject(v); // object
  }
}

function schemaCheck(collection, values, byCommand) {
  for (const name of names(values)) {
    const spec = collection.fields[name];
    if (spec === undefined) {
      if (collection.strict) throw new Rejected('unknown-field');
      continue;
    }
    if (spec.command_only && !byCommand) throw new Rejected('command-only-field');
    const v = values[name];
    if (v === null) {
      if (spec.required) throw new Rejected('invalid-field');
      continue;
    }
    if (!typeOk(spec.type, v)) throw new Rejected('invalid-field');
    if (spec.kind === 'counter' && !(typeof v === 'number' && Number.isInteger(v))) {
      throw new Rejected('invalid-field');
    }
  }
}

function requiredCheck(collection, fields) {
  for (const name of names(collection.fields)) {
    const v = fields[name];
    if (collection.fields[name].required && (v === undefined || v === null)) {
      throw new Rejected('invalid-field');
    }
  }
}

// ------------------------------------------------------------------------ strategies

function lww(contest) {
  return compareStamps(contest.incomingStamp, contest.serverStamp) > 0 ? ['incoming'] : ['server'];
}

function union(server, incoming) {
  const out = Array.isArray(server) ? server.slice() : [];
  for (const item of Array.isArray(incoming) ? incoming : []) {
    if (!out.some((x) => jsonEqual(x, item))) out.push(item);
  }
  return out;
}

const STRATEGIES = {
  server_wins: () => ['server'],
  client_wins: () => ['incoming'],
  manual: () => ['park'],
  smart_merge: (c) => {
    if (c.kind === 'set') return ['value', union(c.serverValue, c.incomingValue)];
    if (c.kind === 'state' && c.states.length > 0) {
      const s = c.states.indexOf(c.serverValue);
      const i = c.states.indexOf(c.incomingValue);
      if (s >= 0 && i >= 0 && s !== i) return [i > s ? 'incoming' : 'server'];
    }
    if (c.kind === 'map' && isObject(c.serverValue) && isObject(c.incomingValue)) {
      const incomingWins = lww(c)[0] === 'incoming';
      const [winner, loser] = incomingWins
        ? [c.incomingValue, c.serverValue] : [c.serverValue, c.incomingValue];
      const merged = { ...loser, ...winner };
      const sorted = {};
      for (const k of names(merged)) sorted[k] = merged[k];
      return ['value', sorted];
    }
    return lww(c);
  },
};

function strategyFor(collection, field) {
  const name = (collection.field_strategies || {})[field] ?? collection.strategy;
  const strategy = STRATEGIES[name];
  if (strategy === undefined) throw new Error(`strategy ${name} is not ported`);
  return strategy;
}

// --------------------------------------------------------------------------- apply

function contested(cur, field, op) {
  const stamp = cur.stamps[field];
  if (stamp !== undefined && stamp[2] > op.base_seq && stamp[1] !== op.node_id) return stamp;
  return null;
}

function park(op, cur, fields) {
  return {
    status: 'conflict',
    reason: null,
    record: null,
    conflict: {
      conflict_id: `${op.node_id}:${op.seq}`,
      collection: op.collection,
      record_id: op.record_id,
      op,
      server: cur,
      contested: fields.slice().sort(byCodePoint),
      state: 'open',
      resolved_by: null,
      resolution_op_id: null,
    },
  };
}

const result = (status, record, reason = null) => ({ status, reason, record, conflict: null });

function finish(collection, cur, op, fields, stamps, s) {
  // Section 11.7. `derive` is domain code; the generic collections of the vectors have none.
  if (collection.derive) throw new Error('derived fields are not ported');
  return {
    collection: op.collection,
    record_id: op.record_id,
    fields,
    stamps,
    deleted: false,
    deleted_stamp: null,
    version: s !== 0 ? s : (cur ? cur.version : 0),
  };
}

// Resolve a `_deleted` contest: true (deleted), false (kept) or null (park).
function deletedAfter(collection, contest) {
  const [choice, value] = strategyFor(collection, '_deleted')(contest);
  if (choice === 'park') return null;
  if (choice === 'server') return Boolean(contest.serverValue);
  if (choice === 'incoming') return Boolean(contest.incomingValue);
  return Boolean(value);
}

function applyDelete(collection, cur, op, stamp, s) {
  if (collection.name === 'conflicts') throw new Rejected('command-only-field');
  if (cur === null) throw new Rejected('record-not-found');
  if (cur.deleted) return result('applied', null);
  let status = 'applied';
  const rivals = names(cur.fields).map((f) => contested(cur, f, op)).filter((x) => x !== null);
  if (rivals.length > 0) {
    const newest = rivals.reduce((a, b) => (compareStamps(b, a) > 0 ? b : a));
    const deleted = deletedAfter(collection, {
      field: '_deleted', kind: 'lww', serverValue: false, serverStamp: newest,
      incomingValue: true, incomingStamp: stamp, states: collection.states,
    });
    if (deleted === null) return park(op, cur, ['_deleted']);
    if (!deleted) return result('merged', null, 'kept-server');
    status = 'merged';
  }
  return result(status, {
    collection: op.collection,
    record_id: op.record_id,
    fields: clone(cur.fields),
    stamps: clone(cur.stamps),
    deleted: true,
    deleted_stamp: stamp,
    version: s !== 0 ? s : cur.version,
  });
}

function applyWrite(collection, cur, op, stamp, s) {
  const incoming = op.fields;
  let status = 'applied';
  if (cur === null || cur.deleted) {
    if (cur === null && op.kind === 'patch') throw new Rejected('record-not-found');
    let fields = {};
    let stamps = {};
    if (cur !== null) {
      const ds = cur.deleted_stamp;
      if (ds[2] > op.base_seq && ds[1] !== op.node_id) {
        const deleted = deletedAfter(collection, {
          field: '_deleted', kind: 'lww', serverValue: true, serverStamp: ds,
          incomingValue: false, incomingStamp: stamp, states: collection.states,
        });
        if (deleted === null) return park(op, cur, ['_deleted']);
        if (deleted) return result('merged', null, 'kept-server');
        status = 'merged';
      } else if (op.kind === 'patch') {
        throw new Rejected('record-deleted');
      }
      if (op.kind === 'patch') {
        fields = clone(cur.fields);
        stamps = clone(cur.stamps);
      }
    }
    for (const name of names(incoming)) {
      const spec = collection.fields[name];
      let v = incoming[name];
      if (spec && spec.kind === 'counter' && op.kind === 'patch') v = (fields[name] ?? 0) + v;
      fields[name] = v;
      stamps[name] = stamp;
    }
    requiredCheck(collection, fields);
    return result(status, finish(collection, cur, op, fields, stamps, s));
  }

  const fields = clone(cur.fields);
  const stamps = clone(cur.stamps);
  const parked = [];
  for (const name of names(incoming)) {
    const spec = collection.fields[name];
    const kind = spec ? spec.kind : 'lww';
    const v = incoming[name];
    if (kind === 'counter') {
      fields[name] = (fields[name] ?? 0) + v;
      stamps[name] = stamp;
      continue;
    }
    const rival = contested(cur, name, op);
    if (rival === null) {
      fields[name] = v;
      stamps[name] = stamp;
      continue;
    }
    const [choice, value] = strategyFor(collection, name)({
      field: name, kind, serverValue: cur.fields[name] ?? null, serverStamp: rival,
      incomingValue: v, incomingStamp: stamp, states: collection.states,
    });
    if (choice === 'park') { parked.push(name); continue; }
    status = 'merged';
    if (choice === 'incoming') { fields[name] = v; stamps[name] = stamp; }
    if (choice === 'value') { fields[name] = value; stamps[name] = stamp; }
  }
  if (parked.length > 0) return park(op, cur, parked);
  const written = {};
  for (const name of names(incoming)) written[name] = fields[name] ?? null;
  schemaCheck(collection, written, false);
  return result(status, finish(collection, cur, op, fields, stamps, s));
}

// Apply `op` to `cur` (null: never existed) of `collection` (the JSON schema of the
// vectors) at feed sequence `s`. Returns {status, reason, record, conflict}.
function applyOp(collection, cur, op, s) {
  try {
    if (op.collection !== collection.name) throw new Rejected('unknown-collection');
    const stamp = [op.hlc, op.node_id, s];
    if (op.kind === 'command') throw new Error('commands are domain code and are not ported');
    if (op.kind === 'delete') return applyDelete(collection, cur, op, stamp, s);
    schemaCheck(collection, op.fields, false);
    return applyWrite(collection, cur, op, stamp, s);
  } catch (exc) {
    if (exc instanceof Rejected) return result('rejected', null, exc.reason);
    throw exc;
  }
}

module.exports = { Rejected, STRATEGIES, applyOp, lww, schemaCheck, union };
