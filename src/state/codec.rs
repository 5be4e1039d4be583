//! The shared-mode wire format of a whole `FileState` (one row per file in the shared database).

use super::leases::LeaseWaiter;
use super::waits::{WaitMeta, Watch};
use super::FileState;
use crate::core::file::GrantedReq;
use crate::core::lease;
use crate::core::wait::Waiter;
use crate::core::{self, Flavour, LockType, OwnerIdx, Range};
use crate::owners::OwnerRef;

impl FileState {
    /// Encodes the whole state (shared mode).
    pub fn encode(&self) -> Vec<u8> {
        use crate::codec::W;
        let mut w = W(Vec::with_capacity(256));
        w.u8(2); // format version (2: leases carry their parent key, granted requests their type and
                 // range, flavour and lock type their wire encoding)
        let owners: Vec<(OwnerIdx, &crate::owners::OwnerEntry)> = self.owners.live_entries().collect();
        w.u64(owners.len() as u64);
        for (i, e) in &owners {
            w.u64(i.0 as u64);
            w.u8(e.flavour as u8);
            w.bytes(&e.client);
            w.bytes(&e.owner);
            w.u64(e.open_id);
            w.u64(e.proc);
        }
        w.u64(self.locks.len() as u64);
        for (_, l) in self.locks.iter() {
            w.u64(l.owner.0 as u64);
            w.u8(l.kind as u8);
            w.u64(l.range.start);
            w.u128(l.range.end);
        }
        w.u64(self.waiters.len() as u64);
        for (x, m) in self.waiters.iter().zip(&self.meta) {
            w.u64(x.id);
            w.u64(x.owner.0 as u64);
            w.u8(x.kind as u8);
            w.u64(x.range.start);
            w.u128(x.range.end);
            w.u64(m.since);
            w.u64(m.proc);
            w.u64(m.token);
            w.u64(m.user_data as u64);
            w.bytes(&m.key);
            w.u64(m.offset);
            w.u64(m.length);
        }
        w.u64(self.watchers.len() as u64);
        for x in &self.watchers {
            w.u64(x.id);
            w.u64(x.token);
            w.u64(x.user_data as u64);
            w.u64(x.proc);
        }
        w.u64(self.granted.len() as u64);
        for g in &self.granted {
            w.u64(g.owner.0 as u64);
            w.u64(g.token);
            w.u8(g.kind as u8);
            w.u64(g.range.start);
            w.u128(g.range.end);
        }
        w.u64(self.leases.leases.len() as u64);
        for l in &self.leases.leases {
            w.bytes(&l.client);
            w.0.extend_from_slice(&l.key);
            w.u8(l.kind as u8);
            w.u8(l.version);
            match l.parent {
                Some(k) => {
                    w.u8(1);
                    w.0.extend_from_slice(&k);
                }
                None => w.u8(0),
            }
            w.u8(l.dir as u8);
            w.u8(l.state);
            w.u64(l.epoch as u64);
            w.u8(l.breaking as u8);
            w.u8(l.break_to);
            w.u8(l.break_required);
            w.u64(l.deadline);
            w.u64(l.timeout_ms);
            w.u64(l.opens as u64);
            w.u64(l.proc);
        }
        w.u64(self.leases.opens.len() as u64);
        for o in &self.leases.opens {
            w.bytes(&o.client);
            w.u64(o.open_id);
            match o.lease {
                Some(k) => {
                    w.u8(1);
                    w.0.extend_from_slice(&k);
                }
                None => w.u8(0),
            }
            w.u8(o.stat as u8);
            w.u8(o.write as u8);
            w.u64(o.proc);
        }
        w.u64(self.lease_waiters.len() as u64);
        for x in &self.lease_waiters {
            w.u64(x.id);
            w.u64(x.waits.len() as u64);
            for (c, k) in &x.waits {
                w.bytes(c);
                w.0.extend_from_slice(k);
            }
            w.u64(x.token);
            w.u64(x.user_data as u64);
            w.u64(x.proc);
        }
        w.0
    }

    /// Rebuilds a state written by `encode`; `None` if the bytes are malformed.
    pub fn decode(file: &[u8], bytes: &[u8], persist: bool) -> Option<FileState> {
        let mut fs = FileState::blank(file, persist);
        fs.decode_into(file, bytes, persist)?;
        Some(fs)
    }

    /// As `decode`, into this state (its memory reused; what it held is gone). `None` if the bytes
    /// are malformed, and then the state is not to be used.
    pub fn decode_into(&mut self, file: &[u8], bytes: &[u8], persist: bool) -> Option<()> {
        use crate::codec::R;
        self.reset(file, persist);
        let fs = self;
        let mut r = R { b: bytes };
        let format = r.u8()?;
        if format != 1 && format != 2 {
            return None;
        }
        // Format 1 wrote flavour and lock type as 0/1; format 2 uses their one wire encoding.
        let v1 = format == 1;
        let flav = |v: u8| {
            if v1 {
                Some(if v == 1 { Flavour::Windows } else { Flavour::Posix })
            } else {
                Flavour::try_from(v).ok()
            }
        };
        let kind = |v: u8| {
            if v1 {
                Some(if v == 1 { LockType::Exclusive } else { LockType::Shared })
            } else {
                LockType::try_from(v).ok()
            }
        };
        // Written owner number -> interned index. `encode` writes owners in increasing number, so
        // this is sorted and searched by halves (sorted here if a writer did otherwise).
        let mut map: smallvec::SmallVec<[(u64, OwnerIdx); 4]> = smallvec::SmallVec::new();
        for _ in 0..r.u64()? {
            let old = r.u64()?;
            let f = flav(r.u8()?)?;
            let client = r.bytes()?;
            let owner = r.bytes()?;
            let open_id = r.u64()?;
            let proc = r.u64()?;
            let idx = fs.owners.intern(f, &OwnerRef { client, owner, open_id });
            fs.owners.claim(idx, proc);
            map.push((old, idx));
        }
        if !map.windows(2).all(|w| w[0].0 < w[1].0) {
            map.sort_unstable_by_key(|e| e.0);
            if map.windows(2).any(|w| w[0].0 == w[1].0) {
                return None; // one number written for two owners
            }
        }
        let map = |old: u64| map.binary_search_by_key(&old, |e| e.0).ok().map(|i| map[i].1);
        for _ in 0..r.u64()? {
            let owner = map(r.u64()?)?;
            let k = kind(r.u8()?)?;
            let range = Range::new(r.u64()?, r.u128()?);
            let f = fs.owners.get(owner).flavour;
            fs.owners.add_refs(owner, 1);
            fs.locks.insert(core::NewLock { owner, flavour: f, kind: k, range });
        }
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let owner = map(r.u64()?)?;
            let k = kind(r.u8()?)?;
            let range = Range::new(r.u64()?, r.u128()?);
            let since = r.u64()?;
            let proc = r.u64()?;
            let token = r.u64()?;
            let user_data = r.u64()? as usize;
            let key = r.bytes()?.into();
            let offset = r.u64()?;
            let length = r.u64()?;
            let f = fs.owners.get(owner).flavour;
            fs.owners.add_refs(owner, 1);
            fs.waiters.push(Waiter { id, owner, flavour: f, kind: k, range });
            fs.meta.push(WaitMeta { since, proc, token, user_data, key, offset, length });
        }
        for _ in 0..r.u64()? {
            fs.watchers.push(Watch { id: r.u64()?, token: r.u64()?, user_data: r.u64()? as usize, proc: r.u64()? });
        }
        for _ in 0..r.u64()? {
            let owner = map(r.u64()?)?;
            let token = r.u64()?;
            // Version 1 kept only (owner, token): such entries cannot be matched to a whole request
            // and are dropped (a re-submission is then decided as a new request).
            if !v1 {
                let k = kind(r.u8()?)?;
                let range = Range::new(r.u64()?, r.u128()?);
                fs.granted.push(GrantedReq { owner, token, kind: k, range });
            }
        }
        for _ in 0..r.u64()? {
            let client: Box<[u8]> = r.bytes()?.into();
            let key = r.key()?;
            let k = lease::Kind::try_from(r.u8()?).ok()?;
            fs.leases.leases.push(lease::Lease {
                client,
                key,
                kind: k,
                version: r.u8()?,
                parent: if format >= 2 && r.u8()? == 1 { Some(r.key()?) } else { None },
                dir: r.u8()? != 0,
                state: r.u8()?,
                epoch: r.u64()? as u16,
                breaking: r.u8()? != 0,
                break_to: r.u8()?,
                break_required: r.u8()?,
                deadline: r.u64()?,
                timeout_ms: r.u64()?,
                opens: r.u64()? as u32,
                proc: r.u64()?,
            });
        }
        for _ in 0..r.u64()? {
            let client: Box<[u8]> = r.bytes()?.into();
            let open_id = r.u64()?;
            let lease = if r.u8()? == 1 { Some(r.key()?) } else { None };
            fs.leases.opens.push(lease::Open {
                client,
                open_id,
                lease,
                stat: r.u8()? != 0,
                write: r.u8()? != 0,
                proc: r.u64()?,
            });
        }
        for _ in 0..r.u64()? {
            let id = r.u64()?;
            let mut waits = Vec::new();
            for _ in 0..r.u64()? {
                waits.push((r.bytes()?.into(), r.key()?));
            }
            fs.lease_waiters.push(LeaseWaiter {
                id,
                waits,
                token: r.u64()?,
                user_data: r.u64()? as usize,
                proc: r.u64()?,
            });
        }
        Some(())
    }
}
