"""The cross-protocol lease checks through vfs_unilock (run by cross_leases.py --mode unilock*).

The foreign side is samba/cross_protocol.c on the module's database: unilock_break_trigger for an
NLM/NFS write, unilock_file_open for an NFSv4 OPEN (which cannot wait) and for a delegation. Each
check prints what the SMB client itself saw (its break notifications, its acks, when its open
completed).
"""
import os
import time

import cross_protocol as xp


def wait_event(nlm, kind, ms):
    """Waits up to ms for an EVENT line of that kind; returns (line or None, time seen)."""
    deadline = time.monotonic() + ms / 1000.0
    while True:
        left = int((deadline - time.monotonic()) * 1000)
        if left <= 0:
            return None, time.monotonic()
        nlm.wait_begin(left)
        for e in nlm.wait_end():
            if e.startswith("EVENT " + kind):
                return e, time.monotonic()


def fresh(m, a, c, fname, state):
    with open(os.path.join(a.share_dir, fname), "wb") as fh:
        fh.write(b"x" * 4096)
    os.chmod(os.path.join(a.share_dir, fname), 0o666)
    f = c.open(fname, lease=(m.key(len(fname) + state), state))
    return f


def run(a, m):
    check, R, H, W = m.check, m.R, m.H, m.W
    nlm = xp.Nlm(a.nlm, a.db)
    if a.mode == "unilock-oplocks":
        run_oplocks(a, m, nlm)
        nlm.close()
        return

    print("== 1. an NLM/NFS write breaks the SMB client's RWH lease", flush=True)
    c1 = m.Client(a, "c1")
    fname = "xl-write.dat"
    f1 = fresh(m, a, c1, fname, R | H | W)
    check("smb: RWH lease granted through unilock", f1.granted and f1.granted[0] == R | H | W,
          "granted %s" % (f1.granted and m.state_str(f1.granted[0])))
    nlm.cmd("file %s/%s" % (a.share_dir, fname))
    r = nlm.cmd("trigger nlm:hostA write wait")
    check("nlm: the write has to wait (an SMB client holds W)", r.startswith("PENDING"), r)
    b = m.next_break(c1)
    check("smb: the client receives the lease break (ack required)",
          b is not None and b.kind == "lease" and b.current == R | H | W and b.ack_required, str(b))
    e, _ = wait_event(nlm, "breaks_done", 300)
    check("nlm: the write is still waiting before the ack", e is None, str(e))
    t_ack = time.monotonic()
    st = c1.conn.ack(b, b.new) if b else -1
    check("smb: the client acks %s" % (m.state_str(b.new) if b else "?"), st == 0, "status 0x%08x" % st)
    e, t_done = wait_event(nlm, "breaks_done", 5000)
    check("nlm: the write proceeds after the ack", e is not None,
          "%.0f ms after the ack" % ((t_done - t_ack) * 1000))
    f1.close()
    c1.close()

    print("== 2. an NFSv4 OPEN for write gets BUSY while the SMB client's W lease is breaking", flush=True)
    c1 = m.Client(a, "c1")
    fname = "xl-open.dat"
    f1 = fresh(m, a, c1, fname, R | H | W)
    check("smb: RWH lease granted", f1.granted and f1.granted[0] == R | H | W)
    nlm.cmd("file %s/%s" % (a.share_dir, fname))
    r = nlm.cmd("open nfs4:client1 101 write")
    check("nfs: OPEN for write answered busy (NFS4ERR_DELAY) while the lease breaks",
          r.startswith("ERR") and "busy" in r.lower(), r)
    b = m.next_break(c1)
    check("smb: the client receives the break RWH -> RH",
          b is not None and b.current == R | H | W and b.new == R | H and b.ack_required, str(b))
    r = nlm.cmd("open nfs4:client1 101 write")
    check("nfs: a retry before the ack is still busy", r.startswith("ERR") and "busy" in r.lower(), r)
    st = c1.conn.ack(b, R | H) if b else -1
    check("smb: the client acks RH", st == 0, "status 0x%08x" % st)
    r = ""
    t0 = time.monotonic()
    for _ in range(100):
        r = nlm.cmd("open nfs4:client1 101 write")
        if r.startswith("OK"):
            break
        time.sleep(0.02)
    check("nfs: the retry after the ack succeeds", r.startswith("OK"),
          "%s, %.0f ms after the ack" % (r, (time.monotonic() - t0) * 1000))
    nlm.cmd("close nfs4:client1 101")
    f1.close()
    c1.close()

    print("== 3. an NFSv4 delegation is recalled by an SMB open for write", flush=True)
    fname = "xl-deleg.dat"
    with open(os.path.join(a.share_dir, fname), "wb") as fh:
        fh.write(b"d" * 4096)
    os.chmod(os.path.join(a.share_dir, fname), 0o666)
    nlm.cmd("file %s/%s" % (a.share_dir, fname))
    r = nlm.cmd("open nfs4:client2 201 write deleg w")
    check("nfs: write delegation granted", r.startswith("OK state=5"), r)
    dkey = r.split("key=")[1] if "key=" in r else ""
    c1 = m.Client(a, "c1")
    p = m.Pending(c1, fname)
    e, _ = wait_event(nlm, "lease_break", 5000)
    check("nfs: the delegation is recalled (CB_RECALL) when the SMB client opens for write",
          e is not None and "client=nfs4:client2" in e, str(e))
    time.sleep(0.3)
    check("smb: the SMB open waits while the delegation is out", not p.done.is_set())
    t_ret = time.monotonic()
    r = nlm.cmd("delegreturn nfs4:client2 %s" % dkey)
    check("nfs: DELEGRETURN", r == "OK", r)
    p.wait(10)
    check("smb: the open completes once the delegation is returned", p.status == 0,
          "status %s, %.0f ms after DELEGRETURN" % (p.status, ((p.t or t_ret) - t_ret) * 1000))
    nlm.cmd("close nfs4:client2 201")
    if p.status == 0:
        p.f.close()
    c1.close()

    if a.fast_share:
        print("== 1b. the write proceeds after the break timeout if the SMB client never acks", flush=True)
        nlm2 = xp.Nlm(a.nlm, a.fast_db)
        share, a.share = a.share, a.fast_share
        c1 = m.Client(a, "c1")
        fname = "xl-noack.dat"
        sd = a.share_dir
        a.share_dir = a.fast_share_dir
        f1 = fresh(m, a, c1, fname, R | H | W)
        nlm2.cmd("file %s/%s" % (a.share_dir, fname))
        t0 = time.monotonic()
        r = nlm2.cmd("trigger nlm:hostA write wait")
        check("nlm: the write waits", r.startswith("PENDING"), r)
        b = m.next_break(c1)
        check("smb: the client receives the break and does not ack", b is not None, str(b))
        e, t_done = wait_event(nlm2, "breaks_done", 15000)
        check("nlm: the write proceeds after the break timeout (unilock:break timeout = %d ms)" %
              a.fast_timeout, e is not None and t_done - t0 >= a.fast_timeout / 1000.0 * 0.9,
              "after %.0f ms" % ((t_done - t0) * 1000))
        f1.close()
        c1.close()
        nlm2.close()
        a.share, a.share_dir = share, sd
    nlm.close()


def run_oplocks(a, m, nlm):
    check = m.check
    print("== 5. an SMB client's oplock (smbd without leases) is broken by a foreign write", flush=True)
    c1 = m.Client(a, "c1")
    fname = "xl-oplock.dat"
    with open(os.path.join(a.share_dir, fname), "wb") as fh:
        fh.write(b"o" * 4096)
    os.chmod(os.path.join(a.share_dir, fname), 0o666)
    f1 = c1.open(fname, oplock=m.OPLOCK_BATCH)
    check("smb: Batch oplock granted through unilock", f1.oplock_level == m.OPLOCK_BATCH,
          m.oplock_str(f1.oplock_level))
    nlm.cmd("file %s/%s" % (a.share_dir, fname))
    r = nlm.cmd("trigger nlm:hostA write wait")
    check("nlm: the write waits for the oplock holder", r.startswith("PENDING"), r)
    b = m.next_break(c1)
    check("smb: the client receives an oplock break", b is not None and b.kind == "oplock", str(b))
    t_ack = time.monotonic()
    st = c1.conn.ack(b, b.level) if b else -1
    check("smb: the client acks (%s)" % (m.oplock_str(b.level) if b else "?"), st == 0,
          "status 0x%08x" % st)
    e, t_done = wait_event(nlm, "breaks_done", 5000)
    check("nlm: the write proceeds after the ack", e is not None,
          "%.0f ms after the ack" % ((t_done - t_ack) * 1000))
    f1.close()
    c1.close()
