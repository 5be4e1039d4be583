//! Edge cases near 2^64 (STYLE.md §8: "test edges near 2^64 separately"), through the `Manager` API:
//! Windows offsets above 2^63, the last byte (offset `u64::MAX`, length 1), the invalid-range boundary
//! of both flavours (SPEC.md §2), and POSIX "to EOF" locks from large offsets, split by unlocks and by
//! other lock types.

use unilock::core::{Access, Flavour, LockType};
use unilock::error::{Error, Holder};
use unilock::manager::{LockReq, Manager, Settings};
use unilock::owners::OwnerRef;

use Flavour::{Posix, Windows};
use LockType::{Exclusive as X, Shared as S};

const TO_EOF: u64 = u64::MAX;
const TOP: u64 = u64::MAX; // the last byte
const HALF: u64 = 1 << 63;
const F: &[u8] = b"edge-file";

const A: OwnerRef<'static> = OwnerRef { client: b"c", owner: b"a", open_id: 1 };
const B: OwnerRef<'static> = OwnerRef { client: b"c", owner: b"b", open_id: 1 };
const C: OwnerRef<'static> = OwnerRef { client: b"c", owner: b"c", open_id: 1 };

fn mgr() -> Manager {
    Manager::new(Settings::default()).expect("Manager::new")
}

fn req(flavour: Flavour, kind: LockType, offset: u64, length: u64) -> LockReq {
    LockReq { flavour, kind, offset, length }
}

fn win(kind: LockType, offset: u64, length: u64) -> LockReq {
    req(Windows, kind, offset, length)
}

fn posix(kind: LockType, offset: u64, length: u64) -> LockReq {
    req(Posix, kind, offset, length)
}

/// (owner, flavour, kind, offset, length) of every lock, sorted.
fn locks(m: &Manager) -> Vec<(Vec<u8>, Flavour, LockType, u64, u64)> {
    let mut v: Vec<_> =
        m.list(F).unwrap().into_iter().map(|h| (h.owner, h.flavour, h.kind, h.offset, h.length)).collect();
    v.sort();
    v
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn l(
    o: &OwnerRef,
    flavour: Flavour,
    kind: LockType,
    offset: u64,
    length: u64,
) -> (Vec<u8>, Flavour, LockType, u64, u64) {
    (o.owner.to_vec(), flavour, kind, offset, length)
}

fn conflict_holder(r: Result<(), Error>) -> Holder {
    match r {
        Err(Error::Conflict(h)) => *h,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn is_holder(h: &Holder, o: &OwnerRef, flavour: Flavour, kind: LockType, offset: u64, length: u64) -> bool {
    h.owner == o.owner && h.flavour == flavour && h.kind == kind && h.offset == offset && h.length == length
}

#[test]
fn windows_offsets_above_2_63() {
    let m = mgr();
    m.lock(F, &A, &win(X, HALF + 10, 100)).unwrap(); // [2^63+10, 2^63+110)
    let h = conflict_holder(m.lock(F, &B, &win(S, HALF + 50, 1)));
    assert!(is_holder(&h, &A, Windows, X, HALF + 10, 100), "{h:?}");
    let t = m.test(F, &B, &win(S, HALF + 109, 1)).unwrap().expect("last byte conflicts");
    assert!(is_holder(&t, &A, Windows, X, HALF + 10, 100), "{t:?}");
    // Touching at either end is no overlap.
    m.lock(F, &B, &win(X, HALF + 110, 5)).unwrap();
    m.lock(F, &B, &win(X, HALF + 9, 1)).unwrap();
    // Zero-length locks: strictly inside conflicts, at either end does not.
    assert!(m.lock(F, &C, &win(S, HALF + 11, 0)).is_err());
    m.lock(F, &C, &win(X, HALF + 10, 0)).unwrap();
    m.lock(F, &C, &win(X, HALF + 110, 0)).unwrap();
    assert_eq!(
        locks(&m),
        sorted(vec![
            l(&A, Windows, X, HALF + 10, 100),
            l(&B, Windows, X, HALF + 9, 1),
            l(&B, Windows, X, HALF + 110, 5),
            l(&C, Windows, X, HALF + 10, 0),
            l(&C, Windows, X, HALF + 110, 0),
        ])
    );
    // Same offsets below 2^63 are a different place.
    m.lock(F, &B, &win(X, 10, 100)).unwrap();
    // A POSIX owner's lock up there conflicts across flavours.
    let h = conflict_holder(m.lock(F, &C, &posix(S, HALF + 60, 1)));
    assert!(is_holder(&h, &A, Windows, X, HALF + 10, 100), "{h:?}");
    // Exact unlock with a high offset; a second one finds nothing.
    m.unlock(F, &A, Windows, HALF + 10, 100).unwrap();
    assert_eq!(m.unlock(F, &A, Windows, HALF + 10, 100), Err(Error::RangeNotLocked));
    m.lock(F, &C, &posix(S, HALF + 60, 1)).unwrap();
    assert_eq!(m.check_io(F, &A, Access::Write, HALF + 60, 1).map_err(|e| matches!(e, Error::Conflict(_))), Err(true));
    assert_eq!(m.check_io(F, &A, Access::Read, HALF + 60, 1), Ok(()));
}

#[test]
fn offset_u64_max_length_1() {
    let m = mgr();
    // Windows: the last byte, [2^64-1, 2^64).
    m.lock(F, &A, &win(X, TOP, 1)).unwrap();
    assert_eq!(locks(&m), vec![l(&A, Windows, X, TOP, 1)]);
    let h = conflict_holder(m.lock(F, &B, &win(S, TOP - 1, 2))); // ends exactly at 2^64
    assert!(is_holder(&h, &A, Windows, X, TOP, 1), "{h:?}");
    m.lock(F, &B, &win(X, TOP - 1, 1)).unwrap(); // the byte before
    m.lock(F, &B, &win(X, TOP, 0)).unwrap(); // zero-length at the start of A's lock: not inside
                                             // [0, 2^64-1) (length u64::MAX) touches A's lock, overlaps B's.
    let h = conflict_holder(m.lock(F, &C, &win(S, 0, u64::MAX)));
    assert!(is_holder(&h, &B, Windows, X, TOP - 1, 1), "{h:?}");
    m.unlock(F, &B, Windows, TOP - 1, 1).unwrap();
    m.lock(F, &C, &win(S, 0, u64::MAX)).unwrap();
    // [1, 2^64) (length u64::MAX from 1) reaches A's byte.
    let h = conflict_holder(m.lock(F, &C, &win(S, 1, u64::MAX)));
    assert!(is_holder(&h, &A, Windows, X, TOP, 1), "{h:?}");
    // POSIX: the last byte is also a valid POSIX range, and conflicts with A across flavours.
    let p = OwnerRef { client: b"nlm", owner: b"p", open_id: 0 };
    let h = conflict_holder(m.lock(F, &p, &posix(S, TOP, 1)));
    assert!(is_holder(&h, &A, Windows, X, TOP, 1), "{h:?}");
    m.unlock(F, &A, Windows, TOP, 1).unwrap();
    m.lock(F, &p, &posix(S, TOP, 1)).unwrap();
    // A POSIX lock ending at 2^64 is reported as "to EOF" from its offset: the same bytes.
    let mine: Vec<_> = m.list(F).unwrap().into_iter().filter(|h| h.owner == p.owner).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].offset, mine[0].length), (TOP, TO_EOF));
    // And it can be unlocked byte-exactly.
    m.unlock(F, &p, Posix, TOP, 1).unwrap();
    assert!(m.list(F).unwrap().iter().all(|h| h.owner != p.owner));

    // A zero-length lock at the last offset is strictly inside [2^64-2, 2^64).
    let m = mgr();
    m.lock(F, &A, &win(X, TOP - 1, 2)).unwrap();
    let h = conflict_holder(m.lock(F, &B, &win(S, TOP, 0)));
    assert!(is_holder(&h, &A, Windows, X, TOP - 1, 2), "{h:?}");
    m.lock(F, &B, &win(X, TOP - 1, 0)).unwrap(); // at its start
                                                 // Own locks: an exclusive zero-length lock inside the owner's own lock is refused too.
    assert!(m.lock(F, &A, &win(X, TOP, 0)).is_err());
    m.lock(F, &A, &win(S, TOP, 0)).unwrap();
    assert_eq!(m.unlock(F, &A, Windows, TOP, 1), Err(Error::RangeNotLocked));
    m.unlock(F, &A, Windows, TOP, 0).unwrap();
    m.unlock(F, &A, Windows, TOP - 1, 2).unwrap();
    m.lock(F, &C, &win(X, TOP - 1, 2)).unwrap(); // B's zero-length lock sits at its start
}

#[test]
fn invalid_range_boundary() {
    let m = mgr();
    m.lock(F, &A, &win(S, 100, 10)).unwrap();
    let p = OwnerRef { client: b"nlm", owner: b"p", open_id: 0 };
    m.lock(F, &p, &posix(S, 200, 10)).unwrap();
    let before = locks(&m);

    // Windows: offset + length - 1 must fit in 64 bits.
    let windows_valid = [(TOP, 1), (TOP, 0), (1, u64::MAX), (0, u64::MAX), (HALF, HALF), (TOP - 9, 10)];
    let windows_invalid = [(TOP, 2), (2, u64::MAX), (HALF + 1, HALF), (TOP - 9, 11), (TOP, u64::MAX)];
    // POSIX: length 0 is invalid; offset + length may reach 2^64 but not pass it, except by TO_EOF.
    let posix_valid =
        [(TOP, 1), (TOP, TO_EOF), (1, u64::MAX - 1), (2, u64::MAX - 1), (0, TO_EOF), (HALF, HALF), (TOP - 9, 10)];
    let posix_invalid = [(0, 0), (TOP, 0), (TOP, 2), (3, u64::MAX - 1), (HALF + 1, HALF), (TOP - 9, 11)];

    for (flavour, invalid) in [(Windows, &windows_invalid[..]), (Posix, &posix_invalid[..])] {
        let o = if flavour == Windows { &B } else { &p };
        for &(off, len) in invalid {
            for kind in [S, X] {
                assert_eq!(
                    m.lock(F, o, &req(flavour, kind, off, len)),
                    Err(Error::InvalidRange),
                    "{flavour:?} lock {off} {len}"
                );
                assert_eq!(
                    m.test(F, o, &req(flavour, kind, off, len)),
                    Err(Error::InvalidRange),
                    "{flavour:?} test {off} {len}"
                );
            }
            assert_eq!(m.unlock(F, o, flavour, off, len), Err(Error::InvalidRange), "{flavour:?} unlock {off} {len}");
            // In a multi-element request the bad element is named and nothing is taken.
            let many = [req(flavour, S, 0, 1), req(flavour, X, off, len)];
            assert_eq!(m.lock_many(F, o, &many), Err((1, Error::InvalidRange)), "{flavour:?} lock_many {off} {len}");
            assert_eq!(locks(&m), before, "state changed by invalid {flavour:?} ({off}, {len})");
        }
    }
    for &(off, len) in &windows_invalid {
        assert_eq!(m.check_io(F, &B, Access::Read, off, len), Err(Error::InvalidRange), "check_io {off} {len}");
    }

    for (flavour, valid) in [(Windows, &windows_valid[..]), (Posix, &posix_valid[..])] {
        let o = OwnerRef { client: b"c", owner: b"v", open_id: 9 };
        for &(off, len) in valid {
            assert_eq!(m.test(F, &o, &req(flavour, S, off, len)).map(|_| ()), Ok(()), "{flavour:?} test {off} {len}");
            m.lock(F, &o, &req(flavour, S, off, len)).unwrap_or_else(|e| panic!("{flavour:?} lock {off} {len}: {e:?}"));
            m.unlock(F, &o, flavour, off, len).unwrap_or_else(|e| panic!("{flavour:?} unlock {off} {len}: {e:?}"));
            assert_eq!(locks(&m), before, "{flavour:?} ({off}, {len}) not undone by its unlock");
        }
    }
    for &(off, len) in &windows_valid {
        assert_eq!(m.check_io(F, &B, Access::Read, off, len), Ok(()), "check_io {off} {len}");
    }
}

#[test]
fn posix_to_eof_from_a_large_offset() {
    let m = mgr();
    let a = OwnerRef { client: b"nlm", owner: b"a", open_id: 0 };
    let b = OwnerRef { client: b"nlm", owner: b"b", open_id: 0 };
    m.lock(F, &a, &posix(X, HALF + 5, TO_EOF)).unwrap();
    assert_eq!(locks(&m), vec![l(&a, Posix, X, HALF + 5, TO_EOF)]);
    // Another owner is refused anywhere above, up to the last byte, and not below.
    let h = conflict_holder(m.lock(F, &b, &posix(S, TOP, 1)));
    assert!(is_holder(&h, &a, Posix, X, HALF + 5, TO_EOF), "{h:?}");
    m.lock(F, &b, &posix(S, HALF + 4, 1)).unwrap();

    // Unlock a hole in the middle: two pieces, the upper one still to EOF.
    m.unlock(F, &a, Posix, HALF + 100, 10).unwrap();
    assert_eq!(
        locks(&m),
        sorted(vec![l(&a, Posix, X, HALF + 5, 95), l(&a, Posix, X, HALF + 110, TO_EOF), l(&b, Posix, S, HALF + 4, 1),])
    );
    m.lock(F, &b, &posix(S, HALF + 100, 10)).unwrap();
    let t = m.test(F, &b, &posix(S, TOP, 1)).unwrap().expect("the tail is still locked");
    assert!(is_holder(&t, &a, Posix, X, HALF + 110, TO_EOF), "{t:?}");

    // Unlock the last byte: the upper piece now ends at 2^64 - 1 and has a finite length.
    m.unlock(F, &a, Posix, TOP, 1).unwrap();
    let upper = TOP - (HALF + 110);
    assert!(locks(&m).contains(&l(&a, Posix, X, HALF + 110, upper)), "{:?}", locks(&m));
    m.lock(F, &b, &posix(X, TOP, 1)).unwrap();
    assert!(m.lock(F, &b, &posix(S, TOP - 1, 1)).is_err());

    // Unlock to EOF from inside the upper piece, then from below everything.
    m.unlock(F, &a, Posix, HALF + 200, TO_EOF).unwrap();
    assert!(locks(&m).contains(&l(&a, Posix, X, HALF + 110, 90)), "{:?}", locks(&m));
    m.unlock(F, &a, Posix, 0, TO_EOF).unwrap();
    assert!(locks(&m).iter().all(|x| x.0 != a.owner), "{:?}", locks(&m));
}

#[test]
fn posix_split_and_merge_at_the_top() {
    let m = mgr();
    let a = OwnerRef { client: b"nlm", owner: b"a", open_id: 0 };
    let b = OwnerRef { client: b"nlm", owner: b"b", open_id: 0 };
    // A different type in the middle of a to-EOF lock splits it in three.
    m.lock(F, &a, &posix(S, 100, TO_EOF)).unwrap();
    m.lock(F, &a, &posix(X, TOP - 1, 1)).unwrap();
    assert_eq!(
        locks(&m),
        sorted(vec![l(&a, Posix, S, 100, TOP - 1 - 100), l(&a, Posix, X, TOP - 1, 1), l(&a, Posix, S, TOP, TO_EOF)])
    );
    // Downgrading the middle merges everything back into one to-EOF lock.
    m.lock(F, &a, &posix(S, TOP - 1, 1)).unwrap();
    assert_eq!(locks(&m), vec![l(&a, Posix, S, 100, TO_EOF)]);
    m.unlock(F, &a, Posix, 0, TO_EOF).unwrap();

    // Touching same-type locks merge at the top: [2^64-11, 2^64-1) + [2^64-1, 2^64).
    m.lock(F, &a, &posix(X, TOP - 10, 10)).unwrap();
    m.lock(F, &a, &posix(X, TOP, TO_EOF)).unwrap();
    assert_eq!(locks(&m), vec![l(&a, Posix, X, TOP - 10, TO_EOF)]);
    // An upgrade of the top that conflicts leaves everything as it was.
    m.unlock(F, &a, Posix, TOP - 10, TO_EOF).unwrap();
    m.lock(F, &a, &posix(S, TOP - 10, TO_EOF)).unwrap();
    m.lock(F, &b, &posix(S, TOP, 1)).unwrap();
    let before = locks(&m);
    assert!(m.lock(F, &a, &posix(X, TOP - 10, TO_EOF)).is_err());
    assert_eq!(locks(&m), before);
    // Windows locks up there conflict with the POSIX to-EOF lock.
    let w = OwnerRef { client: b"smb", owner: b"w", open_id: 3 };
    let h = conflict_holder(m.lock(F, &w, &win(X, TOP, 1)));
    assert!(h.flavour == Posix && h.offset >= TOP - 10, "{h:?}");
    m.lock(F, &w, &win(S, TOP, 1)).unwrap();
    assert!(m.check_io(F, &w, Access::Write, TOP, 1).is_err()); // others' shared locks refuse a write
    assert_eq!(m.check_io(F, &w, Access::Read, TOP, 1), Ok(()));
}
