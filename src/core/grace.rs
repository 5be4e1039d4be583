//! The grace period after a restart (SPEC.md §5; RFC 5661 §8.4.2, Linux lockd/nfsd): which clients
//! are expected, which reclaims match the state that existed before, and what is left to release when
//! grace ends. Pure: time comes in as an argument.
//!
//! A lock reclaim must be covered by one pre-restart lock of the same owner and type on the same
//! file; a lease reclaim must name a pre-restart key of the same client and file and ask for no more
//! than its state. A client is done only when its adapter says so (NFSv4 RECLAIM_COMPLETE): a reclaim
//! never makes a client done, because NLM and SMB clients reclaim one lock or handle at a time.

use super::range::Range;
use super::{Flavour, LockType};
use hashbrown::{HashMap, HashTable};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

/// A pre-restart lock, compact (40 bytes): client and owner are indexes into the grace period's
/// `Names`, and the range end is split into its low 64 bits and a flag for 2^64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrevLock {
    pub client: u32,
    pub owner: u32,
    pub open_id: u64,
    start: u64,
    end_lo: u64,
    flags: u8,
}

const WINDOWS: u8 = 1;
const EXCLUSIVE: u8 = 2;
const RECLAIMED: u8 = 4;
const END_HI: u8 = 8;

impl PrevLock {
    pub fn flavour(&self) -> Flavour {
        if self.flags & WINDOWS != 0 {
            Flavour::Windows
        } else {
            Flavour::Posix
        }
    }

    pub fn kind(&self) -> LockType {
        if self.flags & EXCLUSIVE != 0 {
            LockType::Exclusive
        } else {
            LockType::Shared
        }
    }

    pub fn range(&self) -> Range {
        Range::new(self.start, ((((self.flags & END_HI) != 0) as u128) << 64) | self.end_lo as u128)
    }

    pub fn reclaimed(&self) -> bool {
        self.flags & RECLAIMED != 0
    }
}

/// Interned byte strings (clients and owners): a million pre-restart locks of a hundred clients hold
/// a hundred client names, not a million.
#[derive(Default)]
struct Names {
    list: Vec<Box<[u8]>>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

impl Names {
    fn find(&self, b: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(b);
        self.index.find(h, |&i| *self.list[i as usize] == *b).copied()
    }

    fn intern(&mut self, b: &[u8]) -> u32 {
        let h = self.hasher.hash_one(b);
        if let Some(&i) = self.index.find(h, |&i| *self.list[i as usize] == *b) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(b.into());
        let (list, hasher) = (&self.list, &self.hasher);
        self.index.insert_unique(h, i, |&j| hasher.hash_one(&*list[j as usize]));
        i
    }

    fn get(&self, i: u32) -> &[u8] {
        &self.list[i as usize]
    }
}

/// One file's pre-restart locks. Invariant once `sorted`: ordered by (client, owner) index, so an
/// owner's locks are one run found by binary search; within a run, the order they were added.
#[derive(Debug, Default)]
struct FileLocks {
    locks: Vec<PrevLock>,
    sorted: bool,
}

impl FileLocks {
    fn sort(&mut self) {
        if !self.sorted {
            self.locks.sort_by_key(|p| (p.client, p.owner));
            self.sorted = true;
        }
    }
}

/// Every pre-restart lock, by file.
#[derive(Debug, Default)]
pub struct PrevLocks {
    names: Names,
    files: HashMap<Box<[u8]>, FileLocks>,
    len: usize,
}

impl PrevLocks {
    /// Adds `count` copies of a lock as the store keeps it: flavour and type in their wire encoding
    /// (`Flavour`/`LockType` as u8), the length as callers gave it. A row with an unknown flavour or
    /// type, or an invalid range, is skipped.
    #[allow(clippy::too_many_arguments)]
    pub fn add_row(
        &mut self,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: u8,
        kind: u8,
        start: u64,
        length: u64,
        count: u64,
    ) {
        let (Ok(flavour), Ok(kind)) = (Flavour::try_from(flavour), LockType::try_from(kind)) else {
            return;
        };
        if let Ok(range) = Range::from_request(flavour, start, length) {
            for _ in 0..count {
                self.add(file, client, owner, open_id, flavour, kind, range);
            }
        }
    }

    /// Adds one lock.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: Flavour,
        kind: LockType,
        range: Range,
    ) {
        let p = PrevLock {
            client: self.names.intern(client),
            owner: self.names.intern(owner),
            open_id,
            start: range.start,
            end_lo: range.end as u64,
            flags: ((flavour == Flavour::Windows) as u8 * WINDOWS)
                | ((kind == LockType::Exclusive) as u8 * EXCLUSIVE)
                | (((range.end >> 64) != 0) as u8 * END_HI),
        };
        let fl = match self.files.get_mut(file) {
            Some(fl) => fl,
            None => self.files.entry(file.into()).or_insert(FileLocks { locks: Vec::new(), sorted: true }),
        };
        if fl.sorted {
            if let Some(last) = fl.locks.last() {
                fl.sorted = (last.client, last.owner) <= (p.client, p.owner);
            }
        }
        fl.locks.push(p);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Releases the slack of loading (each file's vector is cut to its length).
    pub fn shrink(&mut self) {
        for fl in self.files.values_mut() {
            fl.locks.shrink_to_fit();
        }
        self.files.shrink_to_fit();
    }

    /// The clients holding pre-restart locks (unsorted, each once).
    pub fn clients(&self) -> Vec<Box<[u8]>> {
        let mut seen = vec![false; self.names.list.len()];
        for p in self.files.values().flat_map(|fl| &fl.locks) {
            seen[p.client as usize] = true;
        }
        seen.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| self.names.get(i as u32).into()).collect()
    }

    /// Every lock: (file, client, owner, lock), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], &[u8], &PrevLock)> + '_ {
        self.files.iter().flat_map(move |(f, fl)| {
            fl.locks.iter().map(move |p| (&**f, self.names.get(p.client), self.names.get(p.owner), p))
        })
    }
}

/// A pre-restart lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrevLease {
    pub state: u8,
    pub epoch: u16,
    pub reclaimed: bool,
}

/// What grace end releases, per client: (locks, leases) never reclaimed.
pub type Unreclaimed = BTreeMap<Box<[u8]>, (u64, u64)>;

/// A pre-restart lease: (file, client, key).
type LeaseName = (Box<[u8]>, Box<[u8]>, [u8; 16]);

/// Why the grace gate refuses a request (SPEC.md §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// A new lock or lease during grace: refused until grace ends.
    Grace,
    /// A reclaim outside grace.
    NoGrace,
    /// A reclaim that the pre-restart state does not back.
    ReclaimDenied,
}

#[derive(Debug, Default)]
pub struct Grace {
    pub active: bool,
    pub deadline: u64,
    pub expected: BTreeSet<Box<[u8]>>,
    pub done: BTreeSet<Box<[u8]>>,
    locks: PrevLocks,
    leases: std::collections::HashMap<LeaseName, PrevLease>,
    /// Explicitly started grace: expected clients may reclaim what no record contradicts.
    trust_expected: bool,
}

impl Grace {
    /// Starts grace with the pre-restart state. `trust_expected`: an explicit start (a takeover)
    /// where the expected clients' state may not be on record here.
    pub fn start(
        &mut self,
        now: u64,
        duration_ms: u64,
        expected: impl IntoIterator<Item = Box<[u8]>>,
        trust_expected: bool,
    ) {
        self.active = true;
        self.deadline = now.saturating_add(duration_ms);
        self.expected.extend(expected);
        self.trust_expected |= trust_expected;
    }

    /// Adds one pre-restart lock.
    #[allow(clippy::too_many_arguments)]
    pub fn add_lock(
        &mut self,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: Flavour,
        kind: LockType,
        range: Range,
    ) {
        self.locks.add(file, client, owner, open_id, flavour, kind, range);
    }

    /// Adds the pre-restart locks a restart found (taken whole when there are none yet).
    pub fn add_locks(&mut self, locks: PrevLocks) {
        if self.locks.is_empty() {
            self.locks = locks;
            return;
        }
        for (f, c, o, p) in locks.iter() {
            self.locks.add(f, c, o, p.open_id, p.flavour(), p.kind(), p.range());
        }
    }

    pub fn add_lease(&mut self, file: &[u8], client: &[u8], key: [u8; 16], state: u8, epoch: u16) {
        self.leases.insert((file.into(), client.into(), key), PrevLease { state, epoch, reclaimed: false });
    }

    /// The grace gate of a lock request: outside grace everything but a reclaim passes; during grace
    /// only a reclaim passes, and only one that a pre-restart lock backs (which is then marked
    /// reclaimed). `Ok(())` lets the request go on to the table.
    #[allow(clippy::too_many_arguments)] // the whole identity of a lock, as reclaim_lock
    pub fn gate_lock(
        &mut self,
        reclaim: bool,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: Flavour,
        kind: LockType,
        range: &Range,
    ) -> Result<(), Gate> {
        match (self.active, reclaim) {
            (false, false) => Ok(()),
            (false, true) => Err(Gate::NoGrace),
            (true, false) => Err(Gate::Grace),
            (true, true) if self.reclaim_lock(file, client, owner, open_id, flavour, kind, range) => Ok(()),
            (true, true) => Err(Gate::ReclaimDenied),
        }
    }

    /// The grace gate of an open. `wants`: it asks for a lease, oplock or delegation (not a plain
    /// open, not a sharing violation); `smb_key`: an SMB lease, whose key alone makes it a reclaim
    /// when the pre-restart state knows it. `Ok(None)`: go on as a normal open; `Ok(Some((state,
    /// epoch)))`: a reclaim granted from the pre-restart state.
    #[allow(clippy::too_many_arguments)]
    pub fn gate_open(
        &mut self,
        reclaim: bool,
        wants: bool,
        smb_key: bool,
        file: &[u8],
        client: &[u8],
        key: &[u8; 16],
        requested: u8,
    ) -> Result<Option<(u8, Option<u16>)>, Gate> {
        if !self.active {
            return if reclaim { Err(Gate::NoGrace) } else { Ok(None) };
        }
        if !wants {
            return if reclaim { Err(Gate::ReclaimDenied) } else { Ok(None) };
        }
        let by_key = smb_key && self.knows_lease(file, client, key);
        if !reclaim && !by_key {
            return Err(Gate::Grace);
        }
        self.reclaim_lease(file, client, key, requested).map(Some).ok_or(Gate::ReclaimDenied)
    }

    /// A lock reclaim is valid if one pre-restart lock of the same owner and type covers it.
    #[allow(clippy::too_many_arguments)] // the whole identity of a lock: file, owner (3 parts), flavour, type, range
    pub fn reclaim_lock(
        &mut self,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: Flavour,
        kind: LockType,
        range: &Range,
    ) -> bool {
        if self.find_lock(file, client, owner, open_id, flavour, kind, range) {
            return true;
        }
        self.trust_expected && self.expected.contains(client) && !self.has_records(client)
    }

    /// Marks the first pre-restart lock of this owner and type that covers `range` reclaimed; false
    /// if none. Only the owner's run of the file's locks is looked at.
    #[allow(clippy::too_many_arguments)]
    fn find_lock(
        &mut self,
        file: &[u8],
        client: &[u8],
        owner: &[u8],
        open_id: u64,
        flavour: Flavour,
        kind: LockType,
        range: &Range,
    ) -> bool {
        let (Some(c), Some(o)) = (self.locks.names.find(client), self.locks.names.find(owner)) else {
            return false;
        };
        let Some(fl) = self.locks.files.get_mut(file) else {
            return false;
        };
        fl.sort();
        let from = fl.locks.partition_point(|p| (p.client, p.owner) < (c, o));
        for p in fl.locks[from..].iter_mut().take_while(|p| p.client == c && p.owner == o) {
            if p.flavour() == flavour
                && (flavour == Flavour::Posix || p.open_id == open_id)
                && p.kind() == kind
                && covers(&p.range(), range)
            {
                p.flags |= RECLAIMED;
                return true;
            }
        }
        false
    }

    /// A lease reclaim: `Some((state, epoch))` it may have again — the requested state, which must
    /// not exceed the recorded one, at the recorded epoch (None for a takeover without records).
    pub fn reclaim_lease(
        &mut self,
        file: &[u8],
        client: &[u8],
        key: &[u8; 16],
        requested: u8,
    ) -> Option<(u8, Option<u16>)> {
        let trusted = self.trust_expected && self.expected.contains(client) && !self.has_records(client);
        match self.leases.get_mut(&(file.into(), client.into(), *key)) {
            Some(p) if requested & !p.state == 0 => {
                p.reclaimed = true;
                Some((requested, Some(p.epoch)))
            }
            Some(_) => None,
            None if trusted => Some((requested, None)),
            None => None,
        }
    }

    /// Whether a pre-restart lease with this key exists (SMB reclaims are recognised by key).
    pub fn knows_lease(&self, file: &[u8], client: &[u8], key: &[u8; 16]) -> bool {
        self.leases.contains_key(&(file.into(), client.into(), *key))
    }

    fn has_records(&self, client: &[u8]) -> bool {
        let locked = match self.locks.names.find(client) {
            Some(c) => self.locks.files.values().any(|fl| fl.locks.iter().any(|p| p.client == c)),
            None => false,
        };
        locked || self.leases.keys().any(|(_, c, _)| **c == *client)
    }

    /// A client's adapter says it finished reclaiming; true if that makes every expected client done.
    pub fn complete(&mut self, client: &[u8]) -> bool {
        if self.expected.contains(client) {
            self.done.insert(client.into());
        }
        self.all_done()
    }

    pub fn all_done(&self) -> bool {
        self.expected.iter().all(|c| self.done.contains(c))
    }

    pub fn remaining_ms(&self, now: u64) -> u64 {
        if self.active {
            self.deadline.saturating_sub(now)
        } else {
            0
        }
    }

    /// Ends grace: returns, per client, how many pre-restart locks and leases nobody reclaimed.
    pub fn end(&mut self) -> Unreclaimed {
        let mut out = Unreclaimed::new();
        let mut per_client: HashMap<u32, u64> = HashMap::new();
        for p in self.locks.files.values().flat_map(|fl| &fl.locks).filter(|p| !p.reclaimed()) {
            *per_client.entry(p.client).or_default() += 1;
        }
        for (c, n) in per_client {
            out.entry(self.locks.names.get(c).into()).or_default().0 += n;
        }
        for ((_, c, _), _) in self.leases.iter().filter(|(_, p)| !p.reclaimed) {
            out.entry(c.clone()).or_default().1 += 1;
        }
        *self = Grace::default();
        out
    }
}

/// `outer` covers `inner` (a zero-length range only by an equal one).
fn covers(outer: &Range, inner: &Range) -> bool {
    if inner.is_empty() || outer.is_empty() {
        return outer == inner;
    }
    outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(g: &mut Grace, file: &[u8], client: &str, kind: LockType, s: u64, e: u128) {
        g.add_lock(file, client.as_bytes(), b"o", 1, Flavour::Posix, kind, Range::new(s, e));
    }

    /// The gates, every combination of grace (on/off) and reclaim (yes/no), for locks and opens.
    #[test]
    fn the_gates_decide_every_case() {
        let r = Range::new(10, 20);
        let lock = |g: &mut Grace, reclaim: bool, client: &[u8]| {
            g.gate_lock(reclaim, b"f", client, b"o", 1, Flavour::Posix, LockType::Exclusive, &r)
        };
        let mut g = Grace::default();
        assert_eq!(lock(&mut g, false, b"nlm:a"), Ok(()));
        assert_eq!(lock(&mut g, true, b"nlm:a"), Err(Gate::NoGrace));
        assert_eq!(g.gate_open(false, true, true, b"f", b"smb:c", &[7; 16], 1), Ok(None));
        assert_eq!(g.gate_open(true, true, true, b"f", b"smb:c", &[7; 16], 1), Err(Gate::NoGrace));
        g.start(0, 1000, [b"nlm:a"[..].into()], false);
        add(&mut g, b"f", "nlm:a", LockType::Exclusive, 0, 100);
        g.add_lease(b"f", b"smb:c", [7; 16], 3, 4);
        assert_eq!(lock(&mut g, false, b"nlm:a"), Err(Gate::Grace));
        assert_eq!(lock(&mut g, true, b"nlm:a"), Ok(()));
        assert_eq!(lock(&mut g, true, b"nlm:z"), Err(Gate::ReclaimDenied));
        // Opens: a plain open passes; a reclaim of nothing is denied; an SMB key known from before
        // is a reclaim by itself; another key is a new lease, refused during grace.
        assert_eq!(g.gate_open(false, false, false, b"f", b"nfs4:b", &[0; 16], 0), Ok(None));
        assert_eq!(g.gate_open(true, false, false, b"f", b"nfs4:b", &[0; 16], 0), Err(Gate::ReclaimDenied));
        assert_eq!(g.gate_open(false, true, true, b"f", b"smb:c", &[7; 16], 1), Ok(Some((1, Some(4)))));
        assert_eq!(g.gate_open(false, true, true, b"f", b"smb:c", &[8; 16], 1), Err(Gate::Grace));
        assert_eq!(g.gate_open(true, true, true, b"f", b"smb:c", &[8; 16], 1), Err(Gate::ReclaimDenied));
        assert_eq!(g.gate_open(false, true, false, b"f", b"smb:c", &[7; 16], 1), Err(Gate::Grace), "not by key");
    }

    #[test]
    fn reclaims_are_checked_against_the_previous_state() {
        let mut g = Grace::default();
        g.start(0, 90_000, [b"nlm:a"[..].into(), b"nfs4:b"[..].into()], false);
        add(&mut g, b"f", "nlm:a", LockType::Exclusive, 0, 100);
        g.add_lease(b"f", b"smb:c", [7; 16], 3, 4);
        assert!(g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)));
        assert!(
            !g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Shared, &Range::new(10, 20)),
            "type differs"
        );
        assert!(
            !g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(90, 110)),
            "not covered"
        );
        assert!(
            !g.reclaim_lock(b"g", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)),
            "other file"
        );
        assert!(
            !g.reclaim_lock(b"f", b"nlm:z", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)),
            "other client"
        );
        assert_eq!(g.reclaim_lease(b"f", b"smb:c", &[7; 16], 7), None, "more than it had");
        assert_eq!(g.reclaim_lease(b"f", b"smb:c", &[7; 16], 1), Some((1, Some(4))));
        assert_eq!(g.reclaim_lease(b"f", b"smb:c", &[8; 16], 1), None);
        // A reclaim does not make a client done; only its adapter's word does.
        assert!(!g.all_done());
        assert!(!g.complete(b"nlm:a"));
        assert!(g.complete(b"nfs4:b"));
        let left = g.end();
        assert!(left.is_empty(), "{left:?}");
        assert!(!g.active);
    }

    #[test]
    fn grace_end_reports_what_nobody_reclaimed() {
        let mut g = Grace::default();
        g.start(1000, 500, [b"a"[..].into()], false);
        assert_eq!(g.remaining_ms(1200), 300);
        add(&mut g, b"f", "a", LockType::Shared, 0, 10);
        add(&mut g, b"f", "a", LockType::Shared, 20, 30);
        g.add_lease(b"f", b"a", [1; 16], 1, 1);
        assert!(g.reclaim_lock(b"f", b"a", b"o", 1, Flavour::Posix, LockType::Shared, &Range::new(0, 10)));
        let left = g.end();
        assert_eq!(left.get(&b"a"[..]), Some(&(1, 1)));
    }

    #[test]
    fn explicit_takeover_trusts_expected_clients_without_records() {
        let mut g = Grace::default();
        g.start(0, 1000, [b"nfs4:x"[..].into()], true);
        assert!(g.reclaim_lock(b"f", b"nfs4:x", b"o", 0, Flavour::Posix, LockType::Exclusive, &Range::new(0, 1)));
        assert!(!g.reclaim_lock(b"f", b"nfs4:y", b"o", 0, Flavour::Posix, LockType::Exclusive, &Range::new(0, 1)));
    }

    #[test]
    fn reclaim_finds_the_owner_among_many_in_any_insertion_order() {
        let mut g = Grace::default();
        g.start(0, 1000, [], false);
        // Owners added out of order, on two files, with one owner holding several locks.
        for (f, c, o, s) in [
            (b"f", "c2", "o1", 0u64),
            (b"f", "c1", "o2", 10),
            (b"g", "c1", "o1", 0),
            (b"f", "c1", "o1", 20),
            (b"f", "c2", "o1", 30),
        ] {
            g.add_lock(
                f,
                c.as_bytes(),
                o.as_bytes(),
                0,
                Flavour::Posix,
                LockType::Shared,
                Range::new(s, s as u128 + 5),
            );
        }
        let r = |s: u64| Range::new(s, s as u128 + 5);
        assert!(g.reclaim_lock(b"f", b"c2", b"o1", 0, Flavour::Posix, LockType::Shared, &r(30)));
        assert!(g.reclaim_lock(b"f", b"c2", b"o1", 0, Flavour::Posix, LockType::Shared, &r(0)));
        assert!(!g.reclaim_lock(b"f", b"c2", b"o1", 0, Flavour::Posix, LockType::Shared, &r(10)), "c1/o2's range");
        assert!(
            !g.reclaim_lock(b"f", b"o1", b"c2", 0, Flavour::Posix, LockType::Shared, &r(0)),
            "client and owner swapped"
        );
        assert!(g.reclaim_lock(b"g", b"c1", b"o1", 0, Flavour::Posix, LockType::Shared, &r(0)));
        let left = g.end();
        assert_eq!(left.get(&b"c1"[..]), Some(&(2, 0)));
        assert_eq!(left.get(&b"c2"[..]), None);
    }

    #[test]
    fn prev_lock_keeps_ranges_to_2_pow_64() {
        let mut p = PrevLocks::default();
        p.add_row(b"f", b"c", b"o", 7, 1, 2, 5, u64::MAX, 1); // POSIX to EOF
        p.add_row(b"f", b"c", b"o", 7, 2, 1, u64::MAX, 1, 2); // Windows, the last byte, twice
        p.add_row(b"f", b"c", b"o", 7, 1, 1, 5, 0, 1); // invalid POSIX length 0: skipped
        assert_eq!(p.len(), 3);
        assert_eq!(std::mem::size_of::<PrevLock>(), 40);
        let mut v: Vec<(Flavour, LockType, Range, u64)> =
            p.iter().map(|(_, _, _, l)| (l.flavour(), l.kind(), l.range(), l.open_id)).collect();
        v.sort_by_key(|x| x.2);
        assert_eq!(
            v[0],
            (Flavour::Posix, LockType::Exclusive, Range::from_request(Flavour::Posix, 5, u64::MAX).unwrap(), 7)
        );
        assert_eq!(v[1].2, Range::from_request(Flavour::Windows, u64::MAX, 1).unwrap());
        assert_eq!(v[1].2.end, 1u128 << 64);
        assert_eq!((v[1].0, v[1].1), (Flavour::Windows, LockType::Shared));
    }
}
