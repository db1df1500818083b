//! Snapshot files: the server side of `quiver.create_snapshot` and friends
//! (sql/snapshots.sql). The format is `quiver_core::snapshot`; this file
//! owns where snapshots live, who may touch them, and moving rows between
//! a table and a file through SPI.
//!
//! Files live in one directory (`quiver.snapshot_directory`, default
//! `quiver_snapshots` inside the data directory). A name is 1-100
//! characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, so it
//! can never leave the directory; files are opened without following
//! symbolic links, and a snapshot is written under a temporary name and
//! renamed into place only once complete and synced.

use crate::fmgr::pg_function;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::spi::Spi;
use pgrx::{IntoDatum, PgSqlErrorCode};
use quiver_core::hnsw::portable::{decode, GraphCheck};
use quiver_core::snapshot::{Reader, Record, Row, SnapshotError, Writer};
use std::ffi::CString;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

pub static SNAPSHOT_DIRECTORY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
const SUFFIX: &str = ".qsnap";
const ROWS_PER_RECORD: i64 = 1000;

pub fn init() {
    GucRegistry::define_string_guc(
        c"quiver.snapshot_directory",
        c"Directory of quiver snapshot files",
        c"Empty means quiver_snapshots inside the data directory.",
        &SNAPSHOT_DIRECTORY,
        GucContext::Suset,
        GucFlags::default(),
    );
}

// ereport!(ERROR) diverges, but its expansion does not say so to the compiler.
#[allow(unreachable_code)]
pub(crate) fn fail(code: PgSqlErrorCode, msg: String) -> ! {
    pgrx::ereport!(ERROR, code, msg);
    unreachable!("ereport(ERROR) does not return")
}

/// Snapshots are server files: reading them needs what `pg_read_file`
/// needs, writing them what `COPY ... TO` a file needs.
pub(crate) fn require(write: bool) {
    let (role, what) = if write {
        (pg_sys::ROLE_PG_WRITE_SERVER_FILES, "pg_write_server_files")
    } else {
        (pg_sys::ROLE_PG_READ_SERVER_FILES, "pg_read_server_files")
    };
    // SAFETY: plain catalog lookups for the current user.
    let ok = unsafe { pg_sys::superuser() || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(role)) };
    if !ok {
        fail(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for snapshots: must be superuser or a member of {what}"),
        );
    }
}

/// The table checks Postgres' COPY makes: each of `modes` (ACL_INSERT,
/// ACL_SELECT) on table `relid` for the current user, and no row-level
/// security in force for it (a snapshot holds whole tables: COPY FROM
/// cannot apply policies, and the graph of a snapshot would name rows the
/// policies hide).
pub(crate) fn require_table_rights(relid: pg_sys::Oid, modes: &[u32], what: &str) {
    // SAFETY: catalog lookups for the current user; aclcheck_error raises
    // Postgres' own "permission denied for table" error and does not return.
    unsafe {
        let user = pg_sys::GetUserId();
        for mode in modes {
            let r = pg_sys::pg_class_aclcheck(relid, user, *mode as pg_sys::AclMode);
            if r != pg_sys::AclResult::ACLCHECK_OK {
                pg_sys::aclcheck_error(r, pg_sys::ObjectType::OBJECT_TABLE, pg_sys::get_rel_name(relid));
            }
        }
        if pg_sys::check_enable_rls(relid, pg_sys::InvalidOid, false)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            fail(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("a table with row-level security cannot be {what} a snapshot"),
            );
        }
    }
}

fn directory() -> PathBuf {
    let dir = match SNAPSHOT_DIRECTORY.get() {
        Some(d) if !d.as_bytes().is_empty() => PathBuf::from(d.to_string_lossy().into_owned()),
        _ => {
            // SAFETY: DataDir is set for the life of every backend.
            let data = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) }.to_string_lossy().into_owned();
            PathBuf::from(data).join("quiver_snapshots")
        }
    };
    if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        fail(
            PgSqlErrorCode::ERRCODE_IO_ERROR,
            format!("could not create snapshot directory \"{}\": {e}", dir.display()),
        );
    }
    dir
}

/// The path of snapshot `name`, after checking the name.
pub(crate) fn path_for(name: &str) -> PathBuf {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().next().map(|c| c.is_ascii_alphanumeric()).unwrap_or(false)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..");
    if !ok {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "invalid snapshot name \"{}\": use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit",
                name.escape_default()
            ),
        );
    }
    directory().join(format!("{name}{SUFFIX}"))
}

/// Opens an existing snapshot for reading, refusing symbolic links.
pub(crate) fn open_existing(name: &str) -> std::fs::File {
    let path = path_for(name);
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path).unwrap_or_else(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            fail(PgSqlErrorCode::ERRCODE_UNDEFINED_FILE, format!("snapshot \"{name}\" does not exist"))
        }
        if e.raw_os_error() == Some(libc::ELOOP) {
            fail(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("snapshot \"{name}\" is a symbolic link"))
        }
        fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not open snapshot \"{name}\": {e}"))
    })
}

pub(crate) fn corrupted(name: &str, e: SnapshotError) -> ! {
    let code = match e {
        SnapshotError::Io(_) => PgSqlErrorCode::ERRCODE_IO_ERROR,
        _ => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
    };
    fail(code, format!("snapshot \"{name}\": {e}"))
}

/// Removes a file on drop unless kept: a failed write leaves nothing.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub(crate) fn text_arg(a: &crate::fmgr::Args, n: usize) -> String {
    // SAFETY: argument n is declared text in sql/snapshots.sql.
    unsafe { <String as pgrx::FromDatum>::from_datum(a.datum(n), false) }.expect("text argument")
}

fn text_result(s: &str) -> pg_sys::Datum {
    s.into_datum().expect("text datum")
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes every row of `relation` (a collection table, quoted as regclass
/// prints it) read by one query, so one MVCC snapshot, into snapshot `name`
/// with `manifest`. Returns JSON: size, checksum, rows.
fn write_snapshot(relation: &str, name: &str, manifest: &str) -> String {
    require(true);
    let relid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relation.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| pgrx::error!("snapshot: relation {relation} does not exist"));
    require_table_rights(relid, &[pg_sys::ACL_SELECT], "written to");
    let path = path_for(name);
    if std::fs::symlink_metadata(&path).is_ok() {
        fail(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, format!("snapshot \"{name}\" already exists"));
    }
    let mut tmp = TempFile { path: path.with_extension(format!("tmp{}", std::process::id())), keep: false };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp.path)
        .unwrap_or_else(|e| {
            fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not create snapshot \"{name}\": {e}"))
        });
    let io = |e: std::io::Error| -> ! {
        fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not write snapshot \"{name}\": {e}"))
    };
    let mut w = Writer::new(BufWriter::with_capacity(1 << 20, file), manifest).unwrap_or_else(|e| io(e));
    let query = format!("SELECT id, embedding::real[], payload::text FROM {relation}");
    // The rows query reads through the active snapshot (SPI does, in a
    // transaction that has written nothing; otherwise through a newer one,
    // and the restore inserts rows the graph misses); the graph is read
    // through the same one.
    // SAFETY: registered here and unregistered below (or by the resource
    // owner on error).
    let snapshot = unsafe {
        let s =
            if pg_sys::ActiveSnapshotSet() { pg_sys::GetActiveSnapshot() } else { pg_sys::GetTransactionSnapshot() };
        pg_sys::RegisterSnapshot(s)
    };
    let rows = Spi::connect(|client| {
        let mut cursor = client.open_cursor(query.as_str(), &[]);
        let mut total = 0u64;
        loop {
            let table = cursor.fetch(ROWS_PER_RECORD).unwrap_or_else(|e| pgrx::error!("snapshot query failed: {e}"));
            let mut batch = Vec::with_capacity(ROWS_PER_RECORD as usize);
            for row in table {
                let id: i64 = row.get(1).ok().flatten().unwrap_or_else(|| pgrx::error!("snapshot: a row has no id"));
                // a NULL vector is written as 0 dimensions (no vector has 0)
                let vector: Vec<f32> = row.get(2).ok().flatten().unwrap_or_default();
                let payload: Option<String> = row.get(3).ok().flatten();
                batch.push(Row { id, vector, payload: payload.map(String::into_bytes) });
            }
            if batch.is_empty() {
                break;
            }
            total += batch.len() as u64;
            w.rows(&batch).unwrap_or_else(|e| io(e));
            pgrx::check_for_interrupts!();
        }
        total
    });
    for (leaf, index, shard) in graph_sources(relation) {
        crate::hnsw::export::export(index, leaf, shard, snapshot, |payload| w.graph(payload).unwrap_or_else(|e| io(e)));
    }
    // SAFETY: registered above.
    unsafe { pg_sys::UnregisterSnapshot(snapshot) };
    let (out, checksum) = w.finish().unwrap_or_else(|e| io(e));
    let file = out.into_inner().unwrap_or_else(|e| io(e.into_error()));
    file.sync_all().unwrap_or_else(|e| io(e));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    std::fs::rename(&tmp.path, &path).unwrap_or_else(|e| io(e));
    tmp.keep = true;
    if let Ok(d) = std::fs::File::open(directory()) {
        let _ = d.sync_all();
    }
    format!("{{\"size\": {size}, \"checksum\": \"{checksum:08x}\", \"rows\": {rows}}}")
}

/// The valid hnsw index of each leaf table of collection `relation`, with
/// the leaf's shard number (its hash partition remainder; 0 unsharded):
/// (leaf, index, shard).
pub(crate) fn graph_sources(relation: &str) -> Vec<(pg_sys::Oid, pg_sys::Oid, u32)> {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[relation.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| pgrx::error!("snapshot: no table {relation}"));
    leaves(oid).into_iter().filter_map(|l| l.index.map(|i| (l.oid, i, l.shard))).collect()
}

pub(crate) struct Leaf {
    pub oid: pg_sys::Oid,
    /// regclass text, quoted as needed
    pub name: String,
    /// its valid hnsw index on the vector column
    pub index: Option<pg_sys::Oid>,
    /// hash partition remainder; 0 unsharded
    pub shard: u32,
}

/// Each leaf table of collection table `relation`.
pub(crate) fn leaves(relation: pg_sys::Oid) -> Vec<Leaf> {
    let sql = "SELECT l.leaf::oid, l.leaf::text, CASE WHEN l.valid THEN l.index::oid END, \
                      coalesce((regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid), 'remainder (\\d+)'))[1]::integer, 0) \
               FROM quiver._leaf_indexes($1::pg_catalog.regclass, 'embedding') l \
               JOIN pg_catalog.pg_class c ON c.oid = l.leaf";
    Spi::connect(|client| {
        let table = client
            .select(sql, None, &[relation.into()])
            .unwrap_or_else(|e| pgrx::error!("snapshot: reading the collection's tables failed: {e}"));
        table
            .map(|row| Leaf {
                oid: row.get(1).ok().flatten().expect("leaf oid"),
                name: row.get(2).ok().flatten().expect("leaf name"),
                index: row.get(3).ok().flatten(),
                shard: row.get::<i32>(4).ok().flatten().unwrap_or(0) as u32,
            })
            .collect()
    })
}

/// Reads snapshot `name` through, checking every record. Returns
/// (manifest, rows, checksum, size).
fn read_snapshot(name: &str) -> (String, u64, u32, u64) {
    require(false);
    let file = open_existing(name);
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut r = Reader::new(BufReader::with_capacity(1 << 20, file)).unwrap_or_else(|e| corrupted(name, e));
    let mut manifest = String::new();
    let mut graph = GraphCheck::default();
    loop {
        match r.next_record() {
            Err(e) => corrupted(name, e),
            Ok(None) => corrupted(name, SnapshotError::Truncated),
            Ok(Some(Record::Manifest(m))) => manifest = m,
            Ok(Some(Record::Rows(_))) => {
                pgrx::check_for_interrupts!();
            }
            Ok(Some(Record::Graph(payload))) => {
                let part = decode(&payload).unwrap_or_else(|e| corrupted(name, SnapshotError::Malformed(e)));
                graph.add(&part).unwrap_or_else(|e| corrupted(name, SnapshotError::Malformed(e)));
            }
            Ok(Some(Record::End { rows, checksum })) => {
                // nothing may follow the end record
                if let Err(e) = r.next_record() {
                    corrupted(name, e);
                }
                graph.finish().unwrap_or_else(|e| corrupted(name, SnapshotError::Malformed(e)));
                let manifest = manifest_object(&manifest).unwrap_or_else(|| {
                    corrupted(name, SnapshotError::Malformed("its manifest is not a JSON object".into()))
                });
                return (manifest, rows, checksum, size);
            }
        }
    }
}

/// `text` re-serialised if it is one JSON object, else None: what is
/// spliced into JSON answers can then never add keys of its own.
fn manifest_object(text: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v @ serde_json::Value::Object(_)) => serde_json::to_string(&v).ok(),
        _ => None,
    }
}

fn summary(name: &str, manifest: &str, rows: u64, checksum: u32, size: u64) -> String {
    format!(
        "{{\"name\": {}, \"manifest\": {manifest}, \"rows\": {rows}, \"checksum\": \"{checksum:08x}\", \"size\": {size}}}",
        json_str(name)
    )
}

/// Lists the snapshots of the directory: name, size, manifest and checksum
/// from the end record (not verified: restore verifies).
fn list() -> String {
    require(false);
    let dir = directory();
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read snapshot directory: {e}")));
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(SUFFIX)).map(str::to_owned))
        .collect();
    names.sort();
    for name in names {
        let Ok(mut file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(format!("{name}{SUFFIX}")))
        else {
            continue;
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // a manifest that is not one JSON object is listed as null (and the
        // snapshot under its file name only): verify and restore refuse it
        let manifest = match Reader::new(BufReader::new(&mut file)).and_then(|mut r| r.next_record()) {
            Ok(Some(Record::Manifest(m))) => manifest_object(&m).unwrap_or_else(|| "null".into()),
            _ => "null".into(),
        };
        // the end record is the last 32 bytes: header 8, payload 20, CRC 4
        let mut tail = [0u8; 32];
        let (checksum, rows) = match file.seek(SeekFrom::End(-32)).and_then(|_| file.read_exact(&mut tail)) {
            Ok(()) if tail[0] == 255 => (
                format!("\"{:08x}\"", u32::from_le_bytes(tail[24..28].try_into().expect("4 bytes"))),
                u64::from_le_bytes(tail[8..16].try_into().expect("8 bytes")).to_string(),
            ),
            _ => ("null".into(), "null".into()),
        };
        out.push(format!(
            "{{\"name\": {}, \"size\": {size}, \"rows\": {rows}, \"manifest\": {}, \"checksum\": {checksum}}}",
            json_str(&name),
            manifest
        ));
    }
    format!("[{}]", out.join(", "))
}

fn delete(name: &str) {
    require(true);
    let path = path_for(name);
    match std::fs::symlink_metadata(&path) {
        Err(_) => fail(PgSqlErrorCode::ERRCODE_UNDEFINED_FILE, format!("snapshot \"{name}\" does not exist")),
        Ok(m) if !m.file_type().is_file() => {
            fail(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("snapshot \"{name}\" is not a regular file"))
        }
        Ok(_) => {}
    }
    if let Err(e) = std::fs::remove_file(&path) {
        fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not delete snapshot \"{name}\": {e}"));
    }
}

/// Appends `data` to snapshot file `name` (creating it unless `append`),
/// for snapshots streamed in from a client; restore verifies the whole.
fn import(name: &str, data: &[u8], append: bool) -> u64 {
    require(true);
    let path = path_for(name);
    let mut opts = std::fs::OpenOptions::new();
    opts.custom_flags(libc::O_NOFOLLOW).mode(0o600);
    if append {
        opts.append(true);
    } else {
        opts.write(true).create_new(true);
    }
    let mut f = opts.open(&path).unwrap_or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            fail(PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT, format!("snapshot \"{name}\" already exists"))
        }
        std::io::ErrorKind::NotFound => {
            fail(PgSqlErrorCode::ERRCODE_UNDEFINED_FILE, format!("snapshot \"{name}\" does not exist"))
        }
        _ => fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not write snapshot \"{name}\": {e}")),
    });
    f.write_all(data).and_then(|_| f.sync_all()).unwrap_or_else(|e| {
        fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not write snapshot \"{name}\": {e}"))
    });
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

pg_function!(quiver_snapshot_write, |a| {
    Ok(text_result(&write_snapshot(&text_arg(&a, 0), &text_arg(&a, 1), &text_arg(&a, 2))))
});

pg_function!(quiver_snapshot_verify, |a| {
    let name = text_arg(&a, 0);
    let (manifest, rows, checksum, size) = read_snapshot(&name);
    Ok(text_result(&summary(&name, &manifest, rows, checksum, size)))
});

pg_function!(quiver_snapshot_list, |_a| Ok(text_result(&list())));

pg_function!(quiver_snapshot_delete, |a| {
    delete(&text_arg(&a, 0));
    Ok(crate::fmgr::boolean(true))
});

pg_function!(quiver_snapshot_path, |a| {
    require(false);
    Ok(text_result(&path_for(&text_arg(&a, 0)).to_string_lossy()))
});

/// Bytes `offset..offset+length` of snapshot `name` (streaming to clients).
fn chunk(name: &str, offset: i64, length: i32) -> Vec<u8> {
    let mut file = open_existing(name);
    if offset < 0 || length < 0 {
        fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, "offset and length must not be negative".into());
    }
    let mut buf = Vec::new();
    let read = file
        .seek(SeekFrom::Start(offset as u64))
        .and_then(|_| (&mut file).take(length.min(64 << 20) as u64).read_to_end(&mut buf));
    if let Err(e) = read {
        fail(PgSqlErrorCode::ERRCODE_IO_ERROR, format!("could not read snapshot \"{name}\": {e}"));
    }
    buf
}

pg_function!(quiver_snapshot_chunk, |a| {
    require(false);
    let name = text_arg(&a, 0);
    let data = chunk(&name, a.datum(1).value() as i64, a.i32(2));
    Ok(data.into_datum().expect("bytea datum"))
});

pg_function!(quiver_snapshot_import, |a| {
    let name = text_arg(&a, 0);
    // SAFETY: argument 1 is declared bytea; detoasted into a slice here.
    let data = unsafe { <Vec<u8> as pgrx::FromDatum>::from_datum(a.datum(1), false) }.expect("bytea argument");
    let append = a.datum(2).value() != 0;
    Ok((import(&name, &data, append) as i64).into_datum().expect("int8 datum"))
});
