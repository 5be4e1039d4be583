//! A small binary encoding for a file's whole state, so shared mode can keep it in one database row
//! and every process can rebuild the same `FileState` (and run the same core on it).

pub struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Reading fails with `None` on truncated or malformed input (never panics).
pub struct R<'a> {
    pub b: &'a [u8],
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    pub fn u128(&mut self) -> Option<u128> {
        self.take(16).map(|b| u128::from_le_bytes(b.try_into().unwrap()))
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u64()?;
        if n > self.b.len() as u64 {
            return None;
        }
        self.take(n as usize)
    }
    pub fn key(&mut self) -> Option<[u8; 16]> {
        self.take(16).map(|b| b.try_into().unwrap())
    }
}
