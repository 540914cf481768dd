// 08 delayed messages: a DELAY topic; messages sent with a delivery
// timestamp are not delivered before it (a small margin for the clocks) and
// are delivered once it has passed. How late is only reported (the machine
// is shared), with one generous bound. A delivery time beyond the server's
// maximum (--broker.timer_max 1h) is refused with ILLEGAL_DELIVERY_TIME. A
// delayed message survives a restart of confluxd and is delivered once, also
// when it fell due while the server was down; after another restart it does
// not come back. A recalled message (RecallMessage with the send's recall
// handle) is never delivered.
//
// The consumers are started before anything is sent.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, withClients, uniqueName, makeMessage, receiveCount,
  assertNothingToReceive, assertSameMessage, messageIndex, rocketmqCode, retryCall, createTopic,
  MoreCode, INVISIBLE_MS, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 300_000;
/* A delivery may be late on a busy machine, never early: this much for the
 * clock reading on each side. */
const EARLY_MARGIN_MS = 50;
/* The one bound on lateness: generous, the machine is shared. */
const LATE_MAX_MS = 10_000;
const server = new Confluxd('08-delay', { args: ['--broker.timer_max', '1h'] });

before(() => server.start());
after(() => server.stop());

/**
 * Receives `count` messages, recording when each arrived; returns
 * [{view, at}] in arrival order. Acks each.
 */
async function receiveTimed(consumer, count, opts = {}) {
  const got = [];
  await receiveCount(consumer, count, { ...opts, onMessage: (view) => { got.push({ view, at: Date.now() }); } });
  return got;
}

/** Checks one delivered delayed message against its due time; returns the lateness in ms. */
function checkOnTime(arrival, due, what) {
  const { view, at } = arrival;
  assert.ok(at >= due - EARLY_MARGIN_MS,
    `${what}: delivered ${due - at} ms before its delivery time ${new Date(due).toISOString()}`);
  assert.ok(at - due <= LATE_MAX_MS, `${what}: delivered ${at - due} ms after its delivery time ` +
    `(more than ${LATE_MAX_MS} ms)`);
  assert.equal(view.deliveryTimestamp?.getTime(), due, `${what}: delivery timestamp of the delivered message`);
  assert.equal(view.deliveryAttempt, 1, `${what}: delivery attempt`);
  return at - due;
}

test('delayed messages arrive at their delivery time, not before', { timeout: TEST_TIMEOUT_MS },
  server.guard(async (t) => {
    const topic = uniqueName('t08_delay');
    const group = uniqueName('g08_delay');
    await createTopic(server, topic, 'DELAY');
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const delays = [6_000, 3_000, 1_000]; /* sent in this order: the last one is due first */
      const sent = [];
      const due = [];
      const ids = [];
      for (const [i, d] of delays.entries()) {
        due[i] = Date.now() + d;
        sent[i] = { ...makeMessage(topic, i, { tag: `d${d}` }), deliveryTimestamp: new Date(due[i]) };
        ids[i] = (await producer.send(sent[i])).messageId;
      }

      const got = await receiveTimed(consumer, delays.length);
      const seen = new Set();
      for (const a of got) {
        const i = messageIndex(a.view);
        assert.ok(!seen.has(i), `message ${i} delivered twice`);
        seen.add(i);
        assertSameMessage(a.view, sent[i], ids[i]);
        const late = checkOnTime(a, due[i], `message ${i} (delay ${delays[i]} ms)`);
        t.diagnostic(`message ${i}, delay ${delays[i]} ms: delivered ${late} ms after its delivery time`);
      }
      t.diagnostic(`arrival order: ${got.map((a) => messageIndex(a.view)).join(' ')} (by delivery time: 2 1 0)`);
      await assertNothingToReceive(consumer, 'after the delayed messages');
    });
  }));

test('a delivery time beyond the maximum delay is refused with ILLEGAL_DELIVERY_TIME', { timeout: TEST_TIMEOUT_MS },
  server.guard(async () => {
    const topic = uniqueName('t08_max');
    const group = uniqueName('g08_max');
    await createTopic(server, topic, 'DELAY');
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic], maxAttempts: 1 }));
      const tooFar = { ...makeMessage(topic, 0), deliveryTimestamp: new Date(Date.now() + 2 * 3600_000) };
      await assert.rejects(producer.send(tooFar), (err) => {
        assert.equal(rocketmqCode(err), MoreCode.ILLEGAL_DELIVERY_TIME,
          `a delivery time 2 h ahead with --broker.timer_max 1h: ${err?.message}`);
        return true;
      });

      /* The producer still works; only the accepted message arrives. */
      const soon = { ...makeMessage(topic, 1), deliveryTimestamp: new Date(Date.now() + 1_000) };
      const receipt = await producer.send(soon);
      const [view] = await receiveCount(consumer, 1);
      assertSameMessage(view, soon, receipt.messageId);
      await assertNothingToReceive(consumer, 'after the accepted message');
    });
  }));

test('a recalled delayed message is never delivered', { timeout: TEST_TIMEOUT_MS },
  server.guard(async (t) => {
    /* The client exposes RecallMessage (Producer.recallMessage with the
     * send's recall handle), so this is tested, not skipped. */
    const topic = uniqueName('t08_recall');
    const group = uniqueName('g08_recall');
    await createTopic(server, topic, 'DELAY');
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const due = Date.now() + 5_000;
      const recalled = { ...makeMessage(topic, 0, { tag: 'recalled' }), deliveryTimestamp: new Date(due) };
      const kept = { ...makeMessage(topic, 1, { tag: 'kept' }), deliveryTimestamp: new Date(due) };
      const r0 = await producer.send(recalled);
      const r1 = await producer.send(kept);
      assert.ok(r0.recallHandle, `the send result of a delayed message carries a recall handle: ${JSON.stringify(r0)}`);
      const receipt = await producer.recallMessage(topic, r0.recallHandle);
      assert.equal(receipt.messageId, r0.messageId, 'RecallMessage answers the id of the recalled message');

      const got = await receiveTimed(consumer, 1);
      assert.equal(messageIndex(got[0].view), 1, 'the message that was not recalled arrives');
      assertSameMessage(got[0].view, kept, r1.messageId);
      checkOnTime(got[0], due, 'the message that was not recalled');
      /* Same delivery time: the recalled one would be there by now. */
      consumer.testQuietUntil = Math.max(consumer.testQuietUntil ?? 0, due + INVISIBLE_MS);
      await assertNothingToReceive(consumer, 'the recalled message');
      t.diagnostic(`recall handle: ${r0.recallHandle}`);
    });
  }));

test('a delayed message is delivered once across restarts of confluxd', { timeout: TEST_TIMEOUT_MS },
  server.guard(async (t) => {
    const topic = uniqueName('t08_restart');
    const group = uniqueName('g08_restart');
    await createTopic(server, topic, 'DELAY');
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      /* 0 falls due while confluxd is down, 1 after it is back. */
      const delays = [2_000, 15_000];
      const due = [];
      const sent = [];
      const ids = [];
      for (const [i, d] of delays.entries()) {
        due[i] = Date.now() + d;
        sent[i] = { ...makeMessage(topic, i, { tag: 'restart' }), deliveryTimestamp: new Date(due[i]) };
        ids[i] = (await producer.send(sent[i])).messageId;
      }

      await server.stop({ final: false });
      await sleep(Math.max(0, due[0] + 1_000 - Date.now()));
      await server.start();

      const got = await receiveTimed(consumer, 2, { tolerateErrors: true, timeoutMs: RECEIVE_TIMEOUT_MS });
      const seen = new Set();
      for (const a of got) {
        const i = messageIndex(a.view);
        assert.ok(!seen.has(i), `message ${i} delivered twice`);
        seen.add(i);
        assertSameMessage(a.view, sent[i], ids[i]);
        assert.ok(a.at >= due[i] - EARLY_MARGIN_MS, `message ${i}: delivered ${due[i] - a.at} ms early`);
        assert.equal(a.view.deliveryAttempt, 1, `message ${i}: delivery attempt`);
        t.diagnostic(`message ${i} (delay ${delays[i]} ms): delivered ${a.at - due[i]} ms after its delivery time`);
      }
      /* Not twice: neither now… */
      consumer.testQuietUntil = Math.max(consumer.testQuietUntil ?? 0, Date.now() + INVISIBLE_MS + 5_000);
      await assertNothingToReceive(consumer, 'after both delayed messages were acked');

      /* …nor after another restart (the timers that fired stay fired). */
      await server.restart();
      consumer.testQuietUntil = Date.now() + INVISIBLE_MS + 5_000;
      await retryCall(() => assertNothingToReceive(consumer, 'after another restart'), true,
        Date.now() + RECEIVE_TIMEOUT_MS);
    });
  }));
