#!/usr/bin/env python3
"""Cross-protocol test: NLM-style POSIX locks (samba/cross_protocol.c, unilock shared mode) against
SMB2 locks sent by a real SMB2 client (the PyPI package smbprotocol) through smbd + vfs_unilock.

Usage: cross_protocol.py --nlm BIN --db DB --share-dir DIR --port PORT --user U --password P [--share S]
Exit status 0 when every check passed.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                              ImpersonationLevel, LockFlags, Open, ShareAccess, SMB2LockElement)
from smbprotocol.file_info import FileAttributes
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

LOCK_NOT_GRANTED = 0xC0000055
FILE_LOCK_CONFLICT = 0xC0000054
EX = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK
SH = LockFlags.SMB2_LOCKFLAG_SHARED_LOCK
FI = LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
UN = LockFlags.SMB2_LOCKFLAG_UNLOCK
FNAME = "xproto.dat"

results = []


def check(name, ok, detail=""):
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    return ok


class Nlm:
    """The NLM side: a cross_protocol process speaking its line protocol."""

    def __init__(self, binary, db):
        self.p = subprocess.Popen([binary, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, bufsize=1)
        ready = self.p.stdout.readline().strip()
        if not ready.startswith("READY"):
            raise RuntimeError("cross_protocol did not start: %r" % ready)

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        print("    nlm> %s -> %s" % (line, out), flush=True)
        return out

    def wait_begin(self, ms):
        """The NLM process sits in poll() on unilock's event fd for up to ms."""
        self.p.stdin.write("wait %d\n" % ms)
        self.p.stdin.flush()

    def wait_end(self):
        events = []
        while True:
            out = self.p.stdout.readline().strip()
            if out.startswith("WAITED"):
                return events
            print("    nlm< %s" % out, flush=True)
            events.append(out)

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        self.p.wait(timeout=10)


class SmbClient:
    def __init__(self, host, port, share, user, password):
        self.conn = Connection(uuid.uuid4(), host, port)
        self.conn.connect()
        self.session = Session(self.conn, user, password, require_encryption=False)
        self.session.connect()
        self.tree = TreeConnect(self.session, r"\\%s\%s" % (host, share))
        self.tree.connect()

    def open(self, name, create=False):
        f = Open(self.tree, name)
        f.create(ImpersonationLevel.Impersonation,
                 FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                 FileAttributes.FILE_ATTRIBUTE_NORMAL,
                 ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                 CreateDisposition.FILE_OVERWRITE_IF if create else CreateDisposition.FILE_OPEN,
                 CreateOptions.FILE_NON_DIRECTORY_FILE)
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
    """Returns 0 on success, else the NTSTATUS of the refusal."""
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nlm", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--share-dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--share", default="unilock")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    a = ap.parse_args()

    a_cli = SmbClient(a.host, a.port, a.share, a.user, a.password)
    fa = a_cli.open(FNAME, create=True)
    fa.write(b"x" * 4096, 0)

    nlm = Nlm(a.nlm, a.db)
    check("nlm: file id of %s" % FNAME, nlm.cmd("file %s/%s" % (a.share_dir, FNAME)).startswith("OK"))
    H, O = "nlm:hostA", "svid-1234"

    print("== direction 1: POSIX (NLM) lock held, SMB2 client asks", flush=True)
    check("nlm: POSIX exclusive lock [0,100)", nlm.cmd("lock %s %s ex 0 100" % (H, O)) == "OK")
    s = smb_lock(fa, 10, 10, EX | FI)
    check("smb: exclusive [10,+10) refused while the POSIX lock is held", s == LOCK_NOT_GRANTED, st(s))
    s = smb_lock(fa, 50, 10, SH | FI)
    check("smb: shared [50,+10) refused too (the POSIX lock is exclusive)", s == LOCK_NOT_GRANTED, st(s))
    s = smb_read(fa, 0, 10)
    check("smb: READ [0,+10) refused by strict locking", s == FILE_LOCK_CONFLICT, st(s))
    s = smb_lock(fa, 100, 10, EX | FI)
    check("smb: exclusive [100,+10), next to the POSIX lock, granted", s == 0, st(s))
    smb_lock(fa, 100, 10, UN)

    # A blocking SMB2 lock (no FAIL_IMMEDIATELY) from a second client waits, and is granted once the
    # NLM side releases: the module's unilock_watch wakes smbd (share_mode_wakeup_waiters).
    b_cli = SmbClient(a.host, a.port, a.share, a.user, a.password)
    fb = b_cli.open(FNAME)
    req, recv = fb.lock([elem(10, 10, EX)], send=False)
    request = b_cli.conn.send(req, b_cli.session.session_id, b_cli.tree.tree_connect_id)
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
    time.sleep(0.7)
    check("smb: blocking exclusive [10,+10) is pending while the POSIX lock is held", "status" not in done)
    t0 = time.monotonic()
    check("nlm: unlock [0,100)", nlm.cmd("unlock %s %s 0 100" % (H, O)) == "OK")
    th.join(10)
    lat = (done.get("t", t0) - t0) * 1000
    check("smb: the pending lock is granted after the POSIX unlock", done.get("status") == 0,
          "status %s after %.0f ms" % (st(done.get("status", -1)), lat))
    print("    pending SMB2 lock granted %.0f ms after the NLM unlock" % lat, flush=True)
    r = nlm.cmd("test %s %s sh 15 1" % (H, O))
    check("nlm: TEST sees the SMB client that got it", r.startswith("CONFLICT client=smb:") and "flavour=windows" in r, r)
    smb_lock(fb, 10, 10, UN)
    fb.close()
    b_cli.disconnect()

    check("nlm: POSIX exclusive lock [0,100) again", nlm.cmd("lock %s %s ex 0 100" % (H, O)) == "OK")
    s = smb_lock(fa, 0, 1, EX | FI)
    check("smb: exclusive [0,+1) refused", s == LOCK_NOT_GRANTED, st(s))
    check("nlm: unlock [0,100)", nlm.cmd("unlock %s %s 0 100" % (H, O)) == "OK")
    s = smb_lock(fa, 0, 1, EX | FI)
    check("smb: exclusive [0,+1) granted once the POSIX lock is released", s == 0, st(s))
    s = smb_read(fa, 0, 10)
    check("smb: its own READ passes", s == 0, st(s))
    smb_lock(fa, 0, 1, UN)

    print("== direction 2: SMB2 lock held, the NLM side asks", flush=True)
    s = smb_lock(fa, 200, 50, EX | FI)
    check("smb: exclusive [200,+50) granted", s == 0, st(s))
    r = nlm.cmd("test %s %s ex 210 10" % (H, O))
    check("nlm: TEST [210,+10) conflicts with the SMB holder",
          r.startswith("CONFLICT client=smb:") and "flavour=windows type=ex offset=200 length=50" in r, r)
    r = nlm.cmd("lock %s %s sh 240 20" % (H, O))
    check("nlm: shared LOCK [240,+20) refused", r.startswith("CONFLICT client=smb:"), r)
    check("nlm: exclusive LOCK [250,+10), next to it, granted", nlm.cmd("lock %s %s ex 250 10" % (H, O)) == "OK")
    nlm.cmd("unlock %s %s 250 10" % (H, O))
    r = nlm.cmd("block %s %s ex 200 10" % (H, O))
    check("nlm: blocking LOCK [200,+10) queued behind the SMB lock", r.startswith("PENDING"), r)
    # The NLM process is idle in poll() on its event fd when smbd (running as the SMB user) unlocks:
    # the grant must reach it through the shared database's wake-up, not through our next command.
    nlm.wait_begin(5000)
    time.sleep(0.3)
    t0 = time.monotonic()
    s = smb_lock(fa, 200, 50, UN)
    check("smb: unlock [200,+50)", s == 0, st(s))
    ev = nlm.wait_end()
    lat = (time.monotonic() - t0) * 1000
    check("nlm: the queued lock is granted when the SMB lock goes",
          any(e.startswith("EVENT lock") and " status=0 " in e for e in ev),
          "%s after %.0f ms" % (ev, lat))
    print("    queued NLM lock granted %.0f ms after the SMB2 unlock" % lat, flush=True)
    s = smb_lock(fa, 205, 1, SH | FI)
    check("smb: shared [205,+1) refused while the NLM lock is held", s == LOCK_NOT_GRANTED, st(s))
    nlm.cmd("unlock %s %s 200 10" % (H, O))

    s = smb_lock(fa, 300, 10, SH | FI)
    check("smb: shared [300,+10) granted", s == 0, st(s))
    check("nlm: shared LOCK [300,+10) coexists with it", nlm.cmd("lock %s %s sh 300 10" % (H, O)) == "OK")
    r = nlm.cmd("lock %s %s ex 300 10" % (H, O))
    check("nlm: upgrade to exclusive refused by the SMB shared lock", r.startswith("CONFLICT client=smb:"), r)
    nlm.cmd("unlock %s %s 300 10" % (H, O))
    smb_lock(fa, 300, 10, UN)

    s = smb_lock(fa, 400, 10, EX | FI)
    check("smb: exclusive [400,+10) granted", s == 0, st(s))
    fa.close()
    r = nlm.cmd("test %s %s ex 400 10" % (H, O))
    check("nlm: the SMB lock is gone once the SMB client closes the file", r == "OK", r)

    fa = a_cli.open(FNAME)
    s = smb_lock(fa, 500, 10, EX | FI)
    check("smb: exclusive [500,+10) granted on a new open", s == 0, st(s))
    check("nlm: TEST [500,+10) sees it", nlm.cmd("test %s %s ex 500 10" % (H, O)).startswith("CONFLICT"))
    # The client vanishes without closing: smbd's process for it exits and its locks go.
    a_cli.conn.transport.close()
    ok = False
    for _ in range(50):
        time.sleep(0.1)
        if nlm.cmd("test %s %s ex 500 10" % (H, O)) == "OK":
            ok = True
            break
    check("nlm: the SMB lock is gone once the SMB client disconnects", ok)
    # The smbd process holding a lock is killed (SIGKILL: no close, no unlock): unilock finds the
    # process dead and releases its locks; smbd's own table drops them lazily (serverid_exists).
    c_cli = SmbClient(a.host, a.port, a.share, a.user, a.password)
    fc = c_cli.open(FNAME)
    s = smb_lock(fc, 600, 10, EX | FI)
    check("smb: exclusive [600,+10) granted (third client)", s == 0, st(s))
    r = nlm.cmd("test %s %s ex 600 10" % (H, O))
    m = re.match(r"CONFLICT client=smb:(\d+)\.", r)
    check("nlm: TEST [600,+10) names the smbd process holding it", m is not None, r)
    if m:
        os.kill(int(m.group(1)), signal.SIGKILL)
        t0 = time.monotonic()
        ok = False
        for _ in range(100):
            time.sleep(0.05)
            if nlm.cmd("test %s %s ex 600 10" % (H, O)) == "OK":
                ok = True
                break
        check("nlm: the lock of the killed smbd process is released", ok,
              "after %.0f ms" % ((time.monotonic() - t0) * 1000))
        d_cli = SmbClient(a.host, a.port, a.share, a.user, a.password)
        fd = d_cli.open(FNAME)
        s = smb_lock(fd, 600, 10, EX | FI)
        check("smb: another client gets [600,+10) after the kill", s == 0, st(s))
        fd.close()
        d_cli.disconnect()
    r = nlm.cmd("list")
    check("nlm: no lock left on the file", r == "LOCKS 0", r)
    nlm.close()

    failed = [n for n, ok in results if not ok]
    print("cross-protocol: %d passed, %d failed" % (len(results) - len(failed), len(failed)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
