//! Which table shared mode uses: the SQLite one unless `UNILOCK_SHARED_BACKEND=shm` (read at open)
//! asks for the shared-memory one, which must then pass the robust-mutex self-test (where it fails,
//! the open is an error, not a silent fallback). The shared-memory table is not the default yet:
//! under smbd (`make check-samba`) the self-test fails in processes that ignore SIGCHLD (waitpid
//! answers ECHILD), so one database gets processes of both kinds, and a process can find the
//! mapping while another is still creating it (0 bytes); both refuse the open (issue 17).
//!
//! All processes of one database must use the same one: a process that would use SQLite while a
//! running shared-memory instance is recorded, or the reverse, refuses to open with a clear error.

use super::ShmBackend;
use crate::backend::sqlite_shared::Shared;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::store::{Durability, Recovered};

/// The backend `UNILOCK_SHARED_BACKEND` asks for, if any.
fn forced() -> Result<Option<&'static str>> {
    match std::env::var("UNILOCK_SHARED_BACKEND").as_deref() {
        Err(_) | Ok("") => Ok(None),
        Ok("sqlite") => Ok(Some("sqlite")),
        Ok("shm") => Ok(Some("shm")),
        Ok(_) => Err(Error::Invalid("UNILOCK_SHARED_BACKEND must be sqlite or shm")),
    }
}

/// Opens shared mode on the database at `path` with the backend chosen as the module docs say.
pub fn open(path: &str, mode: Durability) -> Result<(Box<dyn Backend>, Option<Recovered>)> {
    let use_shm = match forced()? {
        Some("sqlite") => false,
        Some(_) => {
            super::mutex::self_test().map_err(|e| {
                log::error!("unilock: UNILOCK_SHARED_BACKEND=shm, but robust mutexes do not work here: {e}");
                Error::Store(format!("robust process-shared mutexes do not work here: {e}"))
            })?;
            true
        }
        None => false,
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
