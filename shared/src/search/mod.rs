//! Search's logic: a request checked and turned into a vector store filter that always holds the
//! caller's project, the two signals' candidates fused into one ranking, the page (threshold,
//! de-duplication, grouping), highlights, and the retrieval metrics of evaluations.

pub mod evaluation;
pub mod highlight;
pub mod metrics;
pub mod query;
pub mod rank;
pub mod rerank;

pub use query::{Filter, Mode, SearchRequest};
pub use rank::{Candidate, Fusion, FusionMethod, Ranked};
