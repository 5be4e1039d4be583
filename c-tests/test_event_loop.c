/* Blocking locks, watches, cancel and both event drivers, from C.
 * The poll() tests prove that UNILOCK_EVENTS_LOOP starts no thread and still delivers every grant
 * and timeout through the event fd. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "unilock.h"

#define MAX_EVENTS 16

struct recorder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    unilock_event ev[MAX_EVENTS];
    char client[MAX_EVENTS][64];
    uint8_t file[MAX_EVENTS][32];
    pthread_t thread[MAX_EVENTS];
    unilock *reenter; /* when set, the callback unlocks a granted lock from inside the callback */
};

static void record(void *user_data, const unilock_event *e)
{
    struct recorder *r = user_data;
    if (r->reenter && e->type == UNILOCK_EVENT_LOCK && e->status == UNILOCK_OK) {
        unilock_owner o = { (const char *)e->client, e->owner, e->owner_len, e->open_id };
        unilock_status st = unilock_unlock(r->reenter, e->file_id, e->file_id_len, &o, e->flavour, e->offset, e->length);
        assert_int_equal(st, UNILOCK_OK);
    }
    pthread_mutex_lock(&r->mu);
    if (r->n < MAX_EVENTS) {
        r->ev[r->n] = *e;
        snprintf(r->client[r->n], sizeof r->client[0], "%s", e->client ? (const char *)e->client : "");
        memcpy(r->file[r->n], e->file_id, e->file_id_len < 32 ? e->file_id_len : 32);
        r->thread[r->n] = pthread_self();
        r->n++;
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void rec_init(struct recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static int thread_count(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

static const uint8_t FILE_A[] = "fileA";
static const uint8_t FILE_B[] = "fileB";

static unilock *open_mode(uint32_t mode, struct recorder *r)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.event_mode = mode;
    cfg.event_fn = record;
    cfg.event_user_data = r;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_OK);
    return ul;
}

static int fd_readable(int fd, int timeout_ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* Drives the library from a poll() loop until `want` events arrived or 5 s passed. */
static void poll_loop(unilock *ul, struct recorder *r, int want)
{
    int fd = unilock_event_fd(ul);
    for (int rounds = 0; r->n < want && rounds < 500; rounds++) {
        int64_t t = unilock_next_timeout_ms(ul);
        int timeout = (t < 0 || t > 10) ? 10 : (int)t;
        if (fd_readable(fd, timeout) || t == 0) {
            size_t delivered = 0;
            assert_int_equal(unilock_process_events(ul, &delivered), UNILOCK_OK);
        }
    }
    assert_int_equal(r->n, want);
}

static unilock_owner owner(const char *client, const char *bytes)
{
    unilock_owner o = { client, (const uint8_t *)bytes, strlen(bytes), 1 };
    return o;
}

static void test_loop_mode_grant_without_threads(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    int before = thread_count();
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    assert_int_equal(thread_count(), before); /* no library thread */
    int fd = unilock_event_fd(ul);
    assert_true(fd >= 0);
    assert_int_equal(unilock_next_timeout_ms(ul), -1);

    unilock_owner a = owner("nlm:a", "svid1"), b = owner("smb:b", "lctx");
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100, 0 };
    assert_int_equal(unilock_lock(ul, FILE_A, 5, &a, &x, NULL), UNILOCK_OK);
    unilock_lock_req want = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 10, 5, 0 };
    unilock_wait w = { 77, &r, 0 };
    uint64_t id = 0;
    unilock_lock_info holder;
    memset(&holder, 0, sizeof holder);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &want, &w, &id, &holder), UNILOCK_PENDING);
    assert_true(id != 0);
    assert_string_equal(holder.client, "nlm:a");
    assert_false(fd_readable(fd, 0));
    /* The same token again is idempotent: same id. */
    uint64_t id2 = 0;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &want, &w, &id2, NULL), UNILOCK_PENDING);
    assert_int_equal(id2, id);

    assert_int_equal(unilock_unlock(ul, FILE_A, 5, &a, UNILOCK_POSIX, 0, 100), UNILOCK_OK);
    assert_true(fd_readable(fd, 0));
    assert_true(fd_readable(fd, 0)); /* level-triggered: still readable */
    poll_loop(ul, &r, 1);
    assert_false(fd_readable(fd, 0));
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LOCK);
    assert_int_equal(r.ev[0].status, UNILOCK_OK);
    assert_int_equal(r.ev[0].request_id, id);
    assert_int_equal(r.ev[0].token, 77);
    assert_ptr_equal(r.ev[0].user_data, &r);
    assert_string_equal(r.client[0], "smb:b");
    assert_memory_equal(r.file[0], "fileA", 5);
    assert_int_equal(r.ev[0].flavour, UNILOCK_WINDOWS);
    assert_int_equal(r.ev[0].lock_type, UNILOCK_EXCLUSIVE);
    assert_int_equal(r.ev[0].offset, 10);
    assert_int_equal(r.ev[0].length, 5);
    assert_true(pthread_equal(r.thread[0], pthread_self()));
    /* B holds it now; resubmitting the granted token is OK without a second lock. */
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &want, &w, &id2, NULL), UNILOCK_OK);
    size_t n = 0;
    assert_int_equal(unilock_list_locks(ul, FILE_A, 5, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(thread_count(), before);
    unilock_close(ul);
}

/* Issue 13 item 5: a token is idempotent only for the same request. H1's token 7, granted for [0,1),
 * with another range is a new request: it is granted only if the lock is really taken, and then H2
 * must wait for it. A pending token with another range is a new request too. */
static void test_token_reused_for_another_range(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    unilock_owner h1 = owner("nlm:h1", "1"), h2 = owner("nlm:h2", "2");
    unilock_lock_req first = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 1, 0 };
    unilock_lock_req other = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 100, 1, 0 };
    unilock_wait w7 = { 7, NULL, 0 };
    uint64_t id = 0, id2 = 0;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h1, &first, &w7, &id, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h1, &other, &w7, &id, NULL), UNILOCK_OK);
    unilock_lock_info holder;
    memset(&holder, 0, sizeof holder);
    assert_int_equal(unilock_test(ul, FILE_A, 5, &h2, &other, &holder), UNILOCK_E_CONFLICT);
    assert_string_equal(holder.client, "nlm:h1");
    unilock_wait w9 = { 9, NULL, 0 };
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h2, &other, &w9, &id, NULL), UNILOCK_PENDING);
    /* The same type for another range, and another type for the same range: new requests too. */
    unilock_lock_req far = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 200, 1, 0 };
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h2, &far, &w9, &id2, NULL), UNILOCK_OK);
    unilock_lock_req first_shared = { UNILOCK_POSIX, UNILOCK_SHARED, 0, 1, 0 };
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h2, &first_shared, &w9, &id2, NULL), UNILOCK_PENDING);
    assert_true(id2 != id);
    /* The identical request is still idempotent. */
    uint64_t again = 0;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &h2, &other, &w9, &again, NULL), UNILOCK_PENDING);
    assert_int_equal(again, id);
    size_t n = 0;
    assert_int_equal(unilock_list_locks(ul, FILE_A, 5, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 3); /* h1 [0,1) and [100,101), h2 [200,201) */
    unilock_close(ul);
}

static void test_loop_mode_timeout(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    int before = thread_count();
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    unilock_owner a = owner("nlm:a", "1"), b = owner("nlm:b", "2");
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, UNILOCK_TO_EOF, 0 };
    assert_int_equal(unilock_lock(ul, FILE_A, 5, &a, &x, NULL), UNILOCK_OK);
    unilock_wait w = { 5, NULL, 30 };
    uint64_t id = 0;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &x, &w, &id, NULL), UNILOCK_PENDING);
    int64_t t = unilock_next_timeout_ms(ul);
    assert_true(t >= 0 && t <= 30);
    poll_loop(ul, &r, 1);
    assert_int_equal(r.ev[0].status, UNILOCK_E_TIMEOUT);
    assert_int_equal(r.ev[0].request_id, id);
    uint32_t outcome = 0;
    assert_int_equal(unilock_cancel(ul, id, &outcome), UNILOCK_E_NOT_FOUND);
    assert_int_equal(thread_count(), before);
    unilock_close(ul);
}

static void test_thread_mode_delivers_on_library_thread(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    int before = thread_count();
    unilock *ul = open_mode(UNILOCK_EVENTS_THREAD, &r);
    assert_int_equal(thread_count(), before + 1);
    assert_int_equal(unilock_event_fd(ul), -1);
    unilock_owner a = owner("nlm:a", "1"), b = owner("nlm:b", "2");
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, FILE_B, 5, &a, &x, NULL), UNILOCK_OK);
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id = 0;
    assert_int_equal(unilock_lock_blocking(ul, FILE_B, 5, &b, &x, &w, &id, NULL), UNILOCK_PENDING);
    r.reenter = ul; /* the callback unlocks what it was granted */
    assert_int_equal(unilock_release_open(ul, FILE_B, 5, &a, NULL), UNILOCK_OK);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&r.mu);
    while (r.n < 1 && pthread_cond_timedwait(&r.cv, &r.mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&r.mu);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].status, UNILOCK_OK);
    assert_false(pthread_equal(r.thread[0], pthread_self()));
    size_t n = 99;
    assert_int_equal(unilock_list_locks(ul, FILE_B, 5, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 0); /* the re-entrant unlock in the callback worked */
    unilock_close(ul);
    assert_int_equal(thread_count(), before);
}

static void test_cancel_outcomes_and_deadlock(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    unilock_owner a = owner("nlm:a", "1"), b = owner("nlm:b", "2");
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id = 0;
    uint32_t outcome = 0;
    assert_int_equal(unilock_lock(ul, FILE_A, 5, &a, &x, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &x, &w, &id, NULL), UNILOCK_PENDING);
    assert_int_equal(unilock_cancel(ul, id, &outcome), UNILOCK_OK);
    assert_int_equal(outcome, UNILOCK_CANCELLED);
    w.token = 2;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &x, &w, &id, NULL), UNILOCK_PENDING);
    assert_int_equal(unilock_unlock(ul, FILE_A, 5, &a, UNILOCK_POSIX, 0, 10), UNILOCK_OK);
    assert_int_equal(unilock_cancel(ul, id, &outcome), UNILOCK_OK);
    assert_int_equal(outcome, UNILOCK_ALREADY_GRANTED);
    size_t delivered = 9;
    assert_int_equal(unilock_process_events(ul, &delivered), UNILOCK_OK);
    assert_int_equal(delivered, 0); /* no event after the cancel answered */
    assert_int_equal(r.n, 0);
    assert_int_equal(unilock_cancel(ul, 123456789, &outcome), UNILOCK_E_NOT_FOUND);

    /* Deadlock: b holds A and waits for B held by a; a asking for A would close the cycle. */
    unilock_lock_req one = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 1, 0 };
    assert_int_equal(unilock_lock(ul, FILE_B, 5, &a, &one, NULL), UNILOCK_OK);
    w.token = 3;
    assert_int_equal(unilock_lock_blocking(ul, FILE_B, 5, &b, &one, &w, &id, NULL), UNILOCK_PENDING);
    w.token = 4;
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, &one, &w, &id, NULL), UNILOCK_E_DEADLOCK);
    /* Cancel by owner removes b's wait; then a may wait for b. */
    size_t cancelled = 0;
    assert_int_equal(unilock_cancel_owner(ul, FILE_B, 5, &b, &cancelled), UNILOCK_OK);
    assert_int_equal(cancelled, 1);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, &one, &w, &id, NULL), UNILOCK_PENDING);
    unilock_close(ul); /* pending requests and undelivered events are dropped */
}

static void test_watch_and_close_ends_waiters(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    unilock_owner a = owner("smb:a", "1"), b = owner("smb:b", "2");
    unilock_lock_req x = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, FILE_A, 5, &a, &x, NULL), UNILOCK_OK);
    uint64_t wid = 0, id = 0;
    assert_int_equal(unilock_watch(ul, FILE_A, 5, 9, &r, &wid), UNILOCK_OK);
    unilock_wait w = { 1, NULL, 0 };
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &b, &x, &w, &id, NULL), UNILOCK_PENDING);
    /* A waiting request is not a held lock. */
    assert_int_equal(unilock_unlock(ul, FILE_A, 5, &b, UNILOCK_WINDOWS, 0, 10), UNILOCK_E_RANGE_NOT_LOCKED);
    /* Closing b's open ends its request with RANGE_NOT_LOCKED. */
    assert_int_equal(unilock_release_open(ul, FILE_A, 5, &b, NULL), UNILOCK_OK);
    poll_loop(ul, &r, 1);
    assert_int_equal(r.ev[0].type, UNILOCK_EVENT_LOCK);
    assert_int_equal(r.ev[0].status, UNILOCK_E_RANGE_NOT_LOCKED);
    assert_int_equal(unilock_unlock(ul, FILE_A, 5, &a, UNILOCK_WINDOWS, 0, 10), UNILOCK_OK);
    poll_loop(ul, &r, 2);
    assert_int_equal(r.ev[1].type, UNILOCK_EVENT_WATCH);
    assert_int_equal(r.ev[1].request_id, wid);
    assert_int_equal(r.ev[1].token, 9);
    unilock_close(ul);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct recorder r;
    rec_init(&r);
    unilock *ul = open_mode(UNILOCK_EVENTS_LOOP, &r);
    unilock_owner a = owner("nlm:a", "1");
    unilock_lock_req x = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    unilock_lock_req bad = { 7, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    unilock_lock_req zero = { UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 0, 0 };
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id;
    assert_int_equal(unilock_lock_blocking(NULL, FILE_A, 5, &a, &x, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, NULL, 5, &a, &x, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 0, &a, &x, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, NULL, &x, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, NULL, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, &x, NULL, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, &bad, &w, &id, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_lock_blocking(ul, FILE_A, 5, &a, &zero, &w, &id, NULL), UNILOCK_E_INVALID_RANGE);
    assert_int_equal(unilock_watch(NULL, FILE_A, 5, 0, NULL, &id), UNILOCK_E_INVALID);
    assert_int_equal(unilock_watch(ul, NULL, 5, 0, NULL, &id), UNILOCK_E_INVALID);
    assert_int_equal(unilock_cancel(NULL, 1, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_cancel_owner(ul, FILE_A, 5, NULL, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_process_events(NULL, NULL), UNILOCK_E_INVALID);
    assert_int_equal(unilock_event_fd(NULL), -1);
    assert_int_equal(unilock_next_timeout_ms(NULL), -1);
    unilock_config cfg;
    unilock_config_init(&cfg);
    cfg.event_mode = 9;
    unilock *u2 = NULL;
    assert_int_equal(unilock_open(&cfg, &u2), UNILOCK_E_INVALID);
    assert_null(u2);
    size_t n = 1;
    assert_int_equal(unilock_list_locks(ul, FILE_A, 5, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 0);
    unilock_close(ul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop_mode_grant_without_threads),
        cmocka_unit_test(test_token_reused_for_another_range),
        cmocka_unit_test(test_loop_mode_timeout),
        cmocka_unit_test(test_thread_mode_delivers_on_library_thread),
        cmocka_unit_test(test_cancel_outcomes_and_deadlock),
        cmocka_unit_test(test_watch_and_close_ends_waiters),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
