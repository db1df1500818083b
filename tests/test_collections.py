"""Collections and aliases on the shared test cluster: the blue/green flow,
switches under concurrent readers, pg_dump/pg_restore round trips, errors,
ownership and hostile names."""
import os
import subprocess
import threading
import time

import numpy as np
import psycopg
import pytest

from vectors import clustered, distances, text

PG_BIN = "/usr/lib/postgresql/15/bin"


def fill(db, table, data, first_id=1):
    with db.cursor() as cur:
        with cur.copy(f"COPY {table} (id, embedding, payload) FROM STDIN") as cp:
            for i, v in enumerate(data):
                cp.write_row((first_id + i, text(v), f'{{"n": {first_id + i}}}'))


def top_ids(db, relation, q, k=10, op="<=>"):
    rows = db.execute(f"SELECT id FROM {relation} ORDER BY embedding {op} %s::vector LIMIT {k}", (text(q),))
    return [r[0] for r in rows.fetchall()]


def exact_ids(data, q, metric, first_id=1, k=10):
    return [int(i) + first_id for i in np.argsort(distances(data, q, metric), kind="stable")[:k]]


def error_of(db, sql, params=None) -> str:
    with pytest.raises(psycopg.Error) as e:
        db.execute(sql, params)
    return str(e.value)


def test_blue_green_flow(db):
    v1 = clustered(3000, 16, seed=1)
    v2 = clustered(2000, 24, seed=2)
    assert db.execute("SELECT quiver.create_collection('policies_v1', 16)").fetchone()[0] == "policies_v1"
    fill(db, "policies_v1", v1)
    db.execute("SELECT quiver.create_alias('policies_production', 'policies_v1')")
    db.execute("ANALYZE policies_v1")

    q1 = v1[7] + 0.01
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT id FROM policies_production ORDER BY embedding <=> %s::vector LIMIT 10", (text(q1),)))
    assert "Index Scan using policies_v1_embedding_idx on policies_v1" in plan, plan
    db.execute("SET hnsw.ef_search = 200")
    assert top_ids(db, "policies_production", q1) == exact_ids(v1, q1, "cosine")

    # v2: another embedding model (another dimension), sharded, built beside v1
    db.execute("SELECT quiver.create_collection('policies_v2', 24, distance => 'cosine', shards => 2)")
    fill(db, "policies_v2", v2, first_id=10_001)
    q2 = v2[3] + 0.01
    assert top_ids(db, "policies_v2", q2) == exact_ids(v2, q2, "cosine", first_id=10_001)

    db.execute("SELECT quiver.switch_alias('policies_production', 'policies_v2')")
    assert top_ids(db, "policies_production", q2) == exact_ids(v2, q2, "cosine", first_id=10_001)
    # 1,000 rows per shard are cheaper to scan than to search; the plan
    # shape for larger shards is a merge of one ordered index scan per shard
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT id FROM policies_production ORDER BY embedding <=> %s::vector LIMIT 10", (text(q2),)))
    assert "Merge Append" in plan and plan.count("Index Scan using policies_v2_shard") == 2, plan
    db.execute("RESET enable_seqscan")

    # writes through the alias reach the current collection
    db.execute("INSERT INTO policies_production VALUES (99999, %s, '{}')", (text(q2),))
    assert db.execute("SELECT count(*) FROM policies_v2 WHERE id = 99999").fetchone()[0] == 1
    db.execute("UPDATE policies_production SET payload = '{\"x\": 1}' WHERE id = 99999")
    assert db.execute("SELECT payload->>'x' FROM policies_v2 WHERE id = 99999").fetchone()[0] == "1"
    db.execute("DELETE FROM policies_production WHERE id = 99999")
    assert db.execute("SELECT count(*) FROM policies_v2 WHERE id = 99999").fetchone()[0] == 0

    # roll back the same way
    db.execute("SELECT quiver.switch_alias('policies_production', 'policies_v1')")
    assert top_ids(db, "policies_production", q1) == exact_ids(v1, q1, "cosine")
    msg = error_of(db, "SELECT quiver.drop_collection('policies_v1')")
    assert 'collection "policies_v1" is used by alias policies_production' in msg

    # switch forward again and retire v1
    db.execute("SELECT quiver.switch_alias('policies_production', 'policies_v2')")
    db.execute("SELECT quiver.drop_collection('policies_v1')")
    assert db.execute("SELECT to_regclass('policies_v1')").fetchone()[0] is None
    rows = db.execute("SELECT name, vector_size, shards, points_count, indexed_vectors_count, aliases, status "
                      "FROM quiver.collections").fetchall()
    assert rows == [("policies_v2", 24, 2, 2000, 2000, ["policies_production"], "green")]
    assert db.execute("SELECT alias_name, collection_name FROM quiver.aliases").fetchall() == [
        ("policies_production", "policies_v2")]


def test_switching_under_concurrent_readers(db):
    """4 readers query the alias while it is switched 200 times between
    collections of different dimensions: no errors, every answer whole."""
    dsn = db.info.dsn
    db.execute("SELECT quiver.create_collection('c3', 3)")
    db.execute("SELECT quiver.create_collection('c5', 5, distance => 'l2')")
    db.execute("INSERT INTO c3 SELECT i, array[1, i, 2]::real[]::vector, NULL FROM generate_series(1, 300) i")
    db.execute("INSERT INTO c5 SELECT i, array[i, 1, 1, 1, 1]::real[]::vector, NULL FROM generate_series(1001, 1300) i")
    db.execute("SELECT quiver.create_alias('live', 'c3')")
    db.execute("GRANT SELECT ON live TO PUBLIC")
    # the query vector comes from the alias itself, so it fits either collection
    sql = ("SELECT id, vector_dims(embedding) FROM live "
           "ORDER BY embedding <-> (SELECT embedding FROM live ORDER BY id LIMIT 1) LIMIT 5")
    stop = threading.Event()
    errors, seen = [], {3: 0, 5: 0}
    lock = threading.Lock()

    def reader():
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                while not stop.is_set():
                    rows = c.execute(sql).fetchall()
                    dims = {d for _, d in rows}
                    ids = [i for i, _ in rows]
                    assert len(rows) == 5 and len(dims) == 1, rows
                    d = dims.pop()
                    assert ids == ([1, 2, 3, 4, 5] if d == 3 else [1001, 1002, 1003, 1004, 1005]), rows
                    with lock:
                        seen[d] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            for i in range(200):
                c.execute("SELECT quiver.switch_alias('live', %s)", ("c5" if i % 2 == 0 else "c3",))
                time.sleep(0.002)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert seen[3] > 0 and seen[5] > 0, seen
    # the grant survived 200 re-creations of the view
    assert db.execute("SELECT has_table_privilege('public', 'live', 'SELECT')").fetchone()[0]
    assert db.execute("SELECT collection_name FROM quiver.aliases").fetchone()[0] == "c3"


def dump_restore(db, fmt: str):
    """pg_dump the test database in `fmt` and restore it into a new one."""
    port = os.environ["QUIVER_TEST_PORT"]
    src = db.info.dbname
    dst = f"{src}_r{fmt}"
    path = f"/tmp/{src}.{fmt}"
    conn = ["-h", "127.0.0.1", "-p", port, "-U", "postgres"]
    subprocess.run([f"{PG_BIN}/pg_dump", *conn, f"-F{fmt}", "-f", path, src], check=True, capture_output=True)
    admin = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {dst}")
    if fmt == "p":
        r = subprocess.run([f"{PG_BIN}/psql", *conn, "-d", dst, "-v", "ON_ERROR_STOP=1", "-q", "-f", path],
                           capture_output=True, text=True)
    else:
        r = subprocess.run([f"{PG_BIN}/pg_restore", *conn, "-d", dst, "--exit-on-error", path],
                           capture_output=True, text=True)
    os.unlink(path)
    assert r.returncode == 0, r.stderr
    return admin, dst


@pytest.mark.parametrize("fmt", ["p", "c"])
def test_pg_dump_restore_round_trip(db, fmt):
    a = clustered(600, 12, seed=3)
    b = clustered(400, 6, seed=4)
    db.execute("SELECT quiver.create_collection('docs', 12, m => 12, ef_construction => 80)")
    fill(db, "docs", a)
    db.execute("SELECT quiver.create_collection('imgs', 6, distance => 'l2', shards => 3)")
    fill(db, "imgs", b, first_id=5000)
    db.execute("CREATE TABLE legacy (key int PRIMARY KEY, vec vector(6))")
    db.execute("CREATE INDEX ON legacy USING hnsw (vec vector_ip_ops)")
    db.execute("SELECT quiver.register_collection('legacy', 'vec', name => 'old stuff')")
    db.execute("SELECT quiver.create_alias('search', 'docs')")
    db.execute("SELECT quiver.create_alias('gallery', 'imgs')")
    info = "SELECT name, \"table\"::text, vector_size, distance, shards, m, ef_construction, points_count, " \
           "indexed_vectors_count, aliases, status FROM quiver.collections ORDER BY name"
    before = db.execute(info).fetchall()
    queries = [(a[i] + 0.02, "search", "<=>") for i in range(5)] + [(b[i] + 0.02, "gallery", "<->") for i in range(5)]
    db.execute("SET hnsw.ef_search = 300")
    answers = [top_ids(db, rel, q, op=op) for q, rel, op in queries]

    admin, dst = dump_restore(db, fmt)
    try:
        with psycopg.connect(db.info.dsn.replace(db.info.dbname, dst), autocommit=True) as r:
            assert r.execute(info).fetchall() == before
            assert r.execute("SELECT alias_name, collection_name FROM quiver.aliases ORDER BY 1").fetchall() == [
                ("gallery", "imgs"), ("search", "docs")]
            r.execute("SET hnsw.ef_search = 300")
            assert [top_ids(r, rel, q, op=op) for q, rel, op in queries] == answers
            # the restored catalog is live: switching and dropping still work
            r.execute("SELECT quiver.switch_alias('search', 'imgs')")
            r.execute("SELECT quiver.drop_collection('docs')")
            assert r.execute("SELECT count(*) FROM quiver.collections").fetchone()[0] == 2
    finally:
        admin.execute(f"DROP DATABASE {dst} WITH (FORCE)")
        admin.close()


HOSTILE = [
    'x"; DROP TABLE victim; --',
    "x'); DROP TABLE victim; --",
    "Robert'); DROP TABLE victim;--",
    "a b.c",
    "$$; DROP TABLE victim; $$",
    "\\\" OR 1=1",
    "ünïcødé名",
]


def test_hostile_names_are_just_names(db):
    db.execute("CREATE TABLE victim (x int)")
    for i, name in enumerate(HOSTILE):
        alias = name + " alias"
        rel = db.execute("SELECT quiver.create_collection(%s, 2, shards => %s)", (name, 1 + i % 2)).fetchone()[0]
        assert db.execute("SELECT relname FROM pg_class WHERE oid = %s::regclass", (rel,)).fetchone()[0] == name
        db.execute("SELECT quiver.create_alias(%s, %s)", (alias, name))
        db.execute("SELECT quiver.switch_alias(%s, %s)", (alias, name))
        db.execute("SELECT quiver.update_aliases(%s::jsonb)", (psycopg.types.json.Jsonb(
            [{"rename_alias": {"old_alias_name": alias, "new_alias_name": alias + "2"}}]),))
        info = db.execute("SELECT name, aliases FROM quiver.collection_info(%s)", (name,)).fetchone()
        assert info == (name, [alias + "2"])
        db.execute("SELECT quiver.drop_collection(%s, cascade => true)", (name,))
    assert db.execute("SELECT to_regclass('victim')").fetchone()[0] == "victim"
    assert db.execute("SELECT count(*) FROM quiver.collection_catalog").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM quiver.alias_catalog").fetchone()[0] == 0
    # and none of them left a stray relation behind
    assert db.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                      "AND relname <> 'victim'").fetchone()[0] == 0


def test_errors(db):
    db.execute("SELECT quiver.create_collection('c', 4)")
    db.execute("SELECT quiver.create_collection('d', 4)")
    db.execute("CREATE TABLE plain (x int)")
    cases = [
        ("SELECT quiver.create_collection('c', 4)", 'collection "c" already exists'),
        ("SELECT quiver.create_collection('plain', 4)", 'relation "plain" already exists'),
        ("SELECT quiver.create_collection('', 4)", "collection name must not be empty"),
        ("SELECT quiver.create_collection(repeat('n', 64), 4)", "is longer than 63 bytes"),
        ("SELECT quiver.create_collection('e', 0)", "dimensions must be between 1 and 16000, not 0"),
        ("SELECT quiver.create_collection('e', 4, distance => 'chebyshev')", 'unknown distance "chebyshev"'),
        ("SELECT quiver.create_collection('e', 4, shards => 0)", "shards must be between 1 and 1024, not 0"),
        ("SELECT quiver.create_collection('e', 4, quantization => 'pq')", 'quantization must be none or binary, not "pq"'),
        ("SELECT quiver.create_collection('e', 4, distance => 'l1', quantization => 'binary')",
         'binary quantization supports the vector and halfvec l2, ip and cosine operator classes, not l1'),
        ("SELECT quiver.create_collection('e', 4, m => 1)", "value 1 out of bounds for option \"m\""),
        ("SELECT quiver.collection_info('nope')", 'collection "nope" does not exist'),
        ("SELECT quiver.drop_collection('nope')", 'collection "nope" does not exist'),
        ("SELECT quiver.create_alias('a', 'nope')", 'collection "nope" does not exist'),
        ("SELECT quiver.create_alias('plain', 'c')", 'relation "plain" already exists and is not an alias'),
        ("SELECT quiver.switch_alias('nope', 'c')", 'alias "nope" does not exist'),
        ("SELECT quiver.delete_alias('nope')", 'alias "nope" does not exist'),
        ("SELECT quiver.register_collection('plain', 'x')", "is of type int4, not vector, halfvec or bit"),
        ("SELECT quiver.register_collection('plain', 'nope')", 'column "nope" of "plain" does not exist'),
        ("SELECT quiver.register_collection('c', 'embedding')", 'collection "c" already exists'),
        ("SELECT quiver.update_aliases('{}')", "update_aliases expects a JSON array of actions"),
        ("SELECT quiver.update_aliases('[{\"fly\": {}}]')", 'update_aliases action 1: unknown action "fly"'),
        ("SELECT quiver.update_aliases('[{\"create_alias\": {\"alias_name\": \"a\"}}]')",
         'update_aliases action 1: create_alias needs "collection_name"'),
    ]
    for sql, expected in cases:
        assert expected in error_of(db, sql), sql
    db.execute("SELECT quiver.create_alias('a', 'c')")
    assert 'alias "a" already exists' in error_of(db, "SELECT quiver.create_alias('a', 'd')")
    # a switch to the collection it already points at is a no-op with a NOTICE
    notices = []
    db.add_notice_handler(lambda n: notices.append(n.message_primary))
    db.execute("SELECT quiver.switch_alias('a', 'c')")
    assert notices == ['alias "a" already points at collection "c"']
    # all or nothing: the failing second action undoes the first
    msg = error_of(db, "SELECT quiver.update_aliases(%s)", (
        '[{"delete_alias": {"alias_name": "a"}}, {"rename_alias": {"alias_name": "a", '
        '"old_collection_name": "c", "new_collection_name": "d"}}]',))
    assert 'alias "a" points at nothing, not at collection "c"' in msg
    assert db.execute("SELECT alias_name, collection_name FROM quiver.aliases").fetchall() == [("a", "c")]
    # plain DROP TABLE/VIEW keep the catalog honest
    db.execute("DROP VIEW a")
    db.execute("DROP TABLE d")
    assert db.execute("SELECT count(*) FROM quiver.aliases").fetchone()[0] == 0
    assert db.execute("SELECT array_agg(name) FROM quiver.collections").fetchone()[0] == ["c"]


def test_status_and_ownership(db):
    role = "quiver_it_" + os.urandom(3).hex()
    db.execute(f"CREATE ROLE {role}")
    try:
        db.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        db.execute("SELECT quiver.create_collection('owned', 3)")
        db.execute("SELECT quiver.create_alias('owned_alias', 'owned')")
        db.execute("INSERT INTO owned SELECT i, array[i, 1, 1]::real[]::vector, NULL FROM generate_series(1, 400) i")
        assert db.execute("SELECT status FROM quiver.collection_info('owned')").fetchone()[0] == "green"
        # autovacuum could clean up before we look (300 dead of 400 is past its threshold)
        db.execute("ALTER TABLE owned SET (autovacuum_enabled = off)")
        db.execute("DELETE FROM owned WHERE id > 100")
        db.execute("SELECT pg_stat_force_next_flush()")
        time.sleep(1.5)
        assert db.execute("SELECT status, dead_tuples FROM quiver.collection_info('owned')").fetchone() == ("grey", 300)
        db.execute("VACUUM owned")
        time.sleep(1.5)
        assert db.execute("SELECT status, dead_tuples FROM quiver.collection_info('owned')").fetchone() == ("green", 0)
        db.execute("CREATE TABLE adopted (id int PRIMARY KEY, v vector(3))")
        db.execute("SELECT quiver.register_collection('adopted', 'v')")
        assert db.execute("SELECT status, distance FROM quiver.collection_info('adopted')").fetchone() == ("red", None)

        db.execute(f"SET ROLE {role}")
        for sql, what in [("SELECT quiver.drop_collection('owned')", 'collection "owned"'),
                          ("SELECT quiver.create_alias('mine', 'owned')", 'collection "owned"'),
                          ("SELECT quiver.switch_alias('owned_alias', 'owned')", 'alias "owned_alias"'),
                          ("SELECT quiver.delete_alias('owned_alias')", 'alias "owned_alias"'),
                          ("SELECT quiver.register_collection('owned', 'embedding', name => 'x')", 'table "owned"')]:
            assert f"must be owner of {what}" in error_of(db, sql), sql
        # the catalogs cannot be edited around the functions
        assert db.execute("DELETE FROM quiver.collection_catalog").rowcount == 0
        assert db.execute("UPDATE quiver.alias_catalog SET collection = 'x'").rowcount == 0
        assert "row-level security" in error_of(
            db, "INSERT INTO quiver.alias_catalog VALUES ('evil', 'owned', 'owned')")
        # a role builds and switches its own collections
        db.execute("SELECT quiver.create_collection('theirs', 3)")
        db.execute("SELECT quiver.create_alias('their_alias', 'theirs')")
        db.execute("RESET ROLE")
        assert db.execute("SELECT count(*) FROM quiver.collection_catalog").fetchone()[0] == 3
        assert db.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'their_alias'"
                          ).fetchone()[0] == role
    finally:
        db.execute("RESET ROLE")
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")
