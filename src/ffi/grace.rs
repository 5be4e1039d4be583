//! The grace period and reclaims after a restart.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{done, unilock_status};

/// Grace period status.
#[repr(C)]
pub struct unilock_grace_info {
    /// 1 while the grace period is active.
    pub active: u32,
    /// Milliseconds left (0 when not active).
    pub remaining_ms: u64,
    /// Clients expected to reclaim.
    pub expected_clients: u64,
    /// Expected clients that said they are done (`unilock_reclaim_complete`).
    pub done_clients: u64,
}

/// Reports the grace period's state. `out` must not be NULL. Returns `UNILOCK_OK` or
/// `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_grace_status(ul: *const unilock, out: *mut unilock_grace_info) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if out.is_null() {
            return unilock_status::invalid();
        }
        let (active, remaining, expected, done) = ul.inner.grace_status();
        put(out, unilock_grace_info { active: active as u32, remaining_ms: remaining, expected_clients: expected as u64, done_clients: done as u64 });
        unilock_status::UNILOCK_OK
    }
}

/// Starts a grace period explicitly, for a host taking over another host's clients (or restarting
/// grace for them): `clients`/`n` are the expected clients (NUL-terminated ids; n may be 0, at most
/// `UNILOCK_COUNT_MAX`),
/// `duration_ms` 0 means the configured grace period. An expected client with no pre-restart record
/// here may reclaim what it claims (its state is on the other host). Returns `UNILOCK_OK`,
/// `UNILOCK_E_INVALID` (NULL handle, NULL `clients` with n > 0, a NULL client, n over
/// `UNILOCK_COUNT_MAX`) or `UNILOCK_E_STORE` (the grace record could not be written).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_grace_start(
    ul: *const unilock,
    clients: *const *const libc::c_char,
    n: usize,
    duration_ms: u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if n > 0 && clients.is_null() {
            return unilock_status::invalid();
        }
        if n > super::types::UNILOCK_COUNT_MAX {
            super::status::set_detail("too many clients (more than UNILOCK_COUNT_MAX)");
            return unilock_status::invalid();
        }
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: the caller promises `n` pointers, each NULL or a NUL-terminated string.
            let p = unsafe { *clients.add(i) };
            if p.is_null() {
                return unilock_status::invalid();
            }
            // SAFETY: as above.
            v.push(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes().into());
        }
        done(ul.inner.grace_start(v, duration_ms))
    }
}

/// Ends the grace period now: every pre-restart lock and lease nobody reclaimed is released, and a
/// `UNILOCK_EVENT_GRACE_RELEASED` event per client reports it. No-op when not in grace.
///
/// Also returns `UNILOCK_OK` (success), `UNILOCK_E_INVALID` (a NULL or malformed argument),
/// `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`; `unilock_errdetail()` says
/// why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_grace_end(ul: *const unilock) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        ul.inner.grace_end();
        unilock_status::UNILOCK_OK
    }
}

/// A client finished reclaiming (NFSv4 RECLAIM_COMPLETE). Grace ends early once every expected
/// client is done. Call it only for clients whose protocol says so: NLM and SMB clients reclaim one
/// lock or handle at a time and are never done early, so they keep the full period.
///
/// Returns `UNILOCK_OK`, `UNILOCK_E_NO_GRACE` (not in grace) or `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_reclaim_complete(ul: *const unilock, client: *const libc::c_char) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if client.is_null() {
            return unilock_status::invalid();
        }
        // SAFETY: the caller promises a NUL-terminated string.
        let c = unsafe { std::ffi::CStr::from_ptr(client) }.to_bytes();
        done(ul.inner.reclaim_complete(c))
    }
}

/// Writes batched changes (`UNILOCK_DURABILITY_BATCH`) to the database now. Returns `UNILOCK_OK`,
/// `UNILOCK_E_STORE` or `UNILOCK_E_INVALID`; a no-op without a database.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_flush(ul: *const unilock) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        done(ul.inner.flush())
    }
}
