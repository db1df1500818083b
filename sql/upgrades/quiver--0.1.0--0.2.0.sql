-- quiver 0.1.0 -> 0.2.0 (ALTER EXTENSION quiver UPDATE)
--
-- 0.2.0 changes no SQL object: what changed is in the library (scans
-- return rows tied with the farthest result as pgvector does for identical
-- vectors; see CHANGELOG.md). An upgrade script must still exist for
-- ALTER EXTENSION to find the path; tests/test_upgrade.py checks that a
-- database upgraded through the scripts in sql/upgrades has exactly the
-- objects, definitions and settings of a fresh install.
\echo Use "ALTER EXTENSION quiver UPDATE" to load this file. \quit
