#![cfg(target_os = "linux")]
//! Differential test: unilock's POSIX flavour against the Linux kernel's OFD locks (STYLE.md §8,
//! SPEC.md §3 "POSIX flavour", reference Linux `fs/locks.c`).
//!
//! # Method
//!
//! Each run (one seed) creates a file on a tmpfs (`/dev/shm`, else `std::env::temp_dir()`) and opens it
//! once per POSIX owner: every `open()` is its own open file description, which is what owns an OFD
//! lock. The same owners exist in a fresh `Manager` as `OwnerRef { client: "kdiff", owner: [i] }`. A
//! seeded PRNG (splitmix64, no dependency) generates operations over a small domain (offsets below 16 or
//! 64, lengths 1..=16, and per seed between one in 4 and one in 15 ranges "to EOF": kernel `l_len = 0`,
//! unilock `UNILOCK_TO_EOF`), applied to both:
//!
//! * `Lock`   — `F_OFD_SETLK` (F_RDLCK/F_WRLCK) vs `Manager::lock`: granted must equal granted; a kernel
//!   `EAGAIN`/`EACCES` must be unilock `Error::Conflict`, and the holder unilock names must be a lock it
//!   holds, of another owner, overlapping the request, with at least one of the two exclusive.
//! * `Unlock` — `F_OFD_SETLK` with `F_UNLCK` vs `Manager::unlock` (both always succeed).
//! * `Test`   — `F_OFD_GETLK` vs `Manager::test`: conflict or not must agree. When both report one, each
//!   report is checked on its own (they may legitimately name different locks among several): the
//!   kernel's reported lock must be exactly one of another owner's current locks and conflict with the
//!   request; unilock's holder likewise (owner, type and range checked against its lock list).
//! * `Close`  — `close()` of the owner's description (which drops all its OFD locks) and a fresh
//!   `open()` for it, vs `Manager::release_open`.
//!
//! **Reading back each owner's lock set.** `/proc/locks` shows OFD locks with pid -1 and no owner, and
//! `F_OFD_GETLK` probes only ever report one conflicting lock, so with several shared holders on a byte
//! neither can tell *which* descriptions hold it. The kernel does expose exactly this per description in
//! `/proc/self/fdinfo/<fd>`: since Linux 4.1 (`show_fd_locks` in `fs/locks.c`) that file lists, as
//! `lock:` lines in the `/proc/locks` format, the locks whose `fl_file` is that open file description
//! (for OFD locks also `fl_owner == filp`), i.e. precisely that owner's locks, with type and inclusive
//! range (`EOF` = `OFFSET_MAX`). After every operation the test reads every owner's fdinfo and compares
//! the owner's kernel lock list, exactly (same ranges, same split/merge result, same types; kernel
//! `EOF` = unilock `UNILOCK_TO_EOF`), with that owner's locks in `Manager::list`. A mismatch is also
//! classified as "same bytes, different split" or "different bytes" to ease diagnosis. As an
//! independent cross-check of the fdinfo reading, every `CROSSCHECK_EVERY` operations (and after the
//! last) each byte 0..96 and three far bytes of the to-EOF tail are probed with `F_OFD_GETLK` (read and
//! write) from a lock-free description and from every owner's description, and the answers must agree
//! with what the parsed per-owner sets imply (write probe: some *other* description holds the byte;
//! read probe: some other description holds it exclusively).
//!
//! Volume: 1,000 runs of 200 operations and 10 runs of 5,000 (250,000 operations, 2 to 5 owners each,
//! one worker thread per core); about 10 s in `cargo test --release` on 2 cores.
//!
//! Backends (tests/common/backends.rs): the whole volume runs in memory; the database and shared
//! backends run a sixteenth of the short runs and one long run (in shared mode, two managers on one
//! database, each owner's operations through its own). `UNILOCK_TEST_BACKEND=memory|db|shared` picks one.
//!
//! Per seed the first mismatch stops that seed (the states have diverged); the failing prefix is then
//! shrunk (removal of chunks, then single operations, while a mismatch remains; only the first three
//! failing runs) and printed with the seed.
//! `UNILOCK_KDIFF_SEED=<n>` replays one seed verbosely. At the end the test prints how many operations
//! were compared and how many mismatches were found, and asserts that there were none.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use unilock::core::{Flavour, LockType};
use unilock::error::{Error, Holder};
use unilock::manager::{LockReq, Settings};
use unilock::owners::OwnerRef;

mod common;
use common::backends::{Backend, Rig};

/// `UNILOCK_TO_EOF`.
const TO_EOF: u64 = u64::MAX;
/// One past the last byte of unilock's 64-bit space; the kernel's `EOF` (`OFFSET_MAX`) maps to it.
const END: u128 = 1u128 << 64;
const CLIENT: &[u8] = b"kdiff";
const FILE_ID: &[u8] = b"kernel-diff-file";
/// Probe the whole domain with F_OFD_GETLK every this many operations (see the method above).
const CROSSCHECK_EVERY: usize = 16;

// ---------------------------------------------------------------------------------------------------
// PRNG

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

// ---------------------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lock { o: usize, kind: LockType, off: u64, len: u64 },
    Unlock { o: usize, off: u64, len: u64 },
    Test { o: usize, kind: LockType, off: u64, len: u64 },
    Close { o: usize },
}

/// One generated scenario.
#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    owners: usize,
    ops: Vec<Op>,
}

fn generate(seed: u64, n_ops: usize) -> Scenario {
    let mut rng = SplitMix(seed ^ 0x6b64_6966_665f_7631);
    let owners = 2 + rng.below(4) as usize; // 2..=5
    let domain = if rng.chance(1, 2) { 16 } else { 64 };
    let eof_den = 4 + rng.below(12); // "to EOF" in 1/4 .. 1/15 of ranges
    let range = |rng: &mut SplitMix| {
        let off = rng.below(domain);
        let len = if rng.chance(1, eof_den) { TO_EOF } else { 1 + rng.below(16) };
        (off, len)
    };
    let kind = |rng: &mut SplitMix| if rng.chance(1, 2) { LockType::Shared } else { LockType::Exclusive };
    let mut ops = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        let o = rng.below(owners as u64) as usize;
        let p = rng.below(100);
        let op = if p < 50 {
            let k = kind(&mut rng);
            let (off, len) = range(&mut rng);
            Op::Lock { o, kind: k, off, len }
        } else if p < 75 {
            let (off, len) = range(&mut rng);
            Op::Unlock { o, off, len }
        } else if p < 97 {
            let k = kind(&mut rng);
            let (off, len) = range(&mut rng);
            Op::Test { o, kind: k, off, len }
        } else {
            Op::Close { o }
        };
        ops.push(op);
    }
    Scenario { seed, owners, ops }
}

// ---------------------------------------------------------------------------------------------------
// The kernel side

/// A lock as both sides are compared: type and `[start, end)` with `end = END` for "to EOF".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct L {
    kind: LockType,
    start: u64,
    end: u128,
}

impl L {
    fn from_req(kind: LockType, off: u64, len: u64) -> L {
        let end = if len == TO_EOF { END } else { off as u128 + len as u128 };
        L { kind, start: off, end }
    }
    fn overlaps(&self, o: &L) -> bool {
        (self.start as u128) < o.end && (o.start as u128) < self.end
    }
    fn conflicts(&self, o: &L) -> bool {
        self.overlaps(o) && (self.kind == LockType::Exclusive || o.kind == LockType::Exclusive)
    }
}

fn show(l: &L) -> String {
    let k = if l.kind == LockType::Shared { "S" } else { "X" };
    if l.end == END {
        format!("{k}[{},EOF)", l.start)
    } else {
        format!("{k}[{},{})", l.start, l.end)
    }
}

fn show_set(v: &[L]) -> String {
    v.iter().map(show).collect::<Vec<_>>().join(" ")
}

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let probe = shm.join(format!("unilock-kdiff-probe-{}", std::process::id()));
        if File::create(&probe).is_ok() {
            let _ = std::fs::remove_file(&probe);
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}

struct Kernel {
    path: PathBuf,
    fds: Vec<File>,
    /// A description that never locks: its F_OFD_GETLK sees every lock.
    probe: File,
}

// `F_RDLCK` and friends are `c_int` or `c_short` depending on the target: keep the casts.
#[allow(clippy::unnecessary_cast)]
impl Kernel {
    fn new(dir: &Path, owners: usize) -> Kernel {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("unilock-kdiff-{}-{n}", std::process::id()));
        let open = |p: &Path| OpenOptions::new().read(true).write(true).create(true).truncate(false).open(p).unwrap();
        let probe = open(&path);
        let fds = (0..owners).map(|_| open(&path)).collect();
        Kernel { path, fds, probe }
    }

    fn reopen(&mut self, o: usize) {
        let f = OpenOptions::new().read(true).write(true).open(&self.path).unwrap();
        // Assigning drops (closes) the old description, releasing its OFD locks.
        self.fds[o] = f;
    }

    fn flock(ty: i32, off: u64, len: u64) -> libc::flock {
        // SAFETY: flock is a plain C struct; all-zero is a valid value (l_pid must be 0 for OFD calls).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = ty as _;
        fl.l_whence = libc::SEEK_SET as _;
        fl.l_start = off as libc::off_t;
        fl.l_len = if len == TO_EOF { 0 } else { len as libc::off_t };
        fl
    }

    fn ty(kind: LockType) -> i32 {
        match kind {
            LockType::Shared => libc::F_RDLCK as i32,
            LockType::Exclusive => libc::F_WRLCK as i32,
        }
    }

    /// F_OFD_SETLK; Ok(true) granted, Ok(false) refused (EAGAIN/EACCES).
    fn setlk(f: &File, ty: i32, off: u64, len: u64) -> bool {
        let mut fl = Self::flock(ty, off, len);
        // SAFETY: valid fd and a valid, exclusively borrowed flock.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if r == 0 {
            return true;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => false,
            _ => panic!("F_OFD_SETLK({ty}, {off}, {len}) failed: {e}"),
        }
    }

    /// F_OFD_GETLK: the conflicting lock the kernel reports, if any.
    fn getlk(f: &File, kind: LockType, off: u64, len: u64) -> Option<L> {
        let mut fl = Self::flock(Self::ty(kind), off, len);
        // SAFETY: as above.
        let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        assert_eq!(r, 0, "F_OFD_GETLK failed: {}", io::Error::last_os_error());
        if fl.l_type as i32 == libc::F_UNLCK as i32 {
            return None;
        }
        assert_eq!(fl.l_pid, -1, "an OFD lock reports pid -1");
        let kind = if fl.l_type as i32 == libc::F_RDLCK as i32 { LockType::Shared } else { LockType::Exclusive };
        let len = if fl.l_len == 0 { TO_EOF } else { fl.l_len as u64 };
        Some(L::from_req(kind, fl.l_start as u64, len))
    }

    fn lock(&self, o: usize, kind: LockType, off: u64, len: u64) -> bool {
        Self::setlk(&self.fds[o], Self::ty(kind), off, len)
    }

    fn unlock(&self, o: usize, off: u64, len: u64) {
        assert!(Self::setlk(&self.fds[o], libc::F_UNLCK as i32, off, len), "F_UNLCK never conflicts");
    }

    fn test(&self, o: usize, kind: LockType, off: u64, len: u64) -> Option<L> {
        Self::getlk(&self.fds[o], kind, off, len)
    }

    /// The locks of owner `o`'s open file description, from `/proc/self/fdinfo/<fd>`, sorted.
    fn owner_locks(&self, o: usize) -> Vec<L> {
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fds[o].as_raw_fd())).unwrap();
        let mut v = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("lock:") else { continue };
            // "1: OFDLCK ADVISORY  WRITE -1 00:1b:2 5 14"
            let t: Vec<&str> = rest.split_whitespace().collect();
            assert!(t.len() >= 8 && t[1] == "OFDLCK" && t[2] == "ADVISORY", "unexpected fdinfo line {line:?}");
            let kind = match t[3] {
                "READ" => LockType::Shared,
                "WRITE" => LockType::Exclusive,
                other => panic!("unexpected lock type {other:?} in {line:?}"),
            };
            let start: u64 = t[6].parse().unwrap();
            let end: u128 = if t[7] == "EOF" { END } else { t[7].parse::<u128>().unwrap() + 1 };
            v.push(L { kind, start, end });
        }
        v.sort();
        v
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------------
// The unilock side

fn owner_bytes(o: usize) -> [u8; 1] {
    [o as u8]
}

fn owner_ref(b: &[u8; 1]) -> OwnerRef<'_> {
    OwnerRef { client: CLIENT, owner: b, open_id: 0 }
}

fn holder_lock(h: &Holder) -> L {
    L::from_req(h.kind, h.offset, h.length)
}

fn uni_owner_locks(all: &[Holder], o: usize) -> Vec<L> {
    let mut v: Vec<L> = all.iter().filter(|h| h.owner == owner_bytes(o)).map(holder_lock).collect();
    v.sort();
    v
}

/// Merges same-type locks that overlap or touch: the per-byte content of a set, as maximal runs.
fn normalize(v: &[L]) -> Vec<L> {
    let mut out: Vec<L> = Vec::new();
    for kind in [LockType::Shared, LockType::Exclusive] {
        let mut cur: Option<L> = None;
        let mut of_kind: Vec<L> = v.iter().copied().filter(|l| l.kind == kind).collect();
        of_kind.sort();
        for l in of_kind {
            match &mut cur {
                Some(c) if l.start as u128 <= c.end => c.end = c.end.max(l.end),
                _ => {
                    if let Some(c) = cur.take() {
                        out.push(c);
                    }
                    cur = Some(l);
                }
            }
        }
        if let Some(c) = cur {
            out.push(c);
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------------
// Replay and comparison

#[derive(Default, Debug)]
struct Stats {
    ops: u64,
    locks: u64,
    granted: u64,
    tests: u64,
    test_conflicts: u64,
    same_holder: u64,
    crosschecks: u64,
}

struct Mismatch {
    at: usize,
    what: String,
}

/// Replays `ops` into a fresh kernel file and a fresh Manager; returns the first mismatch.
fn replay(
    backend: Backend,
    dir: &Path,
    owners: usize,
    ops: &[Op],
    stats: &mut Stats,
    verbose: bool,
) -> Option<Mismatch> {
    let mut k = Kernel::new(dir, owners);
    // With several participants (shared mode), each owner's operations go through its own one.
    let rig = Rig::new(backend, "kdiff", |_| Settings::default());
    let m = rig.pick(0);
    let names: Vec<[u8; 1]> = (0..owners).map(owner_bytes).collect();
    for (i, op) in ops.iter().enumerate() {
        stats.ops += 1;
        let fail = |what: String| Some(Mismatch { at: i, what });
        // State before the operation (used to validate reported holders).
        let before: Vec<Holder> = m.list(FILE_ID).unwrap();
        match *op {
            Op::Lock { o, kind, off, len } => {
                stats.locks += 1;
                let kg = k.lock(o, kind, off, len);
                let req = LockReq { flavour: Flavour::Posix, kind, offset: off, length: len };
                let ur = rig.pick(o).lock(FILE_ID, &owner_ref(&names[o]), &req);
                let ug = match &ur {
                    Ok(()) => true,
                    Err(Error::Conflict(h)) => {
                        if let Some(why) = bad_holder(h, o, &L::from_req(kind, off, len), &before) {
                            return fail(format!("lock refused with a bad holder {h:?}: {why}"));
                        }
                        false
                    }
                    Err(e) => return fail(format!("unilock lock returned {e:?}")),
                };
                if kg != ug {
                    return fail(format!("lock: kernel granted={kg}, unilock {ur:?}"));
                }
                stats.granted += kg as u64;
            }
            Op::Unlock { o, off, len } => {
                k.unlock(o, off, len);
                if let Err(e) = rig.pick(o).unlock(FILE_ID, &owner_ref(&names[o]), Flavour::Posix, off, len) {
                    return fail(format!("unilock unlock returned {e:?}"));
                }
            }
            Op::Test { o, kind, off, len } => {
                stats.tests += 1;
                let req_l = L::from_req(kind, off, len);
                let kt = k.test(o, kind, off, len);
                let req = LockReq { flavour: Flavour::Posix, kind, offset: off, length: len };
                let ut = match rig.pick(o).test(FILE_ID, &owner_ref(&names[o]), &req) {
                    Ok(t) => t,
                    Err(e) => return fail(format!("unilock test returned {e:?}")),
                };
                match (&kt, &ut) {
                    (None, None) => {}
                    (Some(kl), Some(h)) => {
                        stats.test_conflicts += 1;
                        if let Some(why) = bad_holder(h, o, &req_l, &before) {
                            return fail(format!("test reported a bad holder {h:?}: {why}"));
                        }
                        // The kernel's report must be one of another owner's locks (read via fdinfo).
                        let holders: Vec<usize> =
                            (0..owners).filter(|&p| p != o && k.owner_locks(p).contains(kl)).collect();
                        if holders.is_empty() || !kl.conflicts(&req_l) {
                            return fail(format!(
                                "kernel reported {}, which no other owner holds or which does not conflict",
                                show(kl)
                            ));
                        }
                        if *kl == holder_lock(h) {
                            stats.same_holder += 1;
                        }
                    }
                    _ => return fail(format!("test: kernel {:?}, unilock {:?}", kt.as_ref().map(show), ut)),
                }
            }
            Op::Close { o } => {
                k.reopen(o);
                if let Err(e) = rig.pick(o).release_open(FILE_ID, &owner_ref(&names[o])) {
                    return fail(format!("unilock release_open returned {e:?}"));
                }
            }
        }
        // Compare every owner's lock set.
        let all = m.list(FILE_ID).unwrap();
        if all.iter().any(|h| h.client != CLIENT || h.flavour != Flavour::Posix || h.open_id != 0) {
            return fail(format!("unexpected holder in list: {all:?}"));
        }
        let mut kern_sets = Vec::with_capacity(owners);
        for o in 0..owners {
            let ks = k.owner_locks(o);
            let us = uni_owner_locks(&all, o);
            if ks != us {
                let class =
                    if normalize(&ks) == normalize(&us) { "same bytes, different split" } else { "different bytes" };
                return fail(format!(
                    "state of owner {o} ({class}):\n      kernel:  {}\n      unilock: {}",
                    show_set(&ks),
                    show_set(&us)
                ));
            }
            kern_sets.push(ks);
        }
        if verbose {
            eprintln!("  #{i:<4} {op:?}");
            for (o, s) in kern_sets.iter().enumerate() {
                eprintln!("        owner {o}: {}", show_set(s));
            }
        }
        if i % CROSSCHECK_EVERY == CROSSCHECK_EVERY - 1 || i + 1 == ops.len() {
            stats.crosschecks += 1;
            if let Some(why) = crosscheck(&k, &kern_sets) {
                return fail(format!("fdinfo cross-check: {why}"));
            }
        }
    }
    None
}

/// Why `h` is not a valid holder for a request of owner `o` for `req`, judged against `held` (the
/// locks before the request), if it is not.
fn bad_holder(h: &Holder, o: usize, req: &L, held: &[Holder]) -> Option<String> {
    if h.client != CLIENT || h.flavour != Flavour::Posix {
        return Some("wrong client or flavour".into());
    }
    if h.owner == owner_bytes(o) {
        return Some("the requester itself".into());
    }
    if !held.contains(h) {
        return Some("not a held lock".into());
    }
    if !holder_lock(h).conflicts(req) {
        return Some("does not conflict with the request".into());
    }
    None
}

/// Probes every byte of the low domain and the tail with F_OFD_GETLK and checks the answers against
/// the per-owner sets parsed from fdinfo. From the lock-free probe description: a write probe conflicts
/// iff some owner holds any lock on the byte, a read probe iff some owner holds an exclusive one. From
/// owner `o`'s description, the same but ignoring `o`'s own locks.
fn crosscheck(k: &Kernel, sets: &[Vec<L>]) -> Option<String> {
    let bytes = (0u64..96).chain([1 << 20, 1 << 40, (1u64 << 62) + 7]);
    for b in bytes {
        let at = |l: &L| (l.start as u128) <= b as u128 && (b as u128) < l.end;
        for viewer in std::iter::once(None).chain((0..sets.len()).map(Some)) {
            let others =
                || sets.iter().enumerate().filter(move |(p, _)| Some(*p) != viewer).flat_map(|(_, s)| s.iter());
            let any = others().any(at);
            let excl = others().any(|l| at(l) && l.kind == LockType::Exclusive);
            let f = match viewer {
                None => &k.probe,
                Some(o) => &k.fds[o],
            };
            let w = Kernel::getlk(f, LockType::Exclusive, b, 1);
            let r = Kernel::getlk(f, LockType::Shared, b, 1);
            if w.is_some() != any || r.is_some() != excl {
                return Some(format!(
                    "byte {b}, viewer {viewer:?}: GETLK write={w:?} read={r:?}, fdinfo sets imply any={any} excl={excl}"
                ));
            }
        }
    }
    None
}

/// Removes chunks of operations (halves, quarters, ..., single ones) while the replay still shows a
/// mismatch, until no single operation can go.
fn shrink(backend: Backend, dir: &Path, owners: usize, mut ops: Vec<Op>) -> Vec<Op> {
    let mut scratch = Stats::default();
    let mut chunk = (ops.len() / 2).max(1);
    loop {
        let mut progress = false;
        let mut end = ops.len();
        while end > 0 {
            let start = end.saturating_sub(chunk);
            let mut cand = ops.clone();
            cand.drain(start..end);
            if let Some(mm) = replay(backend, dir, owners, &cand, &mut scratch, false) {
                cand.truncate(mm.at + 1);
                ops = cand;
                progress = true;
            }
            end = start.min(ops.len());
        }
        if chunk == 1 && !progress {
            return ops;
        }
        chunk = (chunk / 2).max(1);
    }
}

/// Only the first few failing runs are shrunk (shrinking replays the run many times).
static SHRINKS_LEFT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(3);

fn run_seed(backend: Backend, dir: &Path, sc: &Scenario, stats: &mut Stats, verbose: bool) -> Option<String> {
    let mm = replay(backend, dir, sc.owners, &sc.ops, stats, verbose)?;
    let prefix = sc.ops[..=mm.at].to_vec();
    let head = format!(
        "{}: seed {:#x} ({} owners): mismatch at op #{}: {:?}\n    {}\n",
        backend.name(),
        sc.seed,
        sc.owners,
        mm.at,
        sc.ops[mm.at],
        mm.what
    );
    if SHRINKS_LEFT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_err() {
        return Some(head);
    }
    let small = shrink(backend, dir, sc.owners, prefix);
    let again = replay(backend, dir, sc.owners, &small, &mut Stats::default(), false).expect("shrunk case still fails");
    let mut s = format!("{head}  minimal reproducer ({} ops), fails with: {}\n", small.len(), again.what);
    for op in &small {
        s.push_str(&format!("    {op:?}\n"));
    }
    Some(s)
}

// ---------------------------------------------------------------------------------------------------
// The test

/// Short runs explore many starting states; long runs reach crowded, fragmented lock sets.
const SHORT_SEEDS: u64 = 1_000;
const SHORT_OPS: usize = 200;
const LONG_SEEDS: u64 = 10;
const LONG_OPS: usize = 5_000;

#[test]
fn ofd_locks_match_kernel() {
    let dir = scratch_dir();
    if let Ok(s) = std::env::var("UNILOCK_KDIFF_SEED") {
        let seed = if let Some(h) = s.strip_prefix("0x") { u64::from_str_radix(h, 16) } else { s.parse() }
            .expect("UNILOCK_KDIFF_SEED: a number");
        let n = std::env::var("UNILOCK_KDIFF_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(SHORT_OPS);
        let sc = generate(seed, n);
        for backend in Backend::selected() {
            let mut st = Stats::default();
            let r = run_seed(backend, &dir, &sc, &mut st, true);
            eprintln!("{}: seed {seed:#x}: {} operations compared", backend.name(), st.ops);
            assert!(r.is_none(), "{}", r.unwrap());
        }
        return;
    }
    for backend in Backend::selected() {
        run_backend(backend, &dir);
    }
}

/// Every seed on one backend: all of them in memory, the backend's share (`Backend::cases`) of the
/// short and of the long runs on the others.
fn run_backend(backend: Backend, dir: &Path) {
    let started = Instant::now();
    let short = backend.cases(SHORT_SEEDS as u32) as u64;
    let long = backend.cases(LONG_SEEDS as u32) as u64;
    let mut jobs: Vec<(u64, usize)> = (0..short).map(|s| (s, SHORT_OPS)).collect();
    jobs.extend((0..long).map(|s| (0x1000_0000 + s, LONG_OPS)));
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8);
    let results: Vec<(Stats, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let jobs = &jobs;
                scope.spawn(move || {
                    let mut st = Stats::default();
                    let mut fails = Vec::new();
                    for &(seed, n) in jobs.iter().skip(w).step_by(workers) {
                        let sc = generate(seed, n);
                        if let Some(f) = run_seed(backend, dir, &sc, &mut st, false) {
                            fails.push(f);
                        }
                    }
                    (st, fails)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Stats::default();
    let mut fails = Vec::new();
    for (s, f) in results {
        total.ops += s.ops;
        total.locks += s.locks;
        total.granted += s.granted;
        total.tests += s.tests;
        total.test_conflicts += s.test_conflicts;
        total.same_holder += s.same_holder;
        total.crosschecks += s.crosschecks;
        fails.extend(f);
    }
    // A mismatching run stops at its mismatch, so fewer operations than generated are then compared.
    let scenario_ops: usize = jobs.iter().map(|j| j.1).sum();
    for f in fails.iter().take(5) {
        eprintln!("{f}");
    }
    eprintln!(
        "kernel_diff on {}: {} runs, {} operations compared (of {} generated) against F_OFD_* locks in {}: \
         {} locks ({} granted), {} tests ({} conflicts, {} with the same holder as the kernel), \
         {} fdinfo cross-checks; {} mismatching runs; {:.1} s",
        backend.name(),
        jobs.len(),
        total.ops,
        scenario_ops,
        dir.display(),
        total.locks,
        total.granted,
        total.tests,
        total.test_conflicts,
        total.same_holder,
        total.crosschecks,
        fails.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        fails.is_empty(),
        "{}: {} of {} seeds mismatched; first:\n{}",
        backend.name(),
        fails.len(),
        jobs.len(),
        fails[0]
    );
}

/// The fdinfo reading itself, on a hand-made state with a known answer.
#[test]
fn fdinfo_reads_each_description_separately() {
    let k = Kernel::new(&scratch_dir(), 3);
    assert!(k.lock(0, LockType::Shared, 0, 10));
    assert!(k.lock(1, LockType::Shared, 5, 10));
    assert!(k.lock(2, LockType::Exclusive, 20, TO_EOF));
    assert!(k.lock(0, LockType::Shared, 10, 2)); // touches [0,10): the kernel merges
    assert!(!k.lock(1, LockType::Exclusive, 8, 1));
    assert_eq!(k.owner_locks(0), vec![L { kind: LockType::Shared, start: 0, end: 12 }]);
    assert_eq!(k.owner_locks(1), vec![L { kind: LockType::Shared, start: 5, end: 15 }]);
    assert_eq!(k.owner_locks(2), vec![L { kind: LockType::Exclusive, start: 20, end: END }]);
    // Two shared holders of byte 8: a GETLK reports only one of them.
    assert!(k.test(2, LockType::Exclusive, 8, 1).is_some());
    assert!(crosscheck(&k, &[k.owner_locks(0), k.owner_locks(1), k.owner_locks(2)]).is_none());
}
