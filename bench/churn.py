"""Index quality under concurrent churn: CLIENTS clients insert, delete and
update rows of one table for SECONDS seconds while VACUUM runs every few
seconds; then recall@10 (against exact search) and index size are measured,
the index is rebuilt (REINDEX) and measured again on the same rows.

    python bench/churn.py [--port 28850] [--rows 11570] [--dim 64] [--seconds 60]

Prints one JSON line: recall after churn and after REINDEX at each
ef_search, pages of both, rows. Runs a cluster of its own on loopback."""
import argparse
import json
import pathlib
import random
import sys
import threading
import time

import numpy as np
import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from cluster import Cluster  # noqa: E402
from vectors import clustered, text  # noqa: E402


def measure(conn, data_by_id, queries, efs):
    ids = np.array(list(data_by_id))
    mat = np.stack([data_by_id[i] for i in ids])
    out = {}
    conn.execute("SET enable_seqscan = off")
    for ef in efs:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        hits = 0
        for q in queries:
            exact = set(ids[np.argsort(np.linalg.norm(mat - q, axis=1))[:10]].tolist())
            got = {r[0] for r in conn.execute("SELECT id FROM t ORDER BY v <-> %s LIMIT 10", (text(q),))}
            hits += len(exact & got)
        out[ef] = hits / (10 * len(queries))
    pages = conn.execute("SELECT pg_relation_size('t_v_idx') / 8192").fetchone()[0]
    return out, pages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=28850)
    ap.add_argument("--rows", type=int, default=11570)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--mix", default="1,1,1", help="relative shares of INSERT, DELETE, UPDATE")
    ap.add_argument("--vacuum-every", type=float, default=5, help="seconds between VACUUMs")
    args = ap.parse_args()
    shares = [float(x) for x in args.mix.split(",")]
    p_insert, p_delete = shares[0] / sum(shares), (shares[0] + shares[1]) / sum(shares)
    pool = clustered(args.rows * 4, args.dim, seed=5)
    queries = clustered(args.queries, args.dim, seed=6)
    c = Cluster(args.port, "churn").init().start()
    try:
        with c.connect() as conn:
            conn.execute("CREATE EXTENSION quiver")
            conn.execute("CREATE EXTENSION pg_freespacemap")
            conn.execute(f"CREATE TABLE t (id int PRIMARY KEY, v vector({args.dim}))")
            with conn.cursor().copy("COPY t FROM STDIN") as cp:
                for i in range(args.rows):
                    cp.write_row((i, text(pool[i])))
            conn.execute("CREATE INDEX t_v_idx ON t USING hnsw (v vector_l2_ops)")
            start_pages = conn.execute("SELECT pg_relation_size('t_v_idx') / 8192").fetchone()[0]
        live = {i: pool[i] for i in range(args.rows)}
        lock, stop = threading.Lock(), threading.Event()
        next_id = [args.rows]
        ops = [0]

        def client(w):
            # each client owns the ids i with i % clients == w: statements run
            # concurrently and `live` still matches the table exactly
            rng = random.Random(w)
            mine = [i for i in live if i % args.clients == w]
            key = args.rows + w
            with psycopg.connect(c.dsn(), autocommit=True) as conn:
                while not stop.is_set():
                    r = rng.random()
                    if r < p_insert or not mine:
                        v = pool[key % len(pool)]
                        conn.execute("INSERT INTO t VALUES (%s, %s)", (key, text(v)))
                        with lock:
                            live[key] = v
                        mine.append(key)
                        key += args.clients
                    elif r < p_delete:
                        victim = mine.pop(rng.randrange(len(mine)))
                        conn.execute("DELETE FROM t WHERE id = %s", (victim,))
                        with lock:
                            live.pop(victim)
                    else:
                        victim = mine[rng.randrange(len(mine))]
                        v = pool[rng.randrange(len(pool))]
                        conn.execute("UPDATE t SET v = %s WHERE id = %s", (text(v), victim))
                        with lock:
                            live[victim] = v
                    with lock:
                        ops[0] += 1

        vacuum_seconds = []
        peak_pages = [0]

        def vacuumer():
            with psycopg.connect(c.dsn(), autocommit=True) as conn:
                while not stop.wait(args.vacuum_every):
                    t0 = time.time()
                    conn.execute("VACUUM t")
                    vacuum_seconds.append(round(time.time() - t0, 2))
                    pages = conn.execute("SELECT pg_relation_size('t_v_idx') / 8192").fetchone()[0]
                    peak_pages[0] = max(peak_pages[0], pages)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(args.clients)]
        threads.append(threading.Thread(target=vacuumer))
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        with c.connect() as conn:
            before_vacuum, _ = measure(conn, live, queries, [40, 100])
            conn.execute("RESET enable_seqscan")
            conn.execute("SET client_min_messages = debug1")
            notices = []
            conn.add_notice_handler(lambda d: notices.append(d.message_primary))
            conn.execute("VACUUM t")
            conn.execute("RESET client_min_messages")
            efs = [40, 100]
            churned, churned_pages = measure(conn, live, queries, efs)
            before = conn.execute("SELECT quiver.index_check('t_v_idx')").fetchone()[0]
            free = conn.execute("SELECT coalesce(sum(avail), 0) FROM pg_freespace('t_v_idx')").fetchone()[0] \
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_freespacemap'").fetchone() else None
            conn.execute("REINDEX INDEX t_v_idx")
            fresh, fresh_pages = measure(conn, live, queries, efs)
            check = conn.execute("SELECT quiver.index_check('t_v_idx')").fetchone()[0]
        print(json.dumps({"rows": len(live), "statements": ops[0], "start_pages": start_pages,
                          "churned": {"recall": churned, "pages": churned_pages},
                          "reindexed": {"recall": fresh, "pages": fresh_pages},
                          "size_ratio": round(churned_pages / fresh_pages, 3),
                          "vacuum_seconds": vacuum_seconds,
                          "final_vacuum": [n for n in notices if "hnsw" in n],
                          "recall_before_final_vacuum": before_vacuum,
                          "recall_gap": {ef: round(fresh[ef] - churned[ef], 4) for ef in efs},
                          "churned_check": before,
                          "churned_free_bytes": free,
                          "after_reindex_check": check}))
    finally:
        c.destroy()


if __name__ == "__main__":
    main()
