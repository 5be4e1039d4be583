use super::*;
use crate::backend::Backend;
use crate::core::{Flavour, LockType, Range};
use crate::owners::OwnerRef;

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("unilock-shm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn db(&self) -> String {
        self.0.join("t.db").to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Ok(p) = mapping_path(&self.db()) {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Env {
    metrics: crate::metrics::Metrics,
    requests: crate::requests::Requests,
    graph: parking_lot::Mutex<crate::core::wait::WaitGraph<crate::requests::OwnerKey>>,
    events: crate::events::Events<Event>,
    outbox: parking_lot::Mutex<Vec<Event>>,
}

impl Env {
    fn new() -> Env {
        Env {
            metrics: Default::default(),
            requests: Default::default(),
            graph: Default::default(),
            events: crate::events::Events::new(std::sync::Arc::new(crate::clock::SystemClock), true).unwrap(),
            outbox: Default::default(),
        }
    }
    fn ctx(&self, me: u64) -> Ctx<'_> {
        Ctx {
            me,
            outbox: Some(&self.outbox),
            metrics: &self.metrics,
            requests: &self.requests,
            graph: &self.graph,
            events: &self.events,
            need_graph: false,
        }
    }
}

fn owner(c: &'static [u8]) -> OwnerRef<'static> {
    OwnerRef { client: c, owner: b"o", open_id: 1 }
}

fn lock(b: &ShmBackend, env: &Env, file: &[u8], c: &'static [u8], start: u64) -> Result<Result<()>> {
    let r = Range::from_request(Flavour::Posix, start, 10).unwrap();
    b.with_file(file, true, &env.ctx(b.me), |fs| fs.unwrap().lock(&owner(c), Flavour::Posix, LockType::Exclusive, &r))
}

fn test_lock(b: &ShmBackend, env: &Env, file: &[u8], c: &'static [u8], start: u64) -> Result<bool> {
    let r = Range::from_request(Flavour::Posix, start, 10).unwrap();
    b.with_file(file, false, &env.ctx(b.me), |fs| {
        fs.map(|fs| fs.test(&owner(c), Flavour::Posix, LockType::Exclusive, &r).is_none()).unwrap_or(true)
    })
}

fn seqs(b: &ShmBackend) -> u64 {
    (0..NPART).map(|p| b.map.get(part_off(p) + P_SEQ)).sum()
}

fn db_rows(db: &str, table: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn two_handles_share_one_table_and_reads_write_nothing() {
    let d = Dir::new("basic");
    let env = Env::new();
    let (a, rec) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(rec.is_some(), "the first process starts the table");
    let (b, rec) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(rec.is_none(), "the second joins it");
    assert_eq!(lock(&a, &env, b"f1", b"nlm:a", 0).unwrap(), Ok(()));
    assert!(lock(&b, &env, b"f1", b"nlm:b", 5).unwrap().is_err(), "b sees a's lock");
    assert_eq!(lock(&b, &env, b"f2", b"nlm:b", 5).unwrap(), Ok(()));
    assert_eq!(db_rows(&d.db(), "locks"), 0, "PROCESS: the lock rows are queued in the mapping");
    assert!(a.has_pending() && b.has_pending());
    a.flush().unwrap(); // any process's flush writes every queue
    assert_eq!(db_rows(&d.db(), "locks"), 2, "PROCESS: both locks are in the database after a flush");
    assert_eq!(b.files().unwrap().len(), 2);
    assert_eq!(a.files_of(a.me).unwrap(), vec![Box::from(&b"f1"[..])]);
    // A test and a refused lock change nothing: no intent, no record, no database write.
    let wal = std::fs::metadata(format!("{}-wal", d.db())).map(|m| m.len()).unwrap_or(0);
    let (s0, heap0) = (seqs(&a), a.heap_in_use());
    assert!(!test_lock(&b, &env, b"f1", b"nlm:b", 0).unwrap());
    assert!(test_lock(&b, &env, b"f1", b"nlm:b", 100).unwrap());
    assert!(lock(&b, &env, b"f1", b"nlm:b", 0).unwrap().is_err());
    assert_eq!(seqs(&a), s0, "a read published something");
    assert_eq!(a.heap_in_use(), heap0);
    assert_eq!(std::fs::metadata(format!("{}-wal", d.db())).map(|m| m.len()).unwrap_or(0), wal);
    // Unlock everything: the records go, and their blocks are reused, not leaked.
    for (h, f, c, start) in [(&a, &b"f1"[..], &b"nlm:a"[..], 0), (&b, &b"f2"[..], &b"nlm:b"[..], 5)] {
        let r = Range::from_request(Flavour::Posix, start, 10).unwrap();
        h.with_file(f, false, &env.ctx(h.me), |fs| {
            fs.unwrap().unlock(&OwnerRef { client: c, owner: b"o", open_id: 1 }, Flavour::Posix, &r)
        })
        .unwrap()
        .unwrap();
    }
    assert!(a.files().unwrap().is_empty());
    b.flush().unwrap();
    assert_eq!(db_rows(&d.db(), "locks"), 0);
    let used = a.heap_in_use();
    for i in 0..200 {
        assert_eq!(lock(&a, &env, b"f1", b"nlm:a", i).unwrap(), Ok(()));
        let r = Range::from_request(Flavour::Posix, i, 10).unwrap();
        a.with_file(b"f1", false, &env.ctx(a.me), |fs| fs.unwrap().unlock(&owner(b"nlm:a"), Flavour::Posix, &r))
            .unwrap()
            .unwrap();
    }
    a.flush().unwrap(); // the queued blocks go back to the heap once written
    assert_eq!(a.heap_in_use(), used, "copy-on-write leaked blocks");
}

#[test]
fn batch_mode_writes_lock_rows_at_flush() {
    let d = Dir::new("batch");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Batch).unwrap();
    assert_eq!(lock(&a, &env, b"f", b"nlm:a", 0).unwrap(), Ok(()));
    assert!(a.has_pending());
    assert_eq!(db_rows(&d.db(), "locks"), 0, "BATCH: not written yet");
    a.flush().unwrap();
    assert!(!a.has_pending());
    assert_eq!(db_rows(&d.db(), "locks"), 1);
    // Locks and their unlocks before the flush: queued in the mapping, written (coalesced) by it.
    for _ in 0..1000 {
        assert_eq!(lock(&a, &env, b"g", b"nlm:a", 0).unwrap(), Ok(()));
        let r = Range::from_request(Flavour::Posix, 0, 10).unwrap();
        a.with_file(b"g", false, &env.ctx(a.me), |fs| fs.unwrap().unlock(&owner(b"nlm:a"), Flavour::Posix, &r))
            .unwrap()
            .unwrap();
    }
    assert!(a.has_pending());
    let queued: u64 = (0..NPART).map(|p| queue::count(&a.map, p)).sum();
    assert_eq!(queued, 2000, "one queued block per changing operation");
    a.flush().unwrap();
    assert!(!a.has_pending());
    assert_eq!((0..NPART).map(|p| queue::count(&a.map, p)).sum::<u64>(), 0, "the flush emptied the queues");
    assert_eq!(db_rows(&d.db(), "locks"), 1, "a lock and its unlock cancel out in the flush");
}

/// Rewrites a word of the mapping file of `db` (as another library version, or damage, would).
fn poke(db: &str, off: u64, v: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(mapping_path(db).unwrap()).unwrap();
    f.write_all_at(v, off).unwrap();
}

fn refused_then_rebuilt(name: &str, damage: impl Fn(&str), want: &str) {
    let d = Dir::new(name);
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert_eq!(lock(&a, &env, b"f", b"nlm:a", 0).unwrap(), Ok(()));
    // (Rows still queued in a mapping that cannot be trusted are lost with it: flushed first here.)
    a.flush().unwrap();
    damage(&d.db());
    // `a` is alive: the mapping is refused, never trusted.
    let e = ShmBackend::open(&d.db(), Durability::Process).err().expect("a bad mapping was accepted");
    assert!(format!("{e:?}").contains(want), "{e:?} does not say {want:?}");
    // The refused process left no registration behind.
    assert_eq!(a.procs().unwrap().len(), 1);
    // `a` dies (its registration goes, the damaged mapping stays): the next process rebuilds the
    // table, and recovers a's lock from the database.
    a.forget_proc(a.me).unwrap();
    std::mem::forget(a);
    assert!(mapping_path(&d.db()).unwrap().exists());
    let (b, rec) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let rec = rec.expect("a restart");
    assert_eq!(rec.locks.len(), 1, "the pre-restart lock comes from the database");
    assert!(b.files().unwrap().is_empty(), "the rebuilt table starts empty");
    assert_eq!(lock(&b, &env, b"f", b"nlm:b", 0).unwrap(), Ok(()));
}

#[test]
fn a_mapping_of_another_layout_version_is_refused_or_rebuilt() {
    let v = (LAYOUT_VERSION as u64 + 1) | ((std::mem::size_of::<libc::pthread_mutex_t>() as u64) << 32);
    refused_then_rebuilt("version", |db| poke(db, H_VERSION, &v.to_le_bytes()), "layout version");
}

#[test]
fn a_mapping_with_another_mutex_size_is_refused_or_rebuilt() {
    let v = LAYOUT_VERSION as u64 | (7u64 << 32);
    refused_then_rebuilt("mutex", |db| poke(db, H_VERSION, &v.to_le_bytes()), "pthread_mutex_t");
}

#[test]
fn a_mapping_from_an_older_boot_is_refused_or_rebuilt() {
    refused_then_rebuilt("boot", |db| poke(db, H_BOOT, b"00000000-0000-0000-0000-000000000000"), "older boot");
}

#[test]
fn a_mapping_of_another_instance_is_refused_or_rebuilt() {
    refused_then_rebuilt("epoch", |db| poke(db, H_EPOCH, &12345u64.to_le_bytes()), "instance");
}

#[test]
fn a_truncated_mapping_is_refused_or_rebuilt() {
    // The running handle is not used after the truncation (its pages are gone: SIGBUS).
    refused_then_rebuilt(
        "truncated",
        |db| {
            std::fs::OpenOptions::new().write(true).open(mapping_path(db).unwrap()).unwrap().set_len(100).unwrap();
        },
        "truncated",
    );
}

#[test]
fn an_overwritten_mapping_is_a_store_error_under_a_running_handle() {
    let d = Dir::new("smashed");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert_eq!(lock(&a, &env, b"f", b"nlm:a", 0).unwrap(), Ok(()));
    poke(&d.db(), 0, &[0xff; 4096]);
    assert!(matches!(test_lock(&a, &env, b"f", b"nlm:b", 0), Err(Error::Store(_))));
    assert!(matches!(a.files(), Err(Error::Store(_))));
}

#[test]
fn an_intent_left_by_a_dead_holder_is_rolled_forward() {
    // What a process killed after recording its intent leaves: the intent, the new record written
    // but not linked, the database work not done. The next locker must finish it.
    let d = Dir::new("intent");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let file = b"f";
    let h = fnv1a(file);
    let p = h % NPART;
    let mut fs = FileState::blank(file, true);
    fs.me = a.me;
    let r = Range::from_request(Flavour::Posix, 0, 10).unwrap();
    fs.lock(&owner(b"nlm:dead"), Flavour::Posix, LockType::Exclusive, &r).unwrap();
    let aux = Aux { journal: fs.take_journal(), file: file[..].into(), ..Default::default() };
    {
        let _g = a.lock_part(p).unwrap();
        let (link, rec) = a.find(p, h, file).unwrap();
        assert_eq!(rec, 0);
        let new = a.write_record(p, h, 0, &fs.procs(), file, &fs.encode()).unwrap();
        let auxb = a.write_aux(p, &aux.encode()).unwrap();
        let o = part_off(p);
        let m = &a.map;
        let seq = m.get(o + P_SEQ) + 1;
        m.set(o + P_SEQ, seq);
        for (f, v) in [(P_I_LINK, link), (P_I_VALUE, new), (P_I_OLD, 0), (P_I_AUX, auxb), (P_I_SEQ, seq)] {
            m.set(o + f, v);
        }
        m.set(o + P_INTENT, 1);
        // ...and the holder "dies" (here: unlocks without finishing).
    }
    assert_eq!(db_rows(&d.db(), "locks"), 0);
    // The next operation on the partition finishes it: the lock is there, in the table and the database.
    assert!(!test_lock(&a, &env, file, b"nlm:b", 0).unwrap());
    assert_eq!(db_rows(&d.db(), "locks"), 1);
    assert_eq!(a.map.get(part_off(p) + P_INTENT), 0);
    // Rolling forward twice never applies the database work twice.
    let o = part_off(p);
    a.map.set(o + P_INTENT, 1);
    let (_, rec) = a.find(p, h, file).unwrap();
    a.map.set(o + P_I_OLD, 0);
    a.map.set(o + P_I_AUX, a.write_aux(p, &aux.encode()).unwrap());
    a.map.set(o + P_I_VALUE, rec);
    assert!(!test_lock(&a, &env, file, b"nlm:b", 0).unwrap());
    let c = rusqlite::Connection::open(d.db()).unwrap();
    let n: i64 = c.query_row("SELECT count FROM locks", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "the journal was applied twice");
}

/// A state decoded into a reused `FileState` (the scratch pool of `with_file`) is the state a fresh
/// decode gives: nothing of the state it held before stays (owners, locks, their numbering).
#[test]
fn a_state_decoded_into_a_reused_one_is_the_fresh_decode() {
    let d = Dir::new("scratch");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert_eq!(lock(&a, &env, b"f1", b"nlm:a", 0).unwrap(), Ok(()));
    for (i, c) in [&b"nlm:b"[..], b"nlm:c", b"nlm:d"].iter().enumerate() {
        let c: &'static [u8] = c;
        assert_eq!(lock(&a, &env, b"f2", c, 100 * i as u64).unwrap(), Ok(()));
    }
    assert_eq!(lock(&a, &env, b"f3", b"nlm:e", 5).unwrap(), Ok(()));
    let bytes = |f: &[u8]| {
        let h = layout::fnv1a(f);
        let (_, r) = a.find(h % NPART, h, f).unwrap();
        assert_ne!(r, 0);
        a.record_parts(h % NPART, r).unwrap().3.to_vec()
    };
    let (b1, b2, b3) = (bytes(b"f1"), bytes(b"f2"), bytes(b"f3"));
    let mut scratch = FileState::decode(b"f2", &b2, true).unwrap();
    for (f, b) in [(&b"f1"[..], &b1), (b"f3", &b3), (b"f2", &b2), (b"f1", &b1)] {
        scratch.decode_into(f, b, true).unwrap();
        let fresh = FileState::decode(f, b, true).unwrap();
        assert_eq!(scratch.encode(), fresh.encode(), "{}", String::from_utf8_lossy(f));
        assert_eq!(scratch.id(), f);
        assert_eq!(scratch.locks.len(), fresh.locks.len());
        // Same answers: every owner seen anywhere conflicts here exactly where it does on a fresh decode.
        for c in [&b"nlm:a"[..], b"nlm:b", b"nlm:c", b"nlm:d", b"nlm:e", b"nlm:z"] {
            let c: &'static [u8] = c;
            for start in [0, 5, 100, 200, 300] {
                let r = Range::from_request(Flavour::Posix, start, 10).unwrap();
                assert_eq!(
                    scratch.test(&owner(c), Flavour::Posix, LockType::Exclusive, &r).is_none(),
                    fresh.test(&owner(c), Flavour::Posix, LockType::Exclusive, &r).is_none()
                );
            }
        }
    }
    // Malformed bytes: an error, and the reused state decodes the next good one as fresh.
    assert!(scratch.decode_into(b"f1", &b1[..b1.len() / 2], true).is_none());
    scratch.decode_into(b"f3", &b3, true).unwrap();
    assert_eq!(scratch.encode(), FileState::decode(b"f3", &b3, true).unwrap().encode());
}

/// PROCESS: a process killed after its call returned loses nothing although its lock rows were only
/// queued in the mapping: the restart writes them to the database before reading the pre-restart
/// state. An intent never finished (its operation never returned) is not written.
#[test]
fn a_restart_writes_the_rows_left_queued_in_the_mapping() {
    let d = Dir::new("leftq");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert_eq!(lock(&a, &env, b"f", b"nlm:a", 0).unwrap(), Ok(()));
    assert_eq!(lock(&a, &env, b"g", b"nlm:a", 0).unwrap(), Ok(()));
    assert_eq!(lock(&a, &env, b"g", b"nlm:a", 50).unwrap(), Ok(()));
    let r = Range::from_request(Flavour::Posix, 50, 10).unwrap();
    a.with_file(b"g", false, &env.ctx(a.me), |fs| fs.unwrap().unlock(&owner(b"nlm:a"), Flavour::Posix, &r))
        .unwrap()
        .unwrap();
    assert_eq!(db_rows(&d.db(), "locks"), 0, "queued, not written yet");
    // An operation that dies with its intent set (its rows must not be written): a lock on h whose
    // intent is recorded but never rolled forward.
    let h = layout::fnv1a(b"h");
    let p = h % NPART;
    {
        let _g = a.lock_part(p).unwrap();
        let aux_row = store::LockRow {
            file: b"h"[..].into(),
            client: b"nlm:a"[..].into(),
            owner: b"o"[..].into(),
            open_id: 0,
            flavour: 1,
            kind: 2,
            start: 0,
            length: 10,
        };
        let aux = Aux {
            journal: Journal { locks: vec![(aux_row, 1)], leases: vec![] },
            events: vec![],
            edges: None,
            file: b"h"[..].into(),
        };
        let b = a.write_aux(p, &aux.encode()).unwrap();
        let o = part_off(p);
        let seq = a.map.get(o + P_SEQ) + 1;
        queue::set_seq(&a.map, b, seq, false);
        // Linked as a roll-forward would, but the intent is left set: the process "died" there.
        queue::link(&a.map, p, b);
        a.map.set(o + P_SEQ, seq);
        a.map.set(o + P_I_AUX, b);
        a.map.set(o + P_INTENT, 1);
        std::mem::forget(_g); // "dies" holding the partition mutex
    }
    // a dies: its registration goes, the mapping with its queues stays.
    a.forget_proc(a.me).unwrap();
    std::mem::forget(a);
    let (b, rec) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let rec = rec.expect("a restart");
    assert_eq!(rec.locks.len(), 2, "f's lock and g's first lock (the second was unlocked); not h's");
    assert_eq!(db_rows(&d.db(), "locks"), 0, "taken as the pre-restart state");
    drop(b);
}

/// Processes of one table in different durability modes: a SYNC process's lock rows are written in
/// its call, after the rows other processes queued for the same partition — never before them (an
/// unlock written before its queued lock would leave a row for a lock nobody holds).
#[test]
fn a_sync_process_writes_the_queued_rows_before_its_own() {
    let d = Dir::new("mixed");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Sync).unwrap();
    assert_eq!(lock(&a, &env, b"f", b"nlm:a", 0).unwrap(), Ok(()));
    assert_eq!(db_rows(&d.db(), "locks"), 0, "a's lock row is queued");
    // b (SYNC) unlocks it: a's queued +1 is written first, then b's -1.
    let r = Range::from_request(Flavour::Posix, 0, 10).unwrap();
    b.with_file(b"f", false, &env.ctx(b.me), |fs| fs.unwrap().unlock(&owner(b"nlm:a"), Flavour::Posix, &r))
        .unwrap()
        .unwrap();
    assert_eq!(db_rows(&d.db(), "locks"), 0);
    a.flush().unwrap();
    b.flush().unwrap();
    assert_eq!(db_rows(&d.db(), "locks"), 0, "a row was left for a lock nobody holds");
    // And a SYNC lock is in the database at once.
    assert_eq!(lock(&b, &env, b"g", b"nlm:b", 0).unwrap(), Ok(()));
    assert_eq!(db_rows(&d.db(), "locks"), 1);
}

// ---- Mail in the mapping (`mail`) ----

fn ev(proc: u64, file: &[u8], n: u64) -> Event {
    Event {
        kind: crate::requests::EventKind::LockDone,
        result: Ok(()),
        request_id: n,
        token: n + 1,
        user_data: 0,
        file: file.into(),
        client: b"nlm:x".to_vec(),
        owner: b"o".to_vec(),
        open_id: 1,
        flavour: Flavour::Posix,
        lock_kind: LockType::Exclusive,
        offset: 0,
        length: 10,
        lease: Default::default(),
        proc,
    }
}

/// One operation of `a` on `file` whose only work is mail: `n` events for `to`, numbered from `first`.
fn send(a: &ShmBackend, env: &Env, file: &[u8], to: u64, first: u64, n: u64) {
    a.with_file(file, true, &env.ctx(a.me), |_| {
        let mut o = env.outbox.lock();
        for i in first..first + n {
            o.push(ev(to, file, i));
        }
    })
    .unwrap();
}

fn ids(evs: &[Event]) -> Vec<u64> {
    evs.iter().map(|e| e.request_id).collect()
}

fn wal_len(db: &str) -> u64 {
    std::fs::metadata(format!("{db}-wal")).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn mail_reaches_another_handle_through_the_mapping_in_order_without_sqlite() {
    let d = Dir::new("mail");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(a.slot.is_some() && b.slot.is_some(), "both handles have a mail slot");
    assert!(b.take_mail().unwrap().is_empty());
    let wal = wal_len(&d.db());
    for i in 0..10 {
        send(&a, &env, b"f", b.me, i * 3, 3);
    }
    assert_eq!(db_rows(&d.db(), "mailbox"), 0, "mail went to SQLite");
    assert_eq!(wal_len(&d.db()), wal, "an operation whose only work is mail wrote to the database");
    let got = b.take_mail().unwrap();
    assert_eq!(ids(&got), (0..30).collect::<Vec<_>>(), "mail lost, duplicated or reordered");
    assert!(got.iter().all(|e| e.proc == b.me && &*e.file == b"f"));
    assert!(b.take_mail().unwrap().is_empty(), "mail read twice");
    assert!(a.take_mail().unwrap().is_empty(), "mail went to the wrong process");
    assert_eq!(wal_len(&d.db()), wal, "reading the ring wrote to the database");
    // The wake-up datagram reached b's socket (computed from its proc id, no SELECT).
    send(&a, &env, b"f", b.me, 100, 1);
    let mut buf = [0u8; 8];
    assert!(b.sh.socket().recv(&mut buf).is_ok(), "no wake-up datagram");
    assert_eq!(ids(&b.take_mail().unwrap()), vec![100]);
}

#[test]
fn a_full_ring_falls_back_to_sqlite_and_nothing_is_lost_or_reordered() {
    let d = Dir::new("mailfull");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(b.take_mail().unwrap().is_empty());
    // ~130 bytes an event: 1000 events overflow the ring several times over.
    let file = vec![b'x'; 40];
    for i in 0..100 {
        send(&a, &env, &file, b.me, i * 10, 10);
    }
    assert!(db_rows(&d.db(), "mailbox") > 0, "the ring never filled: the test tests nothing");
    let s = slot_off(b.slot.unwrap());
    assert_eq!(a.map.get(s + S_STICKY), 1, "the owner's mail did not stay in SQLite once the ring was full");
    let got = b.take_mail().unwrap();
    assert_eq!(ids(&got), (0..1000).collect::<Vec<_>>(), "mail lost, duplicated or reordered");
    assert_eq!(db_rows(&d.db(), "mailbox"), 0);
    assert_eq!(a.map.get(s + S_STICKY), 0, "the slot stayed on SQLite after its mail was read");
    // Back to the ring.
    send(&a, &env, &file, b.me, 1000, 5);
    assert_eq!(db_rows(&d.db(), "mailbox"), 0);
    assert_eq!(ids(&b.take_mail().unwrap()), (1000..1005).collect::<Vec<_>>());
}

#[test]
fn a_process_without_a_slot_gets_its_mail_through_sqlite() {
    let d = Dir::new("mailnoslot");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    // A (live) process already owns b's slot: b has none.
    let s = b.slot.unwrap();
    mail::release(&a.map, s, b.me, a.epoch).unwrap();
    let alive = |_| true;
    assert!(mail::claim(&a.map, s, a.me, a.epoch, alive).unwrap());
    assert!(!mail::claim(&a.map, s, b.me, a.epoch, alive).unwrap(), "a live owner's slot was taken");
    let mut b = b;
    b.slot = None;
    send(&a, &env, b"f", b.me, 0, 3);
    assert_eq!(db_rows(&d.db(), "mailbox"), 3);
    assert!(a.take_mail().unwrap().is_empty(), "the slot's owner got another process's mail");
    assert_eq!(ids(&b.take_mail().unwrap()), vec![0, 1, 2]);
    // A dead owner's slot is taken over, and its stale mail discarded.
    mail::release(&a.map, s, a.me, a.epoch).unwrap();
    assert!(mail::claim(&a.map, s, 999_999, a.epoch, |_| true).unwrap());
    send(&a, &env, b"f", 999_999, 0, 2);
    assert!(mail::claim(&a.map, s, b.me, a.epoch, |_| false).unwrap(), "a dead owner's slot was not taken");
    b.slot = Some(s);
    assert!(b.take_mail().unwrap().is_empty(), "the dead owner's mail was delivered to the new owner");
}

/// Records an intent in `file`'s partition whose only work is `events` (as a process killed right
/// after recording it leaves it), and returns (partition, seq).
fn intent_with_mail(a: &ShmBackend, file: &[u8], events: Vec<Event>) -> (u64, u64) {
    let h = fnv1a(file);
    let p = h % NPART;
    let aux = Aux { events, file: file.into(), ..Default::default() };
    let _g = a.lock_part(p).unwrap();
    let (link, _) = a.find(p, h, file).unwrap();
    let o = part_off(p);
    let m = &a.map;
    let seq = m.get(o + P_SEQ) + 1;
    m.set(o + P_SEQ, seq);
    let auxb = a.write_aux(p, &aux.encode()).unwrap();
    for (f, v) in [(P_I_LINK, link), (P_I_VALUE, m.get(link)), (P_I_OLD, 0), (P_I_AUX, auxb), (P_I_SEQ, seq)] {
        m.set(o + f, v);
    }
    m.set(o + P_INTENT, 1);
    (p, seq)
}

/// The same intent left once more (its mail already posted): a roll-forward repeated after a crash.
fn leave_again(a: &ShmBackend, p: u64, events: Vec<Event>, file: &[u8]) {
    let _g = a.lock_part(p).unwrap();
    let o = part_off(p);
    let aux = Aux { events, file: file.into(), ..Default::default() };
    a.map.set(o + P_I_AUX, a.write_aux(p, &aux.encode()).unwrap());
    a.map.set(o + P_I_OLD, 0);
    a.map.set(o + P_INTENT, 1);
}

#[test]
fn a_repeated_roll_forward_posts_nothing_twice() {
    let d = Dir::new("mailtwice");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(b.take_mail().unwrap().is_empty());
    let evs = vec![ev(b.me, b"f", 1), ev(b.me, b"f", 2)];
    let (p, _) = intent_with_mail(&a, b"f", evs.clone());
    // The next locker finishes it; then it is found again, as if the finisher died before clearing it.
    assert!(test_lock(&a, &env, b"f", b"nlm:a", 0).unwrap());
    assert_eq!(a.map.get(part_off(p) + P_INTENT), 0);
    leave_again(&a, p, evs.clone(), b"f");
    assert!(test_lock(&a, &env, b"f", b"nlm:a", 0).unwrap());
    assert_eq!(ids(&b.take_mail().unwrap()), vec![1, 2], "the roll-forward posted twice");
    // The same through the SQLite fallback (b's ring full): inserted once.
    let big: Vec<Event> = (0..600).map(|i| ev(b.me, b"f", 10 + i)).collect();
    let (p, _) = intent_with_mail(&a, b"f", big.clone());
    assert!(test_lock(&a, &env, b"f", b"nlm:a", 0).unwrap());
    let rows = db_rows(&d.db(), "mailbox");
    assert_eq!(rows, 600, "600 events overflow the ring: all of them go to SQLite");
    leave_again(&a, p, big, b"f");
    assert!(test_lock(&a, &env, b"f", b"nlm:a", 0).unwrap());
    assert_eq!(db_rows(&d.db(), "mailbox"), rows, "the fallback was inserted twice");
    assert_eq!(ids(&b.take_mail().unwrap()), (10..610).collect::<Vec<_>>());
}

/// A child posts to b's slot and stops itself inside the slot mutex at `step`; it is SIGKILLed there.
fn kill_poster_at(a: &ShmBackend, s: u64, part: u64, seq: u64, evs: &[(u64, Vec<u8>)], step: u64) {
    // SAFETY: the child only posts into the mapping (no allocation after fork beyond Vec pushes,
    // which glibc's fork-safe malloc allows) and is killed stopped.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0);
        if pid == 0 {
            let stop = |st: u64| {
                if st == step {
                    libc::raise(libc::SIGSTOP);
                }
            };
            let _ = mail::post(&a.map, s, part, seq, evs, &stop);
            libc::_exit(3); // never reached: killed while stopped
        }
        let mut st = 0;
        assert_eq!(libc::waitpid(pid, &mut st, libc::WUNTRACED), pid);
        assert!(libc::WIFSTOPPED(st), "the poster did not stop inside the slot mutex: {st:#x}");
        libc::kill(pid, libc::SIGKILL);
        assert_eq!(libc::waitpid(pid, &mut st, 0), pid);
        assert!(libc::WIFSIGNALED(st));
    }
}

#[test]
fn a_poster_killed_inside_the_slot_mutex_leaves_the_slot_consistent() {
    let d = Dir::new("mailkill");
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let (b, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    assert!(b.take_mail().unwrap().is_empty());
    let s = b.slot.unwrap();
    let enc = |n| (b.me, crate::backend::sqlite_shared::encode_event(&ev(b.me, b"f", n)));
    // A partition and sequence numbers no operation of this test uses.
    let part = 5;
    for (seq, step, delivered) in [(1000, 4, false), (1001, 5, true)] {
        let evs = vec![enc(seq * 10), enc(seq * 10 + 1)];
        kill_poster_at(&a, s, part, seq, &evs, step);
        // The mutex's holder died: the reader takes it with EOWNERDEAD and finishes (or drops) the post.
        let got = b.take_mail().unwrap();
        let want: Vec<u64> = if delivered { vec![seq * 10, seq * 10 + 1] } else { vec![] };
        assert_eq!(ids(&got), want, "killed at step {step}: a half or lost post");
        assert_eq!(a.map.get(slot_off(s) + S_INTENT), 0);
        // The partition's roll-forward then posts again: delivered exactly once in all.
        let p = mail::post(&a.map, s, part, seq, &evs, &|_| {}).unwrap();
        assert!(p.fallback.is_empty());
        let again = b.take_mail().unwrap();
        assert_eq!(ids(&again), if delivered { vec![] } else { vec![seq * 10, seq * 10 + 1] }, "step {step}");
    }
    // The slot still works.
    let p = mail::post(&a.map, s, part, 2000, &[enc(7)], &|_| {}).unwrap();
    assert_eq!(p.ring, vec![b.me]);
    assert_eq!(ids(&b.take_mail().unwrap()), vec![7]);
}

/// Outside SYNC, a lease set that adds or removes no SMB lease (a break, a plain open, its close)
/// waits in the write-behind queue, while one that adds a lease is written in the call (`lease_file`
/// reads it across files).
#[test]
fn a_break_is_queued_and_a_new_lease_written_at_once() {
    use crate::core::file::OpenSpec;
    let d = Dir::new("leaseq");
    let env = Env::new();
    let (a, _) = ShmBackend::open(&d.db(), Durability::Process).unwrap();
    let spec = |key: u8, requested: u8| OpenSpec {
        kind: Some(crate::core::lease::Kind::Lease),
        key: [key; 16],
        requested,
        version: 2,
        epoch: 1,
        timeout_ms: 35_000,
        ..Default::default()
    };
    let breaking = || -> i64 {
        rusqlite::Connection::open(d.db())
            .unwrap()
            .query_row("SELECT breaking FROM leases WHERE client = ?1", [&b"smb:a"[..]], |r| r.get(0))
            .unwrap()
    };
    a.with_file(b"f", true, &env.ctx(a.me), |fs| fs.unwrap().open_file(&env.ctx(a.me), b"smb:a", 1, &spec(1, 7), None))
        .unwrap()
        .unwrap();
    assert_eq!(db_rows(&d.db(), "leases"), 1, "a new lease is written in the call");
    assert_eq!(a.lease_file(b"smb:a", &[1; 16]).unwrap().as_deref(), Some(&b"f"[..]));
    // Another client's open breaks a's RWH lease (it waits for the ack): a state change, queued.
    let r = a
        .with_file(b"f", false, &env.ctx(a.me), |fs| {
            fs.unwrap().open_file(&env.ctx(a.me), b"smb:b", 2, &spec(2, 7), Some((9, 0, 0)))
        })
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(breaking(), 0, "the break is queued, not written yet");
    assert!(a.has_pending());
    a.flush().unwrap();
    assert_eq!(breaking(), 1, "the flush wrote the breaking lease");
    // A plain open (no lease) and its close on another file: recorded, but no SMB lease comes or
    // goes, so nothing is written in the call.
    let plain = OpenSpec { kind: None, ..spec(0, 0) };
    a.with_file(b"g", true, &env.ctx(a.me), |fs| fs.unwrap().open_file(&env.ctx(a.me), b"smb:c", 3, &plain, None))
        .unwrap()
        .unwrap();
    assert_eq!(db_rows(&d.db(), "leases"), 1, "a plain open's record waits in the queue");
    a.flush().unwrap();
    assert_eq!(db_rows(&d.db(), "leases"), 2, "and the flush writes it");
    a.with_file(b"g", false, &env.ctx(a.me), |fs| fs.unwrap().close_file(&env.ctx(a.me), b"smb:c", 3))
        .unwrap()
        .unwrap();
    assert_eq!(db_rows(&d.db(), "leases"), 2, "its close waits too");
    a.flush().unwrap();
    assert_eq!(db_rows(&d.db(), "leases"), 1);
}
