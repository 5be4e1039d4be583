//! Shared mode: several processes (a forking server such as `smbd`, one process per client) open one
//! database and see one lock table. SQLite is the source of truth: every operation runs in a short
//! `BEGIN IMMEDIATE` transaction that loads the file's whole state, runs the same `FileState` code
//! (and so the same pure core) as the in-process table, and writes the state back — there is no
//! second implementation of the rules.
//!
//! Each process registers in `procs` with its pid, start time and boot id, holds an OFD lock on
//! its byte of `<db>.sockets/live` (`backend::live`: alive means both, so a recycled pid is never
//! taken for the old process) and binds a UNIX datagram socket. Events for another process (a grant
//! of its waiting lock, a break of its lease) go into `mailbox` in the same transaction, then a
//! one-byte datagram wakes that process; a lost datagram only delays delivery until the process next
//! looks at its mailbox (the database is authoritative). A process found dead (or declared gone) is
//! handled as a disconnect of its state: its locks, waiting requests, opens and leases are released
//! and the waiters they blocked are woken.

use super::{Backend, ProcIdent};
use crate::codec::{R, W};
use crate::core::{Flavour, LockType};
use crate::error::{Error, Result};
use crate::requests::{Ctx, Event, EventKind, LeaseInfo};
use crate::store::{self, Durability, Journal, Recovered};
use crate::table::FileState;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

pub struct Shared {
    conn: Mutex<Connection>,
    /// This process's row in `procs`.
    pub me: u64,
    sock: UnixDatagram,
    sock_path: PathBuf,
    /// This process's lock in `<db>.sockets/live`, and the probe of the others' (`live`).
    live: super::live::Live,
}

fn err(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

fn serr(e: store::StoreError) -> Error {
    Error::Store(e.0)
}

impl Shared {
    /// Joins (or starts) the shared lock table in `path`. Returns the pre-restart state when no other
    /// process is alive (a whole-server restart: grace), or `None` when joining a running server.
    pub fn open(path: &str, mode: Durability) -> Result<(Shared, Option<Recovered>)> {
        Self::open_with(path, mode, &mut |_| Ok(()))
    }

    /// As `open`; at a restart, `before_take` runs in the restart's transaction before the
    /// pre-restart state is read (the shared-memory table writes its queued lock rows there).
    pub fn open_with(
        path: &str,
        mode: Durability,
        before_take: &mut dyn FnMut(&rusqlite::Transaction) -> Result<()>,
    ) -> Result<(Shared, Option<Recovered>)> {
        // Processes starting at once can find a brand-new database being switched to WAL by another
        // (SQLite answers "locked" without waiting then): retry briefly.
        let mut tries = 0;
        let mut conn = loop {
            match store::connect(path, mode) {
                Ok(c) => break c,
                Err(e) if tries < 200 && (e.0.contains("locked") || e.0.contains("busy")) => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(serr(e)),
            }
        };
        let dir = PathBuf::from(format!("{path}.sockets"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Store(format!("cannot create {}: {e}", dir.display())))?;
        // Processes of one server may run under different users (smbd switches to the client's uid,
        // an NFS server runs as root): every one must be able to add its socket and to wake the others.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        let me_id = ProcIdent::me();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        ensure_wait_edges(&tx)?;
        tx.execute(
            "INSERT INTO procs(pid, start, boot, socket) VALUES (?1, ?2, ?3, '')",
            params![me_id.pid, me_id.start as i64, me_id.boot],
        )
        .map_err(err)?;
        let me = tx.last_insert_rowid() as u64;
        let sock_path = dir.join(format!("{me}.sock"));
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path)
            .map_err(|e| Error::Store(format!("cannot bind {}: {e}", sock_path.display())))?;
        let _ = std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666));
        sock.set_nonblocking(true).map_err(|e| Error::Store(e.to_string()))?;
        tx.execute("UPDATE procs SET socket = ?1 WHERE proc = ?2", params![sock_path.to_string_lossy(), me as i64])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        // Another process holding the write lock keeps it for tens of microseconds: retry by yielding
        // rather than with SQLite's default sleeps of 1, 2, 5 ms (bounded: about 10 s in all).
        conn.busy_handler(Some(busy)).map_err(err)?;
        let live = super::live::Live::take(&dir, me);
        let s = Shared { conn: Mutex::new(conn), me, sock, sock_path, live };
        let others_alive = s.procs()?.iter().any(|(p, id)| *p != me && s.proc_alive(*p, id));
        let rec = if others_alive {
            None
        } else {
            // Everyone else is gone: a whole-server restart. What they held becomes the state that
            // grace-period reclaims are checked against. (Two processes starting at once both see
            // the other alive, or one sees it dead and takes the restart: the immediate transaction
            // makes the takeover happen once.)
            let mut conn = s.conn.lock();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
            let others: Vec<(u64, ProcIdent)> = {
                let mut st = tx.prepare("SELECT proc, pid, start, boot FROM procs WHERE proc != ?1").map_err(err)?;
                let rows = st
                    .query_map(params![me as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)? as u64,
                            ProcIdent {
                                pid: r.get::<_, i64>(1)? as u32,
                                start: r.get::<_, i64>(2)? as u64,
                                boot: r.get(3)?,
                            },
                        ))
                    })
                    .map_err(err)?;
                rows.filter_map(|r| r.ok()).collect()
            };
            if others.iter().any(|(p, id)| s.proc_alive(*p, id)) {
                None // someone joined meanwhile: this is not a restart after all
            } else {
                before_take(&tx)?;
                let rec = store::take_prev_in(&tx).map_err(serr)?;
                tx.execute_batch("DELETE FROM shared_files; DELETE FROM shared_procs; DELETE FROM mailbox; DELETE FROM shared_waits;")
                    .map_err(err)?;
                tx.execute("DELETE FROM procs WHERE proc != ?1", params![me as i64]).map_err(err)?;
                tx.commit().map_err(err)?;
                Some(rec)
            }
        };
        Ok((s, rec))
    }

    /// The connection (the shared-memory backend writes its journals, mail and wait edges with it).
    pub(crate) fn conn(&self) -> &Mutex<Connection> {
        &self.conn
    }

    /// The wake-up socket, to send wake-ups from.
    pub(crate) fn socket(&self) -> &UnixDatagram {
        &self.sock
    }

    /// Is process `proc` (identified as `id`) alive? Its identity must name a running process and
    /// it must still hold its byte of the liveness file (`backend::live`: immune to pid reuse).
    pub(crate) fn proc_alive(&self, proc: u64, id: &ProcIdent) -> bool {
        proc == self.me || (id.alive() && self.live.holds(proc) != Some(false))
    }
}

impl Backend for Shared {
    fn name(&self) -> &'static str {
        "sqlite-shared"
    }

    fn me(&self) -> u64 {
        self.me
    }

    /// The wake-up socket (added to the event fd).
    fn wake_fd(&self) -> Option<i32> {
        Some(self.sock.as_raw_fd())
    }

    fn alive(&self, id: u64, ident: &ProcIdent) -> bool {
        self.proc_alive(id, ident)
    }

    /// Every registered process.
    fn procs(&self) -> Result<Vec<(u64, ProcIdent)>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT proc, pid, start, boot FROM procs").map_err(err)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    ProcIdent { pid: r.get::<_, i64>(1)? as u32, start: r.get::<_, i64>(2)? as u64, boot: r.get(3)? },
                ))
            })
            .map_err(err)?;
        rows.collect::<std::result::Result<Vec<_>, _>>().map_err(err)
    }

    /// Runs `f` on the state of `file` inside one immediate transaction and writes the result back;
    /// events for other processes go to their mailboxes and they are woken after the commit.
    fn with_file_dyn(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: &mut dyn FnMut(Option<&mut FileState>),
    ) -> Result<()> {
        let mut conn = self.conn.lock();
        // BEGIN IMMEDIATE: take the write lock now, so two processes never decide on stale state.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let blob: Option<Vec<u8>> = tx
            .prepare_cached("SELECT state FROM shared_files WHERE file = ?1")
            .and_then(|mut st| st.query_row(params![file], |r| r.get(0)).optional())
            .map_err(err)?;
        let mut fs = match blob {
            Some(b) => FileState::decode(file, &b, true)
                .ok_or_else(|| Error::Store("a shared file state is corrupt".into()))?,
            None if create => FileState::blank(file, true),
            None => {
                drop(tx);
                f(None);
                return Ok(());
            }
        };
        fs.me = self.me;
        if ctx.need_graph {
            // A blocking request is about to be decided: its deadlock check must see the wait-for
            // edges of every process, read in this same transaction so no concurrent wait slips by.
            // Only files with waiters have edges, kept in step by every commit (below).
            let mut g = crate::core::wait::WaitGraph::default();
            let mut st =
                tx.prepare_cached("SELECT file, id, who, blockers FROM shared_waits WHERE file != ?1").map_err(err)?;
            let rows = st
                .query_map(params![file], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, Vec<u8>>(3)?))
                })
                .map_err(err)?;
            for row in rows {
                let (f2, id, who, blockers) = row.map_err(err)?;
                let blockers =
                    decode_keys(&blockers).ok_or_else(|| Error::Store("a shared wait edge is corrupt".into()))?;
                // Request ids are per process: make them unique across the graph.
                g.set((id as u64) ^ ((f2.len() as u64) << 56) ^ hash_bytes(&f2), who.into_boxed_slice(), blockers);
            }
            drop(st);
            for (id, who, blockers) in fs.wait_edges() {
                g.set(id, who, blockers);
            }
            *ctx.graph.lock() = g;
        }
        let had_waits = fs.waiter_count() > 0;
        let procs_before = fs.procs();
        // Break timeouts are enforced lazily too, in case the process that armed the timer died.
        fs.expire_leases(ctx);
        f(Some(&mut fs));
        let j: Journal = fs.take_journal();
        store::apply_journal(&tx, j).map_err(serr)?;
        if had_waits || fs.waiter_count() > 0 {
            write_wait_edges(&tx, file, &fs)?;
        }
        if fs.is_empty_state() {
            tx.prepare_cached("DELETE FROM shared_files WHERE file = ?1")
                .and_then(|mut st| st.execute(params![file]))
                .map_err(err)?;
        } else {
            tx.prepare_cached("INSERT OR REPLACE INTO shared_files(file, state) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![file, fs.encode()]))
                .map_err(err)?;
        }
        // The index of which processes have state here changes rarely: rewrite it only then.
        let procs_after = fs.procs();
        if procs_after != procs_before {
            tx.prepare_cached("DELETE FROM shared_procs WHERE file = ?1")
                .and_then(|mut st| st.execute(params![file]))
                .map_err(err)?;
            let mut ins =
                tx.prepare_cached("INSERT OR IGNORE INTO shared_procs(file, proc) VALUES (?1, ?2)").map_err(err)?;
            for p in procs_after {
                ins.execute(params![file, p as i64]).map_err(err)?;
            }
        }
        let out: Vec<Event> = ctx.outbox.map(|o| std::mem::take(&mut *o.lock())).unwrap_or_default();
        let mut targets: Vec<u64> = Vec::new();
        for ev in &out {
            tx.execute("INSERT INTO mailbox(proc, event) VALUES (?1, ?2)", params![ev.proc as i64, encode_event(ev)])
                .map_err(err)?;
            if !targets.contains(&ev.proc) {
                targets.push(ev.proc);
            }
        }
        let mut paths = Vec::new();
        for t in targets {
            if let Some(p) = tx
                .query_row("SELECT socket FROM procs WHERE proc = ?1", params![t as i64], |r| r.get::<_, String>(0))
                .optional()
                .map_err(err)?
            {
                paths.push(p);
            }
        }
        tx.commit().map_err(err)?;
        drop(conn);
        for p in paths {
            // A lost wake-up only delays delivery: the mailbox is read on every processing round.
            let _ = self.sock.send_to(&[1], &p);
        }
        Ok(())
    }

    /// A dead process whose clients asked for a TTL: when its state may be released (unix ms; 0 =
    /// not decided yet).
    fn release_at(&self, proc: u64) -> Result<u64> {
        let conn = self.conn.lock();
        let v: Option<i64> = conn
            .query_row("SELECT release_at_unix_ms FROM procs WHERE proc = ?1", params![proc as i64], |r| r.get(0))
            .optional()
            .map_err(err)?;
        Ok(v.unwrap_or(0) as u64)
    }

    fn set_release_at(&self, proc: u64, at: u64) -> Result<()> {
        self.conn
            .lock()
            .execute("UPDATE procs SET release_at_unix_ms = ?1 WHERE proc = ?2", params![at as i64, proc as i64])
            .map_err(err)?;
        Ok(())
    }

    /// The largest TTL registered for any of `clients` (0 if none registered one).
    fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64> {
        let conn = self.conn.lock();
        let mut m = 0u64;
        for c in clients {
            let t: Option<i64> = conn
                .query_row("SELECT ttl_ms FROM clients WHERE client = ?1", params![&**c], |r| r.get(0))
                .optional()
                .map_err(err)?;
            m = m.max(t.unwrap_or(0).max(0) as u64);
        }
        Ok(m)
    }

    /// Files on which `proc` has state.
    fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT file FROM shared_procs WHERE proc = ?1").map_err(err)?;
        let rows = st.query_map(params![proc as i64], |r| r.get::<_, Vec<u8>>(0)).map_err(err)?;
        rows.map(|r| r.map(|v| v.into_boxed_slice()).map_err(err)).collect()
    }

    /// The file a client's SMB lease key leases, from the leases table every process keeps in step
    /// (SMB leases only: the keys unilock makes for oplocks and delegations are per file).
    fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>> {
        let conn = self.conn.lock();
        let f: Option<Vec<u8>> = conn
            .query_row(
                "SELECT file FROM leases WHERE client = ?1 AND key = ?2 AND kind = ?3 LIMIT 1",
                params![client, &key[..], crate::core::lease::Kind::Lease as u8],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        Ok(f.map(|v| v.into_boxed_slice()))
    }

    /// Every file with state.
    fn files(&self) -> Result<Vec<Box<[u8]>>> {
        let conn = self.conn.lock();
        let mut st = conn.prepare("SELECT file FROM shared_files").map_err(err)?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(err)?;
        // A row that cannot be read is the database failing, not a file that is not there.
        rows.map(|r| r.map(|v| v.into_boxed_slice()).map_err(err)).collect()
    }

    /// Forgets a process that is gone (after its state was released).
    fn forget_proc(&self, proc: u64) -> Result<()> {
        let conn = self.conn.lock();
        let path: Option<String> = conn
            .query_row("SELECT socket FROM procs WHERE proc = ?1", params![proc as i64], |r| r.get(0))
            .optional()
            .map_err(err)?;
        conn.execute_batch(&format!(
            "DELETE FROM procs WHERE proc = {proc}; DELETE FROM shared_procs WHERE proc = {proc}; DELETE FROM mailbox WHERE proc = {proc};"
        ))
        .map_err(err)?;
        if let Some(p) = path {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    /// Takes this process's mailbox (and drains the wake-up socket).
    fn take_mail(&self) -> Result<Vec<Event>> {
        let mut buf = [0u8; 64];
        while self.sock.recv(&mut buf).is_ok() {}
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let mut evs = Vec::new();
        {
            let mut st = tx.prepare("SELECT event FROM mailbox WHERE proc = ?1 ORDER BY seq").map_err(err)?;
            let rows = st.query_map(params![self.me as i64], |r| r.get::<_, Vec<u8>>(0)).map_err(err)?;
            for b in rows {
                if let Some(ev) = decode_event(&b.map_err(err)?) {
                    evs.push(ev);
                }
            }
        }
        if !evs.is_empty() {
            tx.execute("DELETE FROM mailbox WHERE proc = ?1", params![self.me as i64]).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(evs)
    }

    /// Records a client registration (the shared table of client records).
    fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        store::put_client_in(&self.conn.lock(), client, adapter, address, ttl_ms).map_err(serr)
    }

    fn end_grace(&self) -> Result<()> {
        store::end_grace_in(&self.conn.lock()).map_err(serr)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock_path);
    }
}

/// The mailbox's byte for "this event is not about a lease".
const NO_LEASE: u8 = 0xFF;

pub(crate) fn encode_event(e: &Event) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(128));
    w.u8(e.kind as u8);
    w.u64(match &e.result {
        Ok(()) => 0,
        Err(Error::Timeout) => 1,
        Err(Error::RangeNotLocked) => 2,
        Err(_) => 3,
    });
    w.u64(e.request_id);
    w.u64(e.token);
    w.u64(e.user_data as u64);
    w.bytes(&e.file);
    w.bytes(&e.client);
    w.bytes(&e.owner);
    w.u64(e.open_id);
    w.u8(e.flavour as u8);
    w.u8(e.lock_kind as u8);
    w.u64(e.offset);
    w.u64(e.length);
    w.0.extend_from_slice(&e.lease.key);
    w.u8(e.lease.kind.map_or(NO_LEASE, |k| k as u8));
    w.u8(e.lease.state);
    w.u8(e.lease.break_to);
    w.u64(e.lease.epoch as u64);
    w.u8(e.lease.ack_required as u8);
    w.u64(e.proc);
    w.0
}

pub(crate) fn decode_event(b: &[u8]) -> Option<Event> {
    let mut r = R { b };
    let kind = EventKind::try_from(r.u8()?).ok()?;
    let result = match r.u64()? {
        0 => Ok(()),
        1 => Err(Error::Timeout),
        2 => Err(Error::RangeNotLocked),
        _ => Err(Error::Invalid("failed in another process")),
    };
    Some(Event {
        kind,
        result,
        request_id: r.u64()?,
        token: r.u64()?,
        user_data: r.u64()? as usize,
        file: r.bytes()?.into(),
        client: r.bytes()?.to_vec(),
        owner: r.bytes()?.to_vec(),
        open_id: r.u64()?,
        flavour: Flavour::try_from(r.u8()?).ok()?,
        lock_kind: LockType::try_from(r.u8()?).ok()?,
        offset: r.u64()?,
        length: r.u64()?,
        lease: LeaseInfo {
            key: r.key()?,
            kind: match r.u8()? {
                NO_LEASE => None,
                k => Some(crate::core::lease::Kind::try_from(k).ok()?),
            },
            state: r.u8()?,
            break_to: r.u8()?,
            epoch: r.u64()? as u16,
            ack_required: r.u8()? != 0,
        },
        proc: r.u64()?,
    })
}

fn busy(tries: i32) -> bool {
    if tries < 2000 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    tries < 12_000
}

/// The wait-for edges of every file with waiters, one row per waiting request, so that a blocking
/// request's deadlock check reads edges, not every file's state. Created (and filled from the files)
/// by the first process of this version to open a database.
fn ensure_wait_edges(tx: &rusqlite::Transaction) -> Result<()> {
    let have: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'shared_waits'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    // Files leave shared_procs by file on every commit that changes who has state there.
    tx.execute_batch(store::schema::SHARED_PROCS_BY_FILE).map_err(err)?;
    if have > 0 {
        return Ok(());
    }
    tx.execute_batch(store::schema::SHARED_WAITS_TABLE).map_err(err)?;
    let files: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT file, state FROM shared_files").map_err(err)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
        rows.filter_map(|r| r.ok()).collect()
    };
    for (f, b) in files {
        if let Some(fs) = FileState::decode(&f, &b, true) {
            if fs.waiter_count() > 0 {
                write_wait_edges(tx, &f, &fs)?;
            }
        }
    }
    Ok(())
}

/// Replaces the wait edges of `file` with those of its state now.
fn write_wait_edges(tx: &rusqlite::Transaction, file: &[u8], fs: &FileState) -> Result<()> {
    tx.prepare_cached("DELETE FROM shared_waits WHERE file = ?1")
        .and_then(|mut st| st.execute(params![file]))
        .map_err(err)?;
    let mut ins = tx
        .prepare_cached("INSERT OR REPLACE INTO shared_waits(file, id, who, blockers) VALUES (?1, ?2, ?3, ?4)")
        .map_err(err)?;
    for (id, who, blockers) in fs.wait_edges() {
        ins.execute(params![file, id as i64, &*who, encode_keys(&blockers)]).map_err(err)?;
    }
    Ok(())
}

pub(crate) fn encode_keys(keys: &[crate::requests::OwnerKey]) -> Vec<u8> {
    let mut w = crate::codec::W(Vec::new());
    w.u64(keys.len() as u64);
    for k in keys {
        w.bytes(k);
    }
    w.0
}

pub(crate) fn decode_keys(b: &[u8]) -> Option<Vec<crate::requests::OwnerKey>> {
    let mut r = crate::codec::R { b };
    let n = r.u64()?;
    if n > b.len() as u64 {
        return None;
    }
    (0..n).map(|_| r.bytes().map(|k| k.to_vec().into_boxed_slice())).collect()
}

pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(b);
    h.finish() & 0x00FF_FFFF_FFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration whose identity names a running process (here: this very one, as a recycled
    /// pid with a matching start time would) but whose process does not hold its liveness lock is
    /// dead; one whose handle is open is alive.
    #[test]
    fn a_process_is_alive_only_while_it_holds_its_liveness_lock() {
        let d = std::env::temp_dir().join(format!("unilock-live-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let db = d.join("t.db").to_string_lossy().into_owned();
        let (a, _) = Shared::open(&db, Durability::Process).unwrap();
        let (b, _) = Shared::open(&db, Durability::Process).unwrap();
        let me = ProcIdent::me();
        assert!(me.alive());
        assert!(a.alive(b.me, &me), "b's handle is open");
        let ghost = {
            let c = a.conn.lock();
            c.execute(
                "INSERT INTO procs(pid, start, boot, socket) VALUES (?1, ?2, ?3, '')",
                params![me.pid, me.start as i64, me.boot],
            )
            .unwrap();
            c.last_insert_rowid() as u64
        };
        assert!(!a.alive(ghost, &me), "a registration nobody holds the lock of is dead, whatever its pid");
        let bme = b.me;
        drop(b);
        assert!(!a.alive(bme, &me), "b closed its handle");
        drop(a);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn events_survive_the_mailbox_encoding() {
        let e = Event {
            kind: EventKind::LeaseBreak,
            result: Err(Error::Timeout),
            request_id: 7,
            token: 8,
            user_data: 9,
            file: b"f"[..].into(),
            client: b"c".to_vec(),
            owner: b"o".to_vec(),
            open_id: 10,
            flavour: Flavour::Windows,
            lock_kind: LockType::Exclusive,
            offset: 11,
            length: 12,
            lease: LeaseInfo {
                key: [3; 16],
                kind: Some(crate::core::lease::Kind::Lease),
                state: 7,
                break_to: 3,
                epoch: 5,
                ack_required: true,
            },
            proc: 13,
        };
        let d = decode_event(&encode_event(&e)).unwrap();
        assert_eq!(format!("{d:?}"), format!("{e:?}"));
        assert!(decode_event(&encode_event(&e)[..20]).is_none());
        // Unknown bytes are refused, never read as some other kind.
        let mut b = encode_event(&e);
        b[0] = 9;
        assert!(decode_event(&b).is_none(), "unknown event kind");
        assert!(EventKind::try_from(6).is_err());
        assert!(Flavour::try_from(0).is_err() && Flavour::try_from(3).is_err());
        assert!(LockType::try_from(0).is_err());
        assert!(crate::core::lease::Kind::try_from(3).is_err());
        for k in [
            EventKind::LockDone,
            EventKind::Watch,
            EventKind::LeaseBreak,
            EventKind::LeaseRevoked,
            EventKind::BreaksDone,
            EventKind::GraceReleased,
        ] {
            assert_eq!(EventKind::try_from(k as u8), Ok(k));
        }
    }
}
