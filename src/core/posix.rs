//! POSIX-flavour byte-range locks (SPEC.md §3; Linux `fs/locks.c` `posix_lock_inode`), computed as
//! values: the new lock set of the owner is worked out in full and returned as `Changes`, so an upgrade
//! or downgrade of a sub-range is granted whole or not at all.
//!
//! Order, as in `posix_lock_inode`: (1) look for a conflicting lock of another owner and refuse;
//! (2) walk the owner's locks that overlap or touch the request; (3) same-type neighbours merge into the
//! new lock; (4) different-type locks that overlap are cut, keeping their left and right remnants.
//!
//! Merging across another owner's zero-length (Windows) lock at the seam: Samba's `brl_lock_posix`
//! merges, because a zero-length lock covers no byte. unilock merges too, except when the merged lock
//! would contain the zero-length lock strictly and their types conflict (SPEC.md §2–3: a zero-length
//! lock at X overlaps a range strictly around X): then the request is refused with the zero-length lock
//! as the holder (`conflict::for_each_seam_conflict`, so a test, a non-blocking lock and a waiting one
//! all agree). The table never holds two conflicting locks, and an owner's same-type POSIX locks still
//! never touch, so the result does not depend on the order the locks came in.

use super::conflict::find_conflict;
use super::lockset::{LockId, LockSet};
use super::range::{overlaps, overlaps_or_touches, Range};
use super::{Changes, Denied, Flavour, LockType, NewLock, OwnerIdx};

/// The id of a conflicting lock of another owner, if any (`F_GETLK`, NLM TEST).
pub fn test(set: &LockSet, owner: OwnerIdx, kind: LockType, range: &Range) -> Option<LockId> {
    find_conflict(set, owner, Flavour::Posix, kind, range)
}

/// Sets `kind` on `range` for `owner`: replaces the owner's own locks on those bytes, merges touching
/// same-type locks, splits different-type ones. Refused with the holder if another owner conflicts.
pub fn lock(set: &LockSet, owner: OwnerIdx, kind: LockType, range: &Range) -> Result<Changes, Denied> {
    debug_assert!(!range.is_empty());
    if let Some(id) = test(set, owner, kind, range) {
        return Err(Denied::Conflict(id));
    }
    let mut c = Changes::default();
    let mut merged = *range;
    // Search [start-1, end+1) so locks that only touch the request are seen too.
    let lo = (range.start as u128).saturating_sub(1);
    set.of_owner(owner).for_each_overlapping(lo, range.end + 1, |id| {
        let l = set.get(id);
        if !overlaps_or_touches(&l.range, range) {
            return;
        }
        if l.kind == kind {
            merged.start = merged.start.min(l.range.start);
            merged.end = merged.end.max(l.range.end);
            c.removed.push(id);
        } else if overlaps(&l.range, range) {
            c.removed.push(id);
            push_remnants(&mut c, l.owner, l.kind, &l.range, range);
        }
    });
    c.added.push(NewLock { owner, flavour: Flavour::Posix, kind, range: merged });
    Ok(c)
}

/// Removes exactly the bytes of `range` from the owner's locks, splitting as needed. Unlocking bytes
/// that are not locked is not an error (the result is then empty).
pub fn unlock(set: &LockSet, owner: OwnerIdx, range: &Range) -> Changes {
    let mut c = Changes::default();
    set.of_owner(owner).for_each_overlapping(range.start as u128, range.end, |id| {
        let l = set.get(id);
        if overlaps(&l.range, range) {
            c.removed.push(id);
            push_remnants(&mut c, l.owner, l.kind, &l.range, range);
        }
    });
    c
}

/// The parts of `old` left of and right of `cut`, kept with their type.
fn push_remnants(c: &mut Changes, owner: OwnerIdx, kind: LockType, old: &Range, cut: &Range) {
    if old.start < cut.start {
        let r = Range::new(old.start, cut.start as u128);
        c.added.push(NewLock { owner, flavour: Flavour::Posix, kind, range: r });
    }
    if old.end > cut.end {
        // cut.end < old.end <= 2^64, so it fits in u64.
        let r = Range::new(cut.end as u64, old.end);
        c.added.push(NewLock { owner, flavour: Flavour::Posix, kind, range: r });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::range::SPACE_END;
    use LockType::*;

    const A: OwnerIdx = OwnerIdx(0);
    const B: OwnerIdx = OwnerIdx(1);

    fn r(s: u64, e: u128) -> Range {
        Range::new(s, e)
    }

    fn take(set: &mut LockSet, o: OwnerIdx, k: LockType, rg: Range) -> Result<(), Denied> {
        let c = lock(set, o, k, &rg)?;
        set.apply(&c);
        set.check();
        Ok(())
    }

    fn owned(set: &LockSet, o: OwnerIdx) -> Vec<(u64, u128, LockType)> {
        let mut v: Vec<_> =
            set.iter().filter(|(_, l)| l.owner == o).map(|(_, l)| (l.range.start, l.range.end, l.kind)).collect();
        v.sort();
        v
    }

    #[test]
    fn merge_touching_same_type() {
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(0, 10)).unwrap();
        take(&mut s, A, Shared, r(10, 20)).unwrap();
        take(&mut s, A, Shared, r(30, 40)).unwrap();
        assert_eq!(owned(&s, A), vec![(0, 20, Shared), (30, 40, Shared)]);
        take(&mut s, A, Shared, r(15, 35)).unwrap();
        assert_eq!(owned(&s, A), vec![(0, 40, Shared)]);
    }

    #[test]
    fn upgrade_subrange_splits() {
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(0, 100)).unwrap();
        take(&mut s, A, Exclusive, r(40, 60)).unwrap();
        assert_eq!(owned(&s, A), vec![(0, 40, Shared), (40, 60, Exclusive), (60, 100, Shared)]);
        // Downgrade back merges everything again.
        take(&mut s, A, Shared, r(40, 60)).unwrap();
        assert_eq!(owned(&s, A), vec![(0, 100, Shared)]);
    }

    #[test]
    fn upgrade_is_atomic() {
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(0, 100)).unwrap();
        take(&mut s, B, Shared, r(90, 95)).unwrap();
        let before = owned(&s, A);
        assert!(matches!(lock(&s, A, Exclusive, &r(0, 100)), Err(Denied::Conflict(_))));
        assert_eq!(owned(&s, A), before);
    }

    #[test]
    fn unlock_splits_and_ignores_unlocked() {
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(0, SPACE_END)).unwrap();
        s.apply(&unlock(&s, A, &r(10, 20)));
        assert_eq!(owned(&s, A), vec![(0, 10, Exclusive), (20, SPACE_END, Exclusive)]);
        let c = unlock(&s, A, &r(12, 18));
        assert!(c.is_empty());
        s.apply(&unlock(&s, A, &r(0, SPACE_END)));
        assert!(s.is_empty());
    }

    #[test]
    fn merge_across_another_owners_zero_length_lock_only_without_conflict() {
        // Touching same-type locks merge across another owner's zero-length lock at the seam, as
        // Samba's brl_lock_posix does, when the merged lock does not conflict with it: shared over shared.
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(2, 6)).unwrap();
        let c = crate::core::windows::lock(&s, B, Shared, &Range::new(6, 6)).unwrap();
        s.apply(&c);
        take(&mut s, A, Shared, r(6, 7)).unwrap();
        assert_eq!(owned(&s, A), vec![(2, 7, Shared)]);
        // Exclusive zero-length lock at the seam: the merged shared lock [2,7) would contain it
        // strictly and conflict, so the request is refused with it as the holder (and test agrees).
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(2, 6)).unwrap();
        let c = crate::core::windows::lock(&s, B, Exclusive, &Range::new(6, 6)).unwrap();
        let ids = s.apply(&c);
        assert_eq!(lock(&s, A, Shared, &r(6, 7)), Err(Denied::Conflict(ids[0])));
        assert_eq!(test(&s, A, Shared, &r(6, 7)), Some(ids[0]));
        // A request of the other type does not merge, so it is granted.
        take(&mut s, A, Exclusive, r(6, 7)).unwrap();
        assert_eq!(owned(&s, A), vec![(2, 6, Shared), (6, 7, Exclusive)]);
        // Issue 14 item 13: exclusive [119,124) + zero-length shared at 119, then [111,119) exclusive.
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(119, 124)).unwrap();
        let ids = s.apply(&crate::core::windows::lock(&s, B, Shared, &Range::new(119, 119)).unwrap());
        assert_eq!(lock(&s, A, Exclusive, &r(111, 119)), Err(Denied::Conflict(ids[0])));
        assert_eq!(owned(&s, A), vec![(119, 124, Exclusive)]);
        // The same at the request's start, and a to-EOF request (no seam at its end).
        take(&mut s, A, Exclusive, r(100, 110)).unwrap();
        s.apply(&crate::core::windows::lock(&s, B, Exclusive, &Range::new(110, 110)).unwrap());
        assert!(lock(&s, A, Exclusive, &r(110, 115)).is_err());
        take(&mut s, A, Shared, r(110, 115)).unwrap();
        take(&mut s, A, Exclusive, r(200, SPACE_END)).unwrap();
    }

    #[test]
    fn conflicts_and_test_report_holder() {
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(10, 20)).unwrap();
        let id = test(&s, B, Shared, &r(15, 16)).expect("conflict");
        assert_eq!(s.get(id).owner, A);
        assert_eq!(test(&s, B, Shared, &r(20, 30)), None);
        assert_eq!(test(&s, A, Exclusive, &r(0, 100)), None);
        take(&mut s, B, Shared, r(20, 30)).unwrap();
        assert!(matches!(lock(&s, B, Shared, &r(19, 21)), Err(Denied::Conflict(_))));
    }
}
