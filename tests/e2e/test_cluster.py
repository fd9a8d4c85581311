"""A three-broker sluice cluster on a real ZooKeeper, driven by unmodified clients while
brokers are SIGKILLed: confluent-kafka's idempotent acks=all producer across a
partition leader's death, kafka-python's group resuming from committed offsets after
its coordinator's death, and kcat's metadata listing from each broker.

The module starts ZooKeeper and brokers 1-3 once (`sluice_cluster_module` in
conftest.py); each test gets them all running again (`sluice_cluster`). Every wait
polls Metadata, client state or delivery reports against a deadline.

What is asserted is what Kafka guarantees with these settings, no more: with acks=all,
idempotence and unclean leader election off, every message is acknowledged exactly
once, the log holds each acknowledged message once, in the order it was produced per
partition, and a consumer group's committed offsets outlive its coordinator.
"""

import collections
import json
import shutil
import subprocess
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import CLUSTER_CHANGE_TIMEOUT_S, fully_replicated

PARTITIONS = 3
REPLICATION_FACTOR = 3
# A failover is a session expiry (4 s), an election and new metadata on every broker.
FAILOVER_TIMEOUT_S = 40
CLIENT_TIMEOUT_S = 60
KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def create_replicated_topic(cluster, topic):
    """Creates `topic` (3 partitions, factor 3) with confluent's AdminClient and waits
    until every broker's Metadata shows all replicas in sync; returns broker 1's view."""
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    futures = a.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=REPLICATION_FACTOR)],
        operation_timeout=CLIENT_TIMEOUT_S,
    )
    assert futures[topic].result(CLIENT_TIMEOUT_S) is None
    answers = cluster.wait_for_all(
        f"{topic} fully replicated",
        lambda m: fully_replicated(m, topic, PARTITIONS, REPLICATION_FACTOR),
    )
    return a, answers[cluster.ids[0]]


def wait_failed_over(cluster, topics, dead):
    """Waits until every running broker names a live leader outside `dead` for every
    partition of `topics`, and has taken `dead` out of their ISRs."""

    def done(m):
        for topic in topics:
            t = m["topics"].get(topic)
            if t is None or not t["partitions"]:
                return False
            for p in t["partitions"].values():
                if p["leader"] == dead or p["leader"] not in cluster.live_ids():
                    return False
                if dead in p["isr"]:
                    return False
        return dead not in m["brokers"]

    return cluster.wait_for_all(f"{topics} led without broker {dead}", done, FAILOVER_TIMEOUT_S)


# ---- confluent-kafka: idempotent acks=all producer across a leader's death ----------


def test_confluent_idempotent_producer_survives_leader_kill(sluice_cluster, topic_name):
    cluster = sluice_cluster
    topic = topic_name("failover")
    a, _ = create_replicated_topic(cluster, topic)

    # The client's own view: three brokers, every partition on all three, in sync, led
    # by its preferred replica, the three leaders on three different brokers.
    md = a.list_topics(topic=topic, timeout=CLIENT_TIMEOUT_S)
    assert sorted(md.brokers) == cluster.ids
    for broker_id, b in md.brokers.items():
        assert (b.host, b.port) == ("127.0.0.1", cluster.brokers[broker_id].port)
    t = md.topics[topic]
    assert t.error is None and sorted(t.partitions) == list(range(PARTITIONS))
    for p in t.partitions.values():
        assert p.error is None
        assert sorted(p.replicas) == cluster.ids
        assert sorted(p.isrs) == cluster.ids
        assert p.leader == p.replicas[0]
    leaders = {p.id: p.leader for p in t.partitions.values()}
    assert sorted(leaders.values()) == cluster.ids, f"leaders {leaders}"

    total = 3000
    delivered, errors = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append((msg.value(), err))
        else:
            delivered.append((msg.partition(), msg.offset(), msg.value()))

    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "message.timeout.ms": CLIENT_TIMEOUT_S * 1000,
    })
    victim = leaders[0]
    for i in range(total):
        if i == total // 2:
            # Mid-way, once partition 0's leader has acknowledged some of it and while
            # more is in flight: SIGKILL that leader.
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            while not any(p == 0 for p, _, _ in delivered):
                assert time.monotonic() < deadline, "partition 0 acknowledged nothing"
                producer.poll(0.05)
            cluster.kill(victim)
        producer.produce(topic, value=str(i).encode(), partition=i % PARTITIONS,
                         on_delivery=on_delivery)
        # A steady rate rather than one burst, so batches are in flight at the kill.
        producer.poll(0.002 if i % 10 == 9 else 0)
    remaining = producer.flush(CLIENT_TIMEOUT_S + 10)
    assert remaining == 0, f"{remaining} messages neither delivered nor failed"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:5]}"

    # Every message acknowledged exactly once, and (idempotence) at the offset that
    # keeps the order it was produced in, with no gap and no duplicate in the log.
    counts = collections.Counter(v for _, _, v in delivered)
    assert len(counts) == total and set(counts.values()) == {1}
    by_partition = collections.defaultdict(list)
    for p, offset, value in delivered:
        by_partition[p].append((int(value), offset))
    for p in range(PARTITIONS):
        ordered = sorted(by_partition[p])  # production order
        assert [v for v, _ in ordered] == list(range(p, total, PARTITIONS))
        assert [o for _, o in ordered] == list(range(len(ordered))), (
            f"partition {p}: offsets in production order {[o for _, o in ordered][:50]}..."
        )

    # The cluster agrees partition 0 moved to a surviving replica.
    for answer in wait_failed_over(cluster, [topic], victim).values():
        assert answer["topics"][topic]["partitions"][0]["leader"] != victim

    # A group consumer reads everything back from the new leaders, exactly once each,
    # in offset order per partition; the high watermarks say there is nothing more.
    expected = {(p, o): v for p, o, v in delivered}
    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": f"{topic}-readers",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "fetch.wait.max.ms": 100,
    })
    try:
        consumer.subscribe([topic])
        seen = collections.defaultdict(list)
        got = 0
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while got < total:
            assert time.monotonic() < deadline, f"consumed {got} of {total} messages"
            for m in consumer.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    raise KafkaException(m.error())
                seen[m.partition()].append((m.offset(), m.value()))
                got += 1
        assert got == total
        for p in range(PARTITIONS):
            assert [o for o, _ in seen[p]] == list(range(len(by_partition[p])))
            assert all(expected[(p, o)] == v for o, v in seen[p])
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                       timeout=CLIENT_TIMEOUT_S)
            assert (low, high) == (0, len(by_partition[p]))
    finally:
        consumer.close()


# ---- kafka-python: committed offsets outlive the group coordinator -------------------


# kafka-python 3.0.12 loses a rebalance it leads when the rebalance, started because
# its metadata changed, completes after a poll's timeout ran out: the next poll sees no
# need to rejoin, never applies the assignment nor restarts heartbeats, and the member
# sits with no partitions until the coordinator expires it. Its first rebalance often
# is such a one (the topic's metadata arrives after the first JoinGroup). Hence long
# polls (a poll returns as soon as records arrive) and the topic's metadata fetched
# before subscribing.
KP_POLL_TIMEOUT_MS = 10_000


def kp_consumer(cluster, group, topic, **extra):
    """A kafka-python group member subscribed to `topic`."""
    from kafka import KafkaConsumer

    conf = dict(
        bootstrap_servers=cluster.bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=100,
        request_timeout_ms=30_000,
        retry_backoff_ms=100,
    )
    conf.update(extra)
    consumer = KafkaConsumer(**conf)
    assert consumer.partitions_for_topic(topic) == set(range(PARTITIONS))
    consumer.subscribe([topic])
    return consumer


def produce_numbered(cluster, topic, start, count):
    """Produces values "<p>-<i>" for i in [start, start + count) to every partition
    with acks=all; returns {partition: [(offset, value), ...]} from delivery reports."""
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": CLIENT_TIMEOUT_S * 1000})
    out, errors = collections.defaultdict(list), []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            out[msg.partition()].append((msg.offset(), msg.value()))

    for p in range(PARTITIONS):
        for i in range(start, start + count):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p,
                             on_delivery=on_delivery)
    assert producer.flush(CLIENT_TIMEOUT_S + 10) == 0
    assert not errors, errors[:5]
    return {p: sorted(v) for p, v in out.items()}


def group_coordinator(admin_client, group):
    """The id of the broker coordinating `group`, as DescribeGroups names it."""
    futures = admin_client.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)
    return futures[group].result(CLIENT_TIMEOUT_S).coordinator.id


def test_kafka_python_group_resumes_after_coordinator_kill(sluice_cluster, topic_name):
    from kafka import TopicPartition as KTP

    cluster = sluice_cluster
    topic = topic_name("coord")
    group = f"{topic}-group"
    create_replicated_topic(cluster, topic)
    per_partition = 30
    log = produce_numbered(cluster, topic, 0, per_partition)
    assert all(len(log[p]) == per_partition for p in range(PARTITIONS))

    # A first member reads part of every partition (small polls stop it mid-way) and
    # commits what it has consumed.
    tps = [KTP(topic, p) for p in range(PARTITIONS)]
    first = kp_consumer(cluster, group, topic, max_poll_records=7)
    try:
        consumed = collections.defaultdict(list)
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while not (all(len(consumed[p]) >= 5 for p in range(PARTITIONS))
                   and sum(len(v) for v in consumed.values()) >= 45):
            assert time.monotonic() < deadline, f"consumed {dict(consumed)}"
            for tp, records in first.poll(timeout_ms=KP_POLL_TIMEOUT_MS).items():
                consumed[tp.partition].extend((r.offset, r.value) for r in records)
        for p in range(PARTITIONS):
            assert consumed[p] == log[p][: len(consumed[p])]
        first.commit()
        committed = {p: len(consumed[p]) for p in range(PARTITIONS)}
        assert {tp.partition: first.committed(tp) for tp in tps} == committed
        assert sum(committed.values()) < PARTITIONS * per_partition
    finally:
        first.close()

    # SIGKILL the broker that coordinates the group, as the cluster names it.
    a = AdminClient({"bootstrap.servers": cluster.bootstrap})
    coordinator = group_coordinator(a, group)
    assert coordinator in cluster.ids
    cluster.kill(coordinator)

    # More records arrive while the coordinator is dead (the topic fails over too).
    more = produce_numbered(cluster, topic, per_partition, 10)
    for p in range(PARTITIONS):
        assert [o for o, _ in more[p]] == list(range(per_partition, per_partition + 10))
        log[p] += more[p]

    # A new member finds the group's new coordinator, which has the committed offsets,
    # and resumes exactly there: nothing from before them again, nothing skipped.
    second = kp_consumer(cluster, group, topic)
    try:
        timeout_ms = FAILOVER_TIMEOUT_S * 1000
        resumed_at = {tp.partition: second.committed(tp, timeout_ms=timeout_ms) for tp in tps}
        assert resumed_at == committed
        resumed = collections.defaultdict(list)
        wanted = {p: log[p][committed[p]:] for p in range(PARTITIONS)}
        deadline = time.monotonic() + FAILOVER_TIMEOUT_S
        while any(len(resumed[p]) < len(wanted[p]) for p in range(PARTITIONS)):
            assert time.monotonic() < deadline, (
                f"resumed {[len(resumed[p]) for p in range(PARTITIONS)]} records, "
                f"wanted {[len(wanted[p]) for p in range(PARTITIONS)]}"
            )
            for tp, records in second.poll(timeout_ms=KP_POLL_TIMEOUT_MS).items():
                resumed[tp.partition].extend((r.offset, r.value) for r in records)
        for p in range(PARTITIONS):
            assert resumed[p] == wanted[p], f"partition {p}"
        # The group's offsets moved to a broker other than the dead one.
        assert group_coordinator(a, group) not in (coordinator, None)
    finally:
        second.close()


# ---- kcat: metadata from any one broker ------------------------------------------------


def kcat_metadata(bootstrap, *args):
    assert KCAT is not None, "kcat not installed (scripts/install-test-deps.sh installs it)"
    result = subprocess.run([KCAT, "-b", bootstrap, "-L", *args], capture_output=True,
                            timeout=CLIENT_TIMEOUT_S)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def test_kcat_lists_cluster_from_each_broker(sluice_cluster, topic_name):
    cluster = sluice_cluster
    topic = topic_name("kcat-cluster")
    _, view = create_replicated_topic(cluster, topic)
    partitions = view["topics"][topic]["partitions"]
    addresses = {i: f"127.0.0.1:{cluster.brokers[i].port}" for i in cluster.ids}

    for broker_id in cluster.ids:
        bootstrap = addresses[broker_id]
        md = json.loads(kcat_metadata(bootstrap, "-J", "-t", topic))
        assert {b["id"]: b["name"] for b in md["brokers"]} == addresses
        (t,) = md["topics"]
        assert t["topic"] == topic and sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
        for p in t["partitions"]:
            state = partitions[p["partition"]]
            assert p["leader"] == state["leader"]
            assert [r["id"] for r in p["replicas"]] == state["replicas"]
            assert sorted(r["id"] for r in p["isrs"]) == cluster.ids

        text = kcat_metadata(bootstrap)
        assert f"{len(cluster.ids)} brokers:" in text
        for i, address in addresses.items():
            assert f"broker {i} at {address}" in text
        # The topic's heading, then one line per partition.
        lines = [ln.strip() for ln in text.splitlines()]
        heading = lines.index(f'topic "{topic}" with 3 partitions:')
        for p, line in enumerate(lines[heading + 1: heading + 1 + PARTITIONS]):
            state = partitions[p]
            replicas = ",".join(map(str, state["replicas"]))
            prefix = f"partition {p}, leader {state['leader']}, replicas: {replicas}, isrs: "
            assert line.startswith(prefix), f"{line!r} is not {prefix!r}..."
            assert sorted(int(x) for x in line[len(prefix):].split(",")) == cluster.ids
