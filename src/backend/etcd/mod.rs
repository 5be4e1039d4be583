//! Cluster mode: the processes of several file-server hosts share one lock table kept in etcd.
//! (One concept, the etcd backend, in one file over 800 lines; the client is `client.rs`.)
//!
//! Every participant (one process with a handle: an `nfsd`, each `smbd` child) grants itself an
//! etcd lease, kept alive by a thread, and registers under it; its participant id is the lease id
//! (unique in the cluster). Keys, all under `<cluster>/`:
//!
//! | key | value |
//! | --- | --- |
//! | `f/<hex file>` | the file's state (`FileState::encode`) |
//! | `l/<hex file>`, `l/~graph` | the operation lock of a file / of the wait-for graph (under the holder's lease) |
//! | `w/<hex file>` | the wait-for edges of the file's waiters |
//! | `p/<proc>/<hex file>` | index: the participant has state on the file |
//! | `k/<hex client>/<hex key>` | index: the file an SMB lease key leases |
//! | `m/<proc>/<sender><seq>` | mailbox: an event for the participant |
//! | `h/<proc>` | registration (under the lease): host, pid, start time, boot id |
//! | `c/<hex client>`, `r/<proc>` | client TTLs; when a dead participant's state may go |
//!
//! An operation takes the file's lock and reads its state in one transaction (`If create_revision(l) =
//! 0 Then put l, range f`), runs the caller's closure exactly once, and writes the state, the indexes,
//! the wait edges and the mailbox entries while dropping the lock in a second (`If mod_revision(l) = r`).
//! A closure is never run twice: compare-and-swap on the state with a retry would re-run it, and a run
//! has effects outside the state (completed requests, events queued for this process, metrics) that
//! a failed attempt cannot take back. Two writes per operation is the price; contention on one file
//! from two participants waits for the lock (polled), and a dead holder's lock goes with its lease.
//! A blocking request also takes `l/~graph`, so two deadlock checks never miss each other's edges.
//!
//! A watch on `m/<me>/` and `h/` wakes the event fd (a pipe) when mail arrives or a participant's
//! registration goes; a participant whose registration is gone is dead and its state is released by
//! the others as a dead process's is in shared mode.

pub mod client;

use super::{Backend, ProcIdent};
use crate::error::{Error, Result};
use crate::requests::{Ctx, Event};
use crate::table::FileState;
use client::{prefix_end, Client, Cmp, Kv, Op};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a cluster participant is configured with.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Comma-separated `http://host:port` client URLs of the etcd members.
    pub endpoints: String,
    /// Key prefix of this cluster's table (several clusters may share one etcd).
    pub cluster: String,
    /// This host's name (logs, `unilock-stat`).
    pub host: String,
    /// Lease TTL, ms: a participant silent this long is dead (rounded up to whole seconds, ≥ 2 s).
    pub ttl_ms: u64,
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2).map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()).collect()
}

fn serr(e: String) -> Error {
    Error::Store(e)
}

/// State shared with the keep-alive and watch threads.
struct Inner {
    client: Client,
    /// The keep-alive's own connection: never queued behind an operation's slow call.
    ka_client: Client,
    prefix: String,
    lease: i64,
    ttl_s: u64,
    /// Unix ms of the last keep-alive etcd answered (the lease lives at least TTL past it).
    alive_at: AtomicU64,
    /// The lease is known gone: this participant was declared dead; every operation fails.
    lost: AtomicBool,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    /// Write end of the wake pipe.
    wake_w: i32,
    watch_sock: Mutex<Option<std::net::TcpStream>>,
    /// Files whose lock this participant kept after its last operation on them, with their state.
    kept: Mutex<std::collections::HashMap<Box<[u8]>, Kept>>,
    /// Files another participant asked for while an operation of this one had them.
    let_go: Mutex<std::collections::HashSet<Box<[u8]>>>,
}

/// A file lock kept after an operation: its revision and the state last written (None: no state).
struct Kept {
    rev: i64,
    state: Option<Vec<u8>>,
}

/// The most file locks a participant keeps between operations.
const MAX_KEPT: usize = 4096;

impl Inner {
    fn key(&self, parts: &[&str]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push_str(p);
        }
        k.into_bytes()
    }

    fn wake(&self) {
        let b = 1u8;
        // SAFETY: a valid pipe descriptor and one byte; a full pipe already means "woken".
        unsafe { libc::write(self.wake_w, &b as *const u8 as *const libc::c_void, 1) };
    }

    fn stopped(&self) -> bool {
        *self.stop.lock()
    }

    fn keepalive_loop(&self) {
        let every = Duration::from_millis((self.ttl_s * 1000 / 3).max(300));
        let mut reported = false;
        loop {
            {
                let mut s = self.stop.lock();
                if *s {
                    return;
                }
                self.stop_cv.wait_for(&mut s, every);
                if *s {
                    return;
                }
            }
            // The lease lives at least TTL past the moment the renewal was sent.
            let sent = super::unix_ms();
            match self.ka_client.keepalive(self.lease) {
                Ok(ttl) if ttl > 0 => {
                    self.alive_at.store(sent, Ordering::Release);
                    if reported {
                        log::warn!("unilock: etcd reachable again (lease {:x} kept)", self.lease);
                        reported = false;
                    }
                }
                Ok(_) => {
                    if !self.lost.swap(true, Ordering::AcqRel) {
                        log::error!(
                            "unilock: this participant's etcd lease {:x} expired: the cluster released its state; \
                             every call now fails with UNILOCK_E_STORE (reopen the handle)",
                            self.lease
                        );
                    }
                    self.wake();
                }
                Err(e) => {
                    if !reported {
                        log::error!("unilock: etcd keep-alive failed: {e}; new locks are refused until it answers");
                        reported = true;
                    }
                }
            }
        }
    }

    /// Another participant asked for a file whose lock this one kept: let go of it now, or at the
    /// end of the operation that has it.
    fn let_go_of(&self, me: u64, hf: &str) {
        let Some(file) = unhex(hf.as_bytes()) else { return };
        let q = self.key(&["q/", &format!("{me:016x}/"), hf]);
        let kept = self.kept.lock().remove(&file[..]);
        let r = match kept {
            Some(k) => {
                let l = self.key(&["l/", hf]);
                self.client.txn(&[Cmp::Modified(&l, k.rev)], &[Op::Delete(&l), Op::Delete(&q)], &[Op::Delete(&q)])
            }
            None => {
                self.let_go.lock().insert(file.into_boxed_slice());
                self.client.txn(&[], &[Op::Delete(&q)], &[])
            }
        };
        if let Err(e) = r {
            log::warn!("unilock: etcd: letting go of a file lock: {e}");
        }
    }

    fn watch_loop(&self, me: u64) {
        let mbox = self.key(&["m/", &format!("{me:016x}/")]);
        let hosts = self.key(&["h/"]);
        let asks = self.key(&["q/", &format!("{me:016x}/")]);
        let mut failures = 0u32;
        while !self.stopped() {
            match client::Watch::open(&self.client, &[&mbox, &hosts, &asks]) {
                Ok(mut w) => {
                    if let Ok(s) = w.stopper() {
                        *self.watch_sock.lock() = Some(s);
                    }
                    if self.stopped() {
                        return;
                    }
                    // Anything may have arrived while no watch was open.
                    self.wake();
                    if let Ok(kvs) = self.client.range(&asks, &prefix_end(&asks), true) {
                        for kv in kvs {
                            self.let_go_of(me, &String::from_utf8_lossy(&kv.key[asks.len()..]));
                        }
                    }
                    failures = 0;
                    loop {
                        match w.next_message() {
                            Ok(v) => {
                                let Some(evs) = v["result"]["events"].as_array() else { continue };
                                let mut wake = false;
                                for ev in evs {
                                    let key = client::kv_of(&ev["kv"]).map(|kv| kv.key).unwrap_or_default();
                                    if key.starts_with(&asks) {
                                        if ev["type"].as_str() != Some("DELETE") {
                                            self.let_go_of(me, &String::from_utf8_lossy(&key[asks.len()..]));
                                        }
                                    } else {
                                        wake = true;
                                    }
                                }
                                if wake {
                                    self.wake();
                                }
                            }
                            Err(e) => {
                                if !self.stopped() {
                                    log::warn!("unilock: etcd watch: {e}; reconnecting");
                                }
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    if failures == 0 {
                        log::warn!("unilock: cannot open the etcd watch: {e}");
                    }
                    failures += 1;
                }
            }
            let mut s = self.stop.lock();
            if !*s {
                self.stop_cv.wait_for(&mut s, Duration::from_millis(200));
            }
        }
    }
}

pub struct Etcd {
    inner: Arc<Inner>,
    /// This participant's id (its lease id).
    pub me: u64,
    /// Operations of this process run one at a time (the per-file lock is per participant).
    op: Mutex<()>,
    seq: AtomicU64,
    wake_r: i32,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The registrations `procs` last read, and when.
    seen: Mutex<(Instant, std::collections::HashSet<u64>)>,
}

/// How long an operation waits for a file's lock held by another participant before answering
/// `UNILOCK_E_STORE` (a dead holder's lock goes with its lease, within the TTL).
fn lock_patience(ttl_s: u64) -> Duration {
    Duration::from_secs(ttl_s + 5)
}

impl Etcd {
    /// Joins the cluster table. Never a restart's state: see the README (grace across hosts).
    pub fn open(cfg: &EtcdConfig) -> Result<(Etcd, Option<crate::store::Recovered>)> {
        if cfg.cluster.is_empty() || cfg.cluster.contains('\0') {
            return Err(Error::Invalid("cluster mode needs a cluster name"));
        }
        let ttl_s = cfg.ttl_ms.div_ceil(1000).max(2);
        let client = Client::new(&cfg.endpoints, Duration::from_secs(ttl_s.clamp(2, 5))).map_err(serr)?;
        let lease = client.grant(ttl_s).map_err(serr)?;
        let me = lease as u64;
        let mut fds = [0i32; 2];
        // SAFETY: a valid out-array of two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            let _ = client.revoke(lease);
            return Err(Error::Resource("event descriptors"));
        }
        let ka_client = Client::new(&cfg.endpoints, client.timeout).map_err(serr)?;
        let inner = Arc::new(Inner {
            client,
            ka_client,
            prefix: format!("{}/", cfg.cluster),
            lease,
            ttl_s,
            alive_at: AtomicU64::new(super::unix_ms()),
            lost: AtomicBool::new(false),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            wake_w: fds[1],
            watch_sock: Mutex::new(None),
            kept: Mutex::new(std::collections::HashMap::new()),
            let_go: Mutex::new(std::collections::HashSet::new()),
        });
        let id = ProcIdent::me();
        let reg = format!("{}\n{}\n{}\n{}", cfg.host, id.pid, id.start, id.boot);
        let hkey = inner.key(&["h/", &format!("{me:016x}")]);
        let e = Etcd {
            inner: inner.clone(),
            me,
            op: Mutex::new(()),
            seq: AtomicU64::new(0),
            wake_r: fds[0],
            threads: Mutex::new(Vec::new()),
            seen: Mutex::new((Instant::now(), std::collections::HashSet::new())),
        };
        e.inner.client.txn(&[], &[Op::Put(&hkey, reg.as_bytes(), lease)], &[]).map_err(serr)?;
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|_| Error::Resource("thread"))
        };
        let i1 = inner.clone();
        let t1 = spawn("unilock-etcd-ka", Box::new(move || i1.keepalive_loop()))?;
        let i2 = inner.clone();
        let t2 = spawn("unilock-etcd-watch", Box::new(move || i2.watch_loop(me)))?;
        e.threads.lock().extend([t1, t2]);
        log::info!(
            "unilock: joined cluster {:?} on {} as participant {me:x} ({})",
            cfg.cluster,
            cfg.endpoints,
            cfg.host
        );
        Ok((e, None))
    }

    fn check(&self) -> Result<()> {
        if self.inner.lost.load(Ordering::Acquire) {
            return Err(Error::Store("this participant's etcd lease expired: the cluster released its state".into()));
        }
        let since = super::unix_ms().saturating_sub(self.inner.alive_at.load(Ordering::Acquire));
        if since > self.inner.ttl_s * 1000 {
            return Err(Error::Store(format!("etcd has not renewed this participant's lease for {since} ms")));
        }
        Ok(())
    }

    /// Is this participant's lease surely alive (renewed less than 3/4 TTL ago)? Then a file lock it
    /// kept is still its own and an operation that changes nothing needs no write to be sure.
    fn lease_fresh(&self) -> bool {
        let since = super::unix_ms().saturating_sub(self.inner.alive_at.load(Ordering::Acquire));
        !self.inner.lost.load(Ordering::Acquire) && since < self.inner.ttl_s * 750
    }

    /// Takes the locks `locks` and reads `reads` in one transaction; while another participant holds
    /// one, asks it to let go (`q/<holder>/<file>`: a file lock kept after its last operation) and
    /// waits. Returns the locks' revision and the ranges read.
    fn acquire(&self, locks: &[&[u8]], reads: &[Op]) -> Result<(i64, Vec<Vec<Kv>>)> {
        let me = self.me.to_string();
        let cmps: Vec<Cmp> = locks.iter().map(|k| Cmp::Created(k, 0)).collect();
        let mut then: Vec<Op> = locks.iter().map(|k| Op::Put(k, me.as_bytes(), self.inner.lease)).collect();
        let mut otherwise: Vec<Op> = locks.iter().map(|k| Op::Range(k, &[])).collect();
        for r in reads {
            let Op::Range(k, e) = r else { continue };
            then.push(Op::Range(k, e));
            otherwise.push(Op::Range(k, e));
        }
        let lpre = self.inner.key(&["l/"]);
        let start = Instant::now();
        let mut asked = None::<Instant>;
        let mut pause = Duration::from_micros(100);
        loop {
            self.check()?;
            let r = self.inner.client.txn(&cmps, &then, &otherwise).map_err(serr)?;
            if r.succeeded {
                return Ok((r.revision, r.ranges));
            }
            // Held: by this participant (a lock left by an operation whose end was lost) or another.
            let mut mine = false;
            let ask = asked.map_or(true, |t| t.elapsed() > Duration::from_millis(50));
            for (k, held) in locks.iter().zip(&r.ranges) {
                let Some(kv) = held.first() else { continue };
                if kv.value == me.as_bytes() {
                    mine = true;
                    let _ = self.inner.client.txn(&[Cmp::Modified(k, kv.mod_revision)], &[Op::Delete(k)], &[]);
                } else if ask && !k.ends_with(b"~graph") {
                    let holder: u64 = std::str::from_utf8(&kv.value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
                    let file = std::str::from_utf8(&k[lpre.len()..]).unwrap_or("");
                    let q = self.inner.key(&["q/", &format!("{holder:016x}/"), file]);
                    let _ = self.inner.client.txn(&[], &[Op::Put(&q, b"", self.inner.lease)], &[]);
                    asked = Some(Instant::now());
                }
            }
            if mine {
                continue;
            }
            if start.elapsed() > lock_patience(self.inner.ttl_s) {
                return Err(Error::Store("a file's etcd lock stayed held by another participant".into()));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// Drops locks (best effort: after a failure).
    fn release(&self, locks: &[(&[u8], i64)]) {
        for (k, rev) in locks {
            let _ = self.inner.client.txn(&[Cmp::Modified(k, *rev)], &[Op::Delete(k)], &[]);
        }
    }

    /// One operation with the locks held (`locks`: key and revision; the file's lock first) and the
    /// file's state as etcd has it (`state`), or its wait edges (`edges`, with `need_graph`).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: &mut dyn FnMut(Option<&mut FileState>),
        locks: &[(&[u8], i64)],
        state: Option<Vec<u8>>,
        edges: Option<&[Kv]>,
        (fkey, wkey): (&[u8], &[u8]),
    ) -> Result<Option<Vec<u8>>> {
        let mut fs = match &state {
            Some(b) => FileState::decode(file, b, false)
                .ok_or_else(|| Error::Store("a file state in etcd is corrupt".into()))?,
            None if create => FileState::blank(file, false),
            None => {
                f(None);
                if locks.len() > 1 {
                    self.release(&locks[1..]);
                }
                return Ok(None);
            }
        };
        fs.me = self.me;
        if let Some(edges) = edges {
            let mut g = crate::core::wait::WaitGraph::default();
            for kv in edges {
                if kv.key == wkey {
                    continue;
                }
                for (id, who, blockers) in
                    decode_edges(&kv.value).ok_or_else(|| Error::Store("a wait edge in etcd is corrupt".into()))?
                {
                    g.set(id ^ super::sqlite_shared::hash_bytes(&kv.key), who, blockers);
                }
            }
            for (id, who, blockers) in fs.wait_edges() {
                g.set(id, who, blockers);
            }
            *ctx.graph.lock() = g;
        }
        let had_waits = fs.waiter_count() > 0;
        let procs_before = fs.procs();
        let keys_before = lease_keys(&fs);
        fs.expire_leases(ctx);
        f(Some(&mut fs));
        let _ = fs.take_journal();
        let new_state = if fs.is_empty_state() { None } else { Some(fs.encode()) };
        let new_edges = (had_waits || fs.waiter_count() > 0).then(|| encode_edges(&fs));
        let procs_after = fs.procs();
        let keys_after = lease_keys(&fs);
        let out: Vec<Event> = ctx.outbox.map(|o| std::mem::take(&mut *o.lock())).unwrap_or_default();
        if new_state == state && new_edges.is_none() && out.is_empty() && locks.len() == 1 && self.lease_fresh() {
            // Nothing changed and the file's lock stays: nothing to write (a test, a list, a
            // refused lock on a file this participant keeps).
            return Ok(state);
        }

        // The commit: owned keys first, then the operations that borrow them.
        let hf = hex(file);
        let mut owned: Vec<(Vec<u8>, Vec<u8>, bool)> = Vec::new(); // (key, value, put)
        for p in procs_before.iter().filter(|p| !procs_after.contains(p)) {
            owned.push((self.inner.key(&["p/", &format!("{p:016x}/"), &hf]), Vec::new(), false));
        }
        for p in procs_after.iter().filter(|p| !procs_before.contains(p)) {
            owned.push((self.inner.key(&["p/", &format!("{p:016x}/"), &hf]), Vec::new(), true));
        }
        for (c, k) in keys_before.iter().filter(|x| !keys_after.contains(x)) {
            owned.push((self.inner.key(&["k/", &hex(c), "/", &hex(k)]), Vec::new(), false));
        }
        for (c, k) in keys_after.iter().filter(|x| !keys_before.contains(x)) {
            owned.push((self.inner.key(&["k/", &hex(c), "/", &hex(k)]), file.to_vec(), true));
        }
        for ev in &out {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let k = self.inner.key(&["m/", &format!("{:016x}/{:016x}{seq:016x}", ev.proc, self.me)]);
            owned.push((k, super::sqlite_shared::encode_event(ev), true));
        }
        let mut ops: Vec<Op> = Vec::with_capacity(owned.len() + 4);
        if new_state != state {
            match &new_state {
                Some(s) => ops.push(Op::Put(fkey, s, 0)),
                None => ops.push(Op::Delete(fkey)),
            }
        }
        match &new_edges {
            Some(e) if fs.waiter_count() > 0 => ops.push(Op::Put(wkey, e, 0)),
            Some(_) => ops.push(Op::Delete(wkey)),
            None => {}
        }
        for (k, v, put) in &owned {
            ops.push(if *put { Op::Put(k, v, 0) } else { Op::Delete(k) });
        }
        // The graph's lock goes now; the file's lock is kept for this participant's next operation
        // on the file (until another participant asks for it).
        for (k, _) in &locks[1..] {
            ops.push(Op::Delete(k));
        }
        let cmps: Vec<Cmp> = locks.iter().map(|(k, rev)| Cmp::Modified(k, *rev)).collect();
        let ok = match self.inner.client.txn(&cmps, &ops, &[]) {
            Ok(r) => r.succeeded,
            Err(e) => {
                log::error!("unilock: etcd: committing an operation on a file failed: {e}");
                return Err(serr(e));
            }
        };
        if !ok {
            log::error!("unilock: etcd: this participant lost a file's lock during an operation (its lease expired?)");
            return Err(Error::Store("lost the file's etcd lock during the operation".into()));
        }
        Ok(new_state)
    }

    fn registered(&self) -> Result<Vec<(u64, ProcIdent)>> {
        let pre = self.inner.key(&["h/"]);
        let mut v = Vec::new();
        for kv in self.inner.client.range(&pre, &prefix_end(&pre), false).map_err(serr)? {
            let Some(id) = proc_of(&kv.key[pre.len()..]) else { continue };
            let s = String::from_utf8_lossy(&kv.value).to_string();
            let mut it = s.split('\n').skip(1);
            let pid = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let start = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let boot = it.next().unwrap_or("").to_string();
            v.push((id, ProcIdent { pid, start, boot }));
        }
        Ok(v)
    }

    /// The host names of the registered participants (for logs and tools).
    pub fn hosts(&self) -> Result<Vec<(u64, String)>> {
        let pre = self.inner.key(&["h/"]);
        let kvs = self.inner.client.range(&pre, &prefix_end(&pre), false).map_err(serr)?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let id = proc_of(&kv.key[pre.len()..])?;
                Some((id, String::from_utf8_lossy(&kv.value).split('\n').next().unwrap_or("").to_string()))
            })
            .collect())
    }
}

impl Backend for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn me(&self) -> u64 {
        self.me
    }

    /// The wake-up pipe's read end (add it to the event fd).
    fn wake_fd(&self) -> Option<i32> {
        Some(self.wake_r)
    }

    /// Runs `f` on `file`'s state (see the module comment); events for other participants go to
    /// their mailboxes in the same transaction.
    fn with_file_dyn(
        &self,
        file: &[u8],
        create: bool,
        ctx: &Ctx,
        f: &mut dyn FnMut(Option<&mut FileState>),
    ) -> Result<()> {
        let _op = self.op.lock();
        self.check()?;
        let hf = hex(file);
        let fkey = self.inner.key(&["f/", &hf]);
        let lkey = self.inner.key(&["l/", &hf]);
        let gkey = self.inner.key(&["l/~graph"]);
        let wkey = self.inner.key(&["w/", &hf]);
        let wpre = self.inner.key(&["w/"]);
        let wend = prefix_end(&wpre);
        // The file's lock kept from this participant's last operation on it: no need to take it, and
        // its state is the one this participant wrote (nobody else may write without the lock).
        let kept = self.inner.kept.lock().remove(file);
        let mut take: Vec<&[u8]> = Vec::new();
        let mut reads = Vec::new();
        if kept.is_none() {
            take.push(&lkey);
            reads.push(Op::Range(&fkey, &[]));
        }
        if ctx.need_graph {
            take.push(&gkey);
            reads.push(Op::Range(&wpre, &wend));
        }
        let (rev, ranges) = if take.is_empty() {
            (0, Vec::new())
        } else {
            match self.acquire(&take, &reads) {
                Ok(x) => x,
                Err(e) => {
                    if let Some(k) = kept {
                        self.inner.kept.lock().insert(file.into(), k);
                    }
                    return Err(e);
                }
            }
        };
        let mut ranges = ranges.into_iter();
        let (lrev, state) = match kept {
            Some(k) => (k.rev, k.state),
            None => (rev, ranges.next().unwrap_or_default().into_iter().next().map(|kv| kv.value)),
        };
        let edges = if ctx.need_graph { Some(ranges.next().unwrap_or_default()) } else { None };
        let mut locks: Vec<(&[u8], i64)> = vec![(&lkey, lrev)];
        if ctx.need_graph {
            locks.push((&gkey, rev));
        }
        match self.run(file, create, ctx, f, &locks, state, edges.as_deref(), (&fkey, &wkey)) {
            Ok(state) => {
                let let_go = self.inner.let_go.lock().remove(file);
                let mut kept = self.inner.kept.lock();
                if !let_go && kept.len() < MAX_KEPT {
                    kept.insert(file.into(), Kept { rev: lrev, state });
                } else {
                    drop(kept);
                    self.release(&locks[..1]);
                }
                Ok(())
            }
            Err(e) => {
                // Whatever happened, do not leave the file locked (a lost answer may have kept it).
                self.release(&locks);
                Err(e)
            }
        }
    }

    /// Takes the events other participants addressed to this one (and drains the wake pipe).
    fn take_mail(&self) -> Result<Vec<Event>> {
        let mut buf = [0u8; 256];
        // SAFETY: a valid non-blocking pipe and buffer.
        while unsafe { libc::read(self.wake_r, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
        self.check()?;
        let pre = self.inner.key(&["m/", &format!("{:016x}/", self.me)]);
        let mut kvs = self.inner.client.range(&pre, &prefix_end(&pre), false).map_err(serr)?;
        if kvs.is_empty() {
            return Ok(Vec::new());
        }
        kvs.sort_by(|a, b| a.create_revision.cmp(&b.create_revision).then_with(|| a.key.cmp(&b.key)));
        let ops: Vec<Op> = kvs.iter().map(|kv| Op::Delete(&kv.key)).collect();
        self.inner.client.txn(&[], &ops, &[]).map_err(serr)?;
        Ok(kvs.iter().filter_map(|kv| super::sqlite_shared::decode_event(&kv.value)).collect())
    }

    /// Every participant known: those registered, and those that still have state (dead ones).
    fn procs(&self) -> Result<Vec<(u64, ProcIdent)>> {
        // The index first: a participant writes it only after registering, so one found there and
        // not among the registrations read after it is gone (not one that has just started).
        let pre = self.inner.key(&["p/"]);
        let indexed = self.inner.client.range(&pre, &prefix_end(&pre), true).map_err(serr)?;
        let mut v = self.registered()?;
        *self.seen.lock() = (Instant::now(), v.iter().map(|(p, _)| *p).collect());
        for kv in indexed {
            if let Some(id) = proc_of(&kv.key[pre.len()..]) {
                if !v.iter().any(|(p, _)| *p == id) {
                    v.push((id, ProcIdent { pid: 0, start: 0, boot: String::new() }));
                }
            }
        }
        Ok(v)
    }

    /// Is participant `id` alive: is its registration there? (An etcd that cannot be asked says
    /// yes: a participant is never declared dead on a guess.)
    fn alive(&self, id: u64, _ident: &ProcIdent) -> bool {
        if id == self.me {
            return true;
        }
        // Registered in the snapshot `procs` just took: alive (the reaper asks right after it).
        {
            let seen = self.seen.lock();
            if seen.0.elapsed() < Duration::from_secs(1) && seen.1.contains(&id) {
                return true;
            }
        }
        let k = self.inner.key(&["h/", &format!("{id:016x}")]);
        match self.inner.client.range(&k, &[], true) {
            Ok(v) => !v.is_empty(),
            Err(_) => true,
        }
    }

    fn release_at(&self, proc: u64) -> Result<u64> {
        let k = self.inner.key(&["r/", &format!("{proc:016x}")]);
        let v = self.inner.client.range(&k, &[], false).map_err(serr)?;
        Ok(v.first().and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok()).unwrap_or(0))
    }

    fn set_release_at(&self, proc: u64, at: u64) -> Result<()> {
        let k = self.inner.key(&["r/", &format!("{proc:016x}")]);
        self.inner.client.txn(&[], &[Op::Put(&k, at.to_string().as_bytes(), 0)], &[]).map(|_| ()).map_err(serr)
    }

    fn max_ttl(&self, clients: &[Box<[u8]>]) -> Result<u64> {
        let mut m = 0;
        for c in clients {
            let k = self.inner.key(&["c/", &hex(c)]);
            let v = self.inner.client.range(&k, &[], false).map_err(serr)?;
            let ttl = v
                .first()
                .and_then(|kv| String::from_utf8_lossy(&kv.value).split('\n').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            m = m.max(ttl);
        }
        Ok(m)
    }

    fn files_of(&self, proc: u64) -> Result<Vec<Box<[u8]>>> {
        let pre = self.inner.key(&["p/", &format!("{proc:016x}/")]);
        let kvs = self.inner.client.range(&pre, &prefix_end(&pre), true).map_err(serr)?;
        kvs.iter()
            .map(|kv| {
                unhex(&kv.key[pre.len()..])
                    .map(|v| v.into_boxed_slice())
                    .ok_or_else(|| Error::Store("a bad index key in etcd".into()))
            })
            .collect()
    }

    fn files(&self) -> Result<Vec<Box<[u8]>>> {
        let pre = self.inner.key(&["f/"]);
        let kvs = self.inner.client.range(&pre, &prefix_end(&pre), true).map_err(serr)?;
        kvs.iter()
            .map(|kv| {
                unhex(&kv.key[pre.len()..])
                    .map(|v| v.into_boxed_slice())
                    .ok_or_else(|| Error::Store("a bad file key in etcd".into()))
            })
            .collect()
    }

    fn lease_file(&self, client: &[u8], key: &[u8; 16]) -> Result<Option<Box<[u8]>>> {
        let k = self.inner.key(&["k/", &hex(client), "/", &hex(key)]);
        let v = self.inner.client.range(&k, &[], false).map_err(serr)?;
        Ok(v.into_iter().next().map(|kv| kv.value.into_boxed_slice()))
    }

    /// Forgets a dead participant once its state was released (its index, mailbox and timers).
    fn forget_proc(&self, proc: u64) -> Result<()> {
        let p = format!("{proc:016x}");
        for pre in
            [self.inner.key(&["p/", &p, "/"]), self.inner.key(&["m/", &p, "/"]), self.inner.key(&["q/", &p, "/"])]
        {
            let end = prefix_end(&pre);
            self.inner
                .client
                .call(
                    "/v3/kv/deleterange",
                    &serde_json::json!({"key": client::b64(&pre), "range_end": client::b64(&end)}),
                )
                .map_err(serr)?;
        }
        let r = self.inner.key(&["r/", &p]);
        self.inner.client.txn(&[], &[Op::Delete(&r)], &[]).map(|_| ()).map_err(serr)
    }

    fn put_client(&self, client: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<()> {
        let k = self.inner.key(&["c/", &hex(client)]);
        let v = format!("{ttl_ms}\n{adapter}\n{address}");
        self.inner.client.txn(&[], &[Op::Put(&k, v.as_bytes(), 0)], &[]).map(|_| ()).map_err(serr)
    }

    /// No grace bookkeeping is kept in etcd yet (see the README).
    fn end_grace(&self) -> Result<()> {
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        if let Some(s) = self.inner.watch_sock.lock().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        // Leaving: the registration and any lock key go with the lease.
        if let Err(e) = self.inner.client.revoke(self.inner.lease) {
            log::warn!("unilock: revoking the etcd lease at close: {e}");
        }
        // SAFETY: descriptors this struct created and nobody else closes.
        unsafe {
            libc::close(self.wake_r);
            libc::close(self.inner.wake_w);
        }
    }
}

/// A participant id from the start of a key suffix (`<16 hex>...`).
fn proc_of(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s.get(..16)?).ok()?, 16).ok()
}

/// The SMB lease keys (client, key) on a file: the `k/` index.
fn lease_keys(fs: &FileState) -> Vec<(Box<[u8]>, [u8; 16])> {
    fs.leases
        .leases
        .iter()
        .filter(|l| l.kind == crate::core::lease::Kind::Lease)
        .map(|l| (l.client.clone(), l.key))
        .collect()
}

fn encode_edges(fs: &FileState) -> Vec<u8> {
    let mut w = crate::codec::W(Vec::new());
    let edges = fs.wait_edges();
    w.u64(edges.len() as u64);
    for (id, who, blockers) in edges {
        w.u64(id);
        w.bytes(&who);
        w.bytes(&super::sqlite_shared::encode_keys(&blockers));
    }
    w.0
}

type Edge = (u64, crate::requests::OwnerKey, Vec<crate::requests::OwnerKey>);

fn decode_edges(b: &[u8]) -> Option<Vec<Edge>> {
    let mut r = crate::codec::R { b };
    let n = r.u64()?;
    if n > b.len() as u64 {
        return None;
    }
    (0..n)
        .map(|_| {
            let id = r.u64()?;
            let who = r.bytes()?.to_vec().into_boxed_slice();
            let blockers = super::sqlite_shared::decode_keys(r.bytes()?)?;
            Some((id, who, blockers))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(b"\x00\xffa"), "00ff61");
        assert_eq!(unhex(b"00ff61").unwrap(), b"\x00\xffa");
        assert!(unhex(b"0").is_none() && unhex(b"zz").is_none());
        assert_eq!(proc_of(b"00000000000000ff/abc"), Some(255));
        assert_eq!(proc_of(b"ff"), None);
    }

    #[test]
    fn corrupt_edges_are_refused() {
        assert!(decode_edges(&[]).is_none());
        let mut w = crate::codec::W(Vec::new());
        w.u64(1_000_000);
        assert!(decode_edges(&w.0).is_none(), "a count larger than the bytes");
        let mut w = crate::codec::W(Vec::new());
        w.u64(0);
        assert_eq!(decode_edges(&w.0).unwrap().len(), 0);
    }
}
