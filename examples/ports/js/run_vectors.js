#!/usr/bin/env node
'use strict';
// Check this port against docs/protocol/vectors: canonical.json, checksum.json, hlc.json,
// conflicts.json (every vector: put/patch/delete under the four built-in strategies),
// fees.json, payments_state.json and payments_delete.json (the payments domain, payments.js),
// drawers.json (cash drawers and the server's cash check, drawers.js),
// session_capture.json (a payment session's capture command, sessions.js),
// session_refund.json (a payment session's refund command, sessions.js),
// ledger.json (the posting sets of section 19.8 after replaying payment ops, ledger.js),
// actors.json (the roles table as data and the actor check of 20.1, actors.js),
// orders_state.json (from the orders state table and schema in domains.json, the domains
// document of section 21: no copy of the table here), and every checksum that appears in
// push.json (batch bodies, refusals' `expected`, pull pages), and the limits of section 22
// (limits.js) over every push and page of push.json: depth, string and field sizes against
// every `limit-exceeded` refusal and every accepted push, the record size by replaying the
// `limits:` vectors' pushes, and every page's bytes.
// compact.json (section 23): the same checksums, and the shape of every compacted page.
//
//   node examples/ports/js/run_vectors.js [vector directory]
//
// Prints a line per file and every failure; exits 1 if anything failed. Node 20+, standard
// library only.

const fs = require('node:fs');
const path = require('node:path');
const { CanonicalError, canonical, checksum } = require('./canonical');
const { ClockError, HybridClock, counterOf, fromWire, millisOf, toWire } = require('./hlc');
const { parse } = require('./json');
const { loadDomains, nextState } = require('./domains');
const { Rejected, applyOp, schemaCheck } = require('./merge');
const timeclock = require('./timeclock');
const limits = require('./limits');

const dir = process.argv[2] || path.join(__dirname, '..', '..', '..', 'docs', 'protocol', 'vectors');
const load = (name) => parse(fs.readFileSync(path.join(dir, name), 'utf8'));

const failures = [];
const counts = {};

function check(file, name, fn) {
  counts[file] = counts[file] || { passed: 0, failed: 0 };
  try {
    fn();
    counts[file].passed += 1;
  } catch (exc) {
    counts[file].failed += 1;
    failures.push(`${file}: ${name}: ${exc.message}`);
  }
}

function assertEqual(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(`${what}: got ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`);
  }
}

// --------------------------------------------------------------------------- canonical
for (const v of load('canonical.json')) {
  check('canonical.json', v.name, () => {
    if (v.error !== undefined) {
      let refused = null;
      try {
        canonical(v.input);
      } catch (exc) {
        if (!(exc instanceof CanonicalError)) throw exc;
        refused = exc.reason;
      }
      assertEqual(refused, v.error, 'refusal');
    } else {
      assertEqual(canonical(v.input), v.canonical, 'canonical text');
    }
  });
}

// ---------------------------------------------------------------------------- checksum
for (const v of load('checksum.json')) {
  check('checksum.json', v.name, () => {
    assertEqual(canonical(v.ops), v.canonical, 'canonical text');
    assertEqual(checksum(v.ops), v.md5, 'md5');
  });
}

// --------------------------------------------------------------------------------- hlc
for (const v of load('hlc.json')) {
  check('hlc.json', v.name, () => {
    let wall = 0;
    const clock = new HybridClock(() => wall, fromWire(v.last), v.max_drift_ms);
    v.steps.forEach((step, k) => {
      const at = `step ${k} (${step.op})`;
      if (step.op === 'decode') {
        let value = null;
        try { value = fromWire(step.wire); } catch (exc) { if (!(exc instanceof ClockError)) throw exc; }
        if (step.error !== undefined) return assertEqual(value, null, `${at} should be refused`);
        if (value === null) throw new Error(`${at}: refused ${step.wire}`);
        assertEqual(Number(millisOf(value)), step.expect_ms, `${at} ms`);
        assertEqual(Number(counterOf(value)), step.expect_counter, `${at} counter`);
        return assertEqual(toWire(value), step.wire, `${at} round trip`);
      }
      wall = step.wall;
      const before = clock.last;
      let got = null;
      try {
        got = step.op === 'now' ? clock.now() : clock.update(fromWire(step.remote));
      } catch (exc) {
        if (!(exc instanceof ClockError)) throw exc;
      }
      if (step.error !== undefined) {
        assertEqual(got, null, `${at} should fail`);
        return assertEqual(clock.last, before, `${at} clock after a refusal`);
      }
      if (got === null) throw new Error(`${at}: failed`);
      assertEqual(toWire(got), step.expect, `${at} value`);
      assertEqual(Number(millisOf(got)), step.expect_ms, `${at} ms`);
      assertEqual(Number(counterOf(got)), step.expect_counter, `${at} counter`);
    });
  });
}

// --------------------------------------------------------------------------- conflicts
for (const v of load('conflicts.json')) {
  check('conflicts.json', v.name, () => {
    const got = applyOp(v.collection, v.server, v.op, v.seq);
    for (const key of ['status', 'reason', 'record', 'conflict']) {
      // Compare whole JSON values by their canonical form (member order does not matter).
      assertEqual(canonical(got[key]), canonical(v.expect[key]), key);
    }
  });
}

// ------------------------------------------------- orders_state.json, from domains.json
// The table and the field schema come from the domains document; the commands' own
// argument rules and effects on lines are domain code (section 15.2) and are not ported,
// so each vector checks what the document decides: allowed or not, the state it leads to,
// and that the resulting record fits the collection's schema.
const domains = loadDomains(load('domains.json'));
for (const v of load('orders_state.json')) {
  check('orders_state.json', v.name, () => {
    const orders = domains.get(v.op.collection);
    if (orders === undefined) throw new Error(`domains.json has no collection ${v.op.collection}`);
    const table = orders.state_table;
    const state = v.record === null ? null : v.record.fields[table.field];
    assertEqual(state, v.state, 'the fixture record\'s state');
    const next = nextState(table, state, v.op.name);
    assertEqual(next !== null, v.allowed, 'allowed by the table');
    assertEqual(next, v.next, 'state after the command');
    if (next === null) {
      assertEqual(v.expect.status, 'rejected', 'outcome');
      return assertEqual(v.expect.reason, 'illegal-transition', 'reason');
    }
    assertEqual(v.expect.status, 'applied', 'outcome');
    assertEqual(v.expect.record.fields[table.field], next, `record ${table.field}`);
    try {
      schemaCheck(orders, v.expect.record.fields, true);
    } catch (exc) {
      if (exc instanceof Rejected) throw new Error(`the record breaks the schema: ${exc.reason}`);
      throw exc;
    }
  });
}

// ------------------------------------------------------ fees.json (section 19.5)
const pay = require('./payments');
function runFee(v) {
  switch (v.kind) {
    case 'percent': return pay.percentOf(v.amount, v.rate_bp, v.rounding);
    case 'split_equal': return pay.splitEqual(v.total, v.parts);
    case 'split_ratio': return pay.splitRatio(v.total, v.weights);
    case 'gross_up': {
      const charge = pay.grossUp(v.net, v.rate_bp, v.fixed);
      const fee = pay.percentOf(charge, v.rate_bp, 'half-up') + v.fixed;
      return { charge, fee, net: charge - fee };
    }
    case 'tip': return pay.tipAmount(v.settings, v.amount, v.order_total, v.choice);
    case 'fee': {
      const q = pay.quote(v.rates, v.method, v.country, v.currency, v.day, v.amount);
      return { processing: q.processing, platform: q.platform };
    }
    case 'surcharge': return pay.checkSurcharge(v);
    case 'service_charge': return pay.percentOf(v.amount, v.rate_bp, v.rounding);
    case 'route': return pay.rank(v.rates, v.amount, v.country, v.currency, v.day, v.methods);
    default: throw new Error(`unknown kind ${v.kind}`);
  }
}
for (const v of load('fees.json')) {
  check('fees.json', v.name, () => {
    let got;
    let refused = null;
    try { got = runFee(v); } catch (exc) {
      if (!(exc instanceof pay.Rejected)) throw exc;
      refused = exc.reason;
    }
    if (v.error !== undefined) return assertEqual(refused, v.error, 'refusal');
    if (refused !== null) throw new Error(`refused: ${refused}`);
    assertEqual(canonical(got), canonical(v.expect), 'value');
  });
}

// ------------------------------------------- payments_state.json (sections 19.2-19.4)
// The payment commands are ported (payments.js); a vector runs the command on the order,
// applies the patch and the derived fields as section 11.4 and 11.7 say, and compares
// the whole resulting record.
const orderTotal = (f) => Object.values(f.lines || {}).reduce((s, l) => s + l.qty * l.unit_price, 0);
for (const v of load('payments_state.json')) {
  check('payments_state.json', v.name, () => {
    const command = v.op.name.replace(/^payment_/, '');
    const id = v.op.args.attempt_id;
    const named = v.record.fields.payments[id];
    const state = named === undefined ? null : named.state;
    assertEqual(state, v.state, 'the fixture attempt\'s state');
    const next = pay.nextAttemptState(state, command);
    assertEqual(next !== null, v.allowed, 'allowed by the table');
    let patch;
    try {
      patch = pay.paymentCommand(v.record.fields, command, v.op.args, v.op, pay.settingsFrom(v.settings), v.received_ms);
    } catch (exc) {
      if (!(exc instanceof pay.Rejected)) throw exc;
      assertEqual(v.expect.status, 'rejected', 'outcome');
      assertEqual(exc.reason, v.expect.reason, 'reason');
      assertEqual(v.next, null, 'no state after a rejection');
      return assertEqual(v.expect.record, null, 'record');
    }
    const stamp = [v.op.hlc, v.op.node_id, v.seq];
    const fields = { ...v.record.fields, ...patch };
    const stamps = { ...v.record.stamps };
    for (const name of Object.keys(patch)) stamps[name] = stamp;
    const derived = { total: orderTotal(fields) };
    Object.assign(derived, pay.deriveMoney({ ...fields, ...derived }));
    for (const name of Object.keys(derived)) {
      if (canonical(fields[name]) !== canonical(derived[name]) || !(name in fields)) {
        fields[name] = derived[name];
        stamps[name] = stamp;
      }
    }
    const record = {
      collection: v.op.collection, record_id: v.op.record_id, fields, stamps,
      deleted: false, deleted_stamp: null, version: v.seq,
    };
    assertEqual(v.expect.status, 'applied', 'outcome');
    assertEqual(canonical(record), canonical(v.expect.record), 'record');
    assertEqual(record.fields.payments[id].state, v.next, 'attempt state');
  });
}

// ----------------------------------- payments_delete.json (sections 11.5 step 4, 19.6)
// The payments delete guard first (the port's deleteGuard), then the generic delete of
// merge.js with the collection the vector spells out.
for (const v of load('payments_delete.json')) {
  check('payments_delete.json', v.name, () => {
    let got;
    try {
      pay.deleteGuard(v.record.fields);
      got = applyOp(v.collection, v.record, v.op, v.seq);
    } catch (exc) {
      if (!(exc instanceof pay.Rejected)) throw exc;
      got = { status: 'rejected', reason: exc.reason, record: null, conflict: null };
    }
    for (const key of ['status', 'reason', 'record', 'conflict']) {
      assertEqual(canonical(got[key] ?? null), canonical(v.expect[key]), key);
    }
  });
}

// ------------------------------------- push.json and compact.json (23.8): checksums
for (const [file, v] of [...load('push.json').map((x) => ['push.json', x]),
                         ...load('compact.json').map((x) => ['compact.json', x])]) {
  check(file, v.name, () => {
    let checked = 0;
    v.steps.forEach((step, k) => {
      const at = `step ${k}`;
      const problem = step.expect.problem;
      if (step.push && step.push.body !== undefined) {
        const body = step.push.body;
        let actual = null;
        try { actual = checksum(body.ops); } catch (exc) { if (!(exc instanceof CanonicalError)) throw exc; }
        const code = problem ? problem.type.split('/').pop() : null;
        if (code === 'checksum-mismatch') {
          // The server's `expected` is the MD5 of the ops as they arrived: ours must agree.
          assertEqual(actual, problem.expected, `${at} the server's md5 of the ops`);
          if (actual === body.checksum) throw new Error(`${at}: tampered batch matches its checksum`);
        } else if (code === null || ['node-mismatch', 'seq-gap', 'seq-reuse'].includes(code)) {
          // Accepted, or refused after the checksum step (8.2): the checksum was right.
          assertEqual(actual, body.checksum, `${at} batch checksum`);
        }
        checked += 1;
      }
      if (step.pull && step.expect.status === 200) {
        const page = step.expect.body;
        assertEqual(checksum(page.changes), page.checksum, `${at} page checksum`);
        if (step.pull.compact) {
          // Section 23.2: each record once, ascending by version, the entry of its state now.
          const keys = page.changes.map((c) => `${c.record.collection}/${c.record.record_id}`);
          if (new Set(keys).size !== keys.length) throw new Error(`${at}: a record twice`);
          page.changes.forEach((c, i) => {
            assertEqual(c.seq, c.record.version, `${at} entry ${i} seq is the record's version`);
            if (i && c.seq <= page.changes[i - 1].seq) throw new Error(`${at}: not ascending`);
          });
          if (page.compacted !== true || typeof page.high_water !== 'number') {
            throw new Error(`${at}: a compacted page says compacted and high_water`);
          }
        }
        checked += 1;
      }
    });
    if (checked === 0 && v.steps.every((s) => s.push && s.push.body_text === undefined)) {
      throw new Error('nothing to check');
    }
  });
}

// ------------------------------------------------------------ push.json: limits (22)
function limitVerdict(step, lim) {
  // What this port refuses under section 22 before applying anything (8.2 steps 2, 10a),
  // or null; a body it cannot parse is not a limits question.
  try {
    let body = step.push.body;
    if (step.push.body_text !== undefined) {
      limits.checkDepth(step.push.body_text, lim.max_depth);
      body = parse(step.push.body_text);
    } else if (limits.textDepth(JSON.stringify(body)) > lim.max_depth) {
      return { limit: 'depth', max: lim.max_depth };
    }
    if (body !== null && typeof body === 'object' && Array.isArray(body.ops)) {
      limits.checkBatchLimits(body.ops.filter((op) => op !== null && typeof op === 'object'), lim);
    }
    return null;
  } catch (exc) {
    if (exc instanceof limits.LimitError) return exc.problem;
    if (exc.constructor && exc.constructor.name === 'JsonSyntaxError') return null;
    throw exc;
  }
}

function replay(v, step, state, lim, at) {
  // Apply an accepted push's ops in order (puts and patches: merge.js), rejecting a result
  // larger than max_record_bytes, and compare each outcome's status and reason.
  const expected = step.expect.body.outcomes;
  const body = step.push.body_text !== undefined ? parse(step.push.body_text) : step.push.body;
  body.ops.forEach((op, k) => {
    const want = expected[k];
    if (!['applied', 'rejected'].includes(want.status) || op.kind === 'command') {
      throw new Error(`${at}: outcome ${want.status} of a ${op.kind} is not replayed here`);
    }
    const collection = v.collections.find((c) => c.name === op.collection);
    const key = `${op.collection}/${op.record_id}`;
    let got = applyOp(collection, state.records.get(key) || null, op, state.cursor + 1);
    if (got.status !== 'rejected' && limits.recordTooLarge(got.record, lim)) {
      got = { status: 'rejected', reason: 'record-too-large' };
    }
    assertEqual(got.status, want.status, `${at} op ${k} status`);
    assertEqual(got.reason, want.reason, `${at} op ${k} reason`);
    if (got.status === 'applied') {
      state.records.set(key, got.record);
      state.cursor += 1;
    }
  });
}

for (const v of load('push.json')) {
  const lim = { ...limits.DEFAULT_LIMITS, ...(v.limits || {}) };
  const replaying = v.name.startsWith('limits:');
  const state = { records: new Map(), cursor: 0 };
  check('push.json (limits)', v.name, () => {
    v.steps.forEach((step, k) => {
      const at = `step ${k}`;
      if (step.push) {
        const problem = step.expect.problem;
        const verdict = limitVerdict(step, lim);
        if (problem && problem.type.endsWith('/limit-exceeded')) {
          const { type, status, ...members } = problem;
          assertEqual(canonical(verdict), canonical(members), `${at} the limit refused`);
        } else if (step.expect.status === 200) {
          assertEqual(verdict, null, `${at} an accepted push breaks no limit here`);
          if (replaying) replay(v, step, state, lim, at);
        }
      }
      if (step.pull && step.expect.status === 200) {
        if (!limits.pageWithinLimit(step.expect.body.changes, lim)) {
          throw new Error(`${at}: the page's changes exceed max_page_bytes`);
        }
      }
    });
  });
}

// ----------------------------------------------------- timeclock_state.json, overtime.json
for (const v of load('timeclock_state.json')) {
  check('timeclock_state.json', v.name, () => {
    if (v.punch !== undefined) {
      assertEqual(timeclock.nextState(v.state, v.punch), v.next, 'next state');
      return;
    }
    const shifts = timeclock.deriveShifts(v.punches, v.week_start_ms, v.day_starts_ms);
    assertEqual(canonical(shifts), canonical(v.expect.shifts), 'shifts');
    assertEqual(canonical(timeclock.sequenceErrors(v.punches)), canonical(v.expect.errors), 'errors');
  });
}

for (const v of load('overtime.json')) {
  check('overtime.json', v.name, () => {
    if (v.rounding !== undefined) {
      const { step_min: step, apply } = v.rounding;
      const days = v.entries_ms.map((day) => (apply === 'entry'
        ? day.reduce((sum, e) => sum + timeclock.roundDuration(e, step), 0)
        : timeclock.roundDuration(day.reduce((a, b) => a + b, 0), step)));
      assertEqual(canonical(days), canonical(v.expect.days_ms), 'rounded days');
      return;
    }
    const days = timeclock.overtime(v.days_ms, v.rules);
    assertEqual(canonical(days), canonical(v.expect.days), 'days');
    const total = { 100: 0, 150: 0, 200: 0 };
    for (const d of days) for (const [rate, ms] of Object.entries(d)) total[rate] += ms;
    assertEqual(canonical(Object.fromEntries(Object.entries(total).map(([k, ms]) => [String(k), ms]))), canonical(v.expect.total), 'total');
  });
}

// ------------------------------------------------------------ timeclock_fraud.json (20.7)
const fraud = require('./fraud');
for (const v of load('timeclock_fraud.json')) {
  check('timeclock_fraud.json', v.name, () => {
    if (v.a !== undefined) {
      assertEqual(fraud.distanceM(v.a, v.b), v.expect.distance_m, 'distance_m');
    } else if (v.ip_allow !== undefined) {
      const nets = v.ip_allow.map(fraud.parseNetwork);
      assertEqual(fraud.addressAllowed(v.address, nets), v.expect.allowed, 'allowed');
    } else {
      const got = fraud.judge(v.policy, v.location, v.address, v.offline);
      assertEqual(canonical(got), canonical(v.expect), 'verdict');
    }
  });
}

// ------------------------------------------------------------- drawers.json (19.7)
// The drawer commands (drawers.js) on the drawer before the op, the patch and the derived
// figures applied as 11.4 and 11.7 say; `match` vectors: the server's check of a payment
// movement against its order.
const drawers = require('./drawers');
for (const v of load('drawers.json')) {
  check('drawers.json', v.name, () => {
    if (v.kind === 'match') {
      return assertEqual(drawers.matchMovement(v.movement, v.order, v.deleted), v.expect, 'finding');
    }
    const before = v.record === null ? null : v.record.fields;
    let patch;
    try {
      patch = drawers.drawerCommand(before, v.op.name, v.op.args, v.op);
    } catch (exc) {
      if (!(exc instanceof pay.Rejected)) throw exc;
      assertEqual(v.expect.status, 'rejected', 'outcome');
      assertEqual(exc.reason, v.expect.reason, 'reason');
      return assertEqual(v.expect.record, null, 'record');
    }
    const stamp = [v.op.hlc, v.op.node_id, v.seq];
    const fields = { ...(before || {}), ...patch };
    const stamps = { ...(v.record === null ? {} : v.record.stamps) };
    for (const name of Object.keys(patch)) stamps[name] = stamp;
    const derived = drawers.figures(fields);
    for (const name of Object.keys(derived)) {
      if (!(name in fields) || canonical(fields[name]) !== canonical(derived[name])) {
        fields[name] = derived[name];
        stamps[name] = stamp;
      }
    }
    const record = {
      collection: v.op.collection, record_id: v.op.record_id, fields, stamps,
      deleted: false, deleted_stamp: null, version: v.seq,
    };
    assertEqual(v.expect.status, 'applied', 'outcome');
    assertEqual(canonical(record), canonical(v.expect.record), 'record');
  });
}

// --------------------------------------------------------- session_capture.json (25.6)
const sessions = require('./sessions');
for (const v of load('session_capture.json')) {
  check('session_capture.json', v.name, () => {
    let got;
    try {
      got = { status: 'applied', patch: sessions.captureCommand(v.session, v.args, v.received_ms) };
    } catch (exc) {
      if (!(exc instanceof sessions.Rejected)) throw exc;
      got = { status: 'rejected', reason: exc.reason };
    }
    assertEqual(canonical(got), canonical(v.expect), 'outcome');
  });
}

// ---------------------------------------------------------- session_refund.json (25.7)
for (const v of load('session_refund.json')) {
  check('session_refund.json', v.name, () => {
    let got;
    try {
      got = {
        status: 'applied',
        patch: sessions.refundCommand(
          v.session, v.args, v.node_id, null, v.received_ms, v.hlc, v.rules,
        ),
      };
    } catch (exc) {
      if (!(exc instanceof sessions.Rejected)) throw exc;
      got = { status: 'rejected', reason: exc.reason };
      if (exc.refundable !== undefined) got.refundable = exc.refundable;
    }
    assertEqual(canonical(got), canonical(v.expect), 'outcome');
  });
}

// ------------------------------------------------------------ ledger.json (section 19.8)
// Replay the vector's payment ops with the ported commands (payments.js), check the
// attempts they leave, then the posting sets the ledger (ledger.js) derives from them:
// the same sets, each balanced (sums to 0 in its one currency), no entry of 0.
const ledger = require('./ledger');
for (const v of load('ledger.json')) {
  check('ledger.json', v.name, () => {
    if (v.existing !== undefined) {
      // The `post` command: written once, balanced, well formed.
      let got;
      try {
        got = { status: 'applied', reason: null, fields: ledger.post(v.existing, v.op.args, v.op.node_id) };
      } catch (exc) {
        if (!(exc instanceof ledger.Rejected)) throw exc;
        got = { status: 'rejected', reason: exc.reason, fields: null };
      }
      return assertEqual(canonical(got), canonical(v.expect), 'outcome');
    }
    let fields = { ...v.order };
    const settings = pay.settingsFrom(v.settings);
    for (const op of v.ops) {
      const patch = pay.paymentCommand(fields, op.name.replace(/^payment_/, ''), op.args, op, settings);
      fields = { ...fields, ...patch };
      Object.assign(fields, pay.deriveMoney({ ...fields, total: orderTotal(fields) }));
    }
    assertEqual(canonical(fields.payments), canonical(v.payments), 'attempts after the ops');
    const sets = ledger.postingSets(v.ops[0].record_id, fields);
    const { unbalanced, byCurrency } = ledger.balance(sets);
    assertEqual(unbalanced.length, 0, `unbalanced sets ${unbalanced.join(', ')}`);
    for (const [currency, total] of Object.entries(byCurrency)) assertEqual(total, 0, `${currency} total`);
    for (const s of sets) {
      if (s.postings.some((p) => p.amount === 0)) throw new Error(`${s.set_id}: an entry of 0`);
    }
    const { unbalanced: theirs } = ledger.balance(v.expect);
    assertEqual(theirs.length, 0, `the vector's unbalanced sets ${theirs.join(', ')}`);
    assertEqual(canonical(sets), canonical(v.expect), 'posting sets');
  });
}

// ------------------------------------------------------- actors.json (sections 20.1, 20.2)
// The first vector is the roles table as data (checked as 20.2 describes it); every other
// vector is decided by the actor check from that table alone; a `rule:` vector (with an
// `order`) then runs its payment command with the actor's permissions (payments.js).
const actors = require('./actors');
{
  const vectors = load('actors.json');
  let checker = null;
  check('actors.json', vectors[0].name, () => { checker = actors.loadTable(vectors[0]); });
  for (const v of vectors.slice(1)) {
    check('actors.json', v.name, () => {
      if (checker === null) throw new Error('no roles table');
      let got = actors.authorize(checker, v.op, v.actor);
      if (v.order !== undefined && got.status === 'allowed') {
        // A rule inside a payment command (19.4) needs a permission only in some cases:
        // the command sees what the actor holds (nothing without an actor; not checked
        // for the server's own op).
        const held = v.op.node_id === 'server' ? null
          : v.actor === null ? new Set() : actors.grantsOf(checker, v.actor.fields.role);
        try {
          const patch = pay.paymentCommand(v.order, v.op.name.replace(/^payment_/, ''), v.op.args,
            v.op, pay.settingsFrom(null), null, held);
          got = { status: 'applied', payments: patch.payments };
        } catch (exc) {
          if (!(exc instanceof pay.Rejected)) throw exc;
          got = { status: 'rejected', reason: exc.reason, permission: exc.permission };
        }
      }
      assertEqual(canonical(got), canonical(v.expect), 'outcome');
    });
  }
}

// ------------------------------------------------------------------------------ report
let total = 0;
for (const [file, c] of Object.entries(counts)) {
  console.log(`${file}: ${c.passed} passed, ${c.failed} failed`);
  total += c.failed;
}
for (const f of failures) console.log(`FAIL ${f}`);
console.log(total === 0 ? 'all vectors pass' : `${total} vector(s) failed`);
process.exit(total === 0 ? 0 : 1);
