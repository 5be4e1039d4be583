/*
 * Helpers shared by the cmocka tests of the unilock C API (see common.h).
 *
 * Listings are heap arrays registered in a small table (main thread only): a failed assertion
 * longjmps out of a test before its listings are freed, so the fixture teardown frees what is left
 * (free_leftover_dumps) and valgrind's leak report stays about the library.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *live_dumps[64];

static void track(void *old, void *now)
{
	size_t i;
	for (i = 0; i < ARRAY_LEN(live_dumps); i++)
		if (live_dumps[i] == old) {
			live_dumps[i] = now;
			return;
		}
}

void free_leftover_dumps(void)
{
	size_t i;
	for (i = 0; i < ARRAY_LEN(live_dumps); i++) {
		free(live_dumps[i]);
		live_dumps[i] = NULL;
	}
}

/* UNILOCK_TEST_BACKEND (issue 16: the same suites over every backend): "memory" (default), "db" (a
 * fresh SQLite database per handle), "shared" (shared mode on a fresh database) or "cluster" (cluster
 * mode on the etcd named by UNILOCK_TEST_ETCD, a fresh cluster name per handle: see
 * cluster/with-etcd.sh). */
static char backend_dir[64];
static char backend_db[128];
static char backend_cluster[64];
static unsigned backend_clusters;

void test_backend_config(unilock_config *cfg)
{
	const char *b = getenv("UNILOCK_TEST_BACKEND");
	if (b == NULL || strcmp(b, "memory") == 0 || *b == 0)
		return;
	if (strcmp(b, "cluster") == 0) {
		const char *etcd = getenv("UNILOCK_TEST_ETCD");
		if (etcd == NULL || *etcd == 0) {
			fprintf(stderr, "UNILOCK_TEST_BACKEND=cluster needs UNILOCK_TEST_ETCD (cluster/with-etcd.sh)\n");
			abort();
		}
		snprintf(backend_cluster, sizeof backend_cluster, "ctest-%d-%u", (int)getpid(), backend_clusters++);
		cfg->flags |= UNILOCK_CONFIG_CLUSTER;
		cfg->cluster_endpoints = etcd;
		cfg->cluster_name = backend_cluster;
		cfg->cluster_host = "ctest";
		return;
	}
	test_backend_cleanup();
	snprintf(backend_dir, sizeof backend_dir, "/tmp/unilock-ctest-XXXXXX");
	if (mkdtemp(backend_dir) == NULL) {
		fprintf(stderr, "mkdtemp failed\n");
		abort();
	}
	snprintf(backend_db, sizeof backend_db, "%s/t.db", backend_dir);
	cfg->db_path = backend_db;
	cfg->durability = UNILOCK_DURABILITY_PROCESS;
	if (strcmp(b, "shared") == 0)
		cfg->flags |= UNILOCK_CONFIG_SHARED;
	else if (strcmp(b, "db") != 0) {
		fprintf(stderr, "UNILOCK_TEST_BACKEND=%s: expected memory, db, shared or cluster\n", b);
		abort();
	}
}

void test_backend_cleanup(void)
{
	char cmd[160];
	if (backend_dir[0] == 0)
		return;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", backend_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", backend_dir);
	backend_dir[0] = 0;
}

int open_handle(void **state)
{
	unilock *ul = NULL;
	unilock_config cfg;
	unilock_config_init(&cfg);
	test_backend_config(&cfg);
	if (unilock_open(&cfg, &ul) != UNILOCK_OK || ul == NULL)
		return -1;
	*state = ul;
	return 0;
}

int close_handle(void **state)
{
	free_leftover_dumps();
	unilock_close((unilock *)*state);
	*state = NULL;
	test_backend_cleanup();
	return 0;
}

void assert_status_impl(uint32_t actual, uint32_t expected, const char *expr, const char *file, int line)
{
	if (actual != expected) {
		print_error("%s returned %u (%s), expected %u (%s)\n", expr, actual, unilock_strerror(actual),
			    expected, unilock_strerror(expected));
		_fail(file, line);
	}
}

/* ---- listings ---------------------------------------------------------------------------------- */

static int32_t append_visit(void *user_data, const unilock_lock_info *lock)
{
	dump_t *d = user_data;
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 8;
		unilock_lock_info *v = realloc(d->v, cap * sizeof *v);
		if (v == NULL)
			return 1;
		track(d->v, v);
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = *lock;
	return 0;
}

void dump_file(const unilock *ul, const uint8_t *file, size_t len, dump_t *out)
{
	size_t count = (size_t)-1;
	memset(out, 0, sizeof *out);
	assert_status(unilock_list_locks(ul, file, len, append_visit, out, &count), UNILOCK_OK);
	assert_int_equal(count, out->n);
}

void dump_free(dump_t *d)
{
	if (d->v) {
		track(d->v, NULL);
		free(d->v);
	}
	memset(d, 0, sizeof *d);
}

int info_equal(const unilock_lock_info *a, const unilock_lock_info *b)
{
	return a->flavour == b->flavour && a->type == b->type && a->offset == b->offset &&
	       a->length == b->length && a->open_id == b->open_id && a->client_len == b->client_len &&
	       a->owner_len == b->owner_len && a->client_len < sizeof a->client &&
	       a->owner_len <= sizeof a->owner && memcmp(a->client, b->client, a->client_len + 1) == 0 &&
	       memcmp(a->owner, b->owner, a->owner_len) == 0;
}

void print_info(const char *prefix, const unilock_lock_info *l)
{
	size_t i;
	print_error("%s%s %s off=%llu len=%llu%s client=\"%.*s\" open_id=%llu owner=[", prefix,
		    l->flavour == UNILOCK_POSIX ? "POSIX" : l->flavour == UNILOCK_WINDOWS ? "WINDOWS" : "?FLAVOUR",
		    l->type == UNILOCK_SHARED ? "S" : l->type == UNILOCK_EXCLUSIVE ? "X" : "?TYPE",
		    (unsigned long long)l->offset, (unsigned long long)l->length,
		    l->length == UNILOCK_TO_EOF ? "(TO_EOF)" : "", (int)(l->client_len < 256 ? l->client_len : 255),
		    l->client, (unsigned long long)l->open_id);
	for (i = 0; i < l->owner_len && i < 16; i++)
		print_error("%02x", l->owner[i]);
	print_error("%s]\n", l->owner_len > 16 ? "..." : "");
}

static const uint8_t *const state_files[3] = {FILE_A, FILE_B, FILE_C};

void state_take(const unilock *ul, state_t *s)
{
	size_t i;
	for (i = 0; i < 3; i++)
		dump_file(ul, state_files[i], FLEN, &s->f[i]);
}

void state_free(state_t *s)
{
	size_t i;
	for (i = 0; i < 3; i++)
		dump_free(&s->f[i]);
}

void assert_state_equal_impl(const state_t *before, const state_t *after, const char *file, int line)
{
	size_t i, j;
	for (i = 0; i < 3; i++) {
		const dump_t *b = &before->f[i], *a = &after->f[i];
		int same = a->n == b->n;
		for (j = 0; same && j < a->n; j++)
			same = info_equal(&a->v[j], &b->v[j]);
		if (!same) {
			print_error("lock state of %.*s changed by a call that should change nothing\n", (int)FLEN,
				    (const char *)state_files[i]);
			for (j = 0; j < b->n; j++)
				print_info("  before: ", &b->v[j]);
			for (j = 0; j < a->n; j++)
				print_info("  after:  ", &a->v[j]);
			_fail(file, line);
		}
	}
}

size_t lock_count(const unilock *ul, const uint8_t *file, size_t len)
{
	size_t count = (size_t)-1;
	assert_status(unilock_list_locks(ul, file, len, NULL, NULL, &count), UNILOCK_OK);
	return count;
}

static int exp_matches(const exp_lock *e, const unilock_lock_info *l)
{
	size_t ol = e->owner ? strlen(e->owner) : 0;
	return e->flavour == l->flavour && e->type == l->type && e->offset == l->offset && e->length == l->length &&
	       e->open_id == l->open_id && strlen(e->client) == l->client_len &&
	       strcmp(e->client, l->client) == 0 && ol == l->owner_len && (ol == 0 || memcmp(e->owner, l->owner, ol) == 0);
}

void assert_locks_impl(const unilock *ul, const uint8_t *file, size_t len, const exp_lock *e, size_t n,
		       const char *where, int line)
{
	dump_t d;
	size_t i, j;
	char used[256] = {0};
	int ok;
	dump_file(ul, file, len, &d);
	ok = d.n == n && n <= sizeof used;
	for (i = 0; ok && i < n; i++) {
		int found = 0;
		for (j = 0; j < d.n && !found; j++) {
			if (!used[j] && exp_matches(&e[i], &d.v[j])) {
				used[j] = 1;
				found = 1;
			}
		}
		ok = found;
	}
	/* Listings are sorted by offset. */
	for (j = 1; ok && j < d.n; j++)
		ok = d.v[j - 1].offset <= d.v[j].offset;
	if (!ok) {
		print_error("locks of %.*s differ from the expected ones (or are not sorted by offset)\n", (int)len,
			    (const char *)file);
		for (i = 0; i < n; i++) {
			unilock_lock_info l;
			memset(&l, 0, sizeof l);
			l.flavour = e[i].flavour;
			l.type = e[i].type;
			l.offset = e[i].offset;
			l.length = e[i].length;
			l.open_id = e[i].open_id;
			l.client_len = strlen(e[i].client);
			snprintf(l.client, sizeof l.client, "%s", e[i].client);
			l.owner_len = e[i].owner ? strlen(e[i].owner) : 0;
			if (l.owner_len)
				memcpy(l.owner, e[i].owner, l.owner_len);
			print_info("  expected: ", &l);
		}
		for (j = 0; j < d.n; j++)
			print_info("  listed:   ", &d.v[j]);
		dump_free(&d);
		_fail(where, line);
	}
	dump_free(&d);
}

/* ---- conflict predicate (SPEC.md section 2 and 3), independent of the library ------------------- */

__extension__ typedef unsigned __int128 u128;

static u128 end_of(uint32_t flavour, uint64_t offset, uint64_t length)
{
	if (flavour == UNILOCK_POSIX && length == UNILOCK_TO_EOF)
		return (u128)1 << 64;
	return (u128)offset + length;
}

static int ranges_overlap(uint64_t a, u128 b, uint64_t c, u128 d)
{
	int x0 = (u128)a == b, y0 = (u128)c == d;
	if (!x0 && !y0)
		return (u128)a < d && (u128)c < b;
	if (x0 && !y0)
		return c < a && (u128)a < d;
	if (!x0 && y0)
		return a < c && (u128)c < b;
	return 0;
}

int holder_refuses(const unilock_owner *o, const unilock_lock_req *r, const unilock_lock_info *h)
{
	int same_owner;
	size_t ol = o->owner_len;
	if (!ranges_overlap(r->offset, end_of(r->flavour, r->offset, r->length), h->offset,
			    end_of(h->flavour, h->offset, h->length)))
		return 0;
	same_owner = h->flavour == r->flavour && h->client_len == strlen(o->client) &&
		     strcmp(h->client, o->client) == 0 && h->owner_len == ol &&
		     (ol == 0 || memcmp(h->owner, o->owner, ol) == 0) &&
		     (r->flavour == UNILOCK_POSIX || h->open_id == o->open_id);
	if (same_owner)
		/* Only a Windows exclusive request is refused by its own owner's locks. */
		return r->flavour == UNILOCK_WINDOWS && r->type == UNILOCK_EXCLUSIVE;
	return r->type == UNILOCK_EXCLUSIVE || h->type == UNILOCK_EXCLUSIVE;
}

void poison(void *p, size_t n)
{
	memset(p, 0xA5, n);
}

int is_poisoned(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;
	for (i = 0; i < n; i++)
		if (b[i] != 0xA5)
			return 0;
	return 1;
}

void expect_lock_impl(const unilock *ul, const uint8_t *file, const unilock_owner *o, uint32_t flavour,
		      uint32_t type, uint64_t offset, uint64_t length, uint32_t expected,
		      unilock_lock_info *holder_out, const char *where, int line)
{
	unilock_lock_req r = req4(flavour, type, offset, length);
	unilock_lock_info th, lh;
	state_t before, after;
	uint32_t ts, ls;

	state_take(ul, &before);
	poison(&th, sizeof th);
	ts = unilock_test(ul, file, FLEN, o, &r, &th);
	state_take(ul, &after);
	assert_state_equal_impl(&before, &after, where, line); /* a test changes nothing */
	state_free(&after);

	poison(&lh, sizeof lh);
	ls = unilock_lock(ul, file, FLEN, o, &r, &lh);
	if (ls != expected) {
		print_error("unilock_lock(%s, %s, off=%llu, len=%llu) by %s/%u returned %u (%s), expected %u (%s)\n",
			    flavour == UNILOCK_POSIX ? "POSIX" : "WINDOWS", type == UNILOCK_SHARED ? "S" : "X",
			    (unsigned long long)offset, (unsigned long long)length, o->client,
			    (unsigned)o->open_id, ls, unilock_strerror(ls), expected, unilock_strerror(expected));
		if (ls == UNILOCK_E_CONFLICT)
			print_info("  holder: ", &lh);
		state_free(&before);
		_fail(where, line);
	}
	if (ts != ls) {
		print_error("unilock_test returned %u (%s) but unilock_lock returned %u (%s)\n", ts,
			    unilock_strerror(ts), ls, unilock_strerror(ls));
		state_free(&before);
		_fail(where, line);
	}
	if (ls == UNILOCK_OK) {
		if (!is_poisoned(&th, sizeof th) || !is_poisoned(&lh, sizeof lh)) {
			print_error("holder written although the lock was granted\n");
			state_free(&before);
			_fail(where, line);
		}
	} else if (ls == UNILOCK_E_CONFLICT) {
		if (!holder_refuses(o, &r, &lh) || !holder_refuses(o, &r, &th)) {
			print_error("reported holder does not conflict with the request\n");
			print_info("  lock holder: ", &lh);
			print_info("  test holder: ", &th);
			state_free(&before);
			_fail(where, line);
		}
		state_take(ul, &after);
		assert_state_equal_impl(&before, &after, where, line);
		state_free(&after);
		if (holder_out)
			*holder_out = lh;
	} else {
		state_take(ul, &after);
		assert_state_equal_impl(&before, &after, where, line);
		state_free(&after);
	}
	state_free(&before);
}

void expect_unlock_impl(const unilock *ul, const uint8_t *file, const unilock_owner *o, uint32_t flavour,
			uint64_t offset, uint64_t length, uint32_t expected, const char *where, int line)
{
	state_t before, after;
	uint32_t s;
	state_take(ul, &before);
	s = unilock_unlock(ul, file, FLEN, o, flavour, offset, length);
	if (s != expected) {
		print_error("unilock_unlock(%s, off=%llu, len=%llu) by %s/%u returned %u (%s), expected %u (%s)\n",
			    flavour == UNILOCK_POSIX ? "POSIX" : "WINDOWS", (unsigned long long)offset,
			    (unsigned long long)length, o->client, (unsigned)o->open_id, s, unilock_strerror(s),
			    expected, unilock_strerror(expected));
		state_free(&before);
		_fail(where, line);
	}
	if (s != UNILOCK_OK) {
		state_take(ul, &after);
		assert_state_equal_impl(&before, &after, where, line);
		state_free(&after);
	}
	state_free(&before);
}

void assert_holder_impl(const unilock_lock_info *h, uint32_t flavour, uint32_t type, uint64_t offset,
			uint64_t length, const char *client, const uint8_t *owner, size_t owner_len,
			uint64_t open_id, const char *where, int line)
{
	if (h->flavour != flavour || h->type != type || h->offset != offset || h->length != length ||
	    h->open_id != open_id || h->client_len != strlen(client) || strcmp(h->client, client) != 0 ||
	    h->owner_len != owner_len || memcmp(h->owner, owner, owner_len) != 0) {
		print_error("unexpected holder: expected %s %s off=%llu len=%llu client=\"%s\" open_id=%llu\n",
			    flavour == UNILOCK_POSIX ? "POSIX" : "WINDOWS", type == UNILOCK_SHARED ? "S" : "X",
			    (unsigned long long)offset, (unsigned long long)length, client,
			    (unsigned long long)open_id);
		print_info("  got: ", h);
		_fail(where, line);
	}
}
