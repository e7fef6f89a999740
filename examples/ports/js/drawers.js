'use strict';
// Cash drawers (docs/protocol.md section 19.7), written from the spec: the drawer_*
// commands, the derived figures, and the server's check of a payment movement against
// its order (which finding, if any, `drawer_flag` records).

const { Rejected } = require('./payments');

const KINDS = { sale: 1, in: 1, refund: -1, out: -1 };
const PAYMENT_KINDS = ['sale', 'refund'];
const FINDING_REASONS = ['order-deleted', 'order-missing', 'payment-refused', 'refund-refused',
  'payment-mismatch'];
const SETTLED = ['captured', 'refunded_partial', 'refunded'];
const TRANSITIONS = {
  'null drawer_open': 'open',
  'open drawer_move': 'open',
  'open drawer_close': 'closed',
  'open drawer_flag': 'open',
  'closed drawer_flag': 'closed',
  'open drawer_resolve': 'open',
  'closed drawer_resolve': 'closed',
};

const sorted = (o) => Object.keys(o || {}).sort();

function figures(fields) {
  const moves = fields.movements || {};
  const by = { in: 0, out: 0, refund: 0, sale: 0 };
  for (const k of sorted(moves)) by[moves[k].kind] += moves[k].amount;
  const findings = fields.findings || {};
  let unmatched = 0;
  for (const k of sorted(findings)) {
    const m = moves[k];
    if (m !== undefined && findings[k].outcome !== 'recorded') unmatched += KINDS[m.kind] * m.amount;
  }
  const cashIn = by.sale + by.in;
  const cashOut = by.refund + by.out;
  const expected = (fields.float || 0) + cashIn - cashOut;
  const counted = fields.counted;
  return {
    cash_in: cashIn,
    cash_out: cashOut,
    expected,
    unmatched,
    unresolved: sorted(findings).filter((k) => findings[k].resolved_by === null
      || findings[k].resolved_by === undefined).length,
    difference: counted === null || counted === undefined ? null : counted - expected,
  };
}

function amount(args, name, low) {
  const v = args[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < low) throw new Rejected('invalid-argument');
  return v;
}

function text(args, name, required) {
  const v = args[name];
  if ((v === undefined || v === null) && !required) return null;
  if (typeof v !== 'string' || v.trim() === '' || [...v].length > 200) throw new Rejected('invalid-argument');
  return v;
}

// Run `command` on the drawer's fields (null: no drawer): the patch, or a Rejected.
function drawerCommand(fields, command, args, op) {
  const state = fields === null ? null : fields.status;
  const status = TRANSITIONS[`${state} ${command}`];
  if (status === undefined) throw new Rejected('illegal-transition');
  if (command === 'drawer_open') {
    const c = args.currency;
    if (typeof c !== 'string' || c.length !== 3 || c !== c.toUpperCase() || c === c.toLowerCase()) {
      throw new Rejected('invalid-argument');
    }
    return {
      status, terminal: op.node_id, currency: c, float: amount(args, 'float', 0), movements: {},
      counted: null, opened_by: text(args, 'employee', false),
    };
  }
  if (command === 'drawer_close') return { status, counted: amount(args, 'counted', 0) };
  if (command === 'drawer_move') {
    const id = text(args, 'movement_id', true);
    const kind = args.kind;
    if (!Object.prototype.hasOwnProperty.call(KINDS, kind)) throw new Rejected('invalid-argument');
    const n = amount(args, 'amount', 1);
    const reason = text(args, 'reason', kind === 'in' || kind === 'out');
    let payment = null;
    if (PAYMENT_KINDS.includes(kind)) {
      payment = {
        order_id: text(args, 'order_id', true),
        attempt_id: text(args, 'attempt_id', true),
        refund_id: text(args, 'refund_id', kind === 'refund'),
      };
    }
    const moves = { ...(fields.movements || {}) };
    if (moves[id] !== undefined) throw new Rejected('duplicate-movement');
    if (KINDS[kind] < 0 && n > figures(fields).expected) throw new Rejected('insufficient-cash');
    moves[id] = {
      kind, amount: n, reason, ref: text(args, 'ref', false), by: op.node_id, payment, op_id: op.op_id,
    };
    return { status, movements: moves };
  }
  if (command === 'drawer_flag') {
    if (op.node_id !== 'server') throw new Rejected('server-only');
    const id = text(args, 'movement_id', true);
    const move = (fields.movements || {})[id];
    if (move === undefined) throw new Rejected('no-such-movement');
    if (!FINDING_REASONS.includes(args.reason)) throw new Rejected('invalid-argument');
    const findings = { ...(fields.findings || {}) };
    if (findings[id] !== undefined) throw new Rejected('flagged');
    const p = move.payment || {};
    findings[id] = {
      reason: args.reason, kind: move.kind, amount: move.amount,
      order_id: p.order_id === undefined ? null : p.order_id,
      attempt_id: p.attempt_id === undefined ? null : p.attempt_id,
      resolved_by: null, outcome: null, note: null,
    };
    return { status, findings };
  }
  // drawer_resolve (actors not checked here: the approval is `approved_by`).
  const id = text(args, 'movement_id', true);
  const findings = { ...(fields.findings || {}) };
  const found = findings[id];
  if (found === undefined) throw new Rejected('not-flagged');
  if (found.resolved_by !== null && found.resolved_by !== undefined) throw new Rejected('resolved');
  if (!['recorded', 'returned'].includes(args.outcome)) throw new Rejected('invalid-argument');
  const note = text(args, 'note', true);
  const approver = text(args, 'approved_by', false);
  if (approver === null) throw new Rejected('manager-required');
  findings[id] = { ...found, resolved_by: approver, outcome: args.outcome, note };
  return { status, findings };
}

// The server's check (19.7): null when the order records the movement's cash, else the
// finding's reason. `order`: the order's fields (null: no live order); `deleted`: a tombstone.
function matchMovement(movement, order, deleted) {
  const p = movement.payment;
  if (!p) return null;
  if (deleted) return 'order-deleted';
  if (order === null) return 'order-missing';
  const a = (order.payments || {})[p.attempt_id];
  if (a === undefined) return 'payment-refused';
  if (a.method !== 'cash' || !SETTLED.includes(a.state)) return 'payment-mismatch';
  if (movement.kind === 'sale') return a.captured - a.change === movement.amount ? null : 'payment-mismatch';
  const r = (a.refunds || {})[p.refund_id];
  if (r === undefined) return 'refund-refused';
  return r.amount === movement.amount ? null : 'payment-mismatch';
}

module.exports = { drawerCommand, figures, matchMovement };
