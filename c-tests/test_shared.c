/* Shared mode from C (SPEC.md §7): forked processes, each with its own handle driven from a poll()
 * loop, see one lock table; breaks, grants and cleanup of killed processes cross process lines. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unilock.h"

static char dir[256], db[300];
static const uint8_t F[] = "shared-file";
#define FL (sizeof F - 1)

#define MAXEV 16
struct rec {
    int n;
    unilock_event ev[MAXEV];
};

static void record(void *ud, const unilock_event *e)
{
    struct rec *r = ud;
    if (r->n < MAXEV)
        r->ev[r->n++] = *e;
}

static unilock *open_shared(struct rec *r)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.flags = UNILOCK_CONFIG_SHARED;
    cfg.db_path = db;
    cfg.durability = UNILOCK_DURABILITY_PROCESS;
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.event_fn = record;
    cfg.event_user_data = r;
    unilock_status st = unilock_open(&cfg, &ul);
    if (st != UNILOCK_OK)
        fprintf(stderr, "open: %s (%s)\n", unilock_strerror(st), unilock_errdetail());
    return st == UNILOCK_OK ? ul : NULL;
}

/* Runs the poll() loop until `want` events arrived or about 5 s passed. */
static int pump_until(unilock *ul, struct rec *r, int want)
{
    int fd = unilock_event_fd(ul);
    for (int i = 0; i < 500 && r->n < want; i++) {
        struct pollfd p = { fd, POLLIN, 0 };
        int64_t t = unilock_next_timeout_ms(ul);
        poll(&p, 1, (t < 0 || t > 10) ? 10 : (int)t);
        size_t d;
        unilock_process_events(ul, &d);
    }
    return r->n >= want;
}

static int setup(void **s)
{
    (void)s;
    snprintf(dir, sizeof dir, "%s/unilock-shared-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void fresh_db(const char *name)
{
    snprintf(db, sizeof db, "%s/%s.db", dir, name);
}

static void sync_read(int fd, char want)
{
    char c = 0;
    assert_int_equal(read(fd, &c, 1), 1);
    assert_int_equal(c, want);
}

static void sync_write(int fd, char c)
{
    if (write(fd, &c, 1) != 1)
        _exit(3);
}

/* 8 children contend on shared and distinct ranges: each marks the bytes it holds in a shared map and
 * checks nobody else's mark is there while it holds them. */
static void test_eight_processes_never_hold_conflicting_locks(void **s)
{
    (void)s;
    fresh_db("contend");
    enum { KIDS = 8, ROUNDS = 150, BYTES = 64 };
    volatile uint8_t *shadow = mmap(NULL, BYTES * (KIDS + 1), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(shadow != MAP_FAILED);
    memset((void *)shadow, 0, BYTES * (KIDS + 1));
    volatile int *fails = mmap(NULL, sizeof(int) * (KIDS + 1), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset((void *)fails, 0, sizeof(int) * (KIDS + 1));
    pid_t kids[KIDS];
    for (int k = 0; k < KIDS; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            struct rec r = { 0 };
            unilock *ul = open_shared(&r);
            if (!ul)
                _exit(2);
            char client[32];
            snprintf(client, sizeof client, "nlm:kid%d", k);
            unilock_owner o = { client, (const uint8_t *)"o", 1, (uint64_t)k };
            unsigned seed = 1234u + (unsigned)k;
            int granted = 0;
            for (int i = 0; i < ROUNDS; i++) {
                seed = seed * 1103515245u + 12345u;
                uint64_t off = (seed >> 8) % (BYTES - 8), len = 1 + (seed >> 20) % 8;
                int excl = (seed >> 4) & 1;
                /* Half the time a distinct per-child region, so both shared and private ranges. */
                int priv = (seed >> 28) & 1;
                const uint8_t *file = F;
                size_t flen = FL;
                uint8_t pf[8] = { 'p', (uint8_t)k };
                if (priv) {
                    file = pf;
                    flen = 2;
                }
                unilock_lock_req q = { (seed >> 5) & 1 ? UNILOCK_POSIX : UNILOCK_WINDOWS, excl ? UNILOCK_EXCLUSIVE : UNILOCK_SHARED, off, len, 0 };
                unilock_status st = unilock_lock(ul, file, flen, &o, &q, NULL);
                if (st != UNILOCK_OK) {
                    if (st != UNILOCK_E_CONFLICT)
                        fails[k]++;
                    continue;
                }
                granted++;
                volatile uint8_t *sh = priv ? shadow + BYTES * (size_t)(k + 1) : shadow;
                for (uint64_t b = off; b < off + len; b++) {
                    uint8_t v = sh[b];
                    if (excl) {
                        if (v != 0)
                            fails[k]++;
                        sh[b] = (uint8_t)(0x80 | (k + 1));
                    } else {
                        if (v & 0x80)
                            fails[k]++;
                        __sync_fetch_and_add(&sh[b], 1);
                    }
                }
                usleep(100);
                for (uint64_t b = off; b < off + len; b++) {
                    if (excl) {
                        if (sh[b] != (uint8_t)(0x80 | (k + 1)))
                            fails[k]++;
                        sh[b] = 0;
                    } else {
                        __sync_fetch_and_sub(&sh[b], 1);
                    }
                }
                if (unilock_unlock(ul, file, flen, &o, q.flavour, off, len) != UNILOCK_OK)
                    fails[k]++;
            }
            if (granted == 0)
                fails[k]++;
            unilock_close(ul);
            _exit(0);
        }
    }
    for (int k = 0; k < KIDS; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        assert_int_equal(fails[k], 0);
    }
    /* Every child left cleanly: nothing is held any more. */
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    size_t n = 9;
    assert_int_equal(unilock_list_locks(ul, F, FL, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 0);
    unilock_close(ul);
}

static void test_break_and_grant_cross_processes(void **s)
{
    (void)s;
    fresh_db("cross");
    int to_kid[2], to_parent[2];
    assert_int_equal(pipe(to_kid), 0);
    assert_int_equal(pipe(to_parent), 0);
    static const uint8_t K1[16] = { 1 }, K2[16] = { 2 };
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H | UNILOCK_LEASE_W;
    q.lease_version = 2;
    memcpy(q.lease_key, K1, 16);
    unilock_open_result res;
    assert_int_equal(unilock_file_open(ul, F, FL, "smb:parent", 1, &q, NULL, &res), UNILOCK_OK);
    unilock_owner po = { "smb:parent", (const uint8_t *)"p", 1, 1 };
    unilock_lock_req x = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, F, FL, &po, &x, NULL), UNILOCK_OK);
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        if (!k)
            _exit(2);
        unilock_open_req q2 = q;
        memcpy(q2.lease_key, K2, 16);
        unilock_wait w = { 77, NULL, 0 };
        unilock_open_result kres;
        if (unilock_file_open(k, F, FL, "smb:kid", 2, &q2, &w, &kres) != UNILOCK_PENDING)
            _exit(10);
        sync_write(to_parent[1], 'P'); /* the parent now gets the break */
        if (!pump_until(k, &kr, 1) || kr.ev[0].type != UNILOCK_EVENT_BREAKS_DONE || kr.ev[0].token != 77)
            _exit(11);
        if (unilock_file_open(k, F, FL, "smb:kid", 2, &q2, &w, &kres) != UNILOCK_OK ||
            kres.state != (UNILOCK_LEASE_R | UNILOCK_LEASE_H))
            _exit(12);
        /* A blocked lock in this process is granted when the parent releases. */
        unilock_owner ko = { "smb:kid", (const uint8_t *)"k", 1, 2 };
        uint64_t id = 0;
        if (unilock_lock_blocking(k, F, FL, &ko, &x, &w, &id, NULL) != UNILOCK_PENDING)
            _exit(13);
        sync_write(to_parent[1], 'B');
        if (!pump_until(k, &kr, 2) || kr.ev[1].type != UNILOCK_EVENT_LOCK || kr.ev[1].status != UNILOCK_OK ||
            kr.ev[1].request_id != id)
            _exit(14);
        unilock_close(k);
        _exit(0);
    }
    sync_read(to_parent[0], 'P');
    assert_true(pump_until(ul, &r, 1));
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
    assert_int_equal(r.ev[0].break_to, UNILOCK_LEASE_R | UNILOCK_LEASE_H);
    assert_int_equal(unilock_lease_ack(ul, F, FL, "smb:parent", K1, UNILOCK_LEASE_R | UNILOCK_LEASE_H), UNILOCK_OK);
    sync_read(to_parent[0], 'B');
    assert_int_equal(unilock_unlock(ul, F, FL, &po, UNILOCK_WINDOWS, 0, 10), UNILOCK_OK);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unilock_close(ul);
}

static void test_sigkilled_holder_is_cleaned_up(void **s)
{
    (void)s;
    fresh_db("kill");
    int to_parent[2];
    assert_int_equal(pipe(to_parent), 0);
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_owner ko = { "nlm:kid", (const uint8_t *)"k", 1, 0 };
        if (!k || unilock_lock(k, F, FL, &ko, &x, NULL) != UNILOCK_OK)
            _exit(2);
        sync_write(to_parent[1], 'L');
        for (;;)
            pause();
    }
    sync_read(to_parent[0], 'L');
    unilock_owner po = { "nlm:parent", (const uint8_t *)"p", 1, 0 };
    unilock_wait w = { 5, NULL, 0 };
    uint64_t id = 0;
    assert_int_equal(unilock_lock_blocking(ul, F, FL, &po, &x, &w, &id, NULL), UNILOCK_PENDING);
    kill(kid, SIGKILL);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    /* Nobody announces the death: the event loop finds the dead holder and the waiter proceeds. */
    assert_true(pump_until(ul, &r, 1));
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LOCK);
    assert_int_equal(r.ev[0].status, UNILOCK_OK);
    assert_int_equal(r.ev[0].request_id, id);
    unilock_close(ul);
}

static void test_announced_death_conflict_reap_and_restart_grace(void **s)
{
    (void)s;
    fresh_db("gone");
    int to_parent[2];
    assert_int_equal(pipe(to_parent), 0);
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 100, 10, 0 };
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_owner ko = { "nlm:kid", (const uint8_t *)"k", 1, 0 };
        if (!k || unilock_lock(k, F, FL, &ko, &x, NULL) != UNILOCK_OK)
            _exit(2);
        sync_write(to_parent[1], 'L');
        for (;;)
            pause();
    }
    sync_read(to_parent[0], 'L');
    kill(kid, SIGKILL);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    /* Every process is gone: the next open is a whole-server restart and enters grace. */
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_grace_info gi;
    assert_int_equal(unilock_grace_status(ul, &gi), UNILOCK_OK);
    assert_int_equal(gi.active, 1);
    assert_int_equal(gi.expected_clients, 1);
    unilock_owner ko = { "nlm:kid", (const uint8_t *)"k", 1, 0 };
    unilock_lock_req rx = x;
    rx.flags = UNILOCK_LOCK_RECLAIM;
    assert_int_equal(unilock_lock(ul, F, FL, &ko, &rx, NULL), UNILOCK_OK);
    assert_int_equal(unilock_grace_end(ul), UNILOCK_OK);

    /* A second process joins the running server: no grace. Then it dies holding a lock; the first
     * one's conflicting request finds the dead holder and is granted (no announcement needed), and
     * unilock_process_gone covers an announced death. */
    pid_t k2 = fork();
    if (k2 == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_grace_info g2;
        if (!k || unilock_grace_status(k, &g2) != UNILOCK_OK || g2.active)
            _exit(4);
        unilock_owner o2 = { "nlm:k2", (const uint8_t *)"z", 1, 0 };
        unilock_lock_req y = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 500, 1, 0 };
        if (unilock_lock(k, F, FL, &o2, &y, NULL) != UNILOCK_OK)
            _exit(5);
        sync_write(to_parent[1], 'J');
        for (;;)
            pause();
    }
    sync_read(to_parent[0], 'J');
    kill(k2, SIGKILL);
    assert_int_equal(waitpid(k2, &st, 0), k2);
    unilock_owner po = { "nlm:parent", (const uint8_t *)"p", 1, 0 };
    unilock_lock_req y = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 500, 1, 0 };
    assert_int_equal(unilock_lock(ul, F, FL, &po, &y, NULL), UNILOCK_OK);
    size_t gone = 9;
    assert_int_equal(unilock_process_gone(ul, (uint32_t)k2, 0, &gone), UNILOCK_OK);
    assert_int_equal(gone, 0); /* already reaped */

    /* A handle used in a child after fork() is refused. */
    pid_t k3 = fork();
    if (k3 == 0) {
        unilock_lock_req z = { UNILOCK_POSIX, UNILOCK_SHARED, 900, 1, 0 };
        _exit(unilock_lock(ul, F, FL, &po, &z, NULL) == UNILOCK_E_MISUSE ? 0 : 6);
    }
    assert_int_equal(waitpid(k3, &st, 0), k3);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unilock_close(ul);
}

/* A client registered with a TTL keeps its state that long after its process dies. */
static void test_dead_process_client_ttl(void **s)
{
    (void)s;
    fresh_db("ttl");
    int to_parent[2];
    assert_int_equal(pipe(to_parent), 0);
    unilock_lock_req x = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_owner ko = { "smb:durable", (const uint8_t *)"k", 1, 4 };
        if (!k || unilock_client_register(k, "smb:durable", "smb", "192.0.2.9", 400) != UNILOCK_OK ||
            unilock_lock(k, F, FL, &ko, &x, NULL) != UNILOCK_OK)
            _exit(2);
        sync_write(to_parent[1], 'L');
        for (;;)
            pause();
    }
    sync_read(to_parent[0], 'L');
    kill(kid, SIGKILL);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    unilock_owner po = { "smb:other", (const uint8_t *)"p", 1, 9 };
    /* Right after the death the lock is still held: the client's TTL keeps it. */
    assert_int_equal(unilock_lock(ul, F, FL, &po, &x, NULL), UNILOCK_E_CONFLICT);
    unilock_wait w = { 3, NULL, 0 };
    uint64_t id = 0;
    assert_int_equal(unilock_lock_blocking(ul, F, FL, &po, &x, &w, &id, NULL), UNILOCK_PENDING);
    /* Once the TTL has passed, the event loop releases it and the waiter proceeds. */
    assert_true(pump_until(ul, &r, 1));
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LOCK);
    assert_int_equal(r.ev[0].status, UNILOCK_OK);
    assert_int_equal(r.ev[0].request_id, id);
    unilock_close(ul);
}

/* A wait that would close a cycle across processes is refused: A holds f1 and waits for f2 held by B;
 * B asking for f1 would wait for A. */
static void test_deadlock_across_processes(void **s)
{
    (void)s;
    fresh_db("deadlock");
    int to_parent[2], to_kid[2];
    assert_int_equal(pipe(to_parent), 0);
    assert_int_equal(pipe(to_kid), 0);
    static const uint8_t F1[] = "f1", F2[] = "f2";
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 1, 0 };
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_owner a = { "nlm:a", (const uint8_t *)"a", 1, 0 };
    assert_int_equal(unilock_lock(ul, F1, 2, &a, &x, NULL), UNILOCK_OK);
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_owner b = { "nlm:b", (const uint8_t *)"b", 1, 0 };
        if (!k || unilock_lock(k, F2, 2, &b, &x, NULL) != UNILOCK_OK)
            _exit(2);
        sync_write(to_parent[1], 'H');
        char c;
        if (read(to_kid[0], &c, 1) != 1)
            _exit(3);
        unilock_wait w = { 1, NULL, 0 };
        uint64_t id;
        unilock_status st = unilock_lock_blocking(k, F1, 2, &b, &x, &w, &id, NULL);
        unilock_close(k);
        _exit(st == UNILOCK_E_DEADLOCK ? 0 : 4);
    }
    sync_read(to_parent[0], 'H');
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id;
    assert_int_equal(unilock_lock_blocking(ul, F2, 2, &a, &x, &w, &id, NULL), UNILOCK_PENDING);
    sync_write(to_kid[1], 'G');
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unilock_close(ul);
}

/* The parent of a SIGKILLed process has not reaped it yet: a zombie is dead all the same, so the next
 * open is a whole-server restart with grace, and the zombie's lock refuses nobody. */
static void test_zombie_is_dead(void **s)
{
    (void)s;
    fresh_db("zombie");
    int to_parent[2];
    assert_int_equal(pipe(to_parent), 0);
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 100, 10, 0 };
    pid_t kid = fork();
    if (kid == 0) {
        struct rec kr = { 0 };
        unilock *k = open_shared(&kr);
        unilock_owner ko = { "nlm:kid", (const uint8_t *)"k", 1, 0 };
        if (!k || unilock_lock(k, F, FL, &ko, &x, NULL) != UNILOCK_OK)
            _exit(2);
        sync_write(to_parent[1], 'L');
        for (;;)
            pause();
    }
    sync_read(to_parent[0], 'L');
    kill(kid, SIGKILL);
    /* Wait for state Z in /proc/PID/stat, without reaping. */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)kid);
    int zombie = 0;
    for (int i = 0; i < 5000 && !zombie; i++) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        zombie = p && p[1] == ' ' && p[2] == 'Z';
        if (!zombie)
            usleep(1000);
    }
    assert_true(zombie);
    assert_int_equal(kill(kid, 0), 0); /* kill(pid, 0) still succeeds for a zombie */
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_grace_info gi;
    assert_int_equal(unilock_grace_status(ul, &gi), UNILOCK_OK);
    assert_int_equal(gi.active, 1);
    assert_int_equal(gi.expected_clients, 1);
    assert_int_equal(unilock_grace_end(ul), UNILOCK_OK);
    unilock_owner po = { "nlm:parent", (const uint8_t *)"p", 1, 0 };
    assert_int_equal(unilock_lock(ul, F, FL, &po, &x, NULL), UNILOCK_OK);
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    unilock_close(ul);
}

/* Overwrites a file with 0xFF bytes, keeping its length. */
static void smash(const char *path)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    for (long i = 0; i < n; i++)
        fputc(0xff, f);
    fclose(f);
}

/* The shared-memory table of a database (issue 17): /dev/shm/unilock-<FNV-1a 64 of its real path>. */
static void mapping_of(const char *path, char *out, size_t n)
{
    char real[4096];
    if (!realpath(path, real)) {
        snprintf(out, n, "/nonexistent");
        return;
    }
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = real; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 0x100000001b3ULL;
    }
    snprintf(out, n, "/dev/shm/unilock-%016llx", (unsigned long long)h);
}

/* Overwrites the first page of a file with 0xFF bytes (the header of a shared-memory table). */
static void smash_head(const char *path)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return;
    for (int i = 0; i < 4096; i++)
        fputc(0xff, f);
    fclose(f);
}

static int count_visit(void *ud, const unilock_lock_info *l)
{
    (void)l;
    ++*(int *)ud;
    return 0;
}

/* A call that cannot read the table answers UNILOCK_E_STORE with the SQLite message, never "would be
 * granted" or "nothing there" (issue 13). The database is made unreadable under the running handle. */
static void test_unreadable_database_is_a_store_error(void **s)
{
    (void)s;
    fresh_db("unreadable");
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    unilock_owner a = { "nlm:a", (const uint8_t *)"a", 1, 0 };
    unilock_owner b = { "nlm:b", (const uint8_t *)"b", 1, 0 };
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, F, FL, &a, &x, NULL), UNILOCK_OK);
    assert_int_equal(unilock_test(ul, F, FL, &b, &x, NULL), UNILOCK_E_CONFLICT);

    char side[400], map[300];
    mapping_of(db, map, sizeof map);
    smash(db);
    snprintf(side, sizeof side, "%s-wal", db);
    smash(side);
    snprintf(side, sizeof side, "%s-shm", db);
    smash(side);
    smash_head(map); /* the shared-memory table, when shared mode uses one */

    assert_int_equal(unilock_test(ul, F, FL, &b, &x, NULL), UNILOCK_E_STORE);
    assert_true(strlen(unilock_errdetail()) > 0);
    size_t n = 99;
    assert_int_equal(unilock_release_open(ul, F, FL, &b, &n), UNILOCK_E_STORE);
    assert_int_equal(n, 99);
    int visits = 0;
    n = 99;
    assert_int_equal(unilock_list_locks(ul, F, FL, count_visit, &visits, &n), UNILOCK_E_STORE);
    assert_int_equal(n, 99);
    assert_int_equal(visits, 0);
    assert_int_equal(unilock_release_client(ul, "nlm:b", &n), UNILOCK_E_STORE);
    assert_int_equal(unilock_cancel_owner(ul, F, FL, &b, &n), UNILOCK_E_STORE);
    uint64_t wid = 0;
    assert_int_equal(unilock_watch(ul, F, FL, 1, NULL, &wid), UNILOCK_E_STORE);
    assert_int_equal(unilock_lock(ul, F, FL, &b, &x, NULL), UNILOCK_E_STORE);
    assert_int_equal(unilock_rebind_open(ul, F, FL, "nlm:b", 0, &n), UNILOCK_E_STORE);
    assert_true(strlen(unilock_errdetail()) > 0);
    unilock_close(ul);
    unlink(map);
}

/* unilock_rebind_open checks the client id as every call does (issue 14). */
static void test_rebind_checks_the_client(void **s)
{
    (void)s;
    fresh_db("rebind");
    struct rec r = { 0 };
    unilock *ul = open_shared(&r);
    assert_non_null(ul);
    size_t n = 7;
    char long_client[300];
    memset(long_client, 'c', sizeof long_client - 1);
    long_client[sizeof long_client - 1] = 0;
    assert_int_equal(unilock_rebind_open(ul, F, FL, "", 1, &n), UNILOCK_E_INVALID);
    assert_int_equal(unilock_rebind_open(ul, F, FL, long_client, 1, &n), UNILOCK_E_INVALID);
    assert_int_equal(unilock_rebind_open(ul, F, FL, NULL, 1, &n), UNILOCK_E_INVALID);
    assert_int_equal(n, 7);
    assert_int_equal(unilock_rebind_open(ul, F, FL, "smb:c", 1, &n), UNILOCK_OK);
    assert_int_equal(n, 0);
    unilock_close(ul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eight_processes_never_hold_conflicting_locks),
        cmocka_unit_test(test_break_and_grant_cross_processes),
        cmocka_unit_test(test_sigkilled_holder_is_cleaned_up),
        cmocka_unit_test(test_announced_death_conflict_reap_and_restart_grace),
        cmocka_unit_test(test_dead_process_client_ttl),
        cmocka_unit_test(test_deadlock_across_processes),
        cmocka_unit_test(test_zombie_is_dead),
        cmocka_unit_test(test_unreadable_database_is_a_store_error),
        cmocka_unit_test(test_rebind_checks_the_client),
    };
    return cmocka_run_group_tests_name("shared", tests, setup, teardown);
}
