// 04 restart: confluxd is stopped with SIGTERM (exit status 0) and started
// again on the same data directory and ports while the Node.js clients stay
// up. Consumers continue where they left off: no acked message comes back,
// unacked ones are delivered, receipt handles from before the restart still
// ack, messages sent before and after the restart all arrive, and a fresh
// client of the group after another restart sees only what is new.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, startPushConsumer, shutdownClient, withClients, uniqueName,
  makeMessage, sendAll, receiveCount, assertNothingToReceive, assertSameMessage, messageIndex,
  retryCall, waitFor, ConsumeResult, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 300_000;
/* Long enough to outlive a restart on a slow machine. */
const LONG_INVISIBLE_MS = 120_000;
const server = new Confluxd('04-restart');

before(() => server.start());
after(() => server.stop());

/** Sends one message, retrying transport errors while the server comes back. */
async function sendTolerant(producer, msg) {
  return retryCall(() => producer.send(msg), true, Date.now() + RECEIVE_TIMEOUT_MS);
}

test('a simple consumer continues where it left off across restarts',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t04_simple');
    const group = uniqueName('g04_simple');
    const sent = new Map(); /* index → message */
    const ids = new Map(); /* index → message id from the send result */
    const range = (a, b) => Array.from({ length: b - a }, (_, k) => a + k);
    const ACKED = range(0, 10); /* acked before the restart */
    const LATE = range(10, 20); /* extended before, acked after the restart with the old handles */
    const OPEN = range(20, 30); /* received before the restart, never acked */
    const NEW = range(30, 40); /* sent before the restart, never received before it */
    const POST = range(40, 45); /* sent after the restart by the same producer */
    const FRESH = range(50, 55); /* sent after the second restart by a new producer */

    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const send = async (indexes) => {
        for (const i of indexes) {
          sent.set(i, makeMessage(topic, i, { tag: 'r' }));
          ids.set(i, (await sendTolerant(producer, sent.get(i))).messageId);
        }
      };

      await send([...ACKED, ...LATE, ...OPEN]);
      const views = await receiveCount(consumer, 30, { ack: false });
      const byIndex = new Map(views.map((v) => [messageIndex(v), v]));
      assert.equal(byIndex.size, 30, 'each of the 30 messages received once');
      for (const i of ACKED) await consumer.ack(byIndex.get(i));
      for (const i of LATE) await consumer.changeInvisibleDuration(byIndex.get(i), LONG_INVISIBLE_MS);
      await send(NEW);

      await server.restart();

      /* Handles from before the restart are still valid. */
      const deadline = Date.now() + RECEIVE_TIMEOUT_MS;
      for (const i of LATE) await retryCall(() => consumer.ack(byIndex.get(i)), true, deadline);
      await send(POST);

      const expected = new Set([...OPEN, ...NEW, ...POST]);
      const got = await receiveCount(consumer, expected.size, { tolerateErrors: true });
      const seen = new Set();
      for (const v of got) {
        const i = messageIndex(v);
        assert.ok(!ACKED.includes(i), `message ${i} was acked before the restart and came back`);
        assert.ok(!LATE.includes(i), `message ${i} was acked after the restart and came back`);
        assert.ok(expected.has(i), `unexpected message ${i}`);
        assert.ok(!seen.has(i), `message ${i} delivered twice`);
        seen.add(i);
        assertSameMessage(v, sent.get(i), ids.get(i));
        if (OPEN.includes(i)) {
          assert.ok(v.deliveryAttempt >= 2, `message ${i}: delivery attempt ${v.deliveryAttempt} after a pop`);
        } else {
          assert.equal(v.deliveryAttempt, 1, `message ${i}: first delivery`);
        }
      }
      await assertNothingToReceive(consumer, 'after the restart, once all is acked');
      await shutdownClient(consumer);
      await shutdownClient(producer);
    });

    /* Another restart with no client connected, then new clients of the same group. */
    await server.restart();
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      await assertNothingToReceive(consumer, 'a new consumer of the group after the second restart');
      const producer = use(await startProducer(server, { topics: [topic] }));
      const fresh = FRESH.map((i) => makeMessage(topic, i, { tag: 'r' }));
      const receipts = await sendAll(producer, fresh, 1);
      const got = await receiveCount(consumer, FRESH.length);
      const idx = got.map(messageIndex).sort((a, b) => a - b);
      assert.deepEqual(idx, FRESH, 'exactly the messages sent after the second restart');
      for (const v of got) {
        const k = FRESH.indexOf(messageIndex(v));
        assertSameMessage(v, fresh[k], receipts[k].messageId);
      }
      await assertNothingToReceive(consumer, 'after the fresh messages');
    });
  }));

test('a push consumer keeps consuming across a restart, each message once',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const N = 50;
    const topic = uniqueName('t04_push');
    const group = uniqueName('g04_push');
    const deliveries = new Map(); /* index → count */
    const views = new Map(); /* index → first MessageView */
    const consume = (view) => {
      const m = /^msg (\d+) /.exec(view.body.subarray(0, 24).toString('latin1'));
      const i = m ? Number(m[1]) : -1;
      deliveries.set(i, (deliveries.get(i) ?? 0) + 1);
      if (!views.has(i)) views.set(i, view);
      return ConsumeResult.SUCCESS;
    };
    await withClients(async (use) => {
      const consumer = use(await startPushConsumer(server, { group, subscriptions: { [topic]: '*' }, consume }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: 2 * N }, (_, i) => makeMessage(topic, i));
      const ids = [];

      for (let i = 0; i < N; i++) ids[i] = (await producer.send(sent[i])).messageId;
      await waitFor(() => deliveries.size >= N, RECEIVE_TIMEOUT_MS,
        () => `first ${N} consumed (have ${deliveries.size})`);

      await server.restart();

      for (let i = N; i < 2 * N; i++) ids[i] = (await sendTolerant(producer, sent[i])).messageId;
      await waitFor(() => deliveries.size >= 2 * N, RECEIVE_TIMEOUT_MS,
        () => `all ${2 * N} consumed (have ${deliveries.size})`);
      await shutdownClient(consumer);

      assert.equal(deliveries.has(-1), false, 'messages that are not from this test');
      for (let i = 0; i < 2 * N; i++) {
        /* Acks of the first half completed before the restart or are retried
         * by the client with handles that stay valid across it. */
        assert.equal(deliveries.get(i), 1, `message ${i} consumed ${deliveries.get(i) ?? 0} times`);
        assertSameMessage(views.get(i), sent[i], ids[i]);
      }
    });
  }));
