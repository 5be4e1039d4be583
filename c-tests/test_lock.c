/*
 * cmocka tests of the byte-range lock section of unilock.h: unilock_lock, unilock_unlock, unilock_test,
 * unilock_lock_many, unilock_unlock_many, unilock_check_io, unilock_release_open,
 * unilock_release_client and unilock_list_locks.
 *
 * Semantics follow SPEC.md sections 1-3 and 8; the Windows cases mirror Samba's smbtorture smb2.lock
 * tests (valid-request, lock, rw-shared, rw-exclusive, auto-unlock, zerobytelength, unlock,
 * multiple-unlock, stacking) expressed as calls on one lock table: an SMB handle is an owner with its
 * own open id.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

#define UL ((const unilock *)*state)

/* POSIX owners: NLM hosts. A and B share owner bytes but not the client. */
#define OWN_A owner3("nlm:hostA", "svid-1", 0)
#define OWN_B owner3("nlm:hostB", "svid-1", 0)
/* Windows owners: two opens (handles) of one SMB owner, and another client. */
#define OWN_H1 owner3("smb:guid-1", "lctx", 1)
#define OWN_H2 owner3("smb:guid-1", "lctx", 2)
#define OWN_H3 owner3("smb:guid-3", "lctx", 1)

#define EP(ty, off, len, client, owner) {P, (ty), (off), (len), (client), (owner), 0}
#define EW(ty, off, len, client, owner, open) {W, (ty), (off), (len), (client), (owner), (open)}

static const uint64_t U64MAX = UINT64_MAX;
static const uint64_t TWO63 = (uint64_t)1 << 63;

/* ---- argument checking, common to every call that takes (file, owner) -------------------------- */

typedef uint32_t (*owner_call)(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o);

static uint32_t call_lock(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	unilock_lock_req r = req4(W, S, 0, 10);
	unilock_lock_info h;
	uint32_t s;
	poison(&h, sizeof h);
	s = unilock_lock(ul, f, flen, o, &r, &h);
	if (s != UNILOCK_E_CONFLICT)
		assert_true(is_poisoned(&h, sizeof h));
	return s;
}

static uint32_t call_unlock(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	return unilock_unlock(ul, f, flen, o, P, 0, 10);
}

static uint32_t call_test(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	unilock_lock_req r = req4(W, X, 0, 10);
	unilock_lock_info h;
	uint32_t s;
	poison(&h, sizeof h);
	s = unilock_test(ul, f, flen, o, &r, &h);
	if (s != UNILOCK_E_CONFLICT)
		assert_true(is_poisoned(&h, sizeof h));
	return s;
}

static uint32_t call_lock_many(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	unilock_lock_req r[2];
	unilock_lock_info h;
	uint32_t s;
	r[0] = req4(W, S, 0, 10);
	r[1] = req4(W, S, 20, 10);
	poison(&h, sizeof h);
	s = unilock_lock_many(ul, f, flen, o, r, 2, NULL, &h);
	if (s != UNILOCK_E_CONFLICT)
		assert_true(is_poisoned(&h, sizeof h));
	return s;
}

static uint32_t call_unlock_many(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	unilock_lock_req r[2];
	r[0] = req4(P, S, 0, 10);
	r[1] = req4(P, S, 20, 10);
	return unilock_unlock_many(ul, f, flen, o, r, 2, NULL);
}

static uint32_t call_check_io(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	return unilock_check_io(ul, f, flen, o, UNILOCK_WRITE, 0, 10);
}

static uint32_t call_release_open(const unilock *ul, const uint8_t *f, size_t flen, const unilock_owner *o)
{
	size_t n;
	uint32_t s;
	poison(&n, sizeof n);
	s = unilock_release_open(ul, f, flen, o, &n);
	if (s != UNILOCK_OK)
		assert_true(is_poisoned(&n, sizeof n));
	return s;
}

/* Puts some locks on FILE_A and FILE_B so that "unchanged" means something. */
static void populate(const unilock *ul)
{
	unilock_owner a = OWN_A, b = OWN_B, h1 = OWN_H1, h3 = OWN_H3;
	LOCK_OK(ul, FILE_A, &a, P, X, 1000, 10);
	LOCK_OK(ul, FILE_A, &b, P, S, 2000, EOF_LEN);
	LOCK_OK(ul, FILE_A, &h1, W, S, 0, 10);
	LOCK_OK(ul, FILE_A, &h3, W, X, 500, 0);
	LOCK_OK(ul, FILE_B, &h1, W, X, 0, 100);
}

static void check_owner_file_args(const unilock *ul, owner_call call)
{
	char client256[257], client255[256];
	static uint8_t big_owner[UNILOCK_OWNER_MAX + 1];
	uint8_t fid129[UNILOCK_FILE_ID_MAX + 1];
	unilock_owner good = owner3("smb:args", "args-owner", 42), o;

	memset(client256, 'c', 256);
	client256[256] = 0;
	memset(client255, 'd', 255);
	client255[255] = 0;
	memset(big_owner, 0x5a, sizeof big_owner);
	memset(fid129, 'f', sizeof fid129);

	populate(ul);

	/* NULL for each pointer argument. */
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(NULL, FILE_A, FLEN, &good));
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, NULL, FLEN, &good));
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, NULL));
	o = good;
	o.client = NULL;
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, &o));
	o = good;
	o.owner = NULL; /* NULL owner bytes with a non-zero length */
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, &o));

	/* File ids: empty, NULL and empty, oversize. */
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, 0, &good));
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, NULL, 0, &good));
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, fid129, sizeof fid129, &good));

	/* Client ids: empty, 256 bytes. */
	o = good;
	o.client = "";
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, &o));
	o.client = client256;
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, &o));

	/* Owner: 2049 bytes. */
	o = good;
	o.owner = big_owner;
	o.owner_len = UNILOCK_OWNER_MAX + 1;
	EXPECT_UNCHANGED(ul, UNILOCK_E_INVALID, call(ul, FILE_A, FLEN, &o));

	/* The largest valid sizes and an empty owner are accepted. */
	assert_status(call(ul, fid129, UNILOCK_FILE_ID_MAX, &good), UNILOCK_OK);
	assert_status(call(ul, fid129, 1, &good), UNILOCK_OK);
	o = good;
	o.client = client255;
	assert_status(call(ul, FILE_C, FLEN, &o), UNILOCK_OK);
	o = good;
	o.owner = big_owner;
	o.owner_len = UNILOCK_OWNER_MAX;
	assert_status(call(ul, FILE_C, FLEN, &o), UNILOCK_OK);
	o = good;
	o.owner = NULL;
	o.owner_len = 0;
	assert_status(call(ul, FILE_C, FLEN, &o), UNILOCK_OK);
}

static void test_lock_args(void **state)
{
	check_owner_file_args(UL, call_lock);
}
static void test_unlock_args(void **state)
{
	check_owner_file_args(UL, call_unlock);
}
static void test_test_args(void **state)
{
	check_owner_file_args(UL, call_test);
}
static void test_lock_many_args(void **state)
{
	check_owner_file_args(UL, call_lock_many);
}
static void test_unlock_many_args(void **state)
{
	check_owner_file_args(UL, call_unlock_many);
}
static void test_check_io_args(void **state)
{
	check_owner_file_args(UL, call_check_io);
}
static void test_release_open_args(void **state)
{
	check_owner_file_args(UL, call_release_open);
}

/* The request pointer of lock/test, the element arrays of the _many calls. */
static void test_null_request(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_req r = req4(W, X, 0, 10);
	size_t idx;
	populate(UL);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock(UL, FILE_A, FLEN, &h1, NULL, NULL));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_test(UL, FILE_A, FLEN, &h1, NULL, NULL));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, NULL, 1, &idx, NULL));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, &r, 0, &idx, NULL));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_unlock_many(UL, FILE_A, FLEN, &h1, NULL, 1, &idx));
	r = req4(W, X, 0, 10);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_unlock_many(UL, FILE_A, FLEN, &h1, &r, 0, &idx));
}

/* Unknown flavour, type and access numbers. */
static void test_unknown_enums(void **state)
{
	static const uint32_t bad[] = {0, 3, 99, UINT32_MAX};
	unilock_owner h1 = OWN_H1;
	unilock_lock_info h;
	size_t i;
	populate(UL);
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		unilock_lock_req r = req4(bad[i], X, 5000, 10);
		unilock_lock_req two[2];
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock(UL, FILE_A, FLEN, &h1, &r, &h));
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_test(UL, FILE_A, FLEN, &h1, &r, &h));
		r = req4(W, bad[i], 5000, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock(UL, FILE_A, FLEN, &h1, &r, &h));
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_test(UL, FILE_A, FLEN, &h1, &r, &h));
		r = req4(P, bad[i], 5000, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock(UL, FILE_A, FLEN, &h1, &r, &h));
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_test(UL, FILE_A, FLEN, &h1, &r, &h));
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_unlock(UL, FILE_A, FLEN, &h1, bad[i], 0, 10));
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID,
				 unilock_check_io(UL, FILE_A, FLEN, &h1, bad[i], 6000, 10));
		/* In an element array: a bad element after a good one takes nothing. */
		two[0] = req4(W, X, 6000, 10);
		two[1] = req4(W, bad[i], 7000, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID,
				 unilock_lock_many(UL, FILE_A, FLEN, &h1, two, 2, NULL, NULL));
		two[1] = req4(bad[i], X, 7000, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID,
				 unilock_lock_many(UL, FILE_A, FLEN, &h1, two, 2, NULL, NULL));
		two[0] = req4(W, S, 0, 10); /* h1 holds this one */
		two[1] = req4(bad[i], S, 0, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_unlock_many(UL, FILE_A, FLEN, &h1, two, 2, NULL));
	}
}

/*
 * Regression test (fixed): unilock_lock_many / unilock_unlock_many document that `failed_index`
 * "on failure receives the index of the element that failed", and do write it for a bad range, but an
 * element with an unknown flavour or type leaves it unwritten.
 */
static void test_many_failed_index_for_unknown_enum(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_req r[3];
	size_t idx;
	r[0] = req4(W, X, 0, 10);
	r[1] = req4(W, S, 20, 10);
	r[2] = req4(W, 99, 40, 10);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 3, &idx, NULL));
	assert_int_equal(idx, 2);
	r[2] = req4(99, S, 40, 10);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 3, &idx, NULL));
	assert_int_equal(idx, 2);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 3, &idx));
	assert_int_equal(idx, 2);
}

/* POSIX and Windows range validation (SPEC.md section 2). */
static void test_invalid_ranges(void **state)
{
	static const struct {
		uint32_t flavour;
		uint64_t offset, length;
		uint32_t expected;
	} cases[] = {
		{P, 0, 0, UNILOCK_E_INVALID_RANGE},              /* POSIX length 0 */
		{P, 12345, 0, UNILOCK_E_INVALID_RANGE},          /* POSIX length 0 */
		{P, UINT64_MAX, 2, UNILOCK_E_INVALID_RANGE},     /* ends past 2^64 */
		{P, 3, UINT64_MAX - 1, UNILOCK_E_INVALID_RANGE}, /* ends at 2^64 + 1 */
		{P, (uint64_t)1 << 63, ((uint64_t)1 << 63) + 1, UNILOCK_E_INVALID_RANGE},
		{P, UINT64_MAX, 1, UNILOCK_OK},                  /* the last byte */
		{P, 1, UINT64_MAX - 1, UNILOCK_OK},              /* ends exactly at 2^64 */
		{P, (uint64_t)1 << 63, (uint64_t)1 << 63, UNILOCK_OK},
		{P, UINT64_MAX, UNILOCK_TO_EOF, UNILOCK_OK},     /* TO_EOF is always valid */
		{W, UINT64_MAX, 2, UNILOCK_E_INVALID_RANGE},
		{W, 2, UINT64_MAX, UNILOCK_E_INVALID_RANGE},
		{W, UINT64_MAX, UINT64_MAX, UNILOCK_E_INVALID_RANGE}, /* smbtorture valid-request */
		{W, (uint64_t)1 << 63, ((uint64_t)1 << 63) + 1, UNILOCK_E_INVALID_RANGE},
		{W, UINT64_MAX, 1, UNILOCK_OK},
		{W, UINT64_MAX, 0, UNILOCK_OK},
		{W, 1, UINT64_MAX, UNILOCK_OK}, /* a literal length ending exactly at 2^64 */
		{W, 0, 0, UNILOCK_OK},
	};
	size_t i;
	populate(UL);
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		/* A fresh owner per case, so the valid cases do not collide with each other. */
		char client[32];
		unilock_owner o;
		unilock_lock_req r = req4(cases[i].flavour, S, cases[i].offset, cases[i].length);
		unilock_lock_req two[2];
		unilock_lock_info h;
		size_t idx;
		snprintf(client, sizeof client, "range-%zu", i);
		o = owner3(client, "o", 1);
		if (cases[i].expected != UNILOCK_OK) {
			EXPECT_UNCHANGED(UL, cases[i].expected, unilock_lock(UL, FILE_C, FLEN, &o, &r, &h));
			EXPECT_UNCHANGED(UL, cases[i].expected, unilock_test(UL, FILE_C, FLEN, &o, &r, &h));
			EXPECT_UNCHANGED(UL, cases[i].expected,
					 unilock_unlock(UL, FILE_C, FLEN, &o, cases[i].flavour, cases[i].offset,
							cases[i].length));
			two[0] = req4(cases[i].flavour, S, 10, 10);
			two[1] = r;
			idx = 12345;
			EXPECT_UNCHANGED(UL, cases[i].expected,
					 unilock_lock_many(UL, FILE_C, FLEN, &o, two, 2, &idx, NULL));
			assert_int_equal(idx, 1);
			two[0] = r;
			idx = 12345;
			EXPECT_UNCHANGED(UL, cases[i].expected,
					 unilock_unlock_many(UL, FILE_C, FLEN, &o, two, 2, &idx));
			assert_int_equal(idx, 0);
		} else {
			assert_status(unilock_test(UL, FILE_C, FLEN, &o, &r, NULL), UNILOCK_OK);
			assert_status(unilock_lock(UL, FILE_C, FLEN, &o, &r, NULL), UNILOCK_OK);
			assert_status(unilock_unlock(UL, FILE_C, FLEN, &o, cases[i].flavour, cases[i].offset,
						     cases[i].length),
				      UNILOCK_OK);
		}
	}
	assert_int_equal(lock_count(UL, FILE_C, FLEN), 0);
}

/* File ids are opaque bytes: embedded NULs count, a prefix is another file. */
static void test_file_ids_are_opaque(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	unilock_lock_req r = req4(W, X, 0, 10);
	uint8_t id[UNILOCK_FILE_ID_MAX];
	const uint8_t nul1[3] = {'a', 0, 'b'}, nul2[3] = {'a', 0, 'c'};
	memset(id, 0x11, sizeof id);
	assert_status(unilock_lock(UL, id, sizeof id, &h1, &r, NULL), UNILOCK_OK);
	assert_status(unilock_lock(UL, id, sizeof id, &h3, &r, NULL), UNILOCK_E_CONFLICT);
	assert_status(unilock_lock(UL, id, sizeof id - 1, &h3, &r, NULL), UNILOCK_OK);
	assert_status(unilock_lock(UL, nul1, 3, &h1, &r, NULL), UNILOCK_OK);
	assert_status(unilock_lock(UL, nul2, 3, &h3, &r, NULL), UNILOCK_OK);
	assert_status(unilock_lock(UL, nul1, 1, &h3, &r, NULL), UNILOCK_OK); /* "a" */
	assert_status(unilock_lock(UL, nul1, 3, &h3, &r, NULL), UNILOCK_E_CONFLICT);
	assert_int_equal(lock_count(UL, id, sizeof id), 1);
	assert_int_equal(lock_count(UL, id, sizeof id - 1), 1);
}

/* A canonical id from unilock_file_id_make names one file whatever adapter built it. */
static void test_canonical_file_id(void **state)
{
	uint8_t a[UNILOCK_FILE_ID_CANONICAL_LEN], b[UNILOCK_FILE_ID_CANONICAL_LEN];
	unilock_owner nlm = owner3("nlm:host", "svid", 0), smb = owner3("smb:guid", "lctx", 7);
	unilock_lock_req r = req4(P, X, 0, 100);
	unilock_lock_info h;
	assert_status(unilock_file_id_make(64769, 1234567, 0, a), UNILOCK_OK);
	assert_status(unilock_file_id_make(64769, 1234567, 0, b), UNILOCK_OK);
	assert_status(unilock_lock(UL, a, sizeof a, &nlm, &r, NULL), UNILOCK_OK);
	r = req4(W, S, 50, 1);
	assert_status(unilock_lock(UL, b, sizeof b, &smb, &r, &h), UNILOCK_E_CONFLICT);
	assert_holder(&h, P, X, 0, 100, "nlm:host", "svid", 0);
	assert_status(unilock_file_id_make(64769, 1234567, 1, b), UNILOCK_OK); /* another generation */
	assert_status(unilock_lock(UL, b, sizeof b, &smb, &r, NULL), UNILOCK_OK);
}

/* ---- POSIX flavour ---------------------------------------------------------------------------- */

static void test_posix_merge(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 10);
	LOCK_OK(UL, FILE_A, &a, P, S, 10, 10); /* touching: merged */
	assert_locks(UL, FILE_A, EP(S, 0, 20, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, S, 30, 10);
	assert_locks(UL, FILE_A, EP(S, 0, 20, "nlm:hostA", "svid-1"), EP(S, 30, 10, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, S, 15, 20); /* overlaps both: one lock */
	assert_locks(UL, FILE_A, EP(S, 0, 40, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, X, 40, 10); /* touching, other type: not merged */
	LOCK_OK(UL, FILE_A, &a, P, X, 50, 5);  /* touching exclusive: merged */
	LOCK_OK(UL, FILE_A, &b, P, X, 55, 5);  /* touching, other owner: not merged */
	assert_locks(UL, FILE_A, EP(S, 0, 40, "nlm:hostA", "svid-1"), EP(X, 40, 15, "nlm:hostA", "svid-1"),
		     EP(X, 55, 5, "nlm:hostB", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, S, 5, 10); /* inside an own lock of the same type: no change */
	assert_locks(UL, FILE_A, EP(S, 0, 40, "nlm:hostA", "svid-1"), EP(X, 40, 15, "nlm:hostA", "svid-1"),
		     EP(X, 55, 5, "nlm:hostB", "svid-1"));
	/* A gap of one byte is not touching. */
	LOCK_OK(UL, FILE_B, &a, P, X, 0, 10);
	LOCK_OK(UL, FILE_B, &a, P, X, 11, 10);
	assert_locks(UL, FILE_B, EP(X, 0, 10, "nlm:hostA", "svid-1"), EP(X, 11, 10, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_B, &a, P, X, 10, 1);
	assert_locks(UL, FILE_B, EP(X, 0, 21, "nlm:hostA", "svid-1"));
}

static void test_posix_split_on_unlock(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 100);
	UNLOCK_OK(UL, FILE_A, &a, P, 40, 20);
	assert_locks(UL, FILE_A, EP(X, 0, 40, "nlm:hostA", "svid-1"), EP(X, 60, 40, "nlm:hostA", "svid-1"));
	UNLOCK_OK(UL, FILE_A, &a, P, 40, 20); /* bytes not locked: success, no change */
	UNLOCK_OK(UL, FILE_A, &b, P, 0, 100); /* another owner's bytes: success, no change */
	assert_locks(UL, FILE_A, EP(X, 0, 40, "nlm:hostA", "svid-1"), EP(X, 60, 40, "nlm:hostA", "svid-1"));
	UNLOCK_OK(UL, FILE_A, &a, P, 0, 1);
	UNLOCK_OK(UL, FILE_A, &a, P, 90, EOF_LEN);
	assert_locks(UL, FILE_A, EP(X, 1, 39, "nlm:hostA", "svid-1"), EP(X, 60, 30, "nlm:hostA", "svid-1"));
	UNLOCK_OK(UL, FILE_A, &a, P, 30, 35); /* spans the gap: trims both */
	assert_locks(UL, FILE_A, EP(X, 1, 29, "nlm:hostA", "svid-1"), EP(X, 65, 25, "nlm:hostA", "svid-1"));
	UNLOCK_OK(UL, FILE_A, &a, P, 0, EOF_LEN);
	assert_no_locks(UL, FILE_A);
	UNLOCK_OK(UL, FILE_C, &a, P, 0, EOF_LEN); /* a file nobody locked */
	/* Another owner can now lock what was split off. */
	LOCK_OK(UL, FILE_A, &b, P, X, 0, 100);
}

static void test_posix_upgrade_downgrade(void **state)
{
	unilock_owner a = OWN_A;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 100);
	LOCK_OK(UL, FILE_A, &a, P, X, 40, 20); /* upgrade of a sub-range splits */
	assert_locks(UL, FILE_A, EP(S, 0, 40, "nlm:hostA", "svid-1"), EP(X, 40, 20, "nlm:hostA", "svid-1"),
		     EP(S, 60, 40, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, S, 40, 20); /* downgrade merges back */
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 100); /* whole upgrade */
	assert_locks(UL, FILE_A, EP(X, 0, 100, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, S, 50, EOF_LEN); /* downgrade of the tail, extended to EOF */
	assert_locks(UL, FILE_A, EP(X, 0, 50, "nlm:hostA", "svid-1"), EP(S, 50, EOF_LEN, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, X, 10, 50); /* upgrade across the boundary of two locks */
	assert_locks(UL, FILE_A, EP(X, 0, 60, "nlm:hostA", "svid-1"), EP(S, 60, EOF_LEN, "nlm:hostA", "svid-1"));
}

static void test_posix_refused_upgrade_keeps_old_lock(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 100);
	LOCK_OK(UL, FILE_A, &b, P, S, 90, 5);
	LOCK_CONFLICT(UL, FILE_A, &a, P, X, 0, 100, &h);
	assert_holder(&h, P, S, 90, 5, "nlm:hostB", "svid-1", 0);
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostA", "svid-1"), EP(S, 90, 5, "nlm:hostB", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 90);
	LOCK_CONFLICT(UL, FILE_A, &a, P, X, 80, 20, &h); /* would also upgrade [90,100) */
	assert_locks(UL, FILE_A, EP(X, 0, 90, "nlm:hostA", "svid-1"), EP(S, 90, 10, "nlm:hostA", "svid-1"),
		     EP(S, 90, 5, "nlm:hostB", "svid-1"));
	LOCK_CONFLICT(UL, FILE_A, &b, P, S, 89, 2, &h); /* B may not read-lock A's exclusive byte */
	assert_holder(&h, P, X, 0, 90, "nlm:hostA", "svid-1", 0);
}

static void test_posix_to_eof(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &a, P, X, 100, EOF_LEN);
	assert_locks(UL, FILE_A, EP(X, 100, EOF_LEN, "nlm:hostA", "svid-1"));
	LOCK_CONFLICT(UL, FILE_A, &b, P, S, U64MAX, 1, &h);
	assert_holder(&h, P, X, 100, EOF_LEN, "nlm:hostA", "svid-1", 0);
	LOCK_CONFLICT(UL, FILE_A, &b, P, S, 50, 51, &h);
	LOCK_OK(UL, FILE_A, &b, P, S, 0, 100);
	UNLOCK_OK(UL, FILE_A, &a, P, 200, EOF_LEN);
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostB", "svid-1"), EP(X, 100, 100, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_A, &a, P, X, 200, EOF_LEN); /* touching: merged back to EOF */
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostB", "svid-1"), EP(X, 100, EOF_LEN, "nlm:hostA", "svid-1"));
	UNLOCK_OK(UL, FILE_A, &a, P, 1000, 10);
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostB", "svid-1"), EP(X, 100, 900, "nlm:hostA", "svid-1"),
		     EP(X, 1010, EOF_LEN, "nlm:hostA", "svid-1"));
	/* A literal length reaching 2^64 is reported as TO_EOF (the header's lock_info.length). */
	LOCK_OK(UL, FILE_B, &a, P, S, U64MAX - 9, 10);
	assert_locks(UL, FILE_B, EP(S, U64MAX - 9, EOF_LEN, "nlm:hostA", "svid-1"));
	LOCK_OK(UL, FILE_C, &a, P, X, U64MAX, 1);
	assert_locks(UL, FILE_C, EP(X, U64MAX, EOF_LEN, "nlm:hostA", "svid-1"));
	LOCK_CONFLICT(UL, FILE_C, &b, P, S, 0, EOF_LEN, &h);
	LOCK_CONFLICT(UL, FILE_C, &b, P, S, 0, U64MAX, &h); /* for POSIX this length is TO_EOF */
	LOCK_OK(UL, FILE_C, &b, P, S, 0, U64MAX - 1);      /* [0, 2^64-2) */
	LOCK_OK(UL, FILE_C, &b, P, S, U64MAX - 1, 1);      /* touching: merged */
	assert_locks(UL, FILE_C, EP(X, U64MAX, EOF_LEN, "nlm:hostA", "svid-1"), EP(S, 0, U64MAX, "nlm:hostB", "svid-1"));
}

static void test_posix_test_reports_holder(void **state)
{
	static const uint8_t bin[5] = {0x00, 0x01, 0xfe, 0xff, 0x00};
	unilock_owner a = owner3("nlm:holder", NULL, 77), b = OWN_B, h1 = OWN_H1, h2 = OWN_H2;
	unilock_lock_req r;
	unilock_lock_info h;
	a.owner = bin;
	a.owner_len = sizeof bin;
	LOCK_OK(UL, FILE_A, &a, P, X, 10, 10);
	r = req4(P, S, 15, 1);
	poison(&h, sizeof h);
	assert_status(unilock_test(UL, FILE_A, FLEN, &b, &r, &h), UNILOCK_E_CONFLICT);
	/* POSIX holders report open id 0, whatever open the lock came through. */
	assert_holder_impl(&h, P, X, 10, 10, "nlm:holder", bin, sizeof bin, 0, __FILE__, __LINE__);
	assert_int_equal(h.client_len, strlen("nlm:holder"));
	assert_status(unilock_test(UL, FILE_A, FLEN, &b, &r, NULL), UNILOCK_E_CONFLICT);
	r = req4(P, X, 0, 100);
	assert_status(unilock_test(UL, FILE_A, FLEN, &a, &r, NULL), UNILOCK_OK); /* own lock */
	a.open_id = 78;
	assert_status(unilock_test(UL, FILE_A, FLEN, &a, &r, NULL), UNILOCK_OK); /* open id ignored */
	r = req4(P, S, 20, 10);
	poison(&h, sizeof h);
	assert_status(unilock_test(UL, FILE_A, FLEN, &b, &r, &h), UNILOCK_OK);
	assert_true(is_poisoned(&h, sizeof h));
	/* Windows holder: open id reported. */
	LOCK_OK(UL, FILE_B, &h1, W, X, 0, 10);
	r = req4(W, S, 9, 1);
	assert_status(unilock_test(UL, FILE_B, FLEN, &h2, &r, &h), UNILOCK_E_CONFLICT);
	assert_holder(&h, W, X, 0, 10, "smb:guid-1", "lctx", 1);
	/* The lock call reports the same holder on a conflict. */
	poison(&h, sizeof h);
	assert_status(unilock_lock(UL, FILE_B, FLEN, &h2, &r, &h), UNILOCK_E_CONFLICT);
	assert_holder(&h, W, X, 0, 10, "smb:guid-1", "lctx", 1);
	assert_status(unilock_lock(UL, FILE_B, FLEN, &h2, &r, NULL), UNILOCK_E_CONFLICT);
}

/* The holder struct carries a 255-byte client and a 2048-byte owner in full. */
static void test_holder_max_sizes(void **state)
{
	static uint8_t big[UNILOCK_OWNER_MAX];
	char client[UNILOCK_CLIENT_MAX + 1];
	unilock_owner a, b = OWN_B;
	unilock_lock_req r = req4(P, S, 0, 1);
	unilock_lock_info h;
	size_t i;
	for (i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	memset(client, 'q', UNILOCK_CLIENT_MAX);
	client[UNILOCK_CLIENT_MAX] = 0;
	a = owner3(client, NULL, 0);
	a.owner = big;
	a.owner_len = sizeof big;
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 1);
	poison(&h, sizeof h);
	assert_status(unilock_test(UL, FILE_A, FLEN, &b, &r, &h), UNILOCK_E_CONFLICT);
	assert_holder_impl(&h, P, X, 0, 1, client, big, sizeof big, 0, __FILE__, __LINE__);
	assert_int_equal(h.client_len, UNILOCK_CLIENT_MAX);
	assert_int_equal(h.client[UNILOCK_CLIENT_MAX], 0);
}

static void test_posix_owner_identity(void **state)
{
	unilock_owner a1 = owner3("nlm:hostA", "svid-1", 1), a2 = owner3("nlm:hostA", "svid-1", 2);
	unilock_owner other_owner = owner3("nlm:hostA", "svid-2", 1), b = OWN_B;
	unilock_owner empty1 = owner3("nlm:hostA", NULL, 0), empty2 = owner3("nlm:hostA", "", 9);
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &a1, P, X, 0, 10);
	LOCK_OK(UL, FILE_A, &a2, P, X, 5, 10); /* same POSIX owner through another open */
	assert_locks(UL, FILE_A, EP(X, 0, 15, "nlm:hostA", "svid-1"));
	LOCK_CONFLICT(UL, FILE_A, &other_owner, P, S, 0, 1, &h); /* same client, other owner bytes */
	LOCK_CONFLICT(UL, FILE_A, &b, P, S, 0, 1, &h);           /* same owner bytes, other client */
	assert_holder(&h, P, X, 0, 15, "nlm:hostA", "svid-1", 0);
	/* An empty owner, NULL or not, is one owner. */
	LOCK_OK(UL, FILE_B, &empty1, P, X, 0, 10);
	LOCK_OK(UL, FILE_B, &empty2, P, X, 10, 10);
	assert_locks(UL, FILE_B, EP(X, 0, 20, "nlm:hostA", ""));
	UNLOCK_OK(UL, FILE_B, &empty2, P, 0, EOF_LEN);
	assert_no_locks(UL, FILE_B);
}

/* ---- Windows flavour -------------------------------------------------------------------------- */

/* smbtorture smb2.lock.valid-request "basic lock stacking" and smb2.lock.stacking. */
static void test_windows_stacking(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	unilock_lock_info h;
	unilock_lock_req two[2];
	const uint64_t o = UINT32_MAX, l = UINT32_MAX;
	LOCK_OK(UL, FILE_A, &h1, W, X, o, l);
	LOCK_OK(UL, FILE_A, &h1, W, S, o, l);
	LOCK_OK(UL, FILE_A, &h1, W, S, o, l);
	assert_locks(UL, FILE_A, EW(X, o, l, "smb:guid-1", "lctx", 1), EW(S, o, l, "smb:guid-1", "lctx", 1),
		     EW(S, o, l, "smb:guid-1", "lctx", 1));
	LOCK_CONFLICT(UL, FILE_A, &h2, W, S, o, l, &h);
	assert_holder(&h, W, X, o, l, "smb:guid-1", "lctx", 1);
	UNLOCK_OK(UL, FILE_A, &h1, W, o, l);
	UNLOCK_OK(UL, FILE_A, &h1, W, o, l);
	UNLOCK_OK(UL, FILE_A, &h1, W, o, l);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, o, l); /* the 4th unlock fails */
	LOCK_OK(UL, FILE_A, &h2, W, S, o, l);
	UNLOCK_OK(UL, FILE_A, &h2, W, o, l);
	assert_no_locks(UL, FILE_A);

	/* Two stacked shared locks released by one two-element unlock. */
	LOCK_OK(UL, FILE_A, &h1, W, S, 9999, 1);
	LOCK_OK(UL, FILE_A, &h1, W, S, 9999, 1);
	two[0] = req4(W, S, 9999, 1);
	two[1] = req4(W, S, 9999, 1);
	assert_status(unilock_unlock_many(UL, FILE_A, FLEN, &h1, two, 2, NULL), UNILOCK_OK);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 9999, 1);

	/* Overlapping (not equal) shared locks stack too, and never merge. */
	LOCK_OK(UL, FILE_B, &h1, W, S, 0, 10);
	LOCK_OK(UL, FILE_B, &h1, W, S, 5, 10);
	LOCK_OK(UL, FILE_B, &h1, W, S, 10, 10);
	LOCK_OK(UL, FILE_B, &h2, W, S, 0, 20);
	LOCK_CONFLICT(UL, FILE_B, &h2, W, X, 14, 1, &h);
	assert_int_equal(lock_count(UL, FILE_B, FLEN), 4);
	UNLOCK_NOT_LOCKED(UL, FILE_B, &h1, W, 0, 20); /* no merged lock exists */
}

static void test_windows_shared_inside_own_exclusive(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 100);
	LOCK_OK(UL, FILE_A, &h1, W, S, 10, 10);
	LOCK_CONFLICT(UL, FILE_A, &h2, W, S, 10, 10, &h); /* another handle of the same owner */
	assert_holder(&h, W, X, 0, 100, "smb:guid-1", "lctx", 1);
	LOCK_CONFLICT(UL, FILE_A, &h3, W, S, 99, 1, &h);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 10, 10, &h); /* exclusive over its own locks */
	UNLOCK_OK(UL, FILE_A, &h1, W, 0, 100);
	assert_locks(UL, FILE_A, EW(S, 10, 10, "smb:guid-1", "lctx", 1));
	LOCK_OK(UL, FILE_A, &h2, W, S, 10, 10);
	LOCK_OK(UL, FILE_A, &h3, W, X, 50, 10);
}

/* smbtorture smb2.lock.auto-unlock and SPEC: an exclusive lock over any own lock is refused. */
static void test_windows_exclusive_over_own_refused(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &h1, W, S, 0, 10);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 5, 10, &h);
	assert_holder(&h, W, S, 0, 10, "smb:guid-1", "lctx", 1);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 0, 10, &h);
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 10); /* adjacent: no overlap */
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 10, 10, &h);
	assert_holder(&h, W, X, 10, 10, "smb:guid-1", "lctx", 1);
	/* A contending request on the same handle does not unlock ("pretty please" bug not copied). */
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 10, 10, &h);
	assert_locks(UL, FILE_A, EW(S, 0, 10, "smb:guid-1", "lctx", 1), EW(X, 10, 10, "smb:guid-1", "lctx", 1));
}

/* smbtorture smb2.lock.lock "wrong handle unlock" and exact-match unlock. */
static void test_windows_exact_unlock(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	LOCK_OK(UL, FILE_A, &h1, W, X, 100, 50);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 100, 49);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 100, 51);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 101, 49);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 99, 51);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 100, 0);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h2, W, 100, 50); /* another handle of the same owner */
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h3, W, 100, 50);
	UNLOCK_NOT_LOCKED(UL, FILE_B, &h1, W, 100, 50); /* another file */
	UNLOCK_NOT_LOCKED(UL, FILE_C, &h1, W, 0, 1);    /* a file nobody locked */
	/* A POSIX unlock by the same identity is another owner's business: it succeeds, removes nothing. */
	UNLOCK_OK(UL, FILE_A, &h1, P, 0, EOF_LEN);
	assert_locks(UL, FILE_A, EW(X, 100, 50, "smb:guid-1", "lctx", 1));
	UNLOCK_OK(UL, FILE_A, &h1, W, 100, 50);
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 100, 50);
	assert_no_locks(UL, FILE_A);
}

/* smbtorture smb2.lock.unlock: stacked exclusive + shared, the exclusive goes first (also 0-byte). */
static void test_windows_unlock_exclusive_first(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	unilock_lock_info h;
	static const uint64_t lens[2] = {10, 0};
	size_t i;
	for (i = 0; i < 2; i++) {
		uint64_t len = lens[i];
		LOCK_OK(UL, FILE_A, &h1, W, X, 10, len);
		LOCK_OK(UL, FILE_A, &h1, W, S, 10, len);
		LOCK_CONFLICT(UL, FILE_A, &h2, W, X, 5, 10, &h);
		LOCK_CONFLICT(UL, FILE_A, &h2, W, S, 5, 10, &h);
		assert_holder(&h, W, X, 10, len, "smb:guid-1", "lctx", 1);
		UNLOCK_OK(UL, FILE_A, &h1, W, 10, len);
		assert_locks(UL, FILE_A, EW(S, 10, len, "smb:guid-1", "lctx", 1));
		LOCK_OK(UL, FILE_A, &h2, W, S, 5, 10);
		UNLOCK_OK(UL, FILE_A, &h2, W, 5, 10);
		UNLOCK_OK(UL, FILE_A, &h1, W, 10, len);
		assert_no_locks(UL, FILE_A);
	}
	/* One exclusive and two shared locks on one range: the unlock takes the exclusive one. */
	LOCK_OK(UL, FILE_B, &h1, W, X, 0, 100);
	LOCK_OK(UL, FILE_B, &h1, W, S, 0, 100);
	LOCK_OK(UL, FILE_B, &h1, W, S, 0, 100);
	UNLOCK_OK(UL, FILE_B, &h1, W, 0, 100);
	assert_locks(UL, FILE_B, EW(S, 0, 100, "smb:guid-1", "lctx", 1), EW(S, 0, 100, "smb:guid-1", "lctx", 1));
}

/* smbtorture smb2.lock.zerobytelength, same handle and two handles. */
static void test_windows_zero_length_table(void **state)
{
	static const struct {
		uint64_t o1, l1, o2, l2;
		uint32_t expected;
	} cases[] = {
		{10, 0, 10, 0, UNILOCK_OK}, {10, 0, 9, 1, UNILOCK_OK},
		{10, 0, 10, 1, UNILOCK_OK}, {10, 0, 11, 1, UNILOCK_OK},
		{10, 0, 9, 2, UNILOCK_E_CONFLICT}, {10, 0, 10, 2, UNILOCK_OK},
		{10, 0, 9, 3, UNILOCK_E_CONFLICT}, {10, 0, 10, 0, UNILOCK_OK},
		{9, 1, 10, 0, UNILOCK_OK}, {10, 1, 10, 0, UNILOCK_OK},
		{11, 1, 10, 0, UNILOCK_OK}, {9, 2, 10, 0, UNILOCK_E_CONFLICT},
		{10, 2, 10, 0, UNILOCK_OK}, {9, 3, 10, 0, UNILOCK_E_CONFLICT},
		{0, 0, 0, 0, UNILOCK_OK},
	};
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	const unilock_owner *second[2] = {&h1, &h2};
	size_t i, k;
	for (k = 0; k < 2; k++) {
		for (i = 0; i < ARRAY_LEN(cases); i++) {
			unilock_lock_info h;
			LOCK_OK(UL, FILE_A, &h1, W, X, cases[i].o1, cases[i].l1);
			expect_lock_impl(UL, FILE_A, second[k], W, X, cases[i].o2, cases[i].l2, cases[i].expected,
					 &h, __FILE__, __LINE__);
			if (cases[i].expected == UNILOCK_OK)
				UNLOCK_OK(UL, FILE_A, second[k], W, cases[i].o2, cases[i].l2);
			UNLOCK_OK(UL, FILE_A, &h1, W, cases[i].o1, cases[i].l1);
			assert_no_locks(UL, FILE_A);
		}
	}
}

/* SPEC section 2: a zero-length lock conflicts only strictly inside another owner's lock. */
static void test_windows_zero_length_strictly_inside(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 10); /* bytes 10..19 */
	LOCK_OK(UL, FILE_A, &h3, W, S, 10, 0);  /* at the start */
	LOCK_OK(UL, FILE_A, &h3, W, X, 20, 0);  /* at the end */
	LOCK_OK(UL, FILE_A, &h3, W, S, 0, 0);
	LOCK_CONFLICT(UL, FILE_A, &h3, W, S, 15, 0, &h);
	assert_holder(&h, W, X, 10, 10, "smb:guid-1", "lctx", 1);
	LOCK_CONFLICT(UL, FILE_A, &h3, W, X, 11, 0, &h);
	LOCK_CONFLICT(UL, FILE_A, &h3, W, X, 19, 0, &h);
	/* Against a shared lock, only an exclusive zero-length lock conflicts. */
	LOCK_OK(UL, FILE_B, &h1, W, S, 10, 10);
	LOCK_OK(UL, FILE_B, &h3, W, S, 15, 0);
	LOCK_CONFLICT(UL, FILE_B, &h3, W, X, 15, 0, &h);
	/* Zero-length locks never overlap each other. */
	LOCK_OK(UL, FILE_C, &h1, W, X, 5, 0);
	LOCK_OK(UL, FILE_C, &h3, W, X, 5, 0);
	LOCK_OK(UL, FILE_C, &h1, W, X, 5, 0);
	/* But a zero-length exclusive lock at 5 refuses another owner's lock around it. */
	LOCK_CONFLICT(UL, FILE_C, &h3, W, S, 0, 10, &h);
	assert_int_equal(h.length, 0);
	assert_int_equal(h.offset, 5);
	LOCK_OK(UL, FILE_C, &h3, W, S, 5, 10);
	LOCK_OK(UL, FILE_C, &h3, W, S, 0, 5);
}

/* smbtorture smb2.lock.lock: ranges near 2^32, 2^63 and 2^64. */
static void test_windows_high_offsets(void **state)
{
	static const struct {
		uint64_t offset, length;
	} cases[] = {
		{0, 0}, {0, 1}, {0xEEFFFFFF, 4000}, {0xEF000000, 4000},
		{((uint64_t)1 << 63) - 1, 1}, {(uint64_t)1 << 63, 1}, {UINT64_MAX, 0}, {UINT64_MAX, 1},
		{((uint64_t)1 << 63) + 12345, 1000},
	};
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	size_t i;
	for (i = 0; i < ARRAY_LEN(cases); i++) {
		uint64_t o = cases[i].offset, l = cases[i].length;
		unilock_lock_info h;
		LOCK_OK(UL, FILE_A, &h1, W, X, o, l);
		if (l == 0) {
			LOCK_OK(UL, FILE_A, &h2, W, X, o, l);
			UNLOCK_OK(UL, FILE_A, &h2, W, o, l);
		} else {
			LOCK_CONFLICT(UL, FILE_A, &h2, W, X, o, l, &h);
			assert_holder(&h, W, X, o, l, "smb:guid-1", "lctx", 1);
		}
		assert_locks(UL, FILE_A, EW(X, o, l, "smb:guid-1", "lctx", 1));
		UNLOCK_OK(UL, FILE_A, &h1, W, o, l);
		UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, o, l);
	}
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID_RANGE,
			 unilock_lock(UL, FILE_A, FLEN, &h1, &(unilock_lock_req){W, X, UINT64_MAX, 2, 0}, NULL));
	/* A Windows length is literal: [0, 2^64-1) leaves the last byte free. */
	LOCK_OK(UL, FILE_B, &h1, W, X, 0, U64MAX);
	assert_locks(UL, FILE_B, EW(X, 0, U64MAX, "smb:guid-1", "lctx", 1));
	LOCK_OK(UL, FILE_B, &h2, W, X, U64MAX, 1);
	LOCK_CONFLICT(UL, FILE_B, &h2, W, X, U64MAX - 1, 1, (unilock_lock_info *)NULL);
	/* POSIX locks above 2^63 (kernel offsets are signed; ours are not). */
	{
		unilock_owner a = OWN_A, b = OWN_B;
		LOCK_OK(UL, FILE_C, &a, P, X, TWO63 + 5, 10);
		LOCK_CONFLICT(UL, FILE_C, &b, P, S, TWO63 + 14, 1, (unilock_lock_info *)NULL);
		LOCK_OK(UL, FILE_C, &b, P, S, TWO63 + 15, EOF_LEN);
		LOCK_OK(UL, FILE_C, &b, P, S, 0, TWO63 + 5);
	}
}

/* Two opens of one SMB owner are two owners. */
static void test_windows_two_opens_are_two_owners(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	LOCK_CONFLICT(UL, FILE_A, &h2, W, S, 0, 10, &h);
	assert_holder(&h, W, X, 0, 10, "smb:guid-1", "lctx", 1);
	LOCK_OK(UL, FILE_A, &h2, W, S, 10, 10);
	LOCK_OK(UL, FILE_A, &h1, W, S, 10, 10);
	LOCK_CONFLICT(UL, FILE_A, &h2, W, X, 15, 1, &h); /* refused by h1's lock or by its own */
	assert_int_equal(h.type, S);
	LOCK_CONFLICT(UL, FILE_A, &h3, W, X, 15, 1, &h);
}

/* ---- cross-flavour ------------------------------------------------------------------------------ */

static void test_cross_flavour_conflicts(void **state)
{
	unilock_owner a = OWN_A, h1 = OWN_H1, same = owner3("both:c", "o", 1);
	unilock_lock_info h;
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 10);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, S, 5, 1, &h);
	assert_holder(&h, P, X, 0, 10, "nlm:hostA", "svid-1", 0);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 9, 0, &h); /* zero-length strictly inside */
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 0);
	LOCK_OK(UL, FILE_A, &h1, W, X, 20, 10);
	LOCK_CONFLICT(UL, FILE_A, &a, P, S, 25, 1, &h);
	assert_holder(&h, W, X, 20, 10, "smb:guid-1", "lctx", 1);
	LOCK_CONFLICT(UL, FILE_A, &a, P, S, 0, EOF_LEN, &h); /* an own-lock upgrade refused by Windows */
	/* The same (client, owner, open) as a POSIX and a Windows owner: still two owners. */
	LOCK_OK(UL, FILE_B, &same, P, X, 40, 10);
	LOCK_CONFLICT(UL, FILE_B, &same, W, X, 40, 10, &h);
	assert_holder(&h, P, X, 40, 10, "both:c", "o", 0);
	LOCK_CONFLICT(UL, FILE_B, &same, W, S, 45, 1, &h);
	/* Shared locks of both flavours coexist. */
	LOCK_OK(UL, FILE_B, &same, P, S, 60, 10);
	LOCK_OK(UL, FILE_B, &same, W, S, 60, 10);
	LOCK_OK(UL, FILE_B, &h1, W, S, 60, 10);
	LOCK_CONFLICT(UL, FILE_B, &same, P, X, 60, 10, &h); /* upgrade refused by the Windows shared locks */
	assert_int_equal(h.flavour, W);
	assert_int_equal(lock_count(UL, FILE_B, FLEN), 4);
}

/* ---- lock_many ------------------------------------------------------------------------------------ */

static void test_lock_many_grants_all(void **state)
{
	unilock_owner h1 = OWN_H1, a = OWN_A;
	unilock_lock_req r[4];
	unilock_lock_info h;
	size_t idx;
	r[0] = req4(W, X, 0, 10);
	r[1] = req4(W, S, 20, 10);
	r[2] = req4(W, S, 20, 10);
	r[3] = req4(W, X, 40, 0);
	idx = 12345;
	poison(&h, sizeof h);
	assert_status(unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 4, &idx, &h), UNILOCK_OK);
	assert_int_equal(idx, 12345);
	assert_true(is_poisoned(&h, sizeof h));
	assert_locks(UL, FILE_A, EW(X, 0, 10, "smb:guid-1", "lctx", 1), EW(S, 20, 10, "smb:guid-1", "lctx", 1),
		     EW(S, 20, 10, "smb:guid-1", "lctx", 1), EW(X, 40, 0, "smb:guid-1", "lctx", 1));
	/* One element, NULL out-pointers. */
	r[0] = req4(W, S, 100, 1);
	assert_status(unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 1, NULL, NULL), UNILOCK_OK);
	/* POSIX elements are applied in order: a later one replaces an earlier one's type. */
	r[0] = req4(P, X, 0, 10);
	r[1] = req4(P, S, 0, 10);
	r[2] = req4(P, S, 10, 10);
	assert_status(unilock_lock_many(UL, FILE_B, FLEN, &a, r, 3, NULL, NULL), UNILOCK_OK);
	assert_locks(UL, FILE_B, EP(S, 0, 20, "nlm:hostA", "svid-1"));
}

/* All or none: a conflict in element 2 takes nothing, reports index and holder. */
static void test_lock_many_all_or_none(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	unilock_lock_req r[4];
	unilock_lock_info h;
	size_t idx = 12345;
	LOCK_OK(UL, FILE_A, &h2, W, X, 50, 10);
	r[0] = req4(W, X, 0, 10);
	r[1] = req4(W, S, 20, 10);
	r[2] = req4(W, X, 55, 1);
	r[3] = req4(W, X, 70, 10);
	poison(&h, sizeof h);
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 4, &idx, &h));
	assert_int_equal(idx, 2);
	assert_holder(&h, W, X, 50, 10, "smb:guid-1", "lctx", 2);
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 4, NULL, NULL));
	/* The first element already conflicting. */
	r[0] = req4(W, S, 59, 1);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 4, &idx, NULL));
	assert_int_equal(idx, 0);
	/* The last one. */
	r[0] = req4(W, X, 0, 10);
	r[2] = req4(W, X, 30, 1);
	r[3] = req4(W, S, 40, 11);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 4, &idx, NULL));
	assert_int_equal(idx, 3);
}

/* An element conflicting with an earlier element of the same request (own exclusive lock). */
static void test_lock_many_conflict_with_own_element(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_req r[3];
	unilock_lock_info h;
	size_t idx = 12345;
	r[0] = req4(W, S, 100, 10);
	r[1] = req4(W, X, 0, 10);
	r[2] = req4(W, X, 5, 10);
	poison(&h, sizeof h);
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 3, &idx, &h));
	assert_int_equal(idx, 2);
	assert_holder(&h, W, X, 0, 10, "smb:guid-1", "lctx", 1);
	assert_no_locks(UL, FILE_A);
}

/* The undo of a POSIX request restores locks the earlier elements merged away. */
static void test_lock_many_undo_posix_merges(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_req r[4];
	size_t idx = 12345;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 10);
	LOCK_OK(UL, FILE_A, &a, P, S, 20, 10);
	LOCK_OK(UL, FILE_A, &b, P, X, 100, 10);
	r[0] = req4(P, S, 10, 10); /* merges both into [0,30) */
	r[1] = req4(P, S, 40, 10); /* a new lock */
	r[2] = req4(P, S, 30, 10); /* merges everything into [0,50) */
	r[3] = req4(P, X, 105, 1); /* conflicts with B */
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &a, r, 4, &idx, NULL));
	assert_int_equal(idx, 3);
	assert_locks(UL, FILE_A, EP(S, 0, 10, "nlm:hostA", "svid-1"), EP(S, 20, 10, "nlm:hostA", "svid-1"),
		     EP(X, 100, 10, "nlm:hostB", "svid-1"));
	/* The same request without the conflicting element is granted whole. */
	assert_status(unilock_lock_many(UL, FILE_A, FLEN, &a, r, 3, NULL, NULL), UNILOCK_OK);
	assert_locks(UL, FILE_A, EP(S, 0, 50, "nlm:hostA", "svid-1"), EP(X, 100, 10, "nlm:hostB", "svid-1"));
}

/* The undo of a POSIX request restores locks the earlier elements split (upgrades). */
static void test_lock_many_undo_posix_splits(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_req r[6];
	size_t idx = 12345;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 100);
	LOCK_OK(UL, FILE_A, &a, P, X, 300, 10);
	LOCK_OK(UL, FILE_A, &b, P, S, 200, 10);
	r[0] = req4(P, X, 10, 10);      /* split S [0,100) */
	r[1] = req4(P, X, 30, 10);      /* split again */
	r[2] = req4(P, X, 20, 10);      /* merge the two exclusive pieces */
	r[3] = req4(P, S, 0, EOF_LEN);  /* downgrade everything, merge with 300 */
	r[4] = req4(P, X, 150, 10);     /* split the big shared lock */
	r[5] = req4(P, X, 195, 10);     /* conflicts with B's shared lock */
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &a, r, 6, &idx, NULL));
	assert_int_equal(idx, 5);
	assert_locks(UL, FILE_A, EP(S, 0, 100, "nlm:hostA", "svid-1"), EP(X, 300, 10, "nlm:hostA", "svid-1"),
		     EP(S, 200, 10, "nlm:hostB", "svid-1"));
	/* Another mix: split two locks then merge them across the gap, then fail. */
	r[0] = req4(P, X, 5, 300);
	r[1] = req4(P, S, 0, 400);
	r[2] = req4(P, X, 50, 1);
	r[3] = req4(P, X, 209, 1);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &a, r, 4, &idx, NULL));
	assert_int_equal(idx, 0); /* [5,305) already overlaps B's shared lock */
	r[0] = req4(P, X, 5, 50);
	idx = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &a, r, 4, &idx, NULL));
	assert_int_equal(idx, 3);
}

/*
 * Regression test (fixed): the undo of unilock_lock_many keeps the ids of the locks each step added, but
 * undoing a later step re-inserts locks under new ids, so undoing an earlier step removes a stale id:
 * a caught panic (UNILOCK_E_INTERNAL) with the undo half done, or silently the wrong lock.
 * Smallest case: an exclusive lock, then a shared byte inside it (a split into three), then a conflict.
 */
static void test_lock_many_undo_minimal(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_req r[3];
	size_t idx = 12345;
	LOCK_OK(UL, FILE_A, &b, P, X, 100, 10);
	r[0] = req4(P, X, 0, 10);
	r[1] = req4(P, S, 5, 1);
	r[2] = req4(P, X, 100, 1);
	EXPECT_UNCHANGED(UL, UNILOCK_E_CONFLICT, unilock_lock_many(UL, FILE_A, FLEN, &a, r, 3, &idx, NULL));
	assert_int_equal(idx, 2);
	assert_locks(UL, FILE_A, EP(X, 100, 10, "nlm:hostB", "svid-1"));
}

/* Many elements, many undo steps, repeated: the file must come back identical each time. */
static void test_lock_many_undo_stress(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	unilock_lock_req r[40];
	unsigned seed = 12345;
	size_t round, i;
	LOCK_OK(UL, FILE_A, &b, P, X, 1000, 10);
	for (i = 0; i < 10; i++)
		LOCK_OK(UL, FILE_A, &a, P, (i & 1) ? X : S, i * 37, 11 + i);
	for (round = 0; round < 200; round++) {
		size_t n = 2 + round % 38, idx = 12345;
		for (i = 0; i + 1 < n; i++) {
			seed = seed * 1103515245u + 12345u;
			r[i] = req4(P, (seed >> 16) & 1 ? X : S, (seed >> 8) % 400, 1 + (seed >> 20) % 60);
		}
		r[n - 1] = req4(P, S, 1005, 1); /* always refused by B */
		{
			state_t before, after;
			uint32_t st;
			int same;
			state_take(UL, &before);
			st = unilock_lock_many(UL, FILE_A, FLEN, &a, r, n, &idx, NULL);
			state_take(UL, &after);
			same = before.f[0].n == after.f[0].n;
			for (i = 0; same && i < after.f[0].n; i++)
				same = info_equal(&before.f[0].v[i], &after.f[0].v[i]);
			if (st != UNILOCK_E_CONFLICT || !same) {
				print_error("round %zu: lock_many of %zu POSIX elements by nlm:hostA returned %u (%s)\n",
					    round, n, st, unilock_strerror(st));
				for (i = 0; i < n; i++)
					print_error("  elem %zu: %s off=%llu len=%llu\n", i, r[i].type == X ? "X" : "S",
						    (unsigned long long)r[i].offset, (unsigned long long)r[i].length);
			}
			assert_status(st, UNILOCK_E_CONFLICT);
			assert_state_equal_impl(&before, &after, __FILE__, __LINE__);
			state_free(&before);
			state_free(&after);
		}
		assert_int_equal(idx, n - 1);
	}
}

static void test_lock_many_mixed_flavours(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_req r[3];
	size_t idx = 12345;
	populate(UL);
	r[0] = req4(W, X, 5000, 10);
	r[1] = req4(W, X, 6000, 10);
	r[2] = req4(P, X, 7000, 10);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 3, &idx, NULL));
	assert_int_equal(idx, 2);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_many(UL, FILE_A, FLEN, &h1, r, 3, NULL, NULL));
}

/* ---- unlock_many ---------------------------------------------------------------------------------- */

/* smbtorture smb2.lock.multiple-unlock. */
static void test_unlock_many_stops_at_first_error(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_req r[2];
	unilock_lock_info h;
	size_t idx = 12345;
	r[0] = req4(W, X, 0, 10);
	r[1] = req4(W, X, 10, 10);
	/* First one not locked: nothing unlocked. */
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 10);
	EXPECT_UNCHANGED(UL, UNILOCK_E_RANGE_NOT_LOCKED,
			 unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 2, &idx));
	assert_int_equal(idx, 0);
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 10, 10, &h); /* still held */
	UNLOCK_OK(UL, FILE_A, &h1, W, 10, 10);
	/* Second one not locked: the first is unlocked. */
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	idx = 12345;
	assert_status(unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 2, &idx), UNILOCK_E_RANGE_NOT_LOCKED);
	assert_int_equal(idx, 1);
	assert_no_locks(UL, FILE_A);
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	/* NULL failed_index. */
	assert_status(unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 2, NULL), UNILOCK_E_RANGE_NOT_LOCKED);
	assert_no_locks(UL, FILE_A);
	/* Success leaves failed_index alone. */
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 10);
	idx = 12345;
	assert_status(unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 2, &idx), UNILOCK_OK);
	assert_int_equal(idx, 12345);
	assert_no_locks(UL, FILE_A);
}

static void test_unlock_many_ignores_type(void **state)
{
	unilock_owner h1 = OWN_H1, a = OWN_A;
	unilock_lock_req r[3];
	LOCK_OK(UL, FILE_A, &h1, W, S, 0, 10);
	LOCK_OK(UL, FILE_A, &h1, W, X, 20, 10);
	LOCK_OK(UL, FILE_A, &h1, W, S, 40, 10);
	r[0] = req4(W, 0, 0, 10);
	r[1] = req4(W, 99, 20, 10);
	r[2] = req4(W, UNILOCK_EXCLUSIVE, 40, 10); /* a shared lock, named with the other type */
	assert_status(unilock_unlock_many(UL, FILE_A, FLEN, &h1, r, 3, NULL), UNILOCK_OK);
	assert_no_locks(UL, FILE_A);
	/* POSIX elements split like single unlocks. */
	LOCK_OK(UL, FILE_B, &a, P, X, 0, 100);
	r[0] = req4(P, 0, 10, 10);
	r[1] = req4(P, 7, 30, 10);
	r[2] = req4(P, S, 500, EOF_LEN); /* not locked: fine for POSIX */
	assert_status(unilock_unlock_many(UL, FILE_B, FLEN, &a, r, 3, NULL), UNILOCK_OK);
	assert_locks(UL, FILE_B, EP(X, 0, 10, "nlm:hostA", "svid-1"), EP(X, 20, 10, "nlm:hostA", "svid-1"),
		     EP(X, 40, 60, "nlm:hostA", "svid-1"));
}

/* ---- check_io -------------------------------------------------------------------------------------- */

static void expect_io(const unilock *ul, const unilock_owner *o, uint32_t access, uint64_t off, uint64_t len,
		      uint32_t expected, int line)
{
	state_t before, after;
	uint32_t s;
	state_take(ul, &before);
	s = unilock_check_io(ul, FILE_A, FLEN, o, access, off, len);
	if (s != expected) {
		print_error("check_io(%s, off=%llu, len=%llu) by %s/%u returned %u (%s), expected %u (%s)\n",
			    access == UNILOCK_READ ? "READ" : "WRITE", (unsigned long long)off,
			    (unsigned long long)len, o->client, (unsigned)o->open_id, s, unilock_strerror(s), expected,
			    unilock_strerror(expected));
		state_free(&before);
		_fail(__FILE__, line);
	}
	state_take(ul, &after);
	assert_state_equal_impl(&before, &after, __FILE__, line); /* read-only */
	state_free(&before);
	state_free(&after);
}
#define IO_OK(o, acc, off, len) expect_io(UL, (o), (acc), (off), (len), UNILOCK_OK, __LINE__)
#define IO_NO(o, acc, off, len) expect_io(UL, (o), (acc), (off), (len), UNILOCK_E_CONFLICT, __LINE__)
#define RD UNILOCK_READ
#define WR UNILOCK_WRITE

/* smbtorture smb2.lock.rw-shared */
static void test_check_io_windows_shared(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2;
	IO_OK(&h1, WR, 0, 200);
	LOCK_OK(UL, FILE_A, &h1, W, S, 0, 100);
	LOCK_OK(UL, FILE_A, &h1, W, S, 100, 100);
	IO_NO(&h1, WR, 100, 100); /* writing through its own shared lock */
	IO_OK(&h1, RD, 100, 100);
	IO_NO(&h2, WR, 100, 100);
	IO_OK(&h2, RD, 100, 100);
	IO_OK(&h2, WR, 200, 100); /* past the locks */
	UNLOCK_OK(UL, FILE_A, &h1, W, 100, 100);
	IO_OK(&h2, WR, 100, 100);
	IO_OK(&h2, RD, 100, 100);
	IO_NO(&h2, WR, 99, 2);
}

/* smbtorture smb2.lock.rw-exclusive */
static void test_check_io_windows_exclusive(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 100);
	LOCK_OK(UL, FILE_A, &h1, W, X, 100, 100);
	IO_OK(&h1, WR, 100, 100);
	IO_OK(&h1, RD, 100, 100);
	IO_OK(&h1, WR, 50, 100); /* across its two locks */
	IO_NO(&h2, WR, 100, 100);
	IO_NO(&h2, RD, 100, 100);
	IO_NO(&h3, RD, 199, 1);
	IO_OK(&h3, RD, 200, 1);
	/* A shared lock stacked in its own exclusive one: the open still may not write through it. */
	LOCK_OK(UL, FILE_A, &h1, W, S, 10, 10);
	IO_NO(&h1, WR, 15, 1);
	IO_OK(&h1, WR, 20, 1);
	IO_OK(&h1, RD, 15, 1);
	UNLOCK_OK(UL, FILE_A, &h1, W, 100, 100);
	IO_OK(&h2, WR, 100, 100);
	IO_OK(&h2, RD, 100, 100);
}

/* The open's own POSIX locks never refuse its I/O; other owners' POSIX locks do. */
static void test_check_io_posix(void **state)
{
	unilock_owner a = OWN_A, a9 = owner3("nlm:hostA", "svid-1", 9), b = OWN_B, h1 = OWN_H1;
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 100);
	IO_OK(&a, WR, 0, 10); /* own POSIX shared lock: even a write */
	IO_OK(&a9, WR, 0, 10); /* any open of the POSIX owner */
	IO_OK(&a, RD, 0, 10);
	IO_OK(&b, RD, 0, 10);
	IO_NO(&b, WR, 99, 1);
	IO_NO(&h1, WR, 0, 1);
	LOCK_OK(UL, FILE_A, &a, P, X, 200, EOF_LEN);
	IO_OK(&a, RD, 300, 10);
	IO_OK(&a9, WR, U64MAX, 1);
	IO_NO(&b, RD, U64MAX, 1);
	IO_NO(&h1, RD, 200, 1);
	IO_OK(&b, WR, 100, 100); /* the gap */
	/* A Windows shared lock of the same (client, owner, open) still refuses its write. */
	LOCK_OK(UL, FILE_A, &a9, W, S, 150, 10);
	IO_NO(&a9, WR, 150, 1);
	IO_NO(&a, WR, 150, 1); /* another open: another Windows owner */
	IO_OK(&a9, RD, 150, 1);
}

static void test_check_io_edges(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	LOCK_OK(UL, FILE_A, &h1, W, X, 10, 10);
	IO_OK(&h3, RD, 15, 0); /* zero-length I/O is always allowed */
	IO_OK(&h3, WR, 15, 0);
	IO_OK(&h3, RD, 0, 10);
	IO_OK(&h3, WR, 20, 10);
	IO_NO(&h3, RD, 0, 11);
	IO_NO(&h3, WR, 19, 10);
	/* A literal Windows length: the last byte of the space is outside [0, 2^64-1). */
	LOCK_OK(UL, FILE_A, &h1, W, X, 1000, U64MAX - 1000);
	IO_OK(&h3, WR, U64MAX, 1);
	IO_NO(&h3, RD, U64MAX - 1, 1);
	/* Bad ranges. */
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID_RANGE,
			 unilock_check_io(UL, FILE_A, FLEN, &h3, UNILOCK_READ, UINT64_MAX, 2));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID_RANGE,
			 unilock_check_io(UL, FILE_A, FLEN, &h3, UNILOCK_WRITE, 2, UINT64_MAX));
	IO_OK(&h3, RD, 0, 0);
	/* A file nobody locked. */
	assert_status(unilock_check_io(UL, FILE_C, FLEN, &h3, UNILOCK_WRITE, 0, UINT64_MAX), UNILOCK_OK);
}

/* ---- release_open / release_client ------------------------------------------------------------- */

static void test_release_open(void **state)
{
	unilock_owner h1 = owner3("c1", "o1", 1), h2 = owner3("c1", "o1", 2), b = owner3("c2", "o1", 1);
	size_t n;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	LOCK_OK(UL, FILE_A, &h1, W, S, 20, 10);
	LOCK_OK(UL, FILE_A, &h1, W, S, 20, 10);
	LOCK_OK(UL, FILE_A, &h1, P, X, 100, 10);
	LOCK_OK(UL, FILE_A, &h1, P, S, 200, EOF_LEN);
	LOCK_OK(UL, FILE_A, &h2, W, S, 20, 10);
	LOCK_OK(UL, FILE_A, &b, P, S, 90, 5);
	LOCK_OK(UL, FILE_B, &h1, W, X, 0, 10);
	n = 12345;
	assert_status(unilock_release_open(UL, FILE_A, FLEN, &h1, &n), UNILOCK_OK);
	assert_int_equal(n, 5); /* 3 Windows locks of the open + 2 POSIX locks of (c1, o1) */
	assert_locks(UL, FILE_A, EW(S, 20, 10, "c1", "o1", 2), EP(S, 90, 5, "c2", "o1"));
	assert_locks(UL, FILE_B, EW(X, 0, 10, "c1", "o1", 1));
	n = 12345;
	assert_status(unilock_release_open(UL, FILE_A, FLEN, &h1, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	assert_status(unilock_release_open(UL, FILE_A, FLEN, &h2, NULL), UNILOCK_OK);
	assert_locks(UL, FILE_A, EP(S, 90, 5, "c2", "o1"));
	n = 12345;
	assert_status(unilock_release_open(UL, FILE_C, FLEN, &h2, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	/* What was released can be locked by others now. */
	LOCK_OK(UL, FILE_A, &b, P, X, 0, 90);
}

static void test_release_client(void **state)
{
	unilock_owner c1a = owner3("c1", "o1", 1), c1b = owner3("c1", "o2", 2), c10 = owner3("c10", "o1", 1);
	unilock_owner c2 = owner3("c2", "o1", 1);
	char client256[257], client255[256];
	size_t n;
	LOCK_OK(UL, FILE_A, &c1a, P, S, 0, 10);
	LOCK_OK(UL, FILE_A, &c1a, P, S, 20, 10);
	LOCK_OK(UL, FILE_A, &c1a, W, S, 0, 10);
	LOCK_OK(UL, FILE_A, &c1b, W, S, 0, 10);
	LOCK_OK(UL, FILE_B, &c1b, P, X, 0, 10);
	LOCK_OK(UL, FILE_A, &c10, W, S, 5, 10);
	LOCK_OK(UL, FILE_B, &c2, W, S, 50, 10);
	n = 12345;
	assert_status(unilock_release_client(UL, "c1", &n), UNILOCK_OK);
	assert_int_equal(n, 5);
	assert_locks(UL, FILE_A, EW(S, 5, 10, "c10", "o1", 1));
	assert_locks(UL, FILE_B, EW(S, 50, 10, "c2", "o1", 1));
	n = 12345;
	assert_status(unilock_release_client(UL, "c1", &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	assert_status(unilock_release_client(UL, "nobody", &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	assert_status(unilock_release_client(UL, "c10", NULL), UNILOCK_OK);
	assert_no_locks(UL, FILE_A);

	/* Arguments. */
	memset(client256, 'c', 256);
	client256[256] = 0;
	memset(client255, 'c', 255);
	client255[255] = 0;
	n = 12345;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_release_client(NULL, "c2", &n));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_release_client(UL, NULL, &n));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_release_client(UL, "", &n));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_release_client(UL, client256, &n));
	assert_int_equal(n, 12345);
	assert_status(unilock_release_client(UL, client255, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	assert_locks(UL, FILE_B, EW(S, 50, 10, "c2", "o1", 1));
}

/* ---- list_locks ---------------------------------------------------------------------------------- */

static void test_list_locks_order(void **state)
{
	static const struct {
		uint32_t flavour, type;
		uint64_t offset, length;
		const char *client;
	} locks[] = {
		{W, S, 500, 10, "w1"}, {W, S, 20, 10, "w2"}, {P, S, 300, 5, "p1"}, {W, S, 20, 5, "w3"},
		{W, X, 0, 0, "w4"}, {W, S, UINT64_MAX, 1, "w5"}, {P, S, 1000, EOF_LEN, "p2"}, {W, S, 19, 100, "w6"},
		{P, S, 7, 3, "p3"}, {W, S, 300, 0, "w7"},
	};
	dump_t d;
	size_t i, j, count;
	for (i = 0; i < ARRAY_LEN(locks); i++) {
		unilock_owner o = owner3(locks[i].client, "o", 1);
		LOCK_OK(UL, FILE_A, &o, locks[i].flavour, locks[i].type, locks[i].offset, locks[i].length);
	}
	dump_file(UL, FILE_A, FLEN, &d);
	assert_int_equal(d.n, ARRAY_LEN(locks));
	for (j = 1; j < d.n; j++)
		assert_true(d.v[j - 1].offset <= d.v[j].offset);
	for (i = 0; i < ARRAY_LEN(locks); i++) {
		int found = 0;
		for (j = 0; j < d.n; j++)
			found |= strcmp(d.v[j].client, locks[i].client) == 0 && d.v[j].offset == locks[i].offset &&
				 d.v[j].length == locks[i].length && d.v[j].type == locks[i].type &&
				 d.v[j].flavour == locks[i].flavour && d.v[j].owner_len == 1 &&
				 d.v[j].owner[0] == 'o' &&
				 d.v[j].open_id == (locks[i].flavour == W ? 1u : 0u);
		assert_true(found);
	}
	dump_free(&d);
	count = 12345;
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, NULL, NULL, &count), UNILOCK_OK);
	assert_int_equal(count, ARRAY_LEN(locks));
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, NULL, NULL, NULL), UNILOCK_OK);
}

struct stop_ctx {
	int calls, stop_at;
};

static int32_t stop_visit(void *user_data, const unilock_lock_info *lock)
{
	struct stop_ctx *c = user_data;
	(void)lock;
	c->calls++;
	return c->calls == c->stop_at ? 7 : 0;
}

static void test_list_locks_stops_early(void **state)
{
	unilock_owner h1 = OWN_H1;
	struct stop_ctx c = {0, 2};
	size_t i, count = 0;
	for (i = 0; i < 5; i++)
		LOCK_OK(UL, FILE_A, &h1, W, S, i * 10, 5);
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, stop_visit, &c, &count), UNILOCK_OK);
	assert_int_equal(c.calls, 2);
	assert_int_equal(count, 5); /* the count is the snapshot's */
	c.calls = 0;
	c.stop_at = 1;
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, stop_visit, &c, NULL), UNILOCK_OK);
	assert_int_equal(c.calls, 1);
	c.calls = 0;
	c.stop_at = 100;
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, stop_visit, &c, NULL), UNILOCK_OK);
	assert_int_equal(c.calls, 5);
	/* A file nobody locked: no visit, count 0. */
	c.calls = 0;
	count = 12345;
	assert_status(unilock_list_locks(UL, FILE_C, FLEN, stop_visit, &c, &count), UNILOCK_OK);
	assert_int_equal(c.calls, 0);
	assert_int_equal(count, 0);
}

struct reenter_ctx {
	const unilock *ul;
	int visits, failures;
};

/* Re-entrancy: unlock the visited lock, list the file again, take a copy on another file. */
static int32_t reenter_visit(void *user_data, const unilock_lock_info *lock)
{
	struct reenter_ctx *c = user_data;
	unilock_owner o;
	unilock_lock_req r;
	size_t n = 12345;
	c->visits++;
	o.client = lock->client;
	o.owner = lock->owner;
	o.owner_len = lock->owner_len;
	o.open_id = lock->open_id;
	if (unilock_list_locks(c->ul, FILE_A, FLEN, NULL, NULL, &n) != UNILOCK_OK || n == 12345)
		c->failures++;
	r = req4(lock->flavour, lock->type, lock->offset, lock->length);
	if (unilock_lock(c->ul, FILE_B, FLEN, &o, &r, NULL) != UNILOCK_OK)
		c->failures++;
	if (unilock_unlock(c->ul, FILE_A, FLEN, &o, lock->flavour, lock->offset, lock->length) != UNILOCK_OK)
		c->failures++;
	return 0;
}

static void test_list_locks_reentrant_visitor(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3, a = OWN_A;
	struct reenter_ctx c;
	size_t count = 0;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	LOCK_OK(UL, FILE_A, &h1, W, S, 5, 2); /* inside its own exclusive lock */
	LOCK_OK(UL, FILE_A, &h3, W, S, 20, 0);
	LOCK_OK(UL, FILE_A, &a, P, S, 40, EOF_LEN);
	c.ul = UL;
	c.visits = 0;
	c.failures = 0;
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, reenter_visit, &c, &count), UNILOCK_OK);
	assert_int_equal(count, 4);
	assert_int_equal(c.visits, 4);
	assert_int_equal(c.failures, 0);
	assert_no_locks(UL, FILE_A);
	assert_locks(UL, FILE_B, EW(X, 0, 10, "smb:guid-1", "lctx", 1), EW(S, 5, 2, "smb:guid-1", "lctx", 1),
		     EW(S, 20, 0, "smb:guid-3", "lctx", 1), EP(S, 40, EOF_LEN, "nlm:hostA", "svid-1"));
}

/* Listing FILE_A from inside a listing of FILE_A. */
static int32_t inner_count_visit(void *user_data, const unilock_lock_info *lock)
{
	(void)lock;
	(*(int *)user_data)++;
	return 0;
}

static int32_t nested_visit(void *user_data, const unilock_lock_info *lock)
{
	struct reenter_ctx *c = user_data;
	int inner = 0;
	(void)lock;
	c->visits++;
	if (unilock_list_locks(c->ul, FILE_A, FLEN, inner_count_visit, &inner, NULL) != UNILOCK_OK || inner != 3)
		c->failures++;
	return 0;
}

static void test_list_locks_nested(void **state)
{
	unilock_owner h1 = OWN_H1;
	struct reenter_ctx c;
	LOCK_OK(UL, FILE_A, &h1, W, S, 0, 1);
	LOCK_OK(UL, FILE_A, &h1, W, S, 1, 1);
	LOCK_OK(UL, FILE_A, &h1, W, S, 2, 1);
	c.ul = UL;
	c.visits = 0;
	c.failures = 0;
	assert_status(unilock_list_locks(UL, FILE_A, FLEN, nested_visit, &c, NULL), UNILOCK_OK);
	assert_int_equal(c.visits, 3);
	assert_int_equal(c.failures, 0);
}

static void test_list_locks_args(void **state)
{
	struct stop_ctx c = {0, 0};
	uint8_t fid129[UNILOCK_FILE_ID_MAX + 1];
	size_t count = 12345;
	memset(fid129, 'f', sizeof fid129);
	populate(UL);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_list_locks(NULL, FILE_A, FLEN, stop_visit, &c, &count));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_list_locks(UL, NULL, FLEN, stop_visit, &c, &count));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_list_locks(UL, FILE_A, 0, stop_visit, &c, &count));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_list_locks(UL, NULL, 0, stop_visit, &c, &count));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID,
			 unilock_list_locks(UL, fid129, sizeof fid129, stop_visit, &c, &count));
	assert_int_equal(count, 12345);
	assert_int_equal(c.calls, 0);
	assert_status(unilock_list_locks(UL, fid129, UNILOCK_FILE_ID_MAX, stop_visit, &c, &count), UNILOCK_OK);
	assert_int_equal(count, 0);
}

/* ---- misc -------------------------------------------------------------------------------------- */

/* Every lock goes with the handle; another handle is an independent table. */
static void test_handles_are_independent(void **state)
{
	unilock *other = NULL;
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	unilock_lock_req r = req4(W, X, 0, 10);
	assert_status(unilock_open(NULL, &other), UNILOCK_OK);
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	assert_status(unilock_lock(other, FILE_A, FLEN, &h3, &r, NULL), UNILOCK_OK);
	assert_int_equal(lock_count(other, FILE_A, FLEN), 1);
	unilock_close(other);
	/* Closing a handle that still holds many locks frees them (valgrind checks). */
	assert_status(unilock_open(NULL, &other), UNILOCK_OK);
	{
		size_t i;
		for (i = 0; i < 100; i++) {
			uint8_t fid[2] = {(uint8_t)i, 7};
			unilock_owner o = owner3("many", "o", i);
			r = req4(i & 1 ? P : W, i & 2 ? X : S, i, 10);
			assert_status(unilock_lock(other, fid, sizeof fid, &o, &r, NULL), UNILOCK_OK);
			assert_status(unilock_lock(other, FILE_A, FLEN, &o, &(unilock_lock_req){W, S, 1000, i, 0}, NULL),
				      UNILOCK_OK);
		}
	}
	unilock_close(other);
	unilock_close(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, open_handle, close_handle)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_lock_args),
		T(test_unlock_args),
		T(test_test_args),
		T(test_lock_many_args),
		T(test_unlock_many_args),
		T(test_check_io_args),
		T(test_release_open_args),
		T(test_null_request),
		T(test_unknown_enums),
		T(test_many_failed_index_for_unknown_enum),
		T(test_invalid_ranges),
		T(test_file_ids_are_opaque),
		T(test_canonical_file_id),
		T(test_posix_merge),
		T(test_posix_split_on_unlock),
		T(test_posix_upgrade_downgrade),
		T(test_posix_refused_upgrade_keeps_old_lock),
		T(test_posix_to_eof),
		T(test_posix_test_reports_holder),
		T(test_holder_max_sizes),
		T(test_posix_owner_identity),
		T(test_windows_stacking),
		T(test_windows_shared_inside_own_exclusive),
		T(test_windows_exclusive_over_own_refused),
		T(test_windows_exact_unlock),
		T(test_windows_unlock_exclusive_first),
		T(test_windows_zero_length_table),
		T(test_windows_zero_length_strictly_inside),
		T(test_windows_high_offsets),
		T(test_windows_two_opens_are_two_owners),
		T(test_cross_flavour_conflicts),
		T(test_lock_many_grants_all),
		T(test_lock_many_all_or_none),
		T(test_lock_many_conflict_with_own_element),
		T(test_lock_many_undo_posix_merges),
		T(test_lock_many_undo_posix_splits),
		T(test_lock_many_undo_minimal),
		T(test_lock_many_undo_stress),
		T(test_lock_many_mixed_flavours),
		T(test_unlock_many_stops_at_first_error),
		T(test_unlock_many_ignores_type),
		T(test_check_io_windows_shared),
		T(test_check_io_windows_exclusive),
		T(test_check_io_posix),
		T(test_check_io_edges),
		T(test_release_open),
		T(test_release_client),
		T(test_list_locks_order),
		T(test_list_locks_stops_early),
		T(test_list_locks_reentrant_visitor),
		T(test_list_locks_nested),
		T(test_list_locks_args),
		T(test_handles_are_independent),
	};
	return cmocka_run_group_tests_name("unilock lock API", tests, NULL, NULL);
}
