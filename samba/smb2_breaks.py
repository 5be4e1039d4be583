"""SMB2 lease and oplock breaks for smbprotocol (PyPI) clients.

smbprotocol 1.17 cannot receive a message the server sends on its own: its receive thread looks the
message id up among its outstanding requests and dies on 0xFFFFFFFFFFFFFFFF, the id every SMB2 lease
and oplock break notification carries (MS-SMB2 3.3.4.6, 3.3.4.7). BreakConnection replaces that table
with one that answers such ids with a sink object: the notification is parsed and queued, and a
helper thread acknowledges it (when asked to, and when an ack is required), so the test sees each
break as the client saw it.

    conn = BreakConnection(uuid.uuid4(), host, port)   # instead of smbprotocol's Connection
    conn.connect(); ...                                # sessions, trees, opens as usual
    ctx = lease_context(key, R|H|W)                    # create context for Open.create()
    b = conn.breaks.get(timeout=5)                     # a Break (lease or oplock notification)
    conn.ack(b, new_state)                             # or conn.auto_ack = True / a callable
"""
import queue
import struct
import threading
import time

from smbprotocol.connection import Connection
from smbprotocol.create_contexts import (CreateContextName, SMB2CreateContextRequest,
                                         SMB2CreateRequestLeaseV2)
from smbprotocol.header import Commands
from smbprotocol.structure import BytesField, IntField, Structure

from collections import OrderedDict

UNSOLICITED = 0xFFFFFFFFFFFFFFFF
R, H, W = 0x01, 0x02, 0x04
ACK_REQUIRED = 0x01
OPLOCK_NONE, OPLOCK_II, OPLOCK_EXCLUSIVE, OPLOCK_BATCH, OPLOCK_LEASE = 0x00, 0x01, 0x08, 0x09, 0xFF


def state_str(s):
    return ("R" if s & R else "") + ("W" if s & W else "") + ("H" if s & H else "") or "none"


def oplock_str(level):
    return {0: "none", 1: "Level II", 8: "Exclusive", 9: "Batch", 0xFF: "lease"}.get(level, hex(level))


class Break:
    """One break notification as the client received it."""

    def __init__(self, body, t):
        self.t = t  # time.monotonic() at arrival
        size = struct.unpack_from("<H", body, 0)[0]
        if size == 44:  # SMB2 Lease Break Notification (2.2.23.2)
            self.kind = "lease"
            (_, self.new_epoch, self.flags, self.key, self.current, self.new, self.reason, _, _) = \
                struct.unpack_from("<HHI16sIIIII", body, 0)
            self.ack_required = bool(self.flags & ACK_REQUIRED)
        elif size == 24:  # SMB2 Oplock Break Notification (2.2.23.1)
            self.kind = "oplock"
            self.level = body[2]
            self.file_id = bytes(body[8:24])
            self.ack_required = True
        else:
            raise ValueError("unknown break notification (structure size %d)" % size)

    def __str__(self):
        if self.kind == "lease":
            return "lease break %s -> %s, epoch %d%s" % (state_str(self.current), state_str(self.new),
                                                         self.new_epoch,
                                                         ", ack required" if self.ack_required else "")
        return "oplock break to %s" % oplock_str(self.level)


class _LeaseBreakAck(Structure):
    """SMB2 Lease Break Acknowledgment (2.2.24.2)."""
    COMMAND = Commands.SMB2_OPLOCK_BREAK

    def __init__(self):
        self.fields = OrderedDict([
            ("structure_size", IntField(size=2, default=36)),
            ("reserved", IntField(size=2)),
            ("flags", IntField(size=4)),
            ("lease_key", BytesField(size=16)),
            ("lease_state", IntField(size=4)),
            ("lease_duration", IntField(size=8)),
        ])
        super().__init__()


class _OplockBreakAck(Structure):
    """SMB2 Oplock Break Acknowledgment (2.2.24.1)."""
    COMMAND = Commands.SMB2_OPLOCK_BREAK

    def __init__(self):
        self.fields = OrderedDict([
            ("structure_size", IntField(size=2, default=24)),
            ("oplock_level", IntField(size=1)),
            ("reserved", IntField(size=1)),
            ("reserved2", IntField(size=4)),
            ("file_id", BytesField(size=16)),
        ])
        super().__init__()


class _Reserved:
    def get_value(self):
        return 0


class _Sink:
    """Stands in for a Request in the receive thread; takes the header it is given."""

    def __init__(self, conn):
        self._conn = conn
        self.session_id = None
        self.async_id = None
        self.message = {"reserved": _Reserved()}
        self.response_event = threading.Event()
        self.response_event_lock = threading.Lock()

    @property
    def response(self):
        return None

    @response.setter
    def response(self, header):
        self._conn._notified(header)


class _Requests(dict):
    def __init__(self, conn):
        super().__init__()
        self._conn = conn

    def __missing__(self, message_id):
        if message_id == UNSOLICITED:
            return _Sink(self._conn)
        raise KeyError(message_id)


class BreakConnection(Connection):
    """smbprotocol Connection that receives break notifications.

    breaks:   queue of Break, in arrival order (every one, acknowledged or not)
    auto_ack: False (the test acks with ack()), True (ack at the break-to state), or a callable
              f(Break) -> state/level to ack with, or None for no ack (a client that never answers)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outstanding_requests = _Requests(self)
        self.breaks = queue.Queue()
        self.acks = []  # (Break, acked state or level, NTSTATUS of the response, time acked)
        self.auto_ack = False
        self.session = None  # set these two: smbd wants a session and a tree on the ack
        self.tree = None
        self._work = queue.Queue()
        self._t_ack = threading.Thread(target=self._ack_thread, daemon=True)
        self._t_ack.start()

    def _notified(self, header):
        if header["command"].get_value() != Commands.SMB2_OPLOCK_BREAK:
            return
        b = Break(header["data"].get_value(), time.monotonic())
        self.breaks.put(b)
        if self.auto_ack is not False and b.ack_required:
            self._work.put(b)  # never send from the receive thread: it must stay free for the answer

    def _ack_thread(self):
        while True:
            b = self._work.get()
            if b is None:
                return
            to = self.auto_ack(b) if callable(self.auto_ack) else (b.new if b.kind == "lease" else b.level)
            if to is not None:
                try:
                    self.ack(b, to)
                except Exception as e:  # noqa: BLE001 - report, keep the thread
                    print("    smb: ack failed: %s" % e, flush=True)

    def ack(self, b, state):
        """Acknowledges break b with a lease state (lease) or an oplock level (oplock)."""
        if b.kind == "lease":
            m = _LeaseBreakAck()
            m["lease_key"] = b.key
            m["lease_state"] = state
        else:
            m = _OplockBreakAck()
            m["oplock_level"] = state
            m["file_id"] = b.file_id
        sid = self.session.session_id if self.session is not None else None
        tid = self.tree.tree_connect_id if self.tree is not None else None
        req = self.send(m, sid=sid, tid=tid)
        resp = self.receive(req, wait=True)
        status = resp["status"].get_value()
        self.acks.append((b, state, status, time.monotonic()))
        return status

    def disconnect(self, close=True):
        self._work.put(None)
        return super().disconnect(close)


def lease_context(key, state, epoch=0, parent=None):
    """A v2 lease request create context (SMB 3.x): key 16 bytes, state R|H|W bits."""
    lease = SMB2CreateRequestLeaseV2()
    lease["lease_key"] = key
    lease["lease_state"] = state
    lease["lease_flags"] = 0x04 if parent is not None else 0
    lease["parent_lease_key"] = parent if parent is not None else b"\x00" * 16
    lease["epoch"] = struct.pack("<H", epoch)
    ctx = SMB2CreateContextRequest()
    ctx["buffer_name"] = CreateContextName.SMB2_CREATE_REQUEST_LEASE_V2
    ctx["buffer_data"] = lease
    return ctx


def granted_lease(contexts):
    """(state, epoch) of the lease in an Open.create() answer, or None."""
    for c in contexts or []:
        if hasattr(c, "fields") and "lease_state" in c.fields:
            st = c["lease_state"].get_value()
            ep = c["epoch"].get_value() if "epoch" in c.fields else 0
            return int(st), int(ep) if not isinstance(ep, bytes) else struct.unpack("<H", ep)[0]
    return None
