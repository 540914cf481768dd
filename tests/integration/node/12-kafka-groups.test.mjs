// 12 Kafka consumer groups: kafkajs consumers of one group against
// confluxd's group coordinator (FindCoordinator, JoinGroup, SyncGroup,
// Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups,
// DescribeGroups).
//
// - kafkajs creates a 3-partition topic and produces 300 keyed records with
//   a header (acks=-1).
// - Member A consumes alone from the beginning; member B joins while A is in
//   the middle of the stream (a rebalance); 150 more records are produced.
//   Together A and B process every record; a record processed twice is at or
//   above the group's committed offset of its partition when processed again
//   (at-least-once), and there are few of them; each member processes only
//   partitions of its latest assignment, and the final assignments split the
//   3 partitions between the two members. DescribeGroups shows the group
//   Stable with protocol type consumer and both members with those
//   assignments; ListGroups lists it; OffsetFetch returns the end offsets once
//   all is consumed. After both leave (LeaveGroup) the group is Empty.
// - A new consumer of the group receives exactly the records produced after
//   the others left.
// - The committed offsets survive a SIGTERM restart and a SIGKILL of
//   confluxd (same data directory and ports): a new consumer of the group
//   receives exactly the records produced after each restart.
// - `conflux group describe` shows the Kafka group's committed offsets, end
//   offsets and lag per partition (0 once all is consumed, then the count of
//   records produced since).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel, AssignerProtocol, Partitioners } from 'kafkajs';
import { Confluxd, freePort, confluxdPath } from './lib/server.mjs';
import { uniqueName, withTimeout } from './lib/client.mjs';

const TEST_TIMEOUT_MS = 120_000;
const WAIT_MS = 30_000; /* for any one condition */
const POLL_MS = 50;
const CLIENT_OP_MS = 30_000; /* connect, disconnect, send, admin calls */

const PARTITIONS = 3;
const FIRST = 300; /* before member A starts */
const SECOND = 150; /* after the rebalance */
const RESUME = 30; /* after A and B left */
const AFTER_TERM = 15; /* after the SIGTERM restart */
const AFTER_KILL = 15; /* after the SIGKILL */
const LAG_EXTRA = 6; /* never consumed: the lag the CLI shows at the end */
const B_STARTS_AFTER = 60; /* records A processes alone before B starts */
const PROCESS_MS = 10; /* per record in A and B: the stream outlasts the rebalance */
const DUPLICATES_MAX = 10;

const CONSUMER_OPTS = {
  sessionTimeout: 8_000,
  rebalanceTimeout: 10_000,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 250,
  /* A crash fails the test with its error instead of restarting quietly. */
  retry: { retries: 5, initialRetryTime: 200, restartOnFailure: async () => false },
};
/* Commit after every record (threshold 1), after every batch, and on leaving. */
const RUN_OPTS = { autoCommit: true, autoCommitInterval: 500, autoCommitThreshold: 1 };

const kafkaPort = await freePort();
const server = new Confluxd('12-kafka-groups', { args: ['--kafka-listen', `127.0.0.1:${kafkaPort}`] });
const cliPath = path.join(path.dirname(confluxdPath()), 'conflux');

const topic = uniqueName('t12_groups');
const groupId = uniqueName('g12_groups');
const RUN = randomBytes(4).toString('hex');

/* ------------------------------------------------------------------------
 * Client log: kafkajs lines and the test's own timeline, printed on failure.
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

const logCreator = () => ({ namespace, label, log }) => {
  const { message, timestamp, logger, ...extra } = log;
  logLine(`${timestamp} ${label} [${logger}:${namespace}] ${message} ${JSON.stringify(extra)}`);
};

function dumpClientLog(reason) {
  const tail = clientLog.slice(-LOG_TAIL);
  process.stderr.write(`\n==== 12-kafka-groups: ${reason}\n==== client log (last ${tail.length} ` +
    `of ${clientLog.length} lines):\n${tail.join('\n')}\n==== end of client log\n`);
}

function guarded(fn) {
  return server.guard(async (t) => {
    try {
      return await fn(t);
    } catch (err) {
      dumpClientLog(`test "${t?.name ?? '?'}" failed: ${err?.message ?? err}`);
      throw err;
    }
  });
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */

/** Polls `cond` (may be async) until it returns a truthy value; throws with `detail()` after `ms`. */
async function waitFor(cond, what, { ms = WAIT_MS, detail = () => '' } = {}) {
  const deadline = Date.now() + ms;
  let lastError;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
      lastError = undefined;
    } catch (err) {
      if (err.fatal) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${ms} ms` +
        (lastError ? ` (last error: ${lastError.message})` : '') + `\n${detail()}`);
    }
    await sleep(POLL_MS);
  }
}

function newKafka(clientId) {
  return new Kafka({
    clientId,
    brokers: [`127.0.0.1:${kafkaPort}`],
    logLevel: liveLog ? logLevel.DEBUG : logLevel.INFO,
    logCreator,
    connectionTimeout: 3_000,
    retry: { retries: 5, initialRetryTime: 200 },
  });
}

/* Every client still connected when the file ends is disconnected before the server stops. */
const openClients = new Set();

async function connectClient(client, what) {
  openClients.add(client);
  await withTimeout(client.connect(), CLIENT_OP_MS, `${what} connect`);
  return client;
}

async function disconnectClient(client, what) {
  if (!openClients.has(client)) return;
  openClients.delete(client);
  await withTimeout(client.disconnect(), CLIENT_OP_MS, `${what} disconnect`);
}

async function withAdmin(fn) {
  const admin = await connectClient(newKafka('it12-admin').admin(), 'admin');
  try {
    return await fn(admin);
  } finally {
    await disconnectClient(admin, 'admin');
  }
}

/** key → {index, value, idx}: every record produced. */
const sent = new Map();

function keysOf(from, count) {
  return Array.from({ length: count }, (_, i) => `k${from + i}`);
}

/**
 * Produces records number from..from+count-1 with acks=-1: key k<n>, a
 * unique value, headers idx and src. With `spread`, record n goes to
 * partition n % 3 (so every partition gets some); otherwise the key decides.
 */
async function produce(from, count, { spread = false } = {}) {
  const producer = await connectClient(newKafka('it12-producer').producer({
    createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false,
  }), 'producer');
  try {
    const messages = [];
    for (let n = from; n < from + count; n++) {
      const m = {
        key: `k${n}`,
        value: `value ${RUN} ${n} ${randomBytes(6).toString('hex')}`,
        headers: { idx: String(n), src: 'kafkajs-it12' },
      };
      if (spread) m.partition = n % PARTITIONS;
      messages.push(m);
    }
    const res = await withTimeout(producer.send({ topic, acks: -1, messages }), CLIENT_OP_MS,
      `producing records ${from}..${from + count - 1}`);
    for (const r of res) {
      assert.equal(r.errorCode, 0, `produce to partition ${r.partition}: error code ${r.errorCode}`);
    }
    for (const m of messages) sent.set(m.key, { index: Number(m.headers.idx), value: m.value });
    note(`produced records ${from}..${from + count - 1}: ${JSON.stringify(res.map((r) =>
      ({ p: r.partition, base: r.baseOffset })))}`);
  } finally {
    await disconnectClient(producer, 'producer');
  }
}

/** End offsets of the topic's partitions, by partition. */
async function endOffsets(admin) {
  const res = await admin.fetchTopicOffsets(topic);
  return [...res].sort((a, b) => a.partition - b.partition).map((p) => Number(p.high));
}

/** The group's committed offsets (OffsetFetch), by partition; -1 = none. */
async function committedOffsets(admin) {
  const res = await admin.fetchOffsets({ groupId, topics: [topic] });
  const t = res.find((x) => x.topic === topic);
  assert.ok(t, `fetchOffsets answered no entry for topic ${topic}: ${JSON.stringify(res)}`);
  return [...t.partitions].sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
}

/** Waits until the committed offsets equal the end offsets; returns them. */
async function waitAllCommitted(admin, what) {
  let ends = [];
  let committed = [];
  await waitFor(async () => {
    ends = await endOffsets(admin);
    committed = await committedOffsets(admin);
    return ends.length === PARTITIONS && JSON.stringify(ends) === JSON.stringify(committed);
  }, `${what}: the committed offsets reach the end offsets`,
  { detail: () => `end offsets ${JSON.stringify(ends)}, committed (OffsetFetch) ${JSON.stringify(committed)}` });
  return committed;
}

async function describeGroup(admin) {
  const { groups } = await admin.describeGroups([groupId]);
  const g = groups.find((x) => x.groupId === groupId);
  assert.ok(g, `describeGroups answered no entry for ${groupId}: ${JSON.stringify(groups)}`);
  return g;
}

function decodeAssignment(buf) {
  if (!buf || buf.length === 0) return [];
  const a = AssignerProtocol.MemberAssignment.decode(buf);
  return [...(a?.assignment?.[topic] ?? [])].sort((x, y) => x - y);
}

/* The group's committed offset per partition as the members' successful
 * OffsetCommits left it (COMMIT_OFFSETS events, in order). */
const committedSeen = Array(PARTITIONS).fill(-1);

/**
 * A started consumer of the group: records each processed record
 * ({member, partition, offset, key, value, idx, t, committedBefore}), each
 * GROUP_JOIN ({t, memberId, assignment}) and each crash.
 */
async function startMember(name, { processMs = 0 } = {}) {
  const m = { name, joins: [], deliveries: [], crashes: [], memberId: null, startedAt: Date.now() };
  const consumer = newKafka(`it12-${name}`).consumer({ groupId, ...CONSUMER_OPTS });
  m.consumer = consumer;
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assignment = [...(e.payload.memberAssignment?.[topic] ?? [])].sort((x, y) => x - y);
    m.memberId = e.payload.memberId;
    m.joins.push({
      t: Date.now(), memberId: e.payload.memberId, leader: e.payload.isLeader,
      protocol: e.payload.groupProtocol, assignment,
    });
    note(`${name} joined: member ${e.payload.memberId} leader ${e.payload.isLeader} ` +
      `protocol ${e.payload.groupProtocol} partitions ${JSON.stringify(assignment)}`);
  });
  consumer.on(consumer.events.CRASH, (e) => {
    m.crashes.push(e.payload.error);
    note(`${name} crashed: ${e.payload.error?.name}: ${e.payload.error?.message}`);
  });
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    for (const t of e.payload.topics) {
      if (t.topic !== topic) continue;
      for (const p of t.partitions) committedSeen[p.partition] = Number(p.offset);
    }
  });
  await connectClient(consumer, `consumer ${name}`);
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await withTimeout(consumer.run({
    ...RUN_OPTS,
    eachMessage: async ({ partition, message }) => {
      const key = message.key?.toString() ?? null;
      m.deliveries.push({
        member: name, partition, offset: Number(message.offset), key,
        value: message.value?.toString() ?? null,
        idx: message.headers?.idx?.toString() ?? null,
        src: message.headers?.src?.toString() ?? null,
        t: Date.now(), committedBefore: committedSeen[partition],
      });
      if (processMs) await sleep(processMs);
    },
  }), CLIENT_OP_MS, `consumer ${name} run (FindCoordinator, JoinGroup, SyncGroup)`);
  note(`${name} running`);
  return m;
}

function crashCheck(members) {
  for (const m of members) {
    if (m.crashes.length) {
      const e = m.crashes[0];
      const err = new Error(`consumer ${m.name} crashed: ${e?.name}: ${e?.message}` +
        (e?.type ? ` (${e.type})` : ''));
      err.fatal = true;
      throw err;
    }
  }
}

/** Waits for the member's first GROUP_JOIN. */
async function waitJoined(m) {
  await waitFor(() => { crashCheck([m]); return m.joins.length > 0; }, `consumer ${m.name} joins the group`);
}

function deliveredKeys(members) {
  const s = new Set();
  for (const m of members) for (const d of m.deliveries) s.add(d.key);
  return s;
}

function describeMissing(members, expected) {
  const got = deliveredKeys(members);
  const missing = expected.filter((k) => !got.has(k));
  const counts = members.map((m) => `${m.name}: ${m.deliveries.length} processed, partitions ` +
    `${JSON.stringify(m.joins.map((j) => j.assignment))}`).join('; ');
  return `${missing.length} of ${expected.length} records not processed: ` +
    `${missing.slice(0, 40).join(' ')}${missing.length > 40 ? ' ...' : ''}\n${counts}\n` +
    `committed offsets seen: ${JSON.stringify(committedSeen)}`;
}

async function waitProcessed(members, expected, what) {
  await waitFor(() => {
    crashCheck(members);
    const got = deliveredKeys(members);
    return expected.every((k) => got.has(k));
  }, what, { detail: () => describeMissing(members, expected) });
}

/**
 * Checks every processed record against what was produced (value, headers),
 * that all of `expected` and nothing else was processed, and that a record
 * processed more than once had the same partition and offset each time.
 * Returns the deliveries after the first of each record.
 */
function checkDeliveries(members, expected) {
  const want = new Set(expected);
  const first = new Map();
  const repeats = [];
  const all = members.flatMap((m) => m.deliveries).sort((a, b) => a.t - b.t);
  for (const d of all) {
    const s = sent.get(d.key);
    const at = `${d.member} p${d.partition}@${d.offset}`;
    assert.ok(s, `${at}: a record with a key never produced: ${d.key}`);
    assert.ok(want.has(d.key), `${at}: record ${d.key} (produced earlier, already committed) ` +
      `processed again; expected only ${expected[0]}..${expected[expected.length - 1]}`);
    assert.equal(d.value, s.value, `${at}: value of ${d.key}`);
    assert.equal(d.idx, String(s.index), `${at}: header idx of ${d.key}`);
    assert.equal(d.src, 'kafkajs-it12', `${at}: header src of ${d.key}`);
    const f = first.get(d.key);
    if (!f) {
      first.set(d.key, d);
    } else {
      assert.deepEqual([d.partition, d.offset], [f.partition, f.offset],
        `${d.key} processed at p${f.partition}@${f.offset} by ${f.member} and at ${at}`);
      repeats.push(d);
    }
  }
  const missing = expected.filter((k) => !first.has(k));
  assert.equal(missing.length, 0, describeMissing(members, expected));
  return repeats;
}

/** Runs the conflux CLI (built beside confluxd) against the admin API: {code, stdout, stderr}. */
function cli(args) {
  return new Promise((resolve) => {
    execFile(cliPath, ['--server', `127.0.0.1:${server.httpPort}`, ...args],
      { timeout: CLIENT_OP_MS }, (err, stdout, stderr) => {
        resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
      });
  });
}

/** `conflux group describe <group> --json`: the topic's entry. */
async function cliGroupTopic() {
  const r = await cli(['group', 'describe', groupId, '--json']);
  assert.equal(r.code, 0, `conflux group describe ${groupId} --json exited ${r.code}: ${r.stderr}${r.stdout}`);
  let d;
  try {
    d = JSON.parse(r.stdout);
  } catch {
    assert.fail(`conflux group describe --json printed no JSON: ${r.stdout}`);
  }
  const t = (d.topics ?? []).find((x) => x.topic === topic);
  assert.ok(t, `conflux group describe shows no entry for topic ${topic}: ${r.stdout}`);
  return { t, raw: r.stdout };
}

/** Asserts the CLI's per-partition committed, end and lag, and the topic's total lag. */
async function checkCli(committed, ends, what) {
  const { t, raw } = await cliGroupTopic();
  const queues = [...t.queues].sort((a, b) => a.queue - b.queue);
  const row = (f) => queues.map((q) => q[f]);
  const lag = ends.map((e, i) => e - committed[i]);
  const why = `${what}: conflux group describe ${groupId} --json printed ${raw}`;
  assert.deepEqual(row('queue'), [0, 1, 2], `${why}: the partitions`);
  assert.deepEqual(row('committed'), committed, `${why}: committed offsets (expected ${JSON.stringify(committed)})`);
  assert.deepEqual(row('end'), ends, `${why}: end offsets (expected ${JSON.stringify(ends)})`);
  assert.deepEqual(row('lag'), lag, `${why}: lag per partition (expected ${JSON.stringify(lag)})`);
  assert.equal(t.lag, lag.reduce((a, b) => a + b, 0), `${why}: total lag`);
}

/**
 * A new consumer of the group must process exactly `expected` (records
 * produced after the group's last commit), then commit up to the end.
 */
async function consumeExactly(name, expected) {
  const m = await startMember(name);
  try {
    await waitJoined(m);
    assert.deepEqual(m.joins.at(-1).assignment, [0, 1, 2], `${name}, alone in the group, gets every partition`);
    await waitProcessed([m], expected, `${name} processes the ${expected.length} new records`);
    await withAdmin((admin) => waitAllCommitted(admin, name));
    const repeats = checkDeliveries([m], expected);
    assert.equal(repeats.length, 0, `${name} processed records twice: ` +
      repeats.map((d) => `${d.key} p${d.partition}@${d.offset}`).join(' '));
    assert.equal(m.deliveries.length, expected.length, `${name} processed exactly the new records`);
  } finally {
    await disconnectClient(m.consumer, `consumer ${name}`);
  }
  return m;
}

/* ------------------------------------------------------------------------
 * Tests (in order; each relies on the ones before)
 * ---------------------------------------------------------------------- */

before(() => server.start());
after(async () => {
  for (const c of [...openClients]) await disconnectClient(c, 'leftover client').catch(() => {});
  await server.stop();
});

const state = { produced: false, grouped: false, resumed: false, restarted: false };

function requires(t, flag, what) {
  if (state[flag]) return false;
  t.skip(`needs: ${what}`);
  return true;
}

test('kafkajs creates a 3-partition topic and produces 300 keyed records (acks=-1)',
  { timeout: TEST_TIMEOUT_MS }, guarded(async () => {
    await withAdmin(async (admin) => {
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }] }), true,
        'createTopics created the topic');
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      assert.equal(md.topics[0].partitions.length, PARTITIONS, 'three partitions');
    });
    await produce(0, FIRST);
    await withAdmin(async (admin) => {
      const ends = await endOffsets(admin);
      assert.equal(ends.reduce((a, b) => a + b, 0), FIRST, `end offsets ${JSON.stringify(ends)} add up to ${FIRST}`);
      assert.ok(ends.every((e) => e > 0), `every partition got records: ${JSON.stringify(ends)}`);
    });
    state.produced = true;
  }));

test('two members across a rebalance: every record processed, few duplicates, one owner per partition',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (requires(t, 'produced', 'the topic and its first records')) return;
    const members = [];
    try {
      const a = await startMember('A', { processMs: PROCESS_MS });
      members.push(a);
      await waitJoined(a);
      assert.deepEqual(a.joins[0].assignment, [0, 1, 2], 'A, alone in the group, gets every partition');
      await waitFor(() => { crashCheck([a]); return a.deliveries.length >= B_STARTS_AFTER; },
        `A processes ${B_STARTS_AFTER} records`, { detail: () => describeMissing([a], keysOf(0, FIRST)) });

      const bStart = Date.now();
      note(`starting B; A has processed ${a.deliveries.length} records`);
      const b = await startMember('B', { processMs: PROCESS_MS });
      members.push(b);
      const aBeforeB = a.deliveries.filter((d) => d.t < bStart).length;
      assert.ok(aBeforeB < FIRST, `A had not processed everything (${aBeforeB}) when B started`);

      /* The rebalance: B joined, A joined again, the two assignments split the partitions. */
      const split = () => {
        if (!b.joins.length || !a.joins.some((j) => j.t >= bStart)) return false;
        const pa = a.joins.at(-1).assignment;
        const pb = b.joins.at(-1).assignment;
        const all = [...pa, ...pb].sort((x, y) => x - y);
        return JSON.stringify(all) === JSON.stringify([0, 1, 2]) && pa.length > 0 && pb.length > 0;
      };
      await waitFor(() => { crashCheck(members); return split(); },
        'after B joins, A and B hold disjoint non-empty sets of partitions covering all 3',
        { detail: () => `A joins ${JSON.stringify(a.joins)}; B joins ${JSON.stringify(b.joins)}` });
      const rebalanced = Date.now();
      note(`rebalanced: A ${JSON.stringify(a.joins.at(-1).assignment)} B ${JSON.stringify(b.joins.at(-1).assignment)}`);

      /* DescribeGroups and ListGroups while both run. */
      await withAdmin(async (admin) => {
        let g;
        await waitFor(async () => {
          g = await describeGroup(admin);
          return g.state === 'Stable' && g.members.length === 2;
        }, 'describeGroups shows the group Stable with 2 members', { detail: () => JSON.stringify(g) });
        assert.equal(g.protocolType, 'consumer', 'protocol type');
        assert.equal(g.protocol, a.joins.at(-1).protocol, 'protocol: the assigner the members joined with');
        const byId = new Map(g.members.map((x) => [x.memberId, x]));
        for (const m of [a, b]) {
          const d = byId.get(m.memberId);
          assert.ok(d, `describeGroups lists member ${m.name} (${m.memberId}); ` +
            `it lists ${[...byId.keys()].join(', ')}`);
          assert.equal(d.clientId, `it12-${m.name}`, `client id of ${m.name}`);
          assert.deepEqual(decodeAssignment(d.memberAssignment), m.joins.at(-1).assignment,
            `describeGroups: the assignment of ${m.name}`);
        }
        const { groups } = await admin.listGroups();
        const l = groups.find((x) => x.groupId === groupId);
        assert.ok(l, `listGroups lists ${groupId}: ${JSON.stringify(groups)}`);
        assert.equal(l.protocolType, 'consumer', 'listGroups: protocol type');
      });

      await produce(FIRST, SECOND);
      const expected = keysOf(0, FIRST + SECOND);
      await waitProcessed(members, expected, `A and B process all ${expected.length} records`);
      const committed = await withAdmin((admin) => waitAllCommitted(admin, 'A and B'));
      assert.equal(committed.reduce((x, y) => x + y, 0), FIRST + SECOND,
        `OffsetFetch: the committed offsets ${JSON.stringify(committed)} cover all records`);

      const repeats = checkDeliveries(members, expected);
      const repeatText = repeats.map((d) => `${d.key} p${d.partition}@${d.offset} again by ${d.member} ` +
        `(committed then: ${d.committedBefore})`).join('; ');
      note(`processed twice: ${repeats.length} ${repeatText}`);
      for (const d of repeats) {
        assert.ok(d.offset >= d.committedBefore, `record ${d.key} p${d.partition}@${d.offset} processed ` +
          `again by ${d.member} although the group had committed offset ${d.committedBefore} for ` +
          `partition ${d.partition} (a committed record came back)`);
      }
      assert.ok(repeats.length <= DUPLICATES_MAX,
        `${repeats.length} records processed twice (at most ${DUPLICATES_MAX}): ${repeatText}`);

      /* Each member processes only partitions of its latest assignment, and no
       * rebalance happened after the split. */
      for (const m of members) {
        for (const d of m.deliveries) {
          const j = m.joins.filter((x) => x.t <= d.t).at(-1);
          assert.ok(j && j.assignment.includes(d.partition), `${m.name} processed ${d.key} ` +
            `p${d.partition}@${d.offset} while assigned ${JSON.stringify(j?.assignment)}`);
        }
      }
      assert.ok(a.joins.every((j) => j.t <= rebalanced) && b.joins.every((j) => j.t <= rebalanced),
        `no rebalance after the split; A joins ${JSON.stringify(a.joins)}; B joins ${JSON.stringify(b.joins)}`);
      for (const m of members) {
        const later = m.deliveries.filter((d) => sent.get(d.key).index >= FIRST).length;
        assert.ok(later > 0, `${m.name} processed some of the records produced after the rebalance`);
      }
      note(`A processed ${a.deliveries.length}, B ${b.deliveries.length}`);

      /* Both leave (LeaveGroup after the last commit): the group is Empty, the offsets stay. */
      await Promise.all(members.map((m) => disconnectClient(m.consumer, `consumer ${m.name}`)));
      await withAdmin(async (admin) => {
        let g;
        await waitFor(async () => {
          g = await describeGroup(admin);
          return g.state === 'Empty' && g.members.length === 0;
        }, 'after both members left, describeGroups shows the group Empty with no member',
        { detail: () => JSON.stringify(g) });
        assert.deepEqual(await committedOffsets(admin), committed, 'committed offsets after both left');
      });
      state.grouped = true;
    } finally {
      for (const m of members) await disconnectClient(m.consumer, `consumer ${m.name}`).catch(() => {});
    }
  }));

test('a new consumer of the group resumes at the committed offsets',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (requires(t, 'grouped', 'the group with committed offsets')) return;
    const from = FIRST + SECOND;
    await produce(from, RESUME, { spread: true });
    await consumeExactly('C', keysOf(from, RESUME));
    state.resumed = true;
  }));

test('committed offsets survive a confluxd restart (SIGTERM) and a SIGKILL',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (requires(t, 'resumed', 'the group with committed offsets')) return;
    let from = FIRST + SECOND + RESUME;

    const beforeTerm = await withAdmin((admin) => waitAllCommitted(admin, 'before the SIGTERM'));
    note(`committed before SIGTERM: ${JSON.stringify(beforeTerm)}`);
    await server.restart();
    await withAdmin(async (admin) => {
      assert.deepEqual(await committedOffsets(admin), beforeTerm, 'committed offsets after the SIGTERM restart');
    });
    await produce(from, AFTER_TERM, { spread: true });
    await consumeExactly('D', keysOf(from, AFTER_TERM));
    from += AFTER_TERM;

    const beforeKill = await withAdmin((admin) => waitAllCommitted(admin, 'before the SIGKILL'));
    note(`committed before SIGKILL: ${JSON.stringify(beforeKill)}`);
    await server.kill();
    assert.equal(server.exit?.signal, 'SIGKILL', `confluxd was killed (${JSON.stringify(server.exit)})`);
    await server.start();
    await withAdmin(async (admin) => {
      assert.deepEqual(await committedOffsets(admin), beforeKill, 'committed offsets after the SIGKILL');
    });
    await produce(from, AFTER_KILL, { spread: true });
    await consumeExactly('E', keysOf(from, AFTER_KILL));
    state.restarted = true;
  }));

test('conflux group describe shows the Kafka group\'s committed offsets and lag',
  { timeout: TEST_TIMEOUT_MS }, guarded(async (t) => {
    if (requires(t, 'restarted', 'the group consumed to the end')) return;
    const committed = await withAdmin((admin) => waitAllCommitted(admin, 'before conflux group describe'));
    await checkCli(committed, committed, 'all consumed');
    const text = await cli(['group', 'describe', groupId]);
    assert.equal(text.code, 0, `conflux group describe ${groupId} exited ${text.code}: ${text.stderr}`);
    assert.match(text.stdout, new RegExp(`^${topic}\\s+total\\s+0$`, 'm'),
      `conflux group describe ${groupId}: the total lag row of ${topic} is 0:\n${text.stdout}`);

    await produce(FIRST + SECOND + RESUME + AFTER_TERM + AFTER_KILL, LAG_EXTRA, { spread: true });
    const ends = await withAdmin((admin) => endOffsets(admin));
    await checkCli(committed, ends, `${LAG_EXTRA} records produced since`);
  }));
