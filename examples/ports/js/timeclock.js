'use strict';
// The time clock (docs/protocol.md section 20): the punch state table, shifts derived from
// punches in event order, overtime split by rate, and rounding. Integers only.

const TRANSITIONS = {
  'off clock_in': 'working',
  'working break_start': 'on_break',
  'on_break break_end': 'working',
  'working clock_out': 'off',
  'working auto_out': 'off',
  'on_break auto_out': 'off',
};
const RANK = { clock_in: 0, break_start: 1, break_end: 2, clock_out: 3, auto_out: 4 };
const MINUTE = 60000;
const DAY = 24 * 60 * MINUTE;
const OFFLINE_AFTER = 2 * MINUTE;

function nextState(state, punch) {
  const key = `${state} ${punch}`;
  return Object.prototype.hasOwnProperty.call(TRANSITIONS, key) ? TRANSITIONS[key] : null;
}

function cmp(a, b) { return a < b ? -1 : a > b ? 1 : 0; }

function ordered(punches) {
  // Punch ids compare by code point (ASCII ids in the vectors: plain < works).
  return Object.entries(punches).sort(([ia, a], [ib, b]) =>
    cmp(a.at_ms, b.at_ms) || cmp(RANK[a.kind], RANK[b.kind]) || cmp(ia, ib));
}

function sequenceErrors(punches) {
  const errors = [];
  let state = 'off';
  let opened = 0;
  for (const [id, p] of ordered(punches)) {
    if (state === 'off' && p.kind === 'clock_out') continue;
    const after = nextState(state, p.kind);
    if (after === null) { errors.push(`${state}-then-${p.kind}:${id}`); continue; }
    if (p.kind === 'clock_in') opened = p.at_ms;
    else if ((p.kind === 'clock_out' || p.kind === 'auto_out') && p.at_ms - opened > DAY) {
      errors.push(`shift-too-long:${id}`);
    }
    state = after;
  }
  return [...new Set(errors)].sort();
}

function late(p) { return p.received_ms !== null && p.received_ms !== undefined && p.received_ms - p.at_ms > OFFLINE_AFTER; }

// dayStarts (optional): the 8 cutoffs of a week with a DST change (section 20.3).
function dayOf(at, weekStart, dayStarts) {
  if (dayStarts == null) return Math.max(0, Math.min(6, Math.floor((at - weekStart) / DAY)));
  let day = 0;
  for (let i = 1; i < 7; i += 1) if (dayStarts[i] <= at) day = i;
  return day;
}

function deriveShifts(punches, weekStart, dayStarts) {
  const shifts = [];
  let current = null;
  let state = 'off';
  const mk = (id, inMs, outMs, inNode, outNode) =>
    ({ id, inMs, outMs, inNode, outNode, breaks: [], flags: new Set() });
  for (const [id, p] of ordered(punches)) {
    if (state === 'off' && p.kind === 'clock_out') {
      const orphan = mk(id, null, p.at_ms, null, p.node ?? null);
      orphan.flags.add('missing-clock-in');
      if (late(p)) orphan.flags.add('offline');
      shifts.push(orphan);
      continue;
    }
    const after = nextState(state, p.kind);
    if (after === null) {
      const target = current || shifts[shifts.length - 1];
      if (target) target.flags.add('contradiction');
      continue;
    }
    if (p.kind === 'clock_in') { current = mk(id, p.at_ms, null, p.node ?? null, null); shifts.push(current); }
    if (late(p)) current.flags.add('offline');
    if (p.source === 'adjusted') current.flags.add('adjusted');
    if (p.kind === 'break_start') {
      current.breaks.push({ start_ms: p.at_ms, end_ms: null, paid: Boolean(p.paid), expected_min: p.expected_min || 0 });
    } else if (p.kind === 'break_end') {
      current.breaks[current.breaks.length - 1].end_ms = p.at_ms;
    } else if (p.kind === 'clock_out' || p.kind === 'auto_out') {
      const last = current.breaks[current.breaks.length - 1];
      if (last && last.end_ms === null) last.end_ms = p.at_ms;
      current.outMs = p.at_ms;
      current.outNode = p.node ?? null;
      if (p.kind === 'auto_out') current.flags.add('auto-closed');
      if (current.inNode !== null && current.outNode !== current.inNode) current.flags.add('other-device');
      if (p.at_ms - current.inMs > DAY) current.flags.add('over-24h');
      current = null;
    }
    state = after;
  }
  return shifts.map((s) => {
    const closed = s.inMs !== null && s.outMs !== null;
    if (!closed && s.inMs !== null) s.flags.add('open');
    for (const b of s.breaks) {
      if (b.end_ms !== null && b.end_ms - b.start_ms < b.expected_min * MINUTE) s.flags.add('break-short');
    }
    let paid = 0; let unpaid = 0;
    if (closed) {
      for (const b of s.breaks) {
        const len = (b.end_ms !== null ? b.end_ms : s.outMs) - b.start_ms;
        if (b.paid) paid += len; else unpaid += len;
      }
    }
    const anchor = s.inMs !== null ? s.inMs : s.outMs;
    return {
      shift_id: s.id,
      day: dayOf(anchor, weekStart, dayStarts),
      in_ms: s.inMs,
      out_ms: s.outMs,
      in_node: s.inNode,
      out_node: s.outNode,
      worked_ms: closed ? s.outMs - s.inMs - unpaid : 0,
      paid_break_ms: paid,
      unpaid_break_ms: unpaid,
      breaks: s.breaks,
      flags: [...s.flags].sort(),
    };
  });
}

function split(worked, tiers) {
  const bounds = [[0, 100], ...tiers.map(([after, rate]) => [after * MINUTE, rate])]
    .sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]));
  const out = {};
  bounds.forEach(([start, rate], i) => {
    const end = i + 1 < bounds.length ? bounds[i + 1][0] : null;
    const upper = end === null ? worked : Math.min(worked, end);
    if (upper > start) out[rate] = (out[rate] || 0) + upper - start;
  });
  return out;
}

// A week (seven worked durations) split by rate: daily tiers (seventh-day tiers on the
// seventh consecutive workday), then weekly tiers over the running regular time.
function overtime(days, rules) {
  const seventh = rules.seventh_day.length > 0 && days.every((d) => d > 0);
  const weekly = rules.weekly.map(([after, rate]) => [after * MINUTE, rate]).sort((a, b) => cmp(a[0], b[0]));
  let running = 0;
  return days.map((worked, i) => {
    const byRate = split(worked, seventh && i === 6 ? rules.seventh_day : rules.daily);
    const regular = byRate[100] || 0;
    delete byRate[100];
    const start = running; const end = running + regular;
    running = end;
    const marks = [[0, 100], ...weekly];
    marks.forEach(([low, rate], k) => {
      const high = k + 1 < marks.length ? marks[k + 1][0] : null;
      const lo = Math.max(start, low);
      const hi = high === null ? end : Math.min(end, high);
      if (hi > lo) byRate[rate] = (byRate[rate] || 0) + hi - lo;
    });
    const out = {};
    for (const rate of Object.keys(byRate).map(Number).sort((a, b) => a - b)) if (byRate[rate]) out[String(rate)] = byRate[rate];
    return out;
  });
}

// Nearest multiple of step minutes, ties up.
function roundDuration(ms, stepMin) {
  const step = stepMin * MINUTE;
  return Math.floor((2 * ms + step) / (2 * step)) * step;
}

module.exports = { deriveShifts, nextState, overtime, roundDuration, sequenceErrors };
