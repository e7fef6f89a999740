// Benchmark (4)'s peer: PouchDB replicating N writes (N / REVISIONS order-like documents,
// each written REVISIONS times, as N offline ops touch N / 5 orders) from one memory
// database to another, in this process. Usage: node replicate.js N BATCH_SIZE [REVISIONS]
// Prints one JSON object: the replication time and what was replicated.
'use strict';
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));

function order(i) {
  // The shape of a fynlo order after open, two add_line, a patch and send_to_kitchen.
  return {
    _id: `till-a-o${i}`,
    status: 'sent',
    table: `T${i % 40}`,
    currency: 'GBP',
    opened_by: 'till-a',
    lines: {
      l1: {item: 'burger', qty: 2, unit_price: 1250, sent: true},
      l2: {item: 'fries', qty: 1, unit_price: 450, sent: true},
    },
    note: 'no onions',
    covers: 2,
    total: 2950,
  };
}

async function main() {
  const n = parseInt(process.argv[2], 10);
  const batchSize = parseInt(process.argv[3] || '100', 10);
  const revisions = parseInt(process.argv[4] || '1', 10);
  const source = new PouchDB(`source-${batchSize}`, {adapter: 'memory'});
  const target = new PouchDB(`target-${batchSize}`, {adapter: 'memory'});
  const count = Math.floor(n / revisions);
  let docs = [];
  for (let i = 0; i < count; i++) docs.push(order(i));
  for (let r = 0; r < revisions; r++) {
    const written = [];
    for (let i = 0; i < docs.length; i += 1000) {
      const slice = docs.slice(i, i + 1000);
      const answers = await source.bulkDocs(slice);
      slice.forEach((doc, k) => written.push({...doc, _rev: answers[k].rev, covers: r + 2}));
    }
    docs = written;
  }
  const start = process.hrtime.bigint();
  const result = await PouchDB.replicate(source, target, {batch_size: batchSize});
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const info = await target.info();
  process.stdout.write(JSON.stringify({
    docs: count,
    writes: count * revisions,
    revisions,
    batch_size: batchSize,
    seconds,
    docs_written: result.docs_written,
    doc_count: info.doc_count,
    pouchdb: PouchDB.version,
    node: process.version,
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
