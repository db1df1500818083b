//! The page arithmetic quiver does by hand, checked against Postgres's own:
//! where an item pointer sits (prefetching reads it without `PageGetItemId`)
//! and where `PageAddItem` puts each element (the build links elements
//! before their pages exist).

#[pgrx::pg_schema]
mod tests {
    use crate::hnsw::build::place;
    use crate::hnsw::page::{line_pointer_at, LINE_POINTERS_AT};
    use pgrx::pg_sys;
    use pgrx::prelude::*;
    use quiver_core::hnsw::layout::ItemRef;

    /// A fresh page in palloc'd memory (MAXALIGNed), initialised as the
    /// build initialises element pages.
    fn new_page() -> pg_sys::Page {
        // SAFETY: palloc0 returns a zeroed BLCKSZ block or raises ERROR;
        // PageInit writes only within it.
        unsafe {
            let page = pg_sys::palloc0(pg_sys::BLCKSZ as usize) as pg_sys::Page;
            pg_sys::PageInit(page, pg_sys::BLCKSZ as usize, 0);
            page
        }
    }

    #[pg_test]
    fn line_pointers_are_where_postgres_keeps_them() {
        assert_eq!(LINE_POINTERS_AT, 24, "SizeOfPageHeaderData");
        let page = new_page();
        let item = [7u8; 40];
        for expected in 1..=20u16 {
            // SAFETY: `page` is an initialised page; the item is 40 readable bytes.
            let (offset, id) = unsafe {
                let offset = pg_sys::PageAddItemExtended(page, item.as_ptr() as *mut _, item.len(), 0, 0);
                (offset, pg_sys::PageGetItemId(page, offset))
            };
            assert_eq!(offset, expected);
            assert_eq!(id as usize - page as usize, line_pointer_at(offset), "item {offset}");
        }
    }

    #[pg_test]
    fn build_places_elements_where_page_add_item_puts_them() {
        // level-0 elements of a 384-dimension index, with upper-level ones
        // and odd sizes among them, across several pages
        let sizes: Vec<usize> = (0..60)
            .map(|i| match i % 7 {
                0 => 1777,
                3 => 2100,
                5 => 13,
                _ => 1736,
            })
            .collect();
        let mut actual = Vec::new();
        let (mut block, mut page) = (1u32, new_page());
        for &s in &sizes {
            let item = vec![1u8; s];
            loop {
                // SAFETY: `page` is an initialised page; the item has `s` bytes.
                let offset = unsafe { pg_sys::PageAddItemExtended(page, item.as_ptr() as *mut _, s, 0, 0) };
                if offset != 0 {
                    actual.push(ItemRef { block, offset });
                    break;
                }
                block += 1;
                page = new_page();
            }
        }
        assert!(block >= 4, "the sizes span several pages");
        assert_eq!(place(sizes.into_iter()), actual);
    }
}
