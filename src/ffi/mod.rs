//! The C ABI. This layer only converts and checks C arguments, calls the manager, and maps results to
//! `unilock_status`; it holds no lock logic. Every exported function body runs inside `boundary!`, so a
//! panic never crosses into C (it becomes `UNILOCK_E_INTERNAL`).
//!
//! The doc comments on `extern "C"` items are the header's documentation (cbindgen copies them).

#![allow(non_camel_case_types)]
// The exported functions take raw pointers because C passes them; marking them `unsafe fn` would say
// nothing a C caller can see. Their contract is the header: every pointer is checked for NULL, borrowed
// only for the call, and read only as far as its documented size (as rustls-ffi allows this lint).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[macro_use]
pub mod boundary;
pub mod client;
pub mod config;
pub mod events;
pub mod grace;
pub mod handle;
pub mod lease;
pub mod lock;
pub mod log;
pub mod shared;
pub mod status;
pub mod types;
