//! Graph quality without Postgres: builds the in-memory graph over a
//! benchmark dataset (the `.npy` files `bench/datasets.py` caches) and
//! prints recall@10 and distances computed per query at several beams.
//! Separates "is the graph worse" from "is the scan slower" when the
//! benchmark harness shows a gap.
//!
//!   cargo run --release --example graph_recall -- .build/bench/wordnet-minilm-384 cosine [threads] [build-only]
//!
//! SEED=n draws other levels: recall near 0.99 moves by about 0.001
//! between seeds, so compare build changes over a few.

use quiver_core::hnsw::fasthash::IdHashSet;
use quiver_core::hnsw::memory::MemoryGraph;
use quiver_core::hnsw::{search_layer, Candidate, Graph, Params, QueryDistance};
use quiver_core::space::{FlatVectors, IndexElement, Metric};
use std::time::Instant;

/// A little-endian `<f4` or `<i4`/`<i8` 2-D npy array: (rows, cols, payload).
fn read_npy(path: &std::path::Path) -> (usize, usize, String, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not npy", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("header");
    let descr = header.split("'descr': '").nth(1).expect("descr").split('\'').next().unwrap().to_string();
    let shape = header.split("'shape': (").nth(1).expect("shape").split(')').next().unwrap();
    let dims: Vec<usize> = shape.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    (dims[0], dims[1], descr, bytes[10 + header_len..].to_vec())
}

fn floats(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(args.get(1).map(String::as_str).unwrap_or(".build/bench/wordnet-minilm-384"));
    let metric = match args.get(2).map(String::as_str).unwrap_or("cosine") {
        "l2" => Metric::L2Squared,
        "ip" => Metric::NegativeDot,
        _ => Metric::Cosine,
    };
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let (n, dim, _, base) = read_npy(&dir.join("base.npy"));
    let (nq, _, _, queries) = read_npy(&dir.join("queries.npy"));
    let (_, gtk, gdescr, gt) = read_npy(&dir.join("gt-all.npy"));
    let gt: Vec<i64> = match gdescr.as_str() {
        "<i8" => gt.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect(),
        _ => gt.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect(),
    };
    let base = floats(&base);
    let mut queries = floats(&queries);
    let mut flat = FlatVectors::new(dim);
    for i in 0..n {
        let mut v = base[i * dim..(i + 1) * dim].to_vec();
        if metric == Metric::Cosine {
            f32::normalize(&mut v);
        }
        flat.push(&v);
    }
    if metric == Metric::Cosine {
        queries.chunks_exact_mut(dim).for_each(|q| {
            f32::normalize(q);
        });
    }
    if std::env::var("F16").is_ok() {
        let mut h = FlatVectors::<half::f16>::new(dim);
        for i in 0..n {
            let v: Vec<half::f16> = flat.get(i).iter().map(|x| half::f16::from_f32(*x)).collect();
            h.push(&v);
        }
        let t = Instant::now();
        let g = MemoryGraph::new(Params::default(), metric, h, 0x5eed);
        g.build(threads, &|| {}, |_| true);
        println!("f16 {n} x {dim}: built in {:.2} s with {threads} threads", t.elapsed().as_secs_f64());
        for ef in [20, 40, 100] {
            let mut hits = 0;
            for (qi, q) in queries.chunks_exact(dim).enumerate() {
                let q: Vec<half::f16> = q.iter().map(|x| half::f16::from_f32(*x)).collect();
                let got = g.search(&q, 10, ef);
                let truth = &gt[qi * gtk..qi * gtk + 10];
                hits += got.iter().filter(|c| truth.contains(&(c.node as i64))).count();
            }
            println!("ef {ef:>3}: recall@10 {:.4}", hits as f64 / (nq * 10) as f64);
        }
        return;
    }
    let t = Instant::now();
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let g = MemoryGraph::new(Params::default(), metric, flat, seed);
    g.build(threads, &|| {}, |_| true);
    let repaired = g.repair_reachability();
    println!(
        "{n} x {dim}: built in {:.2} s with {threads} threads ({repaired} links added by the repair)",
        t.elapsed().as_secs_f64()
    );
    let degree: usize = (0..n as u32).map(|i| g.links(i)[0].len()).sum();
    println!("mean level-0 degree {:.1}", degree as f64 / n as f64);
    if args.get(4).map(String::as_str) == Some("build-only") {
        return;
    }
    let counted = Counted::of(&g);
    for ef in [10, 20, 30, 40, 60, 100, 150, 200] {
        let t = Instant::now();
        let mut hits = 0;
        let mut distances = 0;
        for (qi, q) in queries.chunks_exact(dim).enumerate() {
            let (got, d) = counted.search(q, 10, ef);
            distances += d;
            let truth = &gt[qi * gtk..qi * gtk + 10];
            hits += got.iter().filter(|c| truth.contains(&(c.node as i64))).count();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "ef {ef:>3}: recall@10 {:.4}  {:.0} distances/query  {:.0} q/s",
            hits as f64 / (nq * 10) as f64,
            distances as f64 / nq as f64,
            nq as f64 / secs
        );
    }
}

/// A copy of the graph's links that searches as the index scan does and
/// counts the distances it computes: the cost a scan on pages pays in
/// memory misses, free of this machine's timing noise.
struct Counted<'a, E: IndexElement> {
    g: &'a MemoryGraph<E>,
    links: Vec<Vec<Vec<u32>>>,
}

struct CountingQuery<'a, 'b, E: IndexElement> {
    c: &'b Counted<'a, E>,
    q: &'b [E],
    distances: usize,
}

impl<'a, E: IndexElement> Counted<'a, E> {
    fn of(g: &'a MemoryGraph<E>) -> Self {
        Counted { g, links: (0..g.len() as u32).map(|i| g.links(i)).collect() }
    }

    fn search(&self, q: &[E], k: usize, ef: usize) -> (Vec<Candidate<u32>>, usize) {
        let (ep, top) = self.g.entry().expect("built graph");
        let mut cq = CountingQuery { c: self, q, distances: 0 };
        let mut cur = vec![Candidate { distance: cq.distance(ep), node: ep }];
        for lv in (1..=top).rev() {
            cur = search_layer(&mut cq, &cur, 1, lv, &mut IdHashSet::default());
        }
        let mut found = search_layer(&mut cq, &cur, ef.max(k), 0, &mut IdHashSet::default());
        found.truncate(k);
        (found, cq.distances)
    }
}

impl<E: IndexElement> Graph for CountingQuery<'_, '_, E> {
    type Node = u32;
    fn neighbors(&mut self, node: u32, level: usize, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.c.links[node as usize][level]);
    }
}

impl<E: IndexElement> QueryDistance<u32> for CountingQuery<'_, '_, E> {
    fn distance(&mut self, node: u32) -> f32 {
        self.distances += 1;
        E::distance(self.c.g.metric, self.q, self.c.g.vectors.get(node as usize))
    }
}
