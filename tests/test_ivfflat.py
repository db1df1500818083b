"""ivfflat against exact search, under concurrent inserts, VACUUM and a
crash (kill -9 of the postmaster on a cluster of its own, port 28842)."""
import random
import threading
import time

import numpy as np
import psycopg
import pytest

from cluster import Cluster
from vectors import clustered, distances, embedding_like, recall_at_k, text

DIM = 16


def load(conn, data, opclass="vector_l2_ops", lists=20, typ="vector"):
    conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, v {typ}({data.shape[1]}))")
    with conn.cursor().copy("COPY t FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v)))
    conn.execute(f"CREATE INDEX t_v_idx ON t USING ivfflat (v {opclass}) WITH (lists = {lists})")
    conn.execute("SET enable_seqscan = off")


@pytest.mark.parametrize("opclass,metric,op,typ", [
    ("vector_l2_ops", "l2", "<->", "vector"),
    ("vector_ip_ops", "ip", "<#>", "vector"),
    ("vector_cosine_ops", "cosine", "<=>", "vector"),
    ("halfvec_l2_ops", "l2", "<->", "halfvec"),
])
def test_every_list_probed_is_exact_and_few_probes_find_most(db, opclass, metric, op, typ):
    data = embedding_like(3000, DIM, seed=3) * (1 + np.arange(3000)[:, None] % 3)  # norms differ for ip
    data = data.astype(np.float16).astype(np.float32) if typ == "halfvec" else data
    load(db, data, opclass, lists=30, typ=typ)
    queries = embedding_like(40, DIM, seed=4)
    for probes, want in [(30, 1.0), (5, 0.85)]:
        db.execute(f"SET ivfflat.probes = {probes}")
        total = 0.0
        for q in queries:
            got = [r[0] for r in db.execute(f"SELECT id FROM t ORDER BY v {op} %s LIMIT 10", (text(q),))]
            total += recall_at_k(got, data, q, metric)
        assert total / len(queries) >= want, (probes, total / len(queries))


def test_rows_come_in_exact_order_within_the_probed_lists(db):
    data = clustered(2000, DIM, seed=5)
    load(db, data, lists=10)
    db.execute("SET ivfflat.probes = 10")
    q = clustered(1, DIM, seed=6)[0]
    rows = db.execute("SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 50", (text(q), text(q))).fetchall()
    d = [r[1] for r in rows]
    assert d == sorted(d)
    exact = np.argsort(distances(data, q, "l2"))[:50]
    assert [r[0] for r in rows] == exact.tolist()


def test_inserts_from_several_clients_and_vacuum_keep_every_row_findable(db):
    data = clustered(1500, DIM, seed=7)
    load(db, data[:500], lists=10)
    dsn = db.info.dsn

    def writer(w):
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(500 + w, 1500, 2):
                c.execute("INSERT INTO t VALUES (%s, %s)", (i, text(data[i])))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.execute("DELETE FROM t WHERE id % 3 = 0")
    db.execute("VACUUM t")
    db.execute("SET ivfflat.probes = 10")
    ids = [r[0] for r in db.execute("SELECT id FROM t ORDER BY v <-> %s", (text(data[0]),))]
    assert sorted(ids) == [i for i in range(1500) if i % 3 != 0]
    # each row is the first answer to its own vector
    db.execute("SET ivfflat.probes = 1")
    for i in random.Random(1).sample([i for i in range(1500) if i % 3 != 0], 50):
        nearest = db.execute("SELECT id, v <-> %s FROM t ORDER BY v <-> %s LIMIT 1", (text(data[i]), text(data[i]))).fetchone()
        assert nearest[1] == 0.0, i


def test_crash_during_inserts_loses_no_committed_row():
    c = Cluster(28842, "ivfcrash").init().start()
    try:
        data = clustered(4000, DIM, seed=8)
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION quiver")
            load(conn, data[:1000], lists=16)
        committed, lock, stop = set(range(1000)), threading.Lock(), threading.Event()

        def writer(w):
            try:
                with c.connect() as conn:
                    for i in range(1000 + w, 4000, 2):
                        if stop.is_set():
                            return
                        conn.execute("INSERT INTO t VALUES (%s, %s)", (i, text(data[i])))
                        with lock:
                            committed.add(i)
            except psycopg.OperationalError:
                pass  # the server died under us

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        time.sleep(2)
        c.kill9()
        stop.set()
        for t in threads:
            t.join()
        c.start()
        with c.connect() as conn:
            conn.execute("SET enable_seqscan = off")
            conn.execute("SET ivfflat.probes = 16")
            rows = {r[0] for r in conn.execute("SELECT id FROM t ORDER BY v <-> %s", (text(data[0]),))}
            assert committed <= rows and len(rows - committed) <= 2
            conn.execute("SET enable_seqscan = on")
            assert rows == {r[0] for r in conn.execute("SELECT id FROM t")}
            conn.execute("VACUUM t")
    finally:
        c.destroy()


def test_vacuum_frees_room_that_inserts_use_before_growing(db):
    data = clustered(3000, DIM, seed=9)
    load(db, data, lists=10)
    size = db.execute("SELECT pg_relation_size('t_v_idx')").fetchone()[0]
    db.execute("CREATE TEMP TABLE keep AS SELECT * FROM t")
    db.execute("DELETE FROM t")
    db.execute("VACUUM t")
    db.execute("INSERT INTO t SELECT * FROM keep")
    assert db.execute("SELECT pg_relation_size('t_v_idx')").fetchone()[0] == size
    db.execute("SET ivfflat.probes = 10")
    assert db.execute("SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> %s) s", (text(data[0]),)).fetchone()[0] == 3000
