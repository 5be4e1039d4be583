//! The versioned schema and its forward migrations. A database whose version is newer than
//! `VERSION` is refused, never rewritten.
//!
//! Tables (read by `unilock-stat` too): `clients` (one row per client that ever held state),
//! `locks` (held locks; `length` as callers give it, `UNILOCK_TO_EOF` for a POSIX lock to the end;
//! Windows stacking in `count`), `leases`, `prev_locks`/`prev_leases` (the state before a restart,
//! kept until grace ends), `grace` (one row while a grace period is active: expected clients, one per
//! line, and the wall-clock deadline). Shared mode adds `procs` (the processes using the database:
//! pid, start time and boot id to tell a recycled pid, and the path of their wake-up socket),
//! `shared_files` (each file's whole state, encoded by `codec`), `shared_procs` (which processes
//! have state on which file) and `mailbox` (events for a process).

/// The schema version this library writes.
pub const VERSION: i64 = 2;

/// The `locks` table, as migration 0 creates it (a restart renames it to `prev_locks` and creates
/// it again with this).
pub const LOCKS_TABLE: &str = "CREATE TABLE IF NOT EXISTS locks(
        file BLOB NOT NULL, client BLOB NOT NULL, owner BLOB NOT NULL, open_id INTEGER NOT NULL,
        flavour INTEGER NOT NULL, type INTEGER NOT NULL, start INTEGER NOT NULL, length INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY(file, client, owner, open_id, flavour, type, start, length)
     ) WITHOUT ROWID;";

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
    // 1 -> 2: shared mode (several processes on one database).
    "CREATE TABLE IF NOT EXISTS procs(
        proc INTEGER PRIMARY KEY AUTOINCREMENT,
        pid INTEGER NOT NULL, start INTEGER NOT NULL, boot TEXT NOT NULL, socket TEXT NOT NULL,
        release_at_unix_ms INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE IF NOT EXISTS shared_files(file BLOB PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS shared_procs(
        file BLOB NOT NULL, proc INTEGER NOT NULL, PRIMARY KEY(proc, file)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS mailbox(
        seq INTEGER PRIMARY KEY AUTOINCREMENT, proc INTEGER NOT NULL, event BLOB NOT NULL
     );
     CREATE INDEX IF NOT EXISTS mailbox_proc ON mailbox(proc);",
];
