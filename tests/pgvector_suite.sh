#!/usr/bin/env bash
# Runs a pgvector checkout's own tests against quiver: the SQL regression
# files (test/sql against test/expected, with pg_regress) and the TAP tests
# (test/t, with prove), each with `CREATE EXTENSION vector` as
# `CREATE EXTENSION quiver`. Nothing of pgvector is copied into this repo;
# give it a checkout:
#
#   tests/pgvector_suite.sh /path/to/pgvector [regress|tap|all] [TAP files...]
#
# Without a path it says so and exits 0 (CI runs quiver's own conformance
# tests, tests/regress and tests/test_pgvector_*.py, instead). Prints one
# line per file and a summary; exits 1 when any file fails.
source "$(dirname "$0")/../scripts/lib.sh"

PGV="${1:-}"
WHAT="${2:-all}"
shift 2 2>/dev/null || shift $#
if [ -z "${PGV}" ] || [ ! -d "${PGV}/test/sql" ]; then
    log "no pgvector checkout given (tests/pgvector_suite.sh PATH): pgvector's own suite skipped"
    exit 0
fi
PGV="$(cd "${PGV}" && pwd)"
PORT="${QUIVER_SUITE_PORT:-28840}"
WORK="$(cluster_root pgvector-suite)"
as_root rm -rf "${WORK}/run" && as_root mkdir -p "${WORK}/run" && as_root chown postgres "${WORK}/run"
failed=0

if [ "${WHAT}" = all ] || [ "${WHAT}" = regress ]; then
    log "pgvector's SQL regression files against quiver"
    start_cluster pgvector-suite-pg "${PORT}"
    as_root cp -r "${PGV}/test/sql" "${PGV}/test/expected" "${WORK}/run/"
    as_root chown -R postgres "${WORK}/run"
    TESTS=$(cd "${PGV}/test/sql" && ls *.sql | sed 's/\.sql$//' | sort)
    # pg_regress runs from the output directory: copy.sql writes results/*.bin
    as_postgres bash -c "cd '${WORK}/run' && mkdir -p results && \"\$0\" \"\$@\"" \
        "$(${PG_CONFIG} --pgxs | xargs dirname)/../test/regress/pg_regress" \
        --host=127.0.0.1 --port="${PORT}" --user=postgres --inputdir="${WORK}/run" \
        --outputdir="${WORK}/run" --dbname=pgvector_suite --load-extension=quiver ${TESTS} \
        | grep -E "^(ok|not ok|test|\s+[a-z_]+ +\.\.\.)|tests (passed|failed)" || true
    if [ -s "${WORK}/run/regression.diffs" ]; then
        failed=1
        log "differences: ${WORK}/run/regression.diffs ($(grep -c '^@@' "${WORK}/run/regression.diffs") hunks)"
    fi
    stop_cluster pgvector-suite-pg
fi

if [ "${WHAT}" = all ] || [ "${WHAT}" = tap ]; then
    log "pgvector's TAP tests against quiver"
    if ! perl -MIPC::Run -e 1 2>/dev/null; then
        as_root apt-get install -y -qq libipc-run-perl >/dev/null
    fi
    as_root mkdir -p "${WORK}/run/t"
    for f in "${PGV}"/test/t/*.pl; do
        sed 's/CREATE EXTENSION vector/CREATE EXTENSION quiver/g' "${f}" | as_root tee "${WORK}/run/t/$(basename "${f}")" >/dev/null
    done
    as_root chown -R postgres "${WORK}/run"
    files=("$@")
    [ ${#files[@]} -gt 0 ] || files=($(cd "${WORK}/run/t" && ls *.pl))
    PERL_LIB="$(${PG_CONFIG} --pgxs | xargs dirname)/../test/perl"
    as_postgres bash -c "cd '${WORK}/run' && \"\$0\" \"\$@\"" env PATH="${PG_BIN}:${PATH}" \
        PG_REGRESS="$(${PG_CONFIG} --pgxs | xargs dirname)/../test/regress/pg_regress" \
        TESTDIR="${WORK}/run" PERL5LIB="${PERL_LIB}" prove --timer -I "${PERL_LIB}" "${files[@]/#/t/}" || failed=1
fi

exit "${failed}"
