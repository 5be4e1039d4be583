/*
 * demo_server.c: a small file server with two clients on one unilock lock table.
 *
 *   NLM client  "nlm:host42"            POSIX locks, owner bytes = the NLM svid
 *   SMB client  "smb:<client guid>"     Windows locks, owner bytes = smblctx, open id = persistent file id
 *
 * Both lock ranges of one real file, named by the canonical file id built from its st_dev/st_ino. Every
 * step prints what was asked, what unilock answered and the locks on the file afterwards; every answer
 * and every listing is checked against what SPEC.md says must happen, so the demo is also a smoke test:
 * it exits 1 if anything differs.
 *
 * Build and run: `make demo` at the top of the repository (or `make -C examples run` after `make lib`).
 */

#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unilock.h"

/* ------------------------------------------------------------------------------------------------ */
/* The server's state                                                                               */

static unilock *ul;                                   /* the lock manager */
static uint8_t file_id[UNILOCK_FILE_ID_CANONICAL_LEN]; /* the file everyone locks */
static int failures;                                  /* unexpected answers so far */

/* A client as the protocol front end knows it. */
struct client {
    const char *name;      /* "NLM" or "SMB", for the story */
    const char *io_name;   /* the protocol its reads and writes come through: "NFS" or "SMB" */
    uint32_t flavour;      /* UNILOCK_POSIX or UNILOCK_WINDOWS */
    unilock_owner owner;   /* what unilock is told */
};

#define NLM_CLIENT "nlm:host42"
#define SMB_CLIENT "smb:5b1d0c6e-8f3a-4c2e-9d7b-2a6f4e1c3b90"
#define NLM_SVID 4242u                 /* the process id on host42 that locks (NLM svid) */
#define SMB_OPEN 0x00000000002a0001ull /* SMB2 persistent file id; for SMB2, smblctx is the same number */

static uint8_t nlm_owner_bytes[4];
static uint8_t smb_owner_bytes[8];
static struct client nlm, smb;

/* ------------------------------------------------------------------------------------------------ */
/* Printing                                                                                         */

static const char *type_name(uint32_t t)
{
    return t == UNILOCK_SHARED ? "shared" : t == UNILOCK_EXCLUSIVE ? "exclusive" : "?";
}

static const char *flavour_name(uint32_t f)
{
    return f == UNILOCK_POSIX ? "POSIX" : f == UNILOCK_WINDOWS ? "Windows" : "?";
}

/* "[offset, end)", "[offset, EOF)" for a POSIX lock to the end of the offset space. */
static const char *range_str(char *buf, size_t n, uint64_t offset, uint64_t length)
{
    if (length == UNILOCK_TO_EOF)
        snprintf(buf, n, "[%" PRIu64 ", EOF)", offset);
    else if (length > UINT64_MAX - offset)
        snprintf(buf, n, "[%" PRIu64 ", 2^64)", offset);
    else
        snprintf(buf, n, "[%" PRIu64 ", %" PRIu64 ")", offset, offset + length);
    return buf;
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
    } else {
        size_t k = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < len && k + 3 < n; i++)
            k += (size_t)snprintf(buf + k, n - k, "%02x", owner[i]);
    }
    return buf;
}

/* One line naming a held lock: who, what, where. */
static void print_lock(const char *indent, const unilock_lock_info *li)
{
    char own[64], rng[64], open[32] = "";
    owner_str(own, sizeof own, li->client, li->owner, li->owner_len);
    range_str(rng, sizeof rng, li->offset, li->length);
    if (li->flavour == UNILOCK_WINDOWS)
        snprintf(open, sizeof open, "open 0x%" PRIx64, li->open_id);
    printf("%s%-42s %-18s %-8s %-10s %-*s%s\n", indent, li->client, own, flavour_name(li->flavour),
           type_name(li->type), open[0] ? 15 : 0, rng, open);
}

static void unexpected(const char *fmt, const char *detail)
{
    failures++;
    printf("    !! UNEXPECTED: ");
    printf(fmt, detail);
    printf("\n");
}

/* Prints the answer to a call (`ok`/`refused` name the two outcomes) and checks it; returns 1 when it is
 * the expected one. */
static int answer_as(unilock_status got, unilock_status want, const char *ok, const char *refused)
{
    if (got == UNILOCK_OK)
        printf("    -> %s\n", ok);
    else
        printf("    -> %s: %s\n", refused, unilock_strerror(got));
    if (got != want) {
        char what[128];
        snprintf(what, sizeof what, "status %u (%s), expected %u (%s)", (unsigned)got, unilock_strerror(got),
                 (unsigned)want, unilock_strerror(want));
        unexpected("%s", what);
        return 0;
    }
    return 1;
}

static int answer(unilock_status got, unilock_status want)
{
    return answer_as(got, want, "OK", "refused");
}

/* The same for unilock_test, which changes nothing. */
static int test_answer(unilock_status got, unilock_status want)
{
    return answer_as(got, want, "would be granted", "would be refused");
}

/* ------------------------------------------------------------------------------------------------ */
/* Listing and checking the locks of the file                                                       */

struct want {
    const char *client;
    uint32_t flavour, type;
    uint64_t offset, length;
};

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

/* Prints the locks on the file as a table and checks them against `want` (sorted by offset). */
static void table(const struct want *want, size_t n_want)
{
    static struct snapshot snap;
    size_t count = 0;
    snap.n = 0;
    unilock_status st = unilock_list_locks(ul, file_id, sizeof file_id, collect, &snap, &count);
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

#define TABLE(...)                                                                                       \
    do {                                                                                                 \
        static const struct want w_[] = {__VA_ARGS__};                                                   \
        table(w_, sizeof w_ / sizeof w_[0]);                                                             \
    } while (0)
#define NO_LOCKS() table(NULL, 0)

/* Checks the holder reported with a refusal and prints it. */
static void holder(const unilock_lock_info *h, const struct want *w)
{
    print_lock("    held by: ", h);
    if (!same(h, w))
        unexpected("%s", "the reported holder is not the expected one");
}

/* ------------------------------------------------------------------------------------------------ */
/* Requests, as the protocol front ends would make them                                             */

static void step(const char *title)
{
    printf("\n%s\n", title);
}

static unilock_lock_req req(const struct client *c, uint32_t type, uint64_t offset, uint64_t length)
{
    unilock_lock_req r = {c->flavour, type, offset, length, 0};
    return r;
}

static unilock_status do_lock(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                              unilock_lock_info *h)
{
    char rng[64];
    unilock_lock_req r = req(c, type, offset, length);
    printf("  %s LOCK %s %s\n", c->name, type_name(type), range_str(rng, sizeof rng, offset, length));
    return unilock_lock(ul, file_id, sizeof file_id, &c->owner, &r, h);
}

static unilock_status do_test(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                              unilock_lock_info *h)
{
    char rng[64];
    unilock_lock_req r = req(c, type, offset, length);
    printf("  %s TEST %s %s\n", c->name, type_name(type), range_str(rng, sizeof rng, offset, length));
    return unilock_test(ul, file_id, sizeof file_id, &c->owner, &r, h);
}

static unilock_status do_io(const struct client *c, uint32_t access, uint64_t offset, uint64_t length)
{
    char rng[64];
    printf("  %s %-5s %-14s", c->io_name, access == UNILOCK_READ ? "READ" : "WRITE",
           range_str(rng, sizeof rng, offset, length));
    unilock_status st = unilock_check_io(ul, file_id, sizeof file_id, &c->owner, access, offset, length);
    printf(" check_io: %s\n", st == UNILOCK_OK ? "allowed" : unilock_strerror(st));
    return st;
}

static void expect_io(const struct client *c, uint32_t access, uint64_t offset, uint64_t length,
                      unilock_status want)
{
    unilock_status st = do_io(c, access, offset, length);
    if (st != want) {
        char what[128];
        snprintf(what, sizeof what, "check_io returned %s, expected %s", unilock_strerror(st),
                 unilock_strerror(want));
        unexpected("%s", what);
    }
}

/* Library log messages (unilock_set_log). */
static void on_log(void *user_data, uint32_t level, const char *message)
{
    static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};
    (void)user_data;
    printf("  [unilock log, %s] %s\n", level <= UNILOCK_LOG_TRACE ? names[level] : "?", message);
}

/* ------------------------------------------------------------------------------------------------ */

static int run_story(void)
{
    unilock_lock_info h;
    unilock_status st;

    /* 1 */
    step("1. NLM client takes a shared lock on bytes 0-99 (NLM LOCK, svid 4242)");
    answer(do_lock(&nlm, UNILOCK_SHARED, 0, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100});

    /* 2 */
    step("2. SMB client takes an exclusive lock elsewhere, bytes 200-299 (SMB2 LOCK)");
    answer(do_lock(&smb, UNILOCK_EXCLUSIVE, 200, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

    /* 3 */
    step("3. SMB client asks for an exclusive lock on bytes 50-149, overlapping the NLM lock");
    memset(&h, 0, sizeof h);
    if (answer(do_lock(&smb, UNILOCK_EXCLUSIVE, 50, 100, &h), UNILOCK_E_CONFLICT)) {
        static const struct want w = {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100};
        holder(&h, &w);
    }
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

    /* 4 */
    step("4. NLM TEST (F_GETLK): would host42 get these locks? Nothing changes");
    memset(&h, 0, sizeof h);
    if (test_answer(do_test(&nlm, UNILOCK_EXCLUSIVE, 250, 100, &h), UNILOCK_E_CONFLICT)) {
        static const struct want w = {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100};
        holder(&h, &w);
        if (h.open_id != SMB_OPEN)
            unexpected("%s", "the holder's open id is not the SMB open's persistent id");
    }
    test_answer(do_test(&nlm, UNILOCK_SHARED, 100, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

    /* 5 */
    step("5. SMB2 LOCK with three elements, all or none (unilock_lock_many)");
    {
        unilock_lock_req elems[3] = {
            req(&smb, UNILOCK_EXCLUSIVE, 400, 10),
            req(&smb, UNILOCK_EXCLUSIVE, 500, 10),
            req(&smb, UNILOCK_EXCLUSIVE, 90, 5), /* inside the NLM lock */
        };
        size_t failed = SIZE_MAX;
        printf("  SMB LOCK exclusive [400, 410) + exclusive [500, 510) + exclusive [90, 95)\n");
        memset(&h, 0, sizeof h);
        st = unilock_lock_many(ul, file_id, sizeof file_id, &smb.owner, elems, 3, &failed, &h);
        if (answer(st, UNILOCK_E_CONFLICT)) {
            static const struct want w = {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100};
            printf("    failed element: %zu; the two granted before it were undone\n", failed);
            if (failed != 2)
                unexpected("%s", "failed_index is not 2");
            holder(&h, &w);
        }
        TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

        printf("  SMB LOCK exclusive [400, 410) + shared [500, 510)\n");
        elems[1].type = UNILOCK_SHARED;
        answer(unilock_lock_many(ul, file_id, sizeof file_id, &smb.owner, elems, 2, NULL, NULL), UNILOCK_OK);
        TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});
    }

    /* 6 */
    step("6. Strict locking: each read and write is checked first (unilock_check_io; NFS I/O by host42's owner)");
    expect_io(&smb, UNILOCK_READ, 10, 10, UNILOCK_OK);          /* NLM's lock is shared */
    expect_io(&smb, UNILOCK_WRITE, 10, 10, UNILOCK_E_CONFLICT); /* ... but no one else may write */
    expect_io(&smb, UNILOCK_WRITE, 200, 50, UNILOCK_OK);        /* through its own exclusive lock */
    expect_io(&smb, UNILOCK_WRITE, 500, 5, UNILOCK_E_CONFLICT); /* not through its own shared lock */
    expect_io(&nlm, UNILOCK_READ, 250, 10, UNILOCK_E_CONFLICT); /* SMB's exclusive lock */
    expect_io(&nlm, UNILOCK_WRITE, 10, 10, UNILOCK_OK);         /* its own POSIX lock never refuses */

    /* 7 */
    step("7. NLM upgrades bytes 20-39 to exclusive: POSIX splits its shared lock");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 20, 20, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 20, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 40, 60},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    step("   NLM asks to upgrade bytes 0-249: refused as a whole, its locks stay as they were");
    memset(&h, 0, sizeof h);
    if (answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 0, 250, &h), UNILOCK_E_CONFLICT)) {
        static const struct want w = {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100};
        holder(&h, &w);
    }
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 20, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 40, 60},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    step("   NLM takes bytes 20-149 shared: downgrade and extension merge into one lock");
    answer(do_lock(&nlm, UNILOCK_SHARED, 20, 130, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    /* 8 */
    step("8. SMB unlocks: a Windows unlock must name a lock exactly");
    printf("  SMB UNLOCK [400, 405)\n");
    answer(unilock_unlock(ul, file_id, sizeof file_id, &smb.owner, UNILOCK_WINDOWS, 400, 5),
           UNILOCK_E_RANGE_NOT_LOCKED);
    printf("  SMB UNLOCK [400, 410)\n");
    answer(unilock_unlock(ul, file_id, sizeof file_id, &smb.owner, UNILOCK_WINDOWS, 400, 10), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    /* 9 */
    step("9. SMB client closes its open (SMB2 CLOSE): unilock_release_open");
    {
        size_t released = SIZE_MAX;
        printf("  SMB CLOSE open 0x%" PRIx64 "\n", (uint64_t)SMB_OPEN);
        if (answer(unilock_release_open(ul, file_id, sizeof file_id, &smb.owner, &released), UNILOCK_OK)) {
            printf("    released %zu locks\n", released);
            if (released != 2)
                unexpected("%s", "release_open did not release the open's 2 locks");
        }
    }
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150});

    step("   Now the NLM client gets the bytes the SMB open had");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 200, 100, NULL), UNILOCK_OK);
    printf("  final listing:\n");
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 200, 100});

    /* 10 */
    step("10. host42 reboots (NSM notification): unilock_release_client drops all its locks");
    {
        size_t released = SIZE_MAX;
        printf("  release client \"%s\"\n", NLM_CLIENT);
        if (answer(unilock_release_client(ul, NLM_CLIENT, &released), UNILOCK_OK)) {
            printf("    released %zu locks\n", released);
            if (released != 2)
                unexpected("%s", "release_client did not release the client's 2 locks");
        }
    }
    NO_LOCKS();
    return failures;
}

int main(void)
{
    char path[] = "/tmp/unilock-demo-XXXXXX";
    const char *tmpdir = getenv("TMPDIR");
    char tpath[4096];
    struct stat sb;
    unilock_config cfg;
    unilock_status st;
    int fd;

    printf("unilock demo file server: library %s, header %s\n", unilock_libversion(), UNILOCK_VERSION);
    if (unilock_libversion_number() != UNILOCK_VERSION_NUMBER) {
        fprintf(stderr, "demo: library version %d differs from header version %d\n",
                (int)unilock_libversion_number(), UNILOCK_VERSION_NUMBER);
        return 1;
    }

    /* A real file: its device and inode name it for every protocol. */
    if (tmpdir && *tmpdir && strlen(tmpdir) + sizeof "/unilock-demo-XXXXXX" <= sizeof tpath) {
        snprintf(tpath, sizeof tpath, "%s/unilock-demo-XXXXXX", tmpdir);
    } else {
        snprintf(tpath, sizeof tpath, "%s", path);
    }
    fd = mkstemp(tpath);
    if (fd < 0) {
        perror("demo: mkstemp");
        return 1;
    }
    if (fstat(fd, &sb) != 0) {
        perror("demo: fstat");
        close(fd);
        unlink(tpath);
        return 1;
    }
    st = unilock_file_id_make((uint64_t)sb.st_dev, (uint64_t)sb.st_ino, 0, file_id);
    if (st != UNILOCK_OK) {
        fprintf(stderr, "demo: unilock_file_id_make: %s\n", unilock_strerror(st));
        close(fd);
        unlink(tpath);
        return 1;
    }
    printf("file %s: st_dev %" PRIu64 ", st_ino %" PRIu64 "\n", tpath, (uint64_t)sb.st_dev,
           (uint64_t)sb.st_ino);
    printf("file id (unilock_file_id_make, %zu bytes): ", sizeof file_id);
    for (size_t i = 0; i < sizeof file_id; i++)
        printf("%02x", file_id[i]);
    printf("\n");

    /* The two clients. */
    for (size_t i = 0; i < sizeof nlm_owner_bytes; i++)
        nlm_owner_bytes[i] = (uint8_t)(NLM_SVID >> (8 * (sizeof nlm_owner_bytes - 1 - i)));
    for (size_t i = 0; i < sizeof smb_owner_bytes; i++)
        smb_owner_bytes[i] = (uint8_t)(SMB_OPEN >> (8 * (sizeof smb_owner_bytes - 1 - i)));
    nlm.name = "NLM";
    nlm.io_name = "NFS";
    nlm.flavour = UNILOCK_POSIX;
    nlm.owner.client = NLM_CLIENT;
    nlm.owner.owner = nlm_owner_bytes;
    nlm.owner.owner_len = sizeof nlm_owner_bytes;
    nlm.owner.open_id = 0; /* ignored for POSIX locks */
    smb.name = "SMB";
    smb.io_name = "SMB";
    smb.flavour = UNILOCK_WINDOWS;
    smb.owner.client = SMB_CLIENT;
    smb.owner.owner = smb_owner_bytes;
    smb.owner.owner_len = sizeof smb_owner_bytes;
    smb.owner.open_id = SMB_OPEN;
    printf("clients:\n");
    printf("  NLM  client \"%s\": POSIX locks, owner = svid %u (%zu bytes)\n", NLM_CLIENT, NLM_SVID,
           sizeof nlm_owner_bytes);
    printf("  SMB  client \"%s\": Windows locks, owner = smblctx 0x%" PRIx64
           " (%zu bytes), open id 0x%" PRIx64 "\n",
           SMB_CLIENT, (uint64_t)SMB_OPEN, sizeof smb_owner_bytes, (uint64_t)SMB_OPEN);

    /* The lock manager. */
    st = unilock_set_log(on_log, NULL, UNILOCK_LOG_INFO);
    if (st != UNILOCK_OK) {
        fprintf(stderr, "demo: unilock_set_log: %s\n", unilock_strerror(st));
        failures++;
    }
    unilock_config_init(&cfg);
    st = unilock_open(&cfg, &ul);
    if (st != UNILOCK_OK) {
        fprintf(stderr, "demo: unilock_open: %s\n", unilock_strerror(st));
        close(fd);
        unlink(tpath);
        return 1;
    }

    run_story();

    unilock_close(ul);
    unilock_set_log(NULL, NULL, UNILOCK_LOG_OFF);
    close(fd);
    if (unlink(tpath) != 0) {
        perror("demo: unlink");
        failures++;
    }

    if (failures) {
        printf("\ndemo: %d unexpected result(s)\n", failures);
        return 1;
    }
    printf("\ndemo: every answer was the expected one\n");
    return 0;
}
