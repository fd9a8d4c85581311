"""kcat (Debian's, librdkafka 2.0) against sluice: metadata, keyed produce, consume
from the beginning and from an offset, compressed produce, empty partitions."""

import json
import shutil
import subprocess

import pytest

from helpers import create_topic

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
TIMEOUT_S = 60



def kcat(bootstrap, *args, stdin=None):
    assert KCAT is not None, "kcat not installed (scripts/install-test-deps.sh installs it)"
    result = subprocess.run(
        [KCAT, "-b", bootstrap, "-X", "api.version.request=true", *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}\n"
        f"stdout: {result.stdout.decode(errors='replace')}\nstderr: {result.stderr.decode(errors='replace')}"
    )
    return result.stdout.decode()


def test_metadata_listing(broker, topic_name):
    name = topic_name("kcat-md")
    create_topic(broker.bootstrap, name, partitions=3)
    out = kcat(broker.bootstrap, "-L")
    assert "1 brokers:" in out
    assert f"127.0.0.1:{broker.port}" in out
    assert f'topic "{name}" with 3 partitions:' in out
    for p in range(3):
        assert f"partition {p}, leader" in out

    md = json.loads(kcat(broker.bootstrap, "-L", "-J", "-t", name))
    (topic,) = [t for t in md["topics"] if t["topic"] == name]
    assert sorted(p["partition"] for p in topic["partitions"]) == [0, 1, 2]
    assert len(md["brokers"]) == 1 and md["brokers"][0]["name"].endswith(f":{broker.port}")


def test_produce_keys_and_consume(broker, topic_name):
    name = topic_name("kcat-io")
    create_topic(broker.bootstrap, name, partitions=2)
    lines = "".join(f"key{i}:value number {i}\n" for i in range(10))
    kcat(broker.bootstrap, "-P", "-t", name, "-p", "0", "-K:", stdin=lines.encode())

    out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "0", "-o", "beginning", "-e",
               "-f", "%p|%o|%k|%s\n")
    assert out.splitlines() == [f"0|{i}|key{i}|value number {i}" for i in range(10)]

    out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "0", "-o", "4", "-e", "-f", "%o=%s\n")
    assert out.splitlines() == [f"{i}=value number {i}" for i in range(4, 10)]

    # The other partition is empty: kcat must reach its end cleanly with no output.
    out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "1", "-o", "beginning", "-e")
    assert out == ""


def test_consume_all_partitions_from_beginning(broker, topic_name):
    name = topic_name("kcat-all")
    create_topic(broker.bootstrap, name, partitions=3)
    for p in range(3):
        data = "".join(f"p{p}-{i}\n" for i in range(5))
        kcat(broker.bootstrap, "-P", "-t", name, "-p", str(p), stdin=data.encode())
    out = kcat(broker.bootstrap, "-C", "-t", name, "-o", "beginning", "-e", "-f", "%p %o %s\n")
    got = sorted(out.splitlines())
    assert got == sorted(f"{p} {i} p{p}-{i}" for p in range(3) for i in range(5))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce(broker, topic_name, codec):
    name = topic_name(f"kcat-{codec}")
    create_topic(broker.bootstrap, name)
    data = "".join(f"{codec} line {i} " + "z" * 100 + "\n" for i in range(200))
    kcat(broker.bootstrap, "-P", "-t", name, "-p", "0", "-z", codec, stdin=data.encode())
    out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "0", "-o", "beginning", "-e", "-f", "%s\n")
    assert out == data


def test_headers_and_negative_offset(broker, topic_name):
    name = topic_name("kcat-hdr")
    create_topic(broker.bootstrap, name)
    for i in range(6):
        kcat(broker.bootstrap, "-P", "-t", name, "-p", "0", "-H", f"n={i}", "-H", "src=kcat",
             stdin=f"msg{i}".encode())
    # -o -2: the last two records
    out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "0", "-o", "-2", "-e", "-f", "%o %h %s\n")
    assert out.splitlines() == ["4 n=4,src=kcat msg4", "5 n=5,src=kcat msg5"]


def test_sigterm_is_prompt_after_consumers_exit(broker, topic_name):
    """Clients that have exited must not hold up a clean shutdown (Kafka stops at once)."""
    import time

    name = topic_name("kcat-stop")
    create_topic(broker.bootstrap, name, partitions=2)
    kcat(broker.bootstrap, "-P", "-t", name, "-p", "0", stdin=b"one\ntwo\n")
    for _ in range(3):
        out = kcat(broker.bootstrap, "-C", "-t", name, "-p", "0", "-o", "beginning", "-e", "-f", "%s\n")
        assert out == "one\ntwo\n"
    start = time.monotonic()
    rc = broker.stop()
    elapsed_s = time.monotonic() - start
    assert rc == 0
    assert elapsed_s < 5, f"SIGTERM took {elapsed_s:.1f}s with no client connected"
