//! The snapshot file format (issue: snapshots): one self-describing,
//! streamable file per collection. Pure Rust over `io::Read`/`io::Write`,
//! so a snapshot can go to a server file or through SQL in chunks alike.
//!
//! ```text
//! header   8 bytes "QUIVSNAP" | u32 format version | u32 reserved (0)
//! record   u8 kind | 3 bytes reserved (0) | u32 payload length | payload | u32 CRC-32 of
//!          the record's first 8 bytes and its payload
//! kinds    1 manifest (UTF-8 JSON, exactly once, first)
//!          2 rows (a batch: u32 count, then per row i64 id | u16 dims | f32 x dims |
//!            i32 payload length, -1 for NULL | payload bytes)
//!          3 graph (the built index of one shard, opaque here: see hnsw::portable)
//!          255 end (exactly once, last: u64 rows | u64 records before it |
//!            u32 CRC-32 of the CRCs of all records before it)
//! ```
//! All integers little-endian. A reader checks every CRC, the order of the
//! records and the totals of the end record, so a flipped byte, a cut-off
//! file, a reordered or missing record or a foreign file is an error before
//! anything is created from it.

use std::io::{self, Read, Write};

pub const MAGIC: [u8; 8] = *b"QUIVSNAP";
pub const FORMAT_VERSION: u32 = 1;
/// Largest record payload a reader accepts (a bound on memory per record).
pub const MAX_RECORD: usize = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Manifest,
    Rows,
    Graph,
    End,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Manifest => 1,
            Kind::Rows => 2,
            Kind::Graph => 3,
            Kind::End => 255,
        }
    }
    fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            1 => Kind::Manifest,
            2 => Kind::Rows,
            3 => Kind::Graph,
            255 => Kind::End,
            _ => return None,
        })
    }
}

#[derive(Debug)]
pub enum SnapshotError {
    Io(io::Error),
    NotASnapshot,
    UnsupportedVersion(u32),
    Truncated,
    Checksum { record: u64 },
    Malformed(String),
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "could not read snapshot: {e}"),
            SnapshotError::NotASnapshot => write!(f, "not a quiver snapshot (bad magic number)"),
            SnapshotError::UnsupportedVersion(v) => {
                write!(f, "snapshot has format version {v}; this quiver reads version {FORMAT_VERSION}")
            }
            SnapshotError::Truncated => write!(f, "snapshot is truncated"),
            SnapshotError::Checksum { record } => {
                write!(f, "snapshot is corrupted: checksum mismatch in record {record}")
            }
            SnapshotError::Malformed(what) => write!(f, "snapshot is corrupted: {what}"),
        }
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated
        } else {
            SnapshotError::Io(e)
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), by `crc32fast` (carry-less
/// multiplication where the CPU has it: a table-driven loop checked 0.4 GB/s,
/// which made verifying a restore cost a second per 300 MB).
#[derive(Debug, Clone, Default)]
pub struct Crc32(crc32fast::Hasher);

impl Crc32 {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
    pub fn of(bytes: &[u8]) -> u32 {
        let mut c = Crc32::default();
        c.update(bytes);
        c.value()
    }
}

/// One row of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub vector: Vec<f32>,
    pub payload: Option<Vec<u8>>,
}

/// Appends `rows` to a rows-record payload.
pub fn encode_rows(rows: &[Row], out: &mut Vec<u8>) {
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for r in rows {
        out.extend_from_slice(&r.id.to_le_bytes());
        out.extend_from_slice(&(r.vector.len() as u16).to_le_bytes());
        for x in &r.vector {
            out.extend_from_slice(&x.to_le_bytes());
        }
        match &r.payload {
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            Some(p) => {
                out.extend_from_slice(&(p.len() as i32).to_le_bytes());
                out.extend_from_slice(p);
            }
        }
    }
}

/// One row of a rows record, borrowed from the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    pub id: i64,
    /// the elements as stored: f32 little-endian; empty for a NULL vector
    pub vector_le: &'a [u8],
    pub payload: Option<&'a [u8]>,
}

impl RowRef<'_> {
    pub fn to_row(&self) -> Row {
        Row {
            id: self.id,
            vector: self
                .vector_le
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
            payload: self.payload.map(<[u8]>::to_vec),
        }
    }
}

/// A rows record's payload, its layout checked once by [`RowBatch::parse`]
/// and then read in place: a restore streams 100k rows through here, and
/// decoding each into owned vectors first cost more than the copy itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    bytes: Vec<u8>,
    count: usize,
}

/// The row starting at `at` of a rows payload, and where the next starts;
/// an error names what is wrong with it.
fn row_at(b: &[u8], at: usize) -> Result<(RowRef<'_>, usize), &'static str> {
    const CUT: &str = "ends inside a row";
    let field = |from: usize, n: usize| b.get(from..from + n).ok_or(CUT);
    let id = i64::from_le_bytes(field(at, 8)?.try_into().expect("8 bytes"));
    let dims = u16::from_le_bytes(field(at + 8, 2)?.try_into().expect("2 bytes")) as usize;
    let vector_le = field(at + 10, 4 * dims)?;
    let p = at + 10 + 4 * dims;
    let (payload, next) = match i32::from_le_bytes(field(p, 4)?.try_into().expect("4 bytes")) {
        -1 => (None, p + 4),
        n if n >= 0 => (Some(field(p + 4, n as usize)?), p + 4 + n as usize),
        _ => return Err("negative payload length"),
    };
    Ok((RowRef { id, vector_le, payload }, next))
}

impl RowBatch {
    /// Checks that `bytes` hold exactly the rows their count announces.
    pub fn parse(bytes: Vec<u8>) -> Result<RowBatch, SnapshotError> {
        let bad = |what: &str| SnapshotError::Malformed(format!("rows record: {what}"));
        let count =
            u32::from_le_bytes(bytes.get(..4).ok_or_else(|| bad("ends inside a row"))?.try_into().expect("4 bytes"))
                as usize;
        let mut at = 4;
        for _ in 0..count {
            at = row_at(&bytes, at).map_err(bad)?.1;
        }
        if at != bytes.len() {
            return Err(bad("bytes after the last row"));
        }
        Ok(RowBatch { bytes, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rows in file order.
    pub fn iter(&self) -> impl Iterator<Item = RowRef<'_>> + '_ {
        let mut at = 4;
        (0..self.count).map(move |_| {
            let (row, next) = row_at(&self.bytes, at).expect("checked by parse");
            at = next;
            row
        })
    }

    pub fn to_rows(&self) -> Vec<Row> {
        self.iter().map(|r| r.to_row()).collect()
    }
}

/// Writes a snapshot record by record; `finish` writes the end record.
pub struct Writer<W: Write> {
    out: W,
    records: u64,
    rows: u64,
    crcs: Crc32,
    wrote_manifest: bool,
}

impl<W: Write> Writer<W> {
    /// Writes the header and the manifest.
    pub fn new(mut out: W, manifest: &str) -> io::Result<Self> {
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        let mut w = Writer { out, records: 0, rows: 0, crcs: Crc32::default(), wrote_manifest: false };
        w.record(Kind::Manifest, manifest.as_bytes())?;
        w.wrote_manifest = true;
        Ok(w)
    }

    fn record(&mut self, kind: Kind, payload: &[u8]) -> io::Result<()> {
        assert!(payload.len() <= MAX_RECORD, "record too large");
        let mut head = [0u8; 8];
        head[0] = kind.code();
        head[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let mut crc = Crc32::default();
        crc.update(&head);
        crc.update(payload);
        let crc = crc.value();
        self.out.write_all(&head)?;
        self.out.write_all(payload)?;
        self.out.write_all(&crc.to_le_bytes())?;
        self.crcs.update(&crc.to_le_bytes());
        self.records += 1;
        Ok(())
    }

    pub fn rows(&mut self, rows: &[Row]) -> io::Result<()> {
        let mut payload = Vec::new();
        encode_rows(rows, &mut payload);
        self.record(Kind::Rows, &payload)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    pub fn graph(&mut self, payload: &[u8]) -> io::Result<()> {
        self.record(Kind::Graph, payload)
    }

    /// Writes the end record; returns the writer and the snapshot's checksum
    /// (the CRC the end record carries).
    pub fn finish(mut self) -> io::Result<(W, u32)> {
        debug_assert!(self.wrote_manifest);
        let sum = self.crcs.value();
        let mut end = Vec::with_capacity(20);
        end.extend_from_slice(&self.rows.to_le_bytes());
        end.extend_from_slice(&self.records.to_le_bytes());
        end.extend_from_slice(&sum.to_le_bytes());
        self.record(Kind::End, &end)?;
        self.out.flush()?;
        Ok((self.out, sum))
    }
}

/// What a reader hands out, in file order.
#[derive(Debug, PartialEq)]
pub enum Record {
    Manifest(String),
    Rows(RowBatch),
    Graph(Vec<u8>),
    /// The end record, checked: total rows and the snapshot's checksum.
    End {
        rows: u64,
        checksum: u32,
    },
}

/// Reads and checks a snapshot record by record.
pub struct Reader<R: Read> {
    input: R,
    records: u64,
    rows: u64,
    crcs: Crc32,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Checks the header (magic and version).
    pub fn new(mut input: R) -> Result<Self, SnapshotError> {
        let mut head = [0u8; 16];
        input.read_exact(&mut head)?;
        if head[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        if head[12..16] != [0; 4] {
            return Err(SnapshotError::Malformed("reserved header bytes are set".into()));
        }
        Ok(Reader { input, records: 0, rows: 0, crcs: Crc32::default(), done: false })
    }

    /// The next record, or None after the end record (anything after it is
    /// an error).
    pub fn next_record(&mut self) -> Result<Option<Record>, SnapshotError> {
        if self.done {
            let mut probe = [0u8; 1];
            return match self.input.read(&mut probe)? {
                0 => Ok(None),
                _ => Err(SnapshotError::Malformed("data after the end record".into())),
            };
        }
        let mut head = [0u8; 8];
        self.input.read_exact(&mut head)?;
        let index = self.records;
        let kind = Kind::from_code(head[0])
            .ok_or_else(|| SnapshotError::Malformed(format!("record {index} has unknown kind {}", head[0])))?;
        if head[1..4] != [0; 3] {
            return Err(SnapshotError::Checksum { record: index });
        }
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD {
            return Err(SnapshotError::Malformed(format!("record {index} claims {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.input.read_exact(&mut payload)?;
        let mut stored = [0u8; 4];
        self.input.read_exact(&mut stored)?;
        let mut crc = Crc32::default();
        crc.update(&head);
        crc.update(&payload);
        if crc.value() != u32::from_le_bytes(stored) {
            return Err(SnapshotError::Checksum { record: index });
        }
        if (index == 0) != (kind == Kind::Manifest) {
            return Err(SnapshotError::Malformed("the manifest must be the first record, and only it".into()));
        }
        let out = match kind {
            Kind::Manifest => Record::Manifest(
                String::from_utf8(payload).map_err(|_| SnapshotError::Malformed("manifest is not UTF-8".into()))?,
            ),
            Kind::Rows => {
                let rows = RowBatch::parse(payload)?;
                self.rows += rows.len() as u64;
                Record::Rows(rows)
            }
            Kind::Graph => Record::Graph(payload),
            Kind::End => {
                if len != 20 {
                    return Err(SnapshotError::Malformed("end record has the wrong size".into()));
                }
                let rows = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
                let records = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
                let checksum = u32::from_le_bytes(payload[16..20].try_into().expect("4 bytes"));
                if rows != self.rows || records != self.records || checksum != self.crcs.value() {
                    return Err(SnapshotError::Malformed("end record does not match the records before it".into()));
                }
                self.done = true;
                Record::End { rows, checksum }
            }
        };
        self.crcs.update(&stored);
        self.records += 1;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, u32) {
        let mut w = Writer::new(Vec::new(), r#"{"format": 1, "collection": "docs"}"#).unwrap();
        for batch in 0..3 {
            let rows: Vec<Row> = (0..5)
                .map(|i| Row {
                    id: batch * 5 + i,
                    vector: vec![i as f32, -1.5, 1e-3],
                    payload: (i % 2 == 0).then(|| format!("{{\"n\": {i}}}").into_bytes()),
                })
                .collect();
            w.rows(&rows).unwrap();
        }
        w.graph(&[7u8; 100]).unwrap();
        w.finish().unwrap()
    }

    fn read_all(b: &[u8]) -> Result<Vec<Record>, SnapshotError> {
        let mut r = Reader::new(b)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        if !matches!(out.last(), Some(Record::End { .. })) {
            return Err(SnapshotError::Truncated);
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let (bytes, sum) = sample();
        let recs = read_all(&bytes).unwrap();
        assert_eq!(recs.len(), 6);
        assert!(matches!(&recs[0], Record::Manifest(m) if m.contains("docs")));
        let rows: Vec<Row> = recs
            .iter()
            .filter_map(|r| if let Record::Rows(v) = r { Some(v.to_rows()) } else { None })
            .flatten()
            .collect();
        assert_eq!(rows.len(), 15);
        assert_eq!(rows[7].id, 7);
        assert_eq!(rows[7].vector, vec![2.0, -1.5, 1e-3]);
        assert_eq!(rows[7].payload.as_deref(), Some(&b"{\"n\": 2}"[..]));
        assert_eq!(rows[8].payload, None);
        assert_eq!(recs[4], Record::Graph(vec![7u8; 100]));
        assert_eq!(recs[5], Record::End { rows: 15, checksum: sum });
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let (bytes, _) = sample();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(read_all(&b).is_err(), "flipping byte {i} went unnoticed");
        }
        for n in 0..bytes.len() {
            assert!(read_all(&bytes[..n]).is_err(), "truncation to {n} bytes went unnoticed");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(read_all(&longer), Err(SnapshotError::Malformed(_))));
    }

    #[test]
    fn foreign_files_and_other_versions_are_named() {
        let (mut bytes, _) = sample();
        bytes[8] = 2;
        let e = read_all(&bytes).unwrap_err();
        assert!(matches!(e, SnapshotError::UnsupportedVersion(2)));
        assert_eq!(e.to_string(), "snapshot has format version 2; this quiver reads version 1");
        assert!(matches!(read_all(b"PGDMP and then some bytes"), Err(SnapshotError::NotASnapshot)));
        assert!(matches!(read_all(b"QUIV"), Err(SnapshotError::Truncated)));
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(Crc32::of(b"123456789"), 0xCBF4_3926);
        assert_eq!(Crc32::of(b""), 0);
    }
}
