//! The in-memory lock table: files sharded over independently locked shards (never one global mutex on
//! the hot path), each file holding its `LockSet` and its interned owners. Every operation takes exactly
//! one shard lock, asks the pure core for a decision, and applies the resulting `Changes`.
//!
//! Lock ordering: a thread holds at most one shard lock at a time. Nothing calls out of the library
//! while a shard lock is held.

use crate::core::{self, Access, Changes, Denied, Flavour, Lock, LockId, LockSet, LockType, Range};
use crate::error::{Error, Holder, Result};
use crate::owners::{OwnerRef, Owners};
use crate::core::OwnerIdx;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::BuildHasher;

/// Largest file id, in bytes (SPEC.md §1).
pub const FILE_ID_MAX: usize = 128;
/// Largest owner, in bytes.
pub const OWNER_MAX: usize = 2048;
/// Largest client id, in bytes.
pub const CLIENT_MAX: usize = 255;

const SHARDS: usize = 64;
/// Empty files a shard keeps cached before sweeping them.
const EMPTY_FILES_MAX: usize = 64;
/// An owner id that matches no interned owner.
const NOBODY: OwnerIdx = OwnerIdx(u32::MAX);

/// One file's state.
#[derive(Debug)]
pub struct FileState {
    id: Box<[u8]>,
    hash: u64,
    pub locks: LockSet,
    pub owners: Owners,
}

impl FileState {
    fn new(id: &[u8], hash: u64) -> Self {
        FileState { id: id.into(), hash, locks: LockSet::new(), owners: Owners::default() }
    }

    pub fn id(&self) -> &[u8] {
        &self.id
    }

    fn is_idle(&self) -> bool {
        self.locks.is_empty()
    }

    /// Applies `changes`, keeping owner reference counts in step; returns the new lock ids.
    fn commit(&mut self, changes: &Changes) -> smallvec::SmallVec<[LockId; 3]> {
        for &id in &changes.removed {
            let o = self.locks.get(id).owner;
            self.owners.add_refs(o, -1);
        }
        for n in &changes.added {
            self.owners.add_refs(n.owner, 1);
        }
        let ids = self.locks.apply(changes);
        let locks = &mut self.locks;
        self.owners.sweep_idle(false, |o| locks.forget_owner(o));
        ids
    }

    /// The holder of lock `id`, for reporting.
    pub fn holder(&self, id: LockId) -> Holder {
        let l = self.locks.get(id);
        holder_of(&self.owners, l)
    }

    fn owner_of(&self, flavour: Flavour, o: &OwnerRef) -> OwnerIdx {
        self.owners.find(flavour, o).unwrap_or(NOBODY)
    }

    /// Takes one lock (no blocking); refused with the holder on conflict.
    pub fn lock(&mut self, o: &OwnerRef, flavour: Flavour, kind: LockType, range: &Range) -> Result<()> {
        let owner = self.owners.intern(flavour, o);
        let decision = match flavour {
            Flavour::Posix => core::posix::lock(&self.locks, owner, kind, range),
            Flavour::Windows => core::windows::lock(&self.locks, owner, kind, range),
        };
        match decision {
            Ok(c) => {
                self.commit(&c);
                Ok(())
            }
            Err(d) => Err(self.refusal(d)),
        }
    }

    /// Releases one range (POSIX: any bytes; Windows: exactly one held lock).
    pub fn unlock(&mut self, o: &OwnerRef, flavour: Flavour, range: &Range) -> Result<()> {
        let owner = self.owner_of(flavour, o);
        let c = match flavour {
            Flavour::Posix => core::posix::unlock(&self.locks, owner, range),
            Flavour::Windows => core::windows::unlock(&self.locks, owner, range).map_err(|d| self.refusal(d))?,
        };
        self.commit(&c);
        Ok(())
    }

    /// The first lock that would refuse the request, as a holder.
    pub fn test(&self, o: &OwnerRef, flavour: Flavour, kind: LockType, range: &Range) -> Option<Holder> {
        let owner = self.owner_of(flavour, o);
        core::conflict::find_conflict(&self.locks, owner, flavour, kind, range).map(|id| self.holder(id))
    }

    /// Several locks, all or none: on a refusal every element already taken is undone and the index
    /// of the refused element is returned with the error.
    pub fn lock_many(
        &mut self,
        o: &OwnerRef,
        flavour: Flavour,
        elems: &[(LockType, Range)],
    ) -> std::result::Result<(), (usize, Error)> {
        let owner = self.owners.intern(flavour, o);
        // Undo log: for each applied step, the locks it removed and the ids it added.
        let mut undo: Vec<(Vec<Lock>, smallvec::SmallVec<[LockId; 3]>)> = Vec::new();
        for (i, (kind, range)) in elems.iter().enumerate() {
            let decision = match flavour {
                Flavour::Posix => core::posix::lock(&self.locks, owner, *kind, range),
                Flavour::Windows => core::windows::lock(&self.locks, owner, *kind, range),
            };
            match decision {
                Ok(c) => {
                    let removed: Vec<Lock> = c.removed.iter().map(|&id| *self.locks.get(id)).collect();
                    let added = self.commit(&c);
                    undo.push((removed, added));
                }
                Err(d) => {
                    let err = self.refusal(d);
                    for (removed, added) in undo.into_iter().rev() {
                        let mut back = Changes::default();
                        back.removed.extend(added);
                        back.added.extend(removed.into_iter().map(|l| core::NewLock {
                            owner: l.owner,
                            flavour: l.flavour,
                            kind: l.kind,
                            range: l.range,
                        }));
                        self.commit(&back);
                    }
                    return Err((i, err));
                }
            }
        }
        Ok(())
    }

    /// The strict-locking check for a read or write by the open `o`.
    pub fn check_io(&self, o: &OwnerRef, access: Access, range: &Range) -> Result<()> {
        let p = self.owners.find(Flavour::Posix, o);
        let w = self.owners.find(Flavour::Windows, o);
        match core::conflict::check_io(&self.locks, p, w, access, range) {
            Some(id) => Err(Error::Conflict(Box::new(self.holder(id)))),
            None => Ok(()),
        }
    }

    /// Releases the Windows locks of the open (client, owner, open id) and the POSIX locks of
    /// (client, owner) on this file; returns how many locks went.
    pub fn release_open(&mut self, o: &OwnerRef) -> usize {
        let mut n = 0;
        for flavour in [Flavour::Windows, Flavour::Posix] {
            if let Some(owner) = self.owners.find(flavour, o) {
                let c = core::lockset::release_owner(&self.locks, owner);
                n += c.removed.len();
                self.commit(&c);
            }
        }
        n
    }

    /// Releases every lock of `client` on this file; returns how many locks went.
    pub fn release_client(&mut self, client: &[u8]) -> usize {
        let owners: Vec<OwnerIdx> = self.owners.of_client(client).collect();
        let mut n = 0;
        for owner in owners {
            let c = core::lockset::release_owner(&self.locks, owner);
            n += c.removed.len();
            self.commit(&c);
        }
        n
    }

    /// Every lock of the file, sorted by range then owner, as holders.
    pub fn list(&self) -> Vec<Holder> {
        let mut v: Vec<(Range, Holder)> =
            self.locks.iter().map(|(_, l)| (l.range, holder_of(&self.owners, l))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.client.cmp(&b.1.client)).then_with(|| a.1.owner.cmp(&b.1.owner)));
        v.into_iter().map(|(_, h)| h).collect()
    }

    fn refusal(&self, d: Denied) -> Error {
        match d {
            Denied::Conflict(id) => Error::Conflict(Box::new(self.holder(id))),
            Denied::InvalidRange => Error::InvalidRange,
            Denied::RangeNotLocked => Error::RangeNotLocked,
        }
    }
}

fn holder_of(owners: &Owners, l: &Lock) -> Holder {
    let e = owners.get(l.owner);
    Holder {
        client: e.client.to_vec(),
        owner: e.owner.to_vec(),
        open_id: e.open_id,
        flavour: l.flavour,
        kind: l.kind,
        offset: l.range.start,
        length: l.range.length_for(l.flavour),
    }
}

#[derive(Default)]
struct Shard {
    files: HashTable<FileState>,
    empty: usize,
}

#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// The sharded table of every file's locks.
pub struct Table {
    shards: Box<[Padded]>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub fn new() -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Padded(Mutex::new(Shard::default()))).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    /// Runs `f` on the state of `file` under its shard lock. With `create`, a missing file is created
    /// (empty); without it, `f` gets `None` for a file nobody has locked.
    pub fn with_file<R>(&self, file: &[u8], create: bool, f: impl FnOnce(Option<&mut FileState>) -> R) -> R {
        let hash = self.hasher.hash_one(file);
        let shard = &self.shards[(hash >> 58) as usize % SHARDS];
        let mut guard = shard.0.lock();
        let sh = &mut *guard;
        let found = sh.files.find_mut(hash, |fs| *fs.id == *file);
        let (r, idle) = match found {
            Some(fs) => {
                let r = f(Some(&mut *fs));
                (r, fs.is_idle())
            }
            None if create => {
                let entry = sh.files.insert_unique(hash, FileState::new(file, hash), |fs| fs.hash);
                let fs = entry.into_mut();
                let r = f(Some(fs));
                (r, fs.is_idle())
            }
            None => (f(None), false),
        };
        if idle {
            sh.empty += 1;
            if sh.empty > EMPTY_FILES_MAX {
                sh.files.retain(|fs| !fs.is_idle());
                sh.empty = 0;
            }
        }
        r
    }

    /// Runs `f` on every file, one shard at a time.
    pub fn for_each_file(&self, mut f: impl FnMut(&mut FileState)) {
        for shard in self.shards.iter() {
            let mut sh = shard.0.lock();
            for fs in sh.files.iter_mut() {
                f(fs);
            }
        }
    }

    /// Total locks held (walks every shard; for tests and inspection, not the hot path).
    pub fn lock_count(&self) -> usize {
        let mut n = 0;
        self.for_each_file(|fs| n += fs.locks.len());
        n
    }
}

/// Validates a file id (1..=128 bytes).
pub fn check_file_id(file: &[u8]) -> Result<()> {
    if file.is_empty() || file.len() > FILE_ID_MAX {
        return Err(Error::Invalid("file id must be 1..128 bytes"));
    }
    Ok(())
}

/// Validates an owner as callers name it.
pub fn check_owner(o: &OwnerRef) -> Result<()> {
    if o.client.is_empty() || o.client.len() > CLIENT_MAX {
        return Err(Error::Invalid("client id must be 1..255 bytes"));
    }
    if o.owner.len() > OWNER_MAX {
        return Err(Error::Invalid("owner must be at most 2048 bytes"));
    }
    Ok(())
}
