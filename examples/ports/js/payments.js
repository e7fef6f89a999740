'use strict';
// The payments domain (docs/protocol.md section 19), written from the spec: money rules
// (named rounding, splits, gross-up, tips, fee rows, surcharge rules, service charge,
// routing) and the payment_* commands of `orders` with the derived money fields.
// Money is exact: every product and quotient goes through BigInt.

const { fromWire, millisOf } = require('./hlc');

class Rejected extends Error {
  constructor(reason, permission = null) {
    super(permission === null ? reason : `${reason}: ${permission}`);
    this.reason = reason;
    this.permission = permission; // the permission a `forbidden` names (20.1)
  }
}

const MODES = ['half-up', 'half-even', 'floor', 'ceil'];

// Section 19.5: n / d rounded to an integer by `mode`.
function divide(n, d, mode) {
  if (!MODES.includes(mode)) throw new Rejected('unknown-rounding');
  let num = BigInt(n);
  let den = BigInt(d);
  if (den === 0n) throw new Rejected('invalid-argument');
  if (den < 0n) { num = -num; den = -den; }
  let q = num / den; // truncates toward zero
  let r = num % den;
  if (r < 0n) { q -= 1n; r += den; } // floor division: 0 <= r < den
  if (r === 0n || mode === 'floor') return Number(q);
  if (mode === 'ceil') return Number(q + 1n);
  if (2n * r > den) return Number(q + 1n);
  if (2n * r < den) return Number(q);
  if (mode === 'half-up') return Number(q >= 0n ? q + 1n : q);
  return Number(q % 2n === 0n ? q : q + 1n);
}

const percentOf = (amount, bp, mode) => divide(BigInt(amount) * BigInt(bp), 10000, mode);

function splitEqual(total, parts) {
  if (parts <= 0 || total < 0) throw new Rejected('invalid-argument');
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, k) => (k < extra ? base + 1 : base));
}

function splitRatio(total, weights) {
  if (weights.length === 0 || weights.some((w) => !Number.isInteger(w) || w < 0) ||
      weights.reduce((a, b) => a + b, 0) === 0 || total < 0) {
    throw new Rejected('invalid-argument');
  }
  const whole = BigInt(weights.reduce((a, b) => a + b, 0));
  const shares = weights.map((w) => Number((BigInt(total) * BigInt(w)) / whole));
  const rems = weights.map((w) => (BigInt(total) * BigInt(w)) % whole);
  let left = total - shares.reduce((a, b) => a + b, 0);
  const order = weights.map((_, k) => k).sort((a, b) => (rems[b] > rems[a] ? 1 : rems[b] < rems[a] ? -1 : a - b));
  for (const k of order) {
    if (left === 0) break;
    shares[k] += 1;
    left -= 1;
  }
  return shares;
}

const grossUp = (net, bp, fixed) => divide((BigInt(net) + BigInt(fixed)) * 10000n, 10000 - bp, 'ceil');

function tipAmount(settings, amount, orderTotal, choice) {
  const keys = Object.keys(choice);
  if (keys.length > 1) throw new Rejected('invalid-tip');
  if (keys.length === 0) return 0;
  if (!settings.enabled) throw new Rejected('tips-disabled');
  if (choice.custom !== undefined) {
    if (choice.custom < 0) throw new Rejected('invalid-tip');
    return choice.custom;
  }
  let rate;
  if (choice.preset !== undefined) {
    if (choice.preset < 0 || choice.preset >= settings.presets_bp.length) throw new Rejected('invalid-tip');
    rate = settings.presets_bp[choice.preset];
  } else {
    if (choice.custom_bp < 0) throw new Rejected('invalid-tip');
    rate = choice.custom_bp;
  }
  return percentOf(settings.base === 'amount' ? amount : orderTotal, rate, settings.rounding);
}

// The row of `kind` for a method, country and currency on `day`: the latest effective_from
// not after it (days compare as text).
function rateFor(rates, kind, method, country, currency, day) {
  let found = null;
  for (const r of rates) {
    if (r.kind === kind && r.method === method && r.country === country &&
        r.currency === currency && r.effective_from <= day &&
        (found === null || r.effective_from > found.effective_from)) {
      found = r;
    }
  }
  return found;
}

const feeOf = (rate, amount) => percentOf(amount, rate.rate_bp, rate.rounding) + rate.fixed;

function quote(rates, method, country, currency, day, amount) {
  if (amount < 0) throw new Rejected('invalid-argument');
  const processing = rateFor(rates, 'processing', method, country, currency, day);
  if (processing === null) throw new Rejected('no-fee-schedule');
  const platform = rateFor(rates, 'platform', method, country, currency, day);
  return {
    processing: feeOf(processing, amount),
    platform: platform === null ? 0 : feeOf(platform, amount),
    platformRate: platform,
  };
}

function checkSurcharge(v) {
  let rule = null;
  for (const r of [...v.rules].sort((a, b) => (a.effective_from < b.effective_from ? -1 : 1))) {
    if (r.country === v.country && r.effective_from <= v.day) rule = r;
  }
  if (v.method === 'cash') return 0;
  if (rule === null) throw new Rejected('surcharge-not-allowed');
  if (rule.banned_methods.includes(v.method) && v.consumer) throw new Rejected('surcharge-banned');
  if (rule.banned_methods.length > 0 && !v.consumer) {
    if (v.surcharge_bp > v.processing_bp) throw new Rejected('surcharge-above-cap');
    return v.surcharge_bp;
  }
  if (!rule.allowed_funding.includes(v.funding)) throw new Rejected('surcharge-not-allowed');
  if (v.surcharge_bp > rule.cap_bp || v.surcharge_bp > v.processing_bp) {
    throw new Rejected('surcharge-above-cap');
  }
  return v.surcharge_bp;
}

const TIE_ORDER = ['cash', 'open_banking', 'card', 'apple_pay'];

function rank(rates, amount, country, currency, day, methods) {
  const out = [];
  for (const method of [...new Set(methods)].sort((a, b) => TIE_ORDER.indexOf(a) - TIE_ORDER.indexOf(b))) {
    try {
      const q = quote(rates, method, country, currency, day, amount);
      out.push({ method, processing: q.processing, platform: q.platform, cost: q.processing + q.platform });
    } catch (exc) {
      if (!(exc instanceof Rejected) || exc.reason !== 'no-fee-schedule') throw exc;
    }
  }
  return out.sort((a, b) => a.cost - b.cost || TIE_ORDER.indexOf(a.method) - TIE_ORDER.indexOf(b.method));
}

// ------------------------------------------------------------- attempts (19.2 - 19.4)

// Section 19.5's seed rows (all half-up) and 19.4's default settings.
const row = (kind, method, country, currency, bp, fixed, since) => ({
  kind, method, country, currency, rate_bp: bp, fixed, effective_from: since, rounding: 'half-up',
});
const SEED_RATES = [
  row('processing', 'cash', 'GB', 'GBP', 0, 0, '2000-01-01'),
  row('processing', 'card', 'GB', 'GBP', 150, 20, '2023-04-10'),
  row('processing', 'apple_pay', 'GB', 'GBP', 150, 20, '2023-04-10'),
  row('processing', 'open_banking', 'GB', 'GBP', 20, 0, '2020-01-01'),
  row('processing', 'cash', 'US', 'USD', 0, 0, '2000-01-01'),
  row('processing', 'card', 'US', 'USD', 290, 30, '2000-01-01'),
  row('processing', 'apple_pay', 'US', 'USD', 290, 30, '2000-01-01'),
  ...[['GB', 'GBP'], ['US', 'USD']].flatMap(([c, cur]) =>
    ['cash', 'card', 'open_banking', 'apple_pay'].map((m) => row('platform', m, c, cur, 100, 0, '2000-01-01'))),
];
// Section 19.5's surcharge rules.
const SURCHARGE_RULES = [
  { country: 'GB', effective_from: '2018-01-13', banned_methods: ['card', 'open_banking', 'apple_pay'], allowed_funding: [], cap_bp: 0 },
  { country: 'US', effective_from: '2013-01-27', banned_methods: [], allowed_funding: ['credit'], cap_bp: 300 },
];
const DEFAULTS = {
  country: 'GB', rates: SEED_RATES, tipsEnabled: true, tipRounding: 'half-up',
  feeBearer: 'restaurant', surchargeBp: 0, consumer: true, surchargeRules: SURCHARGE_RULES,
  refundLimit: 5000, offlineLimit: 10000, offlineAfterMs: 120000, cardResults: 'terminal',
};
// A vector's `settings` member (19.9): each setting it names over its default.
const SETTING_NAMES = {
  country: 'country', fee_bearer: 'feeBearer', surcharge_bp: 'surchargeBp', consumer: 'consumer',
  card_results: 'cardResults',
};
const settingsFrom = (member) => {
  if (member === undefined || member === null) return DEFAULTS;
  const out = { ...DEFAULTS };
  for (const [name, value] of Object.entries(member)) {
    if (!(name in SETTING_NAMES)) throw new Error(`unknown setting ${name}`);
    out[SETTING_NAMES[name]] = value;
  }
  return out;
};
// 19.4: what a provider did for a card, open banking or Apple Pay attempt; with
// card_results `server` only node `server` reports it.
const PROVIDER_STATE = ['submit', 'require_action', 'authorise', 'capture', 'expire', 'reverse',
  'fee_correction'];
const reported = (settings, command, attempt, op) => {
  if (settings.cardResults === 'server' && PROVIDER_STATE.includes(command)
      && attempt.method !== 'cash' && op.node_id !== 'server') {
    throw new Rejected('server-only');
  }
};

// 19.4, 25.7: a card or Apple Pay refund is made by the provider (the payment session's
// `refund`); with card_results `server` only node `server` records it. A bank payment's
// refund (a transfer) and cash stay the terminal's.
const PROVIDER_REFUND = ['card', 'apple_pay'];
const refundReported = (settings, attempt, op) => {
  if (settings.cardResults === 'server' && PROVIDER_REFUND.includes(attempt.method)
      && op.node_id !== 'server') {
    throw new Rejected('server-only');
  }
};

const STATES = ['created', 'pending', 'requires_action', 'authorised', 'captured', 'failed',
  'cancelled', 'expired', 'refunded_partial', 'refunded'];
const LIVE = ['created', 'pending', 'requires_action', 'authorised'];
const SETTLED = ['captured', 'refunded_partial', 'refunded'];
const TABLE = new Map([
  ['null start', 'created'], ['null cash', 'captured'],
  ['created submit', 'pending'], ['requires_action submit', 'pending'],
  ['pending require_action', 'requires_action'],
  ['pending authorise', 'authorised'], ['requires_action authorise', 'authorised'],
  ['pending capture', 'captured'], ['authorised capture', 'captured'],
  ...LIVE.flatMap((s) => [[`${s} fail`, 'failed'], [`${s} cancel`, 'cancelled'], [`${s} expire`, 'expired']]),
  ['captured refund', 'refunded_partial'], ['refunded_partial refund', 'refunded_partial'],
  ['captured reverse', 'failed'],
]);
const nextAttemptState = (state, command) => TABLE.get(`${state} ${command}`) ?? null;

const net = (a) => (SETTLED.includes(a.state) ? a.captured - a.change - a.refunded : 0);
const sortedKeys = (obj) => Object.keys(obj).sort();

// The derived money fields (19.2).
function deriveMoney(fields) {
  const attempts = fields.payments || {};
  const dues = fields.refunds_due || {};
  const settled = sortedKeys(attempts).map((k) => attempts[k]).filter((a) => SETTLED.includes(a.state));
  const paid = settled.reduce((s, a) => s + net(a) - a.tip - a.surcharge, 0);
  return {
    paid,
    tips: settled.reduce((s, a) => s + a.tip, 0),
    collected: settled.reduce((s, a) => s + net(a), 0),
    balance_due: Math.max(0, (fields.total || 0) - paid),
    refund_due: sortedKeys(dues).reduce((s, k) => s + dues[k].amount, 0),
  };
}

function int(args, name, low, dflt) {
  const v = args[name];
  if ((v === undefined || v === null) && dflt !== undefined) return dflt;
  if (!Number.isInteger(v) || v < low) throw new Rejected('invalid-argument');
  return v;
}
function str(args, name, required) {
  const v = args[name];
  if ((v === undefined || v === null) && !required) return null;
  if (typeof v !== 'string' || v.length === 0 || v.length > 128) throw new Rejected('invalid-argument');
  return v;
}
function bool(args, name) {
  const v = args[name];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new Rejected('invalid-argument');
  return v;
}
const dayOf = (hlc) => new Date(Number(millisOf(fromWire(hlc)))).toISOString().slice(0, 10);
// A manager's approval (19.4), and who gave it. `held`: the permissions of the op's actor
// when actors are checked (20.1; an empty set for an op without an actor), or null when
// they are not: then the free-text `approved_by` argument is the approval.
function approval(args, op, held, permission) {
  if (held !== null) {
    if (!held.has(permission)) throw new Rejected('forbidden', permission);
    return op.actor;
  }
  const approver = str(args, 'approved_by', false);
  if (approver === null) throw new Rejected('manager-required');
  return approver;
}

// Section 19.4: made offline, for the risk limits: the terminal's claim, or (on the server,
// which knows its receive time) received more than offlineAfterMs after the op's HLC time.
function madeOffline(args, op, receivedMs, settings) {
  if (bool(args, 'offline')) return true;
  if (receivedMs === undefined || receivedMs === null || op.node_id === 'server') return false;
  return receivedMs - Number(millisOf(fromWire(op.hlc))) > settings.offlineAfterMs;
}

// Run `payment_<command>` on the order's fields: the patch, or a Rejected. `receivedMs`:
// the server's receive time (absent on a terminal).
// `held`: the actor's permissions when actors are checked (see approval), else null.
function paymentCommand(order, command, args, op, settings = DEFAULTS, receivedMs = null, held = null) {
  const manager = (permission) => approval(args, op, held, permission);
  if (order === null) throw new Rejected('record-not-found');
  const status = order.status;
  const late = command === 'refund' || command === 'fee_correction'; // allowed on a closed order
  if (status === 'voided' || (status === 'closed' && !late)) throw new Rejected('order-not-payable');
  const attemptId = str(args, 'attempt_id', true);
  const attempts = { ...(order.payments || {}) };
  const found = attempts[attemptId];
  const day = dayOf(op.hlc);
  if (command === 'fee_correction') {
    // 19.4: not in the state table; the ledger posts the difference (19.8).
    const correctionId = str(args, 'correction_id', true);
    if (found === undefined || !SETTLED.includes(found.state)) throw new Rejected('not-captured');
    reported(settings, command, found, op);
    const actual = int(args, 'processing_fee', 0);
    const corrections = { ...(found.fee_corrections || {}) };
    if (corrections[correctionId] !== undefined) throw new Rejected('duplicate-correction');
    const list = Object.values(corrections).sort((x, y) => x.n - y.n);
    const now = list.length ? list[list.length - 1].processing : found.fees.processing;
    if (actual === now) throw new Rejected('fee-unchanged');
    corrections[correctionId] = { processing: actual, n: list.length + 1, day };
    return { payments: { ...attempts, [attemptId]: { ...found, fee_corrections: corrections } } };
  }
  const target = nextAttemptState(found === undefined ? null : found.state, command);
  if (target === null) throw new Rejected('illegal-transition');
  const a = found === undefined ? {} : JSON.parse(JSON.stringify(found));
  if (command !== 'reverse') reported(settings, command, a, op); // reverse: cash first
  const put = (attempt) => ({ payments: { ...attempts, [attemptId]: attempt } });

  const fresh = (method, amount, tip) => {
    if (args.currency !== undefined && args.currency !== null && args.currency !== order.currency) {
      throw new Rejected('currency-mismatch');
    }
    if (tip && !settings.tipsEnabled) throw new Rejected('tips-disabled');
    return {
      method, amount, tip, surcharge: 0, currency: order.currency, state: 'created', captured: 0,
      change: 0, tendered: null, refunded: 0, refunds: {}, fees: null, overpaid: 0,
      offline: madeOffline(args, op, receivedMs, settings), approved_by: str(args, 'approved_by', false),
      employee: str(args, 'employee', false), provider_ref: null, failure_reason: null,
      created_by: op.node_id,
    };
  };
  const settle = (attempt, captured) => {
    attempt.state = 'captured';
    attempt.captured = captured;
    const nonTip = captured - attempt.change - attempt.tip;
    const q = quote(settings.rates, attempt.method, settings.country, attempt.currency, day, nonTip);
    const actual = args.processing_fee;
    if (actual !== undefined && actual !== null && (!Number.isInteger(actual) || actual < 0)) {
      throw new Rejected('invalid-argument');
    }
    attempt.fees = {
      processing: actual === undefined || actual === null ? q.processing : actual,
      platform: q.platform,
      platform_bp: q.platformRate === null ? 0 : q.platformRate.rate_bp,
      rounding: q.platformRate === null ? 'half-up' : q.platformRate.rounding,
      day,
    };
    const balance = order.balance_due !== undefined && order.balance_due !== null
      ? order.balance_due : (order.total || 0) - (order.paid || 0);
    const overpaid = Math.max(0, nonTip - attempt.surcharge - Math.max(0, balance));
    attempt.overpaid = overpaid;
    const patch = put(attempt);
    const dues = { ...(order.refunds_due || {}) };
    if (overpaid) dues[attemptId] = { amount: overpaid, reason: 'overpayment', method: attempt.method };
    patch.refunds_due = dues;
    return patch;
  };

  if (command === 'start') {
    const method = args.method;
    if (!['card', 'open_banking', 'apple_pay'].includes(method)) throw new Rejected('invalid-argument');
    const amount = int(args, 'amount', 1);
    const tip = int(args, 'tip', 0, 0);
    if (bool(args, 'offline')) throw new Rejected('method-needs-network');
    if (sortedKeys(attempts).some((k) => LIVE.includes(attempts[k].state))) throw new Rejected('attempt-live');
    const balance = order.balance_due !== undefined ? order.balance_due : (order.total || 0);
    if (amount > balance) throw new Rejected('amount-above-balance');
    const attempt = fresh(method, amount, tip);
    if (settings.feeBearer === 'customer') {
      // 19.5: the customer bears the processing fee where the rules allow it.
      const rate = rateFor(settings.rates, 'processing', method, settings.country, attempt.currency, day);
      const bp = checkSurcharge({
        rules: settings.surchargeRules, country: settings.country, method, day,
        surcharge_bp: settings.surchargeBp, processing_bp: rate === null ? 0 : rate.rate_bp,
        consumer: settings.consumer, funding: str(args, 'funding', false),
      });
      attempt.surcharge = percentOf(amount, bp, settings.tipRounding);
    }
    return put(attempt);
  }
  if (command === 'cash') {
    const amount = int(args, 'amount', 1);
    const tip = int(args, 'tip', 0, 0);
    const tendered = int(args, 'tendered', 1);
    if (tendered < amount + tip) throw new Rejected('tendered-short');
    const attempt = fresh('cash', amount, tip);
    if (attempt.offline && amount > settings.offlineLimit) attempt.approved_by = manager('payment.offline');
    attempt.tendered = tendered;
    attempt.change = tendered - amount - tip;
    return settle(attempt, tendered);
  }
  if (command === 'capture') {
    // 19.4: a tip added after authorisation replaces the one authorised, within the hold.
    const charged = a.amount + a.tip + a.surcharge;
    const tip = int(args, 'tip', 0, a.tip);
    if (tip && tip !== a.tip && !settings.tipsEnabled) throw new Rejected('tips-disabled');
    const amount = int(args, 'amount', 1, a.amount + tip + a.surcharge);
    if (amount > charged) throw new Rejected('capture-above-authorised');
    if (amount < tip + a.surcharge + 1) throw new Rejected('invalid-argument');
    a.tip = tip;
    a.amount = amount - tip - a.surcharge;
    const ref = str(args, 'provider_ref', false);
    if (ref !== null) a.provider_ref = ref;
    return settle(a, amount);
  }
  if (command === 'refund') {
    refundReported(settings, a, op);
    const refundId = str(args, 'refund_id', true);
    const amount = int(args, 'amount', 1);
    if (args.method !== undefined && args.method !== null && args.method !== a.method) {
      throw new Rejected('refund-method-mismatch');
    }
    if (a.refunds[refundId] !== undefined) throw new Rejected('duplicate-refund');
    const left = net(a);
    if (amount > left) throw new Rejected('refund-above-captured');
    let approver = str(args, 'approved_by', false);
    if (amount > settings.refundLimit) approver = manager('refund.above_limit');
    if (madeOffline(args, op, receivedMs, settings)) approver = manager('payment.offline');
    a.refunds = { ...a.refunds, [refundId]: { amount, by: op.node_id, approved_by: approver, day } };
    a.refunded += amount;
    a.state = amount === left ? 'refunded' : 'refunded_partial';
    const patch = put(a);
    const dues = { ...(order.refunds_due || {}) };
    if (dues[attemptId] !== undefined) {
      const remaining = dues[attemptId].amount - amount;
      if (remaining > 0) dues[attemptId] = { ...dues[attemptId], amount: remaining };
      else delete dues[attemptId];
      patch.refunds_due = dues;
    }
    return patch;
  }
  if (command === 'reverse') {
    // A late failure (19.4): the capture is undone, any refund-due entry goes.
    if (a.method === 'cash') throw new Rejected('cash-not-reversible');
    reported(settings, command, a, op);
    const ref = str(args, 'provider_ref', false);
    if (ref !== null) a.provider_ref = ref;
    a.failure_reason = str(args, 'reason', false);
    a.state = target;
    a.reversed = { day, by: op.node_id };
    const patch = put(a);
    const dues = { ...(order.refunds_due || {}) };
    if (dues[attemptId] !== undefined) {
      delete dues[attemptId];
      patch.refunds_due = dues;
    }
    return patch;
  }
  // submit, require_action, authorise, fail, cancel, expire
  const ref = str(args, 'provider_ref', false);
  if (ref !== null) a.provider_ref = ref;
  if (command === 'fail' || command === 'cancel') a.failure_reason = str(args, 'reason', false);
  if (command === 'cancel' && madeOffline(args, op, receivedMs, settings)) {
    a.approved_by = manager('payment.offline');
  }
  a.state = target;
  return put(a);
}

// Section 19.6: the delete guard. An order is deleted only while none of its attempts is
// live or has moved money; it runs before the generic delete (11.5 step 4).
function deleteGuard(order) {
  const attempts = order.payments || {};
  for (const k of sortedKeys(attempts)) {
    const a = attempts[k];
    if (LIVE.includes(a.state)) throw new Rejected('attempt-live');
    if (a.captured || (a.reversed !== undefined && a.reversed !== null)) throw new Rejected('payment-recorded');
  }
  if (Object.keys(order.refunds_due || {}).length > 0) throw new Rejected('payment-recorded');
}

module.exports = {
  Rejected, STATES, checkSurcharge, deleteGuard, deriveMoney, divide, grossUp, nextAttemptState,
  paymentCommand, percentOf, settingsFrom, quote, rank, splitEqual, splitRatio, tipAmount,
};
