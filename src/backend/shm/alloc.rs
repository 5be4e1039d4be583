//! The allocator of one partition's heap, used only under the partition's mutex: power-of-two size
//! classes (64 B .. 4 MiB), a free list per class, and a bump offset for blocks never used yet.
//! It lives wholly inside its heap and never touches the mutex pages (nothing is ever remapped).
//!
//! Crash safety: every change is one aligned 8-byte store that publishes it (a pop stores the new
//! head, a push stores the block's link then the head, the bump stores the new offset), so a process
//! killed anywhere in here leaves the lists well formed; at worst a block is leaked.

use super::layout::*;

/// The size class of a block that holds `n` bytes, if any does.
pub fn class_of(n: u64) -> Option<u64> {
    (0..NCLASS).find(|&k| (64u64 << k) >= n)
}

pub fn class_size(k: u64) -> u64 {
    64 << k
}

/// A block of at least `n` bytes in partition `p`'s heap, or `None` when the heap is full.
pub fn alloc(m: &Map, p: u64, n: u64) -> Option<u64> {
    let k = class_of(n)?;
    let part = part_off(p);
    let head = part + P_FREE + k * 8;
    let b = m.get(head);
    if b != 0 {
        if !in_heap(p, b, class_size(k)) {
            return None; // a corrupt list is never followed out of the heap
        }
        m.set(head, m.get(b + R_NEXT));
        m.set(b + R_CLASS, k);
        return Some(b);
    }
    let bump = m.get(part + P_BUMP);
    let end = heap_start(p) + HEAP_PER_PART;
    if bump < heap_start(p) || bump.checked_add(class_size(k))? > end {
        return None;
    }
    m.set(part + P_BUMP, bump + class_size(k));
    m.set(bump + R_CLASS, k);
    Some(bump)
}

/// Gives back a block made by `alloc` in partition `p`.
pub fn free(m: &Map, p: u64, b: u64) {
    let k = m.get(b + R_CLASS) & 0xffff_ffff;
    if k >= NCLASS || !in_heap(p, b, class_size(k)) {
        return; // never link a block that is not one of ours (leaked instead)
    }
    let head = part_off(p) + P_FREE + k * 8;
    m.set(b + R_NEXT, m.get(head));
    m.set(head, b);
}

pub fn in_heap(p: u64, b: u64, size: u64) -> bool {
    let s = heap_start(p);
    b >= s && b % 64 == 0 && b.checked_add(size).is_some_and(|e| e <= s + HEAP_PER_PART)
}

/// Bytes of partition `p`'s heap handed out and not given back (for tests and `unilock-stat`).
pub fn in_use(m: &Map, p: u64) -> u64 {
    let part = part_off(p);
    let mut used = m.get(part + P_BUMP).saturating_sub(heap_start(p));
    for k in 0..NCLASS {
        let mut b = m.get(part + P_FREE + k * 8);
        let mut n = 0;
        while b != 0 && n < (HEAP_PER_PART / 64) {
            used = used.saturating_sub(class_size(k));
            b = m.get(b + R_NEXT);
            n += 1;
        }
    }
    used
}
