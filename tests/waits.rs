//! Requests that must end: regressions of issue 14 (found by a model-based random driver of the C API;
//! the project's own driver is `tests/driver.rs`). Each test failed on the code before its fix: a
//! waiter never granted, a deadlock not refused, a break wait that never ended.

use std::sync::{mpsc, Arc, Mutex};

use unilock::clock::ManualClock;
use unilock::core::lease::{self, Trigger};
use unilock::core::{Flavour, LockType};
use unilock::error::Error;
use unilock::manager::{LockReq, Manager, Settings, WaitSpec};
use unilock::owners::OwnerRef;
use unilock::requests::{Event, EventKind};
use unilock::table::{LeaseAnswer, OpenSpec, Queued};

use LockType::{Exclusive as X, Shared as S};

struct Rig {
    m: Manager,
    clock: Arc<ManualClock>,
    rx: mpsc::Receiver<Event>,
}

fn rig() -> Rig {
    let clock = Arc::new(ManualClock::default());
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let m = Manager::new(Settings {
        loop_mode: true,
        break_timeout_ms: 1000,
        clock: Some(clock.clone()),
        callback: Some(Box::new(move |e: &Event| tx.lock().unwrap().send(e.clone()).unwrap())),
        ..Default::default()
    })
    .unwrap();
    Rig { m, clock, rx }
}

impl Rig {
    fn pump(&self) -> Vec<Event> {
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

/// Item 1: a downgrade granted at once through `lock_blocking` replaces locks; the waiters it lets
/// in must be granted, as after the same downgrade through `lock`.
#[test]
fn downgrade_through_lock_blocking_wakes_waiters() {
    let r = rig();
    let (a, b) = (own(b"nfs:a"), own(b"nfs:b"));
    r.m.lock(b"f", &a, &px(X, 36, 7)).unwrap(); // [36,43)
    let id = pending(r.m.lock_blocking(b"f", &b, &px(S, 34, 24), &wait(1))); // [34,58)
    assert_eq!(r.m.lock_blocking(b"f", &a, &px(S, 33, 13), &wait(2)), Ok(Queued::Granted)); // [33,46)
    let ev = r.pump();
    assert!(
        ev.iter().any(|e| e.kind == EventKind::LockDone && e.request_id == id && e.result.is_ok()),
        "B not granted: {ev:?}"
    );
    assert_eq!(r.m.list(b"f").unwrap().len(), 2);
}

/// Item 2: an owner granted a lock after a waiter queued is one of that waiter's blockers: the
/// wait-for graph must see it, or a cycle through it is missed and both wait forever.
#[test]
fn lock_granted_after_a_waiter_queued_is_in_the_wait_for_graph() {
    let r = rig();
    let (a, b, c) = (own(b"a"), own(b"b"), own(b"c"));
    r.m.lock(b"f2", &a, &px(X, 0, 10)).unwrap();
    r.m.lock(b"f0", &c, &px(S, 0, 10)).unwrap();
    pending(r.m.lock_blocking(b"f0", &a, &px(X, 0, 10), &wait(1))); // A waits for C
    r.m.lock(b"f0", &b, &px(S, 0, 10)).unwrap(); // non-blocking, granted: A now waits for B too
    assert_eq!(r.m.lock_blocking(b"f2", &b, &px(X, 0, 10), &wait(2)), Err(Error::Deadlock));
    // The same with a Windows lock as the late one.
    let d = OwnerRef { client: b"d", owner: b"o", open_id: 7 };
    r.m.lock(b"g2", &a, &px(X, 0, 10)).unwrap();
    r.m.lock(b"g0", &c, &px(S, 0, 10)).unwrap();
    pending(r.m.lock_blocking(b"g0", &a, &px(X, 5, 10), &wait(3)));
    let w = LockReq { flavour: Flavour::Windows, kind: S, offset: 12, length: 1 };
    r.m.lock(b"g0", &d, &w).unwrap();
    let w2 = LockReq { flavour: Flavour::Windows, kind: X, offset: 0, length: 1 };
    assert_eq!(r.m.lock_blocking(b"g2", &d, &w2, &wait(5)), Err(Error::Deadlock));
}

fn deleg(requested: u8, write: bool) -> OpenSpec {
    OpenSpec {
        kind: Some(lease::Kind::Delegation),
        key: [7; 16],
        requested,
        version: 1,
        epoch: 0,
        stat: false,
        write,
        overwrite: false,
        dir: false,
        sharing_violation: false,
        reclaim: false,
        file_size: 0,
        timeout_ms: 0,
        ..Default::default()
    }
}

/// Item 3: a lease that is still being broken and goes away on a path that is neither an ack nor a
/// timeout (here pruned by the byte-range-lock trigger after a same-client reopen) must end the
/// waits on it.
#[test]
fn break_wait_ends_when_the_breaking_lease_is_pruned() {
    let r = rig();
    let g = r.m.open_file(b"f", b"nfs:n", 1, &deleg(lease::R | lease::H, false), None).unwrap();
    assert_eq!(
        g,
        LeaseAnswer::Ready(lease::Grant {
            state: lease::R | lease::H,
            epoch: 0,
            breaking: false,
            version: 1,
            parent: None
        })
    );
    let w = WaitSpec { token: 9, user_data: 0, timeout_ms: 0 };
    let id = match r.m.lease_trigger(b"f", b"smb:x", None, Trigger::DeleteRename, Some(&w)) {
        Ok(LeaseAnswer::Pending(id)) => id,
        other => panic!("{other:?}"),
    };
    let ev = r.pump();
    assert!(ev.iter().any(|e| e.kind == EventKind::LeaseBreak), "{ev:?}");
    r.m.open_file(b"f", b"nfs:n", 2, &deleg(0, true), None).unwrap();
    let _ = r.m.lock(b"f", &own(b"nfs:n"), &px(X, 0, 1));
    let mut done = r.pump().iter().any(|e| e.kind == EventKind::BreaksDone && e.request_id == id);
    if !done {
        // Still waiting: then an ack or the timeout must end it.
        let _ = r.m.lease_ack(b"f", b"nfs:n", &[7; 16], 0);
        r.clock.advance(5000);
        done = r.pump().iter().any(|e| e.kind == EventKind::BreaksDone && e.request_id == id);
    }
    assert!(done, "the trigger's wait never ended");
}

/// Found by tests/driver.rs: in shared mode request ids are per process, so two processes' waiters on
/// one file may have the same id; a cancel (or a timeout) in one process must end its own request,
/// not the other process's.
#[test]
fn shared_mode_cancel_ends_the_request_of_its_own_process() {
    let dir = std::env::temp_dir().join(format!("unilock-waits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.db").to_string_lossy().into_owned();
    let open = || {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let m = Manager::new(Settings {
            loop_mode: true,
            shared: true,
            db_path: Some(path.clone()),
            callback: Some(Box::new(move |e: &Event| {
                let _ = tx.lock().unwrap().send(e.clone());
            })),
            ..Default::default()
        })
        .unwrap();
        (m, rx)
    };
    let ((p0, r0), (p1, r1)) = (open(), open());
    let (a, b, c) = (own(b"a"), own(b"b"), own(b"c"));
    p0.lock(b"f", &a, &px(S, 15, 2)).unwrap();
    let id0 = pending(p0.lock_blocking(b"f", &b, &px(X, 14, 2), &wait(1)));
    let id1 = pending(p1.lock_blocking(b"f", &c, &px(S, 8, 7), &wait(2)));
    assert_eq!(id0, id1, "both processes number their requests from 1");
    assert_eq!(p1.cancel(id1), Ok(unilock::requests::CancelOutcome::Cancelled));
    p0.process_events();
    p1.process_events();
    assert!(r0.try_iter().chain(r1.try_iter()).next().is_none(), "no request was granted or ended");
    // The waiter of process 0 is still there: it is granted when A goes.
    p0.unlock(b"f", &a, Flavour::Posix, 15, 2).unwrap();
    p0.process_events();
    let ev: Vec<Event> = r0.try_iter().collect();
    assert!(ev.iter().any(|e| e.request_id == id0 && e.result.is_ok()), "{ev:?}");
    p0.leave();
    p1.leave();
    drop((p0, p1));
    let _ = std::fs::remove_dir_all(&dir);
}
