//! What a file's operations changed, for the store's journal, and the per-client lock counts kept for
//! the limits.

use super::FileState;
use crate::core::{Lock, OwnerIdx};

impl FileState {
    pub(super) fn count_client(&mut self, o: OwnerIdx, d: i64) {
        let c = &self.owners.get(o).client;
        match self.client_deltas.iter_mut().find(|(k, _)| **k == **c) {
            Some((_, n)) => *n += d,
            None => self.client_deltas.push((c.clone(), d)),
        }
    }

    /// Takes the net lock-count changes per client since the last call.
    pub fn take_counts(&mut self) -> Vec<(Box<[u8]>, i64)> {
        std::mem::take(&mut self.client_deltas)
    }

    pub(super) fn row_of(&self, l: &Lock) -> crate::store::LockRow {
        let e = self.owners.get(l.owner);
        crate::store::LockRow {
            file: self.id.clone(),
            client: e.client.clone(),
            owner: e.owner.clone(),
            open_id: e.open_id,
            flavour: l.flavour as u8,
            kind: l.kind as u8,
            start: l.range.start,
            length: l.range.length_for(l.flavour),
        }
    }

    /// The file's lease set as the journal writes it.
    pub fn lease_rows(&self) -> Vec<crate::store::LeaseRow> {
        self.leases
            .leases
            .iter()
            .map(|l| crate::store::LeaseRow {
                file: self.id.clone(),
                client: l.client.clone(),
                key: l.key,
                kind: l.kind as u8,
                version: l.version,
                dir: l.dir,
                state: l.state,
                epoch: l.epoch,
                breaking: l.breaking,
                break_to: l.break_to,
            })
            .collect()
    }

    /// Every lock and lease as the store keeps them (cluster mode's grace record).
    pub fn rows(&self) -> (Vec<crate::store::LockRow>, Vec<crate::store::LeaseRow>) {
        (self.locks.iter().map(|(_, l)| self.row_of(l)).collect(), self.lease_rows())
    }

    /// Takes what changed since the last call, for the store.
    pub fn take_journal(&mut self) -> crate::store::Journal {
        let mut j = std::mem::take(&mut self.journal);
        if self.leases_dirty {
            self.leases_dirty = false;
            let rows = self.lease_rows();
            j.leases.push((self.id.clone(), rows));
        }
        j
    }
}
