// 15 Authentication and authorization on every protocol, with the real
// clients: the official RocketMQ Node.js client (gRPC), kafkajs and mqtt.js,
// plus the admin HTTP API (docs/security.md has the model).
//
// - Setup: the first user (admin, super) is created without credentials;
//   after that an anonymous POST /v1/users is 401, a wrong Basic password is
//   401 with WWW-Authenticate. alice (producer) and bob (consumer) are
//   created, and policies: alice PUB+GET+CREATE on topic:auth- (prefixed),
//   bob SUB+GET on topic:auth- and SUB on group:auth-; for MQTT alice PUB and
//   bob SUB on sensors/ (prefixed). alice may not read policies and bob may
//   not create a topic (403).
// - RocketMQ: alice sends 10 messages, bob's SimpleConsumer (group auth-g1)
//   receives and acks exactly those. A wrong secret, an unknown access key
//   and no credentials are UNAUTHORIZED (40100), at the first call or at
//   startup; bob sending, alice receiving, and alice acking or changing the
//   invisible duration of bob's message are FORBIDDEN (40300). The topic
//   holds exactly the 10.
// - Kafka, for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512: alice produces (the
//   topic is auto-created: she has CREATE), bob's consumer group receives
//   exactly that; a wrong password is a SASL authentication failure; bob
//   producing is TOPIC_AUTHORIZATION_FAILED and writes nothing; alice in a
//   consumer group is GROUP_AUTHORIZATION_FAILED. A client without SASL may
//   ask for ApiVersions, and is disconnected at its next request.
// - MQTT 3.1.1 and 5.0: bob subscribed to sensors/# receives alice's QoS 1
//   publish; a wrong password, an unknown user and no credentials are
//   refused with the CONNACK code of each version; bob subscribing to #, to
//   +/a, to sensors or to sensorsX/#, and alice subscribing at all, get
//   SUBACK 0x80 / 0x87 (sensors/+/temp is granted). alice publishing to
//   other/ is refused (5.0: PUBACK 0x87 for QoS 1 and retained, PUBREC 0x87
//   for QoS 2; QoS 0 and 3.1.1 dropped), her wills on other/ are not sent,
//   and nothing is delivered or retained: a super user's watcher of
//   other/# sees only a marker published after it.
// - Brute force: while alice publishes QoS 1 messages one at a time and bob
//   receives each, 1,000 MQTT sign-ins with wrong passwords (50 at a time)
//   are all refused; every round trip of alice's completes without error and
//   bob gets every message once, in order; conflux_auth_failures_total
//   {protocol="mqtt"} and conflux_auth_password_checks_total grow by at least
//   1,000. The round-trip times before and during are printed, never asserted.
// - Metrics: failures and denials are counted for each protocol the test
//   caused them on.
// - Persistence: after a SIGTERM restart on the same data directory, alice
//   still produces over Kafka SCRAM and gRPC and signs in over MQTT (her
//   first sign-in is a password check, the second is remembered); bob is
//   still denied; a wrong password is still refused.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import mqtt from 'mqtt';
import { Producer, SimpleConsumer } from 'rocketmq-client-nodejs';
import { Confluxd, freePort } from './lib/server.mjs';
import {
  MemoryLogger, withTimeout, withClients, sendAll, receiveCount,
  assertNothingToReceive, makeMessage, messageIndex, assertSameMessage,
  REQUEST_TIMEOUT_MS, CLIENT_START_TIMEOUT_MS,
} from './lib/client.mjs';

const TEST_TIMEOUT_MS = 180_000;
const WAIT_MS = 30_000; /* for any one condition */
const POLL_MS = 50;
const CLIENT_OP_MS = 15_000; /* connect, subscribe, publish, send, end */
const SETTLE_MS = 500; /* after the last expected message: time for an extra one to show */

const RMQ_MESSAGES = 10;
const KAFKA_RECORDS = 10;
const BRUTE_ATTEMPTS = 1_000;
const BRUTE_PARALLEL = 50;
const BASELINE_ROUND_TRIPS = 100;

/* apache.rocketmq.v2.Code */
const UNAUTHORIZED = 40100;
const FORBIDDEN = 40300;
/* MQTT CONNACK and reason codes */
const CONNACK = {
  4: { badPassword: 4, notAuthorized: 5 }, /* 3.1.1 return codes */
  5: { badPassword: 0x86, notAuthorized: 0x87 }, /* 5.0 reason codes */
};
const SUBACK_FAILURE = { 4: 0x80, 5: 0x87 };
const NOT_AUTHORIZED_5 = 0x87;

const kafkaPort = await freePort();
const mqttPort = await freePort();
const server = new Confluxd('15-auth', {
  args: ['--kafka-listen', `127.0.0.1:${kafkaPort}`, '--mqtt-listen', `127.0.0.1:${mqttPort}`],
});
const MQTT_URL = `mqtt://127.0.0.1:${mqttPort}`;
const RUN = randomBytes(4).toString('hex');

const USERS = {
  admin: { name: 'admin', password: `admin-${randomBytes(8).toString('hex')}` },
  alice: { name: 'alice', password: `alice-${randomBytes(8).toString('hex')}` },
  bob: { name: 'bob', password: `bob-${randomBytes(8).toString('hex')}` },
};
const WRONG = 'not-the-password';

const RMQ_TOPIC = 'auth-orders';
const RMQ_GROUP = 'auth-g1';
const MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'];
const kafkaTopic = (mech) => `auth-k-${mech}`;

/* ------------------------------------------------------------------------
 * Client log: the test's timeline and the clients' lines, printed on failure.
 * ---------------------------------------------------------------------- */

const LOG_MAX = 4_000;
const LOG_TAIL = 250;
const liveLog = process.env.CFX_NODE_CLIENT_LOG === '1';
const clientLog = [];

function logLine(line) {
  if (clientLog.length >= LOG_MAX) clientLog.shift();
  clientLog.push(line);
  if (liveLog) process.stderr.write(line + '\n');
}

function note(text) {
  logLine(`${new Date().toISOString()} TEST ${text}`);
}

function guarded(fn) {
  return server.guard(async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      const tail = clientLog.slice(-LOG_TAIL);
      process.stderr.write(`\n==== 15-auth: test "${t?.name ?? '?'}" failed: ${err?.message ?? err}\n` +
        `==== client log (last ${tail.length} of ${clientLog.length} lines):\n${tail.join('\n')}\n` +
        '==== end of client log\n');
      throw err;
    }
  });
}

/** Polls `cond` (may be async) until it returns a truthy value; throws with `detail()` after `ms`. */
async function waitFor(cond, what, { ms = WAIT_MS, detail = () => '' } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms\n${detail()}`);
    await sleep(POLL_MS);
  }
}

/** An error and its causes (cause, originalError, errors[]), breadth first. */
function errorChain(err) {
  const out = [];
  const queue = [err];
  while (queue.length && out.length < 32) {
    const e = queue.shift();
    if (!e || typeof e !== 'object' || out.includes(e)) continue;
    out.push(e);
    queue.push(e.cause, e.originalError);
    if (Array.isArray(e.errors)) queue.push(...e.errors);
  }
  return out;
}

function describeError(err) {
  return errorChain(err).map((e) => `${e.name}: ${e.message}` +
    (e.code !== undefined ? ` (code ${e.code})` : '') + (e.type ? ` (type ${e.type})` : '')).join(' <- ');
}

/** Awaits `promise`, which must reject; returns the error. */
async function rejection(promise, ms, what) {
  let value;
  try {
    value = await withTimeout(promise, ms, what);
  } catch (err) {
    note(`${what}: failed as expected: ${describeError(err)}`);
    return err;
  }
  assert.fail(`${what}: succeeded (${JSON.stringify(value)?.slice(0, 200)}), expected a failure`);
}

/* ------------------------------------------------------------------------
 * Admin HTTP API, with Basic credentials
 * ---------------------------------------------------------------------- */

function basic(user) {
  return 'Basic ' + Buffer.from(`${user.name}:${user.password}`).toString('base64');
}

/**
 * One request to the admin API as `user` (undefined = no credentials).
 * Resolves {status, text, json, headers} whatever the status.
 */
async function http(method, urlPath, { user, body } = {}) {
  const headers = {};
  if (user) headers.authorization = basic(user);
  const init = { method, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`${server.httpBase}${urlPath}`, init);
  } catch (err) {
    throw new Error(`${method} ${urlPath}: ${err.cause?.message ?? err.message}`, { cause: err });
  }
  const text = await res.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

/** http() that asserts the status; returns the JSON answer. */
async function httpExpect(status, method, urlPath, opts = {}) {
  const r = await http(method, urlPath, opts);
  assert.equal(r.status, status, `${method} ${urlPath}` +
    `${opts.body !== undefined ? ' ' + JSON.stringify(opts.body) : ''} as ${opts.user?.name ?? 'nobody'}` +
    ` answered ${r.status}: ${r.text}`);
  return r.json;
}

/** Messages stored in a topic: the sum of end - start over its queues (GET /v1/topics/{t} as admin). */
async function storedCount(topic) {
  const t = await httpExpect(200, 'GET', `/v1/topics/${encodeURIComponent(topic)}`, { user: USERS.admin });
  assert.ok(Array.isArray(t.queue_offsets), `GET /v1/topics/${topic}: no queue_offsets: ${JSON.stringify(t)}`);
  return t.queue_offsets.reduce((n, q) => n + (q.end_offset - q.start_offset), 0);
}

/**
 * From GET /metrics (no credentials): conflux_auth_failures_total by protocol,
 * conflux_auth_denials_total by protocol and action, and the password checks
 * run on the auth thread and answered from its memory.
 */
async function authMetrics() {
  const r = await http('GET', '/metrics');
  assert.equal(r.status, 200, `GET /metrics without credentials from loopback answered ${r.status}: ${r.text}`);
  const failures = {};
  const denials = {};
  let checks = NaN;
  let cacheHits = NaN;
  for (const line of r.text.split('\n')) {
    const c = /^conflux_auth_password_(checks|cache_hits)_total\s+(\S+)/.exec(line);
    if (c && c[1] === 'checks') checks = Number(c[2]);
    if (c && c[1] === 'cache_hits') cacheHits = Number(c[2]);
    let m = /^conflux_auth_failures_total\{protocol="([^"]+)"\}\s+(\S+)/.exec(line);
    if (m) failures[m[1]] = Number(m[2]);
    m = /^conflux_auth_denials_total\{([^}]*)\}\s+(\S+)/.exec(line);
    if (m) {
      const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      denials[labels.protocol] ??= {};
      denials[labels.protocol][labels.action] = (denials[labels.protocol][labels.action] ?? 0) + Number(m[2]);
    }
  }
  return { failures, denials, checks, cacheHits, text: r.text };
}

/* ------------------------------------------------------------------------
 * RocketMQ clients with credentials. lib/client.mjs starts clients without
 * any; these do the same (memory logger, bounded startup, the Telemetry
 * watch that shutdownClient() relies on) with sessionCredentials.
 * ---------------------------------------------------------------------- */

function watchTelemetry(client) {
  client.testStreams = [];
  const create = client.createTelemetryStream.bind(client);
  client.createTelemetryStream = (endpoints) => {
    const stream = create(endpoints);
    const entry = { endpoints: String(endpoints), status: null };
    entry.done = new Promise((resolve) => { entry.resolve = resolve; });
    const onStatus = (st) => {
      if (entry.status) return;
      entry.status = st;
      entry.resolve(st);
    };
    const ignore = () => {};
    stream.on('status', onStatus);
    stream.on('error', ignore);
    const removeAll = stream.removeAllListeners.bind(stream);
    stream.removeAllListeners = (...args) => {
      const r = removeAll(...args);
      stream.on('status', onStatus);
      stream.on('error', ignore);
      return r;
    };
    client.testStreams.push(entry);
    return stream;
  };
}

/** sessionCredentials for a user, or none (`user` undefined). */
function rmqOptions(name, user, secret) {
  const logger = new MemoryLogger(name);
  const opts = { endpoints: server.endpoints, namespace: '', requestTimeout: REQUEST_TIMEOUT_MS, logger };
  if (user) opts.sessionCredentials = { accessKey: user.name, accessSecret: secret ?? user.password };
  return { opts, logger };
}

async function startRmq(client, logger, what) {
  client.testLogger = logger;
  watchTelemetry(client);
  try {
    await withTimeout(client.startup(), CLIENT_START_TIMEOUT_MS, `${what} startup`);
  } catch (err) {
    await withTimeout(client.shutdown(), CLIENT_OP_MS, `${what} shutdown`).catch(() => {});
    throw err;
  }
  return client;
}

/** A started Producer signed as `user` with `secret` (default: the user's password). */
async function rmqProducer(name, user, { topics = [], secret, maxAttempts = 1 } = {}) {
  const { opts, logger } = rmqOptions(name, user, secret);
  return startRmq(new Producer({ ...opts, topics, maxAttempts }), logger, name);
}

/** A started SimpleConsumer of `group` on `topic` signed as `user`. */
async function rmqConsumer(name, user, group, topic) {
  const { opts, logger } = rmqOptions(name, user);
  return startRmq(new SimpleConsumer({
    ...opts, consumerGroup: group, subscriptions: new Map([[topic, '*']]), awaitDuration: 3_000,
  }), logger, name);
}

/** The RocketMQ status code an error (or one of its causes) carries. */
function rmqCode(err) {
  for (const e of errorChain(err)) {
    if (typeof e.code === 'number' && e.code >= 10000) return e.code;
    const m = /response-code=(\d{5})/.exec(e.message ?? '');
    if (m) return Number(m[1]);
  }
  return undefined;
}

function assertRmqCode(err, code, what) {
  assert.equal(rmqCode(err), code, `${what}: expected status ${code}, got: ${describeError(err)}`);
}

/* ------------------------------------------------------------------------
 * Kafka clients
 * ---------------------------------------------------------------------- */

const logCreator = () => ({ namespace, label, log }) => {
  const { message, timestamp, logger, ...extra } = log;
  logLine(`${timestamp} ${label} [${logger}:${namespace}] ${message} ${JSON.stringify(extra)}`);
};

function newKafka(clientId, user, { mechanism, password, retries = 2 } = {}) {
  const cfg = {
    clientId,
    brokers: [`127.0.0.1:${kafkaPort}`],
    logLevel: liveLog ? logLevel.DEBUG : logLevel.INFO,
    logCreator,
    connectionTimeout: 3_000,
    authenticationTimeout: 10_000,
    retry: { retries, initialRetryTime: 200 },
  };
  if (user) cfg.sasl = { mechanism, username: user.name, password: password ?? user.password };
  return new Kafka(cfg);
}

const openKafka = new Set();

async function kafkaConnect(client, what) {
  openKafka.add(client);
  await withTimeout(client.connect(), CLIENT_OP_MS, `${what} connect`);
  return client;
}

async function kafkaDisconnect(client, what) {
  if (!openKafka.has(client)) return;
  openKafka.delete(client);
  await withTimeout(client.disconnect(), CLIENT_OP_MS, `${what} disconnect`);
}

/** The Kafka protocol error (type, code) an error or one of its causes carries. */
function kafkaType(err) {
  for (const e of errorChain(err)) {
    if (e.type) return e.type;
  }
  return undefined;
}

/* ------------------------------------------------------------------------
 * MQTT clients
 * ---------------------------------------------------------------------- */

const openMqtt = new Set();

/**
 * Connects one MQTT client (no automatic reconnect) that records what it
 * receives: {name, client, connack, received[], errors[]}. Rejects with
 * the client's error when the connection is refused.
 */
async function mqttConnect(name, { version = 5, user, password, opts = {} } = {}) {
  const c = { name, received: [], errors: [], connack: null, waiters: [] };
  const o = {
    clientId: `${name}-${RUN}`, protocolVersion: version, clean: true, reconnectPeriod: 0,
    connectTimeout: CLIENT_OP_MS, keepalive: 30, ...opts,
  };
  if (user) {
    o.username = user.name;
    o.password = password ?? user.password;
  }
  const client = mqtt.connect(MQTT_URL, o);
  c.client = client;
  openMqtt.add(client);
  client.on('message', (topic, payload, packet) => {
    const r = { topic, payload: payload.toString(), qos: packet.qos, t: Date.now() };
    c.received.push(r);
    for (const w of c.waiters.splice(0)) w(r);
  });
  client.on('error', (err) => c.errors.push(err));
  try {
    c.connack = await withTimeout(new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
      client.once('close', () => reject(new Error('connection closed before CONNACK')));
    }), CLIENT_OP_MS + 1_000, `${name}: connect`);
  } catch (err) {
    openMqtt.delete(client);
    client.end(true);
    throw err;
  }
  return c;
}

async function mqttEnd(c) {
  if (!c || !openMqtt.has(c.client)) return;
  openMqtt.delete(c.client);
  await withTimeout(c.client.endAsync(), CLIENT_OP_MS, `${c.name}: end`);
}

/** The SUBACK codes a refused subscribe carries (mqtt.js puts the SUBACK on the error). */
function subackCodes(err) {
  return err?.packet?.granted ?? (err?.code !== undefined ? [err.code] : undefined);
}

/** Subscribes; resolves the granted codes (rejects with the client's error for a failure code). */
async function mqttSubscribe(c, filter, qos = 1) {
  const granted = await withTimeout(c.client.subscribeAsync(filter, { qos }), CLIENT_OP_MS,
    `${c.name}: subscribe ${filter}`);
  return granted.map((g) => g.qos);
}

async function mqttPublish(c, topic, payload, opts = { qos: 1 }) {
  await withTimeout(c.client.publishAsync(topic, payload, opts), CLIENT_OP_MS,
    `${c.name}: publish to ${topic}`);
}

/** Connect as `user` with a wrong password etc.: resolves the CONNACK code the client reports. */
async function refusedCode(name, connectOpts) {
  const err = await rejection(mqttConnect(name, connectOpts), CLIENT_OP_MS + 2_000, `${name}: connect`);
  assert.equal(typeof err.code, 'number', `${name}: expected a CONNACK refusal, got ${describeError(err)}`);
  return err.code;
}

/* ------------------------------------------------------------------------
 * Server lifecycle
 * ---------------------------------------------------------------------- */

async function startServer(how) {
  const from = server.logSince(0).length;
  await how();
  for (const line of [`mqtt: MQTT 3.1.1 and 5.0 are on 127.0.0.1:${mqttPort}`,
    `kafka: the Kafka protocol is on 127.0.0.1:${kafkaPort}`]) {
    await waitFor(() => server.logSince(0).slice(from).includes(line), `the server log says "${line}"`);
  }
}

before(() => startServer(() => server.start()));
after(async () => {
  for (const c of [...openKafka]) await kafkaDisconnect(c, 'leftover client').catch(() => {});
  for (const c of [...openMqtt]) {
    openMqtt.delete(c);
    await withTimeout(c.endAsync(true), CLIENT_OP_MS, 'leftover client').catch(() => {});
  }
  await server.stop();
});

const state = { setup: false };

function needsSetup(t) {
  if (state.setup) return false;
  t.skip('needs the users and policies of the setup');
  return true;
}

/* ------------------------------------------------------------------------
 * 1. Users, topics and policies
 * ---------------------------------------------------------------------- */

test('setup: users (the first without credentials), a topic and policies over the admin API',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const who = await httpExpect(200, 'GET', '/v1/whoami');
    assert.equal(who.authentication, false, `whoami before any user: ${JSON.stringify(who)}`);

    const { admin, alice, bob } = USERS;
    await httpExpect(201, 'POST', '/v1/users', { body: { name: admin.name, password: admin.password, role: 'super' } });
    /* From now on credentials are required. */
    const anon = await http('POST', '/v1/users', { body: { name: 'mallory', password: 'x' } });
    assert.equal(anon.status, 401,
      `POST /v1/users without credentials once a user exists: ${anon.status} ${anon.text}`);
    const wrong = await http('GET', '/v1/users', { user: { name: 'admin', password: WRONG } });
    assert.equal(wrong.status, 401, `GET /v1/users with a wrong Basic password: ${wrong.status} ${wrong.text}`);
    assert.ok(wrong.headers.get('www-authenticate'), '401 carries WWW-Authenticate');

    for (const u of [alice, bob]) {
      await httpExpect(201, 'POST', '/v1/users',
        { user: admin, body: { name: u.name, password: u.password, role: 'normal' } });
    }
    const me = await httpExpect(200, 'GET', '/v1/whoami', { user: alice });
    assert.deepEqual([me.user, me.super, me.authentication], ['alice', false, true],
      `whoami as alice: ${JSON.stringify(me)}`);

    await httpExpect(201, 'POST', '/v1/topics', { user: admin, body: { name: RMQ_TOPIC, type: 'NORMAL', queues: 4 } });

    const policies = [
      { subject: 'alice', resource: 'topic:auth-', pattern: 'prefixed', actions: ['PUB', 'GET', 'CREATE'],
        decision: 'allow' },
      { subject: 'bob', resource: 'topic:auth-', pattern: 'prefixed', actions: ['SUB', 'GET'], decision: 'allow' },
      { subject: 'bob', resource: 'group:auth-', pattern: 'prefixed', actions: ['SUB'], decision: 'allow' },
      { subject: 'alice', resource: 'topic:sensors/', pattern: 'prefixed', actions: ['PUB'], decision: 'allow' },
      { subject: 'bob', resource: 'topic:sensors/', pattern: 'prefixed', actions: ['SUB'], decision: 'allow' },
    ];
    for (const p of policies) {
      const r = await httpExpect(201, 'POST', '/v1/acls', { user: admin, body: p });
      assert.ok(Number.isInteger(r.id) && r.id > 0, `POST /v1/acls answered an id: ${JSON.stringify(r)}`);
    }
    const all = await httpExpect(200, 'GET', '/v1/acls', { user: admin });
    assert.equal(all.acls.length, policies.length, `GET /v1/acls: ${JSON.stringify(all)}`);

    /* Users and policies are for super users; bob may not create topics. */
    const denied = await http('GET', '/v1/acls', { user: alice });
    assert.equal(denied.status, 403, `GET /v1/acls as alice: ${denied.status} ${denied.text}`);
    const create = await http('POST', '/v1/topics',
      { user: bob, body: { name: 'auth-bob', type: 'NORMAL', queues: 1 } });
    assert.equal(create.status, 403, `POST /v1/topics auth-bob as bob (no CREATE): ${create.status} ${create.text}`);
    const nobody = await http('GET', `/v1/topics/${RMQ_TOPIC}`);
    assert.equal(nobody.status, 401,
      `GET /v1/topics/${RMQ_TOPIC} without credentials: ${nobody.status} ${nobody.text}`);
    state.setup = true;
  }));

/* ------------------------------------------------------------------------
 * 2. RocketMQ over gRPC
 * ---------------------------------------------------------------------- */

test('RocketMQ: alice sends, bob receives exactly that; 40100 without valid credentials, 40300 when denied',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (needsSetup(t)) return;
    const { alice, bob } = USERS;
    await withClients(async (use) => {
      /* The consumer starts first: a new group starts at the end. */
      const consumer = use(await rmqConsumer('bob-consumer', bob, RMQ_GROUP, RMQ_TOPIC));
      const producer = use(await rmqProducer('alice-producer', alice, { topics: [RMQ_TOPIC], maxAttempts: 3 }));
      /* alice may route (GET), so her consumer of the same group starts; what it does later is denied. */
      let aliceConsumer;
      let aliceStartErr;
      try {
        aliceConsumer = use(await rmqConsumer('alice-consumer', alice, RMQ_GROUP, RMQ_TOPIC));
      } catch (err) {
        aliceStartErr = err;
        note(`alice's consumer did not start: ${describeError(err)}`);
      }
      const messages = Array.from({ length: RMQ_MESSAGES }, (_, i) => makeMessage(RMQ_TOPIC, i));
      const receipts = await withTimeout(sendAll(producer, messages), 60_000, 'alice sends 10 messages');
      let handleChecked = false;
      const views = await receiveCount(consumer, RMQ_MESSAGES, {
        onMessage: async (view) => {
          if (handleChecked || !aliceConsumer) return;
          handleChecked = true;
          /* bob's receipt handle in alice's hands: Ack and ChangeInvisibleDuration need SUB. */
          assertRmqCode(await rejection(aliceConsumer.ack(view), CLIENT_OP_MS, 'alice acks bob\'s message'),
            FORBIDDEN, 'alice acks bob\'s message');
          assertRmqCode(await rejection(aliceConsumer.changeInvisibleDuration(view, 20_000), CLIENT_OP_MS,
            'alice changes the invisible duration of bob\'s message'), FORBIDDEN,
          'alice changes the invisible duration of bob\'s message');
        },
      });
      const seen = new Set();
      for (const v of views) {
        const i = messageIndex(v);
        assert.ok(!seen.has(i), `message ${i} received twice`);
        seen.add(i);
        assertSameMessage(v, messages[i], receipts[i].messageId);
      }
      assert.equal(seen.size, RMQ_MESSAGES, 'every message received');
      await assertNothingToReceive(consumer, 'bob after acking the 10');
      note('rocketmq: bob received and acked the 10 messages');

      /* Sign-in failures: the first call (QueryRoute) is refused. */
      const wrongSecret = use(await rmqProducer('alice-wrong-secret', alice, { secret: WRONG }));
      assertRmqCode(await rejection(wrongSecret.send(makeMessage(RMQ_TOPIC, 100)), CLIENT_OP_MS,
        'send with a wrong secret'), UNAUTHORIZED, 'send with a wrong secret');
      const unknown = use(await rmqProducer('mallory', { name: 'mallory', password: 'whatever' }));
      assertRmqCode(await rejection(unknown.send(makeMessage(RMQ_TOPIC, 101)), CLIENT_OP_MS,
        'send with an unknown access key'), UNAUTHORIZED, 'send with an unknown access key');
      const anonymous = use(await rmqProducer('anonymous', undefined));
      assertRmqCode(await rejection(anonymous.send(makeMessage(RMQ_TOPIC, 102)), CLIENT_OP_MS,
        'send without credentials'), UNAUTHORIZED, 'send without credentials');
      /* A producer that names its topic at startup fails to start, for the same reason. */
      const failedStart = await rejection(rmqProducer('alice-wrong-secret-topic', alice,
        { secret: WRONG, topics: [RMQ_TOPIC] }), CLIENT_START_TIMEOUT_MS + 5_000, 'startup with a wrong secret');
      assertRmqCode(failedStart, UNAUTHORIZED, 'startup with a wrong secret');

      /* Denials: bob may route (GET) but not send (PUB); alice may route but not receive (SUB). */
      const bobProducer = use(await rmqProducer('bob-producer', bob));
      assertRmqCode(await rejection(bobProducer.send(makeMessage(RMQ_TOPIC, 103)), CLIENT_OP_MS,
        'bob sends'), FORBIDDEN, 'bob sends');
      /* The denial may already come at startup; otherwise at the first receive. */
      const receiveErr = aliceConsumer
        ? await rejection(aliceConsumer.receive(16, 10_000), CLIENT_OP_MS, 'alice receives with group auth-g1')
        : aliceStartErr;
      assertRmqCode(receiveErr, FORBIDDEN, 'alice receives with group auth-g1');
      /* bob still works after all that. */
      await assertNothingToReceive(consumer, 'bob after the refused sends');
    });
    assert.equal(await storedCount(RMQ_TOPIC), RMQ_MESSAGES,
      `${RMQ_TOPIC} holds exactly the ${RMQ_MESSAGES} messages alice sent`);
  }));

/* ------------------------------------------------------------------------
 * 3. Kafka, with each SASL mechanism
 * ---------------------------------------------------------------------- */

/** alice produces `count` records to `topic` with `mechanism`; returns their values. */
async function aliceProduces(mechanism, topic, count, tag) {
  const producer = await kafkaConnect(newKafka(`alice-${mechanism}`, USERS.alice, { mechanism })
    .producer({ allowAutoTopicCreation: true }), `alice producer (${mechanism})`);
  try {
    const values = Array.from({ length: count }, (_, i) => `${tag} ${i} ${RUN}`);
    const res = await withTimeout(producer.send({
      topic, acks: -1, messages: values.map((value, i) => ({ key: `k${i}`, value })),
    }), CLIENT_OP_MS, `alice produces to ${topic} (${mechanism})`);
    for (const r of res) assert.equal(r.errorCode, 0, `produce to ${topic}[${r.partition}]: error ${r.errorCode}`);
    return values;
  } finally {
    await kafkaDisconnect(producer, `alice producer (${mechanism})`);
  }
}

for (const mechanism of MECHANISMS) {
  test(`Kafka SASL ${mechanism}: alice produces, bob consumes; ` +
    'a wrong password, bob producing and alice in a group are refused',
    { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
      if (needsSetup(t)) return;
      const { alice, bob } = USERS;
      const topic = kafkaTopic(mechanism);
      const group = `auth-k-${mechanism}`;

      /* alice's records auto-create the topic (she has CREATE on auth-). */
      const values = await aliceProduces(mechanism, topic, KAFKA_RECORDS, `kafka ${mechanism}`);
      assert.equal(await storedCount(topic), KAFKA_RECORDS, `${topic} holds the ${KAFKA_RECORDS} records`);

      /* bob consumes them in his group. */
      const got = [];
      const crashes = [];
      const consumer = newKafka(`bob-${mechanism}`, bob, { mechanism }).consumer({
        groupId: group, sessionTimeout: 8_000, rebalanceTimeout: 10_000, heartbeatInterval: 500,
        maxWaitTimeInMs: 250, retry: { retries: 3, initialRetryTime: 200, restartOnFailure: async () => false },
      });
      consumer.on(consumer.events.CRASH, (e) => crashes.push(e.payload.error));
      await kafkaConnect(consumer, `bob consumer (${mechanism})`);
      try {
        await withTimeout(consumer.subscribe({ topics: [topic], fromBeginning: true }), CLIENT_OP_MS, 'bob subscribes');
        await withTimeout(consumer.run({
          eachMessage: async ({ message }) => { got.push(message.value.toString()); },
        }), CLIENT_OP_MS, `bob's consumer runs (${mechanism})`);
        await waitFor(() => {
          if (crashes.length) throw new Error(`bob's consumer crashed: ${describeError(crashes[0])}`);
          return got.length >= KAFKA_RECORDS;
        }, `bob receives ${KAFKA_RECORDS} records`, { detail: () => `got ${JSON.stringify(got)}` });
        await sleep(SETTLE_MS);
        assert.deepEqual([...got].sort(), [...values].sort(), `bob receives exactly alice's records (${mechanism})`);
      } finally {
        await kafkaDisconnect(consumer, `bob consumer (${mechanism})`);
      }

      /* A wrong password: SASL authentication failure. */
      const wrong = newKafka(`alice-wrong-${mechanism}`, alice, { mechanism, password: WRONG, retries: 0 }).producer();
      openKafka.add(wrong);
      const authErr = await rejection(wrong.connect(), CLIENT_OP_MS,
        `alice connects with a wrong password (${mechanism})`);
      openKafka.delete(wrong);
      await wrong.disconnect().catch(() => {});
      assert.ok(errorChain(authErr).some((e) => e.name === 'KafkaJSSASLAuthenticationError'),
        `wrong password (${mechanism}): expected KafkaJSSASLAuthenticationError, got ${describeError(authErr)}`);

      /* bob may not produce: TOPIC_AUTHORIZATION_FAILED, nothing written. */
      const bobProducer = await kafkaConnect(newKafka(`bob-producer-${mechanism}`, bob, { mechanism, retries: 0 })
        .producer({ allowAutoTopicCreation: false }), `bob producer (${mechanism})`);
      try {
        const err = await rejection(bobProducer.send({ topic, acks: -1, messages: [{ value: `bob ${RUN}` }] }),
          CLIENT_OP_MS, `bob produces to ${topic}`);
        assert.equal(kafkaType(err), 'TOPIC_AUTHORIZATION_FAILED', `bob produces: ${describeError(err)}`);
      } finally {
        await kafkaDisconnect(bobProducer, `bob producer (${mechanism})`);
      }
      assert.equal(await storedCount(topic), KAFKA_RECORDS,
        `${topic} still holds only alice's ${KAFKA_RECORDS} records`);

      /* alice may not be a member of a consumer group. */
      const aliceConsumer = newKafka(`alice-consumer-${mechanism}`, alice, { mechanism, retries: 0 }).consumer({
        groupId: `auth-kx-${mechanism}`, sessionTimeout: 8_000, heartbeatInterval: 500,
        retry: { retries: 0, restartOnFailure: async () => false },
      });
      const aliceCrashes = [];
      aliceConsumer.on(aliceConsumer.events.CRASH, (e) => aliceCrashes.push(e.payload.error));
      await kafkaConnect(aliceConsumer, `alice consumer (${mechanism})`);
      try {
        await withTimeout(aliceConsumer.subscribe({ topics: [topic], fromBeginning: true }), CLIENT_OP_MS,
          'alice subscribes');
        let runErr;
        try {
          await withTimeout(aliceConsumer.run({ eachMessage: async () => {} }), CLIENT_OP_MS, 'alice consumer run');
        } catch (err) {
          runErr = err;
        }
        const err = runErr ?? await waitFor(() => aliceCrashes[0], `alice's consumer fails (${mechanism})`);
        note(`alice's consumer (${mechanism}) failed: ${describeError(err)}`);
        assert.equal(kafkaType(err), 'GROUP_AUTHORIZATION_FAILED',
          `alice in group auth-kx-${mechanism}: ${describeError(err)}`);
      } finally {
        await kafkaDisconnect(aliceConsumer, `alice consumer (${mechanism})`);
      }
    }));
}

test('Kafka: a client without SASL may ask for ApiVersions only, then is disconnected',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (needsSetup(t)) return;
    const topic = kafkaTopic('plain');
    const before = await storedCount(topic);
    /* connect() sends only ApiVersions, which needs no sign-in; the Metadata request of send() does. */
    const producer = await kafkaConnect(newKafka('anonymous', undefined, { retries: 0 })
      .producer({ allowAutoTopicCreation: false }), 'a producer without SASL');
    try {
      const err = await rejection(producer.send({ topic, acks: -1, messages: [{ value: `anonymous ${RUN}` }] }),
        CLIENT_OP_MS, 'a producer without SASL sends');
      assert.ok(errorChain(err).some((e) => e.name === 'KafkaJSConnectionClosedError' ||
        /closed|ECONNRESET|EPIPE/i.test(e.message ?? '')),
      `without SASL: expected the broker to close the connection, got ${describeError(err)}`);
    } finally {
      await kafkaDisconnect(producer, 'a producer without SASL').catch(() => {});
    }
    assert.equal(await storedCount(topic), before, `${topic}: nothing written without SASL`);
  }));

/* ------------------------------------------------------------------------
 * 4. MQTT 3.1.1 and 5.0
 * ---------------------------------------------------------------------- */

for (const version of [4, 5]) {
  const v = version === 4 ? '3.1.1' : '5.0';
  test(`MQTT ${v}: bob receives alice's publish on sensors/; bad sign-ins refused; denied subscribes`,
    { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
      if (needsSetup(t)) return;
      const { alice, bob } = USERS;
      const clients = [];
      try {
        const sub = await mqttConnect(`bob-sub-${version}`, { version, user: bob });
        clients.push(sub);
        assert.deepEqual(await mqttSubscribe(sub, 'sensors/#', 1), [1], 'bob subscribes to sensors/# (QoS 1)');
        const pub = await mqttConnect(`alice-pub-${version}`, { version, user: alice });
        clients.push(pub);
        const payload = `reading ${v} ${RUN}`;
        await mqttPublish(pub, 'sensors/a', payload);
        await waitFor(() => sub.received.some((r) => r.payload === payload), 'bob receives alice\'s message');

        /* Refused sign-ins. */
        assert.equal(await refusedCode(`alice-wrong-${version}`, { version, user: alice, password: WRONG }),
          CONNACK[version].badPassword, `MQTT ${v}: wrong password`);
        assert.equal(await refusedCode(`mallory-${version}`, { version, user: { name: 'mallory', password: 'x' } }),
          CONNACK[version].badPassword, `MQTT ${v}: unknown user`);
        assert.equal(await refusedCode(`anonymous-${version}`, { version }),
          CONNACK[version].notAuthorized, `MQTT ${v}: no credentials`);

        /* Denied subscriptions: bob to # and to filters outside sensors/, alice to anything. */
        const bobAll = await rejection(mqttSubscribe(sub, '#', 1), CLIENT_OP_MS, `bob subscribes to # (${v})`);
        assert.deepEqual(subackCodes(bobAll), [SUBACK_FAILURE[version]],
          `MQTT ${v}: SUBACK for bob's #: ${describeError(bobAll)}`);
        /* A wildcard filter is judged by what comes before its first wildcard; an exact one by its name. */
        assert.deepEqual(await mqttSubscribe(sub, 'sensors/+/temp', 1), [1], 'bob subscribes to sensors/+/temp');
        for (const filter of ['+/a', 'sensors', 'sensorsX/#']) {
          const err = await rejection(mqttSubscribe(sub, filter, 1), CLIENT_OP_MS,
            `bob subscribes to ${filter} (${v})`);
          assert.deepEqual(subackCodes(err), [SUBACK_FAILURE[version]],
            `MQTT ${v}: SUBACK for bob's ${filter}: ${describeError(err)}`);
        }
        const aliceSub = await rejection(mqttSubscribe(pub, 'sensors/#', 1), CLIENT_OP_MS, `alice subscribes (${v})`);
        assert.deepEqual(subackCodes(aliceSub), [SUBACK_FAILURE[version]],
          `MQTT ${v}: SUBACK for alice's sensors/#: ${describeError(aliceSub)}`);

        /* The connections that were refused something still work. */
        const after = `after ${v} ${RUN}`;
        await mqttPublish(pub, 'sensors/b', after);
        await waitFor(() => sub.received.some((r) => r.payload === after), 'bob receives alice\'s next message');
        await sleep(SETTLE_MS);
        assert.deepEqual(sub.received.map((r) => [r.topic, r.payload]), [['sensors/a', payload], ['sensors/b', after]],
          `MQTT ${v}: bob received exactly alice's two messages`);
      } finally {
        for (const c of clients) await mqttEnd(c);
      }
    }));
}

test('MQTT: alice publishing outside sensors/ is refused (5.0: PUBACK/PUBREC 0x87) and nothing is delivered',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (needsSetup(t)) return;
    const clients = [];
    try {
      /* The super user sees everything under other/. */
      const watcher = await mqttConnect('admin-watch', { version: 5, user: USERS.admin });
      clients.push(watcher);
      assert.deepEqual(await mqttSubscribe(watcher, 'other/#', 1), [1], 'admin subscribes to other/#');
      const pub = await mqttConnect('alice-other', { version: 5, user: USERS.alice });
      clients.push(pub);
      const err = await rejection(mqttPublish(pub, 'other/x', `denied q1 ${RUN}`), CLIENT_OP_MS,
        'alice publishes to other/x');
      assert.equal(err.code, NOT_AUTHORIZED_5, `PUBACK reason for alice's other/x: ${describeError(err)}`);
      const err2 = await rejection(mqttPublish(pub, 'other/x2', `denied q2 ${RUN}`, { qos: 2 }), CLIENT_OP_MS,
        'alice publishes QoS 2 to other/x2');
      assert.equal(err2.code, NOT_AUTHORIZED_5, `PUBREC reason for alice's QoS 2 other/x2: ${describeError(err2)}`);
      const errRetained = await rejection(
        mqttPublish(pub, 'other/r', `denied retained ${RUN}`, { qos: 1, retain: true }),
        CLIENT_OP_MS, 'alice publishes a retained message to other/r');
      assert.equal(errRetained.code, NOT_AUTHORIZED_5,
        `PUBACK reason for alice's retained other/r: ${describeError(errRetained)}`);
      await mqttPublish(pub, 'other/q0', `denied q0 ${RUN}`, { qos: 0 });
      /* alice's connection still works. */
      await mqttPublish(pub, 'sensors/after-denial', `ok ${RUN}`);

      /* 3.1.1 has no reason codes: whether the publish is acknowledged or the
       * connection closed, nothing is delivered. */
      const pub4 = await mqttConnect('alice-other-311', { version: 4, user: USERS.alice });
      clients.push(pub4);
      await withTimeout(pub4.client.publishAsync('other/x', `denied 3.1.1 ${RUN}`, { qos: 1 }).catch((e) =>
        note(`3.1.1 publish to other/x: ${describeError(e)}`)), CLIENT_OP_MS, 'alice (3.1.1) publishes to other/x');

      /* A will on a topic alice may not publish to is not published when her socket goes away. */
      for (const version of [4, 5]) {
        const willer = await mqttConnect(`alice-will-${version}`, {
          version, user: USERS.alice,
          opts: { will: { topic: 'other/will', payload: Buffer.from(`will ${version} ${RUN}`), qos: 1, retain: true } },
        });
        openMqtt.delete(willer.client);
        willer.client.stream.destroy();
      }

      const marker = `marker ${RUN}`;
      const adminPub = await mqttConnect('admin-pub', { version: 5, user: USERS.admin });
      clients.push(adminPub);
      await sleep(SETTLE_MS); /* for the wills, had they been sent */
      await mqttPublish(adminPub, 'other/marker', marker);
      await waitFor(() => watcher.received.some((r) => r.payload === marker), 'the watcher receives the marker');
      await sleep(SETTLE_MS);
      assert.deepEqual(watcher.received.map((r) => [r.topic, r.payload]), [['other/marker', marker]],
        'the watcher of other/# receives only the marker');

      /* Nothing was retained either: a new subscriber of other/# gets no retained message. */
      const late = await mqttConnect('admin-late', { version: 5, user: USERS.admin });
      clients.push(late);
      await mqttSubscribe(late, 'other/#', 1);
      await sleep(SETTLE_MS);
      assert.deepEqual(late.received.map((r) => [r.topic, r.payload]), [], 'no retained message under other/');
    } finally {
      for (const c of clients) await mqttEnd(c);
    }
  }));

/* ------------------------------------------------------------------------
 * 5. Brute force against MQTT while alice and bob keep working
 * ---------------------------------------------------------------------- */

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(rtts) {
  const s = [...rtts].sort((a, b) => a - b);
  return `${s.length} round trips, p50 ${percentile(s, 50).toFixed(2)} ms, p99 ${percentile(s, 99).toFixed(2)} ms`;
}

test('brute force: 1,000 wrong MQTT passwords are refused while alice and bob keep working',
  { timeout: 300_000 }, guarded(async (t) => {
    if (needsSetup(t)) return;
    const clients = [];
    try {
      const sub = await mqttConnect('bob-bf', { version: 5, user: USERS.bob });
      clients.push(sub);
      assert.deepEqual(await mqttSubscribe(sub, 'sensors/bf', 1), [1], 'bob subscribes to sensors/bf');
      const pub = await mqttConnect('alice-bf', { version: 5, user: USERS.alice });
      clients.push(pub);

      /* One round trip: alice publishes (QoS 1, PUBACK) and bob receives it. */
      let seq = 0;
      async function roundTrip() {
        const payload = `bf ${seq++} ${RUN}`;
        const t0 = performance.now();
        const arrived = new Promise((resolve) => {
          const check = (r) => (r.payload === payload ? resolve() : sub.waiters.push(check));
          sub.waiters.push(check);
        });
        await mqttPublish(pub, 'sensors/bf', payload);
        await withTimeout(arrived, CLIENT_OP_MS, `bob receives "${payload}"`);
        return performance.now() - t0;
      }

      const before = [];
      for (let i = 0; i < BASELINE_ROUND_TRIPS; i++) before.push(await roundTrip());

      const metricsBefore = await authMetrics();
      const failuresBefore = metricsBefore.failures.mqtt ?? 0;
      let bruteDone = false;
      const during = [];
      const pubErrors = [];
      let started = 0;
      const publisher = (async () => {
        while (!bruteDone) {
          started++;
          try {
            during.push(await roundTrip());
          } catch (err) {
            pubErrors.push(err);
            return;
          }
        }
      })();

      const codes = new Map();
      const accepted = [];
      try {
        for (let i = 0; i < BRUTE_ATTEMPTS; i += BRUTE_PARALLEL) {
          const batch = [];
          for (let j = i; j < Math.min(BRUTE_ATTEMPTS, i + BRUTE_PARALLEL); j++) {
            const version = j % 2 ? 5 : 4;
            batch.push((async () => {
              try {
                const c = await mqttConnect(`guess-${j}`, { version, user: USERS.alice, password: `guess-${j}` });
                accepted.push(j);
                await mqttEnd(c).catch(() => {});
              } catch (err) {
                const key = `v${version}:${err.code ?? err.message}`;
                codes.set(key, (codes.get(key) ?? 0) + 1);
              }
            })());
          }
          await Promise.all(batch);
        }
      } finally {
        bruteDone = true;
        await withTimeout(publisher, CLIENT_OP_MS * 2, 'alice\'s publisher ends');
      }
      note(`brute force: answers ${JSON.stringify(Object.fromEntries(codes))}`);
      assert.deepEqual(accepted, [], 'no wrong password was accepted');
      assert.deepEqual(Object.fromEntries(codes),
        { [`v4:${CONNACK[4].badPassword}`]: BRUTE_ATTEMPTS / 2, [`v5:${CONNACK[5].badPassword}`]: BRUTE_ATTEMPTS / 2 },
        'every wrong attempt is refused with CONNACK 4 (3.1.1) / 0x86 (5.0)');
      assert.deepEqual(pubErrors.map(describeError), [], 'alice\'s round trips during the brute force');
      assert.equal(during.length, started, 'every round trip alice started completed');
      const metricsAfter = await authMetrics();
      const failuresAfter = metricsAfter.failures.mqtt ?? 0;
      assert.ok(failuresAfter - failuresBefore >= BRUTE_ATTEMPTS,
        `conflux_auth_failures_total{protocol="mqtt"} grew by ${failuresAfter - failuresBefore} ` +
        `(${failuresBefore} → ${failuresAfter}), expected at least ${BRUTE_ATTEMPTS}`);
      /* A wrong password is never remembered: each guess is a key derivation on the auth thread. */
      assert.ok(metricsAfter.checks - metricsBefore.checks >= BRUTE_ATTEMPTS,
        `conflux_auth_password_checks_total grew by ${metricsAfter.checks - metricsBefore.checks} ` +
        `(${metricsBefore.checks} → ${metricsAfter.checks}), expected at least ${BRUTE_ATTEMPTS}`);
      /* bob received each of alice's messages once, in order. */
      const published = Array.from({ length: seq }, (_, i) => `bf ${i} ${RUN}`);
      assert.deepEqual(sub.received.map((r) => r.payload), published,
        'bob received exactly alice\'s messages, in order');
      assert.deepEqual(pub.errors.map(describeError), [], 'alice\'s client errors');
      assert.deepEqual(sub.errors.map(describeError), [], 'bob\'s client errors');

      console.log(`# brute force: alice → bob before: ${summary(before)}`);
      console.log(`# brute force: alice → bob during ${BRUTE_ATTEMPTS} wrong sign-ins: ${summary(during)}`);
    } finally {
      for (const c of clients) await mqttEnd(c);
    }
  }));

/* ------------------------------------------------------------------------
 * 6. Metrics
 * ---------------------------------------------------------------------- */

test('metrics: sign-in failures and denials are counted per protocol', { timeout: TEST_TIMEOUT_MS },
  guarded(async (t) => {
    if (needsSetup(t)) return;
    const { failures, denials, text } = await authMetrics();
    const shown = text.split('\n').filter((l) => l.startsWith('conflux_auth_')).join('\n');
    note(`metrics:\n${shown}`);
    for (const p of ['grpc', 'kafka', 'mqtt', 'http']) {
      assert.ok(failures[p] > 0, `conflux_auth_failures_total{protocol="${p}"} > 0:\n${shown}`);
    }
    /* [protocol, action] denials this file caused. */
    for (const [p, a] of [['grpc', 'PUB'], ['grpc', 'SUB'], ['kafka', 'PUB'], ['kafka', 'SUB'],
      ['mqtt', 'PUB'], ['mqtt', 'SUB'], ['http', 'CREATE']]) {
      assert.ok(denials[p]?.[a] > 0, `conflux_auth_denials_total{protocol="${p}",action="${a}"} > 0:\n${shown}`);
    }
  }));

/* ------------------------------------------------------------------------
 * 7. Users and policies survive a restart
 * ---------------------------------------------------------------------- */

test('after a SIGTERM restart alice still produces over Kafka SCRAM and gRPC; bob is still denied',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (needsSetup(t)) return;
    await startServer(() => server.restart());
    const { alice, bob } = USERS;

    for (const mechanism of ['scram-sha-256', 'scram-sha-512']) {
      const topic = kafkaTopic(mechanism);
      const before = await storedCount(topic);
      await aliceProduces(mechanism, topic, 3, `after restart ${mechanism}`);
      assert.equal(await storedCount(topic), before + 3, `${topic} after alice's 3 records post-restart`);
    }
    const wrong = newKafka('alice-wrong-restart', alice,
      { mechanism: 'scram-sha-256', password: WRONG, retries: 0 }).producer();
    openKafka.add(wrong);
    const authErr = await rejection(wrong.connect(), CLIENT_OP_MS, 'a wrong password after the restart');
    openKafka.delete(wrong);
    await wrong.disconnect().catch(() => {});
    assert.ok(errorChain(authErr).some((e) => e.name === 'KafkaJSSASLAuthenticationError'),
      `wrong password after the restart: ${describeError(authErr)}`);

    const before = await storedCount(RMQ_TOPIC);
    await withClients(async (use) => {
      const producer = use(await rmqProducer('alice-restart', alice, { topics: [RMQ_TOPIC], maxAttempts: 3 }));
      const r = await withTimeout(producer.send(makeMessage(RMQ_TOPIC, 200)), CLIENT_OP_MS,
        'alice sends after the restart');
      assert.ok(r.messageId, 'a message id');
      const bobProducer = use(await rmqProducer('bob-restart', bob));
      assertRmqCode(await rejection(bobProducer.send(makeMessage(RMQ_TOPIC, 201)), CLIENT_OP_MS,
        'bob sends after the restart'), FORBIDDEN, 'bob sends after the restart');
    });
    assert.equal(await storedCount(RMQ_TOPIC), before + 1, `${RMQ_TOPIC} gained alice's one message`);

    /* The memory of good passwords does not outlive the process: the first sign-in is checked, the next remembered. */
    const m0 = await authMetrics();
    await mqttEnd(await mqttConnect('alice-restart-1', { version: 5, user: alice }));
    const m1 = await authMetrics();
    await mqttEnd(await mqttConnect('alice-restart-2', { version: 5, user: alice }));
    const m2 = await authMetrics();
    assert.deepEqual([m1.checks - m0.checks, m1.cacheHits - m0.cacheHits], [1, 0],
      `alice's first MQTT sign-in after the restart: [password checks, cache hits] grew by ` +
      `[${m1.checks - m0.checks}, ${m1.cacheHits - m0.cacheHits}]`);
    assert.deepEqual([m2.checks - m1.checks, m2.cacheHits - m1.cacheHits], [0, 1],
      `alice's second MQTT sign-in: [password checks, cache hits] grew by ` +
      `[${m2.checks - m1.checks}, ${m2.cacheHits - m1.cacheHits}]`);
    assert.equal(await refusedCode('alice-restart-wrong', { version: 5, user: alice, password: WRONG }),
      CONNACK[5].badPassword, 'MQTT wrong password after the restart');
  }));
