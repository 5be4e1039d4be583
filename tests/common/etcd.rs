//! A private single-member etcd for the cluster-mode tests (tests/cluster.rs, tests/driver.rs), on
//! free loopback ports with its data in the temp dir; stopped and removed on drop. `start` prints
//! why and answers `None` when no `etcd` binary is installed (`cluster/deps.sh` installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    pub child: Child,
    dir: std::path::PathBuf,
    pub url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Etcd {
    pub fn start() -> Option<Etcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            println!("SKIPPED: no etcd binary (apt-get install etcd-server, or cluster/deps.sh)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("unilock-etcd-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, p) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{c}");
        let peer = format!("http://127.0.0.1:{p}");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "n1", "--data-dir"])
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("n1={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let e = Etcd { child, dir, url };
        let start = Instant::now();
        let client = unilock::backend::etcd::client::Client::new(&e.url, Duration::from_secs(1)).unwrap();
        while client.range(b"x", b"", true).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "etcd did not start: see {}", e.dir.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(e)
    }

    /// A cluster config on this etcd (2 s lease TTL).
    #[allow(dead_code)]
    pub fn config(&self, cluster: &str, host: &str) -> unilock::backend::etcd::EtcdConfig {
        unilock::backend::etcd::EtcdConfig {
            endpoints: self.url.clone(),
            cluster: cluster.into(),
            host: host.into(),
            ttl_ms: 2000,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
