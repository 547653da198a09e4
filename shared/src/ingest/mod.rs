//! Ingest's logic: bytes to clean text (decoding, extraction by format), text to chunks sized in the
//! embedding model's tokens, chunks to keyword vectors, the document records and the rule that decides
//! which version of a document search sees.

pub mod chunk;
pub mod crawl;
pub mod document;
pub mod extract;
pub mod pdf;
pub mod sparse;
pub mod text;
pub mod visibility;
pub mod webhook;
pub mod wordpiece;
