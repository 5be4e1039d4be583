//! (One concept — the shared-memory backend's operation and its crash-safety protocol — hence
//! over 800 lines; the layout, mutexes, allocator and database work are in the submodules.)
//!
//! Shared mode at memory speed: the processes of one server keep the lock table in a shared-memory
//! mapping (see `layout`) instead of taking SQLite's write lock for every operation. Each file's
//! state is one immutable record holding `FileState::encode` (the same codec, so the same core runs
//! on it), in a hash partitioned 64 ways, each partition guarded by one robust process-shared
//! pthread mutex (`mutex`) and owning its own heap (`alloc`): operations on files of different
//! partitions run in parallel.
//!
//! One operation: lock the partition; find the record; decode; run the caller's closure; encode. If
//! nothing changed (`unilock_test`, `unilock_check_io`, a refused lock), unlock: nothing is written,
//! no database transaction is started. Otherwise write the new record copy-on-write into a fresh
//! block, write the operation's other work (journal, wait edges, mail for other processes: `aux`)
//! into another, and record an *intent* in the partition (where the publishing store goes, its
//! value, the old record, the work); then do the database work if there is any (journal or wait
//! edges; idempotent: the `shm_applied` row of the partition says which intent it last applied, in
//! the same transaction), post the mail to the targets' slots in the mapping (`mail`; idempotent:
//! each slot records the last intent of each partition posted to it), publish the new record by one
//! 8-byte store, queue the block for write-behind if its lock rows wait (see below), clear the
//! intent, free the old record, unlock, and wake the processes mail went to (a datagram to
//! `<db>.sockets/<proc>.sock`). An operation whose only work is mail or lock rows (a lock, an
//! unlock, a lease break, a watch, outside SYNC durability) takes no database transaction; neither
//! does reading mail.
//!
//! Crash safety: a process killed before its intent is recorded leaves the table as it was (its
//! fresh blocks leak); killed after, it leaves an intent that the next process to lock the
//! partition finds with `EOWNERDEAD` and rolls forward before doing anything else. Either way every
//! reader sees the old state or the new one, never a half-written one, and the database and the
//! mail agree with the table; no mail is posted twice (the slots' applied words), and a poster
//! killed inside a slot's mutex leaves no half message (the slot's own intent, finished by the next
//! locker of the slot: see `mail`). Once any of the work is committed or posted, the intent can only
//! be finished, never undone: an error after that point leaves it to the next locker. A mapping that
//! cannot be trusted (another layout, truncated, an older boot, another instance than the
//! database's) is rebuilt when no other process is alive (a restart, recovered from the database as
//! the SQLite mode does) and refused otherwise.
//!
//! What stays in SQLite (`crate::shared::Shared`, unchanged): process registration and liveness,
//! the mailbox as the fallback of the mail slots (a process whose slot another live process owns,
//! a full ring; a counter per process in the mapping says when to look, so idle rounds read
//! nothing), the wait-for edges a blocking request's deadlock check reads (blocking requests are
//! serialised by one more robust mutex so two can never miss each other's edge), clients, grace,
//! and the durable record. Lock rows are written in the operation in SYNC durability; in PROCESS
//! and BATCH the operation's block stays in its partition's write-behind queue in the mapping
//! (`queue`) and a flush writes it (the flush timer of any process, `unilock_close`, an operation
//! that finds its partition's queue long, or the restart that finds every process dead), so a lock
//! or unlock costs no database transaction and the crash of a process loses nothing. Lease sets
//! (read across files by "a lease key belongs to one file"), mail and wait edges are written in the
//! operation in every mode.

pub mod alloc;
pub mod aux;
pub mod layout;
pub mod mail;
pub mod mutex;
pub mod queue;
pub mod select;

use crate::backend::sqlite_shared::Shared;
use crate::backend::{Backend, ProcIdent};
use crate::error::{Error, Result};
use crate::requests::{Ctx, Event};
use crate::store::{self, Durability, Journal, Recovered};
use crate::table::FileState;
use aux::Aux;
use layout::*;
use parking_lot::Mutex;
use rusqlite::{params, OptionalExtension};
use std::os::unix::fs::OpenOptionsExt;

fn serr<E: std::fmt::Display>(e: E) -> Error {
    Error::Store(e.to_string())
}

pub struct ShmBackend {
    sh: Shared,
    map: Map,
    mpath: std::path::PathBuf,
    epoch: u64,
    mode: Durability,
    /// This process put lock rows in a write-behind queue since its last flush (PROCESS, BATCH).
    queued: std::sync::atomic::AtomicBool,
    /// The fallback mail counter value this process last read.
    mail_seen: std::sync::atomic::AtomicU64,
    /// This process's mail slot (`mail`), if it got one.
    slot: Option<u64>,
    /// `<db>.sockets`, where every process binds `<proc>.sock` (`Shared::open`).
    sock_dir: std::path::PathBuf,
    /// Test hook (`UNILOCK_SHM_TEST_STOP=<n>`): about one operation in n stops itself with SIGSTOP
    /// inside the partition mutex, at a random step, so a test can SIGKILL it there.
    stop_one_in: u64,
    rng: std::sync::atomic::AtomicU64,
    /// States to decode into, their memory reused from one operation to the next (a few: threads
    /// of this process may operate at once). Boxed: a state is large, and moves in and out.
    #[allow(clippy::vec_box)]
    scratch: Mutex<Vec<Box<FileState>>>,
    pub me: u64,
}

/// A held partition (or graph) mutex.
struct Held<'a> {
    m: &'a Map,
    off: u64,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: taken by `lock_at` on this mapping.
        unsafe { mutex::unlock(self.m.mutex(self.off)) }
    }
}

/// A state borrowed from the scratch pool, given back when the operation ends (at most four kept).
#[allow(clippy::vec_box)]
struct Scratch<'a> {
    pool: &'a Mutex<Vec<Box<FileState>>>,
    fs: Option<Box<FileState>>,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if let Some(fs) = self.fs.take() {
            let mut pool = self.pool.lock();
            if pool.len() < 4 {
                pool.push(fs);
            }
        }
    }
}

/// Opens (creating at mode 0666) the mapping file and takes its `flock`, which every process holds
/// while it joins, rebuilds or removes the table. A file removed by the last process to leave while
/// this one waited for the lock is not the table any more: open the path again.
fn open_mapping_file(path: &std::path::Path) -> Result<Locked> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    loop {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(path)
            .map_err(|e| Error::Store(format!("cannot open the shared-memory table {}: {e}", path.display())))?;
        // The umask may have taken bits away: every process of the server must be able to map it.
        let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
        // SAFETY: a valid descriptor; the lock goes with it when the file is closed.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(Error::Store(format!(
                    "cannot lock {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                )));
            }
        }
        let same = match (f.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            return Ok(Locked(f));
        }
        drop(Locked(f));
    }
}

/// The mapping file with its `flock` held; dropping it unlocks explicitly (a mapping of the file
/// keeps its open file description, and so the lock, alive after the descriptor is closed).
struct Locked(std::fs::File);

impl std::ops::Deref for Locked {
    type Target = std::fs::File;
    fn deref(&self) -> &std::fs::File {
        &self.0
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn unlock_mapping_file(f: Locked) {
    drop(f);
}

/// Do two lease sets of one file hold the same SMB leases (client, key), whatever their states? Only
/// those are read across files (`lease_file`: "a lease key belongs to one file"); oplocks,
/// delegations and the records of plain opens (`PLAIN_OPEN_KEY`) are not, and may come and go.
fn same_leases(a: &[store::LeaseRow], b: &[store::LeaseRow]) -> bool {
    fn keys(rows: &[store::LeaseRow]) -> Vec<(&[u8], [u8; 16])> {
        let mut k: Vec<(&[u8], [u8; 16])> = rows
            .iter()
            .filter(|r| r.kind == crate::core::lease::Kind::Lease as u8 && r.key != crate::core::file::PLAIN_OPEN_KEY)
            .map(|r| (&*r.client, r.key))
            .collect();
        k.sort_unstable();
        k
    }
    keys(a) == keys(b)
}

/// Most blocks a partition's write-behind queue holds before an operation flushes it itself.
const QUEUE_MAX: u64 = 4096;

/// Applies the lock rows of queued blocks (sequence number, aux bytes) of partition `p` that the
/// database does not have yet (`shm_flushed`), coalesced; does not move `shm_flushed`.
fn apply_queued<'a>(
    tx: &rusqlite::Transaction,
    p: u64,
    blocks: impl Iterator<Item = (u64, bool, &'a [u8])>,
) -> Result<()> {
    let done: u64 = tx
        .prepare_cached("SELECT seq FROM shm_flushed WHERE part = ?1")
        .and_then(|mut st| st.query_row(params![p as i64], |r| r.get::<_, i64>(0)).optional())
        .map_err(serr)?
        .unwrap_or(0) as u64;
    let mut j = Journal::default();
    for (seq, leases, bytes) in blocks {
        if seq <= done {
            continue;
        }
        let (aux, _) =
            Aux::decode(bytes).ok_or_else(|| Error::Store("a shared-memory write-behind block is corrupt".into()))?;
        j.locks.extend(aux.journal.locks);
        if leases {
            // In order: a later set of the same file replaces an earlier one.
            j.leases.extend(aux.journal.leases);
        }
    }
    store::apply_journal(tx, j).map_err(|e| Error::Store(e.0))
}

/// The bytes of aux block `a` of partition `p`, bounds-checked (`None`: corrupt).
fn aux_block(m: &Map, p: u64, a: u64) -> Option<&[u8]> {
    let class = m.get(a + R_CLASS) & 0xffff_ffff;
    let n = m.get(a + R_STATE_LEN);
    if class >= NCLASS || !alloc::in_heap(p, a, alloc::class_size(class)) || R_BODY + n > alloc::class_size(class) {
        return None;
    }
    m.bytes(a + R_BODY, n)
}

/// At a whole-server restart, before the pre-restart state is read from the database: writes the
/// lock rows still queued in the old mapping when it is the table the database's running instance
/// used (same boot, layout and epoch). Intents never finished are not applied (their operations
/// never returned). Nothing else is running: no mutex is taken.
fn apply_left_queues(tx: &rusqlite::Transaction, file: &std::fs::File) -> Result<()> {
    let len = file.metadata().map_err(serr)?.len();
    if len != TOTAL {
        return Ok(());
    }
    let epoch = recorded_epoch(tx)?;
    let Ok(m) = Map::new(file) else { return Ok(()) };
    if epoch.is_none() || check_header(&m, len, epoch) != HeaderCheck::Ok {
        return Ok(());
    }
    let mut n = 0;
    for p in 0..NPART {
        let o = part_off(p);
        let skip = if m.get(o + P_INTENT) != 0 { m.get(o + P_I_AUX) } else { 0 };
        let Some(blocks) = queue::blocks(&m, p, skip) else {
            log::error!("unilock: the shared-memory table's write-behind queue {p} is corrupt; its rows are lost");
            continue;
        };
        let mut data = Vec::new();
        for (seq, leases, b) in blocks {
            match aux_block(&m, p, b) {
                Some(bytes) => data.push((seq, leases, bytes.to_vec())),
                None => log::error!(
                    "unilock: a write-behind block of the shared-memory table is corrupt; its rows are lost"
                ),
            }
        }
        n += data.len();
        apply_queued(tx, p, data.iter().map(|(s, l, b)| (*s, *l, &b[..])))?;
    }
    if n > 0 {
        log::info!(
            "unilock: wrote {n} operations' lock rows left queued in the shared-memory table before the restart"
        );
    }
    Ok(())
}

/// The running instance the database records (epoch), if any.
fn recorded_epoch(conn: &rusqlite::Connection) -> Result<Option<u64>> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS shm_instance(id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS shm_applied(part INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS shm_flushed(part INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS shm_mail_applied(slot INTEGER NOT NULL, part INTEGER NOT NULL, seq INTEGER NOT NULL,
                                                     PRIMARY KEY(slot, part)) WITHOUT ROWID;",
    )
    .map_err(serr)?;
    conn.query_row("SELECT epoch FROM shm_instance WHERE id = 1", [], |r| r.get::<_, i64>(0))
        .optional()
        .map(|o| o.map(|v| v as u64))
        .map_err(serr)
}

fn new_epoch() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ ((std::process::id() as u64) << 48) | 1
}

impl ShmBackend {
    /// Joins (or starts) the shared table of the database at `path`. Returns the pre-restart state
    /// when no other process is alive (a whole-server restart: grace), as `Shared::open` does.
    pub fn open(path: &str, mode: Durability) -> Result<(ShmBackend, Option<Recovered>)> {
        mutex::self_test().map_err(|e| Error::Store(format!("robust process-shared mutexes do not work: {e}")))?;
        // The database file must exist to name the mapping from its canonical path.
        let canon_base = {
            let p = std::path::Path::new(path);
            if !p.exists() {
                // An empty file is a new database to SQLite (created as SQLite would, then opened below).
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .map_err(|e| Error::Store(format!("cannot create {path}: {e}")))?;
            }
            path
        };
        let mpath = mapping_path(canon_base).map_err(Error::Store)?;
        let file = open_mapping_file(&mpath)?;
        // Everything below runs with the mapping's flock held: no process joins a table being rebuilt.
        let (sh, rec) = match Shared::open_with(path, mode, &mut |tx| apply_left_queues(tx, &file)) {
            Ok(x) => x,
            Err(e) => {
                // A database refused (or failing) leaves no mapping behind that this open made.
                if file.metadata().map(|m| m.len()).unwrap_or(1) == 0 {
                    let _ = std::fs::remove_file(&mpath);
                }
                return Err(e);
            }
        };
        let len = file.metadata().map_err(serr)?.len();
        let recorded = recorded_epoch(&sh.conn().lock())?;
        let (map, epoch) = if rec.is_some() {
            // No other process is alive: a restart. The table is rebuilt from nothing (the database
            // holds the pre-restart state, taken by `Shared::open`), whatever the mapping held.
            if len != 0 {
                // Read what it was, for the log, without trusting it.
                if len >= PAGE {
                    if let Ok(m) = Map::new(&file) {
                        if let HeaderCheck::Bad(why) = check_header(&m, len, recorded) {
                            log::warn!(
                                "unilock: {}: {why}; rebuilding it (no other process is running)",
                                mpath.display()
                            );
                        }
                    }
                } else {
                    log::warn!(
                        "unilock: {}: the mapping file is truncated ({len} bytes); rebuilding it (no other process is running)",
                        mpath.display()
                    );
                }
            }
            // Truncating to nothing gives back every page and zeroes the table.
            file.set_len(0).map_err(serr)?;
            file.set_len(TOTAL).map_err(serr)?;
            let m = Map::new(&file).map_err(Error::Store)?;
            let epoch = new_epoch();
            build(&m, epoch).map_err(Error::Store)?;
            let conn = sh.conn().lock();
            conn.execute_batch("DELETE FROM shm_applied; DELETE FROM shm_flushed; DELETE FROM shm_mail_applied;")
                .map_err(serr)?;
            conn.execute("INSERT OR REPLACE INTO shm_instance(id, epoch) VALUES (1, ?1)", params![epoch as i64])
                .map_err(serr)?;
            (m, epoch)
        } else {
            // Other processes are running: the mapping must be exactly the one they use.
            let why = if len < TOTAL {
                Some(format!("the mapping file is truncated ({len} bytes, {TOTAL} expected)"))
            } else if recorded.is_none() {
                Some("the running processes of this database do not use the shared-memory table".into())
            } else {
                let m = Map::new(&file).map_err(Error::Store)?;
                match check_header(&m, len, recorded) {
                    HeaderCheck::Ok => {
                        let e = recorded.unwrap_or(0);
                        let b = ShmBackend::new(sh, m, mpath, e, mode, path)?;
                        unlock_mapping_file(file);
                        return Ok((b, None));
                    }
                    HeaderCheck::Bad(why) => Some(why),
                }
            };
            let why = why.unwrap_or_default();
            let _ = sh.forget_proc(sh.me);
            log::error!(
                "unilock: {}: {why}; refusing it while other processes use the database (stop them to rebuild it)",
                mpath.display()
            );
            return Err(Error::Store(format!("shared-memory table {}: {why}", mpath.display())));
        };
        let b = ShmBackend::new(sh, map, mpath, epoch, mode, path)?;
        unlock_mapping_file(file);
        Ok((b, rec))
    }

    /// The backend of a joined table; claims this process's mail slot (the caller holds the mapping
    /// file's lock).
    fn new(
        sh: Shared,
        map: Map,
        mpath: std::path::PathBuf,
        epoch: u64,
        mode: Durability,
        path: &str,
    ) -> Result<ShmBackend> {
        let me = sh.me;
        let claimed = sh.procs().and_then(|procs| {
            let alive = |o: u64| procs.iter().any(|(p, id)| *p == o && id.alive());
            mail::claim(&map, mail::slot_of(me), me, epoch, alive).map_err(Error::Store)
        });
        let slot = match claimed {
            Ok(true) => Some(mail::slot_of(me)),
            // Another live process owns the slot: this process's mail goes through SQLite.
            Ok(false) => None,
            Err(e) => {
                let _ = sh.forget_proc(me);
                return Err(e);
            }
        };
        let sock_dir = {
            let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
            let mut s = canon.into_os_string();
            s.push(".sockets");
            std::path::PathBuf::from(s)
        };
        *LIVE.lock().entry(mpath.clone()).or_insert(0) += 1;
        let stop_one_in = std::env::var("UNILOCK_SHM_TEST_STOP").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(ShmBackend {
            sh,
            map,
            mpath,
            epoch,
            mode,
            queued: std::sync::atomic::AtomicBool::new(false),
            mail_seen: std::sync::atomic::AtomicU64::new(u64::MAX),
            slot,
            sock_dir,
            stop_one_in,
            rng: std::sync::atomic::AtomicU64::new(new_epoch() | 1),
            scratch: Mutex::new(Vec::new()),
            me,
        })
    }

    /// The mapping is still the table this process joined (a file overwritten or rebuilt under a
    /// running process is refused, never read).
    fn check(&self) -> Result<()> {
        let m = &self.map;
        if m.get(H_MAGIC) != MAGIC || m.get(H_EPOCH) != self.epoch {
            return Err(Error::Store("the shared-memory table was overwritten or replaced".into()));
        }
        if m.get(H_STATE) != STATE_READY {
            return Err(Error::Store("the shared-memory table is poisoned".into()));
        }
        Ok(())
    }

    fn lock_at(&self, off: u64) -> Result<(Held<'_>, bool)> {
        // SAFETY: `off` is a mutex made by `build` in this mapping, mapped for as long as `self`.
        let died = match unsafe { mutex::lock(self.map.mutex(off)) } {
            Ok(mutex::Locked::Clean) => false,
            Ok(mutex::Locked::OwnerDied) => true,
            Err(e) => {
                self.map.set(H_STATE, STATE_POISONED);
                log::error!("unilock: {e}; the shared-memory table is poisoned");
                return Err(Error::Store(e));
            }
        };
        Ok((Held { m: &self.map, off }, died))
    }

    /// Locks partition `p`, rolling forward the intent of a holder that died.
    fn lock_part(&self, p: u64) -> Result<Held<'_>> {
        let (g, died) = self.lock_at(part_off(p) + P_MUTEX)?;
        if died {
            // Every change in a partition is published by one 8-byte store, so its structure is
            // sound; what the dead holder left undone is its intent, finished below (and, should
            // that fail, by the next locker: the intent stays until it is done). Marked consistent
            // first, so a failure here never leaves the mutex unrecoverable.
            log::warn!("unilock: a process died holding shared-memory partition {p}; repairing it");
            // SAFETY: held by us.
            unsafe { mutex::consistent(self.map.mutex(part_off(p) + P_MUTEX)) };
        }
        if self.map.get(part_off(p) + P_INTENT) != 0 {
            // Found after EOWNERDEAD (or left by a roll-forward that failed): finish it first.
            let wake = self.roll_forward(p, &mut false)?;
            self.wake(&wake);
            log::warn!("unilock: rolled forward the unfinished operation in partition {p}");
        }
        Ok(g)
    }

    /// Test hook: stop here (inside the partition mutex) now and then.
    fn maybe_stop(&self, step: u64) {
        if self.stop_one_in == 0 {
            return;
        }
        let mut x = self.rng.load(std::sync::atomic::Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, std::sync::atomic::Ordering::Relaxed);
        if x % (self.stop_one_in * 6) == step {
            // SAFETY: stops this process until a signal (the test SIGKILLs it).
            unsafe { libc::raise(libc::SIGSTOP) };
        }
    }

    /// Finds `file`'s record in partition `p`: (the offset of the word that links it, the record).
    fn find(&self, p: u64, h: u64, file: &[u8]) -> Result<(u64, u64)> {
        let m = &self.map;
        let mut link = part_off(p) + P_BUCKETS + ((h / NPART) % NBUCKET) * 8;
        let mut steps = 0u64;
        loop {
            let r = m.get(link);
            if r == 0 {
                return Ok((link, 0));
            }
            if !alloc::in_heap(p, r, R_BODY) || steps > HEAP_PER_PART / 64 {
                return Err(Error::Store("a shared-memory record link is corrupt".into()));
            }
            if m.get(r + R_HASH) == h && self.record_file(p, r)? == file {
                return Ok((link, r));
            }
            link = r + R_NEXT;
            steps += 1;
        }
    }

    /// A record's (procs, file, state), bounds-checked.
    fn record(&self, p: u64, r: u64) -> Result<(Vec<u64>, &[u8], &[u8])> {
        let (procs_at, nprocs, file, state) = self.record_parts(p, r)?;
        Ok(((0..nprocs).map(|i| self.map.get(procs_at + i * 8)).collect(), file, state))
    }

    /// A record's (offset of its process list, number of processes, file, state), bounds-checked.
    fn record_parts(&self, p: u64, r: u64) -> Result<(u64, u64, &[u8], &[u8])> {
        let m = &self.map;
        let corrupt = || Error::Store("a shared-memory record is corrupt".into());
        let c = m.get(r + R_CLASS);
        let (class, flen) = (c & 0xffff_ffff, c >> 32);
        let s = m.get(r + R_STATE_LEN);
        let (slen, nprocs) = (s & 0xffff_ffff, s >> 32);
        if class >= NCLASS || !alloc::in_heap(p, r, alloc::class_size(class)) {
            return Err(corrupt());
        }
        let need = R_BODY + nprocs * 8 + flen + slen;
        if need > alloc::class_size(class) {
            return Err(corrupt());
        }
        let body = r + R_BODY + nprocs * 8;
        Ok((
            r + R_BODY,
            nprocs,
            m.bytes(body, flen).ok_or_else(corrupt)?,
            m.bytes(body + flen, slen).ok_or_else(corrupt)?,
        ))
    }

    fn record_file(&self, p: u64, r: u64) -> Result<&[u8]> {
        Ok(self.record_parts(p, r)?.2)
    }

    /// Writes a new record (not yet linked) into partition `p`'s heap.
    fn write_record(&self, p: u64, h: u64, next: u64, procs: &[u64], file: &[u8], state: &[u8]) -> Result<u64> {
        let n = R_BODY + procs.len() as u64 * 8 + file.len() as u64 + state.len() as u64;
        let r = alloc::alloc(&self.map, p, n)
            .ok_or_else(|| Error::Store(format!("the shared-memory table is full (partition {p}, {n} bytes)")))?;
        let m = &self.map;
        let class = m.get(r + R_CLASS);
        m.set(r + R_NEXT, next);
        m.set(r + R_HASH, h);
        m.set(r + R_CLASS, class | ((file.len() as u64) << 32));
        m.set(r + R_STATE_LEN, state.len() as u64 | ((procs.len() as u64) << 32));
        for (i, pr) in procs.iter().enumerate() {
            m.set(r + R_BODY + i as u64 * 8, *pr);
        }
        let body = r + R_BODY + procs.len() as u64 * 8;
        m.write(body, file);
        m.write(body + file.len() as u64, state);
        Ok(r)
    }

    /// Writes an aux block (not yet referenced) into partition `p`'s heap.
    fn write_aux(&self, p: u64, b: &[u8]) -> Result<u64> {
        let r = alloc::alloc(&self.map, p, R_BODY + b.len() as u64)
            .ok_or_else(|| Error::Store(format!("the shared-memory table is full (partition {p})")))?;
        self.map.set(r + R_STATE_LEN, b.len() as u64);
        self.map.write(r + R_BODY, b);
        Ok(r)
    }

    fn aux_bytes(&self, p: u64, a: u64) -> Result<Vec<u8>> {
        Ok(aux_block(&self.map, p, a).ok_or_else(|| Error::Store("a shared-memory intent is corrupt".into()))?.to_vec())
    }

    /// Partition `p`'s queued blocks, head first: (sequence number, lease sets queued, bytes).
    fn queued_blocks(&self, p: u64) -> Result<Vec<(u64, bool, Vec<u8>)>> {
        let corrupt = || Error::Store("a shared-memory write-behind queue is corrupt".into());
        let mut out = Vec::new();
        for (seq, leases, b) in queue::blocks(&self.map, p, 0).ok_or_else(corrupt)? {
            out.push((seq, leases, self.aux_bytes(p, b)?));
        }
        Ok(out)
    }

    /// Finishes the intent recorded in partition `p` (held): the database work (skipped if the
    /// database says it is done), the mail (skipped where the slot says it is posted), the
    /// publishing store, the frees. Returns the processes to wake. `committed` is set once anything
    /// of the operation may have become visible (the database work committed, mail posted): from
    /// then on the intent can only be finished, never undone.
    fn roll_forward(&self, p: u64, committed: &mut bool) -> Result<Vec<u64>> {
        let m = &self.map;
        let o = part_off(p);
        let (link, value, old, auxb, seq) =
            (m.get(o + P_I_LINK), m.get(o + P_I_VALUE), m.get(o + P_I_OLD), m.get(o + P_I_AUX), m.get(o + P_I_SEQ));
        let mut wake = Vec::new();
        // Lock rows go to the write-behind queue (the block stays, linked) unless the operation's
        // process is in SYNC durability; the rest of the database work is done here, in the call.
        let mut queue_it = false;
        if auxb != 0 {
            self.maybe_stop(1);
            let bytes = self.aux_bytes(p, auxb)?;
            let (mut aux, events) =
                Aux::decode(&bytes).ok_or_else(|| Error::Store("a shared-memory intent is corrupt".into()))?;
            let q = m.get(o + P_I_QUEUE);
            if q & 1 != 0 && !aux.journal.locks.is_empty() {
                queue_it = true;
                aux.journal.locks.clear();
            }
            if q & 2 != 0 && !aux.journal.leases.is_empty() {
                queue_it = true;
                aux.journal.leases.clear();
            }
            if !aux.journal.is_empty() && queue::pending(m, p) {
                // Rows written now (SYNC, or lease sets that add or remove a lease) while rows of
                // this partition wait in the queue: those are written first, so that each file's
                // rows reach the database in the order they were made (an unlock written before its
                // lock would leave a row for a lock nobody holds; an older lease set would
                // overwrite a newer one).
                self.flush_held(p)?;
            }
            if !aux.journal.is_empty() || aux.edges.is_some() {
                self.apply_db(p, seq, aux)?;
                *committed = true;
            }
            if !events.is_empty() {
                *committed = true;
                wake = self.post_mail(p, seq, &events)?;
            }
        }
        self.maybe_stop(2);
        if !(link % 8 == 0 && (PARTS..MAIL).contains(&link)) {
            return Err(Error::Store("a shared-memory intent is corrupt".into()));
        }
        m.set(link, value);
        if queue_it {
            queue::link(m, p, auxb);
            self.queued.store(true, std::sync::atomic::Ordering::Release);
        }
        self.maybe_stop(3);
        m.set(o + P_INTENT, 0);
        if old != 0 {
            alloc::free(m, p, old);
        }
        if auxb != 0 && !queue_it {
            alloc::free(m, p, auxb);
        }
        Ok(wake)
    }

    /// A mutex that cannot be recovered: the table is poisoned.
    fn poison(&self, e: String) -> Error {
        self.map.set(H_STATE, STATE_POISONED);
        log::error!("unilock: {e}; the shared-memory table is poisoned");
        Error::Store(e)
    }

    /// One database transaction with an operation's journal and wait edges, unless the database
    /// says intent `seq` of partition `p` was applied already.
    fn apply_db(&self, p: u64, seq: u64, aux: Aux) -> Result<()> {
        let mut conn = self.sh.conn().lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(serr)?;
        let done: Option<i64> = tx
            .prepare_cached("SELECT seq FROM shm_applied WHERE part = ?1")
            .and_then(|mut st| st.query_row(params![p as i64], |r| r.get(0)).optional())
            .map_err(serr)?;
        if done.is_some_and(|d| d as u64 >= seq) {
            return Ok(());
        }
        self.apply_work(&tx, p, seq, aux)?;
        tx.commit().map_err(serr)
    }

    fn apply_work(&self, tx: &rusqlite::Transaction, p: u64, seq: u64, aux: Aux) -> Result<()> {
        store::apply_journal(tx, aux.journal).map_err(|e| Error::Store(e.0))?;
        if let Some(edges) = &aux.edges {
            tx.prepare_cached("DELETE FROM shared_waits WHERE file = ?1")
                .and_then(|mut st| st.execute(params![&*aux.file]))
                .map_err(serr)?;
            let mut ins = tx
                .prepare_cached("INSERT OR REPLACE INTO shared_waits(file, id, who, blockers) VALUES (?1, ?2, ?3, ?4)")
                .map_err(serr)?;
            for (id, who, blockers) in edges {
                ins.execute(params![
                    &*aux.file,
                    *id as i64,
                    &**who,
                    crate::backend::sqlite_shared::encode_keys(blockers)
                ])
                .map_err(serr)?;
            }
        }
        tx.prepare_cached("INSERT OR REPLACE INTO shm_applied(part, seq) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![p as i64, seq as i64]))
            .map_err(serr)?;
        Ok(())
    }

    /// Runs `f` on `file`'s state atomically with respect to every process (see the module docs).
    pub fn with_file<T>(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: impl FnOnce(Option<&mut FileState>) -> T,
    ) -> Result<T> {
        self.check()?;
        let need_graph = ctx.need_graph;
        // A blocking request: its deadlock check reads every process's edges, and no other blocking
        // request may add one meanwhile (order: graph mutex, then partition, then the database).
        let graph = if need_graph {
            let (g, _died) = self.lock_at(GRAPH_MUTEX)?;
            if _died {
                // Nothing to repair: it only serialises blocking requests.
                // SAFETY: held by us.
                unsafe { mutex::consistent(self.map.mutex(GRAPH_MUTEX)) };
            }
            Some(g)
        } else {
            None
        };
        let h = layout::fnv1a(file);
        let p = h % NPART;
        let held = self.lock_part(p)?;
        let (link, rec) = self.find(p, h, file)?;
        let (old_state, next) = if rec != 0 {
            let (_, _, _, st) = self.record_parts(p, rec)?;
            (Some(st), self.map.get(rec + R_NEXT))
        } else {
            (None, self.map.get(link))
        };
        if old_state.is_none() && !create {
            drop(held);
            drop(graph);
            return Ok(f(None));
        }
        let mut fs = Scratch { pool: &self.scratch, fs: self.scratch.lock().pop() };
        let fs = fs.fs.get_or_insert_with(|| Box::new(FileState::blank(file, true)));
        match old_state {
            Some(b) => {
                fs.decode_into(file, b, true).ok_or_else(|| Error::Store("a shared file state is corrupt".into()))?
            }
            None => fs.reset(file, true),
        }
        fs.me = self.me;
        if need_graph {
            *ctx.graph.lock() = self.read_graph(file, fs)?;
        }
        let had_waits = fs.waiter_count() > 0;
        let leases_before = fs.lease_rows();
        fs.expire_leases(ctx);
        let r = f(Some(&mut *fs));
        let mut journal = fs.take_journal();
        // The table journals the file's lease set on every operation: write it only when it changed.
        journal.leases.retain(|(_, rows)| *rows != leases_before);
        // This operation's events for other processes (another thread's operation on another
        // partition may have queued its own meanwhile: those carry another file).
        let events: Vec<Event> = match ctx.outbox {
            Some(o) => {
                let mut o = o.lock();
                if o.is_empty() {
                    Vec::new()
                } else {
                    let (mine, rest): (Vec<Event>, Vec<Event>) = o.drain(..).partition(|e| *e.file == *file);
                    *o = rest;
                    mine
                }
            }
            None => Vec::new(),
        };
        let new_state = if fs.is_empty_state() { None } else { Some(fs.encode()) };
        if journal.is_empty() && events.is_empty() {
            // Perhaps nothing changed (a test, a check, a refused lock): then nothing is written.
            // The bytes read may number owners differently from a fresh encoding of the same state
            // (a decode renumbers them), so unequal bytes are compared as states once more.
            let same = match (old_state, &new_state) {
                (None, None) => true,
                (Some(o), Some(n)) if o == &n[..] => true,
                (Some(o), Some(n)) => FileState::decode(file, o, true).is_some_and(|d| d.encode() == *n),
                _ => false,
            };
            if same {
                return Ok(r);
            }
        }
        let edges_changed = had_waits || fs.waiter_count() > 0;
        self.maybe_stop(0);
        // Outside SYNC, lock rows wait in the write-behind queue, and so do lease sets that add or
        // remove no SMB lease (a break, an ack, a plain open or close, an oplock): those that do are
        // written in the call, as `lease_file` ("a lease key belongs to one file") reads them.
        let queue_locks = self.mode != Durability::Sync && !journal.locks.is_empty();
        let queue_leases = self.mode != Durability::Sync
            && !journal.leases.is_empty()
            && journal.leases.iter().all(|(_, rows)| same_leases(rows, &leases_before));
        let mut aux = Aux { journal, events, edges: edges_changed.then(|| fs.wait_edges()), file: Box::default() };
        if !aux.is_empty() {
            aux.file = file.into();
        }
        let value = match &new_state {
            Some(st) => self.write_record(p, h, next, &fs.procs(), file, st)?,
            None => next,
        };
        let auxb = if aux.is_empty() {
            0
        } else {
            match self.write_aux(p, &aux.encode()) {
                Ok(a) => a,
                Err(e) => {
                    if new_state.is_some() {
                        alloc::free(&self.map, p, value);
                    }
                    return Err(e);
                }
            }
        };
        let m = &self.map;
        let o = part_off(p);
        let seq = m.get(o + P_SEQ) + 1;
        m.set(o + P_SEQ, seq);
        m.set(o + P_I_LINK, link);
        m.set(o + P_I_VALUE, value);
        m.set(o + P_I_OLD, rec);
        m.set(o + P_I_AUX, auxb);
        m.set(o + P_I_SEQ, seq);
        m.set(o + P_I_QUEUE, queue_locks as u64 | (queue_leases as u64) << 1);
        if auxb != 0 {
            queue::set_seq(m, auxb, seq, queue_leases);
        }
        m.set(o + P_INTENT, 1);
        let mut committed = false;
        let wake = match self.roll_forward(p, &mut committed) {
            Ok(w) => w,
            Err(e) if committed => {
                // Part of the work is done (committed, or mail posted): the intent stays, and the
                // next process to lock the partition finishes it.
                log::error!("unilock: an operation in partition {p} is left to be finished: {e:?}");
                return Err(e);
            }
            Err(e) => {
                // The database refused the work: nothing was published; undo the intent.
                m.set(o + P_INTENT, 0);
                if new_state.is_some() {
                    alloc::free(m, p, value);
                }
                if auxb != 0 {
                    alloc::free(m, p, auxb);
                }
                return Err(e);
            }
        };
        drop(held);
        drop(graph);
        self.wake(&wake);
        if queue::count(&self.map, p) > QUEUE_MAX {
            // Nobody flushed for a long time (a host that does not run its event loop): write the
            // partition's queue now, before it fills the heap. The operation is done either way.
            if let Err(e) = self.flush_part(p) {
                log::error!("unilock: writing the shared-memory table's queued lock rows failed: {e:?}");
            }
        }
        Ok(r)
    }

    /// Writes partition `p`'s write-behind queue: its blocks are read under the partition mutex,
    /// their lock rows committed (coalesced) in one transaction that also records the last sequence
    /// number written (`shm_flushed`), then the blocks are removed under the mutex again. A flush
    /// killed anywhere leaves the blocks queued, and the next one writes only what is not written.
    fn flush_part(&self, p: u64) -> Result<()> {
        let blocks = {
            let _g = self.lock_part(p)?;
            self.queued_blocks(p)?
        };
        let Some(last) = blocks.iter().map(|b| b.0).max() else { return Ok(()) };
        self.write_queued(p, &blocks)?;
        let _g = self.lock_part(p)?;
        queue::trim(&self.map, p, last);
        Ok(())
    }

    /// Writes partition `p`'s queue with the partition mutex held throughout (see `flush_part`).
    fn flush_held(&self, p: u64) -> Result<()> {
        let blocks = self.queued_blocks(p)?;
        self.write_queued(p, &blocks)?;
        if let Some(last) = blocks.iter().map(|b| b.0).max() {
            queue::trim(&self.map, p, last);
        }
        Ok(())
    }

    /// One transaction: the queued blocks' lock rows not written yet, and `shm_flushed` moved to the
    /// last of them (never backwards: a flush that read fewer blocks may commit after one that read
    /// more).
    fn write_queued(&self, p: u64, blocks: &[(u64, bool, Vec<u8>)]) -> Result<()> {
        let Some(last) = blocks.iter().map(|b| b.0).max() else { return Ok(()) };
        let mut conn = self.sh.conn().lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(serr)?;
        apply_queued(&tx, p, blocks.iter().map(|(s, l, b)| (*s, *l, &b[..])))?;
        tx.prepare_cached(
            "INSERT INTO shm_flushed(part, seq) VALUES (?1, ?2)
             ON CONFLICT(part) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        )
        .and_then(|mut st| st.execute(params![p as i64, last as i64]))
        .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Every process's wait-for edges but `file`'s (from the database), and `file`'s own.
    fn read_graph(
        &self,
        file: &[u8],
        fs: &FileState,
    ) -> Result<crate::core::wait::WaitGraph<crate::requests::OwnerKey>> {
        let mut g = crate::core::wait::WaitGraph::default();
        let conn = self.sh.conn().lock();
        let mut st =
            conn.prepare_cached("SELECT file, id, who, blockers FROM shared_waits WHERE file != ?1").map_err(serr)?;
        let rows = st
            .query_map(params![file], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, Vec<u8>>(3)?))
            })
            .map_err(serr)?;
        for row in rows {
            let (f2, id, who, blockers) = row.map_err(serr)?;
            let blockers = crate::backend::sqlite_shared::decode_keys(&blockers)
                .ok_or_else(|| Error::Store("a shared wait edge is corrupt".into()))?;
            g.set(
                (id as u64) ^ ((f2.len() as u64) << 56) ^ crate::backend::sqlite_shared::hash_bytes(&f2),
                who.into_boxed_slice(),
                blockers,
            );
        }
        for (id, who, blockers) in fs.wait_edges() {
            g.set(id, who, blockers);
        }
        Ok(g)
    }

    /// Every record, partition by partition: (file, procs).
    fn scan(&self, mut keep: impl FnMut(&[u8], &[u64]) -> bool) -> Result<Vec<Box<[u8]>>> {
        self.check()?;
        let mut out = Vec::new();
        for p in 0..NPART {
            let _g = self.lock_part(p)?;
            for b in 0..NBUCKET {
                let mut r = self.map.get(part_off(p) + P_BUCKETS + b * 8);
                let mut steps = 0;
                while r != 0 {
                    if steps > HEAP_PER_PART / 64 {
                        return Err(Error::Store("a shared-memory record link is corrupt".into()));
                    }
                    let (procs, f, _) = self.record(p, r)?;
                    if keep(f, &procs) {
                        out.push(f.into());
                    }
                    r = self.map.get(r + R_NEXT);
                    steps += 1;
                }
            }
        }
        Ok(out)
    }

    /// Bytes in use in the mapping's heaps (tests).
    pub fn heap_in_use(&self) -> u64 {
        (0..NPART).map(|p| alloc::in_use(&self.map, p)).sum()
    }
}

impl Backend for ShmBackend {
    fn name(&self) -> &'static str {
        "shm"
    }

    fn me(&self) -> u64 {
        self.me
    }

    fn with_file_dyn(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: &mut dyn FnMut(Option<&mut FileState>),
    ) -> Result<()> {
        self.with_file(file, create, ctx, f)
    }

    fn wake_fd(&self) -> Option<i32> {
        self.sh.wake_fd()
    }

    fn files(&self) -> Result<Vec<Box<[u8]>>> {
        self.scan(|_, _| true)
    }

    fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>> {
        self.scan(|_, procs| procs.contains(&proc))
    }

    fn procs(&self) -> Result<Vec<(u64, ProcIdent)>> {
        self.sh.procs()
    }

    fn alive(&self, id: u64, ident: &ProcIdent) -> bool {
        self.sh.proc_alive(id, ident)
    }

    fn release_at(&self, proc: u64) -> Result<u64> {
        self.sh.release_at(proc)
    }

    fn set_release_at(&self, proc: u64, at: u64) -> Result<()> {
        self.sh.set_release_at(proc, at)
    }

    fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64> {
        self.sh.max_ttl(clients)
    }

    fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>> {
        self.sh.lease_file(client, key)
    }

    fn forget_proc(&self, proc: u64) -> Result<()> {
        // A dead process's mail slot (and the mail in it) goes with it (this process gives its own
        // back when the handle is dropped).
        if proc != self.me {
            self.check()?;
            mail::release(&self.map, mail::slot_of(proc), proc, self.epoch).map_err(|e| self.poison(e))?;
        }
        self.sh.forget_proc(proc)
    }

    fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        self.sh.put_client(client, adapter, address, ttl_ms)
    }

    fn end_grace(&self) -> Result<()> {
        self.sh.end_grace()
    }

    /// This process's mail (`mail`).
    fn take_mail(&self) -> Result<Vec<Event>> {
        self.take_mail_now()
    }

    /// PROCESS and BATCH: this process queued lock rows since its last flush.
    fn has_pending(&self) -> bool {
        self.queued.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Writes every partition's write-behind queue (other processes' rows too).
    fn flush(&self) -> Result<()> {
        self.queued.store(false, std::sync::atomic::Ordering::Release);
        let mut first = Ok(());
        for p in 0..NPART {
            if queue::pending(&self.map, p) {
                if let Err(e) = self.flush_part(p) {
                    self.queued.store(true, std::sync::atomic::Ordering::Release);
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

/// The handles of this process on each mapping (a registration of this pid with no live handle
/// is a handle dropped without `leave`).
static LIVE: once_cell::sync::Lazy<Mutex<std::collections::HashMap<std::path::PathBuf, usize>>> =
    once_cell::sync::Lazy::new(Default::default);

impl Drop for ShmBackend {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            log::error!("unilock: flushing batched lock rows at close failed: {e:?}");
        }
        if let Some(s) = self.slot {
            if self.check().is_ok() {
                if let Err(e) = mail::release(&self.map, s, self.me, self.epoch) {
                    log::error!("unilock: giving the mail slot back at close failed: {e}");
                }
            }
        }
        // The last process to leave removes the mapping (the next one starts afresh anyway: with no
        // process alive, an open is a restart that rebuilds the table from the database).
        // Registrations of this process whose handles are gone (closed without `leave`) are not
        // other users of the table.
        let here = {
            let mut live = LIVE.lock();
            let n = live.get(&self.mpath).copied().unwrap_or(1).saturating_sub(1);
            if n == 0 {
                live.remove(&self.mpath);
            } else {
                live.insert(self.mpath.clone(), n);
            }
            n
        };
        if !self.mpath.exists() {
            return;
        }
        let Ok(f) = open_mapping_file(&self.mpath) else { return };
        let pid = std::process::id();
        let procs = self.sh.procs();
        let others = procs.as_ref().map(|ps| {
            ps.iter().any(|(p, id)| *p != self.me && self.sh.proc_alive(*p, id) && (id.pid != pid || here > 0))
        });
        if others == Ok(false) {
            // With the mapping go this process's registrations: the next process to open must see
            // a restart, not join a table that is gone.
            for (p, id) in procs.iter().flatten() {
                if id.pid == pid {
                    let _ = self.sh.forget_proc(*p);
                }
            }
            let _ = std::fs::remove_file(&self.mpath);
        }
        unlock_mapping_file(f);
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
