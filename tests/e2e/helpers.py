"""Client-side helpers shared by the e2e tests (confluent-kafka based)."""

import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLIENT_TIMEOUT_S = 30


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None):
    a = admin(bootstrap)
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=CLIENT_TIMEOUT_S,
    )
    futures[name].result(CLIENT_TIMEOUT_S)
    return a


def producer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5}
    conf.update(extra)
    return Producer(conf)


def produce_all(p, topic, items, partition=0):
    """Produces (key, value, headers, timestamp_ms) tuples and waits for every delivery
    report; returns the delivered messages in delivery order. Fails on any error."""
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append(err or msg)

    for key, value, headers, ts in items:
        kwargs = {"partition": partition, "on_delivery": on_delivery}
        if key is not None:
            kwargs["key"] = key
        if headers:
            kwargs["headers"] = headers
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                p.produce(topic, value, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages not delivered within {CLIENT_TIMEOUT_S}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(delivered) == len(items)
    return delivered


def consumer(bootstrap, **extra):
    # librdkafka requires a group.id even for assign(); no group API is used because
    # offsets are always explicit and nothing is committed.
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "e2e-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.wait.max.ms": 100,
    }
    conf.update(extra)
    return Consumer(conf)


def consume(bootstrap, topic, partition, offset, count, timeout_s=CLIENT_TIMEOUT_S, **extra):
    """Assigns (topic, partition) at `offset` and returns exactly `count` messages,
    failing on errors or when fewer arrive within the timeout."""
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        messages = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            batch = c.consume(num_messages=min(10000, count - len(messages)), timeout=0.5)
            for m in batch:
                if m.error():
                    raise KafkaException(m.error())
                messages.append(m)
        assert len(messages) == count, (
            f"{topic}-{partition}@{offset}: got {len(messages)} messages, expected {count}"
        )
        return messages
    finally:
        c.close()


def topic_partitions(bootstrap, topic):
    md = admin(bootstrap).list_topics(topic=topic, timeout=CLIENT_TIMEOUT_S)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return None
    return t.partitions


def topic_names(bootstrap):
    md = admin(bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    return {name for name in md.topics if not name.startswith("__")}
