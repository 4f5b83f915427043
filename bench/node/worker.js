// The node-bullmq peer (bench/README.md): one BullMQ Worker, --concurrency jobs at once.
// Each job is one delivery: sign its body (hex HMAC-SHA256 in X-Cliq-Signature, keyed
// with BENCH_SECRET) and POST it with node:http on a keep-alive agent; any status other
// than 2xx fails the job. No recording, no metrics, no logging per job. Prints a ready
// line once connected; on SIGTERM closes the worker (waiting for jobs in flight), prints
// {"completed", "failed"} as JSON and exits.
import { createHmac } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Worker } from 'bullmq';
import IORedis from 'ioredis';

const TIMEOUT_MS = 10000;

const { values: args } = parseArgs({
  options: {
    redis: { type: 'string' },
    prefix: { type: 'string' },
    queue: { type: 'string' },
    concurrency: { type: 'string' },
  },
});
const concurrency = Number(args.concurrency);
const secret = process.env.BENCH_SECRET;
if (!secret) {
  console.error('worker.js: BENCH_SECRET is not set');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });

function deliver(url, body) {
  const payload = Buffer.from(body);
  const headers = {
    'Content-Type': 'application/json',
    'Content-Length': payload.length,
    'X-Cliq-Signature': createHmac('sha256', secret).update(payload).digest('hex'),
  };
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode));
      response.on('error', reject);
    });
    request.setTimeout(TIMEOUT_MS, () => request.destroy(new Error('timed out')));
    request.on('error', reject);
    request.end(payload);
  });
}

async function processor(job) {
  const status = await deliver(job.data.url, job.data.body);
  if (status < 200 || status >= 300) {
    throw new Error(`HTTP ${status}`);
  }
}

const connection = new IORedis(args.redis, { maxRetriesPerRequest: null });
const worker = new Worker(args.queue, processor, { connection, prefix: args.prefix, concurrency });
let completed = 0;
let failed = 0;
worker.on('completed', () => {
  completed += 1;
});
worker.on('failed', (job, error) => {
  failed += 1;
  if (failed <= 5) console.error(`worker.js: job ${job?.id} failed: ${error.message}`);
});
worker.on('error', (error) => console.error(`worker.js: ${error.message}`));

process.once('SIGTERM', async () => {
  await worker.close();
  await connection.quit();
  agent.destroy();
  console.log(JSON.stringify({ completed, failed }));
  process.exit(0);
});
await worker.waitUntilReady();
console.log('node worker ready');
