//! Layer search and neighbour selection, generic over where the graph lives.

use super::fasthash::IdHashSet;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::Hash;

/// A node at a distance from the query; ordered by distance, then node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<N> {
    pub distance: f32,
    pub node: N,
}

impl<N: Ord> Eq for Candidate<N> {}

impl<N: Ord> Ord for Candidate<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then_with(|| self.node.cmp(&other.node))
    }
}

impl<N: Ord> PartialOrd for Candidate<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The links of a graph.
pub trait Graph {
    type Node: Copy + Eq + Hash + Ord;
    /// Appends the neighbours of `node` on `level` to `out`.
    fn neighbors(&mut self, node: Self::Node, level: usize, out: &mut Vec<Self::Node>);
}

/// Distance from one fixed query to nodes.
pub trait QueryDistance<N> {
    fn distance(&mut self, node: N) -> f32;
    /// Whether a node may be a result (false for deleted elements, which a
    /// search still walks through). Asked only after `distance(node)`.
    fn accept(&mut self, _node: N) -> bool {
        true
    }
    /// Told which nodes `distance` is about to be asked for, in the order it
    /// will be asked, so storage that waits on memory can start fetching
    /// them ahead (each visit on pages is a cache miss; overlapping them
    /// hides most of the wait, and the disk graph requests each element a
    /// few `distance` calls before its own).
    fn prefetch(&mut self, _nodes: &[N]) {}
}

/// The nodes a search has reached. A hash set serves any node type; the
/// in-memory build, whose nodes are dense numbers, uses stamps instead.
pub trait Visited<N> {
    /// Records `node`; true if it was not recorded before.
    fn first_visit(&mut self, node: N) -> bool;
}

impl<N: Eq + Hash> Visited<N> for IdHashSet<N> {
    fn first_visit(&mut self, node: N) -> bool {
        self.insert(node)
    }
}

/// Distance between two nodes (for neighbour selection).
pub trait PairDistance<N> {
    fn pair_distance(&mut self, a: N, b: N) -> f32;
}

/// Algorithm 2 of the HNSW paper: the `ef` nearest nodes to the query
/// (`graph` knows the query and reads the links)
/// reachable on `level` from `entry`, sorted nearest first. `visited` is
/// shared across calls so a caller can continue a search.
pub fn search_layer<G, V>(
    graph: &mut G,
    entry: &[Candidate<G::Node>],
    ef: usize,
    level: usize,
    visited: &mut V,
) -> Vec<Candidate<G::Node>>
where
    G: Graph + QueryDistance<<G as Graph>::Node>,
    V: Visited<G::Node>,
{
    let ef = ef.max(1);
    // candidates: min-heap by distance; results: max-heap of the best ef.
    let mut candidates: BinaryHeap<std::cmp::Reverse<Candidate<G::Node>>> = BinaryHeap::new();
    let mut results: BinaryHeap<Candidate<G::Node>> = BinaryHeap::new();
    for c in entry {
        visited.first_visit(c.node);
        candidates.push(std::cmp::Reverse(*c));
        if graph.accept(c.node) {
            results.push(*c);
        }
    }
    while results.len() > ef {
        results.pop();
    }
    let mut links = Vec::new();
    while let Some(std::cmp::Reverse(c)) = candidates.pop() {
        let worst = results.peek().map(|w| w.distance).unwrap_or(f32::INFINITY);
        if c.distance > worst && results.len() >= ef {
            break;
        }
        links.clear();
        graph.neighbors(c.node, level, &mut links);
        links.retain(|n| visited.first_visit(*n));
        graph.prefetch(&links);
        for &n in &links {
            let d = graph.distance(n);
            let worst = results.peek().map(|w| w.distance).unwrap_or(f32::INFINITY);
            if results.len() < ef || d < worst {
                let cand = Candidate { distance: d, node: n };
                candidates.push(std::cmp::Reverse(cand));
                if graph.accept(n) {
                    results.push(cand);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
    }
    let mut out = results.into_vec();
    out.sort();
    out
}

/// Algorithm 4 of the paper (the heuristic): walks `candidates` nearest
/// first and keeps one when it is nearer to the base than to every node
/// already kept, which spreads links in all directions. Returns the kept
/// ones and the ones it passed over on the way (both nearest first).
pub fn select_neighbors_split<N, P>(
    candidates: &[Candidate<N>],
    max: usize,
    pairs: &mut P,
) -> (Vec<Candidate<N>>, Vec<Candidate<N>>)
where
    N: Copy + Ord,
    P: PairDistance<N>,
{
    let mut sorted: Vec<Candidate<N>> = candidates.to_vec();
    sorted.sort();
    sorted.dedup_by(|a, b| a.node == b.node);
    let mut kept: Vec<Candidate<N>> = Vec::with_capacity(max);
    let mut passed: Vec<Candidate<N>> = Vec::new();
    for c in sorted {
        if kept.len() >= max {
            break;
        }
        if kept.iter().all(|k| pairs.pair_distance(c.node, k.node) > c.distance) {
            kept.push(c);
        } else {
            passed.push(c);
        }
    }
    (kept, passed)
}

/// The heuristic's kept candidates. Pruned candidates do not refill the
/// free slots here (the paper's keepPrunedConnections, which pgvector
/// uses): while links are still being made, full lists turn away the
/// links back from later nodes, and on clustered data that measured lower
/// recall at every beam (0.97 instead of 0.99 at a beam of 200, and 0.88
/// instead of 0.98 after deletes and VACUUM). The in-memory build fills
/// free level-0 slots once, at its end (`MemoryGraph::fill_spare_links`).
pub fn select_neighbors<N, P>(candidates: &[Candidate<N>], max: usize, pairs: &mut P) -> Vec<Candidate<N>>
where
    N: Copy + Ord,
    P: PairDistance<N>,
{
    select_neighbors_split(candidates, max, pairs).0
}

/// The heuristic's kept candidates, then the nearest ones it passed over
/// until three quarters of `max` (keepPrunedConnections, with room left).
/// For sparse vectors, which share few coordinates, almost every candidate
/// is nearer to a kept one than to the base, and the heuristic alone kept
/// 2.6 links of 32 at level 0. The free quarter takes the links inserts add
/// without pruning (a reverse link, a link to what a pruning dropped):
/// filled to the brim, lists turned those away and left elements
/// unreachable.
pub fn select_neighbors_filled<N, P>(candidates: &[Candidate<N>], max: usize, pairs: &mut P) -> Vec<Candidate<N>>
where
    N: Copy + Ord,
    P: PairDistance<N>,
{
    let (mut kept, passed) = select_neighbors_split(candidates, max, pairs);
    let fill = (max * 3 / 4).max(kept.len());
    kept.extend(passed.into_iter().take(fill - kept.len()));
    kept
}
