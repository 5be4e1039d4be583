//! The in-memory backend: files sharded over independently locked shards (never one global mutex on
//! the hot path), each file's `FileState` kept in a hash table of its shard. Every operation takes
//! exactly one shard lock; the rules live in the core and `FileState`, not here.
//!
//! This is the in-process table (with or without the SQLite journal, which the facade applies after
//! each operation); it is not a `Backend` (those are shared by several processes or hosts), because
//! its operations cannot fail and its hot path is a direct, generic call.

use crate::table::FileState;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::BuildHasher;

/// Shards of the in-memory table.
const SHARDS: usize = 64;
/// Idle files a shard may keep cached before sweeping them: at least this many, and at least a quarter
/// of the shard's files, so a sweep (a walk over the whole shard) is paid for by as many distinct files
/// having gone idle since the last one: amortised O(1) per operation.
const EMPTY_FILES_MIN: usize = 64;

/// Invariant: `empty` is the number of files with `counted_idle` set. A file is counted when an
/// operation leaves it idle and uncounted when one leaves it busy; files made idle outside `with_file`
/// (`for_each_file`) are not counted, but are still dropped by the next sweep.
#[derive(Default)]
struct Shard {
    files: HashTable<FileState>,
    empty: usize,
    /// Files visited by sweeps so far (tests bound it against the number of operations).
    swept: u64,
}

#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// The sharded table of every file's locks.
pub struct Table {
    shards: Box<[Padded]>,
    hasher: hashbrown::DefaultHashBuilder,
    persist: bool,
    track: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self::new(false, false)
    }
}

impl Table {
    /// `persist`: journal every change for the store; `track`: keep lock counts per client.
    pub fn new(persist: bool, track: bool) -> Self {
        Table {
            shards: (0..SHARDS).map(|_| Padded(Mutex::new(Shard::default()))).collect(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            persist,
            track,
        }
    }

    /// Runs `f` on the state of `file` under its shard lock. With `create`, a missing file is created
    /// (empty); without it, `f` gets `None` for a file nobody has locked.
    pub fn with_file<R>(&self, file: &[u8], create: bool, f: impl FnOnce(Option<&mut FileState>) -> R) -> R {
        let hash = self.hasher.hash_one(file);
        // hashbrown takes the bucket from the low bits and its control byte from the top 7: pick the
        // shard from bits in between, so files of one shard still spread over its buckets and tags.
        let shard = &self.shards[(hash >> 32) as usize % SHARDS];
        let mut guard = shard.0.lock();
        let sh = &mut *guard;
        let found = sh.files.find_mut(hash, |fs| *fs.id == *file);
        let fs = match found {
            Some(fs) => fs,
            None if create => {
                let entry =
                    sh.files.insert_unique(hash, FileState::new(file, hash, self.persist, self.track), |fs| fs.hash);
                entry.into_mut()
            }
            None => return f(None),
        };
        let r = f(Some(&mut *fs));
        let idle = fs.is_idle();
        if idle != fs.counted_idle {
            fs.counted_idle = idle;
            if idle {
                sh.empty += 1;
                if sh.empty > EMPTY_FILES_MIN.max(sh.files.len() / 4) {
                    sh.swept += sh.files.len() as u64;
                    sh.files.retain(|fs| {
                        fs.counted_idle = false;
                        !fs.is_idle()
                    });
                    sh.empty = 0;
                }
            } else {
                sh.empty -= 1;
            }
        }
        r
    }

    /// Files visited by idle sweeps so far, over every shard (for tests).
    pub fn sweep_work(&self) -> u64 {
        self.shards.iter().map(|s| s.0.lock().swept).sum()
    }

    /// Files held in memory, idle ones included (for tests).
    pub fn file_count(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().files.len()).sum()
    }

    /// Runs `f` on every file, one shard at a time.
    pub fn for_each_file(&self, mut f: impl FnMut(&mut FileState)) {
        for shard in self.shards.iter() {
            let mut sh = shard.0.lock();
            for fs in sh.files.iter_mut() {
                f(fs);
            }
        }
    }

    /// Total locks held (walks every shard; for tests and inspection, not the hot path).
    pub fn lock_count(&self) -> usize {
        let mut n = 0;
        self.for_each_file(|fs| n += fs.locks.len());
        n
    }

    /// (files, locks, leases, waiters) now (walks every shard; for metrics).
    pub fn census(&self) -> (u64, u64, u64, u64) {
        let (mut f, mut l, mut s, mut w) = (0, 0, 0, 0);
        self.for_each_file(|fs| {
            if !fs.is_idle() {
                f += 1;
            }
            l += fs.locks.len() as u64;
            s += fs.leases.leases.len() as u64;
            w += fs.waiter_count() as u64;
        });
        (f, l, s, w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Flavour, LockType, Range};
    use crate::owners::OwnerRef;

    fn pair(t: &Table, file: &[u8], owner: &[u8]) {
        let o = OwnerRef { client: b"c", owner, open_id: 0 };
        let r = Range::from_request(Flavour::Posix, 100, 10).unwrap();
        t.with_file(file, true, |fs| fs.unwrap().lock(&o, Flavour::Posix, LockType::Exclusive, &r)).unwrap();
        t.with_file(file, true, |fs| fs.unwrap().unlock(&o, Flavour::Posix, &r)).unwrap();
    }

    /// One file going idle again and again must not sweep the shard each time: the sweep work stays
    /// within a constant per operation however many busy files the shards hold.
    #[test]
    fn idle_sweep_is_amortised() {
        let t = Table::default();
        let o = OwnerRef { client: b"c", owner: b"o", open_id: 0 };
        let r = Range::from_request(Flavour::Posix, 0, 10).unwrap();
        let busy = 50_000u32;
        for i in 0..busy {
            let f = format!("busy{i}");
            t.with_file(f.as_bytes(), true, |fs| fs.unwrap().lock(&o, Flavour::Posix, LockType::Shared, &r)).unwrap();
        }
        // One file going idle again and again: nothing to sweep.
        let ops = 10_000u64;
        for _ in 0..ops {
            pair(&t, b"hot", b"o");
        }
        let work = t.sweep_work();
        assert!(work <= 2 * ops, "sweeps visited {work} files for {} operations on one file", 2 * ops);
        // Many distinct files going idle, each once: swept, at a bounded cost per operation.
        for i in 0..ops {
            pair(&t, format!("cold{i}").as_bytes(), b"o");
        }
        let work = t.sweep_work() - work;
        assert!(work <= 8 * 2 * ops, "sweeps visited {work} files for {} operations", 2 * ops);
        let kept = t.file_count();
        assert!(kept <= busy as usize * 4 / 3 + 64 * SHARDS + 1, "{kept} files kept");
    }

    /// Owners going idle one after another on a file with many live owners: bounded sweep work too.
    #[test]
    fn owner_sweep_is_amortised() {
        let t = Table::default();
        let r = Range::from_request(Flavour::Posix, 0, 10).unwrap();
        for i in 0..5_000u32 {
            let o = OwnerRef { client: b"c", owner: &i.to_be_bytes(), open_id: 0 };
            t.with_file(b"f", true, |fs| fs.unwrap().lock(&o, Flavour::Posix, LockType::Shared, &r)).unwrap();
        }
        for i in 0..5_000u32 {
            let name = format!("idle{i}");
            pair(&t, b"f", name.as_bytes());
        }
        let (entries, work) = t.with_file(b"f", false, |fs| {
            let fs = fs.unwrap();
            (fs.owners.entry_count(), fs.owners.sweep_work())
        });
        assert!(entries <= 5_000 * 4 / 3 + 17, "{entries} owner entries kept");
        assert!(work <= 10 * 5_000, "owner sweeps visited {work} entries for 5000 idle owners");
    }
}
