#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, idempotently and
# quietly: kcat and zookeeper (Debian), the Python clients (tests/e2e/requirements.txt)
# and kafkajs (tests/js/package-lock.json). Safe to run repeatedly: each step is
# skipped when its tools are already present.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ---- Debian packages -------------------------------------------------------------
apt_missing=()
command -v kcat >/dev/null 2>&1 || apt_missing+=(kcat)
# ZooKeeper is used by the cluster tests (tests/e2e and tests/*.rs start their own).
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || apt_missing+=(zookeeper)
# ZooKeeper runs on Java (the zookeeper package pulls in default-jre; be explicit).
command -v java >/dev/null 2>&1 || apt_missing+=(default-jre-headless)
if [ "${#apt_missing[@]}" -gt 0 ]; then
    echo "apt: installing ${apt_missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${apt_missing[@]}" >/dev/null
fi
echo "kcat: $(kcat -V 2>&1 | grep -m1 -o 'Version [0-9.]* .*librdkafka [0-9.]*' || echo missing)"

# ---- Python ----------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
want = {}
for line in open("tests/e2e/requirements.txt"):
    line = line.split("#", 1)[0].strip()
    if line:
        name, _, ver = line.partition("==")
        want[name] = ver
sys.exit(0 if all(version(n) == v for n, v in want.items()) else 1)
PY
then
    echo "pip: installing tests/e2e/requirements.txt"
    "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore \
        -r tests/e2e/requirements.txt
fi
"$PYTHON" -c 'import confluent_kafka, kafka; print("python clients: confluent-kafka", confluent_kafka.__version__, "(librdkafka", confluent_kafka.libversion()[0] + "), kafka-python", kafka.__version__)'

# ---- Node (kafkajs) --------------------------------------------------------------
want_kafkajs="$(node -p "require('./tests/js/package-lock.json').packages['node_modules/kafkajs'].version")"
have_kafkajs="$(node -p "try { require('./tests/js/node_modules/kafkajs/package.json').version } catch (e) { '' }")"
if [ "$want_kafkajs" != "$have_kafkajs" ]; then
    echo "npm: installing kafkajs $want_kafkajs"
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "kafkajs: $(node -p "require('./tests/js/node_modules/kafkajs/package.json').version")"

# ---- cargo-nextest ---------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo-nextest missing: installing"
    cargo install --locked --quiet cargo-nextest
fi
