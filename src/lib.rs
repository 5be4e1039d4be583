//! unilock: one lock table for every file-sharing protocol, shipped as a C library.
//!
//! Layout: `core` (pure lock semantics) ← `table` (sharded in-memory state) ← `ffi` (the C ABI).

pub mod core;
pub mod error;
pub mod owners;
pub mod table;
pub mod manager;
pub mod ffi;
pub mod clock;
pub mod events;
pub mod requests;
pub mod store;
pub mod metrics;
pub mod clients;
pub mod codec;
pub mod shared;
