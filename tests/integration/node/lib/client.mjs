// Helpers around the official RocketMQ 5 Node.js client (rocketmq-client-nodejs,
// pinned in package.json): clients that log into memory instead of
// ~/logs/rocketmq, unique names, test messages and their checks, receive
// loops with explicit deadlines, and the one place that creates a topic
// through the admin HTTP API.
//
// Facts about the client this file relies on (read from its source, 1.0.8):
// - startup() waits without a timeout for the first Settings answer on the
//   Telemetry stream when topics are configured, so every start here is
//   bounded by CLIENT_START_TIMEOUT_MS.
// - Log calls are printf-style (%s %d %j); the client closes its logger in
//   shutdown().
// - With more than one topic at startup (producer topics, or consumer
//   subscriptions) startup() can hang: it routes the topics one after the
//   other and only then starts waiting for Settings, so a Settings answer that
//   arrives while a later QueryRoute is in flight is dropped (the next chance
//   is the 5-minute settings sync). The helpers start clients with one topic.
// - shutdown() half-closes each Telemetry stream and removes all its
//   listeners at once, 'error' included, without waiting for the server to
//   finish the stream; a late error status would be an uncaught exception.
//   watchTelemetry() keeps an 'error' listener on, and shutdownClient() waits
//   for the server to finish each stream.
// - PushConsumer's consume service ignores the logger option and opens its
//   own file logger under $HOME/logs/rocketmq with a 1 s flush interval that
//   is never cleared; shutdownClient() closes it (run.sh also points HOME at a
//   scratch directory).

import assert from 'node:assert/strict';
import { format } from 'node:util';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Producer,
  SimpleConsumer,
  PushConsumer,
  ConsumeResult,
} from 'rocketmq-client-nodejs';

export { ConsumeResult };

/* Limits, all generous (2-core machine, parallel suites). */
export const REQUEST_TIMEOUT_MS = 5_000; /* client deadline of each unary RPC */
export const AWAIT_DURATION_MS = 5_000; /* SimpleConsumer long polling */
export const INVISIBLE_MS = 10_000; /* the smallest invisible duration a receive may ask for */
export const CLIENT_START_TIMEOUT_MS = 30_000;
export const CLIENT_STOP_TIMEOUT_MS = 60_000; /* a PushConsumer waits for its long polls */
export const RECEIVE_TIMEOUT_MS = 90_000; /* to collect an expected set of messages */
export const ERROR_PAUSE_MS = 500; /* between retries of a failed call, where tolerated */
/* Lower bounds on delivery times allow this much for clock granularity between
 * the processes: a delivery may come late on a busy machine, never early. */
export const CLOCK_MARGIN_MS = 250;
export const TELEMETRY_END_TIMEOUT_MS = 10_000; /* client half-close → server finishes the stream */

/* ------------------------------------------------------------------------
 * Logging: a logger per client that keeps the lines in memory, prints them
 * live with CFX_NODE_CLIENT_LOG=1, and can be searched by a test.
 * ---------------------------------------------------------------------- */

const LOG_LINES_MAX = 5_000;
const liveLog = process.env.CFX_NODE_CLIENT_LOG === '1';

export class MemoryLogger {
  constructor(name) {
    this.name = name;
    this.lines = [];
  }

  write(level, args) {
    const line = `${new Date().toISOString()} ${level} [${this.name}] ${format(...args)}`;
    if (this.lines.length >= LOG_LINES_MAX) this.lines.shift();
    this.lines.push(line);
    if (liveLog) process.stderr.write(line + '\n');
  }

  info(...args) { this.write('INFO', args); }
  warn(...args) { this.write('WARN', args); }
  error(...args) { this.write('ERROR', args); }
  debug(...args) { if (liveLog) this.write('DEBUG', args); }
  close() { /* the client calls this in shutdown(); the lines stay readable */ }

  /** Lines at WARN or ERROR whose text matches `re`. */
  problems(re = /./) {
    return this.lines.filter((l) => / (WARN|ERROR) /.test(l) && re.test(l));
  }
}


/* ------------------------------------------------------------------------
 * Names and messages
 * ---------------------------------------------------------------------- */

let nameSeq = 0;
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36)}`;

/** A topic or group name unique to this run: [A-Za-z0-9_-], well under 120 chars. */
export function uniqueName(prefix) {
  nameSeq++;
  return `${prefix}_${RUN_ID}_${nameSeq}`;
}

/** Every byte value, so a body that comes back intact proves binary transparency. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/**
 * The message number `i` of a test: a body that carries the number, all 256
 * byte values and some random bytes; two keys; three user properties.
 * Returns the options for Producer.send().
 */
export function makeMessage(topic, i, { tag, extraProps } = {}) {
  const body = Buffer.concat([
    Buffer.from(`msg ${i} `),
    ALL_BYTES,
    randomBytes(16 + (i % 64)),
  ]);
  const properties = new Map([
    ['index', String(i)],
    ['run', RUN_ID],
    ['text', `value ${i} with spaces, unicode é→✓`],
  ]);
  for (const [k, v] of Object.entries(extraProps ?? {})) properties.set(k, v);
  const msg = { topic, body, keys: [`key-${i}`, `run-${RUN_ID}-${i}`], properties };
  if (tag !== undefined) msg.tag = tag;
  return msg;
}

/** The start of a body, for messages: printable ASCII, the rest as dots. */
export function printable(body, n = 16) {
  return body.subarray(0, n).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
}

/** The number a makeMessage() body carries. */
export function messageIndex(view) {
  const m = /^msg (\d+) /.exec(view.body.subarray(0, 24).toString('latin1'));
  assert.ok(m, `message ${view.messageId} has a body that is not a test message`);
  return Number(m[1]);
}

/**
 * Asserts that a received MessageView carries exactly what was sent:
 * topic, body bytes, tag, keys, user properties, message id; and that the
 * client found its body digest correct.
 */
export function assertSameMessage(view, sent, messageId) {
  const what = `message ${view.messageId}`;
  assert.ok(!view.corrupted, `${what}: the client says the body digest does not match`);
  assert.equal(view.topic, sent.topic, `${what}: topic`);
  assert.ok(Buffer.compare(view.body, sent.body) === 0, `${what}: body differs ` +
    `(got ${view.body.length} bytes, sent ${sent.body.length})`);
  /* The client reads an absent tag as '' (proto3 default). */
  assert.equal(view.tag || undefined, sent.tag || undefined, `${what}: tag`);
  assert.deepEqual(view.keys, sent.keys, `${what}: keys`);
  assert.deepEqual(Object.fromEntries(view.properties), Object.fromEntries(sent.properties),
    `${what}: user properties`);
  if (messageId !== undefined) assert.equal(view.messageId, messageId, `${what}: message id`);
}

/** A v1 message id as the 5.x clients make them: 17 bytes in upper-case hex, version 01. */
export const MESSAGE_ID_RE = /^01[0-9A-F]{32}$/;

/* ------------------------------------------------------------------------
 * Admin HTTP API: the only place that creates topics explicitly.
 * ---------------------------------------------------------------------- */

/**
 * Creates a topic through the admin HTTP API (POST /v1/topics with
 * {"name","type","queues"}) on the server's http port. Type is one of NORMAL,
 * FIFO, DELAY, TRANSACTION, MIXED. Throws with the answer when the status is
 * not 2xx.
 */
export async function createTopic(server, name, type = 'NORMAL', queues = 4) {
  let res;
  try {
    res = await fetch(`${server.httpBase}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name, type, queues }),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new Error(`POST ${server.httpBase}/v1/topics (creating ${type} topic ${name}): ` +
      `${err.cause?.message ?? err.message}`, { cause: err });
  }
  const text = await res.text();
  if (!res.ok) {
    throw new Error(`POST /v1/topics ${JSON.stringify({ name, type, queues })} answered ` +
      `${res.status}: ${text}`);
  }
  return text;
}

/* ------------------------------------------------------------------------
 * Clients
 * ---------------------------------------------------------------------- */

/** Rejects with `what` when `promise` has not settled after `ms`. */
export async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function baseOptions(server, logger) {
  return {
    endpoints: server.endpoints,
    namespace: '',
    requestTimeout: REQUEST_TIMEOUT_MS,
    logger,
  };
}

/**
 * Watches the client's Telemetry streams. The client ends a stream on
 * shutdown and at once removes every listener from it, including the one for
 * 'error'; an error status arriving later (the server going away before it
 * finished the stream) would then be an uncaught exception in the test
 * process. So after each removeAllListeners() a no-op 'error' listener and
 * the status watcher are put back, and shutdownClient() can wait until the
 * server has finished every stream.
 */
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

async function startClient(client, what) {
  watchTelemetry(client);
  if (client.topics.size > 1) {
    throw new Error(`${what}: start with one topic at most (the client can miss the Settings ` +
      'answer otherwise); route the others by using them');
  }
  try {
    await withTimeout(client.startup(), CLIENT_START_TIMEOUT_MS,
      `${what} startup (QueryRoute, then the first Settings on the Telemetry stream)`);
  } catch (err) {
    /* startup() may still be waiting for Settings with its timers running;
     * shutdown() clears them so the process can end. */
    await withTimeout(client.shutdown(), CLIENT_STOP_TIMEOUT_MS, `${what} shutdown`).catch(() => {});
    throw err;
  }
  return client;
}

/** A started Producer. `topics` are routed (QueryRoute) and announced during startup. */
export async function startProducer(server, { topics = [], name = 'producer', maxAttempts } = {}) {
  const logger = new MemoryLogger(name);
  const opts = { ...baseOptions(server, logger), topics };
  if (maxAttempts !== undefined) opts.maxAttempts = maxAttempts;
  const producer = new Producer(opts);
  producer.testLogger = logger;
  return startClient(producer, name);
}

/**
 * A started SimpleConsumer of `group`; `subscriptions` maps topic → tag
 * expression ('*', 'a', 'a||b').
 */
export async function startSimpleConsumer(server, { group, subscriptions, name = 'simple-consumer',
  awaitDuration = AWAIT_DURATION_MS } = {}) {
  const logger = new MemoryLogger(name);
  const consumer = new SimpleConsumer({
    ...baseOptions(server, logger),
    consumerGroup: group,
    subscriptions: new Map(Object.entries(subscriptions)),
    awaitDuration,
  });
  consumer.testLogger = logger;
  return startClient(consumer, name);
}

/**
 * A started PushConsumer of `group`; `consume(view)` is called for each
 * message and returns ConsumeResult.SUCCESS or FAILURE (or throws = FAILURE).
 */
export async function startPushConsumer(server, { group, subscriptions, consume,
  name = 'push-consumer' } = {}) {
  const logger = new MemoryLogger(name);
  const consumer = new PushConsumer({
    ...baseOptions(server, logger),
    consumerGroup: group,
    subscriptions: new Map(Object.entries(subscriptions)),
    messageListener: { consume },
  });
  consumer.testLogger = logger;
  return startClient(consumer, name);
}

/**
 * Shuts a client down (NotifyClientTermination, end of the Telemetry stream)
 * and closes the file logger a PushConsumer opens on its own. A second call
 * does nothing.
 */
export async function shutdownClient(client) {
  if (!client || client.testStopped) return;
  client.testStopped = true;
  const open = (client.testStreams ?? []).filter((st) => !st.status);
  try {
    await withTimeout(client.shutdown(), CLIENT_STOP_TIMEOUT_MS, 'client shutdown');
  } finally {
    const service = typeof client.getConsumeService === 'function' ? client.getConsumeService() : null;
    service?.logger?.close?.();
  }
  /* The client half-closed its Telemetry streams; the server must finish them. */
  for (const st of open) {
    const status = await withTimeout(st.done, TELEMETRY_END_TIMEOUT_MS,
      `the server finishing the Telemetry stream to ${st.endpoints} after the client half-closed it`);
    assert.equal(status.code, 0, `Telemetry stream to ${st.endpoints} ended with gRPC status ` +
      `${status.code} (${status.details}) after the client half-closed it; expected 0 (OK)`);
  }
}

/* ------------------------------------------------------------------------
 * Receiving with a SimpleConsumer
 * ---------------------------------------------------------------------- */

/**
 * Receives until `count` messages arrived, or throws after `timeoutMs`.
 * Each message is passed to `onMessage(view)` (which may ack) as it arrives.
 * Options:
 *   invisibleMs      invisible duration asked for (default INVISIBLE_MS)
 *   ack              ack each message as it arrives (default true)
 *   tolerateErrors   retry failed receive calls (after a server restart);
 *                    otherwise the first error is thrown
 *   batch            maxMessageNum of each receive (default 32)
 * Returns the views in arrival order.
 */
export async function receiveCount(consumer, count, {
  timeoutMs = RECEIVE_TIMEOUT_MS, invisibleMs = INVISIBLE_MS, ack = true,
  tolerateErrors = false, batch = 32, onMessage,
} = {}) {
  const got = [];
  const deadline = Date.now() + timeoutMs;
  let errors = 0;
  let lastError;
  while (got.length < count) {
    if (Date.now() > deadline) {
      throw new Error(`received ${got.length} of ${count} messages in ${timeoutMs} ms` +
        (errors ? ` (${errors} receive calls failed, last: ${lastError?.message})` : ''));
    }
    let views;
    try {
      views = await consumer.receive(Math.min(batch, count - got.length), invisibleMs);
    } catch (err) {
      if (!tolerateErrors) throw err;
      errors++;
      lastError = err;
      await sleep(ERROR_PAUSE_MS);
      continue;
    }
    if (views.length > 0) {
      /* Until then a lost ack could still show up (see assertNothingToReceive). */
      consumer.testQuietUntil = Math.max(consumer.testQuietUntil ?? 0, Date.now() + invisibleMs);
    }
    for (const view of views) {
      got.push(view);
      if (onMessage) await onMessage(view);
      if (ack) await retryCall(() => consumer.ack(view), tolerateErrors, deadline);
    }
  }
  return got;
}

/**
 * Receives until the invisible duration of the last messages receiveCount()
 * got has passed (at least once), and every receive must come back empty:
 * nothing is left, and no acked message reappears (an ack the server lost
 * would show up when that duration ends).
 */
export async function assertNothingToReceive(consumer, what, { invisibleMs = INVISIBLE_MS } = {}) {
  const until = (consumer.testQuietUntil ?? 0) + CLOCK_MARGIN_MS;
  do {
    const views = await consumer.receive(32, invisibleMs);
    if (views.length > 0) consumer.testQuietUntil = Date.now() + invisibleMs;
    assert.equal(views.length, 0, `${what}: expected no message, got ` +
      views.map((v) => `${v.messageId} (attempt ${v.deliveryAttempt}, body "${printable(v.body)}")`).join(', '));
  } while (Date.now() < until);
}

/**
 * Calls fn; when `tolerate` is set, a failure that is not a RocketMQ status
 * (a transport error while a server restarts) is retried until `deadline`.
 */
export async function retryCall(fn, tolerate, deadline) {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      const transport = err && typeof err.code === 'number' && err.code < 100; /* gRPC status */
      if (!tolerate || !transport || Date.now() > deadline) {
        throw err;
      }
      await sleep(ERROR_PAUSE_MS);
    }
  }
}

/**
 * Polls `cond()` every 100 ms until it is true, or throws after `timeoutMs`;
 * `what` (a string, or a function giving one) says what was awaited.
 */
export async function waitFor(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      const text = typeof what === 'function' ? what() : what;
      throw new Error(`${text}: not reached within ${timeoutMs} ms`);
    }
    await sleep(100);
  }
}

/** Sends with at most `parallel` sends in flight; returns the receipts in message order. */
export async function sendAll(producer, messages, parallel = 8) {
  const receipts = new Array(messages.length);
  let next = 0;
  async function worker() {
    while (next < messages.length) {
      const i = next++;
      receipts[i] = await producer.send(messages[i]);
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, messages.length) }, worker));
  return receipts;
}

/** The code a RocketMQ status error carries (ClientException.code), or undefined. */
export function rocketmqCode(err) {
  return err && typeof err.code === 'number' && err.code >= 10000 ? err.code : undefined;
}

/** RocketMQ status codes the tests look for (apache.rocketmq.v2.Code). */
export const Code = Object.freeze({
  OK: 20000,
  MESSAGE_NOT_FOUND: 40401,
  INVALID_RECEIPT_HANDLE: 40013,
  MESSAGE_PROPERTY_CONFLICT_WITH_TYPE: 40014,
});

/**
 * Runs `fn(use)`; every client passed to `use` is shut down afterwards, in
 * reverse order. When `fn` fails, the clients' logs are printed and shutdown
 * errors are only reported; when it succeeds, a failed shutdown fails the test
 * (the server must answer NotifyClientTermination and end the Telemetry stream).
 */
export async function withClients(fn) {
  const clients = [];
  const use = (c) => { clients.push(c); return c; };
  let result;
  try {
    result = await fn(use);
  } catch (err) {
    for (const c of clients) {
      if (c.testLogger) dumpLogOf(c.testLogger);
    }
    for (const c of clients.reverse()) {
      await shutdownClient(c).catch((e) => {
        process.stderr.write(`# shutdown after failure: ${e?.message ?? e}\n`);
      });
    }
    throw err;
  }
  let firstError;
  for (const c of clients.reverse()) {
    try {
      await shutdownClient(c);
    } catch (e) {
      if (c.testLogger) dumpLogOf(c.testLogger);
      firstError ??= e;
    }
  }
  if (firstError) throw firstError;
  return result;
}

function dumpLogOf(lg, lines = 200) {
  const tail = lg.lines.slice(-lines);
  process.stderr.write(`==== client log ${lg.name} (last ${tail.length} lines)\n` +
    tail.join('\n') + '\n==== end of client log\n');
}

/* ------------------------------------------------------------------------
 * Messaging semantics (05-dlq … 09-transaction): the admin routes for
 * groups and their dead-letter queues, stored messages, SQL92 filters,
 * transactional producers. Added for those files; nothing above depends on
 * this section.
 * ---------------------------------------------------------------------- */

/** More RocketMQ status codes (apache.rocketmq.v2.Code) for those files. */
export const MoreCode = Object.freeze({
  ILLEGAL_FILTER_EXPRESSION: 40010,
  ILLEGAL_DELIVERY_TIME: 40012,
});

/** apache.rocketmq.v2.TransactionResolution, what a transaction checker returns. */
export const TransactionResolution = Object.freeze({ UNSPECIFIED: 0, COMMIT: 1, ROLLBACK: 2 });

/* An import of its own, so that the lines above stay as they were. */
import { FilterExpression } from 'rocketmq-client-nodejs';

/** apache.rocketmq.v2.FilterType.SQL (the client does not export the enum). */
const FILTER_TYPE_SQL = 2;

/** A SQL92 subscription expression, to put in `subscriptions` instead of a tag string. */
export function sqlFilter(expression) {
  return new FilterExpression(expression, FILTER_TYPE_SQL);
}

/**
 * One request to the admin HTTP API. Resolves {status, text, json} whatever
 * the status (json is undefined when the body is not JSON); rejects only when
 * there is no answer.
 */
export async function adminRequest(server, method, urlPath, body) {
  const init = { method, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
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
  return { status: res.status, text, json };
}

/** adminRequest() that throws unless the status is 2xx; returns the JSON answer. */
export async function adminJson(server, method, urlPath, body) {
  const r = await adminRequest(server, method, urlPath, body);
  if (r.status < 200 || r.status > 299) {
    throw new Error(`${method} ${urlPath}${body !== undefined ? ' ' + JSON.stringify(body) : ''} ` +
      `answered ${r.status}: ${r.text}`);
  }
  return r.json;
}

/**
 * Creates a group through the admin HTTP API: POST /v1/groups with
 * `spec` = {"name", "fifo"?, "retry"?}. Returns the group as answered.
 */
export async function createGroup(server, spec) {
  return adminJson(server, 'POST', '/v1/groups', spec);
}

/** GET /v1/groups/{group}/dlq: {"messages": [...]} of the group's dead-letter queue. */
export async function getDlq(server, group) {
  return adminJson(server, 'GET', `/v1/groups/${encodeURIComponent(group)}/dlq`);
}

/** POST /v1/groups/{group}/dlq/redrive: sends the dead letters back; returns the answer. */
export async function redriveDlq(server, group, body) {
  return adminJson(server, 'POST', `/v1/groups/${encodeURIComponent(group)}/dlq/redrive`, body);
}

/** The body bytes of a message as the admin API shows it (body_base64, else body as text). */
export function adminBody(entry) {
  if (typeof entry.body_base64 === 'string') return Buffer.from(entry.body_base64, 'base64');
  return Buffer.from(entry.body ?? '', 'utf8');
}

/** GET /v1/messages?topic&queue&offset&count: stored messages of one queue. */
export async function readStored(server, topic, queue = 0, offset = 0, count = 100) {
  const q = new URLSearchParams({ topic, queue: String(queue), offset: String(offset), count: String(count) });
  return adminJson(server, 'GET', `/v1/messages?${q}`);
}

/**
 * A started Producer with a transaction checker: `check(view)` is called for
 * each RecoverOrphanedTransactionCommand the server sends on the Telemetry
 * stream and returns a TransactionResolution (UNSPECIFIED = no answer).
 */
export async function startTransactionalProducer(server, { topics = [], check, name = 'tx-producer' } = {}) {
  const logger = new MemoryLogger(name);
  const producer = new Producer({ ...baseOptions(server, logger), topics, checker: { check } });
  producer.testLogger = logger;
  return startClient(producer, name);
}
