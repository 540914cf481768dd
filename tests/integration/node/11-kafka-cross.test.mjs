// 11 Kafka across protocols: kafkajs (a real Kafka client) creates a topic
// with 3 partitions through the admin API and produces keyed records with
// headers (acks=1 and acks=-1); the official RocketMQ Node.js SimpleConsumer
// receives every one of them, body, key and headers (as properties) intact.
// Same storage, two protocols.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import { Confluxd, freePort } from './lib/server.mjs';
import {
  startSimpleConsumer, withClients, uniqueName, receiveCount,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 180_000;
const kafkaPort = await freePort();
const server = new Confluxd('11-kafka-cross', { args: ['--kafka-listen', `127.0.0.1:${kafkaPort}`] });

before(() => server.start());
after(() => server.stop());

test('records produced with kafkajs reach a RocketMQ consumer intact',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    const topic = uniqueName('t11_cross');
    const group = uniqueName('g11_cross');
    const kafka = new Kafka({
      clientId: 'conflux-it', brokers: [`127.0.0.1:${kafkaPort}`], logLevel: logLevel.NOTHING,
    });
    const admin = kafka.admin();
    await admin.connect();
    try {
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), true,
        'createTopics created the topic');
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] }), false,
        'a second createTopics finds it exists');
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(md.topics[0].partitions.length, 3, 'three partitions');
    } finally {
      await admin.disconnect();
    }

    await withClients(async (use) => {
      /* The consumer subscribes first: a new group starts at the end. */
      const consumer = use(await startSimpleConsumer(server,
        { group, subscriptions: { [topic]: '*' }, name: 'rocketmq-consumer' }));
      const producer = kafka.producer();
      await producer.connect();
      const sent = new Map();
      try {
        for (const acks of [1, -1]) {
          const messages = Array.from({ length: 10 }, (_, i) => {
            const n = sent.size + i;
            return { key: `key-${n}`, value: `value ${n} acks ${acks}`, headers: { idx: String(n), proto: 'kafka' } };
          });
          await producer.send({ topic, acks, messages });
          for (const m of messages) sent.set(m.key, m);
        }
      } finally {
        await producer.disconnect();
      }

      const views = await receiveCount(consumer, sent.size);
      const seen = new Set();
      for (const v of views) {
        const key = v.keys[0];
        const m = sent.get(key);
        assert.ok(m, `received a record with an unknown key ${key}`);
        assert.ok(!seen.has(key), `record ${key} received twice`);
        seen.add(key);
        assert.equal(v.body.toString(), m.value, `body of ${key}`);
        assert.equal(v.properties.get('idx'), m.headers.idx, `header idx of ${key}`);
        assert.equal(v.properties.get('proto'), 'kafka', `header proto of ${key}`);
        assert.ok(v.messageId, `record ${key} has a message id`);
      }
      assert.equal(seen.size, sent.size, 'every record received');
    });
  }));
