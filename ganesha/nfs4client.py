"""A small NFSv4.0 client (RFC 7530) for the lock tests: ONC RPC over TCP, AUTH_SYS, and the COMPOUND
operations the tests need (SETCLIENTID, OPEN, OPEN_CONFIRM, LOCK, LOCKT, LOCKU, RELEASE_LOCKOWNER,
CLOSE, RENEW, READ, WRITE, DELEGRETURN, REMOVE), plus a callback server for CB_RECALL.

Written for this project from the RFC; standard library only. Each Client is one NFSv4 client (one
clientid, one TCP connection); several in one process are several clients to the server.
"""
import os
import socket
import struct
import threading
import time

NFS4_OK = 0
ERR = {
    1: "PERM", 2: "NOENT", 5: "IO", 13: "ACCESS", 17: "EXIST", 21: "ISDIR", 22: "INVAL",
    10001: "BADHANDLE", 10008: "DELAY", 10010: "DENIED", 10011: "EXPIRED", 10012: "LOCKED",
    10013: "GRACE", 10014: "FHEXPIRED", 10015: "SHARE_DENIED", 10018: "RESOURCE",
    10020: "NOFILEHANDLE", 10022: "STALE_CLIENTID", 10023: "STALE_STATEID",
    10024: "OLD_STATEID", 10025: "BAD_STATEID", 10026: "BAD_SEQID", 10028: "LOCK_RANGE",
    10033: "NO_GRACE", 10034: "RECLAIM_BAD", 10036: "BADXDR", 10037: "LOCKS_HELD",
    10038: "OPENMODE", 10042: "DEADLOCK", 10043: "LOCK_NOTSUPP", 10045: "SERVERFAULT",
    10039: "BADOWNER", 10040: "BADCHAR", 10041: "BADNAME", 10044: "OP_ILLEGAL",
}


def errname(st):
    return "OK" if st == 0 else ERR.get(st, str(st))


OP_CLOSE, OP_DELEGRETURN, OP_GETFH, OP_LOCK, OP_LOCKT, OP_LOCKU = 4, 8, 10, 12, 13, 14
OP_LOOKUP, OP_OPEN, OP_OPEN_CONFIRM, OP_PUTFH, OP_PUTROOTFH, OP_READ = 15, 18, 20, 22, 24, 25
OP_REMOVE, OP_RENEW, OP_SETCLIENTID, OP_SETCLIENTID_CONFIRM, OP_WRITE = 28, 30, 35, 36, 38
OP_RELEASE_LOCKOWNER = 39

READ_LT, WRITE_LT, READW_LT, WRITEW_LT = 1, 2, 3, 4
ACCESS_READ, ACCESS_WRITE, ACCESS_BOTH = 1, 2, 3
EOF = 0xFFFFFFFFFFFFFFFF
CB_PROG = 0x40000000


class Pack:
    def __init__(self):
        self.b = []

    def u32(self, v):
        self.b.append(struct.pack(">I", v & 0xFFFFFFFF))
        return self

    def u64(self, v):
        self.b.append(struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF))
        return self

    def fixed(self, data):
        self.b.append(data + b"\0" * ((4 - len(data) % 4) % 4))
        return self

    def opaque(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.u32(len(data))
        return self.fixed(data)

    def bytes(self):
        return b"".join(self.b)


class Unpack:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def u32(self):
        v = struct.unpack_from(">I", self.d, self.p)[0]
        self.p += 4
        return v

    def u64(self):
        v = struct.unpack_from(">Q", self.d, self.p)[0]
        self.p += 8
        return v

    def fixed(self, n):
        v = self.d[self.p:self.p + n]
        self.p += n + (4 - n % 4) % 4
        return v

    def opaque(self):
        return self.fixed(self.u32())


def stateid(p, sid):
    p.u32(sid[0]).fixed(sid[1])


def get_stateid(u):
    return (u.u32(), u.fixed(12))


class Denied:
    """LOCK4denied: the conflicting lock."""

    def __init__(self, u):
        self.offset = u.u64()
        self.length = u.u64()
        self.locktype = u.u32()
        self.clientid = u.u64()
        self.owner = u.opaque()

    def __repr__(self):
        return "denied(off=%d len=%s type=%d owner=%r)" % (
            self.offset, "EOF" if self.length == EOF else self.length, self.locktype, self.owner)


class Res:
    def __init__(self, status, **kw):
        self.status = status
        self.__dict__.update(kw)

    @property
    def name(self):
        return errname(self.status)


def _recv_record(sock):
    out = b""
    while True:
        hdr = _recv_n(sock, 4)
        n = struct.unpack(">I", hdr)[0]
        out += _recv_n(sock, n & 0x7FFFFFFF)
        if n & 0x80000000:
            return out


def _recv_n(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


class CallbackServer:
    """Answers the server's callback RPCs (CB_NULL, CB_COMPOUND with CB_RECALL) on 127.0.0.1."""

    def __init__(self, on_recall):
        self.on_recall = on_recall
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.recalls = []
        threading.Thread(target=self._accept, daemon=True).start()

    def raddr(self):
        return "127.0.0.1.%d.%d" % (self.port >> 8, self.port & 0xFF)

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            while True:
                msg = _recv_record(s)
                u = Unpack(msg)
                xid = u.u32()
                u.u32()  # CALL
                u.u32()  # rpcvers
                u.u32()  # prog
                u.u32()  # vers
                proc = u.u32()
                u.u32()
                u.opaque()  # cred
                u.u32()
                u.opaque()  # verf
                r = Pack().u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0)
                if proc == 1:
                    u.opaque()  # tag
                    u.u32()  # minorversion
                    u.u32()  # callback_ident
                    n = u.u32()
                    res = []
                    for _ in range(n):
                        op = u.u32()
                        if op == 4:  # CB_RECALL
                            sid = get_stateid(u)
                            truncate = u.u32()
                            fh = u.opaque()
                            self.recalls.append((sid, fh, time.time()))
                            res.append((op, 0))
                            threading.Thread(target=self.on_recall, args=(sid, fh),
                                             daemon=True).start()
                        else:
                            res.append((op, 10004))  # NOTSUPP
                            break
                    r.u32(res[-1][1] if res else 0).opaque(b"").u32(len(res))
                    for op, st in res:
                        r.u32(op).u32(st)
                data = r.bytes()
                s.sendall(struct.pack(">I", 0x80000000 | len(data)) + data)
        except (ConnectionError, OSError, struct.error):
            s.close()


class Client:
    """One NFSv4.0 client."""

    def __init__(self, port, name=None, host="127.0.0.1", callback=False, uid=0, gid=0):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.xid = int.from_bytes(os.urandom(4), "big")
        self.uid, self.gid = uid, gid
        self.name = name or "unilock-test-%s" % os.urandom(6).hex()
        self.lock = threading.Lock()
        self.cb = CallbackServer(self._recall) if callback else None
        self.delegs = {}  # fh -> stateid
        self.returned = []  # DELEGRETURN answers after recalls
        self.returned_at = []  # time.monotonic() of each of those answers
        self.clientid = None
        self.setclientid()

    # --- RPC --------------------------------------------------------------------------------------
    def rpc(self, proc, body):
        with self.lock:
            self.xid = (self.xid + 1) & 0xFFFFFFFF
            cred = Pack().u32(int(time.time())).opaque("unilock-test").u32(self.uid).u32(
                self.gid).u32(0).bytes()
            p = Pack().u32(self.xid).u32(0).u32(2).u32(100003).u32(4).u32(proc)
            p.u32(1).opaque(cred).u32(0).opaque(b"")
            data = p.bytes() + body
            self.sock.sendall(struct.pack(">I", 0x80000000 | len(data)) + data)
            while True:
                msg = _recv_record(self.sock)
                u = Unpack(msg)
                if u.u32() == self.xid:
                    break
        assert u.u32() == 1, "not a reply"
        if u.u32() != 0:
            raise RuntimeError("RPC denied")
        u.u32()
        u.opaque()
        acc = u.u32()
        if acc != 0:
            raise RuntimeError("RPC accept_stat %d" % acc)
        return u

    def compound(self, ops):
        """ops: list of (opcode, args-bytes). Returns (status, [(op, status, Unpack)])."""
        p = Pack().opaque(b"").u32(0).u32(len(ops))
        body = p.bytes() + b"".join(Pack().u32(op).bytes() + a for op, a in ops)
        u = self.rpc(1, body)
        status = u.u32()
        u.opaque()
        n = u.u32()
        return status, u, n

    def _one(self, pre, op, args, decode=None):
        """PUTFH-style prefix ops (status only) then one op whose result `decode` reads."""
        status, u, n = self.compound(pre + [(op, args)])
        for _ in range(len(pre)):
            if n == 0:
                return Res(status)
            n -= 1
            u.u32()
            st = u.u32()
            if st != 0:
                return Res(st)
            # prefix ops used here have no result body beyond the status (PUTFH, PUTROOTFH,
            # LOOKUP)
        if n == 0:
            return Res(status)
        u.u32()
        st = u.u32()
        kw = decode(u, st) if decode else {}
        return Res(st, **(kw or {}))

    # --- client id -----------------------------------------------------------------------------------
    def setclientid(self):
        verf = os.urandom(8)
        p = Pack().fixed(verf).opaque(self.name)
        if self.cb:
            p.u32(CB_PROG).opaque("tcp").opaque(self.cb.raddr())
        else:
            p.u32(CB_PROG).opaque("tcp").opaque("127.0.0.1.0.1")
        p.u32(1)

        def dec(u, st):
            if st == 0:
                return {"clientid": u.u64(), "confirm": u.fixed(8)}
        r = self._one([], OP_SETCLIENTID, p.bytes(), dec)
        if r.status != 0:
            raise RuntimeError("SETCLIENTID: %s" % r.name)
        r2 = self._one([], OP_SETCLIENTID_CONFIRM,
                       Pack().u64(r.clientid).fixed(r.confirm).bytes())
        if r2.status != 0:
            raise RuntimeError("SETCLIENTID_CONFIRM: %s" % r2.name)
        self.clientid = r.clientid

    def renew(self):
        return self._one([], OP_RENEW, Pack().u64(self.clientid).bytes())

    def close_connection(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # --- files ---------------------------------------------------------------------------------------
    def lookup_fh(self, path):
        ops = [(OP_PUTROOTFH, b"")] + [(OP_LOOKUP, Pack().opaque(c).bytes())
                                        for c in path.strip("/").split("/") if c]
        ops.append((OP_GETFH, b""))
        status, u, n = self.compound(ops)
        if status != 0:
            raise RuntimeError("LOOKUP %s: %s" % (path, errname(status)))
        for _ in range(n - 1):
            u.u32()
            u.u32()
        u.u32()
        u.u32()
        return u.opaque()

    def open(self, dirfh, name, owner, seqid=0, access=ACCESS_BOTH, create=True, prev_fh=None):
        """OPEN (CLAIM_NULL in dirfh, or CLAIM_PREVIOUS of prev_fh: a reclaim after a server
        restart) by `owner` (bytes); confirms it if the server asks. Returns Res with .stateid,
        .fh, .seqid (the next open seqid to use), .deleg (None or (type, stateid))."""
        p = Pack().u32(seqid).u32(access).u32(0).u64(self.clientid).opaque(owner)
        if prev_fh is not None:
            p.u32(0).u32(1).u32(0)  # NOCREATE, CLAIM_PREVIOUS, OPEN_DELEGATE_NONE
            ops = [(OP_PUTFH, Pack().opaque(prev_fh).bytes()), (OP_OPEN, p.bytes()),
                   (OP_GETFH, b"")]
            return self._open_result(ops, seqid)
        if create:
            # UNCHECKED4 with mode 0644 (FATTR4_MODE = 33: word 1, bit 1)
            p.u32(1).u32(0).u32(2).u32(0).u32(2).opaque(Pack().u32(0o644).bytes())
        else:
            p.u32(0)
        p.u32(0).opaque(name)  # CLAIM_NULL
        ops = [(OP_PUTFH, Pack().opaque(dirfh).bytes()), (OP_OPEN, p.bytes()), (OP_GETFH, b"")]
        return self._open_result(ops, seqid)

    def _open_result(self, ops, seqid):
        status, u, n = self.compound(ops)
        u.u32()
        st = u.u32()
        if st != 0 or n < 2:
            return Res(st or status)
        u.u32()
        st = u.u32()
        if st != 0:
            return Res(st)
        sid = get_stateid(u)
        u.u32(); u.u64(); u.u64()  # change_info4
        rflags = u.u32()
        nb = u.u32()
        for _ in range(nb):
            u.u32()
        dtype = u.u32()
        deleg = None
        if dtype in (1, 2):
            dsid = get_stateid(u)
            u.u32()  # recall
            if dtype == 2:
                lb = u.u32()
                if lb == 1:
                    u.u64()
                else:
                    u.u32(); u.u32()
            u.u32(); u.u32(); u.u32(); u.opaque()  # nfsace4
            deleg = (dtype, dsid)
        u.u32()
        u.u32()
        fh = u.opaque()
        seqid += 1
        if rflags & 2:  # OPEN4_RESULT_CONFIRM
            def dec(uu, s):
                if s == 0:
                    return {"stateid": get_stateid(uu)}
            r = self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_OPEN_CONFIRM,
                          Pack().u32(sid[0]).fixed(sid[1]).u32(seqid).bytes(), dec)
            if r.status != 0:
                return r
            sid = r.stateid
            seqid += 1
        if deleg:
            self.delegs[fh] = deleg[1]
        return Res(0, stateid=sid, fh=fh, seqid=seqid, deleg=deleg)

    def close(self, fh, seqid, sid):
        def dec(u, st):
            if st == 0:
                return {"stateid": get_stateid(u)}
        p = Pack().u32(seqid)
        stateid(p, sid)
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_CLOSE, p.bytes(), dec)

    def remove(self, dirfh, name):
        return self._one([(OP_PUTFH, Pack().opaque(dirfh).bytes())], OP_REMOVE,
                         Pack().opaque(name).bytes())

    def write(self, fh, sid, offset, data):
        def dec(u, st):
            if st == 0:
                return {"count": u.u32()}
        p = Pack()
        stateid(p, sid)
        p.u64(offset).u32(2).opaque(data)  # FILE_SYNC4
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_WRITE, p.bytes(), dec)

    def read(self, fh, sid, offset, count):
        def dec(u, st):
            if st == 0:
                u.u32()
                return {"data": u.opaque()}
        p = Pack()
        stateid(p, sid)
        p.u64(offset).u32(count)
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_READ, p.bytes(), dec)

    def delegreturn(self, fh, sid):
        p = Pack()
        stateid(p, sid)
        r = self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_DELEGRETURN, p.bytes())
        self.delegs.pop(fh, None)
        return r

    def _recall(self, sid, fh):
        time.sleep(0.05)
        r = self.delegreturn(fh, sid).name
        self.returned_at.append(time.monotonic())
        self.returned.append(r)

    # --- locks ---------------------------------------------------------------------------------------
    @staticmethod
    def _lock_dec(u, st):
        if st == 0:
            return {"stateid": get_stateid(u)}
        if st == 10010:
            return {"denied": Denied(u)}

    def lock_new(self, fh, locktype, offset, length, open_sid, open_seqid, lock_owner,
                 lock_seqid=0, reclaim=False):
        """LOCK with open_to_lock_owner4 (a new lock owner)."""
        p = Pack().u32(locktype).u32(1 if reclaim else 0).u64(offset).u64(length).u32(1)
        p.u32(open_seqid)
        stateid(p, open_sid)
        p.u32(lock_seqid).u64(self.clientid).opaque(lock_owner)
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_LOCK, p.bytes(),
                         self._lock_dec)

    def lock_exist(self, fh, locktype, offset, length, lock_sid, lock_seqid, reclaim=False):
        """LOCK with exist_lock_owner4."""
        p = Pack().u32(locktype).u32(1 if reclaim else 0).u64(offset).u64(length).u32(0)
        stateid(p, lock_sid)
        p.u32(lock_seqid)
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_LOCK, p.bytes(),
                         self._lock_dec)

    def lockt(self, fh, locktype, offset, length, owner, clientid=None):
        p = Pack().u32(locktype).u64(offset).u64(length).u64(
            self.clientid if clientid is None else clientid).opaque(owner)

        def dec(u, st):  # LOCKT4res: void on success
            if st == 10010:
                return {"denied": Denied(u)}
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_LOCKT, p.bytes(), dec)

    def locku(self, fh, locktype, seqid, lock_sid, offset, length):
        p = Pack().u32(locktype).u32(seqid)
        stateid(p, lock_sid)
        p.u64(offset).u64(length)
        return self._one([(OP_PUTFH, Pack().opaque(fh).bytes())], OP_LOCKU, p.bytes(),
                         self._lock_dec)

    def release_lockowner(self, owner):
        return self._one([], OP_RELEASE_LOCKOWNER,
                         Pack().u64(self.clientid).opaque(owner).bytes())


class LockOwner:
    """Bookkeeping for one lock owner on one open file: stateid and seqids."""

    def __init__(self, client, f, name):
        self.c, self.f, self.name = client, f, name
        self.sid = None
        self.seqid = 0

    def lock(self, locktype, offset, length, reclaim=False):
        if self.sid is None:
            r = self.c.lock_new(self.f.fh, locktype, offset, length, self.f.sid, self.f.seqid,
                                self.name, self.seqid, reclaim)
            # The open seqid advances with every seqid-mutating op on the open owner, success
            # or (most) failures alike.
            if r.status not in (10026, 10022, 10025, 10024, 22, 10036, 10001, 10020):
                self.f.seqid += 1
            if r.status == 0:
                self.sid = r.stateid
                self.seqid = 1
            return r
        r = self.c.lock_exist(self.f.fh, locktype, offset, length, self.sid, self.seqid, reclaim)
        if r.status not in (10026, 10022, 10025, 10024, 22, 10036, 10001, 10020):
            self.seqid += 1
        if r.status == 0:
            self.sid = r.stateid
        return r

    def test(self, locktype, offset, length):
        return self.c.lockt(self.f.fh, locktype, offset, length, self.name)

    def unlock(self, locktype, offset, length):
        r = self.c.locku(self.f.fh, locktype, self.seqid, self.sid, offset, length)
        if r.status not in (10026, 10022, 10025, 10024, 22, 10036, 10001, 10020):
            self.seqid += 1
        if r.status == 0:
            self.sid = r.stateid
        return r

    def release(self):
        return self.c.release_lockowner(self.name)


class OpenFile:
    """One open of a file by one open owner."""

    def __init__(self, client, dirfh, name, owner=None, access=ACCESS_BOTH, create=True,
                 seqid=0, prev_fh=None):
        self.c = client
        self.name = name
        self.dirfh = dirfh
        self.owner = owner or ("oo-" + os.urandom(4).hex()).encode()
        r = client.open(dirfh, name, self.owner, seqid, access, create, prev_fh)
        if r.status != 0:
            raise RuntimeError("OPEN %s: %s" % (name, r.name))
        self.sid, self.fh, self.seqid, self.deleg = r.stateid, r.fh, r.seqid, r.deleg

    def lock_owner(self, name=None):
        return LockOwner(self.c, self, name or ("lo-" + os.urandom(4).hex()).encode())

    def close(self):
        r = self.c.close(self.fh, self.seqid, self.sid)
        if r.status not in (10026, 10022, 10025, 10024, 22, 10036, 10001, 10020):
            self.seqid += 1
        return r
