#!/usr/bin/env python3
"""SMB2 lock timing through smbd, stock against vfs_unilock (issue 17's smbd goal).

For N = 1, 2, 4 (--clients) concurrent clients (separate processes, each with its own SMB2
connection, session and tree connect, its own file and one open), each client sends SMB2 LOCK
(exclusive, fail-immediately) + UNLOCK round trips on its open for --seconds after --warmup seconds,
against every target: stock smbd (a share without the module) and the module's shares. The order of
the targets alternates from round to round (--rounds) so drift on this shared machine hits all of
them alike. Per row: total pairs/s of the N clients, the mean and p99 latency of one pair (LOCK
response + UNLOCK response), CPU per pair of the clients and of their smbd processes, and whether
those smbd processes mapped unilock's shared-memory table (/dev/shm/unilock-*).

Timing is not a test: the exit status is 1 only when a client got an unexpected status (a lock
refused, a connection lost) or a target's smbd was not running, never because of speed.

Usage: timing.py --user U --password P --target LABEL=SHARE@PORT:SMBDPID ... [--stock LABEL]
                 [--clients 1,2,4] [--rounds 3] [--seconds 3] [--warmup 1] [--json FILE]
The first target is the stock baseline unless --stock names another.
"""
import argparse
import array
import json
import multiprocessing
import os
import subprocess
import sys
import time
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.file_info import FileAttributes
from smbprotocol.open import (CreateDisposition, CreateOptions, FilePipePrinterAccessMask,
                              ImpersonationLevel, LockFlags, Open, ShareAccess)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cross_protocol import elem  # noqa: E402  (one SMB2 lock element builder for samba/)

HOST = "127.0.0.1"
EX_FI = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
UN = LockFlags.SMB2_LOCKFLAG_UNLOCK
TICK = os.sysconf("SC_CLK_TCK")
SHM_PREFIX = "/dev/shm/unilock-"


def connect(port, share, user, password):
    conn = Connection(uuid.uuid4(), HOST, port)
    conn.connect()
    session = Session(conn, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, r"\\%s\%s" % (HOST, share))
    tree.connect()
    return conn, session, tree


def client(idx, mode, port, share, user, password, fname, warmup, seconds, ready, go, results, profile=False):
    """One client process: connect, open its file, wait for go, warm up, measure, report."""
    try:
        conn, session, tree = connect(port, share, user, password)
        if mode == "echo":
            def op():
                conn.echo(sid=session.session_id)
        else:
            f = Open(tree, fname)
            f.create(ImpersonationLevel.Impersonation,
                     FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                     FileAttributes.FILE_ATTRIBUTE_NORMAL,
                     ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
                     CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_NON_DIRECTORY_FILE)
            lock_el = [elem(0, 100, EX_FI)]
            unlock_el = [elem(0, 100, UN)]

            def op():
                f.lock(lock_el)  # raises SMBResponseException on any status but success
                f.lock(unlock_el)
        ready.put(idx)
        go.wait()
        end = time.perf_counter() + warmup
        while time.perf_counter() < end:
            op()
        samples = array.array("d")
        clock = time.perf_counter
        prof = None
        if profile and idx == 0:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        c0 = time.process_time()
        t0 = clock()
        end = t0 + seconds
        a = t0
        while a < end:
            op()
            b = clock()
            samples.append(b - a)
            a = b
        elapsed = a - t0
        cpu = time.process_time() - c0
        report = None
        if prof is not None:
            import io
            import pstats
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
            report = buf.getvalue()
        results.put((idx, "ok", {"n": len(samples), "elapsed": elapsed, "cpu": cpu,
                                 "samples": samples.tobytes(), "profile": report}))
        try:
            if mode != "echo":
                f.close()
            conn.disconnect(close=True)
        except Exception:  # noqa: BLE001 - measured already; the teardown is not timed
            pass
    except SMBResponseException as e:
        results.put((idx, "error", "unexpected SMB2 status 0x%08x (%s)" % (e.status, e)))
    except Exception as e:  # noqa: BLE001 - any failure of a client is reported, not hidden
        results.put((idx, "error", "%s: %s" % (type(e).__name__, e)))


def smbd_children(master):
    """The client-serving children of the smbd whose pid is master (pid -> comm)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as fh:
                st = fh.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) != master:
            continue
        if any(w in comm for w in ("notifyd", "cleanupd", "scavenger")):
            continue
        out[int(d)] = comm
    return out


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as fh:
            st = fh.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def shm_mapping(pid):
    """The /dev/shm/unilock-* file pid maps, or None."""
    try:
        with open("/proc/%d/maps" % pid) as fh:
            for line in fh:
                i = line.find(SHM_PREFIX)
                if i >= 0:
                    return line[i:].split()[0]
    except OSError:
        pass
    return None


def run_once(ctx, target, n, mode, args, rnd):
    """N clients against target for one measurement. Returns the row's raw figures."""
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = []
    for i in range(n):
        fname = "timing-%s-%d-%d.dat" % (mode, rnd, 0 if args.one_file else i)
        p = ctx.Process(target=client, args=(i, mode, target["port"], target["share"], args.user,
                                             args.password, fname, args.warmup, args.seconds,
                                             ready, go, results, args.profile))
        p.start()
        procs.append(p)
    errors = []
    got = 0
    deadline = time.monotonic() + 60
    while got < n and time.monotonic() < deadline:
        try:
            ready.get(timeout=0.5)
            got += 1
        except Exception:  # noqa: BLE001 - queue.Empty: poll for clients that failed to connect
            while not results.empty():
                idx, st, detail = results.get()
                errors.append("client %d: %s" % (idx, detail))
            if errors:
                break
    if got < n and not errors:
        errors.append("only %d of %d clients connected within 60 s" % (got, n))
    row = {"target": target["label"], "clients": n, "round": rnd, "mode": mode}
    if not errors:
        go.set()
        time.sleep(args.warmup)
        kids = smbd_children(target["pid"])
        t0 = {pid: cpu_ticks(pid) for pid in kids}
        perf = None
        if args.strace and rnd == 0 and kids:
            # The system calls of this row's smbd processes (strace slows them: counts, not time).
            name = "%s-%d-%s" % (mode, n, "".join(c if c.isalnum() else "_" for c in target["label"]))
            row["strace_out"] = os.path.join(args.strace, name + ".txt")
            cmd = ["timeout", "-s", "INT", "%.2f" % (args.seconds * 0.8), "strace", "-c", "-f", "-o",
                   row["strace_out"]]
            for pid in kids:
                cmd += ["-p", str(pid)]
            perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif args.perf and rnd == 0 and kids:
            # Where the smbd processes of this row spend their CPU, once per row (first round).
            name = "%s-%d-%s" % (mode, n, "".join(c if c.isalnum() else "_" for c in target["label"]))
            row["perf_data"] = os.path.join(args.perf, name + ".data")
            perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "2000", "-o", row["perf_data"],
                                     "-p", ",".join(str(p) for p in kids), "--", "sleep",
                                     "%.2f" % (args.seconds * 0.8)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(args.seconds * 0.5)
        maps = {pid: shm_mapping(pid) for pid in kids}
        time.sleep(args.seconds * 0.5)
        t1 = {pid: cpu_ticks(pid) for pid in kids}
        if perf is not None:
            perf.wait()
        smbd_cpu = sum(t1[p] - t0[p] for p in kids if t0[p] is not None and t1[p] is not None) / TICK
        per = []
        while len(per) + len(errors) < n:
            try:
                idx, st, detail = results.get(timeout=args.warmup + args.seconds + 30)
            except Exception:  # noqa: BLE001 - queue.Empty
                errors.append("a client did not report within %d s" % (args.warmup + args.seconds + 30))
                break
            if st == "ok":
                per.append(detail)
                if detail.get("profile"):
                    print("timing: profile of client 0 (%s, %d client(s), %s):\n%s" %
                          (target["label"], n, mode, detail["profile"]), flush=True)
            else:
                errors.append("client %d: %s" % (idx, detail))
        if not errors:
            samples = array.array("d")
            for d in per:
                s = array.array("d")
                s.frombytes(d["samples"])
                samples.extend(s)
            pairs = sum(d["n"] for d in per)
            row.update({
                "pairs": pairs,
                "pairs_per_s": sum(d["n"] / d["elapsed"] for d in per),
                "samples": samples,
                "client_cpu_s": sum(d["cpu"] for d in per),
                "smbd_cpu_s": smbd_cpu,
                "smbd_procs": len(kids),
                "smbd_shm": sorted({m for m in maps.values() if m}),
                "smbd_procs_mapping_shm": sum(1 for m in maps.values() if m),
            })
    for p in procs:
        p.join(timeout=15)
        if p.is_alive():
            p.kill()
            p.join()
    row["errors"] = errors
    return row


def pct(sorted_s, q):
    if not sorted_s:
        return float("nan")
    return sorted_s[min(len(sorted_s) - 1, int(q * len(sorted_s)))]


def rounded(v):
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, dict):
        return {k: rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [rounded(x) for x in v]
    return v


def median(xs):
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2


def summarise(rows):
    """Merges the rounds of one (target, clients) into one figure."""
    samples = sorted(x for r in rows for x in r["samples"])
    pairs = sum(r["pairs"] for r in rows)
    return {
        "pairs_per_s": median([r["pairs_per_s"] for r in rows]),
        "per_round_pairs_per_s": [r["pairs_per_s"] for r in rows],
        "mean_us": 1e6 * sum(samples) / len(samples),
        "per_round_mean_us": [1e6 * sum(r["samples"]) / len(r["samples"]) for r in rows],
        "p50_us": 1e6 * pct(samples, 0.50),
        "p99_us": 1e6 * pct(samples, 0.99),
        "pairs": pairs,
        "client_cpu_us_per_pair": 1e6 * sum(r["client_cpu_s"] for r in rows) / pairs,
        "smbd_cpu_us_per_pair": 1e6 * sum(r["smbd_cpu_s"] for r in rows) / pairs,
        "smbd_procs_mapping_shm": sum(r["smbd_procs_mapping_shm"] for r in rows),
        "smbd_procs": sum(r["smbd_procs"] for r in rows),
        "shm_mappings": sorted({m for r in rows for m in r["smbd_shm"]}),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--target", action="append", required=True,
                    help="LABEL=SHARE@PORT:SMBDPID (the first is stock smbd unless --stock)")
    ap.add_argument("--stock", help="the label of the stock target")
    ap.add_argument("--clients", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--perf", metavar="DIR",
                    help="perf record the smbd processes of every row in round 1 into DIR and print "
                         "their CPU by shared object (perf report --sort dso)")
    ap.add_argument("--strace", metavar="DIR",
                    help="strace -c the smbd processes of every row in round 1 into DIR and print their "
                         "system calls per pair (per two writev, smbd's two responses)")
    ap.add_argument("--one-file", action="store_true",
                    help="every client of a row on one file: their locks conflict and the run must fail "
                         "(a check of the failure path)")
    ap.add_argument("--profile", action="store_true",
                    help="profile client 0 of every row (cProfile, main thread) and print the top functions")
    args = ap.parse_args()

    targets = []
    for t in args.target:
        label, rest = t.split("=", 1)
        share, rest = rest.split("@", 1)
        port, pid = rest.split(":", 1)
        targets.append({"label": label, "share": share, "port": int(port), "pid": int(pid)})
    stock = args.stock or targets[0]["label"]
    if stock not in [t["label"] for t in targets]:
        sys.exit("timing: --stock %s is not a target" % stock)
    for t in targets:
        if not os.path.exists("/proc/%d" % t["pid"]):
            sys.exit("timing: FAIL: the smbd of %s (pid %d) is not running" % (t["label"], t["pid"]))
    counts = [int(c) for c in args.clients.split(",")]
    ctx = multiprocessing.get_context("fork")

    print("timing: SMB2 LOCK (exclusive) + UNLOCK round trips on one open per client, %d round(s) of "
          "%.1f s per row after %.1f s of warm-up, target order alternating per round" %
          (args.rounds, args.seconds, args.warmup), flush=True)
    raw = []
    errors = []
    echo_target = next(t for t in targets if t["label"] == stock)
    for rnd in range(args.rounds):
        order = targets if rnd % 2 == 0 else list(reversed(targets))
        for n in counts:
            for t in order:
                row = run_once(ctx, t, n, "lock", args, rnd)
                raw.append(row)
                if row["errors"]:
                    errors += ["%s, %d client(s): %s" % (t["label"], n, e) for e in row["errors"]]
                    print("timing: FAIL %s, %d client(s): %s" % (t["label"], n, "; ".join(row["errors"])),
                          flush=True)
                else:
                    print("timing: round %d, %d client(s), %-28s %9.0f pairs/s" %
                          (rnd + 1, n, t["label"], row["pairs_per_s"]), flush=True)
        # The client's own share of a round trip: SMB2 ECHO (no file system, no lock code in smbd).
        row = run_once(ctx, echo_target, 1, "echo", args, rnd)
        raw.append(row)
        if row["errors"]:
            errors += ["ECHO: %s" % e for e in row["errors"]]

    if errors:
        for e in errors:
            print("timing: FAIL: %s" % e)
        print("timing: FAIL: %d client error(s); no figures" % len(errors))
        sys.exit(1)

    fig = {}
    for t in targets:
        for n in counts:
            fig[(t["label"], n)] = summarise([r for r in raw if r["mode"] == "lock" and
                                              r["target"] == t["label"] and r["clients"] == n])
    echo = summarise([r for r in raw if r["mode"] == "echo"])

    def ratios(label, n, key):
        """Module / stock per round (the two measured minutes apart at most), and their median."""
        rs = [m / s for m, s in zip(fig[(label, n)][key], fig[(stock, n)][key])]
        return median(rs), rs

    def table_of(label):
        f = fig[(label, counts[0])]
        if f["smbd_procs_mapping_shm"]:
            return "shm %s (%d of %d smbd procs)" % (",".join(os.path.basename(m) for m in f["shm_mappings"]),
                                                     f["smbd_procs_mapping_shm"], f["smbd_procs"])
        return "no /dev/shm mapping"

    print()
    print("timing: load average %.2f %.2f %.2f at the end (%d CPUs). pairs/s: the N clients' total, median "
          "of the rounds; vs stock: median of the per-round ratios; mean and p99: every pair of every round; "
          "CPU: per pair, the clients' (process time, loopback sends included) and their smbd processes'."
          % (os.getloadavg() + (os.cpu_count(),)))
    print("%-7s %-30s %12s %7s %9s %9s %7s %10s %10s" %
          ("clients", "target", "pairs/s", "vs", "mean us", "p99 us", "vs", "client CPU", "smbd CPU"))
    print("%-7s %-30s %12s %7s %9s %9s %7s %10s %10s" %
          ("", "", "(total)", "stock", "per pair", "", "stock", "us/pair", "us/pair"))
    for n in counts:
        s = fig[(stock, n)]
        for t in targets:
            f = fig[(t["label"], n)]
            is_stock = t["label"] == stock
            print("%-7d %-30s %12.0f %7s %9.1f %9.1f %7s %10.1f %10.1f" % (
                n, t["label"], f["pairs_per_s"],
                "" if is_stock else "%.3fx" % ratios(t["label"], n, "per_round_pairs_per_s")[0],
                f["mean_us"], f["p99_us"],
                "" if is_stock else "%.3fx" % ratios(t["label"], n, "per_round_mean_us")[0],
                f["client_cpu_us_per_pair"], f["smbd_cpu_us_per_pair"]))
    s1 = fig[(stock, counts[0])]
    print()
    print("ECHO round trip, 1 client, %s: mean %.1f us, p99 %.1f us; client CPU %.1f us per ECHO. "
          "A pair is 2 round trips: 2 x ECHO = %.0f%% of the stock pair's %.1f us (the client, the "
          "loopback and smbd's dispatch, no lock code)." % (
              stock, echo["mean_us"], echo["p99_us"], echo["client_cpu_us_per_pair"],
              100 * 2 * echo["mean_us"] / s1["mean_us"], s1["mean_us"]))
    print("Client CPU per stock pair at 1 client: %.1f us of %.1f us (%.0f%%)." % (
        s1["client_cpu_us_per_pair"], s1["mean_us"], 100 * s1["client_cpu_us_per_pair"] / s1["mean_us"]))
    for t in targets:
        if t["label"] == stock:
            continue
        print("lock table of %s: %s" % (t["label"], table_of(t["label"])))
        mapped = fig[(t["label"], counts[0])]["smbd_procs_mapping_shm"] > 0
        if ("shm" in t["label"].split() and not mapped) or ("sqlite" in t["label"].split() and mapped):
            print("timing: WARNING: %s did not run on the table its label says (see smbd's log)" % t["label"])

    if args.perf:
        for r in raw:
            if r.get("perf_data") and os.path.exists(r["perf_data"]):
                rep = subprocess.run(["perf", "report", "-i", r["perf_data"], "--stdio", "--no-children",
                                      "--sort", "dso", "-g", "none", "--percent-limit", "1"],
                                     capture_output=True, text=True).stdout
                lines = [x for x in rep.splitlines() if x.strip() and not x.startswith("#")]
                print("perf, smbd CPU by shared object, %s, %d client(s), %s: %s" % (
                    r["target"], r["clients"], r["mode"],
                    "; ".join(" ".join(x.split()) for x in lines[:8])))

    if args.strace:
        for r in raw:
            if r.get("strace_out") and os.path.exists(r["strace_out"]):
                calls = {}
                with open(r["strace_out"]) as fh:
                    for line in fh:
                        f = line.split()
                        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
                            calls[f[-1]] = int(f[3])
                resp = calls.get("writev", 0) + calls.get("sendmsg", 0)
                if resp:
                    top = sorted(calls.items(), key=lambda kv: -kv[1])[:12]
                    print("strace, smbd system calls per pair, %s, %d client(s), %s: %s" % (
                        r["target"], r["clients"], r["mode"],
                        " ".join("%s %.1f" % (k, 2.0 * v / resp) for k, v in top)))

    goals = []
    print()
    print("goals (issue 17, through smbd):")
    for t in targets:
        if t["label"] == stock:
            continue
        if 1 in counts:
            m, s = fig[(t["label"], 1)], fig[(stock, 1)]
            r, rs = ratios(t["label"], 1, "per_round_mean_us")
            met = r <= 1.05
            goals.append({"target": t["label"], "clients": 1, "goal": "latency <= 1.05x stock",
                          "ratio": r, "per_round": rs, "module": m["mean_us"], "stock": s["mean_us"],
                          "met": met})
            print("  %-22s 1 client:  latency    %.3fx stock (%6.1f vs %6.1f us)     <= 1.05x: %-6s rounds: %s" % (
                t["label"], r, m["mean_us"], s["mean_us"], "met" if met else "MISSED",
                " ".join("%.2f" % x for x in rs)))
        for n in counts:
            if n == 1:
                continue
            m, s = fig[(t["label"], n)], fig[(stock, n)]
            r, rs = ratios(t["label"], n, "per_round_pairs_per_s")
            met = r >= 0.95
            goals.append({"target": t["label"], "clients": n, "goal": "throughput >= 0.95x stock",
                          "ratio": r, "per_round": rs, "module": m["pairs_per_s"], "stock": s["pairs_per_s"],
                          "met": met})
            print("  %-22s %d clients: throughput %.3fx stock (%6.0f vs %6.0f pairs/s) >= 0.95x: %-6s rounds: %s" % (
                t["label"], n, r, m["pairs_per_s"], s["pairs_per_s"], "met" if met else "MISSED",
                " ".join("%.2f" % x for x in rs)))

    if args.json:
        out = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": "%s, %d CPUs, load average %s" % (" ".join(os.uname()[i] for i in (0, 2, 4)),
                                                      os.cpu_count(), "%.2f %.2f %.2f" % os.getloadavg()),
            "settings": {"rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
                         "clients": counts, "stock": stock},
            "targets": [{k: t[k] for k in ("label", "share")} | {"lock_table": table_of(t["label"])
                                                                  if t["label"] != stock else "smbd"}
                        for t in targets],
            "rows": [dict(target=k[0], clients=k[1], **v) for k, v in fig.items()],
            "echo": echo,
            "goals": goals,
        }
        with open(args.json, "w") as fh:
            json.dump(rounded(out), fh, indent=1)
            fh.write("\n")
        print("timing: figures in %s" % args.json)


if __name__ == "__main__":
    main()
