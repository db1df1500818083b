#!/usr/bin/env python3
"""Search on a streaming standby against the primary: WordNet-MiniLM 100k with
its hnsw index on a primary, a standby made by pg_basebackup, then recall@10
and QPS (pgbench, 1 client) at the same hnsw.ef_search on each, one at a time,
in alternating rounds (primary, standby, primary, standby) so drift cancels.

Starts its own two clusters (as the postgres OS user, 127.0.0.1:28840-28841)
and removes them afterwards. Needs the dataset cache of bench/bench.sh:
    .build/venv/bin/python bench/replica.py [--seconds 10]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
import datasets as ds  # noqa: E402
import run  # noqa: E402
from cluster import PG_BIN, Cluster, as_postgres  # noqa: E402

CONF = "shared_buffers = 512MB\nmaintenance_work_mem = 1GB\nmax_wal_size = 4GB\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--ef-search", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cache", type=pathlib.Path, default=HERE.parent / ".build" / "bench")
    args = p.parse_args()
    data = ds.Dataset("wordnet-minilm-384", args.cache)
    gt = data.ground_truth("all")
    primary = Cluster(28840, "replica-primary").init(CONF).start()
    standby = Cluster(28841, "replica-standby")
    try:
        db = "bench_replica"
        ps = run.Server("127.0.0.1", 28840, "postgres")
        run.load(ps, db, "quiver", data)
        idx = run.build_index(ps, db, data, 16, 64, "1GB")
        run.log(f"primary: index built in {idx['build_s']:.1f}s")
        start = time.perf_counter()
        as_postgres([str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", "28840", "-U", "postgres",
                     "-D", str(standby.data), "-R", "-X", "stream"])
        standby.conf(f"\nport = 28841\nunix_socket_directories = '{standby.root}'\nhot_standby = on\n")
        standby.start()
        run.log(f"standby: base backup and start in {time.perf_counter() - start:.1f}s")
        ss = run.Server("127.0.0.1", 28841, "postgres")
        sql = run.search_sql(run.OPCLASS[data.metric][1])
        results = {"primary": [], "standby": []}
        with tempfile.TemporaryDirectory() as tmp:
            for rnd in range(args.rounds):
                for name, server in (("primary", ps), ("standby", ss)):
                    r = run.measure(server, db, sql, {"hnsw.ef_search": args.ef_search}, gt, len(data.queries),
                                    1000, args.seconds, pathlib.Path(tmp))
                    results[name].append(r)
                    run.log(f"round {rnd + 1}, {name}: recall {r['recall']:.3f}, {r['qps']:.0f} QPS, "
                            f"p99 {r['p99_ms']:.2f} ms")
        qps = {k: sum(r["qps"] for r in v) / len(v) for k, v in results.items()}  # mean of the rounds
        run.log(f"standby / primary QPS: {qps['standby'] / qps['primary']:.2f}")
    finally:
        standby.destroy()
        primary.destroy()


if __name__ == "__main__":
    main()
