//! `quiver.index_check(regclass)`: verifies an hnsw index's structure and
//! reports its shape. Structural damage (unreadable items, links to missing
//! elements or to levels an element does not have, a wrong entry point) is
//! an ERROR naming the first problem; otherwise a JSON report with counts,
//! including elements no longer reachable from the entry point.

use super::build::params_of;
use super::page::{self, item, max_offset, LockedBuffer};
use crate::fmgr::pg_function;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{self, ElementShape, ItemRef, Meta, StoredVector};
use std::collections::{HashMap, HashSet, VecDeque};

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
    // Who may read an index's structure: whoever may read its table, and
    // monitoring roles (pg_monitor), as for Postgres' own statistics.
    // SAFETY: catalog lookups for the current user on an open index.
    let allowed = unsafe {
        let user = pg_sys::GetUserId();
        let table = (*(*index).rd_index).indrelid;
        pg_sys::pg_class_aclcheck(table, user, pg_sys::ACL_SELECT as pg_sys::AclMode) == pg_sys::AclResult::ACLCHECK_OK
            || pg_sys::has_privs_of_role(user, pg_sys::Oid::from(pg_sys::ROLE_PG_MONITOR))
    };
    if !allowed {
        close(index);
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to check index: SELECT on its table or membership in pg_monitor is required"
        );
    }
    index
}

fn close(index: pg_sys::Relation) {
    // SAFETY: opened by open_hnsw with this lock mode.
    unsafe { pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
}

/// What one read of the index found.
struct Pass {
    meta: Meta,
    pages: u32,
    elements: HashMap<ItemRef, Element>,
    /// structural problems this read found (see `Finding`)
    problems: Vec<Finding>,
    reached: usize,
    unreachable_live: HashSet<ItemRef>,
    /// elements whose vector is an item of its own
    vectors_apart: usize,
}

/// What a read found wrong. Findings within one item were read under its
/// page's lock and are damage outright; findings that join two pages (a
/// link and its target, the meta page and the entry point) may only show
/// that the pages were read at different moments, and are confirmed by
/// `confirm`, which reads both again under locks that exclude the writers.
#[derive(Debug, Clone, PartialEq)]
enum Finding {
    /// a problem inside one element item
    Item(String),
    /// `from` links on `level` to `to`, which was missing or lower than `level`
    Link { from: ItemRef, level: usize, to: ItemRef },
    /// the entry point the meta page names is missing or of another level
    Entry,
    /// `element` (of heap tuple `heap`) keeps its vector at `at`, where no
    /// vector of it was found
    Vector { element: ItemRef, at: ItemRef, heap: ItemRef },
}

/// At most this many problems are collected per pass.
const MAX_PROBLEMS: usize = 100;

/// Reads every page (one share lock at a time) and checks what it read.
fn read_pass(index: pg_sys::Relation) -> Pass {
    let meta = page::read_meta(index);
    let shape = ElementShape { params: params_of(&meta), vector_bytes: meta.stored_bytes() };
    let pages = page::nblocks(index);
    let mut elements: HashMap<ItemRef, Element> = HashMap::new();
    // vectors kept apart: where each is, with its owner as it names it
    let mut vector_items: HashMap<ItemRef, (ItemRef, ItemRef)> = HashMap::new();
    let mut apart: Vec<(ItemRef, ItemRef, ItemRef)> = Vec::new();
    let mut problems = Vec::new();
    let mut report = |p: Finding| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    };
    for block in 1..pages {
        pgrx::check_for_interrupts!();
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
            if layout::is_vector_item(it) {
                let here = ItemRef { block, offset: off };
                match layout::vector_item_owner(it) {
                    Some(owner) if shape.variable() || layout::vector_item_vector(it).len() == shape.vector_bytes => {
                        vector_items.insert(here, owner);
                    }
                    _ => report(Finding::Item(format!("vector item ({block},{off}) is truncated"))),
                }
                continue; // its owner is checked below
            }
            let level = match shape.validate(it) {
                Ok(l) => l,
                // the bytes of one item are read under its page's lock: no
                // concurrent writer can make them invalid, so this is damage
                Err(e) => page::corrupted(index, &format!("element ({block},{off}): {e}")),
            };
            let links = (0..=level)
                .map(|lv| {
                    let mut v = Vec::new();
                    shape.neighbors(it, lv, &mut v);
                    v
                })
                .collect();
            let r = ItemRef { block, offset: off };
            if let StoredVector::Apart(at) = shape.vector(it) {
                apart.push((r, at, ElementShape::heap(it)));
            }
            elements.insert(r, Element { level, deleted: ElementShape::is_deleted(it), links });
        }
    }
    for &(element, at, heap) in &apart {
        if vector_items.get(&at) != Some(&(element, heap)) {
            report(Finding::Vector { element, at, heap });
        }
    }
    let vectors_apart = apart.len();
    for (r, e) in &elements {
        for (lv, list) in e.links.iter().enumerate() {
            for (i, t) in list.iter().enumerate() {
                if t == r {
                    report(Finding::Item(format!("element ({},{}) links to itself on level {lv}", r.block, r.offset)));
                }
                match elements.get(t) {
                    Some(te) if te.level >= lv => {}
                    // VACUUM frees deleted elements page by page, and does
                    // not rewrite their lists: until its own page's turn, a
                    // deleted element links to ones already freed. Searches
                    // skip an empty slot, so only a live element's link to
                    // nowhere is damage.
                    _ if e.deleted => {}
                    _ => report(Finding::Link { from: *r, level: lv, to: *t }),
                }
                if list[..i].contains(t) {
                    report(Finding::Item(format!(
                        "element ({},{}) links twice to ({},{})",
                        r.block, r.offset, t.block, t.offset
                    )));
                }
            }
        }
    }
    let mut reached = 0usize;
    let mut unreachable_live = HashSet::new();
    match meta.entry {
        None if !elements.is_empty() => report(Finding::Item("elements exist but the entry point is empty".into())),
        None => {}
        Some((entry, level)) => match elements.get(&entry) {
            // An element above the entry point's level is not damage: an
            // insert places its element before it raises the entry point
            // (and a crash between the two leaves the graph searchable,
            // the element reached through its lower levels).
            Some(e) if e.level == level as usize => {
                let mut seen = HashSet::new();
                let mut queue = VecDeque::from([entry]);
                seen.insert(entry);
                while let Some(r) = queue.pop_front() {
                    for t in elements.get(&r).map(|e| e.links[0].as_slice()).unwrap_or(&[]) {
                        if seen.insert(*t) {
                            queue.push_back(*t);
                        }
                    }
                }
                reached = seen.iter().filter(|r| elements.contains_key(r)).count();
                unreachable_live =
                    elements.iter().filter(|(r, e)| !e.deleted && !seen.contains(r)).map(|(r, _)| *r).collect();
            }
            _ => report(Finding::Entry),
        },
    }
    Pass { meta, pages, elements, problems, reached, unreachable_live, vectors_apart }
}

/// Reads a finding's pages again, this time holding the meta page and then
/// each page involved in share mode: every write that spans pages (placing
/// an element with its first link) holds the meta page exclusively, and
/// every other write changes one page at a time, so what these locks show
/// is a state of the index that existed. Returns the damage, if it is real.
fn confirm(index: pg_sys::Relation, shape: &ElementShape, finding: &Finding) -> Option<String> {
    match finding {
        Finding::Item(p) => Some(p.clone()),
        Finding::Link { from, level, to } => {
            let _meta = LockedBuffer::read(index, page::META_BLOCK, false);
            let src = LockedBuffer::read(index, from.block, false);
            let still_links = item(src.page(), from.offset).filter(|it| shape.validate(it).is_ok()).is_some_and(|it| {
                if ElementShape::is_deleted(it) {
                    return false; // see read_pass
                }
                let mut l = Vec::new();
                if ElementShape::level(it) >= *level {
                    shape.neighbors(it, *level, &mut l);
                }
                l.contains(to)
            });
            if !still_links {
                return None;
            }
            // Pages are locked in the order meta, source, target; no writer
            // waits for a page while holding another but under the meta lock.
            let dst = (to.block != from.block).then(|| LockedBuffer::read(index, to.block, false));
            let page_of_target = dst.as_ref().map(|b| b.page()).unwrap_or(src.page());
            let target_level = item(page_of_target, to.offset)
                .filter(|it| shape.validate(it).is_ok())
                .map(|it| ElementShape::level(it));
            match target_level {
                None => Some(format!(
                    "element ({},{}) links to missing ({},{})",
                    from.block, from.offset, to.block, to.offset
                )),
                Some(tl) if tl < *level => Some(format!(
                    "element ({},{}) links on level {level} to ({},{}) of level {tl}",
                    from.block, from.offset, to.block, to.offset
                )),
                Some(_) => None,
            }
        }
        Finding::Vector { element, at, heap } => {
            // Under the meta lock no element is being placed; VACUUM frees a
            // vector only after its element, whose page is held here.
            let _meta = LockedBuffer::read(index, page::META_BLOCK, false);
            let src = LockedBuffer::read(index, element.block, false);
            let still = item(src.page(), element.offset)
                .filter(|it| shape.validate(it).is_ok())
                .is_some_and(|it| shape.vector(it) == StoredVector::Apart(*at) && ElementShape::heap(it) == *heap);
            if !still {
                return None;
            }
            let dst = (at.block != element.block).then(|| LockedBuffer::read(index, at.block, false));
            let page_of_vector = dst.as_ref().map(|b| b.page()).unwrap_or(src.page());
            let owned =
                item(page_of_vector, at.offset).and_then(|it| layout::vector_item_owner(it)) == Some((*element, *heap));
            (!owned).then(|| {
                format!(
                    "element ({},{}) keeps its vector at ({},{}), which holds no vector of it",
                    element.block, element.offset, at.block, at.offset
                )
            })
        }
        Finding::Entry => {
            let meta_buf = LockedBuffer::read(index, page::META_BLOCK, false);
            let meta = match page::meta_from_page(meta_buf.page()) {
                Ok(m) => m,
                Err(e) => return Some(format!("meta page: {e}")),
            };
            let (entry, level) = meta.entry?;
            let buf = LockedBuffer::read(index, entry.block, false);
            match item(buf.page(), entry.offset)
                .filter(|it| shape.validate(it).is_ok())
                .map(|it| ElementShape::level(it))
            {
                None => Some("entry point does not exist".into()),
                Some(l) if l != level as usize => Some(format!("entry point has level {l} (meta says {level})")),
                Some(_) => None,
            }
        }
    }
}

/// Checks the index. Pages are read one at a time while writers go on, so
/// one read can see a link written after its target's page was read, or an
/// element placed on a page read before its first link. Structural
/// findings are therefore confirmed under locks (`confirm`) before they
/// are reported; unreachable elements are reported only when two reads in
/// a row find them (a write in flight is over in microseconds, a read of
/// the index takes far longer).
pub fn check(oid: pg_sys::Oid) -> String {
    let index = open_hnsw(oid);
    let confirm_all = |pass: &Pass| {
        let shape = ElementShape { params: params_of(&pass.meta), vector_bytes: pass.meta.stored_bytes() };
        for f in &pass.problems {
            if let Some(damage) = confirm(index, &shape, f) {
                page::corrupted(index, &damage);
            }
        }
    };
    let mut pass = read_pass(index);
    confirm_all(&pass);
    let mut passes = 1;
    // elements one read found unreachable and the next reached
    let mut unsettled = 0usize;
    if !pass.unreachable_live.is_empty() {
        let next = read_pass(index);
        passes += 1;
        confirm_all(&next);
        let confirmed: HashSet<ItemRef> = next.unreachable_live.intersection(&pass.unreachable_live).copied().collect();
        unsettled = pass.unreachable_live.len() - confirmed.len();
        pass = next;
        pass.unreachable_live = confirmed;
    }
    let Pass { meta, pages, elements, reached, unreachable_live, vectors_apart, .. } = pass;
    let deleted = elements.values().filter(|e| e.deleted).count();
    let degree0: usize = elements.values().map(|e| e.links[0].len()).sum();
    close(index);
    format!(
        "{{\"elements\": {}, \"live\": {}, \"deleted\": {}, \"reachable\": {}, \"unreachable_live\": {}, \
         \"entry_level\": {}, \"avg_degree_level0\": {:.2}, \"pages\": {}, \"dims\": {}, \"m\": {}, \
         \"ef_construction\": {}, \"metric\": \"{}\", \"quantization\": \"{}\", \"vector_bytes\": {}, \
         \"vectors_apart\": {vectors_apart}, \"passes\": {passes}, \"unsettled\": {unsettled}, \"ok\": true}}",
        elements.len(),
        elements.len() - deleted,
        deleted,
        reached,
        unreachable_live.len(),
        meta.entry.map(|(_, l)| l as i64).unwrap_or(-1),
        if elements.is_empty() { 0.0 } else { degree0 as f64 / elements.len() as f64 },
        pages,
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
        quiver_core::space::ElementKind::Sparse => "sparsevec",
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
