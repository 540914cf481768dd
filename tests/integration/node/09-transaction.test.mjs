// 09 transactional messages: a TRANSACTION topic and a producer with a
// transaction checker. A committed message is delivered; a rolled-back one
// never is; a transaction left open is checked back by the server through
// the producer's Telemetry stream (RecoverOrphanedTransactionCommand), and
// the checker's answer decides: COMMIT delivers it, ROLLBACK discards it,
// UNSPECIFIED (unknown) leaves it open until the next check.
//
// confluxd runs with --broker.txn_check_first 1s and
// --broker.txn_check_interval 2s so that checks come quickly. A check may
// cross an EndTransaction on the wire, so a check of an already resolved
// transaction is only an error when it comes well after the resolution.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Confluxd } from './lib/server.mjs';
import {
  startSimpleConsumer, startTransactionalProducer, withClients, uniqueName, makeMessage,
  receiveCount, assertNothingToReceive, assertSameMessage, messageIndex, createTopic, waitFor,
  TransactionResolution, INVISIBLE_MS, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 300_000;
const CHECK_INTERVAL_MS = 2_000;
/* A check later than this after the transaction was resolved means the
 * server did not record the resolution: one check interval, and as much
 * again for a busy machine. */
const STALE_CHECK_MS = 2 * CHECK_INTERVAL_MS + 1_000;
/* How long a check-back may take to come (first check after 1 s). */
const CHECK_TIMEOUT_MS = 60_000;
const server = new Confluxd('09-transaction', {
  args: ['--broker.txn_check_first', '1s', '--broker.txn_check_interval', '2s'],
});

before(() => server.start());
after(() => server.stop());

/* The number in a test message body, or -1; never throws (inside the checker). */
function indexOf(view) {
  const m = /^msg (\d+) /.exec(view.body.subarray(0, 24).toString('latin1'));
  return m ? Number(m[1]) : -1;
}

/**
 * A transaction checker that records every check and answers with
 * `answer(i, n)` (n = checks of message i so far, this one included).
 */
function recordingChecker(answer) {
  const checks = []; /* {i, n, at, view, answered} */
  return {
    checks,
    of: (i) => checks.filter((c) => c.i === i),
    check: async (view) => {
      const i = indexOf(view);
      const n = checks.filter((c) => c.i === i).length + 1;
      const answered = answer(i, n);
      checks.push({ i, n, at: Date.now(), view, answered });
      return answered;
    },
  };
}

/** Sends `msg` in a transaction of its own; returns {tx, receipt}. */
async function sendInTransaction(producer, msg) {
  const tx = producer.beginTransaction();
  const receipt = await producer.send(msg, tx);
  assert.ok(receipt.transactionId, `the send result of a transactional message carries a transaction id: ` +
    `${JSON.stringify(receipt)}`);
  return { tx, receipt };
}

/** Asserts that a check carried the transactional message as sent. */
function assertCheckedMessage(check, sent, messageId, what) {
  assert.ok(!check.view.corrupted, `${what}: the checked message has a wrong body digest`);
  assert.equal(check.view.messageId, messageId, `${what}: message id of the checked message`);
  assert.equal(check.view.topic, sent.topic, `${what}: topic of the checked message`);
  assert.ok(Buffer.compare(check.view.body, sent.body) === 0, `${what}: body of the checked message`);
  assert.deepEqual(Object.fromEntries(check.view.properties), Object.fromEntries(sent.properties),
    `${what}: user properties of the checked message`);
}

/** Fails when the producer's log says that answering a check went wrong. */
function assertNoCheckErrors(producer) {
  assert.deepEqual(producer.testLogger.problems(/checking the transaction|orphaned transaction/i), [],
    'errors in the producer log while answering checks');
}

test('commit delivers, rollback discards, an open transaction is checked back and committed',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const COMMITTED = 0;
    const ROLLED_BACK = 1;
    const OPEN = 2;
    const topic = uniqueName('t09_tx');
    const group = uniqueName('g09_tx');
    await createTopic(server, topic, 'TRANSACTION');
    /* Checks crossing an EndTransaction get the same answer as that. */
    const checker = recordingChecker((i) => (i === ROLLED_BACK ? TransactionResolution.ROLLBACK
      : i === COMMITTED || i === OPEN ? TransactionResolution.COMMIT : TransactionResolution.UNSPECIFIED));
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startTransactionalProducer(server, { topics: [topic], check: checker.check }));
      const sent = [0, 1, 2].map((i) => makeMessage(topic, i, { tag: 'tx' }));
      const resolvedAt = new Map();

      const c = await sendInTransaction(producer, sent[COMMITTED]);
      await c.tx.commit();
      resolvedAt.set(COMMITTED, Date.now());
      const r = await sendInTransaction(producer, sent[ROLLED_BACK]);
      await r.tx.rollback();
      resolvedAt.set(ROLLED_BACK, Date.now());
      const o = await sendInTransaction(producer, sent[OPEN]);
      const ids = [c.receipt.messageId, r.receipt.messageId, o.receipt.messageId];
      const tOpen = Date.now();

      /* The committed one and, once checked, the open one. */
      const views = await receiveCount(consumer, 2);
      const byIndex = new Map(views.map((v) => [messageIndex(v), v]));
      assert.deepEqual([...byIndex.keys()].sort(), [COMMITTED, OPEN],
        'the committed message and the one the checker committed, once each');
      for (const [i, v] of byIndex) {
        assertSameMessage(v, sent[i], ids[i]);
        assert.equal(v.deliveryAttempt, 1, `message ${i}: delivery attempt`);
      }
      const checks = checker.of(OPEN);
      assert.ok(checks.length >= 1, 'the open transaction was delivered without a check');
      assertCheckedMessage(checks[0], sent[OPEN], ids[OPEN], 'check of the open transaction');
      t.diagnostic(`first check of the open transaction ${checks[0].at - tOpen} ms after its send`);
      resolvedAt.set(OPEN, checks[0].at);

      /* The rolled-back one never comes, with several check intervals to go wrong in. */
      consumer.testQuietUntil = Math.max(consumer.testQuietUntil ?? 0, Date.now() + INVISIBLE_MS);
      await assertNothingToReceive(consumer, 'the rolled-back message');

      /* No check long after a transaction was resolved. */
      for (const [i, at] of resolvedAt) {
        const stale = checker.of(i).filter((ck) => ck.at > at + STALE_CHECK_MS);
        assert.deepEqual(stale.map((ck) => `check ${ck.n} ${ck.at - at} ms after the resolution`), [],
          `message ${i} was checked again after its transaction was resolved`);
      }
      t.diagnostic(`checks: ${checker.checks.map((ck) => `message ${ck.i} #${ck.n}`).join(', ')}`);
      assertNoCheckErrors(producer);
    });
  }));

test('a check answered UNSPECIFIED is repeated; a check answered ROLLBACK discards the message',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const UNKNOWN_FIRST = 0; /* unknown at the first check, committed at the second */
    const ROLLED_BACK_BY_CHECK = 1;
    const topic = uniqueName('t09_check');
    const group = uniqueName('g09_check');
    await createTopic(server, topic, 'TRANSACTION');
    const checker = recordingChecker((i, n) => {
      if (i === UNKNOWN_FIRST) return n === 1 ? TransactionResolution.UNSPECIFIED : TransactionResolution.COMMIT;
      if (i === ROLLED_BACK_BY_CHECK) return TransactionResolution.ROLLBACK;
      return TransactionResolution.UNSPECIFIED;
    });
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startTransactionalProducer(server, { topics: [topic], check: checker.check }));
      const sent = [0, 1].map((i) => makeMessage(topic, i, { tag: 'check' }));
      const ids = [];
      for (const i of [UNKNOWN_FIRST, ROLLED_BACK_BY_CHECK]) {
        ids[i] = (await sendInTransaction(producer, sent[i])).receipt.messageId;
      }

      const [view] = await receiveCount(consumer, 1, { timeoutMs: RECEIVE_TIMEOUT_MS });
      assert.equal(messageIndex(view), UNKNOWN_FIRST, 'only the message committed by its second check arrives');
      assertSameMessage(view, sent[UNKNOWN_FIRST], ids[UNKNOWN_FIRST]);
      const unknownChecks = checker.of(UNKNOWN_FIRST);
      assert.ok(unknownChecks.length >= 2,
        `the message was delivered after ${unknownChecks.length} check(s); the first answer was UNSPECIFIED`);
      assertCheckedMessage(unknownChecks[1], sent[UNKNOWN_FIRST], ids[UNKNOWN_FIRST], 'second check');
      t.diagnostic(`second check ${unknownChecks[1].at - unknownChecks[0].at} ms after the first`);

      await waitFor(() => checker.of(ROLLED_BACK_BY_CHECK).length >= 1, CHECK_TIMEOUT_MS,
        'a check of the message the checker rolls back');
      const rolledAt = checker.of(ROLLED_BACK_BY_CHECK)[0].at;
      assertCheckedMessage(checker.of(ROLLED_BACK_BY_CHECK)[0], sent[ROLLED_BACK_BY_CHECK],
        ids[ROLLED_BACK_BY_CHECK], 'check of the message rolled back');
      consumer.testQuietUntil = Math.max(consumer.testQuietUntil ?? 0, Date.now() + INVISIBLE_MS);
      await assertNothingToReceive(consumer, 'the message the checker rolled back');
      /* Enough check intervals have passed by now for stale checks to show. */
      await sleep(Math.max(0, rolledAt + STALE_CHECK_MS + CHECK_INTERVAL_MS - Date.now()));
      const stale = checker.of(ROLLED_BACK_BY_CHECK).filter((ck) => ck.at > rolledAt + STALE_CHECK_MS);
      assert.deepEqual(stale.map((ck) => `check ${ck.n} ${ck.at - rolledAt} ms after the rollback`), [],
        'the message rolled back by a check was checked again');
      const committedAt = unknownChecks[1].at;
      const staleCommit = checker.of(UNKNOWN_FIRST).filter((ck) => ck.at > committedAt + STALE_CHECK_MS);
      assert.deepEqual(staleCommit.map((ck) => `check ${ck.n} ${ck.at - committedAt} ms after the commit`), [],
        'the message committed by a check was checked again');
      assertNoCheckErrors(producer);
    });
  }));
