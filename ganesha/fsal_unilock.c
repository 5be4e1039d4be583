/*
 * FSAL_UNILOCK: a stackable NFS-Ganesha FSAL that makes unilock the authority for NFSv4 (and NLM)
 * byte-range locks and for delegations, on the same shared database as Samba's vfs_unilock.
 *
 * Built for NFS-Ganesha 4.3 (FSAL API 11.0, Debian bookworm's ganesha.nfsd); see ganesha/build.sh.
 *
 *   UNILOCK { Db_Path = /var/lib/unilock/unilock.db; }       # once, at the top level
 *   EXPORT { ...  FSAL { Name = UNILOCK;  FSAL { Name = VFS; } } }
 *
 * Layout: the stacking itself (an export and an object handle wrapping the sub-FSAL's, every call
 * passed down) is Ganesha's own FSAL_NULL template, compiled by build.sh from the Debian source of
 * the installed Ganesha (export.c, handle.c, file.c, xattrs.c of FSAL_NULL); this file is the module
 * (it replaces FSAL_NULL's main.c: registration as "UNILOCK", the UNILOCK config block) and
 * overrides the calls unilock owns:
 *
 *   lock_op2   LOCKT/LOCK/LOCKB/UNLOCK/CANCEL through unilock, POSIX flavour. The sub-FSAL's kernel
 *              locks are not taken: unilock alone gives the verdict. Ganesha's SAL has already
 *              resolved conflicts between its own clients; unilock adds the ones from outside (SMB
 *              clients of smbd with vfs_unilock, other NFS servers, anything on the database).
 *              A conflict, for LOCKT as for LOCK, is ERR_FSAL_DELAY (the SAL's "conflict") with
 *              the holder's range and type filled in. LOCKB (NLM blocking locks; NFSv4 clients poll) queues in unilock and
 *              is granted later by a lock_grant up-call.
 *   lease_op2  delegations as unilock delegations (UNILOCK_LEASE_KIND_DELEGATION); a break from
 *              unilock (another protocol's conflicting open, write or lock) becomes a delegrecall
 *              up-call; DELEGRETURN gives the delegation back.
 *   close2     a lock state that goes away releases what unilock still holds for its owner.
 *   write2     an NFS write is a unilock break trigger (UNILOCK_TRIGGER_WRITE): other clients' R
 *              leases go at once; a W lease (an SMB client caching writes) must be acknowledged
 *              first, meanwhile the write answers NFS4ERR_DELAY and the client retries.
 *   fs_supports  asynchronous blocking locks and read delegations are supported.
 *
 * Owners: client = "nfs4:" + the client's co_ownerid (the nfs_client_id4 id string, stable over a
 * server restart, so a reclaim finds its lock), printable bytes as they are and others as %XX,
 * hashed when longer than fits; owner bytes = the lock-owner's owner bytes. NLM owners: client =
 * "nlm:" + caller name, owner = svid (4 bytes, big endian) + the owner handle. File =
 * unilock_file_id_make(st_dev, st_ino, 0) of the backing file: the bytes vfs_unilock uses.
 *
 * One unilock handle per ganesha.nfsd process (shared mode, opened at the first export), events on a
 * thread of this FSAL (UNILOCK_EVENTS_LOOP on the handle's event descriptor).
 *
 * Configuration block UNILOCK:
 *   Db_Path       path of the shared database (required)
 *   Grace_Ms      grace period after a whole-server restart, ms (default 0: none; a pre-restart
 *                 grace found at open is ended at once, as vfs_unilock does by default)
 *   Delegations   grant read delegations through unilock (default true)
 *   Fsal_Grace    unilock, not Ganesha, decides grace for LOCK (fso_grace_method): during unilock's
 *                 grace period (one for every protocol on the database, SPEC section 5) a new lock
 *                 is NFS4ERR_GRACE and a reclaim (LOCK with reclaim set) is a unilock reclaim,
 *                 granted only for a lock the owner held before the restart (default false)
 */

#include "config.h"

#include "fsal.h"
#include "fsal_up.h"
#include "fsal_convert.h"
#include "FSAL/fsal_init.h"
#include "FSAL/fsal_commonlib.h"
#include "FSAL/fsal_localfs.h"
#include "gsh_config.h"
#include "config_parsing.h"
#include "sal_data.h"
#include "sal_functions.h"
#include "fridgethr.h"
#include "nullfs_methods.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Both Ganesha's config.h and unilock.h define VERSION; neither is used here. */
#undef VERSION
#include <unilock.h>
#undef VERSION

static const char myname[] = "UNILOCK";

/* The stacking code (FSAL_NULL's export.c and handle.c) refers to this one module object. */
struct null_fsal_module NULLFS = {
	.module = {
		.fs_info = {
			.maxfilesize = UINT64_MAX,
			.maxlink = _POSIX_LINK_MAX,
			.maxnamelen = 1024,
			.maxpathlen = 1024,
			.no_trunc = true,
			.chown_restricted = true,
			.case_insensitive = false,
			.case_preserving = true,
			.link_support = true,
			.symlink_support = true,
			.lock_support = true,
			.lock_support_async_block = true,
			.named_attr = true,
			.unique_handles = true,
			.acl_support = FSAL_ACLSUPPORT_ALLOW,
			.cansettime = true,
			.homogenous = true,
			.supported_attrs = ALL_ATTRIBUTES,
			.maxread = FSAL_MAXIOSIZE,
			.maxwrite = FSAL_MAXIOSIZE,
			.umask = 0,
			.auth_exportpath_xdev = false,
			.link_supports_permission_checks = true,
			.expire_time_parent = -1,
		}
	}
};

/* ---- configuration -------------------------------------------------------------------------- */

struct ul_params {
	char *db_path;
	uint32_t grace_ms;
	bool delegations;
	bool fsal_grace;
};

static struct ul_params ul_conf;

static struct config_item ul_items[] = {
	CONF_ITEM_PATH("Db_Path", 1, MAXPATHLEN, NULL, ul_params, db_path),
	CONF_ITEM_UI32("Grace_Ms", 0, UINT32_MAX, 0, ul_params, grace_ms),
	CONF_ITEM_BOOL("Delegations", true, ul_params, delegations),
	CONF_ITEM_BOOL("Fsal_Grace", false, ul_params, fsal_grace),
	CONFIG_EOL
};

static struct config_block ul_block = {
	.dbus_interface_name = "org.ganesha.nfsd.config.fsal.unilock",
	.blk_desc.name = "UNILOCK",
	.blk_desc.type = CONFIG_BLOCK,
	.blk_desc.u.blk.init = noop_conf_init,
	.blk_desc.u.blk.params = ul_items,
	.blk_desc.u.blk.commit = noop_conf_commit
};

/* ---- the unilock handle and its event thread -------------------------------------------------- */

static pthread_mutex_t ul_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct unilock *ul;
static pthread_t ul_thread;
static int ul_stop_pipe[2] = { -1, -1 };

/* A queued blocking lock (LOCKB): everything the lock_grant up-call needs. */
struct ul_waiter {
	struct ul_waiter *next;
	uint64_t request_id;
	const struct fsal_up_vector *up_ops;
	state_owner_t *owner;		/* alive while the SAL keeps its blocked lock entry */
	fsal_lock_param_t lock;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t obuf[UNILOCK_OWNER_MAX];	/* the unilock owner bytes */
	size_t olen;
	size_t key_len;
	char key[];
};

/* A delegation granted through unilock: what a recall needs. */
struct ul_deleg {
	struct ul_deleg *next;
	const struct fsal_up_vector *up_ops;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t lease_key[16];
	uint64_t open_id;
	size_t key_len;
	char key[];
};

static struct ul_waiter *ul_waiters;	/* under ul_mtx */
static struct ul_deleg *ul_delegs;	/* under ul_mtx */
static uint64_t ul_next_open_id = 1;	/* under ul_mtx */

static void ul_log(void *user_data, uint32_t level, const char *message)
{
	switch (level) {
	case UNILOCK_LOG_ERROR:
		LogCrit(COMPONENT_FSAL, "unilock: %s", message);
		break;
	case UNILOCK_LOG_WARN:
		LogWarn(COMPONENT_FSAL, "unilock: %s", message);
		break;
	case UNILOCK_LOG_INFO:
		LogInfo(COMPONENT_FSAL, "unilock: %s", message);
		break;
	default:
		LogDebug(COMPONENT_FSAL, "unilock: %s", message);
		break;
	}
}

/* Undoes a unilock grant the SAL did not take (its blocked lock went away meanwhile). */
static void ul_waiter_undo(struct ul_waiter *w)
{
	struct unilock_owner o = {
		.client = w->client, .owner = w->obuf, .owner_len = w->olen, .open_id = 0,
	};

	unilock_unlock(ul, w->fid, sizeof(w->fid), &o, UNILOCK_POSIX, w->lock.lock_start,
		       w->lock.lock_length == 0 ? UNILOCK_TO_EOF : w->lock.lock_length);
}

static void ul_grant_done(void *arg, state_status_t st)
{
	struct ul_waiter *w = arg;

	if (st != STATE_SUCCESS) {
		LogWarn(COMPONENT_FSAL, "unilock: lock_grant up-call: %s; lock given back",
			state_err_str(st));
		ul_waiter_undo(w);
	}
	gsh_free(w);
}

static void ul_event_lock(const struct unilock_event *ev)
{
	struct ul_waiter **pp, *w = NULL;
	struct gsh_buffdesc key;
	fsal_status_t fst;

	PTHREAD_MUTEX_lock(&ul_mtx);
	for (pp = &ul_waiters; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == ev->user_data) {
			w = *pp;
			*pp = w->next;
			break;
		}
	}
	PTHREAD_MUTEX_unlock(&ul_mtx);
	if (w == NULL)
		return;
	if (ev->status != UNILOCK_OK) {
		LogDebug(COMPONENT_FSAL, "unilock: queued lock ended: %s",
			 unilock_strerror(ev->status));
		gsh_free(w);
		return;
	}
	/* Granted in unilock: tell the SAL (the same owner pointer it gave us). */
	key.addr = w->key;
	key.len = w->key_len;
	fst = up_async_lock_grant(general_fridge, w->up_ops, &key, w->owner, &w->lock,
				  ul_grant_done, w);
	if (FSAL_IS_ERROR(fst)) {
		LogCrit(COMPONENT_FSAL, "unilock: cannot queue lock_grant: %s; lock given back",
			msg_fsal_err(fst.major));
		ul_waiter_undo(w);
		gsh_free(w);
	}
}

static void ul_event_break(const struct unilock_event *ev)
{
	struct ul_deleg *d;
	struct gsh_buffdesc key;
	const struct fsal_up_vector *up_ops = NULL;
	char buf[NFS4_FHSIZE];
	size_t len = 0;
	fsal_status_t fst;

	if (ev->lease_kind != UNILOCK_LEASE_KIND_DELEGATION)
		return;
	PTHREAD_MUTEX_lock(&ul_mtx);
	for (d = ul_delegs; d != NULL; d = d->next) {
		if (memcmp(d->lease_key, ev->lease_key, 16) == 0 &&
		    strcmp(d->client, ev->client) == 0) {
			up_ops = d->up_ops;
			len = d->key_len < sizeof(buf) ? d->key_len : sizeof(buf);
			memcpy(buf, d->key, len);
			break;
		}
	}
	PTHREAD_MUTEX_unlock(&ul_mtx);
	if (up_ops == NULL)
		return;
	LogEvent(COMPONENT_FSAL, "unilock: recalling the delegation of %s (%s)", ev->client,
		 ev->type == UNILOCK_EVENT_LEASE_REVOKED ? "revoked" : "break");
	key.addr = buf;
	key.len = len;
	fst = up_async_delegrecall(general_fridge, up_ops, &key, NULL, NULL);
	if (FSAL_IS_ERROR(fst))
		LogCrit(COMPONENT_FSAL, "unilock: cannot queue delegrecall: %s",
			msg_fsal_err(fst.major));
}

static void ul_event(void *user_data, const struct unilock_event *ev)
{
	switch (ev->type) {
	case UNILOCK_EVENT_LOCK:
		ul_event_lock(ev);
		break;
	case UNILOCK_EVENT_LEASE_BREAK:
	case UNILOCK_EVENT_LEASE_REVOKED:
		ul_event_break(ev);
		break;
	case UNILOCK_EVENT_GRACE_RELEASED:
		LogEvent(COMPONENT_FSAL,
			 "unilock: grace over: %s's unreclaimed state released (%ju locks, %ju leases)",
			 ev->client, (uintmax_t)ev->offset, (uintmax_t)ev->length);
		break;
	default:
		break;
	}
}

static void *ul_event_thread(void *arg)
{
	struct pollfd pfd[2];

	SetNameFunction("unilock_ev");
	pfd[0].fd = unilock_event_fd(ul);
	pfd[0].events = POLLIN;
	pfd[1].fd = ul_stop_pipe[0];
	pfd[1].events = POLLIN;
	for (;;) {
		int64_t t = unilock_next_timeout_ms(ul);
		int timeout = (t < 0 || t > 1000) ? 1000 : (int)t;  /* once a second at least */
		int rc = poll(pfd, 2, timeout);

		if (rc < 0 && errno != EINTR)
			break;
		if (pfd[1].revents != 0)
			break;
		(void)unilock_process_events(ul, NULL);
	}
	return NULL;
}

/* Opens the process's one unilock handle (first export); false when the config is unusable. */
static bool ul_open_once(void)
{
	struct unilock_config cfg;
	struct unilock_grace_info gi = { 0 };
	unilock_status st;
	bool ok = false;

	PTHREAD_MUTEX_lock(&ul_mtx);
	if (ul != NULL) {
		ok = true;
		goto out;
	}
	if (ul_conf.db_path == NULL || ul_conf.db_path[0] == '\0') {
		LogCrit(COMPONENT_FSAL, "FSAL_UNILOCK needs UNILOCK { Db_Path = <path>; }");
		goto out;
	}
	unilock_set_log(ul_log, NULL, isDebug(COMPONENT_FSAL) ? UNILOCK_LOG_DEBUG : UNILOCK_LOG_INFO);
	unilock_config_init(&cfg);
	cfg.flags = UNILOCK_CONFIG_SHARED;
	cfg.event_mode = UNILOCK_EVENTS_LOOP;
	cfg.event_fn = ul_event;
	cfg.event_user_data = NULL;
	cfg.db_path = ul_conf.db_path;
	cfg.durability = UNILOCK_DURABILITY_PROCESS;
	if (ul_conf.grace_ms > 0)
		cfg.grace_period_ms = ul_conf.grace_ms;
	st = unilock_open(&cfg, &ul);
	if (st != UNILOCK_OK) {
		LogCrit(COMPONENT_FSAL, "unilock_open(%s): %s (%s)", ul_conf.db_path,
			unilock_strerror(st), unilock_errdetail());
		ul = NULL;
		goto out;
	}
	if (unilock_grace_status(ul, &gi) == UNILOCK_OK && gi.active) {
		if (ul_conf.grace_ms == 0) {
			LogEvent(COMPONENT_FSAL,
				 "unilock: ending the grace period of %s (Grace_Ms = 0)",
				 ul_conf.db_path);
			unilock_grace_end(ul);
		} else {
			LogEvent(COMPONENT_FSAL,
				 "unilock: grace period of %s: %ju ms, %ju clients expected",
				 ul_conf.db_path, (uintmax_t)gi.remaining_ms,
				 (uintmax_t)gi.expected_clients);
		}
	}
	if (pipe(ul_stop_pipe) != 0 ||
	    pthread_create(&ul_thread, NULL, ul_event_thread, NULL) != 0) {
		LogCrit(COMPONENT_FSAL, "unilock: cannot start the event thread");
		unilock_close(ul);
		ul = NULL;
		goto out;
	}
	LogEvent(COMPONENT_FSAL, "unilock %s: shared database %s", unilock_libversion(),
		 ul_conf.db_path);
	ok = true;
out:
	PTHREAD_MUTEX_unlock(&ul_mtx);
	return ok;
}

/* ---- identities ------------------------------------------------------------------------------ */

static void ul_file_id(struct fsal_obj_handle *obj, uint8_t out[UNILOCK_FILE_ID_CANONICAL_LEN])
{
	struct nullfs_fsal_obj_handle *h =
		container_of(obj, struct nullfs_fsal_obj_handle, obj_handle);
	struct fsal_obj_handle *sub = h->sub_handle;
	uint64_t dev;

	/* FSAL_VFS: fs->dev is the backing file's st_dev, fileid its st_ino. */
	if (sub->fs != NULL)
		dev = makedev(sub->fs->dev.major, sub->fs->dev.minor);
	else
		dev = sub->fsid.major;
	unilock_file_id_make(dev, sub->fileid, 0, out);
}

static uint64_t ul_fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n-- > 0)
		h = (h ^ *p++) * 1099511628211ull;
	return h;
}

/* "<prefix><id>", printable bytes kept, others %XX; hashed if it would not fit. */
static void ul_client_name(const char *prefix, const char *id, size_t len,
			   char out[UNILOCK_CLIENT_MAX + 1])
{
	size_t o = strlen(prefix), i;

	memcpy(out, prefix, o);
	for (i = 0; i < len; i++) {
		unsigned char c = id[i];

		if (o + 4 > UNILOCK_CLIENT_MAX) {
			snprintf(out + strlen(prefix), UNILOCK_CLIENT_MAX + 1 - strlen(prefix),
				 "#%016jx", (uintmax_t)ul_fnv((const uint8_t *)id, len));
			return;
		}
		if (c > 0x20 && c < 0x7f && c != '%')
			out[o++] = c;
		else
			o += sprintf(out + o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* The unilock owner of a SAL owner; owner bytes are written to buf (at least 4 + so_owner_len). */
static bool ul_owner(state_owner_t *so, char client[UNILOCK_CLIENT_MAX + 1], uint8_t *buf,
		     struct unilock_owner *o)
{
	size_t n = 0;

	memset(o, 0, sizeof(*o));
	switch (so->so_type) {
	case STATE_LOCK_OWNER_NFSV4:
	case STATE_OPEN_OWNER_NFSV4:
	case STATE_CLIENTID_OWNER_NFSV4: {
		nfs_client_id_t *cid = so->so_owner.so_nfs4_owner.so_clientrec;

		if (cid != NULL && cid->cid_client_record != NULL)
			ul_client_name("nfs4:", cid->cid_client_record->cr_client_val,
				       cid->cid_client_record->cr_client_val_len, client);
		else
			snprintf(client, UNILOCK_CLIENT_MAX + 1, "nfs4:clientid-%016jx",
				 cid ? (uintmax_t)cid->cid_clientid : 0);
		memcpy(buf, so->so_owner_val, so->so_owner_len);
		n = so->so_owner_len;
		break;
	}
#ifdef _USE_NLM
	case STATE_LOCK_OWNER_NLM: {
		state_nlm_client_t *c = so->so_owner.so_nlm_owner.so_client;
		uint32_t svid = htonl((uint32_t)so->so_owner.so_nlm_owner.so_nlm_svid);

		if (c != NULL && c->slc_nsm_client != NULL)
			ul_client_name("nlm:", c->slc_nsm_client->ssc_nlm_caller_name,
				       c->slc_nsm_client->ssc_nlm_caller_name_len, client);
		else
			strcpy(client, "nlm:unknown");
		memcpy(buf, &svid, 4);
		memcpy(buf + 4, so->so_owner_val, so->so_owner_len);
		n = 4 + so->so_owner_len;
		break;
	}
#endif
	default:
		snprintf(client, UNILOCK_CLIENT_MAX + 1, "ganesha:%p", so);
		break;
	}
	if (n > UNILOCK_OWNER_MAX)
		n = UNILOCK_OWNER_MAX;
	o->client = client;
	o->owner = buf;
	o->owner_len = n;
	return true;
}

/* The client of an NFSv4 state owner (delegations belong to a client). */
static void ul_deleg_client(state_owner_t *so, char client[UNILOCK_CLIENT_MAX + 1])
{
	uint8_t buf[UNILOCK_OWNER_MAX + 4];
	struct unilock_owner o;

	ul_owner(so, client, buf, &o);
}

static fsal_status_t ul_map(unilock_status st)
{
	switch (st) {
	case UNILOCK_OK:
		return fsalstat(ERR_FSAL_NO_ERROR, 0);
	case UNILOCK_E_CONFLICT:
	case UNILOCK_E_BUSY:
		/*
		 * The SAL reads ERR_FSAL_DELAY (fcntl's EAGAIN) as a lock conflict: NFS4ERR_DENIED
		 * with the conflict filled in (ERR_FSAL_LOCKED would be NFS4ERR_LOCKED, an I/O error).
		 * BUSY (a write-caching lease elsewhere is being broken) is a conflict for now too:
		 * the client retries.
		 */
		return fsalstat(ERR_FSAL_DELAY, 0);
	case UNILOCK_E_GRACE:
	case UNILOCK_E_RECLAIM_DENIED:
		return fsalstat(ERR_FSAL_IN_GRACE, 0);
	case UNILOCK_E_DEADLOCK:
		return fsalstat(ERR_FSAL_DEADLOCK, 0);
	case UNILOCK_E_INVALID_RANGE:
		return fsalstat(ERR_FSAL_BAD_RANGE, 0);
	case UNILOCK_E_LIMIT:
		return fsalstat(ERR_FSAL_NOSPC, 0);
	default:
		return fsalstat(ERR_FSAL_SERVERFAULT, 0);
	}
}

static void ul_fill_conflict(const struct unilock_lock_info *h, fsal_lock_param_t *c)
{
	if (c == NULL)
		return;
	c->lock_sle_type = FSAL_POSIX_LOCK;
	c->lock_type = h->type == UNILOCK_EXCLUSIVE ? FSAL_LOCK_W : FSAL_LOCK_R;
	c->lock_start = h->offset;
	/* SAL length 0 = to the end; a Windows lock's length is literal (0 stays a zero-length one). */
	if (h->length == UNILOCK_TO_EOF || (h->length > UINT64_MAX - h->offset))
		c->lock_length = 0;
	else
		c->lock_length = h->length == 0 ? 1 : h->length;
	c->lock_reclaim = false;
}

/* ---- lock_op2 -------------------------------------------------------------------------------- */

static fsal_status_t ul_lock_op2(struct fsal_obj_handle *obj, struct state_t *state,
				 void *p_owner, fsal_lock_op_t op, fsal_lock_param_t *req,
				 fsal_lock_param_t *conflict)
{
	state_owner_t *so = p_owner;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
	char client[UNILOCK_CLIENT_MAX + 1];
	uint8_t obuf[UNILOCK_OWNER_MAX + 4];
	struct unilock_owner owner;
	struct unilock_lock_req lr = { 0 };
	struct unilock_lock_info holder;
	unilock_status st;
	uint64_t len;

	if (ul == NULL || so == NULL)
		return nullfs_lock_op2(obj, state, p_owner, op, req, conflict);
	if (req->lock_sle_type != FSAL_POSIX_LOCK)
		return fsalstat(ERR_FSAL_NOTSUPP, 0);

	ul_file_id(obj, fid);
	ul_owner(so, client, obuf, &owner);
	len = req->lock_length == 0 ? UNILOCK_TO_EOF : req->lock_length;
	lr.flavour = UNILOCK_POSIX;
	lr.type = req->lock_type == FSAL_LOCK_W ? UNILOCK_EXCLUSIVE : UNILOCK_SHARED;
	lr.offset = req->lock_start;
	lr.length = len;

	switch (op) {
	case FSAL_OP_LOCKT:
		st = unilock_test(ul, fid, sizeof(fid), &owner, &lr, &holder);
		if (st == UNILOCK_E_CONFLICT) {
			ul_fill_conflict(&holder, conflict);
			LogDebug(COMPONENT_FSAL, "unilock: LOCKT %s [%ju,+%ju): held by %s",
				 client, (uintmax_t)lr.offset, (uintmax_t)lr.length, holder.client);
		}
		return ul_map(st);

	case FSAL_OP_LOCK:
		/*
		 * A reclaim only means something while unilock's grace period runs (after it, a
		 * reclaim is taken as a new lock: it still obeys every conflict).
		 */
		if (req->lock_reclaim) {
			struct unilock_grace_info gi = { 0 };

			if (unilock_grace_status(ul, &gi) == UNILOCK_OK && gi.active)
				lr.flags = UNILOCK_LOCK_RECLAIM;
		}
		st = unilock_lock(ul, fid, sizeof(fid), &owner, &lr, &holder);
		if (st == UNILOCK_E_CONFLICT) {
			ul_fill_conflict(&holder, conflict);
			LogDebug(COMPONENT_FSAL, "unilock: LOCK %s [%ju,+%ju): held by %s",
				 client, (uintmax_t)lr.offset, (uintmax_t)lr.length, holder.client);
		} else if (st == UNILOCK_E_RECLAIM_DENIED) {
			/*
			 * Nothing of this owner's to reclaim there. The SAL has no status for
			 * NFS4ERR_RECLAIM_BAD: answer a conflict with the range asked for.
			 */
			LogInfo(COMPONENT_FSAL, "unilock: reclaim by %s [%ju,+%ju) denied", client,
				(uintmax_t)lr.offset, (uintmax_t)lr.length);
			if (conflict != NULL) {
				*conflict = *req;
				conflict->lock_reclaim = false;
			}
			return fsalstat(ERR_FSAL_DELAY, 0);
		}
		return ul_map(st);

	case FSAL_OP_LOCKB: {
		struct ul_waiter *w;
		struct gsh_buffdesc key;
		struct unilock_wait wt = { 0 };

		obj->obj_ops->handle_to_key(obj, &key);
		w = gsh_calloc(1, sizeof(*w) + key.len);
		memcpy(w->key, key.addr, key.len);
		w->key_len = key.len;
		w->up_ops = op_ctx->fsal_export->up_ops;
		w->owner = so;
		w->lock = *req;
		memcpy(w->fid, fid, sizeof(fid));
		strcpy(w->client, client);
			wt.token = (uint64_t)(uintptr_t)w;
		wt.user_data = w;
		/* Listed before the call: the grant event may come before it returns. */
		PTHREAD_MUTEX_lock(&ul_mtx);
		w->next = ul_waiters;
		ul_waiters = w;
		st = unilock_lock_blocking(ul, fid, sizeof(fid), &owner, &lr, &wt,
					   &w->request_id, &holder);
		if (st != UNILOCK_PENDING) {
			struct ul_waiter **pp;

			for (pp = &ul_waiters; *pp != NULL; pp = &(*pp)->next) {
				if (*pp == w) {
					*pp = w->next;
					break;
				}
			}
		}
		PTHREAD_MUTEX_unlock(&ul_mtx);
		if (st == UNILOCK_PENDING) {
			ul_fill_conflict(&holder, conflict);
			return fsalstat(ERR_FSAL_BLOCKED, 0);
		}
		gsh_free(w);
		if (st == UNILOCK_E_CONFLICT)
			ul_fill_conflict(&holder, conflict);
		return ul_map(st);
	}

	case FSAL_OP_UNLOCK:
		st = unilock_unlock(ul, fid, sizeof(fid), &owner, UNILOCK_POSIX, lr.offset, lr.length);
		if (st != UNILOCK_OK && st != UNILOCK_E_RANGE_NOT_LOCKED)
			LogWarn(COMPONENT_FSAL, "unilock_unlock: %s", unilock_strerror(st));
		return fsalstat(ERR_FSAL_NO_ERROR, 0);

	case FSAL_OP_CANCEL: {
		struct ul_waiter **pp, *w = NULL;
		uint32_t outcome = 0;

		PTHREAD_MUTEX_lock(&ul_mtx);
		for (pp = &ul_waiters; *pp != NULL; pp = &(*pp)->next) {
			if ((*pp)->owner == so && memcmp((*pp)->fid, fid, sizeof(fid)) == 0 &&
			    (*pp)->lock.lock_start == req->lock_start &&
			    (*pp)->lock.lock_length == req->lock_length) {
				w = *pp;
				*pp = w->next;
				break;
			}
		}
		PTHREAD_MUTEX_unlock(&ul_mtx);
		if (w == NULL)
			return fsalstat(ERR_FSAL_NO_ERROR, 0);
		st = unilock_cancel(ul, w->request_id, &outcome);
		if (st == UNILOCK_OK && outcome == UNILOCK_ALREADY_GRANTED)
			unilock_unlock(ul, fid, sizeof(fid), &owner, UNILOCK_POSIX, lr.offset,
				       lr.length);
		gsh_free(w);
		return fsalstat(ERR_FSAL_NO_ERROR, 0);
	}
	}
	return fsalstat(ERR_FSAL_INVAL, 0);
}

/* An open request with its size and defaults (the struct is size-prefixed). */
static void ul_open_req_init(struct unilock_open_req *req)
{
	unilock_open_req_init(req);
}

/* ---- delegations ----------------------------------------------------------------------------- */

static struct ul_deleg *ul_deleg_take(const uint8_t *fid, const char *client)
{
	struct ul_deleg **pp, *d = NULL;

	PTHREAD_MUTEX_lock(&ul_mtx);
	for (pp = &ul_delegs; *pp != NULL; pp = &(*pp)->next) {
		if (memcmp((*pp)->fid, fid, UNILOCK_FILE_ID_CANONICAL_LEN) == 0 &&
		    strcmp((*pp)->client, client) == 0) {
			d = *pp;
			*pp = d->next;
			break;
		}
	}
	PTHREAD_MUTEX_unlock(&ul_mtx);
	return d;
}

static void ul_deleg_drop(struct ul_deleg *d)
{
	unilock_lease_release(ul, d->fid, sizeof(d->fid), d->client, d->lease_key);
	unilock_file_close(ul, d->fid, sizeof(d->fid), d->client, d->open_id);
	gsh_free(d);
}

static fsal_status_t ul_lease_op2(struct fsal_obj_handle *obj, struct state_t *state,
				  void *p_owner, fsal_deleg_t deleg)
{
	state_owner_t *so = p_owner;
	uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
	char client[UNILOCK_CLIENT_MAX + 1];
	struct unilock_open_req req;
	struct unilock_open_result res = { 0 };
	struct gsh_buffdesc key;
	struct ul_deleg *d;
	unilock_status st;

	ul_open_req_init(&req);

	if (ul == NULL || so == NULL || !ul_conf.delegations)
		return fsalstat(ERR_FSAL_NOTSUPP, 0);
	ul_file_id(obj, fid);
	ul_deleg_client(so, client);

	d = ul_deleg_take(fid, client);
	if (deleg == FSAL_DELEG_NONE) {
		if (d != NULL)
			ul_deleg_drop(d);
		return fsalstat(ERR_FSAL_NO_ERROR, 0);
	}
	if (d != NULL)	/* a second grant for the same client and file: replace */
		ul_deleg_drop(d);

	obj->obj_ops->handle_to_key(obj, &key);
	d = gsh_calloc(1, sizeof(*d) + key.len);
	memcpy(d->key, key.addr, key.len);
	d->key_len = key.len;
	d->up_ops = op_ctx->fsal_export->up_ops;
	memcpy(d->fid, fid, sizeof(fid));
	strcpy(d->client, client);
	PTHREAD_MUTEX_lock(&ul_mtx);
	d->open_id = ul_next_open_id++;
	PTHREAD_MUTEX_unlock(&ul_mtx);

	req.lease_kind = UNILOCK_LEASE_KIND_DELEGATION;
	req.requested = deleg == FSAL_DELEG_WR ? UNILOCK_DELEG_WRITE : UNILOCK_DELEG_READ;
	if (deleg == FSAL_DELEG_WR)
		req.flags |= UNILOCK_OPEN_WRITE;
	req.lease_version = 1;
	req.break_timeout_ms = (uint64_t)nfs_param.nfsv4_param.lease_lifetime * 1000;
	{
		/* unilock grants no R while a byte-range lock (of anyone) starts below the end. */
		struct fsal_attrlist attrs;

		fsal_prepare_attrs(&attrs, ATTR_SIZE);
		if (!FSAL_IS_ERROR(obj->obj_ops->getattrs(obj, &attrs)))
			req.file_size = attrs.filesize;
		fsal_release_attrs(&attrs);
	}
	st = unilock_file_open(ul, fid, sizeof(fid), client, d->open_id, &req, NULL, &res);
	if (st != UNILOCK_OK || (res.state & UNILOCK_LEASE_R) == 0) {
		if (st == UNILOCK_OK)
			unilock_file_close(ul, fid, sizeof(fid), client, d->open_id);
		gsh_free(d);
		LogDebug(COMPONENT_FSAL, "unilock: no delegation for %s: %s", client,
			 st == UNILOCK_OK ? "not granted" : unilock_strerror(st));
		return fsalstat(ERR_FSAL_DELAY, 0);
	}
	memcpy(d->lease_key, res.lease_key, 16);
	PTHREAD_MUTEX_lock(&ul_mtx);
	d->next = ul_delegs;
	ul_delegs = d;
	PTHREAD_MUTEX_unlock(&ul_mtx);
	LogDebug(COMPONENT_FSAL, "unilock: delegation %s granted to %s",
		 deleg == FSAL_DELEG_WR ? "WR" : "RD", client);
	return fsalstat(ERR_FSAL_NO_ERROR, 0);
}

/* ---- close2 ---------------------------------------------------------------------------------- */

static fsal_status_t ul_close2(struct fsal_obj_handle *obj, struct state_t *state)
{
	if (ul != NULL && state != NULL && state->state_type == STATE_TYPE_LOCK &&
	    state->state_owner != NULL) {
		uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
		char client[UNILOCK_CLIENT_MAX + 1];
		uint8_t obuf[UNILOCK_OWNER_MAX + 4];
		struct unilock_owner owner;
		size_t n = 0;

		ul_file_id(obj, fid);
		ul_owner(state->state_owner, client, obuf, &owner);
		unilock_release_open(ul, fid, sizeof(fid), &owner, &n);
		if (n > 0)
			LogDebug(COMPONENT_FSAL, "unilock: %zu locks of %s released at close", n,
				 client);
	}
	return nullfs_close2(obj, state);
}

/* ---- write2: an NFS write breaks other protocols' caching leases ---------------------------------- */

static void ul_write2(struct fsal_obj_handle *obj, bool bypass, fsal_async_cb done_cb,
		      struct fsal_io_arg *write_arg, void *caller_arg)
{
	if (ul != NULL) {
		uint8_t fid[UNILOCK_FILE_ID_CANONICAL_LEN];
		char client[UNILOCK_CLIENT_MAX + 1] = "nfs4:anonymous";
		unilock_status st;

		ul_file_id(obj, fid);
		if (write_arg->state != NULL && write_arg->state->state_owner != NULL)
			ul_deleg_client(write_arg->state->state_owner, client);
		/*
		 * R leases of others go to none at once; a write-caching (W) lease must be flushed
		 * and acknowledged first: unilock says BUSY and the NFS client gets NFS4ERR_DELAY and
		 * retries (NFSv4 has no way to wait here).
		 */
		st = unilock_break_trigger(ul, fid, sizeof(fid), client, NULL,
					   UNILOCK_TRIGGER_WRITE, NULL, NULL);
		if (st == UNILOCK_E_BUSY || st == UNILOCK_PENDING) {
			LogDebug(COMPONENT_FSAL, "unilock: write by %s waits for a lease break",
				 client);
			done_cb(obj, fsalstat(ERR_FSAL_DELAY, 0), write_arg, caller_arg);
			return;
		}
		if (st != UNILOCK_OK)
			LogWarn(COMPONENT_FSAL, "unilock_break_trigger: %s", unilock_strerror(st));
	}
	nullfs_write2(obj, bypass, done_cb, write_arg, caller_arg);
}

/* ---- export ---------------------------------------------------------------------------------- */

static bool (*ul_sub_fs_supports)(struct fsal_export *, fsal_fsinfo_options_t);

static bool ul_fs_supports(struct fsal_export *exp, fsal_fsinfo_options_t option)
{
	switch (option) {
	case fso_lock_support:
	case fso_lock_support_async_block:
		return true;
	case fso_delegations_r:
		return ul_conf.delegations;
	case fso_delegations_w:
		return false;
	case fso_grace_method:
		return ul_conf.fsal_grace;
	default:
		return ul_sub_fs_supports(exp, option);
	}
}

static fsal_status_t ul_create_export(struct fsal_module *fsal_hdl, void *parse_node,
				      struct config_error_type *err_type,
				      const struct fsal_up_vector *up_ops)
{
	fsal_status_t st;

	if (!ul_open_once())
		return fsalstat(ERR_FSAL_INVAL, EINVAL);
	st = nullfs_create_export(fsal_hdl, parse_node, err_type, up_ops);
	if (FSAL_IS_ERROR(st))
		return st;
	/* nullfs_create_export leaves the new export in op_ctx. */
	ul_sub_fs_supports = op_ctx->fsal_export->exp_ops.fs_supports;
	op_ctx->fsal_export->exp_ops.fs_supports = ul_fs_supports;
	return st;
}

/* ---- module ---------------------------------------------------------------------------------- */

static fsal_status_t ul_init_config(struct fsal_module *mod, config_file_t config_struct,
				    struct config_error_type *err_type)
{
	(void)load_config_from_parse(config_struct, &ul_block, &ul_conf, true, err_type);
	if (!config_error_is_harmless(err_type))
		return fsalstat(ERR_FSAL_INVAL, 0);
	display_fsinfo(mod);
	LogEvent(COMPONENT_FSAL,
		 "FSAL_UNILOCK: database %s, grace %u ms (%s decides), delegations %s",
		 ul_conf.db_path ? ul_conf.db_path : "(none)", ul_conf.grace_ms,
		 ul_conf.fsal_grace ? "unilock" : "Ganesha", ul_conf.delegations ? "on" : "off");
	return fsalstat(ERR_FSAL_NO_ERROR, 0);
}

/* Exported so that build.sh can check the module is this one. */
void unilock_fsal_init(void);

MODULE_INIT void unilock_fsal_init(void)
{
	struct fsal_module *myself = &NULLFS.module;

	if (register_fsal(myself, myname, FSAL_MAJOR_VERSION, FSAL_MINOR_VERSION,
			  FSAL_ID_NO_PNFS) != 0) {
		fprintf(stderr, "FSAL_UNILOCK failed to register\n");
		return;
	}
	myself->m_ops.create_export = ul_create_export;
	myself->m_ops.update_export = nullfs_update_export;
	myself->m_ops.init_config = ul_init_config;

	nullfs_handle_ops_init(&NULLFS.handle_ops);
	NULLFS.handle_ops.lock_op2 = ul_lock_op2;
	NULLFS.handle_ops.lease_op2 = ul_lease_op2;
	NULLFS.handle_ops.close2 = ul_close2;
	NULLFS.handle_ops.write2 = ul_write2;
}

MODULE_FINI void unilock_fsal_unload(void)
{
	if (ul != NULL) {
		if (ul_stop_pipe[1] >= 0 && write(ul_stop_pipe[1], "x", 1) == 1)
			pthread_join(ul_thread, NULL);
		unilock_close(ul);
		ul = NULL;
	}
	if (unregister_fsal(&NULLFS.module) != 0)
		fprintf(stderr, "FSAL_UNILOCK failed to unregister\n");
}
