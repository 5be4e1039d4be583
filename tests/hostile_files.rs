//! Hostile database files, opened through the C API (`unilock_open`) in normal and in shared mode:
//! not a database, truncated, corrupt pages, another application's SQLite file, wrong tables or row
//! types, a negative or newer `user_version`, read-only. Each must be refused with `UNILOCK_E_STORE`
//! and a clear `unilock_errdetail()`, and leave the file byte for byte as it was and its directory
//! without a new file (no `-wal`, `-shm`, `-journal` or `.sockets`).

use std::ffi::{CStr, CString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use ::unilock::ffi::config::{unilock_close, unilock_config, unilock_open, UNILOCK_CONFIG_SHARED, UNILOCK_EVENTS_LOOP};
use ::unilock::ffi::handle::unilock as Handle;
use ::unilock::ffi::lock::unilock_lock;
use ::unilock::ffi::status::{unilock_errdetail, unilock_status};
use ::unilock::ffi::types::{unilock_lock_req, unilock_owner, UNILOCK_EXCLUSIVE, UNILOCK_POSIX};
use rusqlite::Connection;

/// A directory of its own per case, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "unilock-hostile-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens `path` through the C API; the status, the handle (if any) and the detail.
fn open(path: &Path, shared: bool) -> (unilock_status, *mut Handle, String) {
    let mut cfg = unilock_config::default();
    let c = CString::new(path.to_str().unwrap()).unwrap();
    cfg.db_path = c.as_ptr();
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    if shared {
        cfg.flags = UNILOCK_CONFIG_SHARED;
    }
    let mut ul: *mut Handle = std::ptr::null_mut();
    let st = unilock_open(&cfg, &mut ul);
    // SAFETY: unilock_errdetail returns a NUL-terminated string valid until this thread's next failure.
    let detail = unsafe { CStr::from_ptr(unilock_errdetail()) }.to_string_lossy().into_owned();
    (st, ul, detail)
}

/// A real unilock database with a lock, a client and a second file, left in rollback-journal mode
/// (so that the hostile versions made from it are single files).
fn unilock_db(path: &Path) {
    let (st, ul, detail) = open(path, false);
    assert_eq!(st, unilock_status::UNILOCK_OK, "{detail}");
    for (i, file) in [&b"file-A"[..], &b"file-B"[..], &[7u8; 128][..]].into_iter().enumerate() {
        let owner =
            unilock_owner { client: c"nlm:host42".as_ptr(), owner: b"svid".as_ptr(), owner_len: 4, open_id: i as u64 };
        let req =
            unilock_lock_req { flavour: UNILOCK_POSIX, type_: UNILOCK_EXCLUSIVE, offset: 10, length: 5, flags: 0 };
        assert_eq!(
            unilock_lock(ul, file.as_ptr(), file.len(), &owner, &req, std::ptr::null_mut()),
            unilock_status::UNILOCK_OK
        );
    }
    unilock_close(ul);
    sql(path, "");
}

/// Runs SQL on a database, then leaves it in rollback-journal mode with no side files.
fn sql(path: &Path, batch: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(batch).unwrap();
    let _: String = c.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0)).unwrap();
    drop(c);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// Overwrites `n` bytes at `at` with `b`.
fn smash(path: &Path, at: usize, n: usize, b: u8) {
    let mut v = std::fs::read(path).unwrap();
    let end = (at + n).min(v.len());
    v[at..end].fill(b);
    write(path, &v);
}

fn page_size(path: &Path) -> usize {
    let v = std::fs::read(path).unwrap();
    match u16::from_be_bytes([v[16], v[17]]) {
        1 => 65536,
        n => n as usize,
    }
}

/// One hostile file: how to make it, and a word the detail must contain.
struct Case {
    name: &'static str,
    make: fn(&Path),
    says: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    const NOT_DB: &[&str] = &["not a database", "malformed", "corrupt"];
    const CORRUPT: &[&str] = &["malformed", "corrupt", "not a database", "truncated"];
    vec![
        Case { name: "garbage", make: |p| write(p, &[0x5a; 8192]), says: NOT_DB },
        Case { name: "zeros", make: |p| write(p, &[0; 4096]), says: NOT_DB },
        Case { name: "text-file", make: |p| write(p, b"[global]\n\tworkgroup = WORKGROUP\n"), says: NOT_DB },
        Case {
            name: "truncated-header",
            make: |p| {
                unilock_db(p);
                let v = std::fs::read(p).unwrap();
                write(p, &v[..50]);
            },
            says: NOT_DB,
        },
        Case {
            name: "truncated-mid-page",
            make: |p| {
                unilock_db(p);
                let v = std::fs::read(p).unwrap();
                write(p, &v[..v.len() - page_size(p) / 2]);
            },
            says: CORRUPT,
        },
        Case {
            name: "truncated-pages",
            make: |p| {
                unilock_db(p);
                let v = std::fs::read(p).unwrap();
                write(p, &v[..2 * page_size(p)]);
            },
            says: CORRUPT,
        },
        Case {
            name: "corrupt-last-page",
            make: |p| {
                unilock_db(p);
                let len = std::fs::metadata(p).unwrap().len() as usize;
                let ps = page_size(p);
                smash(p, len - ps, ps, 0xa5);
            },
            says: CORRUPT,
        },
        Case {
            name: "corrupt-btree-headers",
            make: |p| {
                unilock_db(p);
                let ps = page_size(p);
                let len = std::fs::metadata(p).unwrap().len() as usize;
                // The b-tree page header of every page after the first.
                let mut at = ps;
                while at < len {
                    smash(p, at, 12, 0xff);
                    at += ps;
                }
            },
            says: CORRUPT,
        },
        Case {
            name: "corrupt-schema-page",
            make: |p| {
                unilock_db(p);
                smash(p, 100, 400, 0x33);
            },
            says: CORRUPT,
        },
        Case {
            name: "bad-page-size",
            make: |p| {
                unilock_db(p);
                smash(p, 16, 1, 0);
                smash(p, 17, 1, 3);
            },
            says: NOT_DB,
        },
        Case {
            name: "foreign-tables",
            make: |p| {
                sql(
                    p,
                    "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes(body) VALUES ('hello');",
                )
            },
            says: &["not a unilock database"],
        },
        Case {
            name: "foreign-application-id",
            make: |p| sql(p, "PRAGMA application_id = 0x0f055112;"),
            says: &["application_id"],
        },
        Case {
            name: "foreign-application-id-and-tables",
            make: |p| sql(p, "PRAGMA application_id = 1234; PRAGMA user_version = 1; CREATE TABLE t(x);"),
            says: &["application_id"],
        },
        Case {
            name: "foreign-user-version",
            make: |p| sql(p, "PRAGMA user_version = 1; CREATE TABLE settings(k TEXT, v TEXT);"),
            says: &["missing"],
        },
        Case {
            name: "foreign-same-table-names",
            make: |p| {
                sql(p, "PRAGMA user_version = 2; CREATE TABLE clients(id INTEGER, name TEXT); CREATE TABLE locks(id INTEGER, path TEXT);")
            },
            says: &["columns", "missing"],
        },
        Case {
            name: "foreign-in-wal-mode",
            make: |p| {
                let c = Connection::open(p).unwrap();
                c.execute_batch("CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES ('x');").unwrap();
                let _: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
            },
            says: &["not a unilock database"],
        },
        Case {
            name: "wrong-locks-table",
            make: |p| {
                unilock_db(p);
                sql(p, "DROP TABLE locks; CREATE TABLE locks(file BLOB, client BLOB, start INTEGER, length INTEGER);");
            },
            says: &["locks has columns"],
        },
        Case {
            name: "wrong-clients-table",
            make: |p| {
                unilock_db(p);
                sql(p, "DROP TABLE clients; CREATE TABLE clients(client BLOB PRIMARY KEY, name TEXT);");
            },
            says: &["clients has columns"],
        },
        Case {
            name: "missing-leases-table",
            make: |p| {
                unilock_db(p);
                sql(p, "DROP TABLE leases;");
            },
            says: &["leases is missing"],
        },
        Case {
            name: "wrong-row-types",
            make: |p| {
                unilock_db(p);
                sql(p, "INSERT INTO locks VALUES (x'01', x'02', x'03', 'not a number', 1, 2, 0, 10, 1);");
            },
            says: &["wrong types"],
        },
        Case {
            name: "negative-user-version",
            make: |p| {
                unilock_db(p);
                sql(p, "PRAGMA user_version = -1;");
            },
            says: &["negative"],
        },
        Case {
            name: "most-negative-user-version",
            make: |p| sql(p, "PRAGMA user_version = -2147483648; CREATE TABLE locks(x);"),
            says: &["negative"],
        },
        Case {
            name: "newer-user-version",
            make: |p| {
                unilock_db(p);
                sql(p, "PRAGMA user_version = 3;");
            },
            says: &["newer"],
        },
        Case { name: "newest-user-version", make: |p| sql(p, "PRAGMA user_version = 2147483647;"), says: &["newer"] },
        Case {
            name: "read-only",
            make: |p| {
                unilock_db(p);
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o444)).unwrap();
            },
            says: &["read-only"],
        },
        Case {
            name: "read-only-wal-mode",
            make: |p| {
                let (st, ul, d) = open(p, false);
                assert_eq!(st, unilock_status::UNILOCK_OK, "{d}");
                unilock_close(ul);
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o400)).unwrap();
            },
            says: &["read-only"],
        },
        Case { name: "directory", make: |p| std::fs::create_dir(p).unwrap(), says: &["unable to open", "directory"] },
    ]
}

/// The bytes of a file (or of every entry of a directory) at `p`.
fn contents(p: &Path) -> Vec<u8> {
    if p.is_dir() {
        return Vec::new();
    }
    std::fs::read(p).unwrap()
}

fn refused(case: &Case, shared: bool) -> Result<(), String> {
    let dir = TempDir::new(case.name);
    let path = dir.0.join("locks.db");
    (case.make)(&path);
    let bytes = contents(&path);
    let meta = std::fs::metadata(&path).unwrap();
    let listing = dir.listing();
    let (st, ul, detail) = open(&path, shared);
    let mode = if shared { "shared" } else { "normal" };
    if st == unilock_status::UNILOCK_OK {
        unilock_close(ul);
        return Err(format!("{} ({mode}): opened", case.name));
    }
    let mut why = Vec::new();
    if st != unilock_status::UNILOCK_E_STORE {
        why.push(format!("status {st:?}, not UNILOCK_E_STORE"));
    }
    if !ul.is_null() {
        why.push("handle written on failure".to_string());
    }
    let low = detail.to_lowercase();
    if !case.says.iter().any(|w| low.contains(w)) {
        why.push(format!("detail {detail:?} says none of {:?}", case.says));
    }
    if contents(&path) != bytes {
        why.push("the file changed".to_string());
    }
    let after = std::fs::metadata(&path).unwrap();
    if after.len() != meta.len() || after.permissions().mode() != meta.permissions().mode() {
        why.push("the file's size or mode changed".to_string());
    }
    if dir.listing() != listing {
        why.push(format!("the directory changed: {listing:?} -> {:?}", dir.listing()));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!("{} ({mode}): {}", case.name, why.join("; ")))
    }
}

#[test]
fn hostile_files_are_refused_and_left_untouched() {
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        for shared in [false, true] {
            if let Err(e) = refused(case, shared) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile opens went wrong:\n{}",
        failures.len(),
        2 * cases.len(),
        failures.join("\n")
    );
}

/// The files the checks must still accept: a new (empty) file, a unilock database of this version and
/// one of version 1 (made before the application id was written), which is migrated.
#[test]
fn good_files_still_open() {
    for shared in [false, true] {
        let dir = TempDir::new("good");
        let empty = dir.0.join("empty.db");
        write(&empty, b"");
        let ours = dir.0.join("ours.db");
        unilock_db(&ours);
        let v1 = dir.0.join("v1.db");
        sql(&v1, &format!("{} PRAGMA user_version = 1;", ::unilock::store::schema::MIGRATIONS[0]));
        for p in [&empty, &ours, &v1] {
            let (st, ul, detail) = open(p, shared);
            assert_eq!(st, unilock_status::UNILOCK_OK, "{} (shared {shared}): {detail}", p.display());
            unilock_close(ul);
            let c = Connection::open(p).unwrap();
            let app: i64 = c.query_row("PRAGMA application_id", [], |r| r.get(0)).unwrap();
            assert_eq!(app, 0x554C_4B31, "unilock's application_id, \"ULK1\"");
            let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(v, ::unilock::store::schema::VERSION);
        }
    }
}
