"""kafka-python (pure Python client) against sluice: admin, produce, manual-assign
consume (no consumer groups), all four codecs."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    TopicAlreadyExistsError,
)

TIMEOUT_MS = 30_000
T0 = 1_700_000_000_000


def kp_admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)


def kp_create(bootstrap, name, partitions):
    a = kp_admin(bootstrap)
    try:
        a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                        timeout_ms=TIMEOUT_MS)
    finally:
        a.close()


def kp_consume(bootstrap, topic, partition, offset, count):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        request_timeout_ms=TIMEOUT_MS + 5000,
    )
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, offset)
        out = []
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while len(out) < count and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                out.extend(records)
        assert len(out) == count, f"got {len(out)} records, expected {count}"
        return out
    finally:
        c.close()


def partition_id(p):
    # kafka-python 3 names metadata fields after Kafka's schemas (partition_index).
    return p["partition_index"] if "partition_index" in p else p["partition"]


def test_admin_create_list_delete(broker, topic_name):
    a = kp_admin(broker.bootstrap)
    try:
        name = topic_name("kp")
        a.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)], timeout_ms=TIMEOUT_MS)
        assert name in a.list_topics()
        (desc,) = a.describe_topics([name])
        assert desc["error_code"] == 0
        assert sorted(partition_id(p) for p in desc["partitions"]) == [0, 1, 2, 3]

        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], timeout_ms=TIMEOUT_MS)

        a.create_partitions({name: NewPartitions(total_count=6)}, timeout_ms=TIMEOUT_MS)
        (desc,) = a.describe_topics([name])
        assert len(desc["partitions"]) == 6

        a.delete_topics([name], timeout_ms=TIMEOUT_MS)
        assert name not in a.list_topics()
    finally:
        a.close()


@pytest.mark.parametrize("partitions", [0, -5])
def test_admin_bad_partition_count(broker, topic_name, partitions):
    a = kp_admin(broker.bootstrap)
    try:
        name = topic_name("badp")
        with pytest.raises(InvalidPartitionsError):
            a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                            timeout_ms=TIMEOUT_MS)
        assert name not in a.list_topics()
    finally:
        a.close()


def test_admin_invalid_topic_name(broker):
    a = kp_admin(broker.bootstrap)
    try:
        with pytest.raises(InvalidTopicError):
            a.create_topics([NewTopic("no/slashes", num_partitions=1, replication_factor=1)],
                            timeout_ms=TIMEOUT_MS)
    finally:
        a.close()


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_consume_manual_assign(broker, topic_name, acks):
    name = topic_name("kpio")
    kp_create(broker.bootstrap, name, 2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks, linger_ms=5)
    futures = [
        p.send(name, key=f"k{i}".encode(), value=f"kafka-python-{i}".encode(), partition=1,
               headers=[("n", str(i).encode())], timestamp_ms=T0 + i)
        for i in range(100)
    ]
    p.flush(timeout=30)
    metadata = [f.get(timeout=30) for f in futures]
    p.close()
    if acks != 0:
        assert [m.offset for m in metadata] == list(range(100))
    records = kp_consume(broker.bootstrap, name, 1, 0, 100)
    for i, r in enumerate(records):
        assert r.offset == i
        assert r.key == f"k{i}".encode()
        assert r.value == f"kafka-python-{i}".encode()
        assert list(r.headers) == [("n", str(i).encode())]
        assert r.timestamp == T0 + i
    tail = kp_consume(broker.bootstrap, name, 1, 97, 3)
    assert [r.value for r in tail] == [f"kafka-python-{i}".encode() for i in (97, 98, 99)]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(broker, topic_name, codec):
    name = topic_name(f"kp-{codec}")
    kp_create(broker.bootstrap, name, 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=20)
    values = [(f"{codec}-{i}-" * 30).encode() for i in range(300)]
    futures = [p.send(name, value=v, partition=0) for v in values]
    p.flush(timeout=30)
    offsets = [f.get(timeout=30).offset for f in futures]
    p.close()
    assert offsets == list(range(300))
    records = kp_consume(broker.bootstrap, name, 0, 0, 300)
    assert [r.value for r in records] == values


def test_end_offsets_and_offsets_for_times(broker, topic_name):
    name = topic_name("kp-offsets")
    kp_create(broker.bootstrap, name, 1)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    for i in range(8):
        p.send(name, value=b"x%d" % i, partition=0, timestamp_ms=T0 + i * 100).get(timeout=30)
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    try:
        tp = TopicPartition(name, 0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 8}
        found = c.offsets_for_times({tp: T0 + 250})
        assert found[tp].offset == 3 and found[tp].timestamp == T0 + 300
    finally:
        c.close()
