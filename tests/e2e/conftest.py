"""Fixtures for the end-to-end suite: a real `sluice serve` process per test.

The broker binds an ephemeral port, prints `sluice: ready on HOST:PORT (N shards)` on
stdout when it serves, and exits 0 on SIGTERM. Its stderr goes to a file that is
attached to the test report when a test fails.
"""

import os
import re
import signal
import subprocess
import threading
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
