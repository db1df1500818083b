//! `quiver.index_check(regclass)`: verifies an hnsw index's structure and
//! reports its shape. Structural damage (unreadable items, links to missing
//! elements or to levels an element does not have, a wrong entry point) is
//! an ERROR naming the first problem; otherwise a JSON report with counts,
//! including elements no longer reachable from the entry point.

use super::build::params_of;
use super::page::{self, item, max_offset, LockedBuffer};
use crate::fmgr::pg_function;
use pgrx::pg_sys;
use quiver_core::hnsw::layout::{ElementShape, ItemRef, Meta};
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
    /// structural problems, each described in full (the description is
    /// also how two passes recognise the same problem)
    problems: Vec<String>,
    reached: usize,
    unreachable_live: HashSet<ItemRef>,
}

/// At most this many problems are collected per pass.
const MAX_PROBLEMS: usize = 100;
/// Reads of the index before transient findings are given up on.
const MAX_PASSES: usize = 5;

/// Reads every page (one share lock at a time) and checks what it read.
fn read_pass(index: pg_sys::Relation) -> Pass {
    let meta = page::read_meta(index);
    let shape = ElementShape { params: params_of(&meta), vector_bytes: meta.stored_bytes() };
    let pages = page::nblocks(index);
    let mut elements: HashMap<ItemRef, Element> = HashMap::new();
    for block in 1..pages {
        pgrx::check_for_interrupts!();
        let buf = LockedBuffer::read(index, block, false);
        for off in 1..=max_offset(buf.page()) {
            let Some(it) = item(buf.page(), off) else { continue };
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
            elements.insert(ItemRef { block, offset: off }, Element { level, deleted: ElementShape::is_deleted(it), links });
        }
    }
    let mut problems = Vec::new();
    let mut report = |p: String| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    };
    let mut max_level = 0;
    for (r, e) in &elements {
        max_level = max_level.max(e.level);
        for (lv, list) in e.links.iter().enumerate() {
            for (i, t) in list.iter().enumerate() {
                if t == r {
                    report(format!("element ({},{}) links to itself on level {lv}", r.block, r.offset));
                }
                match elements.get(t) {
                    None => report(format!("element ({},{}) links to missing ({},{})", r.block, r.offset, t.block, t.offset)),
                    Some(te) if te.level < lv => report(format!(
                        "element ({},{}) links on level {lv} to ({},{}) of level {}",
                        r.block, r.offset, t.block, t.offset, te.level
                    )),
                    _ => {}
                }
                if list[..i].contains(t) {
                    report(format!("element ({},{}) links twice to ({},{})", r.block, r.offset, t.block, t.offset));
                }
            }
        }
    }
    let mut reached = 0usize;
    let mut unreachable_live = HashSet::new();
    match meta.entry {
        None if !elements.is_empty() => report("elements exist but the entry point is empty".into()),
        None => {}
        Some((entry, level)) => match elements.get(&entry) {
            None => report("entry point does not exist".into()),
            // An element above the entry point's level is not damage: an
            // insert places its element before it raises the entry point
            // (and a crash between the two leaves the graph searchable,
            // the element reached through its lower levels).
            Some(e) if e.level != level as usize => {
                report(format!("entry point has level {} (meta says {level}, highest is {max_level})", e.level))
            }
            _ => {
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
                unreachable_live = elements.iter().filter(|(r, e)| !e.deleted && !seen.contains(r)).map(|(r, _)| *r).collect();
            }
        },
    }
    Pass { meta, pages, elements, problems, reached, unreachable_live }
}

/// Checks the index. Pages are read one at a time while writers go on, so
/// one read can see a link written after its target's page was read, or an
/// element placed on a page read before its first link: such findings
/// vanish on the next read. A finding is reported only when two reads in a
/// row make it (real damage and real unreachable elements stay put; a write
/// in flight is over in microseconds, a read of the index takes far longer).
pub fn check(oid: pg_sys::Oid) -> String {
    let index = open_hnsw(oid);
    let mut pass = read_pass(index);
    let mut passes = 1;
    let mut unsettled = 0usize;
    while !pass.problems.is_empty() || !pass.unreachable_live.is_empty() {
        if passes == MAX_PASSES {
            // every read found something else: writers too busy to tell;
            // report nothing unconfirmed, but say so
            unsettled = pass.problems.len();
            pass.unreachable_live.clear();
            break;
        }
        let next = read_pass(index);
        passes += 1;
        if let Some(p) = next.problems.iter().find(|p| pass.problems.contains(p)) {
            page::corrupted(index, p);
        }
        let confirmed: HashSet<ItemRef> = next.unreachable_live.intersection(&pass.unreachable_live).copied().collect();
        let settled = next.problems.is_empty();
        pass = next;
        if settled {
            pass.unreachable_live = confirmed;
            break;
        }
    }
    let Pass { meta, pages, elements, reached, unreachable_live, .. } = pass;
    let deleted = elements.values().filter(|e| e.deleted).count();
    let degree0: usize = elements.values().map(|e| e.links[0].len()).sum();
    close(index);
    format!(
        "{{\"elements\": {}, \"live\": {}, \"deleted\": {}, \"reachable\": {}, \"unreachable_live\": {}, \
         \"entry_level\": {}, \"avg_degree_level0\": {:.2}, \"pages\": {}, \"dims\": {}, \"m\": {}, \
         \"ef_construction\": {}, \"metric\": \"{}\", \"quantization\": \"{}\", \"vector_bytes\": {}, \
         \"passes\": {passes}, \"unsettled\": {unsettled}, \"ok\": true}}",
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
