//! The model-based random driver (issue 14): seeded random sequences of operations on the `Manager`
//! (the engine behind every C call) over each backend — in memory, a database file, and shared mode
//! with two managers ("processes") on one database — checked against a model after every step, and
//! shrunk by proptest to a minimal sequence on failure.
//!
//! Operations: non-blocking and blocking locks of both flavours (with timeouts, and re-submitted
//! tokens), unlocks, cancels, closes of opens, client releases, the clock moving on (timeouts, break
//! timeouts); opens with leases, oplocks and delegations, closes, acks, lease returns and break
//! triggers, waiting or not.
//!
//! The model holds the locks (POSIX as per-byte types per owner in a small domain, Windows as a list)
//! and the queue of blocking requests, and decides every answer: granted, conflict (with which
//! holders), pending or deadlock (over a wait-for graph it computes afresh each time), and which
//! waiters each step grants or times out, in order. After every step:
//! * no two held locks conflict, and a POSIX owner's locks are normalized;
//! * the listing of every file equals the model's locks;
//! * the lock events of the step are exactly the grants and timeouts the model expects (a waiter
//!   whose blockers went is granted in that same step: no lost wake-up);
//! * every break wait ends (`BreaksDone`) by an ack or by the break timeout: the `Quiesce` step moves
//!   the clock past the break timeout and checks that none is left.
//!
//! Leases are not modelled beyond that (a lock may answer `Busy` while a write-caching lease of another
//! client is broken; the model then expects no change).
//!
//! Running: `cargo test --release --test driver` runs the bounded campaign of `make check` (about
//! 150 000 steps in memory, 15 000 on a database, 15 000 in shared mode, 600 in cluster mode on a private
//! etcd, skipped without one). `UNILOCK_FUZZ_STEPS=<n>`
//! runs about n steps on every backend (a long campaign: `UNILOCK_FUZZ_STEPS=5000000`);
//! `UNILOCK_FUZZ_SEED=<n>` changes the seed (default 14); add `-- --nocapture` to see the steps run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};
use unilock::clock::{Clock, ManualClock};
use unilock::core::lease::{self, Trigger};
use unilock::core::{Flavour, LockType};
use unilock::error::{Error, Holder};
use unilock::manager::{LockReq, Manager, Settings, WaitSpec};
use unilock::owners::OwnerRef;
use unilock::requests::{CancelOutcome, Event, EventKind};
use unilock::table::{LeaseAnswer, OpenSpec, Queued};

mod common;
use common::backends::{Backend, Rig, TempDir};

use Flavour::{Posix, Windows};
use LockType::{Exclusive as X, Shared as S};

const FILES: [&[u8]; 2] = [b"f0", b"f1"];
const CLIENTS: [&[u8]; 3] = [b"c0", b"c1", b"c2"];
const OWNERS: [&[u8]; 2] = [b"o0", b"o1"];
/// POSIX domain: bytes 0..D (no to-EOF ranges here; tests/model.rs covers those).
const D: usize = 24;
const BREAK_MS: u64 = 100;

/// A granted blocking request remembered for idempotent re-submission: (token, kind, range).
type Remembered = (u64, LockType, R);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Who {
    client: usize,
    owner: usize,
    open: u64,
}

impl Who {
    fn r(&self) -> OwnerRef<'static> {
        OwnerRef { client: CLIENTS[self.client], owner: OWNERS[self.owner], open_id: self.open }
    }
}

/// An owner as the library interns it: POSIX (client, owner), Windows (client, owner, open id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Oid {
    P(usize, usize),
    W(usize, usize, u64),
}

fn oid(who: &Who, flavour: Flavour) -> Oid {
    match flavour {
        Posix => Oid::P(who.client, who.owner),
        Windows => Oid::W(who.client, who.owner, who.open),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseKind {
    None,
    Lease,
    Oplock,
    Delegation,
}

#[derive(Clone, Debug)]
enum Op {
    Lock {
        file: usize,
        who: Who,
        flavour: Flavour,
        kind: LockType,
        off: u64,
        len: u64,
    },
    Block {
        file: usize,
        who: Who,
        flavour: Flavour,
        kind: LockType,
        off: u64,
        len: u64,
        timeout: u64,
    },
    /// Re-submits the n-th remembered blocking request (pending or granted) with its token.
    Resubmit {
        pick: usize,
    },
    Unlock {
        file: usize,
        who: Who,
        flavour: Flavour,
        off: u64,
        len: u64,
    },
    Cancel {
        pick: usize,
    },
    ReleaseOpen {
        file: usize,
        who: Who,
    },
    ReleaseClient {
        client: usize,
    },
    Advance {
        ms: u64,
    },
    Open {
        file: usize,
        client: usize,
        open: u64,
        kind: LeaseKind,
        key: u8,
        requested: u8,
        write: bool,
        wait: bool,
    },
    Close {
        file: usize,
        client: usize,
        open: u64,
    },
    Ack {
        pick: usize,
        state: u8,
    },
    LeaseRelease {
        file: usize,
        client: usize,
        key: u8,
    },
    Trigger {
        file: usize,
        client: usize,
        trigger: Trigger,
        wait: bool,
    },
    Quiesce,
}

fn who() -> impl Strategy<Value = Who> {
    (0..3usize, 0..2usize, 1..3u64).prop_map(|(client, owner, open)| Who { client, owner, open })
}

fn kind() -> impl Strategy<Value = LockType> {
    prop_oneof![Just(S), Just(X)]
}

fn flavour() -> impl Strategy<Value = Flavour> {
    prop_oneof![2 => Just(Posix), 1 => Just(Windows)]
}

/// A range for `flavour` inside the domain (Windows: zero-length ones too).
fn range(f: Flavour) -> BoxedStrategy<(u64, u64)> {
    match f {
        Posix => (0..(D as u64 - 1), 1..=8u64).prop_map(|(o, l)| (o, l.min(D as u64 - o))).boxed(),
        Windows => (0..(D as u64), 0..=6u64).prop_map(|(o, l)| (o, l)).boxed(),
    }
}

fn lock_args() -> impl Strategy<Value = (usize, Who, Flavour, LockType, u64, u64)> {
    (0..2usize, who(), flavour(), kind())
        .prop_flat_map(|(file, who, f, k)| range(f).prop_map(move |(o, l)| (file, who, f, k, o, l)))
}

fn trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::Open),
        Just(Trigger::SharingViolation),
        Just(Trigger::DeleteRename),
        Just(Trigger::Overwrite),
        Just(Trigger::Write),
        Just(Trigger::ByteRangeLock),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let state =
        prop_oneof![Just(0u8), Just(lease::R), Just(lease::R | lease::H), Just(lease::R | lease::W), Just(lease::RWH)];
    let lkind = prop_oneof![
        1 => Just(LeaseKind::None),
        3 => Just(LeaseKind::Lease),
        1 => Just(LeaseKind::Oplock),
        2 => Just(LeaseKind::Delegation),
    ];
    prop_oneof![
        12 => lock_args().prop_map(|(file, who, flavour, kind, off, len)| Op::Lock { file, who, flavour, kind, off, len }),
        14 => (lock_args(), prop_oneof![3 => Just(0u64), 1 => (1..6u64).prop_map(|t| t * 20)])
            .prop_map(|((file, who, flavour, kind, off, len), timeout)| Op::Block { file, who, flavour, kind, off, len, timeout }),
        2 => any::<usize>().prop_map(|pick| Op::Resubmit { pick }),
        10 => lock_args().prop_map(|(file, who, flavour, _, off, len)| Op::Unlock { file, who, flavour, off, len }),
        3 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0..2usize, who()).prop_map(|(file, who)| Op::ReleaseOpen { file, who }),
        1 => (0..3usize).prop_map(|client| Op::ReleaseClient { client }),
        3 => (1..8u64).prop_map(|t| Op::Advance { ms: t * 10 }),
        6 => (0..2usize, 0..3usize, 1..3u64, lkind, 0..2u8, state.clone(), any::<bool>(), any::<bool>()).prop_map(
            |(file, client, open, kind, key, requested, write, wait)| Op::Open { file, client, open, kind, key, requested, write, wait }
        ),
        2 => (0..2usize, 0..3usize, 1..3u64).prop_map(|(file, client, open)| Op::Close { file, client, open }),
        4 => (any::<usize>(), state).prop_map(|(pick, state)| Op::Ack { pick, state }),
        1 => (0..2usize, 0..3usize, 0..2u8).prop_map(|(file, client, key)| Op::LeaseRelease { file, client, key }),
        3 => (0..2usize, 0..3usize, trigger(), any::<bool>()).prop_map(|(file, client, trigger, wait)| Op::Trigger { file, client, trigger, wait }),
        1 => Just(Op::Quiesce),
    ]
}

// ---------------------------------------------------------------------------------------------------
// The lock model

/// `[start, end)`; `start == end` is a zero-length (Windows) range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct R {
    start: u64,
    end: u64,
}

fn overlaps(x: R, y: R) -> bool {
    match (x.start == x.end, y.start == y.end) {
        (false, false) => x.start < y.end && y.start < x.end,
        (true, false) => y.start < x.start && x.start < y.end,
        (false, true) => x.start < y.start && y.start < x.end,
        (true, true) => false,
    }
}

fn conflict(a: LockType, b: LockType) -> bool {
    a == X || b == X
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MLock {
    oid: Oid,
    kind: LockType,
    r: R,
}

impl MLock {
    fn key(&self) -> (Flavour, Vec<u8>, Vec<u8>, u64, LockType, u64, u64) {
        let (f, c, o, open) = match self.oid {
            Oid::P(c, o) => (Posix, c, o, 0),
            Oid::W(c, o, open) => (Windows, c, o, open),
        };
        (f, CLIENTS[c].to_vec(), OWNERS[o].to_vec(), open, self.kind, self.r.start, self.r.end - self.r.start)
    }
}

fn holder_key(h: &Holder) -> (Flavour, Vec<u8>, Vec<u8>, u64, LockType, u64, u64) {
    (h.flavour, h.client.clone(), h.owner.clone(), h.open_id, h.kind, h.offset, h.length)
}

#[derive(Clone, Debug, Default)]
struct FileModel {
    posix: BTreeMap<(usize, usize), [Option<LockType>; D]>,
    win: Vec<MLock>,
}

impl FileModel {
    fn locks(&self) -> Vec<MLock> {
        let mut v = self.win.clone();
        for (&(c, o), bytes) in &self.posix {
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
                v.push(MLock { oid: Oid::P(c, o), kind, r: R { start: s as u64, end: b as u64 } });
            }
        }
        v.sort();
        v
    }

    /// The locks that refuse the request (own Windows locks included for an exclusive Windows
    /// request), with the POSIX merge rule at the seams (core/posix.rs).
    fn refusers(&self, who: &Who, flavour: Flavour, kind: LockType, r: R) -> Vec<MLock> {
        let me = oid(who, flavour);
        let mut out: Vec<MLock> = self
            .locks()
            .into_iter()
            .filter(|l| {
                overlaps(l.r, r) && if l.oid == me { flavour == Windows && kind == X } else { conflict(l.kind, kind) }
            })
            .collect();
        if flavour == Posix {
            if let Some(bytes) = self.posix.get(&(who.client, who.owner)) {
                let mut seams = Vec::new();
                if r.start > 0 && bytes[r.start as usize - 1] == Some(kind) {
                    seams.push(r.start);
                }
                if (r.end as usize) < D && bytes[r.end as usize] == Some(kind) {
                    seams.push(r.end);
                }
                out.extend(
                    self.win
                        .iter()
                        .filter(|l| l.r.start == l.r.end && seams.contains(&l.r.start) && conflict(l.kind, kind)),
                );
            }
        }
        out
    }

    /// Would taking this lock remove one of the owner's locks (a merge, split or replacement)? The
    /// library then forgets the owner's granted tokens on the file.
    fn lock_removes(&self, who: &Who, flavour: Flavour, kind: LockType, r: R) -> bool {
        if flavour == Windows {
            return false;
        }
        let Some(bytes) = self.posix.get(&(who.client, who.owner)) else { return false };
        (r.start..r.end).any(|b| bytes[b as usize].is_some())
            || (r.start > 0 && bytes[r.start as usize - 1] == Some(kind))
            || ((r.end as usize) < D && bytes[r.end as usize] == Some(kind))
    }

    fn take(&mut self, who: &Who, flavour: Flavour, kind: LockType, r: R) {
        match flavour {
            Posix => {
                let bytes = self.posix.entry((who.client, who.owner)).or_insert([None; D]);
                for b in r.start..r.end {
                    bytes[b as usize] = Some(kind);
                }
            }
            Windows => self.win.push(MLock { oid: oid(who, Windows), kind, r }),
        }
    }

    /// An unlock: Ok(removed something), or Err for a Windows range not held exactly.
    fn unlock(&mut self, who: &Who, flavour: Flavour, r: R) -> Result<bool, ()> {
        match flavour {
            Posix => {
                let Some(bytes) = self.posix.get_mut(&(who.client, who.owner)) else { return Ok(false) };
                let mut any = false;
                for b in r.start..r.end {
                    any |= bytes[b as usize].take().is_some();
                }
                if bytes.iter().all(|b| b.is_none()) {
                    self.posix.remove(&(who.client, who.owner));
                }
                Ok(any)
            }
            Windows => {
                let me = oid(who, Windows);
                let find = |k: LockType| self.win.iter().position(|l| l.oid == me && l.kind == k && l.r == r);
                match find(X).or_else(|| find(S)) {
                    Some(i) => {
                        self.win.remove(i);
                        Ok(true)
                    }
                    None => Err(()),
                }
            }
        }
    }

    /// Drops every lock of the owners `f` selects; returns the owners that lost a lock.
    fn drop_owners(&mut self, f: impl Fn(Oid) -> bool) -> Vec<Oid> {
        let mut lost: Vec<Oid> = self.locks().iter().map(|l| l.oid).filter(|o| f(*o)).collect();
        lost.dedup();
        self.win.retain(|l| !f(l.oid));
        self.posix.retain(|&(c, o), _| !f(Oid::P(c, o)));
        lost
    }
}

/// A queued blocking request.
#[derive(Clone, Debug)]
struct MWaiter {
    mgr: usize,
    id: u64,
    file: usize,
    who: Who,
    flavour: Flavour,
    kind: LockType,
    r: R,
    token: u64,
    /// (deadline, timer sequence) of its timeout.
    deadline: Option<(u64, u64)>,
}

/// A blocking request the model remembers for re-submission.
#[derive(Clone, Debug)]
struct Sent {
    mgr: usize,
    file: usize,
    who: Who,
    flavour: Flavour,
    kind: LockType,
    off: u64,
    len: u64,
    token: u64,
}

// ---------------------------------------------------------------------------------------------------
// Backends

// Built by the suites' shared helper (tests/common/backends.rs); cluster mode only here.

#[path = "common/etcd.rs"]
mod etcd;

/// The etcd of the cluster campaign (its client URL), while it runs.
static CLUSTER_ETCD: Mutex<Option<String>> = Mutex::new(None);

static CASE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Steps run by this thread's campaign (each campaign runs on one test thread).
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

struct World {
    mgrs: Vec<Manager>,
    rxs: Vec<mpsc::Receiver<Event>>,
    clock: Arc<ManualClock>,
    _dir: Option<TempDir>,
    files: Vec<FileModel>,
    waiters: Vec<MWaiter>,
    /// (file, owner) → granted (token, kind, range) remembered for idempotent re-submission.
    granted: HashMap<(usize, Oid), Vec<Remembered>>,
    sent: Vec<Sent>,
    next_token: u64,
    timer_seq: u64,
    /// Break waits (open or trigger) not yet ended: (manager, request id).
    break_waits: HashSet<(usize, u64)>,
    /// Breaks announced with an ack required and not yet ended: (file, client, key, break_to).
    breaks: Vec<(usize, usize, [u8; 16], u8)>,
    /// Lock events of the current step: (manager, id) → result.
    lock_events: Vec<(usize, u64, Result<(), Error>)>,
}

impl World {
    fn new(backend: Backend) -> World {
        let clock = Arc::new(ManualClock::default());
        let cluster = matches!(backend, Backend::Cluster).then(|| {
            let url = CLUSTER_ETCD.lock().unwrap().clone().expect("the cluster campaign's etcd");
            let c = CASE.fetch_add(1, Ordering::Relaxed);
            unilock::backend::etcd::EtcdConfig {
                endpoints: url,
                cluster: format!("driver-{}-{c}", std::process::id()),
                host: "driver".into(),
                ttl_ms: 10_000,
            }
        });
        let mut rxs = Vec::new();
        let Rig { mgrs, dir, .. } = Rig::new(backend, "driver", |_| {
            let (tx, rx) = mpsc::channel();
            rxs.push(rx);
            let tx = Mutex::new(tx);
            Settings {
                loop_mode: true,
                cluster: cluster.clone(),
                break_timeout_ms: BREAK_MS,
                clock: Some(clock.clone()),
                callback: Some(Box::new(move |e: &Event| {
                    let _ = tx.lock().unwrap().send(e.clone());
                })),
                ..Default::default()
            }
        });
        World {
            mgrs,
            rxs,
            clock,
            _dir: dir,
            files: vec![FileModel::default(); FILES.len()],
            waiters: Vec::new(),
            granted: HashMap::new(),
            sent: Vec::new(),
            next_token: 1,
            timer_seq: 0,
            break_waits: HashSet::new(),
            breaks: Vec::new(),
            lock_events: Vec::new(),
        }
    }

    /// The manager ("process") a client uses.
    fn mgr_of(&self, client: usize) -> usize {
        client % self.mgrs.len()
    }

    /// Delivers every manager's events and sorts them into the step's records.
    fn pump(&mut self) -> Result<(), String> {
        for _ in 0..2 {
            for i in 0..self.mgrs.len() {
                self.mgrs[i].process_events();
                let evs: Vec<Event> = self.rxs[i].try_iter().collect();
                for e in evs {
                    match e.kind {
                        EventKind::LockDone => self.lock_events.push((i, e.request_id, e.result.clone())),
                        EventKind::BreaksDone => {
                            if !self.break_waits.remove(&(i, e.request_id)) {
                                return Err(format!("BreaksDone for a request not waiting: {e:?}"));
                            }
                        }
                        EventKind::LeaseBreak => {
                            let file = FILES.iter().position(|f| **f == *e.file).unwrap();
                            let client = CLIENTS.iter().position(|c| **c == *e.client).unwrap();
                            self.breaks.retain(|b| !(b.0 == file && b.1 == client && b.2 == e.lease.key));
                            if e.lease.ack_required {
                                self.breaks.push((file, client, e.lease.key, e.lease.break_to));
                            }
                        }
                        EventKind::LeaseRevoked => {
                            let file = FILES.iter().position(|f| **f == *e.file).unwrap();
                            let client = CLIENTS.iter().position(|c| **c == *e.client).unwrap();
                            self.breaks.retain(|b| !(b.0 == file && b.1 == client && b.2 == e.lease.key));
                        }
                        EventKind::Watch | EventKind::GraceReleased => {}
                    }
                }
            }
        }
        Ok(())
    }

    // ---- the model's queue ----

    fn blocked(&self, i: usize) -> bool {
        let w = &self.waiters[i];
        if !self.files[w.file].refusers(&w.who, w.flavour, w.kind, w.r).is_empty() {
            return true;
        }
        let me = oid(&w.who, w.flavour);
        self.waiters[..i]
            .iter()
            .any(|e| e.file == w.file && oid(&e.who, e.flavour) != me && conflict(e.kind, w.kind) && overlaps(e.r, w.r))
    }

    /// The owners a request waits for (own locks excluded), given the waiters before it.
    fn blockers(
        &self,
        file: usize,
        who: &Who,
        flavour: Flavour,
        kind: LockType,
        r: R,
        earlier: &[MWaiter],
    ) -> Vec<Oid> {
        let me = oid(who, flavour);
        let mut v: Vec<Oid> =
            self.files[file].refusers(who, flavour, kind, r).iter().map(|l| l.oid).filter(|o| *o != me).collect();
        v.extend(
            earlier
                .iter()
                .filter(|e| {
                    e.file == file && oid(&e.who, e.flavour) != me && conflict(e.kind, kind) && overlaps(e.r, r)
                })
                .map(|e| oid(&e.who, e.flavour)),
        );
        v.sort();
        v.dedup();
        v
    }

    fn would_deadlock(&self, me: Oid, start: Vec<Oid>) -> bool {
        let mut edges: HashMap<Oid, Vec<Oid>> = HashMap::new();
        for (i, w) in self.waiters.iter().enumerate() {
            let b = self.blockers(w.file, &w.who, w.flavour, w.kind, w.r, &self.waiters[..i]);
            edges.entry(oid(&w.who, w.flavour)).or_default().extend(b);
        }
        let mut seen = HashSet::new();
        let mut stack = start;
        while let Some(x) = stack.pop() {
            if x == me {
                return true;
            }
            if seen.insert(x) {
                if let Some(next) = edges.get(&x) {
                    stack.extend(next.iter().copied());
                }
            }
        }
        false
    }

    /// A lock taken for `who`: applies it and keeps the granted-token memory as the library does.
    fn take(&mut self, file: usize, who: &Who, flavour: Flavour, kind: LockType, r: R) {
        if self.files[file].lock_removes(who, flavour, kind, r) {
            self.granted.remove(&(file, oid(who, flavour)));
        }
        self.files[file].take(who, flavour, kind, r);
    }

    /// Grants every waiter that can proceed, in order; returns the granted (manager, id).
    fn settle(&mut self) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        while let Some(i) = (0..self.waiters.len()).find(|&i| !self.blocked(i)) {
            let w = self.waiters.remove(i);
            self.take(w.file, &w.who, w.flavour, w.kind, w.r);
            self.granted.entry((w.file, oid(&w.who, w.flavour))).or_default().push((w.token, w.kind, w.r));
            out.push((w.mgr, w.id));
        }
        out
    }

    /// Ends every waiter of the owners `f` selects on `file` (silently for a cancel-by-owner: here
    /// only closes and client releases, which end them with RANGE_NOT_LOCKED).
    fn end_waiters(&mut self, file: Option<usize>, f: impl Fn(&MWaiter) -> bool) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        self.waiters.retain(|w| {
            if file.map_or(true, |x| x == w.file) && f(w) {
                out.push((w.mgr, w.id));
                false
            } else {
                true
            }
        });
        out
    }

    fn forget_granted_of(&mut self, file: usize, lost: &[Oid]) {
        for o in lost {
            self.granted.remove(&(file, *o));
        }
    }

    // ---- one step ----

    fn step(&mut self, op: &Op) -> Result<(), String> {
        self.lock_events.clear();
        // What the step must produce: granted ids, and ids ended with an error.
        let mut want_granted: Vec<(usize, u64)> = Vec::new();
        let mut want_ended: Vec<(usize, u64, Error)> = Vec::new();
        match *op {
            Op::Lock { file, who, flavour, kind, off, len } => {
                let m = self.mgr_of(who.client);
                let got =
                    self.mgrs[m].lock(FILES[file], &who.r(), &LockReq { flavour, kind, offset: off, length: len });
                let r = R { start: off, end: off + len };
                let refusers = self.files[file].refusers(&who, flavour, kind, r);
                match got {
                    Err(Error::Busy) => {}
                    Ok(()) if refusers.is_empty() => {
                        self.take(file, &who, flavour, kind, r);
                        want_granted = self.settle();
                    }
                    Err(Error::Conflict(h)) if refusers.iter().any(|l| l.key() == holder_key(&h)) => {}
                    other => return Err(format!("lock: got {other:?}, refusing locks {refusers:?}")),
                }
            }
            Op::Block { file, who, flavour, kind, off, len, timeout } => {
                let token = self.next_token;
                self.next_token += 1;
                let m = self.mgr_of(who.client);
                self.block(m, file, who, flavour, kind, off, len, token, timeout, &mut want_granted)?;
            }
            Op::Resubmit { pick } => {
                if self.sent.is_empty() {
                    return Ok(());
                }
                let s = self.sent[pick % self.sent.len()].clone();
                let r = R { start: s.off, end: s.off + s.len };
                let o = oid(&s.who, s.flavour);
                let req = LockReq { flavour: s.flavour, kind: s.kind, offset: s.off, length: s.len };
                let spec = WaitSpec { token: s.token, user_data: 0, timeout_ms: 0 };
                let waiting = self
                    .waiters
                    .iter()
                    .find(|w| {
                        w.file == s.file
                            && oid(&w.who, w.flavour) == o
                            && w.kind == s.kind
                            && w.r == r
                            && w.token == s.token
                    })
                    .map(|w| w.id);
                let remembered = self.granted.get(&(s.file, o)).is_some_and(|v| v.contains(&(s.token, s.kind, r)));
                if let Some(id) = waiting {
                    let got = self.mgrs[s.mgr].lock_blocking(FILES[s.file], &s.who.r(), &req, &spec);
                    match got {
                        Ok(Queued::Pending(i, _)) if i == id => {}
                        Err(Error::Busy) => {}
                        other => return Err(format!("re-submitted pending request {id}: got {other:?}")),
                    }
                } else if remembered {
                    let got = self.mgrs[s.mgr].lock_blocking(FILES[s.file], &s.who.r(), &req, &spec);
                    match got {
                        Ok(Queued::Granted) | Err(Error::Busy) => {}
                        other => return Err(format!("re-submitted granted request: got {other:?}")),
                    }
                } else {
                    self.block(s.mgr, s.file, s.who, s.flavour, s.kind, s.off, s.len, s.token, 0, &mut want_granted)?;
                }
            }
            Op::Unlock { file, who, flavour, off, len } => {
                let m = self.mgr_of(who.client);
                let got = self.mgrs[m].unlock(FILES[file], &who.r(), flavour, off, len);
                let r = R { start: off, end: off + len };
                match self.files[file].unlock(&who, flavour, r) {
                    Ok(removed) => {
                        if got != Ok(()) {
                            return Err(format!("unlock: got {got:?}, expected Ok"));
                        }
                        if removed {
                            self.forget_granted_of(file, &[oid(&who, flavour)]);
                        }
                        want_granted = self.settle();
                    }
                    Err(()) => {
                        if got != Err(Error::RangeNotLocked) {
                            return Err(format!("unlock: got {got:?}, expected RangeNotLocked"));
                        }
                    }
                }
            }
            Op::Cancel { pick } => {
                // Mostly a waiting request; sometimes one already decided (then NOT_FOUND).
                let n = self.waiters.len();
                if n > 0 && pick % 4 != 3 {
                    let w = self.waiters.remove(pick % n);
                    let got = self.mgrs[w.mgr].cancel(w.id);
                    if got != Ok(CancelOutcome::Cancelled) {
                        return Err(format!("cancel of waiting {}: got {got:?}", w.id));
                    }
                    want_granted = self.settle();
                } else if let Some(&(m, id)) = self.break_waits.iter().min() {
                    let got = self.mgrs[m].cancel(id);
                    if got != Ok(CancelOutcome::Cancelled) {
                        return Err(format!("cancel of break wait {id}: got {got:?}"));
                    }
                    self.break_waits.remove(&(m, id));
                } else {
                    let got = self.mgrs[0].cancel(1_000_000 + pick as u64 % 1000);
                    if got != Err(Error::NotFound) {
                        return Err(format!("cancel of an unknown id: got {got:?}"));
                    }
                }
            }
            Op::ReleaseOpen { file, who } => {
                let m = self.mgr_of(who.client);
                let got = self.mgrs[m].release_open(FILES[file], &who.r());
                let (p, w) = (Oid::P(who.client, who.owner), Oid::W(who.client, who.owner, who.open));
                let before = self.files[file].locks().len();
                let ended = self.end_waiters(Some(file), |x| {
                    let o = oid(&x.who, x.flavour);
                    o == p || o == w
                });
                want_ended.extend(ended.into_iter().map(|(m, id)| (m, id, Error::RangeNotLocked)));
                let lost = self.files[file].drop_owners(|o| o == p || o == w);
                self.forget_granted_of(file, &lost);
                let n = before - self.files[file].locks().len();
                if got != Ok(n) {
                    return Err(format!("release_open: got {got:?}, expected Ok({n})"));
                }
                want_granted = self.settle();
            }
            Op::ReleaseClient { client } => {
                let m = self.mgr_of(client);
                let got = self.mgrs[m].release_client(CLIENTS[client]);
                let of = |o: Oid| matches!(o, Oid::P(c, _) | Oid::W(c, _, _) if c == client);
                let ended = self.end_waiters(None, |x| x.who.client == client);
                want_ended.extend(ended.into_iter().map(|(m, id)| (m, id, Error::RangeNotLocked)));
                let mut n = 0;
                for f in 0..FILES.len() {
                    let before = self.files[f].locks().len();
                    let lost = self.files[f].drop_owners(of);
                    self.forget_granted_of(f, &lost);
                    n += before - self.files[f].locks().len();
                }
                if got != Ok(n) {
                    return Err(format!("release_client: got {got:?}, expected Ok({n})"));
                }
                self.break_waits.retain(|_| true);
                self.breaks.retain(|b| b.1 != client);
                want_granted = self.settle();
            }
            Op::Advance { ms } => {
                self.clock.advance(ms);
                self.expire(&mut want_granted, &mut want_ended);
            }
            Op::Open { file, client, open, kind, key, requested, write, wait } => {
                let m = self.mgr_of(client);
                let spec = OpenSpec {
                    kind: match kind {
                        LeaseKind::None => None,
                        LeaseKind::Lease => Some(lease::Kind::Lease),
                        LeaseKind::Oplock => Some(lease::Kind::Oplock),
                        LeaseKind::Delegation => Some(lease::Kind::Delegation),
                    },
                    key: lease_key(kind, client, open, key),
                    requested,
                    version: 2,
                    epoch: 0,
                    stat: false,
                    write,
                    overwrite: false,
                    dir: false,
                    sharing_violation: false,
                    reclaim: false,
                    file_size: 0,
                    timeout_ms: 0,
                    ..Default::default()
                };
                let w = WaitSpec { token: 0, user_data: 0, timeout_ms: 0 };
                match self.mgrs[m].open_file(FILES[file], CLIENTS[client], open, &spec, wait.then_some(&w)) {
                    Ok(LeaseAnswer::Pending(id)) => {
                        self.break_waits.insert((m, id));
                    }
                    Ok(LeaseAnswer::Ready(_)) | Err(Error::Busy) | Err(Error::Invalid(_)) => {}
                    Err(e) => return Err(format!("open: {e:?}")),
                }
            }
            Op::Close { file, client, open } => {
                let m = self.mgr_of(client);
                match self.mgrs[m].close_file(FILES[file], CLIENTS[client], open) {
                    Ok(()) | Err(Error::NotFound) => {}
                    Err(e) => return Err(format!("close: {e:?}")),
                }
            }
            Op::Ack { pick, state } => {
                if self.breaks.is_empty() {
                    return Ok(());
                }
                let (file, client, key, to) = self.breaks[pick % self.breaks.len()];
                // Mostly a valid ack (a subset of the break-to state), sometimes any state.
                let st = if pick % 5 == 4 { state } else { state & to };
                let m = self.mgr_of(client);
                match self.mgrs[m].lease_ack(FILES[file], CLIENTS[client], &key, st) {
                    Ok(()) => self.breaks.retain(|b| !(b.0 == file && b.1 == client && b.2 == key)),
                    Err(Error::BadAck) if st & !to != 0 => {}
                    Err(Error::NotFound) | Err(Error::NoBreak) => {
                        // The lease went (closed, returned, pruned) or the break ended meanwhile.
                        self.breaks.retain(|b| !(b.0 == file && b.1 == client && b.2 == key));
                    }
                    Err(e) => return Err(format!("ack of {key:?} to {st}: {e:?}")),
                }
            }
            Op::LeaseRelease { file, client, key } => {
                let m = self.mgr_of(client);
                let k = lease_key(LeaseKind::Lease, client, 0, key);
                match self.mgrs[m].lease_release(FILES[file], CLIENTS[client], &k) {
                    Ok(()) => self.breaks.retain(|b| !(b.0 == file && b.1 == client && b.2 == k)),
                    Err(Error::NotFound) => {}
                    Err(e) => return Err(format!("lease_release: {e:?}")),
                }
            }
            Op::Trigger { file, client, trigger, wait } => {
                let m = self.mgr_of(client);
                let w = WaitSpec { token: 0, user_data: 0, timeout_ms: 0 };
                match self.mgrs[m].lease_trigger(FILES[file], CLIENTS[client], None, trigger, wait.then_some(&w)) {
                    Ok(LeaseAnswer::Pending(id)) => {
                        self.break_waits.insert((m, id));
                    }
                    Ok(LeaseAnswer::Ready(_)) | Err(Error::Busy) => {}
                    Err(e) => return Err(format!("trigger: {e:?}")),
                }
            }
            Op::Quiesce => {
                self.clock.advance(BREAK_MS + 1);
                self.expire(&mut want_granted, &mut want_ended);
            }
        }
        self.pump()?;
        self.check_lock_events(want_granted, want_ended)?;
        if matches!(op, Op::Quiesce) && !self.break_waits.is_empty() {
            return Err(format!("break waits still pending after the break timeout: {:?}", self.break_waits));
        }
        self.compare()
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        m: usize,
        file: usize,
        who: Who,
        flavour: Flavour,
        kind: LockType,
        off: u64,
        len: u64,
        token: u64,
        timeout: u64,
        want_granted: &mut Vec<(usize, u64)>,
    ) -> Result<(), String> {
        let req = LockReq { flavour, kind, offset: off, length: len };
        let spec = WaitSpec { token, user_data: 0, timeout_ms: timeout };
        let got = self.mgrs[m].lock_blocking(FILES[file], &who.r(), &req, &spec);
        let r = R { start: off, end: off + len };
        let me = oid(&who, flavour);
        let now_blocked = !self.files[file].refusers(&who, flavour, kind, r).is_empty()
            || self
                .waiters
                .iter()
                .any(|e| e.file == file && oid(&e.who, e.flavour) != me && conflict(e.kind, kind) && overlaps(e.r, r));
        let sent = Sent { mgr: m, file, who, flavour, kind, off, len, token };
        match got {
            Err(Error::Busy) => Ok(()),
            Ok(Queued::Granted) if !now_blocked => {
                self.take(file, &who, flavour, kind, r);
                self.granted.entry((file, me)).or_default().push((token, kind, r));
                self.sent.push(sent);
                *want_granted = self.settle();
                Ok(())
            }
            Ok(Queued::Pending(id, _)) if now_blocked => {
                let b = self.blockers(file, &who, flavour, kind, r, &self.waiters);
                if self.would_deadlock(me, b) {
                    return Err(format!("blocking request queued (id {id}) where the model sees a deadlock"));
                }
                let deadline = (timeout > 0).then(|| {
                    self.timer_seq += 1;
                    (self.clock.now_ms() + timeout, self.timer_seq)
                });
                self.waiters.push(MWaiter { mgr: m, id, file, who, flavour, kind, r, token, deadline });
                self.sent.push(sent);
                Ok(())
            }
            Err(Error::Deadlock) if now_blocked => {
                let b = self.blockers(file, &who, flavour, kind, r, &self.waiters);
                if !self.would_deadlock(me, b) {
                    return Err("refused as a deadlock where the model sees none".into());
                }
                Ok(())
            }
            other => Err(format!("lock_blocking: got {other:?}, model: blocked={now_blocked}")),
        }
    }

    /// Timeouts due now, per manager in the order the library runs them, each settling the queue.
    fn expire(&mut self, want_granted: &mut Vec<(usize, u64)>, want_ended: &mut Vec<(usize, u64, Error)>) {
        let now = self.clock.now_ms();
        for m in 0..self.mgrs.len() {
            loop {
                let due = self
                    .waiters
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.mgr == m && w.deadline.is_some_and(|d| d.0 <= now))
                    .min_by_key(|(_, w)| w.deadline)
                    .map(|(i, _)| i);
                let Some(i) = due else { break };
                let w = self.waiters.remove(i);
                want_ended.push((w.mgr, w.id, Error::Timeout));
                want_granted.extend(self.settle());
            }
        }
    }

    fn check_lock_events(
        &self,
        want_granted: Vec<(usize, u64)>,
        want_ended: Vec<(usize, u64, Error)>,
    ) -> Result<(), String> {
        let mut want: Vec<(usize, u64, Result<(), Error>)> =
            want_granted.into_iter().map(|(m, id)| (m, id, Ok(()))).collect();
        want.extend(want_ended.into_iter().map(|(m, id, e)| (m, id, Err(e))));
        want.sort_by_key(|w| (w.0, w.1));
        let mut got = self.lock_events.clone();
        got.sort_by_key(|w| (w.0, w.1));
        if got != want {
            return Err(format!(
                "lock events: got {got:?}, model expects {want:?} (waiting: {:?})",
                self.waiters.iter().map(|w| w.id).collect::<Vec<_>>()
            ));
        }
        Ok(())
    }

    fn compare(&self) -> Result<(), String> {
        for (i, f) in FILES.iter().enumerate() {
            for m in &self.mgrs {
                let list = m.list(f).map_err(|e| format!("list: {e:?}"))?;
                check_invariants(&list)?;
                let mut got: Vec<_> = list.iter().map(holder_key).collect();
                got.sort();
                let mut want: Vec<_> = self.files[i].locks().iter().map(|l| l.key()).collect();
                want.sort();
                if got != want {
                    return Err(format!("state of file {i}:\n  unilock: {got:?}\n  model:   {want:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Lease keys: a lease's key is the client's choice (two per client), an oplock's and a delegation's
/// key is the library's caller's (per open / per client).
fn lease_key(kind: LeaseKind, client: usize, open: u64, key: u8) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[0] = client as u8;
    match kind {
        LeaseKind::Lease | LeaseKind::None => k[1] = 1 + key,
        LeaseKind::Oplock => k[1] = 10 + open as u8,
        LeaseKind::Delegation => k[1] = 20,
    }
    k
}

/// SPEC.md §3: no two held locks of different owners conflict; a POSIX owner's locks are disjoint and
/// same-type ones never touch.
fn check_invariants(list: &[Holder]) -> Result<(), String> {
    let range = |h: &Holder| R { start: h.offset, end: h.offset + h.length };
    let owner =
        |h: &Holder| (h.flavour, h.client.clone(), h.owner.clone(), if h.flavour == Windows { h.open_id } else { 0 });
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            if owner(a) != owner(b) {
                if overlaps(range(a), range(b)) && conflict(a.kind, b.kind) {
                    return Err(format!("conflicting locks both held: {a:?} and {b:?}"));
                }
            } else if a.flavour == Posix {
                let (ra, rb) = (range(a), range(b));
                if overlaps(ra, rb) || (ra.start <= rb.end && rb.start <= ra.end && a.kind == b.kind) {
                    return Err(format!("POSIX owner's locks not normalized: {a:?} and {b:?}"));
                }
            }
        }
    }
    Ok(())
}

fn run(backend: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(backend);
    for (i, op) in ops.iter().enumerate() {
        STEPS.with(|s| s.set(s.get() + 1));
        if let Err(e) = w.step(op) {
            return Err(TestCaseError::fail(format!("{backend:?}: op #{i} {op:?}: {e}")));
        }
    }
    // The end: every client goes; every remaining waiter ends and no break wait is left.
    for c in 0..CLIENTS.len() {
        if let Err(e) = w.step(&Op::ReleaseClient { client: c }) {
            return Err(TestCaseError::fail(format!("{backend:?}: final release of client {c}: {e}")));
        }
    }
    if let Err(e) = w.step(&Op::Quiesce) {
        return Err(TestCaseError::fail(format!("{backend:?}: final quiesce: {e}")));
    }
    for m in &w.mgrs {
        m.leave();
    }
    Ok(())
}

/// Average operations per case (the case length is 1..2*OPS).
const OPS: usize = 40;

/// `default_steps`: the bounded campaign of `make check` for the backend; `UNILOCK_FUZZ_STEPS` sets
/// every backend's.
fn config(default_steps: u64) -> ProptestConfig {
    let steps: u64 = std::env::var("UNILOCK_FUZZ_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_steps);
    let seed: u64 = std::env::var("UNILOCK_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    ProptestConfig {
        cases: (steps / OPS as u64).max(1) as u32,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/proptest-regressions/driver.txt"))),
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

fn report(backend: Backend, started: std::time::Instant) {
    eprintln!("driver {backend:?}: {} steps in {:.1} s", STEPS.with(|s| s.get()), started.elapsed().as_secs_f64());
}

macro_rules! campaign {
    ($name:ident, $backend:expr, $steps:expr) => {
        #[test]
        fn $name() {
            if !Backend::selected().contains(&$backend) {
                eprintln!("driver {:?}: not selected by UNILOCK_TEST_BACKEND", $backend);
                return;
            }
            let started = std::time::Instant::now();
            let mut runner = proptest::test_runner::TestRunner::new(config($steps));
            let r = runner.run(&proptest::collection::vec(op(), 1..2 * OPS), |ops| run($backend, &ops));
            report($backend, started);
            if let Err(e) = r {
                panic!("{e}");
            }
        }
    };
}

// The bounded campaign: about 20 s on a loaded 2-core machine for the three together.
campaign!(driver_memory, Backend::Memory, 150_000);
campaign!(driver_database, Backend::Database, 15_000);
campaign!(driver_shared, Backend::Shared, 15_000);
campaign!(driver_shared_sqlite, Backend::SharedSqlite, 15_000);

/// The same driver over cluster mode: two hosts on a private etcd (a fresh cluster name per case;
/// fewer steps: every operation is an etcd round trip). Skipped, saying why, without etcd.
#[test]
fn driver_cluster() {
    let Some(e) = etcd::Etcd::start() else { return };
    *CLUSTER_ETCD.lock().unwrap() = Some(e.url.clone());
    let started = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config(600));
    let r = runner.run(&proptest::collection::vec(op(), 1..2 * OPS), |ops| run(Backend::Cluster, &ops));
    report(Backend::Cluster, started);
    *CLUSTER_ETCD.lock().unwrap() = None;
    drop(e);
    if let Err(e) = r {
        panic!("{e}");
    }
}
