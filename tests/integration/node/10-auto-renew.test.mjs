// 10 auto-renew: a PushConsumer receives with auto_renew, so confluxd keeps
// its messages invisible while the consumer works on them (and is alive),
// renewing the invisible duration without changing the receipt handle. The
// server runs with a 3 s invisible duration for such receives; a listener
// that takes 12 s must still see each message exactly once, and its ack with
// the original handle must succeed.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startPushConsumer, shutdownClient, withClients, uniqueName, makeMessage,
  sendAll, messageIndex, waitFor, ConsumeResult, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 240_000;
const SLOW_MS = 12_000; /* four times the server's auto-renew invisible duration */
const server = new Confluxd('10-auto-renew', { args: ['--broker.auto_renew_invisible', '3s'] });

before(() => server.start());
after(() => server.stop());

test('a slow push consumer keeps its messages: renewed while it works, each consumed once',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const N = 4;
    const topic = uniqueName('t10_renew');
    const group = uniqueName('g10_renew');
    const deliveries = new Map(); /* index → delivery attempts seen */
    const done = new Set();
    await withClients(async (use) => {
      const consumer = use(await startPushConsumer(server, {
        group,
        subscriptions: { [topic]: '*' },
        consume: async (view) => {
          const i = messageIndex(view);
          const seen = deliveries.get(i) ?? [];
          seen.push(view.deliveryAttempt);
          deliveries.set(i, seen);
          await sleep(SLOW_MS);
          done.add(i);
          return ConsumeResult.SUCCESS;
        },
      }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: N }, (_, i) => makeMessage(topic, i));
      await sendAll(producer, sent, 4);

      await waitFor(() => done.size === N, RECEIVE_TIMEOUT_MS + N * SLOW_MS,
        () => `all ${N} messages consumed (have ${done.size})`);
      /* Past another invisible duration: a message that was not renewed, or
       * whose ack failed, would come back now. */
      await sleep(5_000);
      await shutdownClient(consumer);

      for (let i = 0; i < N; i++) {
        const seen = deliveries.get(i) ?? [];
        t.diagnostic(`message ${i}: delivery attempts ${JSON.stringify(seen)}`);
        assert.deepEqual(seen, [1], `message ${i} delivered ${seen.length} times`);
      }
      assert.deepEqual(consumer.testLogger.problems(/ack/i), [], 'failed acks in the client log');
    });
  }));
