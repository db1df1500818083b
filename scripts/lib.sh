# Shared settings and helpers for quiver's scripts (sourced, not run).
# Everything here is idempotent: calling a helper twice leaves the same state.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
# QUIVER_PG_BIN: another installation of the same major (as for the tests)
PG_BIN="${QUIVER_PG_BIN:-/usr/lib/postgresql/${PG_MAJOR}/bin}"
PG_CONFIG="${PG_BIN}/pg_config"
PGRX_VERSION="0.18.0"
BUILD="${REPO}/.build"

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }

# Runs a command as root (directly when we are root, else through sudo).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Runs a command as the postgres OS user: Postgres refuses to run as root.
as_postgres() {
    # from / so that a cwd postgres cannot enter (a root-only home) causes no warnings
    if [ "$(id -un)" = "postgres" ]; then "$@"; else (cd / && as_root sudo -u postgres -- "$@"); fi
}

# A directory the postgres user can reach for cluster data. It lives under
# the repo's ignored build area when postgres can traverse the repo path
# (a CI clone may sit under a root-only home); otherwise under /var/tmp,
# linked from the build area so it is still found there.
cluster_root() {
    local name="$1"
    local link="${BUILD}/${name}"
    mkdir -p "${BUILD}"
    if [ -L "${link}" ] || [ -d "${link}" ]; then
        [ -d "${link}/" ] && { readlink -f "${link}"; return; }
    fi
    mkdir -p "${link}"
    as_root chown postgres: "${link}"
    if as_postgres test -w "${link}"; then
        readlink -f "${link}"
        return
    fi
    rmdir "${link}"
    local key
    key="$(printf '%s' "${REPO}" | sha1sum | cut -c1-12)"
    local alt="/var/tmp/quiver-${key}/${name}"
    as_root mkdir -p "${alt}"
    as_root chown postgres: "/var/tmp/quiver-${key}" "${alt}"
    ln -sfn "${alt}" "${link}"
    readlink -f "${link}"
}

# start_cluster NAME PORT: initdb on first use, then (re)start on 127.0.0.1:PORT.
# Prints nothing; sets CLUSTER_DIR. The socket directory is the cluster root.
start_cluster() {
    # start_cluster NAME PORT [preload]: with "preload", quiver is in
    # shared_preload_libraries (search metrics in shared memory).
    local name="$1" port="$2" preload="${3:-}"
    local opts=()
    [ "${preload}" = preload ] && opts=(-o "-c shared_preload_libraries=quiver")
    CLUSTER_DIR="$(cluster_root "${name}")"
    local data="${CLUSTER_DIR}/data"

    if ! as_postgres test -f "${data}/PG_VERSION"; then
        log "initdb ${data}"
        as_postgres "${PG_BIN}/initdb" -D "${data}" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >/dev/null
        as_postgres tee -a "${data}/postgresql.conf" >/dev/null <<CONF
# quiver development cluster: loopback only
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${CLUSTER_DIR}'
shared_buffers = 512MB
maintenance_work_mem = 1GB
max_wal_size = 4GB
CONF
    fi
    if as_postgres "${PG_BIN}/pg_ctl" -D "${data}" status >/dev/null 2>&1; then
        # Restart so that a freshly installed quiver.so is what backends load.
        as_postgres "${PG_BIN}/pg_ctl" -D "${data}" -l "${CLUSTER_DIR}/server.log" "${opts[@]}" -w restart >/dev/null
    else
        as_postgres "${PG_BIN}/pg_ctl" -D "${data}" -l "${CLUSTER_DIR}/server.log" "${opts[@]}" -w start >/dev/null \
            || { tail -20 "${CLUSTER_DIR}/server.log" >&2; die "could not start ${name}"; }
    fi
}

stop_cluster() {
    local name="$1" dir
    dir="$(readlink -f "${BUILD}/${name}" 2>/dev/null || true)"
    [ -n "${dir}" ] && [ -f "${dir}/data/PG_VERSION" ] || return 0
    as_postgres "${PG_BIN}/pg_ctl" -D "${dir}/data" -m fast -w stop >/dev/null 2>&1 || true
}

# Builds quiver in release mode and installs it into the system's Postgres 15.
install_quiver() {
    log "building and installing quiver (release)"
    (cd "${REPO}" && if [ "$(id -u)" -eq 0 ]; then
        cargo pgrx install --release --pg-config "${PG_CONFIG}"
    else
        cargo pgrx install --release --sudo --pg-config "${PG_CONFIG}"
    fi) >&2
    # Earlier releases' install scripts and the upgrade scripts between them
    # (sql/releases, sql/upgrades): ALTER EXTENSION quiver UPDATE follows them.
    as_root install -m 644 "${REPO}"/sql/releases/quiver--*.sql "${REPO}"/sql/upgrades/quiver--*--*.sql \
        "$("${PG_CONFIG}" --sharedir)/extension/"
}
