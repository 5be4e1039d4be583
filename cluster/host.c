/* One unilock "host" of the cluster check (cluster/check.sh): a process with its own cluster handle
 * that reads commands on stdin, one per line, and answers each with one line "= STATUS [VALUE]".
 * Events arrive on the library thread and are printed as "! TYPE STATUS TOKEN LEASE_STATE BREAK_TO".
 *
 *   usage: host ENDPOINTS CLUSTER HOSTNAME TTL_MS
 *   lock FILE CLIENT OFFSET LENGTH          POSIX exclusive lock        = status
 *   block FILE CLIENT OFFSET LENGTH TOKEN   blocking POSIX exclusive    = status request_id
 *   unlock FILE CLIENT OFFSET LENGTH                                    = status
 *   lease FILE CLIENT KEY                   open with an RWH SMB lease  = status state
 *   openw FILE CLIENT KEY TOKEN             the same, waiting for breaks = status state
 *   ack FILE CLIENT KEY STATE               lease break acknowledgement = status
 *   quit
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unilock.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *ud, const unilock_event *ev)
{
	(void)ud;
	pthread_mutex_lock(&out_lock);
	printf("! %u %d %llu %u %u\n", ev->type, (int)ev->status, (unsigned long long)ev->token, ev->lease_state,
	       ev->break_to);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void answer(const char *fmt, unsigned long long a, unsigned long long b)
{
	pthread_mutex_lock(&out_lock);
	printf(fmt, a, b);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: host ENDPOINTS CLUSTER HOSTNAME TTL_MS\n");
		return 2;
	}
	unilock_config cfg;
	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_CLUSTER;
	cfg.cluster_endpoints = argv[1];
	cfg.cluster_name = argv[2];
	cfg.cluster_host = argv[3];
	cfg.cluster_ttl_ms = strtoull(argv[4], NULL, 10);
	cfg.event_fn = on_event;
	unilock *ul = NULL;
	unilock_status st = unilock_open(&cfg, &ul);
	if (st != UNILOCK_OK) {
		fprintf(stderr, "host %s: unilock_open: %d\n", argv[3], (int)st);
		return 1;
	}
	answer("= %llu ready%llu\n", 0, 0);
	char line[512], cmd[16], file[128], client[128];
	while (fgets(line, sizeof line, stdin)) {
		unsigned long long a = 0, b = 0, c = 0;
		int n = sscanf(line, "%15s %127s %127s %llu %llu %llu", cmd, file, client, &a, &b, &c);
		if (n < 1)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		const uint8_t *f = (const uint8_t *)file;
		size_t flen = strlen(file);
		unilock_owner o = { .client = client, .owner = (const uint8_t *)"o", .owner_len = 1, .open_id = 1 };
		unilock_lock_req r = { .flavour = UNILOCK_POSIX, .type = UNILOCK_EXCLUSIVE, .offset = a, .length = b };
		if (strcmp(cmd, "lock") == 0 && n == 5) {
			answer("= %llu%.0llu\n", (unsigned)unilock_lock(ul, f, flen, &o, &r, NULL), 0);
		} else if (strcmp(cmd, "block") == 0 && n == 6) {
			unilock_wait w = { .token = c, .user_data = NULL, .timeout_ms = 0 };
			uint64_t id = 0;
			st = unilock_lock_blocking(ul, f, flen, &o, &r, &w, &id, NULL);
			answer("= %llu %llu\n", (unsigned)st, id);
		} else if (strcmp(cmd, "unlock") == 0 && n == 5) {
			answer("= %llu%.0llu\n", (unsigned)unilock_unlock(ul, f, flen, &o, UNILOCK_POSIX, a, b), 0);
		} else if ((strcmp(cmd, "lease") == 0 && n == 4) || (strcmp(cmd, "openw") == 0 && n == 5)) {
			unilock_open_req req;
			memset(&req, 0, sizeof req);
			req.size = sizeof req;
			req.lease_kind = UNILOCK_LEASE_KIND_LEASE;
			req.requested = UNILOCK_LEASE_R | UNILOCK_LEASE_H | UNILOCK_LEASE_W;
			req.lease_version = 2;
			memset(req.lease_key, (int)a, sizeof req.lease_key);
			unilock_wait w = { .token = b, .user_data = NULL, .timeout_ms = 0 };
			unilock_open_result res;
			memset(&res, 0, sizeof res);
			st = unilock_file_open(ul, f, flen, client, 1, &req, cmd[0] == 'o' ? &w : NULL, &res);
			answer("= %llu %llu\n", (unsigned)st, res.state);
		} else if (strcmp(cmd, "ack") == 0 && n == 5) {
			uint8_t key[16];
			memset(key, (int)a, sizeof key);
			answer("= %llu%.0llu\n", (unsigned)unilock_lease_ack(ul, f, flen, client, key, (uint32_t)b), 0);
		} else {
			answer("= %llu bad-command%.0llu\n", 999, 0);
		}
	}
	unilock_close(ul);
	return 0;
}
