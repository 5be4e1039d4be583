//! Per-file interning of lock owners: maps an owner as callers name it — (client, owner bytes, open
//! id) — to the small `OwnerIdx` the core compares. POSIX owners are interned without the open id
//! (SPEC.md §1: "POSIX locks belong to (client, owner); the open id is ignored"), Windows owners with
//! it, and the flavour is part of the key, so a POSIX and a Windows lock never share an owner.
//!
//! Entries are reference-counted by the locks (and, later, the waiters) that use them. An entry whose
//! count drops to zero stays cached for reuse, so a lock/unlock pair by the same owner allocates
//! nothing; idle entries are dropped in bulk once there are more than `IDLE_MAX` of them and more than a
//! quarter of all entries, so the walk over every entry is amortised O(1) per owner gone idle.

use crate::core::{Flavour, OwnerIdx};
use hashbrown::HashTable;
use std::hash::{BuildHasher, Hash, Hasher};

const IDLE_MAX: usize = 16;

/// An owner as a caller names it (borrowed for one call).
#[derive(Clone, Copy, Debug)]
pub struct OwnerRef<'a> {
    pub client: &'a [u8],
    pub owner: &'a [u8],
    pub open_id: u64,
}

#[derive(Debug)]
pub struct OwnerEntry {
    pub flavour: Flavour,
    pub client: Box<[u8]>,
    pub owner: Box<[u8]>,
    /// The open id (Windows owners); 0 for POSIX owners, which ignore it.
    pub open_id: u64,
    pub refs: u32,
    /// The process whose locks these are (shared mode; 0 otherwise).
    pub proc: u64,
    hash: u64,
}

#[derive(Debug, Default)]
pub struct Owners {
    entries: Vec<Option<OwnerEntry>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    /// The entry `find` last returned: a lock and its unlock name the same owner, so the second
    /// lookup is a comparison instead of a hash.
    last: std::cell::Cell<u32>,
    idle: usize,
    /// Entries visited by sweeps so far (tests bound it).
    swept: u64,
}

fn key_hash(hasher: &impl BuildHasher, flavour: Flavour, o: &OwnerRef) -> u64 {
    let mut h = hasher.build_hasher();
    flavour.hash(&mut h);
    o.client.hash(&mut h);
    o.owner.hash(&mut h);
    if flavour == Flavour::Windows {
        o.open_id.hash(&mut h);
    }
    h.finish()
}

static HASHER: once_cell::sync::Lazy<hashbrown::DefaultHashBuilder> =
    once_cell::sync::Lazy::new(hashbrown::DefaultHashBuilder::default);

impl Owners {
    /// As `Owners::default()`, keeping allocated memory (every field named: a new one must say how
    /// it is reset).
    pub fn reset(&mut self) {
        let Owners { entries, free, index, last, idle, swept } = self;
        entries.clear();
        free.clear();
        index.clear();
        last.set(0);
        *idle = 0;
        *swept = 0;
    }

    fn matches(e: &OwnerEntry, flavour: Flavour, o: &OwnerRef) -> bool {
        e.flavour == flavour
            && *e.client == *o.client
            && *e.owner == *o.owner
            && (flavour == Flavour::Posix || e.open_id == o.open_id)
    }

    /// The interned index of this owner, if it is known on this file.
    pub fn find(&self, flavour: Flavour, o: &OwnerRef) -> Option<OwnerIdx> {
        if self.index.is_empty() {
            return None;
        }
        if let Some(Some(e)) = self.entries.get(self.last.get() as usize) {
            if Self::matches(e, flavour, o) {
                return Some(OwnerIdx(self.last.get()));
            }
        }
        let h = key_hash(&*HASHER, flavour, o);
        let i = *self.index.find(h, |&i| Self::matches(self.entries[i as usize].as_ref().unwrap(), flavour, o))?;
        self.last.set(i);
        Some(OwnerIdx(i))
    }

    /// The interned index of this owner, creating an entry (with no references) if needed.
    pub fn intern(&mut self, flavour: Flavour, o: &OwnerRef) -> OwnerIdx {
        if let Some(i) = self.find(flavour, o) {
            return i;
        }
        let hash = key_hash(&*HASHER, flavour, o);
        let entry = OwnerEntry {
            flavour,
            client: o.client.into(),
            owner: o.owner.into(),
            open_id: if flavour == Flavour::Windows { o.open_id } else { 0 },
            refs: 0,
            proc: 0,
            hash,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.index.insert_unique(hash, i, |&j| entries[j as usize].as_ref().unwrap().hash);
        self.idle += 1;
        OwnerIdx(i)
    }

    /// Records the process of a new owner (shared mode).
    pub fn claim(&mut self, i: OwnerIdx, proc: u64) {
        if let Some(e) = self.entries[i.0 as usize].as_mut() {
            if e.proc == 0 {
                e.proc = proc;
            }
        }
    }

    /// Moves the owners of (client, open id) to process `proc`; returns how many.
    pub fn rebind(&mut self, client: &[u8], open_id: u64, proc: u64) -> usize {
        let mut n = 0;
        for e in self.entries.iter_mut().flatten() {
            if *e.client == *client && e.open_id == open_id && e.refs > 0 {
                e.proc = proc;
                n += 1;
            }
        }
        n
    }

    /// Every live owner: (index, entry).
    pub fn live_entries(&self) -> impl Iterator<Item = (OwnerIdx, &OwnerEntry)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| match e {
            Some(e) if e.refs > 0 => Some((OwnerIdx(i as u32), e)),
            _ => None,
        })
    }

    pub fn get(&self, i: OwnerIdx) -> &OwnerEntry {
        self.entries[i.0 as usize].as_ref().expect("live owner")
    }

    /// Adjusts the reference count of `i` by `delta` (locks added minus removed).
    pub fn add_refs(&mut self, i: OwnerIdx, delta: i64) {
        let e = self.entries[i.0 as usize].as_mut().expect("live owner");
        let before = e.refs;
        let after = (before as i64 + delta) as u32;
        e.refs = after;
        if before == 0 && after > 0 {
            self.idle -= 1;
        } else if before > 0 && after == 0 {
            self.idle += 1;
        }
    }

    /// Drops idle entries if there are too many; returns the indexes dropped so the caller can clear
    /// their per-owner index memory.
    #[inline]
    pub fn sweep_idle(&mut self, force: bool, dropped: impl FnMut(OwnerIdx)) {
        let limit = IDLE_MAX.max(self.entries.len() / 4);
        if self.idle <= limit && !(force && self.idle > 0) {
            return;
        }
        self.sweep(dropped);
    }

    #[cold]
    fn sweep(&mut self, mut dropped: impl FnMut(OwnerIdx)) {
        self.swept += self.entries.len() as u64;
        for i in 0..self.entries.len() {
            let idle = matches!(&self.entries[i], Some(e) if e.refs == 0);
            if idle {
                let e = self.entries[i].take().unwrap();
                if let Ok(slot) = self.index.find_entry(e.hash, |&j| j == i as u32) {
                    slot.remove();
                }
                self.free.push(i as u32);
                dropped(OwnerIdx(i as u32));
            }
        }
        self.idle = 0;
    }

    /// Owners (with at least one reference) of `client`.
    pub fn of_client<'a>(&'a self, client: &'a [u8]) -> impl Iterator<Item = OwnerIdx> + 'a {
        self.entries.iter().enumerate().filter_map(move |(i, e)| match e {
            Some(e) if e.refs > 0 && *e.client == *client => Some(OwnerIdx(i as u32)),
            _ => None,
        })
    }

    /// Entry slots, live, idle and free (for tests).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// Entries visited by idle sweeps so far (for tests).
    pub fn sweep_work(&self) -> u64 {
        self.swept
    }

    /// Number of entries with references.
    pub fn live(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Some(e) if e.refs > 0)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_ignores_open_id_windows_does_not() {
        let mut o = Owners::default();
        let a1 = OwnerRef { client: b"c", owner: b"o", open_id: 1 };
        let a2 = OwnerRef { client: b"c", owner: b"o", open_id: 2 };
        assert_eq!(o.intern(Flavour::Posix, &a1), o.intern(Flavour::Posix, &a2));
        assert_ne!(o.intern(Flavour::Windows, &a1), o.intern(Flavour::Windows, &a2));
        assert_ne!(o.intern(Flavour::Windows, &a1), o.intern(Flavour::Posix, &a1));
        let other_client = OwnerRef { client: b"d", owner: b"o", open_id: 1 };
        assert_ne!(o.intern(Flavour::Posix, &a1), o.intern(Flavour::Posix, &other_client));
    }

    #[test]
    fn idle_entries_are_swept() {
        let mut o = Owners::default();
        let keep = o.intern(Flavour::Posix, &OwnerRef { client: b"c", owner: b"keep", open_id: 0 });
        o.add_refs(keep, 1);
        for i in 0..100u32 {
            let b = i.to_be_bytes();
            o.intern(Flavour::Posix, &OwnerRef { client: b"c", owner: &b, open_id: 0 });
            o.sweep_idle(false, |_| {});
        }
        assert!(o.entries.iter().flatten().count() <= IDLE_MAX + 2);
        assert_eq!(o.find(Flavour::Posix, &OwnerRef { client: b"c", owner: b"keep", open_id: 0 }), Some(keep));
        o.sweep_idle(true, |_| {});
        assert_eq!(o.live(), 1);
    }
}
