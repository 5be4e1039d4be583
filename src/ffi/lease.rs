//! Leases, oplocks, delegations and break triggers.

use super::boundary::{put, Fallback};
use super::handle::unilock;
use super::status::{done, status_of, unilock_status};
use super::types::unilock_wait;
use crate::core::lease::{identity, Asks, Key, Kind, Trigger};
use crate::manager::WaitSpec;
use crate::table::{LeaseAnswer, OpenSpec};
use libc::c_char;

/// Lease state: none.
pub const UNILOCK_LEASE_NONE: u32 = 0;
/// Lease state bit: read caching (MS-SMB2 value 0x01).
pub const UNILOCK_LEASE_R: u32 = 0x01;
/// Lease state bit: handle caching (MS-SMB2 value 0x02).
pub const UNILOCK_LEASE_H: u32 = 0x02;
/// Lease state bit: write caching (MS-SMB2 value 0x04).
pub const UNILOCK_LEASE_W: u32 = 0x04;

/// Oplock level II, as a lease state (R).
pub const UNILOCK_OPLOCK_LEVEL_II: u32 = 0x01;
/// Exclusive oplock, as a lease state (RW).
pub const UNILOCK_OPLOCK_EXCLUSIVE: u32 = 0x05;
/// Batch oplock, as a lease state (RWH).
pub const UNILOCK_OPLOCK_BATCH: u32 = 0x07;
/// NFSv4 read delegation, as a lease state (R).
pub const UNILOCK_DELEG_READ: u32 = 0x01;
/// NFSv4 write delegation, as a lease state (RW).
pub const UNILOCK_DELEG_WRITE: u32 = 0x05;

/// `unilock_open_req.lease_kind`: a plain open, no lease.
pub const UNILOCK_LEASE_KIND_NONE: u32 = 0;
/// An SMB2.1/3 lease keyed by `lease_key`, shared by every open of the client with that key.
pub const UNILOCK_LEASE_KIND_LEASE: u32 = 1;
/// An oplock: a keyless lease of this one open (Level II / Exclusive / Batch).
pub const UNILOCK_LEASE_KIND_OPLOCK: u32 = 2;
/// An NFSv4 delegation of the client (one per client and file); only ever granted as a try.
pub const UNILOCK_LEASE_KIND_DELEGATION: u32 = 3;
/// A per-open lease in the shape of Linux `F_SETLEASE` (read = R, write = RW); only ever a try.
pub const UNILOCK_LEASE_KIND_SETLEASE: u32 = 4;

/// Open flag: a stat open (only READ_ATTRIBUTES, WRITE_ATTRIBUTES, SYNCHRONIZE, READ_CONTROL): it
/// breaks nothing, does not prevent W, and never gets an oplock.
pub const UNILOCK_OPEN_STAT: u32 = 0x01;
/// Open flag: opened for writing.
pub const UNILOCK_OPEN_WRITE: u32 = 0x02;
/// Open flag: an overwriting or superseding open (breaks every other lease to none).
pub const UNILOCK_OPEN_OVERWRITE: u32 = 0x04;
/// Open flag: the file is a directory (leases: none, R, RH only).
pub const UNILOCK_OPEN_DIRECTORY: u32 = 0x08;
/// Open flag: the open failed with a sharing violation: break other holders' H and record nothing;
/// retry the open (and the sharing check) once the breaks are done.
pub const UNILOCK_OPEN_SHARING_VIOLATION: u32 = 0x10;
/// Open flag: reclaim a lease or delegation held before a restart (NFSv4 CLAIM_PREVIOUS). SMB clients
/// have no such flag: during grace, a lease request whose key existed before is a reclaim anyway.
pub const UNILOCK_OPEN_RECLAIM: u32 = 0x20;
/// Open flag: `parent_lease_key` is set (SMB2 v2 lease with SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET).
pub const UNILOCK_OPEN_PARENT_KEY: u32 = 0x40;
/// Open flag: this open is a retry, re-issued after the `UNILOCK_EVENT_BREAKS_DONE` of an earlier
/// attempt that answered `UNILOCK_PENDING` (Samba's "not the first open attempt"). A first attempt
/// waits only for holders that must lose what the open cannot share (W; H on a sharing violation),
/// or for breaks already in progress when it breaks nothing; a retry also waits for every lease it
/// breaks that is still breaking (smbtorture `smb2.lease.breaking3`).
pub const UNILOCK_OPEN_RETRY: u32 = 0x80;

/// `unilock_open_result.lease_flags`: the lease is being broken (SMB2_LEASE_FLAG_BREAK_IN_PROGRESS).
pub const UNILOCK_LEASE_FLAG_BREAK_IN_PROGRESS: u32 = 0x02;
/// `unilock_open_result.lease_flags`: `parent_lease_key` holds the lease's parent key
/// (SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET).
pub const UNILOCK_LEASE_FLAG_PARENT_KEY_SET: u32 = 0x04;

/// Trigger: a data write or set-size (R leases of others go to none; W holders must flush first;
/// another client's delegation is recalled and must be returned first).
pub const UNILOCK_TRIGGER_WRITE: u32 = 1;
/// Trigger: truncate / overwrite (every other lease to none).
pub const UNILOCK_TRIGGER_TRUNCATE: u32 = 2;
/// Trigger: delete of the file (others lose H).
pub const UNILOCK_TRIGGER_DELETE: u32 = 3;
/// Trigger: rename of the file (others lose H).
pub const UNILOCK_TRIGGER_RENAME: u32 = 4;
/// Trigger: a directory entry created, deleted, renamed or changed; `file_id` is the directory and
/// `key` the parent lease key of the opener (a lease with that key is not broken).
pub const UNILOCK_TRIGGER_DIR_CHANGE: u32 = 5;
/// Trigger: a byte-range lock (lock calls run this one themselves).
pub const UNILOCK_TRIGGER_BYTE_RANGE_LOCK: u32 = 6;

/// An open, with an optional lease, oplock or delegation request.
///
/// Always initialise with `unilock_open_req_init`, which sets `size` and zeroes the rest, then fill
/// the fields you need. The library reads only the first `size` bytes (and writes only the fields of
/// `unilock_open_result` known to the header `size` comes from), so a program built against an older
/// header keeps working with a newer library.
#[repr(C)]
pub struct unilock_open_req {
    /// `sizeof(unilock_open_req)` as the caller was compiled with; set by `unilock_open_req_init`.
    pub size: usize,
    /// `UNILOCK_LEASE_KIND_*`.
    pub lease_kind: u32,
    /// `UNILOCK_OPEN_*` flags.
    pub flags: u32,
    /// The requested state: `UNILOCK_LEASE_R|H|W` bits (oplock levels and delegation types are such
    /// states). Bits outside R|H|W are `UNILOCK_E_INVALID`; a state without R is granted none (an SMB
    /// lease is still recorded, at none, for its key).
    pub requested: u32,
    /// Lease version, 1 or 2 (epochs are kept for version 2). A lease keeps the version of its first
    /// request.
    pub lease_version: u32,
    /// The client's lease key (`UNILOCK_LEASE_KIND_LEASE`); ignored for other kinds.
    pub lease_key: [u8; 16],
    /// Version 2: the epoch the client sent.
    pub epoch: u32,
    /// Break timeout for this lease in ms; 0 = the handle's `lease_break_timeout_ms`.
    pub break_timeout_ms: u64,
    /// The file's size, for the rule "no R or H while a byte-range lock starts below end of file".
    pub file_size: u64,
    /// Version 2 leases: the parent directory's lease key, used when `UNILOCK_OPEN_PARENT_KEY` is
    /// set; kept with the lease (from its first request) and echoed in every result.
    pub parent_lease_key: [u8; 16],
}

impl Default for unilock_open_req {
    fn default() -> Self {
        unilock_open_req {
            size: std::mem::size_of::<unilock_open_req>(),
            lease_kind: UNILOCK_LEASE_KIND_NONE,
            flags: 0,
            requested: 0,
            lease_version: 1,
            lease_key: [0; 16],
            epoch: 0,
            break_timeout_ms: 0,
            file_size: 0,
            parent_lease_key: [0; 16],
        }
    }
}

/// Fills `*req` for a plain open (no lease) and sets `req->size`: `lease_kind`
/// `UNILOCK_LEASE_KIND_NONE`, `lease_version` 1, every other field 0. Passing NULL does nothing.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn unilock_open_req_init(req: *mut unilock_open_req) {
    boundary! {
        put(req, unilock_open_req::default());
    }
}

/// Reads a caller's request honouring its `size` (as `unilock_config`): fields beyond it keep their
/// defaults; bytes beyond ours must be zero.
fn read_open_req(r: &unilock_open_req) -> Result<unilock_open_req, &'static str> {
    let ours = std::mem::size_of::<unilock_open_req>();
    // The first version of the sized struct ends after `parent_lease_key`; nothing shorter exists.
    if r.size < ours {
        return Err("open request size too small: call unilock_open_req_init");
    }
    let mut out = unilock_open_req::default();
    // SAFETY: the caller promises `size` readable bytes at `r`; we copy at most our own size.
    unsafe {
        std::ptr::copy_nonoverlapping(r as *const _ as *const u8, &mut out as *mut _ as *mut u8, ours);
        if r.size > ours {
            if r.size > (1 << 20) {
                return Err("open request size is implausible");
            }
            let extra = std::slice::from_raw_parts((r as *const _ as *const u8).add(ours), r.size - ours);
            if extra.iter().any(|&b| b != 0) {
                return Err("open request has fields this library does not know");
            }
        }
    }
    Ok(out)
}

/// What an open got.
#[repr(C)]
pub struct unilock_open_result {
    /// The granted state (`UNILOCK_LEASE_*` bits); 0 when none.
    pub state: u32,
    /// The lease epoch after the grant.
    pub epoch: u32,
    /// 1 if the same key is being broken: the open joined the lease and `state` is its current state.
    pub breaking: u32,
    /// The key the lease is known by in break events and acks: the request's key for an SMB lease;
    /// for the keyless kinds one unilock makes: an oplock's is "OPLK", 4 zero bytes, then the open id
    /// (little-endian); a delegation's is "DELG" and 12 zero bytes (one per client and file); a
    /// setlease's is "SETL", 4 zero bytes, then the open id.
    pub lease_key: [u8; 16],
    /// On `UNILOCK_PENDING`: the id of the wait (a `UNILOCK_EVENT_BREAKS_DONE` event follows).
    pub request_id: u64,
    /// The lease's version (that of its first request; an SMB server answers with it); 0 when no
    /// lease is recorded (plain open, oplock, delegation, or none granted to a non-lease kind).
    pub lease_version: u32,
    /// `UNILOCK_LEASE_FLAG_*`: BREAK_IN_PROGRESS (as `breaking`), PARENT_KEY_SET.
    pub lease_flags: u32,
    /// The lease's parent key, valid when `lease_flags` has `UNILOCK_LEASE_FLAG_PARENT_KEY_SET`.
    pub parent_lease_key: [u8; 16],
}

/// Maps an event's lease kind (`None`: not a lease event) to C.
pub fn kind_to_c(k: Option<Kind>) -> u32 {
    match k {
        None => UNILOCK_LEASE_KIND_NONE,
        Some(Kind::Lease) => UNILOCK_LEASE_KIND_LEASE,
        Some(Kind::Oplock) => UNILOCK_LEASE_KIND_OPLOCK,
        Some(Kind::Delegation) => UNILOCK_LEASE_KIND_DELEGATION,
    }
}

fn some((kind, key): (Kind, Key)) -> (Option<Kind>, Key) {
    (Some(kind), key)
}

/// A client id argument: NUL-terminated, 1..255 bytes.
fn cstr<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller promises a NUL-terminated string valid for the call.
    let b = unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes();
    if b.is_empty() || b.len() > crate::table::CLIENT_MAX {
        return None;
    }
    Some(b)
}

fn key_of(p: *const u8) -> Option<Key> {
    if p.is_null() {
        return None;
    }
    let mut k = [0u8; 16];
    // SAFETY: the caller promises 16 readable bytes.
    unsafe { std::ptr::copy_nonoverlapping(p, k.as_mut_ptr(), 16) };
    Some(k)
}

fn wait_of(w: *const unilock_wait) -> Option<WaitSpec> {
    // SAFETY: NULL or a valid `unilock_wait` for the call.
    unsafe { w.as_ref() }.map(|w| WaitSpec { token: w.token, user_data: w.user_data as usize, timeout_ms: 0 })
}

/// Records an open and answers its lease, oplock or delegation request (SMB2 CREATE, NFSv4 OPEN),
/// after running the open's break trigger against every other holder (SPEC.md §4).
///
/// `client`: NUL-terminated client id. `open_id`: the open, unique per client and file. `req`: what
/// is asked. `wait`: non-NULL if the requester can wait for breaks (an SMB open); NULL if it cannot
/// (NFSv4 answers NFS4ERR_DELAY). `out`: the grant (on `UNILOCK_OK`) or the wait id (on
/// `UNILOCK_PENDING`).
///
/// Rules, in short (Samba 4.17 `open.c` decides where MS-SMB2 leaves room): R and H may be held by
/// many keys, W only while no open of another key exists (stat opens do not count, but another
/// key's lease does even if only stat opens hold it); a same-key open joins the lease whatever it
/// asks for and reports its current state, upgrading it only to a valid strict superset that can be
/// granted whole; an SMB lease granted none is still recorded (at none) for its key; next to an
/// oplock a lease gets at most R, an oplock next to an R lease gets Level II and next to an H lease
/// nothing; no R or H while a byte-range lock starts below `file_size` (unless overwriting);
/// directories never get W and never get an oplock (and no lease at all with
/// `UNILOCK_CONFIG_NO_DIRECTORY_LEASES`); a delegation or setlease is granted whole or not at all,
/// never by breaking anything. A new v2 lease starts at `epoch` + 1; a lease keeps the version and
/// parent key of its first request.
///
/// The open's own breaks (SPEC.md §4, Samba `delay_for_oplock`): an open breaks W of other leases
/// (oplocks to Level II), a sharing violation only H (an Exclusive oplock is not broken, a Batch one
/// goes to Level II), an overwrite everything. Delegations and setleases conflict with another
/// client's writing whatever they hold (RFC 7530 §10.4, Linux `break_lease`): an open for writing
/// (`UNILOCK_OPEN_WRITE`, or an overwrite) recalls them, read ones too, and waits for their return; their
/// breaks always need an acknowledgement (DELEGRETURN: `unilock_lease_release`). A first attempt waits for the holders that must lose
/// what it cannot share (W; H on a sharing violation), or for a break already in progress when it
/// breaks nothing; an attempt with `UNILOCK_OPEN_RETRY` also waits for every lease it breaks that is
/// still breaking.
///
/// Returns `UNILOCK_OK` (recorded; `out->state` may be 0); `UNILOCK_PENDING` (breaks must be
/// acknowledged first: nothing recorded; retry the open after `UNILOCK_EVENT_BREAKS_DONE`);
/// `UNILOCK_E_BUSY` (the same, but `wait` was NULL); `UNILOCK_E_INVALID` (NULL argument, unknown kind
/// or flags, state bits outside R|H|W, a lease key that already leases another file for this client);
/// during the grace period `UNILOCK_E_GRACE` (a new lease), `UNILOCK_E_RECLAIM_DENIED` (a reclaim —
/// `UNILOCK_OPEN_RECLAIM`, or a key that existed before — asking for a key or state that did not
/// exist); after it `UNILOCK_E_NO_GRACE` for `UNILOCK_OPEN_RECLAIM`. Plain opens are never refused.
/// With `UNILOCK_OPEN_SHARING_VIOLATION` nothing is ever recorded: `UNILOCK_OK` means no H break was
/// needed and the sharing violation stands. Thread-safe; never sleeps.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_file_open(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const c_char,
    open_id: u64,
    req: *const unilock_open_req,
    wait: *const unilock_wait,
    out: *mut unilock_open_result,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(client) = cstr(client) else { return unilock_status::invalid() };
        let r = match read_open_req(try_ref!(req)) {
            Ok(r) => r,
            Err(why) => return status_of(&crate::error::Error::Invalid(why)),
        };
        const FLAGS: u32 = UNILOCK_OPEN_STAT
            | UNILOCK_OPEN_WRITE
            | UNILOCK_OPEN_OVERWRITE
            | UNILOCK_OPEN_DIRECTORY
            | UNILOCK_OPEN_SHARING_VIOLATION
            | UNILOCK_OPEN_RECLAIM
            | UNILOCK_OPEN_PARENT_KEY
            | UNILOCK_OPEN_RETRY;
        if r.flags & !FLAGS != 0 || r.requested > 0xFF || r.epoch > 0xFFFF {
            return unilock_status::invalid();
        }
        let (kind, key) = match r.lease_kind {
            UNILOCK_LEASE_KIND_NONE => (None, [0u8; 16]),
            UNILOCK_LEASE_KIND_LEASE => some(identity(Asks::Lease(r.lease_key), open_id)),
            UNILOCK_LEASE_KIND_OPLOCK => some(identity(Asks::Oplock, open_id)),
            UNILOCK_LEASE_KIND_DELEGATION => some(identity(Asks::Delegation, open_id)),
            UNILOCK_LEASE_KIND_SETLEASE => some(identity(Asks::SetLease, open_id)),
            _ => return unilock_status::invalid(),
        };
        let spec = OpenSpec {
            kind,
            key,
            requested: r.requested as u8,
            version: if r.lease_version >= 2 { 2 } else { 1 },
            epoch: r.epoch as u16,
            stat: r.flags & UNILOCK_OPEN_STAT != 0,
            write: r.flags & UNILOCK_OPEN_WRITE != 0,
            overwrite: r.flags & UNILOCK_OPEN_OVERWRITE != 0,
            dir: r.flags & UNILOCK_OPEN_DIRECTORY != 0,
            sharing_violation: r.flags & UNILOCK_OPEN_SHARING_VIOLATION != 0,
            reclaim: r.flags & UNILOCK_OPEN_RECLAIM != 0,
            file_size: r.file_size,
            timeout_ms: r.break_timeout_ms,
            retry: r.flags & UNILOCK_OPEN_RETRY != 0,
            parent: (r.flags & UNILOCK_OPEN_PARENT_KEY != 0).then_some(r.parent_lease_key),
        };
        if out.is_null() {
            return unilock_status::invalid();
        }
        let empty = unilock_open_result {
            state: 0,
            epoch: 0,
            breaking: 0,
            lease_key: key,
            request_id: 0,
            lease_version: 0,
            lease_flags: 0,
            parent_lease_key: [0; 16],
        };
        match ul.inner.open_file(file, client, open_id, &spec, wait_of(wait).as_ref()) {
            Ok(LeaseAnswer::Ready(g)) => {
                let mut flags = 0;
                if g.breaking {
                    flags |= UNILOCK_LEASE_FLAG_BREAK_IN_PROGRESS;
                }
                if g.parent.is_some() {
                    flags |= UNILOCK_LEASE_FLAG_PARENT_KEY_SET;
                }
                let lease_version = if kind == Some(Kind::Lease) { g.version as u32 } else { 0 };
                put(
                    out,
                    unilock_open_result {
                        state: g.state as u32,
                        epoch: g.epoch as u32,
                        breaking: g.breaking as u32,
                        lease_version,
                        lease_flags: flags,
                        parent_lease_key: g.parent.unwrap_or([0; 16]),
                        ..empty
                    },
                );
                unilock_status::UNILOCK_OK
            }
            Ok(LeaseAnswer::Pending(id)) => {
                put(out, unilock_open_result { request_id: id, ..empty });
                unilock_status::UNILOCK_PENDING
            }
            Err(e) => status_of(&e),
        }
    }
}

/// Closes an open recorded by `unilock_file_open`. The open's lease (or oplock) goes with the last
/// open that uses it; breaks waited on for it end, and their waiters proceed.
///
/// Returns `UNILOCK_OK`, `UNILOCK_E_NOT_FOUND` (no such open) or `UNILOCK_E_INVALID`. Byte-range locks
/// of the open are released separately (`unilock_release_open`).
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_file_close(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const c_char,
    open_id: u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(client) = cstr(client) else { return unilock_status::invalid() };
        done(ul.inner.close_file(file, client, open_id))
    }
}

/// Acknowledges a lease break (SMB2 LEASE_BREAK_ACK, oplock break ack).
///
/// `file_id`: the file, or NULL (with `file_id_len` 0) for an SMB lease, whose key names one file
/// per client (an SMB2 LEASE_BREAK_ACK carries only the client and the key); oplocks, delegations
/// and setleases need the file (their keys are per file). `key`: 16 bytes, as in the break event.
/// `state`: the acknowledged state, any subset of the break-to state. Acknowledging none leaves the lease holding nothing: it stays known (at none) while
/// it has opens, so a later ack answers `UNILOCK_E_NO_BREAK`, and goes with its last open (a
/// delegation goes at once). If the lease must go lower still (a second trigger came during the
/// break), a further break event follows with the same epoch.
///
/// Returns `UNILOCK_OK`; `UNILOCK_E_NOT_FOUND` (unknown key, or a key of another client);
/// `UNILOCK_E_NO_BREAK` (no break in progress: a second ack, an ack after the timeout, an ack of an
/// R→none break); `UNILOCK_E_BAD_ACK` (not a subset of the break-to state); `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_lease_ack(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const c_char,
    key: *const u8,
    state: u32,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = if file_id.is_null() && file_id_len == 0 { None } else { Some(try_bytes!(file_id, file_id_len)) };
        let Some(client) = cstr(client) else { return unilock_status::invalid() };
        let Some(key) = key_of(key) else { return unilock_status::invalid() };
        if state > 0xFF {
            return unilock_status::invalid();
        }
        done(match file {
            Some(f) => ul.inner.lease_ack(f, client, &key, state as u8),
            None => ul.inner.lease_ack_by_key(client, &key, state as u8),
        })
    }
}

/// Gives a lease back at once (NFSv4 DELEGRETURN, `F_SETLEASE` with `F_UNLCK`).
///
/// Returns `UNILOCK_OK`, `UNILOCK_E_NOT_FOUND` or `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_lease_release(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const c_char,
    key: *const u8,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(client) = cstr(client) else { return unilock_status::invalid() };
        let Some(key) = key_of(key) else { return unilock_status::invalid() };
        done(ul.inner.lease_release(file, client, &key))
    }
}

/// Reports activity that breaks other holders' leases, from any protocol (an NFS write, an SMB
/// delete, a rename, a directory change). The requester's own lease (same client and key, or the
/// delegation's own client) is never broken.
///
/// `client`: the requester. `key`: its lease key (16 bytes; the parent key for
/// `UNILOCK_TRIGGER_DIR_CHANGE`), or NULL. `trigger`: `UNILOCK_TRIGGER_*`. `wait`: non-NULL if the
/// requester can wait. `request_id`: on `UNILOCK_PENDING`, the wait's id; may be NULL.
///
/// Returns `UNILOCK_OK` (proceed: no break needs an ack first; R→none breaks already took effect);
/// `UNILOCK_PENDING` (a `UNILOCK_EVENT_BREAKS_DONE` event follows once the breaks are acknowledged,
/// released or timed out); `UNILOCK_E_BUSY` (the same, `wait` NULL); `UNILOCK_E_INVALID`.
///
/// Also returns `UNILOCK_E_STORE` (the database failed, in shared mode or with `db_path`;
/// `unilock_errdetail()` says why), `UNILOCK_E_MISUSE` (the handle is used in a child after fork()).
#[no_mangle]
pub extern "C" fn unilock_break_trigger(
    ul: *const unilock,
    file_id: *const u8,
    file_id_len: usize,
    client: *const c_char,
    key: *const u8,
    trigger: u32,
    wait: *const unilock_wait,
    request_id: *mut u64,
) -> unilock_status {
    boundary! {
        let ul = try_handle!(ul);
        let file = try_bytes!(file_id, file_id_len);
        let Some(client) = cstr(client) else { return unilock_status::invalid() };
        let key = key_of(key);
        let t = match trigger {
            UNILOCK_TRIGGER_WRITE => Trigger::Write,
            UNILOCK_TRIGGER_TRUNCATE => Trigger::Overwrite,
            UNILOCK_TRIGGER_DELETE | UNILOCK_TRIGGER_RENAME => Trigger::DeleteRename,
            UNILOCK_TRIGGER_DIR_CHANGE => Trigger::DirChange,
            UNILOCK_TRIGGER_BYTE_RANGE_LOCK => Trigger::ByteRangeLock,
            _ => return unilock_status::invalid(),
        };
        match ul.inner.lease_trigger(file, client, key.as_ref(), t, wait_of(wait).as_ref()) {
            Ok(LeaseAnswer::Ready(_)) => unilock_status::UNILOCK_OK,
            Ok(LeaseAnswer::Pending(id)) => {
                put(request_id, id);
                unilock_status::UNILOCK_PENDING
            }
            Err(e) => status_of(&e),
        }
    }
}
