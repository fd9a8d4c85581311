"""Kafka's quick-start session replayed with `sluice`'s Kafka-style tools
(`topics`, `console-producer`, `console-consumer`, `consumer-groups`) against the real
broker, plus their errors for an unreachable broker, a missing topic and bad flags."""

import re
import signal
import subprocess
import threading
import time

from conftest import SLUICE_BIN

TOOL_TIMEOUT_S = 60


def sluice(*args, stdin=None, check=True):
    """Runs `sluice ARGS...` to completion; returns the CompletedProcess."""
    proc = subprocess.run(
        [str(SLUICE_BIN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )
    if check:
        assert proc.returncode == 0, (
            f"sluice {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


class BackgroundConsumer:
    """A `sluice console-consumer` child whose stdout lines are collected as they come."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [str(SLUICE_BIN), "console-consumer", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(line.rstrip("\n"))

    def received(self):
        with self.lock:
            return list(self.lines)

    def interrupt(self):
        """Ctrl-C, as a user stops the console consumer; returns (exit code, stderr)."""
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(TOOL_TIMEOUT_S)
        self.reader.join(TOOL_TIMEOUT_S)
        return rc, self.proc.stderr.read()


def wait_until(predicate, what, timeout_s=TOOL_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def processed(stderr):
    m = re.search(r"Processed a total of (\d+) messages", stderr)
    assert m, f"no 'Processed a total' line in stderr:\n{stderr}"
    return int(m.group(1))


def describe_rows(stdout):
    """Rows of `consumer-groups --describe` as dicts keyed by the header names."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    header_index = next(i for i, l in enumerate(lines) if l.startswith("GROUP "))
    header = lines[header_index].split()
    return [dict(zip(header, l.split())) for l in lines[header_index + 1 :]]


def test_quickstart_session(broker):
    bs = broker.bootstrap
    topic = "quickstart-events"

    # Step 3: create a topic, describe it, list it.
    out = sluice("topics", "--create", "--topic", topic, "--partitions", "2",
                 "--replication-factor", "1", "--bootstrap-server", bs).stdout
    assert out.strip() == f"Created topic {topic}."
    out = sluice("topics", "--describe", "--topic", topic, "--bootstrap-server", bs).stdout
    lines = out.splitlines()
    assert re.fullmatch(
        rf"Topic: {topic}\tTopicId: [A-Za-z0-9_-]{{22}}\tPartitionCount: 2\t"
        r"ReplicationFactor: 1\tConfigs: .*",
        lines[0],
    ), out
    for p in (0, 1):
        assert f"\tTopic: {topic}\tPartition: {p}\tLeader: 0\tReplicas: 0\tIsr: 0" in lines, out
    assert topic in sluice("topics", "--list", "--bootstrap-server", bs).stdout.split()

    # Step 4: write events (no key: round-robin over the partitions).
    events = [f"event {i}" for i in range(10)]
    sluice("console-producer", "--topic", topic, "--bootstrap-server", bs,
           "--producer-property", "acks=all", stdin="\n".join(events) + "\n")
    # Keyed lines through the deprecated --broker-list flag.
    keyed = {f"user{i}": f"signup {i}" for i in range(4)}
    sluice("console-producer", "--topic", topic, "--broker-list", bs,
           "--property", "parse.key=true", "--property", "key.separator=:",
           stdin="".join(f"{k}:{v}\n" for k, v in keyed.items()))

    # Step 5: read them from the beginning.
    total = len(events) + len(keyed)
    res = sluice("console-consumer", "--topic", topic, "--from-beginning",
                 "--bootstrap-server", bs, "--max-messages", str(total),
                 "--property", "print.key=true")
    got = [tuple(l.split("\t", 1)) for l in res.stdout.splitlines()]
    assert sorted(got) == sorted([("null", e) for e in events] + list(keyed.items()))
    assert processed(res.stderr) == total
    # Per partition, unkeyed events keep their order.
    in_order = [v for k, v in got if k == "null"]
    assert [e for e in in_order if int(e.split()[1]) % 2 == 0] == events[0::2]

    # From partition 0, offset 4: round-robin put events 0,2,4,6,8 at offsets 0-4.
    res = sluice("console-consumer", "--topic", topic, "--partition", "0", "--offset", "4",
                 "--bootstrap-server", bs, "--max-messages", "1",
                 "--property", "print.offset=true", "--property", "print.partition=true")
    assert res.stdout.splitlines() == ["Partition:0\tOffset:4\tevent 8"]
    assert processed(res.stderr) == 1
    # --offset earliest and --timeout-ms: every record of partition 0, then exit.
    res = sluice("console-consumer", "--topic", topic, "--partition", "0", "--offset",
                 "earliest", "--bootstrap-server", bs, "--timeout-ms", "1500")
    assert res.stdout.splitlines()[:5] == events[0::2]
    assert processed(res.stderr) == len(res.stdout.splitlines())

    # Two consumers in group g1 share the partitions of a new topic.
    group_topic = "group-events"
    sluice("topics", "--create", "--topic", group_topic, "--partitions", "2",
           "--bootstrap-server", bs)
    members = [
        BackgroundConsumer("--topic", group_topic, "--bootstrap-server", bs,
                           "--group", "g1", "--from-beginning"),
        BackgroundConsumer("--topic", group_topic, "--bootstrap-server", bs,
                           "--consumer-property", "group.id=g1", "--from-beginning"),
    ]
    try:
        def two_members_own_a_partition_each():
            out = sluice("consumer-groups", "--describe", "--group", "g1",
                         "--bootstrap-server", bs, check=False).stdout
            if "GROUP " not in out:
                return None
            rows = describe_rows(out)
            owners = {r["CONSUMER-ID"] for r in rows if r["TOPIC"] == group_topic}
            return len(rows) == 2 and "-" not in owners and len(owners) == 2 and rows

        rows = wait_until(two_members_own_a_partition_each, "g1 to assign one partition each")
        assert sorted(int(r["PARTITION"]) for r in rows) == [0, 1]
        assert all(r["CURRENT-OFFSET"] == "-" and r["LAG"] == "-" for r in rows), rows
        assert "g1" in sluice("consumer-groups", "--list", "--bootstrap-server", bs).stdout.split()

        work = [f"job {i}" for i in range(20)]
        sluice("console-producer", "--topic", group_topic, "--bootstrap-server", bs,
               stdin="\n".join(work) + "\n")
        wait_until(lambda: len(members[0].received()) + len(members[1].received()) >= len(work),
                   "the group to consume every job")
    finally:
        results = [m.interrupt() for m in members]
    for rc, stderr in results:
        assert rc == 0, stderr
    a, b = members[0].received(), members[1].received()
    assert a and b, f"each member gets one partition: {a} / {b}"
    assert sorted(a + b) == sorted(work), "each job exactly once"
    assert processed(results[0][1]) + processed(results[1][1]) == len(work)

    # A consumer of another group reads everything again.
    res = sluice("console-consumer", "--topic", group_topic, "--bootstrap-server", bs,
                 "--group", "g2", "--from-beginning", "--max-messages", str(len(work)))
    assert sorted(res.stdout.splitlines()) == sorted(work)

    # The group's offsets: everything consumed, nobody left.
    out = sluice("consumer-groups", "--describe", "--group", "g1", "--bootstrap-server", bs).stdout
    assert "Consumer group 'g1' has no active members." in out
    header = next(l for l in out.splitlines() if l.startswith("GROUP "))
    assert header.split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET",
                              "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"]
    rows = describe_rows(out)
    assert len(rows) == 2
    assert sum(int(r["LOG-END-OFFSET"]) for r in rows) == len(work)
    for r in rows:
        assert r["GROUP"] == "g1" and r["TOPIC"] == group_topic
        assert r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"] and r["LAG"] == "0", rows
        assert r["CONSUMER-ID"] == "-"

    # Reset g1 to the beginning; its lag becomes the whole topic.
    out = sluice("consumer-groups", "--reset-offsets", "--group", "g1", "--topic", group_topic,
                 "--to-earliest", "--execute", "--bootstrap-server", bs).stdout
    assert re.search(r"g1\s+group-events\s+0\s+0", out), out
    rows = describe_rows(sluice("consumer-groups", "--describe", "--group", "g1",
                                "--bootstrap-server", bs).stdout)
    assert sum(int(r["LAG"]) for r in rows) == len(work)

    # Delete the group, alter and delete topics.
    out = sluice("consumer-groups", "--delete", "--group", "g1", "--bootstrap-server", bs).stdout
    assert "Deletion of requested consumer groups ('g1') was successful." in out
    groups = sluice("consumer-groups", "--list", "--bootstrap-server", bs).stdout.split()
    assert "g1" not in groups and "g2" in groups
    sluice("topics", "--alter", "--topic", topic, "--partitions", "3", "--bootstrap-server", bs)
    out = sluice("topics", "--describe", "--topic", topic, "--bootstrap-server", bs).stdout
    assert "PartitionCount: 3" in out
    sluice("topics", "--delete", "--topic", group_topic, "--bootstrap-server", bs)
    assert group_topic not in sluice("topics", "--list", "--bootstrap-server", bs).stdout.split()


def test_topic_configs_and_errors(broker):
    bs = broker.bootstrap
    sluice("topics", "--create", "--topic", "cfg", "--config", "retention.ms=1234",
           "--bootstrap-server", bs)
    out = sluice("topics", "--describe", "--topic", "cfg", "--bootstrap-server", bs).stdout
    assert "retention.ms=1234" in out.splitlines()[0]

    res = sluice("topics", "--create", "--topic", "cfg", "--bootstrap-server", bs, check=False)
    assert res.returncode != 0 and "Topic 'cfg' already exists." in res.stderr
    sluice("topics", "--create", "--topic", "cfg", "--if-not-exists", "--bootstrap-server", bs)

    for action in ("--describe", "--delete"):
        res = sluice("topics", action, "--topic", "missing", "--bootstrap-server", bs, check=False)
        assert res.returncode != 0
        assert "Topic 'missing' does not exist as expected" in res.stderr, res.stderr
    res = sluice("console-consumer", "--topic", "missing", "--bootstrap-server", bs, check=False)
    assert res.returncode != 0 and "Topic 'missing' does not exist" in res.stderr
    res = sluice("consumer-groups", "--describe", "--group", "nobody", "--bootstrap-server", bs,
                 check=False)
    assert res.returncode != 0 and "Consumer group 'nobody' does not exist." in res.stderr

    # Missing separator with parse.key: Kafka's message, non-zero exit.
    res = sluice("console-producer", "--topic", "cfg", "--bootstrap-server", bs,
                 "--property", "parse.key=true", stdin="no separator here\n", check=False)
    assert res.returncode != 0 and "No key separator found on line number 1" in res.stderr


def test_unreachable_broker_and_bad_flags():
    # A port nothing listens on: one line on stderr, non-zero exit, quickly.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    for args in (["topics", "--list"], ["console-consumer", "--topic", "t"],
                 ["consumer-groups", "--list"]):
        res = sluice(*args, "--bootstrap-server", f"127.0.0.1:{port}", check=False)
        assert res.returncode != 0
        assert res.stderr.count("\n") == 1 and "cannot connect" in res.stderr, res.stderr
    assert time.monotonic() - started < 15

    # Bad flags: clap's errors and exit code 2.
    res = sluice("topics", "--bootstrap-server", "x:1", check=False)
    assert res.returncode == 2 and "--create|--list|--describe|--delete|--alter" in res.stderr
    res = sluice("topics", "--list", "--describe", "--bootstrap-server", "x:1", check=False)
    assert res.returncode == 2 and "cannot be used with" in res.stderr
    res = sluice("console-producer", "--topic", "t", check=False)
    assert res.returncode == 2 and "--bootstrap-server" in res.stderr
    res = sluice("console-consumer", "--topic", "t", "--bootstrap-server", "x:1",
                 "--offset", "4", check=False)
    assert res.returncode != 0 and "The partition is required when offset is specified." in res.stderr
    for tool in ("topics", "console-producer", "console-consumer", "consumer-groups"):
        res = sluice(tool, "--help")
        assert "--bootstrap-server" in res.stdout
