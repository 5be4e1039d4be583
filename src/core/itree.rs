//! An interval index: a treap ordered by `(start, end, id)` whose nodes carry the largest end of their
//! subtree, so "find a stored range overlapping `[lo, hi)`" costs O(log n + k) where k is the number of
//! overlapping ranges the caller's predicate skips. Nodes live in an arena with a free list, so after
//! warm-up an insert or remove allocates nothing.
//!
//! Invariants (checked by `check` in tests): in-order traversal is sorted by key; a node's priority is
//! no smaller than its children's; `max_end` is the maximum search end over the node's subtree.
//! The only operations that change the tree are `insert` (down the path while nodes outrank the new
//! one, then a `split` there) and `remove` (the node is replaced by the `merge` of its children).
//!
//! Ranges are stored with their *search* end (see `Range::search_end`): zero-length ranges are widened
//! by one byte, so searches return a superset that callers filter with the exact overlap predicate.

use super::range::Range;

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Node {
    start: u64,
    end: u128,
    id: u32,
    prio: u32,
    left: u32,
    right: u32,
    max_end: u128,
}

/// A set of `(Range, id)` pairs, `id` unique within the tree.
#[derive(Clone, Debug)]
pub struct IntervalTree {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    len: usize,
    seed: u64,
}

impl Default for IntervalTree {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn mix(mut x: u64) -> u32 {
    // splitmix64 finaliser: deterministic, well-spread priorities with no random source.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (x ^ (x >> 31)) as u32
}

impl IntervalTree {
    pub const fn new() -> Self {
        IntervalTree { nodes: Vec::new(), free: Vec::new(), root: NIL, len: 0, seed: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every entry but keeps the arena's memory for reuse.
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.free.clear();
        self.root = NIL;
        self.len = 0;
    }

    /// As `new()`, keeping allocated memory: `clear` and the priority seed of a fresh tree (so a
    /// reused tree takes the very shape a fresh one would).
    pub fn reset(&mut self) {
        self.clear();
        self.seed = 0;
    }

    #[inline]
    fn key(&self, n: u32) -> (u64, u128, u32) {
        let node = &self.nodes[n as usize];
        (node.start, node.end, node.id)
    }

    #[inline]
    fn update(&mut self, n: u32) {
        let node = self.nodes[n as usize];
        let mut m = node.end;
        if node.left != NIL {
            m = m.max(self.nodes[node.left as usize].max_end);
        }
        if node.right != NIL {
            m = m.max(self.nodes[node.right as usize].max_end);
        }
        self.nodes[n as usize].max_end = m;
    }

    /// Splits `t` into (keys < key, keys >= key).
    fn split(&mut self, t: u32, key: (u64, u128, u32)) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if self.key(t) < key {
            let r = self.nodes[t as usize].right;
            let (a, b) = self.split(r, key);
            self.nodes[t as usize].right = a;
            self.update(t);
            (t, b)
        } else {
            let l = self.nodes[t as usize].left;
            let (a, b) = self.split(l, key);
            self.nodes[t as usize].left = b;
            self.update(t);
            (a, t)
        }
    }

    /// Merges two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let r = self.nodes[a as usize].right;
            let m = self.merge(r, b);
            self.nodes[a as usize].right = m;
            self.update(a);
            a
        } else {
            let l = self.nodes[b as usize].left;
            let m = self.merge(a, l);
            self.nodes[b as usize].left = m;
            self.update(b);
            b
        }
    }

    /// Inserts `(range, id)`. The caller guarantees `id` is not already present with this range.
    pub fn insert(&mut self, range: Range, id: u32) {
        self.seed = self.seed.wrapping_add(1);
        let end = range.search_end();
        let node = Node {
            start: range.start,
            end,
            id,
            prio: mix(self.seed ^ ((id as u64) << 32)),
            left: NIL,
            right: NIL,
            max_end: end,
        };
        let n = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.root = self.insert_in(self.root, n);
        self.len += 1;
    }

    /// Inserts node `n` into subtree `t`: down the path while the nodes outrank it, then split there.
    fn insert_in(&mut self, t: u32, n: u32) -> u32 {
        if t == NIL {
            return n;
        }
        let key = self.key(n);
        if self.nodes[n as usize].prio > self.nodes[t as usize].prio {
            let (a, b) = self.split(t, key);
            self.nodes[n as usize].left = a;
            self.nodes[n as usize].right = b;
            self.update(n);
            return n;
        }
        if key < self.key(t) {
            let l = self.nodes[t as usize].left;
            let m = self.insert_in(l, n);
            self.nodes[t as usize].left = m;
        } else {
            let r = self.nodes[t as usize].right;
            let m = self.insert_in(r, n);
            self.nodes[t as usize].right = m;
        }
        let end = self.nodes[n as usize].end;
        let node = &mut self.nodes[t as usize];
        node.max_end = node.max_end.max(end);
        t
    }

    /// Removes `(range, id)`; returns whether it was present.
    pub fn remove(&mut self, range: Range, id: u32) -> bool {
        let key = (range.start, range.search_end(), id);
        let (root, found) = self.remove_in(self.root, key);
        if found {
            self.root = root;
            self.len -= 1;
        }
        found
    }

    /// Removes `key` from subtree `t` (its node is replaced by the merge of its children); returns the
    /// new subtree and whether the key was there. Nothing changes when it was not.
    fn remove_in(&mut self, t: u32, key: (u64, u128, u32)) -> (u32, bool) {
        if t == NIL {
            return (NIL, false);
        }
        let k = self.key(t);
        let (l, r) = (self.nodes[t as usize].left, self.nodes[t as usize].right);
        if key == k {
            self.free.push(t);
            return (self.merge(l, r), true);
        }
        if key < k {
            let (m, found) = self.remove_in(l, key);
            if !found {
                return (t, false);
            }
            self.nodes[t as usize].left = m;
        } else {
            let (m, found) = self.remove_in(r, key);
            if !found {
                return (t, false);
            }
            self.nodes[t as usize].right = m;
        }
        self.update(t);
        (t, true)
    }

    /// Calls `f(start, search_end, id)` for stored ranges whose search interval meets `[lo, hi)`, in key
    /// order, until `f` returns `true`; returns the id `f` accepted.
    #[inline]
    pub fn find<F: FnMut(u32) -> bool>(&self, lo: u128, hi: u128, mut f: F) -> Option<u32> {
        if self.root == NIL {
            return None;
        }
        self.find_in(self.root, lo, hi, &mut f)
    }

    fn find_in<F: FnMut(u32) -> bool>(&self, n: u32, lo: u128, hi: u128, f: &mut F) -> Option<u32> {
        if n == NIL {
            return None;
        }
        let node = &self.nodes[n as usize];
        if node.max_end <= lo {
            return None;
        }
        if let Some(id) = self.find_in(node.left, lo, hi, f) {
            return Some(id);
        }
        if (node.start as u128) >= hi {
            return None;
        }
        if node.end > lo && f(node.id) {
            return Some(node.id);
        }
        self.find_in(node.right, lo, hi, f)
    }

    /// Calls `f(id)` for every stored id whose search interval meets `[lo, hi)`, in key order.
    pub fn for_each_overlapping<F: FnMut(u32)>(&self, lo: u128, hi: u128, mut f: F) {
        self.find(lo, hi, |id| {
            f(id);
            false
        });
    }

    /// Calls `f(id)` for every stored id, in key order.
    pub fn for_each<F: FnMut(u32)>(&self, mut f: F) {
        self.for_each_overlapping(0, u128::MAX, &mut f);
    }

    /// Checks the invariants; for tests and debug assertions.
    #[cfg(test)]
    pub fn check(&self) {
        fn walk(t: &IntervalTree, n: u32, keys: &mut Vec<(u64, u128, u32)>) -> (u128, usize) {
            if n == NIL {
                return (0, 0);
            }
            let node = t.nodes[n as usize];
            for c in [node.left, node.right] {
                if c != NIL {
                    assert!(t.nodes[c as usize].prio <= node.prio, "heap order");
                }
            }
            let (lm, lc) = walk(t, node.left, keys);
            keys.push((node.start, node.end, node.id));
            let (rm, rc) = walk(t, node.right, keys);
            let m = node.end.max(lm).max(rm);
            assert_eq!(m, node.max_end, "max_end");
            (m, lc + rc + 1)
        }
        let mut keys = Vec::new();
        let (_, count) = walk(self, self.root, &mut keys);
        assert_eq!(count, self.len);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_vec(ops in proptest::collection::vec((0u64..40, 0u64..12, any::<bool>(), 0u64..50, 1u64..20), 1..200)) {
            let mut t = IntervalTree::new();
            let mut model: Vec<(Range, u32)> = Vec::new();
            let mut next = 0u32;
            for (start, len, insert, qs, ql) in ops {
                if insert || model.is_empty() {
                    let r = Range::new(start, start as u128 + len as u128);
                    t.insert(r, next);
                    model.push((r, next));
                    next += 1;
                } else {
                    let i = (start as usize) % model.len();
                    let (r, id) = model.remove(i);
                    prop_assert!(t.remove(r, id));
                    prop_assert!(!t.remove(r, id));
                }
                t.check();
                let (lo, hi) = (qs as u128, qs as u128 + ql as u128);
                let mut got = Vec::new();
                t.for_each_overlapping(lo, hi, |id| got.push(id));
                got.sort();
                let mut want: Vec<u32> = model.iter()
                    .filter(|(r, _)| (r.start as u128) < hi && r.search_end() > lo)
                    .map(|(_, id)| *id).collect();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn many_entries_stay_shallow() {
        let mut t = IntervalTree::new();
        for i in 0..100_000u32 {
            t.insert(Range::new(i as u64 * 2, i as u128 * 2 + 1), i);
        }
        t.check();
        let mut visited = 0;
        let hit = t.find(50_000, 50_001, |_| {
            visited += 1;
            true
        });
        assert_eq!(hit, Some(25_000));
        assert!(visited <= 2);
        for i in 0..100_000u32 {
            assert!(t.remove(Range::new(i as u64 * 2, i as u128 * 2 + 1), i));
        }
        assert!(t.is_empty());
    }
}
