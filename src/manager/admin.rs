//! Clients, grace, metrics and the participants of a shared backend (dead processes or hosts and
//! the release of what they held).

use super::*;

impl Manager {
    /// Starts grace with the state found at a restart; false if there was none.
    pub(super) fn start_recovered_grace(
        grace: &mut Grace,
        events: &Events<Event>,
        rec: &mut crate::store::Recovered,
        grace_ms: u64,
    ) -> bool {
        if rec.locks.is_empty() && rec.leases.is_empty() {
            return false;
        }
        log::info!(
            "unilock: {} locks and {} leases of {} clients from the previous run: grace period of {} ms",
            rec.locks.len(),
            rec.leases.len(),
            rec.clients.len(),
            grace_ms
        );
        grace.start(events.now_ms(), grace_ms, rec.clients.iter().cloned(), false);
        grace.add_locks(std::mem::take(&mut rec.locks));
        for l in &rec.leases {
            grace.add_lease(&l.file, &l.client, l.key, l.state, l.epoch);
        }
        events.add_timer(grace.deadline, TimerKind::GraceEnd);
        true
    }

    /// Shared mode: releases the state of every process found dead (a pid gone, or recycled with
    /// another start time, or from another boot); returns how many processes it cleaned up.
    pub fn reap_dead(&self) -> usize {
        let Some(sh) = &self.shared else { return 0 };
        let procs = match sh.procs() {
            Ok(p) => p,
            Err(e) => {
                log::error!("unilock: reading processes: {e:?}");
                return 0;
            }
        };
        let dead: Vec<u64> =
            procs.into_iter().filter(|(p, id)| *p != sh.me() && !sh.alive(*p, id)).map(|(p, _)| p).collect();
        let mut n = 0;
        for p in dead {
            // Clients registered with a TTL keep their state that long after their process died
            // (durable-handle style), as a disconnect with that TTL would.
            let now = crate::backend::unix_ms();
            let at = match sh.release_at(p) {
                Ok(0) => {
                    let files = sh.files_of(p).unwrap_or_default();
                    let mut clients = Vec::new();
                    for f in &files {
                        clients
                            .extend(self.file(f, false, |fs| fs.map(|fs| fs.clients_of_proc(p)).unwrap_or_default()));
                    }
                    let ttl = sh.max_ttl(&clients).unwrap_or(0);
                    if ttl > 0 {
                        let _ = sh.set_release_at(p, now.saturating_add(ttl));
                        log::info!("unilock: process {p} is gone; its state is kept for {ttl} ms (client TTL)");
                    }
                    now.saturating_add(ttl)
                }
                Ok(at) => at,
                Err(_) => now,
            };
            if at <= now {
                self.drop_proc(p);
                n += 1;
            }
        }
        n
    }

    /// Shared mode: releases everything process `proc` held, as a disconnect of its clients.
    pub(super) fn drop_proc(&self, proc: u64) {
        let Some(sh) = &self.shared else { return };
        let files = sh.files_of(proc).unwrap_or_default();
        let ctx = self.ctx();
        let mut n = 0;
        for f in files {
            n += self.file(&f, false, |fs| fs.map(|fs| fs.drop_proc(&ctx, proc)).unwrap_or(0));
        }
        self.metrics.release(crate::metrics::Release::Disconnect, n as u64);
        if let Err(e) = sh.forget_proc(proc) {
            log::error!("unilock: forgetting process {proc}: {e:?}");
        }
        log::info!("unilock: process {proc} is gone; released {n} locks");
    }

    /// Shared mode: the parent (or a cleanup daemon) says process `pid` is gone (`start` 0: any
    /// start time). Returns how many registered processes matched.
    pub fn process_gone(&self, pid: u32, start: u64) -> Result<usize> {
        let Some(sh) = &self.shared else { return Err(Error::Invalid("not in shared mode")) };
        let procs = sh.procs()?;
        let boot = crate::backend::ProcIdent::me().boot;
        let gone: Vec<u64> = procs
            .into_iter()
            // Cluster mode: only this host's processes (a pid means nothing on another boot).
            .filter(|(p, id)| *p != sh.me() && id.pid == pid && (start == 0 || id.start == start) && id.boot == boot)
            .map(|(p, _)| p)
            .collect();
        for p in &gone {
            self.drop_proc(*p);
        }
        Ok(gone.len())
    }

    /// Shared mode: binds an open's locks, opens and leases on `file` to this process (a durable
    /// handle reconnecting in a new `smbd`). Returns how many owners and opens were rebound.
    pub fn rebind_open(&self, file: &[u8], client: &[u8], open_id: u64) -> Result<usize> {
        check_file_id(file)?;
        check_owner(&OwnerRef { client, owner: b"", open_id })?;
        let Some(sh) = &self.shared else { return Err(Error::Invalid("not in shared mode")) };
        let me = sh.me();
        self.try_file(file, false, |fs| fs.map(|fs| fs.rebind(client, open_id, me)).unwrap_or(0))
    }

    /// Shared mode: releases this process's state (the handle is closing).
    pub fn leave(&self) {
        if let Some(sh) = &self.shared {
            let me = sh.me();
            self.drop_proc(me);
        }
    }

    /// Registers a client (idempotent; cancels a pending TTL release). `Limit(Connections)` when its
    /// adapter's connection limit is reached.
    pub fn client_register(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        check_owner(&OwnerRef { client, owner: b"", open_id: 0 })?;
        if self.clients.lock().register(client, adapter, address, ttl_ms).is_err() {
            self.metrics.limit(crate::metrics::LimitKind::Connections);
            return Err(Error::Limit(crate::metrics::LimitKind::Connections));
        }
        if let Some(s) = &self.store {
            s.put_client(client, adapter, address, ttl_ms).map_err(|e| Error::Store(e.0))?;
        }
        if let Some(s) = &self.shared {
            s.put_client(client, adapter, address, ttl_ms)?;
        }
        Ok(())
    }

    /// A client disconnected: TTL 0 releases all its state now (returns how many locks); a TTL keeps
    /// it until the TTL passes unless the client registers again (returns 0).
    pub fn client_disconnect(&self, client: &[u8]) -> Result<usize> {
        let now = self.driver.events.now_ms();
        match self.clients.lock().disconnect(client, now) {
            None => return Err(Error::NotFound),
            Some(crate::clients::Disconnect::At(t)) => {
                self.driver.events.add_timer(t, TimerKind::ClientTtl(client.into()));
                return Ok(0);
            }
            Some(crate::clients::Disconnect::Now) => {}
        }
        self.release_client_for(client, crate::metrics::Release::Disconnect)
    }

    /// Registered clients, sorted by id.
    pub fn clients(&self) -> Vec<(Box<[u8]>, crate::clients::ClientRec)> {
        self.clients.lock().list()
    }

    /// Sets an adapter's connection limit (0 = unlimited).
    pub fn set_adapter_limit(&self, adapter: &str, max: u64) {
        self.clients.lock().set_limit(adapter, max);
    }

    /// Counters and gauges now.
    pub fn metrics_snapshot(&self) -> (crate::metrics::Totals, crate::metrics::Gauges) {
        let t = self.metrics.totals();
        let (files, locks, leases, waiters) = self.table.census();
        let (active, remaining, _, _) = self.grace_status();
        let g = crate::metrics::Gauges {
            locks,
            leases,
            waiters,
            files,
            grace_active: active,
            grace_remaining_ms: remaining,
            connections: self.clients.lock().connections(),
            deadlocks: self.deadlocks.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
        };
        (t, g)
    }

    /// The metrics as Prometheus text.
    pub fn prometheus(&self) -> String {
        let (t, g) = self.metrics_snapshot();
        crate::metrics::prometheus(&t, &g)
    }

    /// Grace status: (active, remaining ms, expected clients, done clients).
    pub fn grace_status(&self) -> (bool, u64, usize, usize) {
        let g = self.grace.lock();
        (g.active, g.remaining_ms(self.driver.events.now_ms()), g.expected.len(), g.done.len())
    }

    /// Starts a grace period explicitly (a host taking over another's clients).
    pub fn grace_start(&self, clients: Vec<Box<[u8]>>, duration_ms: u64) -> Result<()> {
        let d = if duration_ms == 0 { self.grace_ms } else { duration_ms };
        let (deadline, expected) = {
            let mut g = self.grace.lock();
            g.start(self.driver.events.now_ms(), d, clients, true);
            (g.deadline, g.expected.iter().cloned().collect::<Vec<_>>())
        };
        if let Some(s) = &self.store {
            s.set_grace(&expected, d).map_err(|e| Error::Store(e.0))?;
        }
        self.grace_active.store(true, Ordering::Release);
        self.driver.events.add_timer(deadline, TimerKind::GraceEnd);
        Ok(())
    }

    /// An adapter says `client` finished reclaiming; ends grace when every expected client has.
    pub fn reclaim_complete(&self, client: &[u8]) -> Result<()> {
        let all = {
            let mut g = self.grace.lock();
            if !g.active {
                return Err(Error::NoGrace);
            }
            g.complete(client)
        };
        if all {
            self.grace_end();
        }
        Ok(())
    }

    /// Ends grace now: everything not reclaimed is released and reported per client.
    pub fn grace_end(&self) {
        let left = {
            let mut g = self.grace.lock();
            if !g.active {
                return;
            }
            self.grace_active.store(false, Ordering::Release);
            g.end()
        };
        let released: u64 = left.values().map(|(l, s)| l + s).sum();
        self.metrics.release(crate::metrics::Release::GraceEnd, released);
        if let Some(s) = &self.store {
            if let Err(e) = s.end_grace() {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("unilock: clearing the pre-restart state failed: {}", e.0);
            }
        }
        if let Some(s) = &self.shared {
            if let Err(e) = s.end_grace() {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("unilock: clearing the pre-restart state failed: {e:?}");
            }
        }
        log::info!("unilock: grace period over; {} clients left state unreclaimed", left.len());
        let evs: Vec<Event> = left
            .into_iter()
            .map(|(client, (locks, leases))| Event {
                kind: crate::requests::EventKind::GraceReleased,
                result: Ok(()),
                request_id: 0,
                token: 0,
                user_data: 0,
                file: Box::default(),
                client: client.to_vec(),
                owner: Vec::new(),
                open_id: 0,
                flavour: Flavour::Posix,
                lock_kind: LockType::Shared,
                offset: locks,
                length: leases,
                lease: Default::default(),
                proc: 0,
            })
            .collect();
        self.driver.events.push_all(evs);
    }

    pub fn release_client(&self, client: &[u8]) -> Result<usize> {
        self.release_client_for(client, crate::metrics::Release::Disconnect)
    }

    pub(super) fn release_client_for(&self, client: &[u8], why: crate::metrics::Release) -> Result<usize> {
        check_owner(&OwnerRef { client, owner: b"", open_id: 0 })?;
        let mut n = 0;
        let ctx = self.ctx();
        if let Some(sh) = &self.shared {
            for f in sh.files()? {
                n += self.try_file(&f, false, |fs| match fs {
                    Some(fs) => {
                        let owners = fs.owners_of_client(client);
                        fs.end_waiters_of(&ctx, &owners, Some(Error::RangeNotLocked));
                        let k = fs.release_client(&ctx, client);
                        fs.settle(&ctx);
                        k
                    }
                    None => 0,
                })?;
            }
            self.metrics.release(why, n as u64);
            return Ok(n);
        }
        self.table.for_each_file(|fs| {
            let owners = fs.owners_of_client(client);
            if owners.is_empty() {
                return;
            }
            fs.end_waiters_of(&ctx, &owners, Some(Error::RangeNotLocked));
            n += fs.release_client(&ctx, client);
            fs.settle(&ctx);
            self.after(fs);
        });
        self.metrics.release(why, n as u64);
        Ok(n)
    }
}
