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

use super::StoreError;
use rusqlite::Connection;

/// The schema version this library writes.
pub const VERSION: i64 = 2;

/// `PRAGMA application_id` of a unilock database ("ULK1"). Written with the migrations; databases
/// made before it was written carry 0 and are recognised by their version and tables.
pub(crate) const APPLICATION_ID: i32 = 0x554C_4B31;

/// The `locks` table, as migration 0 creates it (a restart renames it to `prev_locks` and creates
/// it again with this).
pub const LOCKS_TABLE: &str = "CREATE TABLE IF NOT EXISTS locks(
        file BLOB NOT NULL, client BLOB NOT NULL, owner BLOB NOT NULL, open_id INTEGER NOT NULL,
        flavour INTEGER NOT NULL, type INTEGER NOT NULL, start INTEGER NOT NULL, length INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY(file, client, owner, open_id, flavour, type, start, length)
     ) WITHOUT ROWID;";

/// Shared mode's wait-for edges, one row per waiting request (`blockers`: the owner keys it waits
/// for), so a blocking request's deadlock check reads edges, not every file. Created at open by the
/// first process of a library version that has it (it postdates schema version 2).
pub const SHARED_WAITS_TABLE: &str = "CREATE TABLE shared_waits (
        file BLOB NOT NULL, id INTEGER NOT NULL, who BLOB NOT NULL, blockers BLOB NOT NULL,
        PRIMARY KEY (file, id)
     ) WITHOUT ROWID;";

/// Shared mode's index of `shared_procs` by file (every commit that changes who has state on a file
/// rewrites that file's rows).
pub const SHARED_PROCS_BY_FILE: &str = "CREATE INDEX IF NOT EXISTS shared_procs_file ON shared_procs(file);";

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

/// Checks, reading only, that the database is one this library may migrate and use: readable (no
/// corrupt page), not another application's, of a known schema version, and with the tables that
/// version has, their columns and their rows' types as this library writes them. An empty file is a
/// new database.
pub fn validate(conn: &Connection) -> Result<(), StoreError> {
    // Any read of a file that is not a database, or is truncated, fails here.
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables = table_names(conn)?;
    if app != 0 && app != APPLICATION_ID as i64 {
        return Err(StoreError(format!(
            "not a unilock database: its application_id is {app:#x} (unilock's is {APPLICATION_ID:#x}); refusing to touch it"
        )));
    }
    if version < 0 {
        return Err(StoreError(format!("database schema version {version} is negative; refusing to touch it")));
    }
    if version > VERSION {
        return Err(StoreError(format!(
            "database schema version {version} is newer than this library's {VERSION}; refusing to touch it"
        )));
    }
    if version == 0 && app == 0 && !tables.is_empty() {
        return Err(StoreError(format!(
            "not a unilock database: it has tables ({}) but no unilock schema version or application_id; refusing to touch it",
            tables.join(", ")
        )));
    }
    // SQLite reads a cut-off last page as zeros: a file that is not a whole number of pages is truncated.
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    if let Some(len) = conn.path().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len() as i64) {
        if page > 0 && len % page != 0 {
            return Err(StoreError(format!(
                "database is truncated ({len} bytes, not a whole number of {page}-byte pages); refusing to touch it"
            )));
        }
    }
    let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError(format!("database is corrupt ({check}); refusing to touch it")));
    }
    // The tables of `version`, as its migrations create them.
    let want = Connection::open_in_memory()?;
    for m in &MIGRATIONS[..version as usize] {
        want.execute_batch(m)?;
    }
    for t in table_names(&want)? {
        let cols = columns(conn, &t)?;
        if cols.is_empty() {
            return Err(StoreError(format!(
                "not a unilock database of version {version}: table {t} is missing; refusing to touch it"
            )));
        }
        if cols != columns(&want, &t)? {
            return Err(StoreError(format!(
                "not a unilock database of version {version}: table {t} has columns ({}); refusing to touch it",
                cols.join(", ")
            )));
        }
    }
    if version >= 1 {
        check_rows(conn)?;
    }
    Ok(())
}

/// Tables of a database, sorted, without SQLite's own.
fn table_names(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A table's column names in order (empty: no such table).
fn columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
    let rows = st.query_map([table], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every row the restart reads has the types this library writes (a row of text where a number
/// belongs would fail the restart after the file was changed).
fn check_rows(conn: &Connection) -> Result<(), StoreError> {
    const LOCK: &str = "typeof(file) != 'blob' OR typeof(client) != 'blob' OR typeof(owner) != 'blob'
        OR typeof(open_id) != 'integer' OR typeof(flavour) != 'integer' OR typeof(type) != 'integer'
        OR typeof(start) != 'integer' OR typeof(length) != 'integer' OR typeof(count) != 'integer'";
    const LEASE: &str = "typeof(file) != 'blob' OR typeof(client) != 'blob' OR typeof(key) != 'blob'
        OR typeof(kind) != 'integer' OR typeof(version) != 'integer' OR typeof(dir) != 'integer'
        OR typeof(state) != 'integer' OR typeof(epoch) != 'integer' OR typeof(breaking) != 'integer'
        OR typeof(break_to) != 'integer'";
    const CLIENT: &str = "typeof(client) != 'blob' OR typeof(adapter) != 'text' OR typeof(address) != 'text'
        OR typeof(ttl_ms) != 'integer'";
    for (table, bad) in
        [("locks", LOCK), ("prev_locks", LOCK), ("leases", LEASE), ("prev_leases", LEASE), ("clients", CLIENT)]
    {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table} WHERE {bad}"), [], |r| r.get(0))?;
        if n > 0 {
            return Err(StoreError(format!(
                "database table {table} has {n} rows of the wrong types; refusing to touch it"
            )));
        }
    }
    Ok(())
}
