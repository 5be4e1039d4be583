//! Behaviour of blocking requests, cancel, timeouts, deadlocks, watches and both event drivers (one
//! concept: the facade and driver's request lifecycle; tests only),
//! driven on a manual clock (nothing here sleeps except the thread-mode tests, which wait for events
//! with a bounded timeout so a lost wake-up fails instead of hanging).

use super::*;
use crate::clock::ManualClock;
use crate::core::lease;
use crate::requests::EventKind;
use crate::table::{LeaseAnswer, OpenSpec};
use std::sync::mpsc;

const F: &[u8] = b"file-1";
const G: &[u8] = b"file-2";

fn own(client: &'static [u8], owner: &'static [u8]) -> OwnerRef<'static> {
    OwnerRef { client, owner, open_id: 1 }
}

fn px(kind: LockType, offset: u64, length: u64) -> LockReq {
    LockReq { flavour: Flavour::Posix, kind, offset, length }
}

struct Rig {
    m: Arc<Manager>,
    clock: Arc<ManualClock>,
    rx: mpsc::Receiver<Event>,
}

fn rig() -> Rig {
    let clock = Arc::new(ManualClock::default());
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let m = Manager::new(Settings {
        break_timeout_ms: 0,
        db_path: None,
        durability: None,
        grace_ms: 0,
        batch_ms: 0,
        max_locks_per_file: 0,
        max_locks_per_client: 0,
        max_locks_total: 0,
        shared: false,
        shared_table: None,
        cluster: None,
        no_dir_leases: false,
        loop_mode: true,
        clock: Some(clock.clone()),
        callback: Some(Box::new(move |e: &Event| tx.lock().send(e.clone()).unwrap())),
    })
    .unwrap();
    Rig { m: Arc::new(m), clock, rx }
}

impl Rig {
    fn pump(&self) -> Vec<Event> {
        self.m.process_events();
        self.rx.try_iter().collect()
    }
    fn wait(&self, file: &[u8], o: &OwnerRef, req: LockReq, token: u64) -> Result<Queued> {
        self.m.lock_blocking(file, o, &req, &WaitSpec { token, user_data: token as usize, timeout_ms: 0 })
    }
}

fn pending(r: Result<Queued>) -> u64 {
    match r {
        Ok(Queued::Pending(id, _)) => id,
        other => panic!("expected pending, got {other:?}"),
    }
}

#[test]
fn waiters_are_granted_in_arrival_order() {
    let r = rig();
    let (a, b, c) = (own(b"nlm:a", b"1"), own(b"nlm:b", b"2"), own(b"nlm:c", b"3"));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 100)).unwrap();
    let idb = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 7));
    let idc = pending(r.wait(F, &c, px(LockType::Shared, 5, 10), 8));
    assert!(r.pump().is_empty());
    r.m.unlock(F, &a, Flavour::Posix, 0, 100).unwrap();
    let ev = r.pump();
    assert_eq!(ev.len(), 1, "only B can proceed: C conflicts with B's grant");
    assert_eq!((ev[0].request_id, ev[0].token, ev[0].user_data), (idb, 7, 7));
    assert_eq!(ev[0].result, Ok(()));
    assert_eq!((ev[0].client.as_slice(), ev[0].offset, ev[0].length), (&b"nlm:b"[..], 0, 10));
    r.m.unlock(F, &b, Flavour::Posix, 0, 10).unwrap();
    let ev = r.pump();
    assert_eq!(ev.iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![idc]);
    assert_eq!(r.m.list(F).unwrap().len(), 1);
}

#[test]
fn waiting_exclusive_is_not_starved_by_later_shared() {
    let r = rig();
    let (a, b, c) = (own(b"a", b""), own(b"b", b""), own(b"c", b""));
    r.m.lock(F, &a, &px(LockType::Shared, 0, 10)).unwrap();
    let idb = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 1));
    // A blocking shared request queues behind B although the held locks would allow it...
    let idc = pending(r.wait(F, &c, px(LockType::Shared, 0, 10), 2));
    // ...while a non-blocking one is decided against held locks only (and agrees with test).
    assert!(r.m.test(F, &c, &px(LockType::Shared, 20, 1)).unwrap().is_none());
    r.m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    let ev = r.pump();
    assert_eq!(ev.iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![idb]);
    r.m.release_open(F, &b).unwrap();
    assert_eq!(r.pump().iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![idc]);
}

#[test]
fn token_resubmission_is_idempotent() {
    let r = rig();
    let (a, b) = (own(b"a", b""), own(b"b", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let id = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 42));
    assert_eq!(pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 42)), id);
    r.m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    assert_eq!(r.pump().len(), 1);
    assert_eq!(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 42), Ok(Queued::Granted));
    assert_eq!(r.m.list(F).unwrap().len(), 1);
}

#[test]
fn cancel_is_race_safe() {
    let r = rig();
    let (a, b) = (own(b"a", b""), own(b"b", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let id = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 1));
    assert_eq!(r.m.cancel(id), Ok(CancelOutcome::Cancelled));
    assert_eq!(r.m.cancel(id), Err(Error::NotFound));
    // Granted but not yet delivered: the caller owns the lock and no event comes.
    let id = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 2));
    r.m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    assert_eq!(r.m.cancel(id), Ok(CancelOutcome::AlreadyGranted));
    assert!(r.pump().is_empty());
    assert_eq!(r.m.list(F).unwrap()[0].client, b"b");
    assert_eq!(r.m.cancel(999_999), Err(Error::NotFound));
}

#[test]
fn timeout_fails_the_request_and_lets_later_waiters_in() {
    let r = rig();
    let (a, b, c) = (own(b"a", b""), own(b"b", b""), own(b"c", b""));
    r.m.lock(F, &a, &px(LockType::Shared, 0, 10)).unwrap();
    let spec = WaitSpec { token: 1, user_data: 0, timeout_ms: 500 };
    let idb = pending(r.m.lock_blocking(F, &b, &px(LockType::Exclusive, 0, 10), &spec));
    let idc = pending(r.wait(F, &c, px(LockType::Shared, 0, 10), 2));
    assert_eq!(r.m.next_timeout_ms(), Some(500));
    r.clock.advance(499);
    assert!(r.pump().is_empty());
    r.clock.advance(1);
    let ev = r.pump();
    let ids: Vec<_> = ev.iter().map(|e| (e.request_id, e.result.clone())).collect();
    assert_eq!(ids, vec![(idb, Err(Error::Timeout)), (idc, Ok(()))]);
    assert_eq!(r.m.cancel(idb), Err(Error::NotFound));
}

/// A request's timer goes with its reason: granted or cancelled, nothing stays armed (issue 16:
/// "timers cancelled when their reason goes").
#[test]
fn a_decided_request_disarms_its_timer() {
    let r = rig();
    let (a, b, c) = (own(b"a", b""), own(b"b", b""), own(b"c", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    r.m.lock(G, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let spec = WaitSpec { token: 1, user_data: 0, timeout_ms: 500 };
    let idb = pending(r.m.lock_blocking(F, &b, &px(LockType::Exclusive, 0, 10), &spec));
    let idc = pending(r.m.lock_blocking(G, &c, &px(LockType::Exclusive, 0, 10), &WaitSpec { token: 2, ..spec }));
    assert_eq!(r.m.driver.events.timer_count(), 2);
    // Granted: its timer is disarmed once the grant is delivered.
    r.m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    let ev = r.pump();
    assert_eq!(ev.iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![idb]);
    assert_eq!(r.m.driver.events.timer_count(), 1);
    // Cancelled: disarmed at once; nothing is scheduled any more.
    assert_eq!(r.m.cancel(idc), Ok(CancelOutcome::Cancelled));
    assert_eq!(r.m.driver.events.timer_count(), 0);
    assert_eq!(r.m.next_timeout_ms(), None);
}

#[test]
fn deadlocks_are_refused_over_the_whole_graph() {
    let r = rig();
    let (a, b, c) = (own(b"a", b""), own(b"b", b""), own(b"c", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 1)).unwrap();
    r.m.lock(G, &b, &px(LockType::Exclusive, 0, 1)).unwrap();
    pending(r.wait(G, &a, px(LockType::Exclusive, 0, 1), 1)); // a waits for b
    assert_eq!(r.wait(F, &b, px(LockType::Exclusive, 0, 1), 2), Err(Error::Deadlock)); // b -> a -> b
                                                                                       // Three owners across three files.
    let h: &[u8] = b"file-3";
    r.m.lock(h, &c, &px(LockType::Exclusive, 0, 1)).unwrap();
    pending(r.wait(h, &b, px(LockType::Exclusive, 0, 1), 3)); // b waits for c
    assert_eq!(r.wait(F, &c, px(LockType::Exclusive, 0, 1), 4), Err(Error::Deadlock)); // c -> a -> b -> c
    assert_eq!(r.m.deadlocks.load(Ordering::Relaxed), 2);
    // A long chain: o0 <- o1 <- ... each waits for the previous one's lock.
    let r = rig();
    let names: Vec<Vec<u8>> = (0..200).map(|i: u32| i.to_be_bytes().to_vec()).collect();
    let o = |i: usize| OwnerRef { client: b"x", owner: &names[i], open_id: 0 };
    for i in 0..200 {
        r.m.lock(F, &o(i), &px(LockType::Exclusive, i as u64, 1)).unwrap();
    }
    for i in 1..200 {
        pending(r.wait(F, &o(i), px(LockType::Exclusive, i as u64 - 1, 1), i as u64));
    }
    assert_eq!(r.wait(F, &o(0), px(LockType::Exclusive, 199, 1), 9), Err(Error::Deadlock));
}

#[test]
fn close_and_client_release_end_or_wake_waiters() {
    let r = rig();
    let (a, b, c) = (own(b"a", b""), own(b"b", b""), own(b"c", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let idb = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 1));
    assert_eq!(r.wait(F, &c, px(LockType::Exclusive, 20, 1), 2), Ok(Queued::Granted)); // not blocked
    r.m.release_open(F, &b).unwrap(); // b's open closes while it waits
    let ev = r.pump();
    assert_eq!(
        ev.iter().map(|e| (e.request_id, e.result.clone())).collect::<Vec<_>>(),
        vec![(idb, Err(Error::RangeNotLocked))]
    );
    let idb = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 3));
    assert_eq!(r.m.release_client(b"a"), Ok(1));
    assert_eq!(r.pump().iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![idb]);
}

#[test]
fn watch_fires_once_when_locks_go() {
    let r = rig();
    let a = own(b"a", b"");
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let id = r.m.watch(F, 5, 55).unwrap();
    r.m.lock(F, &a, &px(LockType::Exclusive, 20, 10)).unwrap();
    assert!(r.pump().is_empty());
    r.m.unlock(F, &a, Flavour::Posix, 0, 5).unwrap();
    let ev = r.pump();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].kind, ev[0].request_id, ev[0].token, ev[0].user_data), (EventKind::Watch, id, 5, 55));
    r.m.unlock(F, &a, Flavour::Posix, 0, 100).unwrap();
    assert!(r.pump().is_empty());
    let id = r.m.watch(F, 6, 0).unwrap();
    assert_eq!(r.m.cancel(id), Ok(CancelOutcome::Cancelled));
}

#[test]
fn callbacks_may_reenter_the_library() {
    let clock = Arc::new(ManualClock::default());
    let slot: Arc<once_cell::sync::OnceCell<std::sync::Weak<Manager>>> = Arc::default();
    let s2 = slot.clone();
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = seen.clone();
    let m = Arc::new(
        Manager::new(Settings {
            break_timeout_ms: 0,
            db_path: None,
            durability: None,
            grace_ms: 0,
            batch_ms: 0,
            max_locks_per_file: 0,
            max_locks_per_client: 0,
            max_locks_total: 0,
            shared: false,
            shared_table: None,
            cluster: None,
            no_dir_leases: false,
            loop_mode: true,
            clock: Some(clock),
            callback: Some(Box::new(move |e: &Event| {
                let m = s2.get().unwrap().upgrade().unwrap();
                let o = OwnerRef { client: &e.client, owner: &e.owner, open_id: e.open_id };
                // Unlock the lock just granted, and cancel our own request from inside its callback.
                m.unlock(&e.file, &o, e.flavour, e.offset, e.length).unwrap();
                assert_eq!(m.cancel(e.request_id), Err(Error::NotFound));
                seen2.fetch_add(1, Ordering::SeqCst);
            })),
        })
        .unwrap(),
    );
    slot.set(Arc::downgrade(&m)).unwrap();
    let (a, b) = (own(b"a", b""), own(b"b", b""));
    m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    pending(m.lock_blocking(F, &b, &px(LockType::Exclusive, 0, 10), &WaitSpec::default()));
    m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    assert_eq!(m.process_events(), 1);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert!(m.list(F).unwrap().is_empty());
}

#[test]
fn loop_mode_fd_is_level_triggered() {
    let r = rig();
    let fd = r.m.event_fd();
    assert!(fd >= 0);
    let readable = || {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    assert!(!readable());
    let (a, b) = (own(b"a", b""), own(b"b", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 1));
    r.m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    assert!(readable());
    assert!(readable(), "stays readable until processed");
    assert_eq!(r.pump().len(), 1);
    assert!(!readable());
}

/// Many threads blocking and releasing on shared ranges (thread mode): every request must be
/// granted (no lost wake-up) and no lock may be left behind.
#[test]
fn stress_blocking_threads() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 300;
    let chans: Vec<(mpsc::Sender<u64>, mpsc::Receiver<u64>)> = (0..THREADS).map(|_| mpsc::channel()).collect();
    let senders: Vec<Mutex<mpsc::Sender<u64>>> = chans.iter().map(|(t, _)| Mutex::new(t.clone())).collect();
    let m = Arc::new(
        Manager::new(Settings {
            break_timeout_ms: 0,
            db_path: None,
            durability: None,
            grace_ms: 0,
            batch_ms: 0,
            max_locks_per_file: 0,
            max_locks_per_client: 0,
            max_locks_total: 0,
            shared: false,
            shared_table: None,
            cluster: None,
            no_dir_leases: false,
            loop_mode: false,
            clock: None,
            callback: Some(Box::new(move |e: &Event| {
                assert_eq!(e.result, Ok(()));
                senders[e.user_data].lock().send(e.request_id).unwrap();
            })),
        })
        .unwrap(),
    );
    let t = m.start_thread().unwrap();
    let waited = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = chans
        .into_iter()
        .enumerate()
        .map(|(i, (_, rx))| {
            let m = m.clone();
            let waited = waited.clone();
            std::thread::spawn(move || {
                let name = (i as u32).to_be_bytes();
                let o = OwnerRef { client: b"stress", owner: &name, open_id: 0 };
                let mut x = i as u64 * 7919 + 1;
                for round in 0..ROUNDS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (off, kind) = (x % 8, if x % 3 == 0 { LockType::Shared } else { LockType::Exclusive });
                    let req = LockReq { flavour: Flavour::Posix, kind, offset: off, length: 4 };
                    let spec = WaitSpec { token: round as u64, user_data: i, timeout_ms: 0 };
                    match m.lock_blocking(b"shared", &o, &req, &spec) {
                        Ok(Queued::Granted) => {}
                        Ok(Queued::Pending(id, _)) => {
                            let got = rx.recv_timeout(std::time::Duration::from_secs(20)).expect("lost wake-up");
                            assert_eq!(got, id);
                            waited.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Deadlock) => continue,
                        Err(e) => panic!("{e:?}"),
                    }
                    // Hold the lock for a moment so other threads really contend and queue.
                    for _ in 0..20 {
                        std::thread::yield_now();
                    }
                    m.unlock(b"shared", &o, Flavour::Posix, off, 4).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    m.stop_thread();
    t.join().unwrap();
    assert_eq!(m.table().lock_count(), 0);
    assert!(waited.load(Ordering::Relaxed) > 0, "the stress test must exercise waiting");
}

// ---- persistence and grace (SPEC.md §5) ----

fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("unilock-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("locks.db").to_string_lossy().into_owned()
}

fn db_rig(path: &str, durability: Durability, clock: Arc<ManualClock>) -> (Manager, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let m = Manager::new(Settings {
        loop_mode: true,
        clock: Some(clock),
        callback: Some(Box::new(move |e: &Event| tx.lock().send(e.clone()).unwrap())),
        break_timeout_ms: 0,
        db_path: Some(path.to_string()),
        durability: Some(durability),
        grace_ms: 1000,
        batch_ms: 5,
        ..Default::default()
    })
    .unwrap();
    (m, rx)
}

fn rows(path: &str, table: &str) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

fn reclaim() -> LockFlags {
    LockFlags { reclaim: true }
}

#[test]
fn restart_enters_grace_and_checks_reclaims() {
    let path = temp_db("grace");
    let clock = Arc::new(ManualClock::default());
    let (a, b) = (own(b"nlm:a", b"svid1"), own(b"nfs4:b", b"lo"));
    {
        let (m, _rx) = db_rig(&path, Durability::Sync, clock.clone());
        assert!(!m.grace_status().0, "a fresh database has no grace");
        m.lock(F, &a, &px(LockType::Exclusive, 0, 100)).unwrap();
        m.lock(F, &b, &px(LockType::Shared, 200, 10)).unwrap();
        let spec = OpenSpec {
            kind: Some(lease::Kind::Lease),
            key: [7; 16],
            requested: lease::R | lease::H,
            version: 2,
            epoch: 0,
            stat: false,
            write: false,
            overwrite: false,
            dir: false,
            sharing_violation: false,
            reclaim: false,
            file_size: 0,
            timeout_ms: 0,
            ..Default::default()
        };
        assert!(matches!(m.open_file(G, b"smb:c", 1, &spec, None), Ok(LeaseAnswer::Ready(g)) if g.state == 3));
        assert_eq!(rows(&path, "locks"), 2, "sync mode: durable before the call returned");
    } // the process "dies"
    let (m, rx) = db_rig(&path, Durability::Sync, clock.clone());
    let (active, remaining, expected, done) = m.grace_status();
    assert!(active);
    assert_eq!((remaining, expected, done), (1000, 3, 0));
    // New locks are refused, tests allowed, reclaims checked against the old state.
    assert_eq!(m.lock(F, &a, &px(LockType::Shared, 500, 1)), Err(Error::Grace));
    assert_eq!(m.test(F, &a, &px(LockType::Shared, 500, 1)), Ok(None));
    assert_eq!(m.lock_with(F, &a, &px(LockType::Exclusive, 10, 20), reclaim()), Ok(()));
    assert_eq!(m.lock_with(F, &a, &px(LockType::Exclusive, 90, 20), reclaim()), Err(Error::ReclaimDenied));
    assert_eq!(m.lock_with(F, &b, &px(LockType::Exclusive, 200, 10), reclaim()), Err(Error::ReclaimDenied));
    // An SMB lease request whose key existed is its reclaim; asking for more is denied.
    let mut spec = OpenSpec {
        kind: Some(lease::Kind::Lease),
        key: [7; 16],
        requested: lease::RWH,
        version: 2,
        epoch: 0,
        stat: false,
        write: false,
        overwrite: false,
        dir: false,
        sharing_violation: false,
        reclaim: false,
        file_size: 0,
        timeout_ms: 0,
        ..Default::default()
    };
    assert_eq!(m.open_file(G, b"smb:c", 5, &spec, None), Err(Error::ReclaimDenied));
    spec.requested = lease::R | lease::H;
    assert!(matches!(m.open_file(G, b"smb:c", 5, &spec, None), Ok(LeaseAnswer::Ready(g)) if g.state == 3));
    spec.key = [8; 16];
    assert_eq!(m.open_file(G, b"smb:c", 6, &spec, None), Err(Error::Grace));
    // NLM clients are never done early; the deadline ends grace and reports what was left.
    assert_eq!(m.reclaim_complete(b"nfs4:b"), Ok(()));
    assert!(m.grace_status().0);
    clock.advance(1000);
    m.process_events();
    assert!(!m.grace_status().0);
    let ev: Vec<Event> = rx.try_iter().collect();
    let released: Vec<(Vec<u8>, u64, u64)> = ev.iter().map(|e| (e.client.clone(), e.offset, e.length)).collect();
    assert_eq!(released, vec![(b"nfs4:b".to_vec(), 1, 0)]);
    assert_eq!(m.lock_with(F, &a, &px(LockType::Exclusive, 10, 20), reclaim()), Err(Error::NoGrace));
    assert_eq!(m.lock(F, &b, &px(LockType::Exclusive, 200, 10)), Ok(()), "b's old lock is gone");
    drop(m);
    // A third start finds a's reclaimed lock, b's new lock and c's lease, but no stale prev state.
    let (m, _rx) = db_rig(&path, Durability::Sync, clock);
    assert_eq!(m.grace_status().2, 3);
    m.grace_end();
    assert_eq!(rows(&path, "prev_locks"), 0);
}

/// A restart while an earlier grace period was unfinished: the earlier pre-restart locks stay, the
/// live locks are added to them, and a row in both counts twice.
#[test]
fn restart_during_unfinished_grace_merges_the_previous_state() {
    let path = temp_db("merge");
    let clock = Arc::new(ManualClock::default());
    let (a, b) = (own(b"nlm:a", b"svid1"), own(b"nfs4:b", b"lo"));
    {
        let (m, _rx) = db_rig(&path, Durability::Sync, clock.clone());
        m.lock(F, &a, &px(LockType::Exclusive, 0, 100)).unwrap();
        m.lock(F, &b, &px(LockType::Shared, 200, 10)).unwrap();
    }
    {
        let (m, _rx) = db_rig(&path, Durability::Sync, clock.clone());
        assert!(m.grace_status().0);
        assert_eq!(m.lock_with(F, &a, &px(LockType::Exclusive, 0, 100), reclaim()), Ok(()));
        assert_eq!((rows(&path, "prev_locks"), rows(&path, "locks")), (2, 1));
    } // dies during grace
    let (m, rx) = db_rig(&path, Durability::Sync, clock.clone());
    assert_eq!(rows(&path, "prev_locks"), 2, "a's row is in both and is merged");
    let (active, _, expected, _) = m.grace_status();
    assert!(active);
    assert_eq!(expected, 2);
    assert_eq!(
        m.lock_with(F, &b, &px(LockType::Shared, 200, 10), reclaim()),
        Ok(()),
        "b's lock survives the unfinished grace"
    );
    assert_eq!(m.lock_with(F, &a, &px(LockType::Exclusive, 10, 20), reclaim()), Ok(()));
    clock.advance(1000);
    m.process_events();
    assert!(!m.grace_status().0);
    let ev: Vec<Event> = rx.try_iter().collect();
    let released: Vec<(Vec<u8>, u64, u64)> = ev.iter().map(|e| (e.client.clone(), e.offset, e.length)).collect();
    assert_eq!(released, vec![(b"nlm:a".to_vec(), 1, 0)], "a's row counted twice: one copy left unreclaimed");
    assert_eq!(rows(&path, "prev_locks"), 0);
}

/// A database whose earlier pre-restart state is in the old `prev_locks` (no primary key, a row may
/// repeat): the read sums the copies.
#[test]
fn restart_merges_repeated_rows_of_an_old_prev_locks() {
    let path = temp_db("oldprev");
    drop(crate::store::Store::open(&path, Durability::Sync).unwrap());
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let row = "(x'66', x'63', x'6f', 0, 1, 2, 0, 10, 1)";
        c.execute_batch(&format!(
            "DROP TABLE prev_locks; CREATE TABLE prev_locks AS SELECT * FROM locks WHERE 0;
             INSERT INTO prev_locks VALUES {row}; INSERT INTO prev_locks VALUES {row}; INSERT INTO locks VALUES {row};
             INSERT INTO locks VALUES (x'66', x'63', x'6f', 0, 1, 2, 20, 10, 1);"
        ))
        .unwrap();
    }
    let (_s, rec) = crate::store::Store::open(&path, Durability::Sync).unwrap();
    assert_eq!(rec.locks.len(), 4);
    assert_eq!(rec.clients, vec![Box::<[u8]>::from(&b"c"[..])]);
    assert_eq!(rows(&path, "locks"), 0);
}

#[test]
fn grace_ends_early_when_every_expected_client_is_done() {
    let path = temp_db("early");
    let clock = Arc::new(ManualClock::default());
    {
        let (m, _rx) = db_rig(&path, Durability::Process, clock.clone());
        m.lock(F, &own(b"nfs4:x", b"o"), &px(LockType::Exclusive, 0, 1)).unwrap();
    }
    let (m, _rx) = db_rig(&path, Durability::Process, clock);
    assert!(m.grace_status().0);
    m.reclaim_complete(b"nfs4:x").unwrap();
    assert!(!m.grace_status().0);
    assert_eq!(m.reclaim_complete(b"nfs4:x"), Err(Error::NoGrace));
    // Explicit start for a takeover: an expected client without records may reclaim.
    m.grace_start(vec![b"nfs4:y"[..].into()], 500).unwrap();
    assert!(m.grace_status().0);
    assert_eq!(m.lock_with(F, &own(b"nfs4:y", b"o"), &px(LockType::Exclusive, 5, 1), reclaim()), Ok(()));
    assert_eq!(
        m.lock_with(F, &own(b"nfs4:z", b"o"), &px(LockType::Exclusive, 6, 1), reclaim()),
        Err(Error::ReclaimDenied)
    );
}

#[test]
fn batch_mode_coalesces_and_flushes_on_its_timer() {
    let path = temp_db("batch");
    let clock = Arc::new(ManualClock::default());
    let (m, _rx) = db_rig(&path, Durability::Batch, clock.clone());
    let a = own(b"smb:a", b"x");
    for _ in 0..100 {
        m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
        m.unlock(F, &a, Flavour::Posix, 0, 10).unwrap();
    }
    m.lock(F, &a, &px(LockType::Exclusive, 50, 10)).unwrap();
    assert_eq!(rows(&path, "locks"), 0, "nothing written before the batch is due");
    assert_eq!(rows(&path, "clients"), 1, "client records are durable before the first grant");
    assert_eq!(m.next_timeout_ms(), Some(5));
    clock.advance(5);
    m.process_events();
    assert_eq!(rows(&path, "locks"), 1, "the 100 lock/unlock pairs cancelled out");
}

#[test]
fn corrupt_and_newer_databases_are_refused_untouched() {
    let path = temp_db("corrupt");
    std::fs::write(&path, vec![0x5Au8; 8192]).unwrap();
    let before = std::fs::read(&path).unwrap();
    let clock = Arc::new(ManualClock::default());
    let r = Manager::new(Settings {
        db_path: Some(path.clone()),
        clock: Some(clock.clone()),
        loop_mode: true,
        ..Default::default()
    });
    assert!(matches!(r, Err(Error::Store(_))), "{:?}", r.err());
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let path = temp_db("newer");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE x(y); PRAGMA user_version = 99;").unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let r = Manager::new(Settings {
        db_path: Some(path.clone()),
        clock: Some(clock),
        loop_mode: true,
        ..Default::default()
    });
    match r {
        Err(Error::Store(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

// ---- clients, limits, metrics (SPEC.md §6) ----

fn limited(per_file: u64, per_client: u64, total: u64, clock: Arc<ManualClock>) -> Manager {
    Manager::new(Settings {
        loop_mode: true,
        clock: Some(clock),
        max_locks_per_file: per_file,
        max_locks_per_client: per_client,
        max_locks_total: total,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn lock_limits_say_which_limit() {
    use crate::metrics::LimitKind;
    let clock = Arc::new(ManualClock::default());
    let m = limited(2, 0, 0, clock.clone());
    let a = own(b"a", b"");
    m.lock(F, &a, &px(LockType::Shared, 0, 1)).unwrap();
    m.lock(F, &a, &px(LockType::Shared, 5, 1)).unwrap();
    assert_eq!(m.lock(F, &a, &px(LockType::Shared, 9, 1)), Err(Error::Limit(LimitKind::File)));
    assert_eq!(m.lock(G, &a, &px(LockType::Shared, 9, 1)), Ok(()), "per file");
    let m = limited(0, 2, 0, clock.clone());
    m.lock(F, &a, &px(LockType::Shared, 0, 1)).unwrap();
    m.lock(G, &a, &px(LockType::Shared, 0, 1)).unwrap();
    assert_eq!(m.lock(b"h", &a, &px(LockType::Shared, 0, 1)), Err(Error::Limit(LimitKind::Client)));
    assert_eq!(m.lock(b"h", &own(b"b", b""), &px(LockType::Shared, 0, 1)), Ok(()), "per client");
    m.unlock(F, &a, Flavour::Posix, 0, 1).unwrap();
    assert_eq!(m.lock(b"h", &a, &px(LockType::Shared, 0, 1)), Ok(()), "released locks count down");
    let m = limited(0, 0, 3, clock);
    for i in 0..3 {
        m.lock(F, &own(b"x", b""), &px(LockType::Shared, i * 2, 1)).unwrap();
    }
    assert_eq!(m.lock(G, &own(b"y", b""), &px(LockType::Shared, 0, 1)), Err(Error::Limit(LimitKind::Total)));
    let t = m.metrics.totals();
    assert_eq!(t.limits[LimitKind::Total as usize], 1);
    assert_eq!(t.acquire[0][0][crate::metrics::Outcome::Limit as usize], 1);
}

#[test]
fn client_ttl_release_and_reconnect() {
    let r = rig();
    let (a, b) = (own(b"smb:a", b"x"), own(b"smb:b", b"y"));
    r.m.client_register(b"smb:a", "smb", "10.1.1.1", 500).unwrap();
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    let id = pending(r.wait(F, &b, px(LockType::Exclusive, 0, 10), 1));
    // Disconnect with a TTL keeps the lock; a reconnect cancels the release.
    assert_eq!(r.m.client_disconnect(b"smb:a"), Ok(0));
    r.clock.advance(400);
    r.m.client_register(b"smb:a", "smb", "10.1.1.1", 500).unwrap();
    r.clock.advance(200);
    assert!(r.pump().is_empty());
    assert_eq!(r.m.list(F).unwrap().len(), 1);
    // Disconnect again and let the TTL pass: released, and the waiter is woken.
    assert_eq!(r.m.client_disconnect(b"smb:a"), Ok(0));
    r.clock.advance(500);
    let ev = r.pump();
    assert_eq!(ev.iter().map(|e| e.request_id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(r.m.clients().len(), 0);
    let t = r.m.metrics.totals();
    assert_eq!(t.release[crate::metrics::Release::Ttl as usize], 1);
    assert_eq!(t.wait_count, 1);
    // TTL 0 releases at once; connection limits per adapter.
    r.m.set_adapter_limit("nlm", 1);
    r.m.client_register(b"nlm:h1", "nlm", "", 0).unwrap();
    assert_eq!(r.m.client_register(b"nlm:h2", "nlm", "", 0), Err(Error::Limit(crate::metrics::LimitKind::Connections)));
    r.m.lock(G, &own(b"nlm:h1", b"s"), &px(LockType::Shared, 0, 1)).unwrap();
    assert_eq!(r.m.client_disconnect(b"nlm:h1"), Ok(1));
    assert_eq!(r.m.client_disconnect(b"nlm:h1"), Err(Error::NotFound));
    assert_eq!(r.m.client_register(b"nlm:h2", "nlm", "", 0), Ok(()));
}

#[test]
fn metrics_after_a_known_sequence() {
    let r = rig();
    let (a, b) = (own(b"a", b""), own(b"b", b""));
    r.m.lock(F, &a, &px(LockType::Exclusive, 0, 10)).unwrap();
    assert!(r.m.lock(F, &b, &px(LockType::Shared, 5, 1)).is_err());
    pending(r.wait(F, &b, px(LockType::Exclusive, 0, 1), 1));
    let w = LockReq { flavour: Flavour::Windows, kind: LockType::Shared, offset: 100, length: 0 };
    r.m.lock(F, &a, &w).unwrap();
    let (t, g) = r.m.metrics_snapshot();
    assert_eq!(t.acquire[0][1][0], 1, "posix exclusive granted");
    assert_eq!(t.acquire[0][0][1], 1, "posix shared conflict");
    assert_eq!(t.acquire[0][1][2], 1, "posix exclusive pending");
    assert_eq!(t.acquire[1][0][0], 1, "windows shared granted");
    assert_eq!((g.locks, g.waiters, g.files), (2, 1, 1));
    r.m.release_open(F, &a).unwrap();
    r.pump();
    let (t, g) = r.m.metrics_snapshot();
    assert_eq!(t.release[crate::metrics::Release::Close as usize], 2);
    assert_eq!((g.locks, g.waiters), (1, 0));
    let text = r.m.prometheus();
    assert!(text.contains("unilock_locks_active 1\n"), "{text}");
    assert!(text.contains("unilock_lock_releases_total{reason=\"close\"} 2\n"));
    assert!(text.contains("unilock_lock_wait_seconds_count 1\n"));
}

// ---- shared mode (several "processes" on one database; here two managers in one process) ----

fn shared_rig(path: &str) -> (Manager, mpsc::Receiver<Event>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let m = Manager::new(Settings {
        loop_mode: true,
        shared: true,
        no_dir_leases: false,
        db_path: Some(path.to_string()),
        callback: Some(Box::new(move |e: &Event| tx.lock().send(e.clone()).unwrap())),
        ..Default::default()
    })
    .unwrap();
    (m, rx)
}

fn drain(m: &Manager, rx: &mpsc::Receiver<Event>) -> Vec<Event> {
    m.process_events();
    rx.try_iter().collect()
}

#[test]
fn shared_mode_one_table_for_two_processes() {
    let path = temp_db("shared");
    let (a, ra) = shared_rig(&path);
    let (b, rb) = shared_rig(&path);
    assert!(!b.grace_status().0, "joining a running server starts no grace");
    let (oa, ob) = (own(b"smb:a", b"x"), own(b"nlm:b", b"y"));
    a.lock(F, &oa, &px(LockType::Exclusive, 0, 10)).unwrap();
    match b.lock(F, &ob, &px(LockType::Shared, 5, 1)) {
        Err(Error::Conflict(h)) => assert_eq!(h.client, b"smb:a"),
        other => panic!("{other:?}"),
    }
    // A blocked lock in B is granted when A releases.
    let id = pending(b.lock_blocking(
        F,
        &ob,
        &px(LockType::Shared, 5, 1),
        &WaitSpec { token: 9, user_data: 0, timeout_ms: 0 },
    ));
    a.unlock(F, &oa, Flavour::Posix, 0, 10).unwrap();
    assert!(drain(&a, &ra).is_empty(), "the grant is not A's");
    let ev = drain(&b, &rb);
    assert_eq!(ev.iter().map(|e| (e.request_id, e.token)).collect::<Vec<_>>(), vec![(id, 9)]);
    assert_eq!(a.list(F).unwrap().len(), 1, "A sees B's lock");
    // A lease of A broken by B's open; the ack in A lets B's open proceed.
    let spec = |key: u8| OpenSpec {
        kind: Some(lease::Kind::Lease),
        key: [key; 16],
        requested: lease::RWH,
        version: 2,
        epoch: 0,
        stat: false,
        write: false,
        overwrite: false,
        dir: false,
        sharing_violation: false,
        reclaim: false,
        file_size: 0,
        timeout_ms: 0,
        ..Default::default()
    };
    assert!(matches!(a.open_file(G, b"smb:a", 1, &spec(1), None), Ok(LeaseAnswer::Ready(g)) if g.state == lease::RWH));
    let w = WaitSpec { token: 5, user_data: 0, timeout_ms: 0 };
    let pid = match b.open_file(G, b"smb:b", 2, &spec(2), Some(&w)) {
        Ok(LeaseAnswer::Pending(id)) => id,
        other => panic!("{other:?}"),
    };
    let ev = drain(&a, &ra);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].kind, ev[0].lease.state, ev[0].lease.break_to),
        (EventKind::LeaseBreak, lease::RWH, lease::R | lease::H)
    );
    a.lease_ack(G, b"smb:a", &[1; 16], lease::R | lease::H).unwrap();
    let ev = drain(&b, &rb);
    assert_eq!(ev.iter().map(|e| (e.kind, e.request_id)).collect::<Vec<_>>(), vec![(EventKind::BreaksDone, pid)]);
    assert!(
        matches!(b.open_file(G, b"smb:b", 2, &spec(2), Some(&w)), Ok(LeaseAnswer::Ready(g)) if g.state == lease::R | lease::H)
    );
    // A process that leaves releases its state; a waiter of the other process proceeds.
    a.lock(G, &oa, &px(LockType::Exclusive, 0, 1)).unwrap();
    let id = pending(b.lock_blocking(G, &ob, &px(LockType::Exclusive, 0, 1), &w));
    a.leave();
    drop(a);
    let ev = drain(&b, &rb);
    assert!(ev.iter().any(|e| e.kind == EventKind::LockDone && e.request_id == id && e.result.is_ok()), "{ev:?}");
    assert!(b.list(G).unwrap().iter().all(|h| h.client == b"nlm:b"));
    b.leave();
}
