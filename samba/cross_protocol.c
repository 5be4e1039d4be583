/*
 * cross_protocol: the NFS/NLM side of the cross-protocol test (samba/cross_protocol.py drives it).
 *
 * It stands in for an NLM server: it opens the unilock database smbd's vfs_unilock uses, in shared
 * mode (UNILOCK_CONFIG_SHARED, UNILOCK_EVENTS_LOOP), names files of the share by
 * unilock_file_id_make(st_dev, st_ino, 0) -- the id the module derives from smbd's file_id -- and
 * takes POSIX locks as an NLM client would (client "nlm:<host>", owner = the svid/oh bytes).
 *
 * Line protocol on stdin, one answer line per command on stdout:
 *   file PATH                                  -> OK | ERR <why>
 *   lock|test CLIENT OWNER sh|ex OFFSET LENGTH  -> OK | CONFLICT <holder> | ERR <status>
 *   block CLIENT OWNER sh|ex OFFSET LENGTH      -> OK | PENDING <id> [<holder>] | ERR <status>
 *   unlock CLIENT OWNER OFFSET LENGTH           -> OK | ERR <status>
 *   release CLIENT OWNER                        -> OK <n>
 *   list                                        -> LOCKS <n> then one "LOCK <holder>" line each
 *   wait MS                                     -> EVENT <type> <id> status=<n> ... lines, then WAITED <n>
 *   trigger CLIENT write|truncate wait|nowait   -> OK | PENDING <id> | ERR <status> (unilock_break_trigger)
 *   open CLIENT OPENID write|read [deleg r|w]   -> OK state=<bits> key=<hex> | ERR <status>: an NFSv4
 *                                                  OPEN (cannot wait: busy while breaks go on), with an
 *                                                  optional delegation request
 *   close CLIENT OPENID                          -> OK | ERR <status>
 *   delegreturn CLIENT KEYHEX                    -> OK | ERR <status>
 *   quit
 * <holder> is "client=C flavour=posix|windows type=sh|ex offset=O length=L open=ID owner=HEX".
 * LENGTH "eof" is UNILOCK_TO_EOF.
 *
 * Usage: cross_protocol DBPATH
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unilock.h>

static struct unilock *ul;
static uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
static int have_file;
static size_t events_seen;

static void print_holder(const struct unilock_lock_info *h)
{
	printf("client=%s flavour=%s type=%s offset=%" PRIu64 " length=%" PRIu64 " open=%" PRIu64 " owner=",
	       h->client, h->flavour == UNILOCK_POSIX ? "posix" : "windows",
	       h->type == UNILOCK_EXCLUSIVE ? "ex" : "sh", h->offset, h->length, h->open_id);
	for (size_t i = 0; i < h->owner_len && i < 64; i++) {
		printf("%02x", h->owner[i]);
	}
}

static void print_key(const uint8_t *k)
{
	for (int i = 0; i < 16; i++) {
		printf("%02x", k[i]);
	}
}

static int parse_key(const char *hex, uint8_t *k)
{
	if (hex == NULL || strlen(hex) != 32) {
		return -1;
	}
	for (int i = 0; i < 16; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
			return -1;
		}
		k[i] = (uint8_t)v;
	}
	return 0;
}

static void on_event(void *user_data, const struct unilock_event *ev)
{
	(void)user_data;
	events_seen++;
	if (ev->type == UNILOCK_EVENT_LEASE_BREAK || ev->type == UNILOCK_EVENT_LEASE_REVOKED ||
	    ev->type == UNILOCK_EVENT_BREAKS_DONE) {
		printf("EVENT %s %" PRIu64 " status=%u client=%s key=",
		       ev->type == UNILOCK_EVENT_LEASE_BREAK ? "lease_break" :
		       ev->type == UNILOCK_EVENT_LEASE_REVOKED ? "lease_revoked" : "breaks_done",
		       ev->request_id, (unsigned)ev->status, ev->client ? ev->client : "");
		print_key(ev->lease_key);
		printf(" state=%u break_to=%u ack=%u\n", ev->lease_state, ev->break_to, ev->ack_required);
		return;
	}
	printf("EVENT %s %" PRIu64 " status=%u (%s) client=%s offset=%" PRIu64 " length=%" PRIu64 "\n",
	       ev->type == UNILOCK_EVENT_LOCK ? "lock" : ev->type == UNILOCK_EVENT_WATCH ? "watch" : "other",
	       ev->request_id, (unsigned)ev->status, unilock_strerror(ev->status),
	       ev->client ? ev->client : "", ev->offset, ev->length);
}

static int parse_owner(char *client, char *owner, struct unilock_owner *o)
{
	if (client == NULL || owner == NULL) {
		return -1;
	}
	o->client = client;
	o->owner = (const uint8_t *)owner;
	o->owner_len = strlen(owner);
	o->open_id = 0;
	return 0;
}

static int parse_req(char *type, char *off, char *len, struct unilock_lock_req *r)
{
	if (type == NULL || off == NULL || len == NULL) {
		return -1;
	}
	memset(r, 0, sizeof(*r));
	r->flavour = UNILOCK_POSIX;
	r->type = strcmp(type, "ex") == 0 ? UNILOCK_EXCLUSIVE : UNILOCK_SHARED;
	r->offset = strtoull(off, NULL, 0);
	r->length = strcmp(len, "eof") == 0 ? UNILOCK_TO_EOF : strtoull(len, NULL, 0);
	return 0;
}

static int32_t list_visit(void *user_data, const struct unilock_lock_info *l)
{
	(void)user_data;
	printf("LOCK ");
	print_holder(l);
	printf("\n");
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	struct unilock_config cfg;
	char line[4096];
	unilock_status st;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DBPATH\n", argv[0]);
		return 2;
	}
	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_SHARED;
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = on_event;
	cfg.db_path = argv[1];
	cfg.durability = UNILOCK_DURABILITY_PROCESS;
	st = unilock_open(&cfg, &ul);
	if (st != UNILOCK_OK) {
		fprintf(stderr, "unilock_open(%s): %s (%s)\n", argv[1], unilock_strerror(st), unilock_errdetail());
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("READY %s\n", unilock_libversion());

	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *save = NULL;
		char *cmd = strtok_r(line, " \t\r\n", &save);
		char *a[6] = { 0 };
		for (int i = 0; i < 6; i++) {
			a[i] = strtok_r(NULL, " \t\r\n", &save);
		}
		if (cmd == NULL) {
			continue;
		}
		size_t seen_before = events_seen; /* events delivered from here on count for "wait" */
		unilock_process_events(ul, NULL);
		if (strcmp(cmd, "quit") == 0) {
			break;
		} else if (strcmp(cmd, "file") == 0) {
			struct stat sb;
			if (a[0] == NULL || stat(a[0], &sb) != 0) {
				printf("ERR %s\n", strerror(errno));
				continue;
			}
			unilock_file_id_make((uint64_t)sb.st_dev, (uint64_t)sb.st_ino, 0, fid);
			have_file = 1;
			printf("OK dev=%" PRIu64 " ino=%" PRIu64 "\n", (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
		} else if (!have_file) {
			printf("ERR no file\n");
		} else if (strcmp(cmd, "lock") == 0 || strcmp(cmd, "test") == 0 || strcmp(cmd, "block") == 0) {
			struct unilock_owner o;
			struct unilock_lock_req r;
			struct unilock_lock_info h;
			memset(&h, 0, sizeof(h));
			if (parse_owner(a[0], a[1], &o) != 0 || parse_req(a[2], a[3], a[4], &r) != 0) {
				printf("ERR syntax\n");
				continue;
			}
			if (strcmp(cmd, "block") == 0) {
				struct unilock_wait w = { .token = 1, .user_data = NULL, .timeout_ms = 0 };
				uint64_t id = 0;
				h.client[0] = 0;
				st = unilock_lock_blocking(ul, fid, sizeof(fid), &o, &r, &w, &id, &h);
				if (st == UNILOCK_PENDING) {
					printf("PENDING %" PRIu64, id);
					if (h.client[0]) {
						printf(" ");
						print_holder(&h);
					}
					printf("\n");
					continue;
				}
			} else if (strcmp(cmd, "lock") == 0) {
				st = unilock_lock(ul, fid, sizeof(fid), &o, &r, &h);
			} else {
				st = unilock_test(ul, fid, sizeof(fid), &o, &r, &h);
			}
			if (st == UNILOCK_OK) {
				printf("OK\n");
			} else if (st == UNILOCK_E_CONFLICT) {
				printf("CONFLICT ");
				print_holder(&h);
				printf("\n");
			} else {
				printf("ERR %s\n", unilock_strerror(st));
			}
		} else if (strcmp(cmd, "unlock") == 0) {
			struct unilock_owner o;
			if (parse_owner(a[0], a[1], &o) != 0 || a[2] == NULL || a[3] == NULL) {
				printf("ERR syntax\n");
				continue;
			}
			st = unilock_unlock(ul, fid, sizeof(fid), &o, UNILOCK_POSIX, strtoull(a[2], NULL, 0),
					    strcmp(a[3], "eof") == 0 ? UNILOCK_TO_EOF : strtoull(a[3], NULL, 0));
			if (st == UNILOCK_OK) {
				printf("OK\n");
			} else {
				printf("ERR %s\n", unilock_strerror(st));
			}
		} else if (strcmp(cmd, "release") == 0) {
			struct unilock_owner o;
			size_t n = 0;
			if (parse_owner(a[0], a[1], &o) != 0) {
				printf("ERR syntax\n");
				continue;
			}
			st = unilock_release_open(ul, fid, sizeof(fid), &o, &n);
			if (st == UNILOCK_OK) {
				printf("OK %zu\n", n);
			} else {
				printf("ERR %s\n", unilock_strerror(st));
			}
		} else if (strcmp(cmd, "trigger") == 0) {
			struct unilock_wait w = { .token = 7, .user_data = NULL, .timeout_ms = 0 };
			uint64_t id = 0;
			uint32_t trig = a[1] && strcmp(a[1], "truncate") == 0 ? UNILOCK_TRIGGER_TRUNCATE : UNILOCK_TRIGGER_WRITE;
			int can_wait = a[2] && strcmp(a[2], "wait") == 0;
			if (a[0] == NULL) {
				printf("ERR syntax\n");
				continue;
			}
			st = unilock_break_trigger(ul, fid, sizeof(fid), a[0], NULL, trig, can_wait ? &w : NULL, &id);
			if (st == UNILOCK_OK) {
				printf("OK\n");
			} else if (st == UNILOCK_PENDING) {
				printf("PENDING %" PRIu64 "\n", id);
			} else {
				printf("ERR %s\n", unilock_strerror(st));
			}
		} else if (strcmp(cmd, "open") == 0) {
			struct unilock_open_req req;
			struct unilock_open_result res;
			if (a[0] == NULL || a[1] == NULL || a[2] == NULL) {
				printf("ERR syntax\n");
				continue;
			}
			unilock_open_req_init(&req);
			memset(&res, 0, sizeof(res));
			req.flags = strcmp(a[2], "write") == 0 ? UNILOCK_OPEN_WRITE : 0;
			if (a[3] && strcmp(a[3], "deleg") == 0) {
				req.lease_kind = UNILOCK_LEASE_KIND_DELEGATION;
				req.requested = a[4] && strcmp(a[4], "w") == 0 ? UNILOCK_LEASE_W | UNILOCK_LEASE_R : UNILOCK_LEASE_R;
			}
			st = unilock_file_open(ul, fid, sizeof(fid), a[0], strtoull(a[1], NULL, 0), &req, NULL, &res);
			if (st == UNILOCK_OK) {
				printf("OK state=%u key=", res.state);
				print_key(res.lease_key);
				printf("\n");
			} else {
				printf("ERR %s\n", unilock_strerror(st));
			}
		} else if (strcmp(cmd, "close") == 0) {
			if (a[0] == NULL || a[1] == NULL) {
				printf("ERR syntax\n");
				continue;
			}
			st = unilock_file_close(ul, fid, sizeof(fid), a[0], strtoull(a[1], NULL, 0));
			printf(st == UNILOCK_OK ? "OK\n" : "ERR %s\n", unilock_strerror(st));
		} else if (strcmp(cmd, "delegreturn") == 0) {
			uint8_t k[16];
			if (a[0] == NULL || parse_key(a[1], k) != 0) {
				printf("ERR syntax\n");
				continue;
			}
			st = unilock_lease_release(ul, fid, sizeof(fid), a[0], k);
			printf(st == UNILOCK_OK ? "OK\n" : "ERR %s\n", unilock_strerror(st));
		} else if (strcmp(cmd, "list") == 0) {
			size_t n = 0;
			unilock_list_locks(ul, fid, sizeof(fid), NULL, NULL, &n);
			printf("LOCKS %zu\n", n);
			unilock_list_locks(ul, fid, sizeof(fid), list_visit, NULL, NULL);
		} else if (strcmp(cmd, "wait") == 0) {
			int64_t deadline = now_ms() + (a[0] ? strtoll(a[0], NULL, 0) : 1000);
			size_t before = seen_before;
			struct pollfd p = { .fd = unilock_event_fd(ul), .events = POLLIN };
			for (;;) {
				int64_t left = deadline - now_ms();
				unilock_process_events(ul, NULL);
				if (events_seen > before || left <= 0) {
					break;
				}
				poll(&p, 1, (int)left);
			}
			printf("WAITED %zu\n", events_seen - before);
		} else {
			printf("ERR unknown command %s\n", cmd);
		}
	}
	unilock_close(ul);
	return 0;
}
