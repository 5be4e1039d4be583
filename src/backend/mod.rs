//! Where files' states live when several participants share one table.

pub mod etcd;
