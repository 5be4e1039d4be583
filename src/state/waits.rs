//! Blocking requests and watches of one file: queueing (with token idempotency and the deadlock
//! check), the waiter grant loop, cancel, timeouts, and the wait-for edges.

use super::FileState;
use super::LockReq;
use crate::core::file::{self, GrantedReq, Resubmit};
use crate::core::wait::{self, Waiter};
use crate::core::{Flavour, LockType, OwnerIdx, Range};
use crate::error::{Error, Holder, Result};
use crate::owners::OwnerRef;
use crate::requests::{owner_key, Ctx, Event, EventKind, OwnerKey, ReqState};

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

impl FileState {
    pub(super) fn key_of(&self, owner: OwnerIdx) -> OwnerKey {
        let e = self.owners.get(owner);
        owner_key(e.flavour, &e.client, &e.owner, e.open_id)
    }

    pub(super) fn blocker_keys(&self, earlier: usize, w: &Waiter) -> Vec<OwnerKey> {
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
        // Idempotent only for the same request (owner, flavour, type, range) with the same token.
        let this = GrantedReq { owner, token, kind: req.kind, range: *range };
        match file::resubmission(&self.waiters, self.meta.iter().map(|m| m.token), &self.granted, &this) {
            Resubmit::Waiting(i) => return Ok(Queued::Pending(self.waiters[i].id, None)),
            Resubmit::Granted => return Ok(Queued::Granted),
            Resubmit::New => {}
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

    pub(super) fn take_waiter(&mut self, i: usize) -> (Waiter, WaitMeta) {
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
        // Nothing queued (every uncontended unlock): nothing to grant, no edges to refresh.
        if !self.waiters.is_empty() {
            self.grant_waiters(ctx);
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

    /// The waiter grant loop: the core picks each grant (arrival order; from the front again after a
    /// downgrade); this applies it and delivers the waiter's event.
    fn grant_waiters(&mut self, ctx: &Ctx) {
        let mut from = 0;
        while let Some(g) = file::next_grant(&self.locks, &self.waiters, from) {
            let i = g.index;
            let ev = self.event_for(i, Ok(()));
            self.commit(&g.changes);
            let (w, m) = self.take_waiter(i);
            self.granted.push(GrantedReq { owner: w.owner, token: m.token, kind: w.kind, range: w.range });
            ctx.metrics.waited(ctx.events.now_ms().saturating_sub(m.since));
            ctx.complete(ev);
            from = g.next_from;
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
}
