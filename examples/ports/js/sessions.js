'use strict';
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

module.exports = { Rejected, captureCommand };
