'use strict';
const { fromWire, millisOf } = require('./hlc');
// The `capture` command of a payment session (docs/protocol.md section 25.6), written from
// the spec: a terminal's command on a held card payment (manual capture). It captures the
// session's amount plus the tip, at most what the provider holds, and is asked once.

class Rejected extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

const isInt = (v) => typeof v === 'number' && Number.isInteger(v);

// session: the record's fields (null when there is none); args: the command's arguments;
// receivedMs: the server's receive time (null on a terminal). Returns the patch.
function captureCommand(session, args, receivedMs) {
  if (session === null || session === undefined) throw new Rejected('record-not-found');
  if (session.capture !== 'manual') throw new Rejected('not-manual-capture');
  if (session.capture_amount !== undefined && session.capture_amount !== null) {
    throw new Rejected('capture-requested');
  }
  if (session.status !== 'authorized') throw new Rejected('not-authorised');
  const tip = args.tip === undefined ? 0 : args.tip;
  if (!isInt(tip) || tip < 0) throw new Rejected('invalid-tip');
  const total = (session.amount || 0) + tip;
  const capturable = session.capturable || 0;
  if (total > capturable) throw new Rejected('capture-above-authorised');
  return { capture_tip: tip, capture_amount: total, capture_requested_ms: receivedMs };
}

// 25.7: the `refund` command of a payment session: a terminal asks the provider to give
// back part of a card or Apple Pay payment that was taken, at most what was taken (the
// capture asked for, else what the provider received) minus every refund asked that was
// not refused. A bank payment is refunded by hand (`manual-refund`).
class RefundRejected extends Rejected {
  constructor(reason, refundable) {
    super(reason);
    this.refundable = refundable;
  }
}

const API_REFUND_METHODS = ['card', 'apple_pay'];

function refundable(session) {
  let taken = session.received || 0;
  if (session.capture_amount !== undefined && session.capture_amount !== null) {
    taken = Math.min(taken, session.capture_amount);
  }
  const results = session.refund_results || {};
  let asked = 0;
  for (const [id, req] of Object.entries(session.refunds || {})) {
    if ((results[id] || {}).status !== 'refused') asked += req.amount;
  }
  return taken - asked;
}

// 19.4: the server finds an op made offline when it received it more than the offline
// window after the time of its HLC; a terminal (no receive time), the server's own ops
// and a registry without the payments plugin (no window) find nothing.
function madeOffline(nodeId, hlc, receivedMs, offlineAfterMs) {
  if (!isInt(offlineAfterMs) || receivedMs === null || receivedMs === undefined) return false;
  if (nodeId === 'server') return false;
  return receivedMs - Number(millisOf(fromWire(hlc))) > offlineAfterMs;
}

// rules: the payments plugin's `refund_limit` and `offline_after_ms` now (null without it).
function refundCommand(session, args, nodeId, actorId, receivedMs, hlc, rules) {
  const now = rules || { refund_limit: null, offline_after_ms: null };
  if (session === null || session === undefined) throw new Rejected('record-not-found');
  const method = session.method || '';
  if (method === 'open_banking') throw new Rejected('manual-refund');
  if (!API_REFUND_METHODS.includes(method)) throw new Rejected('invalid-method');
  if (session.status !== 'succeeded') throw new Rejected('not-captured');
  const id = args.refund_id;
  if (typeof id !== 'string' || id.length < 1 || id.length > 64) {
    throw new Rejected('invalid-argument');
  }
  const refunds = { ...(session.refunds || {}) };
  if (refunds[id] !== undefined) throw new Rejected('duplicate-refund');
  const amount = args.amount;
  if (!isInt(amount) || amount < 1) throw new Rejected('invalid-amount');
  const left = refundable(session);
  if (amount > left) throw new RefundRejected('refund-above-captured', left);
  const approvedBy = args.approved_by === undefined ? null : args.approved_by;
  if (approvedBy !== null && typeof approvedBy !== 'string') throw new Rejected('invalid-argument');
  // 19.5: above the payments plugin's refund limit (kept on the session; a session made
  // before it was kept takes the current limit) a manager approves; with no actor checks,
  // the `approved_by` argument is the approval.
  const limit = isInt(session.refund_limit) ? session.refund_limit : now.refund_limit;
  if (isInt(limit) && amount > limit && approvedBy === null) {
    throw new Rejected('manager-required');
  }
  // 19.4: a refund made offline needs a manager too.
  if (madeOffline(nodeId, hlc, receivedMs, now.offline_after_ms) && approvedBy === null) {
    throw new Rejected('manager-required');
  }
  refunds[id] = {
    amount, by: nodeId, actor: actorId, approved_by: approvedBy, requested_ms: receivedMs,
  };
  return { refunds };
}

module.exports = { Rejected, captureCommand, refundCommand };
