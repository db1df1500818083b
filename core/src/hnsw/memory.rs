//! The in-memory graph of an index build, filled by several threads at once.
//!
//! Vectors are immutable once loaded; each node's links sit behind their own
//! mutex and a thread holds at most one of them at a time, so inserts on
//! both cores never deadlock and never wait on an index-wide lock.

use super::search::{search_layer, select_neighbors, Candidate, Graph, PairDistance, QueryDistance};
use super::{Params, SplitMix64};
use crate::space::{FlatVectors, IndexElement, Metric};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

pub struct MemoryGraph<E: IndexElement> {
    pub params: Params,
    pub metric: Metric,
    pub vectors: FlatVectors<E>,
    pub levels: Vec<u8>,
    /// links[node][level] = neighbour ids, nearest first after pruning.
    links: Vec<Mutex<Vec<Vec<u32>>>>,
    /// (node, level) of the entry point.
    entry: RwLock<Option<(u32, usize)>>,
}

/// One search: a query over the graph, copying one node's links at a time.
struct ToQuery<'a, E: IndexElement> {
    g: &'a MemoryGraph<E>,
    q: &'a [E],
}

impl<E: IndexElement> Graph for ToQuery<'_, E> {
    type Node = u32;
    fn neighbors(&mut self, node: u32, level: usize, out: &mut Vec<u32>) {
        let l = self.g.links[node as usize].lock().expect("links lock");
        if let Some(v) = l.get(level) {
            out.extend_from_slice(v);
        }
    }
}

impl<E: IndexElement> QueryDistance<u32> for ToQuery<'_, E> {
    fn distance(&mut self, node: u32) -> f32 {
        E::distance(self.g.metric, self.q, self.g.vectors.get(node as usize))
    }
}

struct Pairs<'a, E: IndexElement>(&'a MemoryGraph<E>);

impl<E: IndexElement> PairDistance<u32> for Pairs<'_, E> {
    fn pair_distance(&mut self, a: u32, b: u32) -> f32 {
        let v = &self.0.vectors;
        E::distance(self.0.metric, v.get(a as usize), v.get(b as usize))
    }
}

impl<E: IndexElement> MemoryGraph<E> {
    /// A graph over `vectors` (not yet linked); levels are drawn from `seed`.
    pub fn new(params: Params, metric: Metric, vectors: FlatVectors<E>, seed: u64) -> Self {
        let n = vectors.len();
        let mut rng = SplitMix64(seed);
        let levels: Vec<u8> =
            (0..n).map(|_| params.level_for(rng.next_unit()).min(params.max_level) as u8).collect();
        let links = levels
            .iter()
            .map(|&l| Mutex::new((0..=l as usize).map(|lv| Vec::with_capacity(params.max_neighbors(lv))).collect()))
            .collect();
        MemoryGraph { params, metric, vectors, levels, links, entry: RwLock::new(None) }
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn entry(&self) -> Option<(u32, usize)> {
        *self.entry.read().expect("entry lock")
    }

    pub fn links(&self, node: u32) -> Vec<Vec<u32>> {
        self.links[node as usize].lock().expect("links lock").clone()
    }

    /// Links every node, using `threads` threads (the caller's included).
    /// `worker_start` runs first on each extra thread (the glue blocks
    /// signals there). `progress` is called from the calling thread only,
    /// now and then, with the number of nodes done; returning false stops
    /// the build early (the graph is then incomplete). Returns whether it
    /// completed.
    pub fn build(
        &self,
        threads: usize,
        worker_start: &(dyn Fn() + Sync),
        mut progress: impl FnMut(usize) -> bool,
    ) -> bool {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let n = self.len();
        std::thread::scope(|s| {
            for _ in 1..threads.max(1) {
                s.spawn(|| {
                    worker_start();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        self.insert(i as u32);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                self.insert(i as u32);
                done.fetch_add(1, Ordering::Relaxed);
                if i % 256 == 0 && !progress(done.load(Ordering::Relaxed)) {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        progress(n)
    }

    /// Links node `i` into the graph (Algorithm 1 of the paper).
    pub fn insert(&self, i: u32) {
        let level = self.levels[i as usize] as usize;
        let entry = {
            let mut e = self.entry.write().expect("entry lock");
            match *e {
                None => {
                    *e = Some((i, level));
                    return;
                }
                Some(ep) => ep,
            }
        };
        let (ep, top) = entry;
        let q = self.vectors.get(i as usize);
        let mut dq = ToQuery { g: self, q };
        let mut cur = vec![Candidate { distance: dq.distance(ep), node: ep }];
        for lv in (level + 1..=top).rev() {
            let mut visited = HashSet::new();
            cur = search_layer(&mut dq, &cur, 1, lv, &mut visited);
        }
        for lv in (0..=level.min(top)).rev() {
            let mut visited = HashSet::new();
            visited.insert(i);
            let found = search_layer(&mut dq, &cur, self.params.ef_construction, lv, &mut visited);
            let found: Vec<_> = found.into_iter().filter(|c| c.node != i).collect();
            let chosen = select_neighbors(&found, self.params.max_neighbors(lv), &mut Pairs(self));
            self.links[i as usize].lock().expect("links lock")[lv] = chosen.iter().map(|c| c.node).collect();
            for c in &chosen {
                self.connect(c.node, i, c.distance, lv);
            }
            if !found.is_empty() {
                cur = found;
            }
        }
        if level > top {
            let mut e = self.entry.write().expect("entry lock");
            if e.map(|(_, l)| level > l).unwrap_or(true) {
                *e = Some((i, level));
            }
        }
    }

    /// Adds `new` to the links of `node` on `level`, pruning with the
    /// heuristic when the list is full.
    fn connect(&self, node: u32, new: u32, distance: f32, level: usize) {
        let max = self.params.max_neighbors(level);
        let current: Vec<u32> = {
            let mut l = self.links[node as usize].lock().expect("links lock");
            let list = &mut l[level];
            if list.contains(&new) {
                return;
            }
            if list.len() < max {
                list.push(new);
                return;
            }
            list.clone()
        };
        // Full: choose among old links and the new one, without holding the lock.
        let base = self.vectors.get(node as usize);
        let mut cands: Vec<Candidate<u32>> = current
            .iter()
            .map(|&n| Candidate { distance: E::distance(self.metric, base, self.vectors.get(n as usize)), node: n })
            .collect();
        cands.push(Candidate { distance, node: new });
        let chosen = select_neighbors(&cands, max, &mut Pairs(self));
        let mut l = self.links[node as usize].lock().expect("links lock");
        // Another thread may have changed the list meanwhile: keep its additions
        // only if they still fit (they will be found through other links otherwise).
        let mut list: Vec<u32> = chosen.iter().map(|c| c.node).collect();
        for n in l[level].iter() {
            if !current.contains(n) && !list.contains(n) && list.len() < max {
                list.push(*n);
            }
        }
        l[level] = list;
    }

    /// The `k` nearest nodes to `query` with a beam of `ef`, nearest first.
    pub fn search(&self, query: &[E], k: usize, ef: usize) -> Vec<Candidate<u32>> {
        let Some((ep, top)) = self.entry() else { return Vec::new() };
        let mut dq = ToQuery { g: self, q: query };
        let mut cur = vec![Candidate { distance: dq.distance(ep), node: ep }];
        for lv in (1..=top).rev() {
            let mut visited = HashSet::new();
            cur = search_layer(&mut dq, &cur, 1, lv, &mut visited);
        }
        let mut visited = HashSet::new();
        let mut found = search_layer(&mut dq, &cur, ef.max(k), 0, &mut visited);
        found.truncate(k);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clustered data that looks like embeddings: a few centres plus noise.
    fn dataset(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64(seed);
        let mut gauss = move || {
            let u1 = rng.next_unit();
            let u2 = rng.next_unit();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        };
        let centres: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| gauss()).collect()).collect();
        (0..n)
            .map(|i| centres[i % 20].iter().map(|c| c + 0.5 * gauss()).collect())
            .collect()
    }

    fn exact(data: &[Vec<f32>], q: &[f32], metric: Metric, k: usize) -> Vec<u32> {
        let mut d: Vec<(f32, u32)> =
            data.iter().enumerate().map(|(i, v)| (f32::distance(metric, q, v), i as u32)).collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().take(k).map(|x| x.1).collect()
    }

    fn recall(metric: Metric, threads: usize) -> f64 {
        let mut data = dataset(3000, 32, 7);
        if metric == Metric::Cosine {
            data.iter_mut().for_each(|v| {
                f32::normalize(v);
            });
        }
        let queries: Vec<Vec<f32>> = data.split_off(2900);
        let mut flat = FlatVectors::new(32);
        data.iter().for_each(|v| flat.push(v));
        let g = MemoryGraph::new(Params::default(), metric, flat, 42);
        g.build(threads, &|| {}, |_| true);
        let mut hits = 0;
        for q in &queries {
            let got: HashSet<u32> = g.search(q, 10, 200).iter().map(|c| c.node).collect();
            hits += exact(&data, q, metric, 10).iter().filter(|i| got.contains(i)).count();
        }
        hits as f64 / (queries.len() * 10) as f64
    }

    #[test]
    fn recall_against_brute_force_for_each_metric() {
        for metric in [Metric::L2Squared, Metric::NegativeDot, Metric::Cosine, Metric::L1] {
            let r = recall(metric, 2);
            assert!(r >= 0.99, "{metric:?}: recall {r}");
        }
    }

    #[test]
    fn single_and_multi_threaded_builds_both_reach_recall() {
        assert!(recall(Metric::L2Squared, 1) >= 0.99);
        assert!(recall(Metric::L2Squared, 4) >= 0.99);
    }

    #[test]
    fn links_respect_degree_bounds_and_levels() {
        let data = dataset(2000, 16, 3);
        let mut flat = FlatVectors::new(16);
        data.iter().for_each(|v| flat.push(v));
        let p = Params::new(8, 40);
        let g = MemoryGraph::new(p, Metric::L2Squared, flat, 1);
        g.build(2, &|| {}, |_| true);
        let (ep, top) = g.entry().unwrap();
        assert_eq!(g.levels[ep as usize] as usize, top);
        for i in 0..g.len() as u32 {
            let links = g.links(i);
            assert_eq!(links.len(), g.levels[i as usize] as usize + 1);
            for (lv, l) in links.iter().enumerate() {
                assert!(l.len() <= p.max_neighbors(lv));
                assert!(!l.contains(&i), "self link");
                for n in l {
                    assert!(g.levels[*n as usize] as usize >= lv, "link to a node without that level");
                }
            }
            assert!(!links[0].is_empty(), "node {i} is isolated on level 0");
        }
    }

    #[test]
    fn hamming_on_bits() {
        let mut rng = SplitMix64(9);
        let mut flat = FlatVectors::<u8>::new(8);
        let rows: Vec<Vec<u8>> = (0..1000).map(|_| (0..8).map(|_| rng.next_u64() as u8).collect()).collect();
        rows.iter().for_each(|r| flat.push(r));
        let g = MemoryGraph::new(Params::default(), Metric::Hamming, flat, 5);
        g.build(2, &|| {}, |_| true);
        for q in rows.iter().take(20) {
            let best = g.search(q, 1, 100);
            assert_eq!(best[0].distance, 0.0);
        }
    }

    #[test]
    fn levels_follow_the_geometric_distribution() {
        let p = Params::default();
        let mut rng = SplitMix64(11);
        let n = 100_000;
        let above0 = (0..n).filter(|_| p.level_for(rng.next_unit()) > 0).count() as f64 / n as f64;
        // P(level >= 1) = 1/m
        assert!((above0 - 1.0 / 16.0).abs() < 0.005, "{above0}");
    }
}
