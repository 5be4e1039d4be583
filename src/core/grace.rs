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
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A pre-restart lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrevLock {
    pub client: Box<[u8]>,
    pub owner: Box<[u8]>,
    pub open_id: u64,
    pub flavour: Flavour,
    pub kind: LockType,
    pub range: Range,
    pub reclaimed: bool,
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

#[derive(Debug, Default)]
pub struct Grace {
    pub active: bool,
    pub deadline: u64,
    pub expected: BTreeSet<Box<[u8]>>,
    pub done: BTreeSet<Box<[u8]>>,
    locks: HashMap<Box<[u8]>, Vec<PrevLock>>,
    leases: HashMap<(Box<[u8]>, Box<[u8]>, [u8; 16]), PrevLease>,
    /// Explicitly started grace: expected clients may reclaim what no record contradicts.
    trust_expected: bool,
}

impl Grace {
    /// Starts grace with the pre-restart state. `trust_expected`: an explicit start (a takeover)
    /// where the expected clients' state may not be on record here.
    pub fn start(&mut self, now: u64, duration_ms: u64, expected: impl IntoIterator<Item = Box<[u8]>>, trust_expected: bool) {
        self.active = true;
        self.deadline = now.saturating_add(duration_ms);
        self.expected.extend(expected);
        self.trust_expected |= trust_expected;
    }

    pub fn add_lock(&mut self, file: &[u8], l: PrevLock) {
        self.locks.entry(file.into()).or_default().push(l);
    }

    pub fn add_lease(&mut self, file: &[u8], client: &[u8], key: [u8; 16], state: u8, epoch: u16) {
        self.leases.insert((file.into(), client.into(), key), PrevLease { state, epoch, reclaimed: false });
    }

    /// A lock reclaim is valid if one pre-restart lock of the same owner and type covers it.
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
        let hit = self.locks.get_mut(file).and_then(|v| {
            v.iter_mut().find(|p| {
                *p.client == *client
                    && *p.owner == *owner
                    && p.flavour == flavour
                    && (flavour == Flavour::Posix || p.open_id == open_id)
                    && p.kind == kind
                    && covers(&p.range, range)
            })
        });
        match hit {
            Some(p) => {
                p.reclaimed = true;
                true
            }
            None => self.trust_expected && self.expected.contains(client) && !self.has_records(client),
        }
    }

    /// A lease reclaim: `Some((state, epoch))` it may have again — the requested state, which must
    /// not exceed the recorded one, at the recorded epoch (None for a takeover without records).
    pub fn reclaim_lease(&mut self, file: &[u8], client: &[u8], key: &[u8; 16], requested: u8) -> Option<(u8, Option<u16>)> {
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
        self.locks.values().flatten().any(|p| *p.client == *client) || self.leases.keys().any(|(_, c, _)| **c == *client)
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
        for p in self.locks.values().flatten().filter(|p| !p.reclaimed) {
            out.entry(p.client.clone()).or_default().0 += 1;
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

    fn prev(client: &str, kind: LockType, s: u64, e: u128) -> PrevLock {
        PrevLock { client: client.as_bytes().into(), owner: b"o"[..].into(), open_id: 1, flavour: Flavour::Posix, kind, range: Range::new(s, e), reclaimed: false }
    }

    #[test]
    fn reclaims_are_checked_against_the_previous_state() {
        let mut g = Grace::default();
        g.start(0, 90_000, [b"nlm:a"[..].into(), b"nfs4:b"[..].into()], false);
        g.add_lock(b"f", prev("nlm:a", LockType::Exclusive, 0, 100));
        g.add_lease(b"f", b"smb:c", [7; 16], 3, 4);
        assert!(g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)));
        assert!(!g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Shared, &Range::new(10, 20)), "type differs");
        assert!(!g.reclaim_lock(b"f", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(90, 110)), "not covered");
        assert!(!g.reclaim_lock(b"g", b"nlm:a", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)), "other file");
        assert!(!g.reclaim_lock(b"f", b"nlm:z", b"o", 9, Flavour::Posix, LockType::Exclusive, &Range::new(10, 20)), "other client");
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
        g.add_lock(b"f", prev("a", LockType::Shared, 0, 10));
        g.add_lock(b"f", prev("a", LockType::Shared, 20, 30));
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
}
