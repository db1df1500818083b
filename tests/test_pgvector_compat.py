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
