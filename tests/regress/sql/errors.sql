-- Bad input gets a clear error naming the problem, never a crash.
SELECT '[1,,2]'::vector;
SELECT '[1 2]'::vector;
SELECT ']'::vector;
SELECT ''::vector;
SELECT '[1,2'::vector;
SELECT '[1,2]junk'::vector;
SELECT '1,2'::vector;
SELECT '[1e39]'::vector;
SELECT '[-1e39]'::vector;
SELECT '[NaN]'::vector;
SELECT '[Infinity]'::vector;
SELECT '[-inf]'::vector;
SELECT '[]'::vector;
SELECT '[1,2]'::vector(3);
SELECT '[1,2]'::vector <-> '[1,2,3]';
SELECT '[1,2]'::vector + '[1]';
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[1e-30]'::vector * '[1e-30]';
SELECT subvector('[1,2,3]'::vector, 4, 1);
SELECT subvector('[1,2,3]'::vector, 1, 0);
SELECT ARRAY[[1,2],[3,4]]::vector;
SELECT ARRAY[1,NULL]::vector;
SELECT ARRAY[]::integer[]::vector;
SELECT ARRAY['NaN']::float8[]::vector;
SELECT ARRAY[1e300]::float8[]::vector;
SELECT ARRAY[1,2]::vector(3);
SELECT avg(v) FROM (VALUES ('[1,2]'::vector), ('[1]')) t(v);
-- typmods
CREATE TABLE bad (v vector(0));
CREATE TABLE bad (v vector(16001));
CREATE TABLE bad (v vector(1,2));
CREATE TABLE bad (v vector('a'));
-- more than 16,000 dimensions
SELECT array_fill(1::real, ARRAY[16001])::vector;
SELECT (array_fill(1::real, ARRAY[16000])::vector || '[1]'::vector);
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
