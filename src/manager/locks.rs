//! Byte-range lock calls of the facade: argument checks, the grace gate and limits, then one
//! operation on the file's state through its table or backend.

use super::*;
use crate::core::grace::Gate;

impl Manager {
    /// Refuses a new lock when the client's or the total limit is already reached.
    pub(super) fn check_limits(&self, client: &[u8]) -> Result<()> {
        let total = self.total_locks.load(Ordering::Relaxed);
        let r = self.limits.check_new(total, || self.client_locks.lock().get(client).copied().unwrap_or(0));
        r.map_err(|l| self.limit_error(l))
    }

    /// The per-file limit, checked under the file's lock.
    pub(super) fn check_file_limit(&self, fs: &crate::table::FileState) -> Result<()> {
        self.limits.check_file(fs.lock_count()).map_err(|l| self.limit_error(l))
    }

    fn limit_error(&self, l: crate::core::limits::Limit) -> Error {
        use crate::core::limits::Limit;
        use crate::metrics::LimitKind;
        let k = match l {
            Limit::File => LimitKind::File,
            Limit::Client => LimitKind::Client,
            Limit::Total => LimitKind::Total,
        };
        self.metrics.limit(k);
        Error::Limit(k)
    }

    pub(super) fn count_acquire(&self, req: &LockReq, r: &Result<()>) {
        use crate::metrics::Outcome as O;
        let o = match r {
            Ok(()) => O::Granted,
            Err(Error::Conflict(_)) => O::Conflict,
            Err(Error::Grace) => O::Grace,
            Err(Error::Limit(_)) => O::Limit,
            Err(Error::Deadlock) => O::Deadlock,
            Err(_) => O::Other,
        };
        self.metrics.acquire(req.flavour == Flavour::Posix, req.kind == LockType::Exclusive, o);
    }

    /// The grace gate of a lock request (SPEC.md §5).
    pub(super) fn gate_lock(
        &self,
        file: &[u8],
        o: &OwnerRef,
        req: &LockReq,
        range: &Range,
        flags: LockFlags,
    ) -> Result<()> {
        // The mirror of `grace.active` keeps the lock path off the grace mutex outside grace.
        if !self.grace_active.load(Ordering::Acquire) && !flags.reclaim {
            return Ok(());
        }
        let r = self.grace.lock().gate_lock(
            flags.reclaim,
            file,
            o.client,
            o.owner,
            o.open_id,
            req.flavour,
            req.kind,
            range,
        );
        if flags.reclaim && !matches!(r, Err(Gate::NoGrace)) {
            self.metrics.reclaim(r.is_ok());
        }
        r.map_err(gate_error)
    }

    /// A blocking lock request (SPEC.md §3): `Queued::Granted`, or `Queued::Pending(id, holder)` and a
    /// completion event later. Re-submitting the same request with the same token is idempotent; the token
    /// with another request is a new request.
    pub fn lock_blocking(&self, file: &[u8], o: &OwnerRef, req: &LockReq, wait: &WaitSpec) -> Result<Queued> {
        self.lock_blocking_with(file, o, req, wait, LockFlags::default())
    }

    /// `lock_blocking` with per-call flags (reclaim).
    pub fn lock_blocking_with(
        &self,
        file: &[u8],
        o: &OwnerRef,
        req: &LockReq,
        wait: &WaitSpec,
        flags: LockFlags,
    ) -> Result<Queued> {
        let r = self.lock_blocking_inner(file, o, req, wait, flags);
        use crate::metrics::Outcome as O;
        let outcome = match &r {
            Ok(Queued::Granted) => O::Granted,
            Ok(Queued::Pending(..)) => O::Pending,
            Err(Error::Conflict(_)) => O::Conflict,
            Err(Error::Deadlock) => O::Deadlock,
            Err(Error::Grace) => O::Grace,
            Err(Error::Limit(_)) => O::Limit,
            Err(_) => O::Other,
        };
        self.metrics.acquire(req.flavour == Flavour::Posix, req.kind == LockType::Exclusive, outcome);
        r
    }

    pub(super) fn lock_blocking_inner(
        &self,
        file: &[u8],
        o: &OwnerRef,
        req: &LockReq,
        wait: &WaitSpec,
        flags: LockFlags,
    ) -> Result<Queued> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = req.range()?;
        self.gate_lock(file, o, req, &range, flags)?;
        self.check_limits(o.client)?;
        self.ensure_client(o.client)?;
        let id = self.driver.next_id.fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx();
        // A shared backend: the deadlock check must see every participant's waits, read with the file.
        let r = self.file_g(file, true, self.shared.is_some(), |fs| {
            let fs = fs.unwrap();
            self.check_file_limit(fs)?;
            fs.brl_trigger(&ctx, o)?;
            let r = fs.lock_blocking(&ctx, id, o, req, &range, wait.token, wait.user_data);
            // Granted at once, a POSIX downgrade removes locks and may let waiters in (as `lock`).
            fs.settle(&ctx);
            r
        });
        match &r {
            Ok(Queued::Pending(pid, _)) if *pid == id && wait.timeout_ms > 0 => {
                // Saturating: a timeout of UINT64_MAX is a wait without end (its deadline never comes).
                self.driver.arm_request_timeout(id, self.driver.events.now_ms().saturating_add(wait.timeout_ms));
            }
            Err(Error::Deadlock) => {
                self.deadlocks.fetch_add(1, Ordering::Relaxed);
                log::debug!("blocking request refused: deadlock");
            }
            _ => {}
        }
        r
    }

    /// A one-shot watch of a file's locks; returns the request id of the watch.
    pub fn watch(&self, file: &[u8], token: u64, user_data: usize) -> Result<u64> {
        check_file_id(file)?;
        let id = self.driver.next_id.fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx();
        self.try_file(file, true, |fs| fs.unwrap().watch(&ctx, id, token, user_data))?;
        Ok(id)
    }

    /// Cancels a request by id (race-safe; see `requests`).
    pub fn cancel(&self, id: u64) -> Result<CancelOutcome> {
        let me = std::thread::current().id();
        let ctx = self.ctx();
        loop {
            let mut map = self.driver.requests.map.lock();
            match map.get(&id) {
                None => return Err(Error::NotFound),
                Some(ReqState::Completed(outcome)) => {
                    let o = *outcome;
                    map.remove(&id);
                    drop(map);
                    self.driver.end_request_timer(id);
                    return Ok(match o {
                        Outcome::Granted => CancelOutcome::AlreadyGranted,
                        Outcome::Ended => CancelOutcome::AlreadyEnded,
                    });
                }
                Some(ReqState::Delivering(t)) => {
                    if *t == me {
                        return Err(Error::NotFound);
                    }
                    self.driver.requests.delivered.wait(&mut map);
                }
                Some(ReqState::Waiting { file }) => {
                    let file = file.clone();
                    drop(map);
                    let done = self.try_file(&file, false, |fs| match fs {
                        Some(fs) => {
                            let hit = fs.cancel(&ctx, id);
                            if hit {
                                fs.settle(&ctx);
                            }
                            hit
                        }
                        None => false,
                    })?;
                    if done {
                        self.driver.end_request_timer(id);
                        return Ok(CancelOutcome::Cancelled);
                    }
                    // Decided meanwhile (the state is now Completed, or in shared mode waiting in
                    // this process's mailbox): look again.
                    if let Some(sh) = &self.shared {
                        match sh.take_mail() {
                            Ok(evs) => self.accept_mail(evs),
                            Err(e) => return Err(e),
                        }
                        if matches!(self.driver.requests.map.lock().get(&id), Some(ReqState::Waiting { .. })) {
                            // Not in the file and not in the mailbox: the request is gone.
                            self.driver.requests.map.lock().remove(&id);
                            return Err(Error::NotFound);
                        }
                    }
                }
            }
        }
    }

    /// Cancels every waiting request of an open (its Windows and POSIX owners) on a file; no events are
    /// delivered for them. Returns how many were cancelled.
    pub fn cancel_owner(&self, file: &[u8], o: &OwnerRef) -> Result<usize> {
        check_file_id(file)?;
        check_owner(o)?;
        let ctx = self.ctx();
        self.try_file(file, false, |fs| match fs {
            Some(fs) => {
                let owners = fs.owners_of_open(o);
                let n = fs.end_waiters_of(&ctx, &owners, None);
                fs.settle(&ctx);
                n
            }
            None => 0,
        })
    }

    pub fn lock(&self, file: &[u8], o: &OwnerRef, req: &LockReq) -> Result<()> {
        self.lock_with(file, o, req, LockFlags::default())
    }

    /// `lock` with per-call flags (reclaim).
    pub fn lock_with(&self, file: &[u8], o: &OwnerRef, req: &LockReq, flags: LockFlags) -> Result<()> {
        let mut r = self.lock_inner(file, o, req, flags);
        // Shared mode: a conflicting holder may be a process that died (Samba's serverid_exists
        // check at conflict time): clean up and decide again.
        if matches!(r, Err(Error::Conflict(_))) && self.shared.is_some() && self.reap_dead() > 0 {
            r = self.lock_inner(file, o, req, flags);
        }
        self.count_acquire(req, &r);
        r
    }

    pub(super) fn lock_inner(&self, file: &[u8], o: &OwnerRef, req: &LockReq, flags: LockFlags) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = req.range()?;
        self.gate_lock(file, o, req, &range, flags)?;
        self.check_limits(o.client)?;
        self.ensure_client(o.client)?;
        let ctx = self.ctx();
        self.file(file, true, |fs| {
            let fs = fs.unwrap();
            self.check_file_limit(fs)?;
            fs.brl_trigger(&ctx, o)?;
            let r = fs.lock(o, req.flavour, req.kind, &range);
            // A POSIX downgrade removes locks and may let waiters in.
            fs.settle(&ctx);
            r
        })
    }

    pub fn unlock(&self, file: &[u8], o: &OwnerRef, flavour: Flavour, offset: u64, length: u64) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = Range::from_request(flavour, offset, length).map_err(|_| Error::InvalidRange)?;
        let ctx = self.ctx();
        self.file(file, false, |fs| match fs {
            Some(fs) => {
                let before = fs.lock_count();
                let r = fs.unlock(o, flavour, &range);
                // A POSIX unlock may split one lock in two: count locks that went, never negative.
                self.metrics.release(
                    crate::metrics::Release::Explicit,
                    before.saturating_sub(fs.lock_count()).max(r.is_ok() as usize) as u64,
                );
                fs.settle(&ctx);
                r
            }
            None if flavour == Flavour::Posix => Ok(()),
            None => Err(Error::RangeNotLocked),
        })
    }

    /// `Ok(None)`: the request would be granted; `Ok(Some(holder))`: it would be refused by `holder`.
    pub fn test(&self, file: &[u8], o: &OwnerRef, req: &LockReq) -> Result<Option<Holder>> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = req.range()?;
        self.try_file(file, false, |fs| fs.and_then(|fs| fs.test(o, req.flavour, req.kind, &range)))
    }

    /// All elements or none; on failure, the index of the element that failed.
    pub fn lock_many(&self, file: &[u8], o: &OwnerRef, reqs: &[LockReq]) -> std::result::Result<(), (usize, Error)> {
        self.lock_many_with(file, o, reqs, LockFlags::default())
    }

    /// `lock_many` with per-call flags (reclaim applies to every element).
    pub fn lock_many_with(
        &self,
        file: &[u8],
        o: &OwnerRef,
        reqs: &[LockReq],
        flags: LockFlags,
    ) -> std::result::Result<(), (usize, Error)> {
        check_file_id(file).map_err(|e| (0, e))?;
        check_owner(o).map_err(|e| (0, e))?;
        let flavour = match reqs.first() {
            Some(r) => r.flavour,
            None => return Err((0, Error::Invalid("no lock elements"))),
        };
        let mut elems = Vec::with_capacity(reqs.len());
        for (i, r) in reqs.iter().enumerate() {
            if r.flavour != flavour {
                return Err((i, Error::Invalid("all elements must have one flavour")));
            }
            elems.push((r.kind, r.range().map_err(|e| (i, e))?));
        }
        for (i, (r, (_, range))) in reqs.iter().zip(&elems).enumerate() {
            self.gate_lock(file, o, r, range, flags).map_err(|e| (i, e))?;
        }
        self.check_limits(o.client).map_err(|e| (0, e))?;
        self.ensure_client(o.client).map_err(|e| (0, e))?;
        let ctx = self.ctx();
        self.file(file, true, |fs| {
            let fs = fs.unwrap();
            self.check_file_limit(fs).map_err(|e| (0, e))?;
            fs.brl_trigger(&ctx, o).map_err(|e| (0, e))?;
            let r = fs.lock_many(o, flavour, &elems);
            fs.settle(&ctx);
            r
        })
    }

    /// Unlocks in order, stopping at the first error (whose index is returned).
    pub fn unlock_many(&self, file: &[u8], o: &OwnerRef, reqs: &[LockReq]) -> std::result::Result<(), (usize, Error)> {
        check_file_id(file).map_err(|e| (0, e))?;
        check_owner(o).map_err(|e| (0, e))?;
        if reqs.is_empty() {
            return Err((0, Error::Invalid("no lock elements")));
        }
        for (i, r) in reqs.iter().enumerate() {
            self.unlock(file, o, r.flavour, r.offset, r.length).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    pub fn check_io(&self, file: &[u8], o: &OwnerRef, access: Access, offset: u64, length: u64) -> Result<()> {
        check_file_id(file)?;
        check_owner(o)?;
        let range = Range::from_request(Flavour::Windows, offset, length).map_err(|_| Error::InvalidRange)?;
        self.file(file, false, |fs| match fs {
            Some(fs) => fs.check_io(o, access, &range),
            None => Ok(()),
        })
    }

    pub fn release_open(&self, file: &[u8], o: &OwnerRef) -> Result<usize> {
        check_file_id(file)?;
        check_owner(o)?;
        let ctx = self.ctx();
        self.try_file(file, false, |fs| match fs {
            Some(fs) => {
                // Waiting requests of the open end as Samba answers a close: RANGE_NOT_LOCKED.
                let owners = fs.owners_of_open(o);
                fs.end_waiters_of(&ctx, &owners, Some(Error::RangeNotLocked));
                let n = fs.release_open(o);
                self.metrics.release(crate::metrics::Release::Close, n as u64);
                fs.settle(&ctx);
                n
            }
            None => 0,
        })
    }

    pub fn list(&self, file: &[u8]) -> Result<Vec<Holder>> {
        check_file_id(file)?;
        self.try_file(file, false, |fs| fs.map(|fs| fs.list()).unwrap_or_default())
    }
}

/// The status of a grace-gate refusal.
pub(super) fn gate_error(g: Gate) -> Error {
    match g {
        Gate::Grace => Error::Grace,
        Gate::NoGrace => Error::NoGrace,
        Gate::ReclaimDenied => Error::ReclaimDenied,
    }
}
