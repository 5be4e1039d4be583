//! One file's state (`FileState`): its locks and interned owners, its waiting requests and watches,
//! its leases and opens, and the journal of its changes for the store. Every backend (the in-memory
//! table, the store-journaled table, the shared multi-process table) runs these same methods; the
//! rules themselves are pure functions in `crate::core` (`core::file` for the per-file ones).
//!
//! Split by concern: `waits` (blocking requests, watches, the waiter grant loop), `leases` (opens,
//! leases and their break waits), `journal` (the store journal and per-client counts), `codec` (the
//! shared-mode encoding), `procs` (shared-mode process binding and reaping).

mod codec;
mod journal;
mod leases;
mod procs;
mod waits;

pub use leases::{LeaseAnswer, OpenSpec};
pub use waits::{Queued, WaitMeta, Watch};

use crate::core::lease::FileLeases;
use crate::core::wait::Waiter;
use crate::core::OwnerIdx;
use crate::core::{self, Access, Changes, Denied, Flavour, Lock, LockId, LockSet, LockType, Range};
use crate::error::{Error, Holder, Result};
use crate::owners::{OwnerRef, Owners};
use crate::requests::Ctx;
use core::file::GrantedReq;
use leases::LeaseWaiter;

/// One lock element of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockReq {
    pub flavour: Flavour,
    pub kind: LockType,
    pub offset: u64,
    pub length: u64,
}

impl LockReq {
    pub fn range(&self) -> Result<Range> {
        Range::from_request(self.flavour, self.offset, self.length).map_err(|_| Error::InvalidRange)
    }
}

/// An owner id that matches no interned owner.
const NOBODY: OwnerIdx = OwnerIdx(u32::MAX);

/// What a queued request carries besides its core `Waiter`.
/// One file's state.
#[derive(Debug)]
pub struct FileState {
    pub(crate) id: Box<[u8]>,
    pub(crate) hash: u64,
    pub locks: LockSet,
    pub owners: Owners,
    /// Blocking requests in arrival order, and their metadata (same order).
    waiters: Vec<Waiter>,
    meta: Vec<WaitMeta>,
    watchers: Vec<Watch>,
    /// Blocking requests already granted: re-submitting the same request with its token is
    /// idempotent. Cleared when the owner loses a lock on this file.
    granted: Vec<GrantedReq>,
    /// A lock or an earlier waiter went away since the queue was last looked at.
    dirty: bool,
    /// A lock was removed or shrunk since the watches were last looked at.
    released: bool,
    /// Leases, oplocks, delegations and the opens they belong to.
    pub leases: FileLeases,
    /// Opens and triggers waiting for lease breaks to end.
    lease_waiters: Vec<LeaseWaiter>,
    /// The process operating on this state (shared mode; 0 otherwise): recorded on new owners,
    /// opens, waiters and watches so events reach the right process.
    pub me: u64,
    /// The store mirrors this table: changes are journaled for it.
    persist: bool,
    /// Lock counts per client are kept (a per-client or total limit is set).
    track: bool,
    /// Net change of locks per client since the last `take_counts`.
    client_deltas: Vec<(Box<[u8]>, i64)>,
    journal: crate::store::Journal,
    leases_dirty: bool,
    /// Counted in its shard's `empty` (it was idle when last looked at).
    pub(crate) counted_idle: bool,
}

impl FileState {
    pub(crate) fn new(id: &[u8], hash: u64, persist: bool, track: bool) -> Self {
        FileState {
            me: 0,
            persist,
            track,
            client_deltas: Vec::new(),
            journal: crate::store::Journal::default(),
            leases_dirty: false,
            counted_idle: false,
            id: id.into(),
            hash,
            locks: LockSet::new(),
            owners: Owners::default(),
            waiters: Vec::new(),
            meta: Vec::new(),
            watchers: Vec::new(),
            granted: Vec::new(),
            dirty: false,
            released: false,
            leases: FileLeases::default(),
            lease_waiters: Vec::new(),
        }
    }

    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// Makes this state what `FileState::new(file, 0, persist, false)` would be, keeping the memory
    /// its collections hold (shared mode decodes every operation's state into a reused one: a fresh
    /// state per operation cost more in malloc and free than the operation itself). Every field is
    /// named, so a new one cannot be forgotten here.
    pub(crate) fn reset(&mut self, file: &[u8], persist: bool) {
        let FileState {
            id,
            hash,
            locks,
            owners,
            waiters,
            meta,
            watchers,
            granted,
            dirty,
            released,
            leases,
            lease_waiters,
            me,
            persist: p,
            track,
            client_deltas,
            journal,
            leases_dirty,
            counted_idle,
        } = self;
        if **id != *file {
            *id = file.into();
        }
        *hash = 0;
        locks.reset();
        owners.reset();
        waiters.clear();
        meta.clear();
        watchers.clear();
        granted.clear();
        *dirty = false;
        *released = false;
        leases.leases.clear();
        leases.opens.clear();
        lease_waiters.clear();
        *me = 0;
        *p = persist;
        *track = false;
        client_deltas.clear();
        journal.locks.clear();
        journal.leases.clear();
        *leases_dirty = false;
        *counted_idle = false;
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.locks.is_empty()
            && self.waiters.is_empty()
            && self.watchers.is_empty()
            && self.leases.is_empty()
            && self.lease_waiters.is_empty()
    }

    pub fn waiter_count(&self) -> usize {
        self.waiters.len()
    }

    /// Applies `changes`, keeping owner reference counts in step; returns the new lock ids.
    fn commit(&mut self, changes: &Changes) -> smallvec::SmallVec<[LockId; 3]> {
        if self.persist {
            for &id in &changes.removed {
                let row = self.row_of(self.locks.get(id));
                self.journal.locks.push((row, -1));
            }
            for n in &changes.added {
                let l = Lock { owner: n.owner, flavour: n.flavour, kind: n.kind, range: n.range };
                let row = self.row_of(&l);
                self.journal.locks.push((row, 1));
            }
        }
        if self.track {
            for &id in &changes.removed {
                let o = self.locks.get(id).owner;
                self.count_client(o, -1);
            }
            for n in &changes.added {
                self.count_client(n.owner, 1);
            }
        }
        for &id in &changes.removed {
            let o = self.locks.get(id).owner;
            self.owners.add_refs(o, -1);
            if !self.granted.is_empty() {
                self.granted.retain(|g| g.owner != o);
            }
        }
        if !changes.removed.is_empty() {
            self.dirty = true;
            self.released = true;
        }
        if !changes.added.is_empty() && !self.waiters.is_empty() {
            // A new lock's owner now blocks some waiters: their wait-for edges must be refreshed (by
            // `settle`), or a deadlock through it goes unseen.
            self.dirty = true;
        }
        for n in &changes.added {
            self.owners.add_refs(n.owner, 1);
        }
        let ids = self.locks.apply(changes);
        let locks = &mut self.locks;
        self.owners.sweep_idle(false, |o| locks.forget_owner(o));
        ids
    }

    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.leases.len()
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
        self.owners.claim(owner, self.me);
        // The decision is committed where it lies (`ref`): moving a `Changes` out of its `Result` is a
        // copy of ~200 bytes on the hot path when the rule is not inlined here.
        match core::file::lock(&self.locks, owner, flavour, kind, range) {
            Ok(ref c) => {
                self.commit(c);
                Ok(())
            }
            Err(d) => Err(self.refusal(d)),
        }
    }

    /// Releases one range (POSIX: any bytes; Windows: exactly one held lock).
    pub fn unlock(&mut self, o: &OwnerRef, flavour: Flavour, range: &Range) -> Result<()> {
        let owner = self.owner_of(flavour, o);
        match flavour {
            Flavour::Posix => {
                let c = core::posix::unlock(&self.locks, owner, range);
                self.commit(&c);
            }
            // Committed in place, as in `lock`.
            Flavour::Windows => match core::windows::unlock(&self.locks, owner, range) {
                Ok(ref c) => {
                    self.commit(c);
                }
                Err(d) => return Err(self.refusal(d)),
            },
        }
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
        self.owners.claim(owner, self.me);
        // All or none as one `Changes`, decided by the core: a refusal changes nothing.
        match core::file::lock_many(&self.locks, owner, flavour, elems) {
            Ok(c) => {
                self.commit(&c);
                Ok(())
            }
            Err(r) => Err((
                r.index,
                match r.why {
                    core::file::Refusal::Conflict(l) => Error::Conflict(Box::new(holder_of(&self.owners, &l))),
                    core::file::Refusal::Denied(d) => self.refusal(d),
                },
            )),
        }
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

    /// Releases every lock of `client` on this file, and its opens and leases; returns how many
    /// locks went.
    pub fn release_client(&mut self, ctx: &Ctx, client: &[u8]) -> usize {
        let owners: Vec<OwnerIdx> = self.owners.of_client(client).collect();
        let mut n = 0;
        for owner in owners {
            let c = core::lockset::release_owner(&self.locks, owner);
            n += c.removed.len();
            self.commit(&c);
        }
        if self.leases.opens.iter().any(|o| *o.client == *client)
            || self.leases.leases.iter().any(|l| *l.client == *client)
        {
            self.leases.drop_client(client);
            self.leases_dirty = self.persist;
            self.settle_leases(ctx);
        }
        n
    }

    /// Every lock of the file, sorted by range then owner, as holders.
    pub fn list(&self) -> Vec<Holder> {
        let mut v: Vec<(Range, Holder)> =
            self.locks.iter().map(|(_, l)| (l.range, holder_of(&self.owners, l))).collect();
        v.sort_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| a.1.client.cmp(&b.1.client)).then_with(|| a.1.owner.cmp(&b.1.owner))
        });
        v.into_iter().map(|(_, h)| h).collect()
    }

    /// The interned owners an open stands for: its Windows owner and its POSIX owner.
    pub fn owners_of_open(&self, o: &OwnerRef) -> Vec<OwnerIdx> {
        [Flavour::Windows, Flavour::Posix].iter().filter_map(|f| self.owners.find(*f, o)).collect()
    }

    /// The interned owners of a client (with locks or waiters).
    pub fn owners_of_client(&self, client: &[u8]) -> Vec<OwnerIdx> {
        self.owners.of_client(client).collect()
    }

    /// An empty state for `file` (shared mode loads into it).
    pub fn blank(file: &[u8], persist: bool) -> FileState {
        FileState::new(file, 0, persist, false)
    }

    /// True when nothing at all is left (shared mode deletes the row).
    pub fn is_empty_state(&self) -> bool {
        self.is_idle() && self.granted.is_empty()
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
