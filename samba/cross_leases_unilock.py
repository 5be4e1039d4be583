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

    print("== 3b. an NFSv4 read delegation is recalled by an SMB open for write too (RFC 7530 10.4)", flush=True)
    fname = "xl-rdeleg.dat"
    with open(os.path.join(a.share_dir, fname), "wb") as fh:
        fh.write(b"r" * 4096)
    os.chmod(os.path.join(a.share_dir, fname), 0o666)
    nlm.cmd("file %s/%s" % (a.share_dir, fname))
    r = nlm.cmd("open nfs4:client3 301 read deleg r")
    check("nfs: read delegation granted", r.startswith("OK state=1"), r)
    dkey = r.split("key=")[1] if "key=" in r else ""
    c1 = m.Client(a, "c1")
    p = m.Pending(c1, fname)
    e, _ = wait_event(nlm, "lease_break", 5000)
    check("nfs: the read delegation is recalled (CB_RECALL, to none) when the SMB client opens for write",
          e is not None and "client=nfs4:client3" in e and "break_to=0" in e, str(e))
    time.sleep(0.3)
    check("smb: the SMB open waits while the read delegation is out", not p.done.is_set())
    t_ret = time.monotonic()
    r = nlm.cmd("delegreturn nfs4:client3 %s" % dkey)
    check("nfs: DELEGRETURN", r == "OK", r)
    p.wait(10)
    check("smb: the open completes once the read delegation is returned", p.status == 0,
          "status %s, %.0f ms after DELEGRETURN" % (p.status, ((p.t or t_ret) - t_ret) * 1000))
    nlm.cmd("close nfs4:client3 301")
    if p.status == 0:
        p.f.close()
    c1.close()

    if a.dh_share:
        run_durable(a, m, nlm)

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


def run_durable(a, m, nlm):
    """Check 4: a durable handle reconnecting in a new smbd process keeps its lock for the NLM side."""
    from smbprotocol.create_contexts import (SMB2CreateContextRequest, SMB2CreateDurableHandleReconnect,
                                             SMB2CreateDurableHandleRequest)
    from smbprotocol.file_info import FileAttributes
    from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                                  ImpersonationLevel, Open, ShareAccess)
    check = m.check
    print("== 4. a durable handle keeps its lock, seen by the NLM side, across a reconnect in a new smbd",
          flush=True)

    def ctx(structure):
        c = SMB2CreateContextRequest()
        c["buffer_name"] = structure.NAME
        c["buffer_data"] = structure
        return c

    def create(cl, fname, contexts):
        f = Open(cl.tree, fname)
        r = f.create(ImpersonationLevel.Impersonation,
                     FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                     FileAttributes.FILE_ATTRIBUTE_NORMAL,
                     ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                     CreateDisposition.FILE_OPEN_IF, CreateOptions.FILE_NON_DIRECTORY_FILE,
                     create_contexts=contexts, oplock_level=m.OPLOCK_BATCH)
        return f, r

    share, a.share = a.share, a.dh_share
    fname = "xl-durable.dat"
    path = os.path.join(a.dh_share_dir, fname)
    ca = m.Client(a, "ca")
    fa, r = create(ca, fname, [ctx(SMB2CreateDurableHandleRequest())])
    check("smb: durable open (v1, Batch oplock) granted", fa.oplock_level == m.OPLOCK_BATCH and
          any(type(c).__name__ == "SMB2CreateDurableHandleResponse" for c in (r or [])),
          "oplock %s, contexts %s" % (m.oplock_str(fa.oplock_level), [type(c).__name__ for c in (r or [])]))
    s = xp.smb_lock(fa, 0, 10, xp.EX | xp.FI)
    check("smb: exclusive [0,+10) granted", s == 0, xp.st(s))
    nlm.cmd("file %s" % path)
    r = nlm.cmd("test nlm:hostA svid-9 sh 0 10")
    check("nlm: TEST sees the durable handle's lock", r.startswith("CONFLICT client=smbdh:"), r)
    holder = r.split()[1] if r.startswith("CONFLICT") else ""
    old_pid = smbd_pid_of(ca)
    ca.conn.transport.close()  # the connection is cut: no close, no logoff
    ok, seen = True, 0
    t_end = time.monotonic() + 10.0
    gone_at = None
    while time.monotonic() < t_end:
        if gone_at is None and old_pid and not os.path.exists("/proc/%d" % old_pid):
            gone_at = time.monotonic()
        if gone_at is not None and time.monotonic() > gone_at + 2.0:
            break  # the old process is gone, and unilock's dead-process check has run since
        r = nlm.cmd("test nlm:hostA svid-9 sh 0 10")
        seen += 1
        if not (r.startswith("CONFLICT") and holder in r):
            ok = False
            break
        time.sleep(0.25)
    check("nlm: the lock stays while the client is away and its smbd process (pid %s) exits" % old_pid,
          ok and gone_at is not None, "%d TESTs, the last 2 s after the exit: %s" % (seen, r))
    cb = m.Client(a, "cb")
    fb, r = create(cb, fname, [ctx(_reconnect(SMB2CreateDurableHandleReconnect, fa.file_id))])
    check("smb: the durable handle reconnects in a new smbd process", fb.file_id[:8] == fa.file_id[:8],
          "file id %s" % (fb.file_id.hex() if isinstance(fb.file_id, bytes) else fb.file_id))
    r = nlm.cmd("test nlm:hostA svid-9 sh 0 10")
    check("nlm: TEST still sees the lock after the reconnect", r.startswith("CONFLICT") and holder in r, r)
    s = xp.smb_lock(fb, 0, 10, xp.UN)
    check("smb: unlock through the reconnected handle", s == 0, xp.st(s))
    r = nlm.cmd("test nlm:hostA svid-9 sh 0 10")
    check("nlm: the lock is gone after that unlock", r == "OK", r)
    fb.close()
    cb.close()
    a.share = share


def smbd_pid_of(cl):
    """The smbd process serving this client's connection (from ss -tnp), or None."""
    import subprocess
    try:
        port = cl.conn.transport._sock.getsockname()[1]
        out = subprocess.run(["ss", "-Htnp", "state", "established"], capture_output=True, text=True).stdout
    except (OSError, AttributeError):
        return None
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 5 and f[3].endswith(":%d" % port) and "smbd" in line and "pid=" in line:
            return int(line.split("pid=")[1].split(",")[0])
    return None


def _reconnect(cls, file_id):
    s = cls()
    s["data"] = file_id
    return s
