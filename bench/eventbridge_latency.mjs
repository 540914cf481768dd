// Rule-to-webhook latency for bench/eventbridge.sh, in two processes:
//
//   node bench/eventbridge_latency.mjs receive --port P [--idle-ms 5000] [--max-ms 180000]
//       [--dump FILE]
//       A webhook receiver on 127.0.0.1:P. Each delivery (binary mode) carries
//       the extension ce-senttime, the sender's CLOCK_MONOTONIC in µs when it
//       sent the event; the receiver keeps now - senttime, answers 200, and
//       once nothing arrived for --idle-ms after the first delivery (or after
//       --max-ms in all) prints one JSON line: deliveries, distinct events,
//       latency percentiles in ms (--dump: every latency in µs, in arrival
//       order, one a line). Prints "listening" on stderr when ready.
//
//   node bench/eventbridge_latency.mjs send --url URL [--rate 5000] [--seconds 20]
//       [--warmup 2] [--connections 8] [--data-bytes 256]
//       POSTs structured-mode events to URL (a bus's /events route) at a fixed
//       rate over keep-alive connections; each event's senttime is taken when
//       its request is issued. The first --warmup seconds send events whose
//       ids start with "warm-", which the receiver does not measure (the
//       first events of fresh queues wait for their files, and the webhook's
//       workers start). Prints one JSON line: measured events sent, answered
//       200, failed, the achieved rate.
//
// Both processes read the same clock (process.hrtime = CLOCK_MONOTONIC), so
// the difference is the time from the sender's request to the receiver's
// handler: ingress, storage, routing, the delivery queue and the webhook
// client. Node builtins only.

import fs from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

const nowUs = () => process.hrtime.bigint() / 1000n;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)];
}

/* ------------------------------------------------------------------------
 * Receiver
 * ---------------------------------------------------------------------- */

async function receive() {
  const port = Number(arg('port'));
  const idleMs = Number(arg('idle-ms', '5000'));
  const maxMs = Number(arg('max-ms', '180000'));
  const lat = []; /* µs */
  const ids = new Set();
  let bad = 0;
  let warm = 0; /* deliveries of the warm-up events, not measured */
  let last = 0;
  const srv = http.createServer((req, res) => {
    const now = nowUs();
    req.resume();
    req.on('end', () => {
      const sent = req.headers['ce-senttime'];
      if (sent === undefined) {
        bad++;
      } else if (req.headers['ce-id']?.startsWith('warm-')) {
        warm++;
      } else {
        lat.push(Number(now - BigInt(sent)));
        ids.add(req.headers['ce-id']);
      }
      last = Date.now();
      res.writeHead(200, { 'content-length': '0' });
      res.end();
    });
  });
  await new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
  process.stderr.write('listening\n');
  const start = Date.now();
  while (Date.now() - start < maxMs && !(last && Date.now() - last > idleMs)) await sleep(100);
  srv.close();
  srv.closeAllConnections?.();
  const dump = arg('dump');
  if (dump) fs.writeFileSync(dump, lat.join('\n') + '\n');
  const s = Float64Array.from(lat).sort();
  const ms = (v) => (v === null ? null : Math.round(v) / 1000);
  process.stdout.write(JSON.stringify({
    deliveries: lat.length, distinct: ids.size, warmup_deliveries: warm, without_senttime: bad,
    latency_ms: { p50: ms(percentile(s, 50)), p99: ms(percentile(s, 99)), p999: ms(percentile(s, 99.9)),
      max: ms(s.length ? s[s.length - 1] : null), min: ms(s.length ? s[0] : null) },
  }) + '\n');
  process.exit(0);
}

/* ------------------------------------------------------------------------
 * Sender
 * ---------------------------------------------------------------------- */

async function send() {
  const url = new URL(arg('url'));
  const rate = Number(arg('rate', '5000'));
  const seconds = Number(arg('seconds', '20'));
  const conns = Number(arg('connections', '8'));
  const dataBytes = Number(arg('data-bytes', '256'));
  const warmup = Number(arg('warmup', '2'));
  const warmTotal = Math.round(rate * warmup);
  const total = warmTotal + Math.round(rate * seconds);
  const agent = new http.Agent({ keepAlive: true, maxSockets: conns });
  const pad = 'x'.repeat(dataBytes);
  let sent = 0;
  let ok = 0;
  let failed = 0;
  let firstError = '';
  let inflight = 0;

  function post(i) {
    const body = JSON.stringify({
      specversion: '1.0', id: i < warmTotal ? `warm-${i}` : `lat-${i}`, source: '/bench/latency', type: 'bench.latency',
      senttime: String(nowUs()), datacontenttype: 'application/json', data: { i, pad },
    });
    inflight++;
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent,
      headers: { 'content-type': 'application/cloudevents+json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        inflight--;
        if (res.statusCode === 200) ok += i >= warmTotal;
        else { failed++; firstError ||= `status ${res.statusCode}`; }
      });
    });
    req.on('error', (err) => { inflight--; failed++; firstError ||= err.message; });
    req.end(body);
  }

  const t0 = Date.now();
  let t1 = 0; /* end of the warm-up */
  while (sent < total) {
    const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * rate));
    while (sent < due) {
      if (sent === warmTotal) t1 = Date.now();
      post(sent++);
    }
    await sleep(1);
  }
  const sendSeconds = (Date.now() - (t1 || t0)) / 1000;
  const deadline = Date.now() + 30_000;
  while (inflight > 0 && Date.now() < deadline) await sleep(10);
  agent.destroy();
  process.stdout.write(JSON.stringify({
    sent: total - warmTotal, warmup_sent: warmTotal, answered_200: ok, failed,
    first_error: firstError || undefined,
    rate_asked: rate, rate_achieved: Math.round((total - warmTotal) / sendSeconds), seconds: sendSeconds,
  }) + '\n');
}

const mode = process.argv[2];
if (mode === 'receive') await receive();
else if (mode === 'send') await send();
else {
  process.stderr.write('usage: eventbridge_latency.mjs receive --port P | send --url URL [--rate N] [--seconds S]\n');
  process.exit(2);
}
