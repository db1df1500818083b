"""Automatic failover with Debian's patroni and etcd-server, all on loopback:
etcd on 28950, three Patroni nodes (REST 28951-28953, Postgres 28961-28963,
quiver preloaded, synchronous_mode). Writers and a searcher run against the
leader; the leader's node dies (kill -9 of its Patroni and its postmaster);
a replica is promoted automatically, no write the old leader acknowledged
is lost, the new leader's hnsw index passes index_check and keeps taking
inserts, searches return the top 10 they returned before, and
quiver_recovery_mode tells the leader from the replicas."""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from cluster import PG_BIN, children_of
from vectors import clustered, text

PATRONI = shutil.which("patroni")
ETCD = shutil.which("etcd")
ETCD_PORT = 28950
NODES = [("node1", 28951, 28961), ("node2", 28952, 28962), ("node3", 28953, 28963)]
DIM = 16

pytestmark = pytest.mark.skipif(not (PATRONI and ETCD), reason="Debian's patroni and etcd-server are not installed")


def rest(port: int, path: str):
    """(status, JSON body) of a Patroni REST call; status 0 when nobody answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except OSError:
        return 0, {}


def wait(what: str, ok, seconds: float = 90):
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = ok()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=3"


def leader_port():
    for name, api, pg in NODES:
        if rest(api, "/leader")[0] == 200:
            return pg
    return None


def node_yaml(root: pathlib.Path, name: str, api: int, pg: int) -> str:
    return f"""
scope: quiver-failover
name: {name}
restapi: {{listen: "127.0.0.1:{api}", connect_address: "127.0.0.1:{api}"}}
etcd3: {{hosts: "127.0.0.1:{ETCD_PORT}"}}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 33554432
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        shared_preload_libraries: quiver
        wal_level: replica
        wal_log_hints: "on"
        hot_standby: "on"
        max_wal_senders: 8
        max_replication_slots: 8
        max_connections: 40
  initdb: [{{encoding: UTF8}}, {{locale: C.UTF-8}}]
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: "127.0.0.1:{pg}"
  connect_address: "127.0.0.1:{pg}"
  data_dir: {root / name}
  bin_dir: {PG_BIN}
  pgpass: {root / (name + '.pgpass')}
  authentication:
    superuser: {{username: postgres}}
    replication: {{username: replicator}}
    rewind: {{username: postgres}}
  parameters:
    unix_socket_directories: "{root}"
"""


def test_failover_promotes_a_replica_and_loses_no_acknowledged_write():
    root = pathlib.Path(tempfile.mkdtemp(prefix="quiver-patroni-", dir="/var/tmp"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    procs = {}
    stop = threading.Event()
    threads = []
    try:
        procs["etcd"] = subprocess.Popen(
            [ETCD, "--name", "etcd0", "--data-dir", str(root / "etcd"),
             "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
             "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
             "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PORT - 1}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{ETCD_PORT - 1}",
             "--initial-cluster", f"etcd0=http://127.0.0.1:{ETCD_PORT - 1}"],
            stdout=open(root / "etcd.log", "w"), stderr=subprocess.STDOUT)
        sudo = ["sudo", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        for i, (name, api, pg) in enumerate(NODES):
            conf = root / f"{name}.yml"
            conf.write_text(node_yaml(root, name, api, pg))
            shutil.chown(conf, "postgres", "postgres") if os.geteuid() == 0 else None
            procs[name] = subprocess.Popen(sudo + [PATRONI, str(conf)], cwd="/",
                                           stdout=open(root / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                                           start_new_session=True)
            if i == 0:  # the first node bootstraps the cluster alone
                wait("a leader", leader_port)
        first = wait("a leader", leader_port)

        def cluster_roles():
            _, c = rest(NODES[0][1], "/cluster")
            return {m["name"]: (m["role"], m.get("state")) for m in c.get("members", [])}

        wait("two running replicas, one synchronous",
             lambda: (lambda r: sum(1 for role, st in r.values() if role in ("replica", "sync_standby") and st in ("running", "streaming")) == 2
                      and any(role == "sync_standby" for role, _ in r.values()))(cluster_roles()))

        data = clustered(3000, DIM, seed=61)
        with psycopg.connect(dsn(first), autocommit=True) as c:
            c.execute("CREATE EXTENSION quiver")
            c.execute(f"CREATE TABLE fixed (id int PRIMARY KEY, v vector({DIM}))")
            with c.cursor().copy("COPY fixed FROM STDIN") as cp:
                for i, v in enumerate(data[:2000]):
                    cp.write_row((i, text(v)))
            c.execute("CREATE INDEX fixed_v ON fixed USING hnsw (v vector_l2_ops)")
            c.execute(f"CREATE TABLE w (id int PRIMARY KEY, v vector({DIM}))")
            c.execute("CREATE INDEX w_v ON w USING hnsw (v vector_l2_ops)")
            queries = data[2000:2010]
            c.execute("SET enable_seqscan = off")
            c.execute("SET hnsw.ef_search = 200")
            before = [[r[0] for r in c.execute("SELECT id FROM fixed ORDER BY v <-> %s LIMIT 10", (text(q),))]
                      for q in queries]
            assert c.execute("SELECT value FROM quiver.metrics WHERE metric = 'quiver_recovery_mode'").fetchone()[0] == 0

        acked, errors, searches = set(), [], [0]

        def writer(wid):
            conn, k = None, 0
            while not stop.is_set():
                try:
                    if conn is None:
                        port = leader_port()
                        if port is None:
                            time.sleep(0.3)
                            continue
                        conn = psycopg.connect(dsn(port), autocommit=True)
                        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                            conn.close()
                            conn = None
                            time.sleep(0.3)
                            continue
                    key = wid * 1_000_000 + k
                    conn.execute("INSERT INTO w VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                                 (key, text(data[key % 3000])))
                    acked.add(key)  # committed and acknowledged
                    k += 1
                except psycopg.Error:
                    conn = None
                    k += 1  # this key's outcome is unknown: never reused, never counted
                    time.sleep(0.2)

        def searcher():
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        port = leader_port()
                        if port is None:
                            time.sleep(0.3)
                            continue
                        conn = psycopg.connect(dsn(port), autocommit=True)
                        conn.execute("SET enable_seqscan = off")
                    rows = conn.execute("SELECT id FROM fixed ORDER BY v <-> %s LIMIT 10", (text(queries[0]),)).fetchall()
                    if len(rows) != 10:
                        errors.append(f"search returned {len(rows)} rows")
                    searches[0] += 1
                except psycopg.Error:
                    conn = None
                    time.sleep(0.2)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)] + [threading.Thread(target=searcher)]
        for t in threads:
            t.start()
        time.sleep(8)
        old = next(n for n in NODES if n[2] == first)
        acked_before_crash = len(acked)
        assert acked_before_crash > 50, acked_before_crash
        # the leader's node dies: its Patroni and its postmaster, kill -9
        pid = int((root / old[0] / "postmaster.pid").read_text().split()[0])
        os.killpg(procs[old[0]].pid, signal.SIGKILL)
        for p in [pid] + [int(x) for x in children_of(pid)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        crashed_at = time.time()
        new = wait("a new leader", lambda: (lambda p: p if p not in (None, first) else None)(leader_port()), seconds=60)
        promoted_after = time.time() - crashed_at
        time.sleep(6)  # writers and the searcher continue on the new leader
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        assert len(acked) > acked_before_crash, "no write reached the new leader"

        with psycopg.connect(dsn(new), autocommit=True) as c:
            assert not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            present = {r[0] for r in c.execute("SELECT id FROM w")}
            lost = acked - present
            assert not lost, f"{len(lost)} acknowledged rows lost, e.g. {sorted(lost)[:5]}"
            for idx in ("fixed_v", "w_v"):
                report = c.execute("SELECT quiver.index_check(%s)", (idx,)).fetchone()[0]
                assert report["unreachable_live"] == 0, (idx, report)
            c.execute("INSERT INTO w VALUES (-1, %s)", (text(data[5]),))
            c.execute("SET enable_seqscan = off")
            c.execute("SET hnsw.ef_search = 200")
            assert c.execute("SELECT id FROM w ORDER BY v <-> %s LIMIT 1", (text(data[5]),)).fetchone()[0] in (-1, 5)
            after = [[r[0] for r in c.execute("SELECT id FROM fixed ORDER BY v <-> %s LIMIT 10", (text(q),))]
                     for q in queries]
            assert after == before
            assert c.execute("SELECT value FROM quiver.metrics WHERE metric = 'quiver_recovery_mode'").fetchone()[0] == 0
        replica = next(n[2] for n in NODES if n[2] not in (first, new))
        wait("the other replica following the new leader",
             lambda: rest(next(n[1] for n in NODES if n[2] == replica), "/replica")[0] == 200)
        with psycopg.connect(dsn(replica), autocommit=True) as c:
            assert c.execute("SELECT value FROM quiver.metrics WHERE metric = 'quiver_recovery_mode'").fetchone()[0] == 1
        print(f"promoted after {promoted_after:.1f} s; {len(acked)} acknowledged writes, {searches[0]} searches")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for name, p in procs.items():
            if name == "etcd":
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name, p in procs.items():
            if name != "etcd":
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        # postmasters Patroni left behind (it stops them on SIGTERM; a killed one cannot)
        for name, _, _ in NODES:
            pidfile = root / name / "postmaster.pid"
            if pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass
        if "etcd" in procs:
            procs["etcd"].terminate()
            procs["etcd"].wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
