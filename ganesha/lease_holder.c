/*
 * lease_holder: stands in for an SMB client's lease held through unilock (what smbd will record once
 * vfs_unilock hands SMB2 leases to unilock), for the check that an NFS write through FSAL_UNILOCK
 * breaks it.
 *
 * Opens the shared database (UNILOCK_CONFIG_SHARED, UNILOCK_EVENTS_LOOP), records an open of FILE by
 * CLIENT with an SMB2 lease (UNILOCK_LEASE_KIND_LEASE, R|H|W asked), prints "GRANTED <state>", then
 * for up to SECONDS prints every lease event ("BREAK <from> <to> ack=<0|1>", "REVOKED") and
 * acknowledges a break to its break-to state after ACK_MS (as an SMB client would, having flushed).
 * Exits after the first acknowledged break or at the deadline, closing the open.
 *
 * Usage: lease_holder DB FILE CLIENT SECONDS ACK_MS
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <unilock.h>

static struct unilock *ul;
static uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
static const char *client;
static uint8_t key[16];
static int broken, pending_ack;
static uint32_t ack_to;

static void on_event(void *user_data, const struct unilock_event *ev)
{
	(void)user_data;
	if (ev->type == UNILOCK_EVENT_LEASE_BREAK) {
		printf("BREAK %u %u ack=%u\n", ev->lease_state, ev->break_to, ev->ack_required);
		if (ev->ack_required) {
			pending_ack = 1;
			ack_to = ev->break_to;
		} else {
			broken = 1;
		}
	} else if (ev->type == UNILOCK_EVENT_LEASE_REVOKED) {
		printf("REVOKED\n");
		broken = 1;
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct unilock_config cfg;
	struct unilock_open_req req;
	struct unilock_open_result res;
	struct stat st;
	unilock_status s;
	double end, ack_at = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: %s DB FILE CLIENT SECONDS ACK_MS\n", argv[0]);
		return 2;
	}
	client = argv[3];
	if (stat(argv[2], &st) != 0) {
		perror(argv[2]);
		return 1;
	}
	unilock_file_id_make((uint64_t)st.st_dev, (uint64_t)st.st_ino, 0, fid);
	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_SHARED;
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = on_event;
	cfg.db_path = argv[1];
	cfg.durability = UNILOCK_DURABILITY_PROCESS;
	s = unilock_open(&cfg, &ul);
	if (s != UNILOCK_OK) {
		fprintf(stderr, "unilock_open: %s (%s)\n", unilock_strerror(s), unilock_errdetail());
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)(rand() ^ getpid() ^ (i * 37));
	unilock_open_req_init(&req);
	memset(&res, 0, sizeof(res));
	req.lease_kind = UNILOCK_LEASE_KIND_LEASE;
	req.flags = UNILOCK_OPEN_WRITE;
	req.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H | UNILOCK_LEASE_W;
	req.lease_version = 2;
	memcpy(req.lease_key, key, 16);
	req.file_size = (uint64_t)st.st_size;
	s = unilock_file_open(ul, fid, sizeof(fid), client, 1, &req, NULL, &res);
	if (s != UNILOCK_OK) {
		printf("ERR %s\n", unilock_strerror(s));
		return 1;
	}
	memcpy(key, res.lease_key, 16);
	printf("GRANTED %u\n", res.state);
	end = now() + atof(argv[4]);
	while (now() < end && !broken) {
		struct pollfd p = { .fd = unilock_event_fd(ul), .events = POLLIN };

		poll(&p, 1, 20);
		unilock_process_events(ul, NULL);
		if (pending_ack && ack_at == 0)
			ack_at = now() + atoi(argv[5]) / 1000.0;
		if (pending_ack && now() >= ack_at) {
			s = unilock_lease_ack(ul, fid, sizeof(fid), client, key, ack_to);
			printf("ACKED %u %s\n", ack_to, unilock_strerror(s));
			pending_ack = 0;
			broken = 1;
		}
	}
	unilock_file_close(ul, fid, sizeof(fid), client, 1);
	unilock_close(ul);
	printf("DONE %s\n", broken ? "broken" : "timeout");
	return 0;
}
