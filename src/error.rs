//! The crate's error type: every way a call can fail, mapped to a C status in one place
//! (`ffi::status::status_of`).

use crate::core::{Flavour, LockType};

/// The holder of a conflicting lock, as reported by a refused lock or a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub client: Vec<u8>,
    pub owner: Vec<u8>,
    /// The holder's open id (Windows); 0 for a POSIX holder, whose owner ignores open ids.
    pub open_id: u64,
    pub flavour: Flavour,
    pub kind: LockType,
    pub offset: u64,
    pub length: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A bad argument; the text says which.
    Invalid(&'static str),
    /// An impossible range for the flavour (SPEC.md §2).
    InvalidRange,
    /// A conflicting lock is held.
    Conflict(Box<Holder>),
    /// A Windows unlock of a range the owner does not hold (also: a waiting request whose open closed).
    RangeNotLocked,
    /// Waiting would close a cycle in the wait-for graph.
    Deadlock,
    /// A blocking request waited longer than its timeout.
    Timeout,
    /// No such request (unknown id, or its completion was already delivered).
    NotFound,
    /// Breaks are in progress and the requester cannot wait: retry later (NFS4ERR_DELAY).
    Busy,
    /// A lease acknowledgement with no break in progress.
    NoBreak,
    /// A lease acknowledgement for a state that is not a subset of the break-to state.
    BadAck,
    /// A new lock or lease during the grace period.
    Grace,
    /// A reclaim outside the grace period.
    NoGrace,
    /// A reclaim that does not match the state before the restart.
    ReclaimDenied,
    /// The SQLite store failed or refused the database; the text says why.
    Store(String),
    /// A configured limit was reached: which one.
    Limit(crate::metrics::LimitKind),
    /// The system refused a resource (a descriptor, a thread).
    Resource(&'static str),
}

pub type Result<T> = std::result::Result<T, Error>;
