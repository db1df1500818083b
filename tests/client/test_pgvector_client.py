"""pgvector's own Python client against quiver: the wire formats must be
pgvector's byte for byte, in text and in binary mode.

Needs QUIVER_DSN pointing at a database where quiver can be created.
"""
import os
import struct

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector, Bit, SparseVector
from pgvector.psycopg import register_vector

DSN = os.environ["QUIVER_DSN"]


@pytest.fixture()
def conn():
    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS quiver")
        register_vector(c)
        c.execute("DROP TABLE IF EXISTS client_items")
        c.execute("CREATE TEMP TABLE client_items (id int, v vector(3), h halfvec(3), b bit(3))")
        yield c


VALUES = [np.array([1.5, -2.0, 3.25], dtype=np.float32),
          np.array([0.1, 1e-30, -3.4e38], dtype=np.float32)]


@pytest.mark.parametrize("binary", [False, True])
def test_vector_round_trip(conn, binary):
    for i, v in enumerate(VALUES):
        conn.execute("INSERT INTO client_items (id, v) VALUES (%s, %s)", (i, v), binary=binary)
    cur = conn.cursor(binary=binary)
    rows = cur.execute("SELECT v FROM client_items ORDER BY id").fetchall()
    for (got,), want in zip(rows, VALUES):
        arr = got.to_numpy()
        assert arr.dtype == np.float32
        assert np.array_equal(arr, want)


@pytest.mark.parametrize("binary", [False, True])
def test_halfvec_and_bit_round_trip(conn, binary):
    h = HalfVector([1.5, -2.0, 0.099975586])
    conn.execute("INSERT INTO client_items (id, h, b) VALUES (1, %s, %s)",
                 (h, Bit([True, False, True])), binary=binary)
    cur = conn.cursor(binary=binary)
    got_h, got_b = cur.execute("SELECT h, b FROM client_items").fetchone()
    assert got_h.to_list() == pytest.approx([1.5, -2.0, 0.099975586], rel=1e-6)
    # pgvector's client leaves Postgres' own bit type to psycopg: text '101',
    # or the varbit binary form (int32 length, packed bits).
    assert got_b == (b"\x00\x00\x00\x03\xa0" if binary else "101")


@pytest.mark.parametrize("binary", [False, True])
def test_nearest_neighbour_query_with_numpy_parameter(conn, binary):
    rng = np.random.default_rng(7)
    data = rng.standard_normal((50, 3)).astype(np.float32)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO client_items (id, v) VALUES (%s, %s)",
                        [(i, v) for i, v in enumerate(data)])
    q = rng.standard_normal(3).astype(np.float32)
    cur = conn.cursor(binary=binary)
    ids = [r[0] for r in cur.execute(
        "SELECT id FROM client_items ORDER BY v <-> %s, id LIMIT 5", (q,)).fetchall()]
    exact = np.argsort(np.linalg.norm(data - q, axis=1), kind="stable")[:5].tolist()
    assert ids == exact


def test_binary_send_is_pgvectors_layout(conn):
    raw = conn.execute("SELECT vector_send('[1,-2]'::vector), halfvec_send('[1]'::halfvec)").fetchone()
    assert bytes(raw[0]) == struct.pack(">hhff", 2, 0, 1.0, -2.0)
    assert bytes(raw[1]) == struct.pack(">hhe", 1, 0, 1.0)


@pytest.mark.parametrize("binary", [False, True])
def test_sparsevec_round_trip(conn, binary):
    conn.execute("CREATE TEMP TABLE client_sparse (id int, s sparsevec(6))")
    values = [SparseVector({0: 1.5, 4: -2.0}, 6), SparseVector({}, 6), SparseVector([0, 0, 3.25, 0, 0, 1e-30])]
    for i, v in enumerate(values):
        conn.execute("INSERT INTO client_sparse VALUES (%s, %s)", (i, v), binary=binary)
    cur = conn.cursor(binary=binary)
    got = [r[0] for r in cur.execute("SELECT s FROM client_sparse ORDER BY id").fetchall()]
    for g, want in zip(got, values):
        assert isinstance(g, SparseVector)
        assert g.dimensions() == 6 and g.indices() == want.indices()
        assert np.array_equal(np.array(g.values(), dtype=np.float32), np.array(want.values(), dtype=np.float32))
    nearest = cur.execute("SELECT id FROM client_sparse ORDER BY s <-> %s LIMIT 1",
                          (SparseVector({0: 1.0, 4: -2.0}, 6),), binary=binary).fetchone()[0]
    assert nearest == 0


def test_sparsevec_send_is_pgvectors_layout(conn):
    raw = conn.execute("SELECT sparsevec_send('{2:1.5,5:-2}/6'::sparsevec)").fetchone()[0]
    # int32 dim, nnz, unused; 0-based int32 indices; float4 values
    assert bytes(raw) == struct.pack(">iiiiiff", 6, 2, 0, 1, 4, 1.5, -2.0)


def test_copy_binary_round_trip(conn):
    for i, v in enumerate(VALUES):
        conn.execute("INSERT INTO client_items (id, v) VALUES (%s, %s)", (i, v))
    with conn.cursor() as cur:
        with cur.copy("COPY (SELECT v FROM client_items ORDER BY id) TO STDOUT (FORMAT BINARY)") as cp:
            data = b"".join(bytes(chunk) for chunk in cp)
        cur.execute("CREATE TEMP TABLE copied (v vector(3))")
        with cur.copy("COPY copied FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(data)
    got = [r[0].to_numpy() for r in conn.execute("SELECT v FROM copied").fetchall()]
    assert len(got) == len(VALUES)
    assert all(np.array_equal(g, w) for g, w in zip(got, VALUES))


def _send_binary_vector(conn, payload: bytes):
    """Sends `payload` as a binary-format vector parameter, bypassing the client's encoder."""
    oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]
    pgconn = conn.pgconn
    res = pgconn.exec_params(b"SELECT $1::vector::text", [payload], [oid], [1], 0)
    return res


@pytest.mark.parametrize("payload,message", [
    (struct.pack(">hhf", 3, 0, 1.0), "insufficient data left in message"),
    (struct.pack(">hh", 0, 0), "vector must have at least 1 dimension"),
    (struct.pack(">hhf", 1, 7, 1.0), "expected unused to be 0, not 7"),
    (struct.pack(">hhf", 1, 0, float("nan")), "NaN not allowed in vector"),
    (struct.pack(">hhf", 1, 0, float("inf")), "infinite value not allowed in vector"),
    (struct.pack(">Hh", 65535, 0), "vector cannot have more than 16000 dimensions"),
    (struct.pack(">hhff", 1, 0, 1.0, 2.0), "incorrect binary data format"),
    (b"\x00", "insufficient data left in message"),
])
def test_lying_binary_input_is_rejected(conn, payload, message):
    res = _send_binary_vector(conn, payload)
    err = res.error_message.decode()
    assert message in err, err
    # the connection is still usable afterwards
    assert conn.execute("SELECT '[1]'::vector::text").fetchone()[0] == "[1]"
