//! Cross-process mail in the mapping (issue 17): the events an operation makes for other processes
//! (a grant of a waiting lock, a lease break, a watch) go into the target's mail slot instead of
//! SQLite's `mailbox`, so an operation whose only database work was mail takes no SQLite
//! transaction, and the target reads its mail without one.
//!
//! A slot (`layout`: `S_*`) holds a robust process-shared mutex, the owner process, a byte ring of
//! `[u32 length][encoded event]` entries between `head` and `tail` (byte counters, taken modulo
//! RING_BYTES), the slot's intent, and, per partition, the last intent (sequence number) whose mail
//! was posted here. Process `p` claims slot `p % NSLOT` when it opens, unless another live process
//! owns it; the stale mail of a dead owner is discarded then.
//!
//! Posting, for one intent `(part, seq)` and the events of it whose targets map to this slot, under
//! the slot mutex (taken after the partition mutex, never the other way round, one slot at a time):
//! - `applied[part]` says whether this intent was posted here already (a roll-forward repeated after
//!   a crash posts nothing twice); seq grows by one per intent of a partition, and a partition rolls
//!   its intents forward one at a time, so one word per partition is enough.
//! - the owner's events go to the ring: their bytes are written past the tail, then the new tail
//!   and applied word are recorded in the slot's intent, the intent flag set, both stored, the flag
//!   cleared. A poster killed before the flag leaves nothing (bytes past the tail are not mail); after
//!   it, the next locker (EOWNERDEAD) finishes the two stores. So no half message, nothing twice.
//! - events for another process (it has no slot: another live process owns this one), and the
//!   owner's when its ring is full, fall back to SQLite's mailbox (`FB_*` bits in `applied[part]`
//!   record that decision before the slot is unlocked, so a repeated roll-forward sends them to SQLite
//!   again, never to the ring; the SQLite insert is idempotent by its own `shm_mail_applied` row).
//!   The owner's mail then keeps going to SQLite (`S_STICKY`) until it has read SQLite with no
//!   fallback in flight: its mail keeps its order.

use super::aux::Mail;
use super::layout::*;
use super::mutex;
use super::{serr, ShmBackend};
use crate::backend::Backend;
use crate::error::Error;
use crate::requests::Event;
use rusqlite::{params, OptionalExtension};

/// `applied[part]`: all of this intent's mail for the slot goes to SQLite.
pub const FB_ALL: u64 = 1 << 63;
/// `applied[part]`: the owner's mail went to the ring; the other processes' goes to SQLite.
pub const FB_SOME: u64 = 1 << 62;
const FB: u64 = FB_ALL | FB_SOME;

pub fn slot_of(proc: u64) -> u64 {
    proc % NSLOT
}

fn applied_off(s: u64, part: u64) -> u64 {
    slot_off(s) + S_APPLIED + part * 8
}

/// A held slot mutex.
pub struct SlotGuard<'a> {
    m: &'a Map,
    s: u64,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by `lock` on this mapping.
        unsafe { mutex::unlock(self.m.mutex(slot_off(self.s) + S_MUTEX)) }
    }
}

/// Whether slot `s` was set up in this instance (its mutex initialised).
pub fn ready(m: &Map, s: u64, epoch: u64) -> bool {
    m.get(slot_off(s) + S_READY) == epoch
}

/// Locks ready slot `s`, finishing the intent of a holder that died.
pub fn lock(m: &Map, s: u64) -> Result<SlotGuard<'_>, String> {
    let o = slot_off(s);
    // SAFETY: a mutex initialised by `claim` (the slot is ready), mapped as long as `m`.
    let died = match unsafe { mutex::lock(m.mutex(o + S_MUTEX)) }? {
        mutex::Locked::Clean => false,
        mutex::Locked::OwnerDied => true,
    };
    let g = SlotGuard { m, s };
    if died || m.get(o + S_INTENT) != 0 {
        finish_intent(m, s)?;
        if died {
            // SAFETY: held by us.
            unsafe { mutex::consistent(m.mutex(o + S_MUTEX)) };
        }
    }
    Ok(g)
}

/// Finishes the slot's recorded intent, if any (the bytes are in the ring already).
fn finish_intent(m: &Map, s: u64) -> Result<(), String> {
    let o = slot_off(s);
    if m.get(o + S_INTENT) == 0 {
        return Ok(());
    }
    let (tail, part, applied) = (m.get(o + S_I_TAIL), m.get(o + S_I_PART), m.get(o + S_I_APPLIED));
    if part >= NPART || tail < m.get(o + S_HEAD) || tail - m.get(o + S_HEAD) > RING_BYTES {
        return Err(format!("mail slot {s}: the intent is corrupt"));
    }
    m.set(o + S_TAIL, tail);
    m.set(applied_off(s, part), applied);
    m.set(o + S_INTENT, 0);
    Ok(())
}

/// Claims slot `s` for `me` (the caller holds the mapping file's lock: no other process sets a slot
/// up meanwhile). Refused (false) when another live process owns it.
pub fn claim(m: &Map, s: u64, me: u64, epoch: u64, alive: impl Fn(u64) -> bool) -> Result<bool, String> {
    let o = slot_off(s);
    if !ready(m, s, epoch) {
        // First use in this instance: the slot is zero (the mapping was built zeroed).
        // SAFETY: nobody uses a slot that is not ready (posters fall back to SQLite for it).
        unsafe { mutex::init(m.mutex(o + S_MUTEX))? };
        m.set(o + S_READY, epoch);
    }
    let _g = lock(m, s)?;
    let owner = m.get(o + S_OWNER);
    if owner != 0 && owner != me && alive(owner) {
        return Ok(false);
    }
    // The dead owner's mail goes with it.
    m.set(o + S_HEAD, m.get(o + S_TAIL));
    m.set(o + S_STICKY, 0);
    m.set(o + S_OWNER, me);
    Ok(true)
}

/// Gives slot `s` up if `proc` owns it (at close, or when `proc` is found dead).
pub fn release(m: &Map, s: u64, proc: u64, epoch: u64) -> Result<(), String> {
    if !ready(m, s, epoch) {
        return Ok(());
    }
    let o = slot_off(s);
    let _g = lock(m, s)?;
    if m.get(o + S_OWNER) == proc {
        m.set(o + S_OWNER, 0);
        m.set(o + S_HEAD, m.get(o + S_TAIL));
        m.set(o + S_STICKY, 0);
    }
    Ok(())
}

/// What `post` did with one intent's events for one slot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Posted {
    /// Processes whose events are in the ring (now or by an earlier attempt): to wake.
    pub ring: Vec<u64>,
    /// Events to put in SQLite's mailbox (then `fallback_done`).
    pub fallback: Vec<(u64, Vec<u8>)>,
}

fn write_ring(m: &Map, s: u64, pos: u64, b: &[u8]) {
    let base = slot_off(s) + SLOT_HDR;
    let at = pos % RING_BYTES;
    let first = (RING_BYTES - at).min(b.len() as u64) as usize;
    m.write(base + at, &b[..first]);
    if first < b.len() {
        m.write(base, &b[first..]);
    }
}

fn read_ring(m: &Map, s: u64, pos: u64, n: u64) -> Option<Vec<u8>> {
    let base = slot_off(s) + SLOT_HDR;
    let at = pos % RING_BYTES;
    let first = (RING_BYTES - at).min(n);
    let mut v = m.bytes(base + at, first)?.to_vec();
    if first < n {
        v.extend_from_slice(m.bytes(base, n - first)?);
    }
    Some(v)
}

/// Posts intent `(part, seq)`'s events `evs` (target, encoded event) for ready slot `s`, in order,
/// at most once however often it is called. `stop` is the test hook (steps 4 and 5: inside the
/// slot mutex, before and after the slot's intent is recorded).
pub fn post(
    m: &Map,
    s: u64,
    part: u64,
    seq: u64,
    evs: &[(u64, Vec<u8>)],
    stop: &dyn Fn(u64),
) -> Result<Posted, String> {
    let o = slot_off(s);
    let _g = lock(m, s)?;
    let owner = m.get(o + S_OWNER);
    let a = m.get(applied_off(s, part));
    let (aseq, bits) = (a & !FB, a & FB);
    let mut out = Posted::default();
    let mine = |t: u64| owner != 0 && t == owner;
    if aseq > seq || (aseq == seq && bits == 0) {
        // Posted already (a roll-forward repeated after a crash): the ring holds it; wake anyway.
        out.ring = evs.iter().filter(|(t, _)| mine(*t)).map(|(t, _)| *t).take(1).collect();
        return Ok(out);
    }
    if aseq == seq {
        // An earlier attempt decided, and perhaps did, the fallback: the same events go to SQLite.
        out.fallback = evs.iter().filter(|(t, _)| bits == FB_ALL || !mine(*t)).cloned().collect();
        return Ok(out);
    }
    let ring: Vec<&Vec<u8>> = evs.iter().filter(|(t, _)| mine(*t)).map(|(_, b)| b).collect();
    let need: u64 = ring.iter().map(|b| 4 + b.len() as u64).sum();
    let (head, tail) = (m.get(o + S_HEAD), m.get(o + S_TAIL));
    let free = RING_BYTES.saturating_sub(tail.saturating_sub(head));
    let to_ring = !ring.is_empty() && m.get(o + S_STICKY) == 0 && need <= free;
    if to_ring {
        let mut pos = tail;
        for b in &ring {
            write_ring(m, s, pos, &(b.len() as u32).to_le_bytes());
            write_ring(m, s, pos + 4, b);
            pos += 4 + b.len() as u64;
        }
        let others = evs.iter().any(|(t, _)| !mine(*t));
        stop(4);
        m.set(o + S_I_TAIL, pos);
        m.set(o + S_I_PART, part);
        m.set(o + S_I_APPLIED, seq | if others { FB_SOME } else { 0 });
        m.set(o + S_INTENT, 1);
        stop(5);
        finish_intent(m, s)?;
        out.ring.push(owner);
        out.fallback = evs.iter().filter(|(t, _)| !mine(*t)).cloned().collect();
    } else {
        if !ring.is_empty() {
            // The owner's ring is full (or its mail is going to SQLite already): its mail goes to
            // SQLite until it has read it there.
            m.set(o + S_STICKY, 1);
            m.word(o + S_FB_COUNT).fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        m.set(applied_off(s, part), seq | FB_ALL);
        out.fallback = evs.to_vec();
    }
    Ok(out)
}

/// The fallback of intent `(part, seq)` for slot `s` is in SQLite.
pub fn fallback_done(m: &Map, s: u64, part: u64, seq: u64) -> Result<(), String> {
    let _g = lock(m, s)?;
    let w = applied_off(s, part);
    let a = m.get(w);
    if a & !FB == seq && a & FB != 0 {
        m.set(w, seq);
    }
    Ok(())
}

/// What the owner read from its slot.
pub struct Drained {
    pub events: Vec<Vec<u8>>,
    /// Its mail went to SQLite: read it there (then `unstick` with `fb_count`).
    pub sticky: bool,
    /// No fallback was in flight when the ring was read (its SQLite part is all committed).
    pub settled: bool,
    pub fb_count: u64,
}

/// Takes the ring's mail, if `me` owns slot `s`.
pub fn drain(m: &Map, s: u64, me: u64) -> Result<Drained, String> {
    let o = slot_off(s);
    let mut d = Drained { events: Vec::new(), sticky: false, settled: false, fb_count: 0 };
    if m.get(o + S_HEAD) == m.get(o + S_TAIL) && m.get(o + S_STICKY) == 0 && m.get(o + S_INTENT) == 0 {
        return Ok(d); // nothing: no mutex taken
    }
    let _g = lock(m, s)?;
    if m.get(o + S_OWNER) != me {
        return Ok(d);
    }
    let (mut head, tail) = (m.get(o + S_HEAD), m.get(o + S_TAIL));
    let corrupt = |m: &Map| {
        m.set(o + S_HEAD, tail);
        format!("mail slot {s} is corrupt (its mail is discarded)")
    };
    if tail < head || tail - head > RING_BYTES {
        return Err(corrupt(m));
    }
    while head < tail {
        let n = read_ring(m, s, head, 4).map(|b| u32::from_le_bytes(b[..4].try_into().unwrap()) as u64);
        let Some(n) = n.filter(|n| head + 4 + n <= tail) else { return Err(corrupt(m)) };
        d.events.push(read_ring(m, s, head + 4, n).ok_or_else(|| corrupt(m))?);
        head += 4 + n;
    }
    m.set(o + S_HEAD, head);
    d.sticky = m.get(o + S_STICKY) != 0;
    d.fb_count = m.get(o + S_FB_COUNT);
    d.settled = (0..NPART).all(|p| m.get(applied_off(s, p)) & FB == 0);
    Ok(d)
}

/// The owner read SQLite after `drain` said `settled` with `fb_count`: its mail goes to the ring
/// again, unless more went to SQLite meanwhile.
pub fn unstick(m: &Map, s: u64, fb_count: u64) -> Result<(), String> {
    let o = slot_off(s);
    let _g = lock(m, s)?;
    if m.get(o + S_FB_COUNT) == fb_count && (0..NPART).all(|p| m.get(applied_off(s, p)) & FB == 0) {
        m.set(o + S_STICKY, 0);
    }
    Ok(())
}

// The backend's side: posting an intent's mail, the SQLite fallback, wake-ups, reading.

impl ShmBackend {
    /// Posts intent `seq` of partition `p`'s mail: to the targets' slots, or, for a target without
    /// a slot of its own or whose ring is full, to SQLite's mailbox (`mail`). Idempotent. Returns the
    /// processes to wake.
    pub(super) fn post_mail(&self, p: u64, seq: u64, events: &[(u64, Vec<u8>)]) -> crate::error::Result<Vec<u64>> {
        let m = &self.map;
        // Grouped by slot (one applied word per slot and partition), each group in order.
        let mut groups: Vec<(u64, Mail)> = Vec::new();
        for (t, ev) in events {
            let s = slot_of(*t);
            match groups.iter_mut().find(|(g, _)| *g == s) {
                Some((_, v)) => v.push((*t, ev.clone())),
                None => groups.push((s, vec![(*t, ev.clone())])),
            }
        }
        let mut wake: Vec<u64> = Vec::new();
        for (s, evs) in groups {
            let ready = ready(m, s, self.epoch);
            let posted = if ready {
                post(m, s, p, seq, &evs, &|step| self.maybe_stop(step)).map_err(|e| self.poison(e))?
            } else {
                // Nobody ever claimed the slot: the targets have none.
                Posted { ring: Vec::new(), fallback: evs }
            };
            wake.extend(posted.ring);
            if !posted.fallback.is_empty() {
                self.fallback_mail(s, p, seq, &posted.fallback)?;
                for (t, _) in &posted.fallback {
                    // After the commit: the target's next round reads SQLite.
                    m.word(MAILSEQ + (t % MAILSEQ_SLOTS) * 8).fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    wake.push(*t);
                }
                if ready {
                    fallback_done(m, s, p, seq).map_err(|e| self.poison(e))?;
                }
            }
        }
        wake.sort_unstable();
        wake.dedup();
        Ok(wake)
    }

    /// Mail that falls back to SQLite's mailbox: one transaction, unless the database says intent
    /// `seq` of partition `p` put its mail for slot `s` there already.
    fn fallback_mail(&self, s: u64, p: u64, seq: u64, evs: &[(u64, Vec<u8>)]) -> crate::error::Result<()> {
        let mut conn = self.sh.conn().lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(serr)?;
        let done: Option<i64> = tx
            .prepare_cached("SELECT seq FROM shm_mail_applied WHERE slot = ?1 AND part = ?2")
            .and_then(|mut st| st.query_row(params![s as i64, p as i64], |r| r.get(0)).optional())
            .map_err(serr)?;
        if done.is_some_and(|d| d as u64 >= seq) {
            return Ok(());
        }
        {
            let mut ins = tx.prepare_cached("INSERT INTO mailbox(proc, event) VALUES (?1, ?2)").map_err(serr)?;
            for (t, ev) in evs {
                ins.execute(params![*t as i64, ev]).map_err(serr)?;
            }
        }
        tx.prepare_cached("INSERT OR REPLACE INTO shm_mail_applied(slot, part, seq) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![s as i64, p as i64, seq as i64]))
            .map_err(serr)?;
        tx.commit().map_err(serr)
    }

    /// Wakes the processes mail went to with a datagram to `<db>.sockets/<proc>.sock` (where
    /// `Shared::open` binds it; the socket path in `procs` is read only if that path does not exist,
    /// e.g. a process that opened the database through a symbolic link). A lost wake-up only delays
    /// delivery: the slot and the counter are read on every processing round.
    pub(super) fn wake(&self, wake: &[u64]) {
        for t in wake {
            let path = self.sock_dir.join(format!("{t}.sock"));
            if let Err(e) = self.sh.socket().send_to(&[1], &path) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    let recorded: Option<String> = self
                        .sh
                        .conn()
                        .lock()
                        .query_row("SELECT socket FROM procs WHERE proc = ?1", params![*t as i64], |r| r.get(0))
                        .optional()
                        .ok()
                        .flatten();
                    if let Some(p) = recorded {
                        let _ = self.sh.socket().send_to(&[1], p);
                    }
                }
            }
        }
    }

    /// This process's mail: its slot's ring (no database read), then SQLite's mailbox only when
    /// mail fell back there (the counter in the mapping moved, or the slot says its mail goes there).
    pub(super) fn take_mail_now(&self) -> crate::error::Result<Vec<Event>> {
        self.check()?;
        // The socket first: a wake-up for mail posted after the ring is read stays to be seen.
        let mut buf = [0u8; 64];
        while self.sh.socket().recv(&mut buf).is_ok() {}
        let mut evs = Vec::new();
        let mut sticky = None;
        if let Some(s) = self.slot {
            let d = drain(&self.map, s, self.me).map_err(|e| {
                log::error!("unilock: {e}");
                Error::Store(e)
            })?;
            for b in &d.events {
                match crate::backend::sqlite_shared::decode_event(b) {
                    Some(ev) => evs.push(ev),
                    // As the SQLite mailbox does with a row it cannot read: skipped, the rest kept.
                    None => log::error!("unilock: a mail entry in slot {s} is corrupt; skipped"),
                }
            }
            if d.sticky {
                sticky = Some(d);
            }
        }
        let now = self.map.get(MAILSEQ + (self.me % MAILSEQ_SLOTS) * 8);
        if sticky.is_some() || now != self.mail_seen.load(std::sync::atomic::Ordering::Acquire) {
            // The ring's mail is older than what went to SQLite while the slot was sticky. Should
            // SQLite fail, the ring's mail (taken already) is still delivered, and SQLite is read
            // again on the next round (the counter and the slot are left as they are).
            match self.sh.take_mail() {
                Ok(more) => evs.extend(more),
                Err(e) if !evs.is_empty() => {
                    log::error!("unilock: reading the mailbox failed (read again next round): {e:?}");
                    return Ok(evs);
                }
                Err(e) => return Err(e),
            }
            self.mail_seen.store(now, std::sync::atomic::Ordering::Release);
            if let (Some(s), Some(d)) = (self.slot, sticky.filter(|d| d.settled)) {
                unstick(&self.map, s, d.fb_count).map_err(|e| self.poison(e))?;
            }
        }
        Ok(evs)
    }
}
