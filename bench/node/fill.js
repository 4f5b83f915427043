// The node-bullmq peer's producer (bench/README.md): queue --jobs deliveries with
// addBulk into its own queue, before the benchmark starts worker.js and its clock.
// Each job carries the URL and the ~600-byte body, as a Node.js webhook sender's job
// typically does. Prints {"jobs", "waiting", "seconds"} as JSON.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';

// Jobs per addBulk call (one MULTI each), like the Python publisher's chunks of 1,000.
const CHUNK = 1000;
const WEEK_S = 7 * 24 * 3600;
// The endpoints of worker-1proc: the same ten paths on the sink.
const PATHS = 10;

const { values: args } = parseArgs({
  options: {
    redis: { type: 'string' },
    prefix: { type: 'string' },
    queue: { type: 'string' },
    url: { type: 'string' },
    body: { type: 'string' },
    jobs: { type: 'string' },
  },
});
const jobs = Number(args.jobs);
const body = readFileSync(args.body, 'utf8');
const connection = new IORedis(args.redis, { maxRetriesPerRequest: null });
const queue = new Queue(args.queue, { connection, prefix: args.prefix });
// The Python producer's job options: nothing kept once delivered, failures for a week.
const opts = { removeOnComplete: true, removeOnFail: { age: WEEK_S } };

const started = performance.now();
for (let start = 0; start < jobs; start += CHUNK) {
  const batch = [];
  for (let n = start; n < Math.min(jobs, start + CHUNK); n += 1) {
    batch.push({ name: 'deliver', data: { url: `${args.url}/hook/${n % PATHS}`, body }, opts });
  }
  await queue.addBulk(batch);
}
const seconds = (performance.now() - started) / 1000;
const counts = await queue.getJobCounts('wait');
await queue.close();
await connection.quit();
console.log(JSON.stringify({ jobs, waiting: counts.wait, seconds }));
