/*
 * smbtorture cases transcribed to the C API (issue 13): each scenario of Samba 4.17's
 * source4/torture/smb2/lease.c and oplock.c is replayed as the unilock calls smbd makes for it
 * (unilock_file_open per SMB2 CREATE, unilock_lease_ack per LEASE_BREAK_ACK, unilock_lock for
 * SMB2 LOCK), and asserts what the test asserts of the server's answers and break notifications.
 *
 * Also the API of issue 13: the lease version and parent key in the result, the directory-lease
 * switch, the size-prefixed request, the retry flag, oplock events naming their open, and acks
 * without a file id.
 */
#define _GNU_SOURCE
#include "common.h"

#include <stdio.h>
#include <stdlib.h>

#define R UNILOCK_LEASE_R
#define H UNILOCK_LEASE_H
#define WR UNILOCK_LEASE_W
#define RH (R | H)
#define RW (R | WR)
#define RWH (R | WR | H)

#define LEASE UNILOCK_LEASE_KIND_LEASE
#define OPLOCK UNILOCK_LEASE_KIND_OPLOCK

struct tev {
	uint32_t type, status;
	uint64_t request_id, open_id;
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t key[16];
	uint32_t kind, state, break_to, epoch, ack_required;
};

struct tfx {
	unilock *ul;
	size_t n;
	struct tev ev[64];
};

static void record(void *user_data, const unilock_event *e)
{
	struct tfx *fx = user_data;
	struct tev *r;
	if (fx->n >= 64)
		return;
	r = &fx->ev[fx->n++];
	memset(r, 0, sizeof *r);
	r->type = e->type;
	r->status = e->status;
	r->request_id = e->request_id;
	r->open_id = e->open_id;
	if (e->client)
		snprintf(r->client, sizeof r->client, "%s", e->client);
	memcpy(r->key, e->lease_key, 16);
	r->kind = e->lease_kind;
	r->state = e->lease_state;
	r->break_to = e->break_to;
	r->epoch = e->epoch;
	r->ack_required = e->ack_required;
}

static int open_fx(void **state, uint32_t flags)
{
	struct tfx *fx = calloc(1, sizeof *fx);
	unilock_config cfg;
	if (fx == NULL)
		return -1;
	unilock_config_init(&cfg);
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = record;
	cfg.event_user_data = fx;
	test_backend_config(&cfg);
	cfg.flags |= flags;
	if (unilock_open(&cfg, &fx->ul) != UNILOCK_OK) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	return open_fx(state, 0);
}

static int setup_no_dir_leases(void **state)
{
	return open_fx(state, UNILOCK_CONFIG_NO_DIRECTORY_LEASES);
}

static int teardown(void **state)
{
	struct tfx *fx = *state;
	free_leftover_dumps();
	unilock_close(fx->ul);
	test_backend_cleanup();
	free(fx);
	return 0;
}

#define FX ((struct tfx *)*state)
#define UL ((const unilock *)FX->ul)

static const uint8_t K1[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t K2[16] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const uint8_t K3[16] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
static const uint8_t PK[16] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

/* Events delivered so far (the handle is in loop mode: they come inside unilock_process_events). */
static size_t pump(struct tfx *fx)
{
	size_t n = 0;
	assert_status(unilock_process_events(fx->ul, &n), UNILOCK_OK);
	return fx->n;
}

static void reset(struct tfx *fx)
{
	pump(fx);
	fx->n = 0;
}

static uint32_t create(const unilock *ul, const char *client, uint64_t open_id, uint32_t kind, uint32_t flags,
		       uint32_t requested, const uint8_t *key, unilock_open_result *out)
{
	unilock_open_req q;
	unilock_wait w = {open_id, NULL, 0};
	unilock_open_req_init(&q);
	q.lease_kind = kind;
	q.flags = flags;
	q.requested = requested;
	q.lease_version = 2;
	if (key)
		memcpy(q.lease_key, key, 16);
	q.file_size = 0;
	memset(out, 0xAB, sizeof *out);
	return unilock_file_open(ul, FILE_A, FLEN, client, open_id, &q, &w, out);
}

/* SMB2 CREATE that must complete at once with `want`; returns the epoch. */
static uint32_t create_ok(const unilock *ul, const char *client, uint64_t open_id, uint32_t requested,
			  const uint8_t *key, uint32_t want, int line)
{
	unilock_open_result res;
	uint32_t s = create(ul, client, open_id, LEASE, 0, requested, key, &res);
	if (s != UNILOCK_OK || res.state != want) {
		print_error("line %d: CREATE %s/%llu asking 0x%x: status %u, state 0x%x; expected OK with 0x%x\n", line,
			    client, (unsigned long long)open_id, requested, s, s == UNILOCK_OK ? res.state : 0, want);
		fail();
	}
	return res.epoch;
}
#define CREATE_OK(client, id, req, key, want) create_ok(UL, client, id, req, key, want, __LINE__)

static void check_break(const struct tev *e, const uint8_t *key, uint32_t from, uint32_t to, int line)
{
	if (e->type != UNILOCK_EVENT_LEASE_BREAK || memcmp(e->key, key, 16) != 0 || e->state != from ||
	    e->break_to != to) {
		print_error("line %d: event type %u key[0]=%u %x->%x; expected a break of key[0]=%u %x->%x\n", line,
			    e->type, e->key[0], e->state, e->break_to, key[0], from, to);
		fail();
	}
}
#define CHECK_BREAK(e, key, from, to) check_break((e), (key), (from), (to), __LINE__)

static const char *names[] = {"", "R", "RH", "RW", "RWH"};
static const uint32_t values[] = {0, R, RH, RW, RWH};

/* smb2.lease.upgrade2: an uncontended same-key CREATE changes the lease iff the request is a valid
 * strict superset; otherwise (none included) the current state is reported and kept. */
static void test_upgrade2(void **state)
{
	size_t i, j;
	for (i = 0; i < 5; i++) {
		for (j = 0; j < 5; j++) {
			uint32_t held = values[i], up = values[j];
			uint32_t expected = ((held & up) == held && up != held) ? up : held;
			unilock_open_result res;
			CREATE_OK("smb:c1", 1, held, K1, held);
			CREATE_OK("smb:c1", 2, up, K1, expected);
			/* The lease stays what it is: a third same-key "" CREATE reports it. */
			assert_status(create(UL, "smb:c1", 3, LEASE, 0, 0, K1, &res), UNILOCK_OK);
			if (res.state != expected) {
				print_error("upgrade2 %s -> %s: lease now 0x%x, expected 0x%x\n", names[i], names[j],
					    res.state, expected);
				fail();
			}
			assert_int_equal(pump(FX), 0); /* no break ever */
			assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
			assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 2), UNILOCK_OK);
			assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 3), UNILOCK_OK);
		}
	}
}

/* smb2.lease.upgrade3: with two leases, upgrading lease1 succeeds iff the request is a valid strict
 * superset that can be held next to lease2; lease2 is never broken. */
static void test_upgrade3(void **state)
{
	static const uint32_t rows[20][4] = {
	    {R, R, 0, R},    {R, R, R, R},    {R, R, RW, R},    {R, R, RH, RH},    {R, R, RWH, R},
	    {R, RH, 0, R},   {R, RH, R, R},   {R, RH, RW, R},   {R, RH, RH, RH},   {R, RH, RWH, R},
	    {RH, R, 0, RH},  {RH, R, R, RH},  {RH, R, RW, RH},  {RH, R, RH, RH},  {RH, R, RWH, RH},
	    {RH, RH, 0, RH}, {RH, RH, R, RH}, {RH, RH, RW, RH}, {RH, RH, RH, RH}, {RH, RH, RWH, RH},
	};
	size_t i;
	for (i = 0; i < 20; i++) {
		CREATE_OK("smb:c1", 1, rows[i][0], K1, rows[i][0]);
		CREATE_OK("smb:c1", 2, rows[i][1], K2, rows[i][1]);
		CREATE_OK("smb:c1", 3, rows[i][2], K1, rows[i][3]);
		assert_int_equal(pump(FX), 0);
		assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
		assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 2), UNILOCK_OK);
		assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 3), UNILOCK_OK);
	}
}

/* smb2.lease.statopen: a stat open gets the RWH lease; a non-stat same-key "" open keeps and reports
 * it with no break; another key's RWH open breaks it to RH (after the ack it gets RH). */
static void test_statopen(void **state)
{
	unilock_open_result res;
	CREATE_OK("smb:c1", 1, RWH, K1, RWH);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 2, LEASE, UNILOCK_OPEN_STAT, RWH, K1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
	CREATE_OK("smb:c1", 3, 0, K1, RWH);
	assert_int_equal(pump(FX), 0);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 3), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 4, LEASE, 0, RWH, K2, &res), UNILOCK_PENDING);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RWH, RH);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K1, RH), UNILOCK_OK);
	assert_int_equal(pump(FX), 2);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_status(create(UL, "smb:c1", 4, LEASE, UNILOCK_OPEN_RETRY, RWH, K2, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
}

/* smb2.lease.lock1: two leases of one client and one of another; a byte-range lock on lease1's open
 * breaks the other two to none; a same-key "" CREATE then reports lease1 still RH (not dropped) and
 * the others none; a lock through lease3's open then breaks lease1 to none. */
static void test_lock1(void **state)
{
	unilock_open_result res;
	unilock_owner h1 = owner3("smb:c1", "h1", 1), h3 = owner3("smb:c2", "h3", 3);
	CREATE_OK("smb:c1", 1, RWH, K1, RWH);
	assert_status(create(UL, "smb:c1", 2, LEASE, 0, RWH, K2, &res), UNILOCK_PENDING);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RWH, RH);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K1, RH), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 2, LEASE, UNILOCK_OPEN_RETRY, RWH, K2, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	CREATE_OK("smb:c2", 3, RWH, K3, RH);
	reset(FX);
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 1);
	assert_int_equal(pump(FX), 2);
	CHECK_BREAK(&FX->ev[0], K2, RH, 0);
	CHECK_BREAK(&FX->ev[1], K3, RH, 0);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K2, 0), UNILOCK_OK);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c2", K3, 0), UNILOCK_OK);
	CREATE_OK("smb:c1", 11, 0, K1, RH);
	CREATE_OK("smb:c1", 12, 0, K2, 0);
	CREATE_OK("smb:c2", 13, 0, K3, 0);
	reset(FX);
	LOCK_OK(UL, FILE_A, &h3, W, X, 100, 1);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RH, 0);
}

/* smb2.lease.breaking3: a conflicting open waits for the RWH->RH ack; a same-key open during the
 * break reports RWH with BREAK_IN_PROGRESS; an overwriting open sends no break of its own but waits;
 * after the ack the break goes on RH->R, after that ack R->none; then both opens complete. */
static void test_breaking3(void **state)
{
	unilock_open_result res, r2, r3;
	uint64_t id2, id3;
	CREATE_OK("smb:c1", 1, RWH, K1, RWH);
	assert_status(create(UL, "smb:c1", 2, UNILOCK_LEASE_KIND_NONE, 0, 0, NULL, &r2), UNILOCK_PENDING);
	id2 = r2.request_id;
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RWH, RH);
	assert_status(create(UL, "smb:c1", 5, LEASE, 0, RWH, K1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
	assert_true(res.lease_flags & UNILOCK_LEASE_FLAG_BREAK_IN_PROGRESS);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 5), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 3, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_OVERWRITE, 0, NULL, &r3),
		      UNILOCK_PENDING);
	id3 = r3.request_id;
	assert_int_equal(pump(FX), 1); /* no new break */
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K1, RH), UNILOCK_OK);
	assert_int_equal(pump(FX), 2);
	CHECK_BREAK(&FX->ev[1], K1, RH, R);
	/* Neither waiting open is done while the lease is still breaking. */
	assert_status(create(UL, "smb:c1", 5, LEASE, 0, 0, K1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	assert_true(res.lease_flags & UNILOCK_LEASE_FLAG_BREAK_IN_PROGRESS);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 5), UNILOCK_OK);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K1, R), UNILOCK_OK);
	assert_int_equal(pump(FX), 5);
	CHECK_BREAK(&FX->ev[2], K1, R, 0);
	assert_int_equal(FX->ev[2].ack_required, 0);
	assert_int_equal(FX->ev[3].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_int_equal(FX->ev[4].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_true((FX->ev[3].request_id == id2 && FX->ev[4].request_id == id3) ||
		    (FX->ev[3].request_id == id3 && FX->ev[4].request_id == id2));
	assert_status(create(UL, "smb:c1", 2, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_RETRY, 0, NULL, &r2), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 3, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_RETRY | UNILOCK_OPEN_OVERWRITE, 0,
			     NULL, &r3),
		      UNILOCK_OK);
	assert_int_equal(pump(FX), 5);
}

/* smb2.lease.breaking4: an overwriting open of an RH lease breaks it to none (ack required) and is
 * not blocked, also while the lease is breaking; the lease still reports RH with BREAK_IN_PROGRESS;
 * a retry of such an open does wait for it. */
static void test_breaking4(void **state)
{
	unilock_open_result res;
	CREATE_OK("smb:c1", 1, RH, K1, RH);
	assert_status(create(UL, "smb:c2", 2, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_OVERWRITE, 0, NULL, &res),
		      UNILOCK_OK);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RH, 0);
	assert_int_equal(FX->ev[0].ack_required, 1);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c2", 2), UNILOCK_OK);
	assert_status(create(UL, "smb:c2", 3, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_OVERWRITE, 0, NULL, &res),
		      UNILOCK_OK);
	assert_int_equal(pump(FX), 1);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c2", 3), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 4, LEASE, 0, 0, K1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	assert_true(res.lease_flags & UNILOCK_LEASE_FLAG_BREAK_IN_PROGRESS);
	assert_status(create(UL, "smb:c2", 5, UNILOCK_LEASE_KIND_NONE,
			     UNILOCK_OPEN_OVERWRITE | UNILOCK_OPEN_RETRY, 0, NULL, &res),
		      UNILOCK_PENDING);
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", K1, 0), UNILOCK_OK);
	assert_int_equal(pump(FX), 2);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
}

/* smb2.oplock.exclusive1: an exclusive oplock (no H) is not broken by a sharing violation; a batch
 * oplock goes to Level II. Oplock events name their open. */
static void test_oplock_exclusive1_and_batch(void **state)
{
	unilock_open_result res;
	uint8_t batch_key[16];
	assert_status(create(UL, "smb:c1", 7, OPLOCK, 0, RW, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RW);
	assert_status(create(UL, "smb:c2", 8, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_SHARING_VIOLATION, 0, NULL, &res),
		      UNILOCK_OK);
	assert_int_equal(pump(FX), 0);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 7), UNILOCK_OK);
	assert_status(create(UL, "smb:c1", 9, OPLOCK, 0, RWH, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
	memcpy(batch_key, res.lease_key, 16);
	assert_int_equal(res.lease_version, 0); /* oplocks have no lease version */
	assert_status(create(UL, "smb:c2", 8, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_SHARING_VIOLATION, 0, NULL, &res),
		      UNILOCK_PENDING);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], batch_key, RWH, R);
	assert_int_equal(FX->ev[0].kind, OPLOCK);
	assert_int_equal(FX->ev[0].open_id, 9);
	/* An oplock's key is per file: an ack without the file finds nothing. */
	assert_status(unilock_lease_ack(UL, NULL, 0, "smb:c1", batch_key, R), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", batch_key, R), UNILOCK_OK);
}

/* smb2.lease.dirlease_oplocks: directories never get oplocks, whatever is asked. */
static void test_dir_oplocks(void **state)
{
	static const uint32_t levels[] = {R, RW, RWH};
	unilock_open_result res;
	size_t i;
	for (i = 0; i < ARRAY_LEN(levels); i++) {
		assert_status(create(UL, "smb:c1", 20 + i, OPLOCK, UNILOCK_OPEN_DIRECTORY, levels[i], NULL, &res),
			      UNILOCK_OK);
		assert_int_equal(res.state, 0);
	}
	/* Directory leases are offered by default: R and RH, never W. */
	assert_status(create(UL, "smb:c2", 30, LEASE, UNILOCK_OPEN_DIRECTORY, RWH, K2, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
}

/* UNILOCK_CONFIG_NO_DIRECTORY_LEASES: a directory lease request is granted none and records nothing. */
static void test_no_directory_leases(void **state)
{
	unilock_open_result res;
	assert_status(create(UL, "smb:c1", 1, LEASE, UNILOCK_OPEN_DIRECTORY, RH, K1, &res), UNILOCK_OK);
	assert_int_equal(res.state, 0);
	assert_int_equal(res.lease_version, 0);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", K1), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
	/* Files still get leases. */
	assert_status(create(UL, "smb:c1", 2, LEASE, 0, RWH, K2, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
}

/* A lease keeps the version and parent key of its first request; both are echoed to every open. */
static void test_version_and_parent_key(void **state)
{
	unilock_open_req q;
	unilock_open_result res;
	unilock_open_req_init(&q);
	q.lease_kind = LEASE;
	q.flags = UNILOCK_OPEN_PARENT_KEY;
	q.requested = RH;
	q.lease_version = 2;
	q.epoch = 0x10;
	memcpy(q.lease_key, K1, 16);
	memcpy(q.parent_lease_key, PK, 16);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &q, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	assert_int_equal(res.epoch, 0x11);
	assert_int_equal(res.lease_version, 2);
	assert_int_equal(res.lease_flags, UNILOCK_LEASE_FLAG_PARENT_KEY_SET);
	assert_memory_equal(res.parent_lease_key, PK, 16);
	/* A v1 request of the same key, without a parent key, joins the v2 lease. */
	q.flags = 0;
	q.lease_version = 1;
	memset(q.parent_lease_key, 0, 16);
	q.requested = 0;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 2, &q, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	assert_int_equal(res.lease_version, 2);
	assert_memory_equal(res.parent_lease_key, PK, 16);
	/* A plain open has no lease version. */
	assert_status(create(UL, "smb:c2", 3, UNILOCK_LEASE_KIND_NONE, 0, 0, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.lease_version, 0);
	assert_int_equal(res.lease_flags, 0);
}

/* unilock_open_req is size-prefixed: too small is refused, unknown non-zero tail bytes are refused,
 * a zero tail is accepted. */
static void test_open_req_size(void **state)
{
	struct {
		unilock_open_req q;
		uint8_t tail[16];
	} big;
	unilock_open_req q;
	unilock_open_result res;
	unilock_open_req_init(&q);
	assert_int_equal(q.size, sizeof q);
	assert_int_equal(q.lease_version, 1);
	q.size = sizeof q - 8;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &q, NULL, &res), UNILOCK_E_INVALID);
	q.size = 0;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &q, NULL, &res), UNILOCK_E_INVALID);
	memset(&big, 0, sizeof big);
	unilock_open_req_init(&big.q);
	big.q.size = sizeof big;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &big.q, NULL, &res), UNILOCK_OK);
	big.tail[3] = 1;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 2, &big.q, NULL, &res), UNILOCK_E_INVALID);
	unilock_open_req_init(NULL); /* does nothing */
}

/* smb2.lease.v2_rename-shaped: a same-key open during the life of a v2 lease with a parent key keeps
 * the lease and its epoch (a rename's open asks for less and must not drop it), and the rename's
 * trigger from another key breaks H. */
static void test_v2_same_key_keeps_epoch(void **state)
{
	unilock_open_result res;
	uint32_t e1 = CREATE_OK("smb:c1", 1, RWH, K1, RWH);
	uint32_t e2 = CREATE_OK("smb:c1", 2, 0, K1, RWH);
	uint32_t e3 = CREATE_OK("smb:c1", 3, R, K1, RWH);
	assert_int_equal(e1, e2);
	assert_int_equal(e2, e3);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_TRIGGER_RENAME, NULL, NULL),
		      UNILOCK_OK);
	assert_int_equal(pump(FX), 0); /* its own rename breaks nothing */
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c2", K2, UNILOCK_TRIGGER_RENAME, NULL, NULL),
		      UNILOCK_E_BUSY);
	assert_int_equal(pump(FX), 1);
	CHECK_BREAK(&FX->ev[0], K1, RWH, RW);
	assert_int_equal(FX->ev[0].epoch, e1 + 1);
	(void)res;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_upgrade2, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upgrade3, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_statopen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lock1, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_breaking3, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_breaking4, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oplock_exclusive1_and_batch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dir_oplocks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_directory_leases, setup_no_dir_leases, teardown),
	    cmocka_unit_test_setup_teardown(test_version_and_parent_key, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_req_size, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_v2_same_key_keeps_epoch, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
