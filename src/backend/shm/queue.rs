//! The write-behind queue of one partition: operations' aux blocks whose lock rows (and, where they
//! only changed the states of existing leases, lease sets) are not in the database yet (PROCESS and
//! BATCH durability; SYNC writes them in the operation). A block joins the
//! queue when its operation's intent is rolled forward, and leaves it once a flush has committed its
//! rows (the database's `shm_flushed` row of the partition says up to which intent sequence number,
//! in the same transaction, so a flush repeated after a crash writes nothing twice).
//!
//! Because the queue lives in the mapping, a process killed after its call returned loses nothing:
//! whoever flushes next (any process: a flush writes every partition's queue), or the restart that
//! finds every process dead, writes it. Only a power loss (the mapping is in tmpfs) loses what was
//! not flushed yet — at most the flush period (`batch_ms`), as the durability modes say.
//!
//! Every word lives in the partition page and changes under the partition's mutex, by single 8-byte
//! stores ordered so that a process killed between two of them leaves a queue that is still well
//! formed (at worst a block is leaked): the queue is empty exactly when its tail is 0; a block is
//! linked by storing the old tail's link (or the head), then the tail, and linking again the block
//! already at the tail does nothing (a roll-forward repeated after a crash); a block leaves by
//! storing the head (or the tail, for the last one), then it is freed.

use super::alloc;
use super::layout::*;

/// In a block's sequence word: its lease sets are queued too (they only changed the states of
/// leases that stay: a break, an ack), not only its lock rows.
const LEASES_QUEUED: u64 = 1 << 63;

/// The sequence number of the intent whose block this is (kept in the block's `R_HASH` word, unused
/// by aux blocks otherwise).
pub fn seq_of(m: &Map, b: u64) -> u64 {
    m.get(b + R_HASH) & !LEASES_QUEUED
}

/// Does block `b` carry queued lease sets (else its lease sets were written in its operation)?
pub fn leases_queued(m: &Map, b: u64) -> bool {
    m.get(b + R_HASH) & LEASES_QUEUED != 0
}

pub fn set_seq(m: &Map, b: u64, seq: u64, leases: bool) {
    m.set(b + R_HASH, seq | if leases { LEASES_QUEUED } else { 0 });
}

/// Appends block `b` (its `R_NEXT` is 0) to partition `p`'s queue, unless it is already its tail.
pub fn link(m: &Map, p: u64, b: u64) {
    let o = part_off(p);
    let tail = m.get(o + P_Q_TAIL);
    if tail == b {
        return;
    }
    m.set(b + R_NEXT, 0);
    if tail == 0 {
        m.set(o + P_Q_HEAD, b);
    } else {
        m.set(tail + R_NEXT, b);
    }
    m.set(o + P_Q_TAIL, b);
    m.set(o + P_Q_COUNT, m.get(o + P_Q_COUNT) + 1);
}

/// Is the queue of partition `p` non-empty? (A racy read is fine for deciding whether to look.)
pub fn pending(m: &Map, p: u64) -> bool {
    m.get(part_off(p) + P_Q_TAIL) != 0
}

/// Roughly how many blocks wait in partition `p` (for the bound that makes an operation flush).
pub fn count(m: &Map, p: u64) -> u64 {
    m.get(part_off(p) + P_Q_COUNT)
}

/// The queued blocks of partition `p`, head first: (sequence number, lease sets queued, block),
/// except `skip` (the block of an intent not finished: its operation never returned). `None` if a
/// link is corrupt.
pub fn blocks(m: &Map, p: u64, skip: u64) -> Option<Vec<(u64, bool, u64)>> {
    let o = part_off(p);
    let tail = m.get(o + P_Q_TAIL);
    let mut out = Vec::new();
    if tail == 0 {
        return Some(out);
    }
    let mut b = m.get(o + P_Q_HEAD);
    loop {
        if !alloc::in_heap(p, b, R_BODY) || out.len() as u64 > HEAP_PER_PART / 64 {
            return None;
        }
        if b != skip {
            out.push((seq_of(m, b), leases_queued(m, b), b));
        }
        if b == tail {
            return Some(out);
        }
        b = m.get(b + R_NEXT);
    }
}

/// Removes (and frees) the blocks at the head of partition `p`'s queue whose sequence number is at
/// most `upto` (their rows are in the database).
pub fn trim(m: &Map, p: u64, upto: u64) {
    let o = part_off(p);
    loop {
        let tail = m.get(o + P_Q_TAIL);
        if tail == 0 {
            return;
        }
        let head = m.get(o + P_Q_HEAD);
        if !alloc::in_heap(p, head, R_BODY) || seq_of(m, head) > upto {
            return;
        }
        if head == tail {
            m.set(o + P_Q_TAIL, 0);
        } else {
            m.set(o + P_Q_HEAD, m.get(head + R_NEXT));
        }
        m.set(o + P_Q_COUNT, m.get(o + P_Q_COUNT).saturating_sub(1));
        alloc::free(m, p, head);
    }
}
