//! Which table shared mode uses: the shared-memory one where robust process-shared mutexes pass the
//! self-test (`mutex::self_test`), else SQLite's, with a log line saying why.
//! `UNILOCK_SHARED_BACKEND` (read at open) forces one: `sqlite`, or `shm` (then a failing self-test
//! is an error, not a fallback).
//!
//! All processes of one database must use the same one: a process that would use SQLite while a
//! running shared-memory instance is recorded, or the reverse, refuses to open with a clear error.

use super::ShmBackend;
use crate::backend::sqlite_shared::Shared;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::store::{Durability, Recovered};

/// The backend asked for (the caller's choice, else `UNILOCK_SHARED_BACKEND`), if any.
fn forced(asked: Option<&str>) -> Result<Option<&'static str>> {
    let env = std::env::var("UNILOCK_SHARED_BACKEND");
    match asked.map(Ok).unwrap_or(env.as_deref()) {
        Err(_) | Ok("") => Ok(None),
        Ok("sqlite") => Ok(Some("sqlite")),
        Ok("shm") => Ok(Some("shm")),
        Ok(_) => Err(Error::Invalid("UNILOCK_SHARED_BACKEND must be sqlite or shm")),
    }
}

/// Opens shared mode on the database at `path` with the backend chosen as the module docs say
/// (`asked`, when given, instead of `UNILOCK_SHARED_BACKEND`).
pub fn open(path: &str, mode: Durability, asked: Option<&str>) -> Result<(Box<dyn Backend>, Option<Recovered>)> {
    let use_shm = match forced(asked)? {
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
                    "unilock: robust process-shared mutexes do not work here ({e}); shared mode uses the SQLite table"
                );
                false
            }
        },
    };
    if use_shm {
        let (b, rec) = ShmBackend::open(path, mode)?;
        log::debug!("unilock: shared mode on {path}: shared-memory table");
        return Ok((Box::new(b), rec));
    }
    let (s, rec) = Shared::open(path, mode)?;
    {
        let conn = s.conn().lock();
        if rec.is_some() {
            // A restart in SQLite mode: no shared-memory instance runs any more.
            let _ = conn.execute_batch("DROP TABLE IF EXISTS shm_instance;");
        } else if conn.query_row("SELECT epoch FROM shm_instance WHERE id = 1", [], |r| r.get::<_, i64>(0)).is_ok() {
            drop(conn);
            log::error!(
                "unilock: the running processes of {path} use the shared-memory table; this process was asked for SQLite's (UNILOCK_SHARED_BACKEND)"
            );
            let _ = s.forget_proc(s.me);
            return Err(Error::Store(
                "the running processes of this database use the shared-memory table, not SQLite's".into(),
            ));
        }
    }
    log::debug!("unilock: shared mode on {path}: SQLite table");
    Ok((Box::new(s), rec))
}
