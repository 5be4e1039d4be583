//! Clients, limits and metrics.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{done, status_of, unilock_status};
use libc::c_char;

fn text<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller promises a NUL-terminated string valid for the call.
    Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// Registers a client of a protocol adapter (SMB session, NFSv4 client id, NLM host).
///
/// `client`: its id (1..255 bytes). `adapter`: the protocol adapter, e.g. "smb", "nfs4", "nlm"
/// (connection limits are per adapter). `address`: the remote address, for inspection; may be NULL.
/// `ttl_ms`: how long its locks and leases survive a disconnect (0: released at once).
///
/// Idempotent: registering again updates the record, and cancels a pending TTL release (a
/// reconnect). Returns `UNILOCK_OK`; `UNILOCK_E_LIMIT` (the adapter's connection limit is reached,
/// see `unilock_set_adapter_limit`); `UNILOCK_E_STORE`; `UNILOCK_E_INVALID`. Locks may also be taken
/// by clients never registered; they are released only explicitly.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_client_register(
    ul: *const unilock,
    client: *const c_char,
    adapter: *const c_char,
    address: *const c_char,
    ttl_ms: u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let (Some(client), Some(adapter)) = (text(client), text(adapter)) else { return unilock_status::invalid() };
        let address = text(address).unwrap_or(b"");
        done(ul.inner.client_register(client, &String::from_utf8_lossy(adapter), &String::from_utf8_lossy(address), ttl_ms))
    }
}

/// A registered client disconnected. With TTL 0 all its locks, waiting requests (ended with
/// `UNILOCK_E_RANGE_NOT_LOCKED`), opens and leases are released now and the waiters they blocked are
/// woken; `released` receives the number of locks. With a TTL they are kept until it passes (then
/// released the same way) unless the client registers again; `released` receives 0.
///
/// Returns `UNILOCK_OK`, `UNILOCK_E_NOT_FOUND` (not registered), `UNILOCK_E_INVALID` or
/// `UNILOCK_E_STORE` (shared mode: the database could not be read or written).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_client_disconnect(
    ul: *const unilock,
    client: *const c_char,
    released: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let Some(client) = text(client) else { return unilock_status::invalid() };
        match ul.inner.client_disconnect(client) {
            Ok(n) => {
                put(released, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Sets the most clients of `adapter` that may be connected at once (0: unlimited, the default).
/// Returns `UNILOCK_OK` or `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_set_adapter_limit(
    ul: *const unilock,
    adapter: *const c_char,
    max_connections: u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let Some(adapter) = text(adapter) else { return unilock_status::invalid() };
        ul.inner.set_adapter_limit(&String::from_utf8_lossy(adapter), max_connections);
        unilock_status::UNILOCK_OK
    }
}

/// A registered client, as listed. Strings are valid only during the visit.
#[repr(C)]
pub struct unilock_client_info {
    pub client: *const c_char,
    pub adapter: *const c_char,
    pub address: *const c_char,
    pub ttl_ms: u64,
    /// 1 while connected.
    pub connected: u32,
    /// Disconnected with a TTL: milliseconds until its state is released; otherwise 0.
    pub release_in_ms: u64,
}

/// Visits one client of a listing; return non-zero to stop.
pub type unilock_client_visit_fn =
    Option<unsafe extern "C" fn(user_data: *mut libc::c_void, client: *const unilock_client_info) -> i32>;

/// Lists registered clients, sorted by id, calling `visit` (may be NULL) after every internal lock is
/// released. `count`: receives how many there are; may be NULL. Returns `UNILOCK_OK` or
/// `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_client_list(
    ul: *const unilock,
    visit: unilock_client_visit_fn,
    user_data: *mut libc::c_void,
    count: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let list = ul.inner.clients();
        put(count, list.len());
        let now = ul.inner.now_ms();
        if let Some(visit) = visit {
            for (id, c) in &list {
                let cs = |b: &[u8]| std::ffi::CString::new(b.iter().map(|&x| if x == 0 { b'?' } else { x }).collect::<Vec<u8>>()).unwrap_or_default();
                let (a, b, d) = (cs(id), cs(c.adapter.as_bytes()), cs(c.address.as_bytes()));
                let info = unilock_client_info {
                    client: a.as_ptr(),
                    adapter: b.as_ptr(),
                    address: d.as_ptr(),
                    ttl_ms: c.ttl_ms,
                    connected: c.connected as u32,
                    release_in_ms: c.release_at.map(|t| t.saturating_sub(now)).unwrap_or(0),
                };
                // SAFETY: the host registered `visit` for this call shape; `info` outlives the call.
                if unsafe { visit(user_data, &info) } != 0 {
                    break;
                }
            }
        }
        unilock_status::UNILOCK_OK
    }
}

/// Index of `unilock_metrics.acquisitions[flavour][type][result]`: flavour 0 POSIX, 1 Windows;
/// type 0 shared, 1 exclusive; result one of these.
pub const UNILOCK_RESULT_GRANTED: u32 = 0;
pub const UNILOCK_RESULT_CONFLICT: u32 = 1;
pub const UNILOCK_RESULT_PENDING: u32 = 2;
pub const UNILOCK_RESULT_DEADLOCK: u32 = 3;
pub const UNILOCK_RESULT_GRACE: u32 = 4;
pub const UNILOCK_RESULT_LIMIT: u32 = 5;
pub const UNILOCK_RESULT_ERROR: u32 = 6;
/// Index of `unilock_metrics.releases[reason]`.
pub const UNILOCK_RELEASE_EXPLICIT: u32 = 0;
pub const UNILOCK_RELEASE_CLOSE: u32 = 1;
pub const UNILOCK_RELEASE_DISCONNECT: u32 = 2;
pub const UNILOCK_RELEASE_TTL: u32 = 3;
pub const UNILOCK_RELEASE_GRACE_END: u32 = 4;
pub const UNILOCK_RELEASE_BREAK_TIMEOUT: u32 = 5;
/// Index of `unilock_metrics.limit_hits[limit]`.
pub const UNILOCK_LIMIT_FILE: u32 = 0;
pub const UNILOCK_LIMIT_CLIENT: u32 = 1;
pub const UNILOCK_LIMIT_TOTAL: u32 = 2;
pub const UNILOCK_LIMIT_CONNECTIONS: u32 = 3;

/// A snapshot of the metrics. Set `size` to `sizeof(unilock_metrics)` before the call; the library
/// fills only the fields that `size` covers (later versions only add fields at the end).
#[repr(C)]
pub struct unilock_metrics {
    pub size: usize,
    /// Byte-range lock requests: [flavour][type][UNILOCK_RESULT_*].
    pub acquisitions: [[[u64; 7]; 2]; 2],
    /// Locks released: [UNILOCK_RELEASE_*].
    pub releases: [u64; 6],
    pub locks_active: u64,
    pub leases_active: u64,
    pub waiters_blocked: u64,
    pub files_tracked: u64,
    /// Wait time of granted blocking requests: counts per bucket with upper bounds 1, 5, 10, 50,
    /// 100, 500, 1000, 5000, 10000, 60000 ms and +Inf.
    pub wait_buckets: [u64; 11],
    pub wait_sum_ms: u64,
    pub wait_count: u64,
    pub grace_active: u64,
    pub grace_remaining_ms: u64,
    pub reclaims_granted: u64,
    pub reclaims_denied: u64,
    /// Requests refused by a limit: [UNILOCK_LIMIT_*].
    pub limit_hits: [u64; 4],
    pub deadlocks: u64,
    pub lease_breaks: u64,
    pub break_timeouts: u64,
    pub store_errors: u64,
    /// Connected registered clients, all adapters.
    pub connections: u64,
}

/// Fills `*out` with a snapshot of the counters and gauges (gauges walk the lock table: cheap, but
/// not for every request). `out->size` must be set. Returns `UNILOCK_OK` or `UNILOCK_E_INVALID`
/// (NULL, or a size smaller than the `size` field).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_metrics_get(ul: *const unilock, out: *mut unilock_metrics) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if out.is_null() {
            return unilock_status::invalid();
        }
        // SAFETY: non-NULL; the caller set `size` to the bytes it owns.
        let size = unsafe { (*out).size };
        if size < std::mem::size_of::<usize>() {
            return unilock_status::invalid();
        }
        let (t, g) = ul.inner.metrics_snapshot();
        let m = unilock_metrics {
            size: std::mem::size_of::<unilock_metrics>().min(size),
            acquisitions: t.acquire,
            releases: t.release,
            locks_active: g.locks,
            leases_active: g.leases,
            waiters_blocked: g.waiters,
            files_tracked: g.files,
            wait_buckets: t.wait_buckets,
            wait_sum_ms: t.wait_sum_ms,
            wait_count: t.wait_count,
            grace_active: g.grace_active as u64,
            grace_remaining_ms: g.grace_remaining_ms,
            reclaims_granted: t.reclaims_ok,
            reclaims_denied: t.reclaims_denied,
            limit_hits: t.limits,
            deadlocks: g.deadlocks,
            lease_breaks: t.lease_breaks,
            break_timeouts: t.break_timeouts,
            store_errors: g.store_errors,
            connections: g.connections.iter().map(|(_, n)| n).sum(),
        };
        let n = std::mem::size_of::<unilock_metrics>().min(size);
        // SAFETY: copying at most `size` bytes, which the caller owns at `out`.
        unsafe { std::ptr::copy_nonoverlapping(&m as *const _ as *const u8, out as *mut u8, n) };
        unilock_status::UNILOCK_OK
    }
}

/// Renders the metrics in the Prometheus text exposition format (names prefixed `unilock_`).
///
/// `buf`, `cap`: where to write, NUL-terminated; may be NULL/0 to ask for the size. `len`: receives
/// the length of the text without its NUL (always, when not NULL). Returns `UNILOCK_OK`, or
/// `UNILOCK_E_LIMIT` if `cap` is too small (nothing useful is written; retry with `*len + 1`), or
/// `UNILOCK_E_INVALID` (a NULL handle, or `buf` NULL with a non-zero `cap`).
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_metrics_prometheus(
    ul: *const unilock,
    buf: *mut c_char,
    cap: usize,
    len: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if buf.is_null() && cap != 0 {
            super::status::set_detail("buf is NULL with a non-zero cap");
            return unilock_status::UNILOCK_E_INVALID;
        }
        let text = ul.inner.prometheus();
        put(len, text.len());
        if buf.is_null() || cap < text.len() + 1 {
            return if buf.is_null() { unilock_status::UNILOCK_OK } else { unilock_status::UNILOCK_E_LIMIT };
        }
        // SAFETY: `cap` writable bytes at `buf`, and text.len() + 1 <= cap.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
            *buf.add(text.len()) = 0;
        }
        unilock_status::UNILOCK_OK
    }
}
