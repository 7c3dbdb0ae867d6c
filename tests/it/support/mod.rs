//! Harnesses shared by the tests (and, through `#[path]`, the benchmarks):
//! a headless browser, the test model's files, a real HTTP embedding server.

pub mod browser;
pub mod model;
pub mod server;
pub mod skip;
