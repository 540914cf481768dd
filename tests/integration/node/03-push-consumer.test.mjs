// 03 push consumer: the official Node.js PushConsumer against a real confluxd
// (QueryAssignment, then ReceiveMessage long polls with auto_renew, AckMessage
// per consumed message, ChangeInvisibleDuration as the nack). A stream of 200
// messages is consumed exactly once with contents intact; a message whose
// consumption fails is delivered again.
//
// The consumer is started (its Settings reach the server) before anything is
// sent, so the tests do not depend on where a new group starts reading.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startPushConsumer, shutdownClient, withClients, uniqueName, makeMessage,
  sendAll, assertSameMessage, waitFor, ConsumeResult, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 300_000;
const server = new Confluxd('03-push-consumer');

before(() => server.start());
after(() => server.stop());

/* The number in a test message body, or -1; never throws (a throwing
 * listener would turn into a nack and hide the real problem). */
function indexOf(view) {
  const m = /^msg (\d+) /.exec(view.body.subarray(0, 24).toString('latin1'));
  return m ? Number(m[1]) : -1;
}

/** A listener that records every delivery; `decide(view, i, n)` (n = deliveries so far) picks the result. */
function recorder(decide = () => ConsumeResult.SUCCESS) {
  const deliveries = new Map(); /* index → [MessageView] */
  const strays = [];
  return {
    deliveries,
    strays,
    consume(view) {
      const i = indexOf(view);
      if (i < 0) {
        strays.push(view);
        return ConsumeResult.SUCCESS;
      }
      const list = deliveries.get(i) ?? [];
      list.push(view);
      deliveries.set(i, list);
      return decide(view, i, list.length);
    },
  };
}

test('a push consumer consumes a stream of 200 messages, each exactly once and intact',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const N = 200;
    const topic = uniqueName('t03_stream');
    const group = uniqueName('g03_stream');
    const rec = recorder();
    await withClients(async (use) => {
      const consumer = use(await startPushConsumer(server, {
        group, subscriptions: { [topic]: '*' }, consume: (v) => rec.consume(v),
      }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: N }, (_, i) => makeMessage(topic, i, { tag: `tag${i % 4}` }));
      const receipts = await sendAll(producer, sent, 8);

      await waitFor(() => rec.deliveries.size === N, RECEIVE_TIMEOUT_MS,
        () => `all ${N} messages consumed (have ${rec.deliveries.size})`);
      /* Shutting down waits for the receive calls in flight and for the acks,
       * so a duplicate already on its way is counted below. */
      await shutdownClient(consumer);

      assert.equal(rec.strays.length, 0, 'messages that are not from this test');
      for (let i = 0; i < N; i++) {
        const views = rec.deliveries.get(i) ?? [];
        assert.equal(views.length, 1, `message ${i} consumed ${views.length} times`);
        assertSameMessage(views[0], sent[i], receipts[i].messageId);
        assert.equal(views[0].deliveryAttempt, 1, `delivery attempt of message ${i}`);
      }
      /* Acks are retried inside the client every second; none should have failed. */
      assert.deepEqual(consumer.testLogger.problems(/ack/i), [], 'failed acks in the client log');
    });
  }));

test('a message whose consumption fails is delivered again',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const N = 10;
    const FAILING = 3;
    const topic = uniqueName('t03_retry');
    const group = uniqueName('g03_retry');
    const rec = recorder((view, i, n) => (i === FAILING && n === 1 ? ConsumeResult.FAILURE : ConsumeResult.SUCCESS));
    await withClients(async (use) => {
      const consumer = use(await startPushConsumer(server, {
        group, subscriptions: { [topic]: '*' }, consume: (v) => rec.consume(v),
      }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: N }, (_, i) => makeMessage(topic, i));
      const receipts = await sendAll(producer, sent, 4);

      await waitFor(() => rec.deliveries.size === N && (rec.deliveries.get(FAILING)?.length ?? 0) >= 2,
        RECEIVE_TIMEOUT_MS, () => `all consumed and message ${FAILING} redelivered ` +
          `(have ${rec.deliveries.size}, message ${FAILING} seen ${rec.deliveries.get(FAILING)?.length ?? 0} times)`);
      await shutdownClient(consumer);

      for (let i = 0; i < N; i++) {
        const views = rec.deliveries.get(i);
        const want = i === FAILING ? 2 : 1;
        assert.equal(views.length, want, `message ${i} consumed ${views.length} times, expected ${want}`);
        for (const v of views) assertSameMessage(v, sent[i], receipts[i].messageId);
      }
      const [first, second] = rec.deliveries.get(FAILING);
      assert.equal(first.deliveryAttempt, 1);
      assert.equal(second.deliveryAttempt, 2, 'delivery attempt after a failed consumption');
    });
  }));
