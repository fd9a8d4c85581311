"""Consumer groups (classic protocol) with real clients: partitions shared within a
group, every record seen once per group, rebalances on leave and on session expiry,
commits that survive restarts, and the admin views of groups and their offsets."""

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka import ConsumerGroupState

from helpers import CLIENT_TIMEOUT_S, admin, create_topic, produce_all, producer

# A new group completes its first rebalance after this delay (Kafka's default is 3 s).
GROUP_OVERRIDES = {"group.initial.rebalance.delay.ms": "100"}
JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(overrides=GROUP_OVERRIDES)


def fill(bootstrap, topic, partitions, per_partition):
    """Produces `per_partition` records to every partition; returns their values."""
    p = producer(bootstrap)
    values = set()
    for part in range(partitions):
        items = [(None, f"{part}-{i}".encode(), None, None) for i in range(per_partition)]
        produce_all(p, topic, items, partition=part)
        values.update(v for _, v, _, _ in items)
    return values


def group_consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
    }
    conf.update(extra)
    return Consumer(conf)


def poll_until(consumers, done, timeout_s=CLIENT_TIMEOUT_S, received=None):
    """Polls every consumer in turn until `done(received)` holds; `received` maps a
    consumer's index to the messages it got (pass the dict `wait_assigned` filled to
    keep what arrived while waiting for the assignment)."""
    if received is None:
        received = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(received):
            return received
        for i, c in enumerate(consumers):
            m = c.poll(0.1)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            received[i].append(m)
    raise AssertionError(
        f"timed out; received {[len(v) for v in received.values()]} messages per consumer"
    )


def wait_assigned(consumers, total, timeout_s=CLIENT_TIMEOUT_S, received=None):
    """Polls until the consumers' assignments together cover `total` partitions, each
    consumer has some and none is assigned twice; returns the assignments. Messages
    polled meanwhile go to `received` (index -> list) when given."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.1)
            if m is not None and received is not None:
                if m.error():
                    raise KafkaException(m.error())
                received[i].append(m)
        parts = [{(tp.topic, tp.partition) for tp in c.assignment()} for c in consumers]
        if sum(len(p) for p in parts) == total and len(set().union(*parts)) == total:
            if all(parts):
                return parts
    raise AssertionError(f"assignments never settled: {[c.assignment() for c in consumers]}")


def test_two_consumers_split_partitions_and_another_group_sees_all(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    topic = topic_name("split")
    create_topic(bootstrap, topic, partitions=4)
    values = fill(bootstrap, topic, 4, 25)

    a = group_consumer(bootstrap, "g-split")
    b = group_consumer(bootstrap, "g-split")
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        got = {0: [], 1: []}
        parts = wait_assigned([a, b], 4, received=got)
        assert parts[0].isdisjoint(parts[1])
        poll_until(
            [a, b], lambda r: sum(len(v) for v in r.values()) >= len(values), received=got
        )
        seen = [m.value() for m in got[0] + got[1]]
        assert sorted(seen) == sorted(values), "each record exactly once across the group"
        for i, c in enumerate((a, b)):
            mine = {(topic, p) for p in {m.partition() for m in got[i]}}
            assert mine <= parts[i], "a member only reads its own partitions"
    finally:
        a.close()
        b.close()

    other = group_consumer(bootstrap, "g-other")
    try:
        other.subscribe([topic])
        got = poll_until([other], lambda r: len(r[0]) >= len(values))
        assert sorted(m.value() for m in got[0]) == sorted(values)
    finally:
        other.close()


def test_leaving_and_joining_members_trigger_rebalances(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    topic = topic_name("rebal")
    create_topic(bootstrap, topic, partitions=4)
    a = group_consumer(bootstrap, "g-rebal")
    b = group_consumer(bootstrap, "g-rebal")
    c = None
    try:
        for x in (a, b):
            x.subscribe([topic])
        wait_assigned([a, b], 4)
        # b leaves (LeaveGroup on close): a takes every partition.
        b.close()
        b = None
        wait_assigned([a], 4)
        # c joins: the partitions are split again.
        c = group_consumer(bootstrap, "g-rebal")
        c.subscribe([topic])
        wait_assigned([a, c], 4)
    finally:
        for x in (a, b, c):
            if x is not None:
                x.close()


SILENT_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
c.subscribe([sys.argv[3]])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    c.poll(0.1)
    if c.assignment():
        print("assigned", flush=True)
        break
time.sleep(600)
"""


def test_member_that_stops_heartbeating_expires(group_broker, topic_name):
    """A member killed with SIGKILL (no LeaveGroup, no more heartbeats) is removed once
    its session timeout passes; the remaining member then gets every partition."""
    bootstrap = group_broker.bootstrap
    topic = topic_name("silent")
    create_topic(bootstrap, topic, partitions=4)
    a = group_consumer(bootstrap, "g-silent")
    silent = subprocess.Popen(
        [sys.executable, "-c", SILENT_MEMBER, bootstrap, "g-silent", topic],
        stdout=subprocess.PIPE,
    )
    try:
        a.subscribe([topic])
        line = []
        reader = threading.Thread(target=lambda: line.append(silent.stdout.readline()))
        reader.start()
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while reader.is_alive() and time.monotonic() < deadline:
            a.poll(0.1)
        assert line == [b"assigned\n"], "the second member never got partitions"
        wait_assigned([a], 2)
        silent.kill()
        silent.wait()
        start = time.monotonic()
        wait_assigned([a], 4, timeout_s=30)
        waited = time.monotonic() - start
        assert waited >= 2, f"rebalanced {waited:.1f}s after the kill, before the session expired"
    finally:
        if silent.poll() is None:
            silent.kill()
            silent.wait()
        a.close()


def test_restarted_consumer_resumes_after_commit(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    topic = topic_name("resume")
    create_topic(bootstrap, topic, partitions=2)
    fill(bootstrap, topic, 2, 10)

    c = group_consumer(bootstrap, "g-resume")
    c.subscribe([topic])
    got = poll_until([c], lambda r: len(r[0]) >= 12)[0]
    # Commit exactly 6 records of partition 0 and 6 of partition 1, with metadata.
    c.commit(
        offsets=[TopicPartition(topic, 0, 6, metadata="m0"), TopicPartition(topic, 1, 6)],
        asynchronous=False,
    )
    assert len(got) >= 12
    c.close()

    group_broker.restart()
    bootstrap = group_broker.bootstrap
    c = group_consumer(bootstrap, "g-resume")
    try:
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=15)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 6), (1, 6)]
        assert committed[0].metadata == "m0"
        c.subscribe([topic])
        got = poll_until([c], lambda r: len(r[0]) >= 8)[0]
        values = sorted(m.value() for m in got)
        assert values == sorted(f"{p}-{i}".encode() for p in range(2) for i in range(6, 10))
    finally:
        c.close()


def test_auto_commit(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    topic = topic_name("auto")
    create_topic(bootstrap, topic, partitions=1)
    fill(bootstrap, topic, 1, 20)
    c = group_consumer(
        bootstrap, "g-auto", **{"enable.auto.commit": True, "auto.commit.interval.ms": 200}
    )
    try:
        c.subscribe([topic])
        poll_until([c], lambda r: len(r[0]) >= 20)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        offset = None
        while time.monotonic() < deadline:
            c.poll(0.1)
            offset = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
            if offset == 20:
                break
        assert offset == 20
    finally:
        c.close()


def test_admin_lists_and_describes_groups(group_broker, topic_name):
    bootstrap = group_broker.bootstrap
    topic = topic_name("adm")
    create_topic(bootstrap, topic, partitions=4)
    fill(bootstrap, topic, 4, 5)
    a = group_consumer(bootstrap, "g-admin", **{"client.id": "client-a"})
    b = group_consumer(bootstrap, "g-admin", **{"client.id": "client-b"})
    ac = admin(bootstrap)
    try:
        a.subscribe([topic])
        b.subscribe([topic])
        got = {0: [], 1: []}
        wait_assigned([a, b], 4, received=got)
        poll_until([a, b], lambda r: sum(len(v) for v in r.values()) >= 20, received=got)
        a.commit(asynchronous=False)
        b.commit(asynchronous=False)

        listed = ac.list_consumer_groups(request_timeout=CLIENT_TIMEOUT_S).result()
        ids = {g.group_id: g for g in listed.valid}
        assert "g-admin" in ids
        assert ids["g-admin"].state == ConsumerGroupState.STABLE
        stable = ac.list_consumer_groups(
            request_timeout=CLIENT_TIMEOUT_S, states={ConsumerGroupState.EMPTY}
        ).result()
        assert "g-admin" not in {g.group_id for g in stable.valid}

        desc = ac.describe_consumer_groups(["g-admin"], request_timeout=CLIENT_TIMEOUT_S)[
            "g-admin"
        ].result()
        assert desc.state == ConsumerGroupState.STABLE
        assert desc.partition_assignor == "range"
        assert sorted(m.client_id for m in desc.members) == ["client-a", "client-b"]
        assigned = sorted(
            (tp.topic, tp.partition) for m in desc.members for tp in m.assignment.topic_partitions
        )
        assert assigned == [(topic, p) for p in range(4)]

        offsets = ac.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("g-admin")], request_timeout=CLIENT_TIMEOUT_S
        )["g-admin"].result()
        assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [
            (p, 5) for p in range(4)
        ]
    finally:
        a.close()
        b.close()

    # Once empty the group can be deleted; its offsets are gone, also after a restart.
    listed = ac.list_consumer_groups(
        request_timeout=CLIENT_TIMEOUT_S, states={ConsumerGroupState.EMPTY}
    ).result()
    assert "g-admin" in {g.group_id for g in listed.valid}
    ac.delete_consumer_groups(["g-admin"], request_timeout=CLIENT_TIMEOUT_S)["g-admin"].result()
    group_broker.restart()
    ac = admin(group_broker.bootstrap)
    offsets = ac.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("g-admin", [TopicPartition(topic, 0)])],
        request_timeout=CLIENT_TIMEOUT_S,
    )["g-admin"].result()
    assert [tp.offset for tp in offsets.topic_partitions] == [-1001]


def test_kafka_python_group(group_broker, topic_name):
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.structs import OffsetAndMetadata

    bootstrap = group_broker.bootstrap
    topic = topic_name("kp")
    create_topic(bootstrap, topic, partitions=4)
    values = fill(bootstrap, topic, 4, 10)
    consumers = [
        KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id="g-kp",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        for _ in range(2)
    ]
    try:
        for c in consumers:
            # kafka-python 3.0 can lose a rebalance it leads when its own metadata for
            # the topic arrives during the first join (the member then sits without
            # partitions until the coordinator drops it): learn the topic's partitions
            # first, and poll long enough for a join round to finish inside one poll
            # (a poll returns as soon as records arrive). Both members
            # must end up sharing the partitions.
            assert c.partitions_for_topic(topic)
            c.subscribe([topic])
        seen = []

        def shared():
            assignments = [c.assignment() for c in consumers]
            return all(assignments) and not (assignments[0] & assignments[1])

        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        # Nothing is committed yet, so partitions that move in the rebalance are read
        # again from the start by their new owner: at least once, not exactly once.
        while (set(seen) != set(values) or not shared()) and time.monotonic() < deadline:
            for c in consumers:
                for records in c.poll(timeout_ms=500).values():
                    seen.extend(r.value for r in records)
        assert set(seen) == set(values)
        assert shared(), [c.assignment() for c in consumers]
        for c in consumers:
            c.commit()
        c0 = consumers[0]
        tp = next(iter(c0.assignment()))
        c0.commit({tp: OffsetAndMetadata(3, "kp-meta", -1)})
        assert c0.committed(tp) == 3
        assert c0.committed(KTP(topic, tp.partition), metadata=True).metadata == "kp-meta"
    finally:
        for c in consumers:
            c.close()


def test_kafkajs_group(group_broker, topic_name):
    assert NODE is not None, "node not installed"
    topic = topic_name("kjsg")
    create_topic(group_broker.bootstrap, topic, partitions=4)
    values = fill(group_broker.bootstrap, topic, 4, 10)
    env = dict(os.environ, SLUICE_BOOTSTRAP=group_broker.bootstrap, SLUICE_TOPIC=topic,
               SLUICE_EXPECTED=str(len(values)))
    result = subprocess.run(
        [NODE, str(JS_DIR / "group_consume.js")], env=env, capture_output=True, timeout=120
    )
    out = result.stdout.decode(errors="replace")
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"node exited {result.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "kafkajs group: all checks passed" in out
