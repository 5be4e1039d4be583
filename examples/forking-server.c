/*
 * forking-server: behaves like smbd. The parent accepts scripted "connections" and forks one child
 * per connection; each child opens its own unilock handle in shared mode (after fork, as smbd reopens
 * its databases in every child), drives it from its own poll() loop on unilock_event_fd(), and the
 * children lock, lease and break each other through one lock table in one SQLite database.
 *
 * The story: alice (SMB) holds an RWH lease and a byte-range lock; bob (SMB) opens the same file, so
 * alice's lease is broken in her process and bob's open waits in his; alice acknowledges; bob gets RH
 * and queues a blocking lock behind alice's; alice's connection dies (SIGKILL, nobody announces it);
 * bob's process finds the dead holder and is granted the lock; carol (NLM) sees bob as the holder.
 * Every answer is checked; the program exits non-zero on any surprise.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unilock.h"

static char db[512];
static const uint8_t FILE_ID[] = "share/report.doc";
#define FID_LEN (sizeof FILE_ID - 1)
static const uint8_t KEY_ALICE[16] = { 0xa1 }, KEY_BOB[16] = { 0xb0 };
static const char *who = "parent";

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("[%-6s pid %5d] ", who, (int)getpid());
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

static void fail(const char *what, unilock_status st)
{
    say("!! UNEXPECTED: %s: %s (%s)", what, unilock_strerror(st), unilock_errdetail());
    _exit(1);
}

/* What a connection's event loop saw. */
static unilock_event last;
static int events;

static void on_event(void *ud, const unilock_event *e)
{
    (void)ud;
    last = *e;
    events++;
    switch (e->type) {
    case UNILOCK_EVENT_LEASE_BREAK:
        say("<- lease break: state 0x%x -> 0x%x, epoch %u, ack %s", e->lease_state, e->break_to, e->epoch,
            e->ack_required ? "required" : "not needed");
        break;
    case UNILOCK_EVENT_BREAKS_DONE:
        say("<- the breaks my open waited for are done: retry the open");
        break;
    case UNILOCK_EVENT_LOCK:
        say("<- blocking lock [%llu, +%llu): %s", (unsigned long long)e->offset, (unsigned long long)e->length,
            unilock_strerror(e->status));
        break;
    default:
        say("<- event %u", e->type);
    }
}

static unilock *connect_session(void)
{
    unilock_config cfg;
    unilock *ul = NULL;
    unilock_config_init(&cfg);
    cfg.flags = UNILOCK_CONFIG_SHARED;
    cfg.db_path = db;
    cfg.durability = UNILOCK_DURABILITY_PROCESS;
    cfg.event_mode = UNILOCK_EVENTS_LOOP; /* smbd: one tevent loop, no library thread */
    cfg.event_fn = on_event;
    unilock_status st = unilock_open(&cfg, &ul);
    if (st != UNILOCK_OK)
        fail("unilock_open", st);
    return ul;
}

/* The connection's event loop, until `n` more events arrived (or 10 s passed). */
static void loop_until(unilock *ul, int n)
{
    int want = events + n, fd = unilock_event_fd(ul);
    for (int i = 0; i < 1000 && events < want; i++) {
        struct pollfd p = { fd, POLLIN, 0 };
        int64_t t = unilock_next_timeout_ms(ul);
        poll(&p, 1, (t < 0 || t > 10) ? 10 : (int)t);
        size_t d;
        unilock_process_events(ul, &d);
    }
    if (events < want) {
        say("!! UNEXPECTED: no event came");
        _exit(1);
    }
}

static void tell(int fd, char c)
{
    if (write(fd, &c, 1) != 1)
        _exit(2);
}

static void await(int fd, char want)
{
    char c = 0;
    if (read(fd, &c, 1) != 1 || c != want) {
        say("!! UNEXPECTED: lost the script (%c)", want);
        _exit(2);
    }
}

static unilock_open_req lease(const uint8_t key[16])
{
    unilock_open_req q;
    unilock_open_req_init(&q);
    q.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    q.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H;
    q.lease_version = 2;
    memcpy(q.lease_key, key, 16);
    return q;
}

/* pipes: parent -> child (script), child -> parent (done) */
static int to_alice[2], from_alice[2], to_bob[2], from_bob[2];

static void alice(void)
{
    who = "alice";
    unilock *ul = connect_session();
    unilock_open_req q = lease(KEY_ALICE);
    unilock_open_result res;
    unilock_status st = unilock_file_open(ul, FILE_ID, FID_LEN, "smb:alice", 1, &q, NULL, &res);
    if (st != UNILOCK_OK || res.state != q.requested)
        fail("open with an RWH lease", st);
    say("opened report.doc with lease RWH (epoch %u)", res.epoch);
    unilock_owner me = { "smb:alice", (const uint8_t *)"lctx-a", 6, 1 };
    unilock_lock_req x = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 100, 0 };
    if ((st = unilock_lock(ul, FILE_ID, FID_LEN, &me, &x, NULL)) != UNILOCK_OK)
        fail("lock [0, 100)", st);
    say("locked [0, 100) exclusively");
    tell(from_alice[1], 'R');
    loop_until(ul, 1); /* the break, sent from bob's process */
    if (last.type != UNILOCK_EVENT_LEASE_BREAK || last.break_to != (UNILOCK_LEASE_R | UNILOCK_LEASE_H))
        fail("expected a break to RH", UNILOCK_E_INTERNAL);
    if ((st = unilock_lease_ack(ul, FILE_ID, FID_LEN, "smb:alice", KEY_ALICE, last.break_to)) != UNILOCK_OK)
        fail("ack", st);
    say("acknowledged the break: lease now RH");
    tell(from_alice[1], 'A');
    for (;;)
        pause(); /* until the connection dies */
}

static void bob(void)
{
    who = "bob";
    await(to_bob[0], 'G');
    unilock *ul = connect_session();
    unilock_open_req q = lease(KEY_BOB);
    unilock_open_result res;
    unilock_wait w = { 1, NULL, 0 };
    unilock_status st = unilock_file_open(ul, FILE_ID, FID_LEN, "smb:bob", 7, &q, &w, &res);
    if (st != UNILOCK_PENDING)
        fail("open while alice holds W (expected pending)", st);
    say("open of report.doc is pending: alice's lease must be broken first");
    tell(from_bob[1], 'P');
    loop_until(ul, 1);
    if (last.type != UNILOCK_EVENT_BREAKS_DONE)
        fail("expected breaks done", UNILOCK_E_INTERNAL);
    if ((st = unilock_file_open(ul, FILE_ID, FID_LEN, "smb:bob", 7, &q, &w, &res)) != UNILOCK_OK)
        fail("retried open", st);
    say("retried the open: granted lease 0x%x (RH: W is never held by two keys)", res.state);
    unilock_owner me = { "smb:bob", (const uint8_t *)"lctx-b", 6, 7 };
    unilock_lock_req x = { UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 50, 10, 0 };
    unilock_lock_info h;
    if ((st = unilock_lock(ul, FILE_ID, FID_LEN, &me, &x, &h)) != UNILOCK_E_CONFLICT)
        fail("lock [50, 60) (expected a conflict)", st);
    say("lock [50, 60) refused: held by %s, open %llu, [%llu, +%llu)", h.client, (unsigned long long)h.open_id,
        (unsigned long long)h.offset, (unsigned long long)h.length);
    uint64_t id;
    if ((st = unilock_lock_blocking(ul, FILE_ID, FID_LEN, &me, &x, &w, &id, NULL)) != UNILOCK_PENDING)
        fail("blocking lock", st);
    say("queued a blocking lock [50, 60) (request %llu)", (unsigned long long)id);
    tell(from_bob[1], 'Q');
    loop_until(ul, 1); /* granted once the dead holder is found */
    if (last.type != UNILOCK_EVENT_LOCK || last.status != UNILOCK_OK || last.request_id != id)
        fail("expected the grant", UNILOCK_E_INTERNAL);
    tell(from_bob[1], 'L');
    await(to_bob[0], 'X');
    unilock_close(ul);
    _exit(0);
}

static void carol(void)
{
    who = "carol";
    unilock *ul = connect_session();
    unilock_owner me = { "nlm:carol", (const uint8_t *)"svid 9", 6, 0 };
    unilock_lock_req t = { UNILOCK_POSIX, UNILOCK_SHARED, 55, 1, 0 };
    unilock_lock_info h;
    unilock_status st = unilock_test(ul, FILE_ID, FID_LEN, &me, &t, &h);
    if (st != UNILOCK_E_CONFLICT || strcmp(h.client, "smb:bob") != 0)
        fail("NLM TEST (expected bob as the holder)", st);
    say("NLM TEST [55, 56): would be refused, held by %s (Windows lock [%llu, +%llu))", h.client,
        (unsigned long long)h.offset, (unsigned long long)h.length);
    unilock_close(ul);
    _exit(0);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[256];
    snprintf(dir, sizeof dir, "%s/unilock-forking-XXXXXX", tmp);
    if (!mkdtemp(dir))
        return 1;
    snprintf(db, sizeof db, "%s/locks.db", dir);
    say("database %s (shared mode: one lock table for every connection process)", db);
    if (pipe(to_alice) || pipe(from_alice) || pipe(to_bob) || pipe(from_bob))
        return 1;

    pid_t a = fork();
    if (a == 0)
        alice();
    await(from_alice[0], 'R');
    pid_t b = fork();
    if (b == 0)
        bob();
    tell(to_bob[1], 'G');
    await(from_bob[0], 'P');
    await(from_alice[0], 'A');
    await(from_bob[0], 'Q');
    say("alice's connection drops: kill -9 %d (nobody tells unilock)", (int)a);
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    await(from_bob[0], 'L');
    pid_t c = fork();
    if (c == 0)
        carol();
    int st, ok = 1;
    waitpid(c, &st, 0);
    ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    tell(to_bob[1], 'X');
    waitpid(b, &st, 0);
    ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        ok = 0;
    say(ok ? "forking server: every answer was the expected one" : "!! UNEXPECTED: a connection failed");
    return ok ? 0 : 1;
}
