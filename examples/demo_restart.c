/*
 * demo_restart.c: act 3 of the demo, a crash and a restart.
 *
 * The lock manager keeps its state in an SQLite database (durability UNILOCK_DURABILITY_SYNC: whatever
 * a call reports granted is committed before it returns). A child process plays the server: it opens
 * the database, its NLM, NFSv4 and SMB clients take locks, a delegation and a lease, and once the
 * clients have been told, the child is killed with SIGKILL. The parent then plays the restarted server:
 * it reopens the database and finds a grace period with the clients that held state; new requests are
 * refused, reclaims of what existed succeed and reclaims of what did not are denied; the NFSv4 client
 * says it is done, but the NLM and SMB clients never do, so grace lasts until its deadline, which the
 * server's event loop waits for. Then what nobody reclaimed is released and reported, and a second
 * restart with only an NFSv4 client shows grace ending early.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "demo.h"

#define RH (UNILOCK_LEASE_R | UNILOCK_LEASE_H)

#define NLM77_CLIENT "nlm:host77"
#define NLM77_SVID 77u
#define NFS4_LOCK_OWNER 1u        /* the NFSv4 lock-owner (with the client id: its owner bytes) */
#define NFS4_OPEN_BEFORE 0x21ull  /* the NFSv4 open before the crash */
#define NFS4_OPEN_AFTER 0x31ull   /* the open CLAIM_PREVIOUS makes after it */
#define GRACE_MS 2000             /* grace period of the first restart, ms (the default is 90 s) */
#define STR_(x) #x
#define STR(x) STR_(x)

/* Client A's SMB2 lease key on ledger.dat. */
static const uint8_t KS[16] = {0xa1, 0x1c, 0xe0, 0x00, 0x5e, 0xed, 0x40, 0x04,
                               0x8a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04};

static char db_path[4200];
static uint8_t ledger[FID_LEN];
static uint8_t b42[4], b77[4], bnfs[8], bsmb[8], bsmb2[8];
static struct client host42, host77, nfs4, smb, smb2;

static unilock_config db_config(uint64_t grace_ms)
{
    unilock_config cfg;
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.db_path = db_path;
    cfg.durability = UNILOCK_DURABILITY_SYNC;
    cfg.grace_period_ms = grace_ms;
    return cfg;
}

static unilock_open_req smb_lease(void)
{
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = RH;
    q.lease_version = 2;
    memcpy(q.lease_key, KS, 16);
    return q;
}

static unilock_open_req read_delegation(uint32_t flags)
{
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_DELEGATION;
    q.requested = UNILOCK_DELEG_READ;
    q.flags = flags;
    return q;
}

/* An SMB2 CREATE with the lease (also its durable reconnect after the restart). */
static void smb_open(uint32_t epoch, unilock_status want, uint32_t state)
{
    unilock_open_req q = smb_lease();
    unilock_open_result res;
    unilock_wait wait = {0x2001, NULL, 0};
    q.epoch = epoch;
    printf("  SMB OPEN open 0x%" PRIx64 ", lease %s, key %s, epoch %u\n", (uint64_t)SMB_OPEN, lease_str(q.requested),
           key_str(KS), (unsigned)epoch);
    memset(&res, 0, sizeof res);
    if (answer(unilock_file_open(ul, fid, FID_LEN, SMB_CLIENT, SMB_OPEN, &q, &wait, &res), want) &&
        want == UNILOCK_OK) {
        say("lease %s, epoch %u", lease_str(res.state), (unsigned)res.epoch);
        if (res.state != state || res.epoch != 1)
            unexpected("lease %s, epoch %u; expected %s, epoch 1", lease_str(res.state), (unsigned)res.epoch,
                       lease_str(state));
    }
}

/* An NFSv4 OPEN for reading with a read delegation; `flags` UNILOCK_OPEN_RECLAIM for CLAIM_PREVIOUS. */
static uint8_t deleg_key[16]; /* the key unilock made for the delegation (break events name it) */

static void nfs4_open(uint64_t open_id, uint32_t flags, unilock_status want, uint32_t state)
{
    unilock_open_req q = read_delegation(flags);
    unilock_open_result res;
    printf("  NFSv4 OPEN %s, read delegation\n", flags & UNILOCK_OPEN_RECLAIM ? "CLAIM_PREVIOUS" : "CLAIM_NULL");
    memset(&res, 0, sizeof res);
    if (answer(unilock_file_open(ul, fid, FID_LEN, NFS4_CLIENT, open_id, &q, NULL, &res), want) &&
        want == UNILOCK_OK) {
        say("delegation %s", lease_str(res.state));
        memcpy(deleg_key, res.lease_key, 16);
        name_key(deleg_key, "D");
        if (res.state != state)
            unexpected("delegation %s, expected %s", lease_str(res.state), lease_str(state));
    }
}

static void grace(uint32_t active, uint64_t max_remaining, uint64_t expected, uint64_t done)
{
    unilock_grace_info gi;
    unilock_status st;
    memset(&gi, 0, sizeof gi);
    printf("  unilock_grace_status\n");
    st = unilock_grace_status(ul, &gi);
    if (!answer(st, UNILOCK_OK))
        return;
    if (gi.active)
        say("grace active, %" PRIu64 " ms left; expected clients %" PRIu64 ", done %" PRIu64, gi.remaining_ms,
            gi.expected_clients, gi.done_clients);
    else
        say("grace not active (remaining %" PRIu64 " ms)", gi.remaining_ms);
    check_u64("grace_info.active", gi.active, active);
    if (active) {
        check_u64("grace_info.expected_clients", gi.expected_clients, expected);
        check_u64("grace_info.done_clients", gi.done_clients, done);
    }
    if (active ? gi.remaining_ms == 0 || gi.remaining_ms > max_remaining : gi.remaining_ms != 0)
        unexpected("grace_info.remaining_ms is %" PRIu64 ", expected %s", gi.remaining_ms,
                   active ? "more than 0 and at most the grace period" : "0");
}

static void reclaim_complete(const char *client)
{
    printf("  NFSv4 RECLAIM_COMPLETE (unilock_reclaim_complete \"%s\")\n", client);
    answer(unilock_reclaim_complete(ul, client), UNILOCK_OK);
}

/* ------------------------------------------------------------------------------------------------ */
/* Phase A, in a child process that is killed once its clients were told what they got              */

static void crash_child(int report_fd)
{
    unilock_config cfg = db_config(GRACE_MS);
    char done;

    failures = 0; /* this process's own count; the parent learns it through the pipe */
    if (open_manager(&cfg, &ul) != 0)
        _exit(1);
    answer(do_lock(&host42, UNILOCK_EXCLUSIVE, 0, 100, NULL), UNILOCK_OK);
    answer(do_lock(&nfs4, UNILOCK_SHARED, 100, 100, NULL), UNILOCK_OK);
    answer(do_lock(&host77, UNILOCK_SHARED, 300, 100, NULL), UNILOCK_OK);
    nfs4_open(NFS4_OPEN_BEFORE, 0, UNILOCK_OK, UNILOCK_DELEG_READ);
    smb_open(0, UNILOCK_OK, RH); /* a new lease: epoch 0 + 1 */
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100},
          {NFS4_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 100, 100},
          {NLM77_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 300, 100});
    /* Every answer above went back to the clients: tell the parent, then wait to be killed. The handle
     * is never closed and nothing is released. */
    fflush(stdout);
    done = failures == 0 ? 'A' : 'F';
    if (write(report_fd, &done, 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

/* Runs phase A in a child and kills it; returns 0 when the child got every expected answer. */
static int crash(void)
{
    int pipefd[2];
    pid_t pid;
    char got = 0;
    int status;

    if (pipe(pipefd) != 0) {
        unexpected("pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        unexpected("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(pipefd[0]);
        crash_child(pipefd[1]);
    }
    close(pipefd[1]);
    if (read(pipefd[0], &got, 1) != 1 || got != 'A') {
        unexpected("%s", "the child server did not get the expected answers");
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        close(pipefd[0]);
        return -1;
    }
    close(pipefd[0]);
    printf("  the server process crashes: kill(child, SIGKILL)\n");
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) != pid) {
        unexpected("waitpid: %s", strerror(errno));
        return -1;
    }
    if (WIFSIGNALED(status))
        say("waitpid: the child was killed by signal %d (SIGKILL); its handle was never closed",
            WTERMSIG(status));
    else
        unexpected("%s", "the child was not killed by a signal");
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */

static void story_restart(void)
{
    unilock_config cfg;

    snprintf(db_path, sizeof db_path, "%s/unilock.db", demo_dir);
    if (make_file("ledger.dat", ledger) != 0) {
        failures++;
        return;
    }
    fid = ledger;
    name_key(KS, "KS");
    client_init(&host42, "NLM host42", "NFS", UNILOCK_POSIX, NLM_CLIENT, b42, sizeof b42, NLM_SVID, 0);
    client_init(&host77, "NLM host77", "NFS", UNILOCK_POSIX, NLM77_CLIENT, b77, sizeof b77, NLM77_SVID, 0);
    client_init(&nfs4, "NFSv4", "NFS", UNILOCK_POSIX, NFS4_CLIENT, bnfs, sizeof bnfs, NFS4_LOCK_OWNER, 0);
    client_init(&smb, "SMB", "SMB", UNILOCK_WINDOWS, SMB_CLIENT, bsmb, sizeof bsmb, SMB_OPEN, SMB_OPEN);
    client_init(&smb2, "SMB B", "SMB", UNILOCK_WINDOWS, SMB2_CLIENT, bsmb2, sizeof bsmb2, 0x3b0001, 0x3b0001);
    printf("database %s, durability UNILOCK_DURABILITY_SYNC, event-loop mode\n", db_path);
    printf("clients: NLM \"%s\" (svid %u) and \"%s\" (svid %u), NFSv4 \"%s\" (lock-owner %u),\n"
           "         SMB A \"%s\" (lease key KS), SMB B \"%s\"\n",
           NLM_CLIENT, NLM_SVID, NLM77_CLIENT, NLM77_SVID, NFS4_CLIENT, NFS4_LOCK_OWNER, SMB_CLIENT, SMB2_CLIENT);

    /* A */
    step("3.1 A server process (a forked child) opens the database; its clients take locks, a delegation "
         "and a lease");
    if (crash() != 0)
        return;

    /* B */
    step("3.2 The server restarts on the same database, grace period " STR(GRACE_MS) " ms (default 90 s)");
    cfg = db_config(GRACE_MS);
    if (open_manager(&cfg, &ul) != 0)
        return;
    grace(1, GRACE_MS, 4, 0);
    say("the expected clients are the four that held state: host42, host77, the NFSv4 client and SMB A");

    step("3.3 During grace only reclaims are allowed: a new lock and a new lease are refused");
    answer(do_lock(&smb2, UNILOCK_EXCLUSIVE, 500, 10, NULL), UNILOCK_E_GRACE);
    {
        static const uint8_t KB[16] = {0xb0, 0xb0, 0x00, 0x00, 0x5e, 0xed, 0x40, 0x05,
                                       0x8b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05};
        unilock_open_req q = smb_lease();
        unilock_open_result res;
        unilock_wait wait = {0x2002, NULL, 0};
        memcpy(q.lease_key, KB, 16);
        name_key(KB, "KB");
        printf("  SMB B OPEN, lease RH, key KB (a key nobody held before the restart)\n");
        answer(unilock_file_open(ul, fid, FID_LEN, SMB2_CLIENT, 0x3b0001, &q, &wait, &res), UNILOCK_E_GRACE);
    }

    step("3.4 NLM host42 reclaims its lock (NLM LOCK with the reclaim flag, after the server's SM_NOTIFY)");
    answer(do_reclaim(&host42, UNILOCK_EXCLUSIVE, 0, 100), UNILOCK_OK);
    say("and a lock it never had:");
    answer(do_reclaim(&host42, UNILOCK_EXCLUSIVE, 5000, 100), UNILOCK_E_RECLAIM_DENIED);

    step("3.5 The NFSv4 client reclaims its lock and its delegation (CLAIM_PREVIOUS), then says it is done");
    answer(do_reclaim(&nfs4, UNILOCK_SHARED, 100, 100), UNILOCK_OK);
    nfs4_open(NFS4_OPEN_AFTER, UNILOCK_OPEN_RECLAIM, UNILOCK_OK, UNILOCK_DELEG_READ);
    reclaim_complete(NFS4_CLIENT);

    step("3.6 SMB client A reconnects its durable handle: a lease request with a key it held is its reclaim");
    smb_open(1, UNILOCK_OK, RH); /* the client sends the epoch it last saw */
    grace(1, GRACE_MS, 4, 1);
    say("still in grace: NLM and SMB clients never say they are done, and host77 has not come back");
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100},
          {NFS4_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 100, 100});

    step("3.7 The server's loop sleeps in poll() on the event fd until the grace deadline");
    pump_until_event(10000);
    expect_n_events(1);
    expect_grace_released(0, NLM77_CLIENT, 1, 0);
    grace(0, 0, 0, 0);

    step("3.8 After grace: a reclaim is refused, and the bytes host77 had are free for new locks");
    answer(do_reclaim(&host77, UNILOCK_SHARED, 300, 100), UNILOCK_E_NO_GRACE);
    answer(do_lock(&smb2, UNILOCK_EXCLUSIVE, 300, 100, NULL), UNILOCK_OK);
    say("as in act 2, a byte-range lock breaks read caching: SMB A's lease and the NFSv4 read delegation");
    pump(1000);
    expect_n_events(2);
    if (n_events == 2 && strcmp(events[0].client, SMB_CLIENT) != 0) { /* their order is not specified */
        struct demo_event t = events[0];
        events[0] = events[1];
        events[1] = t;
    }
    expect_break(0, SMB_CLIENT, KS, RH, 0, 2, 1);
    expect_break(1, NFS4_CLIENT, deleg_key, UNILOCK_DELEG_READ, 0, NO_EPOCH, 1);
    if (n_events == 2 && events[1].ev.lease_kind != UNILOCK_LEASE_KIND_DELEGATION)
        unexpected("%s", "the second break is not of a delegation");
    say("the NFSv4 server sends CB_RECALL (a delegation is always returned); the SMB server a LEASE_BREAK,");
    say("which A acknowledges");
    printf("  SMB A LEASE_BREAK_ACK key KS, none\n");
    answer(unilock_lease_ack(ul, fid, FID_LEN, SMB_CLIENT, KS, 0), UNILOCK_OK);
    printf("  NFSv4 DELEGRETURN (unilock_lease_release)\n");
    answer(unilock_lease_release(ul, fid, FID_LEN, NFS4_CLIENT, deleg_key), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100},
          {NFS4_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 100, 100},
          {SMB2_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 300, 100});

    /* C */
    step("3.9 Everyone but the NFSv4 client lets go; then the server stops without releasing its state");
    {
        size_t released = SIZE_MAX;
        printf("  NLM host42 UNLOCK [0, 100)\n");
        answer(unilock_unlock(ul, fid, FID_LEN, &host42.owner, UNILOCK_POSIX, 0, 100), UNILOCK_OK);
        printf("  SMB B CLOSE open 0x3b0001 (unilock_release_open)\n");
        if (answer(unilock_release_open(ul, fid, FID_LEN, &smb2.owner, &released), UNILOCK_OK))
            check_u64("locks released", released, 1);
        printf("  SMB A CLOSE open 0x%" PRIx64 " (unilock_file_close: the lease goes with its last open)\n",
               (uint64_t)SMB_OPEN);
        answer(unilock_file_close(ul, fid, FID_LEN, SMB_CLIENT, SMB_OPEN), UNILOCK_OK);
    }
    TABLE({NFS4_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 100, 100});
    printf("  unilock_close: the database keeps the NFSv4 client's lock\n");
    unilock_close(ul);
    ul = NULL;

    step("3.10 Restart with the default 90 s grace period: the only expected client is done at once");
    cfg = db_config(90000);
    if (open_manager(&cfg, &ul) != 0)
        return;
    grace(1, 90000, 1, 0);
    answer(do_reclaim(&nfs4, UNILOCK_SHARED, 100, 100), UNILOCK_OK);
    reclaim_complete(NFS4_CLIENT);
    grace(0, 0, 0, 0);
    say("grace ended early: every expected client is done, nothing was left to release");
    pump(0);
    expect_n_events(0);
    answer(do_lock(&host42, UNILOCK_EXCLUSIVE, 0, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100},
          {NFS4_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 100, 100});
    unilock_close(ul);
    ul = NULL;
}

void act_restart(void)
{
    act("Act 3: a crash and a restart from the SQLite database: grace period and reclaim");
    story_restart();
}
