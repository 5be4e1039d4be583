//! The pure semantic core of unilock.
//!
//! Everything in `core` is a function from (the current locks of one file, a request) to (a decision,
//! the changes to make). Nothing here reads a clock, spawns a thread, takes a lock, allocates a file or
//! touches SQLite: time comes in as an argument, decisions go out as values ([`Changes`], [`Denied`]).
//! The in-memory table, the SQLite store and the shared multi-process mode all reuse these functions, so
//! each rule exists in exactly one place.
//!
//! Sources: SPEC.md §1–3 (identities, ranges, byte-range locks); Linux `fs/locks.c`
//! (`posix_lock_inode`) for the POSIX flavour; MS-FSA 2.1.5.7 and Samba `brlock.c` for Windows.

pub mod conflict;
pub mod file;
pub mod grace;
pub mod itree;
pub mod lease;
pub mod limits;
pub mod lockset;
pub mod posix;
pub mod range;
pub mod wait;
pub mod windows;

pub use lockset::{Lock, LockId, LockSet};
pub use range::{Range, SPACE_END, TO_EOF};

use smallvec::SmallVec;

/// Lock flavour (SPEC.md §3). POSIX: `fcntl`, NLM, NFSv4 LOCK. Windows: SMB2 LOCK.
///
/// The discriminant is the one wire encoding, written by the store, the shared-state codec and the
/// mailbox alike (`as u8`) and read back with `TryFrom<u8>`, which refuses unknown bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Flavour {
    Posix = 1,
    Windows = 2,
}

impl TryFrom<u8> for Flavour {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(Flavour::Posix),
            2 => Ok(Flavour::Windows),
            _ => Err(v),
        }
    }
}

/// Shared (read) or exclusive (write). Encoded as `Flavour` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LockType {
    Shared = 1,
    Exclusive = 2,
}

impl TryFrom<u8> for LockType {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            1 => Ok(LockType::Shared),
            2 => Ok(LockType::Exclusive),
            _ => Err(v),
        }
    }
}

/// An I/O access for the strict-locking check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// An owner as the table has interned it for one file. Two locks have the same owner iff their
/// `OwnerIdx` are equal. POSIX owners are (client, owner bytes); Windows owners are (client, owner
/// bytes, open id) — see SPEC.md §1; the table interns them with the flavour so a POSIX and a Windows
/// lock never share an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerIdx(pub u32);

/// Why a request was refused. Mapped to a C status in one place (`ffi::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// A conflicting lock is held; the id names it (the holder to report).
    Conflict(LockId),
    /// The range is invalid for the flavour (SPEC.md §2).
    InvalidRange,
    /// A Windows unlock named a range the owner does not hold exactly.
    RangeNotLocked,
}

/// A lock to add, before it has an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewLock {
    pub owner: OwnerIdx,
    pub flavour: Flavour,
    pub kind: LockType,
    pub range: Range,
}

/// What a decision changes in a file's lock set: remove these locks, then add those. Applying a
/// `Changes` is the only way a `LockSet` changes (besides `LockSet::clear`), which keeps every
/// operation atomic: the core computes the whole new state first, and a refused request has no
/// `Changes` at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub removed: SmallVec<[LockId; 4]>,
    pub added: SmallVec<[NewLock; 3]>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}
