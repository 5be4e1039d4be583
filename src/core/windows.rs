//! Windows-flavour byte-range locks (SPEC.md §3; MS-FSA 2.1.5.7, Samba `brlock.c`): locks never merge
//! or split; an owner (one open) may stack shared locks and take shared locks inside its own exclusive
//! lock; unlock names exactly one held `(offset, length)`.

use super::conflict::find_conflict;
use super::lockset::{LockId, LockSet};
use super::range::Range;
use super::{Changes, Denied, Flavour, LockType, NewLock, OwnerIdx};

/// The id of a lock that would refuse this request, if any.
pub fn test(set: &LockSet, owner: OwnerIdx, kind: LockType, range: &Range) -> Option<LockId> {
    find_conflict(set, owner, Flavour::Windows, kind, range)
}

/// Adds one lock, or refuses it with the conflicting holder.
pub fn lock(set: &LockSet, owner: OwnerIdx, kind: LockType, range: &Range) -> Result<Changes, Denied> {
    if let Some(id) = test(set, owner, kind, range) {
        return Err(Denied::Conflict(id));
    }
    let mut c = Changes::default();
    c.added.push(NewLock { owner, flavour: Flavour::Windows, kind, range: *range });
    Ok(c)
}

/// Removes one lock of `owner` with exactly this range, an exclusive one first if both kinds exist;
/// `RangeNotLocked` if there is none.
pub fn unlock(set: &LockSet, owner: OwnerIdx, range: &Range) -> Result<Changes, Denied> {
    let tree = set.of_owner(owner);
    let (lo, hi) = (range.start as u128, range.start as u128 + 1);
    let exact = |want: LockType| {
        move |id: LockId| {
            let l = set.get(id);
            l.range == *range && l.kind == want
        }
    };
    let id = tree
        .find(lo, hi, exact(LockType::Exclusive))
        .or_else(|| tree.find(lo, hi, exact(LockType::Shared)))
        .ok_or(Denied::RangeNotLocked)?;
    let mut c = Changes::default();
    c.removed.push(id);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockType::*;

    const A: OwnerIdx = OwnerIdx(0);
    const B: OwnerIdx = OwnerIdx(1);

    fn r(off: u64, len: u64) -> Range {
        Range::from_request(Flavour::Windows, off, len).unwrap()
    }

    fn take(set: &mut LockSet, o: OwnerIdx, k: LockType, rg: Range) -> Result<(), Denied> {
        let c = lock(set, o, k, &rg)?;
        set.apply(&c);
        set.check();
        Ok(())
    }

    #[test]
    fn stacking_rules() {
        let mut s = LockSet::new();
        take(&mut s, A, Shared, r(0, 10)).unwrap();
        take(&mut s, A, Shared, r(0, 10)).unwrap(); // stack shared
        assert!(take(&mut s, A, Exclusive, r(5, 10)).is_err()); // own shared refuses exclusive
        take(&mut s, A, Exclusive, r(20, 10)).unwrap();
        take(&mut s, A, Shared, r(22, 2)).unwrap(); // shared inside own exclusive
        assert!(take(&mut s, A, Exclusive, r(25, 1)).is_err()); // own exclusive refuses exclusive
        assert!(take(&mut s, B, Shared, r(25, 1)).is_err()); // other's exclusive refuses shared
        take(&mut s, B, Shared, r(5, 1)).unwrap(); // shared with shared
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn exact_unlock_exclusive_first() {
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(0, 10)).unwrap();
        take(&mut s, A, Shared, r(0, 10)).unwrap();
        assert_eq!(unlock(&s, A, &r(0, 9)), Err(Denied::RangeNotLocked));
        assert_eq!(unlock(&s, B, &r(0, 10)), Err(Denied::RangeNotLocked));
        let c = unlock(&s, A, &r(0, 10)).unwrap();
        assert_eq!(s.get(c.removed[0]).kind, Exclusive);
        s.apply(&c);
        let c = unlock(&s, A, &r(0, 10)).unwrap();
        s.apply(&c);
        assert!(s.is_empty());
    }

    #[test]
    fn zero_length_locks() {
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(10, 10)).unwrap(); // [10,20)
        take(&mut s, B, Exclusive, r(10, 0)).unwrap(); // at the start: not inside
        take(&mut s, B, Exclusive, r(20, 0)).unwrap(); // at the end: not inside
        assert!(take(&mut s, B, Exclusive, r(15, 0)).is_err()); // strictly inside
        take(&mut s, B, Exclusive, r(10, 0)).unwrap(); // zero-length never overlaps zero-length
        let c = unlock(&s, B, &r(10, 0)).unwrap();
        s.apply(&c);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn full_64_bit_offsets() {
        let mut s = LockSet::new();
        take(&mut s, A, Exclusive, r(u64::MAX, 1)).unwrap();
        take(&mut s, B, Exclusive, r(u64::MAX - 1, 1)).unwrap();
        take(&mut s, B, Shared, r(1 << 63, u64::MAX >> 1)).unwrap(); // stops one byte short of A
        assert!(take(&mut s, B, Shared, r(1 << 63, 1 << 63)).is_err()); // reaches 2^64
        assert_eq!(Range::from_request(Flavour::Windows, u64::MAX, 2), Err(Denied::InvalidRange));
    }

    #[test]
    fn cross_flavour_conflict() {
        let mut s = LockSet::new();
        let c = crate::core::posix::lock(&s, B, Shared, &Range::new(0, crate::core::SPACE_END)).unwrap();
        s.apply(&c);
        assert!(take(&mut s, A, Exclusive, r(100, 1)).is_err());
        take(&mut s, A, Shared, r(100, 1)).unwrap();
        assert!(crate::core::posix::lock(&s, B, Exclusive, &Range::new(100, 101)).is_err());
    }
}
