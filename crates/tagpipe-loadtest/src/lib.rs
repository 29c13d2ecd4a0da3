//! # tagpipe-loadtest
//!
//! The side-by-side load-test harness (binary `tagpipe-loadtest`, see `main.rs`). The library
//! holds what the end-to-end measurement tests share with it: reading a child process's CPU
//! time, memory and readiness from `/proc` ([`process`]).

pub mod process;
