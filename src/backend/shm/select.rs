//! Which table shared mode uses: the shared-memory one when robust process-shared mutexes pass the
//! self-test, else the SQLite one (the log says why). `UNILOCK_SHARED_BACKEND=sqlite|shm`, read at
//! open, forces one (`shm` where the self-test fails is an error, not a silent fallback).
//!
//! All processes of one database must use the same one: a process that would use SQLite while a
//! running shared-memory instance is recorded, or the reverse, refuses to open with a clear error.
//!
//! (Until the engine's `Backend` trait lands this is an enum with `Shared`'s method set, so the
//! manager needs no change beyond the type of its field.)

use super::ShmBackend;
use crate::error::{Error, Result};
use crate::requests::{Ctx, Event};
use crate::shared::{ProcIdent, Shared};
use crate::store::{Durability, Recovered};
use crate::table::FileState;

enum Kind {
    Sqlite(Shared),
    Shm(ShmBackend),
}

pub struct SharedBackend {
    kind: Kind,
    pub me: u64,
}

/// The backend `UNILOCK_SHARED_BACKEND` asks for, if any.
fn forced() -> Result<Option<&'static str>> {
    match std::env::var("UNILOCK_SHARED_BACKEND").as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok("sqlite") => Ok(Some("sqlite")),
        Ok("shm") => Ok(Some("shm")),
        Ok(_) => Err(Error::Invalid("UNILOCK_SHARED_BACKEND must be sqlite or shm")),
    }
}

macro_rules! each {
    ($s:expr, $b:ident => $e:expr) => {
        match &$s.kind {
            Kind::Sqlite($b) => $e,
            Kind::Shm($b) => $e,
        }
    };
}

impl SharedBackend {
    pub fn open(path: &str, mode: Durability) -> Result<(SharedBackend, Option<Recovered>)> {
        let use_shm = match forced()? {
            Some("sqlite") => false,
            Some(_) => {
                super::mutex::self_test().map_err(|e| {
                    log::error!("unilock: UNILOCK_SHARED_BACKEND=shm, but robust mutexes do not work here: {e}");
                    Error::Store(format!("robust process-shared mutexes do not work here: {e}"))
                })?;
                true
            }
            None => match super::mutex::self_test() {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "unilock: robust process-shared mutexes do not work here ({e}); shared mode uses SQLite"
                    );
                    false
                }
            },
        };
        if use_shm {
            let (b, rec) = ShmBackend::open(path, mode)?;
            log::debug!("unilock: shared mode on {path}: shared-memory table");
            let me = b.me;
            return Ok((SharedBackend { kind: Kind::Shm(b), me }, rec));
        }
        let (s, rec) = Shared::open(path, mode)?;
        {
            let conn = s.conn().lock();
            if rec.is_some() {
                // A restart in SQLite mode: no shared-memory instance runs any more.
                let _ = conn.execute_batch("DROP TABLE IF EXISTS shm_instance;");
            } else {
                let running: Option<i64> = conn
                    .query_row(
                        "SELECT epoch FROM shm_instance WHERE id = 1 AND EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'shm_instance')",
                        [],
                        |r| r.get(0),
                    )
                    .ok();
                if running.is_some() {
                    drop(conn);
                    log::error!(
                        "unilock: the running processes of {path} use the shared-memory table; this process was asked for SQLite's (UNILOCK_SHARED_BACKEND)"
                    );
                    let me = s.me;
                    let _ = s.forget_proc(me);
                    return Err(Error::Store(
                        "the running processes of this database use the shared-memory table, not SQLite's".into(),
                    ));
                }
            }
        }
        log::debug!("unilock: shared mode on {path}: SQLite table");
        let me = s.me;
        Ok((SharedBackend { kind: Kind::Sqlite(s), me }, rec))
    }

    /// "shm" or "sqlite-shared" (logs, tests).
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Sqlite(_) => "sqlite-shared",
            Kind::Shm(_) => "shm",
        }
    }

    pub fn shm(&self) -> Option<&ShmBackend> {
        match &self.kind {
            Kind::Shm(b) => Some(b),
            Kind::Sqlite(_) => None,
        }
    }

    pub fn fd(&self) -> i32 {
        each!(self, b => b.fd())
    }

    pub fn procs(&self) -> Result<Vec<(u64, ProcIdent)>> {
        each!(self, b => b.procs())
    }

    pub fn with_file<T>(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: impl FnOnce(Option<&mut FileState>) -> T,
    ) -> Result<T> {
        each!(self, b => b.with_file(file, create, ctx, f))
    }

    pub fn release_at(&self, proc: u64) -> Result<u64> {
        each!(self, b => b.release_at(proc))
    }

    pub fn set_release_at(&self, proc: u64, at: u64) -> Result<()> {
        each!(self, b => b.set_release_at(proc, at))
    }

    pub fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64> {
        each!(self, b => b.max_ttl(clients))
    }

    pub fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>> {
        each!(self, b => b.files_of(proc))
    }

    pub fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>> {
        each!(self, b => b.lease_file(client, key))
    }

    pub fn files(&self) -> Result<Vec<Box<[u8]>>> {
        each!(self, b => b.files())
    }

    pub fn forget_proc(&self, proc: u64) -> Result<()> {
        each!(self, b => b.forget_proc(proc))
    }

    pub fn take_mail(&self) -> Result<Vec<Event>> {
        each!(self, b => b.take_mail())
    }

    pub fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        each!(self, b => b.put_client(client, adapter, address, ttl_ms))
    }

    pub fn end_grace(&self) -> Result<()> {
        each!(self, b => b.end_grace())
    }

    /// BATCH on the shared-memory table: lock rows wait for `flush`.
    pub fn has_pending(&self) -> bool {
        self.shm().is_some_and(|b| b.has_pending())
    }

    pub fn flush(&self) -> Result<()> {
        match self.shm() {
            Some(b) => b.flush(),
            None => Ok(()),
        }
    }
}
