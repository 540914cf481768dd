// 05 dead-letter queue: a group created through the admin API with a small
// retry.max_attempts. A message that is never acknowledged is delivered
// max_attempts times (delivery attempt 1, 2, 3: once after its invisible
// duration ran out, then after negative acknowledgements) and then never
// again; it is in the group's dead-letter queue (GET /v1/groups/{g}/dlq, and
// stored in topic %DLQ%<g> with DLQ_ORIGIN_TOPIC, DLQ_ORIGIN_MESSAGE_ID and
// DLQ_ATTEMPTS); a redrive sends it back and the consumer gets it as new
// (attempt 1). A push consumer whose listener fails (returns FAILURE, or
// throws) dead-letters the message after max_attempts the same way.
//
// Topics and groups are created through the admin API before the consumers
// start, and the consumers start before anything is sent.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, startPushConsumer, shutdownClient, withClients, uniqueName,
  makeMessage, sendAll, receiveCount, assertNothingToReceive, assertSameMessage, messageIndex,
  createTopic, createGroup, redriveDlq, readStored, adminRequest, adminBody, waitFor,
  ConsumeResult, INVISIBLE_MS, CLOCK_MARGIN_MS, RECEIVE_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 300_000;
/* How long the dead letter may take to show up in GET /v1/groups/{g}/dlq
 * after the last attempt was given up. */
const DLQ_TIMEOUT_MS = 60_000;
/* After the last attempt, nothing may come back for this long: more than
 * the invisible duration and the first steps of the default back-off. */
const AFTER_LAST_ATTEMPT_QUIET_MS = INVISIBLE_MS + 10_000;
const server = new Confluxd('05-dlq');

before(() => server.start());
after(() => server.stop());

/** Asserts that a dead letter, as the admin API shows it, is the message `sent`. */
function assertDeadLetter(entry, sent, messageId, attempts, what) {
  assert.equal(entry.message_id, messageId, `${what}: message_id`);
  assert.equal(entry.origin_topic, sent.topic, `${what}: origin_topic`);
  assert.equal(entry.attempts, attempts, `${what}: attempts`);
  assert.equal(entry.tag ?? undefined, sent.tag, `${what}: tag`);
  assert.ok(Buffer.compare(adminBody(entry), sent.body) === 0, `${what}: body differs`);
  assert.equal(typeof entry.properties, 'object', `${what}: properties`);
  for (const [k, v] of sent.properties) {
    assert.equal(entry.properties[k], v, `${what}: user property ${k}`);
  }
}

/**
 * GET /v1/groups/{group}/dlq of a group that may not have dead-lettered
 * anything yet: 200 with the list, or 404 when the server says the group has
 * no dead-letter queue (yet), which counts as empty. Anything else throws.
 */
async function deadLetters(group) {
  const r = await adminRequest(server, 'GET', `/v1/groups/${encodeURIComponent(group)}/dlq`);
  if (r.status === 404 && /dead-letter/i.test(r.text)) return { messages: [], answer: `404 ${r.text}` };
  assert.equal(r.status, 200, `GET /v1/groups/${group}/dlq answered ${r.status}: ${r.text}`);
  assert.ok(Array.isArray(r.json?.messages), `GET /v1/groups/${group}/dlq answered ${r.text}`);
  return { messages: r.json.messages, answer: `200 ${r.text}` };
}

/** Polls the group's DLQ until it holds `count` messages; returns them. */
async function waitForDeadLetters(group, count) {
  let last;
  await waitFor(async () => {
    last = await deadLetters(group);
    return last.messages.length >= count;
  }, DLQ_TIMEOUT_MS, () => `${count} message(s) in the dead-letter queue of ${group} ` +
    `(GET /v1/groups/${group}/dlq answers ${last?.answer.slice(0, 500)})`);
  return last.messages;
}

test('an unacked message is delivered max_attempts times, then dead-lettered, and a redrive brings it back',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const MAX_ATTEMPTS = 3;
    const topic = uniqueName('t05_dlq');
    const group = uniqueName('g05_dlq');
    await createTopic(server, topic, 'NORMAL');
    const created = await createGroup(server, { name: group, retry: { max_attempts: MAX_ATTEMPTS } });
    assert.equal(created?.retry?.max_attempts, MAX_ATTEMPTS, `POST /v1/groups answered ${JSON.stringify(created)}`);

    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const dead = makeMessage(topic, 1, { tag: 'dead' });
      const fine = makeMessage(topic, 2, { tag: 'fine' });
      const [deadReceipt, fineReceipt] = await sendAll(producer, [dead, fine], 1);

      /* Attempt 1: both arrive; the fine one is acked, the other is left to
       * its invisible duration. */
      const t1 = Date.now();
      const first = await receiveCount(consumer, 2, { ack: false });
      const byIndex = new Map(first.map((v) => [messageIndex(v), v]));
      assert.deepEqual([...byIndex.keys()].sort(), [1, 2], 'the two messages, once each');
      assertSameMessage(byIndex.get(2), fine, fineReceipt.messageId);
      await consumer.ack(byIndex.get(2));
      const a1 = byIndex.get(1);
      assertSameMessage(a1, dead, deadReceipt.messageId);
      assert.equal(a1.deliveryAttempt, 1, 'first delivery attempt');

      /* Attempt 2: after the invisible duration. Then a negative
       * acknowledgement (ChangeInvisibleDuration 0). */
      const [a2] = await receiveCount(consumer, 1, { ack: false });
      const waited = Date.now() - t1;
      assertSameMessage(a2, dead, deadReceipt.messageId);
      assert.equal(a2.deliveryAttempt, 2, 'delivery attempt after the invisible duration ran out');
      assert.ok(waited >= INVISIBLE_MS - CLOCK_MARGIN_MS,
        `attempt 2 came ${waited} ms after the receive, before the ${INVISIBLE_MS} ms invisible duration`);
      await consumer.changeInvisibleDuration(a2, 0);

      /* Attempt 3, the last one: nacked too. */
      const [a3] = await receiveCount(consumer, 1, { ack: false });
      assertSameMessage(a3, dead, deadReceipt.messageId);
      assert.equal(a3.deliveryAttempt, 3, 'delivery attempt after a nack');
      await consumer.changeInvisibleDuration(a3, 0);

      /* Never again. */
      consumer.testQuietUntil = Date.now() + AFTER_LAST_ATTEMPT_QUIET_MS;
      await assertNothingToReceive(consumer, `after attempt ${MAX_ATTEMPTS} of ${MAX_ATTEMPTS} was nacked`);

      /* A group that has dead-lettered nothing has an empty DLQ (or none). */
      const fresh = uniqueName('g05_fresh');
      await createGroup(server, { name: fresh });
      const empty = await deadLetters(fresh);
      assert.deepEqual(empty.messages, [], `GET dlq of a fresh group: ${empty.answer}`);
      t.diagnostic(`GET dlq of a fresh group: ${empty.answer}`);

      /* In the dead-letter queue, as the admin API shows it… */
      const letters = await waitForDeadLetters(group, 1);
      assert.equal(letters.length, 1, `only the unacked message is dead-lettered: ${JSON.stringify(letters)}`);
      assertDeadLetter(letters[0], dead, deadReceipt.messageId, MAX_ATTEMPTS, 'dead letter');

      /* …and stored in %DLQ%<group>. */
      const dlqTopic = `%DLQ%${group}`;
      const stored = await readStored(server, dlqTopic, 0, 0, 10);
      assert.equal(stored?.messages?.length, 1, `GET /v1/messages of ${dlqTopic} queue 0: ${JSON.stringify(stored)}`);
      const s = stored.messages[0];
      assert.ok(Buffer.compare(adminBody(s), dead.body) === 0, `${dlqTopic}: body differs`);
      assert.equal(s.properties?.DLQ_ORIGIN_TOPIC, topic, `${dlqTopic}: DLQ_ORIGIN_TOPIC in ${JSON.stringify(s.properties)}`);
      assert.equal(s.properties?.DLQ_ORIGIN_MESSAGE_ID, deadReceipt.messageId,
        `${dlqTopic}: DLQ_ORIGIN_MESSAGE_ID in ${JSON.stringify(s.properties)}`);
      assert.equal(s.properties?.DLQ_ATTEMPTS, String(MAX_ATTEMPTS),
        `${dlqTopic}: DLQ_ATTEMPTS in ${JSON.stringify(s.properties)}`);

      /* Redrive: back in the topic, delivered as new, acked for good. */
      const redriven = await redriveDlq(server, group);
      assert.equal(redriven?.redriven, 1, `POST dlq/redrive answered ${JSON.stringify(redriven)}`);
      const [again] = await receiveCount(consumer, 1, { ack: false });
      assertSameMessage(again, dead, deadReceipt.messageId);
      assert.equal(again.deliveryAttempt, 1, 'a redriven message starts again at delivery attempt 1');
      await consumer.ack(again);
      await assertNothingToReceive(consumer, 'after the redriven message was acked');

      /* The dead letter went back once: a second redrive has nothing to send. */
      const second = await redriveDlq(server, group);
      assert.equal(second?.redriven, 0, `a second POST dlq/redrive answered ${JSON.stringify(second)}`);
      consumer.testQuietUntil = Date.now() + 5_000;
      await assertNothingToReceive(consumer, 'after a second redrive');
      const after = await deadLetters(group);
      t.diagnostic(`GET dlq after the redrive: ${after.answer.slice(0, 300)}`);
    });
  }));

test('a push consumer whose listener fails dead-letters the message after max_attempts',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async (t) => {
    const MAX_ATTEMPTS = 2;
    const N = 8;
    const RETURNS_FAILURE = 3;
    const THROWS = 5;
    const FAILING = [RETURNS_FAILURE, THROWS];
    const topic = uniqueName('t05_push');
    const group = uniqueName('g05_push');
    await createTopic(server, topic, 'NORMAL');
    const created = await createGroup(server,
      { name: group, retry: { max_attempts: MAX_ATTEMPTS, kind: 'customized', steps_ms: [1000] } });
    assert.equal(created?.retry?.max_attempts, MAX_ATTEMPTS, `POST /v1/groups answered ${JSON.stringify(created)}`);

    const deliveries = new Map(); /* index → [MessageView] */
    const consume = (view) => {
      const m = /^msg (\d+) /.exec(view.body.subarray(0, 24).toString('latin1'));
      const i = m ? Number(m[1]) : -1;
      deliveries.set(i, [...(deliveries.get(i) ?? []), view]);
      if (i === RETURNS_FAILURE) return ConsumeResult.FAILURE;
      if (i === THROWS) throw new Error(`listener fails on message ${i} on purpose`);
      return ConsumeResult.SUCCESS;
    };
    await withClients(async (use) => {
      const consumer = use(await startPushConsumer(server, { group, subscriptions: { [topic]: '*' }, consume }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = Array.from({ length: N }, (_, i) => makeMessage(topic, i, { tag: `p${i}` }));
      const receipts = await sendAll(producer, sent, 4);

      await waitFor(() => deliveries.size >= N, RECEIVE_TIMEOUT_MS,
        () => `all ${N} messages consumed at least once (have ${deliveries.size})`);
      const letters = await waitForDeadLetters(group, FAILING.length);
      /* A quiet period: a delivery after the dead-lettering would show up. */
      await sleep(5_000);
      await shutdownClient(consumer);

      assert.equal(deliveries.has(-1), false, 'messages that are not from this test');
      for (let i = 0; i < N; i++) {
        const views = deliveries.get(i) ?? [];
        const attempts = views.map((v) => v.deliveryAttempt);
        if (FAILING.includes(i)) {
          assert.deepEqual(attempts, [1, 2], `message ${i} (its listener fails): delivery attempts`);
        } else {
          assert.deepEqual(attempts, [1], `message ${i}: delivery attempts`);
        }
        for (const v of views) assertSameMessage(v, sent[i], receipts[i].messageId);
      }

      const listed = await deadLetters(group);
      assert.equal(listed.messages.length, FAILING.length,
        `exactly the failing messages are dead-lettered: ${JSON.stringify(listed.messages.map((e) => e.message_id))}`);
      const byId = new Map(letters.map((e) => [e.message_id, e]));
      for (const i of FAILING) {
        const e = byId.get(receipts[i].messageId);
        assert.ok(e, `message ${i} (${receipts[i].messageId}) is not in the dead-letter queue`);
        assertDeadLetter(e, sent[i], receipts[i].messageId, MAX_ATTEMPTS, `dead letter of message ${i}`);
      }
      t.diagnostic(`dead letters: ${letters.map((e) => `${e.message_id} attempts ${e.attempts}`).join(', ')}`);
    });
  }));
