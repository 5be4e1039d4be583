//! Blocking requests (SPEC.md §3 "Blocking requests", "Deadlock"): who must wait, and the owner→owner
//! wait-for graph used to refuse a wait that would close a cycle.
//!
//! Fairness: a non-blocking request is decided against held locks only (as the kernel and Samba do, so
//! a test and a non-blocking lock always agree). A blocking request also queues behind any earlier
//! waiter of another owner it conflicts with, even if the held locks would allow it: waiters for the
//! same bytes are granted in arrival order and a waiting exclusive request is not starved by a stream
//! of later shared ones.

use super::conflict::{for_each_conflict, types_conflict};
use super::lockset::{LockId, LockSet};
use super::range::{overlaps, Range};
use super::{Flavour, LockType, OwnerIdx};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// A queued blocking request on one file, in arrival order within the file's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub id: u64,
    pub owner: OwnerIdx,
    pub flavour: Flavour,
    pub kind: LockType,
    pub range: Range,
}

/// What keeps a blocking request waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// A held lock.
    Held(LockId),
    /// An earlier waiter (index into the queue).
    Queued(usize),
}

/// Two waiting requests of different owners that could not both be granted.
#[inline]
pub fn waiters_conflict(a: &Waiter, owner: OwnerIdx, kind: LockType, range: &Range) -> bool {
    a.owner != owner && types_conflict(a.kind, kind) && overlaps(&a.range, range)
}

/// The first thing that keeps a blocking request waiting, given the held locks and the waiters that
/// arrived before it (`earlier`), or `None` if it can be granted now.
pub fn blocked_by(
    set: &LockSet,
    earlier: &[Waiter],
    owner: OwnerIdx,
    flavour: Flavour,
    kind: LockType,
    range: &Range,
) -> Option<Blocker> {
    if let Some(id) = super::conflict::find_conflict(set, owner, flavour, kind, range) {
        return Some(Blocker::Held(id));
    }
    earlier.iter().position(|w| waiters_conflict(w, owner, kind, range)).map(Blocker::Queued)
}

/// Every owner a blocking request waits for: owners of conflicting held locks and of conflicting
/// earlier waiters (each once). The request's own owner is never in the result.
pub fn blocking_owners(
    set: &LockSet,
    earlier: &[Waiter],
    owner: OwnerIdx,
    flavour: Flavour,
    kind: LockType,
    range: &Range,
) -> Vec<OwnerIdx> {
    let mut out: Vec<OwnerIdx> = Vec::new();
    for_each_conflict(set, owner, flavour, kind, range, |id| {
        let o = set.get(id).owner;
        if o != owner && !out.contains(&o) {
            out.push(o);
        }
    });
    for w in earlier {
        if waiters_conflict(w, owner, kind, range) && !out.contains(&w.owner) {
            out.push(w.owner);
        }
    }
    out
}

/// The owner→owner wait-for graph across every file. Each waiting request contributes edges from its
/// owner to the owners it waits for. `K` is a global owner identity (owners are interned per file, so
/// the graph needs names that mean the same owner on every file).
///
/// Invariant: `by_owner[k]` lists exactly the request ids in `requests` whose owner is `k`.
#[derive(Debug)]
pub struct WaitGraph<K: Eq + Hash + Clone> {
    requests: HashMap<u64, (K, Vec<K>)>,
    by_owner: HashMap<K, Vec<u64>>,
}

impl<K: Eq + Hash + Clone> Default for WaitGraph<K> {
    fn default() -> Self {
        WaitGraph { requests: HashMap::new(), by_owner: HashMap::new() }
    }
}

impl<K: Eq + Hash + Clone> WaitGraph<K> {
    /// Would `owner` waiting for `blockers` close a cycle? Walks the whole graph (no depth cap): every
    /// owner is visited at most once, so the walk ends after at most one visit per waiting owner.
    pub fn would_deadlock(&self, owner: &K, blockers: &[K]) -> bool {
        let mut seen: HashSet<&K> = HashSet::new();
        let mut stack: Vec<&K> = blockers.iter().collect();
        while let Some(x) = stack.pop() {
            if x == owner {
                return true;
            }
            if !seen.insert(x) {
                continue;
            }
            if let Some(reqs) = self.by_owner.get(x) {
                for r in reqs {
                    if let Some((_, bs)) = self.requests.get(r) {
                        stack.extend(bs.iter());
                    }
                }
            }
        }
        false
    }

    /// Records (or replaces) the edges of request `id`.
    pub fn set(&mut self, id: u64, owner: K, blockers: Vec<K>) {
        if self.requests.contains_key(&id) {
            self.remove(id);
        }
        self.by_owner.entry(owner.clone()).or_default().push(id);
        self.requests.insert(id, (owner, blockers));
    }

    /// Forgets request `id` (granted, cancelled, timed out).
    pub fn remove(&mut self, id: u64) {
        if let Some((owner, _)) = self.requests.remove(&id) {
            if let Some(v) = self.by_owner.get_mut(&owner) {
                v.retain(|&r| r != id);
                if v.is_empty() {
                    self.by_owner.remove(&owner);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_and_three_owner_cycles() {
        let mut g: WaitGraph<&str> = WaitGraph::default();
        g.set(1, "a", vec!["b"]);
        assert!(g.would_deadlock(&"b", &["a"]));
        assert!(!g.would_deadlock(&"c", &["a"]));
        g.set(2, "b", vec!["c"]);
        assert!(g.would_deadlock(&"c", &["a"]));
        g.remove(1);
        assert!(!g.would_deadlock(&"c", &["a"]));
        assert!(g.would_deadlock(&"c", &["b"]));
    }

    #[test]
    fn long_chain_has_no_depth_cap() {
        let mut g: WaitGraph<u32> = WaitGraph::default();
        for i in 0..10_000u32 {
            g.set(i as u64, i, vec![i + 1]);
        }
        assert!(g.would_deadlock(&10_000, &[0]));
        assert!(!g.would_deadlock(&20_000, &[0]));
    }

    #[test]
    fn queue_order_blocks_later_shared() {
        let mut set = LockSet::new();
        let c = super::super::posix::lock(&set, OwnerIdx(0), LockType::Shared, &Range::new(0, 10)).unwrap();
        set.apply(&c);
        let w = Waiter {
            id: 1,
            owner: OwnerIdx(1),
            flavour: Flavour::Posix,
            kind: LockType::Exclusive,
            range: Range::new(0, 10),
        };
        // Held locks alone would allow a shared lock, but the earlier exclusive waiter comes first.
        let r = Range::new(5, 6);
        assert_eq!(blocked_by(&set, &[], OwnerIdx(2), Flavour::Posix, LockType::Shared, &r), None);
        assert_eq!(
            blocked_by(&set, std::slice::from_ref(&w), OwnerIdx(2), Flavour::Posix, LockType::Shared, &r),
            Some(Blocker::Queued(0))
        );
        let owners = blocking_owners(&set, &[w], OwnerIdx(2), Flavour::Posix, LockType::Exclusive, &r);
        assert_eq!(owners, vec![OwnerIdx(0), OwnerIdx(1)]);
    }
}
