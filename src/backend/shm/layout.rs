//! The mapping's layout: one file per database (`/dev/shm/unilock-<FNV-1a 64 of the canonical
//! database path, 16 hex digits>`, mode 0666 so every smbd process can use it whatever its euid),
//! sized once at creation (a sparse tmpfs file: pages cost memory only when touched) and mapped
//! once, whole, by each process: growth never needs a remap or a new permission.
//!
//! ```text
//! 0               header page: magic, layout version, sizeof/alignof(pthread_mutex_t), partition
//!                 count and sizes, instance epoch, boot id, state; the graph mutex at GRAPH_MUTEX
//! PARTS           NPART partition pages: a robust process-shared mutex, the intent slot, the
//!                 allocator's bump offset and free lists, the write-behind queue, NBUCKET bucket
//!                 heads
//! MAILSEQ         MAILSEQ_SLOTS counters: "mail was put in SQLite's mailbox for process p" (slot
//!                 p % MAILSEQ_SLOTS; the fallback of the mail slots below)
//! HEAP            NPART heaps of HEAP_PER_PART bytes, each only ever used under its partition's mutex
//! MAIL            NSLOT mail slots of SLOT_BYTES (see `mail`): a header (a robust process-shared
//!                 mutex, the owner process, head/tail of the ring, the slot's intent, the last
//!                 intent of each partition posted here) and a byte ring of RING_BYTES
//! ```
//! Every reference is an offset from the start of the mapping (never a pointer), and the mutexes are
//! in pages that are mapped once and never moved (glibc's robust list holds their addresses).

use std::sync::atomic::{AtomicU64, Ordering};

/// "ULKSHM01" little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ULKSHM01");
/// Bumped whenever anything below changes meaning.
pub const LAYOUT_VERSION: u32 = 3;
pub const PAGE: u64 = 4096;
pub const NPART: u64 = 64;
pub const NBUCKET: u64 = 256;
pub const MAILSEQ_SLOTS: u64 = 4096;
pub const HEAP_PER_PART: u64 = 4 << 20;

pub const PARTS: u64 = PAGE;
pub const MAILSEQ: u64 = PARTS + NPART * PAGE;
pub const HEAP: u64 = MAILSEQ + MAILSEQ_SLOTS * 8;
pub const MAIL: u64 = HEAP + NPART * HEAP_PER_PART;
/// Mail slots: process `p` owns slot `p % NSLOT` (when no other live process does).
pub const NSLOT: u64 = 1024;
pub const SLOT_BYTES: u64 = 64 << 10;
/// The slot header; the ring takes the rest of the slot.
pub const SLOT_HDR: u64 = 1024;
pub const RING_BYTES: u64 = SLOT_BYTES - SLOT_HDR;
/// The whole mapping (sparse: 256 MiB of heap and 64 MiB of mail slots reserved, touched as used).
pub const TOTAL: u64 = MAIL + NSLOT * SLOT_BYTES;

// Header fields (offsets in the header page).
pub const H_MAGIC: u64 = 0;
pub const H_VERSION: u64 = 8; // u32 layout version | u32 mutex size
pub const H_MUTEX_ALIGN: u64 = 16; // u32 align | u32 partitions
pub const H_TOTAL: u64 = 24;
pub const H_HEAP_PER_PART: u64 = 32;
pub const H_EPOCH: u64 = 40;
/// 0: being built; READY: usable; POISONED: refused until rebuilt.
pub const H_STATE: u64 = 48;
pub const H_BOOT: u64 = 64; // 40 bytes: the boot id, NUL padded
pub const GRAPH_MUTEX: u64 = 1024;

pub const STATE_READY: u64 = 1;
pub const STATE_POISONED: u64 = 2;

// Partition fields (offsets in a partition page).
pub const P_MUTEX: u64 = 0;
/// The partition's operation counter (the intent's sequence number).
pub const P_SEQ: u64 = 64;
/// 0: no intent; 1: an intent is prepared and must be rolled forward by whoever finds it.
pub const P_INTENT: u64 = 72;
/// Where the intent's publishing store goes (an offset of a bucket head or a record's `next`).
pub const P_I_LINK: u64 = 80;
/// The value it stores: the new record, or the removed record's `next`.
pub const P_I_VALUE: u64 = 88;
/// The record replaced or removed (freed once the intent is done), 0 if none.
pub const P_I_OLD: u64 = 96;
/// A block with the operation's database work (journal, mail, wait edges), 0 if none.
pub const P_I_AUX: u64 = 104;
pub const P_I_SEQ: u64 = 112;
pub const P_BUMP: u64 = 120;
/// Free list heads, one per size class.
pub const P_FREE: u64 = 128;
pub const NCLASS: u64 = 17; // 64 B << 0..=16 (4 MiB)
/// 1: the intent's lock rows go to the write-behind queue (its process's durability is not SYNC).
pub const P_I_QUEUE: u64 = 272;
/// The write-behind queue (`queue`): head and tail blocks (empty when the tail is 0), and a count.
pub const P_Q_HEAD: u64 = 280;
pub const P_Q_TAIL: u64 = 288;
pub const P_Q_COUNT: u64 = 296;
pub const P_BUCKETS: u64 = 512;

// Record fields (offsets in a record block). Records are never changed once published.
pub const R_NEXT: u64 = 0;
pub const R_HASH: u64 = 8;
pub const R_CLASS: u64 = 16; // u32 size class | u32 file length
pub const R_STATE_LEN: u64 = 24; // u32 state length | u32 number of processes
pub const R_BODY: u64 = 32; // procs (u64 each), file bytes, state bytes

// Mail slot fields (offsets in a slot).
pub const S_MUTEX: u64 = 0;
/// The instance epoch once the slot's mutex is initialised (slots are set up when first claimed).
pub const S_READY: u64 = 64;
/// The process whose mail goes into the ring (0: none).
pub const S_OWNER: u64 = 72;
/// Bytes ever read from / written to the ring (positions are taken modulo RING_BYTES).
pub const S_HEAD: u64 = 80;
pub const S_TAIL: u64 = 88;
/// The slot's intent: 1 while a post's bytes are written past the tail and its new tail and applied
/// word are recorded below (the next locker finishing it on EOWNERDEAD).
pub const S_INTENT: u64 = 96;
pub const S_I_TAIL: u64 = 104;
pub const S_I_PART: u64 = 112;
pub const S_I_APPLIED: u64 = 120;
/// 1 while the owner's mail goes to SQLite (its ring was full; kept until it has read SQLite, so
/// that its mail keeps its order).
pub const S_STICKY: u64 = 128;
/// Counts the owner's mail sent to SQLite (tells the reader whether more came while it read).
pub const S_FB_COUNT: u64 = 136;
/// NPART words: the last intent (partition sequence number) of each partition posted here, with
/// the fallback bits of `mail`.
pub const S_APPLIED: u64 = 256;

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= 64);
const _: () = assert!(P_FREE + NCLASS * 8 <= P_I_QUEUE && P_Q_COUNT + 8 <= P_BUCKETS);
const _: () = assert!(P_BUCKETS + NBUCKET * 8 <= PAGE);
const _: () = assert!(S_APPLIED + NPART * 8 <= SLOT_HDR && SLOT_BYTES % PAGE == 0);

pub fn part_off(p: u64) -> u64 {
    PARTS + p * PAGE
}

pub fn slot_off(s: u64) -> u64 {
    MAIL + s * SLOT_BYTES
}

pub fn heap_start(p: u64) -> u64 {
    HEAP + p * HEAP_PER_PART
}

/// FNV-1a, 64 bits: the mapping's name from the database path, and a file's hash.
pub fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The mapping of a database: `/dev/shm/unilock-<hash>` (`UNILOCK_SHM_DIR` replaces `/dev/shm`).
pub fn mapping_path(db_path: &str) -> Result<std::path::PathBuf, String> {
    let canon = std::fs::canonicalize(db_path).map_err(|e| format!("cannot resolve {db_path}: {e}"))?;
    let dir = std::env::var("UNILOCK_SHM_DIR").unwrap_or_else(|_| "/dev/shm".into());
    use std::os::unix::ffi::OsStrExt;
    Ok(std::path::Path::new(&dir).join(format!("unilock-{:016x}", fnv1a(canon.as_os_str().as_bytes()))))
}

/// The whole mapping, mapped once. Accessors take offsets; every shared word is read and written
/// atomically.
pub struct Map {
    _raw: memmap2::MmapRaw,
    base: *mut u8,
    len: u64,
}

// SAFETY: the mapping is shared memory accessed through atomics and under the partition mutexes.
unsafe impl Send for Map {}
unsafe impl Sync for Map {}

impl Map {
    pub fn new(file: &std::fs::File) -> Result<Map, String> {
        let raw = memmap2::MmapOptions::new()
            .len(TOTAL as usize)
            .map_raw(file)
            .map_err(|e| format!("cannot map the shared-memory table: {e}"))?;
        let base = raw.as_mut_ptr();
        Ok(Map { _raw: raw, base, len: TOTAL })
    }

    pub fn word(&self, off: u64) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len, "offset {off} outside the mapping");
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`.
        unsafe { &*(self.base.add(off as usize) as *const AtomicU64) }
    }

    pub fn get(&self, off: u64) -> u64 {
        self.word(off).load(Ordering::Acquire)
    }

    pub fn set(&self, off: u64, v: u64) {
        self.word(off).store(v, Ordering::Release)
    }

    /// `n` bytes at `off`, bounds-checked (a corrupt length is an error, never a wild read).
    pub fn bytes(&self, off: u64, n: u64) -> Option<&[u8]> {
        if off.checked_add(n)? > self.len {
            return None;
        }
        // SAFETY: in bounds; callers read records that are immutable once published.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(off as usize), n as usize) })
    }

    /// Writes into a block this process allocated and has not published yet.
    pub fn write(&self, off: u64, b: &[u8]) {
        assert!(off + b.len() as u64 <= self.len);
        // SAFETY: in bounds; the block is private to the caller until published.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.base.add(off as usize), b.len()) }
    }

    pub fn mutex(&self, off: u64) -> *mut libc::pthread_mutex_t {
        assert!(off % 64 == 0 && off + 64 <= self.len);
        // SAFETY: in bounds.
        unsafe { self.base.add(off as usize) as *mut libc::pthread_mutex_t }
    }

    /// Zeroes `n` bytes at `off` (initialisation only, with every other process kept out).
    pub fn zero(&self, off: u64, n: u64) {
        assert!(off + n <= self.len);
        // SAFETY: in bounds.
        unsafe { std::ptr::write_bytes(self.base.add(off as usize), 0, n as usize) }
    }
}

/// What a header check found.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    Ok,
    /// Why the mapping cannot be trusted.
    Bad(String),
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn boot_bytes(boot: &str) -> [u8; 40] {
    let mut b = [0u8; 40];
    let n = boot.len().min(40);
    b[..n].copy_from_slice(&boot.as_bytes()[..n]);
    b
}

/// Checks a mapped header against this library and this boot, and against `epoch` when given (the
/// instance the database says is running).
pub fn check_header(m: &Map, file_len: u64, epoch: Option<u64>) -> HeaderCheck {
    if file_len < TOTAL {
        return HeaderCheck::Bad(format!("the mapping file is truncated ({file_len} bytes, {TOTAL} expected)"));
    }
    if m.get(H_MAGIC) != MAGIC {
        return HeaderCheck::Bad("the mapping file is not a unilock shared-memory table (bad magic)".into());
    }
    let v = m.get(H_VERSION);
    let (version, msize) = (v as u32, (v >> 32) as u32);
    if version != LAYOUT_VERSION {
        return HeaderCheck::Bad(format!(
            "the mapping has layout version {version}, this library uses {LAYOUT_VERSION}"
        ));
    }
    let a = m.get(H_MUTEX_ALIGN);
    let (align, parts) = (a as u32, (a >> 32) as u32);
    if msize as usize != std::mem::size_of::<libc::pthread_mutex_t>()
        || align as usize != std::mem::align_of::<libc::pthread_mutex_t>()
    {
        return HeaderCheck::Bad(format!(
            "the mapping's pthread_mutex_t is {msize} bytes aligned {align}, this library's is {} aligned {}",
            std::mem::size_of::<libc::pthread_mutex_t>(),
            std::mem::align_of::<libc::pthread_mutex_t>()
        ));
    }
    if parts as u64 != NPART || m.get(H_TOTAL) != TOTAL || m.get(H_HEAP_PER_PART) != HEAP_PER_PART {
        return HeaderCheck::Bad("the mapping's sizes are not this library's".into());
    }
    let boot = m.bytes(H_BOOT, 40).map(|b| b.to_vec()).unwrap_or_default();
    if boot != boot_bytes(&boot_id()) {
        return HeaderCheck::Bad("the mapping is from an older boot".into());
    }
    match m.get(H_STATE) {
        STATE_READY => {}
        STATE_POISONED => return HeaderCheck::Bad("the mapping is marked poisoned".into()),
        s => return HeaderCheck::Bad(format!("the mapping was never finished (state {s})")),
    }
    if let Some(e) = epoch {
        if m.get(H_EPOCH) != e {
            return HeaderCheck::Bad(format!(
                "the mapping is instance {:#x}, the database's running instance is {e:#x}",
                m.get(H_EPOCH)
            ));
        }
    }
    HeaderCheck::Ok
}

/// Builds a fresh table in the mapping (every other process kept out by the caller).
pub fn build(m: &Map, epoch: u64) -> Result<(), String> {
    m.set(H_STATE, 0);
    m.set(H_MAGIC, 0);
    m.zero(0, PAGE);
    for p in 0..NPART {
        let o = part_off(p);
        m.zero(o, PAGE);
        // SAFETY: the page is ours alone while the table is built.
        unsafe { super::mutex::init(m.mutex(o + P_MUTEX))? };
        m.set(o + P_BUMP, heap_start(p));
    }
    m.zero(MAILSEQ, MAILSEQ_SLOTS * 8);
    // SAFETY: as above.
    unsafe { super::mutex::init(m.mutex(GRAPH_MUTEX))? };
    m.set(H_VERSION, LAYOUT_VERSION as u64 | ((std::mem::size_of::<libc::pthread_mutex_t>() as u64) << 32));
    m.set(H_MUTEX_ALIGN, std::mem::align_of::<libc::pthread_mutex_t>() as u64 | (NPART << 32));
    m.set(H_TOTAL, TOTAL);
    m.set(H_HEAP_PER_PART, HEAP_PER_PART);
    m.set(H_EPOCH, epoch);
    m.write(H_BOOT, &boot_bytes(&boot_id()));
    m.set(H_MAGIC, MAGIC);
    m.set(H_STATE, STATE_READY);
    Ok(())
}
