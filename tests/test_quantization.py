"""Binary quantization inside the hnsw index: codes in the index, candidates
ranked by code, rescored from the table; recall against exact search,
order, filters, vacuum, errors and the size it saves."""
import numpy as np
import psycopg
import pytest

from vectors import clustered, embedding_like, recall_at_k, text

DIM = 384
OPCLASSES = [
    ("vector", "vector_l2_ops", "<->", "l2"),
    ("vector", "vector_ip_ops", "<#>", "ip"),
    ("vector", "vector_cosine_ops", "<=>", "cosine"),
    ("halfvec", "halfvec_l2_ops", "<->", "l2"),
    ("halfvec", "halfvec_ip_ops", "<#>", "ip"),
    ("halfvec", "halfvec_cosine_ops", "<=>", "cosine"),
]


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load(db, data, typ="vector", dim=DIM, table="items", first_id=0):
    db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, v {typ}({dim}), cat int)")
    with db.cursor() as cur:
        with cur.copy(f"COPY {table} (id, v, cat) FROM STDIN") as cp:
            for i, v in enumerate(data, start=first_id):
                cp.write_row((i, text(v), i % 100))


def search(db, op, q, typ="vector", k=10, where="", table="items"):
    rows = db.execute(f"SELECT id, v {op} %s::{typ} FROM {table} {where} ORDER BY v {op} %s::{typ} LIMIT {k}",
                      (text(q), text(q))).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def mean_recall(db, op, metric, data, queries, typ="vector", ids=None):
    ids = np.arange(len(data)) if ids is None else np.asarray(ids)
    pos = {int(i): p for p, i in enumerate(ids)}
    rs = []
    for q in queries:
        got, _ = search(db, op, q, typ)
        rs.append(recall_at_k([pos[i] for i in got], data, q, metric))
    return float(np.mean(rs))


def embeddings(n, seed):
    """Sentence-embedding-like data (the same basis for every seed)."""
    return embedding_like(n, DIM, seed=seed)


def test_default_settings_reach_recall_095_on_384_dimensions(db):
    data, queries = embeddings(3000, 1), embeddings(60, 2)
    load(db, data)
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT id FROM items ORDER BY v <=> %s::vector LIMIT 10", (text(queries[0]),)).fetchall())
    assert "Index Scan using items_v_idx" in plan, plan
    r = mean_recall(db, "<=>", "cosine", data, queries)
    assert r >= 0.95, f"recall {r:.3f} at the default ef_search and oversampling"
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["ok"] and report["elements"] == 3000 and report["unreachable_live"] == 0, report
    assert report["quantization"] == "binary" and report["vector_bytes"] == DIM // 8 + 12


@pytest.mark.parametrize("typ,opclass,op,metric", OPCLASSES)
def test_every_quantizable_opclass_rescores_to_exact_order(db, typ, opclass, op, metric):
    data, queries = embedding_like(2000, 128, seed=11), embedding_like(30, 128, seed=12)
    load(db, data, typ, dim=128)
    db.execute(f"CREATE INDEX ON items USING hnsw (v {opclass}) WITH (quantization = 'binary')")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    if typ == "halfvec":
        data = data.astype(np.float16).astype(np.float32)
    rs = []
    for q in queries:
        ids, ds = search(db, op, q, typ, k=30)
        assert len(ids) == 30 and ds == sorted(ds), f"{opclass}: rows not in exact distance order"
        rs.append(recall_at_k(ids, data, q, metric))
    assert np.mean(rs) >= 0.95, f"{opclass}: recall {np.mean(rs):.3f}"


def test_rescore_off_returns_code_order_and_oversampling_buys_recall(db):
    data, queries = embeddings(3000, 3), embeddings(40, 4)
    load(db, data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    db.execute("SET enable_seqscan = off")
    recall = {}
    for os_ in (1, 4):
        db.execute(f"SET quiver.oversampling = {os_}")
        recall[os_] = mean_recall(db, "<=>", "cosine", data, queries)
    assert recall[4] > recall[1] and recall[4] >= 0.95, recall
    db.execute("SET quiver.rescore = off")
    db.execute("SET hnsw.ef_search = 20")
    unsorted = 0
    for q in queries:
        ids, ds = search(db, "<=>", q, k=20)
        assert len(ids) == 20 and len(set(ids)) == 20
        unsorted += ds != sorted(ds)
    # codes estimate distances: code order differs from exact order somewhere
    assert unsorted > 0
    db.execute("RESET quiver.rescore")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="quiver.oversampling"):
        db.execute("SET quiver.oversampling = 0.5")


def test_iterative_scan_with_a_filter_returns_k_rows_in_order(db):
    data = embeddings(5000, 5)
    load(db, data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    db.execute("SET enable_seqscan = off")
    q = embeddings(1, 6)[0]
    db.execute("SET hnsw.iterative_scan = off")
    few, _ = search(db, "<=>", q, where="WHERE cat = 7")
    assert len(few) < 10
    subset = [i for i in range(5000) if i % 100 == 7]
    for mode in ("relaxed_order", "strict_order"):
        db.execute(f"SET hnsw.iterative_scan = {mode}")
        got, ds = search(db, "<=>", q, where="WHERE cat = 7")
        assert len(got) == 10, mode
        r = recall_at_k([subset.index(i) for i in got], data[subset], q, "cosine")
        if mode == "strict_order":
            # each batch is rescored whole; a later batch's row nearer than
            # one already returned is dropped, which costs some recall
            assert ds == sorted(ds) and r >= 0.7, (mode, r)
        else:
            assert r >= 0.9, (mode, r)


def test_delete_vacuum_insert_keeps_recall(db):
    # 200 queries: with 40 the measured difference moved by 0.01 from run to run
    data, queries = embeddings(4000, 7), embeddings(200, 8)
    load(db, data[:3000])
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    db.execute("DELETE FROM items WHERE id % 2 = 0")
    db.execute("VACUUM items")
    load(db, data[3000:], first_id=3000)
    db.execute("SET enable_seqscan = off")
    ids = [i for i in range(4000) if i >= 3000 or i % 2 == 1]
    after = mean_recall(db, "<=>", "cosine", data[ids], queries, ids=ids)
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["deleted"] == 0 and report["live"] == len(ids) and report["unreachable_live"] == 0, report
    db.execute("SET max_parallel_maintenance_workers = 0")  # one thread: the same graph each run
    db.execute("REINDEX INDEX items_v_idx")
    fresh = mean_recall(db, "<=>", "cosine", data[ids], queries, ids=ids)
    # Inserts and VACUUM's repair choose neighbours by code distances, a
    # build by exact ones: over 200 queries the churned index measured
    # 0.968-0.975 against 0.9795 fresh, so the margin here is 0.02, not the
    # 0.01 full precision keeps (tests/test_hnsw.py).
    assert after >= fresh - 0.02, (after, fresh)


def test_index_built_by_inserts_into_an_empty_table(db):
    """No data at CREATE INDEX: the center is the origin and every element
    arrives through the insert path (codes compared to codes)."""
    data, queries = embeddings(2000, 9), embeddings(30, 10)
    db.execute(f"CREATE TABLE items (id int PRIMARY KEY, v vector({DIM}), cat int)")
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    load(db, data)
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    assert mean_recall(db, "<=>", "cosine", data, queries) >= 0.95
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["live"] == 2000 and report["unreachable_live"] <= 2, report


def test_codes_take_a_fraction_of_the_full_index(db):
    data = embeddings(3000, 13)
    load(db, data)
    db.execute("CREATE INDEX full_idx ON items USING hnsw (v vector_cosine_ops)")
    db.execute("CREATE INDEX bq_idx ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    full, bq = (db.execute(f"SELECT * FROM quiver.index_stats('{i}')").fetchone() for i in ("full_idx", "bq_idx"))
    cols = [d.name for d in db.execute("SELECT * FROM quiver.index_stats('bq_idx')").description]
    full, bq = dict(zip(cols, full)), dict(zip(cols, bq))
    assert full["quantization"] == "none" and full["vector_bytes"] == DIM * 4
    assert bq["quantization"] == "binary" and bq["vector_bytes"] == DIM // 8 + 12
    assert bq["vectors"] == 3000 and bq["dimensions"] == DIM and bq["metric"] == "cosine"
    assert bq["index_size"] * 5 <= full["index_size"], (bq, full)
    assert bq["bytes_per_vector"] < 400


@pytest.mark.parametrize("ddl,message", [
    ("CREATE INDEX ON items USING hnsw (b bit_hamming_ops) WITH (quantization = 'binary')",
     "binary quantization supports the vector and halfvec l2, ip and cosine operator classes, not bit_hamming_ops"),
    ("CREATE INDEX ON items USING hnsw (v vector_l1_ops) WITH (quantization = 'binary')",
     "binary quantization supports the vector and halfvec l2, ip and cosine operator classes, not l1"),
    ("CREATE INDEX ON items USING hnsw ((v + v) vector_l2_ops) WITH (quantization = 'binary')",
     "binary quantization needs a plain table column, not an expression"),
    ("CREATE INDEX ON items USING hnsw (v vector_l2_ops) WITH (quantization = 'pq')",
     'invalid value for enum option "quantization": pq'),
])
def test_what_cannot_be_quantized_is_refused_by_name(db, ddl, message):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, v vector(8), b bit(8))")
    db.execute("INSERT INTO items VALUES (1, '[1,2,3,4,5,6,7,8]', B'10101010')")
    with pytest.raises(psycopg.Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.execute(ddl)
    assert db.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'items'").fetchone()[0] == 1


def test_wrong_dimensions_and_nan_queries_are_errors(db):
    load(db, embeddings(200, 14))
    db.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops) WITH (quantization = 'binary')")
    db.execute("SET enable_seqscan = off")
    with pytest.raises(psycopg.errors.DataException, match="expected 384 dimensions, not 3"):
        db.execute("SELECT id FROM items ORDER BY v <=> '[1,2,3]' LIMIT 5").fetchall()
    with pytest.raises(psycopg.Error, match="NaN not allowed in vector"):
        db.execute("SELECT id FROM items ORDER BY v <=> ('[' || repeat('NaN,', 383) || 'NaN]')::vector LIMIT 5")
