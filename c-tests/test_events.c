/*
 * cmocka tests of the blocking-request and event section of unilock.h: unilock_lock_blocking,
 * unilock_watch, unilock_cancel, unilock_cancel_owner, unilock_event_fd, unilock_process_events,
 * unilock_next_timeout_ms, and the event callback of unilock_config, in both event modes.
 *
 * Most tests run a handle in UNILOCK_EVENTS_LOOP mode, so every event is delivered on the test thread
 * inside unilock_process_events and the order of things is deterministic. Timeouts are short (tens of
 * milliseconds) and waited for through the event fd, never by asserting wall time.
 */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- event recorder -------------------------------------------------------------------------------- */

#define MAX_EVENTS 64

struct rec_event {
	uint32_t type, status;
	uint64_t request_id, token;
	void *user_data;
	uint8_t file[UNILOCK_FILE_ID_MAX];
	size_t file_len;
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t owner[UNILOCK_OWNER_MAX];
	size_t owner_len;
	uint64_t open_id;
	uint32_t flavour, lock_type;
	uint64_t offset, length;
	pthread_t thread;
};

struct fixture;
typedef void (*reenter_fn)(struct fixture *fx, const unilock_event *ev);

struct fixture {
	unilock *ul;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t n;
	int bad;
	struct rec_event ev[MAX_EVENTS];
	reenter_fn on_event; /* called inside the callback, for re-entrancy tests */
	int reenter_failures;
};

static void record(void *user_data, const unilock_event *ev)
{
	struct fixture *fx = user_data;
	struct rec_event *r;
	pthread_mutex_lock(&fx->mu);
	if (fx->n >= MAX_EVENTS || ev == NULL || ev->file_id_len > UNILOCK_FILE_ID_MAX ||
	    ev->owner_len > UNILOCK_OWNER_MAX) {
		fx->bad++;
		pthread_mutex_unlock(&fx->mu);
		return;
	}
	r = &fx->ev[fx->n];
	memset(r, 0, sizeof *r);
	r->type = ev->type;
	r->status = ev->status;
	r->request_id = ev->request_id;
	r->token = ev->token;
	r->user_data = ev->user_data;
	r->file_len = ev->file_id_len;
	if (ev->file_id_len)
		memcpy(r->file, ev->file_id, ev->file_id_len);
	if (ev->type == UNILOCK_EVENT_LOCK) {
		if (ev->client == NULL || strlen(ev->client) > UNILOCK_CLIENT_MAX)
			fx->bad++;
		else
			snprintf(r->client, sizeof r->client, "%s", ev->client);
		r->owner_len = ev->owner_len;
		if (ev->owner_len)
			memcpy(r->owner, ev->owner, ev->owner_len);
		r->open_id = ev->open_id;
		r->flavour = ev->flavour;
		r->lock_type = ev->lock_type;
		r->offset = ev->offset;
		r->length = ev->length;
	}
	r->thread = pthread_self();
	fx->n++;
	pthread_cond_broadcast(&fx->cv);
	pthread_mutex_unlock(&fx->mu);
	if (fx->on_event)
		fx->on_event(fx, ev);
}

static struct fixture *fixture_new(uint32_t mode, int with_callback)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	unilock_config cfg;
	if (fx == NULL)
		return NULL;
	pthread_mutex_init(&fx->mu, NULL);
	pthread_cond_init(&fx->cv, NULL);
	unilock_config_init(&cfg);
	cfg.event_mode = mode;
	cfg.event_fn = with_callback ? record : NULL;
	cfg.event_user_data = fx;
	if (unilock_open(&cfg, &fx->ul) != UNILOCK_OK) {
		free(fx);
		return NULL;
	}
	return fx;
}

static void fixture_free(struct fixture *fx)
{
	if (fx == NULL)
		return;
	unilock_close(fx->ul);
	pthread_mutex_destroy(&fx->mu);
	pthread_cond_destroy(&fx->cv);
	free(fx);
}

static int setup_loop(void **state)
{
	*state = fixture_new(UNILOCK_EVENTS_LOOP, 1);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	free_leftover_dumps();
	fixture_free(*state);
	return 0;
}

#define FX ((struct fixture *)*state)
#define UL ((const unilock *)FX->ul)

#define OWN_H1 owner3("smb:guid-1", "lctx", 1)
#define OWN_H2 owner3("smb:guid-1", "lctx", 2)
#define OWN_H3 owner3("smb:guid-3", "lctx", 1)
#define OWN_A owner3("nlm:hostA", "svid-1", 0)
#define OWN_B owner3("nlm:hostB", "svid-1", 0)
#define OWN_C owner3("nlm:hostC", "svid-1", 0)

static unilock_wait wait3(uint64_t token, void *user_data, uint64_t timeout_ms)
{
	unilock_wait w;
	w.token = token;
	w.user_data = user_data;
	w.timeout_ms = timeout_ms;
	return w;
}

/* Delivers what is queued; returns how many events the call reported. */
static size_t process(const unilock *ul)
{
	size_t n = 12345;
	assert_status(unilock_process_events(ul, &n), UNILOCK_OK);
	assert_int_not_equal(n, 12345);
	return n;
}

static int fd_readable(int fd, int timeout_ms)
{
	struct pollfd p;
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* Loop mode: waits on the event fd (bounded) and processes until `want` events are recorded. */
static void loop_until(struct fixture *fx, size_t want)
{
	int fd = unilock_event_fd(fx->ul), i;
	for (i = 0; i < 200 && fx->n < want; i++) {
		fd_readable(fd, 50);
		process(fx->ul);
	}
	assert_int_equal(fx->n, want);
}

static uint32_t blocking(const unilock *ul, const uint8_t *file, const unilock_owner *o, uint32_t fl,
			 uint32_t ty, uint64_t off, uint64_t len, uint64_t token, uint64_t timeout_ms,
			 uint64_t *id, unilock_lock_info *holder)
{
	unilock_lock_req r = req4(fl, ty, off, len);
	unilock_wait w = wait3(token, (void *)(uintptr_t)(0x1000 + token), timeout_ms);
	return unilock_lock_blocking(ul, file, FLEN, o, &r, &w, id, holder);
}

static void assert_lock_event(const struct rec_event *e, uint32_t status, uint64_t id, uint64_t token,
			      const uint8_t *file, const unilock_owner *o, uint32_t fl, uint32_t ty, uint64_t off,
			      uint64_t len)
{
	assert_int_equal(e->type, UNILOCK_EVENT_LOCK);
	assert_status(e->status, status);
	assert_int_equal(e->request_id, id);
	assert_int_equal(e->token, token);
	assert_ptr_equal(e->user_data, (void *)(uintptr_t)(0x1000 + token));
	assert_int_equal(e->file_len, FLEN);
	assert_memory_equal(e->file, file, FLEN);
	assert_string_equal(e->client, o->client);
	assert_int_equal(e->owner_len, o->owner_len);
	if (o->owner_len)
		assert_memory_equal(e->owner, o->owner, o->owner_len);
	assert_int_equal(e->open_id, o->open_id);
	assert_int_equal(e->flavour, fl);
	assert_int_equal(e->lock_type, ty);
	assert_int_equal(e->offset, off);
	assert_int_equal(e->length, len);
}

/* ---- event fd, modes ------------------------------------------------------------------------------ */

static void test_event_fd_and_modes(void **state)
{
	struct fixture *thr;
	int fd = unilock_event_fd(UL);
	size_t n;
	assert_true(fd >= 0);
	assert_false(fd_readable(fd, 0));
	assert_int_equal(unilock_next_timeout_ms(UL), -1); /* nothing scheduled */
	assert_int_equal(process(UL), 0);
	assert_int_equal(unilock_event_fd(UL), fd); /* one descriptor per handle */
	n = 12345;
	assert_status(unilock_process_events(UL, NULL), UNILOCK_OK);
	assert_status(unilock_process_events(NULL, &n), UNILOCK_E_INVALID);
	assert_int_equal(n, 12345);
	assert_int_equal(unilock_event_fd(NULL), -1);

	/* Thread mode: no descriptor; processing is harmless. */
	thr = fixture_new(UNILOCK_EVENTS_THREAD, 1);
	assert_non_null(thr);
	assert_int_equal(unilock_event_fd(thr->ul), -1);
	assert_status(unilock_process_events(thr->ul, &n), UNILOCK_OK);
	fixture_free(thr);

	/* Without a callback events are settled and dropped; grants still happen. */
	thr = fixture_new(UNILOCK_EVENTS_LOOP, 0);
	assert_non_null(thr);
	{
		unilock_owner h1 = OWN_H1, h3 = OWN_H3;
		uint64_t id = 0;
		LOCK_OK(thr->ul, FILE_A, &h3, W, X, 0, 10);
		assert_status(blocking(thr->ul, FILE_A, &h1, W, X, 0, 10, 1, 0, &id, NULL), UNILOCK_PENDING);
		UNLOCK_OK(thr->ul, FILE_A, &h3, W, 0, 10);
		assert_locks(thr->ul, FILE_A, {W, X, 0, 10, "smb:guid-1", "lctx", 1});
		assert_status(unilock_process_events(thr->ul, NULL), UNILOCK_OK);
	}
	fixture_free(thr);
}

/* ---- lock_blocking ---------------------------------------------------------------------------------- */

static void test_blocking_granted_at_once(void **state)
{
	unilock_owner h1 = OWN_H1;
	unilock_lock_info h;
	uint64_t id = 12345;
	poison(&h, sizeof h);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, &id, &h), UNILOCK_OK);
	assert_int_equal(id, 12345); /* written only on PENDING */
	assert_true(is_poisoned(&h, sizeof h));
	assert_locks(UL, FILE_A, {W, X, 0, 10, "smb:guid-1", "lctx", 1});
	assert_int_equal(process(UL), 0); /* no event for an immediate grant */
	assert_int_equal(FX->n, 0);
	assert_status(blocking(UL, FILE_B, &h1, P, S, 0, EOF_LEN, 2, 0, NULL, NULL), UNILOCK_OK);
}

static void test_blocking_pending_then_granted(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	unilock_lock_info h;
	uint64_t id = 0;
	int fd = unilock_event_fd(UL);
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	poison(&h, sizeof h);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 5, 10, 42, 0, &id, &h), UNILOCK_PENDING);
	assert_int_not_equal(id, 0);
	assert_holder(&h, W, X, 0, 10, "smb:guid-3", "lctx", 1); /* the lock it waits for */
	assert_locks(UL, FILE_A, {W, X, 0, 10, "smb:guid-3", "lctx", 1}); /* a waiter holds nothing */
	LOCK_CONFLICT(UL, FILE_A, &h1, W, X, 5, 10, &h); /* a test still says no */
	/* A Windows unlock of the range it waits for: not held (smbtorture "cancel by unlock"). */
	UNLOCK_NOT_LOCKED(UL, FILE_A, &h1, W, 5, 10);
	assert_false(fd_readable(fd, 0));
	assert_int_equal(process(UL), 0);

	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	/* Granted at the unlock, atomically; the event follows through the loop. */
	assert_locks(UL, FILE_A, {W, X, 5, 10, "smb:guid-1", "lctx", 1});
	assert_true(fd_readable(fd, 1000));
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->n, 1);
	assert_lock_event(&FX->ev[0], UNILOCK_OK, id, 42, FILE_A, &h1, W, X, 5, 10);
	assert_true(pthread_equal(FX->ev[0].thread, pthread_self())); /* loop mode: on our thread */
	assert_false(fd_readable(fd, 0)); /* level-triggered: drained */
	assert_int_equal(process(UL), 0);
	/* The id is spent. */
	assert_status(unilock_cancel(UL, id, NULL), UNILOCK_E_NOT_FOUND);
}

/* Waiters for the same bytes are granted in arrival order; no writer starvation. */
static void test_blocking_fifo(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3, a = OWN_A;
	unilock_lock_info h;
	uint64_t id1 = 0, id2 = 0, id3 = 0;
	LOCK_OK(UL, FILE_A, &h3, W, S, 0, 100);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, &id1, NULL), UNILOCK_PENDING);
	/* Held locks would allow this shared request, but it conflicts with the earlier waiter. */
	poison(&h, sizeof h);
	assert_status(blocking(UL, FILE_A, &h2, W, S, 5, 10, 2, 0, &id2, &h), UNILOCK_PENDING);
	assert_true(is_poisoned(&h, sizeof h)); /* queued only behind a waiter */
	/* A POSIX blocking request behind both. */
	assert_status(blocking(UL, FILE_A, &a, P, S, 0, 1, 3, 0, &id3, NULL), UNILOCK_PENDING);
	assert_true(id1 != id2 && id2 != id3 && id1 != id3);
	/* A non-blocking request is decided against held locks only. */
	LOCK_OK(UL, FILE_A, &h3, W, S, 50, 10);
	UNLOCK_OK(UL, FILE_A, &h3, W, 50, 10);

	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 100);
	assert_int_equal(process(UL), 1); /* only the first: the others conflict with it */
	assert_lock_event(&FX->ev[0], UNILOCK_OK, id1, 1, FILE_A, &h1, W, X, 0, 10);
	assert_locks(UL, FILE_A, {W, X, 0, 10, "smb:guid-1", "lctx", 1});
	UNLOCK_OK(UL, FILE_A, &h1, W, 0, 10);
	assert_int_equal(process(UL), 2); /* both shared waiters, in order */
	assert_lock_event(&FX->ev[1], UNILOCK_OK, id2, 2, FILE_A, &h2, W, S, 5, 10);
	assert_lock_event(&FX->ev[2], UNILOCK_OK, id3, 3, FILE_A, &a, P, S, 0, 1);
	assert_locks(UL, FILE_A, {W, S, 5, 10, "smb:guid-1", "lctx", 2}, {P, S, 0, 1, "nlm:hostA", "svid-1", 0});
}

/* A POSIX downgrade lets waiters in; an upgrade can wait too. */
static void test_blocking_posix_downgrade(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B;
	uint64_t id = 0;
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 100);
	assert_status(blocking(UL, FILE_A, &b, P, S, 10, 10, 7, 0, &id, NULL), UNILOCK_PENDING);
	LOCK_OK(UL, FILE_A, &a, P, S, 0, 100); /* downgrade */
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[0], UNILOCK_OK, id, 7, FILE_A, &b, P, S, 10, 10);
	/* A's upgrade back now waits for B. */
	assert_status(blocking(UL, FILE_A, &a, P, X, 0, 100, 8, 0, &id, NULL), UNILOCK_PENDING);
	assert_locks(UL, FILE_A, {P, S, 0, 100, "nlm:hostA", "svid-1", 0}, {P, S, 10, 10, "nlm:hostB", "svid-1", 0});
	UNLOCK_OK(UL, FILE_A, &b, P, 0, EOF_LEN);
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[1], UNILOCK_OK, id, 8, FILE_A, &a, P, X, 0, 100);
	assert_locks(UL, FILE_A, {P, X, 0, 100, "nlm:hostA", "svid-1", 0});
}

/* The same token again: PENDING with the same id while waiting, OK (and no second lock) once granted. */
static void test_blocking_idempotent_token(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	uint64_t id = 0, again = 0;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(UL, FILE_A, &h1, W, S, 0, 10, 99, 0, &id, NULL), UNILOCK_PENDING);
	assert_status(blocking(UL, FILE_A, &h1, W, S, 0, 10, 99, 0, &again, NULL), UNILOCK_PENDING);
	assert_int_equal(again, id);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	assert_int_equal(process(UL), 1); /* one request, one event */
	again = 12345;
	assert_status(blocking(UL, FILE_A, &h1, W, S, 0, 10, 99, 0, &again, NULL), UNILOCK_OK);
	assert_int_equal(lock_count(UL, FILE_A, FLEN), 1); /* not stacked a second time */
	assert_int_equal(process(UL), 0);
	/* A different token is a new request: a Windows shared lock stacks. */
	assert_status(blocking(UL, FILE_A, &h1, W, S, 0, 10, 100, 0, NULL, NULL), UNILOCK_OK);
	assert_int_equal(lock_count(UL, FILE_A, FLEN), 2);
}

static void test_blocking_timeout(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	uint64_t id = 0;
	int64_t t;
	uint32_t outcome = 12345;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 5, 30, &id, NULL), UNILOCK_PENDING);
	t = unilock_next_timeout_ms(UL);
	assert_true(t >= 0 && t <= 30);
	loop_until(FX, 1);
	assert_lock_event(&FX->ev[0], UNILOCK_E_TIMEOUT, id, 5, FILE_A, &h1, W, X, 0, 10);
	assert_locks(UL, FILE_A, {W, X, 0, 10, "smb:guid-3", "lctx", 1});
	assert_int_equal(unilock_next_timeout_ms(UL), -1);
	assert_status(unilock_cancel(UL, id, &outcome), UNILOCK_E_NOT_FOUND);
	assert_int_equal(outcome, 12345);
	/* A request granted before its timeout gets no timeout event later. */
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 6, 20, &id, NULL), UNILOCK_PENDING);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	loop_until(FX, 2);
	assert_status(FX->ev[1].status, UNILOCK_OK);
	{
		struct timespec ts = {0, 60 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(process(UL), 0);
	assert_int_equal(FX->n, 2);
}

/* Every outcome of unilock_cancel. */
static void test_cancel_outcomes(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3;
	uint64_t id = 0, wid = 0;
	uint32_t outcome;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);

	/* Waiting: cancelled, and nothing is granted or delivered later. */
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, &id, NULL), UNILOCK_PENDING);
	outcome = 0;
	assert_status(unilock_cancel(UL, id, &outcome), UNILOCK_OK);
	assert_int_equal(outcome, UNILOCK_CANCELLED);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	assert_int_equal(process(UL), 0);
	assert_no_locks(UL, FILE_A);
	assert_status(unilock_cancel(UL, id, &outcome), UNILOCK_E_NOT_FOUND);

	/* Granted before the cancel: the caller owns the lock; no event. */
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 2, 0, &id, NULL), UNILOCK_PENDING);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	outcome = 0;
	assert_status(unilock_cancel(UL, id, &outcome), UNILOCK_OK);
	assert_int_equal(outcome, UNILOCK_ALREADY_GRANTED);
	assert_int_equal(process(UL), 0);
	assert_locks(UL, FILE_A, {W, X, 0, 10, "smb:guid-1", "lctx", 1});
	UNLOCK_OK(UL, FILE_A, &h1, W, 0, 10);

	/* A watch that fired but was not delivered yet: already ended; no event. */
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(unilock_watch(UL, FILE_A, FLEN, 3, NULL, &wid), UNILOCK_OK);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	outcome = 0;
	assert_status(unilock_cancel(UL, wid, &outcome), UNILOCK_OK);
	assert_int_equal(outcome, UNILOCK_ALREADY_ENDED);
	assert_int_equal(process(UL), 0);

	/* A waiting watch: cancelled. */
	assert_status(unilock_watch(UL, FILE_A, FLEN, 4, NULL, &wid), UNILOCK_OK);
	assert_status(unilock_cancel(UL, wid, NULL), UNILOCK_OK);
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	assert_int_equal(process(UL), 0);

	/* Unknown ids, NULL handle. */
	outcome = 12345;
	assert_status(unilock_cancel(UL, 0, &outcome), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_cancel(UL, UINT64_MAX, &outcome), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_cancel(UL, wid + 1000, &outcome), UNILOCK_E_NOT_FOUND);
	assert_status(unilock_cancel(NULL, id, &outcome), UNILOCK_E_INVALID);
	assert_int_equal(outcome, 12345);
	assert_int_equal(FX->n, 0);
}

/* cancel_owner ends the waiting requests of an open: its Windows owner and its POSIX owner. */
static void test_cancel_owner(void **state)
{
	unilock_owner h1 = owner3("c1", "o1", 1), h2 = owner3("c1", "o1", 2), h3 = OWN_H3;
	uint64_t id = 0, id_other = 0;
	size_t n;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 100);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, &id, NULL), UNILOCK_PENDING);
	assert_status(blocking(UL, FILE_A, &h1, W, S, 20, 10, 2, 0, &id, NULL), UNILOCK_PENDING);
	assert_status(blocking(UL, FILE_A, &h1, P, S, 50, 10, 3, 0, &id, NULL), UNILOCK_PENDING);
	assert_status(blocking(UL, FILE_A, &h2, W, S, 60, 10, 4, 0, &id_other, NULL), UNILOCK_PENDING);
	n = 12345;
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &h1, &n), UNILOCK_OK);
	assert_int_equal(n, 3);
	assert_status(unilock_cancel(UL, id, NULL), UNILOCK_E_NOT_FOUND);
	n = 12345;
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &h1, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	assert_status(unilock_cancel_owner(UL, FILE_C, FLEN, &h1, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 100);
	assert_int_equal(process(UL), 1); /* only h2's request was left */
	assert_lock_event(&FX->ev[0], UNILOCK_OK, id_other, 4, FILE_A, &h2, W, S, 60, 10);
	/* Granted requests are not affected. */
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &h2, NULL), UNILOCK_OK);
	assert_int_equal(lock_count(UL, FILE_A, FLEN), 1);
}

/* Deadlock: a wait that would close a cycle is refused and nothing is queued. */
static void test_deadlock(void **state)
{
	unilock_owner a = OWN_A, b = OWN_B, c = OWN_C;
	unilock_lock_info h;
	uint64_t id_a = 0, id_b = 0, id = 12345;
	LOCK_OK(UL, FILE_A, &a, P, X, 0, 10);
	LOCK_OK(UL, FILE_A, &b, P, X, 20, 10);
	assert_status(blocking(UL, FILE_A, &a, P, X, 20, 10, 1, 0, &id_a, NULL), UNILOCK_PENDING);
	poison(&h, sizeof h);
	EXPECT_UNCHANGED(UL, UNILOCK_E_DEADLOCK, blocking(UL, FILE_A, &b, P, X, 0, 10, 2, 0, &id, &h));
	assert_int_equal(id, 12345);
	/* Three owners over two files. */
	LOCK_OK(UL, FILE_B, &c, P, X, 0, 10);
	assert_status(blocking(UL, FILE_B, &b, P, S, 5, 1, 3, 0, &id_b, NULL), UNILOCK_PENDING); /* B -> C */
	EXPECT_UNCHANGED(UL, UNILOCK_E_DEADLOCK, blocking(UL, FILE_A, &c, P, S, 0, 1, 4, 0, &id, NULL)); /* C -> A */
	/* Not a cycle: C waits for nothing A waits for. */
	assert_status(blocking(UL, FILE_C, &c, P, S, 0, 1, 5, 0, &id, NULL), UNILOCK_OK);
	/* Unwinding: B gives up, A's wait can be granted. */
	assert_status(unilock_cancel(UL, id_b, NULL), UNILOCK_OK);
	UNLOCK_OK(UL, FILE_A, &b, P, 0, EOF_LEN);
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[0], UNILOCK_OK, id_a, 1, FILE_A, &a, P, X, 20, 10);
}

/* Closing the open or releasing the client ends its waiting requests; a holder going grants. */
static void test_release_ends_or_grants_waiters(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	uint64_t id1 = 0, id2 = 0;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, &id1, NULL), UNILOCK_PENDING);
	assert_status(unilock_release_open(UL, FILE_A, FLEN, &h1, NULL), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[0], UNILOCK_E_RANGE_NOT_LOCKED, id1, 1, FILE_A, &h1, W, X, 0, 10);

	assert_status(blocking(UL, FILE_A, &h2, W, S, 0, 10, 2, 0, &id2, NULL), UNILOCK_PENDING);
	assert_status(unilock_release_client(UL, "smb:guid-1", NULL), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[1], UNILOCK_E_RANGE_NOT_LOCKED, id2, 2, FILE_A, &h2, W, S, 0, 10);

	assert_status(blocking(UL, FILE_A, &h2, W, S, 0, 10, 3, 0, &id2, NULL), UNILOCK_PENDING);
	assert_status(unilock_release_open(UL, FILE_A, FLEN, &h3, NULL), UNILOCK_OK);
	assert_int_equal(process(UL), 1);
	assert_lock_event(&FX->ev[2], UNILOCK_OK, id2, 3, FILE_A, &h2, W, S, 0, 10);
	assert_locks(UL, FILE_A, {W, S, 0, 10, "smb:guid-1", "lctx", 2});
}

/* ---- watch ----------------------------------------------------------------------------------------- */

static void test_watch(void **state)
{
	unilock_owner h1 = OWN_H1, h3 = OWN_H3, a = OWN_A;
	uint64_t wid = 0, bid = 0;
	int marker;
	LOCK_OK(UL, FILE_A, &h1, W, X, 0, 10);
	assert_status(unilock_watch(UL, FILE_A, FLEN, 77, &marker, &wid), UNILOCK_OK);
	LOCK_OK(UL, FILE_A, &h1, W, S, 20, 10); /* a new lock does not fire it */
	assert_int_equal(process(UL), 0);
	/* A waiter leaving the queue does not fire it either. */
	assert_status(blocking(UL, FILE_A, &h3, W, X, 0, 10, 9, 0, &bid, NULL), UNILOCK_PENDING);
	assert_status(unilock_cancel(UL, bid, NULL), UNILOCK_OK);
	assert_int_equal(process(UL), 0);
	UNLOCK_OK(UL, FILE_A, &h1, W, 20, 10);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[0].type, UNILOCK_EVENT_WATCH);
	assert_int_equal(FX->ev[0].request_id, wid);
	assert_int_equal(FX->ev[0].token, 77);
	assert_ptr_equal(FX->ev[0].user_data, &marker);
	assert_int_equal(FX->ev[0].file_len, FLEN);
	assert_memory_equal(FX->ev[0].file, FILE_A, FLEN);
	/* One-shot. */
	UNLOCK_OK(UL, FILE_A, &h1, W, 0, 10);
	assert_int_equal(process(UL), 0);
	assert_status(unilock_cancel(UL, wid, NULL), UNILOCK_E_NOT_FOUND);

	/* A POSIX lock shrinking fires a watch; a file nobody locked can be watched. */
	assert_status(unilock_watch(UL, FILE_B, FLEN, 78, NULL, NULL), UNILOCK_OK);
	LOCK_OK(UL, FILE_B, &a, P, X, 0, 100);
	assert_int_equal(process(UL), 0);
	UNLOCK_OK(UL, FILE_B, &a, P, 0, 10);
	assert_int_equal(process(UL), 1);
	assert_int_equal(FX->ev[1].token, 78);
	/* Two watches on one file both fire. */
	assert_status(unilock_watch(UL, FILE_B, FLEN, 79, NULL, NULL), UNILOCK_OK);
	assert_status(unilock_watch(UL, FILE_B, FLEN, 80, NULL, NULL), UNILOCK_OK);
	assert_status(unilock_release_client(UL, "nlm:hostA", NULL), UNILOCK_OK);
	assert_int_equal(process(UL), 2);
}

static void test_watch_args(void **state)
{
	uint8_t fid129[UNILOCK_FILE_ID_MAX + 1];
	uint64_t id = 12345;
	memset(fid129, 'w', sizeof fid129);
	assert_status(unilock_watch(NULL, FILE_A, FLEN, 1, NULL, &id), UNILOCK_E_INVALID);
	assert_status(unilock_watch(UL, NULL, FLEN, 1, NULL, &id), UNILOCK_E_INVALID);
	assert_status(unilock_watch(UL, FILE_A, 0, 1, NULL, &id), UNILOCK_E_INVALID);
	assert_status(unilock_watch(UL, NULL, 0, 1, NULL, &id), UNILOCK_E_INVALID);
	assert_status(unilock_watch(UL, fid129, sizeof fid129, 1, NULL, &id), UNILOCK_E_INVALID);
	assert_int_equal(id, 12345);
	assert_status(unilock_watch(UL, fid129, UNILOCK_FILE_ID_MAX, 1, NULL, &id), UNILOCK_OK);
	assert_int_not_equal(id, 12345);
}

/* ---- arguments of lock_blocking and cancel_owner ----------------------------------------------------- */

static void test_blocking_args(void **state)
{
	static const uint32_t bad[] = {0, 3, 99, UINT32_MAX};
	char client256[257];
	static uint8_t big_owner[UNILOCK_OWNER_MAX + 1];
	uint8_t fid129[UNILOCK_FILE_ID_MAX + 1];
	unilock_owner good = OWN_H1, o, h3 = OWN_H3;
	unilock_lock_req r = req4(W, X, 0, 10);
	unilock_wait w = wait3(1, NULL, 0);
	unilock_lock_info h;
	uint64_t id = 12345;
	size_t i, n = 12345;

	memset(client256, 'c', 256);
	client256[256] = 0;
	memset(fid129, 'f', sizeof fid129);
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 100); /* every valid request below would queue */

	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(NULL, FILE_A, FLEN, &good, &r, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, NULL, FLEN, &good, &r, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, 0, &good, &r, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID,
			 unilock_lock_blocking(UL, fid129, sizeof fid129, &good, &r, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, NULL, &r, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &good, NULL, &w, &id, &h));
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &good, &r, NULL, &id, &h));
	o = good;
	o.client = NULL;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &o, &r, &w, &id, &h));
	o.client = "";
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &o, &r, &w, &id, &h));
	o.client = client256;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &o, &r, &w, &id, &h));
	o = good;
	o.owner = NULL;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &o, &r, &w, &id, &h));
	o.owner = big_owner;
	o.owner_len = sizeof big_owner;
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &o, &r, &w, &id, &h));
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		r = req4(bad[i], X, 0, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &good, &r, &w, &id, &h));
		r = req4(W, bad[i], 0, 10);
		EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID, unilock_lock_blocking(UL, FILE_A, FLEN, &good, &r, &w, &id, &h));
	}
	r = req4(P, X, 0, 0);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID_RANGE, unilock_lock_blocking(UL, FILE_A, FLEN, &good, &r, &w, &id, &h));
	r = req4(W, X, UINT64_MAX, 2);
	EXPECT_UNCHANGED(UL, UNILOCK_E_INVALID_RANGE, unilock_lock_blocking(UL, FILE_A, FLEN, &good, &r, &w, &id, &h));
	assert_int_equal(id, 12345);
	/* Nothing was queued by any of them. */
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &good, &n), UNILOCK_OK);
	assert_int_equal(n, 0);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 100);
	assert_int_equal(process(UL), 0);

	/* cancel_owner arguments. */
	n = 12345;
	assert_status(unilock_cancel_owner(NULL, FILE_A, FLEN, &good, &n), UNILOCK_E_INVALID);
	assert_status(unilock_cancel_owner(UL, NULL, FLEN, &good, &n), UNILOCK_E_INVALID);
	assert_status(unilock_cancel_owner(UL, FILE_A, 0, &good, &n), UNILOCK_E_INVALID);
	assert_status(unilock_cancel_owner(UL, fid129, sizeof fid129, &good, &n), UNILOCK_E_INVALID);
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, NULL, &n), UNILOCK_E_INVALID);
	o = good;
	o.client = NULL;
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &o, &n), UNILOCK_E_INVALID);
	o.client = client256;
	assert_status(unilock_cancel_owner(UL, FILE_A, FLEN, &o, &n), UNILOCK_E_INVALID);
	assert_int_equal(n, 12345);
}

/* ---- re-entrant callbacks --------------------------------------------------------------------------- */

static void unlock_granted(struct fixture *fx, const unilock_event *ev)
{
	unilock_owner o;
	unilock_lock_req r;
	uint64_t id = 0;
	if (ev->type != UNILOCK_EVENT_LOCK || ev->status != UNILOCK_OK)
		return;
	/* Its own id is being delivered: not found, from inside its own callback. */
	if (unilock_cancel(fx->ul, ev->request_id, NULL) != UNILOCK_E_NOT_FOUND)
		fx->reenter_failures++;
	o.client = ev->client;
	o.owner = ev->owner;
	o.owner_len = ev->owner_len;
	o.open_id = ev->open_id;
	/* Unlock the lock just granted, then queue a new blocking request on another file. */
	if (unilock_unlock(fx->ul, ev->file_id, ev->file_id_len, &o, ev->flavour, ev->offset, ev->length) !=
	    UNILOCK_OK)
		fx->reenter_failures++;
	r = req4(ev->flavour, UNILOCK_SHARED, ev->offset, ev->length);
	{
		unilock_wait w = wait3(ev->token + 1000, NULL, 0);
		if (ev->token < 1000 &&
		    unilock_lock_blocking(fx->ul, FILE_C, FLEN, &o, &r, &w, &id, NULL) != UNILOCK_OK)
			fx->reenter_failures++;
	}
	if (unilock_list_locks(fx->ul, FILE_A, FLEN, NULL, NULL, NULL) != UNILOCK_OK)
		fx->reenter_failures++;
}

static void test_event_callback_reenters(void **state)
{
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	FX->on_event = unlock_granted;
	LOCK_OK(UL, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(UL, FILE_A, &h1, W, X, 0, 10, 1, 0, NULL, NULL), UNILOCK_PENDING);
	assert_status(blocking(UL, FILE_A, &h2, W, X, 0, 10, 2, 0, NULL, NULL), UNILOCK_PENDING);
	UNLOCK_OK(UL, FILE_A, &h3, W, 0, 10);
	/* h1 is granted; its callback unlocks, which grants h2, whose event is then delivered too. */
	loop_until(FX, 2);
	assert_int_equal(FX->reenter_failures, 0);
	assert_int_equal(FX->ev[0].token, 1);
	assert_int_equal(FX->ev[1].token, 2);
	assert_no_locks(UL, FILE_A);
	assert_int_equal(lock_count(UL, FILE_C, FLEN), 2); /* the callbacks' new requests, granted at once */
	FX->on_event = NULL;
}

/* ---- thread mode ---------------------------------------------------------------------------------- */

static int wait_events(struct fixture *fx, size_t want)
{
	struct timespec deadline;
	int ok;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 20;
	pthread_mutex_lock(&fx->mu);
	while (fx->n < want)
		if (pthread_cond_timedwait(&fx->cv, &fx->mu, &deadline) != 0)
			break;
	ok = fx->n == want;
	pthread_mutex_unlock(&fx->mu);
	return ok;
}

static void test_thread_mode(void **state)
{
	struct fixture *fx = fixture_new(UNILOCK_EVENTS_THREAD, 1);
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	uint64_t id1 = 0, id2 = 0;
	(void)state;
	assert_non_null(fx);
	LOCK_OK(fx->ul, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(fx->ul, FILE_A, &h1, W, S, 0, 10, 1, 0, &id1, NULL), UNILOCK_PENDING);
	assert_status(blocking(fx->ul, FILE_A, &h2, W, X, 0, 10, 2, 25, &id2, NULL), UNILOCK_PENDING);
	UNLOCK_OK(fx->ul, FILE_A, &h3, W, 0, 10);
	/* h1 granted now (event from the library thread); h2 times out behind it (or, on a slow
	 * machine, before the unlock: the order of the two events is not asserted). */
	assert_true(wait_events(fx, 2));
	pthread_mutex_lock(&fx->mu);
	{
		int g = fx->ev[0].request_id == id1 ? 0 : 1;
		assert_lock_event(&fx->ev[g], UNILOCK_OK, id1, 1, FILE_A, &h1, W, S, 0, 10);
		assert_lock_event(&fx->ev[1 - g], UNILOCK_E_TIMEOUT, id2, 2, FILE_A, &h2, W, X, 0, 10);
	}
	assert_false(pthread_equal(fx->ev[0].thread, pthread_self()));
	assert_false(pthread_equal(fx->ev[1].thread, pthread_self()));
	pthread_mutex_unlock(&fx->mu);
	/* Close with a request still waiting and a watch set: no event, no leak. */
	assert_status(blocking(fx->ul, FILE_A, &h2, W, X, 0, 10, 3, 0, &id2, NULL), UNILOCK_PENDING);
	assert_status(unilock_watch(fx->ul, FILE_B, FLEN, 4, NULL, NULL), UNILOCK_OK);
	fixture_free(fx);
}

/* Closing a loop-mode handle with waiters, timers and undelivered events. */
static void test_close_with_pending_work(void **state)
{
	struct fixture *fx = fixture_new(UNILOCK_EVENTS_LOOP, 1);
	unilock_owner h1 = OWN_H1, h2 = OWN_H2, h3 = OWN_H3;
	(void)state;
	assert_non_null(fx);
	LOCK_OK(fx->ul, FILE_A, &h3, W, X, 0, 10);
	assert_status(blocking(fx->ul, FILE_A, &h1, W, X, 0, 10, 1, 0, NULL, NULL), UNILOCK_PENDING);
	assert_status(blocking(fx->ul, FILE_A, &h2, W, X, 0, 10, 2, 60000, NULL, NULL), UNILOCK_PENDING);
	assert_status(unilock_watch(fx->ul, FILE_A, FLEN, 3, NULL, NULL), UNILOCK_OK);
	UNLOCK_OK(fx->ul, FILE_A, &h3, W, 0, 10); /* grant + watch events queued, not delivered */
	fixture_free(fx);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup_loop, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_event_fd_and_modes),
		T(test_blocking_granted_at_once),
		T(test_blocking_pending_then_granted),
		T(test_blocking_fifo),
		T(test_blocking_posix_downgrade),
		T(test_blocking_idempotent_token),
		T(test_blocking_timeout),
		T(test_cancel_outcomes),
		T(test_cancel_owner),
		T(test_deadlock),
		T(test_release_ends_or_grants_waiters),
		T(test_watch),
		T(test_watch_args),
		T(test_blocking_args),
		T(test_event_callback_reenters),
		cmocka_unit_test(test_thread_mode),
		cmocka_unit_test(test_close_with_pending_work),
	};
	return cmocka_run_group_tests_name("unilock blocking requests and events", tests, NULL, NULL);
}
