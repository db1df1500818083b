#!/usr/bin/env python3
"""Scale-out benchmark: one collection of WordNet-MiniLM 100k as 1 shard and as
4 hash shards on the benchmark cluster; recall@10 against exact search and
QPS (pgbench, 1 client) at the same hnsw.ef_search for both.

Run after bench/bench.sh has prepared the dataset and started the cluster:
    .build/venv/bin/python bench/scale.py [--port 28817] [--seconds 10]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import datasets as ds  # noqa: E402
import run  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=28817)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--ef-search", type=int, nargs="+", default=[40, 100])
    p.add_argument("--cache", type=pathlib.Path,
                   default=pathlib.Path(__file__).resolve().parent.parent / ".build" / "bench")
    args = p.parse_args()
    data = ds.Dataset("wordnet-minilm-384", args.cache)
    gt = data.ground_truth("all")
    server = run.Server("127.0.0.1", args.port, "postgres")
    db = "bench_scale"
    run.load(server, db, "quiver", data)  # items and queries tables
    with server.connect(db) as c:
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute("SET max_parallel_maintenance_workers = 1")
        for shards in (1, 4):
            start = time.perf_counter()
            c.execute(f"SELECT quiver.create_collection('docs{shards}', {data.dim}, shards => {shards})")
            # bulk load without the index, then build it (one per shard), as one would
            c.execute(f"DROP INDEX docs{shards}_embedding_idx")
            c.execute(f"INSERT INTO docs{shards} (id, embedding) SELECT id, embedding FROM items")
            c.execute(f"CREATE INDEX docs{shards}_embedding_idx ON docs{shards} "
                      "USING hnsw (embedding vector_cosine_ops)")
            c.execute(f"ANALYZE docs{shards}")
            run.log(f"{shards} shard(s): loaded and indexed in {time.perf_counter() - start:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        # 4 shards twice: ef_search split among them (the default) and full per shard
        configs = [(1, "split"), (4, "split"), (4, "full")]
        for ef in args.ef_search:
            for shards, mode in configs:
                sql = (f"SELECT id FROM docs{shards} ORDER BY embedding <=> "
                       "(SELECT embedding FROM queries WHERE id = :q) LIMIT 10")
                r = run.measure(server, db, sql, {"hnsw.ef_search": ef, "quiver.sharded_ef_search": mode}, gt,
                                len(data.queries), 1000, args.seconds, pathlib.Path(tmp))
                run.log(f"ef_search {ef}, {shards} shard(s), {mode}: recall {r['recall']:.3f}, {r['qps']:.0f} QPS, "
                        f"p99 {r['p99_ms']:.2f} ms")


if __name__ == "__main__":
    main()
