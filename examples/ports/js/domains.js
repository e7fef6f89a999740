'use strict';
// Domains as data (docs/protocol.md section 21): the document `fynlo schema export --json`
// prints and the server serves at GET /v1/schema/domains. A port loads collections and
// state tables from it instead of keeping its own copy of each domain's rules.

const { isObject } = require('./json');

class DomainsError extends Error {}

// The collections of `doc` by name, after checking the document's shape and every state
// table against its own states and commands.
function loadDomains(doc) {
  if (!isObject(doc) || doc.format !== 1 || !Array.isArray(doc.collections)) {
    throw new DomainsError('not a version 1 domains document');
  }
  const byName = new Map();
  for (const c of doc.collections) {
    if (byName.has(c.name)) throw new DomainsError(`collection ${c.name} appears twice`);
    const table = c.state_table;
    if (table !== null) {
      const states = new Set(table.states);
      if (!isObject(c.fields[table.field]) || c.fields[table.field].kind !== 'state') {
        throw new DomainsError(`${c.name}: state table field ${table.field} is not a state field`);
      }
      for (const t of table.transitions) {
        if ((t.from !== null && !states.has(t.from)) || !states.has(t.to)) {
          throw new DomainsError(`${c.name}: transition ${t.from} -${t.command}-> ${t.to}`);
        }
        if (!table.commands.includes(t.command) || table.final.includes(t.from)) {
          throw new DomainsError(`${c.name}: transition ${t.from} -${t.command}-> ${t.to}`);
        }
      }
    }
    byName.set(c.name, c);
  }
  return byName;
}

// The state after `command` in `state` (null: absent), or null if the table has no such
// transition.
function nextState(table, state, command) {
  const row = table.transitions.find((t) => t.from === state && t.command === command);
  return row === undefined ? null : row.to;
}

module.exports = { DomainsError, loadDomains, nextState };
