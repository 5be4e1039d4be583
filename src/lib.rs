//! unilock: one lock table for every file-sharing protocol, shipped as a C library.
//!
//! Layout: see ARCHITECTURE.md: `ffi` (the C ABI) → `manager` (the facade) → `backend` (where states
//! live), `table` (one file's state) → `core` (every rule, pure).

/// cbindgen:ignore
pub mod backend;
/// cbindgen:ignore
pub mod clients;
/// cbindgen:ignore
pub mod clock;
/// cbindgen:ignore
pub mod codec;
/// cbindgen:ignore
pub mod core;
/// cbindgen:ignore
pub mod defaults;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod events;
pub mod ffi;
/// cbindgen:ignore
pub mod manager;
/// cbindgen:ignore
pub mod metrics;
/// cbindgen:ignore
pub mod owners;
/// cbindgen:ignore
pub mod requests;
/// cbindgen:ignore
pub mod state;
/// cbindgen:ignore
pub mod store;
/// cbindgen:ignore
pub mod table;
