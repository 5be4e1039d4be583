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
    assert!(ev.iter().any(|e| e.kind == EventKind::LockDone && e.request_id == id && e.result.is_ok()), "B not granted: {ev:?}");
    assert_eq!(r.m.list(b"f").unwrap().len(), 2);
}
