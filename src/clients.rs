//! Registered clients (SPEC.md §6): per-adapter connection limits, disconnect with a TTL during
//! which the client's state is kept (durable-handle style), reconnection cancelling that release.
//! Pure bookkeeping: the manager acts on what these functions decide.

use std::collections::HashMap;

/// A registration refused: the adapter already has its most connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimit;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRec {
    pub adapter: String,
    pub address: String,
    pub ttl_ms: u64,
    pub connected: bool,
    /// Disconnected with a TTL: when its state is released.
    pub release_at: Option<u64>,
}

/// What a disconnect does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// TTL 0: release everything now.
    Now,
    /// Keep the state until this time unless the client registers again.
    At(u64),
}

#[derive(Debug, Default)]
pub struct Clients {
    map: HashMap<Box<[u8]>, ClientRec>,
    limits: HashMap<String, u64>,
}

impl Clients {
    /// Sets an adapter's connection limit (0 = unlimited).
    pub fn set_limit(&mut self, adapter: &str, max: u64) {
        if max == 0 {
            self.limits.remove(adapter);
        } else {
            self.limits.insert(adapter.to_string(), max);
        }
    }

    fn connected(&self, adapter: &str) -> u64 {
        self.map.values().filter(|c| c.connected && c.adapter == adapter).count() as u64
    }

    /// Registers (or re-registers) a client. Idempotent; a registration cancels a pending TTL
    /// release. `Err(ConnectionLimit)` if the adapter's connection limit is reached.
    pub fn register(&mut self, id: &[u8], adapter: &str, address: &str, ttl_ms: u64) -> Result<(), ConnectionLimit> {
        let already = self.map.get(id).map(|c| c.connected && c.adapter == adapter).unwrap_or(false);
        if !already {
            if let Some(&max) = self.limits.get(adapter) {
                if self.connected(adapter) >= max {
                    return Err(ConnectionLimit);
                }
            }
        }
        self.map.insert(
            id.into(),
            ClientRec { adapter: adapter.into(), address: address.into(), ttl_ms, connected: true, release_at: None },
        );
        Ok(())
    }

    /// A client went away; `None` if it is not registered.
    pub fn disconnect(&mut self, id: &[u8], now: u64) -> Option<Disconnect> {
        let c = self.map.get_mut(id)?;
        if c.ttl_ms == 0 {
            self.map.remove(id);
            return Some(Disconnect::Now);
        }
        c.connected = false;
        let at = now.saturating_add(c.ttl_ms);
        c.release_at = Some(at);
        Some(Disconnect::At(at))
    }

    /// Whether the TTL of a disconnected client has run out (and forgets it if so).
    pub fn expire(&mut self, id: &[u8], now: u64) -> bool {
        match self.map.get(id) {
            Some(c) if !c.connected && c.release_at.is_some_and(|t| t <= now) => {
                self.map.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Connected clients per adapter.
    pub fn connections(&self) -> Vec<(String, u64)> {
        let mut m: HashMap<&str, u64> = HashMap::new();
        for c in self.map.values() {
            *m.entry(&c.adapter).or_default() += c.connected as u64;
        }
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
        v.sort();
        v
    }

    pub fn list(&self) -> Vec<(Box<[u8]>, ClientRec)> {
        let mut v: Vec<_> = self.map.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_ttl_and_reconnect() {
        let mut c = Clients::default();
        c.set_limit("smb", 2);
        assert_eq!(c.register(b"a", "smb", "10.0.0.1", 0), Ok(()));
        assert_eq!(c.register(b"a", "smb", "10.0.0.1", 0), Ok(()), "idempotent");
        assert_eq!(c.register(b"b", "smb", "", 5000), Ok(()));
        assert_eq!(c.register(b"c", "smb", "", 0), Err(ConnectionLimit));
        assert_eq!(c.register(b"c", "nfs", "", 0), Ok(()), "limits are per adapter");
        assert_eq!(c.disconnect(b"a", 0), Some(Disconnect::Now));
        assert_eq!(c.disconnect(b"b", 100), Some(Disconnect::At(5100)));
        assert_eq!(c.register(b"c2", "smb", "", 0), Ok(()), "b no longer counts as connected");
        assert!(!c.expire(b"b", 5099));
        assert_eq!(c.register(b"d", "smb", "", 0), Ok(()));
        assert_eq!(c.register(b"b", "smb", "", 5000), Err(ConnectionLimit), "full again");
        c.set_limit("smb", 0);
        assert_eq!(c.register(b"b", "smb", "", 5000), Ok(()), "reconnect cancels the TTL");
        assert!(!c.expire(b"b", 10_000));
        assert_eq!(c.disconnect(b"zz", 0), None);
        assert_eq!(c.connections(), vec![("nfs".into(), 1), ("smb".into(), 3)]);
    }
}
