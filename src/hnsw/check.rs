//! `quiver.index_check(regclass)`: verifies an hnsw index's structure and
//! reports its shape. Structural damage (unreadable items, links to missing
//! elements or to levels an element does not have, a wrong entry point) is
//! an ERROR naming the first problem; otherwise a JSON report with counts,
//! including elements no longer reachable from the entry point.

use super::build::params_of;
use super::page::{self, item, max_offset, LockedBuffer};
use crate::fmgr::pg_function;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ElementShape, ItemRef};
use std::collections::{HashMap, VecDeque};

struct Element {
    level: usize,
    deleted: bool,
    links: Vec<Vec<ItemRef>>,
}

fn is_hnsw(index: pg_sys::Relation) -> bool {
    // SAFETY: an open relation; get_am_oid looks the name up in pg_am.
    unsafe { (*(*index).rd_rel).relam == pg_sys::get_am_oid(c"hnsw".as_ptr(), true) }
}

/// Opens index `oid`, which must be an hnsw index, for reading.
fn open_hnsw(oid: pg_sys::Oid) -> pg_sys::Relation {
    // SAFETY: index_open checks the relation is an index and locks it
    // against concurrent DROP/REINDEX for the rest of the transaction.
    let index = unsafe { pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
    if !is_hnsw(index) {
        close(index);
        pgrx::ereport!(ERROR, pgrx::PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, "index is not an hnsw index");
    }
    index
}

fn close(index: pg_sys::Relation) {
    // SAFETY: opened by open_hnsw with this lock mode.
    unsafe { pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
}

pub fn check(oid: pg_sys::Oid) -> String {
    let index = open_hnsw(oid);
    let meta = page::read_meta(index);
    let shape = ElementShape { params: params_of(&meta), vector_bytes: meta.stored_bytes() };
    let n = page::nblocks(index);
    let mut elements: HashMap<ItemRef, Element> = HashMap::new();
    for block in 1..n {
        pgrx::check_for_interrupts!();
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
            let level = match shape.validate(it) {
                Ok(l) => l,
                Err(e) => page::corrupted(index, &format!("element ({block},{off}): {e}")),
            };
            let links = (0..=level)
                .map(|lv| {
                    let mut v = Vec::new();
                    shape.neighbors(it, lv, &mut v);
                    v
                })
                .collect();
            elements.insert(ItemRef { block, offset: off }, Element { level, deleted: ElementShape::is_deleted(it), links });
        }
    }
    let mut max_level = 0;
    let mut degree0 = 0usize;
    for (r, e) in &elements {
        max_level = max_level.max(e.level);
        degree0 += e.links[0].len();
        for (lv, list) in e.links.iter().enumerate() {
            for (i, t) in list.iter().enumerate() {
                if t == r {
                    page::corrupted(index, &format!("element ({},{}) links to itself on level {lv}", r.block, r.offset));
                }
                match elements.get(t) {
                    None => page::corrupted(
                        index,
                        &format!("element ({},{}) links to missing ({},{})", r.block, r.offset, t.block, t.offset),
                    ),
                    Some(te) if te.level < lv => page::corrupted(
                        index,
                        &format!("element ({},{}) links on level {lv} to ({},{}) of level {}", r.block, r.offset, t.block, t.offset, te.level),
                    ),
                    _ => {}
                }
                if list[..i].contains(t) {
                    page::corrupted(index, &format!("element ({},{}) links twice to ({},{})", r.block, r.offset, t.block, t.offset));
                }
            }
        }
    }
    let mut reached = 0usize;
    let mut unreachable_live = 0usize;
    match meta.entry {
        None if !elements.is_empty() => page::corrupted(index, "elements exist but the entry point is empty"),
        None => {}
        Some((entry, level)) => {
            match elements.get(&entry) {
                None => page::corrupted(index, "entry point does not exist"),
                Some(e) if e.level != level as usize || e.level != max_level => {
                    page::corrupted(index, &format!("entry point has level {} (meta says {level}, highest is {max_level})", e.level))
                }
                _ => {}
            }
            let mut seen = std::collections::HashSet::new();
            let mut queue = VecDeque::from([entry]);
            seen.insert(entry);
            while let Some(r) = queue.pop_front() {
                for t in &elements[&r].links[0] {
                    if seen.insert(*t) {
                        queue.push_back(*t);
                    }
                }
            }
            reached = seen.len();
            unreachable_live = elements.iter().filter(|(r, e)| !e.deleted && !seen.contains(r)).count();
        }
    }
    let deleted = elements.values().filter(|e| e.deleted).count();
    close(index);
    format!(
        "{{\"elements\": {}, \"live\": {}, \"deleted\": {}, \"reachable\": {}, \"unreachable_live\": {}, \
         \"entry_level\": {}, \"avg_degree_level0\": {:.2}, \"pages\": {}, \"dims\": {}, \"m\": {}, \
         \"ef_construction\": {}, \"metric\": \"{}\", \"quantization\": \"{}\", \"vector_bytes\": {}, \"ok\": true}}",
        elements.len(),
        elements.len() - deleted,
        deleted,
        reached,
        unreachable_live,
        meta.entry.map(|(_, l)| l as i64).unwrap_or(-1),
        if elements.is_empty() { 0.0 } else { degree0 as f64 / elements.len() as f64 },
        n,
        meta.dims,
        meta.m,
        meta.ef_construction,
        meta.metric.name(),
        meta.quantization.name(),
        meta.stored_bytes()
    )
}

/// The meta page alone, as JSON (cheap: one page), for `quiver.index_stats`.
pub fn describe(oid: pg_sys::Oid) -> String {
    let index = open_hnsw(oid);
    let meta = page::read_meta(index);
    let kind = match meta.kind {
        quiver_core::space::ElementKind::F32 => "vector",
        quiver_core::space::ElementKind::F16 => "halfvec",
        quiver_core::space::ElementKind::Bits => "bit",
    };
    close(index);
    format!(
        "{{\"dims\": {}, \"type\": \"{kind}\", \"metric\": \"{}\", \"quantization\": \"{}\", \"vector_bytes\": {}, \"m\": {}, \"ef_construction\": {}, \"elements\": {}}}",
        meta.dims,
        meta.metric.name(),
        meta.quantization.name(),
        meta.stored_bytes(),
        meta.m,
        meta.ef_construction,
        meta.elements
    )
}

pg_function!(quiver_index_meta, |a| {
    let oid = pg_sys::Oid::from(a.datum(0).value() as u32);
    let report = describe(oid);
    Ok(pgrx::IntoDatum::into_datum(report.as_str()).expect("text datum"))
});

pg_function!(quiver_index_check, |a| {
    let oid = pg_sys::Oid::from(a.datum(0).value() as u32);
    let report = check(oid);
    Ok(pgrx::IntoDatum::into_datum(report.as_str()).expect("text datum"))
});
