-- The ivfflat access method: pgvector's DDL, settings and results.
SET enable_seqscan = off;
CREATE TABLE ivf (id int, v vector(2));
INSERT INTO ivf SELECT i, ARRAY[i % 10, i / 10] FROM generate_series(0, 99) i;
INSERT INTO ivf VALUES (100, NULL);
CREATE INDEX ivf_l2 ON ivf USING ivfflat (v vector_l2_ops) WITH (lists = 4);
-- with every list probed, the order is exact
SET ivfflat.probes = 4;
SELECT id, v <-> '[3.2,4.1]' AS d FROM ivf ORDER BY v <-> '[3.2,4.1]' LIMIT 4;
EXPLAIN (COSTS OFF) SELECT id FROM ivf ORDER BY v <-> '[3.2,4.1]' LIMIT 5;
-- one probe reads one list: fewer rows than the table holds, all of them near
SET ivfflat.probes = 1;
SELECT count(*) < 100 AS one_list FROM (SELECT id FROM ivf ORDER BY v <-> '[0,0]') s;
SELECT id FROM ivf ORDER BY v <-> '[0,0]' LIMIT 1;
-- iterative scans probe further lists until the filter is met
SET ivfflat.iterative_scan = relaxed_order;
SELECT count(*) FROM (SELECT id FROM ivf WHERE id % 2 = 0 ORDER BY v <-> '[0,0]') s;
SET ivfflat.max_probes = 2;
SELECT count(*) < 50 AS bounded FROM (SELECT id FROM ivf WHERE id % 2 = 0 ORDER BY v <-> '[0,0]') s;
RESET ivfflat.max_probes;
RESET ivfflat.iterative_scan;
-- a NULL query returns the probed lists' rows
SET ivfflat.probes = 4;
SELECT count(*) FROM (SELECT id FROM ivf ORDER BY v <-> (SELECT NULL::vector)) s;
-- inserts after the build, and VACUUM
INSERT INTO ivf VALUES (101, '[3.1,4.1]');
SELECT id FROM ivf ORDER BY v <-> '[3.1,4.1]' LIMIT 2;
DELETE FROM ivf WHERE id < 50;
VACUUM ivf;
SELECT count(*) FROM (SELECT id FROM ivf ORDER BY v <-> '[3,4]') s;
SELECT min(id) FROM (SELECT id FROM ivf ORDER BY v <-> '[3,4]') s;
TRUNCATE ivf;
SELECT count(*) FROM (SELECT id FROM ivf ORDER BY v <-> '[3,4]') s;
DROP TABLE ivf;

-- the other opclasses
CREATE TABLE ivf2 (id int, v vector(3), h halfvec(3), b bit(4));
INSERT INTO ivf2 VALUES (1, '[1,0,0]', '[1,0,0]', B'1000'), (2, '[0,2,0]', '[0,2,0]', B'1100'),
    (3, '[0,0,3]', '[0,0,3]', B'1110'), (4, '[0,0,0]', '[0,0,0]', B'0000');
CREATE INDEX ON ivf2 USING ivfflat (v vector_ip_ops) WITH (lists = 2);
CREATE INDEX ON ivf2 USING ivfflat (v vector_cosine_ops) WITH (lists = 2);
CREATE INDEX ON ivf2 USING ivfflat (h halfvec_l2_ops) WITH (lists = 2);
CREATE INDEX ON ivf2 USING ivfflat (h halfvec_ip_ops) WITH (lists = 2);
CREATE INDEX ON ivf2 USING ivfflat (h halfvec_cosine_ops) WITH (lists = 2);
CREATE INDEX ON ivf2 USING ivfflat (b bit_hamming_ops) WITH (lists = 2);
SET ivfflat.probes = 2;
SELECT id FROM ivf2 ORDER BY v <#> '[1,1,1]';
-- the zero vector has no direction: not in a cosine index
SELECT id FROM ivf2 ORDER BY v <=> '[1,2,3]';
SELECT id FROM ivf2 ORDER BY h <-> '[0,0,2]';
SELECT id FROM ivf2 ORDER BY h <#> '[1,1,1]';
SELECT id FROM ivf2 ORDER BY h <=> '[1,2,3]';
SELECT id FROM ivf2 ORDER BY b <~> B'1111';
DROP TABLE ivf2;

-- errors
CREATE TABLE ivf3 (v vector(3), u vector, w vector(2001), vb varbit(3));
CREATE INDEX ON ivf3 USING ivfflat (v vector_l2_ops) WITH (lists = 0);
CREATE INDEX ON ivf3 USING ivfflat (v vector_l2_ops) WITH (lists = 32769);
CREATE INDEX ON ivf3 USING ivfflat (v vector_l1_ops);
CREATE INDEX ON ivf3 USING ivfflat (u vector_l2_ops);
CREATE INDEX ON ivf3 USING ivfflat (w vector_l2_ops);
CREATE INDEX ON ivf3 USING ivfflat (vb bit_hamming_ops);
CREATE INDEX ON ivf3 USING ivfflat (v);
INSERT INTO ivf3 (v) VALUES ('[1,2,3]');
SELECT v FROM ivf3 ORDER BY v <-> '[1,2]' LIMIT 1;
SET ivfflat.probes = 0;
SET ivfflat.max_probes = 0;
SET ivfflat.iterative_scan = strict_order;
DROP TABLE ivf3;
-- k-means that would outgrow maintenance_work_mem is refused, as in pgvector
CREATE TABLE ivf4 AS SELECT ARRAY[i, i % 7, i % 11]::vector(3) AS v FROM generate_series(1, 2000) i;
SET maintenance_work_mem = '1MB';
CREATE INDEX ON ivf4 USING ivfflat (v vector_l2_ops) WITH (lists = 1000);
RESET maintenance_work_mem;
DROP TABLE ivf4;
