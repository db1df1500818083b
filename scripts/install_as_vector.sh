#!/usr/bin/env bash
# Installs quiver a second time under pgvector's extension name, `vector`,
# for servers without pgvector: frameworks that run
# `CREATE EXTENSION IF NOT EXISTS vector` (LangChain, Django's
# VectorExtension, LlamaIndex) and pgvector dumps then get quiver unchanged.
#
# The extension reports version 0.8.6 because clients read `extversion` to
# enable features (halfvec from 0.7, iterative scans from 0.8); the library
# is quiver's own (`SELECT quiver.library_version()`). Refuses to touch a
# server where pgvector itself is installed. Idempotent.
source "$(dirname "$0")/lib.sh"

VECTOR_VERSION="0.8.6"
EXT_DIR="$("${PG_CONFIG}" --sharedir)/extension"
QUIVER_VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "${REPO}/Cargo.toml" | head -1)"
MARKER="installed by quiver's scripts/install_as_vector.sh"

if [ -f "${EXT_DIR}/vector.control" ] && ! grep -q "${MARKER}" "${EXT_DIR}/vector.control"; then
    die "pgvector is installed on this server (${EXT_DIR}/vector.control); quiver will not replace it. Use CREATE EXTENSION quiver in databases without pgvector, or remove pgvector first."
fi
if [ ! -f "${EXT_DIR}/quiver--${QUIVER_VERSION}.sql" ] || [ "${QUIVER_REINSTALL:-0}" = 1 ]; then
    install_quiver
fi

log "installing quiver ${QUIVER_VERSION} as extension vector ${VECTOR_VERSION}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
cat > "${tmp}/vector.control" <<CONTROL
# ${MARKER}
comment = 'quiver ${QUIVER_VERSION} under pgvector''s extension name: vector data type and hnsw access method'
default_version = '${VECTOR_VERSION}'
module_pathname = '\$libdir/quiver'
relocatable = false
superuser = true
trusted = true
CONTROL
cp "${EXT_DIR}/quiver--${QUIVER_VERSION}.sql" "${tmp}/vector--${VECTOR_VERSION}.sql"
as_root install -m 644 "${tmp}/vector.control" "${tmp}/vector--${VECTOR_VERSION}.sql" "${EXT_DIR}/"
