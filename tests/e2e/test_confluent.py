"""confluent-kafka (librdkafka) against sluice: admin, produce, consume, compression,
large records, volume, idempotence, list offsets, restart."""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from helpers import (
    CLIENT_TIMEOUT_S,
    admin,
    consume,
    consumer,
    create_topic,
    produce_all,
    producer,
    topic_names,
    topic_partitions,
)

T0 = 1_700_000_000_000  # a fixed creation timestamp (ms) for produced records


def error_code_of(future):
    with pytest.raises(KafkaException) as excinfo:
        future.result(CLIENT_TIMEOUT_S)
    return excinfo.value.args[0].code()


# ---- admin ------------------------------------------------------------------------


def test_create_list_delete_topics(broker, topic_name):
    a = admin(broker.bootstrap)
    names = [topic_name("adm"), topic_name("adm")]
    futures = a.create_topics(
        [NewTopic(names[0], num_partitions=3), NewTopic(names[1], num_partitions=1)],
        operation_timeout=CLIENT_TIMEOUT_S,
    )
    for name in names:
        assert futures[name].result(CLIENT_TIMEOUT_S) is None

    md = a.list_topics(timeout=CLIENT_TIMEOUT_S)
    assert set(names) <= set(md.topics)
    t = md.topics[names[0]]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    broker_ids = set(md.brokers)
    assert len(broker_ids) == 1
    (broker_id,) = broker_ids
    assert md.brokers[broker_id].port == broker.port
    for p in t.partitions.values():
        assert p.leader == broker_id
        assert p.replicas == [broker_id]
        assert p.isrs == [broker_id]
        assert p.error is None

    deleted = a.delete_topics([names[0]], operation_timeout=CLIENT_TIMEOUT_S)
    assert deleted[names[0]].result(CLIENT_TIMEOUT_S) is None
    remaining = topic_names(broker.bootstrap)
    assert names[0] not in remaining
    assert names[1] in remaining


def test_create_validate_only_creates_nothing(broker, topic_name):
    a = admin(broker.bootstrap)
    name = topic_name("validate")
    futures = a.create_topics(
        [NewTopic(name, num_partitions=4)], validate_only=True, operation_timeout=CLIENT_TIMEOUT_S
    )
    assert futures[name].result(CLIENT_TIMEOUT_S) is None
    assert name not in topic_names(broker.bootstrap)
    # validate_only still reports errors
    bad = a.create_topics([NewTopic("bad/name", num_partitions=1)], validate_only=True)
    assert error_code_of(bad["bad/name"]) == KafkaError.TOPIC_EXCEPTION


def test_create_existing_topic_fails(broker, topic_name):
    name = topic_name("dup")
    a = create_topic(broker.bootstrap, name, partitions=2)
    futures = a.create_topics([NewTopic(name, num_partitions=6)], operation_timeout=CLIENT_TIMEOUT_S)
    assert error_code_of(futures[name]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert len(topic_partitions(broker.bootstrap, name)) == 2


@pytest.mark.parametrize("bad_name", ["bad/name", "..", "with space", "x" * 250])
def test_create_invalid_topic_name(broker, bad_name):
    a = admin(broker.bootstrap)
    futures = a.create_topics([NewTopic(bad_name, num_partitions=1)], operation_timeout=CLIENT_TIMEOUT_S)
    assert error_code_of(futures[bad_name]) == KafkaError.TOPIC_EXCEPTION
    assert bad_name not in topic_names(broker.bootstrap)


def test_create_partitions(broker, topic_name):
    name = topic_name("grow")
    a = create_topic(broker.bootstrap, name, partitions=2)
    f = a.create_partitions([NewPartitions(name, 5)], operation_timeout=CLIENT_TIMEOUT_S)
    assert f[name].result(CLIENT_TIMEOUT_S) is None
    assert sorted(topic_partitions(broker.bootstrap, name)) == [0, 1, 2, 3, 4]

    # The new partitions take writes and serve them back.
    p = producer(broker.bootstrap)
    delivered = produce_all(p, name, [(b"k", b"in-partition-4", None, T0)], partition=4)
    assert delivered[0].partition() == 4 and delivered[0].offset() == 0
    (m,) = consume(broker.bootstrap, name, 4, OFFSET_BEGINNING, 1)
    assert m.value() == b"in-partition-4"

    # Shrinking is refused.
    f = a.create_partitions([NewPartitions(name, 3)], operation_timeout=CLIENT_TIMEOUT_S)
    assert error_code_of(f[name]) == KafkaError.INVALID_PARTITIONS
    assert len(topic_partitions(broker.bootstrap, name)) == 5


def test_describe_configs_topic(broker, topic_name):
    name = topic_name("cfg")
    a = create_topic(
        broker.bootstrap, name, partitions=1, config={"retention.ms": "3600000"}
    )
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = a.describe_configs([resource])[resource].result(CLIENT_TIMEOUT_S)
    assert configs["retention.ms"].value == "3600000"
    dynamic = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert getattr(configs["retention.ms"].source, "value", configs["retention.ms"].source) == dynamic
    assert configs["cleanup.policy"].value == "delete"
    assert int(configs["max.message.bytes"].value) == 1048588
    assert int(configs["segment.bytes"].value) > 0
    assert getattr(configs["cleanup.policy"].source, "value", configs["cleanup.policy"].source) != dynamic


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)  # keep the client alive until the future resolves
    desc = a.describe_cluster().result(CLIENT_TIMEOUT_S)
    assert desc.cluster_id
    assert len(desc.nodes) == 1
    node = desc.nodes[0]
    assert node.host == "127.0.0.1"
    assert node.port == broker.port
    assert desc.controller is not None and desc.controller.id == node.id


# ---- produce and consume ----------------------------------------------------------


def keyed_items(n, prefix="v"):
    return [
        (
            f"key-{i}".encode(),
            f"{prefix}-{i}".encode(),
            [("h1", f"hv-{i}".encode()), ("trace", b"\x00\x01\xff")],
            T0 + i,
        )
        for i in range(n)
    ]


def assert_messages_match(messages, items, first_offset=0, partition=0):
    assert len(messages) == len(items)
    for i, (m, (key, value, headers, ts)) in enumerate(zip(messages, items)):
        assert m.partition() == partition
        assert m.offset() == first_offset + i, f"message {i}"
        assert m.key() == key
        assert m.value() == value
        assert m.headers() == headers
        assert m.timestamp() == (1, ts)  # TIMESTAMP_CREATE_TIME


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_acks_keys_headers_timestamps(broker, topic_name, acks):
    name = topic_name(f"acks{acks}")
    create_topic(broker.bootstrap, name, partitions=2)
    items = keyed_items(50, prefix=f"acks{acks}")
    p = producer(broker.bootstrap, acks=acks)
    delivered = produce_all(p, name, items, partition=1)
    if acks != "0":
        assert [m.offset() for m in delivered] == list(range(50))
    messages = consume(broker.bootstrap, name, 1, OFFSET_BEGINNING, 50)
    assert_messages_match(messages, items, partition=1)
    # Nothing leaked into the other partition.
    lo, hi = consumer(broker.bootstrap).get_watermark_offsets(
        TopicPartition(name, 0), timeout=CLIENT_TIMEOUT_S
    )
    assert (lo, hi) == (0, 0)


def test_consume_from_partition_and_offset(broker, topic_name):
    name = topic_name("offset")
    create_topic(broker.bootstrap, name, partitions=3)
    items = keyed_items(10)
    produce_all(producer(broker.bootstrap), name, items, partition=2)
    messages = consume(broker.bootstrap, name, 2, 4, 6)
    assert_messages_match(messages, items[4:], first_offset=4, partition=2)


def test_tail_consumer_receives_new_records(broker, topic_name):
    """A consumer positioned at the log end gets a record produced later (long poll)."""
    name = topic_name("tail")
    create_topic(broker.bootstrap, name)
    produce_all(producer(broker.bootstrap), name, [(None, b"before", None, T0)])
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 500})
    try:
        c.assign([TopicPartition(name, 0, 1)])  # 1 == the current log end
        assert c.poll(1.0) is None, "nothing should be readable at the log end yet"
        produce_all(producer(broker.bootstrap), name, [(b"k", b"live", None, T0 + 1)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        got = None
        while got is None and time.monotonic() < deadline:
            got = c.poll(0.5)
        assert got is not None, "the tailing consumer never received the new record"
        assert got.error() is None, got.error()
        assert (got.offset(), got.key(), got.value()) == (1, b"k", b"live")
    finally:
        c.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_codecs(broker, topic_name, codec):
    name = topic_name(codec)
    create_topic(broker.bootstrap, name)
    items = [
        (f"k{i}".encode(), (f"{codec}-record-{i}-" * 20).encode(), [("codec", codec.encode())], T0 + i)
        for i in range(500)
    ]
    p = producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50})
    delivered = produce_all(p, name, items)
    assert sorted(m.offset() for m in delivered) == list(range(500))
    messages = consume(broker.bootstrap, name, 0, OFFSET_BEGINNING, 500)
    assert_messages_match(messages, items)


def test_one_megabyte_record(broker, topic_name):
    name = topic_name("big")
    create_topic(broker.bootstrap, name)
    value = bytes((i * 7 + 3) % 251 for i in range(1_000_000))
    p = producer(broker.bootstrap, **{"message.max.bytes": 1_048_588})
    produce_all(p, name, [(b"big", value, None, T0), (b"small", b"after", None, T0 + 1)])
    messages = consume(broker.bootstrap, name, 0, OFFSET_BEGINNING, 2)
    assert messages[0].key() == b"big" and messages[0].value() == value
    assert messages[1].value() == b"after" and messages[1].offset() == 1


def test_record_larger_than_message_max_bytes_is_rejected(broker, topic_name):
    name = topic_name("toobig")
    create_topic(broker.bootstrap, name)
    p = producer(broker.bootstrap, **{"message.max.bytes": 3_000_000, "compression.type": "none"})
    errors = []
    p.produce(name, b"x" * 1_500_000, partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(CLIENT_TIMEOUT_S)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    lo, hi = consumer(broker.bootstrap).get_watermark_offsets(
        TopicPartition(name, 0), timeout=CLIENT_TIMEOUT_S
    )
    assert hi == 0


def test_hundred_thousand_records_in_order(broker, topic_name):
    name = topic_name("volume")
    partitions, total = 4, 100_000
    create_topic(broker.bootstrap, name, partitions=partitions)
    p = producer(broker.bootstrap, **{"linger.ms": 10, "batch.num.messages": 5000})
    errors = []

    def on_delivery(err, msg):
        if err:
            errors.append(err)

    for i in range(total):
        while True:
            try:
                p.produce(name, f"{i % partitions}:{i // partitions}".encode(),
                          partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(120) == 0
    assert not errors, errors[:5]
    per_partition = total // partitions
    for part in range(partitions):
        messages = consume(broker.bootstrap, name, part, OFFSET_BEGINNING, per_partition, timeout_s=120)
        expected = [f"{part}:{j}".encode() for j in range(per_partition)]
        assert [m.value() for m in messages] == expected
        assert [m.offset() for m in messages] == list(range(per_partition))


def test_idempotent_producer_no_duplicates(broker, topic_name):
    name = topic_name("idem")
    create_topic(broker.bootstrap, name, partitions=2)
    p = producer(
        broker.bootstrap,
        **{"enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5,
           "linger.ms": 2, "batch.num.messages": 50},
    )
    items = [(f"k{i}".encode(), f"idem-{i}".encode(), None, T0 + i) for i in range(2000)]
    delivered = produce_all(p, name, items[:1000], partition=0)
    delivered += produce_all(p, name, items[1000:], partition=1)
    assert sorted(m.offset() for m in delivered if m.partition() == 0) == list(range(1000))
    assert sorted(m.offset() for m in delivered if m.partition() == 1) == list(range(1000))
    for part in (0, 1):
        messages = consume(broker.bootstrap, name, part, OFFSET_BEGINNING, 1000)
        expected = [v for _, v, _, _ in items[part * 1000:(part + 1) * 1000]]
        assert [m.value() for m in messages] == expected
    # and nothing beyond
    lo, hi = consumer(broker.bootstrap).get_watermark_offsets(
        TopicPartition(name, 0), timeout=CLIENT_TIMEOUT_S
    )
    assert (lo, hi) == (0, 1000)


def test_list_offsets(broker, topic_name):
    name = topic_name("offsets")
    a = create_topic(broker.bootstrap, name)
    items = [(None, f"r{i}".encode(), None, T0 + i * 1000) for i in range(10)]
    produce_all(producer(broker.bootstrap, **{"linger.ms": 0}), name, items)
    c = consumer(broker.bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(name, 0), timeout=CLIENT_TIMEOUT_S) == (0, 10)
        # exact match -> that record; between records -> the next one (one partition per
        # call: librdkafka merges duplicate partitions in one request)
        (exact,) = c.offsets_for_times([TopicPartition(name, 0, T0 + 5000)], timeout=CLIENT_TIMEOUT_S)
        assert exact.offset == 5
        (between,) = c.offsets_for_times([TopicPartition(name, 0, T0 + 5500)], timeout=CLIENT_TIMEOUT_S)
        assert between.offset == 6
        (early,) = c.offsets_for_times([TopicPartition(name, 0, 0)], timeout=CLIENT_TIMEOUT_S)
        assert early.offset == 0
        (late,) = c.offsets_for_times([TopicPartition(name, 0, T0 + 10**9)], timeout=CLIENT_TIMEOUT_S)
        assert late.offset == OFFSET_END  # -1: no record at or after that time
    finally:
        c.close()

    tp = TopicPartition(name, 0)
    for spec, expected in [
        (OffsetSpec.earliest(), 0),
        (OffsetSpec.latest(), 10),
        (OffsetSpec.for_timestamp(T0 + 3000), 3),
    ]:
        result = a.list_offsets({tp: spec})[tp].result(CLIENT_TIMEOUT_S)
        assert result.offset == expected, f"{spec}: {result.offset}"
    result = a.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(CLIENT_TIMEOUT_S)
    assert (result.offset, result.timestamp) == (9, T0 + 9000)


def test_restart_keeps_topics_and_data(broker, topic_name):
    names = [topic_name("keep"), topic_name("keep")]
    create_topic(broker.bootstrap, names[0], partitions=3)
    create_topic(broker.bootstrap, names[1], partitions=1)
    p = producer(broker.bootstrap, acks="all")
    expected = {}
    for name in names:
        for part in sorted(topic_partitions(broker.bootstrap, name)):
            items = keyed_items(25, prefix=f"{name}-{part}")
            produce_all(p, name, items, partition=part)
            expected[(name, part)] = items

    broker.restart()

    assert set(names) <= topic_names(broker.bootstrap)
    assert len(topic_partitions(broker.bootstrap, names[0])) == 3
    assert len(topic_partitions(broker.bootstrap, names[1])) == 1
    for (name, part), items in expected.items():
        messages = consume(broker.bootstrap, name, part, OFFSET_BEGINNING, len(items))
        assert_messages_match(messages, items, partition=part)
    # appends continue after the recovered end
    delivered = produce_all(producer(broker.bootstrap), names[1], [(None, b"next", None, T0)])
    assert delivered[0].offset() == 25


def test_auto_create_topic_on_produce(broker_factory, topic_name):
    b = broker_factory(overrides={"num.partitions": "3", "auto.create.topics.enable": "true"})
    name = topic_name("auto")
    produce_all(producer(b.bootstrap), name, [(None, b"auto", None, T0)], partition=0)
    assert len(topic_partitions(b.bootstrap, name)) == 3
    (m,) = consume(b.bootstrap, name, 0, OFFSET_BEGINNING, 1)
    assert m.value() == b"auto"


def test_consumer_does_not_need_group_apis_for_assign(broker, topic_name):
    """Sanity check of the harness: an assign()-only consumer reads an empty partition's
    end offset without errors (the broker answers empty record sets cleanly)."""
    name = topic_name("empty")
    create_topic(broker.bootstrap, name)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "e2e-assign-only",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(name, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        eof = False
        while not eof and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            assert m.error() is not None and m.error().code() == KafkaError._PARTITION_EOF, (
                f"unexpected message or error: {m.error() or m.value()}"
            )
            eof = True
        assert eof, "no end-of-partition event for an empty partition"
    finally:
        c.close()
