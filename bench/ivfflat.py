"""ivfflat beside pgvector's: build time, index size, recall@10 and QPS at
equal lists and probes, on one server, each contender in its own database
(pgvector's only when its `vector` extension is installed on the server).

    python bench/ivfflat.py --port 28817 [--rows 100000] [--dim 384] [--lists 100]

Data: unit vectors with the structure of sentence embeddings (a few dozen
latent topics, tests/vectors.embedding_like), cosine distance. QPS is one
client issuing the queries back to back, alternating contenders per round.
Prints a Markdown table; history goes to bench/results/HISTORY.md."""
import argparse
import pathlib
import sys
import time

import numpy as np
import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from vectors import embedding_like, text  # noqa: E402


def setup(dsn_admin, db, ext, data, lists, reuse):
    dsn = dsn_admin.replace("dbname=postgres", f"dbname={db}")
    with psycopg.connect(dsn_admin, autocommit=True) as a:
        exists = a.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
        if not (reuse and exists):
            a.execute(f"DROP DATABASE IF EXISTS {db}")
            a.execute(f"CREATE DATABASE {db}")
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f"CREATE EXTENSION {ext}")
                c.execute(f"CREATE TABLE items (id int, embedding vector({data.shape[1]}))")
                with c.cursor().copy("COPY items FROM STDIN") as cp:
                    for i, v in enumerate(data):
                        cp.write_row((i, text(v)))
                c.execute("VACUUM ANALYZE items")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP INDEX IF EXISTS items_ivf")
        c.execute("CHECKPOINT")
        t0 = time.time()
        c.execute(f"CREATE INDEX items_ivf ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = {lists})")
        build = time.time() - t0
        size = c.execute("SELECT pg_relation_size('items_ivf')").fetchone()[0]
    return dsn, build, size


def run_queries(dsn, queries, probes):
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SET enable_seqscan = off")
        c.execute(f"SET ivfflat.probes = {probes}")
        got = []
        t0 = time.time()
        for q in queries:
            got.append([r[0] for r in c.execute("SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10", (text(q),))])
        return got, len(queries) / (time.time() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=28817)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--lists", type=int, default=100)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--probes", default="1,10,20")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="keep the loaded tables of an earlier run")
    args = ap.parse_args()
    admin = f"host=127.0.0.1 port={args.port} user=postgres dbname=postgres"
    data = embedding_like(args.rows, args.dim, seed=1)
    queries = embedding_like(args.queries, args.dim, seed=2)
    exact = [set(np.argsort(-(data @ q))[:10].tolist()) for q in queries]
    with psycopg.connect(admin) as a:
        have_pgvector = a.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector' "
                                  "AND comment NOT LIKE 'quiver%'").fetchone() is not None
    contenders = {"quiver": "quiver"} | ({"pgvector": "vector"} if have_pgvector else {})
    built = {name: setup(admin, f"ivfbench_{name}", ext, data, args.lists, args.reuse) for name, ext in contenders.items()}
    rows = []
    for probes in [int(p) for p in args.probes.split(",")]:
        qps = {n: [] for n in contenders}
        recall = {}
        for _ in range(args.rounds):
            for name in contenders:
                got, r = run_queries(built[name][0], queries, probes)
                qps[name].append(r)
                recall[name] = sum(len(set(g) & e) for g, e in zip(got, exact)) / (10 * len(queries))
        rows.append((probes, {n: (recall[n], float(np.median(qps[n]))) for n in contenders}))
    print(f"{args.rows} x {args.dim}-d embedding-like unit vectors, cosine, lists = {args.lists}, "
          f"{args.queries} queries, median of {args.rounds} rounds\n")
    names = list(contenders)
    print("| | " + " | ".join(names) + (" | quiver / pgvector |" if have_pgvector else " |"))
    print("|---|" + "---|" * (len(names) + (1 if have_pgvector else 0)))
    b = {n: built[n][1] for n in names}
    s = {n: built[n][2] / 2**20 for n in names}
    print("| build (s) | " + " | ".join(f"{b[n]:.1f}" for n in names) + (f" | {b['quiver'] / b['pgvector']:.2f}x |" if have_pgvector else " |"))
    print("| index size (MB) | " + " | ".join(f"{s[n]:.1f}" for n in names) + (f" | {s['quiver'] / s['pgvector']:.2f}x |" if have_pgvector else " |"))
    for probes, res in rows:
        cells = " | ".join(f"recall {res[n][0]:.3f}, {res[n][1]:.0f} QPS" for n in names)
        extra = f" | {res['quiver'][1] / res['pgvector'][1]:.2f}x QPS |" if have_pgvector else " |"
        print(f"| probes {probes} | {cells}{extra}")


if __name__ == "__main__":
    main()
