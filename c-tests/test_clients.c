/* Clients, limits and metrics from C (SPEC.md §6): every limit and TTL path with short TTLs, metric
 * values after a known sequence, and the Prometheus text (written for `promtool check metrics` when
 * UNILOCK_PROM_OUT names a file). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unilock.h"

static const uint8_t F[] = "cfile";
static const uint8_t G[] = "gfile";

static unilock *open_cfg(uint64_t per_file, uint64_t per_client, uint64_t total)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.event_mode = UNILOCK_EVENTS_LOOP;
    cfg.max_locks_per_file = per_file;
    cfg.max_locks_per_client = per_client;
    cfg.max_locks_total = total;
    assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_OK);
    return ul;
}

static unilock_lock_req px(uint32_t type, uint64_t off, uint64_t len)
{
    unilock_lock_req r = { UNILOCK_POSIX, type, off, len, 0 };
    return r;
}

static void test_limits(void **s)
{
    (void)s;
    unilock_owner a = { "nlm:a", (const uint8_t *)"1", 1, 0 }, b = { "nlm:b", (const uint8_t *)"2", 1, 0 };
    unilock_lock_req r;
    unilock *ul = open_cfg(2, 0, 0);
    r = px(UNILOCK_SHARED, 0, 1);
    assert_int_equal(unilock_lock(ul, F, 5, &a, &r, NULL), UNILOCK_OK);
    r = px(UNILOCK_SHARED, 5, 1);
    assert_int_equal(unilock_lock(ul, F, 5, &a, &r, NULL), UNILOCK_OK);
    r = px(UNILOCK_SHARED, 9, 1);
    assert_int_equal(unilock_lock(ul, F, 5, &b, &r, NULL), UNILOCK_E_LIMIT);
    assert_non_null(strstr(unilock_errdetail(), "per file"));
    assert_int_equal(unilock_lock(ul, G, 5, &b, &r, NULL), UNILOCK_OK);
    unilock_close(ul);

    ul = open_cfg(0, 1, 0);
    assert_int_equal(unilock_lock(ul, F, 5, &a, &r, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, G, 5, &a, &r, NULL), UNILOCK_E_LIMIT);
    assert_non_null(strstr(unilock_errdetail(), "per client"));
    assert_int_equal(unilock_lock(ul, G, 5, &b, &r, NULL), UNILOCK_OK);
    assert_int_equal(unilock_unlock(ul, F, 5, &a, UNILOCK_POSIX, 9, 1), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, G, 5, &a, &r, NULL), UNILOCK_OK);
    unilock_close(ul);

    ul = open_cfg(0, 0, 1);
    assert_int_equal(unilock_lock(ul, F, 5, &a, &r, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, G, 5, &b, &r, NULL), UNILOCK_E_LIMIT);
    assert_non_null(strstr(unilock_errdetail(), "in total"));
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id;
    assert_int_equal(unilock_lock_blocking(ul, G, 5, &b, &r, &w, &id, NULL), UNILOCK_E_LIMIT);
    unilock_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    assert_int_equal(unilock_metrics_get(ul, &m), UNILOCK_OK);
    assert_int_equal(m.limit_hits[UNILOCK_LIMIT_TOTAL], 2);
    assert_int_equal(m.acquisitions[0][0][UNILOCK_RESULT_LIMIT], 2);
    unilock_close(ul);
}

struct seen {
    int n;
    char names[8][64];
};

static int visit_client(void *ud, const unilock_client_info *c)
{
    struct seen *s = ud;
    snprintf(s->names[s->n++], 64, "%s/%s/%s/%u", c->client, c->adapter, c->address, c->connected);
    return 0;
}

static void test_clients_ttl_and_connection_limit(void **s)
{
    (void)s;
    unilock *ul = open_cfg(0, 0, 0);
    assert_int_equal(unilock_set_adapter_limit(ul, "smb", 1), UNILOCK_OK);
    assert_int_equal(unilock_client_register(ul, "smb:a", "smb", "192.0.2.1", 40), UNILOCK_OK);
    assert_int_equal(unilock_client_register(ul, "smb:a", "smb", "192.0.2.1", 40), UNILOCK_OK); /* idempotent */
    assert_int_equal(unilock_client_register(ul, "smb:b", "smb", NULL, 0), UNILOCK_E_LIMIT);
    assert_non_null(strstr(unilock_errdetail(), "connections"));
    assert_int_equal(unilock_client_register(ul, "nlm:h", "nlm", NULL, 0), UNILOCK_OK);
    struct seen sn = { 0 };
    size_t count = 0;
    assert_int_equal(unilock_client_list(ul, visit_client, &sn, &count), UNILOCK_OK);
    assert_int_equal(count, 2);
    assert_string_equal(sn.names[0], "nlm:h/nlm//1");
    assert_string_equal(sn.names[1], "smb:a/smb/192.0.2.1/1");

    unilock_owner a = { "smb:a", (const uint8_t *)"x", 1, 7 };
    unilock_lock_req r = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 10, 0 };
    assert_int_equal(unilock_lock(ul, F, 5, &a, &r, NULL), UNILOCK_OK);
    size_t released = 99;
    /* Disconnect with a TTL keeps the lock; a reconnect cancels the release. */
    assert_int_equal(unilock_client_disconnect(ul, "smb:a", &released), UNILOCK_OK);
    assert_int_equal(released, 0);
    assert_int_equal(unilock_client_register(ul, "smb:a", "smb", "192.0.2.1", 40), UNILOCK_OK);
    int fd = unilock_event_fd(ul);
    struct pollfd p = { fd, POLLIN, 0 };
    poll(&p, 1, 80);
    size_t d;
    unilock_process_events(ul, &d);
    size_t n = 0;
    assert_int_equal(unilock_list_locks(ul, F, 5, NULL, NULL, &n), UNILOCK_OK);
    assert_int_equal(n, 1);
    /* Disconnect again and wait past the TTL on the event fd: released. */
    assert_int_equal(unilock_client_disconnect(ul, "smb:a", &released), UNILOCK_OK);
    for (int i = 0; i < 100 && n == 1; i++) {
        int64_t t = unilock_next_timeout_ms(ul);
        poll(&p, 1, (t < 0 || t > 20) ? 20 : (int)t);
        unilock_process_events(ul, &d);
        unilock_list_locks(ul, F, 5, NULL, NULL, &n);
    }
    assert_int_equal(n, 0);
    /* The smb adapter has room again. */
    assert_int_equal(unilock_client_register(ul, "smb:b", "smb", NULL, 0), UNILOCK_OK);
    /* TTL 0 releases at once. */
    unilock_owner h = { "nlm:h", (const uint8_t *)"s", 1, 0 };
    unilock_lock_req q = px(UNILOCK_SHARED, 0, 5);
    assert_int_equal(unilock_lock(ul, G, 5, &h, &q, NULL), UNILOCK_OK);
    assert_int_equal(unilock_client_disconnect(ul, "nlm:h", &released), UNILOCK_OK);
    assert_int_equal(released, 1);
    assert_int_equal(unilock_client_disconnect(ul, "nlm:h", &released), UNILOCK_E_NOT_FOUND);
    assert_int_equal(unilock_client_register(ul, NULL, "smb", NULL, 0), UNILOCK_E_INVALID);
    assert_int_equal(unilock_client_register(ul, "", "smb", NULL, 0), UNILOCK_E_INVALID);
    assert_int_equal(unilock_client_register(ul, "x", NULL, NULL, 0), UNILOCK_E_INVALID);
    unilock_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    assert_int_equal(unilock_metrics_get(ul, &m), UNILOCK_OK);
    assert_int_equal(m.releases[UNILOCK_RELEASE_TTL], 1);
    assert_int_equal(m.releases[UNILOCK_RELEASE_DISCONNECT], 1);
    assert_int_equal(m.limit_hits[UNILOCK_LIMIT_CONNECTIONS], 1);
    assert_int_equal(m.connections, 1);
    unilock_close(ul);
}

static void test_metrics_known_sequence_and_prometheus(void **s)
{
    (void)s;
    unilock *ul = open_cfg(0, 0, 0);
    unilock_owner a = { "nlm:a", (const uint8_t *)"1", 1, 0 }, b = { "smb:b", (const uint8_t *)"2", 1, 3 };
    unilock_lock_req x = px(UNILOCK_EXCLUSIVE, 0, 10);
    unilock_lock_req ws = { UNILOCK_WINDOWS, UNILOCK_SHARED, 5, 1, 0 };
    assert_int_equal(unilock_lock(ul, F, 5, &a, &x, NULL), UNILOCK_OK);
    assert_int_equal(unilock_lock(ul, F, 5, &b, &ws, NULL), UNILOCK_E_CONFLICT);
    unilock_wait w = { 1, NULL, 0 };
    uint64_t id;
    assert_int_equal(unilock_lock_blocking(ul, F, 5, &b, &ws, &w, &id, NULL), UNILOCK_PENDING);
    assert_int_equal(unilock_unlock(ul, F, 5, &a, UNILOCK_POSIX, 0, 10), UNILOCK_OK);
    size_t d;
    assert_int_equal(unilock_process_events(ul, &d), UNILOCK_OK);
    assert_int_equal(d, 1);
    unilock_metrics m;
    memset(&m, 0, sizeof m);
    m.size = sizeof m;
    assert_int_equal(unilock_metrics_get(ul, &m), UNILOCK_OK);
    assert_int_equal(m.size, sizeof m);
    assert_int_equal(m.acquisitions[0][1][UNILOCK_RESULT_GRANTED], 1);
    assert_int_equal(m.acquisitions[1][0][UNILOCK_RESULT_CONFLICT], 1);
    assert_int_equal(m.acquisitions[1][0][UNILOCK_RESULT_PENDING], 1);
    assert_int_equal(m.releases[UNILOCK_RELEASE_EXPLICIT], 1);
    assert_int_equal(m.locks_active, 1);
    assert_int_equal(m.waiters_blocked, 0);
    assert_int_equal(m.wait_count, 1);
    /* A caller compiled against an older, smaller struct gets only what it has room for. */
    struct { size_t size; uint64_t first[2]; uint64_t canary; } small;
    small.size = sizeof(size_t) + 2 * sizeof(uint64_t);
    small.canary = 0xdeadbeef;
    assert_int_equal(unilock_metrics_get(ul, (unilock_metrics *)(void *)&small), UNILOCK_OK);
    assert_int_equal(small.canary, 0xdeadbeef);
    assert_int_equal(unilock_metrics_get(ul, NULL), UNILOCK_E_INVALID);

    size_t len = 0;
    assert_int_equal(unilock_metrics_prometheus(ul, NULL, 0, &len), UNILOCK_OK);
    assert_true(len > 100);
    char tiny[8];
    assert_int_equal(unilock_metrics_prometheus(ul, tiny, sizeof tiny, &len), UNILOCK_E_LIMIT);
    char *text = malloc(len + 1);
    assert_int_equal(unilock_metrics_prometheus(ul, text, len + 1, &len), UNILOCK_OK);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "unilock_locks_active 1\n"));
    assert_non_null(strstr(text, "unilock_lock_acquisitions_total{flavour=\"windows\",type=\"shared\",result=\"pending\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE unilock_lock_wait_seconds histogram\n"));
    const char *out = getenv("UNILOCK_PROM_OUT");
    if (out) {
        FILE *f = fopen(out, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    free(text);
    unilock_close(ul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_clients_ttl_and_connection_limit),
        cmocka_unit_test(test_metrics_known_sequence_and_prometheus),
    };
    return cmocka_run_group_tests_name("clients", tests, NULL, NULL);
}
