//! Layer search and neighbour selection, generic over where the graph lives.

use std::cmp::Ordering;
use super::fasthash::IdHashSet;
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
    /// Told which nodes `distance` is about to be asked for, so storage that
    /// waits on memory can start fetching all of them at once (each visit
    /// on pages is a cache miss; overlapping them hides most of the wait).
    fn prefetch(&mut self, _nodes: &[N]) {}
}

/// Distance between two nodes (for neighbour selection).
pub trait PairDistance<N> {
    fn pair_distance(&mut self, a: N, b: N) -> f32;
}

/// Algorithm 2 of the HNSW paper: the `ef` nearest nodes to the query
/// (`graph` knows the query and reads the links)
/// reachable on `level` from `entry`, sorted nearest first. `visited` is
/// shared across calls so a caller can continue a search.
pub fn search_layer<G>(
    graph: &mut G,
    entry: &[Candidate<G::Node>],
    ef: usize,
    level: usize,
    visited: &mut IdHashSet<G::Node>,
) -> Vec<Candidate<G::Node>>
where
    G: Graph + QueryDistance<<G as Graph>::Node>,
{
    let ef = ef.max(1);
    // candidates: min-heap by distance; results: max-heap of the best ef.
    let mut candidates: BinaryHeap<std::cmp::Reverse<Candidate<G::Node>>> = BinaryHeap::new();
    let mut results: BinaryHeap<Candidate<G::Node>> = BinaryHeap::new();
    for c in entry {
        visited.insert(c.node);
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
        links.retain(|n| visited.insert(*n));
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
/// already kept, which spreads links in all directions. Pruned candidates
/// do not refill the free slots (the paper's keepPrunedConnections): on
/// clustered data the refilled lists measured lower recall at every beam
/// and cost more distances per hop.
pub fn select_neighbors<N, P>(candidates: &[Candidate<N>], max: usize, pairs: &mut P) -> Vec<Candidate<N>>
where
    N: Copy + Ord,
    P: PairDistance<N>,
{
    let mut sorted: Vec<Candidate<N>> = candidates.to_vec();
    sorted.sort();
    sorted.dedup_by(|a, b| a.node == b.node);
    let mut kept: Vec<Candidate<N>> = Vec::with_capacity(max);
    for c in sorted {
        if kept.len() >= max {
            break;
        }
        let good = kept.iter().all(|k| pairs.pair_distance(c.node, k.node) > c.distance);
        if good {
            kept.push(c);
        }
    }
    kept
}
