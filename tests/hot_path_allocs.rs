//! The hot path allocates nothing (issue 16: "the hot path must not gain allocations"): an
//! uncontended lock + unlock pair on the in-memory table, of either flavour, once the file, its owner
//! and the shard have been seen, makes no heap allocation. A counting global allocator (this test
//! binary only) measures it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use unilock::core::{Flavour, LockType};
use unilock::manager::{LockReq, Manager, Settings};
use unilock::owners::OwnerRef;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` (the test runs alone in this binary: no other thread allocates meanwhile,
/// but the harness's own threads may, so the count is taken as the least over a few tries).
fn allocs_of(mut f: impl FnMut()) -> u64 {
    (0..5)
        .map(|_| {
            ALLOCS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            f();
            COUNTING.store(false, Ordering::SeqCst);
            ALLOCS.load(Ordering::SeqCst)
        })
        .min()
        .unwrap()
}

#[test]
fn lock_unlock_pair_allocates_nothing() {
    let m = Manager::new(Settings { loop_mode: true, ..Default::default() }).expect("Manager::new");
    for (flavour, open_id) in [(Flavour::Posix, 0), (Flavour::Windows, 7)] {
        let o = OwnerRef { client: b"client", owner: b"owner", open_id };
        let req = LockReq { flavour, kind: LockType::Exclusive, offset: 100, length: 10 };
        let pair = || {
            m.lock(b"hot-file", &o, &req).unwrap();
            m.unlock(b"hot-file", &o, flavour, 100, 10).unwrap();
        };
        // Warm-up: the file, the owner, the client record and the shard's table are created once.
        for _ in 0..1_000 {
            pair();
        }
        let n = allocs_of(|| {
            for _ in 0..1_000 {
                pair();
            }
        });
        assert_eq!(n, 0, "{flavour:?}: 1000 lock+unlock pairs made {n} allocations");
    }
    // The counter counts: a pair on a new file allocates (its state, its id).
    let o = OwnerRef { client: b"client", owner: b"owner", open_id: 0 };
    let req = LockReq { flavour: Flavour::Posix, kind: LockType::Shared, offset: 0, length: 1 };
    let names: Vec<String> = (0..5).map(|i| format!("cold-{i}")).collect();
    let mut next = names.iter();
    let n = allocs_of(|| {
        m.lock(next.next().unwrap().as_bytes(), &o, &req).unwrap();
    });
    assert!(n > 0, "a new file's lock allocated nothing: the counter does not count");
}
