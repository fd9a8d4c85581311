// kafkajs consumer group against sluice: two consumers in one group share a topic's
// partitions, see every record once between them, commit, and the admin client reads
// the group's committed offsets. Run by tests/e2e/test_groups.py.
const { Kafka, logLevel } = require("kafkajs");

const bootstrap = process.env.SLUICE_BOOTSTRAP;
const topic = process.env.SLUICE_TOPIC;
const expected = Number(process.env.SLUICE_EXPECTED);
const groupId = `kjs-${topic}`;

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

async function main() {
  const kafka = new Kafka({ clientId: "sluice-kjs-group", brokers: [bootstrap], logLevel: logLevel.WARN });
  const seen = new Map();
  const byMember = [new Set(), new Set()];
  const consumers = [0, 1].map(() =>
    kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000 })
  );
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));
  for (const [i, consumer] of consumers.entries()) {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
  }
  await Promise.all(
    consumers.map((consumer, i) =>
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          const value = message.value.toString();
          seen.set(value, (seen.get(value) || 0) + 1);
          byMember[i].add(partition);
          if (seen.size >= expected) resolveDone();
        },
      })
    )
  );
  const timer = setTimeout(() => fail(`timed out with ${seen.size}/${expected} records`), 60000);
  await done;
  clearTimeout(timer);
  // kafkajs commits resolved offsets on its own after each batch; stop cleanly so the
  // last commit happens (and the members leave the group).
  await Promise.all(consumers.map((c) => c.disconnect()));

  for (const [value, count] of seen) {
    if (count !== 1) fail(`record ${value} seen ${count} times`);
  }
  if (seen.size !== expected) fail(`saw ${seen.size} records, expected ${expected}`);

  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const committed = offsets[0].partitions.map((p) => Number(p.offset)).reduce((a, b) => a + b, 0);
  if (committed !== expected) fail(`committed offsets sum to ${committed}, expected ${expected}`);
  const groups = await admin.listGroups();
  if (!groups.groups.some((g) => g.groupId === groupId)) fail("group not listed");
  const described = await admin.describeGroups([groupId]);
  if (described.groups[0].state !== "Empty") fail(`group state ${described.groups[0].state}`);
  await admin.disconnect();
  console.log("kafkajs group: all checks passed");
}

main().catch((e) => fail(e.stack || String(e)));
