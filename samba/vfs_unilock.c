/*
 * vfs_unilock: a Samba VFS module that makes unilock the authority for SMB byte-range locks.
 *
 * Built for Samba 4.17 (VFS interface version 47, Debian bookworm's smbd); see samba/build.sh.
 *
 *   [share]
 *       vfs objects = unilock streams_xattr
 *       unilock:db = /var/lib/samba/unilock.db
 *
 * smbd forks one process per client, so every smbd process opens the same unilock database in
 * shared mode (UNILOCK_CONFIG_SHARED) at its first tree connect, and wires the handle's event
 * descriptor into smbd's tevent loop (UNILOCK_EVENTS_LOOP; no library thread).
 *
 * Hooks:
 *   brl_lock_windows   unilock_lock (Windows flavour) first; on a grant smbd's own brlock.tdb
 *                      engine runs next (SMB_VFS_NEXT_BRL_LOCK_WINDOWS), and a refusal there undoes
 *                      the unilock lock, so both tables always hold the same SMB locks and smbd
 *                      keeps working as before. A unilock conflict answers
 *                      NT_STATUS_LOCK_NOT_GRANTED with the blocker's smblctx, exactly as
 *                      brl_lock_windows_default does (UINT64_MAX, "unknown: poll", when the holder
 *                      is not an SMB open, e.g. an NLM/NFS lock); smbd's blocking-lock machinery
 *                      (smbd_smb2_lock_try) then retries the same request. The module also arms a
 *                      one-shot unilock_watch on the file, whose event calls
 *                      share_mode_wakeup_waiters(), so a waiter wakes as soon as any holder (of
 *                      any protocol, in any process) releases.
 *   brl_unlock_windows unilock_unlock (exact range) and the next module; also reached per lock
 *                      from brl_close_fnum when a file is closed.
 *   strict_lock_check  unilock_check_io, then the next module.
 *   close              a safety net: if unilock still holds locks of the open (it should not:
 *                      brl_close_fnum unlocked them), they are released.
 *
 * Owners: client = "smb:<pid>.<unique_id>" (this smbd process's server_id: one SMB client
 * connection), owner bytes = the lock context's smblctx (8 bytes; for SMB2 the open's persistent
 * id), open id = fnum. That is brlock.c's identity (brl_same_context plus fnum): tid never differs
 * for one open. File = unilock_file_id_make(devid, inode, extid), the canonical id every other
 * unilock user derives from st_dev/st_ino.
 *
 * Parametric options (per share; a process opens one handle per database path, with the
 * durability and grace of the first share it connects to on that path):
 *   unilock:db          path of the shared database (required)
 *   unilock:durability  sync | process | batch          (default: process)
 *   unilock:grace       grace period after a whole-server restart, ms (default 0: none, ended
 *                       at once: SMB clients do not reclaim byte-range locks)
 */

#include "includes.h"
#include "smbd/smbd.h"
#include "locking/share_mode_lock.h"
#include "lib/global_contexts.h"
#include "messages.h"

#include <unilock.h>

#undef DBGC_CLASS
#define DBGC_CLASS DBGC_LOCKING

#define UL_MODULE "unilock"

/* One unilock handle per database path per process (normally exactly one). */
struct ul_db {
	struct ul_db *next;
	char *path;
	pid_t pid;
	struct unilock *ul;
	struct tevent_fd *fde;
	char client[64];
	struct ul_watch *watches;
};

/* One armed watch per file per handle: bounded by the number of files with conflicts. */
struct ul_watch {
	struct ul_watch *prev, *next;
	struct ul_db *db;
	struct file_id fid;
	uint64_t request_id;
};

/* Per open: how many locks unilock holds for it (the close-path safety net). */
struct ul_fsp_ext {
	uint64_t held;
};

static struct ul_db *ul_dbs;
static bool ul_atexit_registered;

static void ul_log(void *user_data, uint32_t level, const char *message)
{
	switch (level) {
	case UNILOCK_LOG_ERROR:
		DBG_ERR("%s\n", message);
		break;
	case UNILOCK_LOG_WARN:
		DBG_WARNING("%s\n", message);
		break;
	case UNILOCK_LOG_INFO:
		DBG_INFO("%s\n", message);
		break;
	default:
		DBG_DEBUG("%s\n", message);
		break;
	}
}

static void ul_make_file_id(const struct file_id *id, uint8_t out[UNILOCK_FILE_ID_CANONICAL_LEN])
{
	unilock_file_id_make(id->devid, id->inode, id->extid, out);
}

static void ul_event(void *user_data, const struct unilock_event *ev)
{
	struct ul_db *db = user_data;
	struct ul_watch *w = NULL;

	if (ev->type != UNILOCK_EVENT_WATCH) {
		return;
	}
	for (w = db->watches; w != NULL; w = w->next) {
		if (w == ev->user_data) {
			break;
		}
	}
	if (w == NULL) {
		return;
	}
	DLIST_REMOVE(db->watches, w);
	{
		struct file_id fid = w->fid;
		struct file_id_buf buf;
		NTSTATUS status;

		TALLOC_FREE(w);
		DBG_DEBUG("locks on %s changed: waking smbd's waiters\n",
			  file_id_str_buf(fid, &buf));
		status = share_mode_wakeup_waiters(fid);
		if (!NT_STATUS_IS_OK(status)) {
			DBG_DEBUG("share_mode_wakeup_waiters(%s): %s\n",
				  file_id_str_buf(fid, &buf), nt_errstr(status));
		}
	}
}

static void ul_fd_handler(struct tevent_context *ev, struct tevent_fd *fde,
			  uint16_t flags, void *private_data)
{
	struct ul_db *db = private_data;
	unilock_status st;

	st = unilock_process_events(db->ul, NULL);
	if (st != UNILOCK_OK) {
		DBG_ERR("unilock_process_events: %s\n", unilock_strerror(st));
	}
}

/* At exit, hand this process's locks back at once (the library would find them anyway). */
static void ul_atexit(void)
{
	struct ul_db *db = NULL;

	for (db = ul_dbs; db != NULL; db = db->next) {
		if (db->ul != NULL && db->pid == getpid()) {
			TALLOC_FREE(db->fde);
			unilock_close(db->ul);
			db->ul = NULL;
		}
	}
}

static uint32_t ul_durability(int snum)
{
	const char *d = lp_parm_const_string(snum, UL_MODULE, "durability", "process");

	if (strequal(d, "sync")) {
		return UNILOCK_DURABILITY_SYNC;
	}
	if (strequal(d, "batch")) {
		return UNILOCK_DURABILITY_BATCH;
	}
	if (!strequal(d, "process")) {
		DBG_WARNING("unilock:durability = %s unknown, using process\n", d);
	}
	return UNILOCK_DURABILITY_PROCESS;
}

static struct ul_db *ul_db_get(int snum, const char *path)
{
	struct ul_db *db = NULL;
	struct unilock_config cfg;
	struct server_id self;
	unilock_status st;
	int grace;
	int fd;

	for (db = ul_dbs; db != NULL; db = db->next) {
		if (strcmp(db->path, path) == 0) {
			break;
		}
	}
	if (db != NULL && db->pid == getpid() && db->ul != NULL) {
		return db;
	}
	if (db != NULL) {
		/*
		 * Inherited over fork() from a parent that had it open: a handle must not be used
		 * in a child, open a fresh one (and forget the parent's watches).
		 */
		db->ul = NULL;
		db->fde = NULL;
		db->watches = NULL;
	} else {
		db = talloc_zero(NULL, struct ul_db);
		if (db == NULL) {
			return NULL;
		}
		db->path = talloc_strdup(db, path);
		if (db->path == NULL) {
			TALLOC_FREE(db);
			return NULL;
		}
		db->next = ul_dbs;
		ul_dbs = db;
	}
	db->pid = getpid();
	self = messaging_server_id(global_messaging_context());
	snprintf(db->client, sizeof(db->client), "smb:%llu.%llu",
		 (unsigned long long)self.pid, (unsigned long long)self.unique_id);

	unilock_set_log(ul_log, NULL, CHECK_DEBUGLVL(DBGLVL_DEBUG) ? UNILOCK_LOG_DEBUG : UNILOCK_LOG_INFO);

	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_SHARED;
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = ul_event;
	cfg.event_user_data = db;
	cfg.db_path = db->path;
	cfg.durability = ul_durability(snum);
	grace = lp_parm_int(snum, UL_MODULE, "grace", 0);
	if (grace > 0) {
		cfg.grace_period_ms = (uint64_t)grace;
	}

	/* The database, its -wal and -shm are opened here and never later: do it as root. */
	become_root();
	st = unilock_open(&cfg, &db->ul);
	if (st == UNILOCK_OK && grace <= 0) {
		/*
		 * This process is the first on the database after every previous one died (a crash
		 * of the last smbd child, a reboot) and the database still held locks: unilock starts
		 * a grace period in which only reclaims are granted. SMB clients never reclaim
		 * byte-range locks, so by default end it at once (the dead processes' locks go).
		 * "unilock:grace = <ms>" keeps it, for NLM/NFS servers that must reclaim first.
		 */
		struct unilock_grace_info gi = { 0 };

		if (unilock_grace_status(db->ul, &gi) == UNILOCK_OK && gi.active) {
			DBG_NOTICE("ending the grace period of %s (unilock:grace = 0)\n", path);
			unilock_grace_end(db->ul);
		}
	}
	unbecome_root();
	if (st != UNILOCK_OK) {
		DBG_ERR("unilock_open(%s): %s (%s)\n", path, unilock_strerror(st),
			unilock_errdetail());
		db->ul = NULL;
		return NULL;
	}

	fd = unilock_event_fd(db->ul);
	db->fde = tevent_add_fd(global_event_context(), db, fd, TEVENT_FD_READ,
				ul_fd_handler, db);
	if (db->fde == NULL) {
		DBG_ERR("tevent_add_fd failed\n");
		unilock_close(db->ul);
		db->ul = NULL;
		return NULL;
	}
	if (!ul_atexit_registered) {
		atexit(ul_atexit);
		ul_atexit_registered = true;
	}
	DBG_NOTICE("unilock %s: shared database %s, client %s\n",
		   unilock_libversion(), path, db->client);
	return db;
}

static int ul_connect(struct vfs_handle_struct *handle, const char *service, const char *user)
{
	int snum = SNUM(handle->conn);
	const char *path = NULL;
	struct ul_db *db = NULL;
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	path = lp_parm_const_string(snum, UL_MODULE, "db", NULL);
	if (path == NULL || path[0] == '\0') {
		DBG_ERR("share %s: vfs_unilock needs \"unilock:db = <path>\"\n", service);
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = EINVAL;
		return -1;
	}
	db = ul_db_get(snum, path);
	if (db == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = EIO;
		return -1;
	}
	SMB_VFS_HANDLE_SET_DATA(handle, db, NULL, struct ul_db, return -1);
	return 0;
}

static struct ul_db *ul_handle_db(struct vfs_handle_struct *handle)
{
	struct ul_db *db = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, db, struct ul_db, return NULL);
	if (db == NULL || db->ul == NULL || db->pid != getpid()) {
		return NULL;
	}
	return db;
}

static void ul_owner(struct ul_db *db, const uint64_t *smblctx, uint64_t fnum,
		     struct unilock_owner *o)
{
	o->client = db->client;
	o->owner = (const uint8_t *)smblctx;
	o->owner_len = sizeof(*smblctx);
	o->open_id = fnum;
}

/* Wake smbd's waiters on this file the next time one of its unilock locks goes away. */
static void ul_arm_watch(struct ul_db *db, const struct file_id *fid, const uint8_t *ufid)
{
	struct ul_watch *w = NULL;
	unilock_status st;

	for (w = db->watches; w != NULL; w = w->next) {
		if (file_id_equal(&w->fid, fid)) {
			return;
		}
	}
	w = talloc_zero(db, struct ul_watch);
	if (w == NULL) {
		return;
	}
	w->db = db;
	w->fid = *fid;
	st = unilock_watch(db->ul, ufid, UNILOCK_FILE_ID_CANONICAL_LEN, 0, w, &w->request_id);
	if (st != UNILOCK_OK) {
		DBG_WARNING("unilock_watch: %s\n", unilock_strerror(st));
		TALLOC_FREE(w);
		return;
	}
	DLIST_ADD(db->watches, w);
}

/* Is this unilock client an smbd process running vfs_unilock ("smb:<pid>.<unique_id>")? */
static bool ul_is_smbd_client(const char *client)
{
	unsigned long long pid, unique;
	int n = 0;

	return sscanf(client, "smb:%llu.%llu%n", &pid, &unique, &n) == 2 && client[n] == '\0';
}

/*
 * The blocker's smblctx, as brl_lock_windows_default reports it. A holder that is not an smbd open
 * (an NLM or NFSv4 lock, another server) is "unknown" (UINT64_MAX): smbd then also polls, as it
 * does for a conflicting POSIX lock, on top of the unilock watch.
 */
static uint64_t ul_blocker_smblctx(const struct unilock_lock_info *h)
{
	uint64_t smblctx = UINT64_MAX;

	if (h->flavour == UNILOCK_WINDOWS && h->owner_len == sizeof(smblctx) &&
	    ul_is_smbd_client(h->client)) {
		memcpy(&smblctx, h->owner, sizeof(smblctx));
	}
	return smblctx;
}

static NTSTATUS ul_map_status(unilock_status st)
{
	switch (st) {
	case UNILOCK_OK:
		return NT_STATUS_OK;
	case UNILOCK_E_CONFLICT:
	case UNILOCK_E_GRACE:
	case UNILOCK_E_BUSY:
		return NT_STATUS_LOCK_NOT_GRANTED;
	case UNILOCK_E_INVALID_RANGE:
		return NT_STATUS_INVALID_LOCK_RANGE;
	case UNILOCK_E_LIMIT:
		return NT_STATUS_INSUFFICIENT_RESOURCES;
	case UNILOCK_E_STORE:
		return NT_STATUS_INTERNAL_DB_ERROR;
	default:
		return NT_STATUS_INTERNAL_ERROR;
	}
}

static NTSTATUS ul_brl_lock_windows(struct vfs_handle_struct *handle,
				    struct byte_range_lock *br_lck,
				    struct lock_struct *plock)
{
	struct files_struct *fsp = brl_fsp(br_lck);
	struct ul_db *db = ul_handle_db(handle);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	uint64_t smblctx = plock->context.smblctx;
	struct unilock_owner owner;
	struct unilock_lock_req req = { 0 };
	struct unilock_lock_info holder;
	struct ul_fsp_ext *ext = NULL;
	unilock_status st;
	NTSTATUS status;

	if (db == NULL) {
		DBG_ERR("no unilock handle in this process\n");
		return NT_STATUS_INTERNAL_ERROR;
	}
	if (!byte_range_valid(plock->start, plock->size)) {
		return NT_STATUS_INVALID_LOCK_RANGE;
	}

	ul_make_file_id(&fsp->file_id, ufid);
	ul_owner(db, &smblctx, plock->fnum, &owner);
	req.flavour = UNILOCK_WINDOWS;
	req.type = (plock->lock_type == WRITE_LOCK) ? UNILOCK_EXCLUSIVE : UNILOCK_SHARED;
	req.offset = plock->start;
	req.length = plock->size;

	st = unilock_lock(db->ul, ufid, sizeof(ufid), &owner, &req, &holder);
	if (st != UNILOCK_OK) {
		status = ul_map_status(st);
		if (st == UNILOCK_E_CONFLICT) {
			/* Remember who blocked us, as brl_lock_windows_default does. */
			plock->context.smblctx = ul_blocker_smblctx(&holder);
			ul_arm_watch(db, &fsp->file_id, ufid);
			DBG_DEBUG("%s: [%ju,+%ju) refused: held by %s (smblctx %ju)\n",
				  fsp_str_dbg(fsp), (uintmax_t)plock->start,
				  (uintmax_t)plock->size, holder.client,
				  (uintmax_t)plock->context.smblctx);
		} else if (st == UNILOCK_E_GRACE || st == UNILOCK_E_BUSY) {
			/* Nobody in smbd to name: poll, and wake on the next release. */
			plock->context.smblctx = UINT64_MAX;
			ul_arm_watch(db, &fsp->file_id, ufid);
		} else {
			DBG_ERR("unilock_lock: %s (%s)\n", unilock_strerror(st),
				unilock_errdetail());
		}
		return status;
	}

	status = SMB_VFS_NEXT_BRL_LOCK_WINDOWS(handle, br_lck, plock);
	if (!NT_STATUS_IS_OK(status)) {
		/* smbd's own table refused (or deferred): undo, so both tables agree. */
		st = unilock_unlock(db->ul, ufid, sizeof(ufid), &owner, UNILOCK_WINDOWS,
				    req.offset, req.length);
		if (st != UNILOCK_OK) {
			DBG_ERR("undoing unilock lock: %s\n", unilock_strerror(st));
		}
		return status;
	}

	ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	if (ext == NULL) {
		ext = VFS_ADD_FSP_EXTENSION(handle, fsp, struct ul_fsp_ext, NULL);
	}
	if (ext != NULL) {
		ext->held += 1;
	}
	return NT_STATUS_OK;
}

static bool ul_brl_unlock_windows(struct vfs_handle_struct *handle,
				  struct byte_range_lock *br_lck,
				  const struct lock_struct *plock)
{
	struct files_struct *fsp = brl_fsp(br_lck);
	struct ul_db *db = ul_handle_db(handle);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	uint64_t smblctx = plock->context.smblctx;
	struct unilock_owner owner;
	struct ul_fsp_ext *ext = NULL;
	unilock_status st;
	bool ok;

	ok = SMB_VFS_NEXT_BRL_UNLOCK_WINDOWS(handle, br_lck, plock);
	if (db == NULL) {
		return ok;
	}
	ul_make_file_id(&fsp->file_id, ufid);
	ul_owner(db, &smblctx, plock->fnum, &owner);
	st = unilock_unlock(db->ul, ufid, sizeof(ufid), &owner, UNILOCK_WINDOWS,
			    plock->start, plock->size);
	if (st == UNILOCK_OK) {
		ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
		if (ext != NULL && ext->held > 0) {
			ext->held -= 1;
		}
	}
	if (ok != (st == UNILOCK_OK)) {
		DBG_WARNING("%s: unlock [%ju,+%ju): smbd %s, unilock %s\n",
			    fsp_str_dbg(fsp), (uintmax_t)plock->start,
			    (uintmax_t)plock->size, ok ? "ok" : "not locked",
			    unilock_strerror(st));
	}
	return ok;
}

static bool ul_strict_lock_check(struct vfs_handle_struct *handle,
				 struct files_struct *fsp,
				 struct lock_struct *plock)
{
	struct ul_db *db = ul_handle_db(handle);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	uint64_t smblctx = plock->context.smblctx;
	struct unilock_owner owner;
	int strict_locking;
	unilock_status st;

	if (db == NULL || plock->size == 0 || !lp_locking(fsp->conn->params)) {
		return SMB_VFS_NEXT_STRICT_LOCK_CHECK(handle, fsp, plock);
	}
	strict_locking = lp_strict_locking(fsp->conn->params);
	if (!strict_locking) {
		return SMB_VFS_NEXT_STRICT_LOCK_CHECK(handle, fsp, plock);
	}
	if (strict_locking == Auto) {
		/* smbd's own optimisation: a caching lease means no other SMB lock overlaps. */
		uint32_t lease_type = fsp_lease_type(fsp);

		if (((lease_type & SMB2_LEASE_READ) && plock->lock_type == READ_LOCK) ||
		    ((lease_type & SMB2_LEASE_WRITE) && plock->lock_type == WRITE_LOCK)) {
			return SMB_VFS_NEXT_STRICT_LOCK_CHECK(handle, fsp, plock);
		}
	}

	ul_make_file_id(&fsp->file_id, ufid);
	ul_owner(db, &smblctx, plock->fnum, &owner);
	st = unilock_check_io(db->ul, ufid, sizeof(ufid), &owner,
			      plock->lock_type == WRITE_LOCK ? UNILOCK_WRITE : UNILOCK_READ,
			      plock->start, plock->size);
	if (st == UNILOCK_E_CONFLICT) {
		DBG_DEBUG("%s: %s [%ju,+%ju) conflicts with a lock\n", fsp_str_dbg(fsp),
			  plock->lock_type == WRITE_LOCK ? "write" : "read",
			  (uintmax_t)plock->start, (uintmax_t)plock->size);
		return false;
	}
	if (st != UNILOCK_OK && st != UNILOCK_E_INVALID_RANGE) {
		DBG_ERR("unilock_check_io: %s\n", unilock_strerror(st));
	}
	return SMB_VFS_NEXT_STRICT_LOCK_CHECK(handle, fsp, plock);
}

struct ul_sweep {
	const char *client;
	uint64_t fnum;
	struct unilock_lock_info *found;
	size_t n, cap;
	TALLOC_CTX *mem_ctx;
};

static int32_t ul_sweep_visit(void *user_data, const struct unilock_lock_info *l)
{
	struct ul_sweep *s = user_data;

	if (l->flavour != UNILOCK_WINDOWS || l->open_id != s->fnum ||
	    strcmp(l->client, s->client) != 0) {
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4;
		struct unilock_lock_info *t = talloc_realloc(s->mem_ctx, s->found,
							     struct unilock_lock_info, cap);
		if (t == NULL) {
			return 1;
		}
		s->found = t;
		s->cap = cap;
	}
	s->found[s->n++] = *l;
	return 0;
}

static int ul_close(struct vfs_handle_struct *handle, struct files_struct *fsp)
{
	struct ul_db *db = ul_handle_db(handle);
	struct ul_fsp_ext *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	struct ul_sweep s = { 0 };
	size_t i;

	if (db != NULL && ext != NULL && ext->held > 0) {
		/* brl_close_fnum should have unlocked everything; release what is left. */
		ul_make_file_id(&fsp->file_id, ufid);
		s.client = db->client;
		s.fnum = fsp->fnum;
		s.mem_ctx = talloc_tos();
		unilock_list_locks(db->ul, ufid, sizeof(ufid), ul_sweep_visit, &s, NULL);
		for (i = 0; i < s.n; i++) {
			struct unilock_owner o = {
				.client = db->client,
				.owner = s.found[i].owner,
				.owner_len = s.found[i].owner_len,
				.open_id = s.found[i].open_id,
			};
			unilock_unlock(db->ul, ufid, sizeof(ufid), &o, UNILOCK_WINDOWS,
				       s.found[i].offset, s.found[i].length);
		}
		if (s.n > 0) {
			DBG_INFO("%s: released %zu unilock locks left at close\n",
				 fsp_str_dbg(fsp), s.n);
		}
		TALLOC_FREE(s.found);
		ext->held = 0;
	}
	return SMB_VFS_NEXT_CLOSE(handle, fsp);
}

static struct vfs_fn_pointers vfs_unilock_fns = {
	.connect_fn = ul_connect,
	.close_fn = ul_close,
	.brl_lock_windows_fn = ul_brl_lock_windows,
	.brl_unlock_windows_fn = ul_brl_unlock_windows,
	.strict_lock_check_fn = ul_strict_lock_check,
};

static_decl_vfs;
NTSTATUS vfs_unilock_init(TALLOC_CTX *ctx);
NTSTATUS vfs_unilock_init(TALLOC_CTX *ctx)
{
	return smb_register_vfs(SMB_VFS_INTERFACE_VERSION, UL_MODULE, &vfs_unilock_fns);
}

NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return vfs_unilock_init(ctx);
}
