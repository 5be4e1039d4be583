//! The handle: what `unilock_open` returns and every call borrows.

/// A lock manager. Opaque; create with `unilock_open`, destroy with `unilock_close`.
pub struct unilock {
    pub(crate) inner: std::sync::Arc<crate::manager::Manager>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
    /// Shared and cluster mode: the process that opened the handle (its pid, as `this_process`
    /// gives it); a handle used in a child after fork() is refused. The in-memory hot path does
    /// not check.
    pub(crate) owner_pid: Option<u32>,
}

impl unilock {
    /// False in a child process after fork() (shared and cluster mode): the handle belongs to the
    /// parent.
    pub(crate) fn usable(&self) -> bool {
        match self.owner_pid {
            Some(pid) => pid == this_process(),
            None => true,
        }
    }
}

/// This process's id, without a system call on each use: it is kept in a page the kernel zeroes in
/// a child at fork() (`MADV_WIPEONFORK`, Linux 4.14), so a zero means "not asked in this process
/// yet" and a child never sees its parent's id. Where the page cannot be had, `getpid()` each time.
/// (A pthread_atfork handler would do the same, but ran into forked children under valgrind.)
pub(crate) fn this_process() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PAGE: once_cell::sync::OnceCell<Option<&'static AtomicU32>> = once_cell::sync::OnceCell::new();
    let page = PAGE.get_or_init(|| {
        // SAFETY: a fresh private anonymous mapping of one page, never unmapped (it lives as long
        // as the process); the AtomicU32 at its start is aligned and zero-initialised.
        unsafe {
            let len = 4096;
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return None;
            }
            if libc::madvise(p, len, libc::MADV_WIPEONFORK) != 0 {
                libc::munmap(p, len);
                return None;
            }
            Some(&*(p as *const AtomicU32))
        }
    });
    match page {
        Some(a) => match a.load(Ordering::Relaxed) {
            0 => {
                let pid = std::process::id();
                a.store(pid, Ordering::Relaxed);
                pid
            }
            pid => pid,
        },
        None => std::process::id(),
    }
}

#[cfg(test)]
mod tests {
    use super::this_process;

    /// The cached id is this process's, and a forked child gets its own, not the parent's.
    #[test]
    fn a_forked_child_sees_its_own_pid() {
        assert_eq!(this_process(), std::process::id());
        assert_eq!(this_process(), std::process::id());
        // SAFETY: the child only calls async-signal-safe-enough code (getpid, a read of our page)
        // and leaves with _exit.
        unsafe {
            let child = libc::fork();
            assert!(child >= 0);
            if child == 0 {
                let ok = this_process() == std::process::id() && this_process() != libc::getppid() as u32;
                libc::_exit(if ok { 0 } else { 1 });
            }
            let mut st = 0;
            assert_eq!(libc::waitpid(child, &mut st, 0), child);
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "the child saw its parent's pid");
        }
    }
}
