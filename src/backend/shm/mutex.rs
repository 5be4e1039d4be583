//! Robust, process-shared pthread mutexes living in the mapping, and the fork-and-die self-test that
//! decides whether this system has them (as Samba's `tdb_runtime_check_for_robust_mutexes`).
//!
//! A mutex whose holder died is returned with `EOWNERDEAD`: the caller repairs what it guards and
//! calls `pthread_mutex_consistent` (`Guard::consistent`). Unlocking without that makes the mutex
//! `ENOTRECOVERABLE` for good, which the backend reports as a poisoned table.

use once_cell::sync::OnceCell;

/// How a lock attempt went.
pub enum Locked {
    /// Locked; the previous holder unlocked normally.
    Clean,
    /// Locked; the previous holder died holding it: repair, then `consistent`.
    OwnerDied,
}

/// Initialises a robust, process-shared mutex at `m` (memory in the mapping, zeroed or stale).
///
/// # Safety
/// `m` must point to writable memory of at least `size_of::<pthread_mutex_t>()` bytes, suitably
/// aligned, that no process uses as a mutex right now.
pub unsafe fn init(m: *mut libc::pthread_mutex_t) -> Result<(), String> {
    let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
    let mut r = libc::pthread_mutexattr_init(&mut attr);
    if r == 0 {
        r = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
    }
    if r == 0 {
        r = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
    }
    if r == 0 {
        std::ptr::write_bytes(m as *mut u8, 0, std::mem::size_of::<libc::pthread_mutex_t>());
        r = libc::pthread_mutex_init(m, &attr);
    }
    libc::pthread_mutexattr_destroy(&mut attr);
    if r != 0 {
        return Err(format!("pthread robust mutex init failed: {}", std::io::Error::from_raw_os_error(r)));
    }
    Ok(())
}

/// Locks `m`.
///
/// # Safety
/// `m` must be a mutex made by `init`, in memory that stays mapped while it is held.
pub unsafe fn lock(m: *mut libc::pthread_mutex_t) -> Result<Locked, String> {
    match libc::pthread_mutex_lock(m) {
        0 => Ok(Locked::Clean),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        libc::ENOTRECOVERABLE => Err("a partition mutex is not recoverable (the table is poisoned)".into()),
        e => Err(format!("pthread_mutex_lock: {}", std::io::Error::from_raw_os_error(e))),
    }
}

/// Marks a mutex taken with `OwnerDied` repaired.
///
/// # Safety
/// The caller holds `m`.
pub unsafe fn consistent(m: *mut libc::pthread_mutex_t) {
    libc::pthread_mutex_consistent(m);
}

/// # Safety
/// The caller holds `m`.
pub unsafe fn unlock(m: *mut libc::pthread_mutex_t) {
    libc::pthread_mutex_unlock(m);
}

static SELF_TEST: OnceCell<Result<(), String>> = OnceCell::new();

/// Do robust process-shared mutexes work here? A child locks one in a shared anonymous mapping and
/// exits holding it; the parent must then get `EOWNERDEAD`, make it consistent and lock it again.
/// Run once per process; the answer (or why not) is kept.
pub fn self_test() -> Result<(), String> {
    SELF_TEST.get_or_init(run_self_test).clone()
}

fn run_self_test() -> Result<(), String> {
    let size = std::mem::size_of::<libc::pthread_mutex_t>();
    // SAFETY: a fresh anonymous shared mapping, unmapped below; the child only locks and _exits.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let m = p as *mut libc::pthread_mutex_t;
        let r = (|| {
            assert!(size <= 4096);
            init(m)?;
            let pid = libc::fork();
            if pid < 0 {
                return Err(format!("fork: {}", std::io::Error::last_os_error()));
            }
            if pid == 0 {
                // The child: take the mutex and die holding it (async-signal-safe calls only).
                let r = libc::pthread_mutex_lock(m);
                libc::_exit(if r == 0 { 0 } else { 1 });
            }
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0 {
                if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
                }
            }
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err("the self-test child could not lock a robust mutex".into());
            }
            match libc::pthread_mutex_trylock(m) {
                libc::EOWNERDEAD => {}
                0 => return Err("a robust mutex whose holder died was handed over without EOWNERDEAD".into()),
                e => {
                    return Err(format!(
                        "a robust mutex whose holder died: {} instead of EOWNERDEAD",
                        std::io::Error::from_raw_os_error(e)
                    ))
                }
            }
            if libc::pthread_mutex_consistent(m) != 0 {
                return Err("pthread_mutex_consistent failed".into());
            }
            libc::pthread_mutex_unlock(m);
            if libc::pthread_mutex_lock(m) != 0 {
                return Err("a repaired robust mutex cannot be locked again".into());
            }
            libc::pthread_mutex_unlock(m);
            Ok(())
        })();
        libc::pthread_mutex_destroy(m);
        libc::munmap(p, 4096);
        r
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn robust_mutexes_work_here() {
        // The test machines are Linux with glibc: the self-test must pass (or the shm backend would
        // silently never be tested).
        assert_eq!(super::self_test(), Ok(()));
    }
}
