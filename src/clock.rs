//! Time as the library sees it: monotonic milliseconds, read in one place so tests can drive a fake
//! clock (the core never reads a clock; deadlines are passed to it).

use std::sync::atomic::{AtomicU64, Ordering};

pub trait Clock: Send + Sync {
    /// Monotonic milliseconds since an arbitrary origin; never goes backwards.
    fn now_ms(&self) -> u64;
}

/// CLOCK_MONOTONIC.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
    }
}

/// CLOCK_REALTIME in ms, never going backwards in this process: cluster mode, where a deadline one
/// host stores in the shared table (a lease break's) is read by the others, whose monotonic clocks
/// count from their own boots. Hosts of a cluster keep their clocks in step (NTP), as CTDB and
/// Ganesha's clustered grace assume too; a step back is absorbed (time stands still until it passes).
#[derive(Default)]
pub struct WallClock(AtomicU64);

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer; CLOCK_REALTIME always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        let now = ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000;
        self.0.fetch_max(now, Ordering::AcqRel).max(now)
    }
}

/// A clock moved by hand (tests).
#[derive(Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_is_unix_time_and_never_goes_back() {
        let c = WallClock::default();
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let a = c.now_ms();
        assert!(a.abs_diff(unix) < 1000, "{a} vs {unix}");
        // A clock stepped back: the value stays.
        c.0.store(a + 60_000, Ordering::SeqCst);
        assert_eq!(c.now_ms(), a + 60_000);
    }
}
