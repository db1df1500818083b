#!/usr/bin/env python3
"""Writes sql/vector.sql and sql/halfvec.sql from one template.

The two types have the same SQL shape (pgvector's), so one template keeps
them from drifting apart. Run `python3 sql/generate.py` after editing;
`python3 sql/generate.py --check` fails when the committed files differ.
"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
C_FN = "AS 'MODULE_PATHNAME', '{sym}' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;"


def fn(name, args, ret, sym, comment):
    return (f"CREATE FUNCTION {name}({args}) RETURNS {ret}\n    " + C_FN.format(sym=sym)
            + f"\nCOMMENT ON FUNCTION {name}({args}) IS '{comment}';\n")


def type_sql(t, sym, desc, norm_name):
    """SQL for element type `t`; sym(name) is the C symbol of public function `name`."""
    out = [f"-- {t}: {desc}\n", f"CREATE TYPE {t};\n"]
    out.append(fn(f"{t}_in", "cstring, oid, integer", t, f"{t}_in", "I/O"))
    out.append(fn(f"{t}_out", t, "cstring", f"{t}_out", "I/O"))
    out.append(fn(f"{t}_typmod_in", "cstring[]", "integer", f"{t}_typmod_in", "I/O typmod"))
    out.append(fn(f"{t}_recv", "internal, oid, integer", t, f"{t}_recv", "I/O"))
    out.append(fn(f"{t}_send", t, "bytea", f"{t}_send", "I/O"))
    out.append(f"""CREATE TYPE {t} (
    INPUT     = {t}_in,
    OUTPUT    = {t}_out,
    TYPMOD_IN = {t}_typmod_in,
    RECEIVE   = {t}_recv,
    SEND      = {t}_send,
    STORAGE   = external
);
COMMENT ON TYPE {t} IS '{desc}';

""")
    tt = f"{t}, {t}"
    out.append(f"-- {t} functions\n")
    out.append(fn("l2_distance", tt, "float8", sym("l2_distance"), "Euclidean distance"))
    out.append(fn("inner_product", tt, "float8", sym("inner_product"), "inner product"))
    out.append(fn("cosine_distance", tt, "float8", sym("cosine_distance"), "cosine distance"))
    out.append(fn("l1_distance", tt, "float8", sym("l1_distance"), "taxicab distance"))
    out.append(fn("vector_dims", t, "integer", sym("vector_dims"), "number of dimensions"))
    out.append(fn(norm_name, t, "float8", sym(norm_name), "Euclidean norm"))
    out.append(fn("l2_normalize", t, t, sym("l2_normalize"), "normalize with Euclidean norm"))
    out.append(fn("binary_quantize", t, "bit", sym("binary_quantize"), "binary quantize"))
    out.append(fn("subvector", f"{t}, int, int", t, sym("subvector"), "subvector"))
    out.append(f"\n-- {t} private functions\n")
    for op, c in [("add", "+"), ("sub", "-"), ("mul", "*"), ("concat", "||")]:
        out.append(fn(f"{t}_{op}", tt, t, f"{t}_{op}", f"implementation of {c} operator"))
    for op, c in [("lt", "<"), ("le", "<="), ("eq", "="), ("ne", "<>"), ("ge", ">="), ("gt", ">")]:
        out.append(fn(f"{t}_{op}", tt, "bool", f"{t}_{op}", f"implementation of {c} operator"))
    out.append(fn(f"{t}_cmp", tt, "int4", f"{t}_cmp", "less-equal-greater"))
    out.append(fn(f"{t}_l2_squared_distance", tt, "float8", f"{t}_l2_squared_distance",
                  "squared Euclidean distance"))
    out.append(fn(f"{t}_negative_inner_product", tt, "float8", f"{t}_negative_inner_product",
                  "negative inner product"))
    out.append(fn(f"{t}_spherical_distance", tt, "float8", f"{t}_spherical_distance",
                  "spherical distance"))
    out.append(fn(f"{t}_accum", f"double precision[], {t}", "double precision[]", f"{t}_accum",
                  "aggregate transition function"))
    out.append(fn(f"{t}_avg", "double precision[]", t, f"{t}_avg", "aggregate final function"))
    out.append(fn(f"{t}_combine", "double precision[], double precision[]", "double precision[]",
                  "vector_combine", "aggregate combine function"))
    out.append(f"""
-- {t} aggregates
CREATE AGGREGATE avg({t}) (
    SFUNC = {t}_accum,
    STYPE = double precision[],
    FINALFUNC = {t}_avg,
    COMBINEFUNC = {t}_combine,
    INITCOND = '{{0}}',
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE avg({t}) IS 'the average (arithmetic mean) as {t} of all {t} values';
CREATE AGGREGATE sum({t}) (
    SFUNC = {t}_add,
    STYPE = {t},
    COMBINEFUNC = {t}_add,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE sum({t}) IS 'sum as {t} across all {t} input values';

-- {t} cast functions
""")
    out.append(fn(t, f"{t}, integer, boolean", t, t, f"adjust {t} to typmod"))
    for a, d in [("integer", "int4"), ("real", "float4"), ("double precision", "float8"),
                 ("numeric", "numeric")]:
        out.append(fn(f"array_to_{t}", f"{a}[], integer, boolean", t, f"array_to_{t}",
                      f"convert {d} array to {t}"))
    out.append(fn(f"{t}_to_float4", f"{t}, integer, boolean", "real[]", f"{t}_to_float4",
                  f"convert {t} to float4 array"))
    to_real = "IMPLICIT" if t == "vector" else "ASSIGNMENT"
    out.append(f"""
-- {t} casts
CREATE CAST ({t} AS {t}) WITH FUNCTION {t}({t}, integer, boolean) AS IMPLICIT;
CREATE CAST ({t} AS real[]) WITH FUNCTION {t}_to_float4({t}, integer, boolean) AS {to_real};
""")
    for a in ["integer", "real", "double precision", "numeric"]:
        out.append(f"CREATE CAST ({a}[] AS {t}) WITH FUNCTION array_to_{t}({a}[], integer, boolean)"
                   " AS ASSIGNMENT;\n")
    # Explicit casts to the other array types go through real[], which is
    # exact for every element; pgvector has only the real[] one.
    for a, short in [("double precision", "float8"), ("numeric", "numeric"), ("integer", "int4")]:
        out.append(f"""CREATE FUNCTION {t}_to_{short}({t}) RETURNS {a}[]
    AS 'SELECT $1::real[]::{a}[]' LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION {t}_to_{short}({t}) IS 'convert {t} to {short} array';
CREATE CAST ({t} AS {a}[]) WITH FUNCTION {t}_to_{short}({t});
""")
    out.append(f"\n-- {t} operators\n")
    for op, proc in [("<->", "l2_distance"), ("<#>", f"{t}_negative_inner_product"),
                     ("<=>", "cosine_distance"), ("<+>", "l1_distance")]:
        out.append(f"CREATE OPERATOR {op} (\n    LEFTARG = {t}, RIGHTARG = {t}, PROCEDURE = {proc},"
                   f"\n    COMMUTATOR = '{op}'\n);\n")
    for op, proc, comm, c in [("+", "add", "+", "add"), ("-", "sub", None, "subtract"),
                              ("*", "mul", "*", "multiply"), ("||", "concat", None, "concatenate")]:
        cm = f",\n    COMMUTATOR = {comm}" if comm else ""
        out.append(f"CREATE OPERATOR {op} (\n    LEFTARG = {t}, RIGHTARG = {t}, PROCEDURE = {t}_{proc}"
                   f"{cm}\n);\nCOMMENT ON OPERATOR {op} ({t}, {t}) IS '{c}';\n")
    for op, proc, comm, neg, sel, c in [
        ("<", "lt", ">", ">=", "scalarltsel, JOIN = scalarltjoinsel", "less than"),
        ("<=", "le", ">=", ">", "scalarlesel, JOIN = scalarlejoinsel", "less than or equal"),
        ("=", "eq", "=", "<>", "eqsel, JOIN = eqjoinsel", "equal"),
        ("<>", "ne", "<>", "=", "eqsel, JOIN = eqjoinsel", "not equal"),
        (">=", "ge", "<=", "<", "scalargesel, JOIN = scalargejoinsel", "greater than or equal"),
        (">", "gt", "<", "<=", "scalargtsel, JOIN = scalargtjoinsel", "greater than"),
    ]:
        out.append(f"CREATE OPERATOR {op} (\n    LEFTARG = {t}, RIGHTARG = {t}, PROCEDURE = {t}_{proc},"
                   f"\n    COMMUTATOR = {comm} , NEGATOR = {neg} ,\n    RESTRICT = {sel}\n);\n"
                   f"COMMENT ON OPERATOR {op} ({t}, {t}) IS '{c}';\n")
    out.append(f"""
-- {t} btree opclass: ORDER BY, DISTINCT, UNIQUE and merge joins on {t}
CREATE OPERATOR CLASS {t}_ops
    DEFAULT FOR TYPE {t} USING btree AS
    OPERATOR 1 < ,
    OPERATOR 2 <= ,
    OPERATOR 3 = ,
    OPERATOR 4 >= ,
    OPERATOR 5 > ,
    FUNCTION 1 {t}_cmp({t}, {t});
""")
    return "".join(out)


HEADER = "-- Generated by sql/generate.py from one template for vector and halfvec; edit the template.\n\n"

CONVERSIONS = """
-- conversions between vector and halfvec
CREATE FUNCTION halfvec_to_vector(halfvec, integer, boolean) RETURNS vector
    AS 'MODULE_PATHNAME', 'halfvec_to_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION vector_to_halfvec(vector, integer, boolean) RETURNS halfvec
    AS 'MODULE_PATHNAME', 'vector_to_halfvec' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (halfvec AS vector) WITH FUNCTION halfvec_to_vector(halfvec, integer, boolean) AS ASSIGNMENT;
CREATE CAST (vector AS halfvec) WITH FUNCTION vector_to_halfvec(vector, integer, boolean) AS IMPLICIT;
"""


def files():
    return {
        "vector.sql": HEADER + type_sql("vector", lambda s: s, "single-precision vector", "vector_norm"),
        "halfvec.sql": HEADER + type_sql("halfvec", lambda s: "halfvec_" + s, "half-precision vector",
                                         "l2_norm") + CONVERSIONS,
    }


def upgrade_gaps():
    """Releases in sql/releases from which no chain of sql/upgrades scripts
    reaches the version in Cargo.toml (ALTER EXTENSION quiver UPDATE would
    strand those databases)."""
    import re
    current = re.search(r'^version = "([^"]+)"', (HERE.parent / "Cargo.toml").read_text(), re.M).group(1)
    steps = {}
    for f in (HERE / "upgrades").glob("quiver--*--*.sql"):
        a, b = f.name[len("quiver--"):-len(".sql")].split("--")
        steps.setdefault(a, []).append(b)
    gaps = []
    for f in (HERE / "releases").glob("quiver--*.sql"):
        start = f.name[len("quiver--"):-len(".sql")]
        seen, todo = {start}, [start]
        while todo:
            for nxt in steps.get(todo.pop(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        if current not in seen:
            gaps.append(f"{start} -> {current}")
    return gaps


def main():
    check = "--check" in sys.argv[1:]
    gaps = upgrade_gaps()
    if gaps:
        sys.exit(f"no upgrade path (add sql/upgrades/quiver--A--B.sql): {', '.join(gaps)}")
    stale = []
    for name, text in files().items():
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"out of date (run python3 sql/generate.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
