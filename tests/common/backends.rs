//! The backends every behavioural suite runs over (issue 16: "the same suites over every backend,
//! parameterised, not copied"). A suite asks `Backend::selected()` which to run, builds a `Rig` for
//! each (one or more `Manager`s on that backend), and picks the manager an operation goes through with
//! `Rig::pick` (backends with several participants spread the operations over them).
//!
//! Selection: every backend by default; `UNILOCK_TEST_BACKEND=memory|db|shared|shared-sqlite` runs
//! one (the variable the C suites read, c-tests/common.c). `shared` is shared mode's default table
//! (shared memory where robust mutexes work), `shared-sqlite` its SQLite table.
//!
//! Adding a backend (the shared-memory table, the etcd table): a variant in `Backend`, its entry in
//! `ALL` with its `UNILOCK_TEST_BACKEND` name, its share of a suite's cases in `cases`, and how to
//! build its managers in `Rig::new`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use unilock::manager::{Manager, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory sharded table.
    Memory,
    /// The in-memory table journaled to a database file.
    Database,
    /// Shared mode: two managers ("processes") on one database, on shared mode's default table (the
    /// shared-memory one; `UNILOCK_SHARED_BACKEND` may choose).
    Shared,
    /// Shared mode on the SQLite table.
    SharedSqlite,
    /// Cluster mode: two hosts on an etcd. Not in `ALL` (it needs a running etcd): a suite that
    /// starts one (tests/driver.rs) builds it, giving `Settings::cluster` in its settings.
    Cluster,
}

impl Backend {
    /// Every backend, with its `UNILOCK_TEST_BACKEND` name.
    pub const ALL: [(Backend, &'static str); 4] = [
        (Backend::Memory, "memory"),
        (Backend::Database, "db"),
        (Backend::Shared, "shared"),
        (Backend::SharedSqlite, "shared-sqlite"),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cluster => "cluster",
            _ => Self::ALL.iter().find(|(b, _)| *b == self).map(|(_, n)| *n).unwrap(),
        }
    }

    /// The backends to run: all, or the one `UNILOCK_TEST_BACKEND` names (an unknown name fails the
    /// test rather than silently running nothing).
    pub fn selected() -> Vec<Backend> {
        match std::env::var("UNILOCK_TEST_BACKEND") {
            Ok(v) if !v.is_empty() => {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                match Self::ALL.iter().find(|(_, n)| *n == v) {
                    Some((b, _)) => vec![*b],
                    None => panic!("UNILOCK_TEST_BACKEND={v}: expected one of {names:?}"),
                }
            }
            _ => Self::ALL.iter().map(|(b, _)| *b).collect(),
        }
    }

    /// How many of a suite's `memory_cases` to run on this backend: every one in memory; a sixteenth
    /// (at least one) on the database backends, whose every operation is a transaction on a file, so
    /// that `make check` stays within its time.
    pub fn cases(self, memory_cases: u32) -> u32 {
        match self {
            Backend::Memory => memory_cases,
            Backend::Database | Backend::Shared | Backend::SharedSqlite | Backend::Cluster => {
                (memory_cases / 16).max(1)
            }
        }
    }

    /// Participants (managers) the backend is exercised with.
    pub fn participants(self) -> usize {
        match self {
            Backend::Shared | Backend::SharedSqlite | Backend::Cluster => 2,
            Backend::Memory | Backend::Database => 1,
        }
    }
}

/// A directory removed (with everything in it) when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under `std::env::temp_dir()`, unique to this process and `tag`.
    pub fn new(tag: &str) -> TempDir {
        static CASE: AtomicU64 = AtomicU64::new(0);
        let c = CASE.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("unilock-{tag}-{}-{c}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The managers of one backend, and the directory of its database. Fields drop in order: the managers
/// before their directory.
pub struct Rig {
    pub backend: Backend,
    pub mgrs: Vec<Manager>,
    pub dir: Option<TempDir>,
}

impl Rig {
    /// Builds `backend.participants()` managers; `settings(i)` gives manager `i`'s settings (clock,
    /// callback, loop mode, timeouts...), to which the backend's own (database path, shared mode,
    /// durability) are added.
    pub fn new(backend: Backend, tag: &str, mut settings: impl FnMut(usize) -> Settings) -> Rig {
        let db = matches!(backend, Backend::Database | Backend::Shared | Backend::SharedSqlite);
        let dir = db.then(|| TempDir::new(tag));
        let mgrs = (0..backend.participants())
            .map(|i| {
                let mut s = settings(i);
                s.shared = matches!(backend, Backend::Shared | Backend::SharedSqlite);
                s.shared_table = (backend == Backend::SharedSqlite).then_some("sqlite");
                s.db_path = dir.as_ref().map(|d| d.0.join("locks.db").to_string_lossy().into_owned());
                s.durability = db.then_some(unilock::store::Durability::Process);
                Manager::new(s).unwrap_or_else(|e| panic!("Manager::new on {backend:?}: {e:?}"))
            })
            .collect();
        Rig { backend, mgrs, dir }
    }

    /// The manager for `who` (a client or owner index): participants take turns, so in shared mode
    /// neighbouring clients are on different "processes".
    pub fn pick(&self, who: usize) -> &Manager {
        &self.mgrs[who % self.mgrs.len()]
    }

    /// Ends every participant's session (shared mode: its state in the database goes).
    pub fn leave(&self) {
        for m in &self.mgrs {
            m.leave();
        }
    }
}
