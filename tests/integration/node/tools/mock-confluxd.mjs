#!/usr/bin/env node
// A stand-in for confluxd, written in Node with grpc-js, that speaks just
// enough of the RocketMQ 5 gRPC API for the tests in this directory. It exists
// to check the test harness itself before the real server answers gRPC:
//
//   CONFLUXD=$PWD/tools/mock-confluxd.mjs node --test 01-producer.test.mjs
//
// It is not a reference for confluxd: one logical queue per topic, state in
// memory saved to DATA_DIR/mock-state.json on SIGTERM, long polls by
// polling, no limits. With CFX_MOCK_TRACE=1 it logs every call and its
// metadata, which shows what the Node client sends.

import { createRequire } from 'node:module';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const require = createRequire(import.meta.url);
const grpc = require('@grpc/grpc-js');
const svc = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/service_grpc_pb.js');
const pb = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/service_pb.js');
const def = require('rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb.js');
const { Duration } = require('google-protobuf/google/protobuf/duration_pb.js');
const { Timestamp } = require('google-protobuf/google/protobuf/timestamp_pb.js');

const C = def.Code;
const TYPES = { NORMAL: 1, FIFO: 2, DELAY: 3, TRANSACTION: 4 };
const LONG_POLL_MAX_MS = 20_000;
const AUTO_RENEW_INVISIBLE_MS = 30_000;

/* ---- command line: the same settings the harness passes to confluxd ---- */
const opt = { 'data-dir': './data', 'grpc-listen': '127.0.0.1:8081', 'http-listen': '127.0.0.1:8080' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const m = /^--([^=]+)(?:=(.*))?$/.exec(argv[i]);
  if (!m) { console.error(`mock-confluxd: bad argument ${argv[i]}`); process.exit(2); }
  const key = m[1].replace(/_/g, '-');
  opt[key] = m[2] ?? argv[++i];
}
const trace = process.env.CFX_MOCK_TRACE === '1';
const log = (...a) => console.log(new Date().toISOString(), ...a);

/* ---- state ---- */
const statePath = path.join(opt['data-dir'], 'mock-state.json');
fs.mkdirSync(opt['data-dir'], { recursive: true });
/* topics: name → {type, queues, messages: [base64 Message]}
 * groups: "group\ttopic" → {popOffset, inflight: {offset: {visibleAt, attempt, popId}}} */
let state = { topics: {}, groups: {} };
if (fs.existsSync(statePath)) state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
const settingsByClient = new Map();

function topicOf(name, create = true) {
  if (!state.topics[name] && create) state.topics[name] = { type: 'NORMAL', queues: 4, messages: [] };
  return state.topics[name];
}
function groupOf(group, topic) {
  const key = `${group}\t${topic}`;
  state.groups[key] ??= { popOffset: 0, inflight: {} };
  return state.groups[key];
}
function status(code, message = '') { return new def.Status().setCode(code).setMessage(message); }
function dur(ms) { return new Duration().setSeconds(Math.floor(ms / 1000)).setNanos((ms % 1000) * 1e6); }
function ms(d) { return d ? d.getSeconds() * 1000 + Math.floor(d.getNanos() / 1e6) : 0; }

const [grpcHost, grpcPort] = opt['grpc-listen'].split(':');
function brokerPB() {
  const ep = new def.Endpoints().setScheme(def.AddressScheme.IPV4);
  ep.addAddresses(new def.Address().setHost(grpcHost).setPort(Number(grpcPort)));
  return new def.Broker().setName('mock').setId(0).setEndpoints(ep);
}
function acceptTypes(t) { return t.type === 'MIXED' ? [1, 2, 3, 4] : [TYPES[t.type]]; }
function queuePB(name, id) {
  const t = topicOf(name);
  return new def.MessageQueue().setTopic(new def.Resource().setName(name)).setId(id)
    .setPermission(def.Permission.READ_WRITE).setBroker(brokerPB()).setAcceptMessageTypesList(acceptTypes(t));
}

function encodeHandle(o) { return Buffer.from(JSON.stringify(o)).toString('base64url'); }
function decodeHandle(h) { try { return JSON.parse(Buffer.from(h, 'base64url').toString()); } catch { return null; } }
/* The in-flight record a handle names, if it is current and not expired. */
function checkHandle(group, topic, handle) {
  const h = decodeHandle(handle);
  if (!h || h.topic !== topic) return null;
  const g = groupOf(group, topic);
  const rec = g.inflight[h.offset];
  if (!rec || rec.popId !== h.popId || rec.visibleAt <= Date.now()) return null;
  return { g, rec, offset: h.offset };
}

function tagMatches(expr, tag) {
  if (!expr || expr.trim() === '*') return true;
  return expr.split('||').map((s) => s.trim()).includes(tag ?? '');
}

/* ---- gRPC handlers ---- */
function traced(name, fn) {
  return (call, cb) => {
    if (trace) log(`rpc ${name}`, JSON.stringify(call.metadata.getMap()), call.request ? JSON.stringify(call.request.toObject()) : '');
    if (!call.metadata.get('x-mq-client-id')[0]) {
      if (cb) return cb(null, fnStatusOnly(name, status(C.CLIENT_ID_REQUIRED, 'x-mq-client-id missing')));
    }
    return fn(call, cb);
  };
}
function fnStatusOnly(name, st) {
  const cls = pb[`${name}Response`];
  return new cls().setStatus(st);
}

const handlers = {
  queryRoute: traced('QueryRoute', (call, cb) => {
    const name = call.request.getTopic().getName();
    const t = topicOf(name);
    const res = new pb.QueryRouteResponse().setStatus(status(C.OK, 'OK'));
    for (let i = 0; i < t.queues; i++) res.addMessageQueues(queuePB(name, i));
    cb(null, res);
  }),
  heartbeat: traced('Heartbeat', (call, cb) => cb(null, new pb.HeartbeatResponse().setStatus(status(C.OK)))),
  notifyClientTermination: traced('NotifyClientTermination', (call, cb) =>
    cb(null, new pb.NotifyClientTerminationResponse().setStatus(status(C.OK)))),
  sendMessage: traced('SendMessage', (call, cb) => {
    const res = new pb.SendMessageResponse();
    let code = C.OK;
    for (const m of call.request.getMessagesList()) {
      const t = topicOf(m.getTopic().getName());
      const sp = m.getSystemProperties();
      const entry = new pb.SendResultEntry().setMessageId(sp.getMessageId());
      if (t.type !== 'MIXED' && TYPES[t.type] !== sp.getMessageType()) {
        entry.setStatus(status(C.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE, `topic is ${t.type}`));
        code = C.MESSAGE_PROPERTY_CONFLICT_WITH_TYPE;
      } else {
        sp.setStoreTimestamp(Timestamp.fromDate(new Date()));
        t.messages.push(Buffer.from(m.serializeBinary()).toString('base64'));
        entry.setStatus(status(C.OK)).setOffset(t.messages.length - 1);
      }
      res.addEntries(entry);
    }
    res.setStatus(status(code));
    cb(null, res);
  }),
  queryAssignment: traced('QueryAssignment', (call, cb) => {
    const name = call.request.getTopic().getName();
    const res = new pb.QueryAssignmentResponse().setStatus(status(C.OK));
    res.addAssignments(new def.Assignment().setMessageQueue(queuePB(name, -1)));
    cb(null, res);
  }),
  receiveMessage: (call) => {
    if (trace) log('rpc ReceiveMessage', JSON.stringify(call.metadata.getMap()), JSON.stringify(call.request.toObject()));
    const rq = call.request;
    const group = rq.getGroup().getName();
    const topic = rq.getMessageQueue().getTopic().getName();
    const t = topicOf(topic);
    const g = groupOf(group, topic);
    const expr = rq.getFilterExpression()?.getExpression() ?? '*';
    const batch = Math.max(1, rq.getBatchSize());
    const invisible = rq.getAutoRenew() ? AUTO_RENEW_INVISIBLE_MS : ms(rq.getInvisibleDuration());
    if (!rq.getAutoRenew() && invisible < 10_000) {
      call.write(new pb.ReceiveMessageResponse().setStatus(status(C.ILLEGAL_INVISIBLE_TIME, 'invisible < 10 s')));
      return call.end();
    }
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    const pollMs = Math.min(ms(rq.getLongPollingTimeout()) || LONG_POLL_MAX_MS, LONG_POLL_MAX_MS);
    const until = Math.min(Date.now() + pollMs, (Number.isFinite(deadlineMs) ? deadlineMs : Infinity) - 200);
    let cancelled = false;
    call.on('cancelled', () => { cancelled = true; });

    const pop = () => {
      const now = Date.now();
      const out = [];
      for (const [off, rec] of Object.entries(g.inflight)) {
        if (out.length >= batch) break;
        if (rec.visibleAt <= now) out.push([Number(off), rec.attempt + 1]);
      }
      while (out.length < batch && g.popOffset < t.messages.length) {
        const off = g.popOffset++;
        const m = def.Message.deserializeBinary(Buffer.from(t.messages[off], 'base64'));
        if (tagMatches(expr, m.getSystemProperties().getTag())) out.push([off, 1]);
      }
      return out.map(([off, attempt]) => {
        const popId = randomUUID();
        const visibleAt = Date.now() + invisible;
        g.inflight[off] = { visibleAt, attempt, popId };
        const m = def.Message.deserializeBinary(Buffer.from(t.messages[off], 'base64'));
        const sp = m.getSystemProperties();
        const body = Buffer.from(m.getBody_asU8());
        sp.setBodyDigest(new def.Digest().setType(def.DigestType.MD5)
          .setChecksum(createHash('md5').update(body).digest('hex').toUpperCase()));
        sp.setReceiptHandle(encodeHandle({ topic, offset: off, popId }));
        sp.setDeliveryAttempt(attempt).setQueueId(0).setQueueOffset(off).setInvisibleDuration(dur(invisible));
        return m;
      });
    };
    const tick = () => {
      if (cancelled) return;
      const msgs = pop();
      if (msgs.length === 0 && Date.now() < until) return setTimeout(tick, 50);
      if (msgs.length === 0) {
        call.write(new pb.ReceiveMessageResponse().setStatus(status(C.MESSAGE_NOT_FOUND, 'no new message')));
      } else {
        call.write(new pb.ReceiveMessageResponse().setStatus(status(C.OK)));
        for (const m of msgs) call.write(new pb.ReceiveMessageResponse().setMessage(m));
      }
      call.write(new pb.ReceiveMessageResponse().setDeliveryTimestamp(Timestamp.fromDate(new Date())));
      call.end();
    };
    tick();
  },
  ackMessage: traced('AckMessage', (call, cb) => {
    const group = call.request.getGroup().getName();
    const topic = call.request.getTopic().getName();
    const res = new pb.AckMessageResponse();
    let code = C.OK;
    for (const e of call.request.getEntriesList()) {
      const found = checkHandle(group, topic, e.getReceiptHandle());
      let st = status(C.OK);
      if (!found) { st = status(C.INVALID_RECEIPT_HANDLE, 'expired or superseded'); code = C.INVALID_RECEIPT_HANDLE; }
      else delete found.g.inflight[found.offset];
      res.addEntries(new pb.AckMessageResultEntry().setMessageId(e.getMessageId())
        .setReceiptHandle(e.getReceiptHandle()).setStatus(st));
    }
    cb(null, res.setStatus(status(code)));
  }),
  changeInvisibleDuration: traced('ChangeInvisibleDuration', (call, cb) => {
    const rq = call.request;
    const found = checkHandle(rq.getGroup().getName(), rq.getTopic().getName(), rq.getReceiptHandle());
    const res = new pb.ChangeInvisibleDurationResponse();
    if (!found) return cb(null, res.setStatus(status(C.INVALID_RECEIPT_HANDLE, 'expired or superseded')));
    found.rec.popId = randomUUID();
    found.rec.visibleAt = Date.now() + ms(rq.getInvisibleDuration());
    cb(null, res.setStatus(status(C.OK)).setReceiptHandle(
      encodeHandle({ topic: rq.getTopic().getName(), offset: found.offset, popId: found.rec.popId })));
  }),
  forwardMessageToDeadLetterQueue: traced('ForwardMessageToDeadLetterQueue', (call, cb) =>
    cb(null, new pb.ForwardMessageToDeadLetterQueueResponse().setStatus(status(C.NOT_IMPLEMENTED)))),
  telemetry: (call) => {
    const clientId = call.metadata.get('x-mq-client-id')[0];
    if (trace) log('rpc Telemetry open', JSON.stringify(call.metadata.getMap()));
    call.on('data', (cmd) => {
      if (trace) log('telemetry command', clientId, JSON.stringify(cmd.toObject()));
      const s = cmd.getSettings();
      if (!s) return;
      settingsByClient.set(clientId, s);
      const reply = s.cloneMessage();
      if (s.hasPublishing()) {
        reply.setBackoffPolicy(new def.RetryPolicy().setMaxAttempts(3).setExponentialBackoff(
          new def.ExponentialBackoff().setInitial(dur(10)).setMax(dur(1000)).setMultiplier(2)));
        reply.getPublishing().setMaxBodySize(4 * 1024 * 1024).setValidateMessageType(true);
      } else if (s.hasSubscription()) {
        reply.setBackoffPolicy(new def.RetryPolicy().setMaxAttempts(17).setExponentialBackoff(
          new def.ExponentialBackoff().setInitial(dur(1000)).setMax(dur(10_000)).setMultiplier(2)));
        reply.getSubscription().setReceiveBatchSize(32).setLongPollingTimeout(dur(LONG_POLL_MAX_MS)).setFifo(false);
      }
      call.write(new pb.TelemetryCommand().setStatus(status(C.OK, 'OK')).setSettings(reply));
    });
    call.on('end', () => { if (trace) log('telemetry half-closed', clientId); call.end(); });
    call.on('error', () => {});
  },
};

/* ---- admin HTTP ---- */
const httpServer = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/v1/topics') {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const { name, type = 'NORMAL', queues = 4 } = JSON.parse(body);
      state.topics[name] = { type, queues, messages: state.topics[name]?.messages ?? [] };
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ name, type, queues }));
    });
    return;
  }
  res.writeHead(404).end();
});

const server = new grpc.Server();
server.addService(svc.MessagingServiceService, handlers);
const [httpHost, httpPort] = opt['http-listen'].split(':');
server.bindAsync(opt['grpc-listen'], grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.error(`mock-confluxd: ${err.message}`); process.exit(1); }
  httpServer.listen(Number(httpPort), httpHost, () => log('confluxd ready (mock)'));
});

function shutdown(sig) {
  log(`${sig} received; saving state`);
  fs.writeFileSync(statePath, JSON.stringify(state));
  server.forceShutdown();
  httpServer.close();
  httpServer.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
