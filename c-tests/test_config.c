/*
 * cmocka tests of the life-cycle, configuration, version, file-id, logging and error sections of
 * unilock.h: unilock_config_init, unilock_open, unilock_close, unilock_libversion,
 * unilock_libversion_number, unilock_file_id_make, unilock_debug_panic, unilock_set_log,
 * unilock_strerror.
 */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

/* A pointer value no allocator returns, to see that unilock_open leaves *out alone on failure. */
#define SENTINEL ((unilock *)(uintptr_t)0xdeadbee0)

static void test_config_init(void **state)
{
	unilock_config cfg;
	(void)state;
	poison(&cfg, sizeof cfg);
	unilock_config_init(&cfg);
	assert_int_equal(cfg.size, sizeof(unilock_config));
	assert_int_equal(cfg.flags, 0);
	assert_int_equal(cfg.event_mode, UNILOCK_EVENTS_THREAD);
	assert_null(cfg.event_fn);
	assert_null(cfg.event_user_data);
	assert_int_equal(cfg.lease_break_timeout_ms, 35000);
	unilock_config_init(NULL); /* does nothing */
}

static void test_open_close(void **state)
{
	unilock_config cfg;
	unilock *ul = SENTINEL;
	(void)state;
	assert_status(unilock_open(NULL, &ul), UNILOCK_OK);
	assert_non_null(ul);
	assert_ptr_not_equal(ul, SENTINEL);
	unilock_close(ul);
	unilock_config_init(&cfg);
	ul = SENTINEL;
	assert_status(unilock_open(&cfg, &ul), UNILOCK_OK);
	assert_ptr_not_equal(ul, SENTINEL);
	assert_int_equal(lock_count(ul, FILE_A, FLEN), 0);
	unilock_close(ul);
	unilock_close(NULL); /* nothing happens */
}

static void test_open_null_out(void **state)
{
	unilock_config cfg;
	(void)state;
	unilock_config_init(&cfg);
	assert_status(unilock_open(NULL, NULL), UNILOCK_E_INVALID);
	assert_status(unilock_open(&cfg, NULL), UNILOCK_E_INVALID);
}

static void test_open_size_too_small(void **state)
{
	static const size_t sizes[] = {0, 1, sizeof(size_t) - 1};
	unilock_config cfg;
	size_t i;
	(void)state;
	for (i = 0; i < ARRAY_LEN(sizes); i++) {
		unilock *ul = SENTINEL;
		unilock_config_init(&cfg);
		cfg.size = sizes[i];
		assert_status(unilock_open(&cfg, &ul), UNILOCK_E_INVALID);
		assert_ptr_equal(ul, SENTINEL); /* untouched on failure */
	}
}

/* An older caller whose struct ends after `size`: the library reads only `size` bytes. */
static void test_open_older_caller(void **state)
{
	struct {
		size_t size;
	} old;
	unilock *ul = SENTINEL;
	(void)state;
	old.size = sizeof old;
	assert_status(unilock_open((const unilock_config *)(const void *)&old, &ul), UNILOCK_OK);
	assert_ptr_not_equal(ul, SENTINEL);
	unilock_close(ul);
}

/* A newer caller: a larger size is fine while the bytes this library does not know are zero. */
static void test_open_newer_caller(void **state)
{
	struct {
		unilock_config c;
		uint8_t extra[64];
	} big;
	unilock *ul;
	size_t i;
	(void)state;

	memset(&big, 0, sizeof big);
	unilock_config_init(&big.c);
	big.c.size = sizeof big;
	ul = SENTINEL;
	assert_status(unilock_open(&big.c, &ul), UNILOCK_OK);
	assert_ptr_not_equal(ul, SENTINEL);
	unilock_close(ul);

	for (i = 0; i < sizeof big.extra; i += 21) {
		memset(big.extra, 0, sizeof big.extra);
		big.extra[i] = 1;
		ul = SENTINEL;
		assert_status(unilock_open(&big.c, &ul), UNILOCK_E_INVALID);
		assert_ptr_equal(ul, SENTINEL);
	}
	memset(big.extra, 0, sizeof big.extra);
	big.extra[sizeof big.extra - 1] = 0x80;
	assert_status(unilock_open(&big.c, &ul), UNILOCK_E_INVALID);

	/* Only `size` bytes are read: a non-zero byte just past it does not matter. */
	memset(big.extra, 0, sizeof big.extra);
	big.extra[1] = 0xff;
	big.c.size = sizeof(unilock_config) + 1;
	ul = SENTINEL;
	assert_status(unilock_open(&big.c, &ul), UNILOCK_OK);
	assert_ptr_not_equal(ul, SENTINEL);
	unilock_close(ul);
}

static void test_open_unknown_flags(void **state)
{
	static const uint32_t flags[] = {1, 4, 0x80000000u, UINT32_MAX}; /* 1 (shared) needs a db_path */
	unilock_config cfg;
	size_t i;
	(void)state;
	for (i = 0; i < ARRAY_LEN(flags); i++) {
		unilock *ul = SENTINEL;
		unilock_config_init(&cfg);
		cfg.flags = flags[i];
		assert_status(unilock_open(&cfg, &ul), UNILOCK_E_INVALID);
		assert_ptr_equal(ul, SENTINEL);
	}
}

static void test_open_unknown_event_mode(void **state)
{
	static const uint32_t modes[] = {2, 3, 99, UINT32_MAX};
	unilock_config cfg;
	size_t i;
	(void)state;
	for (i = 0; i < ARRAY_LEN(modes); i++) {
		unilock *ul = SENTINEL;
		unilock_config_init(&cfg);
		cfg.event_mode = modes[i];
		assert_status(unilock_open(&cfg, &ul), UNILOCK_E_INVALID);
		assert_ptr_equal(ul, SENTINEL);
	}
	/* Both known modes open; loop mode has a descriptor, thread mode none. */
	for (i = 0; i < 2; i++) {
		unilock *ul = SENTINEL;
		unilock_config_init(&cfg);
		cfg.event_mode = i == 0 ? UNILOCK_EVENTS_THREAD : UNILOCK_EVENTS_LOOP;
		assert_status(unilock_open(&cfg, &ul), UNILOCK_OK);
		if (i == 0)
			assert_int_equal(unilock_event_fd(ul), -1);
		else
			assert_true(unilock_event_fd(ul) >= 0);
		unilock_close(ul);
	}
}

/*
 * UNILOCK_E_RESOURCE: with no file descriptor left, a loop-mode handle cannot get its event
 * descriptors. Run in a child so the limit does not leak into other tests; skipped under valgrind,
 * which manages descriptors of its own.
 */
static void test_open_resource_exhausted(void **state)
{
	pid_t pid;
	int status = 0;
	(void)state;
	if (RUNNING_ON_VALGRIND) {
		print_message("[   INFO   ] skipped under valgrind\n");
		return;
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl;
		unilock_config cfg;
		unilock *ul = SENTINEL;
		uint32_t s;
		int fd;
		/* Use up every descriptor below a small limit. */
		rl.rlim_cur = rl.rlim_max = 16;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(10);
		while ((fd = open("/dev/null", O_RDONLY)) >= 0)
			;
		unilock_config_init(&cfg);
		cfg.event_mode = UNILOCK_EVENTS_LOOP;
		s = unilock_open(&cfg, &ul);
		if (s != UNILOCK_E_RESOURCE)
			_exit(11);
		if (ul != SENTINEL)
			_exit(12);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_versions(void **state)
{
	const char *v = unilock_libversion();
	unsigned x, y, z;
	char tail;
	(void)state;
	assert_non_null(v);
	assert_int_equal(UNILOCK_VERSION_NUMBER, unilock_libversion_number());
	assert_string_equal(UNILOCK_VERSION, v);
	assert_int_equal(strcmp(UNILOCK_VERSION, unilock_libversion()), 0);
	assert_int_equal(sscanf(v, "%u.%u.%u%c", &x, &y, &z, &tail), 3);
	assert_int_equal((int32_t)(x * 1000000 + y * 1000 + z), unilock_libversion_number());
	assert_ptr_equal(v, unilock_libversion()); /* a static string */
}

static void test_strerror(void **state)
{
	/* Every status the header declares. */
	static const uint32_t known[] = {
		UNILOCK_OK,          UNILOCK_PENDING,    UNILOCK_E_INVALID,   UNILOCK_E_INVALID_RANGE,
		UNILOCK_E_CONFLICT,  UNILOCK_E_RANGE_NOT_LOCKED, UNILOCK_E_DEADLOCK, UNILOCK_E_TIMEOUT,
		UNILOCK_E_GRACE,     UNILOCK_E_NO_GRACE, UNILOCK_E_RECLAIM_DENIED, UNILOCK_E_BUSY,
		UNILOCK_E_NOT_FOUND, UNILOCK_E_NO_BREAK, UNILOCK_E_BAD_ACK,  UNILOCK_E_STORE,
		UNILOCK_E_RESOURCE,  UNILOCK_E_INTERNAL,
	};
	/* Numbers outside the ranges statuses are allocated from (0-1 and 100-199). */
	static const uint32_t unknown[] = {2, 3, 50, 99, 200, 201, 1000, 65535, 0x7fffffffu, 0x80000000u, UINT32_MAX};
	size_t i, j;
	(void)state;
	for (i = 0; i < ARRAY_LEN(known); i++) {
		const char *s = unilock_strerror(known[i]);
		assert_non_null(s);
		assert_true(s[0] != 0);
		assert_string_not_equal(s, "unknown status");
		for (j = 0; j < i; j++)
			assert_string_not_equal(s, unilock_strerror(known[j]));
	}
	for (i = 0; i < ARRAY_LEN(unknown); i++) {
		const char *s = unilock_strerror(unknown[i]);
		assert_non_null(s);
		assert_string_equal(s, "unknown status");
	}
}

static void test_debug_panic(void **state)
{
	unilock *ul = NULL;
	unilock_owner o = owner3("c", "o", 1);
	unilock_lock_req r = req4(W, X, 0, 10);
	(void)state;
	assert_status(unilock_open(NULL, &ul), UNILOCK_OK);
	assert_status(unilock_lock(ul, FILE_A, FLEN, &o, &r, NULL), UNILOCK_OK);
	fprintf(stderr, "(test_debug_panic: a panic message from the library is expected below)\n");
	assert_status(unilock_debug_panic(), UNILOCK_E_INTERNAL);
	assert_status(unilock_debug_panic(), UNILOCK_E_INTERNAL);
	/* No other effect: the handle and its locks are as they were, and still usable. */
	assert_int_equal(lock_count(ul, FILE_A, FLEN), 1);
	assert_status(unilock_unlock(ul, FILE_A, FLEN, &o, W, 0, 10), UNILOCK_OK);
	assert_status(unilock_lock(ul, FILE_A, FLEN, &o, &r, NULL), UNILOCK_OK);
	unilock_close(ul);
}

static void test_file_id_make(void **state)
{
	static const uint8_t want[UNILOCK_FILE_ID_CANONICAL_LEN] = {
		0x01,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0xf8,
	};
	uint8_t out[UNILOCK_FILE_ID_CANONICAL_LEN + 7];
	size_t i;
	(void)state;
	assert_int_equal(UNILOCK_FILE_ID_CANONICAL_LEN, 25);
	poison(out, sizeof out);
	assert_status(unilock_file_id_make(0x0102030405060708ull, 0x1112131415161718ull, 0x21222324252627f8ull, out),
		      UNILOCK_OK);
	assert_memory_equal(out, want, sizeof want);
	assert_true(is_poisoned(out + 25, sizeof out - 25)); /* exactly 25 bytes written */

	poison(out, sizeof out);
	assert_status(unilock_file_id_make(0, 0, 0, out), UNILOCK_OK);
	assert_int_equal(out[0], 1);
	for (i = 1; i < 25; i++)
		assert_int_equal(out[i], 0);
	assert_true(is_poisoned(out + 25, sizeof out - 25));

	assert_status(unilock_file_id_make(UINT64_MAX, UINT64_MAX, UINT64_MAX, out), UNILOCK_OK);
	assert_int_equal(out[0], 1);
	for (i = 1; i < 25; i++)
		assert_int_equal(out[i], 0xff);

	assert_status(unilock_file_id_make(1, 2, 3, NULL), UNILOCK_E_INVALID);
}

/* ---- logging -------------------------------------------------------------------------------------- */

struct log_rec {
	int count;
	int by_level[8];
	int bad_level;
	int empty;
	int wrong_user_data;
	int depth;
	int reentered;
	const unilock *ul;
	char last[256];
};

static struct log_rec *log_expected_ud;

static void log_cb(void *user_data, uint32_t level, const char *message)
{
	struct log_rec *r = user_data;
	if (r != log_expected_ud) {
		/* cannot record into r safely */
		if (log_expected_ud)
			log_expected_ud->wrong_user_data++;
		return;
	}
	r->count++;
	if (level >= 1 && level <= 5)
		r->by_level[level]++;
	else
		r->bad_level++;
	if (message == NULL || message[0] == 0)
		r->empty++;
	else
		snprintf(r->last, sizeof r->last, "%s", message);
	/* A log callback may call into the library (not unilock_set_log). */
	if (r->depth == 0) {
		r->depth++;
		if (unilock_strerror(UNILOCK_E_CONFLICT)[0] == 0)
			r->empty++;
		if (r->ul) {
			unilock_owner o = owner3("log", "cb", 1);
			unilock_lock_req q = req4(W, S, 0, 1);
			if (unilock_lock(r->ul, FILE_C, FLEN, &o, &q, NULL) == UNILOCK_OK &&
			    unilock_unlock(r->ul, FILE_C, FLEN, &o, W, 0, 1) == UNILOCK_OK)
				r->reentered++;
		}
		r->depth--;
	}
}

static int reset_log(void **state)
{
	(void)state;
	log_expected_ud = NULL;
	return unilock_set_log(NULL, NULL, UNILOCK_LOG_OFF) == UNILOCK_OK ? 0 : -1;
}

static void open_close(void)
{
	unilock *ul = NULL;
	assert_status(unilock_open(NULL, &ul), UNILOCK_OK);
	unilock_close(ul);
}

static void test_set_log_info(void **state)
{
	struct log_rec rec;
	(void)state;
	memset(&rec, 0, sizeof rec);
	log_expected_ud = &rec;
	assert_status(unilock_set_log(log_cb, &rec, UNILOCK_LOG_INFO), UNILOCK_OK);
	open_close();
	assert_true(rec.by_level[UNILOCK_LOG_INFO] >= 1); /* unilock_open logs at INFO */
	assert_int_equal(rec.by_level[UNILOCK_LOG_DEBUG] + rec.by_level[UNILOCK_LOG_TRACE], 0);
	assert_int_equal(rec.bad_level, 0);
	assert_int_equal(rec.empty, 0);
	assert_int_equal(rec.wrong_user_data, 0);
	assert_true(strlen(rec.last) > 0);
}

static void test_set_log_levels(void **state)
{
	struct log_rec rec;
	static const uint32_t bad[] = {6, 7, 99, UINT32_MAX};
	size_t i;
	(void)state;

	/* WARN: the INFO message of unilock_open is filtered out. */
	memset(&rec, 0, sizeof rec);
	log_expected_ud = &rec;
	assert_status(unilock_set_log(log_cb, &rec, UNILOCK_LOG_WARN), UNILOCK_OK);
	open_close();
	assert_int_equal(rec.by_level[UNILOCK_LOG_INFO] + rec.by_level[UNILOCK_LOG_DEBUG] +
				 rec.by_level[UNILOCK_LOG_TRACE],
			 0);

	/* OFF with a callback: nothing. */
	memset(&rec, 0, sizeof rec);
	assert_status(unilock_set_log(log_cb, &rec, UNILOCK_LOG_OFF), UNILOCK_OK);
	open_close();
	assert_int_equal(rec.count, 0);

	/* TRACE: everything up to TRACE, INFO included. */
	memset(&rec, 0, sizeof rec);
	assert_status(unilock_set_log(log_cb, &rec, UNILOCK_LOG_TRACE), UNILOCK_OK);
	open_close();
	assert_true(rec.by_level[UNILOCK_LOG_INFO] >= 1);
	assert_int_equal(rec.bad_level, 0);

	/* Levels above TRACE are refused. */
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		assert_status(unilock_set_log(log_cb, &rec, bad[i]), UNILOCK_E_INVALID);
		assert_status(unilock_set_log(NULL, NULL, bad[i]), UNILOCK_E_INVALID);
	}

	/* NULL stops logging. */
	assert_status(unilock_set_log(NULL, NULL, UNILOCK_LOG_TRACE), UNILOCK_OK);
	memset(&rec, 0, sizeof rec);
	open_close();
	assert_int_equal(rec.count, 0);
	assert_int_equal(rec.wrong_user_data, 0);
}

/* The callback may call back into the library, here into a handle's lock calls. */
static void test_set_log_reentrant(void **state)
{
	struct log_rec rec;
	unilock *ul = NULL;
	(void)state;
	assert_status(unilock_open(NULL, &ul), UNILOCK_OK);
	memset(&rec, 0, sizeof rec);
	rec.ul = ul;
	log_expected_ud = &rec;
	assert_status(unilock_set_log(log_cb, &rec, UNILOCK_LOG_TRACE), UNILOCK_OK);
	open_close();
	assert_true(rec.count >= 1);
	assert_true(rec.reentered >= 1);
	assert_int_equal(rec.empty, 0);
	assert_status(unilock_set_log(NULL, NULL, UNILOCK_LOG_OFF), UNILOCK_OK);
	assert_int_equal(lock_count(ul, FILE_C, FLEN), 0);
	unilock_close(ul);
}

#define T(f) cmocka_unit_test_teardown(f, reset_log)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_config_init),
		T(test_open_close),
		T(test_open_null_out),
		T(test_open_size_too_small),
		T(test_open_older_caller),
		T(test_open_newer_caller),
		T(test_open_unknown_flags),
		T(test_open_unknown_event_mode),
		T(test_open_resource_exhausted),
		T(test_versions),
		T(test_strerror),
		T(test_debug_panic),
		T(test_file_id_make),
		T(test_set_log_info),
		T(test_set_log_levels),
		T(test_set_log_reentrant),
	};
	return cmocka_run_group_tests_name("unilock config, versions, errors, logging", tests, NULL, NULL);
}
