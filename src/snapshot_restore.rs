//! Restoring a snapshot into a new collection's tables (the caller,
//! `quiver.restore_snapshot`, has verified the file and created them
//! without their hnsw index):
//! - rows go in through COPY's binary path, fed straight from the file
//!   (COPY routes rows to shards, fills the primary key, batches inserts);
//! - each shard's graph is kept, with the new TID of every row id, for the
//!   index build that follows: `CREATE INDEX` then writes the stored graph
//!   instead of linking one (`hnsw::build`), and inserts any row the graph
//!   does not cover.

use crate::hnsw::prebuilt::PrebuiltGraph;
use crate::snapshot::{corrupted, leaves, open_existing, require};
use pgrx::pg_sys;
use pgrx::spi::Spi;
use quiver_core::hnsw::fasthash::IdHashMap;
use quiver_core::hnsw::layout::Meta;
use quiver_core::hnsw::portable::{decode, GraphCheck, GraphPart, PortableElement};
use quiver_core::snapshot::{Reader, Record, RowRef, SnapshotError};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::BufReader;

thread_local! {
    static FEED: RefCell<Option<Feed>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct ShardGraph {
    header: Option<(Meta, Vec<u8>)>,
    elements: Vec<PortableElement>,
    /// estimated bytes held in `elements`
    bytes: usize,
    /// set when the graph outgrew maintenance_work_mem (the build could not
    /// use it either: its vectors would not fit): `elements` stays empty
    too_big: bool,
}

/// The bytes COPY reads: the binary COPY format, made record by record
/// from the snapshot as COPY asks for more.
struct Feed {
    name: String,
    reader: Reader<BufReader<std::fs::File>>,
    out: Vec<u8>,
    pos: usize,
    done: bool,
    rows: u64,
    graphs: HashMap<u32, ShardGraph>,
    check: GraphCheck,
}

const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl Feed {
    fn refill(&mut self) {
        self.out.drain(..self.pos);
        self.pos = 0;
        match self.reader.next_record() {
            Err(e) => corrupted(&self.name, e),
            Ok(None) => corrupted(&self.name, SnapshotError::Truncated),
            Ok(Some(Record::Manifest(_))) => {}
            Ok(Some(Record::Rows(rows))) => {
                self.rows += rows.len() as u64;
                for r in rows.iter() {
                    copy_tuple(&r, &mut self.out);
                }
            }
            Ok(Some(Record::Graph(payload))) => {
                match decode(&payload).and_then(|part| self.check.add(&part).map(|_| part)) {
                    Ok(GraphPart::Header { shard, meta, center }) => {
                        self.graphs.entry(shard).or_default().header = Some((meta, center));
                    }
                    Ok(GraphPart::Elements { shard, elements }) => {
                        let g = self.graphs.entry(shard).or_default();
                        if g.too_big {
                            return;
                        }
                        g.bytes += elements
                            .iter()
                            .map(|e| 64 + 8 * e.neighbors.iter().map(Vec::len).sum::<usize>())
                            .sum::<usize>();
                        // SAFETY: a plain GUC read (kB).
                        if g.bytes > unsafe { pg_sys::maintenance_work_mem } as usize * 1024 {
                            pgrx::notice!(
                            "hnsw: not using the snapshot's graph of shard {shard} (it does not fit in maintenance_work_mem); building the index"
                        );
                            *g = ShardGraph { too_big: true, ..Default::default() };
                            return;
                        }
                        g.elements.extend(elements);
                    }
                    Err(e) => corrupted(&self.name, SnapshotError::Malformed(e)),
                }
            }
            Ok(Some(Record::End { .. })) => {
                if let Err(e) = self.reader.next_record() {
                    corrupted(&self.name, e);
                }
                // the file may have changed since the caller verified it
                if let Err(e) = std::mem::take(&mut self.check).finish() {
                    corrupted(&self.name, SnapshotError::Malformed(e));
                }
                self.out.extend_from_slice(&(-1i16).to_be_bytes()); // the trailer
                self.done = true;
            }
        }
    }
}

/// One row as a binary COPY tuple: id int8, embedding vector (pgvector's
/// send format), payload jsonb (version 1 and the text).
fn copy_tuple(r: &RowRef, out: &mut Vec<u8>) {
    out.extend_from_slice(&3i16.to_be_bytes());
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&r.id.to_be_bytes());
    if r.vector_le.is_empty() {
        out.extend_from_slice(&(-1i32).to_be_bytes()); // a NULL vector
    } else {
        out.extend_from_slice(&(4 + r.vector_le.len() as i32).to_be_bytes());
        quiver_core::wire::encode_le_f32_into(r.vector_le, out);
    }
    match &r.payload {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(p) => {
            out.extend_from_slice(&(p.len() as i32 + 1).to_be_bytes());
            out.push(1);
            out.extend_from_slice(p);
        }
    }
}

/// COPY's data source: at least `minread` bytes (unless the data ended),
/// at most `maxread`.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn copy_feed(outbuf: *mut std::ffi::c_void, minread: i32, maxread: i32) -> i32 {
    FEED.with(|f| {
        let mut f = f.borrow_mut();
        let feed = f.as_mut().expect("COPY reads a snapshot only while one is loading");
        while feed.out.len() - feed.pos < minread.max(1) as usize && !feed.done {
            feed.refill();
            pgrx::check_for_interrupts!();
        }
        let n = (feed.out.len() - feed.pos).min(maxread.max(0) as usize);
        // SAFETY: COPY hands a buffer of at least `maxread` bytes.
        unsafe { std::ptr::copy_nonoverlapping(feed.out.as_ptr().add(feed.pos), outbuf as *mut u8, n) };
        feed.pos += n;
        n as i32
    })
}

/// Clears the feed however the load ends (an error unwinds through here).
struct FeedGuard;

impl Drop for FeedGuard {
    fn drop(&mut self) {
        FEED.with(|f| f.borrow_mut().take());
    }
}

/// Loads the rows of snapshot `name` into collection table `relid` and
/// keeps its graphs for the index build. Returns the number of rows.
fn load(name: &str, relid: pg_sys::Oid) -> u64 {
    require(false);
    // what COPY FROM a file checks besides server-file access: INSERT, no
    // row-level security; and SELECT, as the load reads back where rows landed
    crate::snapshot::require_table_rights(relid, &[pg_sys::ACL_INSERT, pg_sys::ACL_SELECT], "loaded into");
    let file = open_existing(name);
    let reader = Reader::new(BufReader::with_capacity(1 << 20, file)).unwrap_or_else(|e| corrupted(name, e));
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(COPY_SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    FEED.with(|f| {
        *f.borrow_mut() = Some(Feed {
            name: name.to_owned(),
            reader,
            out,
            pos: 0,
            done: false,
            rows: 0,
            graphs: HashMap::new(),
            check: GraphCheck::default(),
        })
    });
    let guard = FeedGuard;
    // SAFETY: the table was created by the caller's transaction, which
    // holds it; the parse state and options are what COPY FROM builds for
    // itself (as logical replication's table sync does); COPY reads through
    // `copy_feed` until the trailer.
    let copied = unsafe {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let rel = pg_sys::table_open(relid, lock);
        let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
        pg_sys::addRangeTableEntryForRelation(pstate, rel, lock, std::ptr::null_mut(), false, false);
        let format = pg_sys::makeDefElem(
            pg_sys::pstrdup(c"format".as_ptr()),
            pg_sys::makeString(pg_sys::pstrdup(c"binary".as_ptr())) as *mut pg_sys::Node,
            -1,
        );
        let options = pg_sys::lappend(std::ptr::null_mut(), format as *mut std::ffi::c_void);
        let cstate = pg_sys::BeginCopyFrom(
            pstate,
            rel,
            std::ptr::null_mut(),
            std::ptr::null(),
            false,
            Some(copy_feed),
            std::ptr::null_mut(),
            options,
        );
        let n = pg_sys::CopyFrom(cstate);
        pg_sys::EndCopyFrom(cstate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        n
    };
    let feed = FEED.with(|f| f.borrow_mut().take()).expect("feed");
    drop(guard);
    if !feed.done || copied != feed.rows {
        pgrx::error!("snapshot \"{name}\": loaded {copied} rows of {}", feed.rows);
    }
    keep_graphs(relid, feed.graphs);
    copied
}

/// Pairs each shard's graph with its new table and the TIDs its rows got.
fn keep_graphs(relid: pg_sys::Oid, mut graphs: HashMap<u32, ShardGraph>) {
    let mut pending = HashMap::new();
    for leaf in leaves(relid) {
        let Some(ShardGraph { header: Some((meta, center)), elements, .. }) = graphs.remove(&leaf.shard) else {
            continue;
        };
        let sql = format!("SELECT ctid, id FROM ONLY {}", leaf.name);
        let ids = Spi::connect(|client| {
            let table = client
                .select(&sql, None, &[])
                .unwrap_or_else(|e| pgrx::error!("snapshot: reading row locations failed: {e}"));
            let mut ids = IdHashMap::default();
            ids.reserve(table.len());
            for row in table {
                let tid: Option<pg_sys::ItemPointerData> = row.get(1).ok().flatten();
                let id: Option<i64> = row.get(2).ok().flatten();
                if let (Some(t), Some(id)) = (tid, id) {
                    ids.insert(crate::hnsw::page::item_ref(&t).pack(), id);
                }
            }
            ids
        });
        pending.insert(leaf.oid, PrebuiltGraph { meta, center, elements, ids });
    }
    crate::hnsw::prebuilt::hand_over(pending);
}

crate::fmgr::pg_function!(quiver_snapshot_load, |a| {
    let name = crate::snapshot::text_arg(&a, 0);
    let relid = pg_sys::Oid::from(a.datum(1).value() as u32);
    Ok(pgrx::IntoDatum::into_datum(load(&name, relid) as i64).expect("int8 datum"))
});
