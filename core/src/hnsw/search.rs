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

/// A graph whose every node may be a result. The upper levels' descent
/// only looks for where to start on the next level down, and an element
/// VACUUM has flagged deleted keeps its links until it is freed, so it
/// routes as well as any. Left to `accept`, a deleted entry point alone on
/// the top level ended every descent with no start at all: while a VACUUM
/// that had flagged it ran (or after one was killed before moving the entry
/// point), scans returned no rows and inserts went in unlinked.
struct Waypoints<'a, G>(&'a mut G);

impl<G: Graph> Graph for Waypoints<'_, G> {
    type Node = G::Node;
    fn neighbors(&mut self, node: G::Node, level: usize, out: &mut Vec<G::Node>) {
        self.0.neighbors(node, level, out)
    }
}

impl<G: Graph + QueryDistance<<G as Graph>::Node>> QueryDistance<G::Node> for Waypoints<'_, G> {
    fn distance(&mut self, node: G::Node) -> f32 {
        self.0.distance(node)
    }
    fn prefetch(&mut self, nodes: &[G::Node]) {
        self.0.prefetch(nodes)
    }
}

/// The greedy descent of the HNSW paper from `entry` (on level `top`) to
/// the nearest node it reaches on level `down_to`, through every level in
/// between with a beam of one. Deleted nodes route too (see `Waypoints`);
/// the search on `down_to` itself decides what may be a result.
pub fn descend<G>(graph: &mut G, entry: G::Node, top: usize, down_to: usize) -> Vec<Candidate<G::Node>>
where
    G: Graph + QueryDistance<<G as Graph>::Node>,
{
    let mut cur = vec![Candidate { distance: graph.distance(entry), node: entry }];
    let mut routing = Waypoints(graph);
    for level in (down_to + 1..=top).rev() {
        let mut visited = IdHashSet::default();
        cur = search_layer(&mut routing, &cur, 1, level, &mut visited);
    }
    cur
}

/// Whether a kept link at `pair_distance` from a candidate makes the link to
/// that candidate (at `distance` from the base) redundant: only when the
/// kept one is strictly nearer to it than the base is. A tie keeps both, as
/// hnswlib decides: with the paper's "nearer or equal", an exact duplicate
/// of the base (distance 0 to it, so every candidate is as near to the
/// duplicate as to the base) leaves the base one link, and on integer
/// distances (Hamming) ties are everywhere.
#[inline]
pub fn occludes(pair_distance: f32, distance: f32) -> bool {
    pair_distance < distance
}

/// Algorithm 4 of the paper (the heuristic): walks `candidates` nearest
/// first and keeps one unless a node already kept is nearer to it than the
/// base (`occludes`), which spreads links in all directions. Returns the
/// kept ones and the ones it passed over on the way (both nearest first).
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
        if !kept.iter().any(|k| occludes(pairs.pair_distance(c.node, k.node), c.distance)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Points in the plane; pair distances are Euclidean.
    struct Plane(Vec<[f32; 2]>);

    impl PairDistance<usize> for Plane {
        fn pair_distance(&mut self, a: usize, b: usize) -> f32 {
            let (p, q) = (self.0[a], self.0[b]);
            ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
        }
    }

    fn around(plane: &mut Plane, base: usize, nodes: &[usize]) -> Vec<Candidate<usize>> {
        nodes.iter().map(|&n| Candidate { distance: plane.pair_distance(base, n), node: n }).collect()
    }

    #[test]
    fn a_duplicate_of_the_base_does_not_take_every_other_link() {
        // 0 is the base, 1 its exact duplicate, 2..=5 around it on four sides.
        let mut plane = Plane(vec![[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]);
        let cands = around(&mut plane, 0, &[1, 2, 3, 4, 5]);
        let kept: Vec<usize> = select_neighbors(&cands, 8, &mut plane).iter().map(|c| c.node).collect();
        assert_eq!(kept, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_candidate_behind_a_kept_one_is_still_pruned() {
        // 2 lies beyond 1 on the same ray: 1 is nearer to it than the base.
        let mut plane = Plane(vec![[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]);
        let cands = around(&mut plane, 0, &[1, 2, 3]);
        let (kept, passed) = select_neighbors_split(&cands, 8, &mut plane);
        assert_eq!(kept.iter().map(|c| c.node).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(passed.iter().map(|c| c.node).collect::<Vec<_>>(), vec![2]);
    }

    /// Nodes on a line at their position; `deleted` ones are never results.
    struct Line {
        at: Vec<f32>,
        links: Vec<Vec<Vec<usize>>>,
        deleted: Vec<bool>,
        query: f32,
    }

    impl Graph for Line {
        type Node = usize;
        fn neighbors(&mut self, node: usize, level: usize, out: &mut Vec<usize>) {
            out.extend(self.links[node].get(level).into_iter().flatten());
        }
    }

    impl QueryDistance<usize> for Line {
        fn distance(&mut self, node: usize) -> f32 {
            (self.at[node] - self.query).abs()
        }
        fn accept(&mut self, node: usize) -> bool {
            !self.deleted[node]
        }
    }

    #[test]
    fn a_deleted_entry_point_alone_on_its_level_still_leads_down() {
        // 0 is the entry point, alone on level 2 and deleted; 1 and 2 are on
        // level 1 with it; 3 and 4 only on level 0.
        let mut g = Line {
            at: vec![0.0, 5.0, 9.0, 8.0, 10.0],
            links: vec![
                vec![vec![1, 3], vec![1, 2], vec![]],
                vec![vec![0, 3], vec![0, 2]],
                vec![vec![4, 3], vec![1, 0]],
                vec![vec![2, 0]],
                vec![vec![2]],
            ],
            deleted: vec![true, false, false, false, false],
            query: 10.0,
        };
        let start = descend(&mut g, 0, 2, 0);
        assert_eq!(start.iter().map(|c| c.node).collect::<Vec<_>>(), vec![2]);
        let mut visited = IdHashSet::default();
        let found = search_layer(&mut g, &start, 3, 0, &mut visited);
        assert_eq!(found.iter().map(|c| c.node).collect::<Vec<_>>(), vec![4, 2, 3]);
        // A descent that stays on the entry's level starts from the entry itself.
        assert_eq!(descend(&mut g, 0, 2, 2).iter().map(|c| c.node).collect::<Vec<_>>(), vec![0]);
    }
}
