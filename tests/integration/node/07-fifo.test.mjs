// 07 FIFO: a FIFO topic and a FIFO group (admin API, "fifo": true). A
// producer sends 3 message groups × 20 messages, interleaved; two
// SimpleConsumers of the group receive concurrently, one message per
// receive. Per message group, deliveries follow send order: the next message
// of a group is never received while the previous one is unacknowledged.
// One consumer "fails" once in the middle (leaves a message unacked until
// its invisible duration runs out): that message comes back (attempt 2)
// before any later message of its group, and each group's acknowledged
// messages are in send order.
//
// The checks run as messages arrive, over both consumers: a shared record
// per message group says which message is the next one allowed and whether
// it is currently held by a consumer.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, withClients, uniqueName, makeMessage, assertSameMessage,
  messageIndex, createTopic, createGroup, assertNothingToReceive,
  INVISIBLE_MS, CLOCK_MARGIN_MS, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 420_000;
const GROUPS = 3;
const PER_GROUP = 20;
/* The first message with this position in its group, whichever consumer
 * receives it, is left unacked. */
const FAIL_AT = 10;
/* Collecting all 60: every message needs a receive and an ack in turn, and
 * one waits for its invisible duration. */
const COLLECT_TIMEOUT_MS = 2 * RECEIVE_TIMEOUT_MS + INVISIBLE_MS;
const server = new Confluxd('07-fifo');

before(() => server.start());
after(() => server.stop());

test('FIFO: per message group, deliveries follow send order across two consumers, a failure included',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const topic = uniqueName('t07_fifo');
    const group = uniqueName('g07_fifo');
    await createTopic(server, topic, 'FIFO');
    const created = await createGroup(server, { name: group, fifo: true });
    assert.equal(created?.fifo, true, `POST /v1/groups answered ${JSON.stringify(created)}`);

    await withClients(async (use) => {
      const consumers = [
        use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' }, name: 'fifo-a' })),
        use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' }, name: 'fifo-b' })),
      ];
      const producer = use(await startProducer(server, { topics: [topic] }));

      /* Message i belongs to message group i % GROUPS and is number
       * floor(i / GROUPS) in it; sent one after the other. */
      const groupName = (g) => `mg${g}_${topic}`;
      const sent = [];
      const ids = [];
      for (let i = 0; i < GROUPS * PER_GROUP; i++) {
        const msg = makeMessage(topic, i, { tag: 'fifo' });
        msg.messageGroup = groupName(i % GROUPS);
        sent.push(msg);
        ids.push((await producer.send(msg)).messageId);
      }

      /* Per message group: sent = how many have had their ack sent (they
       * are 0 … sent-1, so the next one allowed is number `sent`; once an
       * ack is on its way the server may release the next message before
       * the answer arrives here); acked = how many acks were answered;
       * held = {t0} while the failing consumer keeps message `sent`. */
      const state = Array.from({ length: GROUPS }, () => ({ sent: 0, acked: 0, held: null, order: [] }));
      const deliveries = new Map(); /* index → [deliveryAttempt] */
      let failed = null; /* {index, t0} of the message left unacked */
      let done = false;
      const violations = [];

      const consume = async (consumer, which) => {
        while (!done) {
          const t0 = Date.now(); /* no later than the server's pop */
          const views = await consumer.receive(1, INVISIBLE_MS);
          for (const v of views) {
            const i = messageIndex(v);
            const g = i % GROUPS;
            const seq = Math.floor(i / GROUPS);
            const st = state[g];
            const now = Date.now();
            deliveries.set(i, [...(deliveries.get(i) ?? []), v.deliveryAttempt]);
            assertSameMessage(v, sent[i], ids[i]);
            assert.equal(v.messageGroup, groupName(g), `message ${i}: message group`);
            if (seq !== st.sent) {
              violations.push(`${which} received message ${seq} of group ${g} (index ${i}, attempt ` +
                `${v.deliveryAttempt}) after the acks of ${JSON.stringify(st.order)} of that group: ` +
                (st.order.includes(seq) ? 'an acked message came back'
                  : seq > st.sent ? `message ${st.sent} is not acked yet` : 'after later messages of its group'));
            } else if (st.held && now < st.held.t0 + INVISIBLE_MS - CLOCK_MARGIN_MS) {
              violations.push(`${which} received message ${seq} of group ${g} (attempt ${v.deliveryAttempt}) ` +
                `${now - st.held.t0} ms after another delivery of it that is unacked and still invisible`);
            }
            if (!failed && seq === FAIL_AT) {
              /* The failure: not acked, left to its invisible duration. */
              failed = { index: i, t0 };
              st.held = { t0 };
              t.diagnostic(`${which} leaves message ${seq} of group ${g} (index ${i}) unacked`);
              continue;
            }
            if (failed?.index === i) {
              t.diagnostic(`message ${i} came back ${now - failed.t0} ms after the receive that was ` +
                `not acked, to ${which}, attempt ${v.deliveryAttempt}`);
            }
            st.held = null;
            st.sent = Math.max(st.sent, seq + 1);
            st.order.push(seq);
            await consumer.ack(v);
            st.acked++;
          }
          if (state.every((s) => s.acked >= PER_GROUP)) done = true;
        }
      };

      const deadline = setTimeout(() => { done = true; }, COLLECT_TIMEOUT_MS);
      try {
        /* The first failure stops both loops. */
        await Promise.all(consumers.map((c, k) => consume(c, k === 0 ? 'fifo-a' : 'fifo-b')
          .catch((err) => { done = true; throw err; })));
      } finally {
        clearTimeout(deadline);
      }
      assert.deepEqual(violations, [], 'FIFO order violations');
      for (const [g, st] of state.entries()) {
        assert.equal(st.acked, PER_GROUP, `group ${g}: ${st.acked} of ${PER_GROUP} acked within ` +
          `${COLLECT_TIMEOUT_MS} ms (acked in order: ${st.order.join(' ')})`);
        assert.deepEqual(st.order, Array.from({ length: PER_GROUP }, (_, k) => k),
          `group ${g}: acknowledged messages in send order`);
      }
      assert.ok(failed, `no message number ${FAIL_AT} of a group was received`);
      for (let i = 0; i < GROUPS * PER_GROUP; i++) {
        const want = i === failed.index ? [1, 2] : [1];
        assert.deepEqual(deliveries.get(i), want, `message ${i}: delivery attempts`);
      }
      await Promise.all(consumers.map((c) => assertNothingToReceive(c, 'after all messages were acked')));
    });
  }));
