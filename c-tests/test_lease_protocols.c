/* Leases, oplocks and delegations with cross-protocol breaks, from C (SPEC.md §4).
 * Cases follow smbtorture smb2.lease / smb2.oplock where the C API can express them. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <string.h>

#include "unilock.h"

#define MAXEV 32
struct rec {
    int n;
    unilock_event ev[MAXEV];
    char client[MAXEV][64];
};

static void record(void *ud, const unilock_event *e)
{
    struct rec *r = ud;
    if (r->n < MAXEV) {
        r->ev[r->n] = *e;
        strncpy(r->client[r->n], e->client ? e->client : "", 63);
        r->client[r->n][63] = 0;
        r->n++;
    }
}

static const uint8_t F[] = "lease-file";
#define FL (sizeof F - 1)
static const uint8_t K1[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
static const uint8_t K2[16] = { 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
#define RWH (UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H)
#define RH (UNILOCK_LEASE_R | UNILOCK_LEASE_H)

static unilock *open_ul(struct rec *r, uint64_t timeout_ms)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.event_fn = record;
    cfg.event_user_data = r;
    if (timeout_ms)
        cfg.lease_break_timeout_ms = timeout_ms;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_OK);
    memset(r, 0, sizeof *r);
    return ul;
}

static void pump(unilock *ul)
{
    size_t n;
    assert_int_equal(unilock_process_events(ul, &n), UNILOCK_OK);
}

static unilock_open_req lease_req(const uint8_t key[16], uint32_t state)
{
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = state;
    q.lease_version = 2;
    memcpy(q.lease_key, key, 16);
    return q;
}

static void test_rwh_then_other_key_waits_for_ack(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    unilock_open_req q1 = lease_req(K1, RWH), q2 = lease_req(K2, RWH);
    unilock_open_result res;
    unilock_wait w = { 99, &r, 0 };
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 1, &q1, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, RWH);
    assert_int_equal(res.epoch, 1);
    /* key2 opens: key1 breaks to RH and the open waits for the ack. */
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &q2, &w, &res), UNILOCK_PENDING);
    uint64_t wait_id = res.request_id;
    pump(ul);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
    assert_string_equal(r.client[0], "smb:c1");
    assert_memory_equal(r.ev[0].lease_key, K1, 16);
    assert_int_equal(r.ev[0].lease_state, RWH);
    assert_int_equal(r.ev[0].break_to, RH);
    assert_int_equal(r.ev[0].epoch, 2);
    assert_int_equal(r.ev[0].ack_required, 1);
    assert_int_equal(r.ev[0].lease_kind, UNILOCK_LEASE_KIND_LEASE);
    /* A same-key open during the break succeeds and reports the break in progress. */
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 3, &q1, &w, &res), UNILOCK_OK);
    assert_int_equal(res.breaking, 1);
    assert_int_equal(res.state, RWH);
    /* An NFS client that cannot wait gets BUSY. */
    unilock_open_req plain;
    unilock_open_req_init(&plain);
    assert_int_equal(unilock_file_open(ul, F, FL, "nfs4:9", 7, &plain, NULL, &res), UNILOCK_E_BUSY);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, RH), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
    assert_int_equal(r.ev[1].request_id, wait_id);
    assert_int_equal(r.ev[1].token, 99);
    /* The retried open gets RH: W is never held by two keys. */
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &q2, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, RH);
    unilock_close(ul);
}

static void test_bad_acks(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    unilock_open_req q1 = lease_req(K1, RWH);
    unilock_open_result res;
    unilock_wait w = { 1, NULL, 0 };
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 1, &q1, &w, &res), UNILOCK_OK);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, UNILOCK_LEASE_R), UNILOCK_E_NO_BREAK);
    unilock_open_req plain;
    unilock_open_req_init(&plain);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &plain, &w, &res), UNILOCK_PENDING);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K2, UNILOCK_LEASE_R), UNILOCK_E_NOT_FOUND);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c2", K1, UNILOCK_LEASE_R), UNILOCK_E_NOT_FOUND);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, RWH), UNILOCK_E_BAD_ACK);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, 0x08), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, UNILOCK_LEASE_R), UNILOCK_OK);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, UNILOCK_LEASE_R), UNILOCK_E_NO_BREAK);
    assert_int_equal(unilock_lease_ack(ul, F, FL, NULL, K1, 0), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", NULL, 0), UNILOCK_E_INVALID);
    /* Invalid requests. */
    unilock_open_req bad = lease_req(K2, 0x09);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c3", 3, &bad, &w, &res), UNILOCK_E_INVALID);
    bad = lease_req(K2, RWH);
    bad.lease_kind = 42;
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c3", 3, &bad, &w, &res), UNILOCK_E_INVALID);
    bad = lease_req(K2, UNILOCK_LEASE_H | UNILOCK_LEASE_W); /* no R: granted none, not an error */
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c3", 3, &bad, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, 0);
    /* A key that leases one file may not lease another. */
    static const uint8_t G[] = "other-file";
    assert_int_equal(unilock_file_open(ul, G, sizeof G - 1, "smb:c1", 5, &q1, &w, &res), UNILOCK_E_INVALID);
    assert_int_equal(unilock_file_close(ul, F, FL, "smb:c1", 77), UNILOCK_E_NOT_FOUND);
    unilock_close(ul);
}

static void test_timeout_revokes_and_waiter_proceeds(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 40);
    unilock_open_req q1 = lease_req(K1, RWH);
    unilock_open_result res;
    unilock_wait w = { 5, NULL, 0 };
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 1, &q1, &w, &res), UNILOCK_OK);
    unilock_open_req q2 = lease_req(K2, RWH);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &q2, &w, &res), UNILOCK_PENDING);
    int fd = unilock_event_fd(ul);
    for (int i = 0; i < 300 && r.n < 3; i++) {
        struct pollfd p = { fd, POLLIN, 0 };
        int64_t t = unilock_next_timeout_ms(ul);
        poll(&p, 1, (t < 0 || t > 20) ? 20 : (int)t);
        pump(ul);
    }
    assert_int_equal(r.n, 3);
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
    assert_int_equal(r.ev[1].type, UNILOCK_EVENT_LEASE_REVOKED);
    assert_int_equal(r.ev[1].lease_state, RWH);
    assert_int_equal(r.ev[2].type, UNILOCK_EVENT_BREAKS_DONE);
    /* A late ack: no break in progress. The lease is at none. */
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, RH), UNILOCK_E_NO_BREAK);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &q2, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, RH);
    unilock_close(ul);
}

static void test_nlm_lock_breaks_smb_w_lease(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    unilock_open_req q1 = lease_req(K1, RWH);
    unilock_open_result res;
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 1, &q1, NULL, &res), UNILOCK_OK);
    unilock_owner nlm = { "nlm:host", (const uint8_t *)"svid", 4, 0 };
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    /* The SMB holder must flush its cached writes first: the lock says busy and the break starts. */
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &x, NULL), UNILOCK_E_BUSY);
    pump(ul);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
    assert_int_equal(r.ev[0].break_to, 0);
    assert_int_equal(r.ev[0].ack_required, 1);
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &x, NULL), UNILOCK_E_BUSY);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, 0), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &x, NULL), UNILOCK_OK);
    /* The SMB client's own lock through its own open never breaks its own lease. */
    unilock_open_req q2 = lease_req(K2, RWH);
    static const uint8_t G[] = "g";
    assert_int_equal(unilock_file_open(ul, G, 1, "smb:c2", 9, &q2, NULL, &res), UNILOCK_OK);
    assert_int_equal(res.state, RWH);
    unilock_owner smb = { "smb:c2", (const uint8_t *)"lctx", 4, 9 };
    unilock_lock_req wx = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, G, 1, &smb, &wx, NULL), UNILOCK_OK);
    unilock_close(ul);
}

static void test_nfs_write_breaks_r_leases_without_ack(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    unilock_open_req q1 = lease_req(K1, UNILOCK_LEASE_R), q2 = lease_req(K2, UNILOCK_LEASE_R);
    unilock_open_result res;
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c1", 1, &q1, NULL, &res), UNILOCK_OK);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c2", 2, &q2, NULL, &res), UNILOCK_OK);
    assert_int_equal(res.state, UNILOCK_LEASE_R);
    uint64_t id = 0;
    assert_int_equal(unilock_break_trigger(ul, F, FL, "nfs3:host", NULL, UNILOCK_TRIGGER_WRITE, NULL, &id), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r.ev[i].type, UNILOCK_EVENT_LEASE_BREAK);
        assert_int_equal(r.ev[i].break_to, 0);
        assert_int_equal(r.ev[i].ack_required, 0);
    }
    /* An ack of an R->none break: no break in progress. */
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:c1", K1, 0), UNILOCK_E_NO_BREAK);
    assert_int_equal(unilock_break_trigger(ul, F, FL, "nfs3:host", NULL, 99, NULL, &id), UNILOCK_E_INVALID);
    unilock_close(ul);
}

static void test_directory_lease_and_child_create(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    static const uint8_t D[] = "dir";
    unilock_open_req q = lease_req(K1, RWH);
    q.flags = UNILOCK_OPEN_DIRECTORY;
    unilock_open_result res;
    assert_int_equal(unilock_file_open(ul, D, 3, "smb:c1", 1, &q, NULL, &res), UNILOCK_OK);
    assert_int_equal(res.state, RH); /* directories never get W */
    /* A child created with the same parent key: no break. */
    assert_int_equal(unilock_break_trigger(ul, D, 3, "smb:c1", K1, UNILOCK_TRIGGER_DIR_CHANGE, NULL, NULL), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.n, 0);
    /* A child created with a different parent key breaks it to none, without waiting. */
    assert_int_equal(unilock_break_trigger(ul, D, 3, "smb:c2", K2, UNILOCK_TRIGGER_DIR_CHANGE, NULL, NULL), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].lease_state, RH);
    assert_int_equal(r.ev[0].break_to, 0);
    unilock_close(ul);
}

static void test_oplocks_and_delegations(void **s)
{
    (void)s;
    struct rec r;
    unilock *ul = open_ul(&r, 0);
    unilock_open_req b;
    unilock_open_req_init(&b);
    b.lease_kind = UNILOCK_LEASE_KIND_OPLOCK;
    b.requested = UNILOCK_OPLOCK_BATCH;
    unilock_open_result res;
    unilock_wait w = { 1, NULL, 0 };
    assert_int_equal(unilock_file_open(ul, F, FL, "smb1:c1", 1, &b, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, UNILOCK_OPLOCK_BATCH);
    uint8_t okey[16];
    memcpy(okey, res.lease_key, 16);
    unilock_open_req plain;
    unilock_open_req_init(&plain);
    /* Another open breaks the batch oplock to Level II. */
    assert_int_equal(unilock_file_open(ul, F, FL, "smb1:c2", 2, &plain, &w, &res), UNILOCK_PENDING);
    pump(ul);
    assert_int_equal(r.ev[0].lease_kind, UNILOCK_LEASE_KIND_OPLOCK);
    assert_int_equal(r.ev[0].break_to, UNILOCK_OPLOCK_LEVEL_II);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb1:c1", okey, UNILOCK_OPLOCK_LEVEL_II), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.ev[r.n - 1].type, UNILOCK_EVENT_BREAKS_DONE);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb1:c2", 2, &plain, &w, &res), UNILOCK_OK);
    /* A lease next to an oplock gets at most R. */
    unilock_open_req q = lease_req(K2, RWH);
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:c3", 3, &q, &w, &res), UNILOCK_OK);
    assert_int_equal(res.state, UNILOCK_LEASE_R);

    /* NFSv4 delegations: only a try, never pending; recall on a conflicting open from SMB. */
    static const uint8_t G[] = "deleg-file";
    unilock_open_req d;
    unilock_open_req_init(&d);
    d.lease_kind = UNILOCK_LEASE_KIND_DELEGATION;
    d.requested = UNILOCK_DELEG_WRITE;
    d.flags = UNILOCK_OPEN_WRITE;
    assert_int_equal(unilock_file_open(ul, G, sizeof G - 1, "nfs4:a", 1, &d, NULL, &res), UNILOCK_OK);
    assert_int_equal(res.state, UNILOCK_DELEG_WRITE);
    uint8_t dkey[16];
    memcpy(dkey, res.lease_key, 16);
    int before = r.n;
    /* Another NFS client's open (asking for a read delegation) recalls the write delegation like any
     * open; NFS cannot wait: E_BUSY (NFS4ERR_DELAY), and the delegation request never waits. */
    d.requested = UNILOCK_DELEG_READ;
    d.flags = 0;
    assert_int_equal(unilock_file_open(ul, G, sizeof G - 1, "nfs4:b", 2, &d, NULL, &res), UNILOCK_E_BUSY);
    /* An SMB open during the recall waits for it; nothing new is sent. */
    assert_int_equal(unilock_file_open(ul, G, sizeof G - 1, "smb:c9", 3, &plain, &w, &res), UNILOCK_PENDING);
    pump(ul);
    assert_int_equal(r.n, before + 1);
    assert_int_equal(r.ev[before].lease_kind, UNILOCK_LEASE_KIND_DELEGATION);
    assert_int_equal(r.ev[before].break_to, 0); /* a recall */
    assert_string_equal(r.client[before], "nfs4:a");
    assert_int_equal(unilock_lease_release(ul, G, sizeof G - 1, "nfs4:a", dkey), UNILOCK_OK);
    pump(ul);
    assert_int_equal(r.ev[r.n - 1].type, UNILOCK_EVENT_BREAKS_DONE);
    assert_int_equal(unilock_lease_release(ul, G, sizeof G - 1, "nfs4:a", dkey), UNILOCK_E_NOT_FOUND);
    unilock_close(ul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rwh_then_other_key_waits_for_ack),
        cmocka_unit_test(test_bad_acks),
        cmocka_unit_test(test_timeout_revokes_and_waiter_proceeds),
        cmocka_unit_test(test_nlm_lock_breaks_smb_w_lease),
        cmocka_unit_test(test_nfs_write_breaks_r_leases_without_ack),
        cmocka_unit_test(test_directory_lease_and_child_create),
        cmocka_unit_test(test_oplocks_and_delegations),
    };
    return cmocka_run_group_tests_name("lease", tests, NULL, NULL);
}
