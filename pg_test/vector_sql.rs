//! The SQL surface of `vector`, `halfvec` and `bit` distances, end to end.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn f64_of(sql: &str) -> f64 {
        Spi::get_one::<f64>(sql).expect("query ran").expect("not null")
    }

    fn text_of(sql: &str) -> String {
        Spi::get_one::<String>(sql).expect("query ran").expect("not null")
    }

    #[pg_test]
    fn cosine_distance_of_issue_example() {
        let d = f64_of("SELECT '[1,2,3]'::vector <=> '[3,2,1]'");
        assert!((d - 0.2857142857142857).abs() < 1e-12, "{d}");
    }

    #[pg_test]
    fn text_round_trip() {
        assert_eq!(text_of("SELECT '[1, 2.5 ,-3e20]'::vector::text"), "[1,2.5,-3e+20]");
        assert_eq!(text_of("SELECT '[1,0.1]'::halfvec::text"), "[1,0.099975586]");
    }

    #[pg_test]
    #[should_panic(expected = "invalid input syntax for type vector: \"[1,,2]\"")]
    fn malformed_text_is_an_error() {
        Spi::run("SELECT '[1,,2]'::vector").unwrap();
    }

    #[pg_test]
    #[should_panic(expected = "expected 3 dimensions, not 2")]
    fn typmod_is_enforced() {
        Spi::run("CREATE TEMP TABLE t (v vector(3)); INSERT INTO t VALUES ('[1,2]')").unwrap();
    }

    #[pg_test]
    #[should_panic(expected = "different vector dimensions 2 and 3")]
    fn mixed_dimensions_are_an_error() {
        Spi::run("SELECT '[1,2]'::vector <-> '[1,2,3]'").unwrap();
    }

    #[pg_test]
    fn distances_match_definitions() {
        assert_eq!(f64_of("SELECT '[0,0]'::vector <-> '[3,4]'"), 5.0);
        assert_eq!(f64_of("SELECT '[1,2]'::vector <#> '[3,4]'"), -11.0);
        assert_eq!(f64_of("SELECT inner_product('[1,2]'::vector, '[3,4]')"), 11.0);
        assert_eq!(f64_of("SELECT '[1,2]'::vector <+> '[3,5]'"), 5.0);
        assert_eq!(f64_of("SELECT '[0,0]'::halfvec <-> '[3,4]'"), 5.0);
        assert_eq!(f64_of("SELECT B'1010'::bit(4) <~> B'0110'"), 2.0);
        assert_eq!(f64_of("SELECT vector_norm('[3,4]')"), 5.0);
    }

    #[pg_test]
    fn arrays_cast_both_ways() {
        assert_eq!(text_of("SELECT ARRAY[1,2,3]::vector::text"), "[1,2,3]");
        assert_eq!(text_of("SELECT ARRAY[1.5,2]::numeric[]::vector::text"), "[1.5,2]");
        assert_eq!(text_of("SELECT '[1,2]'::vector::real[]::text"), "{1,2}");
        assert_eq!(text_of("SELECT '[1.5,2]'::vector::float8[]::text"), "{1.5,2}");
    }

    #[pg_test]
    fn aggregates() {
        assert_eq!(text_of("SELECT avg(v)::text FROM (VALUES ('[1,2]'::vector), ('[3,6]')) t(v)"), "[2,4]");
        assert_eq!(text_of("SELECT sum(v)::text FROM (VALUES ('[1,2]'::halfvec), ('[3,6]')) t(v)"), "[4,8]");
        assert!(Spi::get_one::<String>("SELECT avg(v)::text FROM (SELECT '[1]'::vector WHERE false) t(v)")
            .unwrap()
            .is_none());
    }

    #[pg_test]
    fn btree_order() {
        assert_eq!(
            text_of(
                "SELECT string_agg(v::text, ' ' ORDER BY v) FROM (VALUES ('[2]'::vector), ('[1,5]'), ('[1]')) t(v)"
            ),
            "[1] [1,5] [2]"
        );
    }
}
