//! Lock limits (per file, per client, in total; 0 = unlimited): the rule that a new lock is refused
//! once a limit is reached. Counts come in as arguments; keeping them is the facade's business.

/// Which limit refuses a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    File,
    Client,
    Total,
}

/// The configured limits (0 = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_file: u64,
    pub per_client: u64,
    pub total: u64,
}

/// A count as the table keeps it (signed deltas) compared as u64: a limit of 2^63 or more is larger
/// than any count (never `limit as i64`).
fn count(n: i64) -> u64 {
    n.max(0) as u64
}

impl Limits {
    /// Whether lock counts per client and in total must be kept at all.
    pub fn tracking(&self) -> bool {
        self.per_client > 0 || self.total > 0
    }

    /// Before a lock: may the table hold one more lock in total and for this client?
    pub fn check_new(&self, total: i64, client: impl FnOnce() -> i64) -> Result<(), Limit> {
        if self.total > 0 && count(total) >= self.total {
            return Err(Limit::Total);
        }
        if self.per_client > 0 && count(client()) >= self.per_client {
            return Err(Limit::Client);
        }
        Ok(())
    }

    /// Under the file's lock: may the file hold one more lock?
    pub fn check_file(&self, file_locks: usize) -> Result<(), Limit> {
        if self.per_file > 0 && file_locks as u64 >= self.per_file {
            return Err(Limit::File);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_at_the_limit_and_not_before() {
        let none = Limits::default();
        assert!(!none.tracking());
        assert_eq!(none.check_new(i64::MAX, || i64::MAX), Ok(()));
        assert_eq!(none.check_file(usize::MAX), Ok(()));
        let l = Limits { per_file: 2, per_client: 3, total: 4 };
        assert!(l.tracking());
        assert_eq!(l.check_file(1), Ok(()));
        assert_eq!(l.check_file(2), Err(Limit::File));
        assert_eq!(l.check_new(3, || 2), Ok(()));
        assert_eq!(l.check_new(3, || 3), Err(Limit::Client));
        assert_eq!(l.check_new(4, || 0), Err(Limit::Total));
        // Negative transient counts are zero; huge limits are never reached.
        assert_eq!(l.check_new(-5, || -1), Ok(()));
        let huge = Limits { per_file: u64::MAX, per_client: 1 << 63, total: u64::MAX };
        assert_eq!(huge.check_new(i64::MAX, || i64::MAX), Ok(()));
        assert_eq!(huge.check_file(usize::MAX - 1), Ok(()));
    }
}
