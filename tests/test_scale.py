"""Scale out: sharded collections merged by Postgres, promotion of a
synchronous standby under load, logical replication of a collection table.
Own clusters on loopback ports 28835-28838."""
import threading
import time

import numpy as np
import psycopg

from cluster import Cluster, as_postgres, PG_BIN
from vectors import clustered, recall_at_k, text

DIM = 32


def fill(conn, table, data, first=0):
    with conn.cursor().copy(f"COPY {table} (id, embedding) FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((first + i, text(v)))


def top(conn, table, q, k=10, op="<->"):
    return [r[0] for r in conn.execute(
        f"SELECT id FROM {table} ORDER BY embedding {op} %s::vector LIMIT {k}", (text(q),)).fetchall()]


def test_sharded_top_k_is_the_true_top_k(db):
    """Four hash shards, one index each, merged by MergeAppend: the top 10
    over the parent equals exact search on the whole set, and recall at the
    same ef_search is no worse than one table's."""
    data = clustered(4000, DIM, seed=91)
    queries = clustered(40, DIM, seed=92)
    db.execute(f"SELECT quiver.create_collection('one', {DIM}, distance => 'l2')")
    db.execute(f"SELECT quiver.create_collection('four', {DIM}, distance => 'l2', shards => 4)")
    fill(db, "one", data)
    fill(db, "four", data)
    db.execute("ANALYZE one")
    db.execute("ANALYZE four")
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT id FROM four ORDER BY embedding <-> %s::vector LIMIT 10", (text(queries[0]),)))
    assert "Merge Append" in plan and plan.count("Index Scan using four_shard") == 4, plan
    assert db.execute("SELECT count(*) FROM four_shard0").fetchone()[0] < 4000  # really split
    db.execute("SET hnsw.ef_search = 400")
    for q in queries:
        exact = [int(i) for i in np.argsort(np.linalg.norm(data - q, axis=1), kind="stable")[:10]]
        assert top(db, "four", q) == exact
    db.execute("SET hnsw.ef_search = 40")
    r1 = np.mean([recall_at_k(top(db, "one", q), data, q, "l2") for q in queries])
    r4 = np.mean([recall_at_k(top(db, "four", q), data, q, "l2") for q in queries])
    assert r4 >= r1 - 0.01, (r1, r4)


def test_ef_search_is_split_among_shards(db):
    """quiver.sharded_ef_search: split (the default) searches each of n hash
    shards with ceil(ef_search / sqrt(n)); full with ef_search. Without
    iterative scans a scan returns at most its beam of rows, which shows the
    beam each shard got."""
    data = clustered(2000, DIM, seed=93)
    db.execute(f"SELECT quiver.create_collection('one', {DIM}, distance => 'l2')")
    db.execute(f"SELECT quiver.create_collection('four', {DIM}, distance => 'l2', shards => 4)")
    db.execute(f"SELECT quiver.create_collection('three', {DIM}, distance => 'l2', shards => 3)")
    for t in ("one", "four", "three"):
        fill(db, t, data)
        db.execute(f"ANALYZE {t}")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 16")
    q = clustered(1, DIM, seed=94)[0]
    assert db.execute("SHOW quiver.sharded_ef_search").fetchone()[0] == "split"
    rows = {t: len(top(db, t, q, k=200)) for t in ("one", "four", "three")}
    assert rows == {"one": 16, "four": 4 * 8, "three": 3 * 10}, rows  # ceil(16/2), ceil(16/1.73)
    db.execute("SET quiver.sharded_ef_search = full")
    rows = {t: len(top(db, t, q, k=200)) for t in ("one", "four", "three")}
    assert rows == {"one": 16, "four": 4 * 16, "three": 3 * 16}, rows
    # the top 10 stays the merged best of all shards either way
    db.execute("SET hnsw.ef_search = 200")
    exact = [int(i) for i in np.argsort(np.linalg.norm(data - q, axis=1), kind="stable")[:10]]
    assert top(db, "four", q) == exact
    db.execute("RESET quiver.sharded_ef_search")
    assert top(db, "four", q) == exact


def test_promoting_a_synchronous_standby_under_load_keeps_every_committed_row():
    primary = Cluster(28835, "sync-primary").init().start()
    standby = Cluster(28836, "sync-standby")
    try:
        with primary.connect() as conn:
            conn.execute("CREATE EXTENSION quiver")
            conn.execute(f"SELECT quiver.create_collection('docs', {DIM}, distance => 'l2')")
            fill(conn, "docs", clustered(1000, DIM, seed=93))
        as_postgres([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", "28835", "-U", "postgres",
                     "-D", str(standby.data), "-R", "-X", "stream"])
        standby.conf("\nport = 28836\nunix_socket_directories = '%s'\nhot_standby = on\n" % standby.root)
        standby.start()
        # Synchronous from now on (earlier commits would wait for a standby
        # that did not exist yet): a commit returns once the standby has it.
        with primary.connect() as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.time() + 30
            while conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'").fetchone()[0] == 0:
                assert time.time() < deadline, "standby never became synchronous"
                time.sleep(0.2)
        committed, lock, stop, errors = set(range(1000)), threading.Lock(), threading.Event(), []
        extra = clustered(4000, DIM, seed=94)

        def writer(w):
            try:
                with primary.connect() as c:
                    i = w
                    while not stop.is_set() and i < len(extra):
                        c.execute("INSERT INTO docs (id, embedding) VALUES (%s, %s)", (10_000 + i, text(extra[i])))
                        with lock:
                            committed.add(10_000 + i)  # synchronous commit: on the standby too
                        i += 2
            except psycopg.Error:
                pass  # the primary goes away below; rows it did not confirm are not counted

        def reader():
            try:
                with standby.connect() as c:
                    while not stop.is_set():
                        top(c, "docs", extra[0])
            except psycopg.OperationalError:
                pass
            except psycopg.Error as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)] + [threading.Thread(target=reader)]
        for t in threads:
            t.start()
        time.sleep(3)
        primary.kill9()  # the old primary is gone, mid-write
        as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(standby.data), "-w", "promote"])
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        with standby.connect() as s:
            assert not s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            # An insert in flight at the kill wrote its element but never
            # committed: VACUUM removes such elements, then one per row.
            s.execute("VACUUM (INDEX_CLEANUP ON) docs")
            report = s.execute("SELECT quiver.index_check('docs_embedding_idx')").fetchone()[0]
            ids = {r[0] for r in s.execute("SELECT id FROM docs").fetchall()}
            assert committed <= ids, len(committed - ids)
            assert report["ok"] and report["elements"] == len(ids) and report["unreachable_live"] == 0
            # the promoted server's index keeps taking inserts and finds them
            base = np.array(clustered(1000, DIM, seed=93)[0])
            s.execute("INSERT INTO docs (id, embedding) VALUES (99999, %s)", (text(base + 0.001),))
            s.execute("SET enable_seqscan = off")
            s.execute("SET hnsw.ef_search = 100")
            assert sorted(top(s, "docs", base + 0.001, k=2)) == [0, 99999]
            # every committed row is found through the index by its own vector
            for i in sorted(committed)[:: max(1, len(committed) // 200)]:
                v = s.execute("SELECT embedding::text FROM docs WHERE id = %s", (i,)).fetchone()[0]
                assert i in [r[0] for r in s.execute(
                    "SELECT id FROM docs ORDER BY embedding <-> %s::vector LIMIT 3", (v,)).fetchall()], i
    finally:
        standby.destroy()
        primary.destroy()


def test_logical_replication_of_a_collection():
    pub = Cluster(28837, "publisher").init("wal_level = logical\n").start()
    sub = Cluster(28838, "subscriber").init("wal_level = logical\n").start()
    try:
        data = clustered(1500, DIM, seed=95)
        for c in (pub, sub):
            with c.connect() as conn:
                conn.execute("CREATE EXTENSION quiver")
                # the subscriber builds its own index on its own copy
                conn.execute(f"SELECT quiver.create_collection('docs', {DIM}, distance => 'l2')")
        with pub.connect() as p:
            fill(p, "docs", data[:1000])
            p.execute("CREATE PUBLICATION docs_pub FOR TABLE docs")
        with sub.connect() as s:
            s.execute("CREATE SUBSCRIPTION docs_sub CONNECTION 'host=127.0.0.1 port=28837 user=postgres dbname=postgres' "
                      "PUBLICATION docs_pub")
        with pub.connect() as p:
            fill(p, "docs", data[1000:], first=1000)
            p.execute("UPDATE docs SET embedding = %s WHERE id = 5", (text(data[1499] + 0.001),))
            p.execute("DELETE FROM docs WHERE id BETWEEN 100 AND 199")
            p.execute("UPDATE docs SET payload = '{\"v\": 2}' WHERE id = 7")
            expected = sorted(r[0] for r in p.execute("SELECT id FROM docs").fetchall())
        deadline = time.time() + 60
        with sub.connect() as s:
            while time.time() < deadline:
                got = sorted(r[0] for r in s.execute("SELECT id FROM docs").fetchall())
                moved = s.execute("SELECT embedding = %s::vector FROM docs WHERE id = 5", (text(data[1499] + 0.001),)).fetchone()
                if got == expected and moved and moved[0]:
                    break
                time.sleep(0.3)
            assert got == expected
            assert s.execute("SELECT payload->>'v' FROM docs WHERE id = 7").fetchone()[0] == "2"
            s.execute("SET enable_seqscan = off")
            s.execute("SET hnsw.ef_search = 200")
            live = {i: data[i] for i in expected}
            live[5] = data[1499] + 0.001
            ids = np.array(list(live))
            vecs = np.array([live[i] for i in ids])
            for q in clustered(20, DIM, seed=96):
                exact = [int(ids[j]) for j in np.argsort(np.linalg.norm(vecs - q, axis=1), kind="stable")[:10]]
                assert top(s, "docs", q) == exact
            assert top(s, "docs", data[1499] + 0.001, k=2)[:2] in ([5, 1499], [1499, 5])
            s.execute("DROP SUBSCRIPTION docs_sub")
    finally:
        sub.destroy()
        pub.destroy()
