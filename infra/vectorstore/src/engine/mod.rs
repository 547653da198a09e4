//! The vector store's engine: collections of points (an id, a JSON payload, named dense vectors and
//! named sparse vectors), kept in SQLite (every acknowledged write is committed there first) and
//! served from memory: an HNSW graph (usearch) per dense vector, an inverted index per sparse
//! vector, and keyword indexes on payload fields for filtered search.
//!
//! One idea a file: [`store`] the collections and their persistence, [`collection`] one collection's
//! points, writes and searches, [`config`] its parameters, [`points`] the vectors a point is written
//! with, [`query`] what a search asks for, [`dense`] the graph, the 8-bit codes and the scans over
//! them, [`sparse`] the postings, [`payload_index`] the keyword and tenant indexes, [`distance`] the
//! metrics and their SIMD kernels.

mod collection;
mod config;
mod dense;
mod distance;
mod payload_index;
mod points;
mod query;
mod sparse;
mod store;
#[cfg(test)]
mod tests;

pub use crate::error::VecError;
pub use crate::point_id::PointId;
pub use collection::Collection;
pub use distance::{Distance, dot};
pub use points::{NewPoint, PointVectors, SparseVector};
pub use query::{QueryVector, Search, With, WithPayload, WithVectors};
pub use store::{PayloadChange, Selector, Shared, Store};
