// 00 harness: the pieces every other file relies on. The pinned client
// library loads and its three client types can be constructed (no server
// needed); confluxd starts on a fresh data directory with random ports, is
// ready (log line and, unless CFX_NODE_DRYRUN=1, the gRPC port accepting),
// restarts on the same directory and ports, and stops with exit status 0.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { Producer, SimpleConsumer, PushConsumer, ConsumeResult } from 'rocketmq-client-nodejs';
import { Confluxd, freePort } from './lib/server.mjs';
import { MemoryLogger, shutdownClient } from './lib/client.mjs';

const server = new Confluxd('00-harness');

before(() => server.start());
after(() => server.stop());

test('the client library loads and its clients can be constructed', async () => {
  const endpoints = `127.0.0.1:${await freePort()}`; /* nobody listens: nothing is called */
  const common = { endpoints, namespace: '', requestTimeout: 5_000 };
  const clients = [
    new Producer({ ...common, logger: new MemoryLogger('p'), topics: ['T'] }),
    new SimpleConsumer({ ...common, logger: new MemoryLogger('s'), consumerGroup: 'G',
      subscriptions: new Map([['T', '*']]), awaitDuration: 5_000 }),
    new PushConsumer({ ...common, logger: new MemoryLogger('q'), consumerGroup: 'G',
      subscriptions: new Map([['T', 'a||b']]), messageListener: { consume: () => ConsumeResult.SUCCESS } }),
  ];
  for (const c of clients) {
    /* hostname@pid@index@base36-time */
    assert.match(c.clientId, /^[^@]+@\d+@\d+@[0-9a-z]+$/);
    assert.equal(c.isRunning(), false);
  }
  /* Never started: shutdown has no route, so it only clears the timers the constructor set. */
  for (const c of clients) await shutdownClient(c);
  assert.throws(() => new Producer({ ...common, requestTimeout: 999 }), RangeError);
});

test('confluxd restarts on the same data directory and ports and stops with status 0',
  { timeout: 120_000 }, server.guard(async () => {
    const { dataDir, grpcPort, httpPort } = server;
    assert.ok(fs.existsSync(dataDir), 'data directory created');
    assert.match(server.logSince(0), /confluxd ready/);
    await server.restart();
    assert.equal(server.dataDir, dataDir);
    assert.equal(server.grpcPort, grpcPort);
    assert.equal(server.httpPort, httpPort);
    assert.equal(server.logSince(0).match(/confluxd ready/g).length, 2, 'two starts in the log');
    if (!server.dryRun) {
      await new Promise((resolve, reject) => {
        const s = net.connect({ host: '127.0.0.1', port: grpcPort }, () => { s.destroy(); resolve(); });
        s.once('error', reject);
      });
    }
  }));
