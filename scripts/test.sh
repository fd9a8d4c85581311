#!/usr/bin/env bash
# The project's test command: installs the test dependencies, then runs formatting,
# lints, the build, Rust unit + integration tests (nextest) and the end-to-end suite
# with real Kafka clients (pytest: kcat, confluent-kafka, kafka-python, kafkajs).
# Every stage runs even if an earlier test stage failed; the exit code is non-zero if
# any stage failed. The last line printed is pytest's summary line.
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
failed=()
section() { printf '\n======== %s ========\n' "$1"; }
run_stage() {
    local name="$1"
    shift
    section "$name"
    local start=$SECONDS
    if "$@"; then
        echo "-- $name: ok ($((SECONDS - start))s)"
    else
        echo "-- $name: FAILED ($((SECONDS - start))s)"
        failed+=("$name")
        return 1
    fi
}

run_stage "install test dependencies" bash scripts/install-test-deps.sh || exit 1
run_stage "cargo fmt --check" cargo fmt --all -- --check
run_stage "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
if run_stage "cargo build" cargo build --workspace --bins --quiet; then
    built=1
else
    built=0
fi
run_stage "cargo nextest (unit + integration)" \
    cargo nextest run --workspace --config-file scripts/nextest.toml

pytest_log="$(mktemp)"
if [ "$built" = 1 ]; then
    # pytest exits 5 when it collects no tests: that is a failure here too.
    run_stage "pytest tests/e2e (kcat, confluent-kafka, kafka-python, kafkajs)" \
        bash -c 'set -o pipefail; python3 -m pytest tests/e2e -p no:cacheprovider -q -rfE --timeout=300 \
                 --durations=10 2>&1 | tee "$0"' "$pytest_log"
else
    section "pytest tests/e2e"
    echo "skipped: the sluice binary did not build"
    failed+=("pytest (not run)")
fi

section "summary"
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'FAILED stages:\n'
    printf '  - %s\n' "${failed[@]}"
    status=1
else
    echo "all stages passed"
    status=0
fi
# Keep pytest's own summary as the closing line.
if [ -s "$pytest_log" ]; then
    grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$|^[0-9]+ (passed|failed)' "$pytest_log" | tail -1
fi
rm -f "$pytest_log"
exit "$status"
