//! Fault test of the shared-memory table (issue 17): N worker processes contend on a few files with
//! blocking exclusive locks and keep a shadow of who holds what in a second shared mapping. Workers
//! are SIGKILLed at random moments, and some stop themselves inside a partition mutex (the test
//! hook `UNILOCK_SHM_TEST_STOP`: SIGSTOP at a random step of an operation) and are killed there.
//! Checked: no two workers are ever granted one file at once (shadow), a killed worker's locks go
//! (its waiters are granted), no waiter hangs, and every acknowledged lock of a survivor is still
//! there whenever it looks. Prints kills and operations.
//!
//! Workers are this test binary run again (`--ignored --exact worker`), so no fork of a threaded
//! test harness is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use unilock::core::{Flavour, LockType};
use unilock::manager::{LockReq, Manager, Settings, WaitSpec};
use unilock::owners::OwnerRef;
use unilock::table::Queued;

const FILES: u64 = 3;
const WORKERS: usize = 4;
// Shadow words: holder pid per file, then counters.
const OPS: usize = 8;
const VIOLATIONS: usize = 9;
const STOP: usize = 10;
const CHECKS: usize = 11;

fn shadow(path: &str) -> memmap2::MmapRaw {
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
    f.set_len(4096).unwrap();
    memmap2::MmapOptions::new().len(4096).map_raw(&f).unwrap()
}

fn word(m: &memmap2::MmapRaw, i: usize) -> &AtomicU64 {
    // SAFETY: in bounds of the 4096-byte mapping, 8-aligned.
    unsafe { &*(m.as_mut_ptr().add(i * 8) as *const AtomicU64) }
}

/// Dead, or a zombie waiting for its parent.
fn dead(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z")).unwrap_or(true),
    }
}

#[test]
#[ignore = "a worker process of shm_fault_survivors_never_see_conflicting_grants"]
fn worker() {
    let db = std::env::var("SHM_FAULT_DB").expect("run by the fault test");
    let sh = shadow(&std::env::var("SHM_FAULT_SHADOW").unwrap());
    let me = std::process::id() as u64;
    let done: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let d2 = done.clone();
    let m = Manager::new(Settings {
        loop_mode: true,
        shared: true,
        db_path: Some(db),
        callback: Some(Box::new(move |e| d2.lock().unwrap().push((e.request_id, e.result.is_ok())))),
        ..Default::default()
    })
    .expect("open");
    let client = format!("nlm:{me}");
    let o = OwnerRef { client: client.as_bytes(), owner: b"o", open_id: 0 };
    let req = LockReq { flavour: Flavour::Posix, kind: LockType::Exclusive, offset: 0, length: 100 };
    let mut x = me.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while word(&sh, STOP).load(Ordering::Acquire) == 0 {
        let fi = rnd() % FILES;
        let file = format!("file-{fi}");
        let r = m.lock_blocking(file.as_bytes(), &o, &req, &WaitSpec { token: rnd(), user_data: 0, timeout_ms: 0 });
        match r.expect("lock_blocking") {
            Queued::Granted => {}
            Queued::Pending(id, _) => {
                let t0 = Instant::now();
                loop {
                    m.process_events();
                    if let Some(&(_, ok)) = done.lock().unwrap().iter().find(|(r, _)| *r == id) {
                        assert!(ok, "a wait ended without a grant");
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(20) {
                        eprintln!("worker {me}: HANG: waited 20 s for {file}");
                        std::process::exit(3);
                    }
                    let mut p = libc::pollfd { fd: m.event_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut p, 1, 5) };
                }
            }
        }
        // Granted: nobody alive may hold the file.
        let w = word(&sh, fi as usize);
        let mut cur = w.load(Ordering::Acquire);
        loop {
            if cur != 0 && cur != me && !dead(cur) {
                word(&sh, VIOLATIONS).fetch_add(1, Ordering::AcqRel);
                eprintln!("worker {me}: VIOLATION: granted {file} while {cur} holds it");
                std::process::exit(2);
            }
            match w.compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        // Hold it a moment; the acknowledged lock must still be there whenever we look.
        for _ in 0..(rnd() % 3) {
            std::thread::sleep(Duration::from_micros(rnd() % 500));
            m.process_events();
            let held = m.list(file.as_bytes()).expect("list");
            if !held.iter().any(|h| h.client == client.as_bytes()) {
                eprintln!("worker {me}: LOST: my acknowledged lock on {file} is gone");
                std::process::exit(4);
            }
            word(&sh, CHECKS).fetch_add(1, Ordering::AcqRel);
        }
        let _ = w.compare_exchange(me, 0, Ordering::AcqRel, Ordering::Acquire);
        m.unlock(file.as_bytes(), &o, Flavour::Posix, 0, 100).expect("unlock");
        word(&sh, OPS).fetch_add(1, Ordering::AcqRel);
        m.process_events();
    }
    m.leave();
}

#[test]
fn shm_fault_survivors_never_see_conflicting_grants() {
    // The shared-memory table is asked for by name (it is not shared mode's default yet); this is
    // the only test of this binary that runs in its process, so setting the variable races nothing.
    std::env::set_var("UNILOCK_SHARED_BACKEND", "shm");
    if std::env::var("UNILOCK_SHARED_BACKEND").is_ok_and(|v| v == "sqlite") {
        eprintln!("UNILOCK_SHARED_BACKEND=sqlite: the shared-memory fault test does not apply");
        return;
    }
    let dir = std::env::temp_dir().join(format!("unilock-shm-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("t.db").to_string_lossy().into_owned();
    let shp = dir.join("shadow").to_string_lossy().into_owned();
    let sh = shadow(&shp);
    let secs: u64 = std::env::var("SHM_FAULT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    // The test's own handle keeps the table running (the workers join it, never restart it) and
    // checks at the end that the dead workers' locks went.
    let m = Manager::new(Settings { loop_mode: true, shared: true, db_path: Some(db.clone()), ..Default::default() })
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawn = || {
        std::process::Command::new(&exe)
            .args(["--ignored", "--exact", "worker", "--nocapture", "--test-threads=1", "-q"])
            .env("SHM_FAULT_DB", &db)
            .env("SHM_FAULT_SHADOW", &shp)
            .env("UNILOCK_SHM_TEST_STOP", "25")
            .env("UNILOCK_SHARED_BACKEND", "shm")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
            .id() as i32
    };
    let mut kids: Vec<i32> = (0..WORKERS).map(|_| spawn()).collect();
    let (mut kills, mut stopped_kills, mut failures) = (0u64, 0u64, Vec::new());
    let mut x: u64 = 0x1234_5678_9abc_def1 ^ std::process::id() as u64;
    let t0 = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_millis(300);
    // Reaps finished children; kills those the hook stopped inside a partition mutex.
    let poll_kids = |kids: &mut Vec<i32>, stopped_kills: &mut u64, failures: &mut Vec<String>, expect_exit: bool| {
        let mut i = 0;
        while i < kids.len() {
            let mut st = 0;
            // SAFETY: waits for our own child, without blocking.
            let r = unsafe { libc::waitpid(kids[i], &mut st, libc::WNOHANG | libc::WUNTRACED) };
            if r == kids[i] && libc::WIFSTOPPED(st) {
                // SAFETY: our child.
                unsafe { libc::kill(kids[i], libc::SIGKILL) };
                *stopped_kills += 1;
                i += 1;
                continue;
            }
            if r == kids[i] {
                if libc::WIFEXITED(st) && (libc::WEXITSTATUS(st) != 0 || !expect_exit) {
                    failures.push(format!("worker {} exited with {}", kids[i], libc::WEXITSTATUS(st)));
                }
                kids.remove(i);
                continue;
            }
            i += 1;
        }
    };
    while t0.elapsed() < Duration::from_secs(secs) {
        poll_kids(&mut kids, &mut stopped_kills, &mut failures, false);
        if Instant::now() >= next_kill && !kids.is_empty() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let victim = kids[(x % kids.len() as u64) as usize];
            // SAFETY: our child.
            unsafe { libc::kill(victim, libc::SIGKILL) };
            kills += 1;
            next_kill = Instant::now() + Duration::from_millis(100 + x % 400);
        }
        while kids.len() < WORKERS {
            kids.push(spawn());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Survivors finish their operation and leave; none may hang.
    word(&sh, STOP).store(1, Ordering::Release);
    let end = Instant::now() + Duration::from_secs(30);
    while !kids.is_empty() && Instant::now() < end {
        poll_kids(&mut kids, &mut stopped_kills, &mut failures, true);
        std::thread::sleep(Duration::from_millis(5));
    }
    for k in &kids {
        failures.push(format!("worker {k} did not finish in 30 s (hang)"));
        // SAFETY: our child.
        unsafe { libc::kill(*k, libc::SIGKILL) };
    }
    // Every worker is gone (survivors left, the rest were killed): once the dead are reaped no lock
    // is left, and each file can be locked.
    m.reap_dead();
    let o = OwnerRef { client: b"nlm:checker", owner: b"o", open_id: 0 };
    let req = LockReq { flavour: Flavour::Posix, kind: LockType::Exclusive, offset: 0, length: 100 };
    for f in 0..FILES {
        let file = format!("file-{f}");
        assert_eq!(m.list(file.as_bytes()).unwrap(), vec![], "{file}: locks of dead workers are left");
        assert_eq!(m.lock(file.as_bytes(), &o, &req), Ok(()), "{file} cannot be locked");
    }
    let ops = word(&sh, OPS).load(Ordering::Acquire);
    println!(
        "shm fault test: {secs} s, {WORKERS} workers, {ops} lock+unlock operations, {} held-lock checks, {kills} random SIGKILLs, {stopped_kills} SIGKILLs inside a partition mutex, {} violations",
        word(&sh, CHECKS).load(Ordering::Acquire),
        word(&sh, VIOLATIONS).load(Ordering::Acquire)
    );
    drop(m);
    if let Ok(p) = std::fs::canonicalize(&db) {
        use std::os::unix::ffi::OsStrExt;
        let _ = std::fs::remove_file(format!("/dev/shm/unilock-{:016x}", fnv1a(p.as_os_str().as_bytes())));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(word(&sh, VIOLATIONS).load(Ordering::Acquire), 0);
    assert!(ops > 50, "too few operations to mean anything: {ops}");
    assert!(kills > 5 && stopped_kills > 0, "too few kills: {kills} random, {stopped_kills} inside a mutex");
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
