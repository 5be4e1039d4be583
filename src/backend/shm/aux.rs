//! The database work of one operation, kept in the mapping beside its intent so that whoever finds
//! the intent of a process that died can finish it: the journal (lock rows ±n, lease sets), the
//! events for other processes (their mailbox rows), and the file's wait-for edges.

use crate::codec::{R, W};
use crate::requests::{Event, OwnerKey};
use crate::store::{Journal, LeaseRow, LockRow};

/// Events kept encoded, with the process each is for.
pub type Mail = Vec<(u64, Vec<u8>)>;

#[derive(Default)]
pub struct Aux {
    pub journal: Journal,
    pub events: Vec<Event>,
    /// `Some`: replace the file's wait edges with these.
    pub edges: Option<Vec<(u64, OwnerKey, Vec<OwnerKey>)>>,
    pub file: Box<[u8]>,
}

impl Aux {
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty() && self.events.is_empty() && self.edges.is_none()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::with_capacity(256));
        w.u8(1);
        w.bytes(&self.file);
        w.u64(self.journal.locks.len() as u64);
        for (r, d) in &self.journal.locks {
            r.write(&mut w);
            w.u64(*d as u64);
        }
        w.u64(self.journal.leases.len() as u64);
        for (f, rows) in &self.journal.leases {
            w.bytes(f);
            w.u64(rows.len() as u64);
            for l in rows {
                l.write(&mut w);
            }
        }
        w.u64(self.events.len() as u64);
        for e in &self.events {
            w.bytes(&crate::backend::sqlite_shared::encode_event(e));
        }
        match &self.edges {
            None => w.u8(0),
            Some(edges) => {
                w.u8(1);
                w.u64(edges.len() as u64);
                for (id, who, blockers) in edges {
                    w.u64(*id);
                    w.bytes(who);
                    w.bytes(&crate::backend::sqlite_shared::encode_keys(blockers));
                }
            }
        }
        w.0
    }

    /// The events are kept encoded (the mailbox stores them so); `None` if malformed.
    pub fn decode(b: &[u8]) -> Option<(Aux, Mail)> {
        let mut r = R { b };
        if r.u8()? != 1 {
            return None;
        }
        let mut a = Aux { file: r.bytes()?.into(), ..Default::default() };
        for _ in 0..r.u64()? {
            let row = LockRow::read(&mut r)?;
            a.journal.locks.push((row, r.u64()? as i64));
        }
        for _ in 0..r.u64()? {
            let f: Box<[u8]> = r.bytes()?.into();
            let mut rows = Vec::new();
            for _ in 0..r.u64()? {
                rows.push(LeaseRow::read(&mut r)?);
            }
            a.journal.leases.push((f, rows));
        }
        let mut events = Vec::new();
        for _ in 0..r.u64()? {
            let b = r.bytes()?;
            // The target is the event's last field.
            let proc = u64::from_le_bytes(b.get(b.len().checked_sub(8)?..)?.try_into().ok()?);
            events.push((proc, b.to_vec()));
        }
        if r.u8()? == 1 {
            let mut edges = Vec::new();
            for _ in 0..r.u64()? {
                let id = r.u64()?;
                let who: OwnerKey = r.bytes()?.into();
                let blockers = crate::backend::sqlite_shared::decode_keys(r.bytes()?)?;
                edges.push((id, who, blockers));
            }
            a.edges = Some(edges);
        }
        Some((a, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aux_survives_its_encoding_and_refuses_truncation() {
        let row = LockRow {
            file: b"f"[..].into(),
            client: b"c"[..].into(),
            owner: b"o"[..].into(),
            open_id: 3,
            flavour: 1,
            kind: 2,
            start: 4,
            length: 5,
        };
        let a = Aux {
            journal: Journal { locks: vec![(row.clone(), -2)], leases: vec![(b"f"[..].into(), vec![])] },
            events: vec![],
            edges: Some(vec![(9, b"w"[..].into(), vec![b"b"[..].into()])]),
            file: b"f"[..].into(),
        };
        let b = a.encode();
        let (d, ev) = Aux::decode(&b).unwrap();
        assert_eq!(d.journal.locks, vec![(row, -2)]);
        assert_eq!(d.journal.leases.len(), 1);
        assert!(ev.is_empty());
        assert_eq!(d.edges.unwrap()[0].0, 9);
        for n in 0..b.len() {
            assert!(Aux::decode(&b[..n]).is_none(), "a truncation at {n} was accepted");
        }
    }
}
