// 17 MQTT 5 enhanced authentication (AUTH packets) with SCRAM-SHA-256 and
// SCRAM-SHA-512, using mqtt.js's handleAuth hook and a SCRAM client written
// in this file from RFC 5802 (node:crypto).
//
// - The right password: CONNECT (client-first) → AUTH 0x18 (server-first) →
//   AUTH 0x18 (client-final) → CONNACK 0x00 whose Authentication Data is the
//   server's signature, checked here; then publish/subscribe as that user
//   works within its policies.
// - A wrong password and an unknown user: CONNACK 0x87, and the failures are
//   counted in /metrics.
// - An unknown method: CONNACK 0x8C.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { Confluxd, freePort } from './lib/server.mjs';

const TEST_TIMEOUT_MS = 60_000;
const CLIENT_OP_MS = 10_000;

const mqttPort = await freePort();
const server = new Confluxd('17-mqtt-scram', { args: ['--mqtt-listen', `127.0.0.1:${mqttPort}`] });
const ADMIN = { name: 'admin', password: `admin-${randomBytes(6).toString('hex')}` };
const DEVICE = { name: 'device-7', password: `pw-${randomBytes(6).toString('hex')}` };

before(async () => {
  await server.start();
  const post = async (path, body, auth) => {
    const headers = { 'Content-Type': 'application/json' };
    if (auth) headers.Authorization = 'Basic ' + Buffer.from(`${auth.name}:${auth.password}`).toString('base64');
    const r = await fetch(`${server.httpBase}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    assert.ok(r.status === 201, `${path}: ${r.status} ${await r.text()}`);
  };
  await post('/v1/users', { name: ADMIN.name, password: ADMIN.password, role: 'super' });
  await post('/v1/users', { name: DEVICE.name, password: DEVICE.password }, ADMIN);
  await post('/v1/acls', { subject: DEVICE.name, resource: 'topic:scram/', pattern: 'prefixed',
    actions: ['PUB', 'SUB'] }, ADMIN);
});
after(() => server.stop());

/* ---- A SCRAM client (RFC 5802 / 7677) ---- */

function scramClient(mech, user, password) {
  const hash = mech === 'SCRAM-SHA-512' ? 'sha512' : 'sha256';
  const len = hash === 'sha512' ? 64 : 32;
  const cnonce = randomBytes(18).toString('base64');
  const bare = `n=${user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${cnonce}`;
  const st = { serverSignature: null };
  return {
    first: Buffer.from(`n,,${bare}`),
    final(serverFirst) {
      const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
      assert.ok(attrs.r.startsWith(cnonce), 'server nonce extends ours');
      const salted = pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), len, hash);
      const clientKey = createHmac(hash, salted).update('Client Key').digest();
      const storedKey = createHash(hash).update(clientKey).digest();
      const withoutProof = `c=biws,r=${attrs.r}`;
      const authMessage = `${bare},${serverFirst},${withoutProof}`;
      const clientSig = createHmac(hash, storedKey).update(authMessage).digest();
      const proof = Buffer.from(clientKey.map((b, i) => b ^ clientSig[i]));
      const serverKey = createHmac(hash, salted).update('Server Key').digest();
      st.serverSignature = createHmac(hash, serverKey).update(authMessage).digest('base64');
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
    },
    verify(serverFinal) {
      return serverFinal === `v=${st.serverSignature}`;
    },
  };
}

/* Connects with enhanced authentication; resolves { client, connack } or rejects with the reason code. */
function connectScram(mech, user, password) {
  const sc = scramClient(mech, user, password);
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, {
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: CLIENT_OP_MS,
      clientId: `scram-${randomBytes(4).toString('hex')}`,
      properties: { authenticationMethod: mech, authenticationData: sc.first },
    });
    client.handleAuth = (packet, cb) => {
      const data = packet.properties?.authenticationData?.toString() ?? '';
      cb(null, {
        cmd: 'auth',
        reasonCode: 0x18,
        properties: { authenticationMethod: mech, authenticationData: sc.final(data) },
      });
    };
    const timer = setTimeout(() => { client.end(true); reject(new Error('connect timed out')); }, CLIENT_OP_MS);
    client.once('connect', (connack) => {
      clearTimeout(timer);
      const data = connack.properties?.authenticationData?.toString() ?? '';
      resolve({ client, connack, verified: sc.verify(data) });
    });
    client.once('error', (err) => {
      clearTimeout(timer);
      client.end(true);
      reject(err);
    });
  });
}

async function failures() {
  const text = await (await fetch(`${server.httpBase}/metrics`)).text();
  const m = text.match(/^conflux_auth_failures_total\{protocol="mqtt"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

for (const mech of ['SCRAM-SHA-256', 'SCRAM-SHA-512']) {
  test(`${mech}: the right password signs in, the server proves it knows the credential`,
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const { client: sub, verified } = await connectScram(mech, DEVICE.name, DEVICE.password);
      assert.ok(verified, 'the CONNACK carries the server signature');
      const { client: pub } = await connectScram(mech, DEVICE.name, DEVICE.password);
      const got = new Promise((resolve) => sub.on('message', (t, p) => resolve(`${t}:${p}`)));
      await sub.subscribeAsync('scram/t', { qos: 1 });
      await pub.publishAsync('scram/t', 'hello', { qos: 1 });
      assert.equal(await got, 'scram/t:hello');
      /* Outside the policies: refused as for a password sign-in. */
      await assert.rejects(sub.subscribeAsync('other/#', { qos: 1 }),
        (err) => err.packet?.granted?.[0] === 0x87);
      await sub.endAsync();
      await pub.endAsync();
    });

  test(`${mech}: a wrong password and an unknown user get 0x87 and are counted`,
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const before = await failures();
      await assert.rejects(connectScram(mech, DEVICE.name, 'not-the-password'),
        (err) => err.code === 0x87 || /authori/i.test(err.message));
      await assert.rejects(connectScram(mech, 'nobody', 'whatever'),
        (err) => err.code === 0x87 || /authori/i.test(err.message));
      assert.ok(await failures() >= before + 2);
    });
}

test('an unknown authentication method gets 0x8C', { timeout: TEST_TIMEOUT_MS }, async () => {
  await assert.rejects(connectScram('KERBEROS-5', DEVICE.name, DEVICE.password),
    (err) => err.code === 0x8c || /authentication method/i.test(err.message));
});
