//! Counters and histograms, kept cheaply on the hot path: each thread increments its own stripe
//! (a cache-line-aligned block of relaxed atomics chosen by a per-thread index), so no counter is
//! contended by every thread on every operation. A snapshot sums the stripes; gauges (active locks,
//! leases, waiters) are computed at snapshot time by walking the table.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

/// Results of an acquisition attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted = 0,
    Conflict = 1,
    Pending = 2,
    Deadlock = 3,
    Grace = 4,
    Limit = 5,
    Other = 6,
}
pub const OUTCOMES: [&str; 7] = ["granted", "conflict", "pending", "deadlock", "grace", "limit", "error"];

/// Why locks went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    Explicit = 0,
    Close = 1,
    Disconnect = 2,
    Ttl = 3,
    GraceEnd = 4,
    BreakTimeout = 5,
}
pub const RELEASES: [&str; 6] = ["explicit", "close", "disconnect", "ttl", "grace_end", "break_timeout"];

/// Which limit was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    File = 0,
    Client = 1,
    Total = 2,
    Connections = 3,
}
pub const LIMITS: [&str; 4] = ["file", "client", "total", "connections"];

/// Upper bounds (ms) of the wait-time histogram buckets; the last bucket is +Inf.
pub const WAIT_BUCKETS_MS: [u64; 10] = [1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 60000];

#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    /// [flavour (0 POSIX, 1 Windows)][type (0 shared, 1 exclusive)][outcome]
    acquire: [[[AtomicU64; 7]; 2]; 2],
    release: [AtomicU64; 6],
    limits: [AtomicU64; 4],
    reclaims_ok: AtomicU64,
    reclaims_denied: AtomicU64,
    lease_breaks: AtomicU64,
    break_timeouts: AtomicU64,
    wait_buckets: [AtomicU64; 11],
    wait_sum_ms: AtomicU64,
    wait_count: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    stripes: [Stripe; STRIPES],
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Summed counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub acquire: [[[u64; 7]; 2]; 2],
    pub release: [u64; 6],
    pub limits: [u64; 4],
    pub reclaims_ok: u64,
    pub reclaims_denied: u64,
    pub lease_breaks: u64,
    pub break_timeouts: u64,
    pub wait_buckets: [u64; 11],
    pub wait_sum_ms: u64,
    pub wait_count: u64,
}

impl Metrics {
    #[inline]
    fn mine(&self) -> &Stripe {
        &self.stripes[STRIPE.with(|s| *s)]
    }

    #[inline]
    pub fn acquire(&self, posix: bool, exclusive: bool, o: Outcome) {
        add(&self.mine().acquire[!posix as usize][exclusive as usize][o as usize], 1);
    }

    #[inline]
    pub fn release(&self, why: Release, n: u64) {
        if n > 0 {
            add(&self.mine().release[why as usize], n);
        }
    }

    pub fn limit(&self, k: LimitKind) {
        add(&self.mine().limits[k as usize], 1);
    }

    pub fn reclaim(&self, ok: bool) {
        let s = self.mine();
        add(if ok { &s.reclaims_ok } else { &s.reclaims_denied }, 1);
    }

    pub fn lease_break(&self) {
        add(&self.mine().lease_breaks, 1);
    }

    pub fn break_timeout(&self) {
        add(&self.mine().break_timeouts, 1);
    }

    /// A blocking request was granted after waiting `ms`.
    pub fn waited(&self, ms: u64) {
        let s = self.mine();
        let i = WAIT_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(WAIT_BUCKETS_MS.len());
        add(&s.wait_buckets[i], 1);
        add(&s.wait_sum_ms, ms);
        add(&s.wait_count, 1);
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for s in &self.stripes {
            for f in 0..2 {
                for k in 0..2 {
                    for o in 0..7 {
                        t.acquire[f][k][o] += ld(&s.acquire[f][k][o]);
                    }
                }
            }
            for i in 0..6 {
                t.release[i] += ld(&s.release[i]);
            }
            for i in 0..4 {
                t.limits[i] += ld(&s.limits[i]);
            }
            t.reclaims_ok += ld(&s.reclaims_ok);
            t.reclaims_denied += ld(&s.reclaims_denied);
            t.lease_breaks += ld(&s.lease_breaks);
            t.break_timeouts += ld(&s.break_timeouts);
            for i in 0..11 {
                t.wait_buckets[i] += ld(&s.wait_buckets[i]);
            }
            t.wait_sum_ms += ld(&s.wait_sum_ms);
            t.wait_count += ld(&s.wait_count);
        }
        t
    }
}

/// Gauges read at snapshot time.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub locks: u64,
    pub leases: u64,
    pub waiters: u64,
    pub files: u64,
    pub grace_active: bool,
    pub grace_remaining_ms: u64,
    /// (adapter, connected clients)
    pub connections: Vec<(String, u64)>,
    pub deadlocks: u64,
    pub store_errors: u64,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Prometheus text exposition (format 0.0.4), every name prefixed `unilock_`.
pub fn prometheus(t: &Totals, g: &Gauges) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let head = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP unilock_{name} {help}\n# TYPE unilock_{name} {kind}");
    };
    head(&mut o, "lock_acquisitions_total", "counter", "Byte-range lock requests by flavour, type and result.");
    for (f, fname) in ["posix", "windows"].iter().enumerate() {
        for (k, kname) in ["shared", "exclusive"].iter().enumerate() {
            for (r, rname) in OUTCOMES.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "unilock_lock_acquisitions_total{{flavour=\"{fname}\",type=\"{kname}\",result=\"{rname}\"}} {}",
                    t.acquire[f][k][r]
                );
            }
        }
    }
    head(&mut o, "lock_releases_total", "counter", "Locks released, by reason.");
    for (i, n) in RELEASES.iter().enumerate() {
        let _ = writeln!(o, "unilock_lock_releases_total{{reason=\"{n}\"}} {}", t.release[i]);
    }
    head(&mut o, "locks_active", "gauge", "Byte-range locks held now.");
    let _ = writeln!(o, "unilock_locks_active {}", g.locks);
    head(&mut o, "leases_active", "gauge", "Leases, oplocks and delegations held now (any state).");
    let _ = writeln!(o, "unilock_leases_active {}", g.leases);
    head(&mut o, "waiters_blocked", "gauge", "Blocking lock requests waiting now.");
    let _ = writeln!(o, "unilock_waiters_blocked {}", g.waiters);
    head(&mut o, "files_tracked", "gauge", "Files with state in the lock table.");
    let _ = writeln!(o, "unilock_files_tracked {}", g.files);
    head(&mut o, "lock_wait_seconds", "histogram", "Time blocking lock requests waited before their grant.");
    let mut cum = 0;
    for (i, b) in WAIT_BUCKETS_MS.iter().enumerate() {
        cum += t.wait_buckets[i];
        let _ = writeln!(o, "unilock_lock_wait_seconds_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1000.0);
    }
    cum += t.wait_buckets[WAIT_BUCKETS_MS.len()];
    let _ = writeln!(o, "unilock_lock_wait_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(o, "unilock_lock_wait_seconds_sum {}", t.wait_sum_ms as f64 / 1000.0);
    let _ = writeln!(o, "unilock_lock_wait_seconds_count {}", t.wait_count);
    head(&mut o, "connections", "gauge", "Registered, connected clients by protocol adapter.");
    for (a, n) in &g.connections {
        let _ = writeln!(o, "unilock_connections{{adapter=\"{}\"}} {n}", esc(a));
    }
    head(&mut o, "grace_active", "gauge", "1 while the grace period after a restart is active.");
    let _ = writeln!(o, "unilock_grace_active {}", g.grace_active as u8);
    head(&mut o, "grace_remaining_seconds", "gauge", "Time left in the grace period.");
    let _ = writeln!(o, "unilock_grace_remaining_seconds {}", g.grace_remaining_ms as f64 / 1000.0);
    head(&mut o, "reclaims_total", "counter", "Reclaims during grace, by result.");
    let _ = writeln!(o, "unilock_reclaims_total{{result=\"granted\"}} {}", t.reclaims_ok);
    let _ = writeln!(o, "unilock_reclaims_total{{result=\"denied\"}} {}", t.reclaims_denied);
    head(&mut o, "limit_hits_total", "counter", "Requests refused by a configured limit.");
    for (i, n) in LIMITS.iter().enumerate() {
        let _ = writeln!(o, "unilock_limit_hits_total{{limit=\"{n}\"}} {}", t.limits[i]);
    }
    head(&mut o, "deadlocks_total", "counter", "Blocking requests refused because they would deadlock.");
    let _ = writeln!(o, "unilock_deadlocks_total {}", g.deadlocks);
    head(&mut o, "lease_breaks_total", "counter", "Lease, oplock and delegation breaks sent.");
    let _ = writeln!(o, "unilock_lease_breaks_total {}", t.lease_breaks);
    head(&mut o, "lease_break_timeouts_total", "counter", "Breaks not acknowledged in time (lease revoked).");
    let _ = writeln!(o, "unilock_lease_break_timeouts_total {}", t.break_timeouts);
    head(&mut o, "store_errors_total", "counter", "Database writes that failed.");
    let _ = writeln!(o, "unilock_store_errors_total {}", g.store_errors);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_sum_across_threads() {
        let m = std::sync::Arc::new(Metrics::default());
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.acquire(true, false, Outcome::Granted);
                    }
                    m.waited(7);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let t = m.totals();
        assert_eq!(t.acquire[0][0][0], 8000);
        assert_eq!(t.wait_buckets[2], 8);
        let text = prometheus(&t, &Gauges::default());
        assert!(
            text.contains("unilock_lock_acquisitions_total{flavour=\"posix\",type=\"shared\",result=\"granted\"} 8000")
        );
        assert!(text.contains("unilock_lock_wait_seconds_bucket{le=\"0.01\"} 8"));
    }
}
