// BullMQ on Node.js: the worker and the producer, speaking bench/peers/protocol.py's JSON lines.
//
//     node bench/peers/node/bench.mjs worker|produce|stamps --concurrency N --jobs N --samples N --gap-ms G
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Queue, Worker } from "bullmq";

const QUEUE_NAME = "bench";
const REPORT_INTERVAL_MS = 20;
const url = new URL(process.env.BENCH_REDIS_URL); // no default: never a shared server
const connection = { host: url.hostname, port: Number(url.port) };
const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    jobs: { type: "string", default: "1000" },
    concurrency: { type: "string", default: "50" },
    samples: { type: "string", default: "200" },
    "gap-ms": { type: "string", default: "30" },
  },
});

// wall-clock seconds with sub-millisecond precision, comparable with Python's time.time()
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

async function waitForGo() {
  emit("ready", { pid: process.pid });
  const lines = createInterface({ input: process.stdin });
  await new Promise((resolve) => lines.once("line", resolve));
}

async function worker() {
  let count = 0;
  let last = 0;
  const processor = async (job) => {
    if (job.name === "stamp") emit("stamp", { delay_ms: (now() - job.data.sent_at) * 1000 });
    else {
      count += 1;
      last = now();
    }
  };
  // autorun off: the worker connects first and takes no job until run()
  const running = new Worker(QUEUE_NAME, processor, {
    connection,
    concurrency: Number(values.concurrency),
    autorun: false,
  });
  await running.waitUntilReady();
  await waitForGo();
  let reported = 0;
  setInterval(() => {
    if (count !== reported) {
      reported = count;
      emit("progress", { count, last });
    }
  }, REPORT_INTERVAL_MS);
  process.on("SIGTERM", async () => {
    await running.close();
    process.exit(0);
  });
  await running.run();
}

async function withQueue(use) {
  const queue = new Queue(QUEUE_NAME, { connection });
  await queue.waitUntilReady();
  try {
    await use(queue);
  } finally {
    await queue.close();
  }
}

async function produce() {
  await withQueue(async (queue) => {
    const jobs = Number(values.jobs);
    let remaining = jobs;
    const sender = async () => {
      while (remaining > 0) {
        remaining -= 1;
        await queue.add("noop", {});
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: Number(values.concurrency) }, sender));
    emit("enqueued", { jobs, seconds: (performance.now() - started) / 1000 });
  });
}

// the same irregular spacing as protocol.send_stamps (not the same random numbers: a different generator)
async function stamps() {
  await withQueue(async (queue) => {
    const samples = Number(values.samples);
    const gapMs = Number(values["gap-ms"]);
    for (let i = 0; i < samples; i++) {
      await queue.add("stamp", { sent_at: now() });
      await new Promise((resolve) => setTimeout(resolve, gapMs * (0.5 + Math.random())));
    }
    emit("stamps_sent", { samples });
  });
}

const commands = { worker, produce, stamps };
await commands[positionals[0]]();
if (positionals[0] !== "worker") process.exit(0);
