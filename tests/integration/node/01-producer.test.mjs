// 01 producer: the official Node.js Producer against a real confluxd.
// Normal messages with tags, keys and properties are accepted and each result
// carries the message id; a producer routes topics on demand and sends in
// parallel; a message of the wrong type for its topic is refused with the
// client's error.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Confluxd } from './lib/server.mjs';
import {
  startProducer, withClients, uniqueName, makeMessage, sendAll, createTopic,
  rocketmqCode, Code, MESSAGE_ID_RE,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 180_000;
const server = new Confluxd('01-producer');

before(() => server.start());
after(() => server.stop());

function assertReceipts(receipts, n) {
  assert.equal(receipts.length, n);
  const ids = new Set();
  for (const r of receipts) {
    assert.match(r.messageId, MESSAGE_ID_RE, `send result message id ${r.messageId}`);
    assert.equal(typeof r.offset, 'number', 'send result offset');
    assert.ok(r.offset >= 0, `send result offset ${r.offset}`);
    ids.add(r.messageId);
  }
  assert.equal(ids.size, n, 'message ids are distinct');
}

test('sends normal messages with tags, keys and properties; each result carries a message id',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t01_normal');
    await withClients(async (use) => {
      /* A topic given at startup: QueryRoute, then Settings on Telemetry, before startup() returns. */
      const producer = use(await startProducer(server, { topics: [topic] }));
      const receipts = [];
      for (let i = 0; i < 20; i++) {
        const msg = makeMessage(topic, i, { tag: i % 2 ? 'TagB' : 'TagA' });
        receipts.push(await producer.send(msg));
      }
      assertReceipts(receipts, 20);
      /* A message with no tag, no keys and no properties is fine too. */
      const bare = await producer.send({ topic, body: Buffer.from('bare') });
      assert.match(bare.messageId, MESSAGE_ID_RE);
    });
  }));

test('a producer routes topics it was not started with and sends in parallel',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topicA = uniqueName('t01_lazyA');
    const topicB = uniqueName('t01_lazyB');
    await withClients(async (use) => {
      /* No topics at startup: no route and no Settings until the first send. */
      const producer = use(await startProducer(server, {}));
      const a = Array.from({ length: 100 }, (_, i) => makeMessage(topicA, i, { tag: 'p' }));
      const b = Array.from({ length: 20 }, (_, i) => makeMessage(topicB, i));
      const [ra, rb] = await Promise.all([sendAll(producer, a, 16), sendAll(producer, b, 4)]);
      assertReceipts(ra, 100);
      assertReceipts(rb, 20);
    });
  }));

test('a message of the wrong type for its topic is refused with the client error',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const fifoTopic = uniqueName('t01_fifo');
    const normalTopic = uniqueName('t01_typed');
    await createTopic(server, fifoTopic, 'FIFO', 2);
    await createTopic(server, normalTopic, 'NORMAL', 2);

    /* The client refuses before sending when the route's accept_message_types
     * lack the type (TypeError "Current message type not match with topic
     * accept message types"); a server that tells the client not to validate
     * answers MESSAGE_PROPERTY_CONFLICT_WITH_TYPE instead. Either is the
     * client's error for this case. */
    const isTypeError = (err) => {
      const ok = (err instanceof TypeError && /message type/i.test(err.message)) ||
        rocketmqCode(err) === Code.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE;
      assert.ok(ok, `expected a message-type error, got ${err?.name}: ${err?.message}`);
      return true;
    };

    await withClients(async (use) => {
      /* One topic at startup (see startProducer); the other is routed on first use. */
      const producer = use(await startProducer(server, { topics: [fifoTopic] }));

      /* The right types go through: the topics themselves work. */
      const fifo = await producer.send({ ...makeMessage(fifoTopic, 1), messageGroup: 'group-1' });
      assert.match(fifo.messageId, MESSAGE_ID_RE);
      const normal = await producer.send(makeMessage(normalTopic, 2));
      assert.match(normal.messageId, MESSAGE_ID_RE);

      /* Normal message (no message group) to the FIFO topic. */
      await assert.rejects(producer.send(makeMessage(fifoTopic, 3)), isTypeError);
      /* FIFO message (with a message group) to the NORMAL topic. */
      await assert.rejects(producer.send({ ...makeMessage(normalTopic, 4), messageGroup: 'group-1' }),
        isTypeError);

      /* The producer is still usable afterwards. */
      const again = await producer.send(makeMessage(normalTopic, 5));
      assert.match(again.messageId, MESSAGE_ID_RE);
    });
  }));
