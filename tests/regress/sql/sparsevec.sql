-- sparsevec: pgvector's sparse vector type, its text form, limits and errors.
SELECT '{1:1.5,3:3.5}/5'::sparsevec;
SELECT ' { 3 : 3.5 ,  1  :  1.5  } / 5 '::sparsevec AS unordered_with_spaces;
SELECT '{1:0,2:1}/2'::sparsevec AS zeros_dropped;
SELECT '{}/3'::sparsevec;
SELECT '{1:1.5e38,2:-1.5e-38}/2'::sparsevec;
SELECT '{1:hello,2:1}/2'::sparsevec;
SELECT '{1:NaN,2:1}/2'::sparsevec;
SELECT '{1:Infinity,2:1}/2'::sparsevec;
SELECT '{1:4e38,2:1}/2'::sparsevec;
SELECT '{1:1e-46,2:1}/2'::sparsevec;
SELECT ''::sparsevec;
SELECT '{}'::sparsevec;
SELECT '{1:1,1:2}/2'::sparsevec;
SELECT '{0:1}/2'::sparsevec;
SELECT '{3:1}/2'::sparsevec;
SELECT '{}/0'::sparsevec;
SELECT '{}/1000000001'::sparsevec;
SELECT '{}/1000000000'::sparsevec AS largest_dimension;
SELECT '{}/3 junk'::sparsevec;
SELECT ('{' || string_agg(i || ':1', ',') || '}/16001')::sparsevec FROM generate_series(1, 16001) i;
SELECT length(('{' || string_agg(i || ':1', ',') || '}/16000')::sparsevec::text) AS max_nnz_text_length FROM generate_series(1, 16000) i;

-- typmod
SELECT '{1:1}/3'::sparsevec(3);
SELECT '{1:1}/3'::sparsevec(2);
SELECT '{}/1'::sparsevec(0);
SELECT '{}/1'::sparsevec(1000000001);
CREATE TABLE sv (id int, v sparsevec(3));
INSERT INTO sv VALUES (1, '{1:1,2:2,3:3}/3'), (2, '{}/3'), (3, '{1:1,2:1,3:1}/3'), (4, NULL);
INSERT INTO sv VALUES (5, '{1:1}/4');

-- casts
SELECT '[0,1.5,0,3.5,0]'::vector::sparsevec;
SELECT '[0,1.5,0,3.5,0]'::vector::sparsevec(4);
SELECT '{2:1.5,4:3.5}/5'::sparsevec::vector;
SELECT '{2:1.5,4:3.5}/5'::sparsevec::vector(4);
SELECT '{}/16001'::sparsevec::vector;
SELECT '[0,1.5,0,3.5,0]'::halfvec::sparsevec;
SELECT '{2:1.5,4:3.5}/5'::sparsevec::halfvec;
SELECT '{1:100000}/1'::sparsevec::halfvec;
SELECT ARRAY[1,0,2]::sparsevec, ARRAY[1.5,0,2]::real[]::sparsevec, ARRAY[0,0,2.5]::float8[]::sparsevec, ARRAY[1,0]::numeric[]::sparsevec;
SELECT ARRAY[[1,2]]::sparsevec;
SELECT ARRAY[1,NULL]::sparsevec;
SELECT ARRAY['NaN'::float8, 1]::sparsevec;
SELECT ARRAY[1,0,2]::sparsevec(2);

-- distances, norms, against the dense ones
SELECT l2_distance('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), l2_distance('[1,0,2]'::vector, '[0,2,1]');
SELECT '{1:1,3:2}/3'::sparsevec <-> '{2:2,3:1}/3';
SELECT inner_product('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), '{1:1,3:2}/3'::sparsevec <#> '{2:2,3:1}/3';
SELECT cosine_distance('{1:1,2:2}/3'::sparsevec, '{1:2,2:4}/3'), '{1:1,3:2}/3'::sparsevec <=> '{2:2,3:1}/3';
SELECT cosine_distance('{1:1}/3'::sparsevec, '{}/3');
SELECT l1_distance('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), '{1:1,3:2}/3'::sparsevec <+> '{2:2,3:1}/3';
SELECT l2_distance('{1:1}/3'::sparsevec, '{1:1}/4');
SELECT l2_norm('{1:3,2:4}/2'::sparsevec), l2_norm('{}/2'::sparsevec);
SELECT l2_normalize('{1:3,2:4}/2'::sparsevec), l2_normalize('{}/2'::sparsevec);

-- order and equality as pgvector's, and a btree index on it
SELECT v FROM sv ORDER BY v;
SELECT '{1:1}/2'::sparsevec = '{1:1}/2', '{1:1}/2'::sparsevec < '{1:2}/2', '{}/2'::sparsevec < '{}/3', '{1:-1}/2'::sparsevec < '{}/2';
CREATE INDEX ON sv (v);
SET enable_seqscan = off;
SELECT id FROM sv WHERE v = '{1:1,2:1,3:1}/3';
RESET enable_seqscan;
DROP TABLE sv;

-- hnsw on sparsevec: every opclass orders as the sequential scan does
-- (few rows: the search reaches all of them), built and then inserted into
CREATE TABLE hs (id int, v sparsevec(100000));
INSERT INTO hs SELECT i, ('{' || (i % 7 + 1) || ':' || i || ',' || (i * 37 % 99991 + 8) || ':' || (i % 5 - 2) || '}/100000')::sparsevec
    FROM generate_series(1, 60) i;
INSERT INTO hs VALUES (61, '{}/100000'), (62, NULL);
CREATE INDEX hs_l2 ON hs USING hnsw (v sparsevec_l2_ops);
CREATE INDEX hs_ip ON hs USING hnsw (v sparsevec_ip_ops);
CREATE INDEX hs_cos ON hs USING hnsw (v sparsevec_cosine_ops);
CREATE INDEX hs_l1 ON hs USING hnsw (v sparsevec_l1_ops);
INSERT INTO hs SELECT i, ('{3:' || i || ',50000:1}/100000')::sparsevec FROM generate_series(63, 80) i;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM hs ORDER BY v <-> '{3:40}/100000' LIMIT 5;
CREATE TEMP TABLE q AS SELECT '{1:3,3:30,50000:2}/100000'::sparsevec AS v;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <-> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <#> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <=> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <+> (SELECT v FROM q), id LIMIT 10) t;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <-> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <#> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <=> (SELECT v FROM q), id LIMIT 10) t;
SELECT array_agg(id) FROM (SELECT id FROM hs ORDER BY v <+> (SELECT v FROM q), id LIMIT 10) t;
RESET enable_indexscan;
-- the zero vector has no direction: 78 rows in the cosine index, 79 in the others
SELECT (quiver.index_check('hs_cos')->>'live')::int AS cosine, (quiver.index_check('hs_l2')->>'live')::int AS l2,
    quiver.index_check('hs_l2')->>'unreachable_live' AS unreachable;
DELETE FROM hs WHERE id % 2 = 0;
VACUUM hs;
SELECT (quiver.index_check('hs_l1')->>'live')::int AS live, quiver.index_check('hs_l1')->>'unreachable_live' AS unreachable;
-- wrong dimensions, and pgvector's limit of 1,000 non-zero elements
SET enable_seqscan = off;
SELECT id FROM hs ORDER BY v <-> '{1:1}/3' LIMIT 1;
RESET enable_seqscan;
INSERT INTO hs SELECT 100, ('{' || string_agg(i || ':1', ',') || '}/100000')::sparsevec FROM generate_series(1, 1001) i;
-- an element is one page item: at m = 16 about 990 non-zero elements fit, more at lower m
-- pgvector's limit at any m: an element too large for one item keeps its vector in one of its own
INSERT INTO hs SELECT 101, ('{' || string_agg(i || ':1', ',') || '}/100000')::sparsevec FROM generate_series(1, 1000) i;
INSERT INTO hs SELECT 102, ('{' || string_agg(i || ':1', ',') || '}/100000')::sparsevec FROM generate_series(1, 980) i;
SELECT count(*) FROM hs WHERE id >= 100;
SET enable_seqscan = off;
SELECT id FROM hs ORDER BY v <+> ('{' || (SELECT string_agg(i || ':1', ',') FROM generate_series(1, 1000) i) || '}/100000')::sparsevec LIMIT 1;
RESET enable_seqscan;
SELECT (quiver.index_check('hs_l1')->>'vectors_apart')::int > 0 AS some_apart;
CREATE TABLE hs4 (v sparsevec(1000));
CREATE INDEX ON hs4 USING hnsw (v sparsevec_l2_ops) WITH (m = 4);
INSERT INTO hs4 VALUES (array_fill(1, ARRAY[1000])::vector::sparsevec);
SELECT count(*) FROM hs4;
-- no ivfflat for sparsevec (pgvector has none either) and no binary quantization
CREATE INDEX ON hs USING ivfflat (v sparsevec_l2_ops);
CREATE INDEX ON hs USING hnsw (v sparsevec_l2_ops) WITH (quantization = 'binary');
DROP TABLE hs, hs4;
