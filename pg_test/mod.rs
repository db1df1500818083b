//! In-database tests (`cargo pgrx test`): each runs inside a transaction of
//! a real Postgres backend with quiver installed.

mod page_layout;
mod vector_sql;
