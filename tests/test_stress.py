"""A bounded stress test on a cluster of its own (loopback port 28834):
3 clients insert, update and delete while a fourth searches and VACUUMs,
for about 40 s, with kill -9 of a backend (the postmaster then resets every
backend) and later of the postmaster itself. Afterwards every committed row
is where its client left it, found through the index by its own vector, and
the index passes index_check with no element unreachable."""
import json
import os
import random
import signal
import threading
import time

import numpy as np
import psycopg

from cluster import Cluster
from vectors import clustered, text

DIM = 32
ROWS = 3000
PORT = 28834


def test_churn_with_crashes_keeps_every_committed_row_reachable():
    c = Cluster(PORT, "stress").init("max_connections = 30\n").start()
    try:
        data = clustered(ROWS, DIM, seed=11)
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION quiver")
            conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, v vector({DIM}))")
            with conn.cursor().copy("COPY t FROM STDIN") as cp:
                for i, v in enumerate(data):
                    cp.write_row((i, text(v)))
            conn.execute("CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops)")
        # Each client owns the ids i with i % 3 == w, so no two clients ever race on
        # one row and a client's bookkeeping follows the order its statements ran in.
        states = [{i: text(v) for i, v in enumerate(data) if i % 3 == w} for w in range(3)]
        uncertains = [set() for _ in range(3)]  # ids whose last statement's outcome a crash hid
        stop = threading.Event()
        done = [0, 0, 0]
        errors = []

        def client(w):
            rng = random.Random(w)
            state, uncertain = states[w], uncertains[w]
            next_id = 100_000 * (w + 1) * 3 + w  # stays == w (mod 3)
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = psycopg.connect(c.dsn(), autocommit=True, connect_timeout=5)
                    op = rng.random()
                    pick = rng.choice(list(state)) if state else None
                    v = text(data[rng.randrange(ROWS)] + np.float32(0.05) * rng.random())
                    if op < 0.4 or pick is None:
                        key, sql, args = next_id, "INSERT INTO t VALUES (%s, %s)", (next_id, v)
                        next_id += 3
                    elif op < 0.7:
                        key, sql, args = pick, "UPDATE t SET v = %s WHERE id = %s", (v, pick)
                    else:
                        key, sql, args, v = pick, "DELETE FROM t WHERE id = %s", (pick,), None
                    uncertain.add(key)
                    affected = conn.execute(sql, args).rowcount
                    # An UPDATE or DELETE of a row whose crashed DELETE did commit
                    # affects nothing: the row is gone either way.
                    if v is None or affected == 0:
                        state.pop(key, None)
                    else:
                        state[key] = v
                    uncertain.discard(key)
                    done[w] += 1
                except psycopg.OperationalError:
                    conn = None  # the server crashed or restarts: the key stays uncertain
                    time.sleep(0.3)
                except psycopg.Error as e:  # noqa: BLE001 - anything else is a failure
                    errors.append(repr(e))
                    return

        def maintainer():
            rng = random.Random(99)
            conn = None
            while not stop.is_set():
                try:
                    if conn is None:
                        conn = psycopg.connect(c.dsn(), autocommit=True, connect_timeout=5)
                    if rng.random() < 0.1:
                        conn.execute("VACUUM t")
                    else:
                        q = text(data[rng.randrange(ROWS)])
                        rows = conn.execute("SELECT id FROM t ORDER BY v <-> %s LIMIT 10", (q,)).fetchall()
                        if len(rows) != 10:
                            errors.append(f"search returned {len(rows)} rows at {time.time() - started:.1f} s")
                            # what the index and the planner looked like then (a rare
                            # failure, once in about 15 runs, not yet explained)
                            try:
                                plan = [r[0] for r in conn.execute(
                                    "EXPLAIN ANALYZE SELECT id FROM t ORDER BY v <-> %s LIMIT 10", (q,))]
                                errors.append({"check": conn.execute("SELECT quiver.index_check('t_v_idx')").fetchone()[0],
                                               "rows": conn.execute("SELECT count(*) FROM t").fetchone()[0],
                                               "plan": plan})
                            except psycopg.Error as e:  # noqa: BLE001 - the failure is recorded already
                                errors.append(f"no diagnostics: {e!r}")
                except psycopg.OperationalError:
                    conn = None
                    time.sleep(0.3)
                except psycopg.Error as e:  # noqa: BLE001
                    errors.append(repr(e))
                    return

        started = time.time()
        threads = [threading.Thread(target=client, args=(w,)) for w in range(3)]
        threads.append(threading.Thread(target=maintainer))
        for t in threads:
            t.start()
        time.sleep(12)
        # kill -9 of one backend: the postmaster resets all of them and recovers
        with psycopg.connect(c.dsn(), autocommit=True) as admin:
            pids = [r[0] for r in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid() AND query LIKE '%t%'").fetchall()]
        assert pids, "no backend to kill"
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(14)
        # kill -9 of the postmaster and every backend: a power failure
        c.kill9()
        time.sleep(1)
        c.start()
        time.sleep(12)
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors[:5]
        assert sum(done) > 1000, f"only {sum(done)} statements committed"
        state = {k: v for s in states for k, v in s.items()}
        uncertain = set().union(*uncertains)

        with c.connect() as conn:
            rows = dict(conn.execute("SELECT id, v::text FROM t").fetchall())
            for key in set(rows) | set(state):
                if key in uncertain:
                    continue
                assert key in rows and key in state, key
                assert np.allclose(np.array(json.loads(rows[key])), np.array(json.loads(state[key])), atol=1e-6), key
            report = conn.execute("SELECT quiver.index_check('t_v_idx')").fetchone()[0]
            assert report["unreachable_live"] == 0 and report["live"] >= len(rows), report
            # every row, searched through the index by its own vector, is found:
            # nearly all among the 5 nearest at ef_search 100; the few a churned
            # graph ranks lower (search quality, measured by bench/churn.py,
            # not reachability) by a walk of everything reachable from the entry
            conn.execute("SET enable_seqscan = off")
            conn.execute("SET enable_hashjoin = off")
            conn.execute("SET enable_mergejoin = off")
            conn.execute("SET hnsw.ef_search = 100")
            far = [r[0] for r in conn.execute("SELECT t.id FROM t WHERE t.id NOT IN "
                                              "(SELECT s.id FROM t s ORDER BY s.v <-> t.v LIMIT 5)").fetchall()]
            assert len(far) <= len(rows) // 100, f"{len(far)} of {len(rows)} rows not among their own 5 nearest"
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            conn.execute("SET hnsw.max_scan_tuples = 10000000")
            for key in far:
                found = conn.execute("SELECT s.id FROM t s WHERE s.id + 0 = %s ORDER BY s.v <-> %s::vector LIMIT 1",
                                     (key, rows[key])).fetchall()
                assert found == [(key,)], f"row {key} not reachable through the index"
            conn.execute("RESET hnsw.iterative_scan")
            # INDEX_CLEANUP ON: with dead rows on under 2% of the table's pages
            # VACUUM leaves the indexes alone (PostgreSQL 14+), and the index
            # then rightly still counts their elements as live
            conn.execute("VACUUM (INDEX_CLEANUP ON) t")
            report = conn.execute("SELECT quiver.index_check('t_v_idx')").fetchone()[0]
            assert report["unreachable_live"] == 0 and report["live"] == len(rows), report
    finally:
        c.destroy()
