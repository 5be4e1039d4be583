/*
 * demo_util.c: the helpers every act of the demo uses: printing what was asked and what unilock
 * answered, checking each answer against the expected one, listing the locks of a file, and the
 * server's event loop (event fd, unilock_process_events) with the events it delivered.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "demo.h"

unilock *ul;
const uint8_t *fid;
int failures;
char demo_dir[4096];

struct demo_event events[MAX_EVENTS];
size_t n_events;

/* ------------------------------------------------------------------------------------------------ */
/* The stage                                                                                        */

void client_init(struct client *c, const char *name, const char *io_name, uint32_t flavour,
                 const char *client_id, uint8_t *owner_bytes, size_t len, uint64_t owner_value,
                 uint64_t open_id)
{
    for (size_t i = 0; i < len; i++)
        owner_bytes[i] = (uint8_t)(i + 8 >= len ? owner_value >> (8 * (len - 1 - i)) : 0);
    c->name = name;
    c->io_name = io_name;
    c->flavour = flavour;
    c->owner.client = client_id;
    c->owner.owner = owner_bytes;
    c->owner.owner_len = len;
    c->owner.open_id = open_id;
}

int make_file(const char *name, uint8_t id[FID_LEN])
{
    char path[4200];
    struct stat sb;
    unilock_status st;
    int fd;

    snprintf(path, sizeof path, "%s/%s", demo_dir, name);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "demo: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0) {
        fprintf(stderr, "demo: fstat %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    st = unilock_file_id_make((uint64_t)sb.st_dev, (uint64_t)sb.st_ino, 0, id);
    if (st != UNILOCK_OK) {
        fprintf(stderr, "demo: unilock_file_id_make: %s\n", unilock_strerror(st));
        return -1;
    }
    printf("file %s: st_dev %" PRIu64 ", st_ino %" PRIu64 "\n", path, (uint64_t)sb.st_dev,
           (uint64_t)sb.st_ino);
    printf("  file id (unilock_file_id_make, %d bytes): ", FID_LEN);
    for (size_t i = 0; i < FID_LEN; i++)
        printf("%02x", id[i]);
    printf("\n");
    return 0;
}

int open_manager(unilock_config *cfg, unilock **out)
{
    unilock_status st;
    cfg->event_fn = on_event;
    cfg->event_user_data = NULL;
    st = unilock_open(cfg, out);
    if (st != UNILOCK_OK) {
        unexpected("unilock_open: %s (%s)", unilock_strerror(st), unilock_errdetail());
        return -1;
    }
    return 0;
}

void on_log(void *user_data, uint32_t level, const char *message)
{
    static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};
    (void)user_data;
    printf("  [unilock log, %s] %s\n", level <= UNILOCK_LOG_TRACE ? names[level] : "?", message);
}

/* ------------------------------------------------------------------------------------------------ */
/* Printing                                                                                         */

void act(const char *title)
{
    printf("\n==== %s ====\n", title);
}

void step(const char *title)
{
    printf("\n%s\n", title);
}

void say(const char *fmt, ...)
{
    va_list ap;
    printf("    ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

void unexpected(const char *fmt, ...)
{
    va_list ap;
    failures++;
    printf("    !! UNEXPECTED: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

const char *type_name(uint32_t t)
{
    return t == UNILOCK_SHARED ? "shared" : t == UNILOCK_EXCLUSIVE ? "exclusive" : "?";
}

const char *flavour_name(uint32_t f)
{
    return f == UNILOCK_POSIX ? "POSIX" : f == UNILOCK_WINDOWS ? "Windows" : "?";
}

/* "[offset, end)", "[offset, EOF)" for a POSIX lock to the end of the offset space. */
const char *range_str(char *buf, size_t n, uint64_t offset, uint64_t length)
{
    if (length == UNILOCK_TO_EOF)
        snprintf(buf, n, "[%" PRIu64 ", EOF)", offset);
    else if (length > UINT64_MAX - offset)
        snprintf(buf, n, "[%" PRIu64 ", 2^64)", offset);
    else
        snprintf(buf, n, "[%" PRIu64 ", %" PRIu64 ")", offset, offset + length);
    return buf;
}

const char *lease_str(uint32_t state)
{
    static const char *names[8] = {"none", "R", "H", "RH", "W", "RW", "WH", "RWH"};
    return state < 8 ? names[state] : "?";
}

/* Names the demo gave to lease keys, so that events say "key KA" rather than 32 hex digits. */
static struct {
    uint8_t key[16];
    const char *name;
} key_names[8];
static size_t n_key_names;

void name_key(const uint8_t key[16], const char *name)
{
    for (size_t i = 0; i < n_key_names; i++) {
        if (memcmp(key_names[i].key, key, 16) == 0) {
            key_names[i].name = name;
            return;
        }
    }
    if (n_key_names < sizeof key_names / sizeof key_names[0]) {
        memcpy(key_names[n_key_names].key, key, 16);
        key_names[n_key_names++].name = name;
    }
}

const char *key_str(const uint8_t key[16])
{
    static char hex[40];
    for (size_t i = 0; i < n_key_names; i++)
        if (memcmp(key_names[i].key, key, 16) == 0)
            return key_names[i].name;
    for (size_t i = 0; i < 16; i++)
        snprintf(hex + 2 * i, sizeof hex - 2 * i, "%02x", key[i]);
    return hex;
}

static uint64_t be_uint(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* The owner bytes as this server encoded them (unilock itself treats them as opaque). */
static const char *owner_str(char *buf, size_t n, const char *client, const uint8_t *owner, size_t len)
{
    if (strncmp(client, "nlm:", 4) == 0 && len == 4) {
        snprintf(buf, n, "svid %" PRIu64, be_uint(owner, len));
    } else if (strncmp(client, "smb:", 4) == 0 && len == 8) {
        snprintf(buf, n, "smblctx 0x%" PRIx64, be_uint(owner, len));
    } else if (strncmp(client, "nfs4:", 5) == 0 && len == 8) {
        snprintf(buf, n, "lock-owner %" PRIu64, be_uint(owner, len));
    } else {
        size_t k = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < len && k + 3 < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%02x", owner[i]);
    }
    return buf;
}

/* One line naming a held lock: who, what, where. */
void print_lock(const char *indent, const unilock_lock_info *li)
{
    char own[64], rng[64], open[32] = "";
    owner_str(own, sizeof own, li->client, li->owner, li->owner_len);
    range_str(rng, sizeof rng, li->offset, li->length);
    if (li->flavour == UNILOCK_WINDOWS)
        snprintf(open, sizeof open, "open 0x%" PRIx64, li->open_id);
    printf("%s%-42s %-18s %-8s %-10s %-*s%s\n", indent, li->client, own, flavour_name(li->flavour),
           type_name(li->type), open[0] ? 15 : 0, rng, open);
}

/* ------------------------------------------------------------------------------------------------ */
/* Checking answers                                                                                 */

int answer_as(unilock_status got, unilock_status want, const char *ok, const char *refused)
{
    if (got == UNILOCK_OK)
        printf("    -> %s\n", ok);
    else if (got == UNILOCK_PENDING)
        printf("    -> pending\n");
    else
        printf("    -> %s: %s\n", refused, unilock_strerror(got));
    if (got != want) {
        unexpected("status %u (%s), expected %u (%s)", (unsigned)got, unilock_strerror(got), (unsigned)want,
                   unilock_strerror(want));
        return 0;
    }
    return 1;
}

int answer(unilock_status got, unilock_status want)
{
    return answer_as(got, want, "OK", "refused");
}

/* The same for unilock_test, which changes nothing. */
int test_answer(unilock_status got, unilock_status want)
{
    return answer_as(got, want, "would be granted", "would be refused");
}

void check_u64(const char *what, uint64_t got, uint64_t want)
{
    if (got != want)
        unexpected("%s is %" PRIu64 ", expected %" PRIu64, what, got, want);
}

/* ------------------------------------------------------------------------------------------------ */
/* Listing and checking the locks of the file                                                       */

#define MAX_LOCKS 16
struct snapshot {
    size_t n;
    unilock_lock_info locks[MAX_LOCKS];
};

static int32_t collect(void *user_data, const unilock_lock_info *lock)
{
    struct snapshot *s = user_data;
    if (s->n < MAX_LOCKS)
        s->locks[s->n] = *lock;
    s->n++;
    return 0;
}

static int same(const unilock_lock_info *li, const struct want *w)
{
    return strcmp(li->client, w->client) == 0 && li->client_len == strlen(w->client) &&
           li->flavour == w->flavour && li->type == w->type && li->offset == w->offset &&
           li->length == w->length;
}

void table(const struct want *want, size_t n_want)
{
    static struct snapshot snap;
    size_t count = 0;
    snap.n = 0;
    unilock_status st = unilock_list_locks(ul, fid, FID_LEN, collect, &snap, &count);
    if (st != UNILOCK_OK) {
        unexpected("unilock_list_locks failed: %s", unilock_strerror(st));
        return;
    }
    if (count != snap.n)
        unexpected("%s", "unilock_list_locks: count differs from the number of locks visited");
    printf("    locks on the file: %zu\n", snap.n);
    if (snap.n > 0)
        printf("      %-42s %-18s %-8s %-10s %s\n", "client", "owner", "flavour", "type", "range");
    for (size_t i = 0; i < snap.n && i < MAX_LOCKS; i++)
        print_lock("      ", &snap.locks[i]);
    int ok = snap.n == n_want;
    for (size_t i = 0; ok && i < n_want; i++)
        ok = same(&snap.locks[i], &want[i]);
    if (!ok) {
        unexpected("%s", "the locks on the file are not the expected ones, which are:");
        for (size_t i = 0; i < n_want; i++) {
            char rng[64];
            printf("      %-42s %-18s %-8s %-10s %s\n", want[i].client, "", flavour_name(want[i].flavour),
                   type_name(want[i].type), range_str(rng, sizeof rng, want[i].offset, want[i].length));
        }
    }
}

void holder(const unilock_lock_info *h, const struct want *w)
{
    print_lock("    held by: ", h);
    if (!same(h, w))
        unexpected("%s", "the reported holder is not the expected one");
}

/* ------------------------------------------------------------------------------------------------ */
/* Requests                                                                                         */

unilock_lock_req req(const struct client *c, uint32_t type, uint64_t offset, uint64_t length)
{
    unilock_lock_req r = {c->flavour, type, offset, length, 0};
    return r;
}

unilock_status do_lock(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                       unilock_lock_info *h)
{
    char rng[64];
    unilock_lock_req r = req(c, type, offset, length);
    printf("  %s LOCK %s %s\n", c->name, type_name(type), range_str(rng, sizeof rng, offset, length));
    return unilock_lock(ul, fid, FID_LEN, &c->owner, &r, h);
}

unilock_status do_reclaim(const struct client *c, uint32_t type, uint64_t offset, uint64_t length)
{
    char rng[64];
    unilock_lock_req r = req(c, type, offset, length);
    r.flags = UNILOCK_LOCK_RECLAIM;
    printf("  %s LOCK %s %s, reclaim\n", c->name, type_name(type), range_str(rng, sizeof rng, offset, length));
    return unilock_lock(ul, fid, FID_LEN, &c->owner, &r, NULL);
}

unilock_status do_test(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                       unilock_lock_info *h)
{
    char rng[64];
    unilock_lock_req r = req(c, type, offset, length);
    printf("  %s TEST %s %s\n", c->name, type_name(type), range_str(rng, sizeof rng, offset, length));
    return unilock_test(ul, fid, FID_LEN, &c->owner, &r, h);
}

/* ------------------------------------------------------------------------------------------------ */
/* Events                                                                                           */

static const char *event_name(uint32_t type)
{
    switch (type) {
    case UNILOCK_EVENT_LOCK:
        return "LOCK";
    case UNILOCK_EVENT_WATCH:
        return "WATCH";
    case UNILOCK_EVENT_LEASE_BREAK:
        return "LEASE_BREAK";
    case UNILOCK_EVENT_LEASE_REVOKED:
        return "LEASE_REVOKED";
    case UNILOCK_EVENT_BREAKS_DONE:
        return "BREAKS_DONE";
    case UNILOCK_EVENT_GRACE_RELEASED:
        return "GRACE_RELEASED";
    default:
        return "?";
    }
}

void on_event(void *user_data, const unilock_event *event)
{
    (void)user_data;
    if (n_events >= MAX_EVENTS) {
        unexpected("%s", "more events than the demo can hold");
        return;
    }
    struct demo_event *d = &events[n_events++];
    d->ev = *event;
    snprintf(d->client, sizeof d->client, "%s", event->client ? event->client : "");
    d->ev.file_id = NULL; /* these point into the library and are valid only during the callback */
    d->ev.client = NULL;
    d->ev.owner = NULL;
    d->ev.user_data = NULL;
}

void print_event(const struct demo_event *e)
{
    const unilock_event *ev = &e->ev;
    printf("  <- %s", event_name(ev->type));
    switch (ev->type) {
    case UNILOCK_EVENT_LEASE_BREAK:
        printf(" to %s: %skey %s, %s -> %s", e->client,
               ev->lease_kind == UNILOCK_LEASE_KIND_DELEGATION ? "delegation, " : "", key_str(ev->lease_key),
               lease_str(ev->lease_state), lease_str(ev->break_to));
        if (ev->lease_kind == UNILOCK_LEASE_KIND_LEASE)
            printf(", epoch %u", (unsigned)ev->epoch);
        printf(", %s\n", ev->ack_required ? "ack required" : "no ack (already in effect)");
        break;
    case UNILOCK_EVENT_LEASE_REVOKED:
        printf(" %s: key %s, was %s, now none\n", e->client, key_str(ev->lease_key), lease_str(ev->lease_state));
        break;
    case UNILOCK_EVENT_BREAKS_DONE:
        printf(": request %" PRIu64 " (token 0x%" PRIx64 ") may be retried\n", ev->request_id, ev->token);
        break;
    case UNILOCK_EVENT_GRACE_RELEASED:
        printf(" %s: %" PRIu64 " lock(s) and %" PRIu64 " lease(s) nobody reclaimed, released\n", e->client,
               ev->offset, ev->length);
        break;
    default:
        printf(" request %" PRIu64 ": %s\n", ev->request_id, unilock_strerror(ev->status));
        break;
    }
}

void pump(int wait_ms)
{
    int fd = unilock_event_fd(ul);
    size_t delivered = SIZE_MAX;
    struct pollfd p = {fd, POLLIN, 0};
    int r;

    if (fd < 0) {
        unexpected("%s", "unilock_event_fd is -1 in event-loop mode");
        return;
    }
    if (wait_ms < 0) {
        int64_t t = unilock_next_timeout_ms(ul);
        wait_ms = t < 0 ? 10000 : t > 10000 ? 10000 : (int)t;
    }
    r = poll(&p, 1, wait_ms);
    n_events = 0;
    if (unilock_process_events(ul, &delivered) != UNILOCK_OK)
        unexpected("%s", "unilock_process_events failed");
    printf("  [event loop] event fd %s; unilock_process_events delivered %zu event(s)\n",
           r > 0 && (p.revents & POLLIN) ? "readable" : "not readable", delivered);
    if (delivered != n_events)
        unexpected("unilock_process_events says %zu, the callback saw %zu", delivered, n_events);
    for (size_t i = 0; i < n_events; i++)
        print_event(&events[i]);
}

void pump_until_event(int max_ms)
{
    int fd = unilock_event_fd(ul);
    size_t delivered = 0;
    struct timespec t0, t1;
    long waited = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    n_events = 0;
    while (delivered == 0 && waited <= max_ms) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t t = unilock_next_timeout_ms(ul);
        int ms = t < 0 || t > max_ms - waited ? (int)(max_ms - waited) : (int)t;
        poll(&p, 1, ms < 0 ? 0 : ms);
        if (unilock_process_events(ul, &delivered) != UNILOCK_OK) {
            unexpected("%s", "unilock_process_events failed");
            return;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        waited = (long)(t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    }
    printf("  [event loop] slept in poll(); unilock_process_events delivered %zu event(s)\n", delivered);
    if (delivered != n_events)
        unexpected("unilock_process_events says %zu, the callback saw %zu", delivered, n_events);
    for (size_t i = 0; i < n_events; i++)
        print_event(&events[i]);
}

void expect_n_events(size_t n)
{
    if (n_events != n)
        unexpected("%zu event(s), expected %zu", n_events, n);
}

static const unilock_event *event_of(size_t i, uint32_t type)
{
    if (i >= n_events) {
        unexpected("no event #%zu (expected a %s event)", i + 1, event_name(type));
        return NULL;
    }
    if (events[i].ev.type != type) {
        unexpected("event #%zu is %s, expected %s", i + 1, event_name(events[i].ev.type), event_name(type));
        return NULL;
    }
    return &events[i].ev;
}

void expect_break(size_t i, const char *client, const uint8_t key[16], uint32_t from, uint32_t to,
                  uint32_t epoch, uint32_t ack_required)
{
    const unilock_event *ev = event_of(i, UNILOCK_EVENT_LEASE_BREAK);
    if (!ev)
        return;
    if (strcmp(events[i].client, client) != 0 || memcmp(ev->lease_key, key, 16) != 0 ||
        ev->lease_state != from || ev->break_to != to || (epoch != NO_EPOCH && ev->epoch != epoch) ||
        ev->ack_required != ack_required || ev->request_id != 0)
        unexpected("expected a break to %s: key %s, %s -> %s, epoch %u, %s", client, key_str(key), lease_str(from),
                   lease_str(to), (unsigned)epoch, ack_required ? "ack required" : "no ack");
}

void expect_breaks_done(size_t i, uint64_t request_id, uint64_t token)
{
    const unilock_event *ev = event_of(i, UNILOCK_EVENT_BREAKS_DONE);
    if (ev && (ev->request_id != request_id || ev->token != token || ev->status != UNILOCK_OK))
        unexpected("expected BREAKS_DONE for request %" PRIu64 " (token 0x%" PRIx64 ")", request_id, token);
}

void expect_grace_released(size_t i, const char *client, uint64_t locks, uint64_t leases)
{
    const unilock_event *ev = event_of(i, UNILOCK_EVENT_GRACE_RELEASED);
    if (ev && (strcmp(events[i].client, client) != 0 || ev->offset != locks || ev->length != leases))
        unexpected("expected GRACE_RELEASED for %s: %" PRIu64 " lock(s), %" PRIu64 " lease(s)", client, locks,
                   leases);
}
