//! `unilock_status`, `unilock_strerror`, and the one mapping from crate errors to statuses.

use crate::error::Error;

/// Status codes returned by every fallible unilock call.
///
/// `UNILOCK_OK` is 0. `UNILOCK_PENDING` is a non-error status. Errors are numbered from 100; numbers
/// are permanent and new codes may be added, so treat unknown values as errors and name them with
/// `unilock_strerror`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum unilock_status {
    /// Success.
    UNILOCK_OK = 0,
    /// Not an error: a blocking request is queued; its completion arrives as a `UNILOCK_EVENT_LOCK`
    /// event carrying the request id written by the call.
    UNILOCK_PENDING = 1,
    /// An argument is invalid: a NULL pointer where none is allowed, an empty or oversize file id,
    /// client or owner, an unknown flavour, type or flag. Nothing was changed.
    UNILOCK_E_INVALID = 100,
    /// The range is impossible for its flavour (POSIX length 0, or an end past 2^64). Nothing was changed.
    UNILOCK_E_INVALID_RANGE = 101,
    /// The lock is held by another owner (or, for a Windows exclusive lock, by the same open); the
    /// holder is reported where the call has a holder argument. Nothing was changed.
    UNILOCK_E_CONFLICT = 102,
    /// A Windows unlock named a range the owner does not hold exactly.
    UNILOCK_E_RANGE_NOT_LOCKED = 103,
    /// Waiting would close a cycle of owners waiting for each other (POSIX `EDEADLK`). Nothing was
    /// queued.
    UNILOCK_E_DEADLOCK = 104,
    /// A blocking request waited longer than its timeout (reported in its completion event).
    UNILOCK_E_TIMEOUT = 105,
    /// Lease breaks are in progress and the caller said it cannot wait: retry later (NFS4ERR_DELAY).
    /// Also returned by a lock call while another client's write-caching lease is being broken.
    UNILOCK_E_BUSY = 111,
    /// No such request, open or lease: an unknown id (or one whose completion was already
    /// delivered), or a lease key unknown for this client on this file.
    UNILOCK_E_NOT_FOUND = 112,
    /// A lease acknowledgement with no break in progress (a second ack, an ack after the timeout).
    UNILOCK_E_NO_BREAK = 113,
    /// A lease acknowledgement for a state that is not a subset of the break-to state.
    UNILOCK_E_BAD_ACK = 114,
    /// A configured limit was reached: locks per file, per client or in total, or an adapter's
    /// connections; `unilock_errdetail()` says which. Nothing was changed.
    UNILOCK_E_LIMIT = 107,
    /// The grace period after a restart is active: new locks and leases are refused, reclaims and
    /// tests are allowed (NFS4ERR_GRACE, NLM4_DENIED_GRACE_PERIOD).
    UNILOCK_E_GRACE = 108,
    /// A reclaim outside the grace period (NFS4ERR_NO_GRACE).
    UNILOCK_E_NO_GRACE = 109,
    /// A reclaim that does not match what existed before the restart (NFS4ERR_RECLAIM_BAD).
    UNILOCK_E_RECLAIM_DENIED = 110,
    /// The SQLite store failed, or refused a corrupt database or one of a newer schema (it is never
    /// rewritten); `unilock_errdetail()` gives the message.
    UNILOCK_E_STORE = 115,
    /// The system refused a resource the call needed (a file descriptor or a thread).
    UNILOCK_E_RESOURCE = 116,
    /// The handle was opened before fork() and is used in the child: open a new handle in the
    /// child (Samba reopens its databases after fork the same way).
    UNILOCK_E_MISUSE = 117,
    /// An internal error (a caught panic). The handle remains usable; the failed call changed nothing
    /// it reported as changed.
    UNILOCK_E_INTERNAL = 199,
}

thread_local! {
    static DETAIL: std::cell::RefCell<std::ffi::CString> = std::cell::RefCell::new(std::ffi::CString::default());
    /// Counts `set_detail` calls on this thread, so the boundary can tell whether a call set one.
    static DETAIL_SETS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The thread's detail generation now (taken by the boundary when a call starts).
pub fn detail_mark() -> u64 {
    DETAIL_SETS.with(|c| c.get())
}

/// A call failed: if it set no detail since `mark`, the detail becomes "" (never a stale message).
pub fn settle_detail(mark: u64) {
    if detail_mark() == mark {
        set_detail("");
    }
}

/// The status of a call that returns nothing else: `UNILOCK_OK` or its error's status.
pub fn done(r: crate::error::Result<()>) -> unilock_status {
    match r {
        Ok(()) => unilock_status::UNILOCK_OK,
        Err(e) => status_of(&e),
    }
}

/// Remembers the detail of the calling thread's last failure.
pub fn set_detail(text: &str) {
    let c = std::ffi::CString::new(text.replace('\0', " ")).unwrap_or_default();
    DETAIL.with(|d| *d.borrow_mut() = c);
    DETAIL_SETS.with(|n| n.set(n.get().wrapping_add(1)));
}

/// Maps a crate error to its status (and records its detail for `unilock_errdetail`).
pub fn status_of(e: &Error) -> unilock_status {
    match e {
        Error::Invalid(why) => set_detail(why),
        Error::Store(why) => set_detail(why),
        Error::Resource(why) => set_detail(why),
        Error::Limit(k) => set_detail(match k {
            crate::metrics::LimitKind::File => "limit reached: locks per file",
            crate::metrics::LimitKind::Client => "limit reached: locks per client",
            crate::metrics::LimitKind::Total => "limit reached: locks in total",
            crate::metrics::LimitKind::Connections => "limit reached: connections of this adapter",
        }),
        _ => {}
    }
    match e {
        Error::Invalid(_) => unilock_status::UNILOCK_E_INVALID,
        Error::InvalidRange => unilock_status::UNILOCK_E_INVALID_RANGE,
        Error::Conflict(_) => unilock_status::UNILOCK_E_CONFLICT,
        Error::RangeNotLocked => unilock_status::UNILOCK_E_RANGE_NOT_LOCKED,
        Error::Deadlock => unilock_status::UNILOCK_E_DEADLOCK,
        Error::Timeout => unilock_status::UNILOCK_E_TIMEOUT,
        Error::NotFound => unilock_status::UNILOCK_E_NOT_FOUND,
        Error::Busy => unilock_status::UNILOCK_E_BUSY,
        Error::NoBreak => unilock_status::UNILOCK_E_NO_BREAK,
        Error::BadAck => unilock_status::UNILOCK_E_BAD_ACK,
        Error::Resource(_) => unilock_status::UNILOCK_E_RESOURCE,
        Error::Grace => unilock_status::UNILOCK_E_GRACE,
        Error::Limit(_) => unilock_status::UNILOCK_E_LIMIT,
        Error::NoGrace => unilock_status::UNILOCK_E_NO_GRACE,
        Error::ReclaimDenied => unilock_status::UNILOCK_E_RECLAIM_DENIED,
        Error::Store(_) => unilock_status::UNILOCK_E_STORE,
    }
}

/// Names a status code.
///
/// Returns a static, NUL-terminated English text for `status`; never NULL. Unknown numbers give
/// "unknown status". The string must not be freed. Thread-safe; may be called from a callback.
#[no_mangle]
pub extern "C" fn unilock_strerror(status: u32) -> *const libc::c_char {
    boundary! {
        let s: &'static std::ffi::CStr = match status {
            0 => c"ok",
            1 => c"pending",
            100 => c"invalid argument",
            101 => c"invalid lock range",
            102 => c"lock conflict",
            103 => c"range not locked",
            104 => c"deadlock",
            105 => c"timed out",
            111 => c"busy: retry later",
            107 => c"limit reached",
            108 => c"grace period: only reclaims are allowed",
            109 => c"no grace period: reclaim refused",
            110 => c"reclaim does not match the state before the restart",
            112 => c"not found",
            115 => c"storage error",
            113 => c"no break in progress",
            114 => c"acknowledged state not allowed",
            116 => c"out of system resources",
            117 => c"handle used in a child after fork",
            199 => c"internal error",
            _ => c"unknown status",
        };
        s.as_ptr()
    }
}

/// The detail of the calling thread's last failure (for example the SQLite message behind
/// `UNILOCK_E_STORE`, or which argument was invalid), or "" if that failure has none. Every failing
/// call sets it, to its own detail or to "", so it never describes an earlier failure; a successful
/// call leaves it as it was. Per thread, so another thread's failure never overwrites it. Valid until
/// this thread's next failing unilock call.
#[no_mangle]
pub extern "C" fn unilock_errdetail() -> *const libc::c_char {
    boundary! {
        DETAIL.with(|d| d.borrow().as_ptr())
    }
}
