//! HNSW (Malkov & Yashunin) written against small traits, so the same
//! search and neighbour selection run on the in-memory build graph
//! ([`memory`]) and on Postgres pages (in the glue).

pub mod fasthash;
pub mod layout;
pub mod maintain;
pub mod memory;
pub mod origin_seeds;
pub mod portable;
pub mod resumable;
pub mod search;

pub use search::{
    descend, search_layer, select_neighbors, select_neighbors_filled, select_neighbors_split, Candidate, Graph,
    PairDistance, QueryDistance, Visited,
};

/// Build and shape parameters, pgvector's names and defaults.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Neighbours per node on levels above 0 (level 0 keeps 2·m).
    pub m: usize,
    pub ef_construction: usize,
    /// Highest level a node may get (page space can lower it below MAX_LEVEL).
    pub max_level: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { m: 16, ef_construction: 64, max_level: MAX_LEVEL }
    }
}

/// Highest level a node may get; keeps neighbour lists within one page.
pub const MAX_LEVEL: usize = 15;

impl Params {
    pub fn max_neighbors(&self, level: usize) -> usize {
        if level == 0 {
            2 * self.m
        } else {
            self.m
        }
    }

    /// Total neighbour slots of a node of `level`.
    pub fn slots(&self, level: usize) -> usize {
        2 * self.m + level * self.m
    }

    pub fn new(m: usize, ef_construction: usize) -> Self {
        Params { m, ef_construction, max_level: MAX_LEVEL }
    }

    /// The highest level an element may have when its vector can be stored
    /// apart (see `layout`): its header, all neighbour slots and the
    /// pointer to the vector fit in `item_space` bytes.
    pub fn level_cap_apart(&self, item_space: usize) -> usize {
        self.level_cap(layout::VECTOR_REF_SIZE, item_space).unwrap_or(0)
    }

    /// The highest level whose element (header, all neighbour slots and the
    /// vector) still fits in `item_space` bytes; None if not even level 0 fits.
    pub fn level_cap(&self, vector_bytes: usize, item_space: usize) -> Option<usize> {
        let fixed = layout::ELEMENT_HEADER + vector_bytes + 4;
        let level0 = fixed + 2 * self.m * layout::SLOT_SIZE;
        if level0 > item_space {
            return None;
        }
        Some(((item_space - level0) / (self.m * layout::SLOT_SIZE)).min(MAX_LEVEL))
    }

    /// Level for a uniform random number `u` in (0, 1]: floor(-ln(u) / ln(m)).
    pub fn level_for(&self, u: f64) -> usize {
        let ml = 1.0 / (self.m.max(2) as f64).ln();
        let u = u.clamp(f64::MIN_POSITIVE, 1.0);
        ((-u.ln() * ml).floor() as usize).min(self.max_level)
    }
}

// The generator lives in `crate::rng` (quantize uses it too, and must not
// depend on the graph code); re-exported for the graph's users.
pub use crate::rng::SplitMix64;
