//! Liveness of the processes of a shared table without pid-reuse races: each process holds an open
//! file description lock (`F_OFD_SETLK`, write) on one byte of `<db>.sockets/live` — the byte at
//! its process number — for as long as its handle is open. The kernel drops the lock when the
//! process dies (SIGKILL included), so a probe (`F_OFD_GETLK`) that finds the byte unlocked knows
//! its process is gone, whatever pid the kernel has given to someone else since, in any pid
//! namespace.
//!
//! A process is alive only if its lock is held *and* its identity (pid, start time, boot id) still
//! names a running process: a child forked by a process shares the parent's open file description,
//! and with it the lock, so the lock alone would keep a dead parent "alive" while such a child runs.
//! Where the file cannot be opened or probed, the identity alone decides (as before this file
//! existed), and the log says why once.

use std::os::fd::AsRawFd;

/// This process's lock on its byte of the liveness file (released when dropped or at death).
pub struct Live {
    file: Option<std::fs::File>,
}

fn ofd(file: &std::fs::File, cmd: libc::c_int, ty: libc::c_short, byte: u64) -> std::io::Result<libc::flock> {
    // SAFETY: a zeroed flock is a valid argument; l_pid must be 0 for OFD locks.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    // SAFETY: a valid descriptor and a valid flock.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fl)
}

impl Live {
    /// Takes the lock of process number `me` in `<dir>/live` (created mode 0666: every process of
    /// the server, whatever its euid, must be able to lock and probe it).
    pub fn take(dir: &std::path::Path, me: u64) -> Live {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = dir.join("live");
        let r = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .and_then(|f| {
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o666));
                ofd(&f, libc::F_OFD_SETLK, libc::F_WRLCK as libc::c_short, me)?;
                Ok(f)
            });
        match r {
            Ok(f) => Live { file: Some(f) },
            Err(e) => {
                log::warn!(
                    "unilock: cannot lock {} ({e}); liveness of shared-mode processes falls back to pid, start time and boot id",
                    path.display()
                );
                Live { file: None }
            }
        }
    }

    /// Does process number `proc` still hold its lock? `None` when this cannot be told (no file,
    /// or the probe failed): the caller decides by identity alone.
    pub fn holds(&self, proc: u64) -> Option<bool> {
        let f = self.file.as_ref()?;
        match ofd(f, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, proc) {
            Ok(fl) => Some(fl.l_type != libc::F_UNLCK as libc::c_short),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("unilock-live-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_lock_is_seen_while_held_and_gone_when_dropped() {
        let d = dir("drop");
        let a = Live::take(&d, 7);
        let b = Live::take(&d, 8);
        assert_eq!(b.holds(7), Some(true));
        assert_eq!(a.holds(8), Some(true));
        assert_eq!(a.holds(9), Some(false), "nobody holds 9");
        drop(a);
        assert_eq!(b.holds(7), Some(false), "a dropped its handle");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_killed_process_loses_its_lock() {
        let d = dir("kill");
        let watcher = Live::take(&d, 1);
        let (rd, wr) = {
            let mut fds = [0; 2];
            // SAFETY: a fresh pipe.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child only takes its lock, says so and waits to be killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let _l = Live::take(&d, 42);
            unsafe {
                libc::write(wr, b"x".as_ptr() as *const libc::c_void, 1);
                loop {
                    libc::pause();
                }
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reads the child's one byte.
        assert_eq!(unsafe { libc::read(rd, b.as_mut_ptr() as *mut libc::c_void, 1) }, 1);
        assert_eq!(watcher.holds(42), Some(true));
        // SAFETY: our child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            libc::close(rd);
            libc::close(wr);
        }
        assert_eq!(watcher.holds(42), Some(false), "the kernel released the dead process's lock");
        let _ = std::fs::remove_dir_all(&d);
    }
}
