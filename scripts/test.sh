#!/usr/bin/env bash
# Command 2 of the README: runs every test of quiver on this machine.
#   1. the code is formatted (cargo fmt), clippy finds nothing (workspace lints
#      in Cargo.toml: every unsafe block says why it is sound), and the
#      generated SQL is up to date
#   2. cargo test of the pure core (unit and property tests)
#   3. cargo pgrx test: in-database #[pg_test] suites in pg_test/
#   4. SQL regression files (tests/regress) against the installed extension
#   5. pgvector's Python client against quiver (tests/client), and the
#      frameworks built on pgvector against quiver installed as `vector`
#      (tests/frameworks; skipped where pgvector itself is installed)
#   6. cluster-level integration tests (tests/*.py), when present
# Clusters run as the postgres OS user on 127.0.0.1 only.
#
#   ./scripts/test.sh                  every tier, in order (what CI runs)
#   ./scripts/test.sh core             one tier: lint, core, pgrx, regress, clients, integration
#   ./scripts/test.sh regress clients  several, in the order given
# `core` needs neither root nor the setup (only cargo); the others run
# scripts/setup.sh first. `regress`, `clients` and `integration` install the
# release build and start the test cluster.
source "$(dirname "$0")/lib.sh"
PORT="${QUIVER_TEST_PORT:-28816}"

TIERS=(lint core pgrx regress clients integration)
if [ $# -eq 0 ]; then set -- "${TIERS[@]}"; fi
for t in "$@"; do
    [[ " ${TIERS[*]} " == *" ${t} "* ]] || die "unknown tier '${t}' (tiers: ${TIERS[*]})"
done
cd "${REPO}"
if [ "$*" != "core" ]; then
    "${REPO}/scripts/setup.sh"
fi

tier_lint() {
log "1/6 formatting, lints and generated SQL"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check || die "the code is not formatted: run cargo fmt --all"
else
    log "rustfmt is not installed with this toolchain (rustup component add rustfmt): formatting not checked"
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --release -- -D warnings || die "clippy found problems (see above)"
else
    log "clippy is not installed with this toolchain (rustup component add clippy): lints not checked"
fi
python3 sql/generate.py --check
}

tier_core() {
log "2/6 cargo test -p quiver-core"
cargo test -p quiver-core --release
}

tier_pgrx() {
log "3/6 cargo pgrx test (in-database tests)"
PGRX_DATA="$(cluster_root pgrx-test)"
cargo pgrx test pg${PG_MAJOR} --runas postgres --pgdata "${PGRX_DATA}/data"
# pgrx test installed its test build: the next tier that needs the
# release build installs it again
INSTALLED=""
}

# The release build installed and the test cluster running, once per run.
INSTALLED=""
need_cluster() {
    local fresh=""
    if [ -z "${INSTALLED}" ]; then
        install_quiver
        INSTALLED=1
        fresh=1
    fi
    if [ -z "${CLUSTER_UP:-}" ]; then
        start_cluster test-pg "${PORT}"
        trap 'stop_cluster test-pg' EXIT
        CLUSTER_UP=1
    elif [ -n "${fresh}" ]; then
        start_cluster test-pg "${PORT}"  # restarted: it loads the build just installed
    fi
}

tier_regress() {
need_cluster
log "4/6 SQL regression tests"
OUT="${BUILD}/regress"
rm -rf "${OUT}" && mkdir -p "${OUT}"
TESTS=$(cd tests/regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
"$(${PG_CONFIG} --pgxs | xargs dirname)/../test/regress/pg_regress" \
    --host=127.0.0.1 --port="${PORT}" --user=postgres \
    --inputdir=tests/regress --outputdir="${OUT}" \
    --dbname=quiver_regress --load-extension=quiver ${TESTS} \
    || { cat "${OUT}/regression.diffs" 2>/dev/null | head -100; die "regression tests failed"; }
}

tier_clients() {
need_cluster
log "5/6 pgvector's Python client and the frameworks built on pgvector"
PSQL=("${PG_BIN}/psql" -X -q -h 127.0.0.1 -p "${PORT}" -U postgres)
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS quiver_client" -c "CREATE DATABASE quiver_client"
QUIVER_DSN="host=127.0.0.1 port=${PORT} user=postgres dbname=quiver_client" \
    "${BUILD}/venv/bin/python" -m pytest -q -p no:cacheprovider tests/client
if [ -f "$(${PG_CONFIG} --sharedir)/extension/vector.control" ] \
    && ! grep -q "install_as_vector" "$(${PG_CONFIG} --sharedir)/extension/vector.control"; then
    log "pgvector is installed on this server: the frameworks run against it, not quiver; skipped"
else
    "${REPO}/scripts/install_as_vector.sh"
    QUIVER_TEST_PORT="${PORT}" "${BUILD}/venv-frameworks/bin/python" -m pytest -q -p no:cacheprovider tests/frameworks
fi
}

tier_integration() {
need_cluster
log "6/6 integration tests"
shopt -s nullglob
integration=(tests/test_*.py)
if [ ${#integration[@]} -gt 0 ]; then
    QUIVER_TEST_PORT="${PORT}" "${BUILD}/venv/bin/python" -m pytest -q -p no:cacheprovider "${integration[@]}"
fi
}

for t in "$@"; do
    "tier_${t}"
done
log "all tests passed: $*"
