//! Opens, leases, oplocks and delegations of one file, and the requests waiting for their breaks.

use super::FileState;
use crate::core::file::{self, Effect, TriggerOutcome};
use crate::core::lease::{self, Grant, Key, Note, Requester, Trigger};
use crate::core::{Flavour, LockType};
use crate::error::{Error, Result};
use crate::events::TimerKind;
use crate::owners::OwnerRef;
use crate::requests::LeaseInfo;
use crate::requests::{Ctx, Event, EventKind, ReqState};

/// A requester waiting for breaks (SPEC.md §4: completes when no break it waits on is in progress).
#[derive(Debug)]
pub(super) struct LeaseWaiter {
    pub(super) id: u64,
    pub(super) waits: Vec<(Box<[u8]>, Key)>,
    pub(super) token: u64,
    pub(super) user_data: usize,
    pub(super) proc: u64,
}

/// The answer to an open or a trigger that may have to wait for breaks.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseAnswer {
    /// Proceed (for an open: with this grant).
    Ready(Grant),
    /// Waiting for breaks; a `BreaksDone` event with this request id follows; then retry.
    Pending(u64),
}

/// What an open asks for (the type is the core's: `core::file` decides how an open runs).
pub use crate::core::file::OpenSpec;

impl FileState {
    /// Grants a lease reclaimed during grace (checked against the pre-restart state by the caller).
    pub fn reclaim_open(&mut self, client: &[u8], open_id: u64, spec: &OpenSpec, state: u8) -> Grant {
        let (r, g) = file::reclaim_request(spec, client, open_id, state, self.me);
        self.leases.attach(&r, &g);
        self.leases_dirty = self.persist;
        g
    }

    /// Delivers lease notes as events and arms a timer for every break that needs an ack: the core
    /// says to whom and which timers (`file::note_effects`); this applies it.
    pub(super) fn send_notes(&self, ctx: &Ctx, notes: Vec<Note>) {
        if notes.is_empty() {
            return;
        }
        for effect in file::note_effects(&self.leases, notes) {
            let (note, proc, open_id) = match effect {
                Effect::ArmBreakTimer { at } => {
                    ctx.events.add_timer(at, TimerKind::LeaseBreak(self.id.clone()));
                    continue;
                }
                Effect::Notify { note, proc, open_id } => (note, proc, open_id),
            };
            let (kind, client, key, lkind, from, to, epoch, ack) = match note {
                Note::Break { client, key, kind, from, to, epoch, ack } => {
                    (EventKind::LeaseBreak, client, key, kind, from, to, epoch, ack)
                }
                Note::Revoked { client, key, kind, from, epoch } => {
                    (EventKind::LeaseRevoked, client, key, kind, from, 0, epoch, false)
                }
            };
            match kind {
                EventKind::LeaseBreak => ctx.metrics.lease_break(),
                _ => {
                    ctx.metrics.break_timeout();
                    ctx.metrics.release(crate::metrics::Release::BreakTimeout, 1);
                }
            }
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
                proc,
            });
        }
    }

    /// Completes every lease waiter none of whose breaks is still in progress.
    pub(super) fn settle_leases(&mut self, ctx: &Ctx) {
        if self.lease_waiters.is_empty() {
            return;
        }
        let leases = &self.leases;
        let (done, keep): (Vec<LeaseWaiter>, Vec<LeaseWaiter>) =
            std::mem::take(&mut self.lease_waiters).into_iter().partition(|w| file::breaks_done(leases, &w.waits));
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

    /// Runs a trigger; `wait` = None means the requester cannot wait (`Busy` if breaks must end first).
    pub fn lease_trigger(
        &mut self,
        ctx: &Ctx,
        req: &Requester,
        trigger: Trigger,
        wait: Option<(u64, u64, usize)>,
    ) -> Result<LeaseAnswer> {
        // A trigger only breaks leases: on a file with none, the lease set stays as it is (and
        // is not written again: every lock would otherwise rewrite the file's empty lease set).
        if !self.leases.leases.is_empty() {
            self.leases_dirty = self.persist;
        }
        let (notes, waits) = self.leases.trigger(req, trigger, ctx.events.now_ms());
        self.send_notes(ctx, notes);
        // The trigger may have pruned a lease that was still being broken: its waiters are done.
        self.settle_leases(ctx);
        match (file::trigger_outcome(waits.len(), wait.is_some()), wait) {
            (TriggerOutcome::Ready, _) => Ok(LeaseAnswer::Ready(Grant::NONE)),
            (TriggerOutcome::Wait, Some((id, token, user_data))) => {
                ctx.requests.map.lock().insert(id, ReqState::Waiting { file: self.id.clone() });
                self.lease_waiters.push(LeaseWaiter { id, waits, token, user_data, proc: self.me });
                Ok(LeaseAnswer::Pending(id))
            }
            _ => Err(Error::Busy),
        }
    }

    /// The byte-range-lock trigger run before every lock: R leases of others go to none at once; a
    /// W holder of another client must flush first, so the lock answers `Busy` meanwhile.
    pub fn brl_trigger(&mut self, ctx: &Ctx, o: &OwnerRef) -> Result<()> {
        if self.leases.leases.is_empty() {
            return Ok(());
        }
        let key = file::open_lease_key(&self.leases, o.client, o.open_id);
        let req = Requester { client: o.client, key: key.as_ref(), retry: false, write: false };
        self.lease_trigger(ctx, &req, Trigger::ByteRangeLock, None).map(|_| ())
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
        let plan = file::open_plan(spec);
        let wait = if plan.may_wait { wait } else { None };
        if let Some(t) = plan.trigger {
            let own_key = if plan.own_key { Some(&spec.key) } else { None };
            let req = Requester { client, key: own_key, retry: spec.retry, write: plan.write };
            match self.lease_trigger(ctx, &req, t, wait)? {
                LeaseAnswer::Pending(id) => return Ok(LeaseAnswer::Pending(id)),
                LeaseAnswer::Ready(_) => {}
            }
        }
        if !plan.records {
            // The open failed; only its breaks mattered. Nothing is recorded.
            return Ok(LeaseAnswer::Ready(Grant { state: 0, epoch: spec.epoch, breaking: false, ..Grant::NONE }));
        }
        let r = file::open_request(spec, client, open_id, file::brl_below_eof(&self.locks, spec.file_size), self.me);
        let g = self.leases.grant(&r);
        if spec.kind.is_none() {
            let (r, none) = file::plain_open(&r);
            self.leases.attach(&r, &none);
            return Ok(LeaseAnswer::Ready(none));
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
        // Only leases expire: a file with none keeps its (empty) set, which is not written again.
        if !self.leases.leases.is_empty() {
            self.leases_dirty = self.persist;
        }
        let notes = self.leases.expire(ctx.events.now_ms());
        self.send_notes(ctx, notes);
        // Also when nothing expired now: a wait whose lease went some other way ends here at the latest.
        self.settle_leases(ctx);
    }

    /// Cancels a lease waiter by id; true if it was here.
    pub(super) fn cancel_lease_waiter(&mut self, ctx: &Ctx, id: u64) -> bool {
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
}
