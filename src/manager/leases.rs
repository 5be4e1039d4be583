//! Open, lease, oplock and delegation calls of the facade (SPEC.md §4): argument checks, the grace
//! gate and the lease-key map, then one operation on the file's state.

use super::*;

impl Manager {
    /// An open with an optional lease, oplock or delegation request (SPEC.md §4). `wait`: the
    /// requester can wait for breaks (an SMB open) — `Pending` then a `BreaksDone` event, after which
    /// it retries; `None`: it cannot (NFSv4) — `Busy` while breaks go on.
    pub fn open_file(
        &self,
        file: &[u8],
        client: &[u8],
        open_id: u64,
        spec: &OpenSpec,
        wait: Option<&WaitSpec>,
    ) -> Result<LeaseAnswer> {
        check_file_id(file)?;
        check_owner(&OwnerRef { client, owner: b"", open_id })?;
        if spec.requested & !lease::RWH != 0 {
            return Err(Error::Invalid("lease state has bits outside R|H|W"));
        }
        let mut spec = spec.clone();
        if spec.timeout_ms == 0 {
            spec.timeout_ms = self.break_timeout_ms;
        }
        if spec.dir && spec.kind == Some(lease::Kind::Lease) && !self.dir_leases {
            // Directory leases are not offered: the request is answered as a plain open.
            spec.kind = None;
            spec.requested = 0;
        }
        let is_lease = spec.kind == Some(lease::Kind::Lease);
        if is_lease {
            self.check_key_file(file, client, &spec.key)?;
        }
        if let Some(g) = self.gate_open(file, client, open_id, &spec)? {
            return Ok(LeaseAnswer::Ready(g));
        }
        if spec.kind.is_some() && spec.requested != 0 {
            self.ensure_client(client)?;
        }
        let id = self.driver.next_id.fetch_add(1, Ordering::Relaxed);
        let w = wait.map(|w| (id, w.token, w.user_data));
        let ctx = self.ctx();
        let r = self.file(file, true, |fs| fs.unwrap().open_file(&ctx, client, open_id, &spec, w));
        if let (true, Ok(LeaseAnswer::Ready(_))) = (is_lease, &r) {
            // Recorded even at none: the lease object exists for its key (and names its file).
            self.lease_files.lock().insert((client.into(), spec.key), file.into());
        }
        r
    }

    /// The grace gate of an open (SPEC.md §5): during grace a lease request is a reclaim (by flag, or
    /// for SMB by a key that existed before) granted from the pre-restart state, or refused; plain
    /// opens pass. Returns the reclaimed grant, if it was one.
    pub(super) fn gate_open(
        &self,
        file: &[u8],
        client: &[u8],
        open_id: u64,
        spec: &OpenSpec,
    ) -> Result<Option<lease::Grant>> {
        let wants = spec.kind.is_some() && spec.requested != 0 && !spec.sharing_violation;
        if !self.grace_active.load(Ordering::Acquire) && !spec.reclaim {
            return Ok(None);
        }
        let smb_key = spec.kind == Some(lease::Kind::Lease);
        let r = self.grace.lock().gate_open(spec.reclaim, wants, smb_key, file, client, &spec.key, spec.requested);
        let Some((state, epoch)) = r.map_err(super::locks::gate_error)? else { return Ok(None) };
        self.ensure_client(client)?;
        let mut spec = spec.clone();
        if let Some(e) = epoch {
            spec.epoch = e;
        }
        let g = self.try_file(file, true, |fs| fs.unwrap().reclaim_open(client, open_id, &spec, state))?;
        Ok(Some(g))
    }

    /// SPEC.md §4: a lease key that leases file A presented on file B is invalid.
    pub(super) fn check_key_file(&self, file: &[u8], client: &[u8], key: &Key) -> Result<()> {
        let other = match self.lease_files.lock().get(&(client.into(), *key)) {
            Some(f) if **f != *file => f.clone(),
            _ => return Ok(()),
        };
        let still =
            self.try_file(&other, false, |fs| fs.map(|fs| fs.leases.find(client, key).is_some()).unwrap_or(false))?;
        if still {
            return Err(Error::Invalid("lease key already leases another file"));
        }
        self.lease_files.lock().remove(&(client.into(), *key));
        Ok(())
    }

    /// Closes an open recorded by `open_file`.
    pub fn close_file(&self, file: &[u8], client: &[u8], open_id: u64) -> Result<()> {
        check_file_id(file)?;
        let ctx = self.ctx();
        self.file(file, false, |fs| match fs {
            Some(fs) => fs.close_file(&ctx, client, open_id),
            None => Err(Error::NotFound),
        })
    }

    /// Acknowledges a lease break.
    pub fn lease_ack(&self, file: &[u8], client: &[u8], key: &Key, state: u8) -> Result<()> {
        check_file_id(file)?;
        if state & !lease::RWH != 0 {
            return Err(Error::Invalid("lease state has bits outside R|H|W"));
        }
        let ctx = self.ctx();
        self.file(file, false, |fs| match fs {
            Some(fs) => fs.lease_ack(&ctx, client, key, state),
            None => Err(Error::NotFound),
        })
    }

    /// Acknowledges a break of an SMB lease named by client and key alone: a client's lease key
    /// names one file, which the library knows (an SMB2 LEASE_BREAK_ACK carries no file).
    pub fn lease_ack_by_key(&self, client: &[u8], key: &Key, state: u8) -> Result<()> {
        let file = self.lease_file(client, key)?.ok_or(Error::NotFound)?;
        self.lease_ack(&file, client, key, state)
    }

    /// The file a client's lease key leases: this process's map first, then (shared mode) the
    /// leases table of every process.
    pub(super) fn lease_file(&self, client: &[u8], key: &Key) -> Result<Option<Box<[u8]>>> {
        if let Some(f) = self.lease_files.lock().get(&(client.into(), *key)) {
            return Ok(Some(f.clone()));
        }
        match &self.shared {
            Some(sh) => sh.lease_file(client, key),
            None => Ok(None),
        }
    }

    /// Gives a lease back (delegation return, setlease to none).
    pub fn lease_release(&self, file: &[u8], client: &[u8], key: &Key) -> Result<()> {
        check_file_id(file)?;
        let ctx = self.ctx();
        self.file(file, false, |fs| match fs {
            Some(fs) => fs.lease_release(&ctx, client, key),
            None => Err(Error::NotFound),
        })
    }

    /// A break trigger from any protocol (write, truncate, delete, rename, directory change, ...).
    pub fn lease_trigger(
        &self,
        file: &[u8],
        client: &[u8],
        key: Option<&Key>,
        trigger: Trigger,
        wait: Option<&WaitSpec>,
    ) -> Result<LeaseAnswer> {
        check_file_id(file)?;
        check_owner(&OwnerRef { client, owner: b"", open_id: 0 })?;
        let id = self.driver.next_id.fetch_add(1, Ordering::Relaxed);
        let w = wait.map(|w| (id, w.token, w.user_data));
        let ctx = self.ctx();
        self.file(file, true, |fs| {
            fs.unwrap().lease_trigger(
                &ctx,
                &Requester { client, key, retry: false, write: matches!(trigger, Trigger::Write | Trigger::Overwrite) },
                trigger,
                w,
            )
        })
    }
}
