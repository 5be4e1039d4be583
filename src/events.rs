//! Timers and notifications, in one place. Every later feature (lease break timeouts, grace end,
//! client TTLs) uses the same queue and timer heap.
//!
//! Two drivers over one call, `Manager::process_events` ("run due timers, then deliver queued
//! events"):
//! - loop mode: no library thread. `fd()` is an epoll descriptor holding an eventfd (signalled when an
//!   event is queued) and a timerfd (armed to the earliest deadline), so it is readable — level
//!   triggered — while events or expired timers are pending; a tevent/libevent user needs only that fd.
//! - thread mode: a library thread waits on a condition variable until the next deadline or a new
//!   event, and runs the same call.
//!
//! Events are queued while table locks are held and delivered only after every internal lock is
//! released (the dispose-list pattern of `fs/locks.c`), so a callback may call back into the library.

use crate::clock::Clock;
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// What a timer does when it fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// A blocking request's timeout.
    RequestTimeout(u64),
    /// A lease break on this file may have timed out.
    LeaseBreak(Box<[u8]>),
    /// The grace period may be over.
    GraceEnd,
    /// Batch durability: write what is pending.
    Flush,
    /// A disconnected client's TTL may have run out.
    ClientTtl(Box<[u8]>),
    /// Shared mode: look for processes that died.
    ProcCheck,
}

/// The epoll/eventfd/timerfd trio of loop mode.
struct LoopFds {
    epoll: OwnedFd,
    event: OwnedFd,
    timer: OwnedFd,
}

fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl LoopFds {
    fn new() -> std::io::Result<LoopFds> {
        // SAFETY: plain syscalls; each returned descriptor is owned right away.
        unsafe {
            let epoll = OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let event = OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?);
            let timer = OwnedFd::from_raw_fd(cvt(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            ))?);
            for fd in [event.as_raw_fd(), timer.as_raw_fd()] {
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
                cvt(libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev))?;
            }
            Ok(LoopFds { epoll, event, timer })
        }
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.event.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Makes both descriptors unreadable (consumes the eventfd count and any timer expiry).
    fn drain(&self) {
        let mut buf: u64 = 0;
        for fd in [self.event.as_raw_fd(), self.timer.as_raw_fd()] {
            // SAFETY: reading 8 bytes into a valid u64 from our non-blocking descriptors.
            unsafe { libc::read(fd, &mut buf as *mut u64 as *mut libc::c_void, 8) };
        }
    }

    /// Arms the timerfd for `delay_ms` from now (0 = already due), or disarms it.
    fn arm(&self, delay_ms: Option<u64>) {
        let mut spec: libc::itimerspec = unsafe { std::mem::zeroed() };
        if let Some(d) = delay_ms {
            let d = d.max(1); // an all-zero it_value would disarm
            spec.it_value.tv_sec = (d / 1000) as libc::time_t;
            spec.it_value.tv_nsec = ((d % 1000) * 1_000_000) as libc::c_long;
        }
        // SAFETY: valid timerfd and itimerspec.
        unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }
}

/// The event queue and timer heap shared by both modes.
pub struct Events<E> {
    queue: Mutex<VecDeque<E>>,
    timers: Mutex<BinaryHeap<Reverse<(u64, u64, TimerKind)>>>,
    seq: std::sync::atomic::AtomicU64,
    clock: Arc<dyn Clock>,
    fds: Option<LoopFds>,
    /// Thread mode: wakes the library thread.
    wake: Condvar,
    wake_lock: Mutex<bool>,
}

impl<E> Events<E> {
    /// `loop_mode`: create the event fd (no thread is ever started by this module).
    pub fn new(clock: Arc<dyn Clock>, loop_mode: bool) -> std::io::Result<Self> {
        Ok(Events {
            queue: Mutex::new(VecDeque::new()),
            timers: Mutex::new(BinaryHeap::new()),
            seq: std::sync::atomic::AtomicU64::new(0),
            clock,
            fds: if loop_mode { Some(LoopFds::new()?) } else { None },
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The pollable descriptor (loop mode), or -1.
    pub fn fd(&self) -> i32 {
        self.fds.as_ref().map(|f| f.epoll.as_raw_fd()).unwrap_or(-1)
    }

    fn poke(&self) {
        if let Some(f) = &self.fds {
            f.signal();
        }
        let mut w = self.wake_lock.lock();
        *w = true;
        self.wake.notify_all();
    }

    /// Queues events for delivery and wakes the driver.
    pub fn push_all(&self, events: impl IntoIterator<Item = E>) {
        let mut any = false;
        {
            let mut q = self.queue.lock();
            for e in events {
                q.push_back(e);
                any = true;
            }
        }
        if any {
            self.poke();
        }
    }

    /// Arms a one-shot timer at absolute `deadline_ms`. `u64::MAX` is "never" (a saturated
    /// `now + timeout`): no timer is armed at all.
    pub fn add_timer(&self, deadline_ms: u64, kind: TimerKind) {
        if deadline_ms == u64::MAX {
            return;
        }
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let earliest = {
            let mut t = self.timers.lock();
            t.push(Reverse((deadline_ms, seq, kind)));
            t.peek().map(|Reverse((d, _, _))| *d)
        };
        if earliest == Some(deadline_ms) {
            self.rearm();
            self.poke_thread();
        }
    }

    fn poke_thread(&self) {
        let mut w = self.wake_lock.lock();
        *w = true;
        self.wake.notify_all();
    }

    /// Disarms every pending timer of `kind` (its reason went: a request decided, a break acked).
    /// Returns whether one was pending.
    pub fn cancel_timer(&self, kind: &TimerKind) -> bool {
        let removed = {
            let mut t = self.timers.lock();
            let before = t.len();
            t.retain(|Reverse((_, _, k))| k != kind);
            t.len() != before
        };
        if removed {
            self.rearm();
        }
        removed
    }

    /// Pending timers (for tests and inspection).
    pub fn timer_count(&self) -> usize {
        self.timers.lock().len()
    }

    /// Pops every timer due at `now`.
    pub fn due_timers(&self, now: u64) -> Vec<TimerKind> {
        let mut out = Vec::new();
        let mut t = self.timers.lock();
        while let Some(Reverse((d, _, _))) = t.peek() {
            if *d > now {
                break;
            }
            let Reverse((_, _, k)) = t.pop().unwrap();
            out.push(k);
        }
        out
    }

    /// Takes every queued event.
    pub fn take_queued(&self) -> VecDeque<E> {
        std::mem::take(&mut *self.queue.lock())
    }

    /// Milliseconds until the next timer (0 if events are queued or a timer is due), or `None` if
    /// nothing is scheduled.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        if !self.queue.lock().is_empty() {
            return Some(0);
        }
        let next = self.timers.lock().peek().map(|Reverse((d, _, _))| *d)?;
        Some(next.saturating_sub(self.clock.now_ms()))
    }

    /// Loop mode: resets the fd's readiness at the start of a processing round.
    pub fn begin_round(&self) {
        if let Some(f) = &self.fds {
            f.drain();
        }
    }

    /// Re-arms the timerfd for the earliest deadline and keeps the fd readable if events remain.
    pub fn rearm(&self) {
        if let Some(f) = &self.fds {
            let next = self.timers.lock().peek().map(|Reverse((d, _, _))| *d);
            f.arm(next.map(|d| d.saturating_sub(self.clock.now_ms())));
            if !self.queue.lock().is_empty() {
                f.signal();
            }
        }
    }

    /// Adds another descriptor to the event fd's set (shared mode's wake-up socket).
    pub fn add_fd(&self, fd: i32) -> std::io::Result<()> {
        if let Some(f) = &self.fds {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: fd as u64 };
            // SAFETY: valid epoll fd and descriptor.
            cvt(unsafe { libc::epoll_ctl(f.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        }
        Ok(())
    }

    /// Thread mode: sleeps until poked or until the next deadline (at most `cap_ms`).
    pub fn wait(&self, cap_ms: u64) {
        let timeout = self.next_timeout_ms().unwrap_or(cap_ms).min(cap_ms);
        if let Some(f) = &self.fds {
            // With descriptors (shared mode), sleep in epoll so a wake-up datagram also ends the wait.
            let mut ev = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: valid epoll fd and one event slot.
            unsafe { libc::epoll_wait(f.epoll.as_raw_fd(), &mut ev, 1, timeout.min(i32::MAX as u64) as i32) };
            return;
        }
        let mut w = self.wake_lock.lock();
        if !*w && timeout > 0 {
            self.wake.wait_for(&mut w, std::time::Duration::from_millis(timeout));
        }
        *w = false;
    }

    /// Wakes the library thread (used at close).
    pub fn wake_thread(&self) {
        self.poke_thread();
        // With descriptors (shared and cluster modes) the thread sleeps in epoll, not on the condvar.
        if let Some(f) = &self.fds {
            f.signal();
        }
    }
}
