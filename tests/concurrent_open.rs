//! Several processes of one server opening a brand-new shared database at the same moment (a forking
//! server's children, or smbd and an NFS server starting together): every one must get the table.
//! Before the database checks ran in one read transaction, one of them could see the schema another
//! was creating without its version yet and refuse the database as foreign (found by `make bench`).

use std::sync::{Arc, Barrier};
use unilock::manager::{Manager, Settings};

#[test]
fn simultaneous_opens_of_a_new_shared_database_all_succeed() {
    let dir = std::env::temp_dir().join(format!("unilock-concurrent-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..20 {
        let path = dir.join(format!("new-{round}.db")).to_string_lossy().into_owned();
        let n = 4;
        let barrier = Arc::new(Barrier::new(n));
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Manager::new(Settings { loop_mode: true, shared: true, db_path: Some(path), ..Default::default() })
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                })
            })
            .collect();
        for h in handles {
            let r = h.join().unwrap();
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
