//! The per-file decisions that combine the other core rules (issue 16, "the core decides
//! everything"): each is a pure function of one file's state and a request, returning the outcome and
//! the `Changes` to make, or the effects to apply (events to send, timers to arm) as data. `FileState`
//! (`crate::state`) only applies what these return.
//!
//! * `lock` / `lock_many`: one lock of either flavour; several, all or none, as ONE `Changes` (a
//!   refused `lock_many` changes nothing: there is no undo).
//! * `resubmission`: token idempotency of a blocking request.
//! * `next_grant`: the waiter grant loop, one grant at a time, in arrival order.
//! * `open_plan`, `open_request`, `plain_open`: the open -> break trigger mapping, "a delegation never
//!   waits", and the key of a plain open.
//! * `brl_below_eof`, `open_lease_key`, `trigger_outcome`, `breaks_done`: the lease rules a lock or a
//!   trigger meets on its way (write caching, the requester's own key, busy or wait, when a wait ends).
//! * `note_effects`: lease notes -> the events to deliver (with the holder's process, and for an oplock
//!   the open it belongs to) and the break timers to arm.

use super::lease::{self, FileLeases, Grant, Key, Note, Trigger};
use super::lockset::{Lock, LockId, LockSet};
use super::range::Range;
use super::wait::{self, Waiter};
use super::{posix, windows, Changes, Denied, Flavour, LockType, NewLock, OwnerIdx};

// ---------------------------------------------------------------------------------------------------
// Locks

/// One lock of `flavour` (no blocking): the changes, or why not. Always inlined: on the hot path the
/// `Changes` then goes straight from the flavour's rule to the caller, with no copy in between.
#[inline(always)]
pub fn lock(
    set: &LockSet,
    owner: OwnerIdx,
    flavour: Flavour,
    kind: LockType,
    range: &Range,
) -> Result<Changes, Denied> {
    match flavour {
        Flavour::Posix => posix::lock(set, owner, kind, range),
        Flavour::Windows => windows::lock(set, owner, kind, range),
    }
}

/// Why `lock_many` refused: the element, and what refused it. A conflict names the lock as it was
/// when that element was decided (it may be one an earlier element of the same call would have
/// taken, which no id of the set names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManyRefused {
    pub index: usize,
    pub why: Refusal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This lock conflicts.
    Conflict(Lock),
    /// Any other refusal (never `Denied::Conflict`).
    Denied(Denied),
}

/// Several locks of one owner and flavour, all or none (SPEC.md §3): each element is decided on the
/// state the earlier ones leave; the result is the net `Changes` from the state before the call, or
/// the first refused element. Only the owner's locks change, so the elements are worked out on a
/// scratch set holding the owner's locks and the other owners' locks near the requested ranges (every
/// lock a conflict, a merge or a seam check of these ranges can involve).
pub fn lock_many(
    set: &LockSet,
    owner: OwnerIdx,
    flavour: Flavour,
    elems: &[(LockType, Range)],
) -> Result<Changes, ManyRefused> {
    // In the scratch set the owner is ME and every other owner OTHER: the rules only ever ask whether
    // a lock is the requester's (so the scratch set's size does not grow with the file's owners).
    const ME: OwnerIdx = OwnerIdx(0);
    const OTHER: OwnerIdx = OwnerIdx(1);
    let scratch_of = |l: &Lock| Lock { owner: if l.owner == owner { ME } else { OTHER }, ..*l };
    let mut scratch = LockSet::new();
    // scratch id -> the id in `set`, for the locks copied in (they get ids 0, 1, ...).
    let mut orig: Vec<LockId> = Vec::new();
    let mut copy = |scratch: &mut LockSet, id: LockId| {
        let l = scratch_of(set.get(id));
        let sid = scratch.insert(NewLock { owner: l.owner, flavour: l.flavour, kind: l.kind, range: l.range });
        debug_assert_eq!(sid as usize, orig.len());
        orig.push(id);
    };
    set.of_owner(owner).for_each(|id| copy(&mut scratch, id));
    let mut near: Vec<LockId> = Vec::new();
    for (_, r) in elems {
        // Conflicts search [start, search_end); merges and seams look one byte further either side.
        let (lo, hi) = ((r.start as u128).saturating_sub(1), r.search_end() + 1);
        let mut other = |id: LockId| {
            if set.get(id).owner != owner {
                near.push(id);
            }
        };
        set.exclusive().for_each_overlapping(lo, hi, &mut other);
        set.shared().for_each_overlapping(lo, hi, &mut other);
    }
    near.sort_unstable();
    near.dedup();
    for id in near {
        copy(&mut scratch, id);
    }
    // The lock of `set` a scratch lock still is, if it is one.
    let original = |sid: LockId, l: &Lock| -> Option<LockId> {
        let id = *orig.get(sid as usize)?;
        (scratch_of(set.get(id)) == *l).then_some(id)
    };
    for (i, (kind, range)) in elems.iter().enumerate() {
        match lock(&scratch, ME, flavour, *kind, range) {
            Ok(c) => {
                scratch.apply(&c);
            }
            Err(Denied::Conflict(sid)) => {
                let l = scratch.get(sid);
                // Other owners' locks never change here; a lock that is not the set's is the owner's.
                let holder = match original(sid, l) {
                    Some(id) => *set.get(id),
                    None => Lock { owner, ..*l },
                };
                return Err(ManyRefused { index: i, why: Refusal::Conflict(holder) });
            }
            Err(d) => return Err(ManyRefused { index: i, why: Refusal::Denied(d) }),
        }
    }
    // The net change: the owner's original locks no longer there, and its locks that are new.
    let mut c = Changes::default();
    for (sid, &id) in orig.iter().enumerate() {
        let l = set.get(id);
        if l.owner == owner && scratch.try_get(sid as LockId) != Some(&scratch_of(l)) {
            c.removed.push(id);
        }
    }
    for (sid, l) in scratch.iter() {
        if l.owner == ME && original(sid, l).is_none() {
            c.added.push(NewLock { owner, flavour: l.flavour, kind: l.kind, range: l.range });
        }
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------------
// Blocking requests

/// A blocking request that was granted, as remembered for an idempotent re-submission: the whole
/// request (the interned owner stands for client, owner, open id and flavour), not the token alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantedReq {
    pub owner: OwnerIdx,
    pub token: u64,
    pub kind: LockType,
    pub range: Range,
}

/// What a re-submitted blocking request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resubmit {
    /// The same request with the same token is waiting: it is that one (its queue index).
    Waiting(usize),
    /// The same request with the same token was granted: granted again, nothing changes.
    Granted,
    /// A new request (the token with anything else is a new request too).
    New,
}

/// Token idempotency (SPEC.md §3): a blocking request is the same one only with the same owner,
/// type, range and token. `tokens` are the waiters' tokens, in queue order.
pub fn resubmission(
    waiters: &[Waiter],
    tokens: impl IntoIterator<Item = u64>,
    granted: &[GrantedReq],
    this: &GrantedReq,
) -> Resubmit {
    let same = |w: &Waiter| w.owner == this.owner && w.kind == this.kind && w.range == this.range;
    if let Some(i) = waiters.iter().zip(tokens).position(|(w, t)| same(w) && t == this.token) {
        return Resubmit::Waiting(i);
    }
    if granted.contains(this) {
        return Resubmit::Granted;
    }
    Resubmit::New
}

/// One step of the waiter grant loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextGrant {
    /// The waiter granted (queue index).
    pub index: usize,
    /// Its lock's changes.
    pub changes: Changes,
    /// Where to look next once it is applied and the waiter removed: from the front when the grant
    /// removed locks (a POSIX downgrade may unblock earlier waiters), else from where it was.
    pub next_from: usize,
}

/// The first waiter at or after `from`, in arrival order, that neither a held lock nor an earlier
/// waiter blocks, and the changes granting it makes. Applying each and calling again (with
/// `next_from`) until `None` grants every waiter that can proceed; each step grants one, so it ends.
pub fn next_grant(set: &LockSet, waiters: &[Waiter], from: usize) -> Option<NextGrant> {
    for i in from..waiters.len() {
        let w = &waiters[i];
        if wait::blocked_by(set, &waiters[..i], w.owner, w.flavour, w.kind, &w.range).is_some() {
            continue;
        }
        let changes = lock(set, w.owner, w.flavour, w.kind, &w.range)
            .expect("no held lock conflicts with a waiter found unblocked");
        let next_from = if changes.removed.is_empty() { i } else { 0 };
        return Some(NextGrant { index: i, changes, next_from });
    }
    None
}

// ---------------------------------------------------------------------------------------------------
// Opens

/// What an open asks for.
#[derive(Clone, Debug, Default)]
pub struct OpenSpec {
    /// `None`: a plain open with no lease.
    pub kind: Option<lease::Kind>,
    pub key: Key,
    pub requested: u8,
    pub version: u8,
    pub epoch: u16,
    pub stat: bool,
    pub write: bool,
    pub overwrite: bool,
    pub dir: bool,
    pub sharing_violation: bool,
    /// A reclaim (NFSv4 CLAIM_PREVIOUS) during the grace period.
    pub reclaim: bool,
    pub file_size: u64,
    pub timeout_ms: u64,
    /// An open re-issued after `BreaksDone` (it also waits for contending leases still breaking).
    pub retry: bool,
    /// v2 leases: the parent directory's lease key.
    pub parent: Option<Key>,
}

/// How an open runs its break trigger (SPEC.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenPlan {
    /// The trigger it fires (a stat open fires none).
    pub trigger: Option<Trigger>,
    /// It may wait for breaks to end. Asking for a delegation is only ever a try (it never waits),
    /// but the open itself still breaks what any open breaks.
    pub may_wait: bool,
    /// Its own lease key spares its own lease (SMB leases only: an oplock or delegation has none).
    pub own_key: bool,
    /// It writes: another client's delegation, read ones too, is recalled.
    pub write: bool,
    /// It is recorded (an open that failed with a sharing violation only breaks).
    pub records: bool,
}

/// The open -> trigger mapping.
pub fn open_plan(spec: &OpenSpec) -> OpenPlan {
    let trigger = if spec.sharing_violation {
        Some(Trigger::SharingViolation)
    } else if spec.overwrite {
        Some(Trigger::Overwrite)
    } else if spec.stat {
        None
    } else {
        Some(Trigger::Open)
    };
    OpenPlan {
        trigger,
        may_wait: spec.kind != Some(lease::Kind::Delegation),
        own_key: spec.kind == Some(lease::Kind::Lease),
        write: spec.write || spec.overwrite,
        records: !spec.sharing_violation,
    }
}

/// The lease request an open makes (a plain open asks for state 0; `plain_open` gives its key).
pub fn open_request<'a>(
    spec: &OpenSpec,
    client: &'a [u8],
    open_id: u64,
    brl_below_eof: bool,
    proc: u64,
) -> lease::Request<'a> {
    lease::Request {
        client,
        open_id,
        kind: spec.kind.unwrap_or(lease::Kind::Lease),
        key: spec.key,
        requested: if spec.kind.is_some() { spec.requested } else { 0 },
        version: spec.version,
        epoch: spec.epoch,
        parent: spec.parent,
        dir: spec.dir,
        stat: spec.stat,
        write: spec.write,
        overwrite: spec.overwrite,
        brl_below_eof,
        timeout_ms: spec.timeout_ms,
        proc,
    }
}

/// A plain open holds no lease, whatever key bytes came with it: the request it is recorded with,
/// and what it is granted.
pub fn plain_open<'a>(r: &lease::Request<'a>) -> (lease::Request<'a>, Grant) {
    let mut r = r.clone();
    r.key = PLAIN_OPEN_KEY;
    r.requested = 0;
    (r, Grant::NONE)
}

/// The key a plain open is recorded under.
pub const PLAIN_OPEN_KEY: Key = [0xFF; 16];

/// The request a reclaimed lease is granted with (the state is checked against the pre-restart
/// state by the caller), and the grant.
pub fn reclaim_request<'a>(
    spec: &OpenSpec,
    client: &'a [u8],
    open_id: u64,
    state: u8,
    proc: u64,
) -> (lease::Request<'a>, Grant) {
    let mut r = open_request(spec, client, open_id, false, proc);
    r.requested = state;
    let g = Grant { state, epoch: spec.epoch, breaking: false, version: spec.version, parent: spec.parent };
    (r, g)
}

/// The file has a byte-range lock starting below its end (and is not empty): a lease request then
/// gets no write caching (SPEC.md §4).
pub fn brl_below_eof(set: &LockSet, size: u64) -> bool {
    if size == 0 {
        return false;
    }
    let hit = |t: &super::itree::IntervalTree| t.find(0, size as u128, |_| true).is_some();
    hit(set.exclusive()) || hit(set.shared())
}

/// The lease key of the open (client, open id), if its open has a lease: the byte-range-lock
/// trigger run before a lock by that open spares that lease (and never waits, never writes).
pub fn open_lease_key(leases: &FileLeases, client: &[u8], open_id: u64) -> Option<Key> {
    leases.opens.iter().find(|x| *x.client == *client && x.open_id == open_id).and_then(|x| x.lease)
}

/// What a trigger that had to wait for `waits` breaks answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TriggerOutcome {
    /// Nothing to wait for: proceed.
    Ready,
    /// Breaks must end first and the requester cannot wait.
    Busy,
    /// Breaks must end first: the requester waits for `BreaksDone`.
    Wait,
}

pub fn trigger_outcome(waits: usize, may_wait: bool) -> TriggerOutcome {
    match (waits, may_wait) {
        (0, _) => TriggerOutcome::Ready,
        (_, false) => TriggerOutcome::Busy,
        (_, true) => TriggerOutcome::Wait,
    }
}

/// A requester waiting for breaks completes when none of the leases it waits on is breaking any more
/// (SPEC.md §4; a lease that went is not breaking).
pub fn breaks_done(leases: &FileLeases, waits: &[(Box<[u8]>, Key)]) -> bool {
    waits.iter().all(|(c, k)| !leases.is_breaking(c, k))
}

// ---------------------------------------------------------------------------------------------------
// Lease notes -> effects

/// Something a lease decision asks to be done once the file's state is updated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Tell the holder (process `proc`; 0: this one) of a break or revocation. An oplock belongs to
    /// one open, so its notes name it (`open_id`); a lease or delegation is named by its key alone
    /// (`open_id` 0).
    Notify { note: Note, proc: u64, open_id: u64 },
    /// A break that needs an ack: arm the file's break timer for `at` (ms).
    ArmBreakTimer { at: u64 },
}

/// The effects of lease notes: each note goes to its holder's process; a break needing an ack arms the
/// break timer at the lease's deadline.
pub fn note_effects(leases: &FileLeases, notes: Vec<Note>) -> Vec<Effect> {
    let mut out = Vec::with_capacity(notes.len() * 2);
    for note in notes {
        let (client, key, kind, ack) = match &note {
            Note::Break { client, key, kind, ack, .. } => (client, key, *kind, *ack),
            Note::Revoked { client, key, kind, .. } => (client, key, *kind, false),
        };
        let found = leases.find(client, key);
        // A lease that went with its last open: the process of the client's opens on this file.
        let proc = match found {
            Some(i) => leases.leases[i].proc,
            None => leases.opens.iter().find(|o| *o.client == **client).map(|o| o.proc).unwrap_or(0),
        };
        let open_id = match kind {
            lease::Kind::Oplock => leases
                .opens
                .iter()
                .find(|o| *o.client == **client && o.lease == Some(*key))
                .map(|o| o.open_id)
                .unwrap_or(0),
            _ => 0,
        };
        let timer = match (ack, found) {
            (true, Some(i)) => Some(Effect::ArmBreakTimer { at: leases.leases[i].deadline }),
            _ => None,
        };
        // The timer first, as the events were always queued after it.
        out.extend(timer);
        out.push(Effect::Notify { note, proc, open_id });
    }
    out
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
