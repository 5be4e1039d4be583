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

/// Do robust process-shared mutexes work here? A child locks one in a shared anonymous mapping,
/// says so through a pipe and exits holding it; the parent must then get `EOWNERDEAD` (waiting at
/// most 10 s), make it consistent and lock it again. The child's death is learnt from the mutex
/// itself, never from `waitpid`: smbd's processes ignore SIGCHLD (their children are reaped by the
/// kernel and `waitpid` answers ECHILD), and a host's SIGCHLD handler may reap the child first. Run
/// once per process; the answer (or why not) is kept.
pub fn self_test() -> Result<(), String> {
    SELF_TEST.get_or_init(run_self_test).clone()
}

/// How long the self-test waits for its child at each step.
const SELF_TEST_WAIT_S: i64 = 10;

fn run_self_test() -> Result<(), String> {
    let size = std::mem::size_of::<libc::pthread_mutex_t>();
    // SAFETY: a fresh anonymous shared mapping and a fresh pipe, both released below; the child
    // only locks, writes and _exits.
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
        let mut fds = [-1i32; 2];
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            libc::munmap(p, 4096);
            return Err(format!("pipe: {}", std::io::Error::last_os_error()));
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
                // The child: take the mutex, say whether it could, and die holding it
                // (async-signal-safe calls only).
                let ok: u8 = if libc::pthread_mutex_lock(m) == 0 { 1 } else { 2 };
                libc::write(fds[1], &ok as *const u8 as *const libc::c_void, 1);
                libc::_exit(0);
            }
            libc::close(fds[1]);
            fds[1] = -1;
            let r = parent_side(m, fds[0]);
            // Reap the child where this process reaps its children at all (ECHILD otherwise: the
            // kernel or the host's handler did it). It is dead or dying once the mutex was handed
            // over; if the test failed before, it is killed first so that this never blocks.
            if r.is_err() {
                libc::kill(pid, libc::SIGKILL);
            }
            let mut status = 0;
            while libc::waitpid(pid, &mut status, 0) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
            r
        })();
        for fd in fds {
            if fd >= 0 {
                libc::close(fd);
            }
        }
        libc::pthread_mutex_destroy(m);
        libc::munmap(p, 4096);
        r
    }
}

/// The parent's half of the self-test: the child's word through the pipe, then the mutex.
///
/// # Safety
/// `m` is the self-test's mutex; `rfd` the pipe's read end.
unsafe fn parent_side(m: *mut libc::pthread_mutex_t, rfd: i32) -> Result<(), String> {
    let mut pfd = libc::pollfd { fd: rfd, events: libc::POLLIN, revents: 0 };
    loop {
        let n = libc::poll(&mut pfd, 1, (SELF_TEST_WAIT_S * 1000) as i32);
        if n > 0 {
            break;
        }
        if n == 0 {
            return Err("the self-test child did not answer within 10 s".into());
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
    }
    let mut b = 0u8;
    let n = loop {
        let n = libc::read(rfd, &mut b as *mut u8 as *mut libc::c_void, 1);
        if n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break n;
        }
    };
    if n != 1 || b != 1 {
        return Err("the self-test child could not lock a robust mutex".into());
    }
    let mut deadline: libc::timespec = std::mem::zeroed();
    libc::clock_gettime(libc::CLOCK_REALTIME, &mut deadline);
    deadline.tv_sec += SELF_TEST_WAIT_S as libc::time_t;
    let r = loop {
        let r = libc::pthread_mutex_timedlock(m, &deadline);
        if r != libc::EINTR {
            break r;
        }
    };
    match r {
        libc::EOWNERDEAD => {}
        0 => {
            libc::pthread_mutex_unlock(m);
            return Err("a robust mutex whose holder died was handed over without EOWNERDEAD".into());
        }
        libc::ETIMEDOUT => {
            return Err("a robust mutex whose holder died was not handed over within 10 s".into());
        }
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn robust_mutexes_work_here() {
        // The test machines are Linux with glibc: the self-test must pass (or the shm backend would
        // silently never be tested).
        assert_eq!(super::self_test(), Ok(()));
    }

    /// smbd's processes ignore SIGCHLD (the kernel reaps their children, `waitpid` answers
    /// ECHILD): the self-test must pass there too (it failed there before, and such processes fell
    /// back to the SQLite table while others used the mapping).
    #[test]
    fn the_self_test_passes_where_sigchld_is_ignored() {
        // SAFETY: the child runs the test and _exits; glibc's fork leaves malloc usable in it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                let code = match super::run_self_test() {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("self-test with SIGCHLD ignored: {e}");
                        1
                    }
                };
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
        }
    }
}
