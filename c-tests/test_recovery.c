/* Restart recovery from C (SPEC.md §5): a child takes locks and leases and is killed with SIGKILL;
 * the parent reopens the database, finds grace with the right expected clients, reclaims what the
 * child was told it had, is refused what it never had, and sees the rest released at grace end.
 * Also: corrupt and newer-version databases are refused and left untouched. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unilock.h"

static char dir[256];
static char db[300];

static const uint8_t F[] = "recovery-file";
#define FL (sizeof F - 1)
static const uint8_t KEY[16] = { 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9 };

struct rec {
    int n;
    unilock_event ev[16];
    char client[16][32];
};

static void record(void *ud, const unilock_event *e)
{
    struct rec *r = ud;
    if (r->n < 16) {
        r->ev[r->n] = *e;
        snprintf(r->client[r->n], 32, "%s", e->client ? e->client : "");
        r->n++;
    }
}

static unilock *open_db(struct rec *r, uint64_t grace_ms)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.event_fn = record;
    cfg.event_user_data = r;
    cfg.db_path = db;
    cfg.durability = UNILOCK_DURABILITY_SYNC;
    cfg.grace_period_ms = grace_ms;
    unilock_status st = unilock_open(&cfg, &ul);
    if (st != UNILOCK_OK)
        print_error("open: %s (%s)\n", unilock_strerror(st), unilock_errdetail());
    assert_int_equal(st, UNILOCK_OK);
    return ul;
}

static int setup(void **s)
{
    (void)s;
    snprintf(dir, sizeof dir, "%s/unilock-recovery-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(db, sizeof db, "%s/locks.db", dir);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void child(int wfd)
{
    struct rec r;
    memset(&r, 0, sizeof r);
    unilock *ul = open_db(&r, 0);
    unilock_owner nlm = { "nlm:host1", (const uint8_t *)"svid7", 5, 0 };
    unilock_owner smb = { "smb:guid1", (const uint8_t *)"lctx", 4, 42 };
    unilock_lock_req p = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100, 0 };
    unilock_lock_req w = { UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10, 0 };
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H;
    q.lease_version = 2;
    memcpy(q.lease_key, KEY, 16);
    unilock_open_result res;
    /* Each grant is reported to the "client" (the parent) only after the call returned. */
    if (unilock_lock(ul, F, FL, &nlm, &p, NULL) == UNILOCK_OK && write(wfd, "L", 1) != 1)
        _exit(2);
    if (unilock_lock(ul, F, FL, &smb, &w, NULL) == UNILOCK_OK && write(wfd, "W", 1) != 1)
        _exit(2);
    if (unilock_file_open(ul, F, FL, "smb:guid1", 42, &q, NULL, &res) == UNILOCK_OK && res.state == q.requested &&
        write(wfd, "E", 1) != 1)
        _exit(2);
    for (;;)
        pause(); /* killed mid-work, handle never closed */
}

static void test_sigkill_then_grace_and_reclaim(void **s)
{
    (void)s;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child(pfd[1]);
    }
    close(pfd[1]);
    char got[4] = { 0 };
    size_t n = 0;
    while (n < 3) {
        ssize_t k = read(pfd[0], got + n, 3 - n);
        assert_true(k > 0);
        n += (size_t)k;
    }
    assert_string_equal(got, "LWE");
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    close(pfd[0]);

    struct rec r;
    memset(&r, 0, sizeof r);
    unilock *ul = open_db(&r, 60000);
    unilock_grace_info gi;
    assert_int_equal(unilock_grace_status(ul, &gi), UNILOCK_OK);
    assert_int_equal(gi.active, 1);
    assert_int_equal(gi.expected_clients, 2);
    assert_true(gi.remaining_ms > 0 && gi.remaining_ms <= 60000);

    unilock_owner nlm = { "nlm:host1", (const uint8_t *)"svid7", 5, 0 };
    unilock_owner other = { "nlm:host2", (const uint8_t *)"svid1", 5, 0 };
    unilock_lock_req p = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100, 0 };
    unilock_lock_req rp = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100, UNILOCK_LOCK_RECLAIM };
    unilock_lock_req never = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 1000, 1, UNILOCK_LOCK_RECLAIM };
    /* New locks are refused; tests are allowed. */
    assert_int_equal(unilock_lock(ul, F, FL, &other, &p, NULL), UNILOCK_E_GRACE);
    assert_int_equal(unilock_test(ul, F, FL, &other, &p, NULL), UNILOCK_OK);
    /* What the child was told it had is reclaimable; what it never had is not. */
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &rp, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &never, NULL), UNILOCK_E_RECLAIM_DENIED);
    assert_int_equal(unilock_lock(ul, F, FL, &other, &rp, NULL), UNILOCK_E_RECLAIM_DENIED);
    /* The SMB lease is reclaimed by key (SMB has no reclaim flag). */
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H;
    q.lease_version = 2;
    memcpy(q.lease_key, KEY, 16);
    unilock_open_result res;
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:guid1", 43, &q, NULL, &res), UNILOCK_OK);
    assert_int_equal(res.state, UNILOCK_LEASE_R | UNILOCK_LEASE_H);
    /* The SMB byte-range lock is not reclaimed: released at grace end and reported. */
    assert_int_equal(unilock_grace_end(ul), UNILOCK_OK);
    size_t d;
    assert_int_equal(unilock_process_events(ul, &d), UNILOCK_OK);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_GRACE_RELEASED);
    assert_string_equal(r.client[0], "smb:guid1");
    assert_int_equal(r.ev[0].offset, 1); /* locks */
    assert_int_equal(r.ev[0].length, 0); /* leases */
    assert_int_equal(unilock_grace_status(ul, &gi), UNILOCK_OK);
    assert_int_equal(gi.active, 0);
    assert_int_equal(unilock_lock(ul, F, FL, &nlm, &rp, NULL), UNILOCK_E_NO_GRACE);
    unilock_owner smb2 = { "smb:guid2", (const uint8_t *)"x", 1, 1 };
    unilock_lock_req w = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 500, 10, 0 };
    assert_int_equal(unilock_lock(ul, F, FL, &smb2, &w, NULL), UNILOCK_OK);
    unilock_close(ul);
}

static void test_corrupt_and_newer_databases(void **s)
{
    (void)s;
    char path[400];
    snprintf(path, sizeof path, "%s/corrupt.db", dir);
    char junk[8192];
    memset(junk, 0x5A, sizeof junk);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(junk, 1, sizeof junk, f), sizeof junk);
    fclose(f);
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.db_path = path;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_E_STORE);
    assert_null(ul);
    assert_true(strlen(unilock_errdetail()) > 0);
    char back[8192];
    f = fopen(path, "rb");
    assert_int_equal(fread(back, 1, sizeof back, f), sizeof back);
    fclose(f);
    assert_memory_equal(back, junk, sizeof junk);

    /* A database of a newer schema: made by this library, then its user_version (offset 60) bumped. */
    snprintf(path, sizeof path, "%s/newer.db", dir);
    cfg.db_path = path;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_OK);
    unilock_close(ul);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char v[4] = { 0, 0, 0, 99 };
    assert_int_equal(pwrite(fd, v, 4, 60), 4);
    close(fd);
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    ul = NULL;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_E_STORE);
    assert_non_null(strstr(unilock_errdetail(), "newer"));
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(before.st_mtime, after.st_mtime);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_then_grace_and_reclaim),
        cmocka_unit_test(test_corrupt_and_newer_databases),
    };
    return cmocka_run_group_tests_name("recovery", tests, setup, teardown);
}
