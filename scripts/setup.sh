#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test quiver.
# Idempotent: every step checks first and does nothing when already done.
source "$(dirname "$0")/lib.sh"

# prometheus, prometheus-postgres-exporter: tests/test_exporter.py; patroni, etcd-server: tests/test_patroni.py
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo python3-venv
              prometheus prometheus-postgres-exporter patroni etcd-server)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster on 5432 we do not use; leave it be.

if ! cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx ${PGRX_VERSION}\$"; then
    log "cargo install cargo-pgrx ${PGRX_VERSION} (about 7 minutes)"
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

PGRX_HOME="${PGRX_HOME:-${HOME}/.pgrx}"
if ! grep -qs "^pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${PGRX_HOME}/config.toml"; then
    log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
    cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}" >/dev/null
fi

# Python client tests and the benchmark use a private virtualenv.
VENV="${BUILD}/venv"
if [ ! -x "${VENV}/bin/python" ]; then
    log "python venv ${VENV}"
    mkdir -p "${BUILD}"
    python3 -m venv "${VENV}"
fi
if ! "${VENV}/bin/python" -c "import psycopg, pgvector, numpy, pytest, matplotlib, prometheus_client" 2>/dev/null; then
    log "pip install client test dependencies"
    "${VENV}/bin/pip" install -q --disable-pip-version-check "psycopg[binary]>=3.1" "pgvector>=0.3" numpy pytest matplotlib prometheus-client
fi

# The framework tests (tests/frameworks) get a venv of their own: their pins
# on pgvector-python differ from the client tests'.
FW_VENV="${BUILD}/venv-frameworks"
if [ ! -x "${FW_VENV}/bin/python" ]; then
    log "python venv ${FW_VENV}"
    python3 -m venv "${FW_VENV}"
fi
if ! "${FW_VENV}/bin/python" -c "import langchain_postgres, django, llama_index.vector_stores.postgres, sqlalchemy, asyncpg, pytest" 2>/dev/null; then
    log "pip install framework test dependencies (LangChain, Django, LlamaIndex, SQLAlchemy, asyncpg)"
    "${FW_VENV}/bin/pip" install -q --disable-pip-version-check -r "${REPO}/tests/frameworks/requirements.txt"
fi
