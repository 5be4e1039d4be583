//! Cluster mode (issue 19): several "hosts" (managers with their own etcd leases, some in child
//! processes) share one lock table in a private etcd started by each test on loopback ports. Skipped,
//! with the reason printed, when no `etcd` binary is installed (`cluster/deps.sh` installs it).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use unilock::backend::etcd::EtcdConfig;
use unilock::core::lease;
use unilock::core::{Flavour, LockType};
use unilock::error::Error;
use unilock::manager::{LockReq, Manager, Settings, WaitSpec};
use unilock::owners::OwnerRef;
use unilock::requests::{Event, EventKind};
use unilock::table::{LeaseAnswer, OpenSpec, Queued};

use LockType::{Exclusive as X, Shared as S};

#[path = "common/etcd.rs"]
mod etcd;
use etcd::Etcd;

struct Host {
    m: Manager,
    rx: mpsc::Receiver<Event>,
}

fn host(cfg: EtcdConfig) -> Host {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let m = Manager::new(Settings {
        loop_mode: true,
        cluster: Some(cfg),
        callback: Some(Box::new(move |e: &Event| {
            let _ = tx.lock().unwrap().send(e.clone());
        })),
        ..Default::default()
    })
    .unwrap();
    Host { m, rx }
}

impl Host {
    fn drain(&self) -> Vec<Event> {
        self.m.process_events();
        self.rx.try_iter().collect()
    }
}

fn px(kind: LockType, offset: u64, length: u64) -> LockReq {
    LockReq { flavour: Flavour::Posix, kind, offset, length }
}

fn own(client: &'static [u8]) -> OwnerRef<'static> {
    OwnerRef { client, owner: b"o", open_id: 1 }
}

fn wait(token: u64) -> WaitSpec {
    WaitSpec { token, user_data: 0, timeout_ms: 0 }
}

fn pending(r: Result<Queued, Error>) -> u64 {
    match r {
        Ok(Queued::Pending(id, _)) => id,
        other => panic!("expected pending, got {other:?}"),
    }
}

fn lease_spec(key: u8) -> OpenSpec {
    OpenSpec { kind: Some(lease::Kind::Lease), key: [key; 16], requested: lease::RWH, version: 2, ..Default::default() }
}

#[test]
fn one_table_across_hosts() {
    let Some(etcd) = Etcd::start() else { return };
    let a = host(etcd.config("t1", "host-a"));
    let b = host(etcd.config("t1", "host-b"));
    assert_ne!(a.m.now_ms(), u64::MAX);
    let (oa, ob) = (own(b"smb:a"), own(b"nlm:b"));
    a.m.lock(b"f", &oa, &px(X, 0, 10)).unwrap();
    match b.m.lock(b"f", &ob, &px(S, 5, 1)) {
        Err(Error::Conflict(h)) => assert_eq!(h.client, b"smb:a"),
        other => panic!("B was not refused: {other:?}"),
    }
    assert_eq!(b.m.list(b"f").unwrap().len(), 1, "B sees A's lock");
    // A blocking lock on B is granted when A unlocks.
    let id = pending(b.m.lock_blocking(b"f", &ob, &px(S, 5, 1), &wait(9)));
    a.m.unlock(b"f", &oa, Flavour::Posix, 0, 10).unwrap();
    assert!(a.drain().is_empty(), "the grant is not A's");
    let ev = b.drain();
    assert_eq!(ev.iter().map(|e| (e.request_id, e.token, e.result.is_ok())).collect::<Vec<_>>(), vec![(id, 9, true)]);
    assert_eq!(a.m.list(b"f").unwrap()[0].client, b"nlm:b", "A sees B's granted lock");
    // A lease of A broken by B's open; A's ack completes B's open.
    let g = b"g";
    assert!(
        matches!(a.m.open_file(g, b"smb:a", 1, &lease_spec(1), None), Ok(LeaseAnswer::Ready(g)) if g.state == lease::RWH)
    );
    let pid = match b.m.open_file(g, b"smb:b", 2, &lease_spec(2), Some(&wait(5))) {
        Ok(LeaseAnswer::Pending(id)) => id,
        other => panic!("B's open did not wait for the break: {other:?}"),
    };
    let ev = a.drain();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].kind, ev[0].lease.state, ev[0].lease.break_to),
        (EventKind::LeaseBreak, lease::RWH, lease::R | lease::H)
    );
    // The ack by key alone finds the file through the cluster's index.
    a.m.lease_ack_by_key(b"smb:a", &[1; 16], lease::R | lease::H).unwrap();
    let ev = b.drain();
    assert_eq!(ev.iter().map(|e| (e.kind, e.request_id)).collect::<Vec<_>>(), vec![(EventKind::BreaksDone, pid)]);
    assert!(
        matches!(b.m.open_file(g, b"smb:b", 2, &lease_spec(2), Some(&wait(5))), Ok(LeaseAnswer::Ready(g)) if g.state == lease::R | lease::H)
    );
    // A host that leaves releases its state; B's waiter proceeds.
    a.m.lock(g, &oa, &px(X, 0, 1)).unwrap();
    let id = pending(b.m.lock_blocking(g, &ob, &px(X, 0, 1), &wait(6)));
    a.m.leave();
    drop(a);
    let ev = b.drain();
    assert!(ev.iter().any(|e| e.kind == EventKind::LockDone && e.request_id == id && e.result.is_ok()), "{ev:?}");
    assert!(b.m.list(g).unwrap().iter().all(|h| h.client == b"nlm:b"));
    b.m.leave();
    drop(b);
    // Everything was released: no file state is left in etcd.
    let c = unilock::backend::etcd::client::Client::new(&etcd.url, Duration::from_secs(1)).unwrap();
    let left = c.range(b"t1/f/", b"t1/f0", true).unwrap();
    assert!(left.is_empty(), "{} file states left", left.len());
}

#[test]
fn deadlock_across_hosts_is_refused() {
    let Some(etcd) = Etcd::start() else { return };
    let a = host(etcd.config("t2", "host-a"));
    let b = host(etcd.config("t2", "host-b"));
    let (oa, ob) = (own(b"nlm:a"), own(b"nlm:b"));
    a.m.lock(b"f1", &oa, &px(X, 0, 1)).unwrap();
    b.m.lock(b"f2", &ob, &px(X, 0, 1)).unwrap();
    // A waits for B on f2 ...
    pending(a.m.lock_blocking(b"f2", &oa, &px(X, 0, 1), &wait(1)));
    // ... so B waiting for A on f1 would close a cycle across hosts.
    assert_eq!(b.m.lock_blocking(b"f1", &ob, &px(X, 0, 1), &wait(2)), Err(Error::Deadlock));
    // Without the cycle it waits.
    let oc = own(b"nlm:c");
    pending(b.m.lock_blocking(b"f1", &oc, &px(X, 0, 1), &wait(3)));
    a.m.leave();
    b.m.leave();
}

#[test]
fn a_cut_connection_answers_store_errors() {
    let Some(mut etcd) = Etcd::start() else { return };
    let a = host(etcd.config("t3", "host-a"));
    let oa = own(b"nlm:a");
    a.m.lock(b"f", &oa, &px(X, 0, 1)).unwrap();
    let _ = etcd.child.kill();
    let _ = etcd.child.wait();
    // Never granted, never "nothing there".
    assert!(matches!(a.m.lock(b"f2", &oa, &px(X, 0, 1)), Err(Error::Store(_))));
    assert!(matches!(a.m.test(b"f2", &own(b"nlm:b"), &px(X, 0, 1)), Err(Error::Store(_))));
    // A change on a file whose lock A kept needs etcd too.
    assert!(matches!(a.m.lock(b"f", &oa, &px(X, 5, 1)), Err(Error::Store(_))));
    // A read of that file may be answered from A's own kept lock only while A's lease is surely
    // alive; once the TTL has passed without a renewal, every call fails.
    std::thread::sleep(Duration::from_millis(2100));
    assert!(matches!(a.m.test(b"f", &own(b"nlm:b"), &px(X, 0, 1)), Err(Error::Store(_))));
    assert!(matches!(a.m.list(b"f"), Err(Error::Store(_))));
}

/// Not a test by itself: the body of a host in a child process (`host_death_releases_state`).
#[test]
#[ignore]
fn child_host() {
    let Ok(url) = std::env::var("UNILOCK_TEST_ETCD") else { return };
    let cfg = EtcdConfig { endpoints: url, cluster: "t4".into(), host: "child".into(), ttl_ms: 2000 };
    let h = host(cfg);
    h.m.lock(b"f", &own(b"nlm:child"), &px(X, 0, 100)).unwrap();
    assert!(matches!(h.m.open_file(b"g", b"smb:child", 1, &lease_spec(7), None), Ok(LeaseAnswer::Ready(_))));
    println!("LOCKED");
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn host_death_releases_state_within_the_ttl() {
    let Some(etcd) = Etcd::start() else { return };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_host", "--nocapture", "--test-threads=1"])
        .env("UNILOCK_TEST_ETCD", &etcd.url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("LOCKED") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child host died before locking");
    }
    let b = host(etcd.config("t4", "host-b"));
    let ob = own(b"nlm:b");
    assert!(matches!(b.m.lock(b"f", &ob, &px(X, 0, 1)), Err(Error::Conflict(_))));
    let id = pending(b.m.lock_blocking(b"f", &ob, &px(X, 0, 1), &wait(1)));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    // The TTL (2 s) plus the reaper's period (1 s) plus a margin.
    let mut granted = false;
    while killed.elapsed() < Duration::from_secs(5) && !granted {
        granted = b.drain().iter().any(|e| e.request_id == id && e.result.is_ok());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(granted, "the dead host's lock was not released within {:?}", killed.elapsed());
    println!("released {} ms after SIGKILL", killed.elapsed().as_millis());
    // Its lease went too: another client gets the RWH lease at once.
    assert!(
        matches!(b.m.open_file(b"g", b"smb:b", 1, &lease_spec(8), None), Ok(LeaseAnswer::Ready(g)) if g.state == lease::RWH)
    );
    b.m.leave();
}
