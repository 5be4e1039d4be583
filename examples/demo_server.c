/*
 * demo_server.c: a small file server whose NLM, NFSv4 and SMB clients share one unilock lock table.
 *
 * The demo plays three acts, each on its own lock manager (handle):
 *   1. byte-range locks (this file): an NLM client's POSIX locks and an SMB client's Windows locks on
 *      one real file, named by the canonical file id built from its st_dev/st_ino;
 *   2. leases across protocols (demo_leases.c), with the server driving unilock's events from its own
 *      event loop (UNILOCK_EVENTS_LOOP);
 *   3. a crash and a restart from the SQLite database: grace, reclaim, the end of grace, and grace
 *      ending early (demo_restart.c).
 * Every step prints what was asked, what unilock answered and, where it matters, the locks on the file
 * and the events delivered; every answer is checked against what SPEC.md says must happen, so the demo
 * is also a smoke test: it prints "!! UNEXPECTED" and exits 1 if anything differs.
 *
 * Build and run: `make demo` at the top of the repository (or `make -C examples run` after `make lib`).
 */

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"

/* ------------------------------------------------------------------------------------------------ */
/* Act 1: byte-range locks                                                                          */
/*                                                                                                  */
/*   NLM client  "nlm:host42"            POSIX locks, owner bytes = the NLM svid                    */
/*   SMB client  "smb:<client guid>"     Windows locks, owner bytes = smblctx, open id = persistent */
/*                                       file id                                                    */

static uint8_t nlm_owner_bytes[4];
static uint8_t smb_owner_bytes[8];
static struct client nlm, smb;

static unilock_status do_io(const struct client *c, uint32_t access, uint64_t offset, uint64_t length)
{
    char rng[64];
    printf("  %s %-5s %-14s", c->io_name, access == UNILOCK_READ ? "READ" : "WRITE",
           range_str(rng, sizeof rng, offset, length));
    unilock_status st = unilock_check_io(ul, fid, FID_LEN, &c->owner, access, offset, length);
    printf(" check_io: %s\n", st == UNILOCK_OK ? "allowed" : unilock_strerror(st));
    return st;
}

static void expect_io(const struct client *c, uint32_t access, uint64_t offset, uint64_t length,
                      unilock_status want)
{
    unilock_status st = do_io(c, access, offset, length);
    if (st != want)
        unexpected("check_io returned %s, expected %s", unilock_strerror(st), unilock_strerror(want));
}

static void story_byte_ranges(void)
{
    unilock_lock_info h;
    unilock_status st;

    /* 1 */
    step("1.1 NLM client takes a shared lock on bytes 0-99 (NLM LOCK, svid 4242)");
    answer(do_lock(&nlm, UNILOCK_SHARED, 0, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100});

    /* 2 */
    step("1.2 SMB client takes an exclusive lock elsewhere, bytes 200-299 (SMB2 LOCK)");
    answer(do_lock(&smb, UNILOCK_EXCLUSIVE, 200, 100, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

    /* 3 */
    step("1.3 SMB client asks for an exclusive lock on bytes 50-149, overlapping the NLM lock");
    memset(&h, 0, sizeof h);
    if (answer(do_lock(&smb, UNILOCK_EXCLUSIVE, 50, 100, &h), UNILOCK_E_CONFLICT)) {
        static const struct want w = {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100};
        holder(&h, &w);
    }
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100});

    /* 4 */
    step("1.4 NLM TEST (F_GETLK): would host42 get these locks? Nothing changes");
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
    step("1.5 SMB2 LOCK with three elements, all or none (unilock_lock_many)");
    {
        unilock_lock_req elems[3] = {
            req(&smb, UNILOCK_EXCLUSIVE, 400, 10),
            req(&smb, UNILOCK_EXCLUSIVE, 500, 10),
            req(&smb, UNILOCK_EXCLUSIVE, 90, 5), /* inside the NLM lock */
        };
        size_t failed = SIZE_MAX;
        printf("  SMB LOCK exclusive [400, 410) + exclusive [500, 510) + exclusive [90, 95)\n");
        memset(&h, 0, sizeof h);
        st = unilock_lock_many(ul, fid, FID_LEN, &smb.owner, elems, 3, &failed, &h);
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
        answer(unilock_lock_many(ul, fid, FID_LEN, &smb.owner, elems, 2, NULL, NULL), UNILOCK_OK);
        TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 100},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
              {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});
    }

    /* 6 */
    step("1.6 Strict locking: each read and write is checked first (unilock_check_io; NFS I/O by host42's owner)");
    expect_io(&smb, UNILOCK_READ, 10, 10, UNILOCK_OK);          /* NLM's lock is shared */
    expect_io(&smb, UNILOCK_WRITE, 10, 10, UNILOCK_E_CONFLICT); /* ... but no one else may write */
    expect_io(&smb, UNILOCK_WRITE, 200, 50, UNILOCK_OK);        /* through its own exclusive lock */
    expect_io(&smb, UNILOCK_WRITE, 500, 5, UNILOCK_E_CONFLICT); /* not through its own shared lock */
    expect_io(&nlm, UNILOCK_READ, 250, 10, UNILOCK_E_CONFLICT); /* SMB's exclusive lock */
    expect_io(&nlm, UNILOCK_WRITE, 10, 10, UNILOCK_OK);         /* its own POSIX lock never refuses */

    /* 7 */
    step("1.7 NLM upgrades bytes 20-39 to exclusive: POSIX splits its shared lock");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 20, 20, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 20, 20},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 40, 60},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    step("    NLM asks to upgrade bytes 0-249: refused as a whole, its locks stay as they were");
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

    step("    NLM takes bytes 20-149 shared: downgrade and extension merge into one lock");
    answer(do_lock(&nlm, UNILOCK_SHARED, 20, 130, NULL), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 400, 10},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    /* 8 */
    step("1.8 SMB unlocks: a Windows unlock must name a lock exactly");
    printf("  SMB UNLOCK [400, 405)\n");
    answer(unilock_unlock(ul, fid, FID_LEN, &smb.owner, UNILOCK_WINDOWS, 400, 5),
           UNILOCK_E_RANGE_NOT_LOCKED);
    printf("  SMB UNLOCK [400, 410)\n");
    answer(unilock_unlock(ul, fid, FID_LEN, &smb.owner, UNILOCK_WINDOWS, 400, 10), UNILOCK_OK);
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 200, 100},
          {SMB_CLIENT, UNILOCK_WINDOWS, UNILOCK_SHARED, 500, 10});

    /* 9 */
    step("1.9 SMB client closes its open (SMB2 CLOSE): unilock_release_open");
    {
        size_t released = SIZE_MAX;
        printf("  SMB CLOSE open 0x%" PRIx64 "\n", (uint64_t)SMB_OPEN);
        if (answer(unilock_release_open(ul, fid, FID_LEN, &smb.owner, &released), UNILOCK_OK)) {
            printf("    released %zu locks\n", released);
            if (released != 2)
                unexpected("%s", "release_open did not release the open's 2 locks");
        }
    }
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150});

    step("    Now the NLM client gets the bytes the SMB open had");
    answer(do_lock(&nlm, UNILOCK_EXCLUSIVE, 200, 100, NULL), UNILOCK_OK);
    printf("  final listing:\n");
    TABLE({NLM_CLIENT, UNILOCK_POSIX, UNILOCK_SHARED, 0, 150},
          {NLM_CLIENT, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 200, 100});

    /* 10 */
    step("1.10 host42 reboots (NSM notification): unilock_release_client drops all its locks");
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
}


void act_byte_ranges(void)
{
    static uint8_t file[FID_LEN];
    unilock_config cfg;
    unilock_status st;

    act("Act 1: byte-range locks of an NLM and an SMB client on one file");
    if (make_file("budget.ods", file) != 0) {
        failures++;
        return;
    }
    fid = file;
    client_init(&nlm, "NLM", "NFS", UNILOCK_POSIX, NLM_CLIENT, nlm_owner_bytes, sizeof nlm_owner_bytes,
                NLM_SVID, 0 /* ignored for POSIX locks */);
    client_init(&smb, "SMB", "SMB", UNILOCK_WINDOWS, SMB_CLIENT, smb_owner_bytes, sizeof smb_owner_bytes,
                SMB_OPEN, SMB_OPEN);
    printf("clients:\n");
    printf("  NLM  client \"%s\": POSIX locks, owner = svid %u (%zu bytes)\n", NLM_CLIENT, NLM_SVID,
           sizeof nlm_owner_bytes);
    printf("  SMB  client \"%s\": Windows locks, owner = smblctx 0x%" PRIx64
           " (%zu bytes), open id 0x%" PRIx64 "\n",
           SMB_CLIENT, (uint64_t)SMB_OPEN, sizeof smb_owner_bytes, (uint64_t)SMB_OPEN);

    /* The default configuration: in memory, events on a library thread (this act has none). */
    unilock_config_init(&cfg);
    st = unilock_open(&cfg, &ul);
    if (st != UNILOCK_OK) {
        unexpected("unilock_open: %s (%s)", unilock_strerror(st), unilock_errdetail());
        return;
    }
    story_byte_ranges();
    unilock_close(ul);
    ul = NULL;
}

/* ------------------------------------------------------------------------------------------------ */

/* Removes the demo's directory and everything in it (the files, the database and its -wal/-shm). */
static int remove_demo_dir(void)
{
    DIR *d = opendir(demo_dir);
    struct dirent *e;
    char path[4400];
    int rc = 0;

    if (!d) {
        perror("demo: opendir");
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", demo_dir, e->d_name);
        if (unlink(path) != 0) {
            perror("demo: unlink");
            rc = -1;
        }
    }
    closedir(d);
    if (rmdir(demo_dir) != 0) {
        perror("demo: rmdir");
        rc = -1;
    }
    return rc;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR");
    unilock_status st;

    setvbuf(stdout, NULL, _IOLBF, 0); /* one line at a time, also into a pipe: act 3 forks */
    printf("unilock demo file server: library %s, header %s\n", unilock_libversion(), UNILOCK_VERSION);
    if (unilock_libversion_number() != UNILOCK_VERSION_NUMBER) {
        fprintf(stderr, "demo: library version %d differs from header version %d\n",
                (int)unilock_libversion_number(), UNILOCK_VERSION_NUMBER);
        return 1;
    }

    /* A directory for the demo's files and database; the files are real: their device and inode name
     * them for every protocol. */
    if (!tmpdir || !*tmpdir || strlen(tmpdir) + sizeof "/unilock-demo-XXXXXX" > 4096)
        tmpdir = "/tmp";
    snprintf(demo_dir, 4096, "%s/unilock-demo-XXXXXX", tmpdir);
    if (!mkdtemp(demo_dir)) {
        perror("demo: mkdtemp");
        return 1;
    }
    printf("directory %s\n", demo_dir);

    /* Library log messages, process-wide: set before opening handles. */
    st = unilock_set_log(on_log, NULL, UNILOCK_LOG_INFO);
    if (st != UNILOCK_OK)
        unexpected("unilock_set_log: %s", unilock_strerror(st));

    act_byte_ranges();
    act_leases();
    act_restart();

    unilock_set_log(NULL, NULL, UNILOCK_LOG_OFF);
    if (remove_demo_dir() != 0)
        failures++;
    else
        printf("\nremoved %s\n", demo_dir);

    if (failures) {
        printf("\ndemo: %d unexpected result(s)\n", failures);
        return 1;
    }
    printf("\ndemo: every answer was the expected one\n");
    return 0;
}
