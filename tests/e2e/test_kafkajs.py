"""kafkajs against sluice: runs tests/js/admin_produce.js with node. Consumers need
consumer groups in kafkajs, so only admin, produce and fetchTopicOffsets are covered."""

import os
import shutil
import subprocess
from pathlib import Path

from helpers import consume

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE = shutil.which("node")



def test_kafkajs_admin_and_produce(broker, topic_name):
    assert NODE is not None, "node not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").exists(), (
        "tests/js/node_modules missing (scripts/install-test-deps.sh runs npm ci)"
    )
    topic = topic_name("kjs")
    env = dict(os.environ, SLUICE_BOOTSTRAP=broker.bootstrap, SLUICE_TOPIC=topic)
    result = subprocess.run(
        [NODE, str(JS_DIR / "admin_produce.js")],
        env=env,
        capture_output=True,
        timeout=120,
    )
    out = result.stdout.decode(errors="replace")
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 0, f"node exited {result.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    assert "kafkajs: all checks passed" in out

    # Cross-check with another client: what kafkajs produced to the kept topic.
    kept = f"{topic}-kept"
    messages = consume(broker.bootstrap, kept, 0, 0, 20)
    assert [m.key() for m in messages] == [f"k{i}".encode() for i in range(20)]
    assert [m.value() for m in messages] == [f"kafkajs-{i}".encode() for i in range(20)]
    assert messages[3].headers() == [("idx", b"3")]
