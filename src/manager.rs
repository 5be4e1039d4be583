//! The lock manager behind one `unilock *` handle: argument checks that do not depend on C, then one
//! call into the table per request. The FFI layer converts C arguments and calls these methods.

use crate::backend::Backend;
use crate::clock::{Clock, SystemClock};
use crate::core::grace::Grace;
use crate::core::lease::{self, Key, Requester, Trigger};
use crate::core::wait::WaitGraph;
use crate::core::{Access, Flavour, LockType, Range};
use crate::error::{Error, Holder, Result};
use crate::events::{Events, TimerKind};
use crate::owners::OwnerRef;
use crate::requests::{CancelOutcome, Ctx, Event, Outcome, OwnerKey, ReqState, Requests};
use crate::store::{Durability, Store};
use crate::table::{check_file_id, check_owner, LeaseAnswer, OpenSpec, Queued, Table};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::table::LockReq;

/// How often shared mode looks for processes that died (ms).
const PROC_CHECK_MS: u64 = 1000;

/// Receives every event, on the thread that runs `process_events`.
pub type EventCallback = Box<dyn Fn(&Event) + Send + Sync>;

/// Settings fixed at open.
#[derive(Default)]
pub struct Settings {
    /// Event-loop mode: an event fd and no library thread (the caller runs `process_events`).
    pub loop_mode: bool,
    /// Default lease break timeout in ms (0: 35 000, Windows' value).
    pub break_timeout_ms: u64,
    /// The SQLite database (None: in memory, no recovery).
    pub db_path: Option<String>,
    /// What a grant promises after a crash.
    pub durability: Option<Durability>,
    /// Grace period after a restart, ms (0: 90 000).
    pub grace_ms: u64,
    /// Batch mode: longest time a change waits before it is written, ms (0: 10).
    pub batch_ms: u64,
    /// Shared mode: several processes on the database at `db_path` see one lock table.
    pub shared: bool,
    /// Cluster mode: the processes of several hosts see one lock table in etcd.
    pub cluster: Option<crate::backend::etcd::EtcdConfig>,
    /// Directory lease requests are granted none (the server offers no directory leases).
    pub no_dir_leases: bool,
    /// Lock limits (0 = unlimited).
    pub max_locks_per_file: u64,
    pub max_locks_per_client: u64,
    pub max_locks_total: u64,
    /// The clock (default: CLOCK_MONOTONIC; cluster mode: CLOCK_REALTIME). Tests pass a `ManualClock`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Where events go; without one they are dropped after their request is settled.
    pub callback: Option<EventCallback>,
}

/// Parameters of a blocking request.
#[derive(Clone, Copy, Debug, Default)]
pub struct WaitSpec {
    pub token: u64,
    pub user_data: usize,
    /// 0: wait until granted or cancelled.
    pub timeout_ms: u64,
}

pub struct Manager {
    table: Table,
    events: Events<Event>,
    requests: Requests,
    graph: Mutex<WaitGraph<OwnerKey>>,
    next_id: AtomicU64,
    callback: Option<EventCallback>,
    loop_mode: bool,
    stop: AtomicBool,
    /// Requests refused because they would deadlock.
    pub deadlocks: AtomicU64,
    /// (client, lease key) → the file it leases (a key belongs to one file per client).
    lease_files: Mutex<std::collections::HashMap<lease::LeaseRef, Box<[u8]>>>,
    /// Default lease break timeout (ms).
    pub break_timeout_ms: u64,
    /// Directory leases are offered (a server such as Samba 4.17 that offers none turns this off).
    dir_leases: bool,
    store: Option<Store>,
    grace: Mutex<Grace>,
    /// Mirrors `grace.active` so the lock path needs no mutex outside grace.
    grace_active: AtomicBool,
    grace_ms: u64,
    batch_ms: u64,
    flush_armed: AtomicBool,
    /// Journal writes that failed (the in-memory state stays authoritative; each is logged).
    pub store_errors: AtomicU64,
    pub metrics: crate::metrics::Metrics,
    clients: Mutex<crate::clients::Clients>,
    max_per_file: u64,
    max_per_client: u64,
    max_total: u64,
    /// Locks per client and in total, kept only when a client or total limit is set.
    client_locks: Mutex<std::collections::HashMap<Box<[u8]>, i64>>,
    total_locks: std::sync::atomic::AtomicI64,
    /// Shared mode: the database all processes use, and events for other processes of one operation.
    shared: Option<Box<dyn Backend>>,
    outbox: Mutex<Vec<Event>>,
}

/// What a file operation returns when the shared database fails under it: a `Result` carries the
/// error; only internal housekeeping (timers, reaping dead processes) may fall back to "nothing".
/// Calls that answer a caller use `Manager::try_file`, never a default.
pub trait StoreFallback {
    fn store_failed(e: Error) -> Self;
}
impl<T> StoreFallback for Result<T> {
    fn store_failed(e: Error) -> Self {
        Err(e)
    }
}
impl<T> StoreFallback for std::result::Result<T, (usize, Error)> {
    fn store_failed(e: Error) -> Self {
        Err((0, e))
    }
}
impl<T> StoreFallback for Vec<T> {
    fn store_failed(_: Error) -> Self {
        Vec::new()
    }
}
impl StoreFallback for usize {
    fn store_failed(_: Error) -> Self {
        0
    }
}
impl StoreFallback for () {
    fn store_failed(_: Error) -> Self {}
}

/// Per-call flags of a lock request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockFlags {
    /// A reclaim during the grace period (NLM reclaim, NFSv4 reclaim).
    pub reclaim: bool,
}

impl Manager {
    pub fn new(settings: Settings) -> Result<Manager> {
        // Cluster mode: break deadlines stored in the shared table are read on other hosts.
        let clock = settings.clock.unwrap_or_else(|| match settings.cluster {
            Some(_) => Arc::new(crate::clock::WallClock::default()),
            None => Arc::new(SystemClock),
        });
        let events =
            Events::new(clock, settings.loop_mode || settings.shared || settings.cluster.is_some()).map_err(|e| {
                log::error!("cannot create the event descriptors: {e}");
                Error::Resource("event descriptors")
            })?;
        let grace_ms = if settings.grace_ms == 0 { crate::defaults::GRACE_PERIOD_MS } else { settings.grace_ms };
        let mut grace = Grace::default();
        let mut shared = None;
        if settings.shared {
            let Some(path) = &settings.db_path else {
                return Err(Error::Invalid("shared mode needs a database path"));
            };
            let (sh, rec) =
                crate::backend::sqlite_shared::Shared::open(path, settings.durability.unwrap_or(Durability::Process))
                    .map_err(|e| {
                    log::error!("unilock: cannot join the shared database {path}: {e:?}");
                    e
                })?;
            if let Some(fd) = sh.wake_fd() {
                events.add_fd(fd).map_err(|_| Error::Resource("event descriptors"))?;
            }
            if let Some(mut rec) = rec {
                Self::start_recovered_grace(&mut grace, &events, &mut rec, grace_ms);
            }
            events.add_timer(events.now_ms() + PROC_CHECK_MS, TimerKind::ProcCheck);
            shared = Some(Box::new(sh) as Box<dyn Backend>);
        }
        if let Some(c) = &settings.cluster {
            let (b, _) = crate::backend::etcd::Etcd::open(c).map_err(|e| {
                log::error!("unilock: cannot join cluster {:?} at {}: {e:?}", c.cluster, c.endpoints);
                e
            })?;
            if let Some(fd) = b.wake_fd() {
                events.add_fd(fd).map_err(|_| Error::Resource("event descriptors"))?;
            }
            events.add_timer(events.now_ms() + PROC_CHECK_MS, TimerKind::ProcCheck);
            shared = Some(Box::new(b) as Box<dyn Backend>);
        }
        let store = match (&settings.db_path, settings.shared) {
            (None, _) | (Some(_), true) => None,
            (Some(path), false) => {
                let (store, mut rec) =
                    Store::open(path, settings.durability.unwrap_or(Durability::Sync)).map_err(|e| {
                        log::error!("unilock: cannot use database {path}: {}", e.0);
                        Error::Store(e.0)
                    })?;
                if Self::start_recovered_grace(&mut grace, &events, &mut rec, grace_ms) {
                    if let Err(e) = store.set_grace(&rec.clients, grace_ms) {
                        log::warn!("unilock: cannot record the grace period: {}", e.0);
                    }
                }
                Some(store)
            }
        };
        let grace_active = AtomicBool::new(grace.active);
        Ok(Manager {
            table: Table::new(store.is_some(), settings.max_locks_per_client > 0 || settings.max_locks_total > 0),
            metrics: crate::metrics::Metrics::default(),
            clients: Mutex::new(crate::clients::Clients::default()),
            max_per_file: settings.max_locks_per_file,
            max_per_client: settings.max_locks_per_client,
            max_total: settings.max_locks_total,
            client_locks: Mutex::new(std::collections::HashMap::new()),
            total_locks: std::sync::atomic::AtomicI64::new(0),
            shared,
            outbox: Mutex::new(Vec::new()),
            store,
            grace: Mutex::new(grace),
            grace_active,
            grace_ms,
            batch_ms: if settings.batch_ms == 0 { crate::defaults::BATCH_MS } else { settings.batch_ms },
            flush_armed: AtomicBool::new(false),
            store_errors: AtomicU64::new(0),
            events,
            requests: Requests::default(),
            graph: Mutex::new(WaitGraph::default()),
            next_id: AtomicU64::new(1),
            callback: settings.callback,
            loop_mode: settings.loop_mode,
            stop: AtomicBool::new(false),
            deadlocks: AtomicU64::new(0),
            lease_files: Mutex::new(std::collections::HashMap::new()),
            break_timeout_ms: if settings.break_timeout_ms == 0 {
                crate::defaults::LEASE_BREAK_TIMEOUT_MS
            } else {
                settings.break_timeout_ms
            },
            dir_leases: !settings.no_dir_leases,
        })
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Starts grace with the state found at a restart; false if there was none.
    fn start_recovered_grace(
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
    fn drop_proc(&self, proc: u64) {
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
        let gone: Vec<u64> = procs
            .into_iter()
            .filter(|(p, id)| *p != sh.me() && id.pid == pid && (start == 0 || id.start == start))
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

    /// Runs `f` on a file under its shard lock, then hands the file's journal to the store. When the
    /// shared database fails, the operation's own error type carries `UNILOCK_E_STORE`
    /// (`StoreFallback`); calls whose answer is not a `Result` use `try_file`.
    fn file<R: StoreFallback>(
        &self,
        file: &[u8],
        create: bool,
        f: impl FnOnce(Option<&mut crate::table::FileState>) -> R,
    ) -> R {
        self.file_g(file, create, false, f)
    }

    /// `file`; `need_graph`: a blocking request whose deadlock check must see every participant's
    /// wait-for edges (read by a shared backend with the file).
    fn file_g<R: StoreFallback>(
        &self,
        file: &[u8],
        create: bool,
        need_graph: bool,
        f: impl FnOnce(Option<&mut crate::table::FileState>) -> R,
    ) -> R {
        if self.shared.is_none() {
            return self.local_file(file, create, f);
        }
        match self.try_file_g(file, create, need_graph, f) {
            Ok(r) => r,
            Err(e) => R::store_failed(e),
        }
    }

    /// `file`, with the shared database's failure as an error: a call that could not consult the
    /// table must never answer "granted" or "nothing there".
    fn try_file<R>(
        &self,
        file: &[u8],
        create: bool,
        f: impl FnOnce(Option<&mut crate::table::FileState>) -> R,
    ) -> Result<R> {
        self.try_file_g(file, create, false, f)
    }

    fn try_file_g<R>(
        &self,
        file: &[u8],
        create: bool,
        need_graph: bool,
        f: impl FnOnce(Option<&mut crate::table::FileState>) -> R,
    ) -> Result<R> {
        if let Some(sh) = &self.shared {
            let mut ctx = self.ctx();
            ctx.need_graph = need_graph;
            return crate::backend::with_file(&**sh, file, create, &ctx, |fs| match fs {
                Some(fs) => {
                    let r = f(Some(&mut *fs));
                    if self.tracking() {
                        self.after_counts(fs);
                    }
                    r
                }
                None => f(None),
            })
            .map_err(|e| {
                self.store_errors.fetch_add(1, Ordering::Relaxed);
                log::error!("unilock: shared database: {e:?}");
                e
            });
        }
        Ok(self.local_file(file, create, f))
    }

    /// `file` on the in-process table (no shared database, so nothing can fail).
    fn local_file<R>(&self, file: &[u8], create: bool, f: impl FnOnce(Option<&mut crate::table::FileState>) -> R) -> R {
        if self.store.is_none() && !self.tracking() {
            return self.table.with_file(file, create, f);
        }
        self.table.with_file(file, create, |fs| match fs {
            Some(fs) => {
                let r = f(Some(&mut *fs));
                self.after(fs);
                r
            }
            None => f(None),
        })
    }

    fn tracking(&self) -> bool {
        self.max_per_client > 0 || self.max_total > 0
    }

    /// After an operation on a file: journal to the store, lock counts to the limits.
    fn after(&self, fs: &mut crate::table::FileState) {
        self.persist(fs);
        self.after_counts(fs);
    }

    fn after_counts(&self, fs: &mut crate::table::FileState) {
        if self.tracking() {
            let deltas = fs.take_counts();
            if !deltas.is_empty() {
                let mut m = self.client_locks.lock();
                for (c, d) in deltas {
                    self.total_locks.fetch_add(d, Ordering::Relaxed);
                    let e = m.entry(c).or_insert(0);
                    *e += d;
                    if *e <= 0 {
                        m.retain(|_, v| *v > 0);
                    }
                }
            }
        }
    }

    /// Shared mode: releases this process's state (the handle is closing).
    pub fn leave(&self) {
        if let Some(sh) = &self.shared {
            let me = sh.me();
            self.drop_proc(me);
        }
    }

    /// Refuses a new lock when the client's or the total limit is already reached.
    fn check_limits(&self, client: &[u8]) -> Result<()> {
        // Counts are compared as u64: a limit of 2^63 or more is larger than any count (never `as i64`).
        let count = |n: i64| n.max(0) as u64;
        if self.max_total > 0 && count(self.total_locks.load(Ordering::Relaxed)) >= self.max_total {
            self.metrics.limit(crate::metrics::LimitKind::Total);
            return Err(Error::Limit(crate::metrics::LimitKind::Total));
        }
        if self.max_per_client > 0
            && count(self.client_locks.lock().get(client).copied().unwrap_or(0)) >= self.max_per_client
        {
            self.metrics.limit(crate::metrics::LimitKind::Client);
            return Err(Error::Limit(crate::metrics::LimitKind::Client));
        }
        Ok(())
    }

    /// The per-file limit, checked under the file's lock.
    fn check_file_limit(&self, fs: &crate::table::FileState) -> Result<()> {
        if self.max_per_file > 0 && fs.lock_count() as u64 >= self.max_per_file {
            self.metrics.limit(crate::metrics::LimitKind::File);
            return Err(Error::Limit(crate::metrics::LimitKind::File));
        }
        Ok(())
    }

    fn count_acquire(&self, req: &LockReq, r: &Result<()>) {
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

    fn persist(&self, fs: &mut crate::table::FileState) {
        let Some(store) = &self.store else { return };
        let j = fs.take_journal();
        if j.is_empty() {
            return;
        }
        if let Err(e) = store.record(j) {
            self.store_errors.fetch_add(1, Ordering::Relaxed);
            log::error!("unilock: writing to the database failed: {}", e.0);
        }
        if store.mode() == Durability::Batch && !self.flush_armed.swap(true, Ordering::AcqRel) {
            self.events.add_timer(self.events.now_ms().saturating_add(self.batch_ms), TimerKind::Flush);
        }
    }

    /// Makes the client's record durable before its first grant (every durability mode).
    fn ensure_client(&self, client: &[u8]) -> Result<()> {
        match &self.store {
            Some(s) => s.ensure_client(client).map_err(|e| Error::Store(e.0)),
            None => Ok(()),
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
        let now = self.events.now_ms();
        match self.clients.lock().disconnect(client, now) {
            None => return Err(Error::NotFound),
            Some(crate::clients::Disconnect::At(t)) => {
                self.events.add_timer(t, TimerKind::ClientTtl(client.into()));
                return Ok(0);
            }
            Some(crate::clients::Disconnect::Now) => {}
        }
        self.release_client_for(client, crate::metrics::Release::Disconnect)
    }

    /// The manager's clock (ms).
    pub fn now_ms(&self) -> u64 {
        self.events.now_ms()
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

    /// The grace gate of a lock request (SPEC.md §5).
    fn gate_lock(&self, file: &[u8], o: &OwnerRef, req: &LockReq, range: &Range, flags: LockFlags) -> Result<()> {
        if !self.grace_active.load(Ordering::Acquire) {
            return if flags.reclaim { Err(Error::NoGrace) } else { Ok(()) };
        }
        let mut g = self.grace.lock();
        if !g.active {
            return if flags.reclaim { Err(Error::NoGrace) } else { Ok(()) };
        }
        if !flags.reclaim {
            return Err(Error::Grace);
        }
        let ok = g.reclaim_lock(file, o.client, o.owner, o.open_id, req.flavour, req.kind, range);
        self.metrics.reclaim(ok);
        if ok {
            Ok(())
        } else {
            Err(Error::ReclaimDenied)
        }
    }

    /// Grace status: (active, remaining ms, expected clients, done clients).
    pub fn grace_status(&self) -> (bool, u64, usize, usize) {
        let g = self.grace.lock();
        (g.active, g.remaining_ms(self.events.now_ms()), g.expected.len(), g.done.len())
    }

    /// Starts a grace period explicitly (a host taking over another's clients).
    pub fn grace_start(&self, clients: Vec<Box<[u8]>>, duration_ms: u64) -> Result<()> {
        let d = if duration_ms == 0 { self.grace_ms } else { duration_ms };
        let (deadline, expected) = {
            let mut g = self.grace.lock();
            g.start(self.events.now_ms(), d, clients, true);
            (g.deadline, g.expected.iter().cloned().collect::<Vec<_>>())
        };
        if let Some(s) = &self.store {
            s.set_grace(&expected, d).map_err(|e| Error::Store(e.0))?;
        }
        self.grace_active.store(true, Ordering::Release);
        self.events.add_timer(deadline, TimerKind::GraceEnd);
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
        self.events.push_all(evs);
    }

    /// Writes batched changes now.
    pub fn flush(&self) -> Result<()> {
        self.flush_armed.store(false, Ordering::Release);
        match &self.store {
            Some(s) => s.flush().map_err(|e| Error::Store(e.0)),
            None => Ok(()),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            me: self.shared.as_ref().map(|s| s.me()).unwrap_or(0),
            outbox: self.shared.as_ref().map(|_| &self.outbox),
            metrics: &self.metrics,
            requests: &self.requests,
            graph: &self.graph,
            events: &self.events,
            need_graph: false,
        }
    }

    /// Thread mode: starts the library thread that runs timers and delivers events.
    pub fn start_thread(self: &Arc<Self>) -> Result<std::thread::JoinHandle<()>> {
        if self.loop_mode {
            return Err(Error::Invalid("no library thread in event-loop mode"));
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("unilock-events".into())
            .spawn(move || {
                while !me.stop.load(Ordering::Acquire) {
                    me.events.wait(1000);
                    if me.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // A panic must not kill the thread that delivers every later event.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| me.process_events())).is_err() {
                        log::error!("internal panic while processing events");
                    }
                }
            })
            .map_err(|_| Error::Resource("thread"))
    }

    /// Thread mode: asks the library thread to stop (the caller joins it).
    pub fn stop_thread(&self) {
        self.stop.store(true, Ordering::Release);
        self.events.wake_thread();
    }

    /// The pollable descriptor of event-loop mode, or -1.
    pub fn event_fd(&self) -> i32 {
        self.events.fd()
    }

    /// Milliseconds until `process_events` has work, or `None` if nothing is scheduled.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        self.events.next_timeout_ms()
    }

    /// Runs due timers, then delivers every queued event through the callback, on the calling thread
    /// and with no internal lock held. Returns the number of events delivered.
    pub fn process_events(&self) -> usize {
        self.events.begin_round();
        if let Some(sh) = &self.shared {
            match sh.take_mail() {
                Ok(evs) => self.accept_mail(evs),
                Err(e) => log::error!("unilock: reading the mailbox: {e:?}"),
            }
        }
        let now = self.events.now_ms();
        for t in self.events.due_timers(now) {
            match t {
                TimerKind::RequestTimeout(id) => self.expire(id),
                TimerKind::GraceEnd => {
                    let due = {
                        let g = self.grace.lock();
                        g.active && g.deadline <= self.events.now_ms()
                    };
                    if due {
                        self.grace_end();
                    }
                }
                TimerKind::ClientTtl(client) => {
                    if self.clients.lock().expire(&client, self.events.now_ms()) {
                        let _ = self.release_client_for(&client, crate::metrics::Release::Ttl);
                    }
                }
                TimerKind::ProcCheck => {
                    self.reap_dead();
                    self.events.add_timer(self.events.now_ms() + PROC_CHECK_MS, TimerKind::ProcCheck);
                }
                TimerKind::Flush => {
                    if let Err(e) = self.flush() {
                        self.store_errors.fetch_add(1, Ordering::Relaxed);
                        log::error!("unilock: batched write failed: {e:?}");
                    }
                }
                TimerKind::LeaseBreak(file) => {
                    let ctx = self.ctx();
                    self.file(&file, false, |fs| {
                        if let Some(fs) = fs {
                            fs.expire_leases(&ctx);
                        }
                    });
                }
            }
        }
        let mut delivered = 0;
        for ev in self.events.take_queued() {
            let me = std::thread::current().id();
            {
                let mut map = self.requests.map.lock();
                if ev.request_id == 0 {
                    drop(map);
                    if let Some(cb) = &self.callback {
                        cb(&ev);
                    }
                    delivered += 1;
                    continue;
                }
                match map.get_mut(&ev.request_id) {
                    Some(st @ ReqState::Completed(_)) => *st = ReqState::Delivering(me),
                    _ => continue, // cancelled, or its outcome was taken by cancel
                }
            }
            if let Some(cb) = &self.callback {
                cb(&ev);
            }
            delivered += 1;
            self.requests.map.lock().remove(&ev.request_id);
            self.requests.delivered.notify_all();
        }
        self.events.rearm();
        delivered
    }

    /// Events other processes decided for this one: completions of its requests (unless cancelled
    /// meanwhile) and notifications.
    fn accept_mail(&self, evs: Vec<Event>) {
        let mut local = Vec::new();
        {
            let mut map = self.requests.map.lock();
            for mut ev in evs {
                ev.proc = 0;
                if ev.request_id == 0 {
                    local.push(ev);
                    continue;
                }
                if let Some(st @ ReqState::Waiting { .. }) = map.get_mut(&ev.request_id) {
                    let granted = ev.kind == crate::requests::EventKind::LockDone && ev.result.is_ok();
                    *st = ReqState::Completed(if granted { Outcome::Granted } else { Outcome::Ended });
                    self.graph.lock().remove(ev.request_id);
                    local.push(ev);
                }
            }
        }
        self.events.push_all(local);
    }

    fn expire(&self, id: u64) {
        let file = match self.requests.map.lock().get(&id) {
            Some(ReqState::Waiting { file }) => file.clone(),
            _ => return,
        };
        let ctx = self.ctx();
        self.file(&file, false, |fs| {
            if let Some(fs) = fs {
                if fs.fail(&ctx, id, Error::Timeout) {
                    fs.settle(&ctx);
                }
            }
        });
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

    fn lock_blocking_inner(
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
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
                self.events
                    .add_timer(self.events.now_ms().saturating_add(wait.timeout_ms), TimerKind::RequestTimeout(id));
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx();
        self.try_file(file, true, |fs| fs.unwrap().watch(&ctx, id, token, user_data))?;
        Ok(id)
    }

    /// Cancels a request by id (race-safe; see `requests`).
    pub fn cancel(&self, id: u64) -> Result<CancelOutcome> {
        let me = std::thread::current().id();
        let ctx = self.ctx();
        loop {
            let mut map = self.requests.map.lock();
            match map.get(&id) {
                None => return Err(Error::NotFound),
                Some(ReqState::Completed(outcome)) => {
                    let o = *outcome;
                    map.remove(&id);
                    return Ok(match o {
                        Outcome::Granted => CancelOutcome::AlreadyGranted,
                        Outcome::Ended => CancelOutcome::AlreadyEnded,
                    });
                }
                Some(ReqState::Delivering(t)) => {
                    if *t == me {
                        return Err(Error::NotFound);
                    }
                    self.requests.delivered.wait(&mut map);
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
                        return Ok(CancelOutcome::Cancelled);
                    }
                    // Decided meanwhile (the state is now Completed, or in shared mode waiting in
                    // this process's mailbox): look again.
                    if let Some(sh) = &self.shared {
                        match sh.take_mail() {
                            Ok(evs) => self.accept_mail(evs),
                            Err(e) => return Err(e),
                        }
                        if matches!(self.requests.map.lock().get(&id), Some(ReqState::Waiting { .. })) {
                            // Not in the file and not in the mailbox: the request is gone.
                            self.requests.map.lock().remove(&id);
                            return Err(Error::NotFound);
                        }
                    }
                }
            }
        }
    }

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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
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
    fn gate_open(&self, file: &[u8], client: &[u8], open_id: u64, spec: &OpenSpec) -> Result<Option<lease::Grant>> {
        let wants = spec.kind.is_some() && spec.requested != 0 && !spec.sharing_violation;
        if !self.grace_active.load(Ordering::Acquire) {
            return if spec.reclaim { Err(Error::NoGrace) } else { Ok(None) };
        }
        let (state, epoch) = {
            let mut g = self.grace.lock();
            if !g.active {
                return if spec.reclaim { Err(Error::NoGrace) } else { Ok(None) };
            }
            if !wants {
                return if spec.reclaim { Err(Error::ReclaimDenied) } else { Ok(None) };
            }
            let by_key = spec.kind == Some(lease::Kind::Lease) && g.knows_lease(file, client, &spec.key);
            if !spec.reclaim && !by_key {
                return Err(Error::Grace);
            }
            g.reclaim_lease(file, client, &spec.key, spec.requested).ok_or(Error::ReclaimDenied)?
        };
        self.ensure_client(client)?;
        let mut spec = spec.clone();
        if let Some(e) = epoch {
            spec.epoch = e;
        }
        let g = self.try_file(file, true, |fs| fs.unwrap().reclaim_open(client, open_id, &spec, state))?;
        Ok(Some(g))
    }

    /// SPEC.md §4: a lease key that leases file A presented on file B is invalid.
    fn check_key_file(&self, file: &[u8], client: &[u8], key: &Key) -> Result<()> {
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
    fn lease_file(&self, client: &[u8], key: &Key) -> Result<Option<Box<[u8]>>> {
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
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

    fn lock_inner(&self, file: &[u8], o: &OwnerRef, req: &LockReq, flags: LockFlags) -> Result<()> {
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

    pub fn release_client(&self, client: &[u8]) -> Result<usize> {
        self.release_client_for(client, crate::metrics::Release::Disconnect)
    }

    fn release_client_for(&self, client: &[u8], why: crate::metrics::Release) -> Result<usize> {
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

    pub fn list(&self, file: &[u8]) -> Result<Vec<Holder>> {
        check_file_id(file)?;
        self.try_file(file, false, |fs| fs.map(|fs| fs.list()).unwrap_or_default())
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
