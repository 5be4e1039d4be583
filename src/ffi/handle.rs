//! The handle: what `unilock_open` returns and every call borrows.

/// A lock manager. Opaque; create with `unilock_open`, destroy with `unilock_close`.
pub struct unilock {
    pub(crate) inner: std::sync::Arc<crate::manager::Manager>,
    pub(crate) thread: Option<std::thread::JoinHandle<()>>,
    /// Shared mode: the process that opened the handle; a handle used in a child after fork() is
    /// refused. (Checked in shared mode only, where every call is a database transaction anyway; the
    /// in-memory hot path stays free of the getpid() system call.)
    pub(crate) owner_pid: Option<u32>,
}

impl unilock {
    /// False in a child process after fork() (shared mode): the handle belongs to the parent.
    pub(crate) fn usable(&self) -> bool {
        match self.owner_pid {
            Some(pid) => pid == std::process::id(),
            None => true,
        }
    }
}
