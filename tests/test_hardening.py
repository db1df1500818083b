"""Hardening: privileges that hold (a matrix of roles against quiver's
functions), committed rows that stay reachable under concurrent inserts,
an index check that tells the truth while writers run, hostile snapshot
files, scrapes that skip what the caller can't see and never wait for DDL,
and reloptions that cannot break planning."""
import os
import struct
import threading
import time
import zlib

import psycopg
import pytest

from vectors import embedding_like, text

DIM = 16


def roles(db, *names):
    made = []
    for n in names:
        r = f"{n}_{os.urandom(3).hex()}"
        db.execute(f"CREATE ROLE {r} LOGIN")
        made.append(r)
    return made


def drop_roles(db, made):
    db.execute("RESET ROLE")
    for r in made:
        db.execute(f"DROP OWNED BY {r}")
        db.execute(f"DROP ROLE {r}")


def as_role(db, role, sql, params=None):
    """Runs `sql` as `role`; returns None or the error's SQLSTATE and text."""
    db.execute(f"SET ROLE {role}")
    try:
        db.execute(sql, params)
        return None
    except psycopg.Error as e:
        return (e.sqlstate, str(e).splitlines()[0])
    finally:
        db.execute("RESET ROLE")


def attempt(db, role, sql):
    """Runs `sql` as `role` in a transaction that is rolled back; returns
    None or the error's SQLSTATE and text."""
    db.execute("BEGIN")
    try:
        db.execute(f"SET LOCAL ROLE {role}")
        db.execute(sql)
        return None
    except psycopg.Error as e:
        return (e.sqlstate, str(e).splitlines()[0])
    finally:
        db.execute("ROLLBACK")


def fill(db, table, rows, dim=DIM, seed=1, first=0):
    with db.cursor().copy(f'COPY "{table}" (id, embedding) FROM STDIN') as cp:
        for i, v in enumerate(embedding_like(rows, dim, seed=seed)):
            cp.write_row((first + i, text(v)))


@pytest.fixture()
def snaps(db):
    yield db
    db.execute("RESET ROLE")
    for (name,) in db.execute("SELECT name FROM quiver.list_snapshots()").fetchall():
        db.execute("SELECT quiver.delete_snapshot(%s)", (name,))


def test_snapshot_load_checks_table_rights_as_copy_does(snaps):
    db = snaps
    alice, reader, writer = roles(db, "alice", "reader", "writer")
    try:
        db.execute("SELECT quiver.create_collection('src', %s)", (DIM,))
        fill(db, "src", 5)
        db.execute("DROP INDEX src_embedding_idx")  # rows only: the load path
        name = db.execute("SELECT name FROM quiver.create_snapshot('src')").fetchone()[0]
        db.execute(f"CREATE TABLE alice_private (id bigint, embedding vector({DIM}), payload jsonb)")
        db.execute(f"ALTER TABLE alice_private OWNER TO {alice}")
        db.execute(f"GRANT pg_read_server_files TO {reader}, {writer}")
        db.execute(f"GRANT INSERT, SELECT ON alice_private TO {writer}")
        load = f"SELECT quiver._snapshot_load('{name}', 'alice_private')"
        assert as_role(db, reader, load) == ("42501", "permission denied for table alice_private")
        # row-level security, even for a role with the rights: COPY FROM refuses it too
        db.execute("ALTER TABLE alice_private ENABLE ROW LEVEL SECURITY")
        db.execute("ALTER TABLE alice_private FORCE ROW LEVEL SECURITY")
        db.execute("CREATE POLICY none_in ON alice_private FOR ALL USING (true) WITH CHECK (false)")
        err = as_role(db, writer, load)
        assert err == ("0A000", "a table with row-level security cannot be loaded into a snapshot"), err
        assert db.execute("SELECT count(*) FROM alice_private").fetchone()[0] == 0
        # without row-level security, the role with INSERT and SELECT may load
        db.execute("ALTER TABLE alice_private DISABLE ROW LEVEL SECURITY")
        assert as_role(db, writer, load) is None
        # ... and a snapshot of a table under row-level security is refused
        db.execute("ALTER TABLE src ENABLE ROW LEVEL SECURITY")
        db.execute(f"GRANT pg_write_server_files TO {writer}")
        db.execute(f"GRANT SELECT ON src TO {writer}")
        err = as_role(db, writer, "SELECT quiver._snapshot_write('src', 'leak', '{}')")
        assert err == ("0A000", "a table with row-level security cannot be written to a snapshot"), err
    finally:
        drop_roles(db, [alice, reader, writer])


def test_privilege_matrix(snaps):
    """Every role against the functions that touch files, catalogs, indexes
    and counters: allowed exactly where Postgres' own commands would be."""
    db = snaps
    owner, other, rfiles, wfiles, monitor = roles(db, "owner", "other", "rfiles", "wfiles", "monitor")
    try:
        db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}, {other}")
        db.execute(f"GRANT pg_read_server_files TO {rfiles}")
        db.execute(f"GRANT pg_write_server_files, pg_read_server_files TO {wfiles}")
        db.execute(f"GRANT pg_monitor TO {monitor}")
        db.execute(f"SET ROLE {owner}")
        db.execute("SELECT quiver.create_collection('owned', %s)", (DIM,))
        fill(db, "owned", 20)
        db.execute("RESET ROLE")
        snap = db.execute("SELECT name FROM quiver.create_snapshot('owned')").fetchone()[0]
        denied = "42501"
        calls = {
            "index_check": "SELECT quiver.index_check('owned_embedding_idx')",
            "index_stats": "SELECT * FROM quiver.index_stats('owned_embedding_idx')",
            "reset_metrics": "SELECT quiver.reset_metrics()",
            "drop_collection": "SELECT quiver.drop_collection('owned')",
            "create_alias": "SELECT quiver.create_alias('planted', 'owned')",
            "list_snapshots": "SELECT * FROM quiver.list_snapshots()",
            "verify_snapshot": f"SELECT * FROM quiver.verify_snapshot('{snap}')",
            "create_snapshot": "SELECT quiver.create_snapshot('owned')",
            "snapshot_load": f"SELECT quiver._snapshot_load('{snap}', 'owned')",
            "delete_snapshot": f"SELECT quiver.delete_snapshot('{snap}')",
            "metrics": "SELECT count(*) FROM quiver.metrics",
            "collections": "SELECT count(*) FROM quiver.collections",
        }
        allowed = {
            "index_check": {owner, monitor},
            "index_stats": {owner, monitor},
            "reset_metrics": set(),
            "drop_collection": {owner},
            "create_alias": {owner},
            "list_snapshots": {rfiles, wfiles},
            "verify_snapshot": {rfiles, wfiles},
            # writing a file of the rows takes file rights and SELECT
            "create_snapshot": set(),
            # loading takes file rights and INSERT/SELECT (the owner has no file rights)
            "snapshot_load": set(),
            "delete_snapshot": {wfiles},
            "metrics": {owner, other, rfiles, wfiles, monitor},
            "collections": {owner, other, rfiles, wfiles, monitor},
        }
        # each call in a transaction rolled back after (files excepted)
        for what, sql in calls.items():
            for role in (owner, other, rfiles, wfiles, monitor):
                err = attempt(db, role, sql)
                if role in allowed[what]:
                    assert err is None, (what, role, err)
                else:
                    assert err is not None and err[0] == denied, (what, role, err)
    finally:
        db.execute("RESET ROLE")
        db.execute("SELECT quiver.drop_collection(name, true) FROM quiver.collection_catalog")
        drop_roles(db, [owner, other, rfiles, wfiles, monitor])


def test_no_role_can_plant_an_alias_on_anothers_collection(db):
    alice, bob = roles(db, "alice", "bob")
    try:
        db.execute(f"GRANT CREATE ON SCHEMA public TO {alice}, {bob}")
        db.execute(f"SET ROLE {alice}")
        db.execute("SELECT quiver.create_collection('alices', %s)", (DIM,))
        db.execute("RESET ROLE")
        db.execute(f"SET ROLE {bob}")
        db.execute("CREATE VIEW bobs_view AS SELECT 1 AS x")
        db.execute("RESET ROLE")
        err = as_role(db, bob, "INSERT INTO quiver.alias_catalog (alias_name, view, collection) "
                               "VALUES ('planted', 'bobs_view', 'alices')")
        assert err == ("42501", 'new row violates row-level security policy for table "alias_catalog"'), err
        # nor by pointing one of his own alias rows at it afterwards
        db.execute(f"SET ROLE {bob}")
        db.execute("SELECT quiver.create_collection('bobs', %s)", (DIM,))
        db.execute("SELECT quiver.create_alias('bobs_alias', 'bobs')")
        db.execute("RESET ROLE")
        err = as_role(db, bob, "UPDATE quiver.alias_catalog SET collection = 'alices' WHERE alias_name = 'bobs_alias'")
        assert err is not None and err[0] == "42501", err
        db.execute(f"SET ROLE {alice}")
        db.execute("SELECT quiver.drop_collection('alices', cascade => true)")
        db.execute("RESET ROLE")
        assert db.execute("SELECT to_regclass('alices')").fetchone()[0] is None
    finally:
        drop_roles(db, [alice, bob])


def concurrent_inserts(dsn, table, dim, rows, start_ids, threads=5):
    barrier = threading.Barrier(threads)
    errors = []

    def work(t):
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                mine = [i for i in range(rows) if i % threads == t]
                data = embedding_like(rows, dim, seed=start_ids + 1)
                barrier.wait()
                for i in mine:
                    c.execute(f"INSERT INTO {table} VALUES (%s, %s)", (start_ids + i, text(data[i])))
        except Exception as e:  # noqa: BLE001 - any error fails the test
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def every_row_by_its_own_vector(db, table):
    """Each row's own vector, searched through the index, finds the row."""
    db.execute("SET enable_seqscan = off")
    db.execute("SET hnsw.ef_search = 100")
    missing = db.execute(
        f"SELECT t.id FROM {table} t WHERE t.id NOT IN "
        f"(SELECT s.id FROM {table} s ORDER BY s.v <-> t.v LIMIT 5)").fetchall()
    db.execute("RESET enable_seqscan")
    db.execute("RESET hnsw.ef_search")
    return [m[0] for m in missing]


@pytest.mark.parametrize("quantization", ["none", "binary"])
def test_concurrent_first_inserts_into_an_empty_index_stay_reachable(db, quantization):
    for round_ in range(4):
        table = f"e{round_}"
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v vector(1900))")
        db.execute(f"CREATE INDEX ON {table} USING hnsw (v vector_l2_ops) WITH (quantization = '{quantization}')")
        concurrent_inserts(db.info.dsn, table, 1900, 10, 0)
        report = db.execute(f"SELECT quiver.index_check('{table}_v_idx')").fetchone()[0]
        assert report["live"] == 10 and report["unreachable_live"] == 0, report
        # a nested loop of index scans, one per row
        db.execute("SET enable_hashjoin = off")
        db.execute("SET enable_mergejoin = off")
        assert every_row_by_its_own_vector(db, table) == []


def test_searches_and_inserts_find_their_way_while_vacuum_has_flagged_the_entry_point(db):
    # Between VACUUM's bulk delete (which flags the elements of dead rows) and
    # its cleanup (which moves the entry point off a flagged one) the heap is
    # vacuumed; cost delays stretch that window to seconds. The entry point is
    # among the deleted: every element the build made is (inserts after it
    # raise the entry point only above the top level, about 1 in 65,000).
    data = embedding_like(3020, 8, seed=4)
    db.execute("CREATE TABLE f (id int PRIMARY KEY, v vector(8)) WITH (fillfactor = 30)")
    with db.cursor().copy("COPY f FROM STDIN") as cp:
        for i in range(20, 3020):
            cp.write_row((i, text(data[i])))
    db.execute("CREATE INDEX f_v_idx ON f USING hnsw (v vector_l2_ops)")
    for i in range(20):
        db.execute("INSERT INTO f VALUES (%s, %s)", (i, text(data[i])))
    db.execute("DELETE FROM f WHERE id >= 20")

    def slow_vacuum():
        with psycopg.connect(db.info.dsn, autocommit=True) as v:
            v.execute("SET vacuum_cost_delay = '50ms'")
            v.execute("SET vacuum_cost_limit = 1")
            v.execute("VACUUM f")

    vacuum = threading.Thread(target=slow_vacuum)
    vacuum.start()
    try:
        deadline = time.time() + 60
        phase = None
        while phase != "vacuuming heap" and time.time() < deadline:
            time.sleep(0.02)
            row = db.execute("SELECT phase FROM pg_stat_progress_vacuum "
                             "WHERE relid = 'f'::regclass").fetchone()
            phase = row[0] if row else phase
        assert phase == "vacuuming heap", f"VACUUM never reached the heap phase (last: {phase})"
        db.execute("SET enable_seqscan = off")
        q = text(data[5])
        got = [r[0] for r in db.execute("SELECT id FROM f ORDER BY v <-> %s LIMIT 10", (q,))]
        db.execute("SET enable_indexscan = off")
        db.execute("SET enable_seqscan = on")
        exact = [r[0] for r in db.execute("SELECT id FROM f ORDER BY v <-> %s LIMIT 10", (q,))]
        db.execute("RESET enable_indexscan")
        assert got == exact
        # an insert in the window links its element into the graph
        db.execute("INSERT INTO f VALUES (5000, %s)", (text(data[1] + 0.01),))
        report = db.execute("SELECT quiver.index_check('f_v_idx')").fetchone()[0]
        still = db.execute("SELECT phase FROM pg_stat_progress_vacuum WHERE relid = 'f'::regclass").fetchone()
        assert still and still[0] == "vacuuming heap", "the window closed before the checks ran"
        assert report["unreachable_live"] == 0, report
    finally:
        vacuum.join()
    report = db.execute("SELECT quiver.index_check('f_v_idx')").fetchone()[0]
    assert report["live"] == 21 and report["unreachable_live"] == 0, report


# At 2,000 dimensions and m = 16 no element fits with its vector in one page
# item: every vector is an item of its own, read after its element's page is
# released and freed by VACUUM after its element.
@pytest.mark.parametrize("dim,m,rows", [(DIM, 4, 3000), (2000, 16, 600)], ids=["inline", "vectors-apart"])
def test_index_check_tells_the_truth_while_writers_run(db, dim, m, rows):
    db.execute(f"CREATE TABLE w (id int PRIMARY KEY, v vector({dim}))")
    data = embedding_like(rows, dim, seed=9)
    half = rows // 2
    with db.cursor().copy("COPY w FROM STDIN") as cp:
        for i in range(half):
            cp.write_row((i, text(data[i])))
    db.execute(f"CREATE INDEX w_v_idx ON w USING hnsw (v vector_l2_ops) WITH (m = {m}, ef_construction = {4 * m})")
    stop = threading.Event()
    errors = []

    def writer(w):
        try:
            with psycopg.connect(db.info.dsn, autocommit=True) as c:
                k = 0
                while not stop.is_set():
                    i = half + w + 2 * k
                    c.execute("INSERT INTO w VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
                              (i % rows, text(data[i % rows])))
                    c.execute("DELETE FROM w WHERE id = %s", ((i * 7) % rows,))
                    k += 1
                    if k % 200 == 0:
                        c.execute("VACUUM w")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in ts:
        t.start()
    checks = 0
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            report = db.execute("SELECT quiver.index_check('w_v_idx')").fetchone()[0]
            assert report["ok"], report
            checks += 1
    finally:
        stop.set()
        for t in ts:
            t.join()
    assert not errors, errors
    assert checks >= 5
    db.execute("VACUUM w")
    report = db.execute("SELECT quiver.index_check('w_v_idx')").fetchone()[0]
    assert report["unreachable_live"] == 0 and report["passes"] == 1, report
    live = db.execute("SELECT count(*) FROM w").fetchone()[0]
    assert report["live"] == live, report
    assert report["vectors_apart"] == (live if dim == 2000 else 0), report
    assert every_row_by_its_own_vector(db, "w") == []


def test_alter_index_cannot_set_options_the_build_refuses(db):
    db.execute(f"CREATE TABLE o (id int, v vector({DIM}))")
    db.execute("CREATE INDEX o_idx ON o USING hnsw (v vector_l2_ops) WITH (m = 16)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="ef_construction must be greater than or equal to 2 \\* m"):
        db.execute("ALTER INDEX o_idx SET (ef_construction = 4)")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="ef_construction must be greater than or equal to 2 \\* m"):
        db.execute("ALTER INDEX o_idx SET (m = 40)")
    db.execute("ALTER INDEX o_idx SET (ef_construction = 40)")
    db.execute(f"INSERT INTO o VALUES (7, '{text([1.0] * DIM)}')")
    db.execute("SET enable_seqscan = off")
    # the options the index kept still plan and scan
    assert db.execute(f"SELECT id FROM o ORDER BY v <-> '{text([0.0] * DIM)}' LIMIT 1").fetchall() == [(7,)]


def test_long_sharded_collection_names_do_not_collide(db):
    a, b = "x" * 55 + "_alpha", "x" * 55 + "_bravo"
    db.execute("SELECT quiver.create_collection(%s, %s, shards => 2)", (a, DIM))
    db.execute("SELECT quiver.create_collection(%s, %s, shards => 2)", (b, DIM))
    fill(db, a, 10)
    fill(db, b, 7)
    counts = db.execute("SELECT name, shards, points_count FROM quiver.collections ORDER BY name").fetchall()
    assert counts == [(a, 2, 10), (b, 2, 7)]


def test_scrapes_skip_what_the_caller_cannot_see_and_never_wait(db):
    (watcher,) = roles(db, "watcher")
    try:
        db.execute("CREATE SCHEMA hidden")
        db.execute("SET search_path = hidden, public")
        db.execute("SELECT quiver.create_collection('secret', %s)", (DIM,))
        db.execute("RESET search_path")
        db.execute("SELECT quiver.create_collection('open', %s)", (DIM,))
        fill(db, "open", 30)
        db.execute(f"GRANT SELECT ON hidden.secret, open TO {watcher}")  # no USAGE on hidden
        for sql in ["SELECT quiver.prometheus_metrics()", "SELECT count(*) FROM quiver.metrics",
                    "SELECT name, points_count FROM quiver.collections"]:
            assert as_role(db, watcher, sql) is None, sql
        db.execute(f"SET ROLE {watcher}")
        seen = db.execute("SELECT labels ->> 'collection' FROM quiver.metrics "
                          "WHERE metric = 'quiver_collection_points'").fetchall()
        db.execute("RESET ROLE")
        assert seen == [("open",)]
        # DDL holding a collection: the scrape answers anyway, without waiting
        with psycopg.connect(db.info.dsn) as locker:
            locker.execute("LOCK TABLE open IN ACCESS EXCLUSIVE MODE")
            locker.execute("SELECT 1 FROM pg_class WHERE oid = 'open_embedding_idx'::regclass")
            with psycopg.connect(db.info.dsn, autocommit=True) as scraper:
                scraper.execute("SET statement_timeout = '5s'")
                body = scraper.execute("SELECT quiver.prometheus_metrics()").fetchone()[0]
                assert f'quiver_index_size_bytes{{datname="{db.info.dbname}",index="open_embedding_idx"' in body
            locker.rollback()
    finally:
        db.execute("DROP SCHEMA hidden CASCADE")
        drop_roles(db, [watcher])


# --- hostile snapshot files: valid checksums, wrong contents -------------

def read_records(blob):
    assert blob[:8] == b"QUIVSNAP"
    out, at = [], 16
    while at < len(blob):
        kind, length = blob[at], struct.unpack_from("<I", blob, at + 4)[0]
        out.append((kind, bytearray(blob[at + 8:at + 8 + length])))
        at += 8 + length + 4
    return blob[:16], out


def write_records(header, records):
    out, crcs = bytearray(header), bytearray()
    for kind, payload in records:
        if kind == 255:  # end: rows, records before it, CRC of their CRCs
            rows = struct.unpack_from("<Q", payload, 0)[0]
            payload = struct.pack("<QQI", rows, len(records) - 1, zlib.crc32(crcs))
        head = bytes([kind, 0, 0, 0]) + struct.pack("<I", len(payload))
        crc = struct.pack("<I", zlib.crc32(head + bytes(payload)))
        out += head + payload + crc
        crcs += crc
    return bytes(out)


def graph_elements(payload):
    """(offset of each element's links by level) of a graph elements record."""
    assert payload[0] == 2
    count = struct.unpack_from("<I", payload, 5)[0]
    at, elements = 9, []
    for _ in range(count):
        pos = payload[at:at + 6]
        flags = payload[at + 14]
        level = flags & 0x7F
        at += 15
        lists = []
        for _ in range(level + 1):
            n = payload[at]
            lists.append((at + 1, n))
            at += 1 + 6 * n
        elements.append((bytes(pos), level, lists))
    return elements


def test_hostile_snapshots_are_refused_naming_the_file(snaps):
    db = snaps
    db.execute("SELECT quiver.create_collection('docs', %s, m => 4, ef_construction => 16)", (DIM,))
    fill(db, "docs", 600)
    name = db.execute("SELECT name FROM quiver.create_snapshot('docs')").fetchone()[0]
    path = db.execute("SELECT quiver._snapshot_path(%s)", (name,)).fetchone()[0]
    good = open(path, "rb").read()
    header, records = read_records(good)
    tables = db.execute("SELECT count(*) FROM pg_class").fetchone()[0]

    def refused(blob, match, verify=True):
        with open(path, "wb") as f:
            f.write(blob)
        sqls = ["SELECT quiver.restore_snapshot(%s, 'evil')"]
        if verify:  # (verify checks the file's structure, not the manifest's values)
            sqls.insert(0, "SELECT * FROM quiver.verify_snapshot(%s)")
        for sql in sqls:
            with pytest.raises(psycopg.Error, match=match) as e:
                db.execute(sql, (name,))
            assert f'snapshot "{name}"' in str(e.value)
        assert db.execute("SELECT count(*) FROM pg_class").fetchone()[0] == tables
        assert db.execute("SELECT count(*) FROM quiver.collection_catalog WHERE name = 'evil'").fetchone()[0] == 0

    graph = [i for i, (k, p) in enumerate(records) if k == 3 and p[0] == 2][0]
    elements = graph_elements(records[graph][1])
    high = [e for e in elements if e[1] >= 1 and e[2][1][1] > 0][0]
    low = [e for e in elements if e[1] == 0][0]

    # a level-1 link to an element of level 0
    bad = [(k, bytearray(p)) for k, p in records]
    bad[graph][1][high[2][1][0]:high[2][1][0] + 6] = low[0]
    refused(write_records(header, bad), "links on level 1 to .* which has level 0")

    # links to positions no page can hold
    for pos in (struct.pack("<IH", 0, 1), struct.pack("<IH", 5, 0), struct.pack("<IH", 5, 60000)):
        bad = [(k, bytearray(p)) for k, p in records]
        bad[graph][1][low[2][0][0]:low[2][0][0] + 6] = pos
        refused(write_records(header, bad), "impossible link")

    # a manifest that is not JSON: refused on restore, listed as unreadable, never breaking the list
    bad = [(1, bytearray(b"{"))] + records[1:]
    refused(write_records(header, bad), "manifest is not a JSON object")
    listed = db.execute("SELECT name, collection FROM quiver.list_snapshots()").fetchall()
    assert listed == [(name, None)]

    # a manifest injecting keys of the listing: they stay inside the manifest
    manifest = records[0][1].decode()
    injected = manifest[:-1] + ', "x": 1}, "name": "spoofed", "manifest": {"collection": {"name": "other"}'
    bad = [(1, bytearray(injected.encode()))] + records[1:]
    with open(path, "wb") as f:
        f.write(write_records(header, bad))
    assert db.execute("SELECT name FROM quiver.list_snapshots()").fetchall() == [(name,)]
    with pytest.raises(psycopg.Error, match="manifest is not a JSON object"):
        db.execute("SELECT * FROM quiver.verify_snapshot(%s)", (name,))

    # a manifest with values of the wrong type, and a bad timestamp
    m = records[0][1].decode().replace('"dim": ', '"dim": "many", "x": ').replace('"created_at": "', '"created_at": "never')
    bad = [(1, bytearray(m.encode()))] + records[1:]
    refused(write_records(header, bad), "has a manifest this quiver cannot read", verify=False)
    assert db.execute("SELECT name, created_at FROM quiver.list_snapshots()").fetchall() == [(name, None)]

    # a record declaring a huge length: refused without allocating it
    blob = bytearray(good)
    struct.pack_into("<I", blob, 16 + 4, 0xFFFFFF00)
    refused(bytes(blob), "snapshot")

    with open(path, "wb") as f:
        f.write(good)
    db.execute("SELECT quiver.restore_snapshot(%s, 'fine')", (name,))
    assert db.execute("SELECT quiver.index_check('fine_embedding_idx') ->> 'unreachable_live'").fetchone()[0] == "0"
