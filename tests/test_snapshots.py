"""Snapshots: a collection to one file and back, under concurrent writers,
through corruption, hostile names, missing privileges and a client stream."""
import base64
import os
import pathlib
import subprocess
import threading
import time

import psycopg
import pytest

from vectors import embedding_like, text

DIM = 48


def make_collection(db, name="docs", rows=1500, quantization="none", shards=1):
    db.execute("SELECT quiver.create_collection(%s, %s, quantization => %s, shards => %s)",
               (name, DIM, quantization, shards))
    data = embedding_like(rows, DIM, seed=5)
    with db.cursor().copy(f'COPY "{name}" (id, embedding, payload) FROM STDIN') as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v), None if i % 3 == 0 else f'{{"n": {i}, "s": "x\\"y"}}'))
    db.execute(f'ANALYZE "{name}"')
    return data


def answers(db, table, queries, ef=400):
    """Index answers; at ef 400 exact on these sizes, at small ef they are
    approximate and tell whether two indexes hold the same graph."""
    db.execute("SET enable_seqscan = off")
    db.execute(f"SET hnsw.ef_search = {ef}")
    out = []
    for q in queries:
        out.append([r[0] for r in db.execute(
            f'SELECT id FROM "{table}" ORDER BY embedding <=> %s::vector LIMIT 10', (text(q),), prepare=False).fetchall()])
    db.execute("RESET enable_seqscan")
    db.execute("RESET hnsw.ef_search")
    return out


def snapshot_file(db, name):
    return pathlib.Path(db.execute("SELECT quiver._snapshot_path(%s)", (name,)).fetchone()[0])


@pytest.fixture()
def snaps(db):
    """Deletes the snapshots a test made (the directory is the cluster's)."""
    yield db
    for (name,) in db.execute("SELECT name FROM quiver.list_snapshots()").fetchall():
        db.execute("SELECT quiver.delete_snapshot(%s)", (name,))


@pytest.mark.parametrize("quantization,shards", [("none", 1), ("binary", 1), ("none", 3)])
def test_round_trip_answers_like_the_original(snaps, quantization, shards):
    db = snaps
    make_collection(db, quantization=quantization, shards=shards)
    db.execute("""INSERT INTO docs VALUES (100000, NULL, '{"no": "vector"}')""")
    queries = embedding_like(20, DIM, seed=6)
    before = answers(db, "docs", queries)
    before_small_beam = [answers(db, "docs", queries, ef) for ef in (1, 3, 10)]
    name, size, created, checksum, rows = db.execute(
        "SELECT name, size, created_at, checksum, rows FROM quiver.create_snapshot('docs')").fetchone()
    assert rows == 1501 and size > 1500 * DIM * 4 and len(checksum) == 8
    listed = db.execute("SELECT name, collection, size, rows, created_at, checksum FROM quiver.list_snapshots('docs')").fetchall()
    assert listed == [(name, "docs", size, 1501, created, checksum)]
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_restored')", (name,))
    info = db.execute("SELECT vector_size, distance, quantization, shards, points_count, status "
                      "FROM quiver.collection_info('docs_restored')").fetchone()
    assert info == (DIM, "cosine", quantization, shards, 1501, "green")
    same = db.execute("SELECT count(*) FROM docs a JOIN docs_restored b USING (id) "
                      "WHERE a.embedding IS NOT DISTINCT FROM b.embedding "
                      "AND a.payload IS NOT DISTINCT FROM b.payload").fetchone()[0]
    assert same == 1501
    assert answers(db, "docs_restored", queries) == before
    # the stored graph came back as it was: even a beam of 1, which ends
    # wherever the graph leads it, ends in the same places
    assert [answers(db, "docs_restored", queries, ef) for ef in (1, 3, 10)] == before_small_beam
    for (index,) in db.execute("SELECT index::text FROM quiver._leaf_indexes('docs_restored', 'embedding')").fetchall():
        report = db.execute("SELECT quiver.index_check(%s)", (index,)).fetchone()[0]
        assert report["deleted"] == 0 and report["unreachable_live"] == 0, report
    assert db.execute("SELECT sum((quiver.index_check(index))['live']::int) "
                      "FROM quiver._leaf_indexes('docs_restored', 'embedding')").fetchone()[0] == 1500


def test_round_trip_with_every_vector_kept_apart(snaps):
    """At 2,000 dimensions no element fits with its vector in one page item:
    the stored graph comes back with every vector in an item of its own."""
    db = snaps
    db.execute("SELECT quiver.create_collection('wide', 2000, 'l2')")
    data = embedding_like(200, 2000, seed=7)
    with db.cursor().copy("COPY wide (id, embedding) FROM STDIN") as cp:
        for i, v in enumerate(data):
            cp.write_row((i, text(v)))
    queries = embedding_like(10, 2000, seed=8)

    def beams(table):
        db.execute("SET enable_seqscan = off")
        out = []
        for ef in (1, 3, 10, 400):
            db.execute(f"SET hnsw.ef_search = {ef}")
            out.append([[r[0] for r in db.execute(f"SELECT id FROM {table} ORDER BY embedding <-> %s::vector LIMIT 10",
                                                   (text(q),)).fetchall()] for q in queries])
        db.execute("RESET enable_seqscan")
        db.execute("RESET hnsw.ef_search")
        return out

    before = beams("wide")
    name = db.execute("SELECT name FROM quiver.create_snapshot('wide')").fetchone()[0]
    db.execute("SELECT quiver.restore_snapshot(%s, 'wide_restored')", (name,))
    assert beams("wide_restored") == before
    (index,) = db.execute("SELECT index::text FROM quiver._leaf_indexes('wide_restored', 'embedding')").fetchone()
    report = db.execute("SELECT quiver.index_check(%s)", (index,)).fetchone()[0]
    assert report["live"] == 200 and report["vectors_apart"] == 200 and report["unreachable_live"] == 0, report


def notices_of(db):
    seen = []
    db.add_notice_handler(lambda d: seen.append(d.message_primary))
    return seen


def brute_force(db, table, q):
    # never prepared: a plan cached by answers() (same text) would still be an index scan
    db.execute("SET enable_indexscan = off")
    ids = [r[0] for r in db.execute(
        f'SELECT id FROM "{table}" ORDER BY embedding <=> %s::vector LIMIT 10', (text(q),), prepare=False).fetchall()]
    db.execute("RESET enable_indexscan")
    return ids


@pytest.mark.parametrize("quantization", ["none", "binary"])
def test_restore_after_updates_and_deletes_indexes_every_row(snaps, quantization):
    """Rows updated (their old versions' elements, not yet vacuumed, were
    the only close neighbours of the new ones), rows updated with a new
    vector, deleted rows: the restored index holds each snapshot row once,
    every element reachable, and finds the true nearest rows (measured
    1.0 over 100 queries, like a fresh build; the original, with its dead
    elements, 0.77 at ef 10)."""
    db = snaps
    make_collection(db, quantization=quantization)
    db.execute("UPDATE docs SET payload = '{\"updated\": true}' WHERE id % 10 = 1")
    db.execute("UPDATE docs SET embedding = embedding + embedding WHERE id % 25 = 2")
    db.execute("DELETE FROM docs WHERE id % 10 = 3")
    rows = db.execute("SELECT count(*) FROM docs").fetchone()[0]
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    seen = notices_of(db)
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_restored')", (name,))
    assert not [m for m in seen if "snapshot's graph" in m], seen
    report = db.execute("SELECT quiver.index_check('docs_restored_embedding_idx')").fetchone()[0]
    assert report["live"] == rows and report["deleted"] == 0 and report["unreachable_live"] == 0, report
    queries = embedding_like(50, DIM, seed=8)
    found = answers(db, "docs_restored", queries, ef=100)
    exact = [brute_force(db, "docs_restored", q) for q in queries]
    hits = sum(len(set(a) & set(b)) for a, b in zip(found, exact))
    assert hits >= 0.99 * 10 * len(queries), (hits, [(a, b) for a, b in zip(found, exact) if a != b][:3])


def test_restore_without_a_stored_graph_builds_the_index(snaps):
    """A collection snapshotted without its index (or a snapshot from a
    quiver that wrote no graph) restores with a freshly built one."""
    db = snaps
    make_collection(db)
    db.execute("DROP INDEX docs_embedding_idx")
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_restored')", (name,))
    report = db.execute("SELECT quiver.index_check('docs_restored_embedding_idx')").fetchone()[0]
    assert report["live"] == 1500 and report["unreachable_live"] == 0, report
    queries = embedding_like(10, DIM, seed=9)
    assert answers(db, "docs_restored", queries) == [brute_force(db, "docs_restored", q) for q in queries]


def test_snapshot_holds_exactly_the_rows_committed_before_it(snaps):
    db = snaps
    make_collection(db, rows=500)
    dsn = db.info.dsn
    stop = threading.Event()
    errors = []

    def writer(w):
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                k = 0
                while not stop.is_set():
                    c.execute("INSERT INTO docs (id, embedding) VALUES (%s, %s)",
                              (10_000 + 2 * k + w, text(embedding_like(1, DIM, seed=k)[0])))
                    k += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    time.sleep(1)
    with psycopg.connect(dsn) as c:
        c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        visible = {r[0] for r in c.execute("SELECT id FROM docs").fetchall()}
        name = c.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
        c.execute("COMMIT")
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    after = db.execute("SELECT count(*) FROM docs").fetchone()[0]
    assert after > len(visible) > 500, "the writers did not write during the snapshot"
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_then')", (name,))
    assert {r[0] for r in db.execute("SELECT id FROM docs_then").fetchall()} == visible


def test_corruption_is_named_and_leaves_nothing_behind(snaps):
    db = snaps
    make_collection(db, rows=300)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    path = snapshot_file(db, name)
    good = path.read_bytes()
    tables = db.execute("SELECT count(*) FROM pg_class").fetchone()[0]

    def restore_fails(match):
        with pytest.raises(psycopg.Error, match=match):
            db.execute("SELECT quiver.restore_snapshot(%s, 'docs_bad')", (name,))
        assert db.execute("SELECT count(*) FROM pg_class").fetchone()[0] == tables
        assert db.execute("SELECT count(*) FROM quiver.collections WHERE name = 'docs_bad'").fetchone()[0] == 0

    step = max(1, len(good) // 40)
    for i in list(range(0, len(good), step)) + [len(good) - 1]:
        bad = bytearray(good)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        restore_fails(f'snapshot "{name}": ')
    for n in (0, 10, len(good) // 2, len(good) - 1):
        path.write_bytes(good[:n])
        restore_fails("snapshot is truncated|snapshot is corrupted")
    path.write_bytes(good[:8] + (7).to_bytes(4, "little") + good[12:])
    restore_fails("snapshot has format version 7; this quiver reads version 1")
    path.write_bytes(good)
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_good')", (name,))
    assert db.execute("SELECT count(*) FROM docs_good").fetchone()[0] == 300


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "a/b", "", ".hidden", "x..y", "a b",
                                 "é", "x" * 101, "name\\x"])
def test_names_cannot_leave_the_directory(snaps, bad):
    db = snaps
    for sql in ("SELECT quiver.restore_snapshot(%s, 'x')", "SELECT quiver.delete_snapshot(%s)",
                "SELECT * FROM quiver.export_snapshot(%s)", "SELECT quiver.import_snapshot(%s, '\\x00')"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid snapshot name"):
            db.execute(sql, (bad,))


def test_symbolic_links_are_refused(snaps):
    db = snaps
    make_collection(db, rows=50)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    link = snapshot_file(db, "evil")
    link.symlink_to(snapshot_file(db, name))
    try:
        with pytest.raises(psycopg.Error, match='snapshot "evil" is a symbolic link'):
            db.execute("SELECT quiver.restore_snapshot('evil', 'x')")
        with pytest.raises(psycopg.Error, match='snapshot "evil" is not a regular file'):
            db.execute("SELECT quiver.delete_snapshot('evil')")
        assert [r[0] for r in db.execute("SELECT name FROM quiver.list_snapshots()").fetchall()] == [name]
    finally:
        link.unlink()


def test_roles_without_file_privileges_are_refused(snaps):
    db = snaps
    make_collection(db, rows=50)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    role = "snap_" + os.urandom(3).hex()
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute(f"ALTER TABLE docs OWNER TO {role}")
        db.execute(f"SET ROLE {role}")
        for sql, what in [("SELECT quiver.create_snapshot('docs')", "pg_write_server_files"),
                          (f"SELECT quiver.delete_snapshot('{name}')", "pg_write_server_files"),
                          (f"SELECT quiver.restore_snapshot('{name}', 'mine')", "pg_read_server_files"),
                          ("SELECT * FROM quiver.list_snapshots()", "pg_read_server_files"),
                          (f"SELECT * FROM quiver.export_snapshot('{name}')", "pg_read_server_files"),
                          ("SELECT quiver.import_snapshot('mine', '\\x00')", "pg_write_server_files")]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"must be superuser or a member of {what}"):
                db.execute(sql)
        db.execute("RESET ROLE")
        db.execute(f"GRANT pg_write_server_files, pg_read_server_files TO {role}")
        db.execute(f"SET ROLE {role}")
        own = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
        db.execute("SELECT quiver.delete_snapshot(%s)", (own,))
    finally:
        db.execute("RESET ROLE")
        db.execute("ALTER TABLE docs OWNER TO postgres")
        db.execute(f"DROP ROLE {role}")


def test_stream_through_psql_and_back(snaps):
    """A client without server file access saves a snapshot with psql and
    loads it back in chunks."""
    db = snaps
    make_collection(db, rows=800)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    info = db.info
    out = subprocess.run(
        ["/usr/lib/postgresql/15/bin/psql", "-X", "-At", "-h", info.host, "-p", str(info.port), "-U", info.user,
         "-d", info.dbname, "-c",
         f"SELECT encode(chunk, 'base64') FROM quiver.export_snapshot('{name}', 4095) ORDER BY off"],
        capture_output=True, text=True, check=True)
    blob = base64.b64decode(out.stdout)
    assert blob == snapshot_file(db, name).read_bytes()
    for i in range(0, len(blob), 10_000):
        db.execute("SELECT quiver.import_snapshot('copy', %s, %s)", (blob[i:i + 10_000], i > 0))
    with pytest.raises(psycopg.errors.DuplicateObject, match='snapshot "copy" already exists'):
        db.execute("SELECT quiver.import_snapshot('copy', %s)", (blob,))
    db.execute("SELECT quiver.restore_snapshot('copy', 'docs_copy')")
    assert db.execute("SELECT count(*) FROM docs_copy").fetchone()[0] == 800
    v = db.execute("SELECT * FROM quiver.verify_snapshot('copy')").fetchone()
    assert v[1:4] == ("docs", 800, len(blob))


def test_errors_for_missing_things(snaps):
    db = snaps
    with pytest.raises(psycopg.Error, match='collection "nope" does not exist'):
        db.execute("SELECT quiver.create_snapshot('nope')")
    with pytest.raises(psycopg.errors.UndefinedFile, match='snapshot "nope" does not exist'):
        db.execute("SELECT quiver.restore_snapshot('nope', 'x')")
    with pytest.raises(psycopg.errors.UndefinedFile, match='snapshot "nope" does not exist'):
        db.execute("SELECT quiver.delete_snapshot('nope')")
    db.execute("CREATE TABLE odd (id int PRIMARY KEY, v vector(3))")
    db.execute("SELECT quiver.register_collection('odd', 'v')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match='collection "odd" is not of the shape snapshots store'):
        db.execute("SELECT quiver.create_snapshot('odd')")
    make_collection(db, rows=10)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    with pytest.raises(psycopg.errors.DuplicateObject, match='collection "docs" already exists'):
        db.execute("SELECT quiver.restore_snapshot(%s, 'docs')", (name,))


def test_restore_beyond_maintenance_work_mem_builds_and_says_so(snaps):
    """The stored graph is used only when the table's vectors fit in
    maintenance_work_mem (as a build links in memory); otherwise the build
    runs as CREATE INDEX would, with a NOTICE naming why."""
    db = snaps
    make_collection(db, rows=4000)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    seen = notices_of(db)
    db.execute("SET maintenance_work_mem = '1MB'")
    db.execute("SELECT quiver.restore_snapshot(%s, 'docs_restored')", (name,))
    # the rows or the graph is the first to overflow (each says which)
    assert any("not using the snapshot's graph" in m and "does not fit in maintenance_work_mem" in m
               for m in seen), seen
    report = db.execute("SELECT quiver.index_check('docs_restored_embedding_idx')").fetchone()[0]
    assert report["live"] == 4000 and report["unreachable_live"] == 0, report
