"""Fixtures for the end-to-end suite: a real `sluice serve` process per test.

The broker binds an ephemeral port, prints `sluice: ready on HOST:PORT (N shards)` on
stdout when it serves, and exits 0 on SIGTERM. Its stderr goes to a file that is
attached to the test report when a test fails.
"""

import concurrent.futures
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "debug" / "sluice"))
READY_RE = re.compile(r"ready on (\S+):(\d+)")
READY_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 30


class BrokerProcess:
    """One `sluice serve` child process on 127.0.0.1 with its own data directory."""

    def __init__(self, data_dir: Path, log_dir: Path, overrides=None, cores=2):
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.overrides = dict(overrides or {})
        self.cores = cores
        self.proc = None
        self.host = None
        self.port = None
        self.starts = 0
        self.stderr_paths = []
        self.stdout_lines = []

    @property
    def bootstrap(self) -> str:
        assert self.port is not None, "broker not started"
        return f"{self.host}:{self.port}"

    def start(self):
        assert self.proc is None, "broker already running"
        assert SLUICE_BIN.exists(), f"{SLUICE_BIN} not built (cargo build --bins)"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(SLUICE_BIN),
            "serve",
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0",
            "--override",
            f"log.dirs={self.data_dir}",
            "--cores",
            str(self.cores),
        ]
        for key, value in self.overrides.items():
            cmd += ["--override", f"{key}={value}"]
        self.starts += 1
        stderr_path = self.log_dir / f"sluice-stderr-{self.starts}.log"
        self.stderr_paths.append(stderr_path)
        stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        stderr.close()
        ready = threading.Event()
        found = {}

        def read_stdout(proc=self.proc):
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.stdout_lines.append(line)
                m = READY_RE.search(line)
                if m and not ready.is_set():
                    found["host"], found["port"] = m.group(1), int(m.group(2))
                    ready.set()
            ready.set()  # EOF: the process exited

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or "port" not in found:
            rc = self.proc.poll()
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            pytest.fail(
                f"sluice did not print its ready line within {READY_TIMEOUT_S}s "
                f"(exit code {rc}); stderr:\n{self.stderr_text()}"
            )
        self.host, self.port = found["host"], found["port"]
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None, "broker not running"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"sluice did not exit within {SHUTDOWN_TIMEOUT_S}s of SIGTERM")

    def kill(self):
        """SIGKILL: a crash."""
        assert self.proc is not None, "broker not running"
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()

    def restart(self):
        """Clean stop (asserting exit code 0) and start on the same data directory.
        The port changes: use `bootstrap` again afterwards."""
        rc = self.stop()
        assert rc == 0, f"sluice exited with {rc} on SIGTERM"
        return self.start()

    def stderr_text(self, limit=20000) -> str:
        parts = []
        for path in self.stderr_paths:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {path.name} ---\n{text[-limit:]}")
        return "\n".join(parts)


@pytest.fixture
def broker_factory(tmp_path, request):
    """Starts brokers on demand: `broker_factory(overrides={...})`. Each is stopped with
    SIGTERM at teardown and must exit 0."""
    brokers = []
    request.node.sluice_brokers = brokers

    def make(overrides=None, cores=2):
        b = BrokerProcess(
            tmp_path / f"data-{len(brokers)}", tmp_path, overrides=overrides, cores=cores
        )
        brokers.append(b)
        return b.start()

    yield make
    codes = []
    for b in brokers:
        if b.alive():
            codes.append(b.stop())
    assert all(c == 0 for c in codes), f"sluice exit codes on SIGTERM: {codes}"


@pytest.fixture
def broker(broker_factory):
    """A fresh broker with default settings and an empty data directory."""
    return broker_factory()


@pytest.fixture
def topic_name():
    """Returns unique topic names: topic_name('orders') -> 'orders-1a2b3c4d'."""

    def make(prefix="t"):
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, b in enumerate(getattr(item, "sluice_brokers", [])):
            report.sections.append((f"sluice broker {i} stderr", b.stderr_text()))
            if b.stdout_lines:
                report.sections.append(
                    (f"sluice broker {i} stdout", "\n".join(b.stdout_lines[-200:]))
                )
        zookeeper = getattr(item, "sluice_zookeeper", None)
        if zookeeper is not None:
            report.sections.append(("zookeeper log", zookeeper.log_tail(200)))


# ---- a three-broker cluster on a real ZooKeeper (tests/e2e/test_cluster.py) ----------
#
# The same settings as the Rust harness (tests/common/cluster.rs): Debian's ZooKeeper
# run with java on a free port, brokers 1..3 registered under a chroot, a short session
# timeout so a SIGKILLed broker's leaderships move within seconds.

ZOOKEEPER_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
ZOOKEEPER_READY_TIMEOUT_S = 60
ZOOKEEPER_TICK_MS = 500
CLUSTER_CHROOT = "/sluice"
CLUSTER_SIZE = 3
CLUSTER_BROKER_CORES = 2
# How long a cluster change (registration, election, ISR change) may take to show in
# every broker's Metadata answer.
CLUSTER_CHANGE_TIMEOUT_S = 40
CLUSTER_POLL_INTERVAL_S = 0.1
CLUSTER_OVERRIDES = {
    "zookeeper.session.timeout.ms": "4000",
    "zookeeper.connection.timeout.ms": "10000",
    "replica.lag.time.max.ms": "3000",
    "offsets.topic.replication.factor": "3",
    "offsets.topic.num.partitions": "4",
    "group.initial.rebalance.delay.ms": "0",
    "leader.imbalance.check.interval.seconds": "2",
    # Brokers never create topics behind a test's back.
    "auto.create.topics.enable": "false",
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1: bound, read and released."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZooKeeperProcess:
    """A standalone ZooKeeper server (Debian's package, run with java) on a free port
    with its own data directory."""

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.port = None
        self.proc = None
        self.log_path = work_dir / "zookeeper.log"

    def start(self):
        assert Path("/usr/share/java/zookeeper.jar").exists(), (
            "ZooKeeper not installed (scripts/install-test-deps.sh installs the Debian package)"
        )
        data_dir = self.work_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = self.work_dir / "zoo.cfg"
        config.write_text(
            f"tickTime={ZOOKEEPER_TICK_MS}\n"
            f"dataDir={data_dir}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "maxClientCnxns=0\n"
            "admin.enableServer=false\n"
            "4lw.commands.whitelist=*\n"
        )
        with open(self.log_path, "wb") as log:
            # A small heap and the client compiler: starts faster, weighs less on the
            # machine that also runs the brokers.
            self.proc = subprocess.Popen(
                ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                 "-cp", ZOOKEEPER_CLASSPATH, ZOOKEEPER_MAIN, str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ZOOKEEPER_READY_TIMEOUT_S
        while True:
            # `imok` only says the process runs; `srvr` names a mode once it serves.
            running = self.four_letter_word("ruok") == "imok"
            if running and "Mode: " in self.four_letter_word("srvr"):
                return self
            rc = self.proc.poll()
            if rc is not None:
                self.proc = None
                pytest.fail(f"ZooKeeper exited with {rc} before it was ready:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                self.kill()
                pytest.fail(
                    f"ZooKeeper did not answer ruok within {ZOOKEEPER_READY_TIMEOUT_S}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(CLUSTER_POLL_INTERVAL_S)

    def four_letter_word(self, command: str) -> str:
        """The whole answer to a four-letter command, or '' if ZooKeeper did not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.settimeout(5)
                s.sendall(command.encode())
                chunks = []
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
        except OSError:
            return ""

    @property
    def connect_string(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log_tail(self, lines=40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _metadata_request(correlation_id: int) -> bytes:
    """Metadata v1 for every topic (topics = null), request header v1."""
    client_id = b"sluice-e2e-cluster"
    body = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", -1)
    return struct.pack(">i", len(body)) + body


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def array(self, item):
        n = self.take(">i")
        return [item() for _ in range(max(n, 0))]


def broker_metadata(host: str, port: int, timeout_s: float = 5.0) -> dict:
    """Metadata (v1, every topic) as the broker at host:port answers it, on a plain
    socket so the answer comes from that broker and no other:
    {"controller": id, "brokers": {id: (host, port)},
     "topics": {name: {"error": code, "partitions": {p: {"error", "leader", "replicas", "isr"}}}}}.
    Raises OSError when the broker does not answer."""
    with socket.create_connection((host, port), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(_metadata_request(1))
        header = b""
        while len(header) < 4:
            chunk = s.recv(4 - len(header))
            if not chunk:
                raise ConnectionError("connection closed before the Metadata answer")
            header += chunk
        (size,) = struct.unpack(">i", header)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                raise ConnectionError("connection closed inside the Metadata answer")
            data += chunk
    r = _Reader(data)
    assert r.take(">i") == 1, "correlation id mismatch"

    def broker():
        node_id = r.take(">i")
        h = r.string()
        p = r.take(">i")
        r.string()  # rack
        return node_id, (h, p)

    brokers = dict(r.array(broker))
    controller = r.take(">i")

    def partition():
        error, index, leader = r.take(">hii")
        replicas = r.array(lambda: r.take(">i"))
        isr = r.array(lambda: r.take(">i"))
        return index, {"error": error, "leader": leader, "replicas": replicas, "isr": isr}

    def topic():
        error = r.take(">h")
        name = r.string()
        r.take(">?")  # is_internal
        return name, {"error": error, "partitions": dict(r.array(partition))}

    topics = dict(r.array(topic))
    return {"controller": controller, "brokers": brokers, "topics": topics}


def fully_replicated(metadata: dict, topic: str, partitions: int, replication_factor: int) -> bool:
    """Every partition of `topic` has `replication_factor` replicas, a leader among them
    and every replica in its ISR."""
    t = metadata["topics"].get(topic)
    if t is None or t["error"] != 0 or len(t["partitions"]) != partitions:
        return False
    return all(
        p["error"] == 0
        and len(p["replicas"]) == replication_factor
        and p["leader"] in p["replicas"]
        and sorted(p["isr"]) == sorted(p["replicas"])
        for p in t["partitions"].values()
    )


class SluiceCluster:
    """ZooKeeper and brokers 1..n, each broker keeping its port and data directory
    across restarts."""

    def __init__(self, work_dir: Path, size=CLUSTER_SIZE):
        self.work_dir = work_dir
        self.zookeeper = ZooKeeperProcess(work_dir / "zookeeper")
        self.zookeeper.work_dir.mkdir(parents=True, exist_ok=True)
        self.ids = list(range(1, size + 1))
        self.brokers = {}

    def start(self):
        self.zookeeper.start()
        overrides = dict(CLUSTER_OVERRIDES)
        overrides["zookeeper.connect"] = f"{self.zookeeper.connect_string}{CLUSTER_CHROOT}"
        for broker_id in self.ids:
            log_dir = self.work_dir / f"broker-{broker_id}"
            log_dir.mkdir(parents=True, exist_ok=True)
            self.brokers[broker_id] = BrokerProcess(
                log_dir / "data", log_dir,
                overrides={**overrides, "broker.id": broker_id},
                cores=CLUSTER_BROKER_CORES,
            )
        # Start them together: each waits for ZooKeeper before printing its ready line.
        with concurrent.futures.ThreadPoolExecutor(len(self.ids)) as pool:
            for future in [pool.submit(b.start) for b in self.brokers.values()]:
                future.result()
        for b in self.brokers.values():
            # Restarts come back on the same port, as a real broker's listener does.
            b.overrides["listeners"] = f"PLAINTEXT://127.0.0.1:{b.port}"
        self.wait_for_all("three registered brokers and one controller",
                          lambda m: len(m["brokers"]) == len(self.ids) and m["controller"] > 0)
        return self

    @property
    def bootstrap(self) -> str:
        """Every broker's address, running or not, as a client's bootstrap list is."""
        return ",".join(self.brokers[i].bootstrap for i in self.ids)

    def live_ids(self):
        return [i for i in self.ids if self.brokers[i].alive()]

    def kill(self, broker_id: int):
        """SIGKILL: the broker dies without a word to ZooKeeper or its peers."""
        self.brokers[broker_id].kill()

    def restart(self, broker_id: int):
        self.brokers[broker_id].start()

    def restart_dead(self):
        for broker_id in self.ids:
            if not self.brokers[broker_id].alive():
                self.restart(broker_id)

    def metadata_from(self, broker_id: int) -> dict:
        b = self.brokers[broker_id]
        return broker_metadata(b.host, b.port)

    def wait_for_all(self, what, condition, timeout_s=CLUSTER_CHANGE_TIMEOUT_S):
        """Polls until every running broker's Metadata answer satisfies `condition` in
        one round; returns the answers by broker id."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            answers = {}
            for broker_id in self.live_ids():
                try:
                    m = self.metadata_from(broker_id)
                except (OSError, struct.error) as e:
                    last = f"broker {broker_id}: {e!r}"
                    break
                if not condition(m):
                    last = f"broker {broker_id}: {m}"
                    break
                answers[broker_id] = m
            if answers and len(answers) == len(self.live_ids()):
                return answers
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for every broker to show {what}; "
                    f"last: {last}"
                )
            time.sleep(CLUSTER_POLL_INTERVAL_S)

    def ensure_offsets_topic(self):
        """Has `__consumer_offsets` created (the first FindCoordinator does it, as in
        Kafka) and waits until every broker shows all its replicas in sync: a group test
        that kills a broker then finds its offsets on the others. Kafka creates it only
        while as many brokers as offsets.topic.replication.factor are alive, so this
        runs with the whole cluster up."""
        partitions = int(CLUSTER_OVERRIDES["offsets.topic.num.partitions"])
        replication_factor = int(CLUSTER_OVERRIDES["offsets.topic.replication.factor"])
        if not fully_replicated(self.metadata_from(self.live_ids()[0]), "__consumer_offsets",
                                partitions, replication_factor):
            from confluent_kafka.admin import AdminClient

            # DescribeGroups starts with FindCoordinator; its own answer does not matter.
            # (The client must outlive its futures: they never resolve once it is gone.)
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            futures = admin.describe_consumer_groups(
                ["sluice-e2e-create-offsets-topic"], request_timeout=CLUSTER_CHANGE_TIMEOUT_S
            )
            for future in futures.values():
                future.exception(CLUSTER_CHANGE_TIMEOUT_S)
        self.wait_for_all(
            "__consumer_offsets with every replica in sync",
            lambda m: fully_replicated(m, "__consumer_offsets", partitions, replication_factor),
        )

    def stop(self):
        """SIGKILLs every broker, then ZooKeeper."""
        for b in self.brokers.values():
            if b.alive():
                b.kill()
        self.zookeeper.kill()


@pytest.fixture(scope="module")
def sluice_cluster_module(tmp_path_factory):
    """ZooKeeper and three brokers, started once per module and SIGKILLed at its end."""
    cluster = SluiceCluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def sluice_cluster(sluice_cluster_module, request):
    """The module's cluster with every broker running (brokers a previous test killed
    are started again) and registered; their stderr (and ZooKeeper's log) are attached
    to a failing test's report."""
    cluster = sluice_cluster_module
    request.node.sluice_brokers = [cluster.brokers[i] for i in cluster.ids]
    request.node.sluice_zookeeper = cluster.zookeeper
    cluster.restart_dead()
    cluster.wait_for_all(
        "every broker registered",
        lambda m: sorted(m["brokers"]) == cluster.ids and m["controller"] > 0,
    )
    cluster.ensure_offsets_topic()
    return cluster
