//! INSERT: find neighbours by searching the on-page graph, place the new
//! element, then link it into its neighbours' lists page by page.
//!
//! Locking: the search takes only brief share locks. Placing the element
//! takes the meta page exclusively and then one data page (the meta page is
//! always locked first). Linking locks one neighbour page at a time and
//! re-checks the list it computed against, retrying when a concurrent
//! insert changed it. No lock covers the whole index.

use super::build::params_of;
use super::graph::{index_value, DiskGraph};
use super::page::{self, add_item, free_space, init_page, item, meta_from_page, LockedBuffer, PageWrite, META_BLOCK};
use pgrx::pg_sys;
use quiver_core::hnsw::fasthash::IdHashSet;
use quiver_core::hnsw::layout::{self, ElementShape, ItemRef, Meta};
use quiver_core::hnsw::maintain::{self, NeighborPolicy};
use quiver_core::hnsw::origin_seeds;
use quiver_core::hnsw::{search_layer, Candidate, SplitMix64};
use quiver_core::quantize::Quantization;
use quiver_core::space::{is_unit_length, links_by_cosine, AlignedBytes, Metric};
use std::cell::RefCell;

thread_local! {
    static LEVEL_RNG: RefCell<SplitMix64> = RefCell::new(SplitMix64(
        (std::process::id() as u64) << 32
            ^ std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7),
    ));
}

fn random_unit() -> f64 {
    LEVEL_RNG.with(|r| r.borrow_mut().next_unit())
}

/// A link to add in the same WAL record as a new element: `node`'s level-0
/// list, as read before placing, and the list it should become (with the
/// new element's slot marked by `NEW_SLOT`).
struct FirstLink {
    node: ItemRef,
    expected: Vec<ItemRef>,
    next: Vec<ItemRef>,
}

/// Placeholder for the new element's position in `FirstLink::next`.
const NEW_SLOT: ItemRef = ItemRef { block: u32::MAX - 1, offset: 0 };

/// How `place` makes the new element reachable.
enum Link<'a> {
    /// it becomes the entry point of an empty index (None if no longer empty)
    IntoEmpty,
    /// its nearest neighbour links to it in the same record
    From(&'a FirstLink),
    /// no link (the caller links it right after)
    Later,
}

/// A new element as `place` writes it: its item (with its vector, or with
/// `FLAG_VECTOR_APART` and a pointer `place` fills in) and its stored vector.
struct NewElement<'a> {
    item: Vec<u8>,
    vector: &'a [u8],
}

impl<'a> NewElement<'a> {
    /// The item for `vector` at `level`, keeping the vector apart when the
    /// two do not fit in one page item.
    fn new(shape: &ElementShape, level: usize, heap: ItemRef, vector: &'a [u8]) -> Self {
        let item = if shape.needs_apart(level, vector.len(), element_space()) {
            shape.encode_apart(level, heap, ItemRef { block: u32::MAX, offset: 0 })
        } else {
            shape.encode(level, heap, vector)
        };
        NewElement { item, vector }
    }
}

/// Bytes an element item may take on a page.
pub(crate) fn element_space() -> usize {
    page::max_item_size() - 8
}

/// Puts the element on the insert page (or a page with room, or a new page) and
/// updates the meta page in the same WAL record; sets the entry point when
/// the index was empty. With `Link::From`, the nearest neighbour's link to
/// the new element goes into that record too, so that at no moment, and
/// after a crash at no point, is the element unreachable. When that
/// neighbour's list changed since it was planned, nothing is written and
/// None is returned: the caller plans the link again.
fn place(
    index: pg_sys::Relation,
    el: &NewElement,
    level: usize,
    link: Link,
    shape: &ElementShape,
) -> Option<(ItemRef, Meta)> {
    let meta_buf = LockedBuffer::read(index, META_BLOCK, true);
    let mut meta = match meta_from_page(meta_buf.page()) {
        Ok(m) => m,
        Err(e) => page::corrupted(index, &format!("meta page: {e}")),
    };
    if matches!(link, Link::IntoEmpty) && meta.entry.is_some() {
        return None; // another insert came first: search and link like any other
    }
    let first_link = match link {
        Link::From(fl) => Some(fl),
        _ => None,
    };
    // Placers hold the meta page exclusively, and every other backend holds
    // at most one data page at a time, so holding the link page and a data
    // page together cannot deadlock. The link page is checked first, before
    // the index is extended, so that a retry leaves nothing behind.
    let link_buf = match first_link {
        None => None,
        Some(fl) => {
            let b = LockedBuffer::read(index, fl.node.block, true);
            let now = item(b.page(), fl.node.offset).map(|it| {
                let mut l = Vec::new();
                shape.neighbors(it, 0, &mut l);
                l
            });
            if now.as_ref() != Some(&fl.expected) {
                return None; // changed under us (locks released on return)
            }
            Some(b)
        }
    };
    let held = link_buf.as_ref().map(|b| b.block());
    let mut data = el.item.clone();
    let apart = ElementShape::is_apart(&data);
    let need = data.len().next_multiple_of(8) + 4;
    let link_page_has_room = link_buf.as_ref().map(|b| free_space(b.page()) >= need).unwrap_or(false);
    let mut target = None;
    // whether the free space map was asked (it may have marked held pages full)
    let mut searched_map = false;
    if !link_page_has_room {
        if meta.insert_block != META_BLOCK && Some(meta.insert_block) != held {
            let b = LockedBuffer::read(index, meta.insert_block, true);
            if free_space(b.page()) >= need {
                target = Some((b, false));
            }
        }
        if target.is_none() {
            // Space VACUUM reclaimed from deleted elements, before growing the index.
            searched_map = true;
            target = page::page_with_free_space(index, need, held.as_slice()).map(|b| (b, false));
        }
        if target.is_none() {
            target = Some((page::new_page(index), true));
        }
    }
    // A vector kept apart goes on another page with room (such vectors are
    // the ones that did not fit beside their links: most of a page), or a
    // new one. This fourth page is safe to wait for as the third is: every
    // other backend holds at most one data page, or holds the meta page.
    let vector_buf = apart.then(|| {
        let mut locked: Vec<u32> = held.into_iter().collect();
        locked.extend(target.as_ref().map(|(b, _)| b.block()));
        let need = (layout::VECTOR_ITEM_HEADER + el.vector.len()).next_multiple_of(8) + 4;
        searched_map = true;
        match page::page_with_free_space(index, need, &locked) {
            Some(b) => (b, false),
            None => (page::new_page(index), true),
        }
    });
    let mut w = PageWrite::start(index);
    let meta_page = w.register(meta_buf, false);
    let link_page = link_buf.map(|b| w.register(b, false));
    let vector_block = vector_buf.as_ref().map(|(b, _)| b.block());
    let vector_item = vector_buf.map(|(b, fresh)| {
        let block = b.block();
        let p = w.register(b, fresh);
        if fresh {
            init_page(p);
        }
        let bytes =
            layout::encode_vector_item(ItemRef { block: u32::MAX, offset: 0 }, ElementShape::heap(&data), el.vector);
        let Some(offset) = add_item(p, &bytes) else {
            pgrx::error!("hnsw: vector of {} bytes does not fit on a page", el.vector.len());
        };
        ElementShape::set_vector_at(&mut data, ItemRef { block, offset });
        (p, offset)
    });
    let (block, data_page) = match target {
        None => (held.expect("link page"), link_page.expect("link page")),
        Some((buf, fresh)) => {
            let block = buf.block();
            let p = w.register(buf, fresh);
            if fresh {
                init_page(p);
            }
            (block, p)
        }
    };
    let Some(offset) = add_item(data_page, &data) else {
        pgrx::error!("hnsw: element of {} bytes does not fit on a page", data.len());
    };
    let r = ItemRef { block, offset };
    if let Some((p, off)) = vector_item {
        layout::set_vector_item_owner(item(p, off).expect("added above"), r);
    }
    if let (Some(fl), Some(p)) = (first_link, link_page) {
        let it = item(p, fl.node.offset).expect("checked above");
        let next: Vec<ItemRef> = fl.next.iter().map(|x| if *x == NEW_SLOT { r } else { *x }).collect();
        shape.set_neighbors(it, 0, &next);
    }
    meta.insert_block = block;
    meta.elements += 1;
    if meta.entry.is_none() {
        meta.entry = Some((r, level as u16));
    }
    item(meta_page, 1).expect("meta item").copy_from_slice(&meta.to_bytes());
    if origin_seeds::kept_by(meta.metric, links_by_cosine(meta.kind, meta.dims)) {
        let mut seeds = page::origin_seeds_on(index, meta_page);
        if seeds.offer(r.pack(), origin_seeds::distance_to_origin(meta.kind, meta.metric, el.vector)) {
            page::put_origin_seeds(index, meta_page, &seeds);
        }
    }
    // After a search of the free space map, it learns the room left on the
    // pages written here: it hands a page out until told otherwise, and
    // `page_with_free_space` marks held pages full while it searches.
    let rooms: Vec<(u32, usize)> = [Some((block, data_page)), held.zip(link_page)]
        .into_iter()
        .flatten()
        .chain(vector_block.zip(vector_item.map(|(p, _)| p)))
        .filter(|_| searched_map)
        .map(|(b, p)| (b, free_space(p)))
        .collect();
    w.finish();
    for (b, room) in rooms {
        // SAFETY: open relation; the free space map is only a hint.
        unsafe { pg_sys::RecordPageWithFreeSpace(index, b, room) };
    }
    Some((r, meta))
}

/// The distance an element with vector `v` joins the graph by (see
/// `Metric::linking`): unit length is judged on it and on the entry point,
/// so that one index links its elements alike. A binary-quantized index
/// keeps the L2 graph: its stored codes do not keep a vector's norm.
pub(crate) fn link_metric(g: &mut DiskGraph, meta: &Meta, v: &[u8], entry: ItemRef) -> Metric {
    let unit = meta.metric != Metric::NegativeDot
        || meta.quantization != Quantization::None
        || (is_unit_length(meta.kind, v)
            && g.element_as_query(entry).is_none_or(|e| is_unit_length(meta.kind, e.as_bytes())));
    meta.metric.linking(meta.kind, meta.dims, unit)
}

/// How this graph's lists are chosen (`NeighborPolicy::for_graph`), for the
/// distance `g` links by now.
pub(crate) fn neighbor_policy(g: &DiskGraph) -> NeighborPolicy {
    NeighborPolicy::for_graph(g.metric, g.links_by_cosine)
}

/// The level-0 list `node` should have with the new element (at distance
/// `d`) forced in: appended when there is room, else replacing the farthest.
fn plan_first_link(g: &mut DiskGraph, node: ItemRef) -> Option<FirstLink> {
    let shape = g.shape;
    let expected = g.with_element(node, |b| {
        let mut l = Vec::new();
        shape.neighbors(b, 0, &mut l);
        l
    });
    let packed: Vec<u64> = expected.iter().map(|r| r.pack()).collect();
    let next = maintain::list_forcing(node.pack(), &packed, NEW_SLOT.pack(), shape.params.max_neighbors(0), g)?;
    let next = next.into_iter().map(ItemRef::unpack).collect();
    Some(FirstLink { node, expected, next })
}

/// Adds `new` to `node`'s list on `level`, pruning with the heuristic when
/// full; with `force`, a full list gives up its farthest link for `new` even
/// when the heuristic would not keep it. Returns whether `new` is linked.
pub(crate) fn connect(
    g: &mut DiskGraph,
    node: ItemRef,
    new: ItemRef,
    new_distance: f32,
    level: usize,
    force: bool,
) -> bool {
    connect_pruning(g, node, new, new_distance, level, force, &mut Vec::new())
}

/// `connect`, also returning in `dropped` the links the pruning removed
/// from `node`'s list (each may have lost its only incoming link).
fn connect_pruning(
    g: &mut DiskGraph,
    node: ItemRef,
    new: ItemRef,
    new_distance: f32,
    level: usize,
    force: bool,
    dropped: &mut Vec<ItemRef>,
) -> bool {
    let shape = g.shape;
    let max = shape.params.max_neighbors(level);
    for _attempt in 0..5 {
        let (current, node_level) = g.with_element(node, |b| {
            let mut l = Vec::new();
            let nl = ElementShape::level(b);
            if nl >= level {
                shape.neighbors(b, level, &mut l);
            }
            (l, nl)
        });
        if node_level < level {
            return false;
        }
        if current.contains(&new) {
            return true;
        }
        let packed: Vec<u64> = current.iter().map(|r| r.pack()).collect();
        let policy = neighbor_policy(g);
        let Some(next) = maintain::list_with(node.pack(), &packed, new.pack(), new_distance, max, force, policy, g)
        else {
            return false; // the new element did not make the cut
        };
        let next: Vec<ItemRef> = next.into_iter().map(ItemRef::unpack).collect();
        let buf = LockedBuffer::read(g.index, node.block, true);
        let mut w = PageWrite::start(g.index);
        let p = w.register(buf, false);
        let Some(it) = item(p, node.offset) else {
            page::corrupted(g.index, &format!("no element at ({},{})", node.block, node.offset));
        };
        let mut now = Vec::new();
        shape.neighbors(it, level, &mut now);
        if now != current {
            continue; // changed under us: recompute (the guard aborts on drop)
        }
        shape.set_neighbors(it, level, &next);
        w.finish();
        dropped.extend(current.iter().filter(|c| !next.contains(c)));
        return true;
    }
    false
}

/// Adds a link from `node` to `target` on `level` if `node`'s list has
/// room, without pruning (nothing else loses a link).
fn link_if_room(g: &mut DiskGraph, node: ItemRef, target: ItemRef, level: usize) {
    let shape = g.shape;
    // Never a new link to an element VACUUM flagged: its unlinking pass may
    // have passed this page already. (One flagged after this check is
    // safe: VACUUM waits for this insert before it unlinks.)
    if g.with_element_if_present(target, ElementShape::is_deleted).unwrap_or(true) {
        return;
    }
    let buf = LockedBuffer::read(g.index, node.block, true);
    let mut w = PageWrite::start(g.index);
    let p = w.register(buf, false);
    let Some(it) = item(p, node.offset) else { return };
    if ElementShape::level(it) < level {
        return;
    }
    let mut now = Vec::new();
    shape.neighbors(it, level, &mut now);
    if now.len() >= shape.params.max_neighbors(level) || now.contains(&target) || target == node {
        return; // (the guard aborts on drop)
    }
    now.push(target);
    shape.set_neighbors(it, level, &now);
    w.finish();
}

/// Inserts one element for heap tuple `heap` with vector bytes `v`;
/// `meta` is the meta page as the caller just read it (its entry point is
/// where the search starts).
pub fn insert_element(index: pg_sys::Relation, meta: &Meta, heap: ItemRef, v: AlignedBytes) {
    let mut meta = *meta;
    let params = params_of(&meta);
    let shape = ElementShape { params, vector_bytes: meta.stored_bytes() };
    let mut g = DiskGraph::new(index, &meta, v.clone());
    let stored = g.stored_form(&v);
    let level = params.level_for(random_unit());
    if meta.entry.is_none() {
        let el = NewElement::new(&shape, level, heap, stored.as_bytes());
        if place(index, &el, level, Link::IntoEmpty, &shape).is_some() {
            return;
        }
        // Another insert placed the first element meanwhile.
        meta = page::read_meta(index);
        g = DiskGraph::new(index, &meta, v.clone());
    }
    let Some((entry, top)) = meta.entry else {
        page::corrupted(index, "the entry point vanished during an insert");
    };
    let top = top as usize;
    g.metric = link_metric(&mut g, &meta, v.as_bytes(), entry);
    let mut cur = g.descend(entry, top, level);
    let mut chosen_per_level: Vec<Vec<Candidate<u64>>> = vec![Vec::new(); level + 1];
    for lv in (0..=level.min(top)).rev() {
        let mut visited = IdHashSet::default();
        let found = search_layer(&mut g, &cur, params.ef_construction, lv, &mut visited);
        chosen_per_level[lv] = neighbor_policy(&g).select(&found, params.max_neighbors(lv), &mut g);
        if !found.is_empty() {
            cur = found;
        }
    }
    let mut el = NewElement::new(&shape, level, heap, stored.as_bytes());
    for (lv, chosen) in chosen_per_level.iter().enumerate() {
        let refs: Vec<ItemRef> = chosen.iter().map(|c| ItemRef::unpack(c.node)).collect();
        shape.set_neighbors(&mut el.item, lv, &refs);
    }
    let nearest = chosen_per_level[0].first().map(|c| ItemRef::unpack(c.node));
    let (me, first_linked) = place_linked(&mut g, &el, level, nearest, &shape);
    for (lv, chosen) in chosen_per_level.iter().enumerate() {
        let mut linked = lv == 0 && first_linked;
        let mut dropped = Vec::new();
        for c in chosen {
            linked |= connect_pruning(&mut g, ItemRef::unpack(c.node), me, c.distance, lv, false, &mut dropped);
        }
        // A link the new element displaced may have been the only way to
        // its target: the new element, reachable through the list that
        // dropped it, links to it where it has room (the heuristic dropped
        // it for being closer to the new element than to the list's owner).
        for d in dropped {
            if d != me {
                link_if_room(&mut g, me, d, lv);
            }
        }
        // Nobody kept a link to the new element: it would be unreachable.
        if !linked && lv == 0 {
            if let Some(c) = chosen.first() {
                connect(&mut g, ItemRef::unpack(c.node), me, c.distance, lv, true);
            }
        }
    }
    if level > top {
        raise_entry(index, me, level);
    }
}

/// Places the element with the link from its nearest neighbour in the same
/// record, planning that link again while concurrent inserts keep changing
/// the neighbour's list. Returns the position and whether the link went in
/// (only after many lost races does it place without, and link after).
fn place_linked(
    g: &mut DiskGraph,
    data: &NewElement,
    level: usize,
    nearest: Option<ItemRef>,
    shape: &ElementShape,
) -> (ItemRef, bool) {
    const ATTEMPTS: usize = 50;
    if let Some(node) = nearest {
        for _ in 0..ATTEMPTS {
            let Some(first) = plan_first_link(g, node) else { break };
            if let Some((me, _)) = place(g.index, data, level, Link::From(&first), shape) {
                // the link it displaced, if the list was full (see insert_element)
                for d in first.expected.iter().filter(|x| !first.next.contains(x)) {
                    link_if_room(g, me, *d, 0);
                }
                return (me, true);
            }
            pgrx::check_for_interrupts!();
        }
    }
    let (me, _) = place(g.index, data, level, Link::Later, shape).expect("no link to check");
    (me, false)
}

/// Makes `me` (of `level`) the entry point unless an element at least as
/// high already is.
fn raise_entry(index: pg_sys::Relation, me: ItemRef, level: usize) {
    {
        let meta_buf = LockedBuffer::read(index, META_BLOCK, true);
        let mut w = PageWrite::start(index);
        let p = w.register(meta_buf, false);
        let it = item(p, 1).expect("meta item");
        let mut m = match Meta::from_bytes(it) {
            Ok(m) => m,
            Err(e) => page::corrupted(index, &format!("meta page: {e}")),
        };
        if m.entry.map(|(_, l)| level > l as usize).unwrap_or(true) {
            m.entry = Some((me, level as u16));
            it.copy_from_slice(&m.to_bytes());
            w.finish();
        }
    }
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _index_info: *mut pg_sys::IndexInfo,
) -> bool {
    // SAFETY: one indexed column: values/isnull have one entry; heap_tid is valid.
    if unsafe { *isnull } {
        return false;
    }
    page::begin_insert(index);
    let meta = page::read_meta(index);
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let Some(v) = index_value(unsafe { *values }, &meta) else {
        page::end_insert(index);
        return false;
    };
    // SAFETY: the callback's values/isnull hold one column and its tid is valid for the call.
    let heap = page::item_ref(unsafe { &*heap_tid });
    insert_element(index, &meta, heap, v);
    page::end_insert(index);
    false
}
