#!/usr/bin/env python3
"""Two real servers, one lock table: smbd with vfs_unilock and ganesha.nfsd with FSAL_UNILOCK export
the same directory on one unilock database (shares with `posix locking = no`: the kernel has no part
in it). A real SMB2 client (smbprotocol) and a real NFSv4 client (ganesha/nfs4client.py) lock the
same file; an SMB lock recalls the NFS client's delegation; an NFS WRITE breaks the SMB client's RWH
lease (NFS4ERR_DELAY until the SMB client, samba/smb2_breaks.py, acks); an SMB open for write
recalls a read delegation and waits for its return.

Usage: multiprotocol.py --smb-port P --nfs-port Q --user U --password PW --uid N --gid N
Exit status 0 when every check passed.
"""
import argparse
import os
import sys
import threading
import time
import types
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nfs4client as n  # noqa: E402
from nfs4client import WRITE_LT, READ_LT, WRITEW_LT, EOF  # noqa: E402

from smbprotocol.connection import Connection  # noqa: E402
from smbprotocol.exceptions import SMBResponseException  # noqa: E402
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,  # noqa: E402
                              ImpersonationLevel, LockFlags, Open, ShareAccess, SMB2LockElement)
from smbprotocol.file_info import FileAttributes  # noqa: E402
from smbprotocol.session import Session  # noqa: E402
from smbprotocol.tree import TreeConnect  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samba"))
import cross_leases as xl  # noqa: E402  (SMB2 clients that see and ack their breaks: smb2_breaks.py)
from smb2_breaks import R, H, W, state_str  # noqa: E402

LOCK_NOT_GRANTED = 0xC0000055
FILE_LOCK_CONFLICT = 0xC0000054
EX = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
SH = LockFlags.SMB2_LOCKFLAG_SHARED_LOCK
FI = LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
UN = LockFlags.SMB2_LOCKFLAG_UNLOCK

results = []


def check(name, ok, detail=""):
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    return ok


class SmbClient:
    def __init__(self, port, share, user, password):
        self.conn = Connection(uuid.uuid4(), "127.0.0.1", port)
        self.conn.connect()
        self.session = Session(self.conn, user, password, require_encryption=False)
        self.session.connect()
        self.tree = TreeConnect(self.session, r"\\127.0.0.1\%s" % share)
        self.tree.connect()

    def open(self, name):
        f = Open(self.tree, name)
        f.create(ImpersonationLevel.Impersonation,
                 FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                 FileAttributes.FILE_ATTRIBUTE_NORMAL,
                 ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                 CreateDisposition.FILE_OPEN, CreateOptions.FILE_NON_DIRECTORY_FILE)
        return f

    def disconnect(self):
        self.conn.disconnect(close=True)


def elem(offset, length, flags):
    e = SMB2LockElement()
    e["offset"] = offset
    e["length"] = length
    e["flags"] = flags
    return e


def smb_lock(f, offset, length, flags):
    try:
        f.lock([elem(offset, length, flags)])
        return 0
    except SMBResponseException as e:
        return e.status


def smb_read(f, offset, length):
    try:
        f.read(offset, length)
        return 0
    except SMBResponseException as e:
        return e.status


def st(s):
    return "OK" if s == 0 else "0x%08x" % s


def smb_lock_async(cli, f, offset, length, flags):
    """Sends a blocking SMB2 LOCK; returns a dict filled with status and time when it completes."""
    req, recv = f.lock([elem(offset, length, flags)], send=False)
    request = cli.conn.send(req, cli.session.session_id, cli.tree.tree_connect_id)
    done = {}

    def waiter():
        try:
            recv(request, wait=True)
            done["status"] = 0
        except SMBResponseException as e:
            done["status"] = e.status
        done["t"] = time.monotonic()

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    done["thread"] = th
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smb-port", type=int, required=True)
    ap.add_argument("--nfs-port", type=int, required=True)
    ap.add_argument("--share", default="shared")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--gid", type=int, required=True)
    ap.add_argument("--expiry", type=float, default=60)
    a = ap.parse_args()

    nfs = n.Client(a.nfs_port, uid=a.uid, gid=a.gid)
    d = nfs.lookup_fh("/" + a.share)
    name = "mp-%s.dat" % os.urandom(3).hex()
    # The file is made through NFS (Ganesha caches directories: nothing is created behind it).
    f = n.OpenFile(nfs, d, name)
    check("nfs: write 4096 bytes", nfs.write(f.fh, f.sid, 0, b"x" * 4096).name == "OK")
    lo = f.lock_owner()

    smb = SmbClient(a.smb_port, a.share, a.user, a.password)
    fa = smb.open(name)

    print("== NFS lock held, SMB client asks", flush=True)
    check("nfs: LOCK write [0,100)", lo.lock(WRITE_LT, 0, 100).name == "OK")
    s = smb_lock(fa, 50, 10, EX | FI)
    check("smb: exclusive [50,+10) refused", s == LOCK_NOT_GRANTED, st(s))
    s = smb_lock(fa, 90, 20, SH | FI)
    check("smb: shared [90,+20) refused", s == LOCK_NOT_GRANTED, st(s))
    s = smb_read(fa, 0, 10)
    check("smb: READ [0,+10) refused by strict locking", s == FILE_LOCK_CONFLICT, st(s))
    s = smb_lock(fa, 100, 10, EX | FI)
    check("smb: exclusive [100,+10), next to it, granted", s == 0, st(s))
    smb_lock(fa, 100, 10, UN)

    smb2 = SmbClient(a.smb_port, a.share, a.user, a.password)
    fb = smb2.open(name)
    done = smb_lock_async(smb2, fb, 10, 10, EX)
    time.sleep(0.7)
    check("smb: blocking exclusive [10,+10) pending while the NFS lock is held", "status" not in done)
    t0 = time.monotonic()
    check("nfs: LOCKU [0,100)", lo.unlock(WRITE_LT, 0, 100).name == "OK")
    done["thread"].join(10)
    lat = (done.get("t", t0) - t0) * 1000
    check("smb: the pending lock is granted when the NFS client unlocks", done.get("status") == 0,
          "status %s after %.0f ms" % (st(done.get("status", -1)), lat))
    r = lo.lock(WRITE_LT, 15, 1)
    dn = getattr(r, "denied", None)
    check("nfs: LOCK [15,+1) denied by the SMB client that got it", r.name == "DENIED" and
          dn is not None and dn.offset == 10 and dn.length == 10, "%s %r" % (r.name, dn))
    smb_lock(fb, 10, 10, UN)
    fb.close()
    smb2.disconnect()

    print("== SMB lock held, NFS client asks", flush=True)
    s = smb_lock(fa, 200, 50, EX | FI)
    check("smb: exclusive [200,+50) granted", s == 0, st(s))
    r = lo.lock(WRITE_LT, 210, 10)
    dn = getattr(r, "denied", None)
    check("nfs: LOCK [210,+10) denied with the SMB holder's range", r.name == "DENIED" and
          dn is not None and (dn.offset, dn.length, dn.locktype) == (200, 50, WRITE_LT),
          "%s %r" % (r.name, dn))
    r = nfs.lockt(f.fh, READ_LT, 249, 1, b"tester")
    dn = getattr(r, "denied", None)
    check("nfs: LOCKT [249,+1) denied too (a conflict, not 'free')", r.name == "DENIED" and
          dn is not None and dn.offset == 200, "%s %r" % (r.name, dn))
    check("nfs: LOCK [250,+10), next to it, granted", lo.lock(WRITE_LT, 250, 10).name == "OK")
    lo.unlock(WRITE_LT, 250, 10)
    # NFSv4.0 "blocking" locks are polled (Ganesha 4.3 sends no CB_NOTIFY_LOCK): the client
    # retries WRITEW_LT; it must get the lock as soon as the SMB client lets go.
    res = {}

    def poller():
        while time.monotonic() - t_start < 15:
            r = lo.lock(WRITEW_LT, 200, 10)
            if r.name == "OK":
                res["t"] = time.monotonic()
                return
            res["tries"] = res.get("tries", 0) + 1
            time.sleep(0.05)

    t_start = time.monotonic()
    th = threading.Thread(target=poller, daemon=True)
    th.start()
    time.sleep(0.5)
    check("nfs: polling WRITEW [200,+10) not granted while the SMB lock is held", "t" not in res,
          "%d refusals" % res.get("tries", 0))
    t0 = time.monotonic()
    s = smb_lock(fa, 200, 50, UN)
    check("smb: unlock [200,+50)", s == 0, st(s))
    th.join(15)
    check("nfs: the polling lock is granted once the SMB lock is gone", "t" in res,
          "%.0f ms after the SMB unlock" % ((res.get("t", t0) - t0) * 1000))
    s = smb_lock(fa, 205, 1, SH | FI)
    check("smb: shared [205,+1) refused while the NFS lock is held", s == LOCK_NOT_GRANTED, st(s))
    lo.unlock(WRITE_LT, 200, 10)
    s = smb_lock(fa, 205, 1, SH | FI)
    check("smb: granted after the NFS unlock", s == 0, st(s))
    smb_lock(fa, 205, 1, UN)

    print("== NFS client dies", flush=True)
    c3 = n.Client(a.nfs_port, uid=a.uid, gid=a.gid)
    d3 = c3.lookup_fh("/" + a.share)
    f3 = n.OpenFile(c3, d3, name, create=False)
    l3 = f3.lock_owner()
    check("nfs(2nd client): LOCK write [0,EOF)", l3.lock(WRITE_LT, 0, EOF).name == "OK")
    s = smb_lock(fa, 1000, 1, EX | FI)
    check("smb: refused while it lives", s == LOCK_NOT_GRANTED, st(s))
    c3.close_connection()
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < a.expiry:
        time.sleep(0.5)
        nfs.renew()
        if smb_lock(fa, 1000, 1, EX | FI) == 0:
            got = time.monotonic() - t0
            break
    check("smb: granted once the dead NFS client's lease expired", got is not None,
          "after %s s" % ("%.1f" % got if got is not None else "never"))
    if got is not None:
        smb_lock(fa, 1000, 1, UN)

    print("== NFS delegation, SMB client locks", flush=True)
    cd = n.Client(a.nfs_port, uid=a.uid, gid=a.gid, callback=True)
    dd = cd.lookup_fh("/" + a.share)
    dname = "mp-deleg-%s.dat" % os.urandom(3).hex()
    g = n.OpenFile(cd, dd, dname)
    cd.write(g.fh, g.sid, 0, b"d" * 1000)
    g.close()
    got = None
    for _ in range(20):  # a confirmed open owner and a working callback path are needed
        g = n.OpenFile(cd, dd, dname, owner=g.owner, access=n.ACCESS_READ, create=False,
                       seqid=g.seqid)
        if g.deleg:
            got = g
            break
        g.close()
        time.sleep(0.5)
    if check("nfs: read delegation granted through unilock", got is not None):
        fs = smb.open(dname)
        t0 = time.monotonic()
        s = smb_lock(fs, 0, 1, EX | FI)
        check("smb: exclusive [0,+1) granted (it breaks the delegation: no wait)", s == 0, st(s))
        while time.monotonic() - t0 < 5 and not cd.returned:
            time.sleep(0.02)
        check("nfs: the SMB lock recalled the delegation (CB_RECALL, DELEGRETURN)",
              cd.cb.recalls and cd.returned == ["OK"],
              "returned %s %.0f ms after the SMB lock" % (cd.returned, (time.monotonic() - t0) * 1000))
        got.close()
        g2 = n.OpenFile(cd, dd, dname, owner=got.owner, access=n.ACCESS_READ, create=False,
                        seqid=got.seqid)
        # (Both Ganesha, right after a recall, and unilock, while a lock starts below the end of
        # the file, refuse one: this shows the result, not which of the two rules gave it.)
        check("nfs: no delegation while the SMB lock is held", g2.deleg is None, str(g2.deleg))
        g2.close()
        smb_lock(fs, 0, 1, UN)
        fs.close()

    print("== SMB client's RWH lease, NFS client writes", flush=True)
    la = types.SimpleNamespace(host="127.0.0.1", port=a.smb_port, share=a.share, user=a.user,
                               password=a.password)
    lname = "mp-lease-%s.dat" % os.urandom(3).hex()
    h = n.OpenFile(nfs, d, lname)  # an NFS open is not an open in unilock: only its writes break
    nfs.write(h.fh, h.sid, 0, b"l" * 4096)
    sl = xl.Client(la, "lease")
    fl = sl.open(lname, lease=(xl.key(18), R | H | W))
    if check("smb: RWH lease granted through unilock", fl.granted and fl.granted[0] == R | H | W,
             "granted %s" % (fl.granted and state_str(fl.granted[0]))):
        t0 = time.monotonic()
        r = nfs.write(h.fh, h.sid, 0, b"n" * 10)
        check("nfs: WRITE answered NFS4ERR_DELAY (the FSAL's break trigger: an SMB client holds W)",
              r.name == "DELAY", r.name)
        b = xl.next_break(sl)
        check("smb: the client receives the lease break (RWH -> no W, ack required)",
              b is not None and b.kind == "lease" and b.current == R | H | W and not b.new & W and
              b.ack_required, "%s, %.0f ms after the WRITE" % (b, ((b.t if b else t0) - t0) * 1000))
        time.sleep(0.3)
        r = nfs.write(h.fh, h.sid, 0, b"n" * 10)
        check("nfs: a retry before the ack is still NFS4ERR_DELAY", r.name == "DELAY", r.name)
        t_ack = time.monotonic()
        s = sl.conn.ack(b, b.new) if b else -1
        check("smb: the client acks %s" % (state_str(b.new) if b else "?"), s == 0, st(s))
        tries, t_ok = 0, None
        while time.monotonic() - t_ack < 5:
            tries += 1
            r = nfs.write(h.fh, h.sid, 0, b"n" * 10)
            if r.name == "OK":
                t_ok = time.monotonic()
                break
            time.sleep(0.01)
        check("nfs: the WRITE succeeds after the ack", t_ok is not None,
              "%s, %.0f ms after the ack (retry %d)" % (r.name, ((t_ok or t_ack) - t_ack) * 1000, tries))
        try:
            data = fl.read(0, 10)
        except SMBResponseException as e:
            data = st(e.status)
        check("smb: and reads the NFS client's data", data == b"n" * 10, repr(data))
        fl.close()
    sl.close()
    h.close()

    # A conflicting open for write recalls a read delegation too (RFC 7530 10.4; unilock_file_open:
    # another client's open for writing recalls any delegation) and waits until it is returned.
    print("== NFS read delegation, SMB client opens for write", flush=True)
    ename = "mp-deleg-open-%s.dat" % os.urandom(3).hex()
    g = n.OpenFile(cd, dd, ename)
    cd.write(g.fh, g.sid, 0, b"e" * 1000)
    g.close()
    got = None
    for _ in range(20):
        g = n.OpenFile(cd, dd, ename, owner=g.owner, access=n.ACCESS_READ, create=False, seqid=g.seqid)
        if g.deleg:
            got = g
            break
        g.close()
        time.sleep(0.5)
    if check("nfs: read delegation granted through unilock", got is not None):
        nrec, nret = len(cd.cb.recalls), len(cd.returned)
        so = xl.Client(la, "opener")
        t0w, t0 = time.time(), time.monotonic()
        p = xl.Pending(so, ename)
        p.wait(10)
        t_open = ((p.t or time.monotonic()) - t0) * 1000
        while time.monotonic() - t0 < 5 and len(cd.returned) == nret:
            time.sleep(0.02)
        recalled = len(cd.cb.recalls) > nrec
        check("nfs: the SMB open for write recalls the read delegation (CB_RECALL)", recalled,
              "CB_RECALL %s ms after the CREATE was sent" %
              ("%.0f" % ((cd.cb.recalls[-1][2] - t0w) * 1000) if recalled else "-"))
        check("nfs: DELEGRETURN", cd.returned[nret:] == ["OK"],
              "%s %s ms after the CREATE" % (cd.returned[nret:], "%.0f" % ((cd.returned_at[-1] - t0) * 1000)
                                             if cd.returned[nret:] else "-"))
        check("smb: the open completes once the delegation is returned (it waited for it)",
              p.status == 0 and t_open >= 40,
              "status %s after %.0f ms (the NFS client returns a recalled delegation 50 ms after CB_RECALL)" %
              (p.status if not isinstance(p.status, int) else st(p.status), t_open))
        if p.status == 0:
            p.f.close()
        so.close()
        got.close()

    fa.close()
    smb.disconnect()
    f.close()
    failed = [nm for nm, ok in results if not ok]
    print("multiprotocol: %d passed, %d failed" % (len(results) - len(failed), len(failed)),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
