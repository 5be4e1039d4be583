//! Byte-range lock calls.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{status_of, unilock_status};
use super::types::*;
use crate::error::Error;

/// Converts the common leading arguments of a lock call, returning `UNILOCK_E_INVALID` on NULLs.
macro_rules! args {
    ($ul:expr, $file:expr, $file_len:expr, $owner:expr) => {{
        let ul = try_handle!($ul);
        let file = try_bytes!($file, $file_len);
        let owner = match owner_of(try_ref!($owner)) {
            Some(o) => o,
            None => return unilock_status::invalid(),
        };
        (&ul.inner, file, owner)
    }};
}

fn result(r: Result<(), Error>, holder: *mut unilock_lock_info) -> unilock_status {
    match r {
        Ok(()) => unilock_status::UNILOCK_OK,
        Err(e) => {
            if let Error::Conflict(h) = &e {
                put_holder(holder, h);
            }
            status_of(&e)
        }
    }
}

/// Takes one byte-range lock without waiting.
///
/// `ul`: the handle. `file_id`, `file_id_len`: the file, 1..128 opaque bytes (see
/// `unilock_file_id_make`). `owner`: who locks (see `unilock_owner`). `req`: flavour, type and range.
/// `holder`: may be NULL; on `UNILOCK_E_CONFLICT` receives the conflicting lock and its owner.
///
/// POSIX flavour: replaces the owner's own locks on those bytes, merging touching locks of the same type
/// and splitting locks of the other type; an upgrade or downgrade is granted whole or not at all.
/// Windows flavour: adds one lock; an open may stack shared locks and take shared locks inside its own
/// exclusive lock, but an exclusive lock may not overlap any lock of another owner or of its own.
///
/// Returns `UNILOCK_OK` (granted); `UNILOCK_E_CONFLICT` (refused, nothing changed); `UNILOCK_E_INVALID`
/// (NULL argument, bad file id, client or owner length, unknown flavour, type or flag);
/// `UNILOCK_E_INVALID_RANGE` (POSIX length 0, or an end beyond 2^64); `UNILOCK_E_GRACE` (grace period:
/// only reclaims); `UNILOCK_E_NO_GRACE`, `UNILOCK_E_RECLAIM_DENIED` (a reclaim, see
/// `UNILOCK_LOCK_RECLAIM`); `UNILOCK_E_BUSY` (another client's write-caching lease on the file is being
/// broken: retry); `UNILOCK_E_STORE` (the client record could not be written).
///
/// Never sleeps waiting for another owner. Thread-safe; may be called from a unilock callback.
///
/// Also returns `UNILOCK_E_LIMIT` (a configured lock limit; `unilock_errdetail()` says which),
/// `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_lock(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    req: *const unilock_lock_req,
    holder: *mut unilock_lock_info,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        let r = try_ref!(req);
        let Some(req) = req_of(r) else { return unilock_status::invalid() };
        result(m.lock_with(file, &owner, &req, flags_of(r)), holder)
    }
}

/// Releases a byte range.
///
/// `flavour`: `UNILOCK_POSIX` or `UNILOCK_WINDOWS`; `offset`, `length`: the range (as in
/// `unilock_lock_req`).
///
/// POSIX: removes exactly those bytes from the owner's locks, splitting locks as needed; unlocking bytes
/// that are not locked succeeds. Windows: removes one lock of the open with exactly this offset and
/// length (an exclusive one first if both kinds exist).
///
/// Returns `UNILOCK_OK`; `UNILOCK_E_RANGE_NOT_LOCKED` (Windows: no such lock); `UNILOCK_E_INVALID`;
/// `UNILOCK_E_INVALID_RANGE`; `UNILOCK_E_STORE` (shared mode: the database could not be read or written;
/// `unilock_errdetail()` gives the SQLite message). Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_unlock(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    flavour: u32,
    offset: u64,
    length: u64,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        let Some(flavour) = flavour_of(flavour) else { return unilock_status::invalid() };
        result(m.unlock(file, &owner, flavour, offset, length), std::ptr::null_mut())
    }
}

/// Tests whether a lock would be granted (`F_GETLK`, NLM TEST, NFSv4 LOCKT), changing nothing.
///
/// Arguments as for `unilock_lock`. Returns `UNILOCK_OK` if `unilock_lock` with the same arguments would
/// be granted now, or `UNILOCK_E_CONFLICT` with one conflicting lock written to `holder` (if not NULL);
/// `UNILOCK_E_INVALID`; `UNILOCK_E_INVALID_RANGE`; `UNILOCK_E_STORE` (shared mode: the database could not be
/// read or written; `unilock_errdetail()` gives the SQLite message): a test that could not read the
/// table never answers `UNILOCK_OK`. A test and a non-blocking lock always agree.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_test(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    req: *const unilock_lock_req,
    holder: *mut unilock_lock_info,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        let Some(req) = req_of(try_ref!(req)) else { return unilock_status::invalid() };
        match m.test(file, &owner, &req) {
            Ok(None) => unilock_status::UNILOCK_OK,
            Ok(Some(h)) => {
                put_holder(holder, &h);
                unilock_status::UNILOCK_E_CONFLICT
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Converts C elements; on an unknown flavour, type or flag, `Err(index)` of the first bad one.
fn reqs(elems: *const unilock_lock_req, n: usize) -> Result<Vec<crate::manager::LockReq>, usize> {
    if elems.is_null() || n == 0 || n > UNILOCK_COUNT_MAX {
        return Err(0);
    }
    // SAFETY: the caller promises `n` readable elements at `elems` (n is bounded above).
    let s = unsafe { std::slice::from_raw_parts(elems, n) };
    s.iter().enumerate().map(|(i, e)| req_of(e).ok_or(i)).collect()
}

/// Takes several locks atomically: all are granted or none (an SMB2 LOCK request with several
/// elements).
///
/// `elems`, `n`: the elements (n >= 1), all of one flavour. `failed_index`: may be NULL; on failure
/// receives the index of the element that failed. `holder`: may be NULL; on `UNILOCK_E_CONFLICT`
/// receives the conflicting lock.
///
/// Elements are applied in order under one lock of the file; if one fails, those already taken are
/// undone before the call returns, so no other caller ever sees a partial grant. Returns as
/// `unilock_lock`; `UNILOCK_E_INVALID` also for n = 0, n > `UNILOCK_COUNT_MAX`, NULL `elems` or mixed
/// flavours.
///
/// Also returns `UNILOCK_OK` (success), `UNILOCK_E_INVALID_RANGE` (an impossible range for its flavour),
/// `UNILOCK_E_GRACE` (during the grace period, a new lock), `UNILOCK_E_NO_GRACE` (a reclaim after the grace
/// period), `UNILOCK_E_RECLAIM_DENIED` (a reclaim of what did not exist before the restart),
/// `UNILOCK_E_BUSY` (another client's write-caching lease is being broken: retry), `UNILOCK_E_LIMIT` (a
/// configured lock limit; `unilock_errdetail()` says which), `UNILOCK_E_STORE` (the database failed, in
/// shared mode or with `db_path`; `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used
/// in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_lock_many(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    elems: *const unilock_lock_req,
    n: usize,
    failed_index: *mut usize,
    holder: *mut unilock_lock_info,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        let reqs = match reqs(elems, n) {
            Ok(r) => r,
            Err(i) => {
                if !elems.is_null() && n > 0 && n <= UNILOCK_COUNT_MAX {
                    put(failed_index, i);
                } else if n > UNILOCK_COUNT_MAX {
                    super::status::set_detail("too many elements (more than UNILOCK_COUNT_MAX)");
                }
                return unilock_status::invalid();
            }
        };
        // SAFETY: `reqs` checked `elems` for NULL and `n` for 0.
        let first = unsafe { &*elems };
        // SAFETY: the caller promises `n` readable elements.
        let all = unsafe { std::slice::from_raw_parts(elems, n) };
        if let Some(i) = all.iter().position(|e| e.flags != first.flags) {
            put(failed_index, i);
            return unilock_status::invalid();
        }
        match m.lock_many_with(file, &owner, &reqs, flags_of(first)) {
            Ok(()) => unilock_status::UNILOCK_OK,
            Err((i, e)) => {
                put(failed_index, i);
                result(Err(e), holder)
            }
        }
    }
}

/// Releases several ranges in order, stopping at the first error (SMB2 LOCK with unlock elements).
///
/// `elems`, `n`: the ranges (`type` is ignored), 1 <= n <= `UNILOCK_COUNT_MAX`. `failed_index`: may be
/// NULL; on failure receives the index of the element that failed; elements before it stay unlocked.
/// Returns as `unilock_unlock`; `UNILOCK_E_INVALID` also for n = 0, n > `UNILOCK_COUNT_MAX` or NULL
/// `elems` (nothing is unlocked then).
///
/// Also returns `UNILOCK_OK` (success), `UNILOCK_E_RANGE_NOT_LOCKED` (a Windows unlock of a range not held
/// exactly), `UNILOCK_E_INVALID_RANGE` (an impossible range for its flavour), `UNILOCK_E_STORE` (the
/// database failed, in shared mode or with `db_path`; `unilock_errdetail()` says why), `UNILOCK_E_MISUSE`
/// (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_unlock_many(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    elems: *const unilock_lock_req,
    n: usize,
    failed_index: *mut usize,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        if elems.is_null() || n == 0 {
            return unilock_status::invalid();
        }
        if n > UNILOCK_COUNT_MAX {
            super::status::set_detail("too many elements (more than UNILOCK_COUNT_MAX)");
            return unilock_status::invalid();
        }
        // SAFETY: the caller promises `n` readable elements at `elems` (n is bounded above).
        let s = unsafe { std::slice::from_raw_parts(elems, n) };
        let mut rs = Vec::with_capacity(n);
        for (i, e) in s.iter().enumerate() {
            let Some(f) = flavour_of(e.flavour) else {
                put(failed_index, i);
                return unilock_status::invalid();
            };
            rs.push(crate::manager::LockReq { flavour: f, kind: crate::core::LockType::Shared, offset: e.offset, length: e.length });
        }
        match m.unlock_many(file, &owner, &rs) {
            Ok(()) => unilock_status::UNILOCK_OK,
            Err((i, e)) => {
                put(failed_index, i);
                status_of(&e)
            }
        }
    }
}

/// The strict-locking check for one read or write (Samba `strict_lock_check`): cheap and read-only.
///
/// `owner`: the open doing the I/O. `access`: `UNILOCK_READ` or `UNILOCK_WRITE`. `offset`, `length`:
/// the bytes read or written (a zero length is always allowed).
///
/// Returns `UNILOCK_OK` if the I/O may proceed; `UNILOCK_E_CONFLICT` if another owner holds an
/// overlapping exclusive lock, or (for a write) any overlapping lock, or the open writes through its
/// own Windows shared lock. The open's own POSIX locks (client, owner) never refuse its I/O.
/// `UNILOCK_E_INVALID`, `UNILOCK_E_INVALID_RANGE` as usual; `UNILOCK_E_STORE` (shared mode: the database
/// could not be read or written; `unilock_errdetail()` gives the SQLite message). Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_check_io(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    access: u32,
    offset: u64,
    length: u64,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        let Some(access) = access_of(access) else { return unilock_status::invalid() };
        result(m.check_io(file, &owner, access, offset, length), std::ptr::null_mut())
    }
}

/// Releases what an open holds on a file when it is closed: the Windows locks of (client, owner,
/// open id) and the POSIX locks of (client, owner).
///
/// `released`: may be NULL; receives the number of locks released. Returns `UNILOCK_OK` (also when
/// nothing was held), `UNILOCK_E_INVALID` or `UNILOCK_E_STORE` (shared mode: the database could not be read
/// or written; `unilock_errdetail()` gives the SQLite message). Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_release_open(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    owner: *const unilock_owner,
    released: *mut usize,
) -> unilock_status {
    boundary! {
        let (m, file, owner) = args!(ul, file_id, file_id_len, owner);
        match m.release_open(file, &owner) {
            Ok(n) => {
                put(released, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Releases every lock of a client on every file (the client is gone).
///
/// `client`: NUL-terminated client id. `released`: may be NULL; receives the number of locks released.
/// Returns `UNILOCK_OK`, `UNILOCK_E_INVALID` or `UNILOCK_E_STORE` (shared mode: the database could not be
/// read or written; `unilock_errdetail()` gives the SQLite message). Walks every file; not for the hot
/// path. Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_release_client(
    ul: *const unilock,
    client: *const libc::c_char,
    released: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        if client.is_null() {
            return unilock_status::invalid();
        }
        // SAFETY: the caller promises a NUL-terminated string.
        let c = unsafe { std::ffi::CStr::from_ptr(client) }.to_bytes();
        match ul.inner.release_client(c) {
            Ok(n) => {
                put(released, n);
                unilock_status::UNILOCK_OK
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Visits one lock of a listing. `lock` is valid only during the call. Return 0 to continue, non-zero
/// to stop the listing.
pub type unilock_lock_visit_fn =
    Option<unsafe extern "C" fn(user_data: *mut libc::c_void, lock: *const unilock_lock_info) -> i32>;

/// Lists the locks of a file, sorted by offset.
///
/// Takes a snapshot of the file's locks, then calls `visit` once per lock on the calling thread, after
/// every internal lock is released (so `visit` may call back into unilock). `visit` may be NULL to only
/// count. `count`: may be NULL; receives the number of locks in the snapshot.
///
/// Returns `UNILOCK_OK`, `UNILOCK_E_INVALID` or `UNILOCK_E_STORE` (shared mode: the database could not be
/// read or written; `unilock_errdetail()` gives the SQLite message): a listing that could not read the
/// table never reports "no locks". Thread-safe.
///
/// Also returns `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_list_locks(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    visit: unilock_lock_visit_fn,
    user_data: *mut libc::c_void,
    count: *mut usize,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let locks = match ul.inner.list(file) {
            Ok(l) => l,
            Err(e) => return status_of(&e),
        };
        put(count, locks.len());
        if let Some(visit) = visit {
            let mut info: Box<unilock_lock_info> = Box::new(unsafe { std::mem::zeroed() });
            for h in &locks {
                fill_info(&mut info, h);
                // SAFETY: the host registered `visit` for this call shape; `info` outlives the call.
                if unsafe { visit(user_data, &*info) } != 0 {
                    break;
                }
            }
        }
        unilock_status::UNILOCK_OK
    }
}
