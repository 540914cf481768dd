// 16 EventBridge: CloudEvents in over HTTP with the CloudEvents SDK
// (npm `cloudevents` 10, pinned in the same lock file), out over HTTP pull,
// Kafka, RocketMQ, webhooks and MQTT, against one confluxd with the HTTP,
// gRPC, Kafka and MQTT listeners on.
//
// - Ingress: events made by the SDK and posted with HTTP.binary,
//   HTTP.structured and a batch (the SDK has no batch serializer, so the
//   application/cloudevents-batch+json body is the array of their toJSON())
//   are pulled back (GET /v1/buses/{bus}/events), one event in the binary
//   mode, several as a batch, parsed with HTTP.toEvent: every attribute and
//   the data are what was sent (extensions come back as strings).
// - The same events, read as the bus topic by kafkajs (ce_* and content-type
//   headers, the data as the value) and by a RocketMQ SimpleConsumer (CE_*
//   properties, CE_contentType, the data as the body).
// - The codec corpus (tests/unit/events/ce_corpus): each valid/*.json posted
//   in the structured mode (batch-*.json in the batched mode) is accepted and
//   pulled back equal as a CloudEvent; each invalid/*.json is refused (400;
//   413 for the oversize event) and nothing reaches the bus topic.
// - HTTP targets against a Node HTTP server: 500, 500, 200 is delivered on
//   the third attempt, the attempts no closer than the policy's interval,
//   the ce-* headers intact; a server that always answers 500 sends the
//   delivery to the target's dead letters after max_attempts with eb_error
//   and eb_attempts; a server that never answers is timed out and retried.
// - kill -9 of confluxd with 50 deliveries pending for a target whose
//   endpoint is down: after the restart, once the endpoint is up, every
//   event arrives (at least once).
// - An mqtt target: an MQTT 5 subscriber gets the data with the attributes
//   as user properties and the content type.
//
// Nothing asserts how fast anything is; the spacing of retries is a lower
// bound (the policy's interval minus a margin for the clocks).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { CloudEvent, HTTP } from 'cloudevents';
import { Kafka, logLevel } from 'kafkajs';
import mqtt from 'mqtt';
import { Confluxd, freePort } from './lib/server.mjs';
import {
  adminJson, adminRequest, readStored, startSimpleConsumer, receiveCount,
  withClients, withTimeout, uniqueName,
} from './lib/client.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CORPUS = path.resolve(HERE, '../../unit/events/ce_corpus');

const TEST_TIMEOUT_MS = 180_000;
const WAIT_MS = 30_000; /* for any one condition */
const POLL_MS = 50;
const REQUEST_MS = 10_000; /* one HTTP request (a pull waits PULL_WAIT_MS of it at most) */
const PULL_WAIT_MS = 2_000; /* wait_ms of each pull */
const CLIENT_OP_MS = 30_000; /* kafkajs and mqtt.js connect, subscribe, end */
const CLOCK_MARGIN_MS = 50; /* spacing of retries: timers and two processes' clocks */
/* The corpus README runs the codec with this limit (invalid/oversize-event.json). */
const EVENT_BYTES_MAX = '16KiB';

const kafkaPort = await freePort();
const mqttPort = await freePort();
const server = new Confluxd('16-eventbridge', {
  args: ['--kafka-listen', `127.0.0.1:${kafkaPort}`, '--mqtt-listen', `127.0.0.1:${mqttPort}`,
    '--eventbridge.event_bytes_max', EVENT_BYTES_MAX],
});
const RUN = randomBytes(4).toString('hex');

/* ------------------------------------------------------------------------
 * Client log: the test's timeline, printed when a test fails.
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
      process.stderr.write(`\n==== 16-eventbridge: test "${t?.name ?? '?'}" failed: ${err?.message ?? err}\n` +
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
  let lastError;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms` +
        (lastError ? ` (last error: ${lastError.message})` : '') + `\n${detail()}`);
    }
    await sleep(POLL_MS);
  }
}

/** fetch() with a deadline; resolves {status, headers (lower-case names), body (Buffer)}. */
async function request(method, urlPath, { headers = {}, body } = {}) {
  let res;
  try {
    res = await fetch(`${server.httpBase}${urlPath}`, {
      method, headers, body, signal: AbortSignal.timeout(REQUEST_MS),
    });
  } catch (err) {
    throw new Error(`${method} ${urlPath}: ${err.cause?.message ?? err.message}`, { cause: err });
  }
  const out = { status: res.status, headers: {}, body: Buffer.from(await res.arrayBuffer()) };
  for (const [k, v] of res.headers) out.headers[k] = v;
  return out;
}

const busPath = (bus) => `/v1/buses/${encodeURIComponent(bus)}`;

/** Creates a bus (POST /v1/buses). */
async function createBus(bus) {
  await adminJson(server, 'POST', '/v1/buses', { name: bus, description: `16-eventbridge ${RUN}` });
  note(`bus ${bus} created`);
}

/**
 * POSTs a CloudEvents message ({headers, body}, as the SDK's serializers make
 * them) to a bus; asserts the status (200 by default) and returns the answer.
 */
async function postEvents(bus, message, what, { status = 200 } = {}) {
  const body = typeof message.body === 'string' || Buffer.isBuffer(message.body)
    ? message.body : Buffer.from(message.body);
  const res = await request('POST', `${busPath(bus)}/events`, { headers: message.headers, body });
  assert.equal(res.status, status, `${what}: POST ${busPath(bus)}/events with ` +
    `${JSON.stringify(message.headers)} answered ${res.status} ${res.body.toString()}, expected ${status}`);
  return res;
}

/** The batched mode: the SDK has no serializer for it, so the body is the array of toJSON()s. */
function batchMessage(events) {
  return {
    headers: { 'content-type': 'application/cloudevents-batch+json' },
    body: JSON.stringify(events.map((e) => e.toJSON())),
  };
}

/**
 * One pull (GET /v1/buses/{bus}/events?group&max&wait_ms). Returns
 * {mode: 'none'|'binary'|'structured'|'batch', res}.
 */
async function pullOnce(bus, group, max, waitMs = PULL_WAIT_MS) {
  const q = new URLSearchParams({ group, max: String(max), wait_ms: String(waitMs) });
  const res = await request('GET', `${busPath(bus)}/events?${q}`);
  if (res.status === 204) return { mode: 'none', res };
  assert.equal(res.status, 200, `pull ${bus}/${group}: ${res.status} ${res.body.toString()}`);
  const ct = res.headers['content-type'] ?? '';
  if (ct.startsWith('application/cloudevents-batch+json')) return { mode: 'batch', res };
  if (ct.startsWith('application/cloudevents+json')) return { mode: 'structured', res };
  return { mode: 'binary', res };
}

/** The body as HTTP.toEvent wants it: text for JSON and text types, bytes otherwise. */
function sdkBody(res) {
  const ct = res.headers['content-type'] ?? '';
  return /json|^text\//i.test(ct) ? res.body.toString('utf8') : res.body;
}

/** The CloudEvents of one pull answer, parsed with the SDK (HTTP.toEvent). */
function sdkEvents(pulled) {
  const ev = HTTP.toEvent({ headers: pulled.res.headers, body: sdkBody(pulled.res) });
  return Array.isArray(ev) ? ev : [ev];
}

/** Makes the first pull of a group (created at the end of the bus): nothing must come. */
async function openGroup(bus, group) {
  const p = await pullOnce(bus, group, 1, 0);
  assert.equal(p.mode, 'none', `the first pull of a new group on ${bus} answers 204`);
}

/** Events stored in the bus topic: the sum over its queues of end - start offsets. */
async function storedCount(topic) {
  const t = await adminJson(server, 'GET', `/v1/topics/${encodeURIComponent(topic)}`);
  return t.queue_offsets.reduce((n, q) => n + (q.end_offset - q.start_offset), 0);
}

/** The bytes of a CloudEvent's data (a Buffer, a typed array, a string or JSON). */
function dataBytes(data) {
  if (data === undefined || data === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(data)) return data;
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.from(JSON.stringify(data), 'utf8');
}

const CORE = ['specversion', 'id', 'source', 'type', 'datacontenttype', 'dataschema', 'subject', 'time'];

/** A CloudEvent's context attributes as strings (the binary bindings carry no types). */
function attributesOf(ev) {
  const out = {};
  for (const [k, v] of Object.entries(ev)) {
    if (v === undefined || k === 'data' || k === 'data_base64') continue;
    out[k] = String(v);
  }
  return out;
}

/**
 * Asserts that `got` (parsed by the SDK) is the event `sent` (made by the
 * SDK): the same attributes (extensions compared as strings) and the same
 * data (as JSON for a JSON content type, byte for byte otherwise).
 */
function assertSameEvent(got, sent, what) {
  assert.deepEqual(attributesOf(got), attributesOf(sent), `${what}: attributes`);
  if (/json/i.test(sent.datacontenttype ?? 'application/json') && !ArrayBuffer.isView(sent.data)) {
    assert.deepEqual(got.data, sent.data, `${what}: data`);
  } else {
    assert.ok(dataBytes(got.data).equals(dataBytes(sent.data)), `${what}: data bytes differ ` +
      `(got ${dataBytes(got.data).toString('hex')}, sent ${dataBytes(sent.data).toString('hex')})`);
  }
}

/* ------------------------------------------------------------------------
 * The SDK events of the ingress tests
 * ---------------------------------------------------------------------- */

/**
 * Seven events made with the SDK: two posted in the binary mode (JSON data,
 * bytes), two in the structured mode (JSON data with every optional
 * attribute and typed extensions, text data), three as one batch (JSON,
 * bytes as data_base64, no data). Every value is printable ASCII without
 * spaces, '"' or '%', which the SDK would send in ce-* headers without the
 * percent-encoding the binding asks for.
 */
function sdkEventSet(tag) {
  const src = `/it16/${RUN}/${tag}`;
  const ev = (i, props) => new CloudEvent({
    specversion: '1.0', id: `${tag}-${RUN}-${i}`, source: src, type: `it16.${tag}.e${i}`, ...props,
  });
  const bytes = Buffer.concat([Buffer.from([0, 1, 2, 0xfe, 0xff]), randomBytes(32)]);
  return {
    binary: [
      ev(0, { datacontenttype: 'application/json', subject: 'order-0', region: 'eu',
        data: { amount: 150, items: ['a', 'b'], nested: { ok: true, n: null } } }),
      ev(1, { datacontenttype: 'application/octet-stream', data: bytes, seq: '1' }),
    ],
    structured: [
      ev(2, { datacontenttype: 'application/json', subject: 'order-2', dataschema: 'https://example.com/schema/order',
        time: '2026-01-02T03:04:05.678Z', count: 42, flag: true, label: 'x-y_z',
        data: { amount: 20, text: 'unicode é→✓', list: [1, 2.5, 'three'] } }),
      ev(3, { datacontenttype: 'text/plain', data: 'plain text, with spaces and é' }),
    ],
    batch: [
      ev(4, { datacontenttype: 'application/json', data: [1, 2, 3], region: 'us' }),
      ev(5, { datacontenttype: 'application/octet-stream', data: randomBytes(48) }),
      ev(6, { subject: 'no-data' }),
    ],
  };
}

/** Posts a set: each binary and structured event on its own, the batch as one request. */
async function postEventSet(bus, set) {
  for (const e of set.binary) {
    const r = await postEvents(bus, HTTP.binary(e), `binary ${e.id}`);
    assert.deepEqual(JSON.parse(r.body), { accepted: 1 }, `binary ${e.id}: answer`);
  }
  for (const e of set.structured) {
    const r = await postEvents(bus, HTTP.structured(e), `structured ${e.id}`);
    assert.deepEqual(JSON.parse(r.body), { accepted: 1 }, `structured ${e.id}: answer`);
  }
  const r = await postEvents(bus, batchMessage(set.batch), 'batch');
  assert.deepEqual(JSON.parse(r.body), { accepted: set.batch.length }, 'batch: answer');
  return [...set.binary, ...set.structured, ...set.batch];
}

/* ------------------------------------------------------------------------
 * Server lifecycle
 * ---------------------------------------------------------------------- */

const openClients = new Set(); /* kafkajs and mqtt.js clients still to close */
const httpServers = new Set(); /* webhook receivers */

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
  for (const c of [...openClients]) {
    openClients.delete(c);
    await withTimeout(Promise.resolve(c.close()), CLIENT_OP_MS, 'leftover client').catch(() => {});
  }
  for (const s of [...httpServers]) await closeHttp(s);
  await server.stop();
});

/* ------------------------------------------------------------------------
 * 1. Ingress with the SDK, pull back
 * ---------------------------------------------------------------------- */

test('SDK events in binary, structured and batched mode are pulled back unchanged',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16in');
    const group = uniqueName('g16in');
    await createBus(bus);
    await openGroup(bus, group);
    const sent = await postEventSet(bus, sdkEventSet('in'));
    const byId = new Map(sent.map((e) => [e.id, e]));

    /* One event per pull first (the binary mode), then the rest in batches. */
    const got = new Map();
    const modes = [];
    const first = await pullOnce(bus, group, 1);
    modes.push(first.mode);
    assert.equal(first.mode, 'binary', 'a pull of one event answers in the binary mode');
    for (const e of sdkEvents(first)) got.set(e.id, e);
    await waitFor(async () => {
      const p = await pullOnce(bus, group, 100);
      if (p.mode === 'none') return got.size >= sent.length;
      modes.push(p.mode);
      const evs = sdkEvents(p);
      if (evs.length > 1) assert.equal(p.mode, 'batch', 'several events come as a batch');
      for (const e of evs) {
        assert.ok(!got.has(e.id), `event ${e.id} pulled twice by one group`);
        got.set(e.id, e);
      }
      return got.size >= sent.length;
    }, 'every posted event pulled', { detail: () => `pulled ${[...got.keys()]}; modes ${modes}` });
    note(`pull modes: ${modes.join(', ')}`);
    assert.ok(modes.includes('batch'), `at least one pull answered a batch (modes: ${modes})`);
    assert.deepEqual([...got.keys()].sort(), [...byId.keys()].sort(), 'the pulled ids');
    for (const [id, e] of got) assertSameEvent(e, byId.get(id), `event ${id}`);

    /* Nothing more for the group. */
    const rest = await pullOnce(bus, group, 100, 300);
    assert.equal(rest.mode, 'none', 'nothing left to pull');
  }));

/* ------------------------------------------------------------------------
 * 2. The same events over Kafka and RocketMQ
 * ---------------------------------------------------------------------- */

/** The stored form of an SDK event: its ce_ attributes and content type, and its data bytes. */
function storedForm(e) {
  const attrs = attributesOf(e);
  const ct = attrs.datacontenttype;
  delete attrs.datacontenttype;
  return { attrs, ct, data: e.data };
}

/** Compares stored data with the SDK event's: as JSON for JSON content types, else byte for byte. */
function assertSameData(bytes, e, what) {
  if (e.data === undefined) {
    assert.equal(bytes.length, 0, `${what}: an event without data has an empty body`);
  } else if (/json/i.test(e.datacontenttype ?? 'application/json') && !ArrayBuffer.isView(e.data)) {
    assert.deepEqual(JSON.parse(bytes.toString('utf8')), e.data, `${what}: data (JSON)`);
  } else {
    assert.ok(bytes.equals(dataBytes(e.data)), `${what}: data bytes differ ` +
      `(got ${bytes.toString('hex')}, sent ${dataBytes(e.data).toString('hex')})`);
  }
}

test('the same events read by kafkajs (ce_* headers) and a RocketMQ SimpleConsumer (CE_* properties)',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16x');
    await createBus(bus);
    await withClients(async (use) => {
      /* The RocketMQ group must exist before the events are stored. */
      const rmq = use(await startSimpleConsumer(server, {
        group: uniqueName('g16rmq'), subscriptions: { [bus]: '*' }, name: 'rmq16',
      }));
      const sent = await postEventSet(bus, sdkEventSet('x'));
      const byId = new Map(sent.map((e) => [e.id, e]));

      /* RocketMQ: CE_<attribute> properties, CE_contentType, the data as the body. */
      const views = await receiveCount(rmq, sent.length, { timeoutMs: WAIT_MS * 3 });
      const seen = new Set();
      for (const v of views) {
        const props = Object.fromEntries(v.properties);
        const id = props.CE_id;
        const e = byId.get(id);
        assert.ok(e, `RocketMQ: a message with CE_id ${id} that was not sent (${JSON.stringify(props)})`);
        assert.ok(!seen.has(id), `RocketMQ: ${id} received twice`);
        seen.add(id);
        const want = storedForm(e);
        const ce = {};
        for (const [k, val] of Object.entries(props)) {
          if (k.startsWith('CE_') && k !== 'CE_contentType') ce[k.slice(3)] = val;
        }
        assert.deepEqual(ce, want.attrs, `RocketMQ ${id}: CE_* properties`);
        assert.equal(props.CE_contentType, want.ct, `RocketMQ ${id}: CE_contentType`);
        assertSameData(Buffer.from(v.body), e, `RocketMQ ${id}`);
      }

      /* Kafka: ce_<attribute> headers, content-type, the data as the value. */
      const kafka = new Kafka({
        clientId: 'it16', brokers: [`127.0.0.1:${kafkaPort}`], logLevel: logLevel.NOTHING,
        connectionTimeout: 3_000, retry: { retries: 5, initialRetryTime: 200 },
      });
      const consumer = kafka.consumer({ groupId: uniqueName('g16kafka'), maxWaitTimeInMs: 250 });
      const records = [];
      openClients.add({ close: () => consumer.disconnect() });
      await withTimeout(consumer.connect(), CLIENT_OP_MS, 'kafkajs connect');
      try {
        await withTimeout(consumer.subscribe({ topic: bus, fromBeginning: true }), CLIENT_OP_MS, 'kafkajs subscribe');
        await consumer.run({ eachMessage: async ({ message }) => { records.push(message); } });
        await waitFor(() => records.length >= sent.length, `kafkajs received ${sent.length} records`,
          { detail: () => `got ${records.length}` });
      } finally {
        await withTimeout(consumer.disconnect(), CLIENT_OP_MS, 'kafkajs disconnect');
      }
      const kseen = new Set();
      for (const r of records) {
        const h = Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, v?.toString('utf8')]));
        const e = byId.get(h.ce_id);
        assert.ok(e, `Kafka: a record with ce_id ${h.ce_id} that was not sent (${JSON.stringify(h)})`);
        assert.ok(!kseen.has(h.ce_id), `Kafka: ${h.ce_id} read twice`);
        kseen.add(h.ce_id);
        const want = storedForm(e);
        const ce = {};
        for (const [k, val] of Object.entries(h)) if (k.startsWith('ce_')) ce[k.slice(3)] = val;
        assert.deepEqual(ce, want.attrs, `Kafka ${h.ce_id}: ce_* headers`);
        assert.equal(h['content-type'], want.ct, `Kafka ${h.ce_id}: content-type header`);
        assertSameData(r.value ?? Buffer.alloc(0), e, `Kafka ${h.ce_id}`);
      }
      assert.equal(kseen.size, sent.length, 'Kafka: every event read once');
    });
  }));

/* ------------------------------------------------------------------------
 * 3. The codec corpus over HTTP
 * ---------------------------------------------------------------------- */

function isJsonType(ct) {
  if (ct === undefined) return true; /* the JSON format's default */
  const mt = ct.split(';')[0].trim().toLowerCase();
  return mt === 'application/json' || mt === 'text/json' || mt.endsWith('+json');
}

/**
 * A CloudEvent in the JSON format (an object) reduced to what it means:
 * attributes as strings (extensions lose their JSON types in the binary
 * bindings; a null attribute is unset, JSON format 2.2; the content type
 * defaults to application/json when there is JSON data), and the data as a
 * JSON value (JSON content types; `"data": null` is the JSON value null) or
 * bytes (none when empty: the binary bindings cannot tell empty data from
 * no data).
 */
function semantic(obj) {
  const attrs = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'data' || k === 'data_base64' || v === null) continue;
    attrs[k] = String(v);
  }
  let data = { kind: 'none' };
  let bytes;
  if (typeof obj.data_base64 === 'string') bytes = Buffer.from(obj.data_base64, 'base64');
  else if (obj.data !== undefined && !isJsonType(obj.datacontenttype)) {
    bytes = typeof obj.data === 'string' ? Buffer.from(obj.data, 'utf8') : Buffer.from(JSON.stringify(obj.data));
  } else if (obj.data !== undefined) {
    data = { kind: 'json', value: obj.data };
  }
  if (bytes !== undefined && bytes.length > 0) {
    data = { kind: 'bytes', hex: bytes.toString('hex') };
    if (isJsonType(obj.datacontenttype)) {
      try { data = { kind: 'json', value: JSON.parse(bytes.toString('utf8')) }; } catch { /* bytes */ }
    }
  }
  if (data.kind === 'json' && attrs.datacontenttype === undefined) attrs.datacontenttype = 'application/json';
  return { attrs, data };
}

/** Percent-decoding of a ce-* header value (RFC 3986 %XX, UTF-8). */
function percentDecode(s) {
  return Buffer.from(s.replace(/%([0-9A-Fa-f]{2})|[^%]+/g, (m, hex) =>
    hex ? String.fromCharCode(parseInt(hex, 16)) : Buffer.from(m, 'utf8').toString('latin1')), 'latin1').toString('utf8');
}

/** The events of one pull as JSON-format objects (a binary answer converted by hand). */
function jsonEvents(pulled) {
  const { res } = pulled;
  if (pulled.mode === 'batch') return JSON.parse(res.body.toString('utf8'));
  if (pulled.mode === 'structured') return [JSON.parse(res.body.toString('utf8'))];
  const obj = {};
  for (const [k, v] of Object.entries(res.headers)) {
    if (k.startsWith('ce-')) obj[k.slice(3)] = percentDecode(v.trim());
  }
  if (res.headers['content-type'] !== undefined) obj.datacontenttype = res.headers['content-type'];
  if (res.body.length > 0) obj.data_base64 = res.body.toString('base64');
  return [obj];
}

test('the CloudEvents corpus: valid events are stored and pulled back equal, invalid ones are refused',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16corpus');
    const group = uniqueName('g16corpus');
    await createBus(bus);
    await openGroup(bus, group);

    const valid = fs.readdirSync(path.join(CORPUS, 'valid')).filter((f) => f.endsWith('.json')).sort();
    const invalid = fs.readdirSync(path.join(CORPUS, 'invalid')).filter((f) => f.endsWith('.json')).sort();
    assert.ok(valid.length > 20 && invalid.length > 50, `corpus found (${valid.length} valid, ${invalid.length} invalid)`);

    const mismatches = [];
    for (const f of valid) {
      const bytes = fs.readFileSync(path.join(CORPUS, 'valid', f));
      const doc = JSON.parse(bytes.toString('utf8'));
      const batch = f.startsWith('batch-');
      /* The HTTP binding's batched mode has at least one event (admin-api.md). */
      if (batch && doc.length === 0) continue;
      const want = batch ? doc : [doc];
      const ct = batch ? 'application/cloudevents-batch+json' : 'application/cloudevents+json';
      const res = await request('POST', `${busPath(bus)}/events`, { headers: { 'content-type': ct }, body: bytes });
      if (res.status !== 200) {
        mismatches.push(`${f}: POST answered ${res.status} ${res.body.toString()}`);
        continue;
      }
      const got = [];
      const deadline = Date.now() + WAIT_MS;
      while (got.length < want.length && Date.now() < deadline) {
        const p = await pullOnce(bus, group, 100);
        if (p.mode !== 'none') got.push(...jsonEvents(p));
      }
      if (got.length !== want.length) {
        mismatches.push(`${f}: pulled ${got.length} event(s), posted ${want.length}`);
        continue;
      }
      /* A batch's events come from several queues: match them by position of their id. */
      const order = (evs) => [...evs].sort((a, b) => String(a.id).localeCompare(String(b.id)));
      const [g, w] = [order(got), order(want)];
      for (let i = 0; i < w.length; i++) {
        const sg = semantic(g[i]);
        const sw = semantic(w[i]);
        try {
          assert.deepEqual(sg, sw);
        } catch {
          mismatches.push(`${f}: pulled ${JSON.stringify(sg)}\n    posted ${JSON.stringify(sw)}`);
        }
      }
    }
    assert.deepEqual(mismatches, [], `valid corpus files:\n  ${mismatches.join('\n  ')}`);

    const before = await storedCount(bus);
    const wrong = [];
    for (const f of invalid) {
      const bytes = fs.readFileSync(path.join(CORPUS, 'invalid', f));
      const ct = f.startsWith('batch-') ? 'application/cloudevents-batch+json' : 'application/cloudevents+json';
      const res = await request('POST', `${busPath(bus)}/events`, { headers: { 'content-type': ct }, body: bytes });
      const want = f === 'oversize-event.json' ? 413 : 400;
      if (res.status !== want) wrong.push(`${f}: ${res.status} ${res.body.toString()} (expected ${want})`);
    }
    assert.deepEqual(wrong, [], `invalid corpus files:\n  ${wrong.join('\n  ')}`);
    assert.equal(await storedCount(bus), before, 'events stored in the bus topic by the invalid requests');
    const p = await pullOnce(bus, group, 100, 300);
    assert.equal(p.mode, 'none', 'nothing to pull after the invalid requests');
  }));

/* ------------------------------------------------------------------------
 * Webhook receivers
 * ---------------------------------------------------------------------- */

/**
 * A Node HTTP server on 127.0.0.1 (port 0 = any); `answer(req, n)` gives the
 * status of the n-th request (from 1) or null to never answer. Records every
 * request: {t (ms, monotonic), headers, body, path}.
 */
async function startHook(answer, port = 0) {
  const hook = { hits: [], pending: new Set() };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const hit = { t: performance.now(), headers: { ...req.headers }, body: Buffer.concat(chunks), path: req.url };
      hook.hits.push(hit);
      const status = answer(req, hook.hits.length, hit);
      if (status === null) {
        hook.pending.add(res);
        res.on('close', () => hook.pending.delete(res));
        return;
      }
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status < 300 ? 'ok' : 'no');
    });
  });
  srv.keepAliveTimeout = 1_000;
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(port, '127.0.0.1', resolve);
  });
  hook.srv = srv;
  hook.port = srv.address().port;
  hook.url = `http://127.0.0.1:${hook.port}/hook`;
  httpServers.add(hook);
  return hook;
}

async function closeHttp(hook) {
  if (!httpServers.has(hook)) return;
  httpServers.delete(hook);
  for (const res of hook.pending) res.socket?.destroy();
  hook.srv.closeAllConnections?.();
  await new Promise((resolve) => hook.srv.close(resolve));
}

/** Creates a target and a rule on `bus` sending events of type `type` to it. */
async function route(bus, type, target) {
  await adminJson(server, 'POST', '/v1/targets', target);
  await adminJson(server, 'POST', `${busPath(bus)}/rules`, {
    name: `r-${target.name}`, pattern: { type: [type] }, targets: [{ target: target.name }],
  });
  note(`rule r-${target.name} on ${bus}: type ${type} → ${JSON.stringify(target)}`);
}

/** The messages of a dead-letter topic (one queue), once it holds `count`. */
async function deadLetters(targetName, count) {
  const topic = `%EB%DLQ%${targetName}`;
  await waitFor(async () => {
    const r = await adminRequest(server, 'GET', `/v1/topics/${encodeURIComponent(topic)}`);
    return r.status === 200 && r.json.queue_offsets.reduce((n, q) => n + q.end_offset, 0) >= count;
  }, `${count} message(s) in ${topic}`);
  return (await readStored(server, topic, 0, 0, 100)).messages;
}

const RETRY_INTERVAL_MS = 300;

test('HTTP targets: retries spaced by the policy, dead letters after max_attempts, timeouts retried',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16hook');
    await createBus(bus);
    const retry = { strategy: 'backoff', interval_ms: RETRY_INTERVAL_MS, max_attempts: 4 };

    /* 500, 500, then 200: delivered on the third attempt. */
    const flaky = await startHook((req, n) => (n <= 2 ? 500 : 200));
    const tFlaky = uniqueName('t16flaky');
    await route(bus, 'it16.flaky', { name: tFlaky, type: 'http', url: flaky.url, retry });
    const e1 = new CloudEvent({ id: `flaky-${RUN}`, source: `/it16/${RUN}`, type: 'it16.flaky',
      datacontenttype: 'application/json', subject: 'sub-1', region: 'eu', data: { n: 1 } });
    await postEvents(bus, HTTP.binary(e1), 'flaky event');
    await waitFor(() => flaky.hits.length >= 3, 'three attempts at the flaky endpoint',
      { detail: () => `${flaky.hits.length} attempts` });
    await waitFor(async () => (await adminJson(server, 'GET', `/v1/targets/${tFlaky}`)).stats.delivered === 1,
      'the flaky target counts one delivery');
    await sleep(3 * RETRY_INTERVAL_MS); /* time for an attempt too many to show */
    assert.equal(flaky.hits.length, 3, 'attempts at the flaky endpoint (500, 500, 200)');
    for (let i = 1; i < flaky.hits.length; i++) {
      const gap = flaky.hits[i].t - flaky.hits[i - 1].t;
      note(`flaky attempt ${i + 1}: ${gap.toFixed(1)} ms after the previous one`);
      assert.ok(gap >= RETRY_INTERVAL_MS - CLOCK_MARGIN_MS,
        `attempt ${i + 1} came ${gap.toFixed(1)} ms after attempt ${i}; the policy's interval is ${RETRY_INTERVAL_MS} ms`);
    }
    for (const [i, hit] of flaky.hits.entries()) {
      const what = `flaky attempt ${i + 1}`;
      assert.equal(hit.path, '/hook', `${what}: path`);
      assert.equal(hit.headers['ce-specversion'], '1.0', `${what}: ce-specversion`);
      assert.equal(hit.headers['ce-id'], e1.id, `${what}: ce-id`);
      assert.equal(hit.headers['ce-source'], e1.source, `${what}: ce-source`);
      assert.equal(hit.headers['ce-type'], e1.type, `${what}: ce-type`);
      assert.equal(hit.headers['ce-subject'], e1.subject, `${what}: ce-subject`);
      assert.equal(hit.headers['ce-region'], 'eu', `${what}: ce-region`);
      assert.equal(new Date(hit.headers['ce-time']).toISOString(), e1.time, `${what}: ce-time`);
      assert.equal(hit.headers['content-type'], 'application/json', `${what}: content-type`);
      assert.deepEqual(JSON.parse(hit.body.toString()), e1.data, `${what}: body`);
    }
    await closeHttp(flaky);

    /* Always 500: four attempts, then the dead letters. */
    const down = await startHook(() => 500);
    const tDown = uniqueName('t16down');
    await route(bus, 'it16.down', { name: tDown, type: 'http', url: down.url, retry });
    const e2 = new CloudEvent({ id: `down-${RUN}`, source: `/it16/${RUN}`, type: 'it16.down',
      datacontenttype: 'text/plain', data: 'never delivered' });
    await postEvents(bus, HTTP.structured(e2), 'event for the failing endpoint');
    const dl = await deadLetters(tDown, 1);
    assert.equal(dl.length, 1, 'one dead letter');
    assert.equal(down.hits.length, 4, 'attempts at the failing endpoint before the dead letters');
    const p = dl[0].properties;
    assert.equal(p.ce_id, e2.id, 'dead letter: ce_id');
    assert.equal(p.ce_type, e2.type, 'dead letter: ce_type');
    assert.equal(p['content-type'], 'text/plain', 'dead letter: content-type');
    assert.equal(dl[0].body, 'never delivered', 'dead letter: body');
    assert.equal(p.eb_attempts, '4', 'dead letter: eb_attempts');
    assert.match(p.eb_error ?? '', /500/, 'dead letter: eb_error names the status');
    const st = (await adminJson(server, 'GET', `/v1/targets/${tDown}`)).stats;
    assert.equal(st.dead_lettered, 1, 'target stats: dead_lettered');
    assert.equal(st.delivered, 0, 'target stats: delivered');
    await closeHttp(down);

    /* Never answers: each attempt times out (timeout_ms 500) and is retried. */
    const mute = await startHook(() => null);
    const tMute = uniqueName('t16mute');
    await route(bus, 'it16.mute', { name: tMute, type: 'http', url: mute.url, timeout_ms: 500,
      retry: { ...retry, max_attempts: 3 } });
    const e3 = new CloudEvent({ id: `mute-${RUN}`, source: `/it16/${RUN}`, type: 'it16.mute',
      datacontenttype: 'application/json', data: { n: 3 } });
    await postEvents(bus, HTTP.binary(e3), 'event for the silent endpoint');
    const dl3 = await deadLetters(tMute, 1);
    assert.equal(mute.hits.length, 3, 'attempts at the silent endpoint (each timed out)');
    for (let i = 1; i < mute.hits.length; i++) {
      const gap = mute.hits[i].t - mute.hits[i - 1].t;
      assert.ok(gap >= 500 + RETRY_INTERVAL_MS - CLOCK_MARGIN_MS,
        `silent endpoint attempt ${i + 1} came ${gap.toFixed(1)} ms after attempt ${i} ` +
        '(timeout 500 ms + interval 300 ms)');
    }
    assert.equal(dl3[0].properties.ce_id, e3.id, 'silent endpoint dead letter: ce_id');
    assert.equal(dl3[0].properties.eb_attempts, '3', 'silent endpoint dead letter: eb_attempts');
    note(`silent endpoint eb_error: ${dl3[0].properties.eb_error}`);
    assert.ok(dl3[0].properties.eb_error, 'silent endpoint dead letter: eb_error');
    await closeHttp(mute);
  }));

/* ------------------------------------------------------------------------
 * 5. kill -9 with deliveries pending
 * ---------------------------------------------------------------------- */

const KILL_EVENTS = 50;

test('kill -9 with 50 deliveries pending for a down endpoint: all arrive after the restart',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16kill');
    await createBus(bus);
    const port = await freePort(); /* nothing listens there until the end */
    const tKill = uniqueName('t16kill');
    await route(bus, 'it16.kill', { name: tKill, type: 'http', url: `http://127.0.0.1:${port}/hook`,
      retry: { strategy: 'backoff', interval_ms: 500, max_attempts: 1000 } });
    const ids = [];
    for (let i = 0; i < KILL_EVENTS; i++) {
      const e = new CloudEvent({ id: `kill-${RUN}-${i}`, source: `/it16/${RUN}`, type: 'it16.kill',
        datacontenttype: 'application/json', data: { i } });
      ids.push(e.id);
      await postEvents(bus, i % 2 ? HTTP.binary(e) : HTTP.structured(e), `event ${i}`);
    }
    note(`${KILL_EVENTS} events stored; kill -9`);
    await server.kill();
    assert.equal(server.exit?.signal, 'SIGKILL', `confluxd was killed (${JSON.stringify(server.exit)})`);
    await startServer(() => server.start());
    note('confluxd started again');

    const hook = await startHook(() => 200, port);
    const distinct = () => new Set(hook.hits.map((h) => h.headers['ce-id']));
    await waitFor(() => distinct().size >= KILL_EVENTS, `all ${KILL_EVENTS} events at the endpoint`, {
      ms: 90_000,
      detail: () => `missing ${ids.filter((id) => !distinct().has(id))}`,
    });
    const unknown = [...distinct()].filter((id) => !ids.includes(id));
    assert.deepEqual(unknown, [], 'ids that were not sent');
    note(`${hook.hits.length} requests for ${KILL_EVENTS} events (duplicates allowed)`);
    await closeHttp(hook);
  }));

/* ------------------------------------------------------------------------
 * 6. Egress to MQTT
 * ---------------------------------------------------------------------- */

test('an mqtt target publishes to MQTT 5 subscribers with the attributes as user properties',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    const bus = uniqueName('b16mqtt');
    await createBus(bus);
    const received = [];
    const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
      clientId: `it16-${RUN}`, protocolVersion: 5, clean: true, reconnectPeriod: 0,
      connectTimeout: CLIENT_OP_MS,
    });
    const closer = { close: () => client.endAsync(true) };
    openClients.add(closer);
    client.on('message', (topic, payload, packet) => {
      received.push({ topic, payload: Buffer.from(payload), props: packet.properties ?? {} });
    });
    await withTimeout(new Promise((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    }), CLIENT_OP_MS, 'mqtt connect');
    await withTimeout(client.subscribeAsync('eb/out', { qos: 1 }), CLIENT_OP_MS, 'mqtt subscribe');

    await route(bus, 'it16.mqtt', { name: uniqueName('t16mqtt'), type: 'mqtt', mqtt_topic: 'eb/out' });
    const e = new CloudEvent({ id: `mqtt-${RUN}`, source: `/it16/${RUN}`, type: 'it16.mqtt',
      datacontenttype: 'application/json', subject: 'dev-1', region: 'eu', count: 7,
      data: { temperature: 21.5, unit: 'C' } });
    await postEvents(bus, HTTP.structured(e), 'event for MQTT');
    await waitFor(() => received.length >= 1, 'the MQTT subscriber receives the event');
    const m = received[0];
    assert.equal(m.topic, 'eb/out', 'MQTT topic');
    assert.deepEqual(JSON.parse(m.payload.toString()), e.data, 'MQTT payload = the data');
    assert.equal(m.props.contentType, 'application/json', 'MQTT Content Type property');
    const up = { ...(m.props.userProperties ?? {}) };
    const want = attributesOf(e);
    delete want.datacontenttype;
    assert.deepEqual(up, want, 'MQTT user properties = the attributes');
    openClients.delete(closer);
    await withTimeout(client.endAsync(), CLIENT_OP_MS, 'mqtt end');
  }));
