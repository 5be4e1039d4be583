/*
 * Threaded cmocka tests: one unilock handle used by 8 threads at once.
 *
 * Each thread takes random byte-range locks (both flavours, both types) on a few shared files and on a
 * file of its own, and while it holds a lock it marks the bytes in a shadow table guarded by nothing but
 * unilock itself: an exclusive holder writes its id into every byte (compare-and-swap from 0) and finds
 * no shared holder there; a shared holder counts itself in and finds no exclusive owner. The marks are
 * checked again just before the unlock. Two conflicting locks held at once show up as a violation.
 * A lister thread checks that every listing snapshot is free of conflicting pairs.
 *
 * UNILOCK_THREAD_ITERS sets the iterations per thread (the Makefile lowers it under valgrind).
 */
#define _GNU_SOURCE
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define NTHREADS 8
#define NSHARED 3
#define SPACE 256
#define MAXLEN 32

static const uint8_t *const shared_files[NSHARED] = {FILE_A, FILE_B, FILE_C};

static atomic_int excl_owner[NSHARED][SPACE];
static atomic_int shared_cnt[NSHARED][SPACE];
static atomic_int violations;
static atomic_int errors;
static atomic_int done;
static int iterations;

struct worker {
	pthread_t tid;
	const unilock *ul;
	int id;
	unsigned seed;
	long granted, refused, private_ops;
	char client[32];
};

static unsigned rnd(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (*s >> 8) & 0xffffff;
}

static void violation(const char *what, int file, int byte, int id)
{
	if (atomic_fetch_add(&violations, 1) < 5)
		fprintf(stderr, "VIOLATION: %s (file %d byte %d thread %d)\n", what, file, byte, id);
}

static void error(const char *what, uint32_t s, int id)
{
	if (atomic_fetch_add(&errors, 1) < 5)
		fprintf(stderr, "ERROR: %s returned %u (%s) in thread %d\n", what, s, unilock_strerror(s), id);
}

/* Marks [off, off+len) of shared file f as held by thread `me` with `type`. */
static void mark(int f, uint32_t type, uint64_t off, uint64_t len, int me)
{
	uint64_t b;
	for (b = off; b < off + len; b++) {
		if (type == UNILOCK_EXCLUSIVE) {
			int expected = 0;
			if (!atomic_compare_exchange_strong(&excl_owner[f][b], &expected, me))
				violation("exclusive lock granted over another exclusive holder", f, (int)b, me);
			if (atomic_load(&shared_cnt[f][b]) != 0)
				violation("exclusive lock granted over a shared holder", f, (int)b, me);
		} else {
			atomic_fetch_add(&shared_cnt[f][b], 1);
			if (atomic_load(&excl_owner[f][b]) != 0)
				violation("shared lock granted over an exclusive holder", f, (int)b, me);
		}
	}
}

static void unmark(int f, uint32_t type, uint64_t off, uint64_t len, int me)
{
	uint64_t b;
	for (b = off; b < off + len; b++) {
		if (type == UNILOCK_EXCLUSIVE) {
			if (atomic_load(&excl_owner[f][b]) != me)
				violation("exclusive mark overwritten while held", f, (int)b, me);
			atomic_store(&excl_owner[f][b], 0);
		} else {
			if (atomic_load(&excl_owner[f][b]) != 0)
				violation("exclusive owner appeared under a shared lock", f, (int)b, me);
			atomic_fetch_sub(&shared_cnt[f][b], 1);
		}
	}
}

static unilock_owner worker_owner(struct worker *w, uint32_t flavour)
{
	return owner3(w->client, flavour == UNILOCK_POSIX ? "posix-owner" : "smb-lctx", (uint64_t)w->id);
}

/* One lock on a file of the worker's own: always granted, exactly one lock listed, then released. */
static void private_op(struct worker *w)
{
	char fid[16];
	uint32_t flavour = rnd(&w->seed) & 1 ? P : W;
	uint32_t type = rnd(&w->seed) & 1 ? X : S;
	uint64_t off = rnd(&w->seed) % 100000, len = 1 + rnd(&w->seed) % 1000;
	unilock_owner o = worker_owner(w, flavour);
	unilock_lock_req r;
	size_t n = 0;
	uint32_t s;
	if (flavour == P && (rnd(&w->seed) & 7) == 0)
		len = UNILOCK_TO_EOF;
	snprintf(fid, sizeof fid, "private-%d", w->id);
	r = req4(flavour, type, off, len);
	if ((s = unilock_lock(w->ul, (const uint8_t *)fid, strlen(fid), &o, &r, NULL)) != UNILOCK_OK)
		error("private lock", s, w->id);
	if ((s = unilock_list_locks(w->ul, (const uint8_t *)fid, strlen(fid), NULL, NULL, &n)) != UNILOCK_OK ||
	    n != 1)
		error("private list (or count != 1)", s, w->id);
	if ((s = unilock_check_io(w->ul, (const uint8_t *)fid, strlen(fid), &o, UNILOCK_READ, off, 1)) != UNILOCK_OK)
		error("private check_io read", s, w->id);
	if ((s = unilock_unlock(w->ul, (const uint8_t *)fid, strlen(fid), &o, flavour, off, len)) != UNILOCK_OK)
		error("private unlock", s, w->id);
	if ((s = unilock_list_locks(w->ul, (const uint8_t *)fid, strlen(fid), NULL, NULL, &n)) != UNILOCK_OK ||
	    n != 0)
		error("private list after unlock (or count != 0)", s, w->id);
	w->private_ops++;
}

/* While holding: the I/O check must agree with what is held. */
static void check_io_while_held(struct worker *w, int f, const unilock_owner *o, uint32_t flavour,
				uint32_t type, uint64_t off, uint64_t len)
{
	uint32_t s;
	s = unilock_check_io(w->ul, shared_files[f], FLEN, o, UNILOCK_READ, off, len);
	if (s != UNILOCK_OK)
		error("check_io read under an own lock", s, w->id);
	if (type == X) {
		s = unilock_check_io(w->ul, shared_files[f], FLEN, o, UNILOCK_WRITE, off, len);
		if (s != UNILOCK_OK)
			error("check_io write under an own exclusive lock", s, w->id);
	} else if (flavour == W) {
		s = unilock_check_io(w->ul, shared_files[f], FLEN, o, UNILOCK_WRITE, off, len);
		if (s != UNILOCK_E_CONFLICT)
			error("check_io write through an own Windows shared lock", s, w->id);
	}
}

static void shared_op(struct worker *w)
{
	int f = (int)(rnd(&w->seed) % NSHARED);
	uint32_t flavour = rnd(&w->seed) & 1 ? P : W;
	unilock_owner o = worker_owner(w, flavour);
	unilock_lock_info h;
	uint32_t s;
	int me = w->id + 1;

	if (flavour == W && rnd(&w->seed) % 4 == 0) {
		/* Two disjoint ranges in one all-or-none request. */
		unilock_lock_req r[2];
		uint64_t off0 = rnd(&w->seed) % (SPACE / 2 - MAXLEN), off1 = SPACE / 2 + rnd(&w->seed) % (SPACE / 2 - MAXLEN);
		size_t idx = 99;
		r[0] = req4(W, rnd(&w->seed) & 1 ? X : S, off0, 1 + rnd(&w->seed) % MAXLEN);
		r[1] = req4(W, rnd(&w->seed) & 1 ? X : S, off1, 1 + rnd(&w->seed) % MAXLEN);
		s = unilock_lock_many(w->ul, shared_files[f], FLEN, &o, r, 2, &idx, &h);
		if (s == UNILOCK_OK) {
			w->granted++;
			mark(f, r[0].type, r[0].offset, r[0].length, me);
			mark(f, r[1].type, r[1].offset, r[1].length, me);
			if (rnd(&w->seed) % 8 == 0)
				sched_yield();
			unmark(f, r[0].type, r[0].offset, r[0].length, me);
			unmark(f, r[1].type, r[1].offset, r[1].length, me);
			if ((s = unilock_unlock_many(w->ul, shared_files[f], FLEN, &o, r, 2, &idx)) != UNILOCK_OK)
				error("unlock_many", s, w->id);
		} else if (s == UNILOCK_E_CONFLICT) {
			w->refused++;
			if (idx > 1 || !holder_refuses(&o, &r[idx], &h) || strcmp(h.client, w->client) == 0)
				error("lock_many holder/index", s, w->id);
		} else {
			error("lock_many", s, w->id);
		}
		return;
	}

	{
		uint32_t type = rnd(&w->seed) & 1 ? X : S;
		uint64_t off = rnd(&w->seed) % (SPACE - MAXLEN), len = 1 + rnd(&w->seed) % MAXLEN;
		unilock_lock_req r = req4(flavour, type, off, len);
		s = unilock_lock(w->ul, shared_files[f], FLEN, &o, &r, &h);
		if (s == UNILOCK_OK) {
			w->granted++;
			mark(f, type, off, len, me);
			check_io_while_held(w, f, &o, flavour, type, off, len);
			if (rnd(&w->seed) % 8 == 0)
				sched_yield();
			unmark(f, type, off, len, me);
			if ((s = unilock_unlock(w->ul, shared_files[f], FLEN, &o, flavour, off, len)) != UNILOCK_OK)
				error("unlock", s, w->id);
		} else if (s == UNILOCK_E_CONFLICT) {
			w->refused++;
			/* The holder is another thread's lock that really conflicts. */
			if (!holder_refuses(&o, &r, &h) || strcmp(h.client, w->client) == 0)
				error("holder does not conflict", s, w->id);
		} else {
			error("lock", s, w->id);
		}
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	int i;
	for (i = 0; i < iterations; i++) {
		if (rnd(&w->seed) % 4 == 0)
			private_op(w);
		else
			shared_op(w);
	}
	return NULL;
}

/* ---- lister: no listing snapshot ever holds a conflicting pair ----------------------------------- */

struct snap {
	size_t n;
	unilock_lock_info v[64];
};

static int32_t snap_visit(void *user_data, const unilock_lock_info *lock)
{
	struct snap *s = user_data;
	if (s->n < 64)
		s->v[s->n] = *lock;
	s->n++;
	return 0;
}

static int same_owner(const unilock_lock_info *a, const unilock_lock_info *b)
{
	return a->flavour == b->flavour && a->client_len == b->client_len && strcmp(a->client, b->client) == 0 &&
	       a->owner_len == b->owner_len && memcmp(a->owner, b->owner, a->owner_len) == 0 &&
	       (a->flavour == P || a->open_id == b->open_id);
}

static int conflicting(const unilock_lock_info *a, const unilock_lock_info *b)
{
	/* All thread locks here are non-empty and end below SPACE. */
	if (!(a->offset < b->offset + b->length && b->offset < a->offset + a->length))
		return 0;
	if (same_owner(a, b))
		return 0;
	return a->type == X || b->type == X;
}

static void *lister_main(void *arg)
{
	const unilock *ul = arg;
	struct snap *s = malloc(sizeof *s);
	long rounds = 0;
	if (s == NULL)
		return NULL;
	while (!atomic_load(&done) || rounds < 10) {
		int f;
		for (f = 0; f < NSHARED; f++) {
			size_t i, j, count = 0;
			uint32_t st;
			s->n = 0;
			st = unilock_list_locks(ul, shared_files[f], FLEN, snap_visit, s, &count);
			if (st != UNILOCK_OK || count != s->n || s->n > 64) {
				error("list_locks snapshot", st, -1);
				continue;
			}
			for (i = 1; i < s->n; i++)
				if (s->v[i - 1].offset > s->v[i].offset)
					violation("listing not sorted by offset", f, (int)s->v[i].offset, -1);
			for (i = 0; i < s->n; i++)
				for (j = i + 1; j < s->n; j++)
					if (conflicting(&s->v[i], &s->v[j]))
						violation("listing holds two conflicting locks", f,
							  (int)s->v[j].offset, -1);
		}
		rounds++;
	}
	free(s);
	return NULL;
}

static int iterations_from_env(void)
{
	const char *e = getenv("UNILOCK_THREAD_ITERS");
	int n = e ? atoi(e) : 0;
	return n > 0 ? n : 20000;
}

static void test_threads_no_conflicting_grants(void **state)
{
	unilock *ul = NULL;
	struct worker w[NTHREADS];
	pthread_t lister;
	long granted = 0, refused = 0, priv = 0;
	int i, f;
	(void)state;

	iterations = iterations_from_env();
	memset(excl_owner, 0, sizeof excl_owner);
	memset(shared_cnt, 0, sizeof shared_cnt);
	atomic_store(&violations, 0);
	atomic_store(&errors, 0);
	atomic_store(&done, 0);

	assert_status(unilock_open(NULL, &ul), UNILOCK_OK);
	assert_int_equal(pthread_create(&lister, NULL, lister_main, ul), 0);
	for (i = 0; i < NTHREADS; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].ul = ul;
		w[i].id = i;
		w[i].seed = 0x9e3779b9u * (unsigned)(i + 1);
		snprintf(w[i].client, sizeof w[i].client, "thread-%d", i);
		assert_int_equal(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(w[i].tid, NULL), 0);
		granted += w[i].granted;
		refused += w[i].refused;
		priv += w[i].private_ops;
	}
	atomic_store(&done, 1);
	assert_int_equal(pthread_join(lister, NULL), 0);

	printf("[   INFO   ] %d threads x %d iterations: %ld granted, %ld refused, %ld private\n", NTHREADS,
	       iterations, granted, refused, priv);
	assert_int_equal(atomic_load(&violations), 0);
	assert_int_equal(atomic_load(&errors), 0);
	/* The random mix must really contend. */
	assert_true(granted > 0);
	assert_true(refused > 0);
	/* Everything was unlocked. */
	for (f = 0; f < NSHARED; f++)
		assert_int_equal(lock_count(ul, shared_files[f], FLEN), 0);
	unilock_close(ul);
}

/* Several threads opening, using and closing handles of their own, plus one shared handle. */
struct churn {
	pthread_t tid;
	const unilock *shared;
	int id;
	int failures;
};

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	int round, i;
	for (round = 0; round < 20; round++) {
		unilock *mine = NULL;
		char client[32];
		unilock_owner o;
		snprintf(client, sizeof client, "churn-%d", c->id);
		o = owner3(client, "o", (uint64_t)round);
		if (unilock_open(NULL, &mine) != UNILOCK_OK) {
			c->failures++;
			continue;
		}
		for (i = 0; i < 20; i++) {
			uint8_t fid[3] = {'f', (uint8_t)c->id, (uint8_t)i};
			unilock_lock_req r = req4(i & 1 ? P : W, X, (uint64_t)i * 10, 10);
			if (unilock_lock(mine, fid, sizeof fid, &o, &r, NULL) != UNILOCK_OK)
				c->failures++;
			r = req4(W, S, (uint64_t)i, 1);
			if (unilock_lock(c->shared, fid, sizeof fid, &o, &r, NULL) != UNILOCK_OK)
				c->failures++;
		}
		unilock_close(mine); /* with its locks still held */
		if (unilock_release_client(c->shared, client, NULL) != UNILOCK_OK)
			c->failures++;
	}
	return NULL;
}

static void test_threads_handle_churn(void **state)
{
	unilock *shared = NULL;
	struct churn c[NTHREADS];
	int i;
	(void)state;
	assert_status(unilock_open(NULL, &shared), UNILOCK_OK);
	for (i = 0; i < NTHREADS; i++) {
		c[i].shared = shared;
		c[i].id = i;
		c[i].failures = 0;
		assert_int_equal(pthread_create(&c[i].tid, NULL, churn_main, &c[i]), 0);
	}
	for (i = 0; i < NTHREADS; i++) {
		assert_int_equal(pthread_join(c[i].tid, NULL), 0);
		assert_int_equal(c[i].failures, 0);
	}
	unilock_close(shared);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_no_conflicting_grants),
		cmocka_unit_test(test_threads_handle_churn),
	};
	return cmocka_run_group_tests_name("unilock threads", tests, NULL, NULL);
}
