//! The in-memory lock table: files sharded over independently locked shards (never one global mutex on
//! the hot path), each file holding its `LockSet` and its interned owners. Every operation takes exactly
//! one shard lock, asks the pure core for a decision, and applies the resulting `Changes`.
//!
//! Lock ordering: a thread holds at most one shard lock at a time. Nothing calls out of the library
//! while a shard lock is held.

use crate::core::lease::{self, FileLeases, Grant, Key, Note, Requester, Trigger};
use crate::core::wait::{self, Waiter};
use crate::core::OwnerIdx;
use crate::core::{self, Access, Changes, Denied, Flavour, Lock, LockId, LockSet, LockType, Range};
use crate::error::{Error, Holder, Result};
use crate::events::TimerKind;
use crate::owners::{OwnerRef, Owners};
use crate::requests::LeaseInfo;
use crate::requests::{owner_key, Ctx, Event, EventKind, OwnerKey, ReqState};

/// Largest file id, in bytes (SPEC.md §1).
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

pub const FILE_ID_MAX: usize = 128;
/// Largest owner, in bytes.
pub const OWNER_MAX: usize = 2048;
/// Largest client id, in bytes.
pub const CLIENT_MAX: usize = 255;

/// An owner id that matches no interned owner.
const NOBODY: OwnerIdx = OwnerIdx(u32::MAX);

/// What a queued request carries besides its core `Waiter`.
#[derive(Debug)]
pub struct WaitMeta {
    /// When it started waiting (ms), for the wait-time histogram.
    pub since: u64,
    /// The waiting process (shared mode; 0 otherwise).
    pub proc: u64,
    pub token: u64,
    pub user_data: usize,
    pub key: OwnerKey,
    pub offset: u64,
    pub length: u64,
}

/// A blocking request that was granted, as remembered for an idempotent re-submission: the whole
/// request (the interned owner stands for client, owner, open id and flavour), not the token alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GrantedReq {
    owner: OwnerIdx,
    token: u64,
    kind: LockType,
    range: Range,
}

/// A one-shot watch of the file's locks.
#[derive(Debug)]
pub struct Watch {
    pub id: u64,
    pub token: u64,
    pub user_data: usize,
    pub proc: u64,
}

/// The answer to a blocking request.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// Granted at once (or earlier, for a re-submitted token).
    Granted,
    /// Waiting; completes through an event. The holder is one lock it waits for, if a lock (not an
    /// earlier waiter) is what blocks it.
    Pending(u64, Option<Holder>),
}

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

/// A requester waiting for breaks (SPEC.md §4: completes when no break it waits on is in progress).
#[derive(Debug)]
struct LeaseWaiter {
    id: u64,
    waits: Vec<(Box<[u8]>, Key)>,
    token: u64,
    user_data: usize,
    proc: u64,
}

/// The answer to an open or a trigger that may have to wait for breaks.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Proceed (for an open: with this grant).
    Ready(Grant),
    /// Waiting for breaks; a `BreaksDone` event with this request id follows; then retry.
    Pending(u64),
}

/// What an open asks for.
#[derive(Clone, Debug, Default)]
pub struct OpenSpec {
    /// `None`: a plain open with no lease.
    pub kind: Option<lease::Kind>,
    pub key: Key,
    pub requested: u8,
    pub version: u8,
    pub epoch: u16,
    pub stat: bool,
    pub write: bool,
    pub overwrite: bool,
    pub dir: bool,
    pub sharing_violation: bool,
    /// A reclaim (NFSv4 CLAIM_PREVIOUS) during the grace period.
    pub reclaim: bool,
    pub file_size: u64,
    pub timeout_ms: u64,
    /// An open re-issued after `BreaksDone` (it also waits for contending leases still breaking).
    pub retry: bool,
    /// v2 leases: the parent directory's lease key.
    pub parent: Option<Key>,
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

    fn count_client(&mut self, o: OwnerIdx, d: i64) {
        let c = &self.owners.get(o).client;
        match self.client_deltas.iter_mut().find(|(k, _)| **k == **c) {
            Some((_, n)) => *n += d,
            None => self.client_deltas.push((c.clone(), d)),
        }
    }

    /// Takes the net lock-count changes per client since the last call.
    pub fn take_counts(&mut self) -> Vec<(Box<[u8]>, i64)> {
        std::mem::take(&mut self.client_deltas)
    }

    pub fn lock_count(&self) -> usize {
        self.locks.len()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.leases.len()
    }

    fn row_of(&self, l: &Lock) -> crate::store::LockRow {
        let e = self.owners.get(l.owner);
        crate::store::LockRow {
            file: self.id.clone(),
            client: e.client.clone(),
            owner: e.owner.clone(),
            open_id: e.open_id,
            flavour: l.flavour as u8,
            kind: l.kind as u8,
            start: l.range.start,
            length: l.range.length_for(l.flavour),
        }
    }

    fn lease_rows(&self) -> Vec<crate::store::LeaseRow> {
        self.leases
            .leases
            .iter()
            .map(|l| crate::store::LeaseRow {
                file: self.id.clone(),
                client: l.client.clone(),
                key: l.key,
                kind: l.kind as u8,
                version: l.version,
                dir: l.dir,
                state: l.state,
                epoch: l.epoch,
                breaking: l.breaking,
                break_to: l.break_to,
            })
            .collect()
    }

    /// Every lock and lease as the store keeps them (cluster mode's grace record).
    pub fn rows(&self) -> (Vec<crate::store::LockRow>, Vec<crate::store::LeaseRow>) {
        (self.locks.iter().map(|(_, l)| self.row_of(l)).collect(), self.lease_rows())
    }

    /// Takes what changed since the last call, for the store.
    pub fn take_journal(&mut self) -> crate::store::Journal {
        let mut j = std::mem::take(&mut self.journal);
        if self.leases_dirty {
            self.leases_dirty = false;
            let rows = self.lease_rows();
            j.leases.push((self.id.clone(), rows));
        }
        j
    }

    /// Grants a lease reclaimed during grace (checked against the pre-restart state by the caller).
    pub fn reclaim_open(&mut self, client: &[u8], open_id: u64, spec: &OpenSpec, state: u8) -> Grant {
        let r = lease::Request {
            client,
            open_id,
            kind: spec.kind.unwrap_or(lease::Kind::Lease),
            key: spec.key,
            requested: state,
            version: spec.version,
            epoch: spec.epoch,
            parent: spec.parent,
            dir: spec.dir,
            stat: spec.stat,
            write: spec.write,
            overwrite: spec.overwrite,
            brl_below_eof: false,
            timeout_ms: spec.timeout_ms,
            proc: self.me,
        };
        let g = Grant { state, epoch: spec.epoch, breaking: false, version: spec.version, parent: spec.parent };
        self.leases.attach(&r, &g);
        self.leases_dirty = self.persist;
        g
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
        self.owners.claim(owner, self.me);
        // Every element changes only this owner's locks: a snapshot of them is the whole undo.
        let mut before: Vec<Lock> = Vec::new();
        self.locks.of_owner(owner).for_each(|id| before.push(*self.locks.get(id)));
        for (i, (kind, range)) in elems.iter().enumerate() {
            let decision = match flavour {
                Flavour::Posix => core::posix::lock(&self.locks, owner, *kind, range),
                Flavour::Windows => core::windows::lock(&self.locks, owner, *kind, range),
            };
            match decision {
                Ok(c) => {
                    self.commit(&c);
                }
                Err(d) => {
                    let err = self.refusal(d);
                    let mut back = Changes::default();
                    self.locks.of_owner(owner).for_each(|id| back.removed.push(id));
                    back.added.extend(before.into_iter().map(|l| core::NewLock {
                        owner: l.owner,
                        flavour: l.flavour,
                        kind: l.kind,
                        range: l.range,
                    }));
                    self.commit(&back);
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

    fn key_of(&self, owner: OwnerIdx) -> OwnerKey {
        let e = self.owners.get(owner);
        owner_key(e.flavour, &e.client, &e.owner, e.open_id)
    }

    fn blocker_keys(&self, earlier: usize, w: &Waiter) -> Vec<OwnerKey> {
        wait::blocking_owners(&self.locks, &self.waiters[..earlier], w.owner, w.flavour, w.kind, &w.range)
            .into_iter()
            .map(|o| self.key_of(o))
            .collect()
    }

    /// The wait-for edges of this file's waiting requests: (request id, waiting owner, the owners it
    /// waits for). Shared mode rebuilds the whole graph from every file before a blocking request.
    /// Request ids are per process: the id of another process's request is mixed with its process, so
    /// two processes' requests on one file never share an edge set (one would replace the other).
    pub fn wait_edges(&self) -> Vec<(u64, OwnerKey, Vec<OwnerKey>)> {
        (0..self.waiters.len())
            .map(|i| {
                let (id, proc) = (self.waiters[i].id, self.meta[i].proc);
                let id = if proc == self.me { id } else { (id ^ proc.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1 << 63 };
                (id, self.meta[i].key.clone(), self.blocker_keys(i, &self.waiters[i]))
            })
            .collect()
    }

    /// A blocking request (SPEC.md §3): granted now if neither a held lock nor an earlier waiter
    /// conflicts; otherwise queued (after a deadlock check over the whole wait-for graph).
    #[allow(clippy::too_many_arguments)]
    pub fn lock_blocking(
        &mut self,
        ctx: &Ctx,
        id: u64,
        o: &OwnerRef,
        req: &LockReq,
        range: &Range,
        token: u64,
        user_data: usize,
    ) -> Result<Queued> {
        let owner = self.owners.intern(req.flavour, o);
        self.owners.claim(owner, self.me);
        // Idempotent only for the same request (owner, flavour, type, range) with the same token; the
        // token with anything else is a new request.
        let same = |w: &Waiter| w.owner == owner && w.kind == req.kind && w.range == *range;
        if let Some(i) = self.waiters.iter().zip(&self.meta).position(|(w, m)| same(w) && m.token == token) {
            return Ok(Queued::Pending(self.waiters[i].id, None));
        }
        let this = GrantedReq { owner, token, kind: req.kind, range: *range };
        if self.granted.contains(&this) {
            return Ok(Queued::Granted);
        }
        let w = Waiter { id, owner, flavour: req.flavour, kind: req.kind, range: *range };
        match wait::blocked_by(&self.locks, &self.waiters, owner, w.flavour, w.kind, range) {
            None => {
                self.lock(o, req.flavour, req.kind, range)?;
                self.granted.push(this);
                Ok(Queued::Granted)
            }
            Some(b) => {
                let key = self.key_of(owner);
                let blockers = self.blocker_keys(self.waiters.len(), &w);
                {
                    let mut g = ctx.graph.lock();
                    if g.would_deadlock(&key, &blockers) {
                        return Err(Error::Deadlock);
                    }
                    g.set(id, key.clone(), blockers);
                }
                ctx.requests.map.lock().insert(id, ReqState::Waiting { file: self.id.clone() });
                let holder = match b {
                    wait::Blocker::Held(l) => Some(self.holder(l)),
                    wait::Blocker::Queued(_) => None,
                };
                self.owners.add_refs(owner, 1);
                self.waiters.push(w);
                self.meta.push(WaitMeta {
                    since: ctx.events.now_ms(),
                    proc: self.me,
                    token,
                    user_data,
                    key,
                    offset: req.offset,
                    length: req.length,
                });
                Ok(Queued::Pending(id, holder))
            }
        }
    }

    /// A one-shot watch: an event when a lock of this file is next released or shrunk.
    pub fn watch(&mut self, ctx: &Ctx, id: u64, token: u64, user_data: usize) {
        ctx.requests.map.lock().insert(id, ReqState::Waiting { file: self.id.clone() });
        self.watchers.push(Watch { id, token, user_data, proc: self.me });
    }

    fn event_for(&self, i: usize, result: Result<()>) -> Event {
        let (w, m) = (&self.waiters[i], &self.meta[i]);
        let e = self.owners.get(w.owner);
        Event {
            kind: EventKind::LockDone,
            result,
            request_id: w.id,
            token: m.token,
            user_data: m.user_data,
            file: self.id.clone(),
            client: e.client.to_vec(),
            owner: e.owner.to_vec(),
            open_id: e.open_id,
            flavour: w.flavour,
            lock_kind: w.kind,
            offset: m.offset,
            length: m.length,
            lease: Default::default(),
            proc: m.proc,
        }
    }

    fn take_waiter(&mut self, i: usize) -> (Waiter, WaitMeta) {
        let w = self.waiters.remove(i);
        let m = self.meta.remove(i);
        self.owners.add_refs(w.owner, -1);
        // Removing a waiter can unblock those queued behind it.
        self.dirty = true;
        (w, m)
    }

    /// After locks were removed: grants, in arrival order, every waiter that can now proceed, fires the
    /// watches, and refreshes the wait-for edges of those still waiting.
    #[inline]
    pub fn settle(&mut self, ctx: &Ctx) {
        if self.dirty {
            self.settle_dirty(ctx);
        }
    }

    fn settle_dirty(&mut self, ctx: &Ctx) {
        self.dirty = false;
        if self.released && !self.watchers.is_empty() {
            for wt in std::mem::take(&mut self.watchers) {
                ctx.complete(Event {
                    kind: EventKind::Watch,
                    result: Ok(()),
                    request_id: wt.id,
                    token: wt.token,
                    user_data: wt.user_data,
                    file: self.id.clone(),
                    client: Vec::new(),
                    owner: Vec::new(),
                    open_id: 0,
                    flavour: Flavour::Posix,
                    lock_kind: LockType::Shared,
                    offset: 0,
                    length: 0,
                    lease: Default::default(),
                    proc: wt.proc,
                });
            }
        }
        self.released = false;
        let mut i = 0;
        while i < self.waiters.len() {
            let w = &self.waiters[i];
            if wait::blocked_by(&self.locks, &self.waiters[..i], w.owner, w.flavour, w.kind, &w.range).is_some() {
                i += 1;
                continue;
            }
            let decision = match w.flavour {
                Flavour::Posix => core::posix::lock(&self.locks, w.owner, w.kind, &w.range),
                Flavour::Windows => core::windows::lock(&self.locks, w.owner, w.kind, &w.range),
            };
            let changes = decision.expect("no held lock conflicts with a waiter found unblocked");
            let ev = self.event_for(i, Ok(()));
            let (owner, kind, range) = (w.owner, w.kind, w.range);
            self.commit(&changes);
            let (_, m) = self.take_waiter(i);
            self.granted.push(GrantedReq { owner, token: m.token, kind, range });
            ctx.metrics.waited(ctx.events.now_ms().saturating_sub(m.since));
            ctx.complete(ev);
            // A grant that replaced locks (a POSIX downgrade) may unblock earlier waiters: look again
            // from the front. Each pass grants one waiter, so this ends.
            if !changes.removed.is_empty() {
                i = 0;
            }
        }
        self.dirty = false;
        if !self.waiters.is_empty() {
            let edges: Vec<(u64, OwnerKey, Vec<OwnerKey>)> = (0..self.waiters.len())
                .map(|i| (self.waiters[i].id, self.meta[i].key.clone(), self.blocker_keys(i, &self.waiters[i])))
                .collect();
            let mut g = ctx.graph.lock();
            for (id, key, blockers) in edges {
                g.set(id, key, blockers);
            }
        }
    }

    /// Removes a waiting request or watch by id (cancel); true if it was here.
    pub fn cancel(&mut self, ctx: &Ctx, id: u64) -> bool {
        // Request ids are per process: in shared mode another process's request may have the same id.
        let me = self.me;
        if let Some(i) = self.waiters.iter().zip(&self.meta).position(|(w, m)| w.id == id && m.proc == me) {
            self.take_waiter(i);
            ctx.forget(id);
            return true;
        }
        if let Some(i) = self.watchers.iter().position(|w| w.id == id && w.proc == me) {
            self.watchers.remove(i);
            ctx.forget(id);
            return true;
        }
        self.cancel_lease_waiter(ctx, id)
    }

    /// Ends a waiting request with an error event (timeout); true if it was here.
    pub fn fail(&mut self, ctx: &Ctx, id: u64, err: Error) -> bool {
        let me = self.me;
        match self.waiters.iter().zip(&self.meta).position(|(w, m)| w.id == id && m.proc == me) {
            Some(i) => {
                let ev = self.event_for(i, Err(err));
                self.take_waiter(i);
                ctx.complete(ev);
                true
            }
            None => false,
        }
    }

    /// Ends every waiting request of `owners`: with an error event (close, client gone) or silently
    /// (`err` None: cancelled by owner). Returns how many ended.
    pub fn end_waiters_of(&mut self, ctx: &Ctx, owners: &[OwnerIdx], err: Option<Error>) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.waiters.len() {
            if !owners.contains(&self.waiters[i].owner) {
                i += 1;
                continue;
            }
            let id = self.waiters[i].id;
            match &err {
                Some(e) => {
                    let ev = self.event_for(i, Err(e.clone()));
                    self.take_waiter(i);
                    ctx.complete(ev);
                }
                None => {
                    self.take_waiter(i);
                    ctx.forget(id);
                }
            }
            n += 1;
        }
        n
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

    /// Every process with something on this file (shared mode's proc index).
    pub fn procs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.owners.live_entries().map(|(_, e)| e.proc).collect();
        v.extend(self.meta.iter().map(|m| m.proc));
        v.extend(self.watchers.iter().map(|w| w.proc));
        v.extend(self.leases.opens.iter().map(|o| o.proc));
        v.extend(self.leases.leases.iter().map(|l| l.proc));
        v.extend(self.lease_waiters.iter().map(|w| w.proc));
        v.sort_unstable();
        v.dedup();
        v.retain(|&p| p != 0);
        v
    }

    /// Encodes the whole state (shared mode).
    pub fn encode(&self) -> Vec<u8> {
        use crate::codec::W;
        let mut w = W(Vec::with_capacity(256));
        w.u8(2); // format version (2: leases carry their parent key, granted requests their type and
                 // range, flavour and lock type their wire encoding)
        let owners: Vec<(OwnerIdx, &crate::owners::OwnerEntry)> = self.owners.live_entries().collect();
        w.u64(owners.len() as u64);
        for (i, e) in &owners {
            w.u64(i.0 as u64);
            w.u8(e.flavour as u8);
            w.bytes(&e.client);
            w.bytes(&e.owner);
            w.u64(e.open_id);
            w.u64(e.proc);
        }
        w.u64(self.locks.len() as u64);
        for (_, l) in self.locks.iter() {
            w.u64(l.owner.0 as u64);
            w.u8(l.kind as u8);
            w.u64(l.range.start);
            w.u128(l.range.end);
        }
        w.u64(self.waiters.len() as u64);
        for (x, m) in self.waiters.iter().zip(&self.meta) {
            w.u64(x.id);
            w.u64(x.owner.0 as u64);
            w.u8(x.kind as u8);
            w.u64(x.range.start);
            w.u128(x.range.end);
            w.u64(m.since);
            w.u64(m.proc);
            w.u64(m.token);
            w.u64(m.user_data as u64);
            w.bytes(&m.key);
            w.u64(m.offset);
            w.u64(m.length);
        }
        w.u64(self.watchers.len() as u64);
        for x in &self.watchers {
            w.u64(x.id);
            w.u64(x.token);
            w.u64(x.user_data as u64);
            w.u64(x.proc);
        }
        w.u64(self.granted.len() as u64);
        for g in &self.granted {
            w.u64(g.owner.0 as u64);
            w.u64(g.token);
            w.u8(g.kind as u8);
            w.u64(g.range.start);
            w.u128(g.range.end);
        }
        w.u64(self.leases.leases.len() as u64);
        for l in &self.leases.leases {
            w.bytes(&l.client);
            w.0.extend_from_slice(&l.key);
            w.u8(l.kind as u8);
            w.u8(l.version);
            match l.parent {
                Some(k) => {
                    w.u8(1);
                    w.0.extend_from_slice(&k);
                }
                None => w.u8(0),
            }
            w.u8(l.dir as u8);
            w.u8(l.state);
            w.u64(l.epoch as u64);
            w.u8(l.breaking as u8);
            w.u8(l.break_to);
            w.u8(l.break_required);
            w.u64(l.deadline);
            w.u64(l.timeout_ms);
            w.u64(l.opens as u64);
            w.u64(l.proc);
        }
        w.u64(self.leases.opens.len() as u64);
        for o in &self.leases.opens {
            w.bytes(&o.client);
            w.u64(o.open_id);
            match o.lease {
                Some(k) => {
                    w.u8(1);
                    w.0.extend_from_slice(&k);
                }
                None => w.u8(0),
            }
            w.u8(o.stat as u8);
            w.u8(o.write as u8);
            w.u64(o.proc);
        }
        w.u64(self.lease_waiters.len() as u64);
        for x in &self.lease_waiters {
            w.u64(x.id);
            w.u64(x.waits.len() as u64);
            for (c, k) in &x.waits {
                w.bytes(c);
                w.0.extend_from_slice(k);
            }
            w.u64(x.token);
            w.u64(x.user_data as u64);
            w.u64(x.proc);
        }
        w.0
    }

    /// Rebuilds a state written by `encode`; `None` if the bytes are malformed.
    pub fn decode(file: &[u8], bytes: &[u8], persist: bool) -> Option<FileState> {
        use crate::codec::R;
        let mut r = R { b: bytes };
        let format = r.u8()?;
        if format != 1 && format != 2 {
            return None;
        }
        let mut fs = FileState::blank(file, persist);
        // Format 1 wrote flavour and lock type as 0/1; format 2 uses their one wire encoding.
        let v1 = format == 1;
        let flav = |v: u8| {
            if v1 {
                Some(if v == 1 { Flavour::Windows } else { Flavour::Posix })
            } else {
                Flavour::try_from(v).ok()
            }
        };
        let kind = |v: u8| {
            if v1 {
                Some(if v == 1 { LockType::Exclusive } else { LockType::Shared })
            } else {
                LockType::try_from(v).ok()
            }
        };
        let mut map: std::collections::HashMap<u64, OwnerIdx> = std::collections::HashMap::new();
        for _ in 0..r.u64()? {
            let old = r.u64()?;
            let f = flav(r.u8()?)?;
            let client = r.bytes()?;
            let owner = r.bytes()?;
            let open_id = r.u64()?;
            let proc = r.u64()?;
            let idx = fs.owners.intern(f, &OwnerRef { client, owner, open_id });
            fs.owners.claim(idx, proc);
            map.insert(old, idx);
        }
        for _ in 0..r.u64()? {
            let owner = *map.get(&r.u64()?)?;
            let k = kind(r.u8()?)?;
            let range = Range::new(r.u64()?, r.u128()?);
            let f = fs.owners.get(owner).flavour;
            fs.owners.add_refs(owner, 1);
            fs.locks.insert(core::NewLock { owner, flavour: f, kind: k, range });
        }
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let owner = *map.get(&r.u64()?)?;
            let k = kind(r.u8()?)?;
            let range = Range::new(r.u64()?, r.u128()?);
            let since = r.u64()?;
            let proc = r.u64()?;
            let token = r.u64()?;
            let user_data = r.u64()? as usize;
            let key = r.bytes()?.into();
            let offset = r.u64()?;
            let length = r.u64()?;
            let f = fs.owners.get(owner).flavour;
            fs.owners.add_refs(owner, 1);
            fs.waiters.push(Waiter { id, owner, flavour: f, kind: k, range });
            fs.meta.push(WaitMeta { since, proc, token, user_data, key, offset, length });
        }
        for _ in 0..r.u64()? {
            fs.watchers.push(Watch { id: r.u64()?, token: r.u64()?, user_data: r.u64()? as usize, proc: r.u64()? });
        }
        for _ in 0..r.u64()? {
            let owner = *map.get(&r.u64()?)?;
            let token = r.u64()?;
            // Version 1 kept only (owner, token): such entries cannot be matched to a whole request
            // and are dropped (a re-submission is then decided as a new request).
            if !v1 {
                let k = kind(r.u8()?)?;
                let range = Range::new(r.u64()?, r.u128()?);
                fs.granted.push(GrantedReq { owner, token, kind: k, range });
            }
        }
        for _ in 0..r.u64()? {
            let client: Box<[u8]> = r.bytes()?.into();
            let key = r.key()?;
            let k = lease::Kind::try_from(r.u8()?).ok()?;
            fs.leases.leases.push(lease::Lease {
                client,
                key,
                kind: k,
                version: r.u8()?,
                parent: if format >= 2 && r.u8()? == 1 { Some(r.key()?) } else { None },
                dir: r.u8()? != 0,
                state: r.u8()?,
                epoch: r.u64()? as u16,
                breaking: r.u8()? != 0,
                break_to: r.u8()?,
                break_required: r.u8()?,
                deadline: r.u64()?,
                timeout_ms: r.u64()?,
                opens: r.u64()? as u32,
                proc: r.u64()?,
            });
        }
        for _ in 0..r.u64()? {
            let client: Box<[u8]> = r.bytes()?.into();
            let open_id = r.u64()?;
            let lease = if r.u8()? == 1 { Some(r.key()?) } else { None };
            fs.leases.opens.push(lease::Open {
                client,
                open_id,
                lease,
                stat: r.u8()? != 0,
                write: r.u8()? != 0,
                proc: r.u64()?,
            });
        }
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let mut waits = Vec::new();
            for _ in 0..r.u64()? {
                waits.push((r.bytes()?.into(), r.key()?));
            }
            fs.lease_waiters.push(LeaseWaiter {
                id,
                waits,
                token: r.u64()?,
                user_data: r.u64()? as usize,
                proc: r.u64()?,
            });
        }
        Some(fs)
    }

    /// The clients with state of process `proc` on this file.
    pub fn clients_of_proc(&self, proc: u64) -> Vec<Box<[u8]>> {
        let mut v: Vec<Box<[u8]>> =
            self.owners.live_entries().filter(|(_, e)| e.proc == proc).map(|(_, e)| e.client.clone()).collect();
        v.extend(self.leases.opens.iter().filter(|o| o.proc == proc).map(|o| o.client.clone()));
        v.sort();
        v.dedup();
        v
    }

    /// Binds the owners and opens of (client, open id) to process `me` (durable reconnect).
    pub fn rebind(&mut self, client: &[u8], open_id: u64, me: u64) -> usize {
        let mut n = self.owners.rebind(client, open_id, me);
        for o in &mut self.leases.opens {
            if *o.client == *client && o.open_id == open_id {
                o.proc = me;
                n += 1;
                if let Some(k) = o.lease {
                    for l in &mut self.leases.leases {
                        if *l.client == *client && l.key == k {
                            l.proc = me;
                        }
                    }
                }
            }
        }
        for (w, m) in self.waiters.iter().zip(self.meta.iter_mut()) {
            let e = self.owners.get(w.owner);
            if *e.client == *client && e.open_id == open_id {
                m.proc = me;
            }
        }
        n
    }

    /// Releases everything a process that is gone held on this file (shared mode): its locks, its
    /// waiting requests and watches, its opens and leases. Returns the number of locks released.
    pub fn drop_proc(&mut self, ctx: &Ctx, proc: u64) -> usize {
        let owners: Vec<OwnerIdx> =
            self.owners.live_entries().filter(|(_, e)| e.proc == proc).map(|(i, _)| i).collect();
        let mut n = 0;
        for owner in &owners {
            let c = core::lockset::release_owner(&self.locks, *owner);
            n += c.removed.len();
            self.commit(&c);
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if self.meta[i].proc == proc {
                let id = self.waiters[i].id;
                self.take_waiter(i);
                ctx.graph.lock().remove(id);
            } else {
                i += 1;
            }
        }
        self.watchers.retain(|w| w.proc != proc);
        self.lease_waiters.retain(|w| w.proc != proc);
        if self.leases.drop_proc(proc) > 0 || self.leases.opens.iter().all(|o| o.proc != proc) {
            self.leases_dirty = self.persist;
        }
        self.settle_leases(ctx);
        self.settle(ctx);
        n
    }

    /// Delivers lease notes as events and arms a timer for every break that needs an ack.
    fn send_notes(&self, ctx: &Ctx, notes: Vec<Note>) {
        for n in notes {
            let (kind, client, key, lkind, from, to, epoch, ack) = match n {
                Note::Break { client, key, kind, from, to, epoch, ack } => {
                    (EventKind::LeaseBreak, client, key, kind, from, to, epoch, ack)
                }
                Note::Revoked { client, key, kind, from, epoch } => {
                    (EventKind::LeaseRevoked, client, key, kind, from, 0, epoch, false)
                }
            };
            let holder_proc = self
                .leases
                .find(&client, &key)
                .map(|i| self.leases.leases[i].proc)
                .unwrap_or_else(|| self.proc_of_client(&client));
            match kind {
                EventKind::LeaseBreak => ctx.metrics.lease_break(),
                _ => {
                    ctx.metrics.break_timeout();
                    ctx.metrics.release(crate::metrics::Release::BreakTimeout, 1);
                }
            }
            if ack {
                if let Some(i) = self.leases.find(&client, &key) {
                    ctx.events.add_timer(self.leases.leases[i].deadline, TimerKind::LeaseBreak(self.id.clone()));
                }
            }
            // An oplock belongs to one open: its events name it. A lease is named by its key alone.
            let open_id = match lkind {
                lease::Kind::Oplock => self
                    .leases
                    .opens
                    .iter()
                    .find(|o| *o.client == *client && o.lease == Some(key))
                    .map(|o| o.open_id)
                    .unwrap_or(0),
                _ => 0,
            };
            ctx.complete(Event {
                kind,
                result: Ok(()),
                request_id: 0,
                token: 0,
                user_data: 0,
                file: self.id.clone(),
                client: client.to_vec(),
                owner: Vec::new(),
                open_id,
                flavour: Flavour::Posix,
                lock_kind: LockType::Shared,
                offset: 0,
                length: 0,
                lease: LeaseInfo { key, kind: Some(lkind), state: from, break_to: to, epoch, ack_required: ack },
                proc: holder_proc,
            });
        }
    }

    /// Completes every lease waiter none of whose breaks is still in progress.
    fn settle_leases(&mut self, ctx: &Ctx) {
        if self.lease_waiters.is_empty() {
            return;
        }
        let leases = &self.leases;
        let (done, keep): (Vec<LeaseWaiter>, Vec<LeaseWaiter>) = std::mem::take(&mut self.lease_waiters)
            .into_iter()
            .partition(|w| w.waits.iter().all(|(c, k)| !leases.is_breaking(c, k)));
        self.lease_waiters = keep;
        for w in done {
            ctx.complete(Event {
                kind: EventKind::BreaksDone,
                result: Ok(()),
                request_id: w.id,
                token: w.token,
                user_data: w.user_data,
                file: self.id.clone(),
                client: Vec::new(),
                owner: Vec::new(),
                open_id: 0,
                flavour: Flavour::Posix,
                lock_kind: LockType::Shared,
                offset: 0,
                length: 0,
                lease: Default::default(),
                proc: w.proc,
            });
        }
    }

    /// The process of a client's opens on this file (for a lease that went with its last open).
    fn proc_of_client(&self, client: &[u8]) -> u64 {
        self.leases.opens.iter().find(|o| *o.client == *client).map(|o| o.proc).unwrap_or(0)
    }

    /// Runs a trigger; `wait` = None means the requester cannot wait (`Busy` if breaks must end first).
    pub fn lease_trigger(
        &mut self,
        ctx: &Ctx,
        req: &Requester,
        trigger: Trigger,
        wait: Option<(u64, u64, usize)>,
    ) -> Result<LeaseAnswer> {
        self.leases_dirty = self.persist;
        let (notes, waits) = self.leases.trigger(req, trigger, ctx.events.now_ms());
        self.send_notes(ctx, notes);
        // The trigger may have pruned a lease that was still being broken: its waiters are done.
        self.settle_leases(ctx);
        if waits.is_empty() {
            return Ok(LeaseAnswer::Ready(Grant { state: 0, epoch: 0, breaking: false, ..Grant::NONE }));
        }
        match wait {
            None => Err(Error::Busy),
            Some((id, token, user_data)) => {
                ctx.requests.map.lock().insert(id, ReqState::Waiting { file: self.id.clone() });
                self.lease_waiters.push(LeaseWaiter { id, waits, token, user_data, proc: self.me });
                Ok(LeaseAnswer::Pending(id))
            }
        }
    }

    /// The byte-range-lock trigger run before every lock: R leases of others go to none at once; a
    /// W holder of another client must flush first, so the lock answers `Busy` meanwhile.
    pub fn brl_trigger(&mut self, ctx: &Ctx, o: &OwnerRef) -> Result<()> {
        if self.leases.leases.is_empty() {
            return Ok(());
        }
        let key =
            self.leases.opens.iter().find(|x| *x.client == *o.client && x.open_id == o.open_id).and_then(|x| x.lease);
        let req = Requester { client: o.client, key: key.as_ref(), retry: false, write: false };
        self.lease_trigger(ctx, &req, Trigger::ByteRangeLock, None).map(|_| ())
    }

    fn brl_below(&self, size: u64) -> bool {
        if size == 0 {
            return false;
        }
        let hit = |t: &crate::core::itree::IntervalTree| t.find(0, size as u128, |_| true).is_some();
        hit(self.locks.exclusive()) || hit(self.locks.shared())
    }

    /// An open (SMB CREATE, NFS OPEN): runs its break trigger, then grants and records it.
    pub fn open_file(
        &mut self,
        ctx: &Ctx,
        client: &[u8],
        open_id: u64,
        spec: &OpenSpec,
        wait: Option<(u64, u64, usize)>,
    ) -> Result<LeaseAnswer> {
        self.leases_dirty = self.persist;
        let trigger = if spec.sharing_violation {
            Some(Trigger::SharingViolation)
        } else if spec.overwrite {
            Some(Trigger::Overwrite)
        } else if spec.stat {
            None
        } else {
            Some(Trigger::Open)
        };
        // Asking for a delegation is only ever a try (it never waits), but the open itself still
        // breaks what any open breaks.
        let wait = if spec.kind == Some(lease::Kind::Delegation) { None } else { wait };
        if let Some(t) = trigger {
            let own_key = if spec.kind == Some(lease::Kind::Lease) { Some(&spec.key) } else { None };
            let req = Requester { client, key: own_key, retry: spec.retry, write: spec.write || spec.overwrite };
            match self.lease_trigger(ctx, &req, t, wait)? {
                LeaseAnswer::Pending(id) => return Ok(LeaseAnswer::Pending(id)),
                LeaseAnswer::Ready(_) => {}
            }
        }
        if spec.sharing_violation {
            // The open failed; only its breaks mattered. Nothing is recorded.
            return Ok(LeaseAnswer::Ready(Grant { state: 0, epoch: spec.epoch, breaking: false, ..Grant::NONE }));
        }
        let r = lease::Request {
            client,
            open_id,
            kind: spec.kind.unwrap_or(lease::Kind::Lease),
            key: spec.key,
            requested: if spec.kind.is_some() { spec.requested } else { 0 },
            version: spec.version,
            epoch: spec.epoch,
            parent: spec.parent,
            dir: spec.dir,
            stat: spec.stat,
            write: spec.write,
            overwrite: spec.overwrite,
            brl_below_eof: self.brl_below(spec.file_size),
            timeout_ms: spec.timeout_ms,
            proc: self.me,
        };
        let g = self.leases.grant(&r);
        if spec.kind.is_none() {
            // A plain open holds no lease, whatever key bytes came with it.
            let mut r = r;
            r.key = [0xFF; 16];
            r.requested = 0;
            self.leases.attach(&r, &Grant { state: 0, epoch: 0, breaking: false, ..Grant::NONE });
            return Ok(LeaseAnswer::Ready(Grant { state: 0, epoch: 0, breaking: false, ..Grant::NONE }));
        }
        self.leases.attach(&r, &g);
        // Attaching may have changed a lease that others wait on (a same-key open): settle them.
        self.settle_leases(ctx);
        Ok(LeaseAnswer::Ready(g))
    }

    /// Closes an open; its lease goes with its last open, and waiters for it may proceed.
    pub fn close_file(&mut self, ctx: &Ctx, client: &[u8], open_id: u64) -> Result<()> {
        self.leases_dirty = self.persist;
        if !self.leases.close(client, open_id) {
            return Err(Error::NotFound);
        }
        self.settle_leases(ctx);
        Ok(())
    }

    /// Acknowledges a lease break.
    pub fn lease_ack(&mut self, ctx: &Ctx, client: &[u8], key: &Key, state: u8) -> Result<()> {
        self.leases_dirty = self.persist;
        let notes = self.leases.ack(client, key, state, ctx.events.now_ms()).map_err(|e| match e {
            lease::AckError::NotFound => Error::NotFound,
            lease::AckError::NoBreak => Error::NoBreak,
            lease::AckError::BadAck => Error::BadAck,
        })?;
        self.send_notes(ctx, notes);
        self.settle_leases(ctx);
        Ok(())
    }

    /// Gives a lease back (DELEGRETURN, `F_SETLEASE` to none).
    pub fn lease_release(&mut self, ctx: &Ctx, client: &[u8], key: &Key) -> Result<()> {
        self.leases_dirty = self.persist;
        if !self.leases.release(client, key) {
            return Err(Error::NotFound);
        }
        self.settle_leases(ctx);
        Ok(())
    }

    /// Enforces break timeouts due at `now`.
    pub fn expire_leases(&mut self, ctx: &Ctx) {
        self.leases_dirty = self.persist;
        let notes = self.leases.expire(ctx.events.now_ms());
        self.send_notes(ctx, notes);
        // Also when nothing expired now: a wait whose lease went some other way ends here at the latest.
        self.settle_leases(ctx);
    }

    /// Cancels a lease waiter by id; true if it was here.
    fn cancel_lease_waiter(&mut self, ctx: &Ctx, id: u64) -> bool {
        let me = self.me;
        match self.lease_waiters.iter().position(|w| w.id == id && w.proc == me) {
            Some(i) => {
                self.lease_waiters.remove(i);
                ctx.forget(id);
                true
            }
            None => false,
        }
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

pub use crate::backend::memory::Table;
