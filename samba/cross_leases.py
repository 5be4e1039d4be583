#!/usr/bin/env python3
"""Leases and oplocks across protocols: SMB2 clients that see their own breaks (samba/smb2_breaks.py)
against smbd, with the NFS/NLM side (samba/cross_protocol.c, shared unilock database) as the breaker.

  cross_leases.py --mode stock ...    the facts of stock smbd 4.17 (SMB clients only): a v2 RWH lease
                                      is broken to RH by another client's open for write, which completes
                                      only after the ack; that client's write breaks RH to none (ack
                                      required) without waiting; with --oplocks (a server without
                                      leases): Batch -> Level II on the second open, Level II -> none on
                                      its write
  cross_leases.py --mode unilock ...  the cross-protocol checks through vfs_unilock (see README)

Exit status 0 when every check passed.
"""
import argparse
import os
import struct
import sys
import threading
import time
import uuid

from smbprotocol.exceptions import SMBResponseException
from smbprotocol.file_info import FileAttributes
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                              ImpersonationLevel, Open, RequestedOplockLevel, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from smb2_breaks import (H, OPLOCK_BATCH, OPLOCK_II, OPLOCK_NONE, R, W, BreakConnection,
                         granted_lease, lease_context, oplock_str, state_str)

results = []


def check(name, ok, detail=""):
    results.append((name, ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    return ok


class Client:
    def __init__(self, a, name):
        self.name = name
        self.conn = BreakConnection(uuid.uuid4(), a.host, a.port)
        self.conn.connect()
        self.session = Session(self.conn, a.user, a.password, require_encryption=False)
        self.session.connect()
        self.conn.session = self.session
        self.tree = TreeConnect(self.session, r"\\%s\%s" % (a.host, a.share))
        self.tree.connect()
        self.conn.tree = self.tree

    def open(self, fname, lease=None, oplock=None, create=False, write=True, send=True):
        f = Open(self.tree, fname)
        ctx = [lease_context(*lease)] if lease is not None else None
        level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE
        if lease is not None:
            level = RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE
        elif oplock is not None:
            level = oplock
        access = FilePipePrinterAccessMask.GENERIC_READ
        if write:
            access |= FilePipePrinterAccessMask.GENERIC_WRITE
        r = f.create(ImpersonationLevel.Impersonation, access, FileAttributes.FILE_ATTRIBUTE_NORMAL,
                     ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                     CreateDisposition.FILE_OPEN_IF if create else CreateDisposition.FILE_OPEN,
                     CreateOptions.FILE_NON_DIRECTORY_FILE, create_contexts=ctx, oplock_level=level,
                     send=send)
        if not send:
            return f, r
        f.granted = granted_lease(r)
        return f

    def close(self):
        try:
            self.conn.disconnect(close=True)
        except Exception:  # noqa: BLE001
            pass


class Pending:
    """An SMB2 CREATE sent now whose answer a thread waits for."""

    def __init__(self, cl, fname, **kw):
        self.done = threading.Event()
        self.status = None
        self.t = None
        self.f, (msg, recv) = cl.open(fname, send=False, **kw)
        request = cl.conn.send(msg, cl.session.session_id, cl.tree.tree_connect_id)
        self.t0 = time.monotonic()

        def wait():
            try:
                self.contexts = recv(request)
                self.status = 0
            except SMBResponseException as e:
                self.status = e.status
            except Exception as e:  # noqa: BLE001
                self.status = repr(e)
            self.t = time.monotonic()
            self.done.set()

        threading.Thread(target=wait, daemon=True).start()

    def wait(self, timeout):
        return self.done.wait(timeout)


def next_break(cl, timeout=5.0):
    try:
        return cl.conn.breaks.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty
        return None


def no_break(cl, timeout=0.5):
    return next_break(cl, timeout) is None


def key(n):
    return struct.pack("<QQ", 0x756e696c6f636b00 + n, n)


def stock_leases(a):
    print("== stock smbd, leases on: what an SMB2 client sees of its breaks", flush=True)
    fname = "facts-lease.dat"
    c1, c2 = Client(a, "c1"), Client(a, "c2")
    f1 = c1.open(fname, lease=(key(1), R | H | W), create=True)
    check("c1: open with a v2 RWH lease request gets RWH", f1.granted and f1.granted[0] == R | H | W,
          "granted %s" % (f1.granted and state_str(f1.granted[0])))
    epoch0 = f1.granted[1] if f1.granted else 0
    p = Pending(c2, fname)
    b = next_break(c1)
    check("c1: receives a lease break RWH -> RH, ack required, epoch + 1",
          b is not None and b.kind == "lease" and b.current == R | H | W and b.new == R | H and
          b.ack_required and b.new_epoch == epoch0 + 1, str(b))
    time.sleep(0.5)
    check("c2: its open for write waits for c1's ack", not p.done.is_set())
    t_ack = time.monotonic()
    st = c1.conn.ack(b, R | H) if b else -1
    check("c1: ack RH answered", st == 0, "0x%08x" % st if isinstance(st, int) else str(st))
    p.wait(5)
    check("c2: its open completes after the ack", p.status == 0 and p.t >= t_ack,
          "status %s, %.0f ms after the ack" % (p.status, ((p.t or 0) - t_ack) * 1000))
    t0 = time.monotonic()
    p.f.write(b"y" * 10, 0)
    t_w = time.monotonic() - t0
    b = next_break(c1)
    check("c2: its write breaks c1's RH to none (ack required) without waiting for the ack",
          b is not None and b.current == R | H and b.new == 0 and b.ack_required and t_w < 1.0,
          "%s; the write took %.0f ms" % (b, t_w * 1000))
    if b:
        c1.conn.ack(b, 0)
    p.f.close()
    f1.close()
    c1.close()
    c2.close()


def stock_oplocks(a):
    print("== stock smbd, leases off: oplocks", flush=True)
    fname = "facts-oplock.dat"
    c1, c2 = Client(a, "c1"), Client(a, "c2")
    c1.conn.auto_ack = True
    f1 = c1.open(fname, oplock=OPLOCK_BATCH, create=True)
    check("c1: Batch oplock granted", f1.oplock_level == OPLOCK_BATCH, oplock_str(f1.oplock_level))
    f2 = c2.open(fname)
    b = next_break(c1)
    check("c1: the second open breaks Batch to Level II", b is not None and b.kind == "oplock" and
          b.level == OPLOCK_II, str(b))
    f2.write(b"z" * 10, 0)
    b = next_break(c1)
    check("c1: c2's write breaks Level II to none", b is not None and b.level == OPLOCK_NONE, str(b))
    f2.close()
    f1.close()
    c1.close()
    c2.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["stock", "stock-oplocks", "unilock", "unilock-oplocks"], required=True)
    ap.add_argument("--nlm")
    ap.add_argument("--db")
    ap.add_argument("--share-dir")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--share", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--fast-share", help="a share whose unilock:break timeout is short (check 1b)")
    ap.add_argument("--fast-db")
    ap.add_argument("--fast-share-dir")
    ap.add_argument("--fast-timeout", type=int, default=2000)
    ap.add_argument("--dh-share", help="a share where durable handles work (check 4)")
    ap.add_argument("--dh-share-dir")
    a = ap.parse_args()
    if a.mode == "stock":
        stock_leases(a)
    elif a.mode == "stock-oplocks":
        stock_oplocks(a)
    else:
        import cross_leases_unilock
        cross_leases_unilock.run(a, sys.modules[__name__])
    failed = [n for n, ok in results if not ok]
    print("cross-leases (%s): %d passed, %d failed" % (a.mode, len(results) - len(failed), len(failed)),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
