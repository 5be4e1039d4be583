//! The versioned schema and its forward migrations. A database whose version is newer than
//! `VERSION` is refused, never rewritten.
//!
//! Tables (read by `unilock-stat` too): `clients` (one row per client that ever held state),
//! `locks` (held locks; `length` as callers give it, `UNILOCK_TO_EOF` for a POSIX lock to the end;
//! Windows stacking in `count`), `leases`, `prev_locks`/`prev_leases` (the state before a restart,
//! kept until grace ends), `grace` (one row while a grace period is active: expected clients, one per
//! line, and the wall-clock deadline).

/// The schema version this library writes.
pub const VERSION: i64 = 1;

/// Migrations: `MIGRATIONS[i]` takes a database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE IF NOT EXISTS clients(
        client BLOB PRIMARY KEY,
        adapter TEXT NOT NULL DEFAULT '',
        address TEXT NOT NULL DEFAULT '',
        ttl_ms INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE IF NOT EXISTS locks(
        file BLOB NOT NULL, client BLOB NOT NULL, owner BLOB NOT NULL, open_id INTEGER NOT NULL,
        flavour INTEGER NOT NULL, type INTEGER NOT NULL, start INTEGER NOT NULL, length INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY(file, client, owner, open_id, flavour, type, start, length)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS leases(
        file BLOB NOT NULL, client BLOB NOT NULL, key BLOB NOT NULL, kind INTEGER NOT NULL,
        version INTEGER NOT NULL, dir INTEGER NOT NULL, state INTEGER NOT NULL, epoch INTEGER NOT NULL,
        breaking INTEGER NOT NULL, break_to INTEGER NOT NULL,
        PRIMARY KEY(file, client, key)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS prev_locks AS SELECT * FROM locks WHERE 0;
     CREATE TABLE IF NOT EXISTS prev_leases AS SELECT * FROM leases WHERE 0;
     CREATE TABLE IF NOT EXISTS grace(
        id INTEGER PRIMARY KEY CHECK (id = 1),
        expected TEXT NOT NULL,
        deadline_unix_ms INTEGER NOT NULL
     );",
];
