-- Behaviours pgvector's own test suite checks that quiver once did
-- differently; written here so CI covers them without a pgvector checkout.

-- A NULL query, or a zero vector under cosine, walks the index with every
-- distance 0 and returns the rows it reaches (pgvector does the same), not none.
CREATE TABLE compat_v (val vector(3));
INSERT INTO compat_v (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX ON compat_v USING hnsw (val vector_l2_ops);
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT * FROM compat_v ORDER BY val <-> (SELECT NULL::vector)) t;
DROP INDEX compat_v_val_idx;
CREATE INDEX ON compat_v USING hnsw (val vector_cosine_ops);
-- the zero vector has no direction: not in a cosine index, 2 rows remain
SELECT count(*) FROM (SELECT * FROM compat_v ORDER BY val <=> '[0,0,0]') t;
SELECT count(*) FROM (SELECT * FROM compat_v ORDER BY val <=> (SELECT NULL::vector)) t;
DROP INDEX compat_v_val_idx;
CREATE TABLE compat_h (val halfvec(3));
INSERT INTO compat_h SELECT val::halfvec FROM compat_v;
CREATE INDEX ON compat_h USING hnsw (val halfvec_ip_ops);
SELECT count(*) FROM (SELECT * FROM compat_h ORDER BY val <#> (SELECT NULL::halfvec)) t;
RESET enable_seqscan;

-- bit_jaccard_ops orders by <%> exactly as a sequential scan does
CREATE TABLE compat_b (id int, val bit(4));
INSERT INTO compat_b VALUES (1, B'0000'), (2, B'1100'), (3, B'1111'), (4, NULL), (5, B'1110');
CREATE INDEX ON compat_b USING hnsw (val bit_jaccard_ops);
SET enable_seqscan = off;
SELECT id, val, val <%> B'1111' AS distance FROM compat_b ORDER BY val <%> B'1111';
EXPLAIN (COSTS OFF) SELECT id FROM compat_b ORDER BY val <%> B'1111';
RESET enable_seqscan;
-- varbit values need not share a length: refused, as pgvector refuses it
CREATE TABLE compat_vb (val varbit(3));
CREATE INDEX ON compat_vb USING hnsw (val bit_hamming_ops);
CREATE INDEX ON compat_vb USING hnsw ((val::bit(3)) bit_hamming_ops);

-- pgvector's settings, with its ranges
SHOW hnsw.scan_mem_multiplier;
SET hnsw.scan_mem_multiplier = 0;
SET hnsw.scan_mem_multiplier = 1001;
SET hnsw.scan_mem_multiplier = 2;
RESET hnsw.scan_mem_multiplier;

-- aggregate states are checked as pgvector checks them, with its messages
SELECT vector_avg('{1}');
SELECT vector_avg('{{2,2,4,6}}');
SELECT vector_avg('{NULL,2,4,6}');
SELECT vector_avg('{}');
SELECT vector_avg('{1,NaN}');
SELECT vector_avg('{1,Infinity}');
SELECT vector_avg('{0}');
SELECT vector_accum('{}', '[1,2,3]');
SELECT vector_accum('{NULL}', '[1,2,3]');
SELECT vector_combine('{0}', '{0}');
SELECT vector_combine('{1,2}', '{3,4}');
SELECT vector_combine('{}', '{0}');
SELECT vector_combine('{0}', (SELECT array_agg(n) FROM generate_series(1, 16002) n));
SELECT halfvec_avg('{1}');
SELECT halfvec_avg('{}');
SELECT halfvec_accum('{{0}}', '[1,2,3]');
SELECT halfvec_combine('{NULL,2}', '{3,4}');
SELECT avg(v) FROM (VALUES ('[1,2]'::vector), ('[3,4]')) x(v);
SELECT avg(v) FROM (VALUES ('[1,2]'::halfvec), ('[3,4]')) x(v);

-- a partial index leaves the table's row count alone (it once set reltuples
-- to the rows its predicate admits), and the planner takes it for its filter
CREATE TABLE compat_p (i int4, v vector(3), c int4);
INSERT INTO compat_p SELECT i, ARRAY[i % 7, i % 11, i % 13], i % 50 FROM generate_series(1, 10000) i;
CREATE INDEX ON compat_p USING hnsw (v vector_l2_ops);
ANALYZE compat_p;
CREATE INDEX compat_p_c ON compat_p (c);
CREATE INDEX compat_p_partial ON compat_p USING hnsw (v vector_l2_ops) WHERE (c = 3);
SELECT relname, reltuples FROM pg_class WHERE relname IN ('compat_p', 'compat_p_partial') ORDER BY relname;
EXPLAIN (COSTS OFF) SELECT i FROM compat_p WHERE c = 3 ORDER BY v <-> '[1,2,3]' LIMIT 20;

-- 20 identical vectors: a scan returns as many rows as pgvector's, which
-- keeps up to 10 rows of one vector in one element (ties with the farthest
-- of the ef_search results come back, up to 9 per result), built or inserted
CREATE TABLE compat_d (v vector(3), h halfvec(3), b bit(3));
INSERT INTO compat_d SELECT '[1,1,1]', '[1,1,1]', B'111' FROM generate_series(1, 20);
CREATE INDEX compat_d_v ON compat_d USING hnsw (v vector_l2_ops);
CREATE INDEX compat_d_h ON compat_d USING hnsw (h halfvec_l2_ops);
CREATE INDEX compat_d_b ON compat_d USING hnsw (b bit_hamming_ops);
SET enable_seqscan = off;
SET hnsw.ef_search = 1;
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY v <-> '[1,1,1]') t;
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY h <-> '[1,1,1]') t;
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY b <~> B'111') t;
SET hnsw.ef_search = 5;
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY v <-> '[1,1,1]') t;
TRUNCATE compat_d;
INSERT INTO compat_d SELECT '[1,1,1]', '[1,1,1]', B'111' FROM generate_series(1, 20);
SET hnsw.ef_search = 1;
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY v <-> '[1,1,1]') t;
-- only rows at exactly the farthest result's distance are ties
INSERT INTO compat_d VALUES ('[1,1,2]', '[1,1,2]', B'110');
SELECT count(*) FROM (SELECT * FROM compat_d ORDER BY v <-> '[1,1,2]') t;
RESET hnsw.ef_search;
RESET enable_seqscan;

DROP TABLE compat_v, compat_h, compat_b, compat_vb, compat_p, compat_d;
