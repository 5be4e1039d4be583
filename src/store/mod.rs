//! Persistence in SQLite (rusqlite, bundled): locks, leases and client records, the durability
//! modes, and the pre-restart state that grace-period reclaims are checked against.
//!
//! The store only mirrors what the in-memory table decided: the table journals every change of a
//! file (lock rows ±1, the file's lease set), and the store writes the journal — in the same call
//! (`Sync`, `Process`) or coalesced in memory and written at most `batch_ms` later (`Batch`).
//!
//! Every file the store uses (the database, `-wal`, `-shm`) is created and opened in `Store::open`,
//! because hosts such as Samba call later under the client's uid.

pub mod schema;

use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OpenFlags};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// What "granted" promises after a crash (documented on `unilock_config.durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Committed with `synchronous=FULL` before the call returns: survives process crash and power loss.
    Sync,
    /// Committed (WAL, `synchronous=NORMAL`) before the call returns: survives a process crash; a power
    /// loss may lose the last commits.
    Process,
    /// Coalesced in memory and committed at most `batch_ms` later: a crash may lose that window.
    Batch,
}

/// One lock row: a held lock as callers name it (Windows stacking is the `count`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockRow {
    pub file: Box<[u8]>,
    pub client: Box<[u8]>,
    pub owner: Box<[u8]>,
    pub open_id: u64,
    /// 1 POSIX, 2 Windows (the C values).
    pub flavour: u8,
    /// 1 shared, 2 exclusive.
    pub kind: u8,
    pub start: u64,
    /// As callers give it (`UNILOCK_TO_EOF` for a POSIX lock to the end).
    pub length: u64,
}

/// One lease row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeaseRow {
    pub file: Box<[u8]>,
    pub client: Box<[u8]>,
    pub key: [u8; 16],
    pub kind: u8,
    pub version: u8,
    pub dir: bool,
    pub state: u8,
    pub epoch: u16,
    pub breaking: bool,
    pub break_to: u8,
}

impl LockRow {
    /// The one byte encoding of a lock row (shared-memory intents, cluster grace records).
    pub fn write(&self, w: &mut crate::codec::W) {
        w.bytes(&self.file);
        w.bytes(&self.client);
        w.bytes(&self.owner);
        w.u64(self.open_id);
        w.u8(self.flavour);
        w.u8(self.kind);
        w.u64(self.start);
        w.u64(self.length);
    }

    /// `None` if the bytes are not a row.
    pub fn read(r: &mut crate::codec::R) -> Option<LockRow> {
        Some(LockRow {
            file: r.bytes()?.into(),
            client: r.bytes()?.into(),
            owner: r.bytes()?.into(),
            open_id: r.u64()?,
            flavour: r.u8()?,
            kind: r.u8()?,
            start: r.u64()?,
            length: r.u64()?,
        })
    }
}

impl LeaseRow {
    /// The one byte encoding of a lease row (shared-memory intents, cluster grace records).
    pub fn write(&self, w: &mut crate::codec::W) {
        w.bytes(&self.file);
        w.bytes(&self.client);
        w.0.extend_from_slice(&self.key);
        w.u8(self.kind);
        w.u8(self.version);
        w.u8(self.dir as u8);
        w.u8(self.state);
        w.u64(self.epoch as u64);
        w.u8(self.breaking as u8);
        w.u8(self.break_to);
    }

    /// `None` if the bytes are not a row (an epoch over 16 bits included).
    pub fn read(r: &mut crate::codec::R) -> Option<LeaseRow> {
        Some(LeaseRow {
            file: r.bytes()?.into(),
            client: r.bytes()?.into(),
            key: r.key()?,
            kind: r.u8()?,
            version: r.u8()?,
            dir: r.u8()? != 0,
            state: r.u8()?,
            epoch: u16::try_from(r.u64()?).ok()?,
            breaking: r.u8()? != 0,
            break_to: r.u8()?,
        })
    }
}

/// Changes of one operation, journaled by the table.
#[derive(Debug, Default)]
pub struct Journal {
    pub locks: Vec<(LockRow, i64)>,
    /// Files whose lease set changed, with the new set.
    pub leases: Vec<(Box<[u8]>, Vec<LeaseRow>)>,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty() && self.leases.is_empty()
    }
}

/// What a restart finds.
#[derive(Debug, Default)]
pub struct Recovered {
    pub locks: crate::core::grace::PrevLocks,
    pub leases: Vec<LeaseRow>,
    /// Clients that held state (the expected clients of the grace period).
    pub clients: Vec<Box<[u8]>>,
    /// How long grace lasts when the backend decided it (cluster mode: what is left of the
    /// cluster-wide grace period); `None`: the configured period.
    pub remaining_ms: Option<u64>,
}

#[derive(Debug)]
pub struct StoreError(pub String);

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        StoreError(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

#[derive(Default)]
struct Pending {
    locks: HashMap<LockRow, i64>,
    leases: HashMap<Box<[u8]>, Vec<LeaseRow>>,
}

pub struct Store {
    conn: Mutex<Connection>,
    mode: Durability,
    pending: Mutex<Pending>,
    /// Clients with a durable record. Records are never deleted, so the set only grows.
    known_clients: Mutex<HashSet<Box<[u8]>>>,
    /// Tells this store from any other in the process (for `LAST_KNOWN`).
    id: u64,
}

static STORE_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The last client this thread found known, and in which store: a server thread usually serves
    /// one client at a time, so most locks skip the shared set (its mutex and hash) altogether.
    static LAST_KNOWN: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

fn i(v: u64) -> i64 {
    v as i64
}
fn u(v: i64) -> u64 {
    v as u64
}

impl Store {
    /// Opens (creating if needed) the database, migrates it forward, and takes the state of the
    /// previous run as the pre-restart state (moved to `prev_*`; merged with what an earlier,
    /// unfinished grace period left there).
    pub fn open(path: &str, mode: Durability) -> Result<(Store, Recovered), StoreError> {
        let conn = connect(path, mode)?;
        let rec = take_prev(&conn)?;
        let known: HashSet<Box<[u8]>> = {
            let mut st = conn.prepare("SELECT client FROM clients")?;
            let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            rows.filter_map(|r| r.ok()).map(|v| v.into_boxed_slice()).collect()
        };
        let id = STORE_IDS.fetch_add(1, Ordering::Relaxed);
        Ok((
            Store { conn: Mutex::new(conn), mode, pending: Mutex::default(), known_clients: Mutex::new(known), id },
            rec,
        ))
    }

    /// Reads the pre-restart state. `merge`: `prev_locks` may hold a row more than once (an earlier
    /// grace period did not finish), so rows are summed; otherwise they are unique already (they come
    /// from `locks`, whose primary key is the whole row but `count`) and are read as they are.
    fn read_prev(tx: &Connection, merge: bool) -> Result<Recovered, StoreError> {
        let mut rec = Recovered::default();
        {
            let mut st = tx.prepare(if merge {
                "SELECT file, client, owner, open_id, flavour, type, start, length, sum(count) FROM prev_locks
                 GROUP BY file, client, owner, open_id, flavour, type, start, length HAVING sum(count) > 0"
            } else {
                "SELECT file, client, owner, open_id, flavour, type, start, length, count FROM prev_locks WHERE count > 0"
            })?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let n: i64 = r.get(8)?;
                rec.locks.add_row(
                    r.get_ref(0)?.as_bytes()?,
                    r.get_ref(1)?.as_bytes()?,
                    r.get_ref(2)?.as_bytes()?,
                    u(r.get(3)?),
                    r.get(4)?,
                    r.get(5)?,
                    u(r.get(6)?),
                    u(r.get(7)?),
                    n.clamp(0, 1 << 20) as u64,
                );
            }
            rec.locks.shrink();
        }
        {
            let mut st = tx.prepare(
                "SELECT file, client, key, kind, version, dir, max(state), max(epoch), 0, 0 FROM prev_leases
                 GROUP BY file, client, key",
            )?;
            let rows = st.query_map([], |r| {
                let key: Vec<u8> = r.get(2)?;
                let mut k = [0u8; 16];
                let n = key.len().min(16);
                k[..n].copy_from_slice(&key[..n]);
                Ok(LeaseRow {
                    file: r.get::<_, Vec<u8>>(0)?.into(),
                    client: r.get::<_, Vec<u8>>(1)?.into(),
                    key: k,
                    kind: r.get(3)?,
                    version: r.get(4)?,
                    dir: r.get::<_, i64>(5)? != 0,
                    state: r.get(6)?,
                    epoch: r.get::<_, i64>(7)? as u16,
                    breaking: r.get::<_, i64>(8)? != 0,
                    break_to: r.get(9)?,
                })
            })?;
            for row in rows {
                rec.leases.push(row?);
            }
        }
        let mut clients: Vec<Box<[u8]>> = rec.locks.clients();
        clients.extend(rec.leases.iter().map(|l| l.client.clone()));
        clients.sort();
        clients.dedup();
        rec.clients = clients;
        Ok(rec)
    }

    pub fn mode(&self) -> Durability {
        self.mode
    }

    /// Makes a client record durable before the client's first grant (in every mode).
    pub fn ensure_client(&self, client: &[u8]) -> Result<(), StoreError> {
        let cached = LAST_KNOWN.with(|l| {
            let l = l.borrow();
            l.0 == self.id && *l.1 == *client
        });
        if cached {
            return Ok(());
        }
        if !self.known_clients.lock().contains(client) {
            self.conn.lock().execute("INSERT OR IGNORE INTO clients(client) VALUES (?1)", params![client])?;
            self.known_clients.lock().insert(client.into());
        }
        LAST_KNOWN.with(|l| {
            let mut l = l.borrow_mut();
            l.0 = self.id;
            l.1.clear();
            l.1.extend_from_slice(client);
        });
        Ok(())
    }

    /// Records a client registration (adapter, address, TTL).
    pub fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<(), StoreError> {
        put_client_in(&self.conn.lock(), client, adapter, address, ttl_ms)?;
        self.known_clients.lock().insert(client.into());
        Ok(())
    }

    /// Writes (or, in batch mode, queues) one operation's journal.
    pub fn record(&self, j: Journal) -> Result<(), StoreError> {
        if j.is_empty() {
            return Ok(());
        }
        match self.mode {
            Durability::Batch => {
                let mut p = self.pending.lock();
                for (row, d) in j.locks {
                    let e = p.locks.entry(row).or_insert(0);
                    *e += d;
                }
                for (file, rows) in j.leases {
                    p.leases.insert(file, rows);
                }
                Ok(())
            }
            _ => {
                let mut p = Pending::default();
                for (row, d) in j.locks {
                    *p.locks.entry(row).or_insert(0) += d;
                }
                for (file, rows) in j.leases {
                    p.leases.insert(file, rows);
                }
                self.write(p)
            }
        }
    }

    /// Whether batched changes wait to be written.
    pub fn has_pending(&self) -> bool {
        let p = self.pending.lock();
        !p.locks.is_empty() || !p.leases.is_empty()
    }

    /// Writes every batched change now (batch mode; a no-op otherwise).
    pub fn flush(&self) -> Result<(), StoreError> {
        let p = std::mem::take(&mut *self.pending.lock());
        self.write(p)
    }

    fn write(&self, p: Pending) -> Result<(), StoreError> {
        if p.locks.is_empty() && p.leases.is_empty() {
            return Ok(());
        }
        let conn = self.conn.lock();
        let tx = conn.unchecked_transaction()?;
        apply(&tx, p)?;
        tx.commit()?;
        Ok(())
    }

    /// Records an active grace period (for inspectors such as `unilock-stat`).
    pub fn set_grace(&self, expected: &[Box<[u8]>], remaining_ms: u64) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let list: Vec<String> = expected.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO grace(id, expected, deadline_unix_ms) VALUES (1, ?1, ?2)",
            params![list.join("\n"), now.saturating_add(remaining_ms.min(i64::MAX as u64) as i64)],
        )?;
        Ok(())
    }

    /// Grace ended: the pre-restart state is gone for good.
    pub fn end_grace(&self) -> Result<(), StoreError> {
        end_grace_in(&self.conn.lock())
    }
}

/// Records a client registration on `conn` (the store's connection, or shared mode's).
pub fn put_client_in(
    conn: &Connection,
    client: &[u8],
    adapter: &str,
    address: &str,
    ttl_ms: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO clients(client, adapter, address, ttl_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(client) DO UPDATE SET adapter = excluded.adapter, address = excluded.address, ttl_ms = excluded.ttl_ms",
        params![client, adapter, address, i(ttl_ms)],
    )?;
    Ok(())
}

/// Forgets the pre-restart state on `conn` (grace is over).
pub fn end_grace_in(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("DELETE FROM prev_locks; DELETE FROM prev_leases; DELETE FROM grace;")?;
    Ok(())
}

/// Writes a journal inside the caller's transaction.
fn apply(tx: &Connection, p: Pending) -> Result<(), StoreError> {
    {
        let mut up = tx.prepare_cached(
            "INSERT INTO locks(file, client, owner, open_id, flavour, type, start, length, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(file, client, owner, open_id, flavour, type, start, length)
             DO UPDATE SET count = count + excluded.count",
        )?;
        let mut gc = tx.prepare_cached(
            "DELETE FROM locks WHERE file=?1 AND client=?2 AND owner=?3 AND open_id=?4 AND flavour=?5
             AND type=?6 AND start=?7 AND length=?8 AND count <= 0",
        )?;
        for (r, d) in p.locks {
            if d == 0 {
                continue; // changes that cancel out are never written
            }
            let args =
                params![&*r.file, &*r.client, &*r.owner, i(r.open_id), r.flavour, r.kind, i(r.start), i(r.length)];
            up.execute(params![
                &*r.file,
                &*r.client,
                &*r.owner,
                i(r.open_id),
                r.flavour,
                r.kind,
                i(r.start),
                i(r.length),
                d
            ])?;
            if d < 0 {
                gc.execute(args)?;
            }
        }
        let mut del = tx.prepare_cached("DELETE FROM leases WHERE file = ?1")?;
        let mut ins = tx.prepare_cached(
            "INSERT OR REPLACE INTO leases(file, client, key, kind, version, dir, state, epoch, breaking, break_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for (file, rows) in p.leases {
            del.execute(params![&*file])?;
            for l in rows {
                ins.execute(params![
                    &*l.file,
                    &*l.client,
                    &l.key[..],
                    l.kind,
                    l.version,
                    l.dir,
                    l.state,
                    l.epoch,
                    l.breaking,
                    l.break_to
                ])?;
            }
        }
    }
    Ok(())
}

/// Writes one operation's journal inside the caller's transaction (shared mode).
pub fn apply_journal(tx: &Connection, j: Journal) -> Result<(), StoreError> {
    let mut p = Pending::default();
    for (row, d) in j.locks {
        *p.locks.entry(row).or_insert(0) += d;
    }
    for (file, rows) in j.leases {
        p.leases.insert(file, rows);
    }
    apply(tx, p)
}

/// Opens a connection, checks the file is a database this library may use, migrates it forward.
///
/// Every check reads only: a file that is refused (not a database, corrupt, another application's,
/// wrong tables, a negative or newer schema version, read-only) is left byte for byte as it was, and
/// no `-wal`, `-shm` or `-journal` file is left behind. Only a file that passes is written to (the
/// switch to WAL, the migrations, the application id and `user_version`).
pub fn connect(path: &str, mode: Durability) -> Result<Connection, StoreError> {
    refuse_read_only(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    if conn.is_readonly(rusqlite::DatabaseName::Main)? {
        return Err(StoreError(format!("database {path} is read-only; refusing to use it")));
    }
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // One read transaction for every check: another process may be creating the schema right now,
    // and checks read one after another could see its tables but not yet its version (and refuse a
    // good database as foreign). A read transaction writes nothing.
    conn.execute_batch("BEGIN")?;
    let valid = schema::validate(&conn);
    let _ = conn.execute_batch(if valid.is_ok() { "COMMIT" } else { "ROLLBACK" });
    valid?;
    let jm: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !jm.eq_ignore_ascii_case("wal") {
        return Err(StoreError(format!("cannot use WAL journal mode (got {jm})")));
    }
    conn.execute_batch(match mode {
        Durability::Sync => "PRAGMA synchronous=FULL;",
        _ => "PRAGMA synchronous=NORMAL;",
    })?;
    // Immediate: several processes may open a new database at once (shared mode).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if !(0..=schema::VERSION).contains(&version) {
        return Err(StoreError(format!(
            "database schema version {version} is not one this library knows; refusing to touch it"
        )));
    }
    for v in version..schema::VERSION {
        tx.execute_batch(schema::MIGRATIONS[v as usize])?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id={}; PRAGMA user_version={}",
        schema::APPLICATION_ID,
        schema::VERSION
    ))?;
    tx.commit()?;
    Ok(conn)
}

/// Refuses a database file this process may not write (permissions, a read-only file system, or no
/// write bit at all, which root would otherwise ignore) before SQLite opens it: a read-only
/// connection would leave new `-wal` and `-shm` files behind.
fn refuse_read_only(path: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) }; // created by the open
    let c = std::ffi::CString::new(path).map_err(|_| StoreError("database path contains a NUL byte".into()))?;
    // SAFETY: `c` is a NUL-terminated path; access() only reads it.
    let writable = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    if meta.is_file() && (!writable || meta.permissions().mode() & 0o222 == 0) {
        return Err(StoreError(format!("database {path} is read-only; refusing to use it")));
    }
    Ok(())
}

/// Turns the live state into the pre-restart state and reads it (a restart).
pub fn take_prev(conn: &Connection) -> Result<Recovered, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let rec = take_prev_in(&tx)?;
    tx.commit()?;
    Ok(rec)
}

/// `take_prev` inside the caller's transaction.
///
/// With no earlier pre-restart locks (the usual case) the `locks` table itself becomes `prev_locks`
/// (a rename, not a copy of every row) and a new, empty `locks` is created. Otherwise the live locks
/// are added to the earlier ones, a row present in both getting the sum of the counts.
pub fn take_prev_in(tx: &Connection) -> Result<Recovered, StoreError> {
    let merge: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM prev_locks)", [], |r| r.get(0))?;
    if merge {
        // `WHERE true` lets the parser take ON CONFLICT as the upsert clause. An older prev_locks
        // without a primary key takes duplicates instead; the summing read merges them.
        tx.execute_batch(
            "INSERT INTO prev_locks SELECT file, client, owner, open_id, flavour, type, start, length, count FROM locks
             WHERE true ON CONFLICT DO UPDATE SET count = count + excluded.count;
             DELETE FROM locks;",
        )?;
    } else if tx.query_row("SELECT EXISTS (SELECT 1 FROM locks)", [], |r| r.get(0))? {
        tx.execute_batch(&format!(
            "DROP TABLE prev_locks; ALTER TABLE locks RENAME TO prev_locks; {}",
            schema::LOCKS_TABLE
        ))?;
    }
    tx.execute_batch(
        "INSERT INTO prev_leases SELECT file, client, key, kind, version, dir, state, epoch, breaking, break_to FROM leases; DELETE FROM leases;",
    )?;
    Store::read_prev(tx, merge)
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("unilock: flushing the store at close failed: {}", e.0);
        }
    }
}
