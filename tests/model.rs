//! Property tests of byte-range locking (SPEC.md §1–3) through the `Manager` API against a naive
//! reference model (STYLE.md §8).
//!
//! The model is deliberately dumb:
//! * **POSIX**: per file, per owner (client, owner bytes — the open id is ignored, SPEC.md §1), one
//!   `Option<LockType>` per byte over a domain of `D` = 48 bytes. Finite requests stay inside bytes
//!   0..47; byte 47 stands for the whole tail `[47, 2^64)`, which only `UNILOCK_TO_EOF` reaches, so
//!   "to EOF" folds onto the end of the domain exactly. The model's locks are the maximal same-type runs
//!   of each owner's bytes (what the kernel's and unilock's merging produce); a run reaching the end of
//!   the domain is `[start, 2^64)`, reported with length `UNILOCK_TO_EOF`.
//! * **Windows**: per file, a plain `Vec` of locks (client, owner, open id, type, exact range) in the
//!   order taken: stacking and exact unlock as in SPEC.md §3, zero-length locks with the strictly-inside
//!   overlap of §2, offsets anywhere in the 64-bit space (including ranges that end at 2^64).
//! * **Conflicts** are decided on the real ranges of all locks of the file, both flavours together, with
//!   the §3 rule (different owners, overlap, one exclusive) plus the Windows own-lock rule; so mixed
//!   flavours on one file are covered (a POSIX and a Windows lock never share an owner).
//!
//! Every generated operation is applied to both; then the status is compared (for a refusal, the
//! reported holder must be one of the locks that really refuse the request), the normalized state of
//! every file (the sorted `Manager::list` against the model's sorted locks) must be equal, and the §3
//! invariants must hold on unilock's list (no two overlapping locks of different owners of which one is
//! exclusive; a POSIX owner's locks are disjoint and same-type ones never touch).
//! Also covered: `lock_many` (all or none), `unlock_many` (in order, stopping at the first error),
//! `check_io` (strict locking), `release_open`, `release_client`, and invalid ranges (state unchanged).
//!
//! Every property and regression runs over every backend (tests/common/backends.rs: in memory, on a
//! database, and in shared mode with two managers on one database, each client through its own);
//! `UNILOCK_TEST_BACKEND=memory|db|shared` picks one. The database backends run a sixteenth of the cases.
//!
//! `PROPTEST_CASES=<n>` changes the number of cases in memory; regression seeds are kept in
//! `tests/proptest-regressions/model.txt`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use unilock::core::{Access, Flavour, LockType};
use unilock::error::{Error, Holder};
use unilock::manager::{LockReq, Manager, Settings};
use unilock::owners::OwnerRef;

mod common;
use common::backends::{Backend, Rig};

const TO_EOF: u64 = u64::MAX;
const END: u128 = 1u128 << 64;
/// POSIX domain size in bytes; byte `D - 1` is the folded tail `[D-1, 2^64)`.
const D: usize = 48;
const TAIL: u64 = (D - 1) as u64;

const CLIENTS: [&[u8]; 2] = [b"c0", b"c1"];
const OWNERS: [&[u8]; 2] = [b"o0", b"o1"];
const FILES: [&[u8]; 2] = [b"file-0", b"file-1"];

use Flavour::{Posix, Windows};
use LockType::{Exclusive as X, Shared as S};

// ---------------------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Who {
    client: usize,
    owner: usize,
    /// The open id: part of a Windows owner, ignored for a POSIX owner.
    open: u64,
}

impl Who {
    fn r(&self) -> OwnerRef<'static> {
        OwnerRef { client: CLIENTS[self.client], owner: OWNERS[self.owner], open_id: self.open }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Lock { file: usize, who: Who, flavour: Flavour, kind: LockType, off: u64, len: u64 },
    Unlock { file: usize, who: Who, flavour: Flavour, off: u64, len: u64 },
    Test { file: usize, who: Who, flavour: Flavour, kind: LockType, off: u64, len: u64 },
    LockMany { file: usize, who: Who, elems: Vec<(Flavour, LockType, u64, u64)> },
    UnlockMany { file: usize, who: Who, elems: Vec<(Flavour, u64, u64)> },
    CheckIo { file: usize, who: Who, access: Access, off: u64, len: u64 },
    ReleaseOpen { file: usize, who: Who },
    ReleaseClient { client: usize },
}

fn who() -> impl Strategy<Value = Who> {
    (0..2usize, 0..2usize, 1..3u64).prop_map(|(client, owner, open)| Who { client, owner, open })
}

fn kind() -> impl Strategy<Value = LockType> {
    prop_oneof![Just(S), Just(X)]
}

/// POSIX ranges: finite ones inside bytes 0..TAIL, "to EOF" from anywhere in the domain, rarely an
/// invalid length 0.
fn posix_range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        12 => (0..TAIL, 1..=8u64).prop_map(|(off, len)| (off, len.min(TAIL - off))),
        3 => (0..TAIL, Just(TO_EOF)),
        1 => (0..TAIL, Just(0u64)),
    ]
}

/// Windows ranges: mostly small (colliding with each other and with the POSIX domain), zero-length
/// ones, ranges ending just below or exactly at 2^64, high offsets, and invalid ones.
fn windows_range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        12 => (0..50u64, 0..=8u64),
        3 => (0..50u64, Just(0u64)),
        1 => (0..50u64).prop_map(|off| (off, u64::MAX - off)),               // ends at 2^64 - 1
        1 => (1..50u64).prop_map(|off| (off, u64::MAX - off + 1)),           // ends at 2^64
        1 => (0..2u64).prop_map(|off| (off, u64::MAX)),                       // length UNILOCK_TO_EOF
        1 => (2..50u64).prop_map(|off| (off, u64::MAX)),                      // invalid: past 2^64
        1 => (prop_oneof![Just(1000u64), Just(1u64 << 40), Just(1u64 << 63), Just(u64::MAX - 3)], 0..=4u64),
        1 => Just((u64::MAX, 2u64)),                                          // invalid
    ]
}

fn range_for(flavour: Flavour) -> BoxedStrategy<(u64, u64)> {
    match flavour {
        Posix => posix_range().boxed(),
        Windows => windows_range().boxed(),
    }
}

fn op(flavours: Vec<Flavour>) -> impl Strategy<Value = Op> {
    let fl = proptest::sample::select(flavours);
    let file = prop_oneof![6 => Just(0usize), 1 => Just(1usize)];
    let lock = (file.clone(), who(), fl.clone(), kind()).prop_flat_map(|(file, who, flavour, kind)| {
        range_for(flavour).prop_map(move |(off, len)| Op::Lock { file, who, flavour, kind, off, len })
    });
    let unlock = (file.clone(), who(), fl.clone()).prop_flat_map(|(file, who, flavour)| {
        range_for(flavour).prop_map(move |(off, len)| Op::Unlock { file, who, flavour, off, len })
    });
    let test = (file.clone(), who(), fl.clone(), kind()).prop_flat_map(|(file, who, flavour, kind)| {
        range_for(flavour).prop_map(move |(off, len)| Op::Test { file, who, flavour, kind, off, len })
    });
    // Mostly one flavour per request; a mixed one is refused as invalid.
    let elems_of = |f: Flavour| {
        proptest::collection::vec((kind(), range_for(f)).prop_map(move |(k, (off, len))| (f, k, off, len)), 0..5)
    };
    let any_elem =
        (fl.clone(), kind()).prop_flat_map(|(f, k)| range_for(f).prop_map(move |(off, len)| (f, k, off, len)));
    let elems = prop_oneof![
        12 => fl.clone().prop_flat_map(elems_of),
        1 => proptest::collection::vec(any_elem, 0..5),
    ];
    let lock_many = (file.clone(), who(), elems).prop_map(|(file, who, elems)| Op::LockMany { file, who, elems });
    let uelem = fl.clone().prop_flat_map(|f| range_for(f).prop_map(move |(off, len)| (f, off, len)));
    let unlock_many = (file.clone(), who(), proptest::collection::vec(uelem, 0..4))
        .prop_map(|(file, who, elems)| Op::UnlockMany { file, who, elems });
    let access = prop_oneof![Just(Access::Read), Just(Access::Write)];
    let check_io = (file.clone(), who(), access, windows_range())
        .prop_map(|(file, who, access, (off, len))| Op::CheckIo { file, who, access, off, len });
    let release_open = (file, who()).prop_map(|(file, who)| Op::ReleaseOpen { file, who });
    let release_client = (0..2usize).prop_map(|client| Op::ReleaseClient { client });
    prop_oneof![
        30 => lock,
        14 => unlock,
        12 => test,
        6 => lock_many,
        3 => unlock_many,
        8 => check_io,
        2 => release_open,
        1 => release_client,
    ]
}

// ---------------------------------------------------------------------------------------------------
// The model

/// A lock as the model knows it; `open` is 0 for POSIX locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MLock {
    flavour: Flavour,
    client: usize,
    owner: usize,
    open: u64,
    kind: LockType,
    start: u64,
    end: u128,
}

/// `[start, end)`; `start == end` is a zero-length (Windows) range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct R {
    start: u128,
    end: u128,
}

/// SPEC.md §2, including the zero-length rule (strictly inside; two zero-length ranges never overlap).
fn overlaps(x: R, y: R) -> bool {
    match (x.start == x.end, y.start == y.end) {
        (false, false) => x.start < y.end && y.start < x.end,
        (true, false) => y.start < x.start && x.start < y.end,
        (false, true) => x.start < y.start && y.start < x.end,
        (true, true) => false,
    }
}

impl MLock {
    fn r(&self) -> R {
        R { start: self.start as u128, end: self.end }
    }
    fn holder(&self) -> Holder {
        let length = if self.flavour == Posix && self.end == END {
            TO_EOF
        } else {
            u64::try_from(self.end - self.start as u128).unwrap_or(u64::MAX)
        };
        Holder {
            client: CLIENTS[self.client].to_vec(),
            owner: OWNERS[self.owner].to_vec(),
            open_id: self.open,
            flavour: self.flavour,
            kind: self.kind,
            offset: self.start,
            length,
        }
    }
    /// Same owner as `who` asking in `flavour` (SPEC.md §1).
    fn owned_by(&self, who: &Who, flavour: Flavour) -> bool {
        self.flavour == flavour
            && self.client == who.client
            && self.owner == who.owner
            && (flavour == Posix || self.open == who.open)
    }
}

/// SPEC.md §2 validation: the real range, or `None` for an invalid one.
fn real_range(flavour: Flavour, off: u64, len: u64) -> Option<R> {
    let start = off as u128;
    match flavour {
        Posix if len == 0 => None,
        Posix if len == TO_EOF => Some(R { start, end: END }),
        _ => {
            let end = start + len as u128;
            (end <= END).then_some(R { start, end })
        }
    }
}

#[derive(Clone, Debug, Default)]
struct FileModel {
    /// (client, owner) → per-byte type.
    posix: BTreeMap<(usize, usize), [Option<LockType>; D]>,
    win: Vec<MLock>,
}

impl FileModel {
    /// Every lock, POSIX ones as maximal same-type runs per owner.
    fn locks(&self) -> Vec<MLock> {
        let mut v = self.win.clone();
        for (&(client, owner), bytes) in &self.posix {
            let mut b = 0;
            while b < D {
                let Some(kind) = bytes[b] else {
                    b += 1;
                    continue;
                };
                let s = b;
                while b < D && bytes[b] == Some(kind) {
                    b += 1;
                }
                let end = if b == D { END } else { b as u128 };
                v.push(MLock { flavour: Posix, client, owner, open: 0, kind, start: s as u64, end });
            }
        }
        v.sort();
        v
    }

    /// The locks that refuse a request of `who` for `kind` on `r` under `flavour`'s rules.
    fn refusers(&self, who: &Who, flavour: Flavour, kind: LockType, r: R) -> Vec<MLock> {
        let mut seams = Vec::new();
        if flavour == Posix {
            // The merge rule (core/posix.rs): where the request touches a same-type run of its owner,
            // the merged lock would contain the seam strictly, so a conflicting zero-length lock of
            // another owner there refuses it.
            if let Some(bytes) = self.posix.get(&(who.client, who.owner)) {
                if r.start > 0 && bytes[r.start as usize - 1] == Some(kind) {
                    seams.push(r.start);
                }
                if r.end < END && (r.end as usize) < D && bytes[r.end as usize] == Some(kind) {
                    seams.push(r.end);
                }
            }
        }
        let seam_refusers: Vec<MLock> = self
            .win
            .iter()
            .filter(|l| l.start as u128 == l.end && seams.contains(&l.end) && (l.kind == X || kind == X))
            .copied()
            .collect();
        self.locks()
            .into_iter()
            .filter(|l| {
                if !overlaps(l.r(), r) {
                    return false;
                }
                if l.owned_by(who, flavour) {
                    // Windows: an exclusive request may not overlap any lock of its own owner.
                    flavour == Windows && kind == X
                } else {
                    l.kind == X || kind == X
                }
            })
            .chain(seam_refusers)
            .collect()
    }

    /// Byte indexes of a POSIX range in the folded domain.
    fn posix_bytes(r: R) -> std::ops::Range<usize> {
        let s = r.start as usize;
        let e = if r.end == END { D } else { r.end as usize };
        assert!(s < D && e <= D && (e < D || r.end == END), "POSIX range outside the model domain: {r:?}");
        s..e
    }

    /// Applies a granted lock.
    fn take(&mut self, who: &Who, flavour: Flavour, kind: LockType, r: R) {
        match flavour {
            Posix => {
                let bytes = self.posix.entry((who.client, who.owner)).or_insert([None; D]);
                for b in Self::posix_bytes(r) {
                    bytes[b] = Some(kind);
                }
            }
            Windows => self.win.push(MLock {
                flavour,
                client: who.client,
                owner: who.owner,
                open: who.open,
                kind,
                start: r.start as u64,
                end: r.end,
            }),
        }
    }

    /// A lock request: Ok, or the set of locks that may be named as the refusing holder.
    fn lock(&mut self, who: &Who, flavour: Flavour, kind: LockType, r: R) -> Result<(), Vec<MLock>> {
        let refusers = self.refusers(who, flavour, kind, r);
        if !refusers.is_empty() {
            return Err(refusers);
        }
        self.take(who, flavour, kind, r);
        Ok(())
    }

    /// An unlock; false for a Windows range not held exactly.
    fn unlock(&mut self, who: &Who, flavour: Flavour, r: R) -> bool {
        match flavour {
            Posix => {
                if let Some(bytes) = self.posix.get_mut(&(who.client, who.owner)) {
                    for b in Self::posix_bytes(r) {
                        bytes[b] = None;
                    }
                    if bytes.iter().all(|b| b.is_none()) {
                        self.posix.remove(&(who.client, who.owner));
                    }
                }
                true
            }
            Windows => {
                let find =
                    |k: LockType| self.win.iter().position(|l| l.owned_by(who, Windows) && l.kind == k && l.r() == r);
                match find(X).or_else(|| find(S)) {
                    Some(i) => {
                        self.win.remove(i);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// The strict-locking check (SPEC.md §3): the locks that refuse the I/O. A lock is the probe's own
    /// if it is its POSIX owner's (client, owner) or its Windows owner's (client, owner, open id); own
    /// POSIX locks never refuse, an own Windows shared lock refuses a write.
    fn io_refusers(&self, who: &Who, access: Access, r: R) -> Vec<MLock> {
        if r.start == r.end {
            return Vec::new();
        }
        self.locks()
            .into_iter()
            .filter(|l| {
                let own_p = l.owned_by(who, Posix);
                let own_w = l.owned_by(who, Windows);
                overlaps(l.r(), r)
                    && match (l.kind, access) {
                        (X, _) => !own_p && !own_w,
                        (S, Access::Read) => false,
                        (S, Access::Write) => !own_p,
                    }
            })
            .collect()
    }

    /// Releases an open (SPEC.md §3): its Windows locks and its owner's POSIX locks; returns the count.
    fn release_open(&mut self, who: &Who) -> usize {
        let before = self.locks().len();
        self.win.retain(|l| !l.owned_by(who, Windows));
        self.posix.remove(&(who.client, who.owner));
        before - self.locks().len()
    }

    fn release_client(&mut self, client: usize) -> usize {
        let before = self.locks().len();
        self.win.retain(|l| l.client != client);
        self.posix.retain(|k, _| k.0 != client);
        before - self.locks().len()
    }
}

// ---------------------------------------------------------------------------------------------------
// Running and comparing

type Key = (Flavour, Vec<u8>, Vec<u8>, u64, LockType, u64, u64);

fn key(h: &Holder) -> Key {
    (h.flavour, h.client.clone(), h.owner.clone(), h.open_id, h.kind, h.offset, h.length)
}

fn holder_range(h: &Holder) -> R {
    let start = h.offset as u128;
    let end = if h.flavour == Posix && h.length == TO_EOF { END } else { start + h.length as u128 };
    R { start, end }
}

/// Owner identity of a listed lock (SPEC.md §1).
fn holder_owner(h: &Holder) -> (Flavour, &[u8], &[u8], u64) {
    (h.flavour, &h.client, &h.owner, if h.flavour == Windows { h.open_id } else { 0 })
}

/// SPEC.md §3 invariants on unilock's own list.
fn check_invariants(list: &[Holder]) -> Result<(), String> {
    for (i, a) in list.iter().enumerate() {
        if a.flavour == Posix && a.open_id != 0 {
            return Err(format!("POSIX lock with an open id: {a:?}"));
        }
        let ra = holder_range(a);
        for b in &list[i + 1..] {
            let rb = holder_range(b);
            if holder_owner(a) != holder_owner(b) {
                if overlaps(ra, rb) && (a.kind == X || b.kind == X) {
                    return Err(format!("conflicting locks of different owners both held: {a:?} and {b:?}"));
                }
            } else if a.flavour == Posix {
                // One POSIX owner: disjoint locks, same-type ones not even touching (they merge).
                let touch = ra.start <= rb.end && rb.start <= ra.end;
                if overlaps(ra, rb) || (touch && a.kind == b.kind) {
                    return Err(format!("POSIX owner's locks not normalized: {a:?} and {b:?}"));
                }
            }
        }
    }
    Ok(())
}

/// Checks a refusal: the holder must be one of the locks that refuse.
fn check_holder(h: &Holder, refusers: &[MLock]) -> Result<(), String> {
    if refusers.iter().any(|l| l.holder() == *h) {
        Ok(())
    } else {
        Err(format!("reported holder {h:?} is not one of the refusing locks {refusers:?}"))
    }
}

fn expect_conflict(got: &Result<(), Error>, refusers: &[MLock]) -> Result<(), String> {
    match got {
        Err(Error::Conflict(h)) => check_holder(h, refusers),
        other => Err(format!("expected a conflict with one of {refusers:?}, got {other:?}")),
    }
}

struct World {
    rig: Rig,
    files: Vec<FileModel>,
}

impl World {
    fn new(backend: Backend) -> World {
        World {
            rig: Rig::new(backend, "model", |_| Settings::default()),
            files: vec![FileModel::default(); FILES.len()],
        }
    }

    /// Applies `op` to both; compares the result. With several participants (shared mode), a
    /// client's operations go through its own one.
    fn step(&mut self, op: &Op) -> Result<(), String> {
        let client = match op {
            Op::Lock { who, .. }
            | Op::Unlock { who, .. }
            | Op::Test { who, .. }
            | Op::LockMany { who, .. }
            | Op::UnlockMany { who, .. }
            | Op::CheckIo { who, .. }
            | Op::ReleaseOpen { who, .. } => who.client,
            Op::ReleaseClient { client } => *client,
        };
        let m = self.rig.pick(client);
        match op {
            &Op::Lock { file, who, flavour, kind, off, len } => {
                let got = m.lock(FILES[file], &who.r(), &LockReq { flavour, kind, offset: off, length: len });
                match real_range(flavour, off, len) {
                    None => eq(&got, &Err(Error::InvalidRange)),
                    Some(r) => match self.files[file].lock(&who, flavour, kind, r) {
                        Ok(()) => eq(&got, &Ok(())),
                        Err(refusers) => expect_conflict(&got, &refusers),
                    },
                }
            }
            &Op::Unlock { file, who, flavour, off, len } => {
                let got = m.unlock(FILES[file], &who.r(), flavour, off, len);
                match real_range(flavour, off, len) {
                    None => eq(&got, &Err(Error::InvalidRange)),
                    Some(r) => {
                        let want =
                            if self.files[file].unlock(&who, flavour, r) { Ok(()) } else { Err(Error::RangeNotLocked) };
                        eq(&got, &want)
                    }
                }
            }
            &Op::Test { file, who, flavour, kind, off, len } => {
                let got = m.test(FILES[file], &who.r(), &LockReq { flavour, kind, offset: off, length: len });
                match real_range(flavour, off, len) {
                    None => eq(&got, &Err(Error::InvalidRange)),
                    Some(r) => {
                        let refusers = self.files[file].refusers(&who, flavour, kind, r);
                        match (&got, refusers.is_empty()) {
                            (Ok(None), true) => Ok(()),
                            (Ok(Some(h)), false) => check_holder(h, &refusers),
                            _ => Err(format!("test: got {got:?}, refusing locks {refusers:?}")),
                        }
                    }
                }
            }
            Op::LockMany { file, who, elems } => {
                let reqs: Vec<LockReq> = elems
                    .iter()
                    .map(|&(flavour, kind, offset, length)| LockReq { flavour, kind, offset, length })
                    .collect();
                let got = m.lock_many(FILES[*file], &who.r(), &reqs);
                self.lock_many(*file, who, elems, got)
            }
            Op::UnlockMany { file, who, elems } => {
                let reqs: Vec<LockReq> = elems
                    .iter()
                    .map(|&(flavour, offset, length)| LockReq { flavour, kind: S, offset, length })
                    .collect();
                let got = m.unlock_many(FILES[*file], &who.r(), &reqs);
                if elems.is_empty() {
                    return match got {
                        Err((0, Error::Invalid(_))) => Ok(()),
                        other => Err(format!("unlock_many of nothing: {other:?}")),
                    };
                }
                let model = &mut self.files[*file];
                let mut want = Ok(());
                for (i, &(flavour, off, len)) in elems.iter().enumerate() {
                    match real_range(flavour, off, len) {
                        None => want = Err((i, Error::InvalidRange)),
                        Some(r) if !model.unlock(who, flavour, r) => want = Err((i, Error::RangeNotLocked)),
                        Some(_) => continue,
                    }
                    break;
                }
                eq(&got, &want)
            }
            &Op::CheckIo { file, who, access, off, len } => {
                let got = m.check_io(FILES[file], &who.r(), access, off, len);
                match real_range(Windows, off, len) {
                    None => eq(&got, &Err(Error::InvalidRange)),
                    Some(r) => {
                        let refusers = self.files[file].io_refusers(&who, access, r);
                        if refusers.is_empty() {
                            eq(&got, &Ok(()))
                        } else {
                            expect_conflict(&got, &refusers)
                        }
                    }
                }
            }
            &Op::ReleaseOpen { file, who } => {
                let got = m.release_open(FILES[file], &who.r());
                let want = self.files[file].release_open(&who);
                eq(&got, &Ok(want))
            }
            &Op::ReleaseClient { client } => {
                let got = m.release_client(CLIENTS[client]);
                let want: usize = self.files.iter_mut().map(|f| f.release_client(client)).sum();
                eq(&got, &Ok(want))
            }
        }
    }

    /// All or none (SPEC.md §3): arguments are checked first (one flavour, valid ranges; the first bad
    /// element is named), then the elements are taken in order; a refusal names its element and
    /// leaves the state as it was.
    fn lock_many(
        &mut self,
        file: usize,
        who: &Who,
        elems: &[(Flavour, LockType, u64, u64)],
        got: Result<(), (usize, Error)>,
    ) -> Result<(), String> {
        let Some(&(f0, ..)) = elems.first() else {
            return match got {
                Err((0, Error::Invalid(_))) => Ok(()),
                other => Err(format!("lock_many of nothing: {other:?}")),
            };
        };
        let mut ranges = Vec::new();
        for (i, &(f, _, off, len)) in elems.iter().enumerate() {
            if f != f0 {
                return match got {
                    Err((j, Error::Invalid(_))) if j == i => Ok(()),
                    other => Err(format!("lock_many with mixed flavours at {i}: {other:?}")),
                };
            }
            match real_range(f, off, len) {
                Some(r) => ranges.push(r),
                None => return eq(&got, &Err((i, Error::InvalidRange))),
            }
        }
        let mut trial = self.files[file].clone();
        for (i, (&(f, kind, ..), &r)) in elems.iter().zip(&ranges).enumerate() {
            if let Err(refusers) = trial.lock(who, f, kind, r) {
                return match &got {
                    Err((j, Error::Conflict(h))) if *j == i => check_holder(h, &refusers),
                    other => Err(format!("lock_many: element {i} is refused by one of {refusers:?}, got {other:?}")),
                };
            }
        }
        self.files[file] = trial;
        eq(&got, &Ok(()))
    }

    /// Compares every file's normalized state, as every participant lists it, and checks the
    /// invariants.
    fn compare(&self) -> Result<(), String> {
        for (i, f) in FILES.iter().enumerate() {
            for m in &self.rig.mgrs {
                let list = m.list(f).map_err(|e| format!("list: {e:?}"))?;
                check_invariants(&list)?;
                let mut got: Vec<Key> = list.iter().map(key).collect();
                got.sort();
                let mut want: Vec<Key> = self.files[i].locks().iter().map(|l| key(&l.holder())).collect();
                want.sort();
                if got != want {
                    return Err(format!("state of file {i}:\n  unilock: {got:?}\n  model:   {want:?}"));
                }
            }
        }
        Ok(())
    }
}

fn eq<T: PartialEq + std::fmt::Debug>(got: &T, want: &T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {want:?}"))
    }
}

fn run(backend: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(backend);
    for (i, op) in ops.iter().enumerate() {
        let r = w.step(op).and_then(|()| w.compare());
        if let Err(e) = r {
            return Err(TestCaseError::fail(format!("{backend:?}: op #{i} {op:?}: {e}")));
        }
    }
    w.rig.leave();
    Ok(())
}

/// `PROPTEST_CASES` (default 1024) cases in memory; the other backends run their share of them
/// (`Backend::cases`).
fn config(backend: Backend) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    ProptestConfig {
        cases: backend.cases(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/model.txt"))),
        ..ProptestConfig::default()
    }
}

/// Runs the property over every selected backend.
fn campaign(flavours: Vec<Flavour>) {
    for backend in Backend::selected() {
        let started = std::time::Instant::now();
        let config = config(backend);
        let cases = config.cases;
        let mut runner = proptest::test_runner::TestRunner::new(config);
        let r = runner.run(&proptest::collection::vec(op(flavours.clone()), 1..120), |ops| run(backend, &ops));
        eprintln!(
            "model {flavours:?} on {}: {cases} cases in {:.1} s",
            backend.name(),
            started.elapsed().as_secs_f64()
        );
        if let Err(e) = r {
            panic!("{}: {e}", backend.name());
        }
    }
}

#[test]
fn posix_matches_model() {
    campaign(vec![Posix]);
}

#[test]
fn windows_matches_model() {
    campaign(vec![Windows]);
}

#[test]
fn mixed_flavours_match_model() {
    campaign(vec![Posix, Windows]);
}

/// The model itself, on a few hand-checked cases (so a model bug cannot hide a library bug).
#[test]
fn model_sanity() {
    let a = Who { client: 0, owner: 0, open: 1 };
    let a2 = Who { client: 0, owner: 0, open: 2 };
    let b = Who { client: 1, owner: 0, open: 1 };
    let mut f = FileModel::default();
    f.lock(&a, Posix, S, R { start: 0, end: 10 }).unwrap();
    f.lock(&a2, Posix, S, R { start: 10, end: END }).unwrap(); // same POSIX owner: merges
    assert_eq!(f.locks().len(), 1);
    assert_eq!(f.locks()[0].holder().length, TO_EOF);
    assert!(f.lock(&b, Windows, X, R { start: 1 << 40, end: (1 << 40) + 1 }).is_err()); // POSIX tail
    f.lock(&b, Windows, S, R { start: 5, end: 5 }).unwrap();
    f.lock(&b, Windows, X, R { start: 50, end: 60 }).unwrap_err(); // POSIX shared tail of a
    assert!(f.unlock(&a, Posix, R { start: 0, end: END }));
    assert!(f.posix.is_empty());
    assert!(f.lock(&b, Windows, X, R { start: 3, end: 9 }).is_err()); // own zero-length lock inside
    f.lock(&b, Windows, X, R { start: 5, end: 9 }).unwrap(); // at its start: not inside
    f.lock(&a, Windows, X, R { start: 9, end: 9 }).unwrap(); // at the end of b's: not inside
    f.lock(&b, Windows, X, R { start: 50, end: 60 }).unwrap();
    f.lock(&b, Windows, S, R { start: 50, end: 60 }).unwrap();
    assert!(!f.unlock(&b, Windows, R { start: 50, end: 59 }));
    assert!(f.unlock(&b, Windows, R { start: 50, end: 60 }));
    assert_eq!(f.win.iter().filter(|l| l.start == 50).map(|l| l.kind).collect::<Vec<_>>(), vec![S]);
    assert!(f.io_refusers(&b, Access::Write, R { start: 55, end: 56 }).len() == 1); // own shared lock
    assert!(f.io_refusers(&b, Access::Read, R { start: 55, end: 56 }).is_empty());
    assert!(f.io_refusers(&a, Access::Read, R { start: 55, end: 56 }).is_empty());
    assert!(f.io_refusers(&a, Access::Write, R { start: 55, end: 56 }).len() == 1);
}

// ---------------------------------------------------------------------------------------------------
// Regressions found by the property tests, as plain tests

const F: &[u8] = b"regression-file";

fn posix(kind: LockType, offset: u64, length: u64) -> LockReq {
    LockReq { flavour: Posix, kind, offset, length }
}

/// A rig on every selected backend, for the regressions.
fn rigs() -> Vec<Rig> {
    Backend::selected().into_iter().map(|b| Rig::new(b, "model-regression", |_| Settings::default())).collect()
}

fn listed(m: &Manager) -> Vec<(Vec<u8>, LockType, u64, u64)> {
    let mut v: Vec<_> = m.list(F).unwrap().into_iter().map(|h| (h.owner, h.kind, h.offset, h.length)).collect();
    v.sort();
    v
}

/// POSIX `lock_many` must be all or none. Element 1 splits the lock element 0 took; element 2 is
/// refused; undoing must restore the state from before the call. (The undo log keeps lock ids, but
/// re-inserting a removed lock while undoing hands out recycled ids, so an earlier step's ids can name a
/// freed slot — a panic, "live lock id" — or another lock.)
#[test]
fn lock_many_posix_undo_after_a_split() {
    for rig in rigs() {
        lock_many_posix_undo_after_a_split_on(rig.pick(0));
    }
}

fn lock_many_posix_undo_after_a_split_on(m: &Manager) {
    let a = OwnerRef { client: b"c", owner: b"a", open_id: 0 };
    let b = OwnerRef { client: b"c", owner: b"b", open_id: 0 };
    m.lock(F, &a, &posix(X, 17, TO_EOF)).unwrap();
    let before = listed(m);
    let reqs = [posix(X, 2, 8), posix(S, 0, 3), posix(S, 14, 4)];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.lock_many(F, &b, &reqs)));
    let r = r.expect("lock_many panicked while undoing");
    assert!(matches!(r, Err((2, Error::Conflict(_)))), "{r:?}");
    assert_eq!(listed(m), before, "a refused lock_many changed the locks");
}

/// The same undo fault without a panic: a later element merges with a lock an earlier element created
/// (through a pre-existing neighbour); after the refusal the owner holds an overlapping duplicate and has
/// lost an unrelated lock of its own.
#[test]
fn lock_many_posix_undo_after_a_merge() {
    for rig in rigs() {
        lock_many_posix_undo_after_a_merge_on(rig.pick(0));
    }
}

fn lock_many_posix_undo_after_a_merge_on(m: &Manager) {
    let a = OwnerRef { client: b"c", owner: b"a", open_id: 0 };
    let b = OwnerRef { client: b"c", owner: b"b", open_id: 0 };
    m.lock(F, &a, &posix(S, 8, TO_EOF)).unwrap();
    m.unlock(F, &a, Posix, 45, 1).unwrap(); // a: S[8,45) S[46,EOF)
    m.lock(F, &b, &posix(X, 4, 1)).unwrap();
    let before = listed(m);
    let reqs = [posix(S, 7, 1), posix(S, 43, 3), posix(S, 3, 2)];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.lock_many(F, &a, &reqs)));
    let r = r.expect("lock_many panicked while undoing");
    assert!(matches!(r, Err((2, Error::Conflict(_)))), "{r:?}");
    assert_eq!(listed(m), before, "a refused lock_many changed the locks");
}

/// A POSIX lock that only touches another owner's zero-length Windows lock at X does not conflict with
/// it (SPEC.md §2), but merging it with its owner's same-type neighbour would give one lock that
/// strictly contains X. Decided (issue 14): unilock merges as Samba's `brl_lock_posix` does only when
/// the merged lock does not conflict with the zero-length lock; otherwise the request is refused with
/// the zero-length lock as the holder, so the table never holds two conflicting locks.
#[test]
fn posix_merge_across_zero_length_windows_lock() {
    for rig in rigs() {
        posix_merge_across_zero_length_windows_lock_on(rig.pick(0));
    }
}

fn posix_merge_across_zero_length_windows_lock_on(m: &Manager) {
    let p = OwnerRef { client: b"nlm", owner: b"p", open_id: 0 };
    let w = OwnerRef { client: b"smb", owner: b"w", open_id: 1 };
    m.lock(F, &p, &posix(S, 2, 4)).unwrap(); // [2,6)
    m.lock(F, &w, &LockReq { flavour: Windows, kind: X, offset: 6, length: 0 }).unwrap(); // at its end
    let r = m.lock(F, &p, &posix(S, 6, 1)); // touches [2,6) and X=6, overlaps neither
    match &r {
        Err(Error::Conflict(h)) => assert_eq!((h.client.as_slice(), h.offset, h.length), (&b"smb"[..], 6, 0)),
        other => panic!("expected a conflict with the zero-length lock, got {other:?}"),
    }
    assert_eq!(m.test(F, &p, &posix(S, 6, 1)).unwrap().map(|h| h.offset), Some(6), "test agrees with lock");
    let list = m.list(F).unwrap();
    assert!(check_invariants(&list).is_ok(), "{list:?}");
    // Issue 14 item 13: exclusive [119,124) + zero-length at 119, then [111,119).
    let g: &[u8] = b"file-13";
    m.lock(g, &p, &posix(X, 119, 5)).unwrap();
    m.lock(g, &w, &LockReq { flavour: Windows, kind: S, offset: 119, length: 0 }).unwrap();
    assert!(matches!(m.lock(g, &p, &posix(X, 111, 8)), Err(Error::Conflict(_))));
    let list = m.list(g).unwrap();
    assert!(check_invariants(&list).is_ok(), "{list:?}");
    assert_eq!(list.len(), 2);
}
