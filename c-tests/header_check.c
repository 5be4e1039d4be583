/*
 * Compile check of unilock.h as C99 and C11 (-Wall -Wextra -Werror -pedantic and more): includes the
 * header alone, first, and uses every type, macro and function it declares.
 */
#include <unilock.h>
#include <unilock.h> /* the include guard works */

#include <stdio.h>

static int32_t visit(void *user_data, const struct unilock_lock_info *lock)
{
	(void)user_data;
	return lock->type == UNILOCK_EXCLUSIVE;
}

static void log_fn(void *user_data, uint32_t level, const char *message)
{
	(void)user_data;
	(void)level;
	(void)message;
}

int main(void)
{
	unilock_config cfg;
	unilock *ul = NULL;
	unilock_owner o;
	unilock_lock_req req;
	unilock_lock_info info;
	unilock_lock_visit_fn v = visit;
	unilock_log_fn lf = log_fn;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
	size_t n = 0, idx = 0;
	unilock_status s;
	enum unilock_status all[6] = {UNILOCK_OK, UNILOCK_E_INVALID, UNILOCK_E_INVALID_RANGE, UNILOCK_E_CONFLICT,
				      UNILOCK_E_RANGE_NOT_LOCKED, UNILOCK_E_INTERNAL};
	uint64_t eof = UNILOCK_TO_EOF;
	int levels = UNILOCK_LOG_OFF + UNILOCK_LOG_ERROR + UNILOCK_LOG_WARN + UNILOCK_LOG_INFO + UNILOCK_LOG_DEBUG +
		     UNILOCK_LOG_TRACE;
	int sizes = UNILOCK_FILE_ID_MAX + UNILOCK_CLIENT_MAX + UNILOCK_OWNER_MAX;
	const char *version = UNILOCK_VERSION;
	long vnum = UNILOCK_VERSION_NUMBER;

	unilock_config_init(&cfg);
	s = unilock_set_log(lf, NULL, UNILOCK_LOG_OFF);
	s |= unilock_open(&cfg, &ul);
	s |= unilock_file_id_make(1, 2, 3, fid);
	o.client = "hdr";
	o.owner = NULL;
	o.owner_len = 0;
	o.open_id = 1;
	req.flavour = UNILOCK_WINDOWS;
	req.type = UNILOCK_SHARED;
	req.offset = 0;
	req.length = 10;
	req.flags = 0;
	s |= unilock_lock(ul, fid, sizeof fid, &o, &req, &info);
	s |= unilock_test(ul, fid, sizeof fid, &o, &req, &info);
	s |= unilock_lock_many(ul, fid, sizeof fid, &o, &req, 1, &idx, &info);
	s |= unilock_check_io(ul, fid, sizeof fid, &o, UNILOCK_READ, 0, 1);
	(void)unilock_check_io(ul, fid, sizeof fid, &o, UNILOCK_WRITE, 0, 1);
	s |= unilock_list_locks(ul, fid, sizeof fid, v, NULL, &n);
	s |= unilock_unlock(ul, fid, sizeof fid, &o, UNILOCK_WINDOWS, 0, 10);
	s |= unilock_unlock_many(ul, fid, sizeof fid, &o, &req, 1, &idx);
	s |= unilock_release_open(ul, fid, sizeof fid, &o, &n);
	s |= unilock_release_client(ul, "hdr", &n);
	req.flavour = UNILOCK_POSIX;
	req.type = UNILOCK_EXCLUSIVE;
	req.length = eof;
	req.flags = 0;
	unilock_close(ul);
	if (0)
		s |= unilock_debug_panic(); /* declared; not called (it prints a panic message) */
	printf("header C check: %s %ld (lib %s %ld), %s, status %u, %d %d %d\n", version, vnum, unilock_libversion(),
	       (long)unilock_libversion_number(), unilock_strerror(all[3]), (unsigned)s, levels, sizes,
	       (int)sizeof(info));
	return s == UNILOCK_OK ? 0 : 1;
}
