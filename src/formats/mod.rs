//! File formats shared by the stages that write them and the stages that
//! read them, so that neither imports the other.

pub mod embeddings;
