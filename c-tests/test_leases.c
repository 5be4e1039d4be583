/*
 * cmocka tests of the lease, oplock and delegation section of unilock.h: unilock_file_open,
 * unilock_file_close, unilock_lease_ack, unilock_lease_release, unilock_break_trigger and the lease
 * events, against SPEC.md section 4 (MS-SMB2 / MS-FSA, smbtorture smb2.lease and smb2.oplock).
 *
 * The handle runs in UNILOCK_EVENTS_LOOP mode: break events are delivered on the test thread inside
 * unilock_process_events.
 */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#define R UNILOCK_LEASE_R
#define H UNILOCK_LEASE_H
#define WR UNILOCK_LEASE_W
#define RH (R | H)
#define RW (R | WR)
#define RWH (R | WR | H)

/* ---- recorder --------------------------------------------------------------------------------------- */

struct lev {
	uint32_t type, status;
	uint64_t request_id, token;
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t key[16];
	uint32_t kind, state, break_to, epoch, ack_required;
	uint8_t file[UNILOCK_FILE_ID_MAX];
	size_t file_len;
};

struct lfx {
	unilock *ul;
	size_t n;
	int bad;
	struct lev ev[64];
};

static void record(void *user_data, const unilock_event *e)
{
	struct lfx *fx = user_data;
	struct lev *r;
	if (fx->n >= 64 || e->file_id_len > UNILOCK_FILE_ID_MAX) {
		fx->bad++;
		return;
	}
	r = &fx->ev[fx->n++];
	memset(r, 0, sizeof *r);
	r->type = e->type;
	r->status = e->status;
	r->request_id = e->request_id;
	r->token = e->token;
	if (e->client)
		snprintf(r->client, sizeof r->client, "%s", e->client);
	memcpy(r->key, e->lease_key, 16);
	r->kind = e->lease_kind;
	r->state = e->lease_state;
	r->break_to = e->break_to;
	r->epoch = e->epoch;
	r->ack_required = e->ack_required;
	r->file_len = e->file_id_len;
	if (e->file_id_len)
		memcpy(r->file, e->file_id, e->file_id_len);
}

static int setup(void **state)
{
	struct lfx *fx = calloc(1, sizeof *fx);
	unilock_config cfg;
	if (fx == NULL)
		return -1;
	unilock_config_init(&cfg);
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = record;
	cfg.event_user_data = fx;
	test_backend_config(&cfg);
	if (unilock_open(&cfg, &fx->ul) != UNILOCK_OK) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct lfx *fx = *state;
	free_leftover_dumps();
	unilock_close(fx->ul);
	test_backend_cleanup();
	free(fx);
	return 0;
}

#define FX ((struct lfx *)*state)
#define UL ((const unilock *)FX->ul)

static const uint8_t K1[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t K2[16] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const uint8_t K3[16] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};

static unilock_open_req lease_req(uint32_t kind, uint32_t flags, uint32_t requested, const uint8_t *key)
{
	unilock_open_req r;
	unilock_open_req_init(&r);
	r.lease_kind = kind;
	r.flags = flags;
	r.requested = requested;
	r.lease_version = 2;
	if (key)
		memcpy(r.lease_key, key, 16);
	r.epoch = 0;
	r.break_timeout_ms = 0;
	r.file_size = 1000;
	return r;
}

/* Opens with a lease of `key` (or the kind's own key when NULL); returns the status, fills *out. */
static uint32_t open_lease(const unilock *ul, const uint8_t *file, const char *client, uint64_t open_id,
			   uint32_t kind, uint32_t flags, uint32_t requested, const uint8_t *key, int can_wait,
			   unilock_open_result *out)
{
	unilock_open_req r = lease_req(kind, flags, requested, key);
	unilock_wait w;
	w.token = open_id;
	w.user_data = NULL;
	w.timeout_ms = 0;
	memset(out, 0, sizeof *out);
	return unilock_file_open(ul, file, FLEN, client, open_id, &r, can_wait ? &w : NULL, out);
}

/* An open that must be granted at once with `want`. */
static void open_ok(const unilock *ul, const uint8_t *file, const char *client, uint64_t open_id, uint32_t kind,
		    uint32_t flags, uint32_t requested, const uint8_t *key, uint32_t want, int line)
{
	unilock_open_result res;
	uint32_t s = open_lease(ul, file, client, open_id, kind, flags, requested, key, 1, &res);
	if (s != UNILOCK_OK || res.state != want) {
		print_error("open by %s/%llu asking 0x%x: status %u (%s), state 0x%x; expected OK with 0x%x\n", client,
			    (unsigned long long)open_id, requested, s, unilock_strerror(s), res.state, want);
		_fail(__FILE__, line);
	}
}
#define OPEN_OK(file, client, id, kind, flags, req, key, want) \
	open_ok(UL, (file), (client), (id), (kind), (flags), (req), (key), (want), __LINE__)
#define LEASE UNILOCK_LEASE_KIND_LEASE

static size_t process(const unilock *ul)
{
	size_t n = 12345;
	assert_status(unilock_process_events(ul, &n), UNILOCK_OK);
	return n;
}

static void assert_break(const struct lev *e, const char *client, const uint8_t *key, uint32_t state,
			 uint32_t break_to, int ack)
{
	assert_int_equal(e->type, UNILOCK_EVENT_LEASE_BREAK);
	assert_string_equal(e->client, client);
	if (key)
		assert_memory_equal(e->key, key, 16);
	assert_int_equal(e->state, state);
	assert_int_equal(e->break_to, break_to);
	assert_int_equal(e->ack_required, (uint32_t)ack);
	assert_int_equal(e->request_id, 0);
	assert_int_equal(e->file_len, FLEN);
}

/* ---- grants ------------------------------------------------------------------------------------------ */

static void test_lease_grant_alone(void **state)
{
	unilock_open_result res;
	assert_status(open_lease(UL, FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, 1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
	assert_int_equal(res.epoch, 1); /* a new v2 lease starts at the client's epoch + 1 */
	assert_int_equal(res.breaking, 0);
	assert_memory_equal(res.lease_key, K1, 16);
	/* Every valid file state. */
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, R, K2, R);
	OPEN_OK(FILE_C, "smb:c1", 1, LEASE, 0, RW, K3, RW);
	assert_int_equal(process(UL), 0);
}

/* A state without R is granted none: an ordinary success. */
static void test_lease_without_r_is_none(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, H, K1, 0);
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, WR, K2, 0);
	OPEN_OK(FILE_C, "smb:c1", 1, LEASE, 0, WR | H, K3, 0);
}

static void test_lease_directory_drops_w(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, UNILOCK_OPEN_DIRECTORY, RWH, K1, RH);
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, UNILOCK_OPEN_DIRECTORY, RW, K2, R);
}

/* R and H may be held by many keys. */
static void test_lease_shared_rh(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RH, K1, RH);
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, RH);
	OPEN_OK(FILE_A, "smb:c3", 7, LEASE, 0, RH, K3, RH);
	assert_int_equal(process(UL), 0); /* nobody was broken */
}

/* W only while no open of another key exists. */
static void test_lease_w_needs_no_other_open(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, UNILOCK_LEASE_KIND_NONE, 0, 0, NULL, 0);
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RWH, K2, RH);
	assert_int_equal(process(UL), 0);
}

/* A stat open breaks nothing and does not prevent W. */
static void test_lease_stat_open(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	OPEN_OK(FILE_A, "smb:c2", 1, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_STAT, 0, NULL, 0);
	assert_int_equal(process(UL), 0);
	OPEN_OK(FILE_B, "smb:c2", 1, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_STAT, 0, NULL, 0);
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, RWH, K2, RWH);
}

/* Same key again: joins; upgraded only to a strict superset that can be granted whole; never down. */
static void test_lease_same_key(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, R, K1, R);
	assert_status(open_lease(UL, FILE_A, "smb:c1", 2, LEASE, 0, RH, K1, 1, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	assert_int_equal(res.epoch, 2); /* +1 per upgrade */
	OPEN_OK(FILE_A, "smb:c1", 3, LEASE, 0, R, K1, RH); /* never downgraded */
	/* R held next to another key: RWH asked by the same key stays as it is. */
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, R, K2, R);
	OPEN_OK(FILE_B, "smb:c2", 1, LEASE, 0, R, K3, R);
	OPEN_OK(FILE_B, "smb:c1", 2, LEASE, 0, RWH, K2, R);
	assert_int_equal(process(UL), 0);
}

/* A lease key belongs to one file per client. */
static void test_lease_key_on_two_files(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RH, K1, RH);
	assert_status(open_lease(UL, FILE_B, "smb:c1", 2, LEASE, 0, RH, K1, 1, &res), UNILOCK_E_INVALID);
	/* Another client may use the same key bytes anywhere. */
	OPEN_OK(FILE_B, "smb:c2", 1, LEASE, 0, RH, K1, RH);
}

/* No R or H while a byte-range lock starts below end of file (unless empty or overwriting). */
static void test_lease_byte_range_lock_rule(void **state)
{
	unilock_owner o = owner3("nlm:host", "svid", 0);
	unilock_open_req r;
	unilock_open_result res;
	LOCK_OK(UL, FILE_A, &o, P, S, 10, 5);
	r = lease_req(LEASE, 0, RH, K1);
	r.file_size = 100;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, 0);
	r = lease_req(LEASE, 0, RH, K2);
	r.file_size = 0; /* empty file */
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c2", 1, &r, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
	/* A lock starting at or past end of file does not count. (smb:c1's K1 still names FILE_A: a
	 * lease granted none exists, at none, for its key.) */
	LOCK_OK(UL, FILE_B, &o, P, S, 10, 5);
	r = lease_req(LEASE, 0, RH, K1);
	r.file_size = 10;
	assert_status(unilock_file_open(UL, FILE_B, FLEN, "smb:c3", 1, &r, NULL, &res), UNILOCK_OK);
	assert_int_equal(res.state, RH);
}

/* ---- breaks ------------------------------------------------------------------------------------------ */

/* An open of another key breaks W: RWH -> RH, acknowledged; the waiting open is told to retry. */
static void test_lease_break_w_on_open(void **state)
{
	unilock_open_result res;
	uint64_t wait_id;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, 1, &res), UNILOCK_PENDING);
	wait_id = res.request_id;
	assert_int_not_equal(wait_id, 0);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, RWH, RH, 1);
	/* While breaking, the requester without a wait is told to come back. */
	assert_status(open_lease(UL, FILE_A, "smb:c3", 1, LEASE, 0, RH, K3, 0, &res), UNILOCK_E_BUSY);
	/* The holder's own opens still work during the break ("break in progress"). */
	assert_status(open_lease(UL, FILE_A, "smb:c1", 2, LEASE, 0, RWH, K1, 1, &res), UNILOCK_OK);
	assert_int_equal(res.breaking, 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, RH), UNILOCK_OK);
	assert_true(process(UL) >= 1);
	assert_int_equal(FX->ev[FX->n - 1].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_int_equal(FX->ev[FX->n - 1].request_id, wait_id);
	assert_status(FX->ev[FX->n - 1].status, UNILOCK_OK);
	/* The retry is granted RH next to c1's RH. */
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, RH);
}

/* unilock_lease_ack statuses. */
static void test_lease_ack_statuses(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, 1, &res), UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, RWH), UNILOCK_E_BAD_ACK); /* not a subset */
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, RW), UNILOCK_E_BAD_ACK);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c2", K1, RH), UNILOCK_E_NOT_FOUND); /* other client */
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K3, RH), UNILOCK_E_NOT_FOUND); /* unknown key */
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_OK); /* any subset */
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_E_NO_BREAK); /* second ack */
	/* Arguments. */
	assert_status(unilock_lease_ack(NULL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_E_INVALID);
	assert_status(unilock_lease_ack(UL, NULL, FLEN, "smb:c1", K1, R), UNILOCK_E_INVALID);
	assert_status(unilock_lease_ack(UL, FILE_A, 0, "smb:c1", K1, R), UNILOCK_E_INVALID);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, NULL, K1, R), UNILOCK_E_INVALID);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", NULL, R), UNILOCK_E_INVALID);
}

/* Acknowledging none is accepted and ends the break. */
static void test_lease_ack_none(void **state)
{
	unilock_open_result res;
	uint64_t wait_id;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RWH, K2, 1, &res), UNILOCK_PENDING);
	wait_id = res.request_id;
	assert_int_equal(process(UL), 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_LEASE_NONE), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_int_equal(FX->ev[1].request_id, wait_id);
	/* W still needs c1's open gone; R and H are shared. */
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RWH, K2, RH);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_LEASE_NONE), UNILOCK_E_NO_BREAK);
}

/*
 * unilock_lease_ack to none: the lease holds nothing but stays known while its open is recorded (as
 * MS-SMB2 keeps the lease object with its opens), so a second ack answers UNILOCK_E_NO_BREAK, and it
 * goes with its last open.
 */
static void test_lease_ack_none_removes_lease(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RWH, K2, 1, &res), UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_LEASE_NONE), UNILOCK_OK);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_LEASE_NONE), UNILOCK_E_NO_BREAK);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_LEASE_NONE), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", K1), UNILOCK_E_NOT_FOUND);
}

/*
 * Regression test (fixed): UNILOCK_E_INVALID covers "an empty or oversize ... client", and
 * unilock_file_open / unilock_break_trigger / unilock_release_client answer it for "" and a 256-byte
 * client, but unilock_lease_ack, unilock_lease_release and unilock_file_close answer
 * UNILOCK_E_NOT_FOUND.
 */
static void test_lease_calls_validate_client(void **state)
{
	char client256[257];
	const char *bad[2];
	size_t i;
	memset(client256, 'c', 256);
	client256[256] = 0;
	bad[0] = "";
	bad[1] = client256;
	for (i = 0; i < 2; i++) {
		assert_status(unilock_break_trigger(UL, FILE_A, FLEN, bad[i], NULL, UNILOCK_TRIGGER_WRITE, NULL, NULL),
			      UNILOCK_E_INVALID);
		assert_status(unilock_release_client(UL, bad[i], NULL), UNILOCK_E_INVALID);
		assert_status(unilock_lease_ack(UL, FILE_A, FLEN, bad[i], K1, R), UNILOCK_E_INVALID);
		assert_status(unilock_lease_release(UL, FILE_A, FLEN, bad[i], K1), UNILOCK_E_INVALID);
		assert_status(unilock_file_close(UL, FILE_A, FLEN, bad[i], 1), UNILOCK_E_INVALID);
	}
}

/* R -> none takes effect at once: no ack, nothing to wait for. */
static void test_lease_r_break_needs_no_ack(void **state)
{
	uint64_t id = 12345;
	unilock_wait w = {1, NULL, 0};
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, R, K1, R);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "nfs4:c9", NULL, UNILOCK_TRIGGER_WRITE, &w, &id),
		      UNILOCK_OK);
	assert_int_equal(id, 12345);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, R, 0, 0);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, 0), UNILOCK_E_NO_BREAK);
}

/* A byte-range lock (either flavour) breaks other holders' R leases to none. */
static void test_lease_byte_range_lock_breaks_r(void **state)
{
	unilock_owner nlm = owner3("nlm:host", "svid", 0), smb = owner3("smb:c2", "lctx", 1);
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RH, K1, RH);
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, R, K2, R);
	LOCK_OK(UL, FILE_A, &nlm, P, S, 0, 10);
	LOCK_OK(UL, FILE_B, &smb, W, X, 0, 10);
	assert_int_equal(process(UL), 2);
	/* RH -> none must be acknowledged (the lease held more than R), R -> none not; the lockers
	 * never wait. */
	assert_break(&FX->ev[0], "smb:c1", K1, RH, 0, 1);
	assert_break(&FX->ev[1], "smb:c1", K2, R, 0, 0);
	assert_memory_equal(FX->ev[0].file, FILE_A, FLEN);
	assert_memory_equal(FX->ev[1].file, FILE_B, FLEN);
}

/* The requester's own lease is never broken by its trigger. */
static void test_lease_own_trigger(void **state)
{
	unilock_wait w = {1, NULL, 0};
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_TRIGGER_WRITE, &w, NULL),
		      UNILOCK_OK);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_TRIGGER_TRUNCATE, &w, NULL),
		      UNILOCK_OK);
	assert_int_equal(process(UL), 0);
}

/* Delete and rename take H away; truncate takes everything. */
static void test_lease_triggers(void **state)
{
	unilock_wait w = {1, NULL, 0};
	uint64_t id = 0;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RH, K1, RH);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c2", K2, UNILOCK_TRIGGER_DELETE, &w, &id),
		      UNILOCK_PENDING);
	assert_int_not_equal(id, 0);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, RH, R, 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_int_equal(FX->ev[1].request_id, id);

	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, RH, K3, RH);
	assert_status(unilock_break_trigger(UL, FILE_B, FLEN, "smb:c2", NULL, UNILOCK_TRIGGER_RENAME, NULL, NULL),
		      UNILOCK_E_BUSY);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[2], "smb:c1", K3, RH, R, 1);

	OPEN_OK(FILE_C, "smb:c1", 1, LEASE, 0, RWH, K2, RWH);
	assert_status(unilock_break_trigger(UL, FILE_C, FLEN, "nfs4:c9", NULL, UNILOCK_TRIGGER_TRUNCATE, &w, &id),
		      UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[3], "smb:c1", K2, RWH, 0, 1);
}

static void test_break_trigger_args(void **state)
{
	static const uint32_t bad[] = {0, 7, 99, UINT32_MAX};
	unilock_wait w = {1, NULL, 0};
	uint64_t id = 12345;
	size_t i;
	for (i = 0; i < ARRAY_LEN(bad); i++)
		assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", NULL, bad[i], &w, &id),
			      UNILOCK_E_INVALID);
	assert_status(unilock_break_trigger(NULL, FILE_A, FLEN, "smb:c1", NULL, UNILOCK_TRIGGER_WRITE, &w, &id),
		      UNILOCK_E_INVALID);
	assert_status(unilock_break_trigger(UL, NULL, FLEN, "smb:c1", NULL, UNILOCK_TRIGGER_WRITE, &w, &id),
		      UNILOCK_E_INVALID);
	assert_status(unilock_break_trigger(UL, FILE_A, 0, "smb:c1", NULL, UNILOCK_TRIGGER_WRITE, &w, &id),
		      UNILOCK_E_INVALID);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, NULL, NULL, UNILOCK_TRIGGER_WRITE, &w, &id),
		      UNILOCK_E_INVALID);
	assert_int_equal(id, 12345);
	/* Nothing held: proceed. */
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", NULL, UNILOCK_TRIGGER_WRITE, NULL, NULL),
		      UNILOCK_OK);
}

/* A break not acknowledged in time leaves the lease at none and the holder is told. */
static void test_lease_break_timeout_revokes(void **state)
{
	unilock_open_req r = lease_req(LEASE, 0, RWH, K1);
	unilock_open_result res;
	unilock_wait w = {5, NULL, 0};
	int fd = unilock_event_fd(UL), i;
	r.break_timeout_ms = 30;
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, &w, &res), UNILOCK_OK);
	assert_int_equal(res.state, RWH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, 1, &res), UNILOCK_PENDING);
	for (i = 0; i < 200 && FX->n < 3; i++) {
		struct pollfd p = {fd, POLLIN, 0};
		poll(&p, 1, 50);
		process(UL);
	}
	assert_int_equal(FX->n, 3);
	assert_int_equal(FX->ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
	assert_int_equal(FX->ev[1].type + FX->ev[2].type, UNILOCK_EVENT_LEASE_REVOKED + UNILOCK_EVENT_BREAKS_DONE);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, RH), UNILOCK_E_NO_BREAK); /* late */
	/* The lease is none now: c2 gets RH, c1 keeps nothing to break. */
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, RH);
	assert_int_equal(process(UL), 0);
}

/*
 * Epochs and a break during a break: one epoch step per break sequence; a trigger needing a lower
 * state while a break is in progress sends nothing new; after the ack the lease is broken again one
 * step with the same epoch; waiters complete only at the end of the whole sequence.
 */
static void test_lease_break_while_breaking(void **state)
{
	unilock_open_result res;
	unilock_wait w = {9, NULL, 0};
	uint64_t open_wait, trunc_wait = 0;
	size_t i;
	assert_status(open_lease(UL, FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, 1, &res), UNILOCK_OK);
	assert_int_equal(res.epoch, 1);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, 1, &res), UNILOCK_PENDING);
	open_wait = res.request_id;
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, RWH, RH, 1);
	assert_int_equal(FX->ev[0].epoch, 2); /* +1 per break sequence */
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "nfs4:c3", NULL, UNILOCK_TRIGGER_TRUNCATE, &w,
					    &trunc_wait),
		      UNILOCK_PENDING);
	assert_int_equal(process(UL), 0); /* nothing new while breaking */
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, RH), UNILOCK_OK);
	assert_int_equal(process(UL), 1); /* the next step, and no waiter is done yet */
	assert_break(&FX->ev[1], "smb:c1", K1, RH, R, 1);
	assert_int_equal(FX->ev[1].epoch, 2);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_OK);
	process(UL);
	assert_true(FX->n >= 3);
	assert_int_equal(FX->ev[2].type, UNILOCK_EVENT_LEASE_BREAK);
	assert_int_equal(FX->ev[2].state, R);
	assert_int_equal(FX->ev[2].break_to, 0);
	assert_int_equal(FX->ev[2].epoch, 2);
	if (FX->ev[2].ack_required) {
		assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, 0), UNILOCK_OK);
		process(UL);
	}
	/* Both waiters are done now, and only now. */
	{
		int seen_open = 0, seen_trunc = 0;
		for (i = 0; i < FX->n; i++) {
			if (FX->ev[i].type != UNILOCK_EVENT_BREAKS_DONE)
				continue;
			assert_true(i >= 3);
			seen_open += FX->ev[i].request_id == open_wait;
			seen_trunc += FX->ev[i].request_id == trunc_wait;
		}
		assert_int_equal(seen_open, 1);
		assert_int_equal(seen_trunc, 1);
	}
}

/* An open that failed with a sharing violation breaks H and records nothing. */
static void test_lease_sharing_violation(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RH, K1, RH);
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_SHARING_VIOLATION, 0,
				 NULL, 1, &res),
		      UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, RH, R, 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", K1, R), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
	/* No H left to break: OK, the violation stands, and still nothing is recorded. */
	OPEN_OK(FILE_A, "smb:c2", 1, UNILOCK_LEASE_KIND_NONE, UNILOCK_OPEN_SHARING_VIOLATION, 0, NULL, 0);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c2", 1), UNILOCK_E_NOT_FOUND);
}

/*
 * Directory change: a lease whose key equals the opener's parent key (compared by value, across
 * clients: SPEC.md section 4 table; header: "a lease with that key is not broken") is not broken.
 * Regression test (fixed): a UNILOCK_TRIGGER_DIR_CHANGE from another client with the same key breaks
 * the directory lease RH -> none (the key is compared together with the client).
 */
static void test_lease_dir_change_parent_key(void **state)
{
	unilock_wait w = {1, NULL, 0};
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, UNILOCK_OPEN_DIRECTORY, RH, K1, RH);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c1", K1, UNILOCK_TRIGGER_DIR_CHANGE, &w, NULL),
		      UNILOCK_OK);
	assert_int_equal(process(UL), 0);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c2", K1, UNILOCK_TRIGGER_DIR_CHANGE, &w, NULL),
		      UNILOCK_OK);
	assert_int_equal(process(UL), 0);
	assert_status(unilock_break_trigger(UL, FILE_A, FLEN, "smb:c2", K2, UNILOCK_TRIGGER_DIR_CHANGE, &w, NULL),
		      UNILOCK_OK); /* the requester does not wait */
	assert_int_equal(process(UL), 1);
	assert_break(&FX->ev[0], "smb:c1", K1, RH, 0, 1);
}

/* ---- oplocks, delegations ------------------------------------------------------------------------- */

static void test_oplocks(void **state)
{
	unilock_open_result res;
	/* Alone: batch. */
	OPEN_OK(FILE_A, "smb:c1", 1, UNILOCK_LEASE_KIND_OPLOCK, 0, UNILOCK_OPLOCK_BATCH, NULL, UNILOCK_OPLOCK_BATCH);
	/* A stat open never gets an oplock. */
	OPEN_OK(FILE_A, "smb:c2", 1, UNILOCK_LEASE_KIND_OPLOCK, UNILOCK_OPEN_STAT, UNILOCK_OPLOCK_BATCH, NULL, 0);
	assert_int_equal(process(UL), 0);
	/* An oplock next to an R lease gets Level II; next to an H lease nothing. */
	OPEN_OK(FILE_B, "smb:c1", 1, LEASE, 0, R, K1, R);
	OPEN_OK(FILE_B, "smb:c2", 1, UNILOCK_LEASE_KIND_OPLOCK, 0, UNILOCK_OPLOCK_BATCH, NULL,
		UNILOCK_OPLOCK_LEVEL_II);
	OPEN_OK(FILE_C, "smb:c1", 1, LEASE, 0, RH, K2, RH);
	OPEN_OK(FILE_C, "smb:c2", 1, UNILOCK_LEASE_KIND_OPLOCK, 0, UNILOCK_OPLOCK_LEVEL_II, NULL, 0);
	/* Next to an oplock, a lease gets at most R. */
	OPEN_OK(FILE_B, "smb:c3", 1, LEASE, 0, RH, K3, R);
	assert_int_equal(process(UL), 0);
	/* The batch oplock on FILE_A is broken by another open (its key is the one unilock made). */
	assert_status(open_lease(UL, FILE_A, "smb:c3", 2, UNILOCK_LEASE_KIND_NONE, 0, 0, NULL, 1, &res),
		      UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[0].type, UNILOCK_EVENT_LEASE_BREAK);
	assert_int_equal(FX->ev[0].kind, UNILOCK_LEASE_KIND_OPLOCK);
	assert_int_equal(FX->ev[0].ack_required, 1);
	assert_status(unilock_lease_ack(UL, FILE_A, FLEN, "smb:c1", FX->ev[0].key, UNILOCK_OPLOCK_LEVEL_II),
		      UNILOCK_OK);
}

/* A delegation is only ever a try: refused (granted none), never pending, never breaking anything. */
static void test_delegations(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "nfs4:c1", 1, UNILOCK_LEASE_KIND_DELEGATION, 0, UNILOCK_DELEG_WRITE, NULL, UNILOCK_DELEG_WRITE);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "nfs4:c1", NULL), UNILOCK_E_INVALID);
	OPEN_OK(FILE_B, "smb:c2", 1, LEASE, 0, RH, K1, RH);
	/* A write delegation would need c2's lease broken: refused, no break. */
	assert_status(open_lease(UL, FILE_B, "nfs4:c1", 1, UNILOCK_LEASE_KIND_DELEGATION, 0, UNILOCK_DELEG_WRITE, NULL,
				 1, &res),
		      UNILOCK_OK);
	assert_int_equal(res.state, 0);
	/* A read delegation next to R leases: granted. */
	assert_status(open_lease(UL, FILE_B, "nfs4:c1", 2, UNILOCK_LEASE_KIND_DELEGATION, 0, UNILOCK_DELEG_READ, NULL,
				 1, &res),
		      UNILOCK_OK);
	assert_int_equal(res.state, UNILOCK_DELEG_READ);
	assert_int_equal(process(UL), 0);
	/* DELEGRETURN by the key unilock made. */
	assert_status(unilock_lease_release(UL, FILE_B, FLEN, "nfs4:c1", res.lease_key), UNILOCK_OK);
	assert_status(unilock_lease_release(UL, FILE_B, FLEN, "nfs4:c1", res.lease_key), UNILOCK_E_NOT_FOUND);
}

/* ---- file_open / file_close / lease_release arguments ------------------------------------------- */

static void test_file_open_args(void **state)
{
	unilock_open_req r = lease_req(LEASE, 0, RH, K1);
	unilock_open_result res;
	char client256[257];
	uint8_t fid129[UNILOCK_FILE_ID_MAX + 1];
	static const uint32_t bad_kinds[] = {5, 99, UINT32_MAX};
	static const uint32_t bad_flags[] = {0x100, 0x200, 0x80000000u}; /* up to 0x80 are UNILOCK_OPEN_* */
	static const uint32_t bad_states[] = {8, 0x10, 0x80, 0x100, UINT32_MAX};
	size_t i;
	memset(client256, 'c', 256);
	client256[256] = 0;
	memset(fid129, 'f', sizeof fid129);
	assert_status(unilock_file_open(NULL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, NULL, FLEN, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, 0, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, fid129, sizeof fid129, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, NULL, 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, client256, 1, &r, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, NULL, NULL, &res), UNILOCK_E_INVALID);
	assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, NULL), UNILOCK_E_INVALID);
	for (i = 0; i < ARRAY_LEN(bad_kinds); i++) {
		r = lease_req(bad_kinds[i], 0, RH, K1);
		assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	}
	for (i = 0; i < ARRAY_LEN(bad_flags); i++) {
		r = lease_req(LEASE, bad_flags[i], RH, K1);
		assert_status(unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, &res), UNILOCK_E_INVALID);
	}
	for (i = 0; i < ARRAY_LEN(bad_states); i++) {
		r = lease_req(LEASE, 0, bad_states[i], K1);
		if (unilock_file_open(UL, FILE_A, FLEN, "smb:c1", 1, &r, NULL, &res) != UNILOCK_E_INVALID) {
			print_error("requested state 0x%x (bits outside R|H|W) was not refused\n", bad_states[i]);
			fail();
		}
	}
	/* Nothing was recorded by any of them: the open id is unknown. */
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_E_NOT_FOUND);
}

static void test_file_close(void **state)
{
	unilock_open_result res;
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	OPEN_OK(FILE_A, "smb:c1", 2, LEASE, 0, RWH, K1, RWH);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 3), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c2", 1), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_file_close(UL, FILE_B, FLEN, "smb:c1", 1), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_OK);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 1), UNILOCK_E_NOT_FOUND);
	/* The lease lives on with its second open... */
	assert_status(open_lease(UL, FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, 1, &res), UNILOCK_PENDING);
	assert_int_equal(process(UL), 1);
	/* ...and closing its last open ends the break; the waiter proceeds. */
	assert_status(unilock_file_close(UL, FILE_A, FLEN, "smb:c1", 2), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[1].type, UNILOCK_EVENT_BREAKS_DONE);
	assert_int_equal(FX->ev[1].request_id, res.request_id);
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RWH, K2, RWH);
	/* Arguments. */
	assert_status(unilock_file_close(NULL, FILE_A, FLEN, "smb:c2", 1), UNILOCK_E_INVALID);
	assert_status(unilock_file_close(UL, NULL, FLEN, "smb:c2", 1), UNILOCK_E_INVALID);
	assert_status(unilock_file_close(UL, FILE_A, 0, "smb:c2", 1), UNILOCK_E_INVALID);
	assert_status(unilock_file_close(UL, FILE_A, FLEN, NULL, 1), UNILOCK_E_INVALID);
}

static void test_lease_release(void **state)
{
	OPEN_OK(FILE_A, "smb:c1", 1, LEASE, 0, RWH, K1, RWH);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c2", K1), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", K2), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", K1), UNILOCK_OK);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", K1), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_lease_release(NULL, FILE_A, FLEN, "smb:c1", K1), UNILOCK_E_INVALID);
	assert_status(unilock_lease_release(UL, NULL, FLEN, "smb:c1", K1), UNILOCK_E_INVALID);
	assert_status(unilock_lease_release(UL, FILE_A, 0, "smb:c1", K1), UNILOCK_E_INVALID);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, NULL, K1), UNILOCK_E_INVALID);
	assert_status(unilock_lease_release(UL, FILE_A, FLEN, "smb:c1", NULL), UNILOCK_E_INVALID);
	/* After the release nothing is left to break. */
	OPEN_OK(FILE_A, "smb:c2", 1, LEASE, 0, RH, K2, RH);
	assert_int_equal(process(UL), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_lease_grant_alone),
		T(test_lease_without_r_is_none),
		T(test_lease_directory_drops_w),
		T(test_lease_shared_rh),
		T(test_lease_w_needs_no_other_open),
		T(test_lease_stat_open),
		T(test_lease_same_key),
		T(test_lease_key_on_two_files),
		T(test_lease_byte_range_lock_rule),
		T(test_lease_break_w_on_open),
		T(test_lease_ack_statuses),
		T(test_lease_ack_none),
		T(test_lease_ack_none_removes_lease),
		T(test_lease_calls_validate_client),
		T(test_lease_r_break_needs_no_ack),
		T(test_lease_byte_range_lock_breaks_r),
		T(test_lease_own_trigger),
		T(test_lease_triggers),
		T(test_break_trigger_args),
		T(test_lease_break_timeout_revokes),
		T(test_lease_break_while_breaking),
		T(test_lease_sharing_violation),
		T(test_lease_dir_change_parent_key),
		T(test_oplocks),
		T(test_delegations),
		T(test_file_open_args),
		T(test_file_close),
		T(test_lease_release),
	};
	return cmocka_run_group_tests_name("unilock leases, oplocks, delegations", tests, NULL, NULL);
}
