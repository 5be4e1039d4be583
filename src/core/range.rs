//! Byte ranges (SPEC.md §2): validation of `(offset, length)` per flavour and the overlap predicate.
//!
//! This is the only place where offsets and lengths are added. Ends are kept as `u128` so that a range
//! reaching 2^64 (POSIX to-EOF, or a Windows lock ending exactly at 2^64) needs no special case and no
//! arithmetic can overflow.

use super::{Denied, Flavour};

/// `UNILOCK_TO_EOF`: as a POSIX length, "to the end of the 64-bit space" (`l_len = 0`).
pub const TO_EOF: u64 = u64::MAX;

/// One past the last byte of the 64-bit offset space.
pub const SPACE_END: u128 = 1u128 << 64;

/// A half-open byte range `[start, end)`. `start == end` is a zero-length Windows lock at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Range {
    pub start: u64,
    pub end: u128,
}

impl Range {
    /// Builds a range from raw parts; callers outside the core use [`Range::from_request`].
    pub const fn new(start: u64, end: u128) -> Range {
        Range { start, end }
    }

    /// Validates `(offset, length)` for `flavour` (SPEC.md §2).
    ///
    /// POSIX: length 0 is invalid (use `TO_EOF`); `offset + length` may not pass 2^64 except by `TO_EOF`.
    /// Windows: length 0 is a real zero-length lock; `offset + length - 1` overflowing 2^64 is
    /// `InvalidRange` (MS-FSA STATUS_INVALID_LOCK_RANGE). `TO_EOF` is an ordinary length there.
    pub fn from_request(flavour: Flavour, offset: u64, length: u64) -> Result<Range, Denied> {
        let start = offset as u128;
        match flavour {
            Flavour::Posix => {
                if length == 0 {
                    return Err(Denied::InvalidRange);
                }
                if length == TO_EOF {
                    return Ok(Range { start: offset, end: SPACE_END });
                }
                let end = start + length as u128;
                if end > SPACE_END {
                    return Err(Denied::InvalidRange);
                }
                Ok(Range { start: offset, end })
            }
            Flavour::Windows => {
                let end = start + length as u128;
                // offset + length - 1 must fit in 64 bits, i.e. end <= 2^64 (zero length always fits).
                if end > SPACE_END {
                    return Err(Denied::InvalidRange);
                }
                Ok(Range { start: offset, end })
            }
        }
    }

    /// True for a zero-length (Windows) range.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start as u128
    }

    /// The length as callers give it back: `TO_EOF` for a POSIX range that reaches 2^64 from its start
    /// when asked for `Posix`, the literal byte count otherwise (saturating at `u64::MAX`).
    pub fn length_for(&self, flavour: Flavour) -> u64 {
        let len = self.end - self.start as u128;
        if flavour == Flavour::Posix && self.end == SPACE_END {
            return TO_EOF;
        }
        if len > u64::MAX as u128 {
            u64::MAX
        } else {
            len as u64
        }
    }

    /// The interval used to search indexes: a zero-length range at X is widened to `[X, X+1)`, so an
    /// index search returns a superset of the ranges that [`overlaps`] accepts; callers filter with it.
    #[inline]
    pub fn search_end(&self) -> u128 {
        if self.is_empty() {
            self.end + 1
        } else {
            self.end
        }
    }
}

/// SPEC.md §2: `[a,b)` and `[c,d)` overlap iff `a < d && c < b`. A zero-length range at X overlaps
/// `[c,d)` iff `c < X < d`: strictly inside, so a zero-length lock at the very start or end of
/// another lock does not touch it (what Windows does). Two zero-length ranges never overlap.
#[inline]
pub fn overlaps(x: &Range, y: &Range) -> bool {
    match (x.is_empty(), y.is_empty()) {
        (false, false) => (x.start as u128) < y.end && (y.start as u128) < x.end,
        (true, false) => y.start < x.start && (x.start as u128) < y.end,
        (false, true) => x.start < y.start && (y.start as u128) < x.end,
        (true, true) => false,
    }
}

/// POSIX merging: two ranges overlap or touch (`[a,b)` and `[b,c)`), so same-type locks of one owner
/// merge into one. Only used for non-empty ranges.
#[inline]
pub fn overlaps_or_touches(x: &Range, y: &Range) -> bool {
    (x.start as u128) <= y.end && (y.start as u128) <= x.end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u128) -> Range {
        Range::new(s, e)
    }

    #[test]
    fn posix_validation() {
        assert_eq!(Range::from_request(Flavour::Posix, 0, 0), Err(Denied::InvalidRange));
        assert_eq!(Range::from_request(Flavour::Posix, 5, TO_EOF), Ok(r(5, SPACE_END)));
        assert_eq!(Range::from_request(Flavour::Posix, u64::MAX, 1), Ok(r(u64::MAX, SPACE_END)));
        assert_eq!(Range::from_request(Flavour::Posix, u64::MAX, 2), Err(Denied::InvalidRange));
        assert_eq!(Range::from_request(Flavour::Posix, 10, 5), Ok(r(10, 15)));
    }

    #[test]
    fn windows_validation() {
        assert_eq!(Range::from_request(Flavour::Windows, 0, 0), Ok(r(0, 0)));
        assert_eq!(Range::from_request(Flavour::Windows, u64::MAX, 0), Ok(r(u64::MAX, u64::MAX as u128)));
        assert_eq!(Range::from_request(Flavour::Windows, u64::MAX, 1), Ok(r(u64::MAX, SPACE_END)));
        assert_eq!(Range::from_request(Flavour::Windows, u64::MAX, 2), Err(Denied::InvalidRange));
        assert_eq!(Range::from_request(Flavour::Windows, 1, u64::MAX), Ok(r(1, SPACE_END)));
        assert_eq!(Range::from_request(Flavour::Windows, 2, u64::MAX), Err(Denied::InvalidRange));
        // Offsets beyond 2^63 are legal.
        assert!(Range::from_request(Flavour::Windows, 1 << 63, 100).is_ok());
    }

    #[test]
    fn overlap_table() {
        // (x, y, expected) straight from SPEC.md §2.
        let cases = [
            (r(0, 10), r(10, 20), false),
            (r(0, 10), r(9, 20), true),
            (r(5, 5), r(0, 10), true),    // zero-length strictly inside
            (r(0, 0), r(0, 10), false),   // at the start: not inside
            (r(10, 10), r(0, 10), false), // at the end: not inside
            (r(5, 5), r(5, 5), false),    // two zero-length ranges
            (r(u64::MAX, SPACE_END), r(0, SPACE_END), true),
        ];
        for (x, y, want) in cases {
            assert_eq!(overlaps(&x, &y), want, "{x:?} {y:?}");
            assert_eq!(overlaps(&y, &x), want, "{y:?} {x:?}");
        }
    }

    #[test]
    fn touching() {
        assert!(overlaps_or_touches(&r(0, 10), &r(10, 20)));
        assert!(!overlaps_or_touches(&r(0, 10), &r(11, 20)));
    }

    #[test]
    fn lengths_round_trip() {
        let p = Range::from_request(Flavour::Posix, 7, TO_EOF).unwrap();
        assert_eq!(p.length_for(Flavour::Posix), TO_EOF);
        let w = Range::from_request(Flavour::Windows, 0, u64::MAX).unwrap();
        assert_eq!(w.length_for(Flavour::Windows), u64::MAX);
        assert_eq!(r(3, 3).length_for(Flavour::Windows), 0);
    }
}
