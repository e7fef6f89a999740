'use strict';
// The actor check (protocol section 20.1) over roles and permissions as data (20.2): the
// table comes from the first vector of actors.json (or from the server), never from here.

const SERVER = 'server';

// `table`: {"permissions", "roles": [{"role", "grants"}], "needs": {collection: {command
// or write kind: permission}}}. Checks what 20.2 says of it and returns a checker.
function loadTable(table) {
  const known = new Set(table.permissions);
  const grants = new Map();
  let below = new Set();
  for (const { role, grants: list } of table.roles) {
    const held = new Set(list);
    for (const p of held) if (!known.has(p)) throw new Error(`role ${role} grants unknown ${p}`);
    for (const p of below) if (!held.has(p)) throw new Error(`role ${role} lacks ${p} of the role below`);
    grants.set(role, held);
    below = held;
  }
  const owner = grants.get('owner');
  if (owner === undefined || owner.size !== known.size) throw new Error('owner must hold every permission');
  for (const [collection, byCommand] of Object.entries(table.needs)) {
    for (const p of Object.values(byCommand)) {
      if (!known.has(p)) throw new Error(`${collection} needs unknown ${p}`);
    }
  }
  return { grants, needs: table.needs };
}

// The permission an op needs: by command name, or by kind for put/patch/delete; null if none.
function needed(checker, op) {
  const byCommand = checker.needs[op.collection] || {};
  return byCommand[op.name ?? op.kind] ?? null;
}

// 20.1 steps 1-3. `actor` is the actor's employees record as this replica knows it (null:
// none). Returns {"status": "allowed"} or the rejection with the permission it names.
function authorize(checker, op, actor) {
  const need = needed(checker, op);
  const who = op.actor ?? null; // "actor": null is no actor
  const refuse = { status: 'rejected', reason: 'forbidden', permission: need };
  if (who === null) return need === null || op.node_id === SERVER ? { status: 'allowed' } : refuse;
  if (actor === null || actor.deleted || actor.record_id !== who) return refuse;
  if (actor.fields.active !== true) return refuse;
  const held = grantsOf(checker, actor.fields.role);
  if (need !== null && !held.has(need)) return refuse;
  return { status: 'allowed' };
}

// What a role grants; an unknown role grants nothing.
const grantsOf = (checker, role) => (typeof role === 'string' && checker.grants.get(role)) || new Set();

module.exports = { authorize, grantsOf, loadTable, needed };
