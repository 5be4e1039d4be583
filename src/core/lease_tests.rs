//! Tests of the lease rules (`core::lease`).

use super::*;

const K1: Key = [1; 16];
const K2: Key = [2; 16];

fn req(client: &'static [u8], open_id: u64, key: Key, requested: u8) -> Request<'static> {
    Request {
        client,
        open_id,
        kind: Kind::Lease,
        key,
        requested,
        version: 2,
        epoch: 0,
        parent: None,
        dir: false,
        stat: false,
        write: false,
        overwrite: false,
        brl_below_eof: false,
        timeout_ms: 35_000,
        proc: 0,
    }
}

fn open(f: &mut FileLeases, r: &Request) -> Grant {
    let g = f.grant(r);
    f.attach(r, &g);
    g
}

#[test]
fn states_and_validity() {
    for s in 0..8u8 {
        let file_ok = matches!(s, 0 | 1 | 3 | 5 | 7);
        assert_eq!(valid_state(s, false), file_ok, "{s}");
        assert_eq!(valid_state(s, true), matches!(s, 0 | 1 | 3), "{s}");
    }
    let f = FileLeases::default();
    // A state without R is granted none.
    for s in [H, W, H | W] {
        assert_eq!(f.grant(&req(b"c", 1, K1, s)).state, 0);
    }
    // Directories drop W.
    let mut r = req(b"c", 1, K1, RWH);
    r.dir = true;
    assert_eq!(f.grant(&r).state, R | H);
}

#[test]
fn rwh_then_other_key_breaks_to_rh_and_waits() {
    let mut f = FileLeases::default();
    let g = open(&mut f, &req(b"c1", 1, K1, RWH));
    assert_eq!((g.state, g.epoch), (RWH, 1));
    let (notes, wait) =
        f.trigger(&Requester { client: b"c2", key: Some(&K2), retry: false, write: false }, Trigger::Open, 0);
    assert_eq!(
        notes,
        vec![Note::Break {
            client: b"c1"[..].into(),
            key: K1,
            kind: Kind::Lease,
            from: RWH,
            to: R | H,
            epoch: 2,
            ack: true
        }]
    );
    assert_eq!(wait.len(), 1);
    // Same-key open during the break succeeds and reports the current state.
    assert_eq!(
        f.grant(&req(b"c1", 3, K1, RWH)),
        Grant { state: RWH, epoch: 2, breaking: true, version: 2, parent: None }
    );
    assert_eq!(f.ack(b"c1", &K1, R | H, 10), Ok(vec![]));
    assert!(!f.is_breaking(b"c1", &K1));
    // Now key2 gets RH: W is never held by two keys.
    let g2 = open(&mut f, &req(b"c2", 2, K2, RWH));
    assert_eq!(g2.state, R | H);
}

#[test]
fn r_to_none_needs_no_ack() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, R));
    let (notes, wait) =
        f.trigger(&Requester { client: b"nfs", key: None, retry: false, write: false }, Trigger::Write, 0);
    assert!(matches!(&notes[0], Note::Break { from: R, to: 0, ack: false, .. }));
    assert!(wait.is_empty());
    assert_eq!(f.leases[0].state, 0, "the lease object stays with its open, at none");
    assert_eq!(f.ack(b"c1", &K1, 0, 0), Err(AckError::NoBreak));
}

#[test]
fn bad_acks() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    assert_eq!(f.ack(b"c1", &K1, R, 0), Err(AckError::NoBreak));
    f.trigger(&Requester { client: b"c2", key: Some(&K2), retry: false, write: false }, Trigger::Open, 0);
    assert_eq!(f.ack(b"c2", &K1, R, 0), Err(AckError::NotFound));
    assert_eq!(f.ack(b"c1", &K2, R, 0), Err(AckError::NotFound));
    assert_eq!(f.ack(b"c1", &K1, RWH, 0), Err(AckError::BadAck));
    assert_eq!(f.ack(b"c1", &K1, R, 0), Ok(vec![])); // any subset
    assert_eq!(f.ack(b"c1", &K1, R, 0), Err(AckError::NoBreak));
}

#[test]
fn break_while_breaking_steps_down_with_one_epoch() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    let other = Requester { client: b"c2", key: Some(&K2), retry: false, write: false };
    let (n1, _) = f.trigger(&other, Trigger::Open, 0);
    assert_eq!(n1.len(), 1);
    let (n2, wait) = f.trigger(&other, Trigger::Overwrite, 0);
    assert!(n2.is_empty(), "nothing new during a break");
    assert_eq!(wait.len(), 1);
    let n3 = f.ack(b"c1", &K1, R | H, 0).unwrap();
    assert_eq!(
        n3,
        vec![Note::Break {
            client: b"c1"[..].into(),
            key: K1,
            kind: Kind::Lease,
            from: R | H,
            to: R,
            epoch: 2,
            ack: true
        }]
    );
    let n4 = f.ack(b"c1", &K1, R, 0).unwrap();
    assert!(matches!(&n4[0], Note::Break { from: R, to: 0, ack: false, epoch: 2, .. }));
    assert_eq!(f.leases[0].state, 0);
    assert!(f.close(b"c1", 1));
    assert!(f.leases.is_empty());
}

#[test]
fn timeout_revokes_to_none() {
    let mut f = FileLeases::default();
    let mut r = req(b"c1", 1, K1, RWH);
    r.timeout_ms = 100;
    open(&mut f, &r);
    f.trigger(&Requester { client: b"c2", key: None, retry: false, write: false }, Trigger::Open, 1000);
    assert_eq!(f.next_deadline(), Some(1100));
    assert!(f.expire(1099).is_empty());
    let n = f.expire(1100);
    assert!(matches!(&n[0], Note::Revoked { from: RWH, .. }));
    assert_eq!(f.leases[0].state, 0);
    assert_eq!(f.ack(b"c1", &K1, R | H, 1200), Err(AckError::NoBreak));
}

#[test]
fn same_key_upgrade_rules() {
    let mut f = FileLeases::default();
    assert_eq!(open(&mut f, &req(b"c1", 1, K1, R)).state, R);
    assert_eq!(open(&mut f, &req(b"c2", 2, K2, R)).state, R);
    // R held next to another key's R, RWH asked: W impossible, so it stays R (never partly).
    assert_eq!(open(&mut f, &req(b"c1", 3, K1, RWH)).state, R);
    // RH is a strict superset that can be granted whole: epoch +1.
    let g = open(&mut f, &req(b"c1", 4, K1, R | H));
    assert_eq!((g.state, g.epoch), (R | H, 2));
    // Asking for less never downgrades.
    assert_eq!(open(&mut f, &req(b"c1", 5, K1, R)).state, R | H);
}

#[test]
fn oplock_mapping() {
    let mut f = FileLeases::default();
    let mut b = req(b"c1", 1, [9; 16], RWH);
    b.kind = Kind::Oplock;
    assert_eq!(open(&mut f, &b).state, RWH); // batch
                                             // An open breaks batch to Level II (R).
    let (n, _) = f.trigger(&Requester { client: b"c2", key: None, retry: false, write: false }, Trigger::Open, 0);
    assert!(matches!(&n[0], Note::Break { from: RWH, to: R, .. }));
    f.ack(b"c1", &[9; 16], R, 0).unwrap();
    // A lease next to an oplock gets at most R.
    assert_eq!(open(&mut f, &req(b"c2", 2, K2, RWH)).state, R);
    // Level II holder's own write breaks its own oplock to none.
    let (n, _) =
        f.trigger(&Requester { client: b"c1", key: Some(&[9; 16]), retry: false, write: false }, Trigger::Write, 0);
    assert_eq!(n.len(), 2);
    // An oplock next to an H lease gets nothing.
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, R | H));
    let mut o = req(b"c2", 2, [8; 16], RWH);
    o.kind = Kind::Oplock;
    assert_eq!(f.grant(&o).state, 0);
}

#[test]
fn delegations_are_only_a_try() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"smb", 1, K1, RWH));
    let mut d = req(b"nfs", 2, [3; 16], R | W);
    d.kind = Kind::Delegation;
    assert_eq!(f.grant(&d).state, 0, "write delegation next to another client's lease");
    d.requested = R;
    assert_eq!(f.grant(&d).state, 0, "read delegation next to a W lease");
    let mut f = FileLeases::default();
    d.requested = R | W;
    assert_eq!(open(&mut f, &d).state, R | W);
    // The delegation's own client does not recall it; another client's write does.
    let (n, _) = f.trigger(&Requester { client: b"nfs", key: None, retry: false, write: false }, Trigger::Write, 0);
    assert!(n.is_empty());
    let (n, wait) = f.trigger(&Requester { client: b"smb", key: None, retry: false, write: false }, Trigger::Write, 0);
    assert!(matches!(&n[0], Note::Break { to: 0, ack: true, .. }));
    assert_eq!(wait.len(), 1);
}

#[test]
fn byte_range_lock_rules() {
    let f = FileLeases::default();
    let mut r = req(b"c1", 1, K1, RWH);
    r.brl_below_eof = true;
    assert_eq!(f.grant(&r).state, 0);
    r.overwrite = true;
    assert_eq!(f.grant(&r).state, RWH);
}

#[test]
fn directory_lease_broken_by_child_change_with_other_parent_key() {
    let mut f = FileLeases::default();
    let mut d = req(b"c1", 1, K1, R | H);
    d.dir = true;
    assert_eq!(open(&mut f, &d).state, R | H);
    let (n, _) =
        f.trigger(&Requester { client: b"c1", key: Some(&K1), retry: false, write: false }, Trigger::DirChange, 0);
    assert!(n.is_empty(), "same parent key: no break");
    let (n, _) =
        f.trigger(&Requester { client: b"c9", key: Some(&K1), retry: false, write: false }, Trigger::DirChange, 0);
    assert!(n.is_empty(), "parent keys are compared by value, across clients");
    let (n, wait) =
        f.trigger(&Requester { client: b"c2", key: Some(&K2), retry: false, write: false }, Trigger::DirChange, 0);
    assert!(matches!(&n[0], Note::Break { from: 3, to: 0, ack: true, .. }));
    assert!(wait.is_empty(), "directory change does not wait");
}

#[test]
fn last_close_releases_the_lease() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    open(&mut f, &req(b"c1", 2, K1, RWH));
    assert!(f.close(b"c1", 1));
    assert_eq!(f.leases.len(), 1);
    assert!(f.close(b"c1", 2));
    assert!(f.leases.is_empty());
    assert!(!f.close(b"c1", 2));
}

#[test]
fn w_is_never_held_by_two_keys() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    // Without the break (e.g. a stat open by key2), key2 still cannot get W.
    let g = f.grant(&req(b"c2", 2, K2, RWH));
    assert_eq!(g.state & W, 0);
}
fn who(client: &'static [u8], key: Option<&'static Key>) -> Requester<'static> {
    Requester { client, key, retry: false, write: false }
}

fn states(s: &str) -> u8 {
    s.chars()
        .map(|c| match c {
            'R' => R,
            'H' => H,
            'W' => W,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// smbtorture `smb2.lease.upgrade2`: one key, uncontended. A same-key request changes the lease
/// only to a valid strict superset; anything else (none included) reports the lease as it is.
#[test]
fn upgrade2_matrix() {
    let kinds = ["", "R", "RH", "RW", "RWH"];
    for initial in kinds {
        for upgrade in kinds {
            let mut f = FileLeases::default();
            let g1 = open(&mut f, &req(b"c1", 1, K1, states(initial)));
            assert_eq!(g1.state, states(initial), "{initial}");
            let g2 = open(&mut f, &req(b"c1", 2, K1, states(upgrade)));
            let i = states(initial);
            let u = states(upgrade);
            let expected = if u & i == i && u != i { u } else { i };
            assert_eq!(g2.state, expected, "{initial} then {upgrade}");
            assert_eq!(f.leases.len(), 1, "one lease object for the key ({initial} then {upgrade})");
            assert_eq!(f.leases[0].state, expected, "the lease keeps its state ({initial} then {upgrade})");
        }
    }
}

/// smbtorture `smb2.lease.upgrade3`: two keys; upgrading key1 never breaks key2.
#[test]
fn upgrade3_matrix() {
    let rows = [
        ("R", "R", "", "R"),
        ("R", "R", "R", "R"),
        ("R", "R", "RW", "R"),
        ("R", "R", "RH", "RH"),
        ("R", "R", "RHW", "R"),
        ("R", "RH", "", "R"),
        ("R", "RH", "R", "R"),
        ("R", "RH", "RW", "R"),
        ("R", "RH", "RH", "RH"),
        ("R", "RH", "RHW", "R"),
        ("RH", "R", "", "RH"),
        ("RH", "R", "R", "RH"),
        ("RH", "R", "RW", "RH"),
        ("RH", "R", "RH", "RH"),
        ("RH", "R", "RHW", "RH"),
        ("RH", "RH", "", "RH"),
        ("RH", "RH", "R", "RH"),
        ("RH", "RH", "RW", "RH"),
        ("RH", "RH", "RH", "RH"),
        ("RH", "RH", "RHW", "RH"),
    ];
    for (held1, held2, up, to) in rows {
        let mut f = FileLeases::default();
        assert_eq!(open(&mut f, &req(b"c1", 1, K1, states(held1))).state, states(held1));
        assert_eq!(open(&mut f, &req(b"c1", 2, K2, states(held2))).state, states(held2));
        // The open's own trigger breaks nothing (upgrades never break the other key).
        let (n, _) = f.trigger(&who(b"c1", Some(&K1)), Trigger::Open, 0);
        assert!(n.is_empty(), "{held1}/{held2} -> {up}");
        assert_eq!(open(&mut f, &req(b"c1", 3, K1, states(up))).state, states(to), "{held1}/{held2} -> {up}");
        assert_eq!(f.leases[f.find(b"c1", &K2).unwrap()].state, states(held2));
    }
}

/// Defect 1: a same-key request without R must not drop the lease (and later breaks must come).
#[test]
fn same_key_none_request_keeps_the_lease_and_its_breaks() {
    let mut f = FileLeases::default();
    let g = open(&mut f, &req(b"c1", 1, K1, RWH));
    let g2 = open(&mut f, &req(b"c1", 2, K1, 0));
    assert_eq!((g2.state, g2.epoch), (RWH, g.epoch), "reports the current state and epoch");
    assert_eq!(f.leases[0].state, RWH);
    let (n, wait) = f.trigger(&who(b"c2", Some(&K2)), Trigger::Open, 0);
    assert_eq!(n.len(), 1, "the lease is still broken by another key's open");
    assert_eq!(wait.len(), 1);
    // Also while it is breaking: a request for H alone joins and reports RWH, breaking.
    let g3 = open(&mut f, &req(b"c1", 3, K1, H));
    assert_eq!((g3.state, g3.breaking), (RWH, true));
    assert!(f.is_breaking(b"c1", &K1));
}

/// Defect 2: a lease granted none exists at none for its key; its next open is not foreign.
#[test]
fn lease_granted_none_is_recorded_and_upgrades_alone() {
    let mut f = FileLeases::default();
    let g = open(&mut f, &req(b"c1", 1, K1, 0));
    assert_eq!((g.state, g.epoch, g.version), (0, 1, 2), "v2: epoch + 1 even at none");
    assert_eq!(f.leases.len(), 1);
    assert_eq!(f.leases[0].state, 0);
    assert_eq!(open(&mut f, &req(b"c1", 2, K1, R | W)).state, R | W, "own key's open is not a foreign open");
    // Oplocks and delegations asking for none record no lease.
    let mut o = req(b"c2", 3, [7; 16], 0);
    o.kind = Kind::Oplock;
    open(&mut f, &o);
    assert!(f.find(b"c2", &[7; 16]).is_none());
}

/// Defect 3 (smbtorture `smb2.oplock.exclusive1`, `batch*`): a sharing violation breaks only H.
#[test]
fn sharing_violation_breaks_only_handle_caching() {
    let mut f = FileLeases::default();
    let mut x = req(b"c1", 1, [5; 16], R | W);
    x.kind = Kind::Oplock;
    assert_eq!(open(&mut f, &x).state, R | W);
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::SharingViolation, 0);
    assert!(n.is_empty(), "an exclusive oplock holds no H: nothing is sent");
    assert!(wait.is_empty());
    assert_eq!(f.leases[0].state, R | W);
    let mut f = FileLeases::default();
    let mut b = req(b"c1", 1, [5; 16], RWH);
    b.kind = Kind::Oplock;
    open(&mut f, &b);
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::SharingViolation, 0);
    assert!(matches!(&n[..], [Note::Break { from: RWH, to: R, ack: true, .. }]), "batch goes to Level II: {n:?}");
    assert_eq!(wait.len(), 1);
    // A lease: RWH loses H only.
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    let (n, _) = f.trigger(&who(b"c2", Some(&K2)), Trigger::SharingViolation, 0);
    assert!(matches!(&n[..], [Note::Break { from: RWH, to: 0x05, .. }]), "{n:?}");
}

/// Defect 4: directories never get oplocks.
#[test]
fn directories_never_get_oplocks() {
    let f = FileLeases::default();
    for s in [R, R | W, RWH] {
        let mut o = req(b"c1", 1, [5; 16], s);
        o.kind = Kind::Oplock;
        o.dir = true;
        assert_eq!(f.grant(&o).state, 0);
    }
}

/// smbtorture `smb2.lease.breaking3`: a first attempt of an overwriting open waits for the W
/// holder; a retry waits for every contended lease still breaking.
#[test]
fn breaking3_overwrite_during_a_break_merges_and_retry_waits() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, RWH));
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::Open, 0);
    assert!(matches!(&n[..], [Note::Break { from: RWH, to: 0x03, .. }]));
    assert_eq!(wait.len(), 1);
    // Same key during the break: joins, reports RWH with break in progress.
    assert!(f.grant(&req(b"c1", 2, K1, 0)).breaking);
    // The overwrite sends nothing new (the break in progress is lowered) and waits (W).
    let (n, wait) = f.trigger(&who(b"c3", None), Trigger::Overwrite, 0);
    assert!(n.is_empty());
    assert_eq!(wait.len(), 1);
    // Ack RH: the break goes on to R, then R to none without ack.
    let n = f.ack(b"c1", &K1, R | H, 0).unwrap();
    assert!(matches!(&n[..], [Note::Break { from: 0x03, to: R, ack: true, .. }]));
    // Retries now: both wait while the lease is still breaking.
    let (_, wait) = f.trigger(&Requester { client: b"c2", key: None, retry: true, write: false }, Trigger::Open, 0);
    assert_eq!(wait.len(), 1, "a plain open waits for a break in progress");
    let (_, wait) =
        f.trigger(&Requester { client: b"c3", key: None, retry: true, write: false }, Trigger::Overwrite, 0);
    assert_eq!(wait.len(), 1, "a retried overwrite waits for the lease still breaking");
    let n = f.ack(b"c1", &K1, R, 0).unwrap();
    assert!(matches!(&n[..], [Note::Break { from: R, to: 0, ack: false, .. }]));
    assert!(!f.is_breaking(b"c1", &K1));
}

/// smbtorture `smb2.lease.breaking4`: an overwrite of an RH lease breaks it to none and does not
/// wait, even while the lease is breaking (first attempt).
#[test]
fn breaking4_overwrite_of_rh_does_not_wait() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, R | H));
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::Overwrite, 0);
    assert!(matches!(&n[..], [Note::Break { from: 0x03, to: 0, ack: true, .. }]));
    assert!(wait.is_empty());
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::Overwrite, 0);
    assert!(n.is_empty());
    assert!(wait.is_empty(), "not blocked, even if the lease is in breaking state");
    // The lease still reports RH with break in progress to its own key.
    let g = f.grant(&req(b"c1", 2, K1, 0));
    assert_eq!((g.state, g.breaking), (R | H, true));
    // But a retry does wait for it.
    let (_, wait) =
        f.trigger(&Requester { client: b"c2", key: None, retry: true, write: false }, Trigger::Overwrite, 0);
    assert_eq!(wait.len(), 1);
}

/// An overwrite of an R lease takes it to none at once (the truncate Samba runs after the open).
#[test]
fn overwrite_breaks_r_to_none_without_waiting() {
    let mut f = FileLeases::default();
    open(&mut f, &req(b"c1", 1, K1, R));
    let (n, wait) = f.trigger(&who(b"c2", None), Trigger::Overwrite, 0);
    assert!(matches!(&n[..], [Note::Break { from: R, to: 0, ack: false, .. }]));
    assert!(wait.is_empty());
}

/// The parent key and version stick with the lease from its first request.
#[test]
fn version_and_parent_key_stick() {
    let mut f = FileLeases::default();
    let mut r = req(b"c1", 1, K1, R | H);
    r.parent = Some([9; 16]);
    let g = open(&mut f, &r);
    assert_eq!((g.version, g.parent), (2, Some([9; 16])));
    let mut r2 = req(b"c1", 2, K1, RWH);
    r2.version = 1;
    r2.parent = None;
    let g2 = open(&mut f, &r2);
    assert_eq!((g2.state, g2.version, g2.parent), (RWH, 2, Some([9; 16])));
}

/// RFC 7530 §10.4: another client's open for writing, or its write, recalls a read delegation
/// too, and waits for the return; a read open does not; the holder's own writes never do.
#[test]
fn read_delegation_recalled_by_another_clients_write_open_and_write() {
    let deleg = |f: &mut FileLeases| {
        let mut d = req(b"nfs", 1, [3; 16], R);
        d.kind = Kind::Delegation;
        assert_eq!(open(f, &d).state, R);
    };
    let writer = Requester { client: b"smb", key: None, retry: false, write: true };
    let reader = Requester { client: b"smb", key: None, retry: false, write: false };
    let mut f = FileLeases::default();
    deleg(&mut f);
    let (n, wait) = f.trigger(&reader, Trigger::Open, 0);
    assert!(n.is_empty() && wait.is_empty(), "a read open shares a read delegation");
    let (n, wait) = f.trigger(&writer, Trigger::Open, 0);
    assert!(matches!(&n[..], [Note::Break { from: R, to: 0, ack: true, kind: Kind::Delegation, .. }]), "{n:?}");
    assert_eq!(wait.len(), 1, "the open for writing waits for the DELEGRETURN");
    assert!(f.release(b"nfs", &[3; 16]));
    let mut f = FileLeases::default();
    deleg(&mut f);
    let (n, wait) = f.trigger(&writer, Trigger::Write, 0);
    assert_eq!((n.len(), wait.len()), (1, 1), "a write recalls it and waits");
    let mut f = FileLeases::default();
    deleg(&mut f);
    let own = Requester { client: b"nfs", key: None, retry: false, write: true };
    let (n, _) = f.trigger(&own, Trigger::Write, 0);
    assert!(n.is_empty(), "the holder's own write recalls nothing");
}
