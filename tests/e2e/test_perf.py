"""`sluice-perf` against a real broker: produce and e2e at a target rate write the JSON
summary and the `.hgrm` distribution, every acknowledged record is consumed, progress
lines carry the last second's p99, and `--warmup-s` leaves the first records out of the
latencies but not out of the counts. Small rates and short runs: this checks behaviour,
never speed."""

import json
import subprocess

from conftest import SLUICE_BIN

PERF_BIN = SLUICE_BIN.with_name("sluice-perf")
TIMEOUT_S = 120


def perf(*args):
    assert PERF_BIN.exists(), f"{PERF_BIN} not built (cargo build --bins)"
    proc = subprocess.run(
        [str(PERF_BIN), *args], capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert proc.returncode == 0, (
        f"sluice-perf {' '.join(args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def test_produce_at_a_rate_writes_json_and_hgrm(broker, topic_name, tmp_path):
    topic = topic_name("perf")
    out, hgrm = tmp_path / "p.json", tmp_path / "p.hgrm"
    perf(
        "produce", "--bootstrap-server", broker.bootstrap, "--topic", topic,
        "--record-size", "100", "--partitions", "4", "--rate", "20000",
        "--records", "10000", "--no-sink-check", "--quiet",
        "--json", str(out), "--hgrm", str(hgrm),
    )
    summary = json.loads(out.read_text())
    assert summary["settings"]["rate_records_per_s"] == 20000
    (produce,) = summary["results"]
    assert produce["workload"] == "produce"
    assert produce["errors"] == 0
    assert produce["records"] == 10000
    latency = produce["latency"]
    assert latency["count"] == 10000
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    text = hgrm.read_text()
    assert "Percentile" in text and "#[Max" in text
    rows = [line for line in text.splitlines()[2:] if line and not line.startswith("#")]
    assert float(rows[-1].split()[1]) == 1.0


def test_e2e_consumes_every_acknowledged_record_and_warms_up(broker, topic_name, tmp_path):
    topic = topic_name("e2e")
    out = tmp_path / "e.json"
    proc = perf(
        "e2e", "--bootstrap-server", broker.bootstrap, "--topic", topic,
        "--record-size", "100", "--partitions", "4", "--rate", "20000",
        "--duration-s", "2.5", "--warmup-s", "1", "--no-sink-check", "--json", str(out),
    )
    produce, e2e = json.loads(out.read_text())["results"]
    assert produce["errors"] == 0 and e2e["errors"] == 0
    assert produce["records"] > 0
    assert e2e["records"] == produce["records"]
    # Records due in the first second are counted but not measured.
    for result in (produce, e2e):
        measured = result["latency"]["count"]
        assert 0 < measured < result["records"]
        assert measured <= result["records"] * 0.7
    # The first progress line falls in the warm-up; a later one reports its second.
    assert "this second p99" in proc.stderr, proc.stderr
