//! Shared mode: processes gone, durable reconnect.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{status_of, unilock_status};

/// Shared mode: declares process `pid` gone (the parent after `waitpid`, or a cleanup daemon).
/// `start_time`: the process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or 0
/// for any registration of that pid. Everything it held is released as a disconnect of its clients,
/// and the waiters it blocked are woken. Processes that die unannounced (SIGKILL included) are found
/// anyway: at open, about once a second on the event loop, and whenever one of their locks refuses a
/// request. A recycled pid is told apart by its start time and boot id.
///
/// `released`: receives how many registered processes matched; may be NULL. Returns `UNILOCK_OK`,
/// `UNILOCK_E_INVALID` (not in shared mode) or `UNILOCK_E_STORE` (shared mode: the database could not be read
/// or written; `unilock_errdetail()` gives the SQLite message).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_process_gone(
    ul: *const unilock,
    pid: u32,
    start_time: u64,
    released: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        match ul.inner.process_gone(pid, start_time) {
            Ok(n) => {
                put(released, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Shared mode: binds the open `open_id` of `client` on a file — its locks, waiting requests, opens
/// and leases — to the calling process, as Samba does when a durable handle reconnects in a new smbd.
/// Events for it (grants, breaks) then reach this process.
///
/// `rebound`: receives how many owners and opens moved; may be NULL. Returns `UNILOCK_OK`,
/// `UNILOCK_E_INVALID` (NULL argument, a bad file id, a client id not of 1..255 bytes, or not in
/// shared mode) or `UNILOCK_E_STORE` (shared mode: the database could not be read or written;
/// `unilock_errdetail()` gives the SQLite message).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_rebind_open(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const libc::c_char,
    open_id: u64,
    rebound: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        if client.is_null() {
            return unilock_status::invalid();
        }
        // SAFETY: the caller promises a NUL-terminated string.
        let c = unsafe { std::ffi::CStr::from_ptr(client) }.to_bytes();
        match ul.inner.rebind_open(file, c, open_id) {
            Ok(n) => {
                put(rebound, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}
