// A real confluxd for one test file: fresh temporary data directory, random
// loopback ports, start / restart / stop with the exit status checked, and the
// server's log printed when something fails.
//
// It does not know anything about RocketMQ; lib/client.mjs does that.
//
//   const server = new Confluxd('02-simple-consumer');
//   before(() => server.start());
//   after(() => server.stop());
//   test('...', server.guard(async (t) => { ... server.endpoints ... }));
//
// Environment:
//   CONFLUXD          path of the binary (default ../../../build/confluxd from this directory)
//   CFX_NODE_DRYRUN=1 start the binary without listen flags (for a dry run of the helper
//                     against a confluxd that has no gRPC yet); nothing waits for the ports
//   CFX_NODE_KEEP=1   keep the temporary directory (data and log) after the run

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/* Limits. The machine may have 2 cores and run other suites in parallel, so
 * these are generous; nothing asserts on how long anything took. */
export const START_TIMEOUT_MS = 30_000; /* spawn → "confluxd ready" and the gRPC port accepting */
export const STOP_TIMEOUT_MS = 30_000; /* SIGTERM → exit */
const POLL_INTERVAL_MS = 100;
const LOG_TAIL_BYTES_MAX = 64 * 1024; /* how much of the server log a failure prints */

/* Settings passed on every start. A small segment keeps four servers in
 * parallel from allocating 1 GiB each. */
const DEFAULT_ARGS = ['--store.segment_bytes', '32MiB', '--kafka-listen', 'off', '--mqtt-listen', 'off', ...(process.env.CFX_LOG_DEBUG ? ['--log-level', 'debug'] : [])];

export function confluxdPath() {
  // Resolved here: confluxd runs in its own data directory, not the caller's.
  return process.env.CONFLUXD ? path.resolve(process.env.CONFLUXD) : path.resolve(HERE, '../../../../build/confluxd');
}

export function isDryRun() {
  return process.env.CFX_NODE_DRYRUN === '1';
}

/* A port that nobody listens on right now. There is a window between closing
 * it here and confluxd binding it; on loopback with kernel-chosen ports a
 * collision is rare enough for tests. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/* Resolves true once a TCP connection to host:port succeeds, false when it is refused. */
function tcpProbe(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.setTimeout(2_000);
    sock.once('connect', () => { sock.destroy(); resolve(true); });
    sock.once('timeout', () => { sock.destroy(); resolve(false); });
    sock.once('error', () => { sock.destroy(); resolve(false); });
  });
}

/* Every server still running when the test process exits is killed, so a
 * crashed test file never leaves a confluxd behind. */
const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export class Confluxd {
  /**
   * @param {string} name       label for the temporary directory and messages
   * @param {object} [opts]
   * @param {string[]} [opts.args]  extra command-line settings
   */
  constructor(name, opts = {}) {
    this.name = name;
    this.bin = confluxdPath();
    this.dryRun = isDryRun();
    this.extraArgs = opts.args ?? [];
    this.dir = null; /* temporary directory: data/ and confluxd.log */
    this.grpcPort = 0;
    this.httpPort = 0;
    this.child = null;
    this.exit = null; /* {code, signal} of the last exit */
    this.starts = 0;
    this.failed = false; /* a guarded test failed: keep and print the log */
  }

  get dataDir() { return path.join(this.dir, 'data'); }
  get logPath() { return path.join(this.dir, 'confluxd.log'); }
  /** Access point for the RocketMQ clients: "127.0.0.1:PORT". */
  get endpoints() { return `127.0.0.1:${this.grpcPort}`; }
  /** Base URL of the admin HTTP API. */
  get httpBase() { return `http://127.0.0.1:${this.httpPort}`; }
  get isRunning() { return this.child !== null; }

  args() {
    const a = ['--data-dir', this.dataDir, ...DEFAULT_ARGS];
    if (!this.dryRun) {
      a.push('--grpc-listen', this.endpoints, '--http-listen', `127.0.0.1:${this.httpPort}`);
    }
    return a.concat(this.extraArgs);
  }

  /**
   * Starts confluxd; the first call creates the directory and picks the ports,
   * later calls reuse both. Resolves when the log says "confluxd ready" and the
   * gRPC port accepts TCP connections. Rejects (after printing the log) when the
   * process exits first or START_TIMEOUT_MS passes.
   */
  async start() {
    if (this.child) throw new Error(`${this.name}: confluxd is already running`);
    if (!this.dir) {
      if (!fs.existsSync(this.bin)) {
        throw new Error(`confluxd not found at ${this.bin} (build it, or set CONFLUXD)`);
      }
      this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `cfx-node-${this.name}-`));
      this.grpcPort = await freePort();
      do { this.httpPort = await freePort(); } while (this.httpPort === this.grpcPort);
    }
    this.starts++;
    const args = this.args();
    fs.appendFileSync(this.logPath,
      `---- start #${this.starts}: ${this.bin} ${args.join(' ')}\n`);
    const from = fs.statSync(this.logPath).size;
    const fd = fs.openSync(this.logPath, 'a');
    let child;
    try {
      child = spawn(this.bin, args, { cwd: this.dir, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    this.exit = null;
    running.add(child);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        running.delete(child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    child.once('error', (err) => {
      fs.appendFileSync(this.logPath, `---- spawn error: ${err.message}\n`);
    });

    const deadline = Date.now() + START_TIMEOUT_MS;
    let ready = false;
    let listening = this.dryRun;
    while (!(ready && listening)) {
      if (this.exit) {
        this.child = null;
        this.fail(`confluxd exited during start (${describeExit(this.exit)})`);
      }
      if (Date.now() > deadline) {
        await this.kill();
        this.fail(`confluxd was not ready within ${START_TIMEOUT_MS} ms ` +
          `(ready line: ${ready}, gRPC port ${this.grpcPort} accepting: ${listening})`);
      }
      if (!ready) ready = this.logSince(from).includes('confluxd ready');
      if (ready && !listening) listening = await tcpProbe('127.0.0.1', this.grpcPort);
      if (!(ready && listening)) await sleep(POLL_INTERVAL_MS);
    }
  }

  /**
   * SIGTERM, then waits for the exit. Rejects (after printing the log) when the
   * exit status is not 0 or the process does not exit within STOP_TIMEOUT_MS.
   * Safe to call when the server is not running (does nothing); removes the
   * temporary directory when `final` is true and nothing failed.
   */
  async stop({ final = true } = {}) {
    try {
      if (this.child) {
        const child = this.child;
        child.kill('SIGTERM');
        const exit = await Promise.race([this.exited, sleep(STOP_TIMEOUT_MS, null)]);
        this.child = null;
        if (!exit) {
          child.kill('SIGKILL');
          await this.exited;
          this.fail(`confluxd did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM (killed)`);
        }
        if (exit.code !== 0) {
          this.fail(`confluxd exit status after SIGTERM: ${describeExit(exit)}, expected 0`);
        }
      }
    } finally {
      if (final) this.cleanup();
    }
  }

  /** SIGTERM with exit status 0, then start again on the same data directory and ports. */
  async restart() {
    await this.stop({ final: false });
    await this.start();
  }

  /** SIGKILL (no check of the status); used when a start went wrong. */
  async kill() {
    if (!this.child) return;
    this.child.kill('SIGKILL');
    await this.exited;
    this.child = null;
  }

  cleanup() {
    if (!this.dir) return;
    if (this.failed || process.env.CFX_NODE_KEEP === '1') {
      process.stderr.write(`# ${this.name}: kept ${this.dir}\n`);
      return;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  /** The log written since byte offset `from`. */
  logSince(from = 0) {
    try {
      const buf = fs.readFileSync(this.logPath);
      return buf.subarray(from).toString('utf8');
    } catch {
      return '';
    }
  }

  /** Prints (the tail of) the server log to stderr, with a reason. */
  dumpLog(reason) {
    let text = this.dir ? this.logSince(0) : '';
    if (text.length > LOG_TAIL_BYTES_MAX) {
      text = `[... ${text.length - LOG_TAIL_BYTES_MAX} bytes cut ...]\n` + text.slice(-LOG_TAIL_BYTES_MAX);
    }
    process.stderr.write(`\n==== ${this.name}: ${reason}\n==== confluxd log (${this.logPath}):\n` +
      `${text}==== end of confluxd log\n`);
  }

  /** Marks the run failed, prints the log, throws. */
  fail(message) {
    this.failed = true;
    this.dumpLog(message);
    throw new Error(`${this.name}: ${message}`);
  }

  /**
   * Wraps a test body: on failure the server log is printed (once per test)
   * before the error goes to the test runner.
   */
  guard(fn) {
    return async (t) => {
      try {
        return await fn(t);
      } catch (err) {
        this.failed = true;
        this.dumpLog(`test "${t?.name ?? '?'}" failed: ${err?.message ?? err}`);
        throw err;
      }
    };
  }
}

function describeExit({ code, signal }) {
  return signal ? `killed by ${signal}` : `exit status ${code}`;
}
