/*
 * demo.h: what the three acts of the demo file server share (demo_util.c): the lock manager of the act
 * being played, the file it is about, the clients, and the helpers that print every answer and check it
 * against the expected one.
 *
 *   demo_server.c    main, and act 1: byte-range locks of an NLM and an SMB client on one file
 *   demo_leases.c    act 2: SMB leases broken by SMB opens, an NLM lock and an NFSv4 delegation request,
 *                    with the server driving unilock's events from its own loop
 *   demo_restart.c   act 3: a server crash (SIGKILL), the restart from the SQLite database, grace and
 *                    reclaim, the end of grace, and grace ending early
 */

#ifndef DEMO_H
#define DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "unilock.h"

#if defined(__GNUC__)
#define DEMO_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define DEMO_PRINTF(f, a)
#endif

/* ------------------------------------------------------------------------------------------------ */
/* The stage                                                                                        */

#define FID_LEN UNILOCK_FILE_ID_CANONICAL_LEN

extern unilock *ul;          /* the lock manager of the current act */
extern const uint8_t *fid;   /* the file the current step is about (FID_LEN bytes) */
extern int failures;         /* unexpected answers so far */
extern char demo_dir[];      /* the temporary directory holding the demo's files and database */

/* Clients. The same hosts come back in every act. */
#define NLM_CLIENT "nlm:host42"
#define NLM_SVID 4242u                 /* the process id on host42 that locks (NLM svid) */
#define SMB_CLIENT "smb:5b1d0c6e-8f3a-4c2e-9d7b-2a6f4e1c3b90"
#define SMB_OPEN 0x00000000002a0001ull /* SMB2 persistent file id; for SMB2, smblctx is the same number */
#define SMB2_CLIENT "smb:c0ffee00-1d2e-4f3a-8b9c-0d1e2f3a4b5c"
#define NFS4_CLIENT "nfs4:0x5f3e1a2b00000007" /* an NFSv4 client id */

/* A client as the protocol front end knows it. */
struct client {
    const char *name;    /* "NLM", "SMB", "NFSv4", for the story */
    const char *io_name; /* the protocol its reads and writes come through: "NFS" or "SMB" */
    uint32_t flavour;    /* UNILOCK_POSIX or UNILOCK_WINDOWS */
    unilock_owner owner; /* what unilock is told */
};

/* Fills `c`; `owner_bytes` (len bytes) receive `owner_value` big-endian and must outlive `c`. */
void client_init(struct client *c, const char *name, const char *io_name, uint32_t flavour,
                 const char *client_id, uint8_t *owner_bytes, size_t len, uint64_t owner_value,
                 uint64_t open_id);

/* Creates `name` in demo_dir and builds its canonical file id from st_dev/st_ino; prints both.
 * Returns 0, or -1 (after saying why). */
int make_file(const char *name, uint8_t id[FID_LEN]);

/* Opens `*out` with `cfg` (which gets the demo's event callback); returns 0, or -1 after saying why. */
int open_manager(unilock_config *cfg, unilock **out);

/* Library log messages (unilock_set_log). */
void on_log(void *user_data, uint32_t level, const char *message);

/* ------------------------------------------------------------------------------------------------ */
/* Printing and checking                                                                            */

void act(const char *title);
void step(const char *title);
void say(const char *fmt, ...) DEMO_PRINTF(1, 2);        /* one narration line, indented */
void unexpected(const char *fmt, ...) DEMO_PRINTF(1, 2); /* "!! UNEXPECTED: ...", counted */

const char *type_name(uint32_t t);
const char *flavour_name(uint32_t f);
const char *range_str(char *buf, size_t n, uint64_t offset, uint64_t length);
const char *lease_str(uint32_t state); /* "RWH", "RH", "R", "none", ... */
const char *key_str(const uint8_t key[16]);  /* the demo's name for a lease key, or its hex */
void name_key(const uint8_t key[16], const char *name);

/* Prints the answer to a call (`ok`/`refused` name the two outcomes) and checks it; returns 1 when it is
 * the expected one. */
int answer_as(unilock_status got, unilock_status want, const char *ok, const char *refused);
int answer(unilock_status got, unilock_status want);
int test_answer(unilock_status got, unilock_status want);
void check_u64(const char *what, uint64_t got, uint64_t want);

/* The locks of the file `fid`, printed as a table and checked against `want` (sorted by offset). */
struct want {
    const char *client;
    uint32_t flavour, type;
    uint64_t offset, length;
};
void table(const struct want *want, size_t n_want);
#define TABLE(...)                                                                                       \
    do {                                                                                                 \
        static const struct want w_[] = {__VA_ARGS__};                                                   \
        table(w_, sizeof w_ / sizeof w_[0]);                                                             \
    } while (0)
#define NO_LOCKS() table(NULL, 0)

void print_lock(const char *indent, const unilock_lock_info *li);
void holder(const unilock_lock_info *h, const struct want *w); /* prints and checks a reported holder */

/* Requests, as the protocol front ends would make them. */
unilock_lock_req req(const struct client *c, uint32_t type, uint64_t offset, uint64_t length);
unilock_status do_lock(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                       unilock_lock_info *h);
unilock_status do_reclaim(const struct client *c, uint32_t type, uint64_t offset, uint64_t length);
unilock_status do_test(const struct client *c, uint32_t type, uint64_t offset, uint64_t length,
                       unilock_lock_info *h);

/* ------------------------------------------------------------------------------------------------ */
/* Events (event-loop mode)                                                                         */

/* A copy of one delivered event (the pointers of a unilock_event live only during the callback). */
struct demo_event {
    unilock_event ev; /* its pointers are NULL here */
    char client[UNILOCK_CLIENT_MAX + 1];
};

#define MAX_EVENTS 32
extern struct demo_event events[MAX_EVENTS];
extern size_t n_events;

/* The demo's event_fn: copies the event into events[]. */
void on_event(void *user_data, const unilock_event *event);

/* One turn of the server's event loop: polls unilock_event_fd (waiting at most `wait_ms`, or as long as
 * unilock_next_timeout_ms says when wait_ms < 0), calls unilock_process_events and prints what it
 * delivered. events[] then holds exactly those events. */
void pump(int wait_ms);
/* Runs the loop quietly until an event is delivered or `max_ms` passed (sleeping in poll() as long as
 * unilock_next_timeout_ms allows), then prints what the last turn delivered, like pump(). */
void pump_until_event(int max_ms);
void print_event(const struct demo_event *e);

/* Checks events[i] against what was expected; epoch NO_EPOCH: not checked (oplocks, delegations). */
#define NO_EPOCH UINT32_MAX
void expect_n_events(size_t n);
void expect_break(size_t i, const char *client, const uint8_t key[16], uint32_t from, uint32_t to,
                  uint32_t epoch, uint32_t ack_required);
void expect_breaks_done(size_t i, uint64_t request_id, uint64_t token);
void expect_grace_released(size_t i, const char *client, uint64_t locks, uint64_t leases);

/* The acts; each returns after closing its own lock manager. */
void act_byte_ranges(void);
void act_leases(void);
void act_restart(void);

#endif /* DEMO_H */
