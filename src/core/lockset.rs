//! The locks of one file, indexed three ways: exclusive locks by range, shared locks by range, and each
//! owner's locks by range. A lock or unlock on a file holding n locks costs O(log n) plus the number of
//! overlapping locks the rule has to look at, never a scan of the file.
//!
//! Invariant: every live lock is in exactly two trees (its type's tree and its owner's tree), under its
//! range and id. `apply` is the only mutation besides `clear`; the core computes `Changes` against a
//! `&LockSet` and the caller applies them, so a refused request never touches the set.

use super::itree::IntervalTree;
use super::range::Range;
use super::{Changes, Flavour, LockType, NewLock, OwnerIdx};
use smallvec::SmallVec;

/// Index of a lock inside its file's `LockSet`; valid until that lock is removed.
pub type LockId = u32;

/// One held byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub owner: OwnerIdx,
    pub flavour: Flavour,
    pub kind: LockType,
    pub range: Range,
}

#[derive(Clone, Debug, Default)]
pub struct LockSet {
    slots: Vec<Option<Lock>>,
    free: Vec<LockId>,
    excl: IntervalTree,
    shared: IntervalTree,
    by_owner: Vec<IntervalTree>,
    count: usize,
}

static EMPTY: IntervalTree = IntervalTree::new();

impl LockSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of held locks.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The lock with this id. Panics on a stale id: ids come only from this set's own trees.
    #[inline]
    pub fn get(&self, id: LockId) -> &Lock {
        self.slots[id as usize].as_ref().expect("live lock id")
    }

    /// The lock with this id, if it is live (`None` for a freed or never-used id).
    #[inline]
    pub fn try_get(&self, id: LockId) -> Option<&Lock> {
        self.slots.get(id as usize).and_then(|s| s.as_ref())
    }

    /// Exclusive locks by range.
    #[inline]
    pub fn exclusive(&self) -> &IntervalTree {
        &self.excl
    }

    /// Shared locks by range.
    #[inline]
    pub fn shared(&self) -> &IntervalTree {
        &self.shared
    }

    /// One owner's locks by range (an empty tree if the owner holds none).
    #[inline]
    pub fn of_owner(&self, owner: OwnerIdx) -> &IntervalTree {
        self.by_owner.get(owner.0 as usize).unwrap_or(&EMPTY)
    }

    /// Number of locks `owner` holds on this file.
    pub fn owner_count(&self, owner: OwnerIdx) -> usize {
        self.of_owner(owner).len()
    }

    /// Every held lock, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (LockId, &Lock)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|l| (i as LockId, l)))
    }

    fn tree_for(&mut self, kind: LockType) -> &mut IntervalTree {
        match kind {
            LockType::Exclusive => &mut self.excl,
            LockType::Shared => &mut self.shared,
        }
    }

    /// Removes then adds; returns the ids given to the added locks, in order.
    pub fn apply(&mut self, changes: &Changes) -> SmallVec<[LockId; 3]> {
        for &id in &changes.removed {
            self.remove(id);
        }
        changes.added.iter().map(|n| self.insert(*n)).collect()
    }

    /// Adds one lock; returns its id.
    pub fn insert(&mut self, n: NewLock) -> LockId {
        let lock = Lock { owner: n.owner, flavour: n.flavour, kind: n.kind, range: n.range };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(lock);
                id
            }
            None => {
                self.slots.push(Some(lock));
                (self.slots.len() - 1) as LockId
            }
        };
        self.tree_for(lock.kind).insert(lock.range, id);
        let o = lock.owner.0 as usize;
        if self.by_owner.len() <= o {
            self.by_owner.resize_with(o + 1, IntervalTree::new);
        }
        self.by_owner[o].insert(lock.range, id);
        self.count += 1;
        id
    }

    /// Removes one lock by id; returns it.
    pub fn remove(&mut self, id: LockId) -> Lock {
        let lock = self.slots[id as usize].take().expect("live lock id");
        let found = self.tree_for(lock.kind).remove(lock.range, id);
        debug_assert!(found);
        let found = self.by_owner[lock.owner.0 as usize].remove(lock.range, id);
        debug_assert!(found);
        self.free.push(id);
        self.count -= 1;
        lock
    }

    /// Removes every lock, keeping allocated memory for reuse.
    pub fn clear(&mut self) {
        self.empty(false);
    }

    /// As `new()`, keeping allocated memory (a state decoded again into a reused `FileState`): also
    /// the trees' priority seeds of fresh trees.
    pub fn reset(&mut self) {
        self.empty(true);
    }

    fn empty(&mut self, fresh: bool) {
        self.slots.clear();
        self.free.clear();
        for t in [&mut self.excl, &mut self.shared].into_iter().chain(self.by_owner.iter_mut()) {
            if fresh {
                t.reset();
            } else {
                t.clear();
            }
        }
        self.count = 0;
    }

    /// Releases the per-owner index memory of an owner that holds nothing any more.
    pub fn forget_owner(&mut self, owner: OwnerIdx) {
        if let Some(t) = self.by_owner.get_mut(owner.0 as usize) {
            debug_assert!(t.is_empty());
            *t = IntervalTree::new();
        }
    }

    /// Checks the index invariants; used by tests and property tests.
    #[cfg(test)]
    pub fn check(&self) {
        self.excl.check();
        self.shared.check();
        let mut n = 0;
        for t in &self.by_owner {
            t.check();
            n += t.len();
        }
        assert_eq!(n, self.count);
        assert_eq!(self.excl.len() + self.shared.len(), self.count);
    }
}

/// Releasing everything an owner holds on the file (close of an open, SPEC.md §3).
pub fn release_owner(set: &LockSet, owner: OwnerIdx) -> Changes {
    let mut c = Changes::default();
    set.of_owner(owner).for_each(|id| c.removed.push(id));
    c
}
