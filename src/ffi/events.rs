//! Blocking requests, watches, cancel, and event delivery.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{status_of, unilock_status};
use super::types::*;
use crate::manager::{EventCallback, WaitSpec};
use crate::requests::{CancelOutcome, Event, EventKind};
use crate::table::Queued;

/// Event type: a blocking lock request ended. `status` is `UNILOCK_OK` (granted: the owner now holds
/// the lock), `UNILOCK_E_TIMEOUT` (its timeout passed), or `UNILOCK_E_RANGE_NOT_LOCKED` (its open was
/// closed or its client released while it waited).
pub const UNILOCK_EVENT_LOCK: u32 = 1;
/// Event type: a watched file's locks changed (one-shot); retry what you were waiting for.
pub const UNILOCK_EVENT_WATCH: u32 = 2;
/// Event type: a lease (oplock, delegation) of `client` must be broken from `lease_state` to
/// `break_to` (SMB2 LEASE_BREAK / oplock break, NFSv4 CB_RECALL). If `ack_required`, acknowledge with
/// `unilock_lease_ack` before the break timeout; otherwise (R to none) it already took effect.
/// `request_id` is 0: this is a notification, not the completion of a request.
pub const UNILOCK_EVENT_LEASE_BREAK: u32 = 3;
/// Event type: a break was not acknowledged in time; the lease is now none ("revoked").
/// `request_id` is 0.
pub const UNILOCK_EVENT_LEASE_REVOKED: u32 = 4;
/// Event type: the lease breaks a pending open or trigger waited for are over (acknowledged,
/// released or timed out); retry the open or the operation. `status` is `UNILOCK_OK`.
pub const UNILOCK_EVENT_BREAKS_DONE: u32 = 5;
/// Event type: the grace period ended and `client`'s pre-restart state that nobody reclaimed was
/// released: `offset` locks and `length` leases. `request_id` is 0.
pub const UNILOCK_EVENT_GRACE_RELEASED: u32 = 6;

/// `unilock_cancel` outcome: the request was waiting and is gone; no event will be delivered for it.
pub const UNILOCK_CANCELLED: u32 = 1;
/// `unilock_cancel` outcome: the lock had already been granted; the caller owns it (and must unlock
/// it); no event will be delivered for it.
pub const UNILOCK_ALREADY_GRANTED: u32 = 2;
/// `unilock_cancel` outcome: the request had already ended (timed out, or the watch fired); no event
/// will be delivered for it.
pub const UNILOCK_ALREADY_ENDED: u32 = 3;

/// One event. Every pointer in it is valid only during the callback.
///
/// Which fields each type fills (the others are 0 or NULL; `flavour` and `lock_type` mean nothing
/// outside lock events):
/// - `UNILOCK_EVENT_LOCK`: `status`, `request_id`, `token`, `user_data`, the file, the owner
///   (`client`, `owner`, `open_id`) and the lock (`flavour`, `lock_type`, `offset`, `length`).
/// - `UNILOCK_EVENT_WATCH`: `status`, `request_id`, `token`, `user_data`, the file.
/// - `UNILOCK_EVENT_LEASE_BREAK`, `UNILOCK_EVENT_LEASE_REVOKED`: the file, `client` (the holder),
///   `lease_key`, `lease_kind`, `lease_state`, `break_to`, `epoch`, `ack_required`; for an oplock also
///   `open_id`, the open that holds it (a lease is named by its key alone, a delegation by its client).
/// - `UNILOCK_EVENT_BREAKS_DONE`: `status`, `request_id`, `token`, `user_data`, the file.
/// - `UNILOCK_EVENT_GRACE_RELEASED`: `client`, `offset` (locks released) and `length` (leases
///   released).
///
/// cbindgen:field-names=[type, status, request_id, token, user_data, file_id, file_id_len, client, owner, owner_len, open_id, flavour, lock_type, offset, length, lease_key, lease_kind, lease_state, break_to, epoch, ack_required]
#[repr(C)]
pub struct unilock_event {
    /// `UNILOCK_EVENT_*`: LOCK, WATCH, LEASE_BREAK, LEASE_REVOKED, BREAKS_DONE or GRACE_RELEASED.
    pub type_: u32,
    /// The request's result (see the event types).
    pub status: unilock_status,
    /// The id the request call returned.
    pub request_id: u64,
    /// The caller's token, echoed.
    pub token: u64,
    /// The caller's `user_data` for this request, echoed.
    pub user_data: *mut libc::c_void,
    /// The file.
    pub file_id: *const u8,
    pub file_id_len: usize,
    /// The owner (lock events): client id (NUL-terminated), owner bytes and open id as requested. Lease
    /// events: the holder's client id, and for an oplock the open id of the open holding it.
    pub client: *const libc::c_char,
    pub owner: *const u8,
    pub owner_len: usize,
    pub open_id: u64,
    /// The requested lock (lock events), exactly as requested.
    pub flavour: u32,
    pub lock_type: u32,
    pub offset: u64,
    pub length: u64,
    /// Lease events: the lease key (for oplocks and delegations, the key the open reported).
    pub lease_key: [u8; 16],
    /// Lease events: `UNILOCK_LEASE_KIND_*`.
    pub lease_kind: u32,
    /// Lease events: the current state (`UNILOCK_LEASE_R|H|W` bits).
    pub lease_state: u32,
    /// Lease events: the state the lease breaks to.
    pub break_to: u32,
    /// Lease events: the lease epoch (v2 leases).
    pub epoch: u32,
    /// Lease events: 1 if the holder must acknowledge with `unilock_lease_ack`.
    pub ack_required: u32,
}

/// Receives one event. `event` and everything it points to are valid only during the call. The
/// callback may call back into the library (for example unlock the lock just granted), but must not
/// call `unilock_close`.
pub type unilock_event_fn = Option<unsafe extern "C" fn(user_data: *mut libc::c_void, event: *const unilock_event)>;

/// Wraps a C callback in the manager's callback type.
pub fn callback(f: unilock_event_fn, user_data: *mut libc::c_void) -> Option<EventCallback> {
    let f = f?;
    let ud = user_data as usize;
    Some(Box::new(move |ev: &Event| {
        let mut client = ev.client.clone();
        client.push(0);
        let c = unilock_event {
            type_: match ev.kind {
                EventKind::LockDone => UNILOCK_EVENT_LOCK,
                EventKind::Watch => UNILOCK_EVENT_WATCH,
                EventKind::LeaseBreak => UNILOCK_EVENT_LEASE_BREAK,
                EventKind::LeaseRevoked => UNILOCK_EVENT_LEASE_REVOKED,
                EventKind::BreaksDone => UNILOCK_EVENT_BREAKS_DONE,
                EventKind::GraceReleased => UNILOCK_EVENT_GRACE_RELEASED,
            },
            status: match &ev.result {
                Ok(()) => unilock_status::UNILOCK_OK,
                Err(e) => status_of(e),
            },
            request_id: ev.request_id,
            token: ev.token,
            user_data: ev.user_data as *mut libc::c_void,
            file_id: ev.file.as_ptr(),
            file_id_len: ev.file.len(),
            client: client.as_ptr() as *const libc::c_char,
            owner: ev.owner.as_ptr(),
            owner_len: ev.owner.len(),
            open_id: ev.open_id,
            flavour: flavour_to_c(ev.flavour),
            lock_type: kind_to_c(ev.lock_kind),
            offset: ev.offset,
            length: ev.length,
            lease_key: ev.lease.key,
            lease_kind: super::lease::kind_to_c(ev.lease.kind),
            lease_state: ev.lease.state as u32,
            break_to: ev.lease.break_to as u32,
            epoch: ev.lease.epoch as u32,
            ack_required: ev.lease.ack_required as u32,
        };
        // A panic in our own code above is caught by the caller's boundary; the C callback cannot
        // unwind into Rust.
        // SAFETY: the host registered `f` for this call shape; `c` and its buffers outlive the call.
        unsafe { f(ud as *mut libc::c_void, &c) }
    }))
}

/// Requests a lock, waiting for it if it conflicts (NLM LOCK with block, a blocking SMB2 LOCK, an
/// NFSv4 blocking lock). Never sleeps: a conflicting request is queued and completes later through a
/// `UNILOCK_EVENT_LOCK` event.
///
/// `req`: as for `unilock_lock`. `wait`: token, user data and timeout (not NULL). `request_id`:
/// receives the id of a queued request (on `UNILOCK_PENDING`); may be NULL. `holder`: may be NULL; on
/// `UNILOCK_PENDING` receives a held lock the request waits for, when one is the reason (untouched when
/// it queues only behind an earlier waiter).
///
/// Waiters for the same bytes are granted in arrival order: a request that conflicts with an earlier
/// waiter queues behind it even if the held locks would allow it. When locks go away (unlock, close,
/// client release, downgrade, cancel or timeout of an earlier waiter) every waiter that can proceed is
/// granted atomically, in order.
///
/// Returns `UNILOCK_OK` (granted now); `UNILOCK_PENDING` (queued); `UNILOCK_E_DEADLOCK` (waiting would
/// close a cycle in the owner→owner wait-for graph, checked over the whole graph; nothing queued);
/// `UNILOCK_E_INVALID`; `UNILOCK_E_INVALID_RANGE`; `UNILOCK_E_GRACE`, `UNILOCK_E_NO_GRACE`,
/// `UNILOCK_E_RECLAIM_DENIED`, `UNILOCK_E_LIMIT`, `UNILOCK_E_BUSY` as for `unilock_lock`;
/// `UNILOCK_E_STORE` (the client record could not be written, or in shared mode the database could
/// not be read or written; `unilock_errdetail()` gives the SQLite message). Thread-safe; may be
/// called from a callback.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_lock_blocking(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    req: *const unilock_lock_req,
    wait: *const unilock_wait,
    request_id: *mut u64,
    holder: *mut unilock_lock_info,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(owner) = owner_of(try_ref!(owner)) else { return unilock_status::invalid() };
        let r = try_ref!(req);
        let Some(req) = req_of(r) else { return unilock_status::invalid() };
        let w = try_ref!(wait);
        let spec = WaitSpec { token: w.token, user_data: w.user_data as usize, timeout_ms: w.timeout_ms };
        match ul.inner.lock_blocking_with(file, &owner, &req, &spec, flags_of(r)) {
            Ok(Queued::Granted) => unilock_status::UNILOCK_OK,
            Ok(Queued::Pending(id, h)) => {
                put(request_id, id);
                if let Some(h) = h {
                    put_holder(holder, &h);
                }
                unilock_status::UNILOCK_PENDING
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Watches a file: one `UNILOCK_EVENT_WATCH` event the next time one of its locks is released or
/// shrunk, after which the caller retries (Samba's VFS hook, which cannot tell whether a client asked
/// to block, and `lm_notify`/`lock_avail` style servers).
///
/// `token`, `user_data`: echoed in the event. `request_id`: receives the watch's id (for
/// `unilock_cancel`); may be NULL. Returns `UNILOCK_OK`, `UNILOCK_E_INVALID` or `UNILOCK_E_STORE` (shared
/// mode: the database could not be read or written; `unilock_errdetail()` gives the SQLite message).
/// Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_watch(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    token: u64,
    user_data: *mut libc::c_void,
    request_id: *mut u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        match ul.inner.watch(file, token, user_data as usize) {
            Ok(id) => {
                put(request_id, id);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Cancels a queued blocking request or a watch, race-free.
///
/// `outcome`: receives `UNILOCK_CANCELLED` (it was waiting and is gone), `UNILOCK_ALREADY_GRANTED` (the
/// lock was granted first: the caller owns it) or `UNILOCK_ALREADY_ENDED` (it had already failed or
/// fired); may be NULL. In all three cases no event is delivered for the request afterwards, and once
/// this call returns the library never uses the request's `user_data` again. If another thread is
/// delivering the request's event at that moment, this call waits for that callback to return and
/// then answers `UNILOCK_E_NOT_FOUND`.
///
/// Returns `UNILOCK_OK`; `UNILOCK_E_NOT_FOUND` (unknown id, or its event was already delivered —
/// including from inside that event's own callback); `UNILOCK_E_INVALID`; `UNILOCK_E_STORE` (shared mode: the
/// database could not be read or written; `unilock_errdetail()` gives the SQLite message). Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_cancel(ul: *const unilock, request_id: u64, outcome: *mut u32) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        match ul.inner.cancel(request_id) {
            Ok(o) => {
                put(outcome, match o {
                    CancelOutcome::Cancelled => UNILOCK_CANCELLED,
                    CancelOutcome::AlreadyGranted => UNILOCK_ALREADY_GRANTED,
                    CancelOutcome::AlreadyEnded => UNILOCK_ALREADY_ENDED,
                });
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Cancels every waiting request of an open on a file (NLM CANCEL, a client giving up): the requests
/// of its Windows owner (client, owner, open id) and of its POSIX owner (client, owner). No event is
/// delivered for them. Requests already granted are not affected.
///
/// `cancelled`: receives how many were cancelled; may be NULL. Returns `UNILOCK_OK`,
/// `UNILOCK_E_INVALID` or `UNILOCK_E_STORE` (shared mode: the database could not be read or written;
/// `unilock_errdetail()` gives the SQLite message). Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_cancel_owner(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    cancelled: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(owner) = owner_of(try_ref!(owner)) else { return unilock_status::invalid() };
        match ul.inner.cancel_owner(file, &owner) {
            Ok(n) => {
                put(cancelled, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// The pollable descriptor of `UNILOCK_EVENTS_LOOP` mode.
///
/// Level-triggered: readable while events are queued or a timer is due, made unreadable by
/// `unilock_process_events`. Timers are folded in (a timerfd inside an epoll descriptor), so watching
/// this one fd for reading (`tevent_add_fd`, `poll`) is enough; no signals are used. The descriptor
/// belongs to the handle: do not close it. Returns -1 in thread mode or for a NULL handle.
#[no_mangle]
pub extern "C" fn unilock_event_fd(ul: *const unilock) -> i32 {
    boundary! {
        let ul = try_handle!(ul);
        ul.inner.event_fd()
    }
}

/// Runs due timers and delivers every queued event on the calling thread (`UNILOCK_EVENTS_LOOP`
/// mode; harmless in thread mode, where the library thread also does this).
///
/// `delivered`: receives the number of events delivered; may be NULL. Callbacks run inside this call
/// with no internal lock held. Returns `UNILOCK_OK` or `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_process_events(ul: *const unilock, delivered: *mut usize) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        put(delivered, ul.inner.process_events());
        unilock_status::UNILOCK_OK
    }
}

/// How long an event loop may sleep before calling `unilock_process_events`: 0 if work is due now,
/// -1 if nothing is scheduled (wait for the event fd only), otherwise milliseconds.
#[no_mangle]
pub extern "C" fn unilock_next_timeout_ms(ul: *const unilock) -> i64 {
    boundary! {
        let ul = match unsafe { ul.as_ref() } {
            Some(u) => u,
            None => return -1,
        };
        match ul.inner.next_timeout_ms() {
            None => -1,
            Some(ms) => ms.min(i64::MAX as u64) as i64,
        }
    }
}
