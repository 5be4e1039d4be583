/*
 * Helpers shared by the cmocka tests of the unilock C API.
 *
 * The tests include <unilock.h> (not "unilock.h") so that the same sources build against the staged
 * header (-I../include) and against an installed one found through pkg-config.
 */
#ifndef UNILOCK_CTESTS_COMMON_H
#define UNILOCK_CTESTS_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <unilock.h>

#define P UNILOCK_POSIX
#define W UNILOCK_WINDOWS
#define S UNILOCK_SHARED
#define X UNILOCK_EXCLUSIVE
#define EOF_LEN UNILOCK_TO_EOF

/* The files every test uses; a snapshot (state_t) covers all three. */
#define FILE_A ((const uint8_t *)"file-A")
#define FILE_B ((const uint8_t *)"file-B")
#define FILE_C ((const uint8_t *)"file-C")
#define FLEN ((size_t)6)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* An owner: client, owner bytes as a C string (strlen of them), open id. */
static inline unilock_owner owner3(const char *client, const char *owner, uint64_t open_id)
{
	unilock_owner o;
	o.client = client;
	o.owner = (const uint8_t *)owner;
	o.owner_len = owner ? strlen(owner) : 0;
	o.open_id = open_id;
	return o;
}

static inline unilock_lock_req req4(uint32_t flavour, uint32_t type, uint64_t offset, uint64_t length)
{
	unilock_lock_req r;
	r.flavour = flavour;
	r.type = type;
	r.offset = offset;
	r.length = length;
	r.flags = 0;
	return r;
}

/* cmocka fixtures: *state is a fresh handle. */
int open_handle(void **state);
/* Points `cfg` at the backend UNILOCK_TEST_BACKEND names (memory, db, shared); a fresh database each
 * time, removed by test_backend_cleanup (close_handle calls it). */
void test_backend_config(unilock_config *cfg);
void test_backend_cleanup(void);
int close_handle(void **state);

/* Status assertion that names both codes. */
void assert_status_impl(uint32_t actual, uint32_t expected, const char *expr, const char *file, int line);
#define assert_status(actual, expected) \
	assert_status_impl((uint32_t)(actual), (uint32_t)(expected), #actual, __FILE__, __LINE__)

/* A listing of one file, as unilock_list_locks reports it. */
typedef struct {
	size_t n, cap;
	unilock_lock_info *v;
} dump_t;

void dump_file(const unilock *ul, const uint8_t *file, size_t len, dump_t *out);
void dump_free(dump_t *d);
/* Frees listings a failed assertion left behind (called by the fixtures' teardown). */
void free_leftover_dumps(void);
int info_equal(const unilock_lock_info *a, const unilock_lock_info *b);
void print_info(const char *prefix, const unilock_lock_info *l);

/* The listings of FILE_A, FILE_B and FILE_C. */
typedef struct {
	dump_t f[3];
} state_t;

void state_take(const unilock *ul, state_t *s);
void state_free(state_t *s);
void assert_state_equal_impl(const state_t *before, const state_t *after, const char *file, int line);

/* Runs `call`, checks it returns `expected` and that no file's locks changed. */
#define EXPECT_UNCHANGED(ul, expected, call)                                  \
	do {                                                                  \
		state_t before_, after_;                                      \
		state_take((ul), &before_);                                   \
		assert_status((call), (expected));                            \
		state_take((ul), &after_);                                    \
		assert_state_equal_impl(&before_, &after_, __FILE__, __LINE__); \
		state_free(&before_);                                         \
		state_free(&after_);                                          \
	} while (0)

/* The expected locks of a file, compared as a multiset (order is checked separately). */
typedef struct {
	uint32_t flavour, type;
	uint64_t offset, length;
	const char *client;
	const char *owner;
	uint64_t open_id;
} exp_lock;

void assert_locks_impl(const unilock *ul, const uint8_t *file, size_t len, const exp_lock *e, size_t n,
		       const char *where, int line);
#define assert_locks(ul, file, ...)                                                            \
	do {                                                                                   \
		const exp_lock e_[] = {__VA_ARGS__};                                           \
		assert_locks_impl((ul), (file), FLEN, e_, ARRAY_LEN(e_), __FILE__, __LINE__); \
	} while (0)
#define assert_no_locks(ul, file) assert_locks_impl((ul), (file), FLEN, NULL, 0, __FILE__, __LINE__)

/* Number of locks on a file. */
size_t lock_count(const unilock *ul, const uint8_t *file, size_t len);

/*
 * Takes one lock on a file of length FLEN after asking unilock_test the same question: the two must
 * agree; on a conflict both holders must really conflict with the request and the state must be
 * unchanged; on success a holder passed in must be untouched. `holder_out` (may be NULL) receives the
 * holder the lock call reported.
 */
void expect_lock_impl(const unilock *ul, const uint8_t *file, const unilock_owner *o, uint32_t flavour,
		      uint32_t type, uint64_t offset, uint64_t length, uint32_t expected,
		      unilock_lock_info *holder_out, const char *where, int line);
#define LOCK_OK(ul, file, o, fl, ty, off, len) \
	expect_lock_impl((ul), (file), (o), (fl), (ty), (off), (len), UNILOCK_OK, NULL, __FILE__, __LINE__)
#define LOCK_CONFLICT(ul, file, o, fl, ty, off, len, holder)                                          \
	expect_lock_impl((ul), (file), (o), (fl), (ty), (off), (len), UNILOCK_E_CONFLICT, (holder), __FILE__, \
			 __LINE__)

void expect_unlock_impl(const unilock *ul, const uint8_t *file, const unilock_owner *o, uint32_t flavour,
			uint64_t offset, uint64_t length, uint32_t expected, const char *where, int line);
#define UNLOCK_OK(ul, file, o, fl, off, len) \
	expect_unlock_impl((ul), (file), (o), (fl), (off), (len), UNILOCK_OK, __FILE__, __LINE__)
#define UNLOCK_NOT_LOCKED(ul, file, o, fl, off, len) \
	expect_unlock_impl((ul), (file), (o), (fl), (off), (len), UNILOCK_E_RANGE_NOT_LOCKED, __FILE__, __LINE__)

/* True if `h` (a reported holder) really refuses a request of owner `o` (SPEC.md section 2 and 3). */
int holder_refuses(const unilock_owner *o, const unilock_lock_req *r, const unilock_lock_info *h);

/* Checks a reported holder field by field. */
void assert_holder_impl(const unilock_lock_info *h, uint32_t flavour, uint32_t type, uint64_t offset,
			uint64_t length, const char *client, const uint8_t *owner, size_t owner_len,
			uint64_t open_id, const char *where, int line);
#define assert_holder(h, fl, ty, off, len, client, owner, open_id)                                \
	assert_holder_impl((h), (fl), (ty), (off), (len), (client), (const uint8_t *)(owner), \
			   strlen(owner), (open_id), __FILE__, __LINE__)

/* Fills a lock info with a pattern, and tells whether it still holds the pattern. */
void poison(void *p, size_t n);
int is_poisoned(const void *p, size_t n);

#endif
