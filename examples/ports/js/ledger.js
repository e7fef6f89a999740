'use strict';
// The ledger's posting sets (protocol section 19.8): a pure function of an order's
// attempts. Every set is one currency and sums to 0; entries of 0 are left out.

const crypto = require('node:crypto');

const SETTLED = ['captured', 'refunded_partial', 'refunded'];

// The stable set id: `<order>:<attempt>:<event>[:<more>]`, or `ps:` and the MD5 hex of
// that text when it is longer than 128 characters (UTF-16 length = characters here, as
// ids are ASCII identifiers).
function setId(orderId, attemptId, event, ...more) {
  const text = [orderId, attemptId, event, ...more].join(':');
  if ([...text].length <= 128) return text;
  return 'ps:' + crypto.createHash('md5').update(Buffer.from(text, 'utf8')).digest('hex');
}

const legs = (...entries) => entries
  .filter(([, , amount]) => amount !== 0)
  .map(([account, kind, amount]) => ({ account, kind, amount }));

// Code-point order (not UTF-16 code units: they differ above U+FFFF).
function byCodePoint(x, y) {
  const a = [...x].map((c) => c.codePointAt(0));
  const b = [...y].map((c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(a.length, b.length); i += 1) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
const sortedKeys = (obj) => Object.keys(obj || {}).sort(byCodePoint);

function postingSets(orderId, order) {
  const out = [];
  const attempts = order.payments || {};
  for (const attemptId of sortedKeys(attempts)) {
    const a = attempts[attemptId];
    const reversed = a.reversed ?? null;
    if (!SETTLED.includes(a.state) && reversed === null) continue;
    const { method, fees, currency } = a;
    const funds = `restaurant:${method}`;
    const base = (event, day, postings, ...more) => ({
      set_id: setId(orderId, attemptId, event, ...more),
      event, order_id: orderId, attempt_id: attemptId, method, currency, day, postings,
    });
    const net = a.captured - a.change - fees.processing - fees.platform - a.tip;
    const capture = base('capture', fees.day, legs(
      ['customer', 'gross', -a.captured],
      ['customer', 'change', a.change],
      ['processor', 'processor_fee', fees.processing],
      ['platform', 'platform_fee', fees.platform],
      [`tips:${a.employee || 'pool'}`, 'tip', a.tip],
      [funds, 'net', net],
    ));
    out.push(capture);
    const moved = [...capture.postings];
    let fee = fees.processing;
    const corrections = Object.entries(a.fee_corrections || {}).sort((x, y) => x[1].n - y[1].n);
    for (const [correctionId, c] of corrections) {
      const delta = c.processing - fee;
      fee = c.processing;
      const fix = base('correction', c.day,
        legs(['processor', 'processor_fee', delta], [funds, 'net', -delta]), correctionId);
      out.push(fix);
      moved.push(...fix.postings);
    }
    if (reversed !== null) {
      // The capture and its corrections undone in one set: summed by (account, kind) in
      // the order each pair first appears.
      const undo = new Map();
      for (const p of moved) {
        const key = JSON.stringify([p.account, p.kind]);
        undo.set(key, (undo.get(key) || 0) - p.amount);
      }
      out.push(base('reversal', reversed.day,
        legs(...[...undo].map(([key, n]) => [...JSON.parse(key), n]))));
    }
    const refunds = a.refunds || {};
    for (const refundId of sortedKeys(refunds)) {
      const r = refunds[refundId];
      out.push(base('refund', r.day || fees.day,
        legs(['customer', 'refund', r.amount], [funds, 'refund', -r.amount]), refundId));
    }
  }
  return out;
}

// The ids of the sets that do not sum to 0, and the per-currency totals over all sets
// (each 0 when every set balances).
function balance(sets) {
  const unbalanced = [];
  const byCurrency = {};
  for (const s of sets) {
    const total = s.postings.reduce((sum, p) => sum + p.amount, 0);
    if (total !== 0) unbalanced.push(s.set_id);
    byCurrency[s.currency] = (byCurrency[s.currency] || 0) + total;
  }
  return { unbalanced, byCurrency };
}

class Rejected extends Error {
  constructor(reason) {
    super(reason);
    this.reason = reason;
  }
}

const FIELDS = ['event', 'order_id', 'attempt_id', 'method', 'currency', 'day', 'postings'];

// The `post` command of the `ledger` collection (19.8), on the record's fields as this
// replica has them (null: no record), by the op's node: the set's fields, or a Rejected.
// In this order: an author other than `server` (`server-only`), an existing set
// (`posting-exists`), a malformed one (`invalid-argument`), then the sum.
const TEXT_FIELDS = FIELDS.filter((k) => k !== 'postings');

function post(existing, args, nodeId) {
  if (nodeId !== 'server') throw new Rejected('server-only');
  if (existing !== null) throw new Rejected('posting-exists');
  if (args === null || typeof args !== 'object' || FIELDS.some((k) => !(k in args))) {
    throw new Rejected('invalid-argument');
  }
  if (TEXT_FIELDS.some((k) => typeof args[k] !== 'string')) throw new Rejected('invalid-argument');
  const list = args.postings;
  if (!Array.isArray(list) || list.length === 0) throw new Rejected('invalid-argument');
  const postings = list.map((p) => {
    if (p === null || typeof p !== 'object' || !('account' in p && 'kind' in p && 'amount' in p)) {
      throw new Rejected('invalid-argument');
    }
    if (typeof p.account !== 'string' || typeof p.kind !== 'string' || !Number.isInteger(p.amount)) {
      throw new Rejected('invalid-argument');
    }
    return { account: p.account, kind: p.kind, amount: p.amount };
  });
  if (postings.reduce((sum, p) => sum + p.amount, 0) !== 0) throw new Rejected('unbalanced');
  const fields = Object.fromEntries(FIELDS.map((k) => [k, args[k]]));
  fields.postings = postings;
  return fields;
}

module.exports = { Rejected, balance, post, postingSets, setId };
