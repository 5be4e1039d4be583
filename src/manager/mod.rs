//! The facade behind one `unilock *` handle: argument checks that do not depend on C, the gates that
//! span files (grace, limits, the lease-key map), then one operation on the file's state — in the
//! in-process table (`backend::memory`, journaled to SQLite when there is a database) or through a
//! shared [`Backend`]. The FFI layer converts C arguments and calls these methods.
//!
//! Files: `mod.rs` (the facade's state, `new`, where a file's state lives), `locks.rs`, `leases.rs`,
//! `admin.rs` (clients, grace, metrics, dead participants), `driver.rs` (the driver: clocks, timers,
//! the library thread or event fd, delivery).

use crate::backend::memory::Table;
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
use crate::table::{check_file_id, check_owner, LeaseAnswer, OpenSpec, Queued};
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
    /// Shared mode's table, when not left to `UNILOCK_SHARED_BACKEND` and the self-test (tests run
    /// a suite over both): `Some("sqlite")` or `Some("shm")`.
    pub shared_table: Option<&'static str>,
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

/// The facade behind one `unilock *` handle: checks arguments, applies the gates that need more than
/// one file (grace, limits, the lease-key map), runs one operation on a file's state through the
/// in-process table or a shared backend, and leaves clocks, timers and delivery to the driver.
pub struct Manager {
    table: Table,
    driver: driver::Driver,
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
    limits: crate::core::limits::Limits,
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
        let with_fds = settings.shared || settings.cluster.is_some();
        let driver = driver::Driver::new(clock, settings.loop_mode, with_fds, settings.callback)?;
        let events = &driver.events;
        let grace_ms = if settings.grace_ms == 0 { crate::defaults::GRACE_PERIOD_MS } else { settings.grace_ms };
        let mut grace = Grace::default();
        let mut shared = None;
        if settings.shared {
            let Some(path) = &settings.db_path else {
                return Err(Error::Invalid("shared mode needs a database path"));
            };
            // The shared-memory table when robust mutexes work here (issue 17), else SQLite's.
            let (sh, rec) = crate::backend::shm::select::open(
                path,
                settings.durability.unwrap_or(Durability::Process),
                settings.shared_table,
            )
            .map_err(|e| {
                log::error!("unilock: cannot join the shared database {path}: {e:?}");
                e
            })?;
            if let Some(fd) = sh.wake_fd() {
                events.add_fd(fd).map_err(|_| Error::Resource("event descriptors"))?;
            }
            if let Some(mut rec) = rec {
                Self::start_recovered_grace(&mut grace, events, &mut rec, grace_ms);
            }
            events.add_timer(events.now_ms() + PROC_CHECK_MS, TimerKind::ProcCheck);
            shared = Some(sh);
        }
        if let Some(c) = &settings.cluster {
            let (b, rec) = crate::backend::etcd::Etcd::open(c, grace_ms).map_err(|e| {
                log::error!("unilock: cannot join cluster {:?} at {}: {e:?}", c.cluster, c.endpoints);
                e
            })?;
            if let Some(fd) = b.wake_fd() {
                events.add_fd(fd).map_err(|_| Error::Resource("event descriptors"))?;
            }
            // A whole-cluster restart, or a host joining during the cluster's grace period.
            if let Some(mut rec) = rec {
                Self::start_recovered_grace(&mut grace, events, &mut rec, grace_ms);
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
                if Self::start_recovered_grace(&mut grace, events, &mut rec, grace_ms) {
                    if let Err(e) = store.set_grace(&rec.clients, grace_ms) {
                        log::warn!("unilock: cannot record the grace period: {}", e.0);
                    }
                }
                Some(store)
            }
        };
        let grace_active = AtomicBool::new(grace.active);
        let limits = crate::core::limits::Limits {
            per_file: settings.max_locks_per_file,
            per_client: settings.max_locks_per_client,
            total: settings.max_locks_total,
        };
        Ok(Manager {
            table: Table::new(store.is_some(), limits.tracking()),
            metrics: crate::metrics::Metrics::default(),
            clients: Mutex::new(crate::clients::Clients::default()),
            limits,
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
            driver,
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
            })
            .map(|r| {
                // The shared-memory table outside SYNC: queued rows wait for the flush timer.
                if sh.has_pending() && !self.flush_armed.swap(true, Ordering::AcqRel) {
                    let now = self.driver.events.now_ms();
                    self.driver.events.add_timer(now.saturating_add(self.batch_ms), TimerKind::Flush);
                }
                r
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
        self.limits.tracking()
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
            self.driver.events.add_timer(self.driver.events.now_ms().saturating_add(self.batch_ms), TimerKind::Flush);
        }
    }

    /// Makes the client's record durable before its first grant (every durability mode).
    fn ensure_client(&self, client: &[u8]) -> Result<()> {
        match &self.store {
            Some(s) => s.ensure_client(client).map_err(|e| Error::Store(e.0)),
            None => Ok(()),
        }
    }

    /// Writes batched changes now.
    pub fn flush(&self) -> Result<()> {
        self.flush_armed.store(false, Ordering::Release);
        if let Some(sh) = &self.shared {
            sh.flush()?;
        }
        match &self.store {
            Some(s) => s.flush().map_err(|e| Error::Store(e.0)),
            None => Ok(()),
        }
    }
}

mod admin;
mod driver;
mod leases;
mod locks;

#[cfg(test)]
mod tests;
