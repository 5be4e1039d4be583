//! The one place for the library's defaults: the C config's `unilock_config_init` and the engine's
//! `Settings` (where 0 means "the default") both read them here.

/// Lease break timeout, ms: Windows' value (MS-SMB2's 35 s).
pub const LEASE_BREAK_TIMEOUT_MS: u64 = 35_000;
/// Grace period after a restart, ms (NFSv4's usual 90 s), shared by all protocols.
pub const GRACE_PERIOD_MS: u64 = 90_000;
/// `UNILOCK_DURABILITY_BATCH`: the longest a change waits before it is written, ms.
pub const BATCH_MS: u64 = 10;
/// Cluster mode: the etcd lease TTL, ms (a participant silent this long is dead to the others).
pub const CLUSTER_TTL_MS: u64 = 10_000;
