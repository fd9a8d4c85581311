// kafkajs admin + producer checks against a running sluice broker.
// Env: SLUICE_BOOTSTRAP (host:port), SLUICE_TOPIC (unique topic prefix).
// Exits non-zero on any failed check or error; prints "kafkajs: all checks passed".
'use strict';

const assert = require('node:assert/strict');
const { Kafka, logLevel } = require('kafkajs');

const bootstrap = process.env.SLUICE_BOOTSTRAP;
const prefix = process.env.SLUICE_TOPIC || `kjs-${process.pid}`;
if (!bootstrap) {
  console.error('SLUICE_BOOTSTRAP is not set');
  process.exit(2);
}

const kafka = new Kafka({
  clientId: 'sluice-e2e',
  brokers: [bootstrap],
  logLevel: logLevel.WARN,
  retry: { retries: 3 },
  connectionTimeout: 10000,
  requestTimeout: 30000,
});

async function main() {
  const admin = kafka.admin();
  await admin.connect();
  const temp = `${prefix}-temp`;
  const kept = `${prefix}-kept`;

  // createTopics: true when created, false when it already exists.
  const created = await admin.createTopics({
    topics: [
      { topic: temp, numPartitions: 3, replicationFactor: 1 },
      { topic: kept, numPartitions: 1, replicationFactor: 1 },
    ],
    waitForLeaders: true,
  });
  assert.equal(created, true, 'createTopics should report creation');
  const again = await admin.createTopics({ topics: [{ topic: temp, numPartitions: 3 }] });
  assert.equal(again, false, 'createTopics of an existing topic should resolve false');

  const names = await admin.listTopics();
  assert.ok(names.includes(temp) && names.includes(kept), `listTopics: ${names}`);

  const md = await admin.fetchTopicMetadata({ topics: [temp] });
  assert.equal(md.topics.length, 1);
  assert.equal(md.topics[0].name, temp);
  const partitions = md.topics[0].partitions.map((p) => p.partitionId).sort();
  assert.deepEqual(partitions, [0, 1, 2]);
  for (const p of md.topics[0].partitions) {
    assert.equal(p.partitionErrorCode, 0);
    assert.deepEqual(p.replicas, [p.leader]);
    assert.deepEqual(p.isr, [p.leader]);
  }

  const cluster = await admin.describeCluster();
  assert.equal(cluster.brokers.length, 1);
  assert.equal(cluster.brokers[0].port, Number(bootstrap.split(':')[1]));
  assert.ok(cluster.clusterId, 'clusterId');

  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();

  // acks = -1 (all), keyed, headers, explicit timestamps, into the kept topic.
  const messages = Array.from({ length: 20 }, (_, i) => ({
    key: `k${i}`,
    value: `kafkajs-${i}`,
    partition: 0,
    headers: { idx: String(i) },
    timestamp: String(1700000000000 + i),
  }));
  const first = await producer.send({ topic: kept, acks: -1, messages: messages.slice(0, 10) });
  assert.equal(first.length, 1);
  assert.equal(first[0].errorCode, 0);
  assert.equal(first[0].baseOffset, '0');
  const second = await producer.send({ topic: kept, acks: 1, messages: messages.slice(10) });
  assert.equal(second[0].errorCode, 0);
  assert.equal(second[0].baseOffset, '10');

  // Spread over the 3 partitions of the temp topic with acks=1.
  for (let p = 0; p < 3; p++) {
    const res = await producer.send({
      topic: temp,
      acks: 1,
      messages: Array.from({ length: p + 2 }, (_, i) => ({ value: `p${p}-${i}`, partition: p })),
    });
    assert.equal(res[0].partition, p);
    assert.equal(res[0].baseOffset, '0');
  }
  // sendBatch to several topics at once
  const batch = await producer.sendBatch({
    acks: -1,
    topicMessages: [
      { topic: temp, messages: [{ value: 'batch-0', partition: 0 }] },
      { topic: kept, messages: [] },
    ],
  });
  const tempResult = batch.find((r) => r.topicName === temp);
  assert.equal(tempResult.baseOffset, '2');
  await producer.disconnect();

  const offsets = await admin.fetchTopicOffsets(temp);
  const byPartition = Object.fromEntries(offsets.map((o) => [o.partition, o]));
  assert.deepEqual(
    [0, 1, 2].map((p) => [byPartition[p].low, byPartition[p].high]),
    [['0', '3'], ['0', '3'], ['0', '4']],
  );
  const keptOffsets = await admin.fetchTopicOffsets(kept);
  assert.equal(keptOffsets[0].high, '20');

  const byTime = await admin.fetchTopicOffsetsByTimestamp(kept, 1700000000005);
  assert.equal(byTime[0].offset, '5');

  await admin.deleteTopics({ topics: [temp], timeout: 30000 });
  const after = await admin.listTopics();
  assert.ok(!after.includes(temp), `deleted topic still listed: ${after}`);
  assert.ok(after.includes(kept), 'kept topic missing');

  await admin.disconnect();
  console.log('kafkajs: all checks passed');
}

main().catch((err) => {
  console.error('kafkajs check failed:', err);
  process.exit(1);
});
