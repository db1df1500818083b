//! A level-0 search that can be continued: each call to [`Resumable::next_batch`]
//! returns the next nearest results not returned before, carrying over the
//! unexpanded frontier, the visited set and found-but-unreturned nodes, so
//! an iterative scan costs what it visits once instead of restarting.

use super::fasthash::IdHashSet;
use super::search::{Candidate, Graph, QueryDistance};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;

pub struct Resumable<N: Copy + Eq + Hash + Ord> {
    frontier: BinaryHeap<Reverse<Candidate<N>>>,
    spare: BinaryHeap<Reverse<Candidate<N>>>,
    visited: IdHashSet<N>,
    /// Distances computed so far (the scan's cost).
    pub visited_count: usize,
}

impl<N: Copy + Eq + Hash + Ord> Resumable<N> {
    /// Starts from `entry` (the result of the descent through upper levels).
    pub fn new<G: Graph<Node = N> + QueryDistance<N>>(graph: &mut G, entry: &[Candidate<N>]) -> Self {
        let mut s = Resumable {
            frontier: BinaryHeap::new(),
            spare: BinaryHeap::new(),
            // sized for a typical scan, so the set does not rehash as it grows
            visited: IdHashSet::with_capacity_and_hasher(2048, Default::default()),
            visited_count: 0,
        };
        for c in entry {
            if s.visited.insert(c.node) {
                s.frontier.push(Reverse(*c));
                if graph.accept(c.node) {
                    s.spare.push(Reverse(*c));
                }
            }
        }
        s
    }

    /// Up to `n` more accepted nodes that the search measured but did not
    /// return (nearest first), without expanding anything: the free part
    /// of a rescoring pool, since their distances are already known.
    pub fn take_measured(&mut self, n: usize) -> Vec<Candidate<N>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.spare.pop() {
                Some(Reverse(c)) => out.push(c),
                None => break,
            }
        }
        out
    }

    /// Up to `n` accepted nodes the search measured but did not return whose
    /// distance is exactly `distance`, without expanding anything. A batch
    /// keeps the `ef` nearest, so nodes tied with its farthest one wait
    /// here; a scan returns them as pgvector returns the up to 10 rows it
    /// keeps in one element for identical vectors.
    pub fn take_ties(&mut self, distance: f32, n: usize) -> Vec<Candidate<N>> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.spare.peek() {
                Some(Reverse(c)) if c.distance.total_cmp(&distance).is_eq() => {
                    out.push(*c);
                    self.spare.pop();
                }
                _ => break,
            }
        }
        out
    }

    /// The next up-to-`ef` nearest accepted nodes, nearest first; empty when
    /// the reachable graph is exhausted.
    pub fn next_batch<G: Graph<Node = N> + QueryDistance<N>>(&mut self, graph: &mut G, ef: usize) -> Vec<Candidate<N>> {
        let ef = ef.max(1);
        let mut results: BinaryHeap<Candidate<N>> = BinaryHeap::new();
        while let Some(Reverse(c)) = self.spare.pop() {
            results.push(c);
            if results.len() > ef {
                let evicted = results.pop().expect("non-empty");
                self.spare.push(Reverse(evicted));
                break;
            }
        }
        let mut links = Vec::new();
        while let Some(Reverse(c)) = self.frontier.pop() {
            let worst = results.peek().map(|w| w.distance).unwrap_or(f32::INFINITY);
            if results.len() >= ef && c.distance > worst {
                self.frontier.push(Reverse(c));
                break;
            }
            links.clear();
            graph.neighbors(c.node, 0, &mut links);
            links.retain(|n| self.visited.insert(*n));
            graph.prefetch(&links);
            for &n in &links {
                let d = graph.distance(n);
                self.visited_count += 1;
                let cand = Candidate { distance: d, node: n };
                self.frontier.push(Reverse(cand));
                if graph.accept(n) {
                    results.push(cand);
                    if results.len() > ef {
                        let evicted = results.pop().expect("non-empty");
                        self.spare.push(Reverse(evicted));
                    }
                }
            }
        }
        let mut out = results.into_vec();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A line graph 0-1-2-...-n where node i sits at distance |i - q|.
    struct Line {
        n: u32,
        q: f32,
        skip: HashSet<u32>,
    }
    impl Graph for Line {
        type Node = u32;
        fn neighbors(&mut self, node: u32, _level: usize, out: &mut Vec<u32>) {
            if node > 0 {
                out.push(node - 1);
            }
            if node + 1 < self.n {
                out.push(node + 1);
            }
        }
    }
    impl QueryDistance<u32> for Line {
        fn distance(&mut self, node: u32) -> f32 {
            (node as f32 - self.q).abs()
        }
        fn accept(&mut self, node: u32) -> bool {
            !self.skip.contains(&node)
        }
    }

    #[test]
    fn batches_return_every_node_once_nearest_first() {
        let mut g = Line { n: 100, q: 50.2, skip: HashSet::from([49, 60]) };
        let entry = [Candidate { distance: g.distance(0), node: 0 }];
        let mut s = Resumable::new(&mut g, &entry);
        let mut all = Vec::new();
        loop {
            let b = s.next_batch(&mut g, 7);
            if b.is_empty() {
                break;
            }
            all.extend(b);
        }
        let ids: Vec<u32> = all.iter().map(|c| c.node).collect();
        let unique: HashSet<u32> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len());
        assert_eq!(unique.len(), 98);
        assert!(!unique.contains(&49) && !unique.contains(&60));
        // on a line every batch is exact, so the whole sequence is ordered
        assert!(all.windows(2).all(|w| w[0].distance <= w[1].distance));
        assert_eq!(ids[0], 50);
    }

    /// Twenty nodes at one distance: a batch of 1 keeps one, the other 19
    /// wait as ties, and only ties at exactly that distance are taken.
    struct Star {
        far: u32,
    }
    impl Graph for Star {
        type Node = u32;
        fn neighbors(&mut self, node: u32, _level: usize, out: &mut Vec<u32>) {
            out.extend((0..=self.far).filter(|&n| n != node));
        }
    }
    impl QueryDistance<u32> for Star {
        fn distance(&mut self, node: u32) -> f32 {
            if node == self.far {
                1.0
            } else {
                0.0
            }
        }
    }

    #[test]
    fn ties_with_the_farthest_result_wait_and_are_taken_only_at_that_distance() {
        let mut g = Star { far: 20 };
        let entry = [Candidate { distance: 0.0, node: 0 }];
        let mut s = Resumable::new(&mut g, &entry);
        let b = s.next_batch(&mut g, 1);
        assert_eq!(b.len(), 1);
        let ties = s.take_ties(0.0, 9);
        assert_eq!(ties.len(), 9);
        assert!(ties.iter().all(|c| c.distance == 0.0 && c.node != b[0].node));
        assert_eq!(s.take_ties(0.0, 100).len(), 10);
        assert!(s.take_ties(0.0, 100).is_empty(), "the node at distance 1 is no tie");
        assert_eq!(s.take_measured(5).len(), 1);
    }
}
