/*
 * demo_leases.c: act 2 of the demo, leases across protocols.
 *
 * Two SMB clients lease one file; an NLM client's byte-range lock breaks their leases; an NFSv4 client
 * asks for a read delegation next to an SMB write-caching lease. The lock manager runs in event-loop
 * mode (UNILOCK_EVENTS_LOOP): the library starts no thread, and the server itself polls
 * unilock_event_fd() and calls unilock_process_events(), which is where the break notifications
 * (the SMB2 LEASE_BREAK it would send) and the "retry your open" completions arrive.
 */

#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "demo.h"

#define RWH (UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H)
#define RH (UNILOCK_LEASE_R | UNILOCK_LEASE_H)

#define SMB2_OPEN 0x00000000003b0001ull   /* client B's open (persistent file id) */
#define SMB_OPEN_NOTES 0x00000000002a0002ull /* client A's open of the second file */
#define NFS4_OPEN 0x17ull                  /* the NFSv4 server's id for the client's open (stateid) */
#define CREATE_TOKEN 0x1001ull             /* SMB2 MessageId of client B's CREATE, echoed on completion */

/* SMB2 lease keys: GUIDs chosen by the clients, one per file and client. */
static const uint8_t KA[16] = {0xa1, 0x1c, 0xe0, 0x00, 0x5e, 0xed, 0x40, 0x01,
                               0x8a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01};
static const uint8_t KB[16] = {0xb0, 0xb0, 0x00, 0x00, 0x5e, 0xed, 0x40, 0x01,
                               0x8b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02};
static const uint8_t KA2[16] = {0xa1, 0x1c, 0xe0, 0x00, 0x5e, 0xed, 0x40, 0x02,
                                0x8a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};

static unilock_open_req lease_req(const uint8_t key[16], uint32_t state)
{
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = state;
    q.lease_version = 2;
    q.epoch = 0; /* a new lease: the client sends epoch 0 */
    memcpy(q.lease_key, key, 16);
    return q;
}

/* An SMB2 CREATE with a lease request; `wait` NULL when the requester cannot wait. */
static unilock_status smb_open(const char *who, const char *client, uint64_t open_id, const unilock_open_req *q,
                               const unilock_wait *wait, unilock_open_result *res)
{
    printf("  %s OPEN open 0x%" PRIx64 ", lease %s, key %s (v%u, epoch %u)%s\n", who, open_id,
           lease_str(q->requested), key_str(q->lease_key), (unsigned)q->lease_version, (unsigned)q->epoch,
           wait ? ", can wait" : "");
    memset(res, 0, sizeof *res);
    return unilock_file_open(ul, fid, FID_LEN, client, open_id, q, wait, res);
}

/* Prints and checks the lease an open got. */
static void granted(const unilock_open_result *res, uint32_t state, uint32_t epoch)
{
    say("granted %s, epoch %u%s", lease_str(res->state), (unsigned)res->epoch,
        res->breaking ? " (a break of this lease is in progress)" : "");
    if (res->state != state || res->epoch != epoch || res->breaking)
        unexpected("expected %s, epoch %u, no break in progress", lease_str(state), (unsigned)epoch);
}

static unilock_status ack(const char *who, const char *client, const uint8_t key[16], uint32_t state)
{
    printf("  %s LEASE_BREAK_ACK key %s, %s\n", who, key_str(key), lease_str(state));
    return unilock_lease_ack(ul, fid, FID_LEN, client, key, state);
}

static void story_leases(void)
{
    static uint8_t report[FID_LEN], notes[FID_LEN];
    static uint8_t nlm_owner_bytes[4];
    struct client nlm;
    unilock_open_req q;
    unilock_open_result res;
    unilock_wait wait = {CREATE_TOKEN, NULL, 0}; /* no timeout of its own: the break timeout bounds it */
    uint64_t request_id;

    if (make_file("report.docx", report) != 0 || make_file("notes.txt", notes) != 0) {
        failures++;
        return;
    }
    name_key(KA, "KA");
    name_key(KB, "KB");
    name_key(KA2, "KA2");
    client_init(&nlm, "NLM", "NFS", UNILOCK_POSIX, NLM_CLIENT, nlm_owner_bytes, sizeof nlm_owner_bytes, NLM_SVID,
                0);
    printf("clients:\n");
    printf("  SMB A  \"%s\": lease key KA on report.docx, KA2 on notes.txt\n", SMB_CLIENT);
    printf("  SMB B  \"%s\": lease key KB on report.docx\n", SMB2_CLIENT);
    printf("  NLM    \"%s\": POSIX locks, owner = svid %u\n", NLM_CLIENT, NLM_SVID);
    printf("  NFSv4  \"%s\": asks for delegations\n", NFS4_CLIENT);

    fid = report;
    step("2.1 SMB client A opens report.docx with a read/write/handle-caching lease (SMB2 CREATE)");
    q = lease_req(KA, RWH);
    if (answer(smb_open("SMB A", SMB_CLIENT, SMB_OPEN, &q, &wait, &res), UNILOCK_OK))
        granted(&res, RWH, 1);
    pump(0);
    expect_n_events(0);

    step("2.2 SMB client B opens the same file with its own key: A caches writes, so its W must go first");
    q = lease_req(KB, RWH);
    request_id = 0;
    if (answer(smb_open("SMB B", SMB2_CLIENT, SMB2_OPEN, &q, &wait, &res), UNILOCK_PENDING)) {
        request_id = res.request_id;
        say("request %" PRIu64 ": nothing is recorded yet; B's CREATE waits (SMB2 STATUS_PENDING)", request_id);
    }
    pump(1000);
    expect_n_events(1);
    expect_break(0, SMB_CLIENT, KA, RWH, RH, 2, 1);
    say("the server sends A an SMB2 LEASE_BREAK_NOTIFICATION (RWH -> RH, epoch 2)");

    step("2.3 A writes back its cached data and acknowledges the break (SMB2 LEASE_BREAK_ACK)");
    answer(ack("SMB A", SMB_CLIENT, KA, RH), UNILOCK_OK);
    pump(1000);
    expect_n_events(1);
    expect_breaks_done(0, request_id, CREATE_TOKEN);

    step("2.4 The server retries B's open: R and H are shared, W is never held by two keys");
    q = lease_req(KB, RWH);
    if (answer(smb_open("SMB B", SMB2_CLIENT, SMB2_OPEN, &q, &wait, &res), UNILOCK_OK))
        granted(&res, RH, 1);
    pump(0);
    expect_n_events(0);

    step("2.5 NLM client host42 locks bytes 0-99 (NLM LOCK): a byte-range lock breaks every other lease to none");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 0, 100, NULL), UNILOCK_OK);
    say("granted at once: no lease had W, so there are no cached writes to wait for");
    pump(1000);
    expect_n_events(2);
    /* One break per lease; their order is not specified. */
    if (n_events == 2 && strcmp(events[0].client, SMB_CLIENT) != 0) {
        struct demo_event t = events[0];
        events[0] = events[1];
        events[1] = t;
    }
    expect_break(0, SMB_CLIENT, KA, RH, 0, 3, 1);
    expect_break(1, SMB2_CLIENT, KB, RH, 0, 2, 1);
    say("both leases lose H as well, so both clients acknowledge (the lock did not wait for them)");
    answer(ack("SMB A", SMB_CLIENT, KA, 0), UNILOCK_OK);
    answer(ack("SMB B", SMB2_CLIENT, KB, 0), UNILOCK_OK);
    pump(0);
    expect_n_events(0);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100});

    step("2.6 B opens the file again asking only for read caching: its lease (still known, at none) gets R");
    q = lease_req(KB, UNILOCK_LEASE_R);
    if (answer(smb_open("SMB B", SMB2_CLIENT, SMB2_OPEN + 1, &q, &wait, &res), UNILOCK_OK))
        granted(&res, UNILOCK_LEASE_R, 3); /* an upgrade (none -> R): epoch + 1 */

    step("2.7 host42 locks bytes 100-199: a lease holding only R breaks to none at once, with no ack");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 100, 100, NULL), UNILOCK_OK);
    pump(1000);
    expect_n_events(1);
    expect_break(0, SMB2_CLIENT, KB, UNILOCK_LEASE_R, 0, 4, 0);
    say("the break already took effect; an acknowledgement finds no break in progress");
    answer(ack("SMB B", SMB2_CLIENT, KB, 0), UNILOCK_E_NO_BREAK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 200});

    fid = notes;
    step("2.8 An NFSv4 read delegation next to an SMB write-caching lease (notes.txt)");
    q = lease_req(KA2, RWH);
    if (answer(smb_open("SMB A", SMB_CLIENT, SMB_OPEN_NOTES, &q, &wait, &res), UNILOCK_OK))
        granted(&res, RWH, 1);
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_DELEGATION;
    q.requested = UNILOCK_DELEG_READ;
    printf("  NFSv4 OPEN for reading, with a read delegation (OPEN4_SHARE_ACCESS_READ); an NFS server "
           "cannot wait (wait = NULL)\n");
    memset(&res, 0, sizeof res);
    /* The open itself breaks SMB A's W like any open; NFS cannot wait, so it gets NFS4ERR_DELAY. */
    answer(unilock_file_open(ul, fid, FID_LEN, NFS4_CLIENT, NFS4_OPEN, &q, NULL, &res), UNILOCK_E_BUSY);
    say("busy: the NFS server answers NFS4ERR_DELAY; the delegation request never waits and is not granted");
    pump(1);
    expect_n_events(1);
    printf("  SMB A acknowledges the break to RH\n");
    answer(unilock_lease_ack(ul, fid, FID_LEN, SMB_CLIENT, KA2, RH), UNILOCK_OK);
    printf("  NFSv4 OPEN again (the client retried)\n");
    memset(&res, 0, sizeof res);
    if (answer(unilock_file_open(ul, fid, FID_LEN, NFS4_CLIENT, NFS4_OPEN, &q, NULL, &res), UNILOCK_OK)) {
        say("delegation: %s (no other client can write now; only ever a try, granted whole)", lease_str(res.state));
        if (res.state != UNILOCK_DELEG_READ)
            unexpected("expected a read delegation, got %s", lease_str(res.state));
    }
    pump(0);
    expect_n_events(0);
    printf("  NFSv4 CLOSE\n");
    answer(unilock_file_close(ul, fid, FID_LEN, NFS4_CLIENT, NFS4_OPEN), UNILOCK_OK);
}

void act_leases(void)
{
    unilock_config cfg;

    act("Act 2: leases across protocols, with the server's own event loop (UNILOCK_EVENTS_LOOP)");
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP; /* no library thread: the server polls unilock_event_fd() */
    if (open_manager(&cfg, &ul) != 0)
        return;
    printf("lock manager: in memory, event-loop mode, event fd %d, lease break timeout %" PRIu64 " ms\n",
           (int)unilock_event_fd(ul), cfg.lease_break_timeout_ms);
    story_leases();
    unilock_close(ul);
    ul = NULL;
}
