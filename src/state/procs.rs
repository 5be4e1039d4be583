//! Shared mode's process binding: which processes have state on a file, rebinding a durable open to
//! a new process, and releasing what a dead process held.

use super::FileState;
use crate::core::{self, OwnerIdx};
use crate::requests::Ctx;

impl FileState {
    /// Every process with something on this file (shared mode's proc index).
    pub fn procs(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.owners.live_entries().map(|(_, e)| e.proc).collect();
        v.extend(self.meta.iter().map(|m| m.proc));
        v.extend(self.watchers.iter().map(|w| w.proc));
        v.extend(self.leases.opens.iter().map(|o| o.proc));
        v.extend(self.leases.leases.iter().map(|l| l.proc));
        v.extend(self.lease_waiters.iter().map(|w| w.proc));
        v.sort_unstable();
        v.dedup();
        v.retain(|&p| p != 0);
        v
    }

    /// The clients with state of process `proc` on this file.
    pub fn clients_of_proc(&self, proc: u64) -> Vec<Box<[u8]>> {
        let mut v: Vec<Box<[u8]>> =
            self.owners.live_entries().filter(|(_, e)| e.proc == proc).map(|(_, e)| e.client.clone()).collect();
        v.extend(self.leases.opens.iter().filter(|o| o.proc == proc).map(|o| o.client.clone()));
        v.sort();
        v.dedup();
        v
    }

    /// Binds the owners and opens of (client, open id) to process `me` (durable reconnect).
    pub fn rebind(&mut self, client: &[u8], open_id: u64, me: u64) -> usize {
        let mut n = self.owners.rebind(client, open_id, me);
        for o in &mut self.leases.opens {
            if *o.client == *client && o.open_id == open_id {
                o.proc = me;
                n += 1;
                if let Some(k) = o.lease {
                    for l in &mut self.leases.leases {
                        if *l.client == *client && l.key == k {
                            l.proc = me;
                        }
                    }
                }
            }
        }
        for (w, m) in self.waiters.iter().zip(self.meta.iter_mut()) {
            let e = self.owners.get(w.owner);
            if *e.client == *client && e.open_id == open_id {
                m.proc = me;
            }
        }
        n
    }

    /// Releases everything a process that is gone held on this file (shared mode): its locks, its
    /// waiting requests and watches, its opens and leases. Returns the number of locks released.
    pub fn drop_proc(&mut self, ctx: &Ctx, proc: u64) -> usize {
        let owners: Vec<OwnerIdx> =
            self.owners.live_entries().filter(|(_, e)| e.proc == proc).map(|(i, _)| i).collect();
        let mut n = 0;
        for owner in &owners {
            let c = core::lockset::release_owner(&self.locks, *owner);
            n += c.removed.len();
            self.commit(&c);
        }
        let mut i = 0;
        while i < self.waiters.len() {
            if self.meta[i].proc == proc {
                let id = self.waiters[i].id;
                self.take_waiter(i);
                ctx.graph.lock().remove(id);
            } else {
                i += 1;
            }
        }
        self.watchers.retain(|w| w.proc != proc);
        self.lease_waiters.retain(|w| w.proc != proc);
        if self.leases.drop_proc(proc) > 0 || self.leases.opens.iter().all(|o| o.proc != proc) {
            self.leases_dirty = self.persist;
        }
        self.settle_leases(ctx);
        self.settle(ctx);
        n
    }
}
