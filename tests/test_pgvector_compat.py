"""pgvector behaviours that need a live server's statistics to observe."""
import time


def idx_scan(conn, index):
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s", (index,)).fetchone()[0]


def test_hnsw_scans_count_in_pg_stat_user_indexes(db):
    db.execute("CREATE TABLE t (id int, v vector(3))")
    db.execute("INSERT INTO t SELECT i, ARRAY[i, i % 7, 1] FROM generate_series(1, 100) i")
    db.execute("CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    before = idx_scan(db, "t_v_idx")
    for _ in range(3):
        assert len(db.execute("SELECT id FROM t ORDER BY v <-> '[5,5,1]' LIMIT 5").fetchall()) == 5
    deadline = time.time() + 10
    while idx_scan(db, "t_v_idx") != before + 3 and time.time() < deadline:
        time.sleep(0.2)
    assert idx_scan(db, "t_v_idx") == before + 3


def test_ivfflat_scans_count_in_pg_stat_user_indexes(db):
    db.execute("CREATE TABLE t (id int, v vector(3))")
    db.execute("INSERT INTO t SELECT i, ARRAY[i, i % 7, 1] FROM generate_series(1, 100) i")
    db.execute("CREATE INDEX t_v_ivf ON t USING ivfflat (v vector_l2_ops) WITH (lists = 2)")
    db.execute("SET enable_seqscan = off")
    before = idx_scan(db, "t_v_ivf")
    for _ in range(2):
        assert len(db.execute("SELECT id FROM t ORDER BY v <-> '[5,5,1]' LIMIT 5").fetchall()) == 5
    deadline = time.time() + 10
    while idx_scan(db, "t_v_ivf") != before + 2 and time.time() < deadline:
        time.sleep(0.2)
    assert idx_scan(db, "t_v_ivf") == before + 2


def test_build_phases_are_named_in_pg_stat_progress_create_index(db):
    """A second session watches both builds; every phase it sees has a
    name, and the long ones (loading, linking, k-means) are seen."""
    import threading

    import psycopg

    db.execute("CREATE TABLE big (v vector(32))")
    db.execute("INSERT INTO big SELECT array_agg(random())::vector FROM generate_series(1, 32 * 60000) g GROUP BY g % 60000")
    seen, stop = set(), threading.Event()

    def watch():
        with psycopg.connect(db.info.dsn, autocommit=True) as c:
            while not stop.is_set():
                for (phase,) in c.execute("SELECT phase FROM pg_stat_progress_create_index"):
                    seen.add(phase)
                time.sleep(0.005)

    w = threading.Thread(target=watch)
    w.start()
    try:
        db.execute("CREATE INDEX ON big USING hnsw (v vector_l2_ops)")
        db.execute("CREATE INDEX ON big USING ivfflat (v vector_l2_ops) WITH (lists = 200)")
    finally:
        stop.set()
        w.join()
    names = {"initializing", "loading tuples", "linking the graph", "writing pages",
             "performing k-means", "assigning tuples"}
    assert seen, "no build was seen"
    allowed = {"initializing"} | {"building index: " + n for n in names}
    assert seen <= allowed, seen
    assert "building index: linking the graph" in seen, seen
    assert {"building index: performing k-means", "building index: assigning tuples"} & seen, seen
