//! Cluster mode: one grace period across a whole-cluster restart (the rule of NFS-Ganesha's
//! `rados_cluster` recovery backend: a server's previous-epoch state is not released until every
//! server enforces grace).
//!
//! A participant that opens and finds no other participant alive but state left in etcd (file
//! states, participants' indexes) moves that state, in one transaction, into the cluster's grace
//! record `<cluster>/g` — the pre-restart locks and leases in the store's row form, the expected
//! clients and the deadline (wall-clock ms) — and clears the old state; it enters grace with it.
//! The transaction is guarded (the record as read, no registration created and no file state
//! changed since the read), so two hosts starting at once do it once. A participant that opens
//! while the record is there (another host joining during the cluster's grace) enters grace with
//! the same record for the time left. The first participant whose grace ends deletes the record
//! (guarded by its create revision: a later restart's record is never taken for it).

use super::client::{prefix_end, Cmp, Op};
use super::{serr, Etcd};
use crate::backend::ProcIdent;
use crate::error::{Error, Result};
use crate::store::{LeaseRow, LockRow, Recovered};
use crate::table::FileState;

/// Format byte of the record.
const FORMAT: u8 = 1;

/// The cluster's grace record.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Record {
    /// Wall-clock ms when the cluster's grace period ends.
    pub deadline: u64,
    pub locks: Vec<LockRow>,
    pub leases: Vec<LeaseRow>,
    /// The clients expected to reclaim.
    pub clients: Vec<Box<[u8]>>,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::W(Vec::new());
        w.u8(FORMAT);
        w.u64(self.deadline);
        w.u64(self.locks.len() as u64);
        for l in &self.locks {
            l.write(&mut w);
        }
        w.u64(self.leases.len() as u64);
        for l in &self.leases {
            l.write(&mut w);
        }
        w.u64(self.clients.len() as u64);
        for c in &self.clients {
            w.bytes(c);
        }
        w.0
    }

    /// `None` if the bytes are not a record.
    pub fn decode(b: &[u8]) -> Option<Record> {
        let mut r = crate::codec::R { b };
        if r.u8()? != FORMAT {
            return None;
        }
        let deadline = r.u64()?;
        let count = |r: &mut crate::codec::R| r.u64().filter(|n| *n <= b.len() as u64);
        let n = count(&mut r)?;
        let mut locks = Vec::new();
        for _ in 0..n {
            locks.push(LockRow::read(&mut r)?);
        }
        let n = count(&mut r)?;
        let mut leases = Vec::new();
        for _ in 0..n {
            leases.push(LeaseRow::read(&mut r)?);
        }
        let n = count(&mut r)?;
        let clients = (0..n).map(|_| r.bytes().map(Into::into)).collect::<Option<Vec<_>>>()?;
        r.b.is_empty().then_some(Record { deadline, locks, leases, clients })
    }

    /// Adds the locks and leases of a file state left by the previous run.
    fn add_state(&mut self, fs: &FileState) {
        let (locks, leases) = fs.rows();
        self.locks.extend(locks);
        self.leases.extend(leases);
    }

    /// The expected clients: every client with a lock or a lease (and those already expected).
    fn fill_clients(&mut self) {
        let mut c: Vec<Box<[u8]>> = std::mem::take(&mut self.clients);
        c.extend(self.locks.iter().map(|l| l.client.clone()));
        c.extend(self.leases.iter().map(|l| l.client.clone()));
        c.sort();
        c.dedup();
        self.clients = c;
    }

    /// What the manager enters grace with: the record, for the time left at `now`.
    fn recovered(&self, now: u64) -> Recovered {
        let mut rec = Recovered::default();
        for l in &self.locks {
            rec.locks.add_row(&l.file, &l.client, &l.owner, l.open_id, l.flavour, l.kind, l.start, l.length, 1);
        }
        rec.leases = self.leases.clone();
        rec.clients = self.clients.clone();
        rec.remaining_ms = Some(self.deadline.saturating_sub(now).max(1));
        rec
    }
}

/// How many times the guarded takeover is tried before the open fails.
const TRIES: usize = 8;

impl Etcd {
    /// At open, after registering: the cluster's grace to enforce, if any (see the module comment).
    pub(super) fn grace_at_open(&self, grace_ms: u64) -> Result<Option<Recovered>> {
        let inner = &self.inner;
        let g = inner.key(&["g"]);
        let (h, f, p) = (inner.key(&["h/"]), inner.key(&["f/"]), inner.key(&["p/"]));
        let (hend, fend, pend) = (prefix_end(&h), prefix_end(&f), prefix_end(&p));
        let my_boot = ProcIdent::me().boot;
        let my_ns = super::pid_ns();
        for _ in 0..TRIES {
            // One consistent read of the record, the registrations, the file states and the index.
            let reads = [Op::Range(&g, &[]), Op::Range(&h, &hend), Op::Range(&f, &fend), Op::Range(&p, &pend)];
            let r = inner.client.txn(&[], &reads, &[]).map_err(serr)?;
            let rev = r.revision;
            let mut ranges = r.ranges.into_iter();
            let (gkv, regs, files, index) = (
                ranges.next().unwrap_or_default().into_iter().next(),
                ranges.next().unwrap_or_default(),
                ranges.next().unwrap_or_default(),
                ranges.next().unwrap_or_default(),
            );
            let now = crate::backend::unix_ms();
            let prev = match &gkv {
                Some(kv) => Some(Record::decode(&kv.value).ok_or_else(|| {
                    log::error!("unilock: etcd: the cluster's grace record is malformed");
                    Error::Store("a malformed grace record in etcd".into())
                })?),
                None => None,
            };
            // Registrations still under their lease, less this participant and the processes of
            // this boot and pid namespace known to be gone (killed: their lease has not expired yet).
            let mut dead = Vec::new();
            let mut alive = 0;
            for kv in &regs {
                let Some(id) = super::proc_of(&kv.key[h.len()..]) else { continue };
                if id == self.me {
                    continue;
                }
                let ident = super::ident_of(&kv.value);
                let ns = String::from_utf8_lossy(&kv.value).split('\n').nth(4).unwrap_or("").to_string();
                if ident.boot == my_boot && !my_ns.is_empty() && ns == my_ns && !ident.alive() {
                    dead.push(id);
                } else {
                    alive += 1;
                }
            }
            if alive > 0 {
                // Joining a running cluster: enforce its grace, if it is in one.
                return Ok(match (gkv, prev) {
                    (Some(kv), Some(rec)) if rec.deadline > now => {
                        *self.grace_rev.lock() = Some(kv.create_revision);
                        log::info!(
                            "unilock: joining cluster grace: {} locks and {} leases, {} ms left",
                            rec.locks.len(),
                            rec.leases.len(),
                            rec.deadline - now
                        );
                        Some(rec.recovered(now))
                    }
                    _ => None,
                });
            }
            if files.is_empty() && index.is_empty() && gkv.is_none() {
                return Ok(None); // a new cluster, or one left cleanly
            }
            // A whole-cluster restart: every participant is gone. What they held (and what an
            // unfinished grace period left) becomes the cluster's grace record.
            let mut rec = prev.unwrap_or_default();
            for kv in &files {
                let Some(file) = super::unhex(&kv.key[f.len()..]) else { continue };
                match FileState::decode(&file, &kv.value, false) {
                    Some(fs) => rec.add_state(&fs),
                    None => log::error!("unilock: etcd: a malformed file state left by the previous run (dropped)"),
                }
            }
            rec.fill_clients();
            rec.deadline = now.saturating_add(grace_ms);
            let bytes = rec.encode();
            let nothing = rec.locks.is_empty() && rec.leases.is_empty();
            let mut cmps = vec![Cmp::CreatedBefore(&h, &hend, rev + 1), Cmp::ModifiedBefore(&f, &fend, rev + 1)];
            match &gkv {
                Some(kv) => cmps.push(Cmp::Modified(&g, kv.mod_revision)),
                None => cmps.push(Cmp::Created(&g, 0)),
            }
            let olds: Vec<Vec<u8>> =
                ["f/", "w/", "p/", "k/", "m/", "q/", "r/", "l/"].iter().map(|k| inner.key(&[k])).collect();
            let ends: Vec<Vec<u8>> = olds.iter().map(|k| prefix_end(k)).collect();
            let regkeys: Vec<Vec<u8>> = dead.iter().map(|id| inner.key(&["h/", &format!("{id:016x}")])).collect();
            let mut ops: Vec<Op> = olds.iter().zip(&ends).map(|(k, e)| Op::DeleteRange(k, e)).collect();
            ops.extend(regkeys.iter().map(|k| Op::Delete(k)));
            ops.push(if nothing { Op::Delete(&g) } else { Op::Put(&g, &bytes, 0) });
            let t = inner.client.txn(&cmps, &ops, &[]).map_err(serr)?;
            if !t.succeeded {
                continue; // someone registered or wrote meanwhile: look again
            }
            // Their registrations are gone; their leases (and any file lock under them) go too.
            for id in &dead {
                let _ = inner.client.revoke(*id as i64);
            }
            if nothing {
                log::info!("unilock: cluster restart: the previous run left no locks or leases; no grace");
                return Ok(None);
            }
            *self.grace_rev.lock() = Some(gkv.map_or(t.revision, |kv| kv.create_revision));
            log::info!(
                "unilock: cluster restart: {} locks and {} leases of {} clients kept for a cluster-wide grace period of {grace_ms} ms",
                rec.locks.len(),
                rec.leases.len(),
                rec.clients.len()
            );
            return Ok(Some(rec.recovered(now)));
        }
        Err(Error::Store("the cluster's state kept changing while taking the restart's grace".into()))
    }

    /// Grace is over on this participant: the cluster's record goes (once; a record of a later
    /// restart is never touched).
    pub(super) fn end_cluster_grace(&self) -> Result<()> {
        let Some(rev) = *self.grace_rev.lock() else { return Ok(()) };
        let g = self.inner.key(&["g"]);
        self.inner.client.txn(&[Cmp::Created(&g, rev)], &[Op::Delete(&g)], &[]).map_err(serr)?;
        *self.grace_rev.lock() = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_garbage_is_refused() {
        let rec = Record {
            deadline: 1234,
            locks: vec![LockRow {
                file: b"f".as_slice().into(),
                client: b"c".as_slice().into(),
                owner: b"o".as_slice().into(),
                open_id: 7,
                flavour: 1,
                kind: 2,
                start: 3,
                length: u64::MAX,
            }],
            leases: vec![LeaseRow {
                file: b"g".as_slice().into(),
                client: b"d".as_slice().into(),
                key: [9; 16],
                kind: 1,
                version: 2,
                dir: true,
                state: 7,
                epoch: 3,
                breaking: false,
                break_to: 0,
            }],
            clients: vec![b"c".as_slice().into()],
        };
        let b = rec.encode();
        assert_eq!(Record::decode(&b).unwrap(), rec);
        assert!(Record::decode(&b[..b.len() - 1]).is_none());
        assert!(Record::decode(&[]).is_none());
        assert!(Record::decode(&[FORMAT + 1]).is_none());
        let mut more = b.clone();
        more.push(0);
        assert!(Record::decode(&more).is_none(), "trailing bytes");
        let mut r = rec;
        r.clients.clear();
        r.fill_clients();
        assert_eq!(r.clients, vec![b"c".as_slice().into(), b"d".as_slice().into()]);
        let got = r.recovered(1000);
        assert_eq!((got.locks.len(), got.leases.len(), got.remaining_ms), (1, 1, Some(234)));
    }
}
