/*
 * vfs_unilock: a Samba VFS module that makes unilock the authority for SMB byte-range locks, and
 * for SMB2 leases and oplocks against every other unilock user (NFS/NLM servers, other programs).
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
 *   create_file        leases and oplocks (see "Leases and oplocks" below): unilock_file_open
 *                      first, smbd gets a request capped to the grant, what smbd granted is
 *                      recorded; UNILOCK_PENDING defers the CREATE until UNILOCK_EVENT_BREAKS_DONE.
 *   durable_disconnect, durable_reconnect
 *                      a durable handle's unilock state outlives its smbd process and moves to the
 *                      process that reconnects it (see ul_lock_owner).
 *
 * Breaks unilock raises for an open of this process (UNILOCK_EVENT_LEASE_BREAK) go into smbd's own
 * machinery (MSG_SMB_BREAK_REQUEST to this process); acks are learned from the fsp (ul_ack_poll).
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
 *   unilock:leases      yes (default) | no: leases and oplocks through unilock (no: smbd's alone,
 *                       as before; other protocols then do not break SMB leases)
 *   unilock:break timeout  unilock's lease break timeout, ms (default 35000, smbd's
 *                       OPLOCK_BREAK_TIMEOUT): how long a foreign requester waits for an SMB
 *                       client that does not acknowledge a break
 */

#include "includes.h"
#include "smbd/smbd.h"
#include "locking/share_mode_lock.h"
#include "librpc/gen_ndr/open_files.h"
#include "librpc/gen_ndr/smbXsrv.h"
#include "lib/global_contexts.h"
#include "messages.h"
#include "lib/util/server_id.h"
#include "smbd/fd_handle.h"
#include "locking/proto.h"
#include "locking/leases_db.h"
#include "../libcli/smb/smb2_constants.h"

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
	struct ul_open *opens;		/* this process's opens recorded by unilock_file_open */
	struct ul_defer *defers;	/* SMB2 CREATEs deferred until UNILOCK_EVENT_BREAKS_DONE */
	uint64_t next_open_id;
	bool leases;			/* unilock:leases */
	bool dh_kept;			/* a durable handle was disconnected: no unilock_close at exit */
};

/* One armed watch per file per handle: bounded by the number of files with conflicts. */
struct ul_watch {
	struct ul_watch *prev, *next;
	struct ul_db *db;
	struct file_id fid;
	uint64_t request_id;
};

/*
 * An smbd open recorded in unilock (unilock_file_open): what unilock knows it by, and the ack
 * watcher of a break unilock raised for it.
 */
struct ul_open {
	struct ul_open *prev, *next;
	struct ul_db *db;
	struct files_struct *fsp;
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	char client[64];		/* db->client, or the durable handle's "smbdh:..." */
	uint64_t open_id;
	uint32_t kind;			/* UNILOCK_LEASE_KIND_* */
	uint8_t key[16];		/* the lease key unilock knows (for oplocks: the one it made) */
	uint32_t granted;		/* what smbd granted (R|H|W bits) */
	struct tevent_timer *ack_te;	/* polling for the client's ack of a break */
	uint32_t break_to;
	unsigned ack_polls;
	bool have_break_epoch;
	uint32_t break_epoch;		/* unilock's epoch of the last break event */
};

/* smbd/globals.h (which needs more of smbd's generated headers than a module has): */
void send_break_message_smb2(files_struct *fsp, uint32_t break_from, uint32_t break_to);

/* An SMB2 CREATE deferred because unilock answered UNILOCK_PENDING. */
struct ul_defer {
	struct ul_defer *prev, *next;
	struct ul_db *db;
	struct smbXsrv_connection *xconn;
	uint64_t mid;
	uint64_t request_id;
	bool scheduled;
	struct tevent_timer *te;
};

/*
 * smbd 4.17's deferred open record (source3/smbd/open.c, opaque outside it): smbd frees it when it
 * re-runs or cancels the deferred CREATE and reads only async_open; the module allocates its own to
 * defer an open the way defer_open() does.
 */
struct deferred_open_record {
	struct smbXsrv_connection *xconn;
	uint64_t mid;
	bool async_open;
	struct tevent_timer *te;
	struct tevent_req *watch_req;
};

/* Per open: how many locks unilock holds for it (the close-path safety net), and its record. */
struct ul_fsp_ext {
	uint64_t held;
	struct ul_open *uo;
	char dh_client[64];		/* durable handle: "smbdh:<persistent id>", registered */
	bool dh_disconnecting;		/* inside durable_disconnect: keep the locks */
	bool wrote;			/* the first write's break trigger has run */
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

static void ul_api_file_close(struct ul_db *db, const char *client, const uint8_t *ufid,
			      uint64_t open_id);
static unilock_status ul_api_file_open(struct ul_db *db, const char *client,
				       const uint8_t *ufid, uint64_t open_id,
				       uint32_t kind, uint32_t flags, uint32_t requested,
				       const struct smb2_lease *lease, uint64_t file_size,
				       const struct unilock_wait *wait, struct unilock_open_result *out);
static uint32_t ul_smbd_state(struct files_struct *fsp, bool *breaking);
static int ul_open_destructor(struct ul_open *o);

/*
 * The fsp goes (file_free): its unilock open goes with it. Not close_fn: smbd frees some fsps
 * without calling it (an open whose fd was never opened, a durable handle disconnected).
 */
static void ul_fsp_ext_free(void *p)
{
	struct ul_fsp_ext *ext = p;
	struct ul_open *o = ext->uo;

	if (o == NULL) {
		return;
	}
	ext->uo = NULL;
	if (o->db->ul != NULL && o->db->pid == getpid()) {
		ul_api_file_close(o->db, o->client, o->ufid, o->open_id);
	}
	TALLOC_FREE(o);
}

static void ul_make_file_id(const struct file_id *id, uint8_t out[UNILOCK_FILE_ID_CANONICAL_LEN])
{
	unilock_file_id_make(id->devid, id->inode, id->extid, out);
}

static void ul_lease_break(struct ul_db *db, const struct unilock_event *ev);
static void ul_breaks_done(struct ul_db *db, const struct unilock_event *ev);

static void ul_event(void *user_data, const struct unilock_event *ev)
{
	struct ul_db *db = user_data;
	struct ul_watch *w = NULL;

	switch (ev->type) {
	case UNILOCK_EVENT_LEASE_BREAK:
		ul_lease_break(db, ev);
		return;
	case UNILOCK_EVENT_BREAKS_DONE:
		ul_breaks_done(db, ev);
		return;
	case UNILOCK_EVENT_LEASE_REVOKED:
		DBG_NOTICE("unilock revoked lease of open %ju (break not acknowledged in time)\n",
			   (uintmax_t)ev->open_id);
		return;
	case UNILOCK_EVENT_WATCH:
		break;
	default:
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
			if (db->dh_kept) {
				/*
				 * unilock_close would release the durable handles' locks too; left
				 * to the library's dead-process check, this process's clients are
				 * disconnected instead, and the durable ones (TTL) keep theirs.
				 */
				continue;
			}
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
		db->opens = NULL;
		db->defers = NULL;
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
	{
		int bt = lp_parm_int(snum, UL_MODULE, "break timeout", 0);

		if (bt > 0) {
			cfg.lease_break_timeout_ms = (uint64_t)bt;
		}
	}
	db->leases = lp_parm_bool(snum, UL_MODULE, "leases", true);
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

/*
 * The open id of the open's locks: the id its unilock open was recorded with when there is one
 * (unilock finds the locker's own lease through it and does not break it, as smbd does not), else
 * fnum.
 */
static uint64_t ul_lock_open_id(struct vfs_handle_struct *handle, struct files_struct *fsp,
				uint64_t fnum)
{
	struct ul_fsp_ext *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);

	if (ext != NULL && ext->uo != NULL) {
		return ext->uo->open_id;
	}
	return fnum;
}

/*
 * Durable handles. smbd keeps a durable open's byte-range locks when its connection goes and the
 * client reconnects it in a new smbd process (smb2.durable-open, -v2-open). Their unilock owner must
 * outlive the old process: the client is "smbdh:<the open's persistent id>" (unique on the server,
 * the same before and after the reconnect), registered with the durable timeout as its TTL, and the
 * open id is the persistent id (fnum changes). The old process dying then is a disconnect with a
 * TTL: the locks stay until the reconnect (ul_durable_reconnect re-registers and rebinds them to the
 * new process) or the timeout.
 */
static bool ul_durable(struct files_struct *fsp)
{
	return fsp->op != NULL && fsp->op->global != NULL && fsp->op->global->durable;
}

static void ul_dh_client(uint64_t persistent_id, char *buf, size_t len)
{
	snprintf(buf, len, "smbdh:%016llx", (unsigned long long)persistent_id);
}

static uint64_t ul_dh_ttl_ms(const struct smbXsrv_open_global0 *g)
{
	return g->durable_timeout_msec ? g->durable_timeout_msec : 60000;
}

static void ul_lock_owner(struct vfs_handle_struct *handle, struct ul_db *db,
			  struct files_struct *fsp, const uint64_t *smblctx, uint64_t fnum,
			  struct unilock_owner *o)
{
	struct ul_fsp_ext *ext = NULL;

	ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	if (ext != NULL && ext->uo != NULL && strncmp(ext->uo->client, "smbdh:", 6) == 0) {
		/* Recorded under its durable identity at create (a durable request). */
		if (ext->dh_client[0] == '\0' && ul_durable(fsp)) {
			snprintf(ext->dh_client, sizeof(ext->dh_client), "%s", ext->uo->client);
			unilock_client_register(db->ul, ext->dh_client, "smb", NULL,
						ul_dh_ttl_ms(fsp->op->global));
		}
		o->client = ext->uo->client;
		o->owner = (const uint8_t *)smblctx;
		o->owner_len = sizeof(*smblctx);
		o->open_id = ext->uo->open_id;
		return;
	}
	if (!ul_durable(fsp)) {
		ul_owner(db, smblctx, ul_lock_open_id(handle, fsp, fnum), o);
		return;
	}
	if (ext == NULL) {
		ext = VFS_ADD_FSP_EXTENSION(handle, fsp, struct ul_fsp_ext, ul_fsp_ext_free);
	}
	if (ext == NULL) {
		ul_owner(db, smblctx, ul_lock_open_id(handle, fsp, fnum), o);
		return;
	}
	if (ext->dh_client[0] == '\0') {
		unilock_status st;

		ul_dh_client(fsp->op->global->open_persistent_id, ext->dh_client,
			     sizeof(ext->dh_client));
		st = unilock_client_register(db->ul, ext->dh_client, "smb", NULL,
					     ul_dh_ttl_ms(fsp->op->global));
		DBG_DEBUG("%s: durable owner %s: %s\n", fsp_str_dbg(fsp), ext->dh_client,
			  unilock_strerror(st));
	}
	o->client = ext->dh_client;
	o->owner = (const uint8_t *)smblctx;
	o->owner_len = sizeof(*smblctx);
	o->open_id = fsp->op->global->open_persistent_id;
}

static NTSTATUS ul_durable_disconnect(struct vfs_handle_struct *handle, struct files_struct *fsp,
				      const DATA_BLOB old_cookie, TALLOC_CTX *mem_ctx,
				      DATA_BLOB *new_cookie)
{
	struct ul_fsp_ext *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	NTSTATUS status;

	if (ext != NULL) {
		struct ul_db *db = ul_handle_db(handle);

		ext->dh_disconnecting = true;	/* ul_close must not sweep the locks smbd keeps */
		if (db != NULL && ext->uo != NULL && strncmp(ext->uo->client, "smbdh:", 6) == 0 &&
		    fsp->op != NULL && fsp->op->global != NULL) {
			/* Its locks and lease outlive this process until the reconnect or timeout. */
			unilock_status st = unilock_client_register(db->ul, ext->uo->client, "smb", NULL,
								    ul_dh_ttl_ms(fsp->op->global));

			DBG_NOTICE("%s: durable handle disconnected: %s kept for %ju ms (%s)\n",
				   fsp_str_dbg(fsp), ext->uo->client,
				   (uintmax_t)ul_dh_ttl_ms(fsp->op->global), unilock_strerror(st));
			db->dh_kept = true;
			{
				/*
				 * The open and its lease or oplock go; the locks stay. smbd does
				 * not hold a disconnected handle's oplock or lease against new
				 * opens either: the next open gets Batch (smb2.durable-open.oplock,
				 * .lease) and the handle can no longer be reconnected. A reconnect
				 * records the open again (ul_durable_reconnect).
				 */
				struct ul_open *o = ext->uo;

				ext->uo = NULL;
				ul_api_file_close(db, o->client, o->ufid, o->open_id);
				TALLOC_FREE(o);
			}
		}
	}
	status = SMB_VFS_NEXT_DURABLE_DISCONNECT(handle, fsp, old_cookie, mem_ctx, new_cookie);
	if (!NT_STATUS_IS_OK(status) && ext != NULL) {
		ext->dh_disconnecting = false;
	}
	return status;
}

static NTSTATUS ul_durable_reconnect(struct vfs_handle_struct *handle, struct smb_request *smb1req,
				     struct smbXsrv_open *op, const DATA_BLOB old_cookie,
				     TALLOC_CTX *mem_ctx, struct files_struct **fsp,
				     DATA_BLOB *new_cookie)
{
	struct ul_db *db = ul_handle_db(handle);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	struct ul_fsp_ext *ext = NULL;
	char client[48];
	size_t rebound = 0;
	unilock_status st;
	NTSTATUS status;

	status = SMB_VFS_NEXT_DURABLE_RECONNECT(handle, smb1req, op, old_cookie, mem_ctx, fsp,
						new_cookie);
	if (!NT_STATUS_IS_OK(status) || db == NULL || *fsp == NULL || op->global == NULL) {
		return status;
	}
	ul_dh_client(op->global->open_persistent_id, client, sizeof(client));
	/* Registering again cancels the TTL release the old process's exit started. */
	st = unilock_client_register(db->ul, client, "smb", NULL, ul_dh_ttl_ms(op->global));
	if (st != UNILOCK_OK) {
		DBG_WARNING("unilock_client_register(%s): %s\n", client, unilock_strerror(st));
	}
	ul_make_file_id(&(*fsp)->file_id, ufid);
	become_root();
	st = unilock_rebind_open(db->ul, ufid, sizeof(ufid), client, op->global->open_persistent_id,
				 &rebound);
	unbecome_root();
	DBG_NOTICE("%s: durable handle reconnected: %zu unilock owners/opens of %s rebound to this "
		   "process (%s)\n", fsp_str_dbg(*fsp), rebound, client, unilock_strerror(st));
	ext = VFS_FETCH_FSP_EXTENSION(handle, *fsp);
	if (ext == NULL) {
		ext = VFS_ADD_FSP_EXTENSION(handle, *fsp, struct ul_fsp_ext, ul_fsp_ext_free);
	}
	if (ext != NULL) {
		snprintf(ext->dh_client, sizeof(ext->dh_client), "%s", client);
		ext->held = 1;	/* unknown: let the close-path sweep look */
	}
	if (ext != NULL && ext->uo == NULL) {
		/* The open and its lease or oplock, as smbd restored them. */
		struct files_struct *f = *fsp;
		struct unilock_open_result res;
		bool breaking = false;
		uint32_t granted = ul_smbd_state(f, &breaking);
		uint32_t kind = f->oplock_type == LEASE_OPLOCK ? UNILOCK_LEASE_KIND_LEASE :
				granted ? UNILOCK_LEASE_KIND_OPLOCK : UNILOCK_LEASE_KIND_NONE;
		struct ul_open *o = NULL;

		st = ul_api_file_open(db, client, ufid, op->global->open_persistent_id, kind,
				      UNILOCK_OPEN_WRITE, granted,
				      kind == UNILOCK_LEASE_KIND_LEASE ? &f->lease->lease : NULL,
				      0, NULL, &res);
		o = st == UNILOCK_OK ? talloc_zero(db, struct ul_open) : NULL;
		if (o != NULL) {
			o->db = db;
			o->fsp = f;
			memcpy(o->ufid, ufid, sizeof(o->ufid));
			snprintf(o->client, sizeof(o->client), "%s", client);
			o->open_id = op->global->open_persistent_id;
			o->kind = kind;
			memcpy(o->key, res.lease_key, sizeof(o->key));
			o->granted = granted;
			DLIST_ADD(db->opens, o);
			talloc_set_destructor(o, ul_open_destructor);
			ext->uo = o;
		}
		DBG_DEBUG("%s: reconnected open recorded (0x%x): %s\n", fsp_str_dbg(f), granted,
			  unilock_strerror(st));
	}
	return status;
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
	ul_lock_owner(handle, db, fsp, &smblctx, plock->fnum, &owner);
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
		ext = VFS_ADD_FSP_EXTENSION(handle, fsp, struct ul_fsp_ext, ul_fsp_ext_free);
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
	ul_lock_owner(handle, db, fsp, &smblctx, plock->fnum, &owner);
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

/*
 * The first write through an open breaks other protocols' R leases and read delegations (the open
 * itself only took W away from them): unilock_break_trigger(WRITE), once per open. Later ones
 * cannot meet a new foreign R holder: unilock grants no delegation or R setlease next to an SMB
 * open for write. smbd asks strict_lock_check before every write (and skips it only for an open
 * with a W lease, which no foreign holder can share). SMB holders are broken by smbd itself as
 * well; the second break finds the lease already lower and is skipped.
 */
static void ul_first_write(struct vfs_handle_struct *handle, struct ul_db *db,
			   struct files_struct *fsp)
{
	struct ul_fsp_ext *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	struct ul_open *o = ext != NULL ? ext->uo : NULL;
	unilock_status st;

	if (o == NULL || ext->wrote) {
		return;
	}
	ext->wrote = true;
	become_root();
	st = unilock_break_trigger(db->ul, o->ufid, sizeof(o->ufid), o->client,
				   o->kind == UNILOCK_LEASE_KIND_NONE ? NULL : o->key,
				   UNILOCK_TRIGGER_WRITE, NULL, NULL);
	unbecome_root();
	if (st != UNILOCK_OK) {
		DBG_DEBUG("%s: first write: unilock_break_trigger: %s\n", fsp_str_dbg(fsp),
			  unilock_strerror(st));
	}
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

	if (db != NULL && plock->lock_type == WRITE_LOCK) {
		ul_first_write(handle, db, fsp);
	}
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
	ul_lock_owner(handle, db, fsp, &smblctx, plock->fnum, &owner);
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

/* ---------------------------------------------------------------------------------------------
 * Leases and oplocks.
 *
 * Every unilock call of this part goes through the ul_api_* helpers below (the open request and
 * result layouts, the ack), so the coming API changes (unilock_open_req_init, open_id in break
 * events, UNILOCK_OPEN_RETRY, NULL file id on ack) touch only them.
 *
 * The calls that may wake another process (an open that starts a break, an ack that ends one, a
 * close) run as root: every process's wake-up socket was made by root inside unilock_open, and smbd
 * otherwise runs as the SMB user, whose wake-ups would wait for the once-a-second mailbox check.
 * --------------------------------------------------------------------------------------------- */

static unilock_status ul_api_file_open(struct ul_db *db, const char *client,
				       const uint8_t *ufid, uint64_t open_id,
				       uint32_t kind, uint32_t flags, uint32_t requested,
				       const struct smb2_lease *lease, uint64_t file_size,
				       const struct unilock_wait *wait, struct unilock_open_result *out)
{
	struct unilock_open_req req;
	unilock_status st;

	unilock_open_req_init(&req);
	req.lease_kind = kind;
	req.flags = flags;
	req.requested = requested;
	req.file_size = file_size;
	if (lease != NULL) {
		req.lease_version = lease->lease_version >= 2 ? 2 : 1;
		memcpy(req.lease_key, &lease->lease_key, sizeof(req.lease_key));
		req.epoch = lease->lease_epoch;
		if (lease->lease_flags & SMB2_LEASE_FLAG_PARENT_LEASE_KEY_SET) {
			req.flags |= UNILOCK_OPEN_PARENT_KEY;
			memcpy(req.parent_lease_key, &lease->parent_lease_key, sizeof(req.parent_lease_key));
		}
	}
	memset(out, 0, sizeof(*out));
	become_root();
	st = unilock_file_open(db->ul, ufid, UNILOCK_FILE_ID_CANONICAL_LEN, client, open_id,
			       &req, wait, out);
	unbecome_root();
	return st;
}

static void ul_api_file_close(struct ul_db *db, const char *client, const uint8_t *ufid,
			      uint64_t open_id)
{
	unilock_status st;

	become_root();
	st = unilock_file_close(db->ul, ufid, UNILOCK_FILE_ID_CANONICAL_LEN, client, open_id);
	unbecome_root();
	DBG_DEBUG("unilock_file_close(%ju): %s\n", (uintmax_t)open_id, unilock_strerror(st));
}

static unilock_status ul_api_lease_ack(struct ul_db *db, const char *client, const uint8_t *ufid,
				       const uint8_t *key, uint32_t state)
{
	unilock_status st;

	become_root();
	st = unilock_lease_ack(db->ul, ufid, UNILOCK_FILE_ID_CANONICAL_LEN, client, key, state);
	unbecome_root();
	return st;
}

/* The open a break event is for: same file and lease key (issue 13 adds ev->open_id). */
static struct ul_open *ul_find_open(struct ul_db *db, const struct unilock_event *ev)
{
	struct ul_open *o = NULL;

	if (ev->file_id == NULL || ev->file_id_len != UNILOCK_FILE_ID_CANONICAL_LEN) {
		return NULL;
	}
	for (o = db->opens; o != NULL; o = o->next) {
		if (memcmp(o->ufid, ev->file_id, sizeof(o->ufid)) == 0 &&
		    memcmp(o->key, ev->lease_key, sizeof(o->key)) == 0) {
			return o;
		}
	}
	return NULL;
}

/* What smbd holds for the open now, as R|H|W bits, and whether a break of it is still going on. */
static uint32_t ul_smbd_state(struct files_struct *fsp, bool *breaking)
{
	if (fsp->oplock_type == LEASE_OPLOCK && fsp->lease != NULL) {
		*breaking = (fsp->lease->lease.lease_flags & SMB2_LEASE_FLAG_BREAK_IN_PROGRESS) != 0;
		return fsp->lease->lease.lease_state;
	}
	*breaking = fsp->sent_oplock_break != NO_BREAK_SENT;
	return fsp_lease_type(fsp);
}

/*
 * Learning the ack. smbd handles the client's LEASE_BREAK_ACK / oplock break ack itself
 * (downgrade_lease, oplock release) and tells no module; what changes is the fsp: its lease state
 * and BREAK_IN_PROGRESS flag (fsps_lease_update) or oplock type and sent_oplock_break. A short
 * timer, armed only while a break unilock raised is outstanding, reads them: no smbd internals
 * beyond the fsp, nothing runs when no break is in flight, and it also catches smbd's own 35 s
 * timeout (the lease then drops to the required state) and a break smbd found unnecessary.
 */
#define UL_ACK_POLL_MS 5
static void ul_ack_poll(struct tevent_context *ev, struct tevent_timer *te,
			struct timeval now, void *private_data)
{
	struct ul_open *o = private_data;
	bool breaking = false;
	uint32_t state;
	unilock_status st;

	o->ack_te = NULL;
	state = ul_smbd_state(o->fsp, &breaking);
	if (breaking || (state & ~o->break_to) != 0) {
		/* Not acknowledged yet (or smbd has not sent the break yet). */
		if (++o->ack_polls > (OPLOCK_BREAK_TIMEOUT + 5) * 1000 / UL_ACK_POLL_MS) {
			DBG_NOTICE("%s: gave up waiting for the ack\n", fsp_str_dbg(o->fsp));
			return;
		}
		o->ack_te = tevent_add_timer(ev, o, timeval_current_ofs_msec(
						     o->ack_polls < 20 ? 1 : UL_ACK_POLL_MS),
					     ul_ack_poll, o);
		return;
	}
	o->granted = state;
	st = ul_api_lease_ack(o->db, o->client, o->ufid, o->key, state);
	DBG_DEBUG("%s: break to 0x%x acknowledged at 0x%x: unilock %s\n", fsp_str_dbg(o->fsp),
		  o->break_to, state, unilock_strerror(st));
}

/*
 * "Break while breaking": a trigger that needed a lower state came while the lease was breaking
 * (e.g. an overwriting open deferred by the module, smb2.lease.v2_breaking3); after the client's ack
 * unilock breaks the lease one step further with the same epoch. smbd itself does this inside
 * downgrade_lease() (breaking_to_required lowered by the deferred open, the next step sent with the
 * same epoch), but it never saw the deferred open, and a MSG_SMB_BREAK_REQUEST now would start a new
 * break with epoch + 1. So the module does what downgrade_lease does: the lease record goes on
 * breaking to the new state, same epoch, and the break goes to the client (send_break_message_smb2).
 */
static bool ul_break_continues(struct ul_db *db, struct ul_open *o, const struct unilock_event *ev)
{
	struct files_struct *fsp = o->fsp;
	struct share_mode_lock *lck = NULL;
	struct ul_open *x = NULL;
	uint32_t cur, to = ev->break_to;
	bool breaking = false, ack = ev->ack_required != 0;
	NTSTATUS status;

	if (!o->have_break_epoch || ev->epoch != o->break_epoch ||
	    fsp->oplock_type != LEASE_OPLOCK || fsp->lease == NULL) {
		return false;
	}
	cur = ul_smbd_state(fsp, &breaking);
	if (breaking || (cur & ~to) == 0) {
		return false;	/* smbd is still at it, or already there: the normal path */
	}
	lck = get_existing_share_mode_lock(talloc_tos(), fsp->file_id);
	if (lck == NULL) {
		return false;
	}
	status = leases_db_set(fsp_client_guid(fsp), &fsp->lease->lease.lease_key,
			       ack ? cur : to, ack, ack ? to : 0, ack ? to : 0,
			       fsp->lease->lease.lease_version, fsp->lease->lease.lease_epoch);
	if (!NT_STATUS_IS_OK(status)) {
		TALLOC_FREE(lck);
		return false;
	}
	for (x = db->opens; x != NULL; x = x->next) {
		if (x->fsp != NULL && memcmp(x->key, o->key, sizeof(x->key)) == 0 &&
		    memcmp(x->ufid, o->ufid, sizeof(x->ufid)) == 0) {
			fsp_lease_update(x->fsp);
		}
	}
	TALLOC_FREE(lck);
	send_break_message_smb2(fsp, cur, to);
	DBG_DEBUG("%s: unilock break continues 0x%x -> 0x%x, same epoch\n", fsp_str_dbg(fsp), cur, to);
	return true;
}

/*
 * A break unilock raised (an NFS write or open, another smbd, any unilock user): delivered into
 * smbd's own machinery, MSG_SMB_BREAK_REQUEST to this very process, which process_oplock_break_message
 * handles for leases (breaking-to state, epoch, smbd_smb2_send_lease_break, its 35 s timeout) as well
 * as oplocks, exactly as when another smbd asks for a break.
 */
static void ul_lease_break(struct ul_db *db, const struct unilock_event *ev)
{
	struct ul_open *o = ul_find_open(db, ev);
	struct share_mode_entry e = { 0 };
	NTSTATUS status;

	if (o == NULL) {
		DBG_DEBUG("lease break for an open this process no longer has\n");
		return;
	}
	if (ul_break_continues(db, o, ev)) {
		goto armed;
	}
	e.pid = messaging_server_id(global_messaging_context());
	e.share_file_id = fh_get_gen_id(o->fsp->fh);
	status = send_break_message(global_messaging_context(), &o->fsp->file_id, &e,
				    (uint16_t)ev->break_to);
	DBG_DEBUG("%s: unilock break 0x%x -> 0x%x%s: %s\n", fsp_str_dbg(o->fsp), ev->lease_state,
		  ev->break_to, ev->ack_required ? " (ack required)" : "", nt_errstr(status));
armed:
	o->have_break_epoch = true;
	o->break_epoch = ev->epoch;
	if (!ev->ack_required) {
		return;
	}
	o->break_to = ev->break_to;
	o->ack_polls = 0;
	TALLOC_FREE(o->ack_te);
	o->ack_te = tevent_add_timer(global_event_context(), o, timeval_current_ofs_msec(1),
				     ul_ack_poll, o);
}

static void ul_defer_retry(struct ul_defer *d, const char *why)
{
	if (d->scheduled) {
		return;
	}
	d->scheduled = true;
	DBG_DEBUG("re-running deferred create mid %ju: %s\n", (uintmax_t)d->mid, why);
	schedule_deferred_open_message_smb(d->xconn, d->mid);
}

static void ul_breaks_done(struct ul_db *db, const struct unilock_event *ev)
{
	struct ul_defer *d = NULL;

	for (d = db->defers; d != NULL; d = d->next) {
		if (d->request_id == ev->request_id) {
			ul_defer_retry(d, "breaks done");
			return;
		}
	}
}

static void ul_defer_timeout(struct tevent_context *ev, struct tevent_timer *te,
			     struct timeval now, void *private_data)
{
	struct ul_defer *d = private_data;

	d->te = NULL;
	ul_defer_retry(d, "timeout");
}

static int ul_defer_destructor(struct ul_defer *d)
{
	DLIST_REMOVE(d->db->defers, d);
	return 0;
}

static int ul_open_destructor(struct ul_open *o)
{
	DLIST_REMOVE(o->db->opens, o);
	return 0;
}

/*
 * Defers the CREATE as smbd's defer_open() does for its own breaks: a deferred open record on the
 * request (smb2_create.c answers STATUS_PENDING and waits), re-run on UNILOCK_EVENT_BREAKS_DONE or,
 * like smbd, after 2 x OPLOCK_BREAK_TIMEOUT.
 */
static bool ul_defer_open(struct ul_db *db, struct smb_request *req, const struct file_id *id,
			  uint64_t request_id)
{
	struct deferred_open_record *rec = NULL;
	struct ul_defer *d = NULL;
	struct timeval timeout = timeval_set(OPLOCK_BREAK_TIMEOUT * 2, 0);

	rec = talloc_zero(NULL, struct deferred_open_record);
	if (rec == NULL) {
		return false;
	}
	rec->xconn = req->xconn;
	rec->mid = req->mid;
	d = talloc_zero(rec, struct ul_defer);
	if (d == NULL) {
		TALLOC_FREE(rec);
		return false;
	}
	d->db = db;
	d->xconn = req->xconn;
	d->mid = req->mid;
	d->request_id = request_id;
	d->te = tevent_add_timer(global_event_context(), d, timeval_current_ofs(timeout.tv_sec, 0),
				 ul_defer_timeout, d);
	DLIST_ADD(db->defers, d);
	talloc_set_destructor(d, ul_defer_destructor);
	if (!push_deferred_open_message_smb(req, timeout, *id, rec)) {
		TALLOC_FREE(rec);
		return false;
	}
	return true;
}

static uint32_t ul_oplock_state(uint32_t oplock_request)
{
	switch (oplock_request & ~SAMBA_PRIVATE_OPLOCK_MASK) {
	case BATCH_OPLOCK:
		return UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H;
	case EXCLUSIVE_OPLOCK:
		return UNILOCK_LEASE_R | UNILOCK_LEASE_W;
	case LEVEL_II_OPLOCK:
		return UNILOCK_LEASE_R;
	default:
		return 0;
	}
}

static uint32_t ul_state_oplock(uint32_t state)
{
	if ((state & (UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H)) ==
	    (UNILOCK_LEASE_R | UNILOCK_LEASE_W | UNILOCK_LEASE_H)) {
		return BATCH_OPLOCK;
	}
	if ((state & (UNILOCK_LEASE_R | UNILOCK_LEASE_W)) == (UNILOCK_LEASE_R | UNILOCK_LEASE_W)) {
		return EXCLUSIVE_OPLOCK;
	}
	if (state & UNILOCK_LEASE_R) {
		return LEVEL_II_OPLOCK;
	}
	return NO_OPLOCK;
}

/* smbd's request_timed_out() (static in open.c): the first attempt was longer ago than limit. */
static bool timeval_expired_after(const struct timeval *first, const struct timeval *limit)
{
	struct timeval end = timeval_sum(first, limit);

	return timeval_expired(&end);
}

/*
 * Would smbd answer this open with a sharing violation against an existing SMB open? smbd checks
 * share modes before it breaks anything, and then breaks only H (smb2.lease.break_twice); asking
 * unilock first would break W instead. So such an open goes straight to smbd, as without the module.
 * share_conflict()/mask_conflict() of source3/smbd/open.c (static there), over the share-mode entries.
 */
struct ul_sharing_state {
	uint32_t access_mask;
	uint32_t share_access;
	bool conflict;
};

static bool ul_mask_conflict(uint32_t new_access, uint32_t existing_access, uint32_t access_mask,
			     uint32_t new_share, uint32_t existing_share, uint32_t share_mask)
{
	return ((new_access & access_mask) && !(existing_share & share_mask)) ||
	       ((existing_access & access_mask) && !(new_share & share_mask));
}

static bool ul_sharing_fn(struct share_mode_entry *e, bool *modified, void *private_data)
{
	struct ul_sharing_state *s = private_data;
	const uint32_t conflicting = SEC_FILE_WRITE_DATA | SEC_FILE_APPEND_DATA | SEC_FILE_READ_DATA |
				     SEC_FILE_EXECUTE | SEC_STD_DELETE;

	if (server_id_is_disconnected(&e->pid) || (e->access_mask & conflicting) == 0 ||
	    (s->access_mask & conflicting) == 0) {
		return false;
	}
	if (ul_mask_conflict(s->access_mask, e->access_mask, SEC_FILE_WRITE_DATA | SEC_FILE_APPEND_DATA,
			     s->share_access, e->share_access, FILE_SHARE_WRITE) ||
	    ul_mask_conflict(s->access_mask, e->access_mask, SEC_FILE_READ_DATA | SEC_FILE_EXECUTE,
			     s->share_access, e->share_access, FILE_SHARE_READ) ||
	    ul_mask_conflict(s->access_mask, e->access_mask, SEC_STD_DELETE,
			     s->share_access, e->share_access, FILE_SHARE_DELETE)) {
		if (!share_entry_stale_pid(e)) {
			s->conflict = true;
			return true;
		}
	}
	return false;
}

/*
 * Also: a pending delete (delete-on-close set by an open still there) makes smbd answer
 * DELETE_PENDING before any break (smb2.oplock.doc): the same, the open goes straight to smbd.
 */
static bool ul_smbd_refuses_first(connection_struct *conn, const struct smb_filename *smb_fname,
				  const struct file_id *fid, uint32_t access_mask,
				  uint32_t share_access)
{
	struct ul_sharing_state s = { .access_mask = access_mask, .share_access = share_access };
	struct share_mode_lock *lck = get_existing_share_mode_lock(talloc_tos(), *fid);
	uint32_t name_hash = 0;

	if (lck == NULL) {
		return false;
	}
	if (NT_STATUS_IS_OK(file_name_hash(conn, smb_fname_str_dbg(smb_fname), &name_hash)) &&
	    is_delete_on_close_set(lck, name_hash)) {
		TALLOC_FREE(lck);
		return true;
	}
	share_mode_forall_entries(lck, ul_sharing_fn, &s);
	TALLOC_FREE(lck);
	return s.conflict;
}

static bool ul_stat_open(uint32_t access_mask)
{
	return (access_mask & ~(SEC_FILE_READ_ATTRIBUTE | SEC_FILE_WRITE_ATTRIBUTE |
				SEC_STD_SYNCHRONIZE | SEC_STD_READ_CONTROL)) == 0;
}

static NTSTATUS ul_create_file(struct vfs_handle_struct *handle,
			       struct smb_request *req,
			       struct files_struct *dirfsp,
			       struct smb_filename *smb_fname,
			       uint32_t access_mask,
			       uint32_t share_access,
			       uint32_t create_disposition,
			       uint32_t create_options,
			       uint32_t file_attributes,
			       uint32_t oplock_request,
			       const struct smb2_lease *lease,
			       uint64_t allocation_size,
			       uint32_t private_flags,
			       struct security_descriptor *sd,
			       struct ea_list *ea_list,
			       files_struct **result,
			       int *pinfo,
			       const struct smb2_create_blobs *in_context_blobs,
			       struct smb2_create_blobs *out_context_blobs)
{
	struct ul_db *db = ul_handle_db(handle);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	struct unilock_open_result res;
	struct smb2_lease capped;
	const struct smb2_lease *pass_lease = lease;
	uint32_t pass_oplock = oplock_request;
	uint32_t kind = UNILOCK_LEASE_KIND_NONE;
	uint32_t requested = 0;
	uint32_t flags = 0;
	uint32_t access_mask_eff = access_mask;
	uint64_t open_id = 0;
	char rec_client[64];
	bool existed, recorded = false;
	struct file_id fid;
	struct ul_open *o = NULL;
	struct ul_fsp_ext *ext = NULL;
	files_struct *fsp = NULL;
	unilock_status st;
	NTSTATUS status;
	bool breaking;

	if (db == NULL || !db->leases || req == NULL || (oplock_request & INTERNAL_OPEN_ONLY) ||
	    is_named_stream(smb_fname)) {
		goto next;
	}
	existed = VALID_STAT(smb_fname->st);
	if (existed && S_ISDIR(smb_fname->st.st_ex_mode)) {
		/* smbd 4.17 grants no directory leases: nothing to gate. */
		goto next;
	}
	if (lease != NULL && (oplock_request & ~SAMBA_PRIVATE_OPLOCK_MASK) == LEASE_OPLOCK) {
		kind = UNILOCK_LEASE_KIND_LEASE;
		requested = lease->lease_state & (UNILOCK_LEASE_R | UNILOCK_LEASE_H | UNILOCK_LEASE_W);
	} else if (ul_oplock_state(oplock_request) != 0) {
		kind = UNILOCK_LEASE_KIND_OPLOCK;
		requested = ul_oplock_state(oplock_request);
	}
	/*
	 * smbd resolves MAXIMUM_ALLOWED and the generic bits only inside the open
	 * (smbd_calculate_access_mask): count them as what they may give.
	 */
	if (access_mask & (SEC_FLAG_MAXIMUM_ALLOWED | SEC_GENERIC_ALL)) {
		access_mask_eff |= SEC_RIGHTS_FILE_ALL;
	}
	if (access_mask & SEC_GENERIC_READ) {
		access_mask_eff |= SEC_RIGHTS_FILE_READ;
	}
	if (access_mask & SEC_GENERIC_WRITE) {
		access_mask_eff |= SEC_RIGHTS_FILE_WRITE;
	}
	if (access_mask & SEC_GENERIC_EXECUTE) {
		access_mask_eff |= SEC_RIGHTS_FILE_EXECUTE;
	}
	if (create_disposition == FILE_OVERWRITE || create_disposition == FILE_OVERWRITE_IF ||
	    create_disposition == FILE_SUPERSEDE) {
		/* Never a stat open (smbd: is_oplock_stat_open() is not asked for these). */
		flags |= UNILOCK_OPEN_OVERWRITE;
	} else if (ul_stat_open(access_mask_eff)) {
		flags |= UNILOCK_OPEN_STAT;
	}
	if (access_mask_eff & (SEC_FILE_WRITE_DATA | SEC_FILE_APPEND_DATA)) {
		flags |= UNILOCK_OPEN_WRITE;
	}
	open_id = (1ULL << 62) | ++db->next_open_id;
	snprintf(rec_client, sizeof(rec_client), "%s", db->client);

	if (existed) {
		/* Ask unilock first: it breaks other protocols' (and processes') leases. */
		struct unilock_wait w = { .token = req->mid, .user_data = NULL, .timeout_ms = 0 };
		struct timeval rtime;
		bool retry = get_deferred_open_message_state(req, &rtime, NULL);

		fid = vfs_file_id_from_sbuf(handle->conn, &smb_fname->st);
		ul_make_file_id(&fid, ufid);
		if (!(flags & UNILOCK_OPEN_STAT) &&
		    ul_smbd_refuses_first(handle->conn, smb_fname, &fid, access_mask_eff,
					  share_access)) {
			DBG_DEBUG("%s: sharing violation or delete pending ahead: smbd answers itself\n",
				  smb_fname_str_dbg(smb_fname));
			goto next;
		}
		/* A deferred open re-run after BREAKS_DONE is a retry (Samba's !first_open_attempt). */
		st = ul_api_file_open(db, db->client, ufid, open_id, kind,
				      flags | (retry ? UNILOCK_OPEN_RETRY : 0), requested, lease,
				      smb_fname->st.st_ex_size, &w, &res);
		DBG_DEBUG("%s: unilock_file_open(kind %u, flags 0x%x, requested 0x%x): %s, "
			  "state 0x%x%s\n", smb_fname_str_dbg(smb_fname), kind, flags, requested,
			  unilock_strerror(st), res.state, res.breaking ? " (breaking)" : "");
		if (st == UNILOCK_PENDING) {
			struct timeval limit = timeval_set(OPLOCK_BREAK_TIMEOUT * 2, 0);

			if (retry && timeval_expired_after(&rtime, &limit)) {
				DBG_NOTICE("%s: breaks still pending after %d s: open without a lease\n",
					   smb_fname_str_dbg(smb_fname), OPLOCK_BREAK_TIMEOUT * 2);
			} else {
				if (retry) {
					remove_deferred_open_message_smb(req->xconn, req->mid);
				}
				if (ul_defer_open(db, req, &fid, res.request_id)) {
					DBG_DEBUG("%s: deferred until unilock's breaks are done\n",
						  smb_fname_str_dbg(smb_fname));
					return NT_STATUS_SHARING_VIOLATION;
				}
			}
			/* Could not defer, or timed out: open as a plain open. */
			kind = UNILOCK_LEASE_KIND_NONE;
			requested = 0;
			st = ul_api_file_open(db, db->client, ufid, open_id, kind, flags & ~UNILOCK_OPEN_WRITE, 0,
					      NULL, smb_fname->st.st_ex_size, NULL, &res);
		}
		if (st == UNILOCK_OK) {
			recorded = true;
			if (kind == UNILOCK_LEASE_KIND_LEASE && res.state != requested) {
				capped = *lease;
				capped.lease_state = res.state;
				pass_lease = &capped;
			} else if (kind == UNILOCK_LEASE_KIND_OPLOCK) {
				pass_oplock = (oplock_request & SAMBA_PRIVATE_OPLOCK_MASK) |
					      ul_state_oplock(res.state);
			}
		} else {
			DBG_WARNING("%s: unilock_file_open: %s (%s): no lease or oplock\n",
				    smb_fname_str_dbg(smb_fname), unilock_strerror(st),
				    unilock_errdetail());
			if (kind == UNILOCK_LEASE_KIND_LEASE) {
				capped = *lease;
				capped.lease_state = 0;
				pass_lease = &capped;
			} else if (kind == UNILOCK_LEASE_KIND_OPLOCK) {
				pass_oplock = oplock_request & SAMBA_PRIVATE_OPLOCK_MASK;
			}
		}
	}

	status = SMB_VFS_NEXT_CREATE_FILE(handle, req, dirfsp, smb_fname, access_mask,
					  share_access, create_disposition, create_options,
					  file_attributes, pass_oplock, pass_lease, allocation_size,
					  private_flags, sd, ea_list, result, pinfo,
					  in_context_blobs, out_context_blobs);
	if (!NT_STATUS_IS_OK(status)) {
		if (recorded) {
			ul_api_file_close(db, rec_client, ufid, open_id);
		}
		return status;
	}
	fsp = *result;
	if (fsp == NULL || fsp->fsp_flags.is_directory || fsp->fh == NULL) {
		if (recorded) {
			ul_api_file_close(db, rec_client, ufid, open_id);
		}
		return status;
	}
	{
		uint32_t granted = ul_smbd_state(fsp, &breaking);

		/*
		 * A lease granted none: smbd keeps the lease (at none), and the key's next open
		 * joins it (smb2.lease.upgrade2: "" then RW gives RW). libunilock records such a lease
		 * at none too (issue 13); the open is still recorded as a stat open, as it was before
		 * the library did (it does not prevent W; its triggers have already run), so the
		 * module's behaviour judged by smbtorture is unchanged.
		 */
		bool none_lease = kind == UNILOCK_LEASE_KIND_LEASE && granted == 0;
		/*
		 * A durable handle request: the open is recorded under the durable identity
		 * (see ul_lock_owner), so its locks find their own lease and it can move to the
		 * process that reconnects it.
		 */
		bool dh = fsp->op != NULL && fsp->op->global != NULL && in_context_blobs != NULL &&
			  (smb2_create_blob_find(in_context_blobs, SMB2_CREATE_TAG_DHNQ) != NULL ||
			   smb2_create_blob_find(in_context_blobs, SMB2_CREATE_TAG_DH2Q) != NULL);

		if (!recorded || none_lease || dh ||
		    (kind != UNILOCK_LEASE_KIND_NONE && granted != res.state)) {
			/*
			 * A new file, or smbd granted less than unilock (its own rules: an SMB
			 * holder it broke, a share without oplocks): record what smbd granted.
			 */
			if (recorded) {
				ul_api_file_close(db, rec_client, ufid, open_id);
			}
			if (none_lease) {
				flags |= UNILOCK_OPEN_STAT;
			}
			if (dh) {
				ul_dh_client(fsp->op->global->open_persistent_id, rec_client,
					     sizeof(rec_client));
				open_id = fsp->op->global->open_persistent_id;
			}
			ul_make_file_id(&fsp->file_id, ufid);
			if (fsp->oplock_type != LEASE_OPLOCK) {
				kind = granted ? UNILOCK_LEASE_KIND_OPLOCK : UNILOCK_LEASE_KIND_NONE;
			}
			st = ul_api_file_open(db, rec_client, ufid, open_id, kind, flags, granted,
					      fsp->oplock_type == LEASE_OPLOCK ? lease : NULL,
					      0, NULL, &res);
			if (st != UNILOCK_OK) {
				DBG_NOTICE("%s: recording the open in unilock: %s\n",
					   fsp_str_dbg(fsp), unilock_strerror(st));
				return status;
			}
		}
		o = talloc_zero(db, struct ul_open);
		if (o == NULL) {
			ul_api_file_close(db, rec_client, ufid, open_id);
			return status;
		}
		o->db = db;
		o->fsp = fsp;
		memcpy(o->ufid, ufid, sizeof(o->ufid));
		o->open_id = open_id;
		snprintf(o->client, sizeof(o->client), "%s", rec_client);
		o->kind = kind;
		memcpy(o->key, res.lease_key, sizeof(o->key));
		o->granted = granted;
		DLIST_ADD(db->opens, o);
		talloc_set_destructor(o, ul_open_destructor);
		ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
		if (ext == NULL) {
			ext = VFS_ADD_FSP_EXTENSION(handle, fsp, struct ul_fsp_ext, ul_fsp_ext_free);
		}
		if (ext == NULL) {
			ul_api_file_close(db, rec_client, ufid, open_id);
			TALLOC_FREE(o);
			return status;
		}
		ext->uo = o;
		DBG_DEBUG("%s: open %ju recorded, unilock granted 0x%x, smbd 0x%x\n",
			  fsp_str_dbg(fsp), (uintmax_t)open_id, res.state, granted);
	}
	return status;

next:
	return SMB_VFS_NEXT_CREATE_FILE(handle, req, dirfsp, smb_fname, access_mask, share_access,
					create_disposition, create_options, file_attributes,
					oplock_request, lease, allocation_size, private_flags, sd,
					ea_list, result, pinfo, in_context_blobs, out_context_blobs);
}

static int ul_close(struct vfs_handle_struct *handle, struct files_struct *fsp)
{
	struct ul_db *db = ul_handle_db(handle);
	struct ul_fsp_ext *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	uint8_t ufid[UNILOCK_FILE_ID_CANONICAL_LEN];
	struct ul_sweep s = { 0 };
	size_t i;

	if (db != NULL && ext != NULL && ext->held > 0 && !ext->dh_disconnecting) {
		/* brl_close_fnum should have unlocked everything; release what is left. */
		ul_make_file_id(&fsp->file_id, ufid);
		s.client = ext->dh_client[0] != '\0' ? ext->dh_client : db->client;
		s.fnum = ul_lock_open_id(handle, fsp, fsp->fnum);
		s.mem_ctx = talloc_tos();
		unilock_list_locks(db->ul, ufid, sizeof(ufid), ul_sweep_visit, &s, NULL);
		for (i = 0; i < s.n; i++) {
			struct unilock_owner o = {
				.client = s.client,
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
	.create_file_fn = ul_create_file,
	.durable_disconnect_fn = ul_durable_disconnect,
	.durable_reconnect_fn = ul_durable_reconnect,
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
