//! Handle life cycle, configuration and versions.

use super::handle::unilock;
use super::status::unilock_status;
use crate::manager::{Manager, Settings};

/// `unilock_config.flags`: shared mode. Every process that opens the same `db_path` with this flag
/// sees and honours one lock table (forking servers such as smbd: open once per process, after
/// fork). Requires `db_path`. The table lives in shared memory (`/dev/shm/unilock-<hash of the
/// database's real path>`, mode 0666) where robust process-shared mutexes pass a self-test at open,
/// else (logged) in the database; the environment variable `UNILOCK_SHARED_BACKEND=shm|sqlite`, read
/// at open, forces one. Every process of one database must use the same: a mismatch fails
/// `unilock_open` with `UNILOCK_E_STORE`. The database stays the durable record in both.
pub const UNILOCK_CONFIG_SHARED: u32 = 0x1;
/// `unilock_config.flags`: the server offers no directory leases (Samba 4.17 offers none): a lease
/// request on a directory (`UNILOCK_OPEN_DIRECTORY`) is answered as a plain open, granted none, and
/// records no lease. By default directory leases (none, R, RH) are offered.
pub const UNILOCK_CONFIG_NO_DIRECTORY_LEASES: u32 = 0x2;
/// `unilock_config.flags`: cluster mode. Every process on every host that opens a handle with this
/// flag, the same `cluster_endpoints` (one etcd cluster) and the same `cluster_name` sees and honours
/// one lock table, kept in etcd (3.4 or later, reached over plain HTTP through its JSON gateway).
/// Each handle registers under an etcd lease of `cluster_ttl_ms`: a process or host that stops
/// renewing it (killed, cut off) is declared dead and its locks, waits, opens and leases are released
/// by the others, as a dead process's are in shared mode. A handle that cannot reach etcd answers
/// `UNILOCK_E_STORE` (and logs why), never a guess; one whose lease expired keeps answering
/// `UNILOCK_E_STORE` (the cluster released its state): close it and open a new one. Not with
/// `UNILOCK_CONFIG_SHARED` nor `db_path`. Open after fork(), as in shared mode.
pub const UNILOCK_CONFIG_CLUSTER: u32 = 0x4;

/// `unilock_config.event_mode`: a library thread runs timers and invokes the event callback.
pub const UNILOCK_EVENTS_THREAD: u32 = 0;
/// `unilock_config.event_mode`: no library thread; the caller polls `unilock_event_fd()` and calls
/// `unilock_process_events()` (event-loop servers, forking servers such as smbd).
pub const UNILOCK_EVENTS_LOOP: u32 = 1;

/// `unilock_config.durability`: every change a call reports as done is committed to the database
/// with `synchronous=FULL` before the call returns. After a process crash or a power loss, everything
/// reported granted is in the database and can be reclaimed. Slowest.
pub const UNILOCK_DURABILITY_SYNC: u32 = 0;
/// Every change is committed (SQLite WAL, `synchronous=NORMAL`) before the call returns. After a
/// process crash everything reported granted is there; after a power loss the last commits before it
/// may be missing. In shared mode on the shared-memory table, lock changes are instead queued in the
/// mapping (tmpfs) before the call returns and committed at most `batch_ms` later by any process of
/// the server (the flush timer, `unilock_close`, or a restart that finds every process dead, which
/// writes them before reading the pre-restart state): a crash of any or every process loses nothing;
/// a power loss may lose the last `batch_ms`. Lease changes are queued the same way, except those
/// that grant or remove an SMB lease, which are committed in the call.
pub const UNILOCK_DURABILITY_PROCESS: u32 = 1;
/// Changes are coalesced in memory (a lock and its unlock cancel out and are never written) and
/// committed at most `batch_ms` later, by the library thread or by `unilock_process_events` (the
/// event fd becomes readable when a batch is due), and at `unilock_close`. After a crash, changes of
/// the last `batch_ms` (or since the host last ran its event loop) may be missing. Client records
/// are still written before a client's first grant. In shared mode on the shared-memory table this
/// mode is `UNILOCK_DURABILITY_PROCESS` (its lock changes are queued in the mapping, which survives
/// the crash of a process); on the database table every operation is its own transaction, so this
/// mode behaves as `UNILOCK_DURABILITY_PROCESS` there too.
pub const UNILOCK_DURABILITY_BATCH: u32 = 2;

/// Configuration for `unilock_open`.
///
/// Always initialise with `unilock_config_init`, which sets `size` and every default, then change the
/// fields you need. The library reads only the first `size` bytes, so a program built against an older
/// header keeps working with a newer library.
#[repr(C)]
pub struct unilock_config {
    /// `sizeof(unilock_config)` as the caller was compiled with; set by `unilock_config_init`.
    pub size: usize,
    /// `UNILOCK_CONFIG_*` flags (0 by default); other bits are reserved and must be 0.
    pub flags: u32,
    /// How timers run and events are delivered: `UNILOCK_EVENTS_THREAD` (default) or
    /// `UNILOCK_EVENTS_LOOP`.
    pub event_mode: u32,
    /// Receives every event (blocking-lock completions, watches). May be NULL: events are then
    /// settled and dropped. Invoked with no internal lock held, on the library thread
    /// (`UNILOCK_EVENTS_THREAD`) or inside `unilock_process_events` (`UNILOCK_EVENTS_LOOP`).
    pub event_fn: super::events::unilock_event_fn,
    /// Passed unchanged as the first argument of `event_fn`.
    pub event_user_data: *mut libc::c_void,
    /// Default lease break timeout in milliseconds: a break not acknowledged in time leaves the lease
    /// at none and the holder gets `UNILOCK_EVENT_LEASE_REVOKED`. Default 35000 (Windows' value); an
    /// open may ask for its own (`unilock_open_req.break_timeout_ms`, e.g. one NFS lease period).
    /// `UINT64_MAX` (here or per open) means a break never times out.
    pub lease_break_timeout_ms: u64,
    /// Path of the SQLite database, NUL-terminated; NULL (default) keeps state in memory only, with
    /// no recovery. Read during `unilock_open` only. The database and its `-wal` and `-shm` files are
    /// created and opened inside `unilock_open`, never later (hosts that switch uid after opening,
    /// such as Samba, keep working). A database holding state from a previous run starts a grace
    /// period.
    pub db_path: *const libc::c_char,
    /// `UNILOCK_DURABILITY_*` (default `UNILOCK_DURABILITY_SYNC`).
    pub durability: u32,
    /// Grace period after a restart, ms (default 90000, shared by all protocols).
    pub grace_period_ms: u64,
    /// `UNILOCK_DURABILITY_BATCH`: the longest a change waits before it is written, ms (default 10).
    /// `UINT64_MAX`: no timer; batches are written only by `unilock_flush` and `unilock_close`.
    pub batch_ms: u64,
    /// Most locks one file may hold (0 = unlimited, the default). A lock request on a file that
    /// already holds this many is refused with `UNILOCK_E_LIMIT`.
    pub max_locks_per_file: u64,
    /// Most locks one client may hold over all files (0 = unlimited, the default).
    pub max_locks_per_client: u64,
    /// Most locks in total (0 = unlimited, the default). Every value up to `UINT64_MAX` is a real limit.
    pub max_locks_total: u64,
    /// `UNILOCK_CONFIG_CLUSTER`: the etcd members' client URLs, comma-separated, NUL-terminated, e.g.
    /// `"http://10.0.0.1:2379,http://10.0.0.2:2379"` (plain HTTP; no TLS). Read during `unilock_open`.
    pub cluster_endpoints: *const libc::c_char,
    /// `UNILOCK_CONFIG_CLUSTER`: the cluster's name, the prefix of its keys in etcd (several clusters
    /// may share one etcd), NUL-terminated. Every host of one cluster uses the same name.
    pub cluster_name: *const libc::c_char,
    /// `UNILOCK_CONFIG_CLUSTER`: this host's name, NUL-terminated (logs and tools); NULL: the host
    /// name from uname.
    pub cluster_host: *const libc::c_char,
    /// `UNILOCK_CONFIG_CLUSTER`: the lease TTL, ms (default 10000, rounded up to whole seconds, at
    /// least 2 s): a handle whose process or host stops renewing its lease this long is dead to the
    /// others, which release its state within about one second more.
    pub cluster_ttl_ms: u64,
}

impl Default for unilock_config {
    fn default() -> Self {
        unilock_config {
            size: std::mem::size_of::<unilock_config>(),
            flags: 0,
            event_mode: UNILOCK_EVENTS_THREAD,
            event_fn: None,
            event_user_data: std::ptr::null_mut(),
            lease_break_timeout_ms: crate::defaults::LEASE_BREAK_TIMEOUT_MS,
            db_path: std::ptr::null(),
            durability: UNILOCK_DURABILITY_SYNC,
            grace_period_ms: crate::defaults::GRACE_PERIOD_MS,
            batch_ms: crate::defaults::BATCH_MS,
            max_locks_per_file: 0,
            max_locks_per_client: 0,
            max_locks_total: 0,
            cluster_endpoints: std::ptr::null(),
            cluster_name: std::ptr::null(),
            cluster_host: std::ptr::null(),
            cluster_ttl_ms: crate::defaults::CLUSTER_TTL_MS,
        }
    }
}

/// Fills `*cfg` with the defaults and sets `cfg->size`.
///
/// Defaults: `flags` 0; `event_mode` `UNILOCK_EVENTS_THREAD`; `event_fn` NULL; `event_user_data`
/// NULL; `lease_break_timeout_ms` 35000; `db_path` NULL (in memory); `durability`
/// `UNILOCK_DURABILITY_SYNC`; `grace_period_ms` 90000; `batch_ms` 10; `max_locks_per_file`,
/// `max_locks_per_client`, `max_locks_total` 0 (unlimited); `cluster_endpoints`, `cluster_name`,
/// `cluster_host` NULL; `cluster_ttl_ms` 10000. Passing NULL does nothing. Thread-safe.
#[no_mangle]
pub extern "C" fn unilock_config_init(cfg: *mut unilock_config) {
    boundary! {
        super::boundary::put(cfg, unilock_config::default());
    }
}

/// The end of one field of `unilock_config`: a size a caller's struct may have.
macro_rules! field_end {
    ($f:ident: $t:ty) => {
        std::mem::offset_of!(unilock_config, $f) + std::mem::size_of::<$t>()
    };
}

/// Every size a caller's `unilock_config` may have: the end of each field, in order (a struct of an
/// older header stops after one of them). A field appended later adds its line here. A size that
/// ends inside a field (half a pointer) is refused.
const FIELD_ENDS: &[usize] = &[
    field_end!(size: usize),
    field_end!(flags: u32),
    field_end!(event_mode: u32),
    field_end!(event_fn: super::events::unilock_event_fn),
    field_end!(event_user_data: *mut libc::c_void),
    field_end!(lease_break_timeout_ms: u64),
    field_end!(db_path: *const libc::c_char),
    field_end!(durability: u32),
    field_end!(grace_period_ms: u64),
    field_end!(batch_ms: u64),
    field_end!(max_locks_per_file: u64),
    field_end!(max_locks_per_client: u64),
    field_end!(max_locks_total: u64),
    field_end!(cluster_endpoints: *const libc::c_char),
    field_end!(cluster_name: *const libc::c_char),
    field_end!(cluster_host: *const libc::c_char),
    field_end!(cluster_ttl_ms: u64),
];

/// The largest `size` accepted from a newer caller (whose extra fields must be zero).
const CONFIG_SIZE_MAX: usize = 1 << 16;

/// Whether `size` is one a caller's struct can have: a field end, or a field end padded to the next
/// field's alignment (which is how `sizeof` rounds a struct that stops there), or our whole size.
fn size_known(size: usize) -> bool {
    let ours = std::mem::size_of::<unilock_config>();
    let align = std::mem::align_of::<unilock_config>();
    size == ours || FIELD_ENDS.iter().any(|&end| size == end || size == end.next_multiple_of(align))
}

/// Reads a caller's config honouring its `size`: known fields beyond it keep their defaults; bytes
/// beyond our struct must be zero (a newer caller asking for something this library cannot do).
fn read_config(cfg: &unilock_config) -> Result<unilock_config, &'static str> {
    let ours = std::mem::size_of::<unilock_config>();
    let theirs = cfg.size;
    if theirs < std::mem::size_of::<usize>() {
        return Err("config size too small: call unilock_config_init");
    }
    if theirs < ours && !size_known(theirs) {
        return Err("config size ends inside a field: call unilock_config_init");
    }
    // A newer caller's fields past ours are only checked to be zero; a size no struct can have
    // (SIZE_MAX) must not reach a slice over more than isize::MAX bytes.
    if theirs > CONFIG_SIZE_MAX {
        return Err("config size larger than any unilock_config: call unilock_config_init");
    }
    let mut out = unilock_config::default();
    let n = theirs.min(ours);
    // SAFETY: the caller promises `size` readable bytes at `cfg`; we copy at most our own size, and
    // `n` ends on a field boundary, so no pointer is copied in part.
    unsafe {
        std::ptr::copy_nonoverlapping(cfg as *const _ as *const u8, &mut out as *mut _ as *mut u8, n);
        if theirs > ours {
            let extra = std::slice::from_raw_parts((cfg as *const _ as *const u8).add(ours), theirs - ours);
            if extra.iter().any(|&b| b != 0) {
                return Err("config has fields this library does not know");
            }
        }
    }
    out.size = ours;
    Ok(out)
}

/// Opens a lock manager.
///
/// `cfg`: configuration made with `unilock_config_init`, or NULL for all defaults; read only during
/// the call. `out`: receives the new handle on success; untouched on failure.
///
/// Returns `UNILOCK_OK`; `UNILOCK_E_INVALID` if `out` is NULL, `cfg->size` is too small or ends inside
/// a field (only sizes that end where one of the fields above ends are accepted), or `cfg` sets
/// fields, flags or an event mode this library does not know; `UNILOCK_E_RESOURCE` if the event
/// descriptors (loop mode) or the library thread (thread mode) cannot be created; `UNILOCK_E_STORE`
/// if the database cannot be opened, is not a database, is truncated or corrupt, belongs to another
/// application (its `PRAGMA application_id`, or tables without unilock's schema version), has tables
/// or rows unlike unilock's, has a negative or newer schema version, or is read-only. A refused file
/// is left untouched byte for byte and no `-wal`, `-shm` or other file is created next to it;
/// `unilock_errdetail()` says why. A database this library accepts is marked with its application
/// id ("ULK1").
///
/// The handle is thread-safe: any number of threads may call into it at once. Free it with
/// `unilock_close`. In `UNILOCK_EVENTS_LOOP` mode the library starts no thread at all.
#[no_mangle]
pub extern "C" fn unilock_open(cfg: *const unilock_config, out: *mut *mut unilock) -> unilock_status {
    boundary! {
        if out.is_null() {
            return unilock_status::UNILOCK_E_INVALID;
        }
        let cfg = match unsafe { cfg.as_ref() } {
            Some(c) => match read_config(c) {
                Ok(c) => c,
                Err(why) => {
                    log::warn!("unilock_open: {why}");
                    super::status::set_detail(why);
                    return unilock_status::UNILOCK_E_INVALID;
                }
            },
            None => unilock_config::default(),
        };
        if cfg.flags & !(UNILOCK_CONFIG_SHARED | UNILOCK_CONFIG_NO_DIRECTORY_LEASES | UNILOCK_CONFIG_CLUSTER) != 0 {
            log::warn!("unilock_open: unknown flags {:#x}", cfg.flags);
            return unilock_status::UNILOCK_E_INVALID;
        }
        let loop_mode = match cfg.event_mode {
            UNILOCK_EVENTS_THREAD => false,
            UNILOCK_EVENTS_LOOP => true,
            _ => return unilock_status::UNILOCK_E_INVALID,
        };
        let durability = match cfg.durability {
            UNILOCK_DURABILITY_SYNC => crate::store::Durability::Sync,
            UNILOCK_DURABILITY_PROCESS => crate::store::Durability::Process,
            UNILOCK_DURABILITY_BATCH => crate::store::Durability::Batch,
            _ => return unilock_status::UNILOCK_E_INVALID,
        };
        let db_path = if cfg.db_path.is_null() {
            None
        } else {
            // SAFETY: the caller promises a NUL-terminated path valid during the call.
            match unsafe { std::ffi::CStr::from_ptr(cfg.db_path) }.to_str() {
                Ok(p) if !p.is_empty() => Some(p.to_owned()),
                _ => return unilock_status::UNILOCK_E_INVALID,
            }
        };
        let cluster = match cluster_of(&cfg, db_path.is_some()) {
            Ok(c) => c,
            Err(why) => {
                log::warn!("unilock_open: {why}");
                super::status::set_detail(why);
                return unilock_status::UNILOCK_E_INVALID;
            }
        };
        let settings = Settings {
            cluster,
            shared: cfg.flags & UNILOCK_CONFIG_SHARED != 0,
            shared_table: None,
            no_dir_leases: cfg.flags & UNILOCK_CONFIG_NO_DIRECTORY_LEASES != 0,
            loop_mode,
            clock: None,
            db_path,
            durability: Some(durability),
            grace_ms: cfg.grace_period_ms,
            batch_ms: cfg.batch_ms,
            max_locks_per_file: cfg.max_locks_per_file,
            max_locks_per_client: cfg.max_locks_per_client,
            max_locks_total: cfg.max_locks_total,
            break_timeout_ms: cfg.lease_break_timeout_ms,
            callback: super::events::callback(cfg.event_fn, cfg.event_user_data),
        };
        let m = match Manager::new(settings) {
            Ok(m) => std::sync::Arc::new(m),
            Err(e) => return super::status::status_of(&e),
        };
        let thread = if loop_mode {
            None
        } else {
            match m.start_thread() {
                Ok(t) => Some(t),
                Err(e) => return super::status::status_of(&e),
            }
        };
        let owner_pid = (cfg.flags & (UNILOCK_CONFIG_SHARED | UNILOCK_CONFIG_CLUSTER) != 0).then(super::handle::this_process);
        let handle = Box::new(unilock { inner: m, thread, owner_pid });
        log::info!("unilock {} opened", env!("CARGO_PKG_VERSION"));
        super::boundary::put(out, Box::into_raw(handle));
        unilock_status::UNILOCK_OK
    }
}

/// The cluster settings of a config (`None` without `UNILOCK_CONFIG_CLUSTER`).
fn cluster_of(cfg: &unilock_config, db: bool) -> Result<Option<crate::backend::etcd::EtcdConfig>, &'static str> {
    if cfg.flags & UNILOCK_CONFIG_CLUSTER == 0 {
        return Ok(None);
    }
    if cfg.flags & UNILOCK_CONFIG_SHARED != 0 || db {
        return Err("cluster mode takes neither UNILOCK_CONFIG_SHARED nor db_path");
    }
    let text = |p: *const libc::c_char, what: &'static str| -> Result<Option<String>, &'static str> {
        if p.is_null() {
            return Ok(None);
        }
        // SAFETY: the caller promises a NUL-terminated string valid during the call.
        match unsafe { std::ffi::CStr::from_ptr(p) }.to_str() {
            Ok(s) if !s.is_empty() => Ok(Some(s.to_owned())),
            _ => Err(what),
        }
    };
    let endpoints = text(cfg.cluster_endpoints, "cluster_endpoints is empty or not UTF-8")?
        .ok_or("cluster mode needs cluster_endpoints")?;
    let cluster =
        text(cfg.cluster_name, "cluster_name is empty or not UTF-8")?.ok_or("cluster mode needs cluster_name")?;
    let host = match text(cfg.cluster_host, "cluster_host is empty or not UTF-8")? {
        Some(h) => h,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default(),
    };
    if host.contains('\n') {
        return Err("cluster_host has a newline");
    }
    let ttl_ms = if cfg.cluster_ttl_ms == 0 { crate::defaults::CLUSTER_TTL_MS } else { cfg.cluster_ttl_ms };
    if ttl_ms > 3_600_000 {
        return Err("cluster_ttl_ms is over an hour");
    }
    Ok(Some(crate::backend::etcd::EtcdConfig { endpoints, cluster, host, ttl_ms }))
}

/// Closes a lock manager and frees everything it holds.
///
/// All locks and waiting requests of the handle are dropped; events not yet delivered are discarded
/// (their `user_data` is not used). In thread mode the library thread is stopped and joined first.
/// `ul` may be NULL (nothing happens). The caller must ensure no other thread is using `ul`, must not
/// call this from an event callback, and must not use `ul` afterwards.
#[no_mangle]
pub extern "C" fn unilock_close(ul: *mut unilock) {
    boundary! {
        if !ul.is_null() {
            // SAFETY: `ul` came from `unilock_open` and the caller gives up every use of it.
            let mut h = unsafe { Box::from_raw(ul) };
            if !h.usable() {
                // A child closing its copy of the parent's handle: free memory only; the parent's
                // thread, descriptors and shared state are not the child's to touch.
                std::mem::forget(h);
                return;
            }
            if let Some(t) = h.thread.take() {
                h.inner.stop_thread();
                let _ = t.join();
            }
            h.inner.leave();
            drop(h);
        }
    }
}

/// The library version as a static string, e.g. "0.1.0" (compare `UNILOCK_VERSION`).
#[no_mangle]
pub extern "C" fn unilock_libversion() -> *const libc::c_char {
    boundary! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const libc::c_char
    }
}

/// The library version as X*1000000 + Y*1000 + Z (compare `UNILOCK_VERSION_NUMBER`).
#[no_mangle]
pub extern "C" fn unilock_libversion_number() -> i32 {
    boundary! {
        let p = |s: &str| s.parse::<i32>().unwrap_or(0);
        p(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
            + p(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
            + p(env!("CARGO_PKG_VERSION_PATCH"))
    }
}

/// Builds the canonical file id of a file from its identity on disk, so that every protocol adapter
/// (an SMB server using `st_dev`/`st_ino`, an NFS server using fsid/fileid) names one file with the
/// same bytes.
///
/// Encoding (`UNILOCK_FILE_ID_CANONICAL_LEN` = 25 bytes): byte 0 is the encoding version 0x01, then
/// `dev_or_fsid`, `inode` and `generation`, each as a big-endian 64-bit number. Use generation 0 when
/// the file system has none.
///
/// `out`: receives exactly 25 bytes. Returns `UNILOCK_OK`, or `UNILOCK_E_INVALID` if `out` is NULL.
#[no_mangle]
pub extern "C" fn unilock_file_id_make(dev_or_fsid: u64, inode: u64, generation: u64, out: *mut u8) -> unilock_status {
    boundary! {
        if out.is_null() {
            return unilock_status::UNILOCK_E_INVALID;
        }
        let mut b = [0u8; 25];
        b[0] = 1;
        b[1..9].copy_from_slice(&dev_or_fsid.to_be_bytes());
        b[9..17].copy_from_slice(&inode.to_be_bytes());
        b[17..25].copy_from_slice(&generation.to_be_bytes());
        // SAFETY: the caller provides 25 writable bytes at `out`.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), out, b.len()) };
        unilock_status::UNILOCK_OK
    }
}

/// For tests of the panic boundary: panics inside the library and returns `UNILOCK_E_INTERNAL`.
/// Has no other effect (it would return `UNILOCK_OK` only if it did not panic, which it always does).
#[no_mangle]
pub extern "C" fn unilock_debug_panic() -> unilock_status {
    boundary! {
        if std::hint::black_box(true) {
            panic!("unilock_debug_panic");
        }
        unilock_status::UNILOCK_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sizes_end_on_field_boundaries() {
        let ours = std::mem::size_of::<unilock_config>();
        assert_eq!(*FIELD_ENDS.last().unwrap(), ours, "FIELD_ENDS must list every field");
        for s in [8, 12, 16, 24, 32, 40, 48, 52, 56, 64, 72, 80, 88, 96] {
            assert!(size_known(s), "size {s}");
        }
        // Inside event_fn, event_user_data, db_path and the u64 fields.
        for s in [20, 28, 36, 44, 60, 92] {
            assert!(!size_known(s), "size {s}");
        }
        let mut c = unilock_config::default();
        for s in [20, 44] {
            c.size = s;
            assert!(read_config(&c).is_err(), "size {s}");
        }
        c.size = usize::MAX;
        assert!(read_config(&c).is_err());
    }
}
