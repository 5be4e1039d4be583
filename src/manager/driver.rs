//! The driver: the only owner of clocks, timers, the library thread or event fd, and delivery.
//! `Driver` holds the event queue and timer heap (`events`), the request states (race-safe cancel),
//! the wait-for graph and the callback; `Manager::process_events` runs due timers (each one a call on
//! the facade) and hands queued events to the callback with no internal lock held.

use super::*;

/// Clocks, timers, the library thread or event fd, request states and delivery.
pub(super) struct Driver {
    pub(super) events: Events<Event>,
    pub(super) requests: Requests,
    pub(super) graph: Mutex<WaitGraph<OwnerKey>>,
    pub(super) next_id: AtomicU64,
    /// Requests with an armed timeout: their timer is disarmed when they are decided.
    timed: Mutex<hashbrown::HashSet<u64>>,
    callback: Option<EventCallback>,
    loop_mode: bool,
    stop: AtomicBool,
}

impl Driver {
    /// `loop_mode`: an event fd and no library thread; a shared backend needs the fd machinery too
    /// (its wake-up socket is folded into it).
    pub(super) fn new(
        clock: Arc<dyn Clock>,
        loop_mode: bool,
        shared: bool,
        callback: Option<EventCallback>,
    ) -> Result<Driver> {
        let events = Events::new(clock, loop_mode || shared).map_err(|e| {
            log::error!("cannot create the event descriptors: {e}");
            Error::Resource("event descriptors")
        })?;
        Ok(Driver {
            events,
            requests: Requests::default(),
            graph: Mutex::new(WaitGraph::default()),
            next_id: AtomicU64::new(1),
            timed: Mutex::new(hashbrown::HashSet::new()),
            callback,
            loop_mode,
            stop: AtomicBool::new(false),
        })
    }

    /// Arms request `id`'s timeout at `deadline` (`u64::MAX`: never).
    pub(super) fn arm_request_timeout(&self, id: u64, deadline: u64) {
        if deadline == u64::MAX {
            return;
        }
        self.timed.lock().insert(id);
        self.events.add_timer(deadline, TimerKind::RequestTimeout(id));
    }

    /// Request `id` was decided (granted, failed, cancelled, timed out): its timer goes.
    pub(super) fn end_request_timer(&self, id: u64) {
        if self.timed.lock().remove(&id) {
            self.events.cancel_timer(&TimerKind::RequestTimeout(id));
        }
    }

    /// Delivers every queued event through the callback, on the calling thread and with no internal
    /// lock held; a request's event is delivered unless it was cancelled meanwhile. Returns the number
    /// delivered.
    fn deliver(&self) -> usize {
        let mut delivered = 0;
        for ev in self.events.take_queued() {
            let me = std::thread::current().id();
            {
                let mut map = self.requests.map.lock();
                if ev.request_id == 0 {
                    drop(map);
                    if let Some(cb) = &self.callback {
                        cb(&ev);
                    }
                    delivered += 1;
                    continue;
                }
                match map.get_mut(&ev.request_id) {
                    Some(st @ ReqState::Completed(_)) => *st = ReqState::Delivering(me),
                    _ => continue, // cancelled, or its outcome was taken by cancel
                }
            }
            self.end_request_timer(ev.request_id);
            if let Some(cb) = &self.callback {
                cb(&ev);
            }
            delivered += 1;
            self.requests.map.lock().remove(&ev.request_id);
            self.requests.delivered.notify_all();
        }
        delivered
    }

    /// Events other participants decided for this one: completions of its requests (unless cancelled
    /// meanwhile) and notifications.
    pub(super) fn accept_mail(&self, evs: Vec<Event>) {
        let mut local = Vec::new();
        {
            let mut map = self.requests.map.lock();
            for mut ev in evs {
                ev.proc = 0;
                if ev.request_id == 0 {
                    local.push(ev);
                    continue;
                }
                if let Some(st @ ReqState::Waiting { .. }) = map.get_mut(&ev.request_id) {
                    let granted = ev.kind == crate::requests::EventKind::LockDone && ev.result.is_ok();
                    *st = ReqState::Completed(if granted { Outcome::Granted } else { Outcome::Ended });
                    self.graph.lock().remove(ev.request_id);
                    local.push(ev);
                }
            }
        }
        self.events.push_all(local);
    }
}

impl Manager {
    /// The manager's clock (ms).
    pub fn now_ms(&self) -> u64 {
        self.driver.events.now_ms()
    }

    pub(super) fn ctx(&self) -> Ctx<'_> {
        Ctx {
            me: self.shared.as_ref().map(|s| s.me()).unwrap_or(0),
            outbox: self.shared.as_ref().map(|_| &self.outbox),
            metrics: &self.metrics,
            requests: &self.driver.requests,
            graph: &self.driver.graph,
            events: &self.driver.events,
            need_graph: false,
        }
    }

    /// Thread mode: starts the library thread that runs timers and delivers events.
    pub fn start_thread(self: &Arc<Self>) -> Result<std::thread::JoinHandle<()>> {
        if self.driver.loop_mode {
            return Err(Error::Invalid("no library thread in event-loop mode"));
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("unilock-events".into())
            .spawn(move || {
                while !me.driver.stop.load(Ordering::Acquire) {
                    me.driver.events.wait(1000);
                    if me.driver.stop.load(Ordering::Acquire) {
                        break;
                    }
                    // A panic must not kill the thread that delivers every later event.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| me.process_events())).is_err() {
                        log::error!("internal panic while processing events");
                    }
                }
            })
            .map_err(|_| Error::Resource("thread"))
    }

    /// Thread mode: asks the library thread to stop (the caller joins it).
    pub fn stop_thread(&self) {
        self.driver.stop.store(true, Ordering::Release);
        self.driver.events.wake_thread();
    }

    /// The pollable descriptor of event-loop mode, or -1.
    pub fn event_fd(&self) -> i32 {
        self.driver.events.fd()
    }

    /// Milliseconds until `process_events` has work, or `None` if nothing is scheduled.
    pub fn next_timeout_ms(&self) -> Option<u64> {
        self.driver.events.next_timeout_ms()
    }

    /// Runs due timers, then delivers every queued event through the callback, on the calling thread
    /// and with no internal lock held. Returns the number of events delivered.
    pub fn process_events(&self) -> usize {
        self.driver.events.begin_round();
        if let Some(sh) = &self.shared {
            match sh.take_mail() {
                Ok(evs) => self.accept_mail(evs),
                Err(e) => log::error!("unilock: reading the mailbox: {e:?}"),
            }
        }
        let now = self.driver.events.now_ms();
        for t in self.driver.events.due_timers(now) {
            match t {
                TimerKind::RequestTimeout(id) => {
                    self.driver.timed.lock().remove(&id);
                    self.expire(id)
                }
                TimerKind::GraceEnd => {
                    let due = {
                        let g = self.grace.lock();
                        g.active && g.deadline <= self.driver.events.now_ms()
                    };
                    if due {
                        self.grace_end();
                    }
                }
                TimerKind::ClientTtl(client) => {
                    if self.clients.lock().expire(&client, self.driver.events.now_ms()) {
                        let _ = self.release_client_for(&client, crate::metrics::Release::Ttl);
                    }
                }
                TimerKind::ProcCheck => {
                    self.reap_dead();
                    self.driver.events.add_timer(self.driver.events.now_ms() + PROC_CHECK_MS, TimerKind::ProcCheck);
                }
                TimerKind::Flush => {
                    if let Err(e) = self.flush() {
                        self.store_errors.fetch_add(1, Ordering::Relaxed);
                        log::error!("unilock: batched write failed: {e:?}");
                    }
                }
                TimerKind::LeaseBreak(file) => {
                    let ctx = self.ctx();
                    self.file(&file, false, |fs| {
                        if let Some(fs) = fs {
                            fs.expire_leases(&ctx);
                        }
                    });
                }
            }
        }
        let delivered = self.driver.deliver();
        self.driver.events.rearm();
        delivered
    }

    pub(super) fn accept_mail(&self, evs: Vec<Event>) {
        self.driver.accept_mail(evs);
    }

    pub(super) fn expire(&self, id: u64) {
        let file = match self.driver.requests.map.lock().get(&id) {
            Some(ReqState::Waiting { file }) => file.clone(),
            _ => return,
        };
        let ctx = self.ctx();
        self.file(&file, false, |fs| {
            if let Some(fs) = fs {
                if fs.fail(&ctx, id, Error::Timeout) {
                    fs.settle(&ctx);
                }
            }
        });
    }
}
