//! Leases, oplocks and delegations of one file (SPEC.md §4; MS-SMB2 3.3.5.9.8/11, 3.3.5.22.2; MS-FSA
//! 2.1.4.12; Samba `smb2_oplock.c`/`open.c`; smbtorture `smb2.lease`, `smb2.oplock`).
//!
//! One mechanism serves all three: an oplock is a keyless lease of one open (Level II = R,
//! Exclusive = RW, Batch = RWH), an NFSv4 delegation is a lease of an NFS client (read = R,
//! write = RW) that is only ever granted as a try, and a per-open `F_SETLEASE` is the same as a
//! delegation keyed by its open. Everything here is pure: time comes in as `now` (ms), and what the
//! holders must be told comes out as `Note`s for the caller to deliver.
//!
//! Invariants: a (client, key) names at most one lease of the file; W is never held by two leases;
//! a lease at state none survives only while it still has opens (so a late or second ack answers
//! "no break", as MS-SMB2 keeps the lease object with its opens) and never for a delegation;
//! `breaking` implies `break_to ⊂ state` and `break_required ⊆ break_to`.

/// Read caching (MS-SMB2 SMB2_LEASE_READ_CACHING).
pub const R: u8 = 0x01;
/// Handle caching (SMB2_LEASE_HANDLE_CACHING).
pub const H: u8 = 0x02;
/// Write caching (SMB2_LEASE_WRITE_CACHING).
pub const W: u8 = 0x04;
pub const RWH: u8 = R | H | W;

pub type Key = [u8; 16];

/// A lease named by its holder: (client, key).
pub type LeaseRef = (Box<[u8]>, Key);

/// What an open asks for, by protocol, before it has a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asks {
    /// An SMB2.1/3 lease with the client's key.
    Lease(Key),
    /// An oplock: its identity is its open.
    Oplock,
    /// An NFSv4 delegation: one per client and file.
    Delegation,
    /// A per-open `F_SETLEASE`-style lease: its identity is its open; held as a delegation.
    SetLease,
}

/// The identity of what an open asks for: its kind and the key breaks and acks name it by. Keyless
/// kinds get a key made from a tag and the open (`OPLK`, `SETL`) or the tag alone (`DELG`: a
/// client's delegation of a file is one, whatever open asked for it).
pub fn identity(asks: Asks, open_id: u64) -> (Kind, Key) {
    let made = |tag: &[u8; 4], open: u64| {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(tag);
        k[8..].copy_from_slice(&open.to_le_bytes());
        k
    };
    match asks {
        Asks::Lease(key) => (Kind::Lease, key),
        Asks::Oplock => (Kind::Oplock, made(b"OPLK", open_id)),
        Asks::Delegation => (Kind::Delegation, made(b"DELG", 0)),
        Asks::SetLease => (Kind::Delegation, made(b"SETL", open_id)),
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn identities_by_protocol() {
        assert_eq!(identity(Asks::Lease([9; 16]), 5), (Kind::Lease, [9; 16]));
        let (k, o5) = identity(Asks::Oplock, 5);
        assert_eq!((k, &o5[..4], &o5[8..]), (Kind::Oplock, &b"OPLK"[..], &5u64.to_le_bytes()[..]));
        assert_ne!(o5, identity(Asks::Oplock, 6).1, "one oplock per open");
        assert_eq!(identity(Asks::Delegation, 5), identity(Asks::Delegation, 6), "one delegation per client");
        assert_eq!(identity(Asks::Delegation, 5).0, Kind::Delegation);
        let (k, s5) = identity(Asks::SetLease, 5);
        assert_eq!(k, Kind::Delegation);
        assert_ne!(s5, identity(Asks::SetLease, 6).1, "one setlease per open");
        assert_ne!(s5, o5);
    }
}

/// The discriminant is the one wire encoding (store, shared-state codec, mailbox), read back with
/// `TryFrom<u8>`, which refuses unknown bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An SMB2.1/3 lease (v1 or v2), keyed by the client's lease key.
    Lease = 0,
    /// An oplock: a keyless lease of one open.
    Oplock = 1,
    /// An NFSv4 delegation or a per-open `F_SETLEASE` lease: only ever granted as a try.
    Delegation = 2,
}

impl TryFrom<u8> for Kind {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(Kind::Lease),
            1 => Ok(Kind::Oplock),
            2 => Ok(Kind::Delegation),
            _ => Err(v),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub client: Box<[u8]>,
    pub key: Key,
    pub kind: Kind,
    /// Lease version (1 or 2) as created; sticks until the lease goes.
    pub version: u8,
    /// The parent directory's lease key sent with the first request (v2), echoed to every open.
    pub parent: Option<Key>,
    pub dir: bool,
    pub state: u8,
    pub epoch: u16,
    pub breaking: bool,
    /// The announced break-to state.
    pub break_to: u8,
    /// Where the whole break sequence must end (≤ `break_to`; lower when a second trigger came).
    pub break_required: u8,
    /// When the current break times out (ms).
    pub deadline: u64,
    /// This lease's break timeout (ms), chosen by its protocol adapter.
    pub timeout_ms: u64,
    /// Opens sharing this lease.
    pub opens: u32,
    /// The process to tell about breaks (shared mode; 0 otherwise).
    pub proc: u64,
}

/// An open of the file, as far as leases care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub client: Box<[u8]>,
    pub open_id: u64,
    /// The lease this open belongs to: (client, key).
    pub lease: Option<Key>,
    /// A stat open (attributes only): breaks nothing and does not prevent W.
    pub stat: bool,
    /// Opened for writing.
    pub write: bool,
    /// The process that holds the open (shared mode; 0 otherwise).
    pub proc: u64,
}

/// The leases and opens of one file.
#[derive(Clone, Debug, Default)]
pub struct FileLeases {
    pub leases: Vec<Lease>,
    pub opens: Vec<Open>,
}

/// What a holder must be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A break: the lease goes from `from` to `to`; `ack` says whether the holder must acknowledge.
    Break { client: Box<[u8]>, key: Key, kind: Kind, from: u8, to: u8, epoch: u16, ack: bool },
    /// A break was not acknowledged in time: the lease is now none.
    Revoked { client: Box<[u8]>, key: Key, kind: Kind, from: u8, epoch: u16 },
}

/// Activity that breaks other holders' leases (SPEC.md §4 table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An open that is not a stat open.
    Open,
    /// An open that failed with a sharing violation (files or directories).
    SharingViolation,
    /// Delete or rename of the file.
    DeleteRename,
    /// An overwriting or superseding open, or a truncate.
    Overwrite,
    /// A data write or set-size.
    Write,
    /// A byte-range lock (either flavour).
    ByteRangeLock,
    /// A directory entry created, deleted, renamed, hard-linked or changed (directory leases).
    DirChange,
}

/// Who causes a trigger: its own lease is never broken (same key, or the delegation's own client).
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub client: &'a [u8],
    /// The requester's lease key (or the parent key for `DirChange`).
    pub key: Option<&'a Key>,
    /// An open re-issued after the breaks it waited for ended (Samba's `!first_open_attempt`): it
    /// also waits for every lease it contends with that is still breaking.
    pub retry: bool,
    /// The requester opens for writing, or writes: another client's delegation, read ones too, is
    /// recalled (RFC 7530 §10.4; Linux's `break_lease` for `F_RDLCK` leases).
    pub write: bool,
}

/// Why an acknowledgement is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckError {
    /// Unknown key, or a key of another client.
    NotFound,
    /// No break in progress.
    NoBreak,
    /// The acknowledged state is not a subset of the break-to state.
    BadAck,
}

/// A lease request attached to an open.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub client: &'a [u8],
    pub open_id: u64,
    pub kind: Kind,
    pub key: Key,
    pub requested: u8,
    pub version: u8,
    /// v2: the epoch the client sent.
    pub epoch: u16,
    /// v2: the parent directory's lease key, if the client set one.
    pub parent: Option<Key>,
    pub dir: bool,
    pub stat: bool,
    pub write: bool,
    pub overwrite: bool,
    /// The file has a byte-range lock starting below end of file (and is not empty).
    pub brl_below_eof: bool,
    pub timeout_ms: u64,
    /// The requesting process (shared mode; 0 otherwise).
    pub proc: u64,
}

/// The answer to a lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub state: u8,
    pub epoch: u16,
    /// The same key is being broken: the open joined it and reports its current state.
    pub breaking: bool,
    /// The lease's version (that of its first request; 0 when no lease was recorded).
    pub version: u8,
    /// The parent lease key the lease was created with (echoed in every SMB2 lease response).
    pub parent: Option<Key>,
}

impl Grant {
    /// Nothing granted, no lease recorded.
    pub const NONE: Grant = Grant { state: 0, epoch: 0, breaking: false, version: 0, parent: None };
}

/// Valid file states: none, R, RH, RW, RWH; directories: none, R, RH.
pub fn valid_state(state: u8, dir: bool) -> bool {
    match state {
        0 | R | 0x03 => true,
        0x05 | RWH => !dir,
        _ => false,
    }
}

/// Normalises a grantable bit set to a valid state: anything without R is none.
fn normalise(state: u8) -> u8 {
    if state & R == 0 {
        0
    } else {
        state
    }
}

impl FileLeases {
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.opens.is_empty()
    }

    pub fn find(&self, client: &[u8], key: &Key) -> Option<usize> {
        self.leases.iter().position(|l| *l.client == *client && l.key == *key)
    }

    fn is_own(l: &Lease, req: &Requester, trigger: Trigger) -> bool {
        match l.kind {
            Kind::Delegation => *l.client == *req.client,
            // Directory leases: the opener's parent key is compared by value, across clients.
            _ if trigger == Trigger::DirChange => req.key == Some(&l.key),
            _ => *l.client == *req.client && req.key == Some(&l.key),
        }
    }

    /// The bits a holder keeps under a trigger that is not an open, and whether the requester must
    /// wait for its ack.
    fn target(trigger: Trigger, l: &Lease) -> (u8, bool) {
        let had_w = l.state & W != 0;
        match trigger {
            Trigger::DeleteRename => (!H & RWH, true),
            Trigger::Open | Trigger::SharingViolation | Trigger::Overwrite => unreachable!("opens use open_break"),
            Trigger::Write | Trigger::ByteRangeLock => (0, had_w),
            Trigger::DirChange => (0, false),
        }
    }

    /// An open's break of one holder, as Samba's `delay_for_oplock` decides it: the open must not
    /// share `delay` (W, or H on a sharing violation); an overwrite also drops H, and whether it
    /// breaks is decided on that; oplocks break only to Level II or none. Returns the state to break
    /// to, whether the open breaks anything, and the delay mask. An overwrite takes R too: Samba
    /// leaves that to the truncate that follows (`vfs_set_filelen`), which unilock folds in here.
    fn open_break(trigger: Trigger, l: &Lease) -> (u8, bool, u8) {
        let delay = if trigger == Trigger::SharingViolation { H } else { W };
        if trigger == Trigger::Overwrite {
            let removes = l.state & (W | H) != 0;
            return (0, removes, delay);
        }
        let mut to = l.state & !delay;
        let removes = l.state & !to != 0;
        if l.kind == Kind::Oplock {
            to &= !(H | W);
        }
        (to, removes, delay)
    }

    /// Applies `trigger` by `req`: starts every break it needs and returns the notes to send and the
    /// keys of the breaks the requester must wait for (empty: it may proceed now).
    pub fn trigger(&mut self, req: &Requester, trigger: Trigger, now: u64) -> (Vec<Note>, Vec<LeaseRef>) {
        let mut notes = Vec::new();
        let mut wait = Vec::new();
        for i in 0..self.leases.len() {
            let l = &self.leases[i];
            // Own lease: never broken, except a Level II oplock by its own write or lock.
            let own_oplock_rule =
                l.kind == Kind::Oplock && matches!(trigger, Trigger::Write | Trigger::ByteRangeLock) && l.state == R;
            if Self::is_own(l, req, trigger) && !own_oplock_rule {
                continue;
            }
            if trigger == Trigger::DirChange && !l.dir {
                continue;
            }
            // A delegation (or setlease) conflicts with another client's writing whatever it holds:
            // an open for writing or a write recalls it, and waits for its return.
            if l.kind == Kind::Delegation
                && req.write
                && matches!(trigger, Trigger::Open | Trigger::Overwrite | Trigger::Write)
            {
                let l = &mut self.leases[i];
                if let Some(n) = start_break(l, 0, now) {
                    notes.push(n);
                }
                if l.breaking {
                    wait.push((l.client.clone(), l.key));
                }
                continue;
            }
            let is_open = matches!(trigger, Trigger::Open | Trigger::SharingViolation | Trigger::Overwrite);
            let was_breaking = l.breaking;
            let (mut keep, must_wait) = if is_open {
                let (to, removes, delay) = Self::open_break(trigger, l);
                if !removes {
                    // Nothing the open contends with; it still waits for a break in progress.
                    if was_breaking {
                        wait.push((l.client.clone(), l.key));
                    } else if trigger == Trigger::Overwrite && l.state != 0 {
                        // R alone: the truncate breaks it to none at once, with nothing to wait for.
                        let l = &mut self.leases[i];
                        if let Some(n) = start_break(l, 0, now) {
                            notes.push(n);
                        }
                    }
                    continue;
                }
                (to, l.state & delay != 0 || (was_breaking && req.retry))
            } else {
                Self::target(trigger, l)
            };
            // A delegation is recalled, never downgraded: any loss means none.
            if l.kind == Kind::Delegation && l.state & keep != l.state {
                keep = 0;
            }
            let l = &mut self.leases[i];
            if let Some(n) = start_break(l, keep, now) {
                notes.push(n);
            }
            if l.breaking && must_wait {
                wait.push((l.client.clone(), l.key));
            }
        }
        self.prune();
        (notes, wait)
    }

    /// Drops leases that hold nothing and have no opens (or are delegations).
    fn prune(&mut self) {
        self.leases.retain(|l| l.state != 0 || (l.opens > 0 && l.kind != Kind::Delegation));
    }

    /// True while the lease (client, key) is being broken.
    pub fn is_breaking(&self, client: &[u8], key: &Key) -> bool {
        self.find(client, key).map(|i| self.leases[i].breaking).unwrap_or(false)
    }

    /// Decides the lease an open gets (SPEC.md §4 "Requests"). Does not change anything; `attach`
    /// records the open and the grant.
    pub fn grant(&self, r: &Request) -> Grant {
        let mut want = r.requested & RWH;
        if r.dir {
            want &= !W;
        }
        // Stat opens never get an oplock; directories never get one (Samba clears the request
        // before `open_directory`).
        if r.kind == Kind::Oplock && (r.stat || r.dir) {
            return Grant { state: 0, epoch: 0, breaking: false, ..Grant::NONE };
        }
        // A same-key open joins the lease and reports its current state, whatever it asks for
        // (MS-SMB2 3.3.5.9.8; Samba `grant_fsp_lease`): only a strict superset granted whole upgrades.
        if let Some(i) = self.find(r.client, &r.key) {
            if r.kind == Kind::Lease || want & R != 0 {
                return self.join(r, i, normalise(want));
            }
        }
        if want & R == 0 {
            // A new lease asking for none is still recorded (at none) with the next epoch.
            if r.kind != Kind::Lease {
                return Grant { epoch: r.epoch, ..Grant::NONE };
            }
            let epoch = if r.version >= 2 { r.epoch.wrapping_add(1) } else { r.epoch };
            return Grant { state: 0, epoch, breaking: false, version: r.version, parent: r.parent };
        }
        let state = self.grantable(r, want, None);
        let epoch =
            if (state != 0 || r.kind == Kind::Lease) && r.version >= 2 { r.epoch.wrapping_add(1) } else { r.epoch };
        Grant { state, epoch, breaking: false, version: r.version, parent: r.parent }
    }

    /// A request joining the existing lease `i`: its current state, or an upgrade to `want`.
    fn join(&self, r: &Request, i: usize, want: u8) -> Grant {
        let l = &self.leases[i];
        let g = Grant { state: l.state, epoch: l.epoch, breaking: l.breaking, version: l.version, parent: l.parent };
        if !l.breaking && want & l.state == l.state && want != l.state && self.grantable(r, want, Some(i)) == want {
            let epoch = if l.version >= 2 { l.epoch.wrapping_add(1) } else { l.epoch };
            return Grant { state: want, epoch, ..g };
        }
        g
    }

    /// The largest part of `want` that can coexist with the other holders and opens.
    fn grantable(&self, r: &Request, want: u8, own: Option<usize>) -> u8 {
        let mut s = want;
        let own_key = own.map(|i| self.leases[i].key);
        let others = || self.leases.iter().enumerate().filter(move |(i, _)| Some(*i) != own);
        let other_opens = self.opens.iter().filter(|o| {
            let this_open = *o.client == *r.client && o.open_id == r.open_id;
            let own_lease = o.lease.is_some() && o.lease == own_key && *o.client == *r.client;
            !o.stat && !this_open && !own_lease
        });
        let other_open_count = other_opens.clone().count();
        if r.brl_below_eof && !r.overwrite {
            s &= !(R | H);
        }
        match r.kind {
            Kind::Lease => {
                // W only while no open of another key exists: stat opens do not count, but a lease
                // of another key does even if only stat opens hold it (smbtorture smb2.lease.statopen
                // vs statopen3).
                let other_lease = others().any(|(_, l)| l.kind == Kind::Lease && l.state != 0 && l.opens > 0);
                if other_open_count > 0 || other_lease || others().any(|(_, l)| l.state & W != 0) {
                    s &= !W;
                }
                if others().any(|(_, l)| l.kind == Kind::Oplock) {
                    s &= R;
                }
            }
            Kind::Oplock => {
                if others().any(|(_, l)| l.state & H != 0 && l.kind == Kind::Lease) {
                    return 0;
                }
                if other_open_count > 0 || others().any(|(_, l)| l.state & R != 0) {
                    s &= R;
                }
            }
            Kind::Delegation => {
                // Only ever a try: refused whenever it would need a break or could not be whole.
                let other_client_write = self.opens.iter().any(|o| *o.client != *r.client && o.write && !o.stat);
                let other_w = others().any(|(_, l)| *l.client != *r.client && l.state & W != 0);
                let other_client_open = self.opens.iter().any(|o| *o.client != *r.client && !o.stat);
                if other_client_write || other_w || (want & W != 0 && other_client_open) {
                    return 0;
                }
                if want & W != 0 && others().any(|(_, l)| *l.client != *r.client) {
                    return 0;
                }
                if s != want {
                    return 0;
                }
            }
        }
        normalise(s)
    }

    /// Records an open and the grant it got (a new lease, a join, or an upgrade).
    pub fn attach(&mut self, r: &Request, g: &Grant) {
        // An SMB lease exists as an object even when granted none (Samba `grant_new_fsp_lease`), so
        // its own key's next open does not count it as a foreign open.
        let keep_none = r.kind == Kind::Lease;
        let lease = if g.state != 0 || keep_none || self.find(r.client, &r.key).is_some() {
            match self.find(r.client, &r.key) {
                Some(i) => {
                    let l = &mut self.leases[i];
                    if !g.breaking && g.state != l.state {
                        l.state = g.state;
                        l.epoch = g.epoch;
                    }
                    l.opens += 1;
                    l.proc = r.proc;
                    Some(r.key)
                }
                None => {
                    self.leases.push(Lease {
                        client: r.client.into(),
                        key: r.key,
                        kind: r.kind,
                        version: r.version,
                        parent: r.parent,
                        dir: r.dir,
                        state: g.state,
                        epoch: g.epoch,
                        breaking: false,
                        break_to: 0,
                        break_required: 0,
                        deadline: 0,
                        timeout_ms: r.timeout_ms,
                        opens: 1,
                        proc: r.proc,
                    });
                    Some(r.key)
                }
            }
        } else {
            None
        };
        self.opens.push(Open {
            client: r.client.into(),
            open_id: r.open_id,
            lease,
            stat: r.stat,
            write: r.write,
            proc: r.proc,
        });
    }

    /// Closes an open; its lease goes with its last open. Returns whether the open existed.
    pub fn close(&mut self, client: &[u8], open_id: u64) -> bool {
        let Some(i) = self.opens.iter().position(|o| *o.client == *client && o.open_id == open_id) else {
            return false;
        };
        let o = self.opens.remove(i);
        if let Some(key) = o.lease {
            if let Some(j) = self.find(client, &key) {
                let l = &mut self.leases[j];
                l.opens = l.opens.saturating_sub(1);
                if l.opens == 0 && l.kind != Kind::Delegation {
                    self.leases.remove(j);
                }
            }
        }
        true
    }

    /// Forgets every open and lease held by a process that is gone; returns how many leases went.
    pub fn drop_proc(&mut self, proc: u64) -> usize {
        let gone: Vec<(Box<[u8]>, u64)> =
            self.opens.iter().filter(|o| o.proc == proc).map(|o| (o.client.clone(), o.open_id)).collect();
        for (c, id) in gone {
            self.close(&c, id);
        }
        let before = self.leases.len();
        self.leases.retain(|l| !(l.proc == proc && (l.opens == 0 || l.kind == Kind::Delegation)));
        before - self.leases.len()
    }

    /// Forgets every open and lease of a client (the client is gone); returns how many leases went.
    pub fn drop_client(&mut self, client: &[u8]) -> usize {
        self.opens.retain(|o| *o.client != *client);
        let before = self.leases.len();
        self.leases.retain(|l| *l.client != *client);
        before - self.leases.len()
    }

    /// Removes a lease outright (NFSv4 DELEGRETURN, `F_SETLEASE` to none); false if unknown.
    pub fn release(&mut self, client: &[u8], key: &Key) -> bool {
        match self.find(client, key) {
            Some(i) => {
                self.leases.remove(i);
                for o in &mut self.opens {
                    if *o.client == *client && o.lease == Some(*key) {
                        o.lease = None;
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Acknowledges a break (SPEC.md §4 "Acknowledge"). A lease acknowledged to none is removed; one
    /// still above the state its sequence requires is broken again one step, with the same epoch.
    pub fn ack(&mut self, client: &[u8], key: &Key, state: u8, now: u64) -> Result<Vec<Note>, AckError> {
        let i = self.find(client, key).ok_or(AckError::NotFound)?;
        let l = &mut self.leases[i];
        if !l.breaking {
            return Err(AckError::NoBreak);
        }
        if state & !l.break_to != 0 {
            return Err(AckError::BadAck);
        }
        l.state = state;
        l.breaking = false;
        let mut notes = Vec::new();
        if state & !l.break_required != 0 {
            let drop = state & !l.break_required;
            let next = if drop & W != 0 {
                state & !W
            } else if drop & H != 0 {
                state & !H
            } else {
                0
            };
            let required = l.break_required;
            if let Some(n) = step(l, next, now) {
                notes.push(n);
            }
            l.break_required = required & l.break_to;
        }
        self.prune();
        Ok(notes)
    }

    /// Breaks whose time is up go to none (not to the announced state); the holders are told.
    pub fn expire(&mut self, now: u64) -> Vec<Note> {
        let mut notes = Vec::new();
        for l in &mut self.leases {
            if l.breaking && l.deadline <= now {
                notes.push(Note::Revoked {
                    client: l.client.clone(),
                    key: l.key,
                    kind: l.kind,
                    from: l.state,
                    epoch: l.epoch,
                });
                l.state = 0;
                l.breaking = false;
            }
        }
        self.prune();
        notes
    }

    /// The earliest break deadline, if a break is in progress.
    pub fn next_deadline(&self) -> Option<u64> {
        self.leases.iter().filter(|l| l.breaking).map(|l| l.deadline).min()
    }
}

/// Starts a break of `l` down to `l.state & keep`, or lowers the required end state of one in
/// progress (which sends nothing new). R→none takes effect at once and needs no ack.
fn start_break(l: &mut Lease, keep: u8, now: u64) -> Option<Note> {
    if l.breaking {
        l.break_required &= keep;
        return None;
    }
    let to = normalise(l.state & keep);
    if to == l.state {
        return None;
    }
    l.epoch = l.epoch.wrapping_add(1);
    l.break_required = to;
    step(l, to, now)
}

/// Announces one step of a break sequence (epoch unchanged).
fn step(l: &mut Lease, to: u8, now: u64) -> Option<Note> {
    let from = l.state;
    if from == to {
        return None;
    }
    // R to none takes effect at once, except for a delegation: its holder must return it
    // (DELEGRETURN) before the conflicting operation goes on.
    let ack = from != R || l.kind == Kind::Delegation;
    if ack {
        l.breaking = true;
        l.break_to = to;
        l.deadline = now.saturating_add(l.timeout_ms); // UINT64_MAX: the break never times out
    } else {
        l.state = to;
    }
    Some(Note::Break { client: l.client.clone(), key: l.key, kind: l.kind, from, to, epoch: l.epoch, ack })
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
