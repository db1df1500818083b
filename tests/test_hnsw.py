"""The hnsw index on the shared test cluster: recall for every opclass,
order, iterative scans, vacuum, REINDEX, bad input."""
import numpy as np
import psycopg
import pytest

from vectors import bits_text, clustered, recall_at_k, text

OPCLASSES = [
    ("vector", "vector_l2_ops", "<->", "l2"),
    ("vector", "vector_ip_ops", "<#>", "ip"),
    ("vector", "vector_cosine_ops", "<=>", "cosine"),
    ("vector", "vector_l1_ops", "<+>", "l1"),
    ("halfvec", "halfvec_l2_ops", "<->", "l2"),
    ("halfvec", "halfvec_ip_ops", "<#>", "ip"),
    ("halfvec", "halfvec_cosine_ops", "<=>", "cosine"),
    ("halfvec", "halfvec_l1_ops", "<+>", "l1"),
    ("bit", "bit_hamming_ops", "<~>", "hamming"),
]
DIM = 64


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def load(db, typ, data, ids=None, table="items"):
    col = f"bit({DIM})" if typ == "bit" else f"{typ}({DIM})"
    db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id int PRIMARY KEY, v {col}, cat int)")
    ids = range(len(data)) if ids is None else ids
    with db.cursor() as cur:
        with cur.copy(f"COPY {table} (id, v, cat) FROM STDIN") as cp:
            for i, v in zip(ids, data):
                cp.write_row((i, bits_text(v) if typ == "bit" else text(v), i % 100))


def query(db, typ, op, q, k=10, where="", table="items"):
    lit = bits_text(q) if typ == "bit" else text(q)
    cast = f"bit({DIM})" if typ == "bit" else typ
    rows = db.execute(f"SELECT id FROM {table} {where} ORDER BY v {op} %s::{cast} LIMIT {k}",
                      (lit,)).fetchall()
    return [r[0] for r in rows]


def mean_recall(db, typ, op, metric, data, queries, where_ids=None):
    rs = []
    for q in queries:
        got = query(db, typ, op, q)
        rs.append(recall_at_k(got, data, q, metric))
    return float(np.mean(rs))


@pytest.mark.parametrize("typ,opclass,op,metric", OPCLASSES)
def test_recall_at_ef_search_200_for_every_opclass(db, typ, opclass, op, metric):
    data = clustered(3000, DIM, seed=11)
    queries = clustered(60, DIM, seed=12)
    if metric == "ip":
        # Inner-product workloads index unit-norm embeddings (then <#> ranks
        # like <=>); raw-norm data is covered by the test below.
        data, queries = unit(data), unit(queries)
    load(db, typ, data)
    db.execute(f"CREATE INDEX items_v_idx ON items USING hnsw (v {opclass})")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 200")
    plan = "\n".join(r[0] for r in db.execute(
        f"EXPLAIN SELECT id FROM items ORDER BY v {op} %s::{f'bit({DIM})' if typ == 'bit' else typ} LIMIT 10",
        (bits_text(queries[0]) if typ == "bit" else text(queries[0]),)).fetchall())
    assert "Index Scan using items_v_idx" in plan, plan
    if typ == "halfvec":
        data = data.astype(np.float16).astype(np.float32)
    r = mean_recall(db, typ, op, metric, data, queries)
    assert r >= 0.99, f"{opclass}: recall {r:.3f}"
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["elements"] == 3000 and report["ok"]


def test_inner_product_on_raw_norm_vectors(db):
    """Maximum inner product over vectors of norms 2 to 6 is harder for any
    graph index (pgvector 0.8.6 reaches 0.95 on this data at ef_search 200)."""
    data = clustered(3000, DIM, seed=11)
    queries = clustered(60, DIM, seed=12)
    load(db, "vector", data)
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_ip_ops)")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 200")
    assert mean_recall(db, "vector", "<#>", "ip", data, queries) >= 0.96


@pytest.mark.parametrize("how", ["build", "inserts"])
def test_inner_product_recall_on_vectors_of_varying_norm(db, how):
    """pgvector's TAP 024/025 case: 10,000 halfvec(10) of 2 * random() *
    random(), uniform queries, the 20 largest inner products at the default
    ef_search (40), after a build and after single-row inserts. Linked by L2
    this measured 0.85-0.94; linked by the inner product with filled lists,
    0.995-1.0."""
    rng = np.random.default_rng(24)
    data = (2 * rng.random((10000, 10)) * rng.random((10000, 10))).astype(np.float16)
    queries = rng.random((20, 10)).astype(np.float32)
    db.execute("CREATE TABLE ip (id int PRIMARY KEY, v halfvec(10))")
    if how == "inserts":
        db.execute("CREATE INDEX ip_v_idx ON ip USING hnsw (v halfvec_ip_ops)")
    with db.cursor().copy("COPY ip FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v.astype(np.float32))))
    if how == "build":
        db.execute("CREATE INDEX ip_v_idx ON ip USING hnsw (v halfvec_ip_ops)")
    db.execute("SET enable_seqscan = off")
    exact = data.astype(np.float32)
    correct = 0
    for q in queries:
        want = set(np.argsort(-(exact @ q), kind="stable")[:20].tolist())
        got = [r[0] for r in db.execute("SELECT id FROM ip ORDER BY v <#> %s::halfvec LIMIT 20", (text(q),))]
        assert len(got) == 20
        correct += len(want.intersection(got))
    recall = correct / (20 * len(queries))
    assert recall >= 0.98, recall
    # By inner product a small-norm element is nobody's near neighbour: a
    # later insert's pruning can take its last way in (46 of 10,000 in one
    # run) until VACUUM relinks it; a build repairs before it ends.
    report = db.execute("SELECT quiver.index_check('ip_v_idx')").fetchone()[0]
    assert report["live"] == 10000 and report["unreachable_live"] <= (0 if how == "build" else 100), report
    db.execute("VACUUM ip")
    report = db.execute("SELECT quiver.index_check('ip_v_idx')").fetchone()[0]
    assert report["live"] == 10000 and report["unreachable_live"] == 0, report


def test_index_built_by_inserts_reaches_recall(db):
    data = clustered(3000, DIM, seed=21)
    queries = clustered(50, DIM, seed=22)
    db.execute(f"CREATE TABLE items (id int PRIMARY KEY, v vector({DIM}), cat int)")
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    load(db, "vector", data)
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 200")
    assert mean_recall(db, "vector", "<->", "l2", data, queries) >= 0.99
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["live"] == 3000 and report["unreachable_live"] <= 3, report


def test_rows_come_back_in_exact_distance_order(db):
    data = clustered(2000, DIM, seed=31)
    load(db, "vector", data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_cosine_ops)")
    db.execute("SET enable_seqscan = off")
    q = clustered(1, DIM, seed=32)[0]
    rows = db.execute("SELECT id, v <=> %s::vector AS d FROM items ORDER BY v <=> %s::vector LIMIT 40",
                      (text(q), text(q))).fetchall()
    ds = [r[1] for r in rows]
    assert len(rows) == 40 and ds == sorted(ds)


def test_iterative_scan_returns_k_rows_under_a_selective_filter(db):
    data = clustered(5000, DIM, seed=41)
    load(db, "vector", data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    q = clustered(1, DIM, seed=42)[0]
    where = "WHERE cat = 7"  # 1% of rows
    db.execute("SET hnsw.iterative_scan = off")
    few = query(db, "vector", "<->", q, where=where)
    assert len(few) < 10
    for mode in ("relaxed_order", "strict_order"):
        db.execute(f"SET hnsw.iterative_scan = {mode}")
        got = query(db, "vector", "<->", q, where=where)
        assert len(got) == 10, mode
        subset = [i for i in range(5000) if i % 100 == 7]
        r = recall_at_k([subset.index(i) for i in got], data[subset], q, "l2")
        assert r >= 0.9, (mode, r)


def test_iterative_scan_past_max_scan_tuples_returns_what_it_measured(db):
    """Past hnsw.max_scan_tuples the walk stops, but the candidates it
    measured are still returned, nearest first (pgvector's behaviour): a
    1% filter with a limit of 2,000 measured elements still fills LIMIT 10
    (before, the scan returned 1 row with a limit of 600)."""
    data = clustered(5000, DIM, seed=43)
    load(db, "vector", data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 10")
    db.execute("SET hnsw.max_scan_tuples = 2000")
    q = clustered(1, DIM, seed=44)[0]
    subset = [i for i in range(5000) if i % 100 == 7]
    for mode in ("relaxed_order", "strict_order"):
        db.execute(f"SET hnsw.iterative_scan = {mode}")
        rows = db.execute("SELECT id, v <-> %s AS d FROM items WHERE cat = 7 ORDER BY v <-> %s LIMIT 10",
                          (text(q), text(q))).fetchall()
        assert len(rows) == 10, (mode, rows)
        assert all(i % 100 == 7 for i, _ in rows)
        if mode == "strict_order":
            assert [d for _, d in rows] == sorted(d for _, d in rows)
        r = recall_at_k([subset.index(i) for i, _ in rows], data[subset], q, "l2")
        assert r >= 0.5, (mode, r)


def test_delete_vacuum_insert_keeps_recall(db):
    data = clustered(4000, DIM, seed=51)
    queries = clustered(50, DIM, seed=52)
    load(db, "vector", data[:3000])
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    fresh = mean_recall(db, "vector", "<->", "l2", data[:3000], queries)
    db.execute("DELETE FROM items WHERE id % 2 = 0")
    db.execute("VACUUM items")
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    # VACUUM unlinked and freed the deleted elements
    assert report["deleted"] == 0 and report["live"] == 1500 and report["elements"] == 1500, report
    assert report["unreachable_live"] == 0, report
    load(db, "vector", data[3000:], ids=range(3000, 4000))
    live = [i for i in range(4000) if i >= 3000 or i % 2 == 1]
    after = []
    for q in queries:
        got = query(db, "vector", "<->", q)
        after.append(recall_at_k([live.index(i) for i in got], data[live], q, "l2"))
    assert np.mean(after) >= fresh - 0.01, (fresh, np.mean(after))


def test_hamming_recall_after_deleting_three_quarters(db):
    # pgvector's TAP 022: random 52-bit codes with m = 4, ef_construction = 8,
    # three quarters deleted and vacuumed; recall of the 20 nearest counts
    # every row tied with the 20th as a right answer. Hamming distances are
    # small integers, so the neighbour heuristic meets ties everywhere.
    rng = np.random.default_rng(22)
    codes = rng.integers(0, 2, size=(10000, 52), dtype=np.uint8)
    db.execute("CREATE TABLE b (id int, v bit(52)) WITH (autovacuum_enabled = false)")
    with db.cursor().copy("COPY b FROM STDIN") as cp:
        for i, c in enumerate(codes, start=1):
            cp.write_row((i, "".join(map(str, c))))
    db.execute("CREATE INDEX ON b USING hnsw (v bit_hamming_ops) WITH (m = 4, ef_construction = 8)")
    db.execute("DELETE FROM b WHERE id > 2500")
    db.execute("VACUUM b")
    live = codes[:2500]
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    correct = 0
    queries = rng.integers(0, 2, size=(40, 52), dtype=np.uint8)
    for q in queries:
        dist = (live != q).sum(axis=1)
        right = set((np.flatnonzero(dist <= np.sort(dist)[19]) + 1).tolist())
        got = [r[0] for r in db.execute("SELECT id FROM b ORDER BY v <~> %s::bit(52) LIMIT 20",
                                        ("".join(map(str, q)),))]
        assert len(got) == 20
        correct += len(right.intersection(got))
    recall = correct / (20 * len(queries))
    # measured 0.89-0.92 over four seeds; 0.79-0.83 while VACUUM's repair
    # searches found no start below a deleted entry point (pgvector asks 0.80)
    assert recall >= 0.85, recall


def test_vacuum_reuses_the_space_of_deleted_elements(db):
    """Churn (insert a batch, delete it, VACUUM) must not grow the index
    without bound: freed space goes to later inserts. Answers stay exact
    against brute force on what is left."""
    data = clustered(3000, DIM, seed=71)
    batch = clustered(1000, DIM, seed=72)
    queries = clustered(30, DIM, seed=73)
    load(db, "vector", data)
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    sizes = []
    for rnd in range(6):
        load(db, "vector", batch, ids=range(10_000 + rnd * 1000, 11_000 + rnd * 1000))
        db.execute("DELETE FROM items WHERE id >= 10000")
        db.execute("VACUUM items")
        sizes.append(db.execute("SELECT pg_relation_size('items_v_idx')").fetchone()[0])
    # the first round grows the index by one batch; later rounds reuse it
    assert sizes[-1] <= sizes[0] * 1.05, sizes
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["elements"] == 3000 and report["deleted"] == 0 and report["unreachable_live"] == 0, report
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    r = mean_recall(db, "vector", "<->", "l2", data, queries)
    assert r >= 0.97, r


def test_vacuum_reuses_the_pages_of_vectors_kept_apart(db):
    """At 2,000 dimensions every vector is an item of its own, about a page:
    churn must reuse the pages VACUUM frees (a vector was sent to a new page
    whenever the free space map still offered the page its element had just
    taken: 310 -> 517 pages in the rounds below, now flat)."""
    rng = np.random.default_rng(81)
    db.execute("CREATE TABLE w (id int PRIMARY KEY, v vector(2000)) WITH (autovacuum_enabled = false)")

    def add(first, n):
        with db.cursor().copy("COPY w FROM STDIN") as cp:
            for i in range(first, first + n):
                cp.write_row((i, text(rng.random(2000, dtype=np.float32))))

    add(0, 300)
    db.execute("CREATE INDEX w_v_idx ON w USING hnsw (v vector_l2_ops)")
    sizes = []
    for rnd in range(6):
        db.execute("DELETE FROM w WHERE id %% 3 = %s", (rnd % 3,))
        add(1000 * (rnd + 1), 100)
        db.execute("VACUUM w")
        sizes.append(db.execute("SELECT pg_relation_size('w_v_idx') / 8192").fetchone()[0])
    # the first round's inserts come before any page is free; later rounds reuse
    assert sizes[-1] <= sizes[0] + 10, sizes
    report = db.execute("SELECT quiver.index_check('w_v_idx')").fetchone()[0]
    live = db.execute("SELECT count(*) FROM w").fetchone()[0]
    assert report["live"] == live == report["vectors_apart"] and report["unreachable_live"] == 0, report


def test_reindex_and_create_index_concurrently(db):
    data = clustered(1500, DIM, seed=61)
    load(db, "vector", data)
    db.execute("CREATE INDEX CONCURRENTLY items_v_idx ON items USING hnsw (v vector_l2_ops) WITH (m = 8, ef_construction = 32)")
    db.execute("REINDEX INDEX items_v_idx")
    db.execute("REINDEX INDEX CONCURRENTLY items_v_idx")
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["elements"] == 1500 and report["m"] == 8 and report["ef_construction"] == 32


def test_nulls_and_zero_vectors_are_skipped(db):
    db.execute("CREATE TABLE items (id int, v vector(3))")
    db.execute("INSERT INTO items VALUES (1, '[1,2,3]'), (2, NULL), (3, '[0,0,0]'), (4, '[3,2,1]')")
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_cosine_ops)")
    db.execute("INSERT INTO items VALUES (5, NULL), (6, '[0,0,0]'), (7, '[1,1,1]')")
    db.execute("SET enable_seqscan = off")
    ids = [r[0] for r in db.execute("SELECT id FROM items ORDER BY v <=> '[1,2,3]' LIMIT 10").fetchall()]
    assert ids == [1, 7, 4]
    assert db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]["elements"] == 3


def test_errors_name_the_problem(db):
    db.execute("CREATE TABLE items (id int, v vector(3), u vector)")
    db.execute("INSERT INTO items VALUES (1, '[1,2,3]', '[1,2]')")
    db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    with pytest.raises(psycopg.errors.DataException, match="expected 3 dimensions, not 2"):
        db.execute("SELECT id FROM items ORDER BY v <-> '[1,2]' LIMIT 1").fetchall()
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="column does not have dimensions"):
        db.execute("CREATE INDEX ON items USING hnsw (u vector_l2_ops)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="ef_construction must be greater than or equal to 2 \\* m"):
        db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops) WITH (m = 40, ef_construction = 64)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="value 1 out of bounds for option \"m\""):
        db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops) WITH (m = 1)")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="column cannot have more than"):
        db.execute("CREATE TABLE wide (v vector(4000))")
        db.execute("CREATE INDEX ON wide USING hnsw (v vector_l2_ops)")
    with pytest.raises(psycopg.errors.WrongObjectType, match="not an hnsw index"):
        db.execute("CREATE INDEX items_id ON items (id)")
        db.execute("SELECT quiver.index_check('items_id')")


def test_build_beyond_maintenance_work_mem_spills_and_says_so(db):
    data = clustered(4000, DIM, seed=71)
    queries = clustered(30, DIM, seed=72)
    load(db, "vector", data)
    notices = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("SET maintenance_work_mem = '1MB'")
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    assert any("no longer fits into maintenance_work_mem" in n for n in notices), notices
    report = db.execute("SELECT quiver.index_check('items_v_idx')").fetchone()[0]
    assert report["elements"] == 4000
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 200")
    assert mean_recall(db, "vector", "<->", "l2", data, queries) >= 0.98


def test_unlogged_table(db):
    data = clustered(500, DIM, seed=81)
    db.execute(f"CREATE UNLOGGED TABLE items (id int PRIMARY KEY, v vector({DIM}), cat int)")
    load(db, "vector", data)
    db.execute("CREATE INDEX ON items USING hnsw (v vector_l2_ops)")
    db.execute("SET enable_seqscan = off")
    assert query(db, "vector", "<->", data[5])[0] == 5


def test_iterative_scans_under_a_selective_filter_cost_what_they_walk(db):
    """With hnsw.iterative_scan on, LIMIT k under a filter that passes 0.5% of
    the rows walks about k / 0.005 candidates: the planner must price that,
    and take the filter's btree and a sort instead; under a filter that
    passes half the index stays."""
    n = 100_000
    data = clustered(n, 16, seed=93)
    db.execute("CREATE TABLE items (id int PRIMARY KEY, v vector(16), cat int, half int)")
    with db.cursor().copy("COPY items (id, v, cat, half) FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v), i % 200, i % 2))
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    db.execute("CREATE INDEX ON items (cat)")
    db.execute("CREATE INDEX ON items (half)")
    db.execute("ANALYZE items")
    q = text(data[0])

    def plan(where):
        return "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT id FROM items WHERE {where} ORDER BY v <-> '{q}' LIMIT 10").fetchall())

    db.execute("SET hnsw.iterative_scan = relaxed_order")
    assert "items_v_idx" not in plan("cat = 7"), plan("cat = 7")
    assert "Index Scan using items_v_idx" in plan("half = 1"), plan("half = 1")
    got = [r[0] for r in db.execute(f"SELECT id FROM items WHERE cat = 7 ORDER BY v <-> '{q}' LIMIT 10").fetchall()]
    exact = sorted((i for i in range(n) if i % 200 == 7), key=lambda i: float(np.sum((data[i] - data[0]) ** 2)))[:10]
    assert got == exact


def test_planner_uses_the_index_for_toasted_vectors(db):
    """784-dimension vectors live in TOAST, which a sequential scan's cost
    ignores; the index must still win for ORDER BY ... LIMIT (at ef_search 200 a
    3,000-row graph is mostly read, and an exact scan is a fair choice)."""
    data = clustered(3000, 784, seed=91)
    db.execute("CREATE TABLE items (id int PRIMARY KEY, v vector(784), cat int)")
    with db.cursor().copy("COPY items (id, v, cat) FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v), i % 100))
    db.execute("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops)")
    db.execute("ANALYZE items")
    q = text(data[0])
    for ef in (10, 40, 100):
        db.execute(f"SET hnsw.ef_search = {ef}")
        plan = "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT id FROM items ORDER BY v <-> '{q}' LIMIT 10").fetchall())
        assert "Index Scan using items_v_idx" in plan, (ef, plan)
    # a selective filter on an indexed column makes the exact path cheaper
    db.execute("CREATE INDEX ON items (id)")
    plan = "\n".join(r[0] for r in db.execute(
        f"EXPLAIN SELECT id FROM items WHERE id < 5 ORDER BY v <-> '{q}' LIMIT 10").fetchall())
    assert "items_v_idx" not in plan, plan


@pytest.mark.parametrize("opclass,op", [("sparsevec_l2_ops", "<->"), ("sparsevec_ip_ops", "<#>"),
                                        ("sparsevec_cosine_ops", "<=>"), ("sparsevec_l1_ops", "<+>")])
def test_sparsevec_recall_against_exact_search(db, opclass, op):
    """3,000 sparse vectors of 30,000 dimensions (16-48 non-zero each, clustered
    on shared terms, as SPLADE-like vectors are): recall@10 of the index
    against the sequential scan's exact order, built and then inserted into,
    and again after VACUUM took the 300 rows of smallest norm (by L2 and L1
    about half of a query's 10 nearest are among the smallest of the whole
    table, which the scan reaches through the index's origin seeds)."""
    rng = np.random.default_rng(7)
    topics = [rng.choice(30_000, size=60, replace=False) for _ in range(20)]

    def sample():
        t = topics[rng.integers(20)]
        idx = np.unique(np.concatenate([rng.choice(t, size=rng.integers(8, 24), replace=False),
                                        rng.choice(30_000, size=rng.integers(8, 24), replace=False)]))
        return "{" + ",".join(f"{i + 1}:{rng.random() * 2:.4f}" for i in idx) + "}/30000"

    db.execute("CREATE TABLE sp (id int, v sparsevec(30000))")
    with db.cursor().copy("COPY sp (id, v) FROM STDIN") as cp:
        for i in range(2000):
            cp.write_row((i, sample()))
    db.execute(f"CREATE INDEX sp_idx ON sp USING hnsw (v {opclass})")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO sp VALUES (%s, %s)", [(i, sample()) for i in range(2000, 3000)])
    queries = [sample() for _ in range(30)]

    def recall(live):
        report = db.execute("SELECT quiver.index_check('sp_idx')").fetchone()[0]
        assert report["live"] == live and report["unreachable_live"] == 0, report
        hits = 0
        for q in queries:
            db.execute("SET enable_indexscan = off")
            exact = {r[0] for r in db.execute(f"SELECT id FROM sp ORDER BY v {op} %s::sparsevec LIMIT 10", (q,))}
            db.execute("RESET enable_indexscan")
            db.execute("SET enable_seqscan = off")
            db.execute("SET hnsw.ef_search = 100")
            plan = " ".join(r[0] for r in db.execute(
                f"EXPLAIN SELECT id FROM sp ORDER BY v {op} %s::sparsevec LIMIT 10", (q,)))
            assert "sp_idx" in plan, plan
            got = {r[0] for r in db.execute(f"SELECT id FROM sp ORDER BY v {op} %s::sparsevec LIMIT 10", (q,))}
            db.execute("RESET enable_seqscan")
            hits += len(exact & got)
        return hits / (10 * len(queries))

    # measured 0.99-1.0 for all four; without the origin seeds L2 and L1 got 0.60
    assert recall(3000) >= 0.95, opclass
    db.execute("DELETE FROM sp WHERE id IN (SELECT id FROM sp ORDER BY l2_norm(v) LIMIT 300)")
    db.execute("VACUUM sp")
    assert recall(2700) >= 0.95, opclass
