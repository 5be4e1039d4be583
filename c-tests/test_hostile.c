/*
 * Hostile calls (issue 14): every exported function with NULLs, bad sizes, huge counts, UINT64_MAX
 * and unknown enum values. Each call must return an error status and leave the lock table as it was
 * (a listing of every file before and after, EXPECT_UNCHANGED); none may crash, abort or read past
 * what it was given (valgrind runs this file in `make check`). Then the regressions of issue 14's
 * arithmetic items and issue 13's stale unilock_errdetail().
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define UL ((const unilock *)*state)

static const uint8_t K1[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static size_t calls; /* hostile calls made, reported at the end */

/* 256 bytes: one more than UNILOCK_CLIENT_MAX. */
#define LONG_CLIENT                                                                                  \
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" \
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" \
	"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

#define HOSTILE(ul, expected, call)                   \
	do {                                          \
		EXPECT_UNCHANGED((ul), (expected), (call)); \
		calls++;                              \
	} while (0)

/* A handle in loop mode (no thread: valgrind runs it quickly) holding locks on FILE_A and FILE_B and
 * an open with a lease on FILE_C. */
static int setup(void **state)
{
	unilock_config cfg;
	unilock *ul = NULL;
	unilock_config_init(&cfg);
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	if (unilock_open(&cfg, &ul) != UNILOCK_OK)
		return -1;
	unilock_owner a = owner3("nlm:a", "svid-a", 0);
	unilock_owner b = owner3("smb:b", "lctx-b", 7);
	unilock_lock_req r1 = req4(P, X, 0, 100), r2 = req4(W, S, 200, 10), r3 = req4(P, S, 1000, EOF_LEN);
	if (unilock_lock(ul, FILE_A, FLEN, &a, &r1, NULL) != UNILOCK_OK ||
	    unilock_lock(ul, FILE_A, FLEN, &b, &r2, NULL) != UNILOCK_OK ||
	    unilock_lock(ul, FILE_B, FLEN, &a, &r3, NULL) != UNILOCK_OK)
		return -1;
	unilock_open_req o;
	unilock_open_result res;
	unilock_open_req_init(&o);
	o.lease_kind = UNILOCK_LEASE_KIND_LEASE;
	o.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H;
	o.lease_version = 2;
	memcpy(o.lease_key, K1, 16);
	if (unilock_file_open(ul, FILE_C, FLEN, "smb:b", 1, &o, NULL, &res) != UNILOCK_OK)
		return -1;
	*state = ul;
	return 0;
}

static int teardown(void **state)
{
	return close_handle(state);
}

/* ---- byte-range lock calls ------------------------------------------------------------------- */

static void test_hostile_lock_calls(void **state)
{
	const unilock *ul = UL;
	unilock_owner o = owner3("nlm:h", "svid-h", 1);
	unilock_owner nul_client = owner3(NULL, "x", 1);
	unilock_owner empty_client = owner3("", "x", 1);
	unilock_owner nul_owner = {"nlm:h", NULL, 5, 1};
	unilock_owner huge_owner = {"nlm:h", (const uint8_t *)"x", SIZE_MAX, 1};
	unilock_owner big_owner = {"nlm:h", (const uint8_t *)"x", UNILOCK_OWNER_MAX + 1, 1};
	char long_client[UNILOCK_CLIENT_MAX + 2];
	memset(long_client, 'c', sizeof long_client - 1);
	long_client[sizeof long_client - 1] = 0;
	unilock_owner long_owner = owner3(long_client, "x", 1);
	const unilock_owner *bad_owners[] = {&nul_client, &empty_client, &nul_owner, &huge_owner, &big_owner,
					     &long_owner};
	static const uint32_t bad_enums[] = {0, 3, 99, 0x80000000u, UINT32_MAX};
	unilock_lock_req ok = req4(P, X, 50, 10), bad;
	unilock_lock_info holder;
	unilock_wait w = {1, NULL, 0};
	uint64_t id = 77;
	size_t n = 77, fi = 77, i, j;
	const uint8_t *big_file = (const uint8_t *)"0123456789";

	/* NULL handle, NULL file, bad file lengths. */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(NULL, FILE_A, FLEN, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, NULL, FLEN, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, NULL, 0, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, 0, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, big_file, UNILOCK_FILE_ID_MAX + 1, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, big_file, (size_t)1 << 40, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, big_file, SIZE_MAX, &o, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, NULL, &ok, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, &o, NULL, NULL));
	for (i = 0; i < ARRAY_LEN(bad_owners); i++) {
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, bad_owners[i], &ok, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, FILE_A, FLEN, bad_owners[i], &ok, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock(ul, FILE_A, FLEN, bad_owners[i], P, 0, 1));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_check_io(ul, FILE_A, FLEN, bad_owners[i], UNILOCK_READ, 0, 1));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_open(ul, FILE_A, FLEN, bad_owners[i], &n));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, FILE_A, FLEN, bad_owners[i], &ok, &w, &id, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel_owner(ul, FILE_A, FLEN, bad_owners[i], &n));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, bad_owners[i], &ok, 1, &fi, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, FILE_A, FLEN, bad_owners[i], &ok, 1, &fi));
	}
	/* Unknown flavours, types and flags. */
	for (i = 0; i < ARRAY_LEN(bad_enums); i++) {
		bad = ok;
		bad.flavour = bad_enums[i];
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, FILE_A, FLEN, &o, &bad, &w, &id, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock(ul, FILE_A, FLEN, &o, bad_enums[i], 0, 1));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_check_io(ul, FILE_A, FLEN, &o, bad_enums[i], 0, 1));
		bad = ok;
		bad.type = bad_enums[i];
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, &bad, 1, &fi, NULL));
		if (bad_enums[i] != 0 && bad_enums[i] != 3) {
			bad = ok;
			bad.flags = bad_enums[i];
			HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, FILE_A, FLEN, &o, &bad, NULL));
			HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, FILE_A, FLEN, &o, &bad, &w, &id, NULL));
		}
	}
	/* Ranges at the top of 2^64. */
	static const uint64_t bad_ranges[][2] = {{UINT64_MAX, 2}, {UINT64_MAX, UINT64_MAX - 1}, {3, UINT64_MAX - 1},
						 {UINT64_MAX - 5, 7}, {0, 0}};
	for (i = 0; i < ARRAY_LEN(bad_ranges); i++) {
		bad = req4(P, X, bad_ranges[i][0], bad_ranges[i][1]);
		HOSTILE(ul, UNILOCK_E_INVALID_RANGE, unilock_lock(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID_RANGE, unilock_test(ul, FILE_A, FLEN, &o, &bad, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID_RANGE, unilock_unlock(ul, FILE_A, FLEN, &o, P, bad_ranges[i][0], bad_ranges[i][1]));
		HOSTILE(ul, UNILOCK_E_INVALID_RANGE, unilock_lock_blocking(ul, FILE_A, FLEN, &o, &bad, &w, &id, NULL));
		if (bad_ranges[i][1] != 0) {
			bad.flavour = W;
			HOSTILE(ul, UNILOCK_E_INVALID_RANGE, unilock_lock(ul, FILE_A, FLEN, &o, &bad, NULL));
			HOSTILE(ul, UNILOCK_E_INVALID_RANGE,
				unilock_check_io(ul, FILE_A, FLEN, &o, UNILOCK_WRITE, bad_ranges[i][0], bad_ranges[i][1]));
		}
	}
	/* Test, check_io, release: NULL arguments. */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(NULL, FILE_A, FLEN, &o, &ok, &holder));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, FILE_A, FLEN, &o, NULL, &holder));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, NULL, 3, &o, &ok, &holder));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock(NULL, FILE_A, FLEN, &o, P, 0, 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock(ul, FILE_A, FLEN, NULL, P, 0, 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_check_io(NULL, FILE_A, FLEN, &o, UNILOCK_READ, 0, 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_check_io(ul, FILE_A, FLEN, NULL, UNILOCK_READ, 0, 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_open(NULL, FILE_A, FLEN, &o, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_open(ul, FILE_A, FLEN, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_open(ul, FILE_A, 0, &o, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_client(NULL, "nlm:a", &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_client(ul, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_client(ul, "", &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_client(ul, long_client, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_list_locks(NULL, FILE_A, FLEN, NULL, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_list_locks(ul, NULL, FLEN, NULL, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_list_locks(ul, FILE_A, 0, NULL, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_list_locks(ul, big_file, SIZE_MAX, NULL, NULL, &n));
	assert_int_equal(n, 77); /* out-parameters are untouched on failure */
	assert_int_equal(id, 77);

	/* Several elements: NULL, 0, counts no array can have (issue 14: n = 2^40 aborted the host on a
	 * failed allocation, SIZE_MAX built a slice past isize::MAX), a bad element in the middle. */
	unilock_lock_req elems[3] = {req4(W, X, 300, 1), req4(W, X, 310, 1), req4(W, X, 320, 1)};
	static const size_t huge[] = {(size_t)1 << 40, SIZE_MAX, SIZE_MAX / sizeof(unilock_lock_req) + 1,
				      UNILOCK_COUNT_MAX + 1};
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(NULL, FILE_A, FLEN, &o, elems, 3, &n, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, NULL, 3, &n, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, elems, 0, &n, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(NULL, FILE_A, FLEN, &o, elems, 3, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, FILE_A, FLEN, &o, NULL, 3, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, FILE_A, FLEN, &o, elems, 0, &n));
	for (i = 0; i < ARRAY_LEN(huge); i++) {
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, elems, huge[i], &n, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, FILE_A, FLEN, &o, elems, huge[i], &n));
	}
	for (j = 0; j < ARRAY_LEN(bad_enums); j++) {
		elems[1].flavour = bad_enums[j];
		n = 77;
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, elems, 3, &n, NULL));
		assert_int_equal(n, 1);
		n = 77;
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, FILE_A, FLEN, &o, elems, 3, &n));
		assert_int_equal(n, 1);
	}
	elems[1].flavour = P; /* mixed flavours */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, FILE_A, FLEN, &o, elems, 3, NULL, NULL));
}

/* Every call that takes a file id, with each bad (pointer, length): NULL with a length, an empty id,
 * one byte over UNILOCK_FILE_ID_MAX, and lengths no buffer has (refused before a slice is built). */
static void test_hostile_file_ids(void **state)
{
	const unilock *ul = UL;
	static uint8_t buf[256];
	const struct {
		const uint8_t *p;
		size_t len;
	} bad[] = {{NULL, 6}, {buf, 0}, {NULL, 0}, {buf, UNILOCK_FILE_ID_MAX + 1}, {buf, (size_t)1 << 40}, {buf, SIZE_MAX}};
	unilock_owner o = owner3("smb:b", "lctx-b", 7);
	unilock_lock_req r = req4(W, X, 0, 1);
	unilock_wait w = {1, NULL, 0};
	unilock_open_req q;
	unilock_open_result res;
	uint64_t id = 77;
	size_t n = 77, fi = 77, i;
	unilock_open_req_init(&q);
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		const uint8_t *f = bad[i].p;
		size_t l = bad[i].len;
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock(ul, f, l, &o, &r, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock(ul, f, l, &o, W, 200, 10));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_test(ul, f, l, &o, &r, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_many(ul, f, l, &o, &r, 1, &fi, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_unlock_many(ul, f, l, &o, &r, 1, &fi));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_check_io(ul, f, l, &o, UNILOCK_WRITE, 0, 1));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_release_open(ul, f, l, &o, &n));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_list_locks(ul, f, l, NULL, NULL, &n));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, f, l, &o, &r, &w, &id, NULL));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_watch(ul, f, l, 1, NULL, &id));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel_owner(ul, f, l, &o, &n));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, f, l, "smb:b", 2, &q, NULL, &res));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_close(ul, f, l, "smb:b", 1));
		if (f != NULL || l != 0) /* NULL with length 0 is the ack by key alone (SMB leases) */
			HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(ul, f, l, "smb:b", K1, 0));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_release(ul, f, l, "smb:b", K1));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(ul, f, l, "nfs:h", NULL, UNILOCK_TRIGGER_WRITE, NULL, &id));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(ul, f, l, "smb:b", 7, &n));
	}
	assert_int_equal(n, 77);
	assert_int_equal(id, 77);
}

/* ---- blocking requests and events -------------------------------------------------------------- */

static void test_hostile_event_calls(void **state)
{
	const unilock *ul = UL;
	unilock_owner o = owner3("nlm:h", "svid-h", 1);
	unilock_lock_req ok = req4(P, X, 50, 10);
	unilock_wait w = {1, NULL, 0};
	uint64_t id = 77;
	uint32_t outcome = 77;
	size_t n = 77;
	static const uint64_t bad_ids[] = {0, 1, 12345, UINT64_MAX};
	size_t i;

	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(NULL, FILE_A, FLEN, &o, &ok, &w, &id, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, FILE_A, FLEN, &o, &ok, NULL, &id, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, FILE_A, FLEN, &o, NULL, &w, &id, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lock_blocking(ul, NULL, FLEN, &o, &ok, &w, &id, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_watch(NULL, FILE_A, FLEN, 1, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_watch(ul, NULL, FLEN, 1, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_watch(ul, FILE_A, 0, 1, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_watch(ul, FILE_A, SIZE_MAX, UINT64_MAX, NULL, &id));
	for (i = 0; i < ARRAY_LEN(bad_ids); i++) {
		HOSTILE(ul, UNILOCK_E_NOT_FOUND, unilock_cancel(ul, bad_ids[i], &outcome));
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel(NULL, bad_ids[i], &outcome));
	}
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel_owner(NULL, FILE_A, FLEN, &o, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel_owner(ul, NULL, FLEN, &o, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_cancel_owner(ul, FILE_A, FLEN, NULL, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_process_events(NULL, &n));
	assert_int_equal(id, 77);
	assert_int_equal(outcome, 77);
	assert_int_equal(n, 77);
	/* Calls that answer a number: a NULL handle gets the documented "none". */
	assert_int_equal(unilock_event_fd(NULL), -1);
	assert_int_equal(unilock_next_timeout_ms(NULL), -1);
	calls += 2;
}

/* ---- leases ------------------------------------------------------------------------------------ */

static void test_hostile_lease_calls(void **state)
{
	const unilock *ul = UL;
	unilock_open_req r;
	unilock_open_result res;
	unilock_wait w = {1, NULL, 0};
	uint64_t id = 77;
	static const uint32_t bad_kinds[] = {5, 99, 0x80000000u, UINT32_MAX};
	static const uint32_t bad_states[] = {0x08, 0x80, 0xff, UINT32_MAX};
	static const uint32_t bad_triggers[] = {0, 7, 99, UINT32_MAX};
	size_t i;

	unilock_open_req_init(&r);
	r.lease_kind = UNILOCK_LEASE_KIND_LEASE;
	r.requested = UNILOCK_LEASE_R;
	r.lease_version = 2;
	memcpy(r.lease_key, K1, 16);
	r.break_timeout_ms = UINT64_MAX;
	r.file_size = UINT64_MAX;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(NULL, FILE_A, FLEN, "smb:h", 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, NULL, FLEN, "smb:h", 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, 0, "smb:h", 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, SIZE_MAX, "smb:h", 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, NULL, 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "", 1, &r, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "smb:h", 1, NULL, NULL, &res));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "smb:h", 1, &r, NULL, NULL));
	for (i = 0; i < ARRAY_LEN(bad_kinds); i++) {
		unilock_open_req b = r;
		b.lease_kind = bad_kinds[i];
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "smb:h", 1, &b, NULL, &res));
		b = r;
		b.requested = bad_states[i];
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "smb:h", 1, &b, &w, &res));
		b = r;
		b.flags = 0x80000000u >> i;
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_open(ul, FILE_A, FLEN, "smb:h", 1, &b, NULL, &res));
	}
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_close(NULL, FILE_C, FLEN, "smb:b", 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_close(ul, NULL, FLEN, "smb:b", 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_close(ul, FILE_C, FLEN, NULL, 1));
	HOSTILE(ul, UNILOCK_E_NOT_FOUND, unilock_file_close(ul, FILE_C, FLEN, "smb:b", UINT64_MAX));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(NULL, FILE_C, FLEN, "smb:b", K1, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(ul, NULL, FLEN, "smb:b", K1, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(ul, FILE_C, FLEN, NULL, K1, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(ul, FILE_C, FLEN, "smb:b", NULL, 0));
	for (i = 0; i < ARRAY_LEN(bad_states); i++)
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_ack(ul, FILE_C, FLEN, "smb:b", K1, bad_states[i]));
	HOSTILE(ul, UNILOCK_E_NO_BREAK, unilock_lease_ack(ul, FILE_C, FLEN, "smb:b", K1, UNILOCK_LEASE_R));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_release(NULL, FILE_C, FLEN, "smb:b", K1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_release(ul, NULL, FLEN, "smb:b", K1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_release(ul, FILE_C, FLEN, NULL, K1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_lease_release(ul, FILE_C, FLEN, "smb:b", NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(NULL, FILE_C, FLEN, "nfs:h", NULL, UNILOCK_TRIGGER_WRITE, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(ul, NULL, FLEN, "nfs:h", NULL, UNILOCK_TRIGGER_WRITE, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(ul, FILE_C, FLEN, NULL, NULL, UNILOCK_TRIGGER_WRITE, NULL, &id));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(ul, FILE_C, FLEN, "", NULL, UNILOCK_TRIGGER_WRITE, NULL, &id));
	for (i = 0; i < ARRAY_LEN(bad_triggers); i++)
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_break_trigger(ul, FILE_C, FLEN, "nfs:h", NULL, bad_triggers[i], &w, &id));
	assert_int_equal(id, 77);
}

/* ---- grace, clients, metrics, shared mode, log, handle -------------------------------------------- */

static int32_t client_visit(void *user_data, const unilock_client_info *c)
{
	(void)c;
	++*(size_t *)user_data;
	return 0;
}

static void test_hostile_other_calls(void **state)
{
	const unilock *ul = UL;
	const char *clients[3] = {"nfs:a", NULL, "nfs:c"};
	unilock_grace_info gi;
	unilock_metrics m;
	char buf[8];
	size_t n = 77, len = 77;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];

	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_status(NULL, &gi));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_status(ul, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_start(NULL, clients, 1, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_start(ul, NULL, 2, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_start(ul, clients, 2, UINT64_MAX));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_start(ul, clients, (size_t)1 << 40, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_start(ul, clients, SIZE_MAX, 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_grace_end(NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_reclaim_complete(NULL, "nfs:a"));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_reclaim_complete(ul, NULL));
	HOSTILE(ul, UNILOCK_E_NO_GRACE, unilock_reclaim_complete(ul, "nfs:a"));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_flush(NULL));
	assert_int_equal(unilock_grace_status(ul, &gi), UNILOCK_OK);
	assert_int_equal(gi.active, 0); /* no failed grace_start started one */

	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_register(NULL, "nfs:a", "nfs", "10.0.0.1", 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_register(ul, NULL, "nfs", "10.0.0.1", 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_register(ul, "", "nfs", "10.0.0.1", 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_register(ul, "nfs:a", NULL, "10.0.0.1", 0));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_register(ul, LONG_CLIENT, "nfs", "10.0.0.1", UINT64_MAX));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_disconnect(NULL, "nfs:a", &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_disconnect(ul, NULL, &n));
	HOSTILE(ul, UNILOCK_E_NOT_FOUND, unilock_client_disconnect(ul, "nfs:unknown", &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_set_adapter_limit(NULL, "nfs", 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_set_adapter_limit(ul, NULL, 1));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_client_list(NULL, client_visit, &n, &len));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_get(NULL, &m));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_get(ul, NULL));
	m.size = 0;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_get(ul, &m));
	m.size = sizeof(size_t) - 1;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_get(ul, &m));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_prometheus(NULL, buf, sizeof buf, &len));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_metrics_prometheus(ul, NULL, 100, &len));
	HOSTILE(ul, UNILOCK_E_LIMIT, unilock_metrics_prometheus(ul, buf, sizeof buf, &len));
	assert_true(len > sizeof buf); /* the needed length, as documented */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_process_gone(NULL, 1, 0, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_process_gone(ul, UINT32_MAX, UINT64_MAX, &n)); /* not shared */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(NULL, FILE_A, FLEN, "smb:b", 7, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(ul, FILE_A, FLEN, "", 7, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(ul, FILE_A, FLEN, NULL, 7, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(ul, FILE_A, SIZE_MAX, "smb:b", 7, &n));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_rebind_open(ul, FILE_A, FLEN, "smb:b", UINT64_MAX, &n)); /* not shared */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_set_log(NULL, NULL, 6));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_set_log(NULL, NULL, UINT32_MAX));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_file_id_make(UINT64_MAX, UINT64_MAX, UINT64_MAX, NULL));
	assert_int_equal(unilock_file_id_make(UINT64_MAX, UINT64_MAX, UINT64_MAX, fid), UNILOCK_OK);
	assert_int_equal(n, 77);
	HOSTILE(ul, UNILOCK_E_INTERNAL, unilock_debug_panic());
	/* The calls that cannot fail answer sanely for any input. */
	assert_string_equal(unilock_strerror(UINT32_MAX), "unknown status");
	assert_string_equal(unilock_strerror(2), "unknown status");
	assert_non_null(unilock_errdetail());
	assert_non_null(unilock_libversion());
	assert_true(unilock_libversion_number() == UNILOCK_VERSION_NUMBER);
	unilock_config_init(NULL);
	unilock_close(NULL);
	calls += 7;
}

/* unilock_open with hostile configurations: refused, nothing written to `out`. */
static void test_hostile_open(void **state)
{
	const unilock *ul = UL;
	unilock_config cfg;
	unilock *h;
	/* Sizes that end inside a field (issue 14: 20 and 44 end inside event_fn and db_path, copied half
	 * a pointer and crashed later), and sizes no struct has. */
	static const size_t bad_sizes[] = {0, 1, 7, 9, 20, 28, 36, 44, 60, 68, 92, (size_t)1 << 40, SIZE_MAX};
	size_t i;

	for (i = 0; i < ARRAY_LEN(bad_sizes); i++) {
		if (bad_sizes[i] >= sizeof cfg)
			continue;
		unilock_config_init(&cfg);
		cfg.size = bad_sizes[i];
		cfg.event_fn = (unilock_event_fn)(uintptr_t)0x1234567887654321ull; /* never to be called */
		cfg.db_path = (const char *)(uintptr_t)0x8765432112345678ull;   /* never to be read */
		h = (unilock *)(uintptr_t)1;
		HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
		assert_ptr_equal(h, (unilock *)(uintptr_t)1);
		assert_true(strlen(unilock_errdetail()) > 0);
	}
	struct {
		unilock_config c;
		uint8_t extra[64];
	} big;
	memset(&big, 0, sizeof big);
	unilock_config_init(&big.c);
	big.c.size = (size_t)1 << 40; /* larger than any struct: refused before anything past ours is read */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&big.c, &h));
	big.c.size = SIZE_MAX;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&big.c, &h));

	unilock_config_init(&cfg);
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, NULL));
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(NULL, NULL));
	cfg.event_mode = 2;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	cfg.event_mode = UINT32_MAX;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	unilock_config_init(&cfg);
	cfg.durability = 3;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	cfg.durability = UINT32_MAX;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	unilock_config_init(&cfg);
	cfg.flags = UINT32_MAX;
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_SHARED; /* shared mode needs a database */
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	unilock_config_init(&cfg);
	cfg.db_path = "";
	HOSTILE(ul, UNILOCK_E_INVALID, unilock_open(&cfg, &h));
	cfg.db_path = "/nonexistent-dir-of-unilock/x.db";
	HOSTILE(ul, UNILOCK_E_STORE, unilock_open(&cfg, &h));
	assert_true(strlen(unilock_errdetail()) > 0);
}

/* ---- regressions: arithmetic on hostile values (issue 14) ---------------------------------------- */

static unilock *open_with(uint64_t total, uint64_t per_client, uint64_t break_ms)
{
	unilock_config cfg;
	unilock *ul = NULL;
	unilock_config_init(&cfg);
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.max_locks_total = total;
	cfg.max_locks_per_client = per_client;
	cfg.lease_break_timeout_ms = break_ms;
	assert_int_equal(unilock_open(&cfg, &ul), UNILOCK_OK);
	return ul;
}

/* Limits of 2^63 or more refused every lock (an `as i64` cast). */
static void test_huge_limits_are_limits(void **state)
{
	static const uint64_t limits[] = {UINT64_MAX, (uint64_t)1 << 63, ((uint64_t)1 << 63) + 1};
	size_t i;
	(void)state;
	for (i = 0; i < ARRAY_LEN(limits); i++) {
		unilock *ul = open_with(limits[i], limits[i], 0);
		unilock_owner o = owner3("nlm:a", "a", 0);
		unilock_lock_req r = req4(P, X, 0, 10), r2 = req4(P, X, 20, 10);
		assert_status(unilock_lock(ul, FILE_A, FLEN, &o, &r, NULL), UNILOCK_OK);
		assert_status(unilock_lock(ul, FILE_A, FLEN, &o, &r2, NULL), UNILOCK_OK);
		unilock_close(ul);
	}
}

/* timeout_ms = UINT64_MAX is forever: now + t overflowed and the wait expired at once. */
static void test_uint64_max_timeout_waits_forever(void **state)
{
	(void)state;
	unilock *ul = open_with(0, 0, 0);
	unilock_owner a = owner3("nlm:a", "a", 0), b = owner3("nlm:b", "b", 0);
	unilock_lock_req r = req4(P, X, 0, 10);
	unilock_wait w = {9, NULL, UINT64_MAX};
	uint64_t id = 0;
	size_t n = 99;
	uint32_t outcome = 0;
	assert_status(unilock_lock(ul, FILE_A, FLEN, &a, &r, NULL), UNILOCK_OK);
	assert_status(unilock_lock_blocking(ul, FILE_A, FLEN, &b, &r, &w, &id, NULL), UNILOCK_PENDING);
	assert_int_equal(unilock_next_timeout_ms(ul), -1); /* no timer at all */
	assert_status(unilock_process_events(ul, &n), UNILOCK_OK);
	assert_int_equal(n, 0); /* no UNILOCK_E_TIMEOUT event */
	assert_status(unilock_cancel(ul, id, &outcome), UNILOCK_OK);
	assert_int_equal(outcome, UNILOCK_CANCELLED);
	unilock_close(ul);
}

struct events {
	int breaks, revoked;
};

static void count_events(void *user_data, const unilock_event *e)
{
	struct events *ev = user_data;
	if (e->type == UNILOCK_EVENT_LEASE_BREAK)
		ev->breaks++;
	if (e->type == UNILOCK_EVENT_LEASE_REVOKED)
		ev->revoked++;
}

/* lease_break_timeout_ms = UINT64_MAX (config or per open): a break never times out (it was revoked
 * at once). */
static void test_uint64_max_break_timeout_never_revokes(void **state)
{
	int per_open;
	(void)state;
	for (per_open = 0; per_open < 2; per_open++) {
		struct events ev = {0, 0};
		unilock_config cfg;
		unilock *ul = NULL;
		unilock_config_init(&cfg);
		cfg.event_mode = UNILOCK_EVENTS_LOOP;
		cfg.event_fn = count_events;
		cfg.event_user_data = &ev;
		cfg.lease_break_timeout_ms = per_open ? 0 : UINT64_MAX;
		assert_status(unilock_open(&cfg, &ul), UNILOCK_OK);
		unilock_open_req r;
		unilock_open_result res;
		unilock_open_req_init(&r);
		r.lease_kind = UNILOCK_LEASE_KIND_LEASE;
		r.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H;
		r.lease_version = 2;
		memcpy(r.lease_key, K1, 16);
		r.break_timeout_ms = per_open ? UINT64_MAX : 0;
		assert_status(unilock_file_open(ul, FILE_A, FLEN, "smb:a", 1, &r, NULL, &res), UNILOCK_OK);
		assert_int_equal(res.state, UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H);
		uint64_t id = 0;
		unilock_wait w = {1, NULL, 0};
		uint32_t st = unilock_break_trigger(ul, FILE_A, FLEN, "nfs:b", NULL, UNILOCK_TRIGGER_WRITE, &w, &id);
		assert_true(st == UNILOCK_PENDING || st == UNILOCK_OK);
		size_t n;
		assert_status(unilock_process_events(ul, &n), UNILOCK_OK);
		assert_status(unilock_process_events(ul, &n), UNILOCK_OK);
		assert_int_equal(ev.breaks, 1);
		assert_int_equal(ev.revoked, 0);
		unilock_close(ul);
	}
}

/* batch_ms = UINT64_MAX: no batch timer (now + batch_ms wrapped to a timer due at once). */
static void test_uint64_max_batch_ms_arms_no_timer(void **state)
{
	(void)state;
	char path[] = "/tmp/unilock-hostile-batch-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	unilock_config cfg;
	unilock *ul = NULL;
	unilock_config_init(&cfg);
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.db_path = path;
	cfg.durability = UNILOCK_DURABILITY_BATCH;
	cfg.batch_ms = UINT64_MAX;
	assert_status(unilock_open(&cfg, &ul), UNILOCK_OK);
	unilock_owner a = owner3("nlm:a", "a", 0);
	unilock_lock_req r = req4(P, X, 0, 10);
	assert_status(unilock_lock(ul, FILE_A, FLEN, &a, &r, NULL), UNILOCK_OK);
	assert_int_equal(unilock_next_timeout_ms(ul), -1);
	assert_status(unilock_flush(ul), UNILOCK_OK);
	unilock_close(ul);
	char side[64];
	unlink(path);
	snprintf(side, sizeof side, "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", path);
	unlink(side);
}

/* ---- regression: unilock_errdetail() is never stale (issue 13) ---------------------------------- */

static void test_errdetail_is_never_stale(void **state)
{
	const unilock *ul = UL;
	unilock_owner bad = owner3("", "x", 0), o = owner3("nlm:h", "h", 0);
	unilock_lock_req r = req4(P, X, 0, 10);
	assert_status(unilock_lock(ul, FILE_A, FLEN, &bad, &r, NULL), UNILOCK_E_INVALID);
	assert_non_null(strstr(unilock_errdetail(), "client id"));
	/* FILE_A bytes 0..99 are nlm:a's: a conflict, which has no detail of its own. */
	assert_status(unilock_lock(ul, FILE_A, FLEN, &o, &r, NULL), UNILOCK_E_CONFLICT);
	assert_string_equal(unilock_errdetail(), "");
	assert_status(unilock_lock(ul, NULL, FLEN, &o, &r, NULL), UNILOCK_E_INVALID);
	assert_true(strlen(unilock_errdetail()) > 0);
	assert_status(unilock_unlock(ul, FILE_A, FLEN, &o, W, 0, 10), UNILOCK_E_RANGE_NOT_LOCKED);
	assert_string_equal(unilock_errdetail(), "");
	assert_status(unilock_debug_panic(), UNILOCK_E_INTERNAL);
	assert_true(strlen(unilock_errdetail()) > 0);
	assert_status(unilock_cancel(ul, 424242, NULL), UNILOCK_E_NOT_FOUND);
	assert_string_equal(unilock_errdetail(), "");
}

static void test_report(void **state)
{
	(void)state;
	printf("hostile calls: %zu, each with the table unchanged\n", calls);
	assert_true(calls > 250);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_lock_calls),
		cmocka_unit_test(test_hostile_file_ids),
		cmocka_unit_test(test_hostile_event_calls),
		cmocka_unit_test(test_hostile_lease_calls),
		cmocka_unit_test(test_hostile_other_calls),
		cmocka_unit_test(test_hostile_open),
		cmocka_unit_test(test_errdetail_is_never_stale),
		cmocka_unit_test(test_report),
	};
	const struct CMUnitTest regressions[] = {
		cmocka_unit_test(test_huge_limits_are_limits),
		cmocka_unit_test(test_uint64_max_timeout_waits_forever),
		cmocka_unit_test(test_uint64_max_break_timeout_never_revokes),
		cmocka_unit_test(test_uint64_max_batch_ms_arms_no_timer),
	};
	int failed = cmocka_run_group_tests_name("hostile calls", tests, setup, teardown);
	failed += cmocka_run_group_tests_name("hostile values", regressions, NULL, NULL);
	return failed;
}
