// 02 simple consumer: the official Node.js SimpleConsumer against a real
// confluxd. A tag filter delivers exactly the matching messages with body,
// tag, keys and properties intact; every group gets its own copy; an acked
// message is gone; an unacked one comes back after its invisible duration with
// a new receipt handle (the old one is refused); ChangeInvisibleDuration
// pushes the next delivery later and returns a handle that acks.
//
// Each consumer is started (its Settings reach the server) before anything is
// sent, so the tests do not depend on where a new group starts reading.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, startSimpleConsumer, withClients, uniqueName, makeMessage, sendAll,
  receiveCount, assertNothingToReceive, assertSameMessage, messageIndex, rocketmqCode, Code,
  INVISIBLE_MS, CLOCK_MARGIN_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 240_000;
const server = new Confluxd('02-simple-consumer');

before(() => server.start());
after(() => server.stop());

/* A copy of a MessageView that keeps the current receipt handle (the client
 * replaces the handle in place on changeInvisibleDuration). */
function snapshot(view) {
  return Object.assign(Object.create(Object.getPrototypeOf(view)), view);
}

test('a tag filter receives exactly the matching messages, intact; ack removes them',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t02_tags');
    const groupKeep = uniqueName('g02_keep');
    const groupAll = uniqueName('g02_all');
    const groupOr = uniqueName('g02_or');
    await withClients(async (use) => {
      const keep = use(await startSimpleConsumer(server,
        { group: groupKeep, subscriptions: { [topic]: 'keep' }, name: 'keep' }));
      const all = use(await startSimpleConsumer(server,
        { group: groupAll, subscriptions: { [topic]: '*' }, name: 'all' }));
      const or = use(await startSimpleConsumer(server,
        { group: groupOr, subscriptions: { [topic]: 'keep||other' }, name: 'or' }));
      const producer = use(await startProducer(server, { topics: [topic] }));

      /* 30 messages: tags keep / drop / other in turn. */
      const tags = ['keep', 'drop', 'other'];
      const sent = Array.from({ length: 30 }, (_, i) => makeMessage(topic, i, { tag: tags[i % 3] }));
      const receipts = await sendAll(producer, sent, 4);
      const byTag = (set) => sent.map((m, i) => i).filter((i) => set.includes(sent[i].tag));

      const check = async (consumer, wanted, what) => {
        const views = await receiveCount(consumer, wanted.length);
        const seen = new Map();
        for (const v of views) {
          const i = messageIndex(v);
          assert.ok(wanted.includes(i), `${what}: message ${i} (tag ${v.tag}) does not match the filter`);
          assert.ok(!seen.has(i), `${what}: message ${i} delivered twice`);
          seen.set(i, v);
          assertSameMessage(v, sent[i], receipts[i].messageId);
          assert.equal(v.deliveryAttempt, 1, `${what}: first delivery attempt of message ${i}`);
          assert.ok(v.receiptHandle, `${what}: message ${i} has a receipt handle`);
        }
      };
      await check(keep, byTag(['keep']), 'filter "keep"');
      await check(all, byTag(tags), 'filter "*"');
      await check(or, byTag(['keep', 'other']), 'filter "keep||other"');
      /* All acked: nothing more, in particular none of the other tags, and no
       * acked message once its invisible duration is over. */
      await assertNothingToReceive(keep, 'filter "keep"');
      await assertNothingToReceive(all, 'filter "*"');
      await assertNothingToReceive(or, 'filter "keep||other"');
    });
  }));

test('an unacked message comes back after its invisible duration, with a new handle',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t02_invisible');
    const group = uniqueName('g02_invisible');
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const msg = makeMessage(topic, 7, { tag: 'inv' });
      const receipt = await producer.send(msg);

      const t0 = Date.now(); /* before the receive: the server pops later than this */
      const [first] = await receiveCount(consumer, 1, { ack: false, invisibleMs: INVISIBLE_MS });
      assertSameMessage(first, msg, receipt.messageId);
      assert.equal(first.deliveryAttempt, 1);

      /* Not acked: it comes back, not before the invisible duration. */
      const [second] = await receiveCount(consumer, 1, { ack: false });
      const waited = Date.now() - t0;
      assertSameMessage(second, msg, receipt.messageId);
      assert.ok(waited >= INVISIBLE_MS - CLOCK_MARGIN_MS,
        `redelivered after ${waited} ms, before the ${INVISIBLE_MS} ms invisible duration`);
      assert.equal(second.deliveryAttempt, 2, 'delivery attempt of the redelivery');
      assert.notEqual(second.receiptHandle, first.receiptHandle, 'a redelivery has a new receipt handle');

      /* The first handle is expired and superseded. */
      await assert.rejects(consumer.ack(first), (err) => {
        assert.equal(rocketmqCode(err), Code.INVALID_RECEIPT_HANDLE,
          `ack with the old handle: ${err?.message}`);
        return true;
      });
      await consumer.ack(second);
      await assertNothingToReceive(consumer, 'after the ack of the redelivery');
    });
  }));

test('changeInvisibleDuration delays the next delivery and its new handle acks',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t02_change');
    const group = uniqueName('g02_change');
    const EXTENDED_MS = 2 * INVISIBLE_MS;
    await withClients(async (use) => {
      const consumer = use(await startSimpleConsumer(server, { group, subscriptions: { [topic]: '*' } }));
      const producer = use(await startProducer(server, { topics: [topic] }));
      const sent = [makeMessage(topic, 0), makeMessage(topic, 1)];
      const receipts = await sendAll(producer, sent, 1);

      const views = await receiveCount(consumer, 2, { ack: false });
      const byIndex = new Map(views.map((v) => [messageIndex(v), v]));
      assert.deepEqual([...byIndex.keys()].sort(), [0, 1]);
      const a = byIndex.get(0);
      const b = byIndex.get(1);
      assertSameMessage(a, sent[0], receipts[0].messageId);
      assertSameMessage(b, sent[1], receipts[1].messageId);

      /* b first (its handle is young): extend and leave it; it must not come
       * back before the new duration. */
      const tChange = Date.now();
      await consumer.changeInvisibleDuration(b, EXTENDED_MS);

      /* a: extend, then ack with the handle the change returned. */
      const aOld = snapshot(a);
      await consumer.changeInvisibleDuration(a, EXTENDED_MS);
      assert.ok(a.receiptHandle && a.receiptHandle !== aOld.receiptHandle,
        'changeInvisibleDuration returns a new receipt handle');
      await assert.rejects(consumer.ack(aOld), (err) => {
        assert.equal(rocketmqCode(err), Code.INVALID_RECEIPT_HANDLE,
          `ack with the handle from before the change: ${err?.message}`);
        return true;
      });
      await consumer.ack(a);

      const [again] = await receiveCount(consumer, 1, { ack: false, timeoutMs: EXTENDED_MS + 90_000 });
      const waited = Date.now() - tChange;
      assert.equal(messageIndex(again), 1, 'only the unacked message comes back');
      assertSameMessage(again, sent[1], receipts[1].messageId);
      assert.ok(waited >= EXTENDED_MS - CLOCK_MARGIN_MS,
        `redelivered ${waited} ms after the change to ${EXTENDED_MS} ms`);
      assert.ok(again.deliveryAttempt >= 2, `delivery attempt ${again.deliveryAttempt} of the redelivery`);
      await consumer.ack(again);
      await assertNothingToReceive(consumer, 'after all acks');
    });
  }));
