//! Tests of the per-file decisions (`core::file`).

use super::*;
use crate::core::lease::{Kind, Lease, Open};
use LockType::{Exclusive as X, Shared as S};

/// splitmix64: a seeded generator with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn range(flavour: Flavour, off: u64, len: u64) -> Range {
    Range::from_request(flavour, off, len).unwrap()
}

/// The locks of `owner`, sorted (ids differ between equal sets).
fn own(set: &LockSet, owner: OwnerIdx) -> Vec<(u64, u128, LockType, Flavour)> {
    let mut v: Vec<_> = set
        .iter()
        .filter(|(_, l)| l.owner == owner)
        .map(|(_, l)| (l.range.start, l.range.end, l.kind, l.flavour))
        .collect();
    v.sort();
    v
}

fn all(set: &LockSet) -> Vec<(u32, u64, u128, LockType, Flavour)> {
    let mut v: Vec<_> = set.iter().map(|(_, l)| (l.owner.0, l.range.start, l.range.end, l.kind, l.flavour)).collect();
    v.sort();
    v
}

/// A random file: a few owners' locks of both flavours over a small domain (zero-length Windows
/// locks included), each taken through the core rules so the set is a reachable one.
fn random_set(rng: &mut Rng) -> LockSet {
    let mut set = LockSet::new();
    for _ in 0..rng.below(12) {
        let owner = OwnerIdx(rng.below(4) as u32);
        // Owners 0 and 1 are POSIX, 2 and 3 Windows (an owner has one flavour).
        let flavour = if owner.0 < 2 { Flavour::Posix } else { Flavour::Windows };
        let kind = if rng.below(2) == 0 { S } else { X };
        let len = if flavour == Flavour::Windows { rng.below(6) } else { 1 + rng.below(6) };
        let r = range(flavour, rng.below(24), len);
        if let Ok(c) = lock(&set, owner, flavour, kind, &r) {
            set.apply(&c);
        }
    }
    set
}

/// `lock_many` against the plain sequential way (each element applied to a copy of the whole set):
/// the same element refused with the same holder, or the same final locks, over many random files.
#[test]
fn lock_many_matches_sequential_application() {
    let mut rng = Rng(16);
    let (mut granted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let set = random_set(&mut rng);
        let owner = OwnerIdx(rng.below(4) as u32);
        let flavour = if owner.0 < 2 { Flavour::Posix } else { Flavour::Windows };
        let elems: Vec<(LockType, Range)> = (0..1 + rng.below(4))
            .map(|_| {
                let kind = if rng.below(2) == 0 { S } else { X };
                let len = if flavour == Flavour::Windows { rng.below(6) } else { 1 + rng.below(6) };
                (kind, range(flavour, rng.below(24), len))
            })
            .collect();
        let mut seq = set.clone();
        let mut want = Ok(());
        for (i, (k, r)) in elems.iter().enumerate() {
            match lock(&seq, owner, flavour, *k, r) {
                Ok(c) => {
                    seq.apply(&c);
                }
                Err(d) => {
                    let holder = match d {
                        Denied::Conflict(id) => Some(*seq.get(id)),
                        _ => None,
                    };
                    want = Err((i, holder));
                    break;
                }
            }
        }
        match (lock_many(&set, owner, flavour, &elems), want) {
            (Ok(c), Ok(())) => {
                granted += 1;
                assert!(c.removed.iter().all(|&id| set.get(id).owner == owner), "only the owner's locks go");
                let mut after = set.clone();
                after.apply(&c);
                assert_eq!(all(&after), all(&seq), "{elems:?} on {:?}", all(&set));
                assert_eq!(own(&after, owner), own(&seq, owner));
            }
            (Err(got), Err((i, holder))) => {
                refused += 1;
                assert_eq!(got.index, i, "{elems:?} on {:?}", all(&set));
                // Several locks may refuse an element: the one named must be one held when the
                // element was decided (by this owner, or conflicting in type), and its id, when it has
                // one in the set, must name it.
                let (k, r) = elems[i];
                match (&got.why, holder) {
                    (Refusal::Conflict(h), Some(_)) => {
                        assert!(seq.iter().any(|(_, l)| l == h), "holder {h:?} was not held");
                        assert!(h.owner == owner || k == X || h.kind == X, "holder {h:?} for {k:?} {r:?}");
                    }
                    (Refusal::Denied(_), None) => {}
                    (a, b) => panic!("{a:?} vs a sequential holder {b:?}"),
                }
            }
            (got, want) => panic!("{elems:?} on {:?}: got {got:?}, sequentially {want:?}", all(&set)),
        }
    }
    assert!(granted > 1_000 && refused > 1_000, "{granted} granted, {refused} refused: too few of one");
}

/// The case tests/model.rs found (an earlier element splits a lock, a later one is refused): the
/// refusal changes nothing, and is one `Changes`-less answer.
#[test]
fn lock_many_refused_after_a_split_changes_nothing() {
    let mut set = LockSet::new();
    let (a, b) = (OwnerIdx(0), OwnerIdx(1));
    set.apply(&lock(&set, a, Flavour::Posix, X, &range(Flavour::Posix, 17, u64::MAX)).unwrap());
    let elems = [(X, range(Flavour::Posix, 2, 8)), (S, range(Flavour::Posix, 0, 3)), (S, range(Flavour::Posix, 14, 4))];
    let r = lock_many(&set, b, Flavour::Posix, &elems).unwrap_err();
    assert_eq!(r.index, 2);
    assert!(matches!(r.why, Refusal::Conflict(h) if h.owner == a), "{r:?}");
}

/// A Windows exclusive element refused by the owner's own lock an earlier element took: the holder
/// is that lock (no id of the set names it).
#[test]
fn lock_many_windows_own_earlier_element_refuses() {
    let set = LockSet::new();
    let o = OwnerIdx(2);
    let elems = [(S, range(Flavour::Windows, 0, 10)), (X, range(Flavour::Windows, 5, 1))];
    let r = lock_many(&set, o, Flavour::Windows, &elems).unwrap_err();
    assert_eq!(r.index, 1);
    let Refusal::Conflict(h) = r.why else { panic!("{r:?}") };
    assert_eq!((h.owner, h.kind, h.range), (o, S, range(Flavour::Windows, 0, 10)));
    // Granted whole: both locks, as one Changes with nothing removed.
    let ok = [(S, range(Flavour::Windows, 0, 10)), (S, range(Flavour::Windows, 5, 1))];
    let c = lock_many(&set, o, Flavour::Windows, &ok).unwrap();
    assert!(c.removed.is_empty());
    assert_eq!(c.added.len(), 2);
}

fn waiter(id: u64, owner: u32, kind: LockType, off: u64, len: u64) -> Waiter {
    Waiter { id, owner: OwnerIdx(owner), flavour: Flavour::Posix, kind, range: range(Flavour::Posix, off, len) }
}

/// Token idempotency, every combination of (same owner, type, range, token) against a waiting and a
/// granted request.
#[test]
fn resubmission_is_the_whole_request() {
    let base = GrantedReq { owner: OwnerIdx(1), token: 7, kind: X, range: range(Flavour::Posix, 0, 10) };
    for bits in 0u32..16 {
        let this = GrantedReq {
            owner: if bits & 1 != 0 { OwnerIdx(2) } else { base.owner },
            token: if bits & 2 != 0 { 8 } else { base.token },
            kind: if bits & 4 != 0 { S } else { base.kind },
            range: if bits & 8 != 0 { range(Flavour::Posix, 0, 11) } else { base.range },
        };
        let same = bits == 0;
        // Waiting: the same request is that waiter (index 1, behind another owner's).
        let ws = [waiter(1, 9, X, 0, 10), waiter(2, base.owner.0, base.kind, 0, 10)];
        let got = resubmission(&ws, [3, base.token], &[], &this);
        assert_eq!(got, if same { Resubmit::Waiting(1) } else { Resubmit::New }, "bits {bits:04b}");
        // Granted earlier.
        let got = resubmission(&[], [], &[base], &this);
        assert_eq!(got, if same { Resubmit::Granted } else { Resubmit::New }, "bits {bits:04b}");
    }
    // Waiting wins over a granted twin (the queue is looked at first).
    let ws = [waiter(2, base.owner.0, base.kind, 0, 10)];
    assert_eq!(resubmission(&ws, [base.token], &[base], &base), Resubmit::Waiting(0));
}

/// Draining with `next_grant` as `FileState::settle` does; returns the granted waiter ids in order.
fn drain(set: &mut LockSet, waiters: &mut Vec<Waiter>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(g) = next_grant(set, waiters, from) {
        set.apply(&g.changes);
        out.push(waiters.remove(g.index).id);
        from = g.next_from;
    }
    out
}

#[test]
fn next_grant_in_arrival_order() {
    let mut set = LockSet::new();
    // Nothing held: the first waiter goes; the second (exclusive, same bytes, another owner) then
    // conflicts with the first's lock; the third (other bytes) goes.
    let mut ws = vec![waiter(1, 1, X, 0, 10), waiter(2, 2, X, 5, 10), waiter(3, 3, S, 20, 5)];
    assert_eq!(drain(&mut set, &mut ws), vec![1, 3]);
    assert_eq!(ws.iter().map(|w| w.id).collect::<Vec<_>>(), vec![2]);
    // A later shared waiter does not pass an earlier exclusive one on the same bytes.
    let mut set = LockSet::new();
    set.apply(&lock(&set, OwnerIdx(1), Flavour::Posix, S, &range(Flavour::Posix, 0, 10)).unwrap());
    let mut ws = vec![waiter(2, 2, X, 0, 10), waiter(3, 3, S, 0, 10)];
    assert_eq!(drain(&mut set, &mut ws), Vec::<u64>::new());
    assert_eq!(next_grant(&set, &ws, 0), None);
}

/// A grant that removes locks (an owner's downgrade) looks again from the front: an earlier waiter
/// it unblocks is granted in the same settle.
#[test]
fn next_grant_restarts_after_a_downgrade() {
    let mut set = LockSet::new();
    set.apply(&lock(&set, OwnerIdx(1), Flavour::Posix, X, &range(Flavour::Posix, 0, 10)).unwrap());
    // Waiter 2 (shared, another owner) is blocked by owner 1's exclusive lock; waiter 3 is owner 1
    // downgrading its own lock to shared (nothing blocks it: own locks never conflict).
    let mut ws = vec![waiter(2, 2, S, 0, 10), waiter(3, 1, S, 0, 10)];
    let g = next_grant(&set, &ws, 0).unwrap();
    assert_eq!((g.index, g.next_from), (1, 0), "the downgrade, then from the front");
    assert_eq!(drain(&mut set, &mut ws), vec![3, 2]);
    assert!(ws.is_empty());
}

fn spec(kind: Option<Kind>, sv: bool, ow: bool, stat: bool, write: bool) -> OpenSpec {
    OpenSpec {
        kind,
        sharing_violation: sv,
        overwrite: ow,
        stat,
        write,
        key: [7; 16],
        requested: 5,
        ..Default::default()
    }
}

/// The open -> trigger mapping over every combination of its inputs, against the rules as a table:
/// a sharing violation fires SharingViolation (and records nothing), else an overwrite fires
/// Overwrite, else a stat open fires nothing, else Open; only a delegation request never waits; only
/// a lease spares its own key; writing is write or overwrite.
#[test]
fn open_plan_table() {
    let kinds = [None, Some(Kind::Lease), Some(Kind::Oplock), Some(Kind::Delegation)];
    for kind in kinds {
        for bits in 0u32..16 {
            let (sv, ow, stat, write) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
            let p = open_plan(&spec(kind, sv, ow, stat, write));
            let trigger = match (sv, ow, stat) {
                (true, _, _) => Some(Trigger::SharingViolation),
                (false, true, _) => Some(Trigger::Overwrite),
                (false, false, true) => None,
                (false, false, false) => Some(Trigger::Open),
            };
            let want = OpenPlan {
                trigger,
                may_wait: kind != Some(Kind::Delegation),
                own_key: kind == Some(Kind::Lease),
                write: write || ow,
                records: !sv,
            };
            assert_eq!(p, want, "{kind:?} sv={sv} overwrite={ow} stat={stat} write={write}");
        }
    }
}

#[test]
fn open_requests_and_the_plain_open_key() {
    let s = spec(None, false, false, false, true);
    let r = open_request(&s, b"c", 4, true, 9);
    assert_eq!((r.kind, r.requested, r.key, r.open_id, r.proc, r.brl_below_eof), (Kind::Lease, 0, [7; 16], 4, 9, true));
    let (p, g) = plain_open(&r);
    assert_eq!((p.key, p.requested), (PLAIN_OPEN_KEY, 0));
    assert_eq!(g, Grant::NONE);
    let s = spec(Some(Kind::Oplock), false, false, false, false);
    let r = open_request(&s, b"c", 4, false, 0);
    assert_eq!((r.kind, r.requested), (Kind::Oplock, 5));
    let (r, g) = reclaim_request(&OpenSpec { epoch: 3, version: 2, ..s }, b"c", 4, 3, 0);
    assert_eq!((r.requested, r.brl_below_eof, g.state, g.epoch, g.version, g.breaking), (3, false, 3, 3, 2, false));
}

fn lease(client: &[u8], key: Key, kind: Kind, proc: u64, deadline: u64) -> Lease {
    Lease {
        client: client.into(),
        key,
        kind,
        version: 1,
        parent: None,
        dir: false,
        state: 5,
        epoch: 0,
        breaking: true,
        break_to: 1,
        break_required: 1,
        deadline,
        timeout_ms: 100,
        opens: 1,
        proc,
    }
}

fn open(client: &[u8], open_id: u64, key: Option<Key>, proc: u64) -> Open {
    Open { client: client.into(), open_id, lease: key, stat: false, write: false, proc }
}

fn brk(client: &[u8], key: Key, kind: Kind, ack: bool) -> Note {
    Note::Break { client: client.into(), key, kind, from: 5, to: 1, epoch: 0, ack }
}

/// Lease identity in events: an oplock's notes name its open, a lease's and a delegation's none; the
/// holder's process is the lease's, or (a lease gone with its last open) that of the client's opens;
/// an ack-required break of a live lease arms the timer at its deadline, first.
#[test]
fn note_effects_identity_and_timers() {
    let mut fl = FileLeases::default();
    fl.leases.push(lease(b"smb", [1; 16], Kind::Oplock, 11, 500));
    fl.leases.push(lease(b"smb", [2; 16], Kind::Lease, 12, 600));
    fl.leases.push(lease(b"nfs", [3; 16], Kind::Delegation, 13, 700));
    fl.opens.push(open(b"smb", 41, Some([1; 16]), 11));
    fl.opens.push(open(b"smb", 42, Some([2; 16]), 12));
    fl.opens.push(open(b"gone", 43, None, 14));
    let notes = vec![
        brk(b"smb", [1; 16], Kind::Oplock, true),
        brk(b"smb", [2; 16], Kind::Lease, false),
        brk(b"nfs", [3; 16], Kind::Delegation, true),
        Note::Revoked { client: b"gone".as_slice().into(), key: [4; 16], kind: Kind::Oplock, from: 5, epoch: 0 },
        brk(b"nobody", [5; 16], Kind::Lease, true),
    ];
    let e = note_effects(&fl, notes.clone());
    let want = vec![
        Effect::ArmBreakTimer { at: 500 },
        Effect::Notify { note: notes[0].clone(), proc: 11, open_id: 41 },
        Effect::Notify { note: notes[1].clone(), proc: 12, open_id: 0 },
        Effect::ArmBreakTimer { at: 700 },
        Effect::Notify { note: notes[2].clone(), proc: 13, open_id: 0 },
        // An oplock gone with its open: the client's opens' process; no open names it any more.
        Effect::Notify { note: notes[3].clone(), proc: 14, open_id: 0 },
        // Nothing of the client here: process 0 (this one), no timer for a lease that is not here.
        Effect::Notify { note: notes[4].clone(), proc: 0, open_id: 0 },
    ];
    assert_eq!(e, want);
    assert!(note_effects(&fl, Vec::new()).is_empty());
}

#[test]
fn brl_below_eof_of_a_size() {
    let mut set = LockSet::new();
    assert!(!brl_below_eof(&set, 100));
    set.apply(&lock(&set, OwnerIdx(0), Flavour::Posix, S, &range(Flavour::Posix, 50, 10)).unwrap());
    // (size, a lock starts below it): an empty file has none; a lock at 50 is below 51, not below 50.
    for (size, want) in [(0, false), (50, false), (51, true), (1000, true)] {
        assert_eq!(brl_below_eof(&set, size), want, "size {size}");
    }
    // Exclusive locks count too.
    let mut set = LockSet::new();
    set.apply(&lock(&set, OwnerIdx(2), Flavour::Windows, X, &range(Flavour::Windows, 0, 1)).unwrap());
    assert!(brl_below_eof(&set, 1));
}

#[test]
fn open_lease_key_is_the_opens() {
    let mut fl = FileLeases::default();
    fl.opens.push(open(b"smb", 1, Some([1; 16]), 0));
    fl.opens.push(open(b"smb", 2, None, 0));
    fl.opens.push(open(b"other", 1, Some([3; 16]), 0));
    assert_eq!(open_lease_key(&fl, b"smb", 1), Some([1; 16]));
    assert_eq!(open_lease_key(&fl, b"smb", 2), None);
    assert_eq!(open_lease_key(&fl, b"smb", 3), None);
    assert_eq!(open_lease_key(&fl, b"other", 1), Some([3; 16]));
}

#[test]
fn trigger_outcome_table() {
    for (waits, may_wait, want) in [
        (0, false, TriggerOutcome::Ready),
        (0, true, TriggerOutcome::Ready),
        (1, false, TriggerOutcome::Busy),
        (3, false, TriggerOutcome::Busy),
        (1, true, TriggerOutcome::Wait),
        (3, true, TriggerOutcome::Wait),
    ] {
        assert_eq!(trigger_outcome(waits, may_wait), want, "{waits} waits, may wait {may_wait}");
    }
}

#[test]
fn breaks_done_when_none_is_breaking() {
    let mut fl = FileLeases::default();
    fl.leases.push(lease(b"a", [1; 16], Kind::Lease, 0, 0)); // breaking
    let mut calm = lease(b"b", [2; 16], Kind::Lease, 0, 0);
    calm.breaking = false;
    fl.leases.push(calm);
    let w = |c: &[u8], k: u8| (Box::<[u8]>::from(c), [k; 16]);
    assert!(breaks_done(&fl, &[]));
    assert!(breaks_done(&fl, &[w(b"b", 2)]));
    assert!(breaks_done(&fl, &[w(b"gone", 9)]), "a lease that went is not breaking");
    assert!(!breaks_done(&fl, &[w(b"b", 2), w(b"a", 1)]));
    assert!(breaks_done(&fl, &[w(b"a", 2)]), "client a has no lease with key 2");
}
