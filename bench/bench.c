/*
 * bench.c: unilock against the kernel's own lock manager (issue 8), measured through the C API.
 *
 * Every figure of the issue is a function in the table `figures[]` below. A figure whose capability
 * this library lacks (no function in the table, or refused at run time, e.g. no usable database
 * directory) prints "not measured: <why>" and is `null` in the JSON: never a made-up number. Each
 * measured row is the median of several repetitions; its ratio is taken against an anchor measured in
 * the same run (repetitions interleaved with the anchor's, so drift of a shared machine hits both
 * alike), or against a goal's fixed limit where the kernel has nothing to compare (figure 5).
 *
 *   bench [--quick] [--reps N] [--json PATH] [--only 1,3,...] [--db-dir DIR] [--restart-locks N]
 *
 * Timing: CLOCK_MONOTONIC around batches of calls; batch sizes grow until one batch is a good part of
 * the time asked for, so clock reads are a negligible share. No allocation inside timed loops: owners,
 * file ids and requests are prepared beforehand. Every status is checked; an unexpected one aborts
 * the run with its name (a benchmark of failing calls would measure nothing).
 *
 * Kernel anchors use a tmpfs file (/dev/shm, else /tmp), so no disk is involved on the kernel's side;
 * the databases of figures 2, 5 and 7 go to a disk directory (--db-dir, default /var/tmp), because a
 * durability mode means nothing on tmpfs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <search.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "unilock.h"

#ifndef BENCH_GIT_REV
#define BENCH_GIT_REV "unknown"
#endif

/* ------------------------------------------------------------------------------------------------ */
/* Settings                                                                                         */

static struct {
    int quick;
    int reps;           /* repetitions per row */
    double min_s;       /* timed seconds per repetition of a latency row (figures 1, 3) */
    double thr_s;       /* seconds per repetition of a throughput row (figure 4) */
    int lease_samples;  /* breaks per repetition (figure 6) */
    const char *json;
    unsigned only;      /* bit mask of figures to run; 0 = all */
    const char *db_parent; /* where the databases of figures 2 and 5 go (a disk, not tmpfs) */
    long restart_locks; /* figure 5 */
} cfg = {0, 7, 0.2, 0.3, 300, "results.json", 0, "/var/tmp", 1000000};

static pid_t main_pid;      /* the benchmark itself, not a child of figure 7: only it cleans up at exit */
static char tmpdir[64];      /* tmpfs directory for the kernel's files */
static char kfile_base[256]; /* prefix of the kernel's files */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void check_ul(unilock_status st, unilock_status want, const char *what) {
    if (st != want)
        die("%s: got %s (%u), expected %s", what, unilock_strerror(st), st, unilock_strerror(want));
}

static unilock *ul_open(uint32_t mode, unilock_event_fn fn, void *ud) {
    unilock_config c;
    unilock_config_init(&c);
    c.event_mode = mode;
    c.event_fn = fn;
    c.event_user_data = ud;
    unilock *ul = NULL;
    check_ul(unilock_open(&c, &ul), UNILOCK_OK, "unilock_open");
    return ul;
}

/* A canonical 25-byte file id for a made-up inode. */
typedef struct { uint8_t b[UNILOCK_FILE_ID_CANONICAL_LEN]; } fid_t;
static fid_t fid_of(uint64_t ino) {
    fid_t f;
    check_ul(unilock_file_id_make(0x5a5a, ino, 0, f.b), UNILOCK_OK, "unilock_file_id_make");
    return f;
}

/* ------------------------------------------------------------------------------------------------ */
/* Results                                                                                          */

#define MAX_REPS 31
#define MAX_ROWS 200

enum goal_cmp { GOAL_NONE, GOAL_LE, GOAL_GE };

typedef struct {
    int fig;
    char name[64];     /* JSON key */
    char label[72];    /* table label */
    char tag[32];      /* how the table names this row when it is another row's anchor */
    const char *unit;  /* display unit of the samples */
    int derived;       /* 1: no samples of its own, only a ratio of row `of` to `anchor` */
    int of;            /* derived rows: the row whose median is compared */
    int anchor;        /* row index of the anchor, -1 for none (or a fixed anchor, below) */
    double anchor_value; /* a fixed anchor (a goal's absolute limit), NAN for none */
    char anchor_tag[32];
    double samples[MAX_REPS];
    int n;
    double median;
    double ratio;
    enum goal_cmp cmp;
    double goal;
    const char *goal_what; /* e.g. "kernel" */
    double goal_abs;       /* an absolute goal on the median (median < goal_abs), NAN for none */
    const char *goal_abs_unit;
    const char *why;       /* a row left unmeasured: why */
} row_t;

static row_t rows[MAX_ROWS];
static int nrows;

/* Set by a figure that finds it cannot be measured on this build or machine: why. */
static const char *fig_unmeasured;
static void fig_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fig_skip(const char *fmt, ...) {
    static char why[8][300];
    static int k;
    char *w = why[k++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w, sizeof why[0], fmt, ap);
    va_end(ap);
    fig_unmeasured = w;
}

static int row_new(int fig, const char *name, const char *label, const char *unit) {
    if (nrows == MAX_ROWS)
        die("too many rows");
    row_t *r = &rows[nrows];
    memset(r, 0, sizeof *r);
    r->fig = fig;
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->label, sizeof r->label, "%s", label);
    snprintf(r->tag, sizeof r->tag, "%.31s", label);
    r->unit = unit;
    r->anchor = -1;
    r->anchor_value = NAN;
    r->of = -1;
    r->median = NAN;
    r->ratio = NAN;
    r->goal_abs = NAN;
    return nrows++;
}

static void row_tag(int r, const char *tag) { snprintf(rows[r].tag, sizeof rows[r].tag, "%.31s", tag); }

static void row_anchor(int r, int anchor, enum goal_cmp cmp, double goal, const char *goal_what) {
    rows[r].anchor = anchor;
    rows[r].cmp = cmp;
    rows[r].goal = goal;
    rows[r].goal_what = goal_what;
}

/* A fixed anchor: an absolute goal such as "under 1 s"; the ratio is median / value. */
static void row_anchor_value(int r, double value, const char *tag, enum goal_cmp cmp, double goal) {
    rows[r].anchor_value = value;
    snprintf(rows[r].anchor_tag, sizeof rows[r].anchor_tag, "%s", tag);
    rows[r].cmp = cmp;
    rows[r].goal = goal;
    rows[r].goal_what = tag;
}

/* An absolute goal on the median, next to the ratio against an anchor (e.g. "under 20 us"). */
static void row_goal_abs(int r, double limit, const char *unit) {
    rows[r].goal_abs = limit;
    rows[r].goal_abs_unit = unit;
}

/* A ratio of two measured rows, with a goal (e.g. unilock's 100,000 case over its 10 case). */
static int row_derived(int fig, const char *name, const char *label, int of, int anchor, enum goal_cmp cmp,
                       double goal, const char *goal_what) {
    int r = row_new(fig, name, label, "");
    rows[r].derived = 1;
    rows[r].of = of;
    row_anchor(r, anchor, cmp, goal, goal_what);
    return r;
}

static void row_add(int r, double v) {
    if (rows[r].n < MAX_REPS)
        rows[r].samples[rows[r].n++] = v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(const double *v, int n) {
    if (n <= 0)
        return NAN;
    double s[4096];
    if (n > 4096)
        n = 4096;
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void rows_finish(void) {
    for (int i = 0; i < nrows; i++)
        if (!rows[i].derived)
            rows[i].median = median_of(rows[i].samples, rows[i].n);
    for (int i = 0; i < nrows; i++) {
        row_t *r = &rows[i];
        double num = r->derived ? rows[r->of].median : r->median;
        if (r->anchor >= 0)
            r->ratio = num / rows[r->anchor].median;
        else if (!isnan(r->anchor_value))
            r->ratio = num / r->anchor_value;
    }
}

static const char *goal_verdict(const row_t *r) {
    if (!isnan(r->goal_abs))
        return r->n == 0 || isnan(r->median) ? NULL : r->median < r->goal_abs ? "met" : "MISSED";
    if (r->cmp == GOAL_NONE || isnan(r->ratio))
        return NULL;
    int met = r->cmp == GOAL_LE ? r->ratio <= r->goal : r->ratio >= r->goal;
    return met ? "met" : "MISSED";
}

/* ------------------------------------------------------------------------------------------------ */
/* Timing                                                                                           */

/* The first unexpected result of any batch, for the message of the abort that follows. */
static atomic_flag first_err_set = ATOMIC_FLAG_INIT;
static char first_err[160];
static void note_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_err(const char *fmt, ...) {
    if (atomic_flag_test_and_set(&first_err_set))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(first_err, sizeof first_err, fmt, ap);
    va_end(ap);
}

/* Runs `n` operations; returns the number of unexpected results (0 when all went as expected). */
typedef long (*batch_fn)(void *arg, long n);

/* Nanoseconds per operation over at least `min_s` seconds (after a short untimed warm-up). */
static double time_per_op(const char *what, batch_fn fn, void *arg, double min_s) {
    uint64_t budget = (uint64_t)(min_s * 1e9);
    long bad = fn(arg, 1);                            /* warm-up: first touch, caches */
    uint64_t total = 0, ops = 0;
    long n = 1;
    while (total < budget) {
        uint64_t t0 = now_ns();
        bad += fn(arg, n);
        uint64_t dt = now_ns() - t0;
        total += dt;
        ops += (uint64_t)n;
        if (dt < budget / 16 && n < (1L << 24))
            n *= 2;
    }
    if (bad)
        die("%s: %ld unexpected results; first: %s", what, bad, first_err);
    return (double)total / (double)ops;
}

/* ------------------------------------------------------------------------------------------------ */
/* Batches: one operation = one lock+unlock pair                                                    */

typedef struct {
    const unilock *ul;
    const uint8_t *fid;
    size_t fid_len;
    unilock_owner own;
    unilock_lock_req req;
} ul_pair_t;

static long ul_pair_batch(void *a, long n) {
    ul_pair_t *p = a;
    long bad = 0;
    for (long i = 0; i < n; i++) {
        unilock_status s1 = unilock_lock(p->ul, p->fid, p->fid_len, &p->own, &p->req, NULL);
        unilock_status s2 = unilock_unlock(p->ul, p->fid, p->fid_len, &p->own, p->req.flavour, p->req.offset,
                                           p->req.length);
        if (__builtin_expect(s1 != UNILOCK_OK || s2 != UNILOCK_OK, 0)) {
            bad++;
            note_err("unilock_%s returned %s", s1 != UNILOCK_OK ? "lock" : "unlock",
                     unilock_strerror(s1 != UNILOCK_OK ? s1 : s2));
        }
    }
    return bad;
}

static void ul_pair_init(ul_pair_t *p, const unilock *ul, const fid_t *f, const char *client, const void *owner,
                         size_t owner_len, uint64_t open_id, uint32_t flavour, uint32_t type, uint64_t off,
                         uint64_t len) {
    memset(p, 0, sizeof *p);
    p->ul = ul;
    p->fid = f->b;
    p->fid_len = sizeof f->b;
    p->own.client = client;
    p->own.owner = owner;
    p->own.owner_len = owner_len;
    p->own.open_id = open_id;
    p->req.flavour = flavour;
    p->req.type = type;
    p->req.offset = off;
    p->req.length = len;
}

static double ul_pair_time(const char *what, ul_pair_t *p, double min_s) {
    return time_per_op(what, ul_pair_batch, p, min_s);
}

typedef struct {
    int fd;
    struct flock lk, un;
} k_pair_t;

static long k_pair_batch(void *a, long n) {
    k_pair_t *p = a;
    long bad = 0;
    for (long i = 0; i < n; i++) {
        int r1 = fcntl(p->fd, F_OFD_SETLK, &p->lk);
        if (__builtin_expect(r1 != 0, 0))
            note_err("fcntl(F_OFD_SETLK) lock: %s", strerror(errno));
        int r2 = fcntl(p->fd, F_OFD_SETLK, &p->un);
        if (__builtin_expect(r2 != 0, 0))
            note_err("fcntl(F_OFD_SETLK) unlock: %s", strerror(errno));
        bad += (r1 != 0) + (r2 != 0);
    }
    return bad;
}

static void k_pair_init(k_pair_t *p, int fd, short type, off_t off, off_t len) {
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->lk.l_type = type;
    p->lk.l_whence = SEEK_SET;
    p->lk.l_start = off;
    p->lk.l_len = len;
    p->un = p->lk;
    p->un.l_type = F_UNLCK;
}

static double k_pair_time(const char *what, k_pair_t *p, double min_s) {
    return time_per_op(what, k_pair_batch, p, min_s);
}

static int kfile_open(const char *suffix, int flags) {
    char path[320];
    snprintf(path, sizeof path, "%s%s", kfile_base, suffix);
    int fd = open(path, flags | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    return fd;
}

static void kfile_unlink_all(void) {
    static const char *suffixes[] = {"-f1",  "-f3.10", "-f3.1000", "-f3.100000", "-f4s",
                                     "-f4t0", "-f4t1", "-f6a",     "-f6b",       "-f7"};
    char path[320];
    if (getpid() != main_pid) /* a child of figure 7 that died: the files are the parent's */
        return;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(path, sizeof path, "%s%s", kfile_base, suffixes[i]);
        unlink(path);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* The floor: the least work any in-memory lock manager does for a lock+unlock pair (issue 16). Each
 * call takes one mutex, finds the file by hashing its id in an open-addressing table, and inserts
 * into (lock) or removes from (unlock) an ordered map of the file's locks (glibc's tsearch red-black
 * tree). Nothing else: no conflict check, no owner, no events. The kernel's cost varies threefold
 * between machines; this anchor holds. */

#define FLOOR_SLOTS 1024

typedef struct {
    uint64_t start, end;
} floor_lock_t;

typedef struct {
    uint8_t id[25];
    int used;
    void *locks; /* tsearch root */
} floor_file_t;

typedef struct {
    pthread_mutex_t mu;
    floor_file_t files[FLOOR_SLOTS];
    floor_lock_t node; /* the one lock of the measured pair (tsearch stores its pointer) */
    const uint8_t *fid;
} floor_t;

static int floor_cmp(const void *a, const void *b) {
    const floor_lock_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static floor_file_t *floor_find(floor_t *fl, const uint8_t *id) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 25; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    for (uint64_t i = 0; i < FLOOR_SLOTS; i++) {
        floor_file_t *f = &fl->files[(h + i) % FLOOR_SLOTS];
        if (!f->used) {
            f->used = 1;
            memcpy(f->id, id, 25);
            return f;
        }
        if (memcmp(f->id, id, 25) == 0)
            return f;
    }
    return NULL;
}

static long floor_batch(void *a, long n) {
    floor_t *fl = a;
    long bad = 0;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&fl->mu);
        floor_file_t *f = floor_find(fl, fl->fid);
        bad += tsearch(&fl->node, &f->locks, floor_cmp) == NULL;
        pthread_mutex_unlock(&fl->mu);
        pthread_mutex_lock(&fl->mu);
        f = floor_find(fl, fl->fid);
        bad += tdelete(&fl->node, &f->locks, floor_cmp) == NULL;
        pthread_mutex_unlock(&fl->mu);
    }
    if (bad)
        note_err("floor: tsearch/tdelete failed");
    return bad;
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 1: uncontended lock+unlock pair                                                           */

static void fig1(void) {
    int r_k = row_new(1, "kernel_ofd_pair_ns", "kernel F_OFD_SETLK lock+unlock, tmpfs", "ns/pair");
    int r_p = row_new(1, "unilock_posix_pair_ns", "unilock POSIX lock+unlock", "ns/pair");
    int r_w = row_new(1, "unilock_windows_pair_ns", "unilock Windows lock+unlock", "ns/pair");
    int r_f = row_new(1, "floor_pair_ns", "floor: mutex, hash lookup, tree insert+remove", "ns/pair");
    int r_pf = row_derived(1, "unilock_posix_pair_vs_floor", "unilock POSIX pair / floor", r_p, r_f, GOAL_LE, 1.5,
                           "floor");
    int r_wf = row_derived(1, "unilock_windows_pair_vs_floor", "unilock Windows pair / floor", r_w, r_f, GOAL_LE,
                           1.5, "floor");
    (void)r_pf;
    (void)r_wf;
    row_tag(r_k, "kernel");
    row_tag(r_f, "floor");
    row_anchor(r_p, r_k, GOAL_LE, 0.1, "kernel");
    row_anchor(r_w, r_k, GOAL_LE, 0.1, "kernel");
    row_anchor(r_f, r_k, GOAL_NONE, 0, "kernel");

    unilock *ul = ul_open(UNILOCK_EVENTS_THREAD, NULL, NULL);
    fid_t f = fid_of(1);
    static const uint8_t owner[8] = "bench-01";
    ul_pair_t pp, pw;
    ul_pair_init(&pp, ul, &f, "nlm:bench", owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100);
    ul_pair_init(&pw, ul, &f, "smb:bench", owner, sizeof owner, 1, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, 0, 100);

    int fd = kfile_open("-f1", O_RDWR);
    k_pair_t kp;
    k_pair_init(&kp, fd, F_WRLCK, 0, 100);

    static floor_t fl;
    memset(&fl, 0, sizeof fl);
    pthread_mutex_init(&fl.mu, NULL);
    fl.node = (floor_lock_t){0, 100};
    fl.fid = f.b;

    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 1: repetition %d", rep + 1);
        row_add(r_k, k_pair_time("figure 1 kernel pair", &kp, cfg.min_s));
        row_add(r_f, time_per_op("figure 1 floor pair", floor_batch, &fl, cfg.min_s));
        row_add(r_p, ul_pair_time("figure 1 unilock POSIX pair", &pp, cfg.min_s));
        row_add(r_w, ul_pair_time("figure 1 unilock Windows pair", &pw, cfg.min_s));
    }
    progress("\n");
    close(fd);
    unilock_close(ul);
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 3: one pair on a file that already holds N locks of other owners                         */

/* Layout shared by unilock and the kernel: other lock g covers [16g, 16g + 8), shared, one owner
 * each (unilock) / one open file description per group of locks (kernel); the measured owner takes an
 * exclusive lock on [16(N/2) + 8, +4), a free gap in the middle of the file. */
#define F3_STRIDE 16
#define F3_LEN 8
#define F3_KFDS_MAX 100

typedef struct {
    long n;                 /* other locks */
    unilock *ul;            /* POSIX others on fid 1, Windows others on fid 2 */
    fid_t fp, fw;
    ul_pair_t pp, pw;
    int kfds[F3_KFDS_MAX];
    int nkfds;
    int kfd;                /* the measured description */
    k_pair_t kp;
    int r_p, r_w, r_k;
} f3_case_t;

static uint64_t f3_gap(long n) { return (uint64_t)(n / 2) * F3_STRIDE + F3_LEN; }

static void f3_setup_unilock(f3_case_t *c) {
    c->ul = ul_open(UNILOCK_EVENTS_THREAD, NULL, NULL);
    c->fp = fid_of(31);
    c->fw = fid_of(32);
    unilock_owner o = {0};
    uint64_t ob;
    o.owner = (const uint8_t *)&ob;
    o.owner_len = sizeof ob;
    unilock_lock_req rq = {0};
    rq.type = UNILOCK_SHARED;
    rq.length = F3_LEN;
    uint64_t t0 = now_ns();
    for (long g = 0; g < c->n; g++) {
        ob = (uint64_t)g;
        o.open_id = (uint64_t)g + 1;
        rq.offset = (uint64_t)g * F3_STRIDE;
        o.client = "nlm:others";
        rq.flavour = UNILOCK_POSIX;
        check_ul(unilock_lock(c->ul, c->fp.b, sizeof c->fp.b, &o, &rq, NULL), UNILOCK_OK, "figure 3 fill POSIX");
        o.client = "smb:others";
        rq.flavour = UNILOCK_WINDOWS;
        check_ul(unilock_lock(c->ul, c->fw.b, sizeof c->fw.b, &o, &rq, NULL), UNILOCK_OK, "figure 3 fill Windows");
    }
    double fill_ms = (double)(now_ns() - t0) / 1e6;
    size_t count = 0;
    check_ul(unilock_list_locks(c->ul, c->fp.b, sizeof c->fp.b, NULL, NULL, &count), UNILOCK_OK, "list_locks");
    if ((long)count != c->n)
        die("figure 3: unilock holds %zu POSIX locks, expected %ld", count, c->n);
    check_ul(unilock_list_locks(c->ul, c->fw.b, sizeof c->fw.b, NULL, NULL, &count), UNILOCK_OK, "list_locks");
    if ((long)count != c->n)
        die("figure 3: unilock holds %zu Windows locks, expected %ld", count, c->n);
    progress("figure 3: %ld + %ld unilock locks set up in %.1f ms\n", c->n, c->n, fill_ms);
    static const uint8_t me[2] = "me";
    uint64_t gap = f3_gap(c->n);
    ul_pair_init(&c->pp, c->ul, &c->fp, "nlm:bench", me, sizeof me, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, gap, 4);
    ul_pair_init(&c->pw, c->ul, &c->fw, "smb:bench", me, sizeof me, 1, UNILOCK_WINDOWS, UNILOCK_EXCLUSIVE, gap, 4);
}

static void k_setlk(int fd, short type, off_t off, off_t len, const char *what) {
    struct flock fl = {0};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = off;
    fl.l_len = len;
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0)
        die("%s: fcntl(F_OFD_SETLK) at %lld+%lld: %s", what, (long long)off, (long long)len, strerror(errno));
}

/* The kernel keeps a file's locks in one list and scans it for every request, so filling it lock by
 * lock costs O(N^2). Instead each description first takes one shared lock over its whole region, and
 * then unlocks holes in it from the top down: an unlock skips the conflict scan and always splits the
 * description's first lock, so every split only walks past the single locks of the descriptions
 * before it. Same-description locks that do not touch stay separate entries of the list. */
static void f3_setup_kernel(f3_case_t *c, const char *suffix) {
    int m = c->n < F3_KFDS_MAX ? (int)c->n : F3_KFDS_MAX;
    long per = c->n / m;
    if (per * m != c->n)
        die("figure 3: %ld locks do not split over %d descriptions", c->n, m);
    c->nkfds = m;
    uint64_t t0 = now_ns();
    for (int j = 0; j < m; j++) {
        c->kfds[j] = kfile_open(suffix, O_RDWR);
        off_t base = (off_t)j * per * F3_STRIDE;
        k_setlk(c->kfds[j], F_RDLCK, base, (off_t)(per - 1) * F3_STRIDE + F3_LEN, "figure 3 kernel fill");
    }
    for (int j = m - 1; j >= 0; j--) {
        off_t base = (off_t)j * per * F3_STRIDE;
        for (long i = per - 2; i >= 0; i--)
            k_setlk(c->kfds[j], F_UNLCK, base + (off_t)i * F3_STRIDE + F3_LEN, F3_STRIDE - F3_LEN,
                    "figure 3 kernel split");
    }
    double fill_ms = (double)(now_ns() - t0) / 1e6;
    c->kfd = kfile_open(suffix, O_RDWR);
    k_pair_init(&c->kp, c->kfd, F_WRLCK, (off_t)f3_gap(c->n), 4);
    /* The gap is free, the locks are where they should be: probe a few with F_OFD_GETLK. */
    for (long g = 0; g < c->n; g += c->n / 5 + 1) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)g * F3_STRIDE + 2, .l_len = 1};
        if (fcntl(c->kfd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_RDLCK || fl.l_start != (off_t)g * F3_STRIDE ||
            fl.l_len != F3_LEN)
            die("figure 3: kernel lock %ld is not in place", g);
    }
    progress("figure 3: %ld kernel locks (%d descriptions) set up in %.1f ms\n", c->n, m, fill_ms);
}

static void f3_teardown(f3_case_t *c) {
    for (int j = 0; j < c->nkfds; j++)
        close(c->kfds[j]);
    close(c->kfd);
    unilock_close(c->ul);
}

static void fig3(void) {
    static const long sizes[] = {10, 1000, 100000};
    enum { NS = sizeof sizes / sizeof *sizes };
    static f3_case_t cs[NS];
    char name[64], label[96];
    for (int i = 0; i < NS; i++) {
        f3_case_t *c = &cs[i];
        memset(c, 0, sizeof *c);
        c->n = sizes[i];
        snprintf(name, sizeof name, "kernel_ofd_pair_%ld_ns", c->n);
        snprintf(label, sizeof label, "kernel OFD pair, %ld other locks", c->n);
        c->r_k = row_new(3, name, label, "ns/pair");
        snprintf(label, sizeof label, "kernel, %ld others", c->n);
        row_tag(c->r_k, label);
        snprintf(name, sizeof name, "unilock_posix_pair_%ld_ns", c->n);
        snprintf(label, sizeof label, "unilock POSIX pair, %ld other locks", c->n);
        c->r_p = row_new(3, name, label, "ns/pair");
        snprintf(label, sizeof label, "unilock POSIX, %ld others", c->n);
        row_tag(c->r_p, label);
        row_anchor(c->r_p, c->r_k, GOAL_NONE, 0, "kernel");
        snprintf(name, sizeof name, "unilock_windows_pair_%ld_ns", c->n);
        snprintf(label, sizeof label, "unilock Windows pair, %ld other locks", c->n);
        c->r_w = row_new(3, name, label, "ns/pair");
        snprintf(label, sizeof label, "unilock Windows, %ld others", c->n);
        row_tag(c->r_w, label);
        row_anchor(c->r_w, c->r_k, GOAL_NONE, 0, "kernel");
        char suffix[32];
        snprintf(suffix, sizeof suffix, "-f3.%ld", c->n);
        f3_setup_unilock(c);
        f3_setup_kernel(c, suffix);
    }
    char what[96];
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 3: repetition %d", rep + 1);
        for (int i = 0; i < NS; i++) {
            f3_case_t *c = &cs[i];
            snprintf(what, sizeof what, "figure 3 kernel pair, %ld others", c->n);
            /* the kernel scans its list: a pair costs O(N), so give it a fixed, shorter budget */
            row_add(c->r_k, k_pair_time(what, &c->kp, c->n >= 100000 ? cfg.min_s / 2 : cfg.min_s));
            snprintf(what, sizeof what, "figure 3 unilock POSIX pair, %ld others", c->n);
            row_add(c->r_p, ul_pair_time(what, &c->pp, cfg.min_s));
            snprintf(what, sizeof what, "figure 3 unilock Windows pair, %ld others", c->n);
            row_add(c->r_w, ul_pair_time(what, &c->pw, cfg.min_s));
        }
    }
    progress("\n");
    char path[320];
    for (int i = 0; i < NS; i++) {
        f3_teardown(&cs[i]);
        snprintf(path, sizeof path, "%s-f3.%ld", kfile_base, cs[i].n);
        unlink(path);
    }
    row_derived(3, "unilock_posix_100000_over_10", "unilock POSIX: 100000 others vs 10 others", cs[NS - 1].r_p,
                cs[0].r_p, GOAL_LE, 2.0, "10 case");
    row_derived(3, "unilock_windows_100000_over_10", "unilock Windows: 100000 others vs 10 others", cs[NS - 1].r_w,
                cs[0].r_w, GOAL_LE, 2.0, "10 case");
    row_derived(3, "kernel_100000_over_10", "kernel: 100000 others vs 10 others", cs[NS - 1].r_k, cs[0].r_k,
                GOAL_NONE, 0, "10 case");
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 4: throughput, 1 and 2 threads, distinct files and one shared file                       */

typedef struct {
    _Alignas(128) pthread_t tid;
    int kind; /* 0 unilock, 1 kernel, 2 CPU-only control loop */
    ul_pair_t up;
    k_pair_t kp;
    pthread_barrier_t *start;
    atomic_int *stop;
    uint64_t ops;
    uint64_t ns;
    uint64_t cpu_ns; /* the thread's own CPU time: contention shows here even when the machine is busy */
    long bad;
} f4_thread_t;

static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The control: what the machine gives a second thread right now, with no memory shared at all. One
 * "operation" is 64 rounds of xorshift; the state is returned so the loop cannot be elided. */
static volatile uint64_t control_sink;
static long control_batch(void *a, long n) {
    uint64_t x = (uint64_t)(uintptr_t)a | 1;
    for (long i = 0; i < n * 64; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    control_sink = x;
    return 0;
}

static void *f4_worker(void *a) {
    f4_thread_t *t = a;
    batch_fn fn = t->kind == 2 ? control_batch : t->kind == 1 ? k_pair_batch : ul_pair_batch;
    void *arg = t->kind == 2 ? (void *)t : t->kind == 1 ? (void *)&t->kp : (void *)&t->up;
    long bad = fn(arg, 64); /* warm-up */
    pthread_barrier_wait(t->start);
    uint64_t t0 = now_ns(), c0 = thread_cpu_ns(), ops = 0;
    while (!atomic_load_explicit(t->stop, memory_order_relaxed)) {
        bad += fn(arg, 256);
        ops += 256;
    }
    t->ns = now_ns() - t0;
    t->cpu_ns = thread_cpu_ns() - c0;
    t->ops = ops;
    t->bad = bad;
    return NULL;
}

/* Pairs per second (millions), summed over the threads' own rates; `cpu_per_op`: CPU ns per pair. */
static double f4_run(f4_thread_t *ts, int n, const char *what, double *cpu_per_op) {
    pthread_barrier_t start;
    atomic_int stop = 0;
    pthread_barrier_init(&start, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        ts[i].start = &start;
        ts[i].stop = &stop;
        ts[i].ops = ts[i].ns = 0;
        ts[i].bad = 0;
        if (pthread_create(&ts[i].tid, NULL, f4_worker, &ts[i]) != 0)
            die("pthread_create failed");
    }
    pthread_barrier_wait(&start);
    struct timespec d = {(time_t)cfg.thr_s, (long)((cfg.thr_s - (double)(time_t)cfg.thr_s) * 1e9)};
    while (nanosleep(&d, &d) != 0 && errno == EINTR) {
    }
    atomic_store(&stop, 1);
    double rate = 0, cpu = 0, ops = 0;
    long bad = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(ts[i].tid, NULL);
        rate += (double)ts[i].ops / ((double)ts[i].ns / 1e9);
        cpu += (double)ts[i].cpu_ns;
        ops += (double)ts[i].ops;
        bad += ts[i].bad;
    }
    if (cpu_per_op)
        *cpu_per_op = cpu / ops;
    pthread_barrier_destroy(&start);
    if (bad)
        die("%s: %ld unexpected results; first: %s", what, bad, first_err);
    return rate / 1e6;
}

static void fig4(void) {
    /* impl 0 unilock, 1 kernel; layout 0 distinct files, 1 shared file */
    static const char *impl_name[2] = {"unilock", "kernel"};
    static const char *impl_label[2] = {"unilock POSIX", "kernel OFD"};
    static const char *layout_name[2] = {"distinct_files", "shared_file"};
    static const char *layout_label[2] = {"distinct files", "one shared file"};
    int r[2][2][2]; /* impl, layout, threads-1 */
    char name[64], label[96];
    /* The control first: how much a second thread gets on this machine at this moment. */
    int rc1 = row_new(4, "control_cpu_loop_1thread_mops_s", "control: CPU-only loop, 1 thread", "Mops/s");
    int rc2 = row_new(4, "control_cpu_loop_2thread_mops_s", "control: CPU-only loop, 2 threads", "Mops/s");
    row_tag(rc1, "control, 1 thread");
    row_anchor(rc2, rc1, GOAL_NONE, 0, "1 thread");
    for (int im = 0; im < 2; im++)
        for (int la = 0; la < 2; la++)
            for (int th = 1; th <= 2; th++) {
                snprintf(name, sizeof name, "%s_%s_%dthread_mpairs_s", impl_name[im], layout_name[la], th);
                snprintf(label, sizeof label, "%s, %d thread%s, %s", impl_label[im], th, th > 1 ? "s" : "",
                         layout_label[la]);
                r[im][la][th - 1] = row_new(4, name, label, "Mpairs/s");
                snprintf(label, sizeof label, "%s, 1 thread", impl_name[im]);
                row_tag(r[im][la][th - 1], label);
            }
    for (int im = 0; im < 2; im++)
        for (int la = 0; la < 2; la++)
            row_anchor(r[im][la][1], r[im][la][0], im == 0 && la == 0 ? GOAL_GE : GOAL_NONE, 1.8, "1 thread");
    /* unilock's CPU time per pair: with 2 threads it stays at the 1-thread cost unless the threads
     * contend (a shared lock or cache line), whatever else the machine is doing. */
    int rcpu[2][2];
    for (int la = 0; la < 2; la++)
        for (int th = 1; th <= 2; th++) {
            snprintf(name, sizeof name, "unilock_%s_%dthread_cpu_ns_per_pair", layout_name[la], th);
            snprintf(label, sizeof label, "unilock CPU time per pair, %d thread%s, %s", th, th > 1 ? "s" : "",
                     la ? "shared" : "distinct");
            rcpu[la][th - 1] = row_new(4, name, label, "ns/pair");
            row_tag(rcpu[la][th - 1], "CPU time, 1 thread");
        }
    for (int la = 0; la < 2; la++)
        row_anchor(rcpu[la][1], rcpu[la][0], GOAL_NONE, 0, "1 thread");

    unilock *ul = ul_open(UNILOCK_EVENTS_THREAD, NULL, NULL);
    static fid_t fids[2];
    static const char *clients[2] = {"nlm:t0", "nlm:t1"};
    static const uint8_t owner[4] = "thrd";
    fids[0] = fid_of(41);
    fids[1] = fid_of(42);
    static f4_thread_t ts[2][2][2]; /* impl, layout, thread */
    static f4_thread_t tc[2];       /* control */
    memset(ts, 0, sizeof ts);
    memset(tc, 0, sizeof tc);
    tc[0].kind = tc[1].kind = 2;
    int kfd[2][2];
    kfd[0][0] = kfile_open("-f4t0", O_RDWR);
    kfd[0][1] = kfile_open("-f4t1", O_RDWR);
    kfd[1][0] = kfile_open("-f4s", O_RDWR);
    kfd[1][1] = kfile_open("-f4s", O_RDWR);
    for (int la = 0; la < 2; la++)
        for (int t = 0; t < 2; t++) {
            uint64_t off = la ? (uint64_t)t * 4096 : 0;
            f4_thread_t *u = &ts[0][la][t];
            ul_pair_init(&u->up, ul, la ? &fids[0] : &fids[t], clients[t], owner, sizeof owner, 1, UNILOCK_POSIX,
                         UNILOCK_EXCLUSIVE, off, 100);
            f4_thread_t *k = &ts[1][la][t];
            k->kind = 1;
            k_pair_init(&k->kp, kfd[la][t], F_WRLCK, (off_t)off, 100);
        }
    char what[96];
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 4: repetition %d", rep + 1);
        row_add(rc1, f4_run(tc, 1, "figure 4 control, 1 thread", NULL));
        row_add(rc2, f4_run(tc, 2, "figure 4 control, 2 threads", NULL));
        for (int la = 0; la < 2; la++)
            for (int im = 0; im < 2; im++)
                for (int th = 1; th <= 2; th++) {
                    snprintf(what, sizeof what, "figure 4 %s", rows[r[im][la][th - 1]].label);
                    double cpu;
                    row_add(r[im][la][th - 1], f4_run(ts[im][la], th, what, &cpu));
                    if (im == 0)
                        row_add(rcpu[la][th - 1], cpu);
                }
    }
    progress("\n");
    for (int la = 0; la < 2; la++)
        for (int t = 0; t < 2; t++)
            close(kfd[la][t]);
    unilock_close(ul);
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 6: lease break latency, from the conflicting request to the break callback               */

#define EVLOG 64
typedef struct {
    uint32_t type, status, break_to, ack_required, lease_state;
    uint64_t request_id;
    uint64_t t_ns;
} ev_rec_t;

typedef struct {
    atomic_uint n; /* events seen so far; written by the delivering thread only */
    int efd;       /* eventfd written after each event: the measuring thread sleeps on it */
    ev_rec_t ev[EVLOG];
} ev_log_t;

/* The measuring thread sleeps (it does not spin) while it waits for the other thread: a spinning
 * waiter would hold the CPU the woken thread may be placed on, and measure its own spinning. */
static void efd_post(int efd) {
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) != (ssize_t)sizeof one)
        die("eventfd write: %s", strerror(errno));
}

static void wait_until(int efd, int (*cond)(void *), void *a, const char *what) {
    while (!cond(a)) {
        struct pollfd p = {.fd = efd, .events = POLLIN};
        int r = poll(&p, 1, 5000);
        if (r == 0)
            die("%s: nothing after 5 s", what);
        if (r < 0 && errno != EINTR)
            die("poll: %s", strerror(errno));
        uint64_t v;
        if (r > 0 && read(efd, &v, sizeof v) < 0 && errno != EAGAIN)
            die("eventfd read: %s", strerror(errno));
    }
}

static void on_event(void *ud, const unilock_event *e) {
    uint64_t t = now_ns();
    ev_log_t *l = ud;
    unsigned i = atomic_load_explicit(&l->n, memory_order_relaxed);
    ev_rec_t *r = &l->ev[i % EVLOG];
    r->t_ns = t;
    r->type = e->type;
    r->status = e->status;
    r->break_to = e->break_to;
    r->ack_required = e->ack_required;
    r->lease_state = e->lease_state;
    r->request_id = e->request_id;
    atomic_store_explicit(&l->n, i + 1, memory_order_release);
    efd_post(l->efd);
}

static unsigned ev_want;
static int ev_arrived(void *a) {
    return atomic_load_explicit(&((ev_log_t *)a)->n, memory_order_acquire) >= ev_want;
}

/* Waits until `want` events were seen; returns the last one. */
static const ev_rec_t *ev_wait(ev_log_t *l, unsigned want, const char *what) {
    ev_want = want;
    wait_until(l->efd, ev_arrived, l, what);
    return &l->ev[(want - 1) % EVLOG];
}

static const uint8_t key_a[16] = "lease-key-of-A..";

static void lease_open_a(unilock *ul, const fid_t *f, uint32_t requested) {
    unilock_open_req rq;
    unilock_open_req_init(&rq);
    rq.lease_kind = UNILOCK_LEASE_KIND_LEASE;
    rq.requested = requested;
    rq.lease_version = 2;
    memcpy(rq.lease_key, key_a, 16);
    unilock_open_result out;
    unilock_wait w = {0};
    check_ul(unilock_file_open(ul, f->b, sizeof f->b, "smb:A", 1, &rq, &w, &out), UNILOCK_OK, "figure 6 lease open");
    if (out.state != requested)
        die("figure 6: lease granted state %u, asked %u", out.state, requested);
}

/* R lease of A, broken to none by an NFS write of B (no ack). Thread mode waits for the library
 * thread; loop mode delivers inside unilock_process_events on the calling thread. */
static double f6_unilock_r(unilock *ul, ev_log_t *log, int loop_mode, int samples) {
    fid_t f = fid_of(61);
    double lat[4096];
    if (samples > 4096)
        samples = 4096;
    for (int s = 0; s < samples; s++) {
        lease_open_a(ul, &f, UNILOCK_LEASE_R);
        unsigned want = atomic_load(&log->n) + 1;
        uint64_t t0 = now_ns();
        unilock_status st = unilock_break_trigger(ul, f.b, sizeof f.b, "nfs:B", NULL, UNILOCK_TRIGGER_WRITE, NULL, NULL);
        if (loop_mode) {
            size_t delivered = 0;
            check_ul(unilock_process_events(ul, &delivered), UNILOCK_OK, "figure 6 process_events");
        }
        check_ul(st, UNILOCK_OK, "figure 6 break_trigger");
        const ev_rec_t *e = ev_wait(log, want, "figure 6 R break");
        if (e->type != UNILOCK_EVENT_LEASE_BREAK || e->break_to != 0 || e->ack_required)
            die("figure 6: unexpected event type %u break_to %u ack %u", e->type, e->break_to, e->ack_required);
        lat[s] = (double)(e->t_ns - t0) / 1e3;
        check_ul(unilock_file_close(ul, f.b, sizeof f.b, "smb:A", 1), UNILOCK_OK, "figure 6 close");
    }
    return median_of(lat, samples);
}

/* RWH lease of A, broken by B's SMB open for writing (W must go: ack required); B's open waits. */
static double f6_unilock_rwh(unilock *ul, ev_log_t *log, int samples) {
    fid_t f = fid_of(62);
    double lat[4096];
    if (samples > 4096)
        samples = 4096;
    unilock_open_req rb;
    unilock_open_req_init(&rb);
    rb.lease_kind = UNILOCK_LEASE_KIND_NONE;
    rb.flags = UNILOCK_OPEN_WRITE;
    unilock_wait wb = {0};
    unilock_open_result ob;
    for (int s = 0; s < samples; s++) {
        lease_open_a(ul, &f, UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H);
        unsigned want = atomic_load(&log->n) + 1;
        wb.token = (uint64_t)s + 1;
        uint64_t t0 = now_ns();
        check_ul(unilock_file_open(ul, f.b, sizeof f.b, "smb:B", 2, &rb, &wb, &ob), UNILOCK_PENDING,
                 "figure 6 conflicting open");
        const ev_rec_t *e = ev_wait(log, want, "figure 6 RWH break");
        if (e->type != UNILOCK_EVENT_LEASE_BREAK || !e->ack_required)
            die("figure 6: unexpected event type %u ack %u", e->type, e->ack_required);
        lat[s] = (double)(e->t_ns - t0) / 1e3;
        /* A acknowledges (again if the lease must go lower still) until B's wait ends. */
        for (;;) {
            if (e->type == UNILOCK_EVENT_BREAKS_DONE) {
                if (e->request_id != ob.request_id)
                    die("figure 6: BREAKS_DONE for request %llu, waiting %llu", (unsigned long long)e->request_id,
                        (unsigned long long)ob.request_id);
                break;
            }
            if (e->type != UNILOCK_EVENT_LEASE_BREAK)
                die("figure 6: unexpected event type %u", e->type);
            check_ul(unilock_lease_ack(ul, f.b, sizeof f.b, "smb:A", key_a, e->break_to), UNILOCK_OK,
                     "figure 6 lease ack");
            e = ev_wait(log, ++want, "figure 6 breaks done");
        }
        unilock_open_result ob2;
        check_ul(unilock_file_open(ul, f.b, sizeof f.b, "smb:B", 2, &rb, &wb, &ob2), UNILOCK_OK, "figure 6 retried open");
        check_ul(unilock_file_close(ul, f.b, sizeof f.b, "smb:B", 2), UNILOCK_OK, "figure 6 close B");
        check_ul(unilock_file_close(ul, f.b, sizeof f.b, "smb:A", 1), UNILOCK_OK, "figure 6 close A");
    }
    return median_of(lat, samples);
}

/* The kernel: a read lease (F_SETLEASE) held by a thread sleeping in sigwaitinfo, broken by an
 * open for writing with O_NONBLOCK (returns EWOULDBLOCK at once; the holder gets F_SETSIG's signal). */
typedef struct {
    pthread_t tid;
    int fd;
    int sig;
    atomic_int ready;     /* holder holds the lease and waits */
    atomic_uint seen;     /* breaks seen */
    atomic_int quit;
    uint64_t t_ns;        /* when the last signal arrived */
    int err;
    int efd;              /* posted whenever `ready` changes to 1 or -1 */
    int started;
    char path[320];
} klease_t;

static void *klease_holder(void *a) {
    klease_t *k = a;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, k->sig);
    struct f_owner_ex ow = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
    for (;;) {
        /* Giving a lease up (F_UNLCK) also resets the description's owner and signal: set them again. */
        if (fcntl(k->fd, F_SETSIG, k->sig) != 0 || fcntl(k->fd, F_SETOWN_EX, &ow) != 0 ||
            fcntl(k->fd, F_SETLEASE, F_RDLCK) != 0) {
            k->err = errno;
            atomic_store(&k->ready, -1);
            efd_post(k->efd);
            return NULL;
        }
        atomic_store(&k->ready, 1);
        efd_post(k->efd);
        siginfo_t si;
        int s;
        do
            s = sigwaitinfo(&set, &si);
        while (s < 0 && errno == EINTR);
        k->t_ns = now_ns();
        atomic_store(&k->ready, 0);
        if (fcntl(k->fd, F_SETLEASE, F_UNLCK) != 0) {
            k->err = errno;
            atomic_store(&k->ready, -1);
            efd_post(k->efd);
            return NULL;
        }
        if (atomic_load(&k->quit))
            return NULL;
        atomic_fetch_add(&k->seen, 1);
    }
}

static int kl_ready(void *a) {
    klease_t *k = a;
    int r = atomic_load(&k->ready);
    if (r < 0)
        die("figure 6: kernel lease holder failed: %s", strerror(k->err));
    return r == 1;
}

static unsigned kl_want;
static int kl_seen(void *a) {
    klease_t *k = a;
    if (atomic_load(&k->ready) < 0)
        die("figure 6: kernel lease holder failed: %s", strerror(k->err));
    return atomic_load(&k->seen) >= kl_want;
}

static const char *kl_unavailable; /* why the kernel anchor cannot be measured, or NULL */

/* Each holder has its own file: a lease is per file, and each break must reach one holder. */
static void klease_start(klease_t *k, const char *suffix) {
    memset(k, 0, sizeof *k);
    snprintf(k->path, sizeof k->path, "%s%s", kfile_base, suffix);
    int fd = open(k->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        die("open %s: %s", k->path, strerror(errno));
    close(fd);
    k->sig = SIGRTMIN + 1;
    k->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (k->efd < 0)
        die("eventfd: %s", strerror(errno));
    k->fd = open(k->path, O_RDONLY | O_CLOEXEC);
    if (k->fd < 0)
        die("open %s: %s", k->path, strerror(errno));
    /* Try a lease on this thread first: leases may be disabled (fs.leases-enable = 0) or refused. */
    if (fcntl(k->fd, F_SETLEASE, F_RDLCK) != 0) {
        static char why[128];
        snprintf(why, sizeof why, "F_SETLEASE refused (%s)", strerror(errno));
        kl_unavailable = why;
        return;
    }
    fcntl(k->fd, F_SETLEASE, F_UNLCK);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, k->sig);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread: the holder takes it with sigwaitinfo */
    if (pthread_create(&k->tid, NULL, klease_holder, k) != 0)
        die("pthread_create failed");
    k->started = 1;
}

static double klease_sample(klease_t *k) {
    wait_until(k->efd, kl_ready, k, "figure 6 kernel lease");
    kl_want = atomic_load(&k->seen) + 1;
    uint64_t t0 = now_ns();
    int fd = open(k->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    int err = errno;
    if (fd >= 0)
        die("figure 6: open for writing succeeded despite the read lease");
    if (err != EWOULDBLOCK)
        die("figure 6: open for writing: %s (expected EWOULDBLOCK)", strerror(err));
    wait_until(k->efd, kl_seen, k, "figure 6 kernel lease break");
    return (double)(k->t_ns - t0) / 1e3;
}

static void klease_stop(klease_t *k) {
    if (k->started) {
        wait_until(k->efd, kl_ready, k, "figure 6 kernel lease");
        atomic_store(&k->quit, 1);
        int fd = open(k->path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        pthread_join(k->tid, NULL);
    }
    close(k->fd);
    close(k->efd);
    unlink(k->path);
}

/* Threads inherit the affinity of the thread that creates them: pinning the main thread while the
 * lease holder and unilock's library thread are created places them. */
static void pin_self(int cpu) {
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(cpu, &cs);
    if (pthread_setaffinity_np(pthread_self(), sizeof cs, &cs) != 0)
        die("pthread_setaffinity_np(%d) failed", cpu);
}

static void fig6(void) {
    /* Where the woken thread runs matters more than anything else here: on a VM, waking a thread on
     * an idle other CPU costs an inter-processor interrupt through the hypervisor (about 12 us more on
     * the machine this was written on). So both sides are measured twice, woken thread on the
     * requester's CPU and on another one, each pair in the same placement. */
    cpu_set_t orig;
    if (pthread_getaffinity_np(pthread_self(), sizeof orig, &orig) != 0)
        die("pthread_getaffinity_np failed");
    int cpu_a = -1, cpu_b = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &orig)) {
            if (cpu_a < 0)
                cpu_a = c;
            else if (cpu_b < 0)
                cpu_b = c;
        }
    int places = cpu_b >= 0 ? 2 : 1;
    static const char *pname[2] = {"same CPU", "other CPU"};
    static const char *pkey[2] = {"same_cpu", "other_cpu"};
    int r_k[2], r_r[2], r_h[2];
    char name[64], label[96];
    for (int p = 0; p < places; p++) {
        snprintf(name, sizeof name, "kernel_read_lease_break_%s_us", pkey[p]);
        snprintf(label, sizeof label, "kernel read lease break -> signal, %s", pname[p]);
        r_k[p] = row_new(6, name, label, "us");
        snprintf(label, sizeof label, "kernel, %s", pname[p]);
        row_tag(r_k[p], label);
        snprintf(name, sizeof name, "unilock_r_break_thread_%s_us", pkey[p]);
        snprintf(label, sizeof label, "unilock R lease break (NFS write), %s", pname[p]);
        r_r[p] = row_new(6, name, label, "us");
        row_anchor(r_r[p], r_k[p], GOAL_NONE, 0, "kernel");
        snprintf(name, sizeof name, "unilock_rwh_break_thread_%s_us", pkey[p]);
        snprintf(label, sizeof label, "unilock RWH lease break (SMB open), %s", pname[p]);
        r_h[p] = row_new(6, name, label, "us");
        row_anchor(r_h[p], r_k[p], GOAL_NONE, 0, "kernel");
    }
    int r_l = row_new(6, "unilock_r_break_loop_us", "unilock R lease break, event loop (no thread)", "us");
    row_anchor(r_l, r_k[0], GOAL_NONE, 0, "kernel");

    static klease_t kls[2];
    static ev_log_t log_t[2], log_l;
    unilock *ult[2] = {NULL, NULL};
    for (int p = places - 1; p >= 0; p--) {
        pin_self(p ? cpu_b : cpu_a);
        klease_start(&kls[p], p ? "-f6b" : "-f6a");
        log_t[p].efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (log_t[p].efd < 0)
            die("eventfd: %s", strerror(errno));
        ult[p] = ul_open(UNILOCK_EVENTS_THREAD, on_event, &log_t[p]);
    }
    /* the main thread stays on cpu_a while it measures */
    log_l.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (log_l.efd < 0)
        die("eventfd: %s", strerror(errno));
    unilock *ull = ul_open(UNILOCK_EVENTS_LOOP, on_event, &log_l);
    int n = cfg.lease_samples;
    double lat[4096];
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 6: repetition %d", rep + 1);
        for (int p = 0; p < places; p++) {
            if (!kl_unavailable) {
                for (int s = 0; s < n && s < 4096; s++)
                    lat[s] = klease_sample(&kls[p]);
                row_add(r_k[p], median_of(lat, n));
            }
            row_add(r_r[p], f6_unilock_r(ult[p], &log_t[p], 0, n));
            row_add(r_h[p], f6_unilock_rwh(ult[p], &log_t[p], n));
        }
        row_add(r_l, f6_unilock_r(ull, &log_l, 1, n));
    }
    progress("\n");
    for (int p = 0; p < places; p++) {
        klease_stop(&kls[p]);
        unilock_close(ult[p]);
        close(log_t[p].efd);
    }
    if (kl_unavailable) {
        static char why[200];
        snprintf(why, sizeof why, "not measured: %s", kl_unavailable);
        for (int p = 0; p < places; p++)
            rows[r_k[p]].why = why;
        progress("figure 6: kernel anchor %s\n", why);
    }
    unilock_close(ull);
    close(log_l.efd);
    pthread_setaffinity_np(pthread_self(), sizeof orig, &orig);
}


/* ------------------------------------------------------------------------------------------------ */
/* Databases (figures 2 and 5): in a private directory on a disk (durability means nothing on tmpfs) */

static char db_dir[300];
static char db_fs[32] = "?";

static const char *fs_name(const char *path) {
    struct statfs sf;
    if (statfs(path, &sf) != 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext2/3/4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794c7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    case 0x6969: return "nfs";
    case 0xF2F52010: return "f2fs";
    default: return "other";
    }
}

static const char *db_dir_get(void) {
    if (!db_dir[0]) {
        snprintf(db_dir, sizeof db_dir, "%s/unilock-bench.XXXXXX", cfg.db_parent);
        if (!mkdtemp(db_dir)) {
            int e = errno;
            db_dir[0] = 0;
            fig_skip("cannot create a directory in %s: %s", cfg.db_parent, strerror(e));
            return NULL;
        }
        snprintf(db_fs, sizeof db_fs, "%s", fs_name(db_dir));
    }
    return db_dir;
}

static void db_remove(const char *path) {
    static const char *ext[] = {"", "-wal", "-shm", "-journal"};
    char p[1300];
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        unlink(p);
    }
}

static const char *db_names[] = {"fig2-sync.db", "fig2-process.db", "fig2-batch.db", "fig5.db", "fig5-saved.db"};

static void db_cleanup(void) {
    if (!db_dir[0] || getpid() != main_pid)
        return;
    char p[400];
    for (size_t i = 0; i < sizeof db_names / sizeof *db_names; i++) {
        snprintf(p, sizeof p, "%s/%s", db_dir, db_names[i]);
        db_remove(p);
    }
    rmdir(db_dir);
}

/* Copies a database and its -wal (if any) to `to` (any old files of `to` removed first). */
static void db_copy(const char *from, const char *to) {
    static const char *ext[] = {"", "-wal"};
    db_remove(to);
    char a[1300], b[1300];
    static char buf[1 << 20];
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        snprintf(a, sizeof a, "%s%s", from, ext[i]);
        snprintf(b, sizeof b, "%s%s", to, ext[i]);
        int in = open(a, O_RDONLY | O_CLOEXEC);
        if (in < 0) {
            if (i == 0)
                die("open %s: %s", a, strerror(errno));
            continue;
        }
        int out = open(b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0)
            die("open %s: %s", b, strerror(errno));
        ssize_t k;
        while ((k = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)k) != k)
                die("write %s: %s", b, strerror(errno));
        if (k < 0)
            die("read %s: %s", a, strerror(errno));
        close(in);
        close(out);
    }
}

/* Opens a handle on a database; on failure marks the figure unmeasured and returns NULL. */
static unilock *ul_open_db(const char *path, uint32_t durability) {
    unilock_config c;
    unilock_config_init(&c);
    c.db_path = path;
    c.durability = durability;
    unilock *ul = NULL;
    unilock_status st = unilock_open(&c, &ul);
    if (st != UNILOCK_OK) {
        fig_skip("unilock_open with db_path %s failed: %s (%s)", path, unilock_strerror(st), unilock_errdetail());
        return NULL;
    }
    return ul;
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 2: the uncontended pair with the SQLite store on, in each durability mode                 */

static void fig2(void) {
    static const struct {
        uint32_t mode;
        const char *name, *label;
    } modes[3] = {
        {UNILOCK_DURABILITY_SYNC, "unilock_sync_pair_ns", "unilock POSIX pair, store SYNC (fsync)"},
        {UNILOCK_DURABILITY_PROCESS, "unilock_process_pair_ns", "unilock POSIX pair, store PROCESS (WAL)"},
        {UNILOCK_DURABILITY_BATCH, "unilock_batch_pair_ns", "unilock POSIX pair, store BATCH"},
    };
    const char *dir = db_dir_get();
    if (!dir)
        return;
    int r_k = row_new(2, "fig2_kernel_ofd_pair_ns", "kernel F_OFD_SETLK lock+unlock, tmpfs", "ns/pair");
    row_tag(r_k, "kernel");
    int r[3];
    unilock *ul[3];
    char path[3][400];
    static const uint8_t owner[8] = "bench-02";
    fid_t f = fid_of(2);
    ul_pair_t pp[3];
    for (int m = 0; m < 3; m++) {
        r[m] = row_new(2, modes[m].name, modes[m].label, "ns/pair");
        row_anchor(r[m], r_k, modes[m].mode == UNILOCK_DURABILITY_BATCH ? GOAL_LE : GOAL_NONE, 1.0, "kernel");
        snprintf(path[m], sizeof path[m], "%s/%s", dir, db_names[m]);
        db_remove(path[m]);
        ul[m] = ul_open_db(path[m], modes[m].mode);
        if (!ul[m]) {
            for (int k = 0; k < m; k++)
                unilock_close(ul[k]);
            return;
        }
        ul_pair_init(&pp[m], ul[m], &f, "nlm:bench", owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0,
                     100);
    }
    progress("figure 2: databases in %s (%s)\n", dir, db_fs);
    int fd = kfile_open("-f1", O_RDWR);
    k_pair_t kp;
    k_pair_init(&kp, fd, F_WRLCK, 0, 100);
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 2: repetition %d", rep + 1);
        row_add(r_k, k_pair_time("figure 2 kernel pair", &kp, cfg.min_s));
        for (int m = 0; m < 3; m++)
            row_add(r[m], ul_pair_time(modes[m].label, &pp[m], cfg.min_s));
    }
    progress("\n");
    close(fd);
    for (int m = 0; m < 3; m++) {
        unilock_close(ul[m]);
        db_remove(path[m]);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 5: restart with N locks in the database: time to be ready in grace, resident memory       */

/* The locks: files of 1,000 locks each (POSIX on even files, Windows on odd ones), shared, 100
 * clients with 10 owners each per file. */
#define F5_PER_FILE 1000
#define F5_CLIENTS 100

static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = atol(line + n + 1);
    fclose(f);
    return v;
}

/* The child of one repetition: a fresh process opens the database, as a restarted server would. */
static int restart_child(const char *path) {
    (void)unilock_libversion();
    int fd = open("/proc/self/clear_refs", O_WRONLY); /* "5": reset the peak resident size */
    if (fd >= 0) {
        if (write(fd, "5", 1) != 1) {
        }
        close(fd);
    }
    unilock_config c;
    unilock_config_init(&c);
    c.db_path = path;
    long rss0 = status_kb("VmRSS");
    unilock *ul = NULL;
    uint64_t t0 = now_ns();
    unilock_status st = unilock_open(&c, &ul);
    uint64_t t1 = now_ns();
    long rss1 = status_kb("VmRSS"), hwm = status_kb("VmHWM");
    if (st != UNILOCK_OK) {
        printf("fail %s: %s\n", unilock_strerror(st), unilock_errdetail());
        return 1;
    }
    unilock_grace_info g;
    memset(&g, 0, sizeof g);
    check_ul(unilock_grace_status(ul, &g), UNILOCK_OK, "unilock_grace_status");
    printf("ok %.9f %ld %ld %ld %u %llu\n", (double)(t1 - t0) / 1e9, rss0, rss1, hwm, g.active,
           (unsigned long long)g.expected_clients);
    fflush(stdout);
    unilock_close(ul);
    return 0;
}

static void fig5(void) {
    long n = cfg.restart_locks;
    const char *dir = db_dir_get();
    if (!dir)
        return;
    char path[400], saved[400];
    snprintf(path, sizeof path, "%s/%s", dir, db_names[3]);
    snprintf(saved, sizeof saved, "%s/%s", dir, db_names[4]);
    db_remove(path);
    db_remove(saved);

    char label[96], name[64];
    snprintf(name, sizeof name, "restart_%ld_s", n);
    snprintf(label, sizeof label, "restart with %ld locks, ready in grace", n);
    int r_t = row_new(5, name, label, "s");
    row_anchor_value(r_t, 1.0, "goal: 1 s", GOAL_LE, 1.0);
    snprintf(name, sizeof name, "restart_%ld_resident_bytes_per_lock", n);
    int r_m = row_new(5, name, "resident memory after the open, per lock", "B/lock");
    row_anchor_value(r_m, 150.0, "goal: 150 B/lock", GOAL_LE, 1.0);
    snprintf(name, sizeof name, "restart_%ld_peak_bytes_per_lock", n);
    int r_p = row_new(5, name, "peak resident memory during the open, per lock", "B/lock");
    row_anchor_value(r_p, 150.0, "150 B/lock", GOAL_NONE, 0);

    /* Fill: BATCH mode (the fastest way in), then close, which writes everything. */
    unilock *ul = ul_open_db(path, UNILOCK_DURABILITY_BATCH);
    if (!ul)
        return;
    uint64_t t0 = now_ns();
    char client[32];
    uint64_t ob;
    unilock_owner o = {client, (const uint8_t *)&ob, sizeof ob, 0};
    unilock_lock_req rq;
    memset(&rq, 0, sizeof rq);
    fid_t f = fid_of(0);
    for (long i = 0; i < n; i++) {
        long file = i / F5_PER_FILE, k = i % F5_PER_FILE;
        if (k == 0)
            f = fid_of(500000 + (uint64_t)file);
        snprintf(client, sizeof client, "nlm:host%ld", k % F5_CLIENTS);
        ob = (uint64_t)(k / F5_CLIENTS);
        o.open_id = ob + 1;
        rq.flavour = file & 1 ? UNILOCK_WINDOWS : UNILOCK_POSIX;
        rq.type = UNILOCK_SHARED;
        rq.offset = (uint64_t)k * 16;
        rq.length = 8;
        unilock_status st = unilock_lock(ul, f.b, sizeof f.b, &o, &rq, NULL);
        if (st != UNILOCK_OK)
            die("figure 5: filling lock %ld: %s (%s)", i, unilock_strerror(st), unilock_errdetail());
    }
    uint64_t t1 = now_ns();
    unilock_close(ul);
    uint64_t t2 = now_ns();
    struct stat sb;
    long long db_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    progress("figure 5: %ld locks written to %s (%s) in %.1f s + %.1f s at close; database %.1f MB\n", n, path, db_fs,
             (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)db_bytes / 1e6);
    /* A restart turns the live locks into the pre-restart state: every repetition restarts from a copy
     * of the database as the server left it, so each one does the same work. */
    db_copy(path, saved);

    char exe[512];
    ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (el <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    exe[el] = 0;
    unsigned long long expect_clients = (unsigned long long)(n < F5_CLIENTS ? n : F5_CLIENTS);
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 5: repetition %d", rep + 1);
        if (rep)
            db_copy(saved, path);
        int pfd[2];
        if (pipe(pfd) != 0)
            die("pipe: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            dup2(pfd[1], 1);
            close(pfd[0]);
            close(pfd[1]);
            execl(exe, exe, "--restart-child", path, (char *)NULL);
            _exit(127);
        }
        close(pfd[1]);
        char buf[512];
        size_t got = 0;
        ssize_t k;
        while (got < sizeof buf - 1 && (k = read(pfd[0], buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)k;
        buf[got] = 0;
        close(pfd[0]);
        int wst;
        waitpid(pid, &wst, 0);
        double secs;
        long rss0, rss1, hwm;
        unsigned active;
        unsigned long long expected;
        if (sscanf(buf, "ok %lf %ld %ld %ld %u %llu", &secs, &rss0, &rss1, &hwm, &active, &expected) != 6 ||
            !WIFEXITED(wst) || WEXITSTATUS(wst) != 0)
            die("figure 5: restart child failed: %s", buf[0] ? buf : "(no output)");
        if (!active)
            die("figure 5: the restarted handle is not in grace");
        if (expected != expect_clients)
            die("figure 5: the restarted handle expects %llu clients, the database holds %llu", expected,
                expect_clients);
        row_add(r_t, secs);
        row_add(r_m, (double)(rss1 - rss0) * 1024.0 / (double)n);
        row_add(r_p, (double)(hwm - rss0) * 1024.0 / (double)n);
    }
    progress("\n");
    db_remove(path);
    db_remove(saved);
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 7: shared mode (issue 9): several processes, one database, one lock table                 */

/* Every process of a forking server opens its own handle after fork() on the same database (the
 * handle of a parent is refused in its child). Here the children are forked from the benchmark and
 * open theirs; the parent holds no unilock thread when it forks (its anchors use loop-mode handles),
 * and talks to them through pipes of fixed-size messages. Each repetition uses a fresh directory
 * under --db-dir, with one database per case, removed afterwards. */

enum { F7_READY = 1, F7_DONE, F7_BREAK };

typedef struct {
    int32_t kind;
    int32_t pad;
    uint64_t u[3]; /* DONE: pairs, ns, CPU ns of the process; BREAK: CLOCK_MONOTONIC ns of the callback */
} f7_msg_t;

typedef struct {
    pid_t pid;
    int to, from; /* the parent's ends: commands to the child, messages from it */
} f7_kid_t;

static char f7_dir[400]; /* the current repetition's directory, "" when none */
static int f7_cleanup_armed;

/* Removes the repetition's directory: its databases (-wal, -shm) and each database's .sockets/. */
static void f7_dir_remove(void) {
    if (!f7_dir[0] || getpid() != main_pid)
        return;
    DIR *d = opendir(f7_dir);
    if (d) {
        struct dirent *e;
        char p[1400], q[2800];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", f7_dir, e->d_name);
            if (unlink(p) == 0 || errno != EISDIR)
                continue;
            DIR *s = opendir(p);
            if (s) {
                struct dirent *f;
                while ((f = readdir(s)))
                    if (strcmp(f->d_name, ".") && strcmp(f->d_name, "..")) {
                        snprintf(q, sizeof q, "%s/%s", p, f->d_name);
                        unlink(q);
                    }
                closedir(s);
            }
            rmdir(p);
        }
        closedir(d);
    }
    if (rmdir(f7_dir) != 0)
        progress("figure 7: cannot remove %s: %s\n", f7_dir, strerror(errno));
    f7_dir[0] = 0;
}

static int f7_dir_new(void) {
    if (!f7_cleanup_armed) {
        atexit(f7_dir_remove);
        f7_cleanup_armed = 1;
    }
    snprintf(f7_dir, sizeof f7_dir, "%s/unilock-bench7.XXXXXX", cfg.db_parent);
    if (!mkdtemp(f7_dir)) {
        int e = errno;
        f7_dir[0] = 0;
        fig_skip("cannot create a directory in %s: %s", cfg.db_parent, strerror(e));
        return -1;
    }
    return 0;
}

static void f7_db(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s.db", f7_dir, name); }

static unilock_status f7_open(const char *path, uint32_t durability, unilock_event_fn fn, void *ud, unilock **out) {
    unilock_config c;
    unilock_config_init(&c);
    c.flags = UNILOCK_CONFIG_SHARED;
    c.db_path = path;
    c.durability = durability;
    c.event_mode = UNILOCK_EVENTS_LOOP;
    c.event_fn = fn;
    c.event_user_data = ud;
    return unilock_open(&c, out);
}

static unilock *f7_open_or_die(const char *path, uint32_t durability, unilock_event_fn fn, void *ud) {
    unilock *ul = NULL;
    unilock_status st = f7_open(path, durability, fn, ud, &ul);
    if (st != UNILOCK_OK)
        die("figure 7: shared open of %s: %s (%s)", path, unilock_strerror(st), unilock_errdetail());
    return ul;
}

static void f7_send(int fd, const void *m, size_t n) {
    if (write(fd, m, n) != (ssize_t)n)
        die("figure 7: pipe write: %s", strerror(errno));
}

/* Reads one message (or command byte); dies after 60 s of silence or at EOF (the other side died). */
static void f7_recv(int fd, void *m, size_t n, const char *what) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, 60000);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        die("figure 7: %s: nothing after 60 s", what);
    ssize_t k = read(fd, m, n);
    if (k != (ssize_t)n)
        die("figure 7: %s: %s", what, k == 0 ? "the other process exited" : strerror(errno));
}

static void f7_msg(int fd, int32_t kind, uint64_t a, uint64_t b, uint64_t c) {
    f7_msg_t m = {kind, 0, {a, b, c}};
    f7_send(fd, &m, sizeof m);
}

/* Forks a child that runs `body(in, out, arg)` and exits; the parent gets the other ends. */
static f7_kid_t f7_fork(void (*body)(int in, int out, void *arg), void *arg) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0)
        die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        body(down[0], up[1], arg);
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    return (f7_kid_t){pid, down[1], up[0]};
}

static void f7_reap(f7_kid_t *k, const char *what) {
    close(k->to);
    close(k->from);
    int st;
    if (waitpid(k->pid, &st, 0) != k->pid)
        die("figure 7: waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("figure 7: %s: child %d ended with status %d", what, (int)k->pid, st);
}

static uint64_t proc_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One process of a pair case: its own client, its own file (distinct) or range (shared file). */
typedef struct {
    const char *db;
    uint32_t durability;
    int idx;       /* 0 or 1 */
    int shared;    /* 1: one file for all processes, distinct ranges */
    double secs;   /* how long to run after the start signal */
} f7_pair_arg_t;

static void f7_pair_child(int in, int out, void *a) {
    f7_pair_arg_t *pa = a;
    unilock *ul = f7_open_or_die(pa->db, pa->durability, NULL, NULL);
    fid_t f = fid_of(pa->shared ? 70 : 71 + (uint64_t)pa->idx);
    char client[16];
    snprintf(client, sizeof client, "nlm:p%d", pa->idx);
    static const uint8_t owner[8] = "bench-07";
    ul_pair_t p;
    ul_pair_init(&p, ul, &f, client, owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE,
                 pa->shared ? (uint64_t)pa->idx * 4096 : 0, 100);
    if (ul_pair_batch(&p, 32)) /* warm-up: the client's record, SQLite's statement cache */
        die("figure 7 warm-up: %s", first_err);
    f7_msg(out, F7_READY, 0, 0, 0);
    char go;
    f7_recv(in, &go, 1, "start signal");
    uint64_t end = now_ns() + (uint64_t)(pa->secs * 1e9);
    uint64_t t0 = now_ns(), c0 = proc_cpu_ns(), ops = 0, t1;
    long bad = 0;
    do {
        bad += ul_pair_batch(&p, 8);
        ops += 8;
    } while ((t1 = now_ns()) < end);
    uint64_t c1 = proc_cpu_ns();
    if (bad)
        die("figure 7 pairs in process %d: %ld unexpected results; first: %s", pa->idx, bad, first_err);
    f7_msg(out, F7_DONE, ops, t1 - t0, c1 - c0);
    unilock_close(ul);
}

/* Runs `nproc` processes at once for `secs`. us per pair: the processes' time over their pairs (the
 * mean latency of a pair, whichever process made it: a process starved by the other counts for the
 * few pairs it made, not as a whole half); pairs/s: the sum of the processes' rates; CPU us per pair
 * of all processes together. */
static void f7_pairs(const char *db, uint32_t durability, int nproc, int shared, double secs, double *us_pair,
                     double *pairs_s, double *cpu_us) {
    f7_pair_arg_t args[2];
    f7_kid_t kids[2];
    for (int i = 0; i < nproc; i++) {
        args[i] = (f7_pair_arg_t){db, durability, i, shared, secs};
        kids[i] = f7_fork(f7_pair_child, &args[i]);
    }
    f7_msg_t m;
    for (int i = 0; i < nproc; i++) {
        f7_recv(kids[i].from, &m, sizeof m, "pair process ready");
        if (m.kind != F7_READY)
            die("figure 7: unexpected message %d", m.kind);
    }
    for (int i = 0; i < nproc; i++)
        f7_send(kids[i].to, "g", 1);
    double ns = 0, rate = 0, cpu = 0, ops = 0;
    for (int i = 0; i < nproc; i++) {
        f7_recv(kids[i].from, &m, sizeof m, "pair process result");
        if (m.kind != F7_DONE || m.u[0] == 0)
            die("figure 7: unexpected message %d", m.kind);
        ns += (double)m.u[1];
        rate += (double)m.u[0] / ((double)m.u[1] / 1e9);
        cpu += (double)m.u[2];
        ops += (double)m.u[0];
        f7_reap(&kids[i], "pair process");
    }
    *us_pair = ns / ops / 1e3;
    *pairs_s = rate;
    *cpu_us = cpu / ops / 1e3;
}

/* Events seen by one side of a break (each process has its own copy). */
typedef struct {
    unsigned n;
    struct {
        uint32_t type, break_to, ack_required;
        uint64_t request_id, t_ns;
    } ev[16];
} f7_evs_t;

static void f7_on_event(void *ud, const unilock_event *e) {
    uint64_t t = now_ns();
    f7_evs_t *l = ud;
    if (l->n < 16) {
        l->ev[l->n].type = e->type;
        l->ev[l->n].break_to = e->break_to;
        l->ev[l->n].ack_required = e->ack_required;
        l->ev[l->n].request_id = e->request_id;
        l->ev[l->n].t_ns = t;
    }
    l->n++;
}

static const uint8_t key_b7[16] = "lease-key-of-B..";

/* Process B: holds an RWH lease on the file when told ('L'), polls its event fd like an smbd in its
 * tevent loop, acknowledges every break that asks for it and reports when its callback ran. */
static void f7_break_child(int in, int out, void *a) {
    const char *db = a;
    static f7_evs_t evs;
    unilock *ul = f7_open_or_die(db, UNILOCK_DURABILITY_PROCESS, f7_on_event, &evs);
    int efd = unilock_event_fd(ul);
    if (efd < 0)
        die("figure 7: no event fd in loop mode");
    fid_t f = fid_of(75);
    int open = 0, reported = 1;
    uint64_t open_id = 0;
    f7_msg(out, F7_READY, 0, 0, 0);
    for (;;) {
        struct pollfd p[2] = {{.fd = in, .events = POLLIN}, {.fd = efd, .events = POLLIN}};
        int r = poll(p, 2, 60000);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            die("figure 7 lease holder: poll: %s", r ? strerror(errno) : "nothing after 60 s");
        if (p[1].revents & POLLIN) {
            evs.n = 0;
            check_ul(unilock_process_events(ul, NULL), UNILOCK_OK, "figure 7 holder process_events");
            uint64_t t_cb = 0;
            for (unsigned i = 0; i < evs.n && i < 16; i++) {
                if (evs.ev[i].type != UNILOCK_EVENT_LEASE_BREAK)
                    continue;
                if (!t_cb)
                    t_cb = evs.ev[i].t_ns;
                if (evs.ev[i].ack_required)
                    check_ul(unilock_lease_ack(ul, f.b, sizeof f.b, "smb:B", key_b7, evs.ev[i].break_to), UNILOCK_OK,
                             "figure 7 lease ack");
            }
            if (t_cb && !reported) {
                f7_msg(out, F7_BREAK, t_cb, 0, 0);
                reported = 1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            char cmd;
            f7_recv(in, &cmd, 1, "lease holder command");
            if (open)
                check_ul(unilock_file_close(ul, f.b, sizeof f.b, "smb:B", open_id), UNILOCK_OK, "figure 7 close B");
            open = 0;
            if (cmd == 'q')
                break;
            unilock_open_req rq;
            unilock_open_req_init(&rq);
            rq.lease_kind = UNILOCK_LEASE_KIND_LEASE;
            rq.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H;
            rq.lease_version = 2;
            memcpy(rq.lease_key, key_b7, 16);
            unilock_open_result res;
            unilock_wait w = {0};
            w.token = ++open_id;
            check_ul(unilock_file_open(ul, f.b, sizeof f.b, "smb:B", open_id, &rq, &w, &res), UNILOCK_OK,
                     "figure 7 lease open");
            if (res.state != rq.requested)
                die("figure 7: lease granted state %u, asked %u", res.state, rq.requested);
            open = 1;
            reported = 0;
            f7_msg(out, F7_READY, 0, 0, 0);
        }
    }
    unilock_close(ul);
}

/* Process A (the benchmark): opens the file for writing with no lease; B's RWH lease must lose W,
 * so A's open waits (PENDING) until B acknowledges. Latency: A's call -> B's callback (B's own
 * CLOCK_MONOTONIC stamp, sent back through the pipe); round trip: A's call -> A's BREAKS_DONE. */
static void f7_breaks(const char *db, int n, double *lat_us, double *rt_us) {
    f7_kid_t b = f7_fork(f7_break_child, (void *)db);
    f7_msg_t m;
    f7_recv(b.from, &m, sizeof m, "lease holder ready");
    static f7_evs_t evs;
    unilock *ul = f7_open_or_die(db, UNILOCK_DURABILITY_PROCESS, f7_on_event, &evs);
    int efd = unilock_event_fd(ul);
    fid_t f = fid_of(75);
    unilock_open_req rq;
    unilock_open_req_init(&rq);
    rq.lease_kind = UNILOCK_LEASE_KIND_NONE;
    rq.flags = UNILOCK_OPEN_WRITE;
    unilock_wait w = {0};
    unilock_open_result res, res2;
    static double lat[4096], rt[4096];
    if (n > 4096)
        n = 4096;
    for (int s = 0; s < n; s++) {
        f7_send(b.to, "L", 1);
        f7_recv(b.from, &m, sizeof m, "lease holder ready");
        if (m.kind != F7_READY)
            die("figure 7: unexpected message %d", m.kind);
        evs.n = 0;
        w.token = (uint64_t)s + 1;
        uint64_t t0 = now_ns();
        check_ul(unilock_file_open(ul, f.b, sizeof f.b, "smb:A", (uint64_t)s + 1, &rq, &w, &res), UNILOCK_PENDING,
                 "figure 7 conflicting open");
        uint64_t t_cb = 0, t_done = 0;
        while (!t_cb || !t_done) {
            struct pollfd p[2] = {{.fd = efd, .events = POLLIN}, {.fd = b.from, .events = POLLIN}};
            int r = poll(p, 2, 5000);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                die("figure 7 break %d: %s (callback %s, breaks done %s)", s, r ? strerror(errno) : "nothing after 5 s",
                    t_cb ? "seen" : "not seen", t_done ? "seen" : "not seen");
            if (p[0].revents & POLLIN) {
                check_ul(unilock_process_events(ul, NULL), UNILOCK_OK, "figure 7 requester process_events");
                for (unsigned i = 0; i < evs.n && i < 16; i++)
                    if (evs.ev[i].type == UNILOCK_EVENT_BREAKS_DONE && evs.ev[i].request_id == res.request_id)
                        t_done = evs.ev[i].t_ns;
            }
            if (p[1].revents & (POLLIN | POLLHUP)) {
                f7_recv(b.from, &m, sizeof m, "lease holder's callback time");
                if (m.kind != F7_BREAK || m.u[0] < t0)
                    die("figure 7: unexpected message %d (time %llu, call at %llu)", m.kind,
                        (unsigned long long)m.u[0], (unsigned long long)t0);
                t_cb = m.u[0];
            }
        }
        lat[s] = (double)(t_cb - t0) / 1e3;
        rt[s] = (double)(t_done - t0) / 1e3;
        check_ul(unilock_file_open(ul, f.b, sizeof f.b, "smb:A", (uint64_t)s + 1, &rq, &w, &res2), UNILOCK_OK,
                 "figure 7 retried open");
        check_ul(unilock_file_close(ul, f.b, sizeof f.b, "smb:A", (uint64_t)s + 1), UNILOCK_OK, "figure 7 close A");
    }
    f7_send(b.to, "q", 1);
    f7_reap(&b, "lease holder");
    unilock_close(ul);
    *lat_us = median_of(lat, n);
    *rt_us = median_of(rt, n);
}

/* A blocking lock (granted at once) + unlock pair in shared mode on a database that tracks `nfiles`
 * other files, each holding one lock: the blocking path's deadlock check must not grow with them. */
static double f7_blocking(const char *db, long nfiles, double secs) {
    unilock *ul = f7_open_or_die(db, UNILOCK_DURABILITY_PROCESS, NULL, NULL);
    static const uint8_t owner[8] = "bench-7b";
    unilock_owner o = {"nlm:bench", owner, sizeof owner, 1};
    unilock_lock_req rq = {UNILOCK_POSIX, UNILOCK_SHARED, 0, 10, 0};
    for (long i = 0; i < nfiles; i++) {
        fid_t f = fid_of(100000 + (uint64_t)i);
        check_ul(unilock_lock(ul, f.b, sizeof f.b, &o, &rq, NULL), UNILOCK_OK, "figure 7 blocking fill");
    }
    fid_t f = fid_of(99);
    unilock_lock_req x = {UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100, 0};
    unilock_wait w = {1, NULL, 0};
    long n = 0;
    uint64_t t0 = now_ns(), t1;
    do {
        for (int i = 0; i < 16; i++, n++) {
            uint64_t id = 0;
            check_ul(unilock_lock_blocking(ul, f.b, sizeof f.b, &o, &x, &w, &id, NULL), UNILOCK_OK,
                     "figure 7 blocking lock");
            check_ul(unilock_unlock(ul, f.b, sizeof f.b, &o, UNILOCK_POSIX, 0, 100), UNILOCK_OK,
                     "figure 7 blocking unlock");
        }
        t1 = now_ns();
    } while ((double)(t1 - t0) < secs * 1e9);
    unilock_close(ul);
    return (double)(t1 - t0) / (double)n / 1e3;
}

static void fig7(void) {
    /* The header promises BATCH's coalescing without a word on shared mode, where every call is its
     * own immediate transaction (issue 9): the BATCH rows show whether it applies there. */
    static const struct {
        uint32_t mode;
        const char *key, *name;
    } dur[2] = {
        {UNILOCK_DURABILITY_PROCESS, "process", "PROCESS"},
        {UNILOCK_DURABILITY_BATCH, "batch", "BATCH"},
    };
    static const struct {
        int nproc, shared;
        const char *key, *label;
    } cases[3] = {
        {1, 0, "1proc", "1 process"},
        {2, 0, "2proc_distinct", "2 procs, distinct files"},
        {2, 1, "2proc_shared", "2 procs, one file"},
    };
    /* Shared mode's two tables (issue 17), chosen per process by UNILOCK_SHARED_BACKEND, which the
     * children inherit: SQLite's (the rows' historical names) and the shared-memory one ("shm_"). */
    static const struct {
        const char *env, *key, *name;
    } be[2] = {{"sqlite", "", "SQLite"}, {"shm", "shm_", "shm"}};
    /* Can this library run shared mode here at all? */
    if (f7_dir_new() != 0)
        return;
    char db[1200];
    f7_db(db, sizeof db, "probe");
    unilock *probe = NULL;
    unilock_status st = f7_open(db, UNILOCK_DURABILITY_PROCESS, NULL, NULL, &probe);
    if (st != UNILOCK_OK) {
        fig_skip("shared mode: unilock_open(UNILOCK_CONFIG_SHARED, %s) failed: %s (%s)", db, unilock_strerror(st),
                 unilock_errdetail());
        f7_dir_remove();
        return;
    }
    unilock_close(probe);
    progress("figure 7: databases in %s (%s)\n", cfg.db_parent, fs_name(cfg.db_parent));
    f7_dir_remove();

    char name[64], label[96];
    int r_k = row_new(7, "fig7_kernel_ofd_pair_us", "kernel F_OFD_SETLK lock+unlock, tmpfs", "us/pair");
    row_tag(r_k, "kernel");
    int r_m = row_new(7, "fig7_unilock_memory_pair_us", "unilock POSIX pair, in-memory (one process)", "us/pair");
    row_tag(r_m, "in-memory pair");
    row_anchor(r_m, r_k, GOAL_NONE, 0, "kernel");
    int r_p[2][2][3], r_t[2][2][3];
    double cpu[2][2][3][MAX_REPS];
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 2; d++) {
            for (int c = 0; c < 3; c++) {
                snprintf(name, sizeof name, "%sshared_%s_pair_%s_us", be[b].key, dur[d].key, cases[c].key);
                snprintf(label, sizeof label, "%s shared %s pair, %s", be[b].name, dur[d].name, cases[c].label);
                r_p[b][d][c] = row_new(7, name, label, "us/pair");
                /* Issue 17's goal for the shared-memory table: a 1-process pair <= 5x the in-process one. */
                row_anchor(r_p[b][d][c], r_m, b && c == 0 ? GOAL_LE : GOAL_NONE, 5, "in-memory");
                row_goal_abs(r_p[b][d][c], b && c == 0 ? 1 : 20, "us");
            }
            for (int c = 0; c < 3; c++) {
                snprintf(name, sizeof name, "%sshared_%s_pairs_per_s_%s", be[b].key, dur[d].key, cases[c].key);
                snprintf(label, sizeof label, "%s shared %s pairs/s, %s", be[b].name, dur[d].name, cases[c].label);
                r_t[b][d][c] = row_new(7, name, label, "pairs/s");
                snprintf(label, sizeof label, "%s %s, 1 process", be[b].name, dur[d].name);
                row_tag(r_t[b][d][c], label);
                if (c)
                    row_anchor(r_t[b][d][c], r_t[b][d][0], b && c == 1 ? GOAL_GE : GOAL_NONE, 1.8, "1 process");
            }
        }
    int r_bl = row_new(7, "fig7_inprocess_r_break_loop_us", "in-process R break, event loop (as figure 6)", "us");
    row_tag(r_bl, "in-process break");
    int r_bx[2], r_br[2];
    for (int b = 0; b < 2; b++) {
        snprintf(name, sizeof name, "%sshared_rwh_break_cross_process_us", be[b].key);
        snprintf(label, sizeof label, "%s RWH break across processes: A open -> B callback", be[b].name);
        r_bx[b] = row_new(7, name, label, "us");
        row_anchor(r_bx[b], r_bl, GOAL_NONE, 0, "in-process");
        row_goal_abs(r_bx[b], b ? 20 : 100, "us");
        snprintf(name, sizeof name, "%sshared_rwh_break_round_trip_us", be[b].key);
        snprintf(label, sizeof label, "%s round trip: A open -> B ack -> A BREAKS_DONE", be[b].name);
        r_br[b] = row_new(7, name, label, "us");
        row_anchor(r_br[b], r_bl, GOAL_NONE, 0, "in-process");
        if (b)
            row_goal_abs(r_br[b], 50, "us");
    }
    int r_b10 = row_new(7, "shared_blocking_pair_10_files_us", "shared blocking pair, 10 files tracked", "us/pair");
    row_tag(r_b10, "10 files");
    int r_b10k = row_new(7, "shared_blocking_pair_10000_files_us", "shared blocking pair, 10,000 files tracked",
                         "us/pair");
    row_anchor(r_b10k, r_b10, GOAL_LE, 1.5, "10 files");

    /* Issue 17: 2 processes on one file should scale no worse than 2 threads on one file in process.
     * The in-process ratio is measured here, in the same run (loop-mode handle; the threads are joined
     * before any fork), and each repetition's shm ratio is divided by it. */
    int r_i1 = row_new(7, "fig7_inprocess_one_file_1thread_pairs_s", "in-process pairs/s, 1 thread, one file",
                       "pairs/s");
    row_tag(r_i1, "in-process, 1 thread");
    int r_i2 = row_new(7, "fig7_inprocess_one_file_2thread_pairs_s", "in-process pairs/s, 2 threads, one file",
                       "pairs/s");
    row_anchor(r_i2, r_i1, GOAL_NONE, 0, "1 thread");
    int r_rr[2];
    for (int d = 0; d < 2; d++) {
        snprintf(name, sizeof name, "shm_shared_%s_one_file_scaling_over_inprocess", dur[d].key);
        snprintf(label, sizeof label, "shm %s one-file 2/1 scaling over in-process's", dur[d].name);
        r_rr[d] = row_new(7, name, label, "x");
        row_anchor_value(r_rr[d], 1.0, "in-process 2-thread ratio", GOAL_GE, 1.0);
    }

    /* Anchors, in this process: loop-mode handles (no library thread in the parent when it forks). */
    unilock *ulm = ul_open(UNILOCK_EVENTS_LOOP, NULL, NULL);
    static f4_thread_t ti[2];
    memset(ti, 0, sizeof ti);
    fid_t fi = fid_of(8);
    static const char *ti_clients[2] = {"nlm:t0", "nlm:t1"};
    for (int t = 0; t < 2; t++)
        ul_pair_init(&ti[t].up, ulm, &fi, ti_clients[t], (const uint8_t *)"thrd", 4, 1, UNILOCK_POSIX,
                     UNILOCK_EXCLUSIVE, (uint64_t)t * 4096, 100);
    fid_t fm = fid_of(7);
    static const uint8_t owner[8] = "bench-07";
    ul_pair_t pm;
    ul_pair_init(&pm, ulm, &fm, "nlm:bench", owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100);
    int kfd = kfile_open("-f7", O_RDWR);
    k_pair_t kp;
    k_pair_init(&kp, kfd, F_WRLCK, 0, 100);
    static ev_log_t log_l;
    log_l.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (log_l.efd < 0)
        die("eventfd: %s", strerror(errno));
    unilock *ull = ul_open(UNILOCK_EVENTS_LOOP, on_event, &log_l);

    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 7: repetition %d", rep + 1);
        if (f7_dir_new() != 0)
            die("figure 7: %s", fig_unmeasured);
        row_add(r_k, k_pair_time("figure 7 kernel pair", &kp, cfg.min_s) / 1e3);
        row_add(r_m, ul_pair_time("figure 7 in-memory pair", &pm, cfg.min_s) / 1e3);
        double i1 = f4_run(ti, 1, "figure 7 in-process one file, 1 thread", NULL) * 1e6;
        double i2 = f4_run(ti, 2, "figure 7 in-process one file, 2 threads", NULL) * 1e6;
        row_add(r_i1, i1);
        row_add(r_i2, i2);
        for (int b = 0; b < 2; b++) {
            setenv("UNILOCK_SHARED_BACKEND", be[b].env, 1);
            for (int d = 0; d < 2; d++)
                for (int c = 0; c < 3; c++) {
                    snprintf(name, sizeof name, "pairs-%s-%s-%s", be[b].env, dur[d].key, cases[c].key);
                    f7_db(db, sizeof db, name);
                    double us, rate;
                    f7_pairs(db, dur[d].mode, cases[c].nproc, cases[c].shared, cfg.min_s, &us, &rate,
                             &cpu[b][d][c][rep]);
                    row_add(r_p[b][d][c], us);
                    row_add(r_t[b][d][c], rate);
                }
        }
        unsetenv("UNILOCK_SHARED_BACKEND");
        for (int d = 0; d < 2; d++) {
            int n = rows[r_t[1][d][2]].n, m = rows[r_t[1][d][0]].n;
            if (n > 0 && m > 0 && i1 > 0 && i2 > 0)
                row_add(r_rr[d], (rows[r_t[1][d][2]].samples[n - 1] / rows[r_t[1][d][0]].samples[m - 1]) / (i2 / i1));
        }
        row_add(r_bl, f6_unilock_r(ull, &log_l, 1, cfg.lease_samples));
        for (int b = 0; b < 2; b++) {
            setenv("UNILOCK_SHARED_BACKEND", be[b].env, 1);
            snprintf(name, sizeof name, "break-%s", be[b].env);
            f7_db(db, sizeof db, name);
            double lat, rt;
            f7_breaks(db, cfg.lease_samples, &lat, &rt);
            row_add(r_bx[b], lat);
            row_add(r_br[b], rt);
        }
        /* The blocking rows stay on SQLite's table (their historical meaning). */
        setenv("UNILOCK_SHARED_BACKEND", "sqlite", 1);
        f7_db(db, sizeof db, "blocking10");
        row_add(r_b10, f7_blocking(db, 10, cfg.min_s));
        f7_db(db, sizeof db, "blocking10000");
        row_add(r_b10k, f7_blocking(db, 10000, cfg.min_s));
        unsetenv("UNILOCK_SHARED_BACKEND");
        f7_dir_remove();
    }
    progress("\n");
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 2; d++)
            for (int c = 0; c < 3; c++)
                progress("figure 7: CPU per pair, %s shared %s, %s (all processes): %.2f us\n", be[b].name,
                         dur[d].name, cases[c].label, median_of(cpu[b][d][c], cfg.reps));
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 2; d++) {
            snprintf(name, sizeof name, "%sshared_%s_1proc_over_kernel", be[b].key, dur[d].key);
            snprintf(label, sizeof label, "%s shared %s pair, 1 process, vs kernel pair", be[b].name, dur[d].name);
            row_derived(7, name, label, r_p[b][d][0], r_k, GOAL_NONE, 0, "kernel");
        }
    close(kfd);
    unilock_close(ulm);
    unilock_close(ull);
    close(log_l.efd);
}

/* ------------------------------------------------------------------------------------------------ */
/* Figure 8: cluster mode (issue 19): hosts sharing one table in etcd                                */

/* The etcd clusters come from the environment (bench/cluster.sh starts a private single-member and
 * a three-member one on loopback ports and sets these): UNILOCK_BENCH_ETCD1, UNILOCK_BENCH_ETCD3.
 * A "host" is a process with its own cluster handle; the throughput rows fork them (the parent holds
 * no cluster handle, so no library thread, when it forks). */

static unilock_status f8_open(const char *eps, const char *cluster, unilock **out) {
    unilock_config c;
    unilock_config_init(&c);
    c.flags = UNILOCK_CONFIG_CLUSTER;
    c.cluster_endpoints = eps;
    c.cluster_name = cluster;
    c.cluster_host = "bench";
    c.event_mode = UNILOCK_EVENTS_LOOP;
    return unilock_open(&c, out);
}

static int f8_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Pair latencies of one host for `secs` (at least 200 pairs): p50 and p99 in us. */
static void f8_latency(const char *eps, const char *cluster, double secs, double *p50, double *p99) {
    unilock *ul = NULL;
    unilock_status st = f8_open(eps, cluster, &ul);
    if (st != UNILOCK_OK)
        die("figure 8: cluster open on %s: %s (%s)", eps, unilock_strerror(st), unilock_errdetail());
    fid_t f = fid_of(8);
    static const uint8_t owner[8] = "bench-08";
    ul_pair_t p;
    ul_pair_init(&p, ul, &f, "nlm:bench", owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100);
    size_t cap = 1 << 16, n = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    if (!v)
        die("out of memory");
    uint64_t start = now_ns();
    while (n < cap && (n < 200 || (double)(now_ns() - start) < secs * 1e9)) {
        uint64_t t0 = now_ns();
        if (ul_pair_batch(&p, 1) != 0)
            die("figure 8: a cluster pair failed");
        v[n++] = now_ns() - t0;
    }
    qsort(v, n, sizeof *v, f8_cmp_u64);
    *p50 = (double)v[n / 2] / 1e3;
    *p99 = (double)v[(n * 99) / 100] / 1e3;
    free(v);
    unilock_close(ul);
}

/* `hosts` processes, each with its own handle, doing pairs on its own file for `secs`: pairs/s. */
static double f8_throughput(const char *eps, const char *cluster, int hosts, double secs) {
    int fds[8][2];
    pid_t pids[8];
    for (int h = 0; h < hosts; h++) {
        if (pipe(fds[h]) != 0)
            die("pipe: %s", strerror(errno));
        pids[h] = fork();
        if (pids[h] < 0)
            die("fork: %s", strerror(errno));
        if (pids[h] == 0) {
            close(fds[h][0]);
            unilock *ul = NULL;
            uint64_t count = 0;
            if (f8_open(eps, cluster, &ul) == UNILOCK_OK) {
                fid_t f = fid_of(80 + (uint64_t)h);
                static const uint8_t owner[8] = "bench-08";
                ul_pair_t p;
                ul_pair_init(&p, ul, &f, "nlm:bench", owner, sizeof owner, 1, UNILOCK_POSIX, UNILOCK_EXCLUSIVE, 0, 100);
                uint64_t start = now_ns();
                while ((double)(now_ns() - start) < secs * 1e9)
                    if (ul_pair_batch(&p, 1) == 0)
                        count++;
                unilock_close(ul);
            }
            if (write(fds[h][1], &count, sizeof count) != (ssize_t)sizeof count)
                _exit(1);
            _exit(0);
        }
        close(fds[h][1]);
    }
    uint64_t total = 0;
    for (int h = 0; h < hosts; h++) {
        uint64_t c = 0;
        if (read(fds[h][0], &c, sizeof c) != (ssize_t)sizeof c)
            die("figure 8: a host process died");
        total += c;
        close(fds[h][0]);
        waitpid(pids[h], NULL, 0);
    }
    return (double)total / secs;
}

static void fig8(void) {
    const char *eps[2] = {getenv("UNILOCK_BENCH_ETCD1"), getenv("UNILOCK_BENCH_ETCD3")};
    static const char *key[2] = {"1m", "3m"}, *name_of[2] = {"1-member etcd", "3-member etcd"};
    if (!eps[0] || !*eps[0] || !eps[1] || !*eps[1]) {
        fig_skip("needs etcd clusters: run through bench/cluster.sh (make bench does when etcd is installed)");
        return;
    }
    if (f7_dir_new() != 0)
        return;
    char db[1200], name[64], label[96];
    int r_sh = row_new(8, "fig8_shared_process_pair_us", "shared mode PROCESS pair, one host (as figure 7)", "us/pair");
    row_tag(r_sh, "shared, one host");
    int r_p50[2], r_p99[2], r_t[2][2];
    for (int e = 0; e < 2; e++) {
        snprintf(name, sizeof name, "cluster_%s_pair_p50_us", key[e]);
        snprintf(label, sizeof label, "cluster pair p50, 1 host, %s", name_of[e]);
        r_p50[e] = row_new(8, name, label, "us/pair");
        row_anchor(r_p50[e], r_sh, GOAL_NONE, 0, "shared");
        snprintf(name, sizeof name, "cluster_%s_pair_p99_us", key[e]);
        snprintf(label, sizeof label, "cluster pair p99, 1 host, %s", name_of[e]);
        r_p99[e] = row_new(8, name, label, "us/pair");
        if (e == 1)
            row_goal_abs(r_p99[e], 5000, "us");
        for (int h = 0; h < 2; h++) {
            snprintf(name, sizeof name, "cluster_%s_pairs_per_s_%dhost", key[e], h ? 3 : 1);
            snprintf(label, sizeof label, "cluster pairs/s, %d host%s, %s", h ? 3 : 1, h ? "s" : "", name_of[e]);
            r_t[e][h] = row_new(8, name, label, "pairs/s");
            if (h)
                row_anchor(r_t[e][h], r_t[e][0], GOAL_NONE, 0, "1 host");
        }
    }
    f7_dir_remove();
    for (int rep = 0; rep < cfg.reps; rep++) {
        progress(rep ? " %d" : "figure 8: repetition %d", rep + 1);
        if (f7_dir_new() != 0)
            die("figure 8: %s", fig_unmeasured);
        f7_db(db, sizeof db, "pairs");
        double us, rate, cpu;
        f7_pairs(db, UNILOCK_DURABILITY_PROCESS, 1, 0, cfg.min_s, &us, &rate, &cpu);
        row_add(r_sh, us);
        f7_dir_remove();
        for (int e = 0; e < 2; e++) {
            char cl[64];
            snprintf(cl, sizeof cl, "bench8-%d-%d-%d", (int)getpid(), rep, e);
            double p50, p99;
            f8_latency(eps[e], cl, cfg.min_s, &p50, &p99);
            row_add(r_p50[e], p50);
            row_add(r_p99[e], p99);
            row_add(r_t[e][0], f8_throughput(eps[e], cl, 1, cfg.thr_s));
            row_add(r_t[e][1], f8_throughput(eps[e], cl, 3, cfg.thr_s));
        }
    }
    progress("\n");
}

/* ------------------------------------------------------------------------------------------------ */
/* The figures                                                                                      */

typedef struct {
    int id;
    const char *title;
    void (*run)(void);  /* NULL: not measurable yet */
    const char *needs;  /* the capability it waits for */
    int first_row, end_row;
    const char *why;    /* set when it was not measured: "needs ..." or what failed */
} figure_t;

static figure_t figures[] = {
    {1, "uncontended lock+unlock pair, in-memory, vs Linux F_OFD_SETLK on tmpfs", fig1, NULL, 0, 0, NULL},
    {2, "the same pair with the SQLite store on, per durability mode", fig2, "the SQLite store", 0, 0, NULL},
    {3, "one pair on a file holding 10 / 1,000 / 100,000 locks of other owners", fig3, NULL, 0, 0, NULL},
    {4, "throughput, 1 and 2 threads, distinct files and one shared file", fig4, NULL, 0, 0, NULL},
    {5, "restart: open a database of N locks, ready in grace (time, memory)", fig5,
     "the SQLite store and restart with grace", 0, 0, NULL},
    {6, "lease break latency, conflicting request -> break callback", fig6, NULL, 0, 0, NULL},
    {7, "shared mode (several processes, one database): pair and cross-process break", fig7,
     "shared mode", 0, 0, NULL},
    {8, "cluster mode (hosts on etcd): pair p50/p99 and throughput, 1 and 3 hosts, 1- and 3-member etcd", fig8,
     "cluster mode", 0, 0, NULL},
};
enum { NFIG = sizeof figures / sizeof *figures };

/* ------------------------------------------------------------------------------------------------ */
/* Machine, table, JSON                                                                             */

static char m_uname[512], m_cpu[256];
static long m_nproc, m_affinity;

static void machine(void) {
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m_uname, sizeof m_uname, "%s %s %s %s", u.sysname, u.nodename, u.release, u.machine);
    snprintf(m_cpu, sizeof m_cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) && strncmp(line, "Hardware", 8) && strncmp(line, "cpu model", 9))
                continue;
            char *c = strchr(line, ':');
            if (!c)
                continue;
            c++;
            while (*c == ' ' || *c == '\t')
                c++;
            c[strcspn(c, "\n")] = 0;
            snprintf(m_cpu, sizeof m_cpu, "%s", c);
            break;
        }
        fclose(f);
    }
    m_nproc = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t cs;
    m_affinity = sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : m_nproc;
}

static void fmt_value(char *buf, size_t n, double v) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else if (v >= 1e5)
        snprintf(buf, n, "%.0f", v);
    else if (v >= 100)
        snprintf(buf, n, "%.1f", v);
    else
        snprintf(buf, n, "%.2f", v);
}

static void fmt_ratio(char *buf, size_t n, double v) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else if (v >= 100)
        snprintf(buf, n, "%.0fx", v);
    else if (v >= 0.01)
        snprintf(buf, n, "%.3gx", v);
    else
        snprintf(buf, n, "%.2gx", v);
}

static double spread_of(const row_t *r) {
    if (r->n < 2 || !(r->median > 0))
        return NAN;
    double lo = r->samples[0], hi = r->samples[0];
    for (int i = 1; i < r->n; i++) {
        lo = r->samples[i] < lo ? r->samples[i] : lo;
        hi = r->samples[i] > hi ? r->samples[i] : hi;
    }
    return (hi - lo) / r->median * 100;
}

static int row_is_anchor(int i) {
    for (int j = 0; j < nrows; j++)
        if (rows[j].anchor == i)
            return 1;
    return 0;
}

static void print_table(void) {
    printf("\n%-3s %-48s %10s %-8s %6s %7s  %-26s %s\n", "fig", "measurement", "median", "unit", "spread", "ratio",
           "vs anchor", "goal");
    for (int fi = 0; fi < NFIG; fi++) {
        figure_t *f = &figures[fi];
        if (cfg.only && !(cfg.only & (1u << f->id)))
            continue;
        printf("%-3d %s\n", f->id, f->title);
        if (f->why) {
            printf("%-3s   not measured: %s\n", "", f->why);
            continue;
        }
        for (int i = f->first_row; i < f->end_row; i++) {
            row_t *r = &rows[i];
            char v[32] = "", ra[32] = "", sp[16] = "", an[64] = "", goal[64] = "";
            if (!r->derived) {
                fmt_value(v, sizeof v, r->median);
                double s = spread_of(r);
                if (!isnan(s))
                    snprintf(sp, sizeof sp, "%.0f%%", s);
            }
            if (r->anchor >= 0) {
                fmt_ratio(ra, sizeof ra, r->ratio);
                snprintf(an, sizeof an, "%s", rows[r->anchor].tag);
            } else if (!isnan(r->anchor_value)) {
                fmt_ratio(ra, sizeof ra, r->ratio);
                snprintf(an, sizeof an, "%s", r->anchor_tag);
            } else if (!r->derived && row_is_anchor(i)) {
                snprintf(an, sizeof an, "(anchor)");
            }
            const char *verdict = goal_verdict(r);
            if (verdict && !isnan(r->goal_abs))
                snprintf(goal, sizeof goal, "< %g %s: %s", r->goal_abs, r->goal_abs_unit, verdict);
            else if (verdict)
                snprintf(goal, sizeof goal, "%s %gx: %s", r->cmp == GOAL_LE ? "<=" : ">=", r->goal, verdict);
            if (r->derived && isnan(r->ratio))
                continue;
            if (!r->derived && r->n == 0) {
                printf("%-3s %-48.48s %10s %-8s %6s %7s  %s\n", "", r->label, "-", r->unit, "", "",
                       r->why ? r->why : "not measured");
                continue;
            }
            printf("%-3s %-48.48s %10s %-8s %6s %7s  %-26.26s %s\n", "", r->label, v, r->unit, sp, ra, an, goal);
        }
    }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v) {
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static void write_json(const char *path, const char *started) {
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s: %s", path, strerror(errno));
    fputs("{\n  \"benchmark\": \"unilock\",\n  \"library_version\": ", f);
    json_str(f, unilock_libversion());
    fputs(",\n  \"git\": ", f);
    json_str(f, BENCH_GIT_REV);
    fputs(",\n  \"started\": ", f);
    json_str(f, started);
    fprintf(f, ",\n  \"mode\": \"%s\",\n  \"repetitions\": %d,\n  \"statistic\": \"median of repetitions\",\n",
            cfg.quick ? "quick" : "full", cfg.reps);
    fputs("  \"machine\": {\"uname\": ", f);
    json_str(f, m_uname);
    fputs(", \"cpu\": ", f);
    json_str(f, m_cpu);
    fprintf(f, ", \"nproc\": %ld, \"cpus_allowed\": %ld},\n  \"kernel_lock_dir\": ", m_nproc, m_affinity);
    json_str(f, tmpdir);
    fputs(",\n  \"database_dir\": ", f);
    json_str(f, cfg.db_parent);
    fputs(",\n  \"database_fs\": ", f);
    json_str(f, db_fs);
    fputs(",\n  \"figures\": [\n", f);
    int firstfig = 1;
    for (int fi = 0; fi < NFIG; fi++) {
        figure_t *fg = &figures[fi];
        if (cfg.only && !(cfg.only & (1u << fg->id)))
            continue;
        fprintf(f, "%s    {\"figure\": %d, \"title\": ", firstfig ? "" : ",\n", fg->id);
        firstfig = 0;
        json_str(f, fg->title);
        if (fg->why) {
            fputs(", \"measured\": false, \"not_measured\": ", f);
            json_str(f, fg->why);
            fputs(", \"rows\": null}", f);
            continue;
        }
        fputs(", \"measured\": true, \"rows\": [", f);
        for (int i = fg->first_row; i < fg->end_row; i++) {
            row_t *r = &rows[i];
            fprintf(f, "%s\n      {\"name\": ", i == fg->first_row ? "" : ",");
            json_str(f, r->name);
            fputs(", \"label\": ", f);
            json_str(f, r->label);
            if (r->derived) {
                fputs(", \"unit\": \"ratio\", \"of\": ", f);
                json_str(f, rows[r->of].name);
            } else {
                fputs(", \"unit\": ", f);
                json_str(f, r->unit);
                fputs(", \"median\": ", f);
                json_num(f, r->n ? r->median : NAN);
                fputs(", \"samples\": ", f);
                if (!r->n) {
                    fputs("null, \"not_measured\": ", f);
                    json_str(f, r->why ? r->why : "not measured");
                } else {
                    fputc('[', f);
                    for (int k = 0; k < r->n; k++) {
                        if (k)
                            fputs(", ", f);
                        json_num(f, r->samples[k]);
                    }
                    fputc(']', f);
                }
            }
            fputs(", \"anchor\": ", f);
            if (r->anchor >= 0) {
                json_str(f, rows[r->anchor].name);
            } else if (!isnan(r->anchor_value)) {
                fputs("{\"fixed\": ", f);
                json_num(f, r->anchor_value);
                fputs(", \"what\": ", f);
                json_str(f, r->anchor_tag);
                fputc('}', f);
            } else
                fputs("null", f);
            fputs(", \"ratio\": ", f);
            json_num(f, r->ratio);
            fputs(", \"goal\": ", f);
            const char *verdict = goal_verdict(r);
            if (!isnan(r->goal_abs)) {
                fputs("{\"median\": \"<\", \"limit\": ", f);
                json_num(f, r->goal_abs);
                fputs(", \"unit\": ", f);
                json_str(f, r->goal_abs_unit);
                fprintf(f, ", \"met\": %s}", verdict ? (strcmp(verdict, "met") ? "false" : "true") : "null");
            } else if (r->cmp == GOAL_NONE) {
                fputs("null", f);
            } else {
                fprintf(f, "{\"ratio\": \"%s\", \"limit\": ", r->cmp == GOAL_LE ? "<=" : ">=");
                json_num(f, r->goal);
                fputs(", \"against\": ", f);
                json_str(f, r->goal_what);
                fprintf(f, ", \"met\": %s}", verdict ? (strcmp(verdict, "met") ? "false" : "true") : "null");
            }
            fputc('}', f);
        }
        fputs("\n    ]}", f);
    }
    fputs("\n  ]\n}\n", f);
    if (fclose(f) != 0)
        die("writing %s failed", path);
}

/* ------------------------------------------------------------------------------------------------ */

static void usage(FILE *to) {
    fputs("usage: bench [--quick] [--reps N] [--json PATH] [--only LIST] [--db-dir DIR] [--restart-locks N]\n"
          "  --quick            smoke run: tiny budgets, 2 repetitions, a few seconds\n"
          "  --reps N           repetitions per figure (default 7; --quick 2)\n"
          "  --json PATH        write the figures as JSON to PATH (default results.json)\n"
          "  --only LIST        run only these figures, e.g. --only 1,3\n"
          "  --db-dir DIR       where figures 2, 5 and 7 put their databases (default /var/tmp; use a disk)\n"
          "  --restart-locks N  locks in figure 5's database (default 1000000; --quick 10000)\n",
          to);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--restart-child"))
        return restart_child(argv[2]);
    int reps = 0;
    long restart_locks = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            cfg.quick = 1;
        } else if (!strcmp(a, "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > MAX_REPS)
                die("--reps must be 1..%d", MAX_REPS);
        } else if (!strcmp(a, "--db-dir") && i + 1 < argc) {
            cfg.db_parent = argv[++i];
        } else if (!strcmp(a, "--restart-locks") && i + 1 < argc) {
            restart_locks = atol(argv[++i]);
            if (restart_locks < 1)
                die("--restart-locks must be at least 1");
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            cfg.json = argv[++i];
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            for (char *s = argv[++i]; *s;) {
                long v = strtol(s, &s, 10);
                if (v < 1 || v > NFIG)
                    die("--only: figures are 1..%d", NFIG);
                cfg.only |= 1u << v;
                if (*s == ',')
                    s++;
                else if (*s)
                    die("--only: expected a list like 1,3");
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (cfg.quick) {
        cfg.reps = 2;
        cfg.min_s = 0.01;
        cfg.thr_s = 0.03;
        cfg.lease_samples = 20;
        cfg.restart_locks = 10000;
    }
    if (reps)
        cfg.reps = reps;
    if (restart_locks)
        cfg.restart_locks = restart_locks;

    if (unilock_libversion_number() != UNILOCK_VERSION_NUMBER)
        die("library %s does not match header %s", unilock_libversion(), UNILOCK_VERSION);

    struct stat st;
    snprintf(tmpdir, sizeof tmpdir, "%s", stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    snprintf(kfile_base, sizeof kfile_base, "%s/unilock-bench.%ld", tmpdir, (long)getpid());
    main_pid = getpid();
    atexit(kfile_unlink_all);
    atexit(db_cleanup);

    machine();
    time_t now = time(NULL);
    char started[64];
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("unilock benchmark (issue 8): library %s, git %s, %s run, %d repetitions per row, median shown\n",
           unilock_libversion(), BENCH_GIT_REV, cfg.quick ? "QUICK (smoke test: numbers are not meaningful)" : "full",
           cfg.reps);
    printf("machine: %s\ncpu: %s, %ld online, %ld allowed\nkernel locks on: %s (tmpfs)\nstarted: %s\n", m_uname, m_cpu,
           m_nproc, m_affinity, tmpdir, started);
    fflush(stdout);

    uint64_t t0 = now_ns();
    for (int fi = 0; fi < NFIG; fi++) {
        figure_t *f = &figures[fi];
        f->first_row = f->end_row = nrows;
        if (cfg.only && !(cfg.only & (1u << f->id)))
            continue;
        if (!f->run) {
            static char why[16][200];
            snprintf(why[fi], sizeof why[fi], "needs %s", f->needs);
            f->why = why[fi];
            continue;
        }
        fig_unmeasured = NULL;
        f->run();
        if (fig_unmeasured) {
            f->why = fig_unmeasured;
            nrows = f->first_row; /* its rows are dropped: no number stands for it */
            progress("figure %d: not measured: %s\n", f->id, f->why);
        }
        f->end_row = nrows;
    }
    rows_finish();
    print_table();
    printf("\nratio: median of the row / median of its anchor, same run. spread: (max-min)/median over the "
           "repetitions.\ntotal time %.1f s; figures written to %s\n",
           (double)(now_ns() - t0) / 1e9, cfg.json);
    write_json(cfg.json, started);
    return 0;
}
