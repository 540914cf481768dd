// 06 SQL92 filters: SimpleConsumers that subscribe with FilterExpression
// type SQL receive exactly the messages whose user properties make the
// expression TRUE (a missing property makes a comparison UNKNOWN, so the
// message is not delivered, unless IS NULL asks for it); every group gets its
// own copy; a malformed expression is refused with ILLEGAL_FILTER_EXPRESSION.
//
// The expected sets are computed here, in JavaScript, from the same
// properties; docs/filters.md has the semantics.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, withClients, uniqueName, makeMessage, sendAll,
  receiveCount, assertNothingToReceive, assertSameMessage, messageIndex, rocketmqCode, sqlFilter,
  withTimeout, shutdownClient, MoreCode, CLIENT_START_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 240_000;
const N = 40;
const server = new Confluxd('06-sql-filter');

before(() => server.start());
after(() => server.stop());

/*
 * The user properties of message i (besides those of makeMessage). Every
 * property is absent for some messages, and f is sometimes not a number.
 */
function propsOf(i) {
  const p = {};
  if (i % 7 !== 6) p.a = String(i % 10); /* 0..9, absent for 6, 13, 20, 27, 34 */
  p.b = i % 3 === 0 ? 'x' : 'y';
  const c = ['p', 'q', 'r', null][i % 4];
  if (c) p.c = c;
  if (i % 5 !== 0) p.d = `d${i}`; /* absent for multiples of 5 */
  const e = ['abc', 'ab', 'xab', 'aB1', 'abz%', null][i % 6];
  if (e) p.e = e;
  const f = ['0', '1', '2', '3', '4', 'zz', '1.5', null][i % 8];
  if (f !== null) p.f = f;
  return p;
}

/* Each expression with its meaning over propsOf(i) (missing → not TRUE). */
const FILTERS = [
  {
    expr: "a > 5 AND b = 'x'",
    match: (p) => p.a !== undefined && Number(p.a) > 5 && p.b === 'x',
  },
  {
    expr: "c IN ('p','q') OR d IS NULL",
    match: (p) => (p.c === 'p' || p.c === 'q') || p.d === undefined,
  },
  {
    expr: "e LIKE 'ab%'",
    match: (p) => p.e !== undefined && p.e.startsWith('ab'),
  },
  {
    expr: 'f BETWEEN 1 AND 3',
    match: (p) => p.f !== undefined && /^[0-9.]+$/.test(p.f) && Number(p.f) >= 1 && Number(p.f) <= 3,
  },
];

test('SQL92 subscriptions receive exactly the matching messages', { timeout: TEST_TIMEOUT_MS },
  server.guard(async (t) => {
    const topic = uniqueName('t06_sql');
    await withClients(async (use) => {
      const consumers = [];
      for (const [k, f] of FILTERS.entries()) {
        const group = uniqueName(`g06_sql${k}`);
        consumers.push(use(await startSimpleConsumer(server,
          { group, subscriptions: { [topic]: sqlFilter(f.expr) }, name: `sql${k}` })));
      }
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: N }, (_, i) =>
        makeMessage(topic, i, { tag: `tag${i % 3}`, extraProps: propsOf(i) }));
      const receipts = await sendAll(producer, sent, 4);

      await Promise.all(FILTERS.map(async (f, k) => {
        const wanted = sent.map((m, i) => i).filter((i) => f.match(propsOf(i)));
        t.diagnostic(`"${f.expr}": ${wanted.length} of ${N} match (${wanted.join(' ')})`);
        assert.ok(wanted.length > 0 && wanted.length < N, `test data: "${f.expr}" must select some`);
        const views = await receiveCount(consumers[k], wanted.length);
        const seen = new Set();
        for (const v of views) {
          const i = messageIndex(v);
          assert.ok(wanted.includes(i), `"${f.expr}": message ${i} with ${JSON.stringify(propsOf(i))} ` +
            'does not match and was delivered');
          assert.ok(!seen.has(i), `"${f.expr}": message ${i} delivered twice`);
          seen.add(i);
          assertSameMessage(v, sent[i], receipts[i].messageId);
          assert.equal(v.deliveryAttempt, 1, `"${f.expr}": delivery attempt of message ${i}`);
        }
        /* Acked: nothing more, in particular no message that does not match. */
        await assertNothingToReceive(consumers[k], `"${f.expr}"`);
      }));
    });
  }));

test('a malformed SQL92 expression is refused with ILLEGAL_FILTER_EXPRESSION', { timeout: TEST_TIMEOUT_MS },
  server.guard(async (t) => {
    const topic = uniqueName('t06_bad');
    const group = uniqueName('g06_bad');
    await withClients(async (use) => {
      const producer = use(await startProducer(server, { topics: [topic] }));
      await producer.send(makeMessage(topic, 0, { extraProps: { a: '9' } }));

      /* The server may refuse the subscription in its Settings answer (the
       * client's startup then fails with the code) or each receive. */
      let consumer;
      try {
        consumer = await startSimpleConsumer(server, { group, subscriptions: { [topic]: sqlFilter('a >') } });
      } catch (err) {
        assert.equal(rocketmqCode(err), MoreCode.ILLEGAL_FILTER_EXPRESSION,
          `startup with "a >" failed, but not with ILLEGAL_FILTER_EXPRESSION: ${err?.message}`);
        t.diagnostic(`refused at startup: ${err.message}`);
        return;
      }
      use(consumer);
      await assert.rejects(withTimeout(consumer.receive(1, 10_000), CLIENT_START_TIMEOUT_MS, 'receive'),
        (err) => {
          assert.equal(rocketmqCode(err), MoreCode.ILLEGAL_FILTER_EXPRESSION,
            `receive with "a >": ${err?.message}`);
          t.diagnostic(`refused on receive: ${err.message}`);
          return true;
        });
      await shutdownClient(consumer);
    });
  }));
