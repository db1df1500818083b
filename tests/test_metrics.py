"""Observability: search counters and latency histograms in shared memory
(on a cluster started with quiver in shared_preload_libraries), the metrics
view, Prometheus exposition parsed by a real parser, index health and the
recall estimate; and what still works without preloading."""
import threading
import time

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster import Cluster
from vectors import clustered, text

DIM = 32


@pytest.fixture(scope="module")
def preloaded():
    c = Cluster(28834, "metrics").init("shared_preload_libraries = 'quiver'\n").start()
    with c.connect() as conn:
        conn.execute("CREATE EXTENSION quiver")
        conn.execute("SELECT quiver.create_collection('docs', %s)" % DIM)
        data = clustered(2000, DIM, seed=81)
        with conn.cursor().copy("COPY docs (id, embedding) FROM STDIN") as cp:
            for i, v in enumerate(data):
                cp.write_row((i, text(v)))
        conn.execute("ANALYZE docs")
    yield c
    c.destroy()


def search(conn, q, k=10):
    return conn.execute("SELECT id FROM docs ORDER BY embedding <=> %s::vector LIMIT %s", (text(q), k)).fetchall()


def stats(conn):
    return conn.execute("SELECT searches, rows_returned, distances, errors, latency_buckets, bucket_bounds_us, "
                        "p50_seconds, p95_seconds, p99_seconds FROM quiver.search_stats "
                        "WHERE index = 'docs_embedding_idx'::regclass").fetchone()


def test_counters_count_every_search(preloaded):
    with preloaded.connect() as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT quiver.reset_metrics()")
        queries = clustered(37, DIM, seed=82)
        for q in queries:
            assert len(search(conn, q, k=7)) == 7
        with pytest.raises(psycopg.errors.DataException, match="expected 32 dimensions, not 3"):
            conn.execute("SELECT id FROM docs ORDER BY embedding <=> '[1,2,3]' LIMIT 1")
        searches, rows, distances, errors, buckets, bounds, p50, p95, p99 = stats(conn)
        assert (searches, rows, errors) == (37, 37 * 7, 1)
        assert distances >= 37 * 7 and sum(buckets) == 37
        # each quantile lies inside the bucket that holds that share of searches
        for q, value in [(0.5, p50), (0.95, p95), (0.99, p99)]:
            cumulative, i = 0, 0
            while cumulative + buckets[i] < q * searches:
                cumulative += buckets[i]
                i += 1
            lo = 0 if i == 0 else bounds[i - 1] / 1e6
            hi = bounds[i] / 1e6 if i < len(bounds) else float("inf")
            assert lo <= value <= hi, (q, value, lo, hi, buckets)
        assert p50 <= p95 <= p99


def test_binary_quantized_scans_count_rescored_candidates(preloaded):
    with preloaded.connect() as conn:
        conn.execute("SELECT quiver.create_collection('codes', %s, quantization => 'binary')" % DIM)
        conn.execute("INSERT INTO codes (id, embedding) SELECT id, embedding FROM docs")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 20")
        conn.execute("SET quiver.oversampling = 3")
        conn.execute("SELECT quiver.reset_metrics()")
        for q in clustered(5, DIM, seed=83):
            rows = conn.execute("SELECT id FROM codes ORDER BY embedding <=> %s::vector LIMIT 10", (text(q),))
            assert len(rows.fetchall()) == 10
        # each scan ranks 3 x 20 candidates by code and rescores all of them
        got = conn.execute("SELECT searches, rescored FROM quiver.search_stats "
                           "WHERE index = 'codes_embedding_idx'::regclass").fetchone()
        assert got == (5, 5 * 60), got
        plain = conn.execute("SELECT rescored FROM quiver.search_stats "
                             "WHERE index = 'docs_embedding_idx'::regclass").fetchone()
        assert plain is None or plain[0] == 0
        text_out = conn.execute("SELECT quiver.prometheus_metrics()").fetchone()[0]
        assert 'quiver_search_rescored_total{datname="postgres",index="codes_embedding_idx"} 300' in text_out
        conn.execute("SELECT quiver.drop_collection('codes')")


def test_counters_from_several_backends_add_up(preloaded):
    with preloaded.connect() as conn:
        conn.execute("SELECT quiver.reset_metrics('docs_embedding_idx')")
    queries = clustered(25, DIM, seed=83)
    errors = []

    def client():
        try:
            with preloaded.connect() as c:
                c.execute("SET enable_seqscan = off")
                for q in queries:
                    search(c, q)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with preloaded.connect() as conn:
        searches, rows, *_ = stats(conn)
        assert (searches, rows) == (100, 1000)  # the backends have exited; their counts stay


def test_prometheus_text_parses(preloaded):
    with preloaded.connect() as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT quiver.reset_metrics()")
        for q in clustered(5, DIM, seed=84):
            search(conn, q)
        body = conn.execute("SELECT quiver.prometheus_metrics()").fetchone()[0]
        # a scrape counts rows from the statistics, never by scanning
        live = conn.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'docs'").fetchone()[0]
    families = {f.name: f for f in text_string_to_metric_families(body)}
    for name in ["quiver_metrics_enabled", "quiver_recovery_mode", "quiver_collections",
                 "quiver_collection_points", "quiver_collection_indexed_vectors", "quiver_collection_dead_tuples",
                 "quiver_collection_status_code", "quiver_index_size_bytes", "quiver_index_bytes_per_vector",
                 "quiver_search_scans", "quiver_search_rows", "quiver_search_distances", "quiver_search_rescored",
                 "quiver_search_errors", "quiver_search_latency_seconds"]:
        assert name in families, (name, sorted(families))
    # one namespace: no since-reset quantile gauges beside the histogram
    assert not [f for f in families if f.startswith("quiver_search_latency_p")], sorted(families)
    # every series names its database (one exporter may scrape several)
    assert all(s.labels.get("datname") for f in families.values() for s in f.samples), body

    def value(family, **labels):
        return [s.value for s in families[family].samples
                if all(s.labels.get(k) == v for k, v in labels.items())]

    assert value("quiver_metrics_enabled") == [1.0]
    assert value("quiver_recovery_mode") == [0.0]
    assert value("quiver_collection_points", collection="docs") == [float(live)] and live > 0
    assert value("quiver_collection_status_code", collection="docs") == [0.0]
    assert families["quiver_search_scans"].type == "counter"
    assert value("quiver_search_scans", index="docs_embedding_idx") == [5.0]
    h = families["quiver_search_latency_seconds"]
    assert h.type == "histogram"
    inf = [s.value for s in h.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
    count = [s.value for s in h.samples if s.name.endswith("_count")]
    assert inf == count == [5.0]
    buckets = [s.value for s in h.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets)  # cumulative


def test_index_health_and_recall_estimate(preloaded):
    with preloaded.connect() as conn:
        conn.execute("SET hnsw.ef_search = 100")
        assert conn.execute("SELECT quiver.recall_estimate('docs_embedding_idx', sample => 50)").fetchone()[0] >= 0.95
        h = conn.execute("SELECT elements, deleted, unvacuumed_deletes, unreachable, entry_level, avg_out_degree, ok "
                         "FROM quiver.index_health('docs_embedding_idx')").fetchone()
        assert h[0] == 2000 and h[1:4] == (0, 0, 0) and h[4] >= 1 and h[5] > 2 and h[6]
        conn.execute("DELETE FROM docs WHERE id < 150")
        conn.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(1.5)
        assert conn.execute("SELECT unvacuumed_deletes FROM quiver.index_health('docs_embedding_idx')"
                            ).fetchone()[0] == 150
        conn.execute("VACUUM docs")
        time.sleep(1.5)
        assert conn.execute("SELECT elements, deleted, unvacuumed_deletes, unreachable "
                            "FROM quiver.index_health('docs_embedding_idx')").fetchone() == (1850, 0, 0, 0)
        assert conn.execute("SELECT quiver.recall_estimate('docs_embedding_idx', sample => 50)").fetchone()[0] >= 0.95
        msg = None
        try:
            conn.execute("SELECT quiver.recall_estimate('docs_pkey')")
        except psycopg.Error as e:
            msg = str(e)
        assert msg and '"docs_pkey" is not an hnsw index' in msg


def test_without_preloading_the_rest_works(db):
    db.execute("SELECT quiver.create_collection('plain', 3)")
    db.execute("INSERT INTO plain VALUES (1, '[1,2,3]', NULL)")
    db.execute("SELECT pg_stat_force_next_flush()")  # scrapes count rows from the statistics
    db.execute("SET enable_seqscan = off")
    db.execute("SELECT id FROM plain ORDER BY embedding <=> '[1,2,3]' LIMIT 1").fetchall()
    assert db.execute("SELECT count(*) FROM quiver.search_stats").fetchone()[0] == 0
    body = db.execute("SELECT quiver.prometheus_metrics()").fetchone()[0]
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert [s.value for s in families["quiver_metrics_enabled"].samples] == [0.0]
    assert [s.value for s in families["quiver_collection_points"].samples] == [1.0]
    db.execute("SELECT quiver.reset_metrics()")  # a no-op, not an error
