// 13 MQTT with mqtt.js (npm `mqtt`, v5), a real MQTT client, against
// confluxd's MQTT listener (3.1.1 and 5.0).
//
// - Persistent sessions (3.1.1 clean session 0; 5.0 clean start 0 with a
//   session expiry interval): QoS 1 and QoS 2 messages published while the
//   subscriber is away are delivered when it comes back, exactly once each
//   (nothing else arrives before a marker published after the reconnect):
//   after a plain reconnect, after a SIGTERM restart of confluxd and after
//   a kill -9 (once the publisher had every acknowledgement). CONNACK says
//   the session is present.
// - Last will: a client whose socket is destroyed without DISCONNECT gets
//   its will published; one that sends DISCONNECT does not.
// - Shared subscriptions: 90 messages to `$share/<g>/<topic>` with three
//   members reach each exactly one member, and every member gets some; a
//   plain subscriber of the topic gets all 90.
// - MQTT 5: topic aliases from the publisher (set, used with an empty
//   topic, rebound to another topic); user properties, content type,
//   response topic, correlation data and the payload format indicator
//   arrive intact.
// - Message expiry: a message with an expiry interval of 1 s, queued for an
//   absent persistent session, is not delivered when the session returns
//   after more than 2 s; one with a long interval is, with the remaining
//   interval. An online subscriber gets both at once.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { Confluxd, freePort } from './lib/server.mjs';
import { withTimeout } from './lib/client.mjs';

const TEST_TIMEOUT_MS = 60_000;
const WAIT_MS = 15_000; /* for any one condition */
const POLL_MS = 20;
const CLIENT_OP_MS = 10_000; /* connect, subscribe, publish, end */
const SETTLE_MS = 300; /* after the last expected message: time for a duplicate to show */

const mqttPort = await freePort();
const server = new Confluxd('13-mqtt', { args: ['--mqtt-listen', `127.0.0.1:${mqttPort}`] });
const URL = `mqtt://127.0.0.1:${mqttPort}`;
const RUN = randomBytes(4).toString('hex');

/* ------------------------------------------------------------------------
 * Client log: the test's timeline and client errors, printed on failure.
 * ---------------------------------------------------------------------- */

const LOG_MAX = 2_000;
const LOG_TAIL = 200;
const liveLog = process.env.CFX_NODE_CLIENT_LOG === '1';
const clientLog = [];

function note(text) {
  const line = `${new Date().toISOString()} ${text}`;
  if (clientLog.length >= LOG_MAX) clientLog.shift();
  clientLog.push(line);
  if (liveLog) process.stderr.write(line + '\n');
}

function guarded(fn) {
  return server.guard(async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      const tail = clientLog.slice(-LOG_TAIL);
      process.stderr.write(`\n==== 13-mqtt: test "${t?.name ?? '?'}" failed: ${err?.message ?? err}\n` +
        `==== client log (last ${tail.length} of ${clientLog.length} lines):\n${tail.join('\n')}\n` +
        '==== end of client log\n');
      throw err;
    }
  });
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/** Polls `cond` until it returns a truthy value; throws with `detail()` after `ms`. */
async function waitFor(cond, what, { ms = WAIT_MS, detail = () => '' } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${detail()}`);
    await sleep(POLL_MS);
  }
}

/* Every client still open when a test ends is closed (forcibly) in after(). */
const openClients = new Set();

/**
 * Connects one client (no automatic reconnect) and records every message it
 * receives from the first packet on: {name, client, connack, received[]}.
 * Each received entry is {topic, payload (Buffer), qos, dup, props, t}.
 */
async function connect(name, opts = {}) {
  const c = { name, received: [], errors: [], connack: null };
  const client = mqtt.connect(URL, {
    clientId: name,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: CLIENT_OP_MS,
    keepalive: 30,
    ...opts,
  });
  c.client = client;
  openClients.add(client);
  client.on('message', (topic, payload, packet) => {
    c.received.push({ topic, payload: Buffer.from(payload), qos: packet.qos, dup: packet.dup,
      props: packet.properties ?? {}, t: Date.now() });
  });
  client.on('error', (err) => {
    c.errors.push(err);
    note(`${name}: client error: ${err?.message ?? err}`);
  });
  client.on('close', () => note(`${name}: connection closed`));
  c.connack = await withTimeout(new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  }), CLIENT_OP_MS + 1_000, `${name}: connect`);
  note(`${name}: connected (v${opts.protocolVersion ?? 4}, session present ${c.connack.sessionPresent}, ` +
    `properties ${JSON.stringify(c.connack.properties ?? {})})`);
  return c;
}

/** Subscribes and checks the granted QoS of each filter. */
async function subscribe(c, filters, qos, opts = {}) {
  const granted = await withTimeout(c.client.subscribeAsync(filters, { qos, ...opts }), CLIENT_OP_MS,
    `${c.name}: subscribe ${filters}`);
  for (const g of granted) {
    assert.equal(g.qos, qos, `${c.name}: SUBACK for ${g.topic}: granted ${g.qos}, asked for ${qos}`);
  }
}

/** Publishes and waits for its acknowledgement (PUBACK, or PUBREC + PUBCOMP). */
async function publish(c, topic, payload, opts = {}) {
  await withTimeout(c.client.publishAsync(topic, payload, opts), CLIENT_OP_MS,
    `${c.name}: publish to "${topic}" (QoS ${opts.qos ?? 0})`);
}

/** DISCONNECT after the in-flight flows completed, then closes the socket. */
async function end(c) {
  if (!openClients.has(c.client)) return;
  openClients.delete(c.client);
  await withTimeout(c.client.endAsync(), CLIENT_OP_MS, `${c.name}: end`);
}

function payloads(c, topic) {
  return c.received.filter((r) => topic === undefined || r.topic === topic).map((r) => r.payload.toString());
}

/** Waits until `c` has received every payload of `want` (on any topic). */
async function waitReceived(c, want, what) {
  await waitFor(() => {
    const got = new Set(payloads(c));
    return want.every((p) => got.has(p));
  }, what, {
    detail: () => {
      const got = new Set(payloads(c));
      return `${c.name} is missing ${JSON.stringify(want.filter((p) => !got.has(p)))}; ` +
        `it received ${JSON.stringify(payloads(c))}`;
    },
  });
}

/** Asserts every payload of `want` arrived exactly once and nothing else did. */
function assertExactlyOnce(c, want, what) {
  const counts = new Map();
  for (const p of payloads(c)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const wanted = new Set(want);
  const extra = [...counts.keys()].filter((p) => !wanted.has(p));
  assert.deepEqual(extra, [], `${what}: ${c.name} received unexpected messages ${JSON.stringify(extra)}`);
  const twice = [...counts].filter(([, n]) => n > 1).map(([p, n]) => `${p} ×${n}`);
  assert.deepEqual(twice, [], `${what}: ${c.name} received messages more than once`);
  const missing = want.filter((p) => !counts.has(p));
  assert.deepEqual(missing, [], `${what}: ${c.name} did not receive`);
}

/* ------------------------------------------------------------------------
 * Server lifecycle
 * ---------------------------------------------------------------------- */

async function startServer(how) {
  const from = server.logSince(0).length;
  await how();
  const line = `mqtt: MQTT 3.1.1 and 5.0 are on 127.0.0.1:${mqttPort}`;
  await waitFor(() => server.logSince(0).slice(from).includes(line),
    `the server log says "${line}"`);
}

before(() => startServer(() => server.start()));
after(async () => {
  for (const client of [...openClients]) {
    openClients.delete(client);
    await withTimeout(client.endAsync(true), CLIENT_OP_MS, 'leftover client').catch(() => {});
  }
  await server.stop();
});

/* ------------------------------------------------------------------------
 * Persistent sessions
 * ---------------------------------------------------------------------- */

const PTOPIC = `it13/p/${RUN}`;
const SESSIONS = [
  { id: `it13-p311-${RUN}`, opts: { protocolVersion: 4, clean: false } },
  { id: `it13-p5-${RUN}`, opts: { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } } },
];
const persistent = { created: false };

/** Creates both persistent sessions with a QoS 2 subscription of PTOPIC/#, then leaves. */
async function createSessions() {
  for (const s of SESSIONS) {
    const c = await connect(s.id, s.opts);
    assert.equal(c.connack.sessionPresent, false, `${s.id}: a new session is not present`);
    await subscribe(c, `${PTOPIC}/#`, 2);
    await end(c);
  }
  persistent.created = true;
}

/**
 * One round: both sessions are away; 4 QoS 1 and 4 QoS 2 messages are
 * published (each acknowledged), then `between()` runs (nothing, a restart,
 * a kill -9); the sessions come back without subscribing and must receive
 * exactly those messages, once each, before a marker published after they
 * returned.
 */
async function offlineRound(label, between) {
  const topic = `${PTOPIC}/${label}`;
  const want = [];
  const pub = await connect(`it13-pub-${label}-${RUN}`, { protocolVersion: 5 });
  for (let i = 0; i < 8; i++) {
    const qos = i % 2 ? 2 : 1;
    const p = `${label} ${i} q${qos} ${RUN}`;
    await publish(pub, topic, p, { qos });
    want.push(p);
  }
  await end(pub);
  note(`${label}: published ${want.length} messages (QoS 1 and 2) while the sessions were away`);
  await between();

  const subs = [];
  try {
    for (const s of SESSIONS) {
      const c = await connect(s.id, s.opts);
      subs.push(c);
      assert.equal(c.connack.sessionPresent, true, `${label}: ${s.id}: CONNACK session present`);
    }
    const marker = `${label} marker ${RUN}`;
    const mp = await connect(`it13-mark-${label}-${RUN}`, { protocolVersion: 4 });
    await publish(mp, topic, marker, { qos: 1 });
    await end(mp);
    for (const c of subs) {
      await waitReceived(c, [...want, marker], `${label}: ${c.name} receives the queued messages and the marker`);
    }
    await sleep(SETTLE_MS);
    for (const c of subs) {
      assertExactlyOnce(c, [...want, marker], label);
      for (const r of c.received) {
        assert.equal(r.topic, topic, `${label}: ${c.name}: topic of "${r.payload}"`);
        const qos = Number(/ q(\d) /.exec(r.payload.toString())?.[1] ?? 1);
        assert.equal(r.qos, qos, `${label}: ${c.name}: delivered QoS of "${r.payload}"`);
      }
      assert.deepEqual(c.errors, [], `${label}: ${c.name}: client errors`);
    }
  } finally {
    for (const c of subs) await end(c);
  }
}

test('persistent sessions (3.1.1 and 5.0) get the QoS 1/2 messages published while away, after a reconnect',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    await createSessions();
    await offlineRound('reconnect', async () => {});
  }));

test('... after a SIGTERM restart of confluxd', { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
  if (!persistent.created) return t.skip('needs the persistent sessions');
  await offlineRound('sigterm', () => startServer(() => server.restart()));
}));

test('... after a kill -9 of confluxd', { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
  if (!persistent.created) return t.skip('needs the persistent sessions');
  await offlineRound('kill9', async () => {
    await server.kill();
    note(`confluxd killed (${JSON.stringify(server.exit)})`);
    await startServer(() => server.start());
  });
}));

/* ------------------------------------------------------------------------
 * Last will
 * ---------------------------------------------------------------------- */

test('last will: published when the socket goes away without DISCONNECT, not after DISCONNECT',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const topic = `it13/will/${RUN}`;
    const watcher = await connect(`it13-will-watch-${RUN}`, { protocolVersion: 5 });
    try {
      await subscribe(watcher, topic, 1);

      /* 3.1.1: the socket is destroyed, no DISCONNECT. */
      const dies = await connect(`it13-will-dies-${RUN}`,
        { protocolVersion: 4, will: { topic, payload: Buffer.from(`gone 311 ${RUN}`), qos: 1, retain: false } });
      openClients.delete(dies.client);
      dies.client.stream.destroy();
      await waitReceived(watcher, [`gone 311 ${RUN}`], 'the 3.1.1 client\'s will arrives');

      /* A clean DISCONNECT: no will. */
      const polite = await connect(`it13-will-polite-${RUN}`,
        { protocolVersion: 5, will: { topic, payload: Buffer.from(`polite ${RUN}`), qos: 1, retain: false } });
      await end(polite);

      /* 5.0: the socket is destroyed; its will comes after the one the polite client must not have sent. */
      const dies5 = await connect(`it13-will-dies5-${RUN}`,
        { protocolVersion: 5, will: { topic, payload: Buffer.from(`gone 5 ${RUN}`), qos: 1, retain: false } });
      openClients.delete(dies5.client);
      dies5.client.stream.destroy();
      await waitReceived(watcher, [`gone 5 ${RUN}`], 'the 5.0 client\'s will arrives');
      await sleep(SETTLE_MS);
      assertExactlyOnce(watcher, [`gone 311 ${RUN}`, `gone 5 ${RUN}`], 'last will');
      for (const r of watcher.received) assert.equal(r.topic, topic, 'topic of the will');
    } finally {
      await end(watcher);
    }
  }));

/* ------------------------------------------------------------------------
 * Shared subscriptions
 * ---------------------------------------------------------------------- */

test('shared subscription: 90 messages to 3 members, each message to exactly one, every member gets some',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const topic = `it13/s/${RUN}`;
    const N = 90;
    const clients = [];
    try {
      const members = [];
      for (let i = 0; i < 3; i++) {
        const m = await connect(`it13-share-${i}-${RUN}`, { protocolVersion: 5 });
        clients.push(m);
        members.push(m);
        await subscribe(m, `$share/g13/${topic}`, 1);
      }
      const plain = await connect(`it13-share-plain-${RUN}`, { protocolVersion: 4 });
      clients.push(plain);
      await subscribe(plain, topic, 1);

      const pub = await connect(`it13-share-pub-${RUN}`, { protocolVersion: 5 });
      clients.push(pub);
      const want = Array.from({ length: N }, (_, i) => `share ${i} ${RUN}`);
      await Promise.all(want.map((p) => publish(pub, topic, p, { qos: 1 })));
      note(`shared: published ${N}`);

      const all = () => members.flatMap((m) => payloads(m));
      await waitFor(() => new Set(all()).size === N, `the members together receive all ${N} messages`, {
        detail: () => `received ${members.map((m) => `${m.name}: ${m.received.length}`).join(', ')}; ` +
          `missing ${JSON.stringify(want.filter((p) => !all().includes(p)))}`,
      });
      await waitReceived(plain, want, `the plain subscriber receives all ${N}`);
      await sleep(SETTLE_MS);

      const owner = new Map();
      for (const m of members) {
        for (const r of m.received) {
          const p = r.payload.toString();
          assert.equal(r.topic, topic, `${m.name}: topic of "${p}"`);
          assert.ok(!owner.has(p), `"${p}" delivered to ${owner.get(p)} and to ${m.name}`);
          owner.set(p, m.name);
        }
      }
      assert.equal(owner.size, N, 'every message delivered to one member');
      const counts = members.map((m) => m.received.length);
      note(`shared: per member ${JSON.stringify(counts)}`);
      for (const m of members) assert.ok(m.received.length > 0, `${m.name} received some (counts ${counts})`);
      assertExactlyOnce(plain, want, 'plain subscriber beside the shared group');
    } finally {
      for (const c of clients) await end(c);
    }
  }));

/* ------------------------------------------------------------------------
 * MQTT 5 topic aliases and properties
 * ---------------------------------------------------------------------- */

test('MQTT 5: topic aliases from the publisher; user properties, content type, response topic, correlation data',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const base = `it13/a/${RUN}`;
    const clients = [];
    try {
      const sub = await connect(`it13-alias-sub-${RUN}`, { protocolVersion: 5, properties: { topicAliasMaximum: 10 } });
      clients.push(sub);
      await subscribe(sub, `${base}/#`, 1);
      const pub = await connect(`it13-alias-pub-${RUN}`, { protocolVersion: 5 });
      clients.push(pub);
      assert.equal(pub.connack.properties?.topicAliasMaximum, 64, 'CONNACK topic alias maximum');

      const props = {
        userProperties: { k1: 'v1', 'ключ': 'значение ✓', empty: '' },
        contentType: 'application/x-it13; charset=utf-8',
        responseTopic: `it13/reply/${RUN}`,
        correlationData: Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]),
        payloadFormatIndicator: true,
      };
      /* [topic sent, alias, payload, topic expected] */
      const steps = [
        [`${base}/one`, 1, 'a1'],
        ['', 1, 'a2', `${base}/one`],
        [`${base}/two`, 1, 'a3'],
        ['', 1, 'a4', `${base}/two`],
        [`${base}/three`, 7, 'a5'],
        ['', 7, 'a6', `${base}/three`],
        ['', 1, 'a7', `${base}/two`],
      ];
      for (const [topic, alias, payload] of steps) {
        await publish(pub, topic, payload, { qos: 1, properties: { ...props, topicAlias: alias } });
      }
      const want = steps.map((s) => s[2]);
      await waitReceived(sub, want, 'the subscriber receives every aliased message');
      await sleep(SETTLE_MS);
      assertExactlyOnce(sub, want, 'topic aliases');
      for (const [topic, , payload, expected] of steps) {
        const r = sub.received.find((x) => x.payload.toString() === payload);
        assert.equal(r.topic, expected ?? topic, `topic of ${payload}`);
        const p = r.props;
        assert.deepEqual({ ...p.userProperties }, props.userProperties, `${payload}: user properties`);
        assert.equal(p.contentType, props.contentType, `${payload}: content type`);
        assert.equal(p.responseTopic, props.responseTopic, `${payload}: response topic`);
        assert.ok(Buffer.isBuffer(p.correlationData) && p.correlationData.equals(props.correlationData),
          `${payload}: correlation data ${p.correlationData?.toString('hex')}`);
        assert.equal(p.payloadFormatIndicator, true, `${payload}: payload format indicator`);
      }
      assert.deepEqual(pub.errors, [], 'publisher: client errors');
      assert.deepEqual(sub.errors, [], 'subscriber: client errors');
    } finally {
      for (const c of clients) await end(c);
    }
  }));

/* ------------------------------------------------------------------------
 * Message expiry
 * ---------------------------------------------------------------------- */

test('message expiry: a 1 s message is not delivered to a session back after 2.5 s; a long one is',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const topic = `it13/e/${RUN}`;
    const sessionOpts = { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } };
    const id = `it13-exp-${RUN}`;
    const clients = [];
    try {
      const s1 = await connect(id, sessionOpts);
      await subscribe(s1, topic, 1);
      await end(s1);

      const online = await connect(`it13-exp-online-${RUN}`, { protocolVersion: 5 });
      clients.push(online);
      await subscribe(online, topic, 1);

      const pub = await connect(`it13-exp-pub-${RUN}`, { protocolVersion: 5 });
      clients.push(pub);
      const short = [`short q1 ${RUN}`, `short q2 ${RUN}`];
      const long = `long ${RUN}`;
      await publish(pub, topic, short[0], { qos: 1, properties: { messageExpiryInterval: 1 } });
      await publish(pub, topic, short[1], { qos: 2, properties: { messageExpiryInterval: 1 } });
      await publish(pub, topic, long, { qos: 1, properties: { messageExpiryInterval: 3600 } });
      const published = Date.now();
      await waitReceived(online, [...short, long], 'an online subscriber receives all three at once');

      /* The expiry itself is the wait: the 1 s messages must be over when the session returns. */
      await sleep(Math.max(0, published + 2_500 - Date.now()));
      const s2 = await connect(id, sessionOpts);
      clients.push(s2);
      assert.equal(s2.connack.sessionPresent, true, 'CONNACK session present');
      const marker = `exp marker ${RUN}`;
      await publish(pub, topic, marker, { qos: 1 });
      await waitReceived(s2, [long, marker], 'the returning session receives the long-lived message and the marker');
      await sleep(SETTLE_MS);
      assertExactlyOnce(s2, [long, marker], 'message expiry (the 1 s messages must not arrive)');
      const left = s2.received.find((r) => r.payload.toString() === long).props.messageExpiryInterval;
      assert.ok(left > 3500 && left <= 3600, `the long message carries its remaining expiry interval: ${left}`);
    } finally {
      for (const c of clients) await end(c);
    }
  }));
