//! C-visible constants and structs shared by the lock calls.

use crate::core::{Access, Flavour, LockType};
use crate::error::Holder;
use crate::manager::LockReq;
use crate::owners::OwnerRef;
use libc::c_char;

/// `length` value meaning "to the end of the 64-bit offset space" for a POSIX lock (`l_len = 0` in
/// fcntl, `len = 0` in NLM). For a Windows lock a length is always literal.
pub const UNILOCK_TO_EOF: u64 = 0xFFFF_FFFF_FFFF_FFFF;

/// Flavour: POSIX/NLM/NFSv4 locks (merge, split, upgrade; owner = client + owner bytes).
pub const UNILOCK_POSIX: u32 = 1;
/// Flavour: Windows/SMB locks (stacking, exact unlock, zero-length; owner = client + owner + open id).
pub const UNILOCK_WINDOWS: u32 = 2;

/// Lock type: shared (read) lock.
pub const UNILOCK_SHARED: u32 = 1;
/// Lock type: exclusive (write) lock.
pub const UNILOCK_EXCLUSIVE: u32 = 2;

/// I/O access for `unilock_check_io`: a read.
pub const UNILOCK_READ: u32 = 1;
/// I/O access for `unilock_check_io`: a write.
pub const UNILOCK_WRITE: u32 = 2;

/// Largest file id, in bytes.
pub const UNILOCK_FILE_ID_MAX: usize = 128;
/// Largest client id, in bytes (not counting the terminating NUL).
pub const UNILOCK_CLIENT_MAX: usize = 255;
/// Largest owner, in bytes.
pub const UNILOCK_OWNER_MAX: usize = 2048;
/// Length of a canonical file id made by `unilock_file_id_make`.
pub const UNILOCK_FILE_ID_CANONICAL_LEN: usize = 25;
/// Largest element count of one call (`unilock_lock_many`, `unilock_unlock_many`) and largest client
/// list of `unilock_grace_start`; a larger `n` is `UNILOCK_E_INVALID` before anything is read.
pub const UNILOCK_COUNT_MAX: usize = 1 << 20;

/// A lock owner as the caller names it.
///
/// POSIX locks belong to (`client`, `owner`): the open id is ignored (an NLM `svid`+`oh`, an NFSv4
/// lock-owner). Windows locks belong to (`client`, `owner`, `open_id`): two opens of one owner are two
/// owners (Samba's `smblctx` and the open's persistent id). A POSIX and a Windows lock never share an
/// owner, so they conflict by the ordinary rule.
#[repr(C)]
pub struct unilock_owner {
    /// NUL-terminated client id, 1..255 bytes, e.g. "nlm:host42" or "smb:<client-guid>". Not NULL.
    pub client: *const c_char,
    /// Owner bytes (`owner_len` of them; may be NULL when `owner_len` is 0). At most 2048 bytes.
    pub owner: *const u8,
    /// Number of owner bytes.
    pub owner_len: usize,
    /// The open (file handle) the request comes through; used by Windows locks and the I/O check.
    pub open_id: u64,
}

/// One lock request element.
///
/// cbindgen:field-names=[flavour, type, offset, length, flags]
#[repr(C)]
#[derive(Clone, Copy)]
pub struct unilock_lock_req {
    /// `UNILOCK_POSIX` or `UNILOCK_WINDOWS`.
    pub flavour: u32,
    /// `UNILOCK_SHARED` or `UNILOCK_EXCLUSIVE` (ignored by unlock calls).
    pub type_: u32,
    /// First byte.
    pub offset: u64,
    /// Number of bytes; `UNILOCK_TO_EOF` for a POSIX lock to the end; 0 is a zero-length Windows lock.
    pub length: u64,
    /// `UNILOCK_LOCK_*` flags (0 for none). Unknown bits are `UNILOCK_E_INVALID`.
    pub flags: u32,
}

/// `unilock_lock_req.flags`: a reclaim of a lock held before a restart (NLM reclaim, NFSv4 reclaim).
/// Allowed only during the grace period (`UNILOCK_E_NO_GRACE` otherwise) and only if a lock of the
/// same owner and type on the same file covered it before (`UNILOCK_E_RECLAIM_DENIED` otherwise).
pub const UNILOCK_LOCK_RECLAIM: u32 = 0x01;

/// A held lock, as reported by a refused lock, a test, or a listing. All data is copied in: the
/// struct owns no pointers and stays valid after the call.
///
/// cbindgen:field-names=[flavour, type, offset, length, open_id, client_len, owner_len, client, owner]
#[repr(C)]
pub struct unilock_lock_info {
    /// `UNILOCK_POSIX` or `UNILOCK_WINDOWS`.
    pub flavour: u32,
    /// `UNILOCK_SHARED` or `UNILOCK_EXCLUSIVE`.
    pub type_: u32,
    /// First byte.
    pub offset: u64,
    /// Number of bytes; `UNILOCK_TO_EOF` for a POSIX lock that reaches the end of the offset space.
    pub length: u64,
    /// The holder's open id (Windows locks); 0 for POSIX locks, whose owners ignore open ids.
    pub open_id: u64,
    /// Length of `client` (without its NUL).
    pub client_len: usize,
    /// Length of `owner`.
    pub owner_len: usize,
    /// The holder's client id, NUL-terminated.
    pub client: [c_char; 256],
    /// The holder's owner bytes (`owner_len` of them).
    pub owner: [u8; 2048],
}

pub fn flavour_of(v: u32) -> Option<Flavour> {
    match v {
        UNILOCK_POSIX => Some(Flavour::Posix),
        UNILOCK_WINDOWS => Some(Flavour::Windows),
        _ => None,
    }
}

pub fn kind_of(v: u32) -> Option<LockType> {
    match v {
        UNILOCK_SHARED => Some(LockType::Shared),
        UNILOCK_EXCLUSIVE => Some(LockType::Exclusive),
        _ => None,
    }
}

pub fn access_of(v: u32) -> Option<Access> {
    match v {
        UNILOCK_READ => Some(Access::Read),
        UNILOCK_WRITE => Some(Access::Write),
        _ => None,
    }
}

pub fn flavour_to_c(f: Flavour) -> u32 {
    match f {
        Flavour::Posix => UNILOCK_POSIX,
        Flavour::Windows => UNILOCK_WINDOWS,
    }
}

pub fn kind_to_c(k: LockType) -> u32 {
    match k {
        LockType::Shared => UNILOCK_SHARED,
        LockType::Exclusive => UNILOCK_EXCLUSIVE,
    }
}

/// Converts a C request; `None` for an unknown flavour or type.
pub fn req_of(r: &unilock_lock_req) -> Option<LockReq> {
    if r.flags & !UNILOCK_LOCK_RECLAIM != 0 {
        return None;
    }
    Some(LockReq { flavour: flavour_of(r.flavour)?, kind: kind_of(r.type_)?, offset: r.offset, length: r.length })
}

/// The per-call flags of a C request.
pub fn flags_of(r: &unilock_lock_req) -> crate::manager::LockFlags {
    crate::manager::LockFlags { reclaim: r.flags & UNILOCK_LOCK_RECLAIM != 0 }
}

/// Borrows a C owner for the duration of a call; `None` if a pointer is NULL where not allowed.
pub fn owner_of<'a>(o: &'a unilock_owner) -> Option<OwnerRef<'a>> {
    if o.client.is_null() {
        return None;
    }
    // SAFETY: the caller promises a NUL-terminated string that outlives the call.
    let client = unsafe { std::ffi::CStr::from_ptr(o.client) }.to_bytes();
    let owner = super::boundary::bytes(o.owner, o.owner_len, UNILOCK_OWNER_MAX)?;
    Some(OwnerRef { client, owner, open_id: o.open_id })
}

/// Fills a C lock info from a holder.
pub fn fill_info(out: &mut unilock_lock_info, h: &Holder) {
    out.flavour = flavour_to_c(h.flavour);
    out.type_ = kind_to_c(h.kind);
    out.offset = h.offset;
    out.length = h.length;
    out.open_id = h.open_id;
    let n = h.client.len().min(out.client.len() - 1);
    for (d, s) in out.client.iter_mut().zip(&h.client[..n]) {
        *d = *s as c_char;
    }
    out.client[n] = 0;
    out.client_len = n;
    let m = h.owner.len().min(out.owner.len());
    out.owner[..m].copy_from_slice(&h.owner[..m]);
    out.owner_len = m;
}

/// Writes a holder through a nullable out-pointer.
pub fn put_holder(out: *mut unilock_lock_info, h: &Holder) {
    // SAFETY: the caller passes NULL or a pointer to a writable `unilock_lock_info`.
    if let Some(out) = unsafe { out.as_mut() } {
        fill_info(out, h);
    }
}

/// How a blocking request waits.
#[repr(C)]
pub struct unilock_wait {
    /// The caller's token, echoed in the completion. Re-submitting the same request (file, owner, open
    /// id for a Windows lock, flavour, type, offset and length) with the same token is idempotent:
    /// `UNILOCK_PENDING` with the same request id while it waits, `UNILOCK_OK` once granted (until the
    /// owner loses a lock on the file). The token with any other request is a new request, decided on
    /// its own and queued separately: `UNILOCK_OK` always means the lock asked for is held.
    pub token: u64,
    /// Echoed in the completion event; never dereferenced by the library.
    pub user_data: *mut libc::c_void,
    /// Milliseconds to wait before failing with `UNILOCK_E_TIMEOUT`; 0 (or `UINT64_MAX`) waits until
    /// granted or cancelled. A timeout so long that it would pass 2^64 ms also never expires.
    pub timeout_ms: u64,
}
