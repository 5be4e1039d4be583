//! Conflict rules (SPEC.md §3): small predicates, and the searches that combine them.
//!
//! Two locks conflict when their ranges overlap, their owners differ, and at least one is exclusive.
//! POSIX and Windows locks share one table and never share an owner, so cross-flavour locks conflict by
//! that rule alone. Windows adds rules for an owner's own locks (MS-FSA 2.1.5.7, Samba `brl_conflict`):
//! an exclusive request conflicts with *any* overlapping lock of the same owner, while a shared request
//! may stack on the owner's own shared or exclusive locks.
//!
//! POSIX adds one rule for the merge (see `core::posix`): a POSIX request that touches a same-type lock
//! of its owner at X merges with it into one lock that contains X strictly, so it is refused by another
//! owner's zero-length lock at X whenever that lock's type conflicts with it. Without this rule the
//! merged lock and the zero-length lock would both be held and conflict by the overlap rule above.

use super::lockset::{LockId, LockSet};
use super::range::{overlaps, Range};
use super::{Access, Flavour, LockType, OwnerIdx};

/// At least one of the two is exclusive (`locks_conflict` in `fs/locks.c`).
#[inline]
pub fn types_conflict(a: LockType, b: LockType) -> bool {
    a == LockType::Exclusive || b == LockType::Exclusive
}

/// The first held lock that refuses a request of `owner` for `kind` on `range` under `flavour`'s
/// rules, or `None` if the request can be granted. A test (`F_GETLK`, NLM TEST) and a non-blocking lock
/// use this same function, so they always agree.
pub fn find_conflict(
    set: &LockSet,
    owner: OwnerIdx,
    flavour: Flavour,
    kind: LockType,
    range: &Range,
) -> Option<LockId> {
    let (lo, hi) = (range.start as u128, range.search_end());
    // Windows: an exclusive request may not overlap any lock of its own owner.
    if flavour == Flavour::Windows && kind == LockType::Exclusive {
        if let Some(id) = set.of_owner(owner).find(lo, hi, |id| overlaps(&set.get(id).range, range)) {
            return Some(id);
        }
    }
    let other = |id: LockId| {
        let l = set.get(id);
        l.owner != owner && overlaps(&l.range, range)
    };
    // Exclusive locks conflict with every request of another owner.
    if let Some(id) = set.exclusive().find(lo, hi, other) {
        return Some(id);
    }
    // Shared locks conflict only with an exclusive request.
    if kind == LockType::Exclusive {
        if let Some(id) = set.shared().find(lo, hi, other) {
            return Some(id);
        }
    }
    if flavour == Flavour::Posix {
        let mut hit = None;
        for_each_seam_conflict(set, owner, kind, range, |id| {
            if hit.is_none() {
                hit = Some(id);
            }
        });
        return hit;
    }
    None
}

/// The POSIX merge rule: calls `f` for every zero-length lock of another owner that sits where the
/// request touches a same-type lock of its owner (its start, or its end) and whose type conflicts
/// with `kind`. The merged lock would contain such a lock strictly.
pub fn for_each_seam_conflict(
    set: &LockSet,
    owner: OwnerIdx,
    kind: LockType,
    range: &Range,
    mut f: impl FnMut(LockId),
) {
    if range.is_empty() {
        return;
    }
    let mut seams: [Option<u64>; 2] = [None, None];
    if range.start > 0 {
        let at = range.start as u128;
        let touches = set.of_owner(owner).find(at - 1, at, |id| {
            let l = set.get(id);
            l.flavour == Flavour::Posix && l.kind == kind && l.range.end == at
        });
        if touches.is_some() {
            seams[0] = Some(range.start);
        }
    }
    if range.end < super::range::SPACE_END {
        let at = range.end;
        let touches = set.of_owner(owner).find(at, at + 1, |id| {
            let l = set.get(id);
            l.flavour == Flavour::Posix && l.kind == kind && l.range.start as u128 == at
        });
        if touches.is_some() {
            seams[1] = Some(at as u64);
        }
    }
    for x in seams.into_iter().flatten() {
        let (lo, hi) = (x as u128, x as u128 + 1);
        let zero = |id: LockId| {
            let l = set.get(id);
            l.owner != owner && l.range.is_empty() && l.range.start == x
        };
        set.exclusive().for_each_overlapping(lo, hi, |id| {
            if zero(id) {
                f(id)
            }
        });
        if kind == LockType::Exclusive {
            set.shared().for_each_overlapping(lo, hi, |id| {
                if zero(id) {
                    f(id)
                }
            });
        }
    }
}

/// Calls `f` for every held lock of *another* owner that conflicts with the request (exhaustive: the
/// deadlock check needs every blocking owner). A Windows request's conflicts with its own open's locks
/// are not owner→owner edges and are not reported here.
pub fn for_each_conflict(
    set: &LockSet,
    owner: OwnerIdx,
    flavour: Flavour,
    kind: LockType,
    range: &Range,
    mut f: impl FnMut(LockId),
) {
    let (lo, hi) = (range.start as u128, range.search_end());
    let mut other = |id: LockId| {
        let l = set.get(id);
        if l.owner != owner && overlaps(&l.range, range) {
            f(id);
        }
    };
    set.exclusive().for_each_overlapping(lo, hi, &mut other);
    if kind == LockType::Exclusive {
        set.shared().for_each_overlapping(lo, hi, &mut other);
    }
    if flavour == Flavour::Posix {
        for_each_seam_conflict(set, owner, kind, range, f);
    }
}

/// The strict-locking I/O check (SPEC.md §3, Samba `brl_conflict_other`): a read or write of `range`
/// by an open is refused if another owner holds an overlapping exclusive lock, or (for a write) any
/// overlapping lock of another owner, or the open writes through its own Windows shared lock.
/// `posix_self` and `windows_self` are the probe's identities as a POSIX owner (client, owner) and as a
/// Windows owner (client, owner, open id); locks of either are the probe's own. Own POSIX locks never
/// refuse I/O (POSIX locks are advisory to their owner). A zero-length I/O is always allowed.
pub fn check_io(
    set: &LockSet,
    posix_self: Option<OwnerIdx>,
    windows_self: Option<OwnerIdx>,
    access: Access,
    range: &Range,
) -> Option<LockId> {
    if range.is_empty() {
        return None;
    }
    let (lo, hi) = (range.start as u128, range.end);
    let is_self = |o: OwnerIdx| Some(o) == posix_self || Some(o) == windows_self;
    let other = |id: LockId| {
        let l = set.get(id);
        !is_self(l.owner) && overlaps(&l.range, range)
    };
    if let Some(id) = set.exclusive().find(lo, hi, other) {
        return Some(id);
    }
    if access == Access::Write {
        if let Some(id) = set.shared().find(lo, hi, |id| {
            let l = set.get(id);
            overlaps(&l.range, range) && (!is_self(l.owner) || Some(l.owner) == windows_self)
        }) {
            return Some(id);
        }
    }
    None
}
