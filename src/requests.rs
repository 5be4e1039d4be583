//! Outstanding requests (blocking locks and watches) and the events that complete them.
//!
//! Every request id lives in `Requests` from the moment it is queued until its completion has been
//! delivered, cancelled, or suppressed. The state machine is what makes cancel race-safe:
//!
//! `Waiting` (queued on a file) → `Completed` (decided; event queued) → `Delivering` (callback
//! running) → gone. `cancel` removes a `Waiting` request from its file ("cancelled"), or drops a
//! `Completed` one so its event is never delivered ("already granted" / "already ended"), or waits for
//! a `Delivering` one to finish. After cancel returns, the library never touches the request's
//! `user_data` again.
//!
//! Lock order: shard → `Requests` → `WaitGraph` → event queue. Never the reverse.

use crate::core::wait::WaitGraph;
use crate::core::{Flavour, LockType};
use crate::error::Error;
use crate::events::Events;
use crate::owners::OwnerRef;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::thread::ThreadId;

/// A global owner identity (owners are interned per file; the wait-for graph spans files).
pub type OwnerKey = Box<[u8]>;

/// Encodes (flavour, client, owner[, open id]) so equal owners get equal keys on every file.
pub fn owner_key(flavour: Flavour, client: &[u8], owner: &[u8], open_id: u64) -> OwnerKey {
    let mut k = Vec::with_capacity(2 + client.len() + owner.len() + 8);
    k.push(flavour as u8);
    k.push(client.len() as u8);
    k.extend_from_slice(client);
    k.extend_from_slice(owner);
    if flavour == Flavour::Windows {
        k.extend_from_slice(&open_id.to_le_bytes());
    }
    k.into_boxed_slice()
}

pub fn owner_key_of(flavour: Flavour, o: &OwnerRef) -> OwnerKey {
    owner_key(flavour, o.client, o.owner, o.open_id)
}

/// What an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// A blocking lock request ended: granted (`Ok`) or failed.
    LockDone = 0,
    /// A watched file's locks changed.
    Watch = 1,
    /// A lease (oplock, delegation) must be broken: the holder is told (request id 0).
    LeaseBreak = 2,
    /// A break was not acknowledged in time: the lease is now none (request id 0).
    LeaseRevoked = 3,
    /// The breaks a waiting open or trigger waited for are over: retry it.
    BreaksDone = 4,
    /// Grace ended: this client's unreclaimed state was released (locks in `offset`, leases in
    /// `length`; request id 0).
    GraceReleased = 5,
}

/// The mailbox's encoding of an event kind; unknown bytes are refused, never guessed.
impl TryFrom<u8> for EventKind {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => EventKind::LockDone,
            1 => EventKind::Watch,
            2 => EventKind::LeaseBreak,
            3 => EventKind::LeaseRevoked,
            4 => EventKind::BreaksDone,
            5 => EventKind::GraceReleased,
            _ => return Err(v),
        })
    }
}

/// Lease fields of an event (zero for lock events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    pub key: [u8; 16],
    /// `None` for events that are not about a lease.
    pub kind: Option<crate::core::lease::Kind>,
    pub state: u8,
    pub break_to: u8,
    pub epoch: u16,
    pub ack_required: bool,
}

/// One event waiting for delivery. Owns copies of everything it reports.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: EventKind,
    pub result: Result<(), Error>,
    pub request_id: u64,
    pub token: u64,
    pub user_data: usize,
    pub file: Box<[u8]>,
    pub client: Vec<u8>,
    pub owner: Vec<u8>,
    pub open_id: u64,
    pub flavour: Flavour,
    pub lock_kind: LockType,
    pub offset: u64,
    pub length: u64,
    pub lease: LeaseInfo,
    /// The process the event is for (shared mode; 0: this one).
    pub proc: u64,
}

/// How a decided request ended (kept until delivered, so cancel can say which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Granted,
    Ended,
}

#[derive(Debug)]
pub enum ReqState {
    Waiting { file: Box<[u8]> },
    Completed(Outcome),
    Delivering(ThreadId),
}

/// The outcome of `cancel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The request was waiting and is gone; no event will be delivered.
    Cancelled,
    /// The lock was granted before the cancel: the caller owns it; its event will not be delivered.
    AlreadyGranted,
    /// The request had already failed (e.g. timed out) or the watch fired; its event will not be
    /// delivered.
    AlreadyEnded,
}

#[derive(Default)]
pub struct Requests {
    pub map: Mutex<HashMap<u64, ReqState>>,
    pub delivered: Condvar,
}

/// What the table needs from the manager to queue, grant and complete requests.
pub struct Ctx<'a> {
    /// This process (shared mode; 0 otherwise).
    pub me: u64,
    /// Shared mode: events for other processes, delivered through the database.
    pub outbox: Option<&'a Mutex<Vec<Event>>>,
    pub metrics: &'a crate::metrics::Metrics,
    pub requests: &'a Requests,
    pub graph: &'a Mutex<WaitGraph<OwnerKey>>,
    pub events: &'a Events<Event>,
    /// A blocking request is being decided on a shared backend: its deadlock check needs every
    /// participant's wait-for edges, which the backend reads into `graph` with the file.
    pub need_graph: bool,
}

impl Ctx<'_> {
    /// Marks a request decided and queues its event. Called with the file's shard lock held, so a
    /// concurrent cancel sees either `Waiting` with the waiter still queued, or `Completed`.
    pub fn complete(&self, ev: Event) {
        if ev.proc != 0 && ev.proc != self.me {
            if let Some(out) = self.outbox {
                self.graph.lock().remove(ev.request_id);
                out.lock().push(ev);
                return;
            }
        }
        let outcome =
            if ev.kind == EventKind::LockDone && ev.result.is_ok() { Outcome::Granted } else { Outcome::Ended };
        if ev.request_id == 0 {
            // A notification (lease break, revocation): not a request, nothing to cancel.
            self.events.push_all([ev]);
            return;
        }
        self.requests.map.lock().insert(ev.request_id, ReqState::Completed(outcome));
        self.graph.lock().remove(ev.request_id);
        self.events.push_all([ev]);
    }

    /// Forgets a request that ends without an event (cancelled).
    pub fn forget(&self, id: u64) {
        self.requests.map.lock().remove(&id);
        self.graph.lock().remove(id);
    }
}
