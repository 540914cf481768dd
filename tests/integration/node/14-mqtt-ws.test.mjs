// 14 MQTT over WebSocket (subprotocol "mqtt") with mqtt.js (npm `mqtt`, v5)
// against confluxd's mqtt.ws_listen, next to mosquitto_pub / mosquitto_sub on
// the plain MQTT listener: both listeners serve the same MQTT service.
//
// - mosquitto_pub over TCP reaches mqtt.js subscribers over WebSocket
//   (MQTT 3.1.1 and 5.0), and mqtt.js over WebSocket reaches mosquitto_sub
//   over TCP (a persistent session, subscribed before the publish).
// - A 300 KB message published over WebSocket (many frames one way, more
//   than one server frame the other) arrives intact over WebSocket.
// - The Upgrade is refused without the "mqtt" subprotocol (400), on another
//   path (404) and for a version other than 13 (426).
//
// Both listeners bind port 0; their addresses are read from the log lines.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { Confluxd } from './lib/server.mjs';
import { withTimeout } from './lib/client.mjs';

const TEST_TIMEOUT_MS = 60_000;
const CLIENT_OP_MS = 10_000; /* connect, subscribe, publish, end, a tool run */
const BIG_BYTES = 300 * 1024;

const server = new Confluxd('14-mqtt-ws', {
  args: ['--mqtt-listen', '127.0.0.1:0', '--mqtt-ws-listen', '127.0.0.1:0'],
});
const RUN = randomBytes(4).toString('hex');
const run = promisify(execFile);
let tcpHost, tcpPort, wsUrl, wsHost, wsPort;

const openClients = new Set();

before(async () => {
  await server.start();
  const log = server.logSince(0);
  const tcp = [...log.matchAll(/MQTT 3\.1\.1 and 5\.0 are on (\S+):(\d+)/g)].at(-1);
  const ws = [...log.matchAll(/MQTT over WebSocket is on (ws:\/\/(\S+):(\d+)\/mqtt)/g)].at(-1);
  assert.ok(tcp, 'the MQTT listener logs its address');
  assert.ok(ws, 'the MQTT WebSocket listener logs its URL');
  [, tcpHost, tcpPort] = tcp;
  [, wsUrl, wsHost, wsPort] = ws;
});

after(async () => {
  for (const client of openClients) client.end(true);
  await server.stop();
});

/** An mqtt.js client over WebSocket, connected. */
async function connectWs(clientId, protocolVersion) {
  const client = mqtt.connect(wsUrl, {
    clientId, protocolVersion, clean: true, reconnectPeriod: 0, connectTimeout: CLIENT_OP_MS,
  });
  openClients.add(client);
  await withTimeout(new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  }), CLIENT_OP_MS + 1_000, `${clientId}: connect over WebSocket`);
  return client;
}

async function endClient(client) {
  await withTimeout(client.endAsync(), CLIENT_OP_MS, 'end');
  openClients.delete(client);
}

/** Resolves with the first message on `topic` that `client` receives. */
function nextMessage(client, topic) {
  return withTimeout(new Promise((resolve) => {
    client.on('message', (t, payload) => { if (t === topic) resolve(Buffer.from(payload)); });
  }), CLIENT_OP_MS, `a message on ${topic}`);
}

for (const version of [4, 5]) {
  test(`mosquitto_pub over TCP reaches an mqtt.js v${version} subscriber over WebSocket`,
    { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
      const topic = `ws/${RUN}/in/v${version}`;
      const sub = await connectWs(`ws-sub-${RUN}-${version}`, version);
      await withTimeout(sub.subscribeAsync(topic, { qos: 1 }), CLIENT_OP_MS, 'subscribe');
      const got = nextMessage(sub, topic);
      await run('mosquitto_pub', ['-h', tcpHost, '-p', tcpPort, '-t', topic, '-q', '1',
        '-m', `from tcp ${version}`], { timeout: CLIENT_OP_MS });
      assert.equal((await got).toString(), `from tcp ${version}`);
      await endClient(sub);
    }));
}

test('mqtt.js over WebSocket reaches mosquitto_sub over TCP', { timeout: TEST_TIMEOUT_MS },
  server.guard(async () => {
    const topic = `ws/${RUN}/out`;
    const tcpSub = ['-h', tcpHost, '-p', tcpPort, '-t', topic, '-q', '1', '-c', '-i', `tcp-sub-${RUN}`];
    /* A persistent session subscribes and leaves (-E: after the SUBACK), so
     * the publish cannot race the subscription; the next run collects. */
    await run('mosquitto_sub', [...tcpSub, '-E'], { timeout: CLIENT_OP_MS });
    const pub = await connectWs(`ws-pub-${RUN}`, 5);
    await withTimeout(pub.publishAsync(topic, 'from websocket', { qos: 1 }), CLIENT_OP_MS,
      'publish over WebSocket');
    await endClient(pub);
    const { stdout } = await run('mosquitto_sub', [...tcpSub, '-C', '1', '-W', '10'],
      { timeout: CLIENT_OP_MS + 2_000 });
    assert.equal(stdout, 'from websocket\n');
  }));

test('a 300 KB message crosses WebSocket frames both ways intact', { timeout: TEST_TIMEOUT_MS },
  server.guard(async () => {
    const topic = `ws/${RUN}/big`;
    const big = randomBytes(BIG_BYTES);
    const sub = await connectWs(`ws-big-sub-${RUN}`, 5);
    await withTimeout(sub.subscribeAsync(topic, { qos: 1 }), CLIENT_OP_MS, 'subscribe');
    const got = nextMessage(sub, topic);
    const pub = await connectWs(`ws-big-pub-${RUN}`, 4);
    await withTimeout(pub.publishAsync(topic, big, { qos: 1 }), CLIENT_OP_MS, 'publish');
    assert.ok((await got).equals(big), 'the payload arrives byte for byte');
    await endClient(pub);
    await endClient(sub);
  }));

/** Sends a raw Upgrade request and resolves with the answer's status line. */
function upgradeStatus(path, headers) {
  return withTimeout(new Promise((resolve, reject) => {
    const sock = net.connect({ host: wsHost, port: Number(wsPort) });
    let data = '';
    sock.on('connect', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: ${wsHost}\r\n` +
      'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' + headers + '\r\n'));
    sock.on('data', (d) => {
      data += d;
      if (data.includes('\r\n\r\n')) sock.destroy(); /* a 101 leaves the socket open */
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(data.split('\r\n')[0]));
  }), CLIENT_OP_MS, `Upgrade of ${path}`);
}

test('the Upgrade is refused without the mqtt subprotocol, on another path or version',
  { timeout: TEST_TIMEOUT_MS }, server.guard(async () => {
    assert.equal(await upgradeStatus('/mqtt', 'Sec-WebSocket-Version: 13\r\n'),
      'HTTP/1.1 400 Bad Request');
    assert.equal(await upgradeStatus('/mqtt', 'Sec-WebSocket-Version: 13\r\n' +
      'Sec-WebSocket-Protocol: chat\r\n'), 'HTTP/1.1 400 Bad Request');
    assert.equal(await upgradeStatus('/other', 'Sec-WebSocket-Version: 13\r\n' +
      'Sec-WebSocket-Protocol: mqtt\r\n'), 'HTTP/1.1 404 Not Found');
    assert.equal(await upgradeStatus('/mqtt', 'Sec-WebSocket-Version: 8\r\n' +
      'Sec-WebSocket-Protocol: mqtt\r\n'), 'HTTP/1.1 426 Upgrade Required');
    assert.match(await upgradeStatus('/mqtt', 'Sec-WebSocket-Version: 13\r\n' +
      'Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n'), /^HTTP\/1\.1 101 /);
  }));
