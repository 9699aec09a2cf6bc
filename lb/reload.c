/* Hot reload: load the file on a thread (parse, validate, look up host names), then on the
 * main thread prepare everything else that can fail (bind new listeners, build new pools)
 * without touching the running set, then commit with no way back: update the
 * surviving pools in place, add backends before removing others (a pool is never empty in
 * between), re-point the listeners and hand each worker its new listener set. */
#include "lb/notify.h"
#include "lb/reload.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health/prober.h"
#include "lb/config.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/pool.h"
#include "lb/state.h"
#include "lb/worker.h"

/* How long a reload waits for each worker to take its new listener set; a running worker
 * answers within one loop turn. */
#define WORKER_ACK_MS 2000

/* What prepare builds and commit installs. */
struct plan {
	struct config *cfg;
	struct pool **pools; /* per new cfg pool: the surviving pool or a new one */
	bool *pool_new;
	struct listener **ls; /* per new cfg listener: the surviving listener or a new one */
	bool *ls_keep;
	int *fds; /* nworkers x nlisteners: a fresh socket, -1 or WORKER_FD_KEEP */
};

static const struct cfg_pool *find_cfg_pool(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

static const char *cb_name(const struct cfg_backend *cb)
{
	return cb->name ? cb->name : cb->address;
}

static const struct cfg_backend *find_cfg_backend(const struct cfg_pool *cp, const char *name)
{
	for (size_t i = 0; cp && i < cp->nbackends; i++)
		if (strcmp(cb_name(&cp->backends[i]), name) == 0)
			return &cp->backends[i];
	return NULL;
}

static bool ka_equal(const struct cfg_keepalive *a, const struct cfg_keepalive *b)
{
	return a->on == b->on &&
	       (!a->on ||
		(a->idle_s == b->idle_s && a->interval_s == b->interval_s && a->count == b->count));
}

/* The running listener the new one continues: same name, protocol and address, and the same
 * options set on its sockets (keepalive, which accepted sockets inherit; ipv6only, fixed at
 * bind), else it gets new sockets. */
static struct listener *find_listener(const struct lb_state *st, const struct cfg_listener *lc)
{
	for (size_t i = 0; i < st->nlisteners; i++) {
		const struct cfg_listener *old = atomic_load(&st->listeners[i]->cfg);
		if (strcmp(old->name, lc->name) == 0 && old->protocol == lc->protocol &&
		    addr_equal(&old->addr, &lc->addr) && old->dual_stack == lc->dual_stack &&
		    ka_equal(&old->keepalive, &lc->keepalive))
			return st->listeners[i];
	}
	return NULL;
}

static void note(json_t *changes, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record one change in the reply and log it. */
static void note(json_t *changes, const char *key, const char *fmt, ...)
{
	char buf[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_t *arr = json_object_get(changes, key);
	if (!arr) {
		arr = json_array();
		json_object_set_new(changes, key, arr);
	}
	json_array_append_new(arr, json_string(buf));
	log_info("reload: %s: %s", key, buf);
}

/* ---- prepare: nothing running changes ---- */

static void plan_abort(struct plan *pl, const struct lb_state *st)
{
	size_t nl = pl->cfg ? pl->cfg->nlisteners : 0;

	for (size_t i = 0; pl->pools && i < pl->cfg->npools; i++)
		if (pl->pool_new[i])
			pool_destroy(pl->pools[i]);
	for (size_t i = 0; pl->ls && i < nl; i++)
		if (!pl->ls_keep[i])
			listener_destroy(pl->ls[i]);
	for (size_t i = 0; pl->fds && i < (size_t)st->nworkers * nl; i++)
		if (pl->fds[i] >= 0)
			close(pl->fds[i]);
	free(pl->pools);
	free(pl->pool_new);
	free(pl->ls);
	free(pl->ls_keep);
	free(pl->fds);
	config_free(pl->cfg);
}

/* A running listener of ours overlaps lc: binding it is the hand-over of a reload (a renamed
 * listener, a wildcard beside a specific address, 0.0.0.0:P becoming a dual-stack [::]:P),
 * not a takeover of another process. */
static bool held_by_us(const struct lb_state *st, const struct cfg_listener *lc)
{
	for (size_t i = 0; i < st->nlisteners; i++) {
		const struct cfg_listener *old = atomic_load(&st->listeners[i]->cfg);
		if (listener_cfgs_overlap(old, lc))
			return true;
	}
	return false;
}

static int bind_new(const struct lb_state *st, struct plan *pl, char *err, size_t errlen)
{
	const struct config *cfg = pl->cfg;

	for (size_t j = 0; j < cfg->nlisteners; j++) {
		const struct cfg_listener *lc = &cfg->listeners[j];
		for (int w = 0; w < st->nworkers; w++) {
			int *fd = &pl->fds[(size_t)w * cfg->nlisteners + j];
			const char *why = "";
			if (pl->ls_keep[j]) {
				*fd = WORKER_FD_KEEP;
				continue;
			}
			int rc = 0;
			if (w == 0 && !held_by_us(st, lc))
				rc = listener_check_free(lc, &why);
			if (rc == -EADDRINUSE) {
				snprintf(err, errlen,
					 "listener %s: %s %s is already in use by another process "
					 "(another lb?); not sharing it through SO_REUSEPORT",
					 lc->name, lc->protocol == CFG_PROTO_UDP ? "udp" : "tcp",
					 lc->listen);
				return -1;
			}
			*fd = rc < 0 ? rc : listener_socket(lc, &why);
			if (*fd < 0) {
				snprintf(err, errlen, "listener %s: cannot %s %s: %s", lc->name,
					 why, lc->listen, strerror(-*fd));
				return -1;
			}
		}
	}
	return 0;
}

static int plan_prepare(const struct lb_state *st, struct plan *pl, char *err, size_t errlen)
{
	const struct config *cfg = pl->cfg;
	size_t np = cfg->npools ? cfg->npools : 1, nl = cfg->nlisteners ? cfg->nlisteners : 1;

	pl->pools = calloc(np, sizeof(*pl->pools));
	pl->pool_new = calloc(np, sizeof(*pl->pool_new));
	pl->ls = calloc(nl, sizeof(*pl->ls));
	pl->ls_keep = calloc(nl, sizeof(*pl->ls_keep));
	pl->fds = calloc((size_t)(st->nworkers ? st->nworkers : 1) * nl, sizeof(*pl->fds));
	if (!pl->pools || !pl->pool_new || !pl->ls || !pl->ls_keep || !pl->fds)
		goto nomem;
	for (size_t i = 0; i < (size_t)st->nworkers * cfg->nlisteners; i++)
		pl->fds[i] = -1; /* plan_abort closes what is >= 0 */
	for (size_t i = 0; i < cfg->npools; i++) {
		pl->pools[i] = pool_find(st->pools, st->npools, cfg->pools[i].name);
		if (pl->pools[i])
			continue;
		pl->pools[i] = pool_create(&cfg->pools[i]);
		if (!pl->pools[i])
			goto nomem;
		pl->pool_new[i] = true;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		pl->ls[i] = find_listener(st, &cfg->listeners[i]);
		pl->ls_keep[i] = pl->ls[i] != NULL;
		if (!pl->ls[i] &&
		    listener_create(&cfg->listeners[i], pl->pools[cfg->listeners[i].pool_index],
				    &pl->ls[i]) < 0)
			goto nomem;
	}
	return bind_new(st, pl, err, errlen);
nomem:
	snprintf(err, errlen, "out of memory preparing the new configuration");
	return -1;
}

/* ---- commit: no failure sends us back any more ---- */

static void retire_backend(struct lb_state *st, struct pool *p, struct backend *b)
{
	/* Open connections keep b and finish; only new picks stop (like `remove`). */
	int rc = pool_remove_backend(p, b, &st->qsbr);

	if (rc < 0) {
		log_error("reload: cannot remove backend %s/%s: %s", p->name, b->name,
			  strerror(-rc));
		return;
	}
	state_retire_backend(st, b, false);
}

static void add_backend(struct lb_state *st, struct pool *p, const struct cfg_backend *cb,
			json_t *changes)
{
	struct backend *b;
	int rc = pool_add_backend(p, cb, &st->qsbr, &b);

	if (rc < 0)
		log_error("reload: cannot add backend %s/%s: %s", p->name, cb_name(cb),
			  strerror(-rc));
	else
		note(changes, "added", "%s/%s", p->name, b->name);
}

/* A config value changed between the two files: apply it. Otherwise keep what runs, which
 * may have been set at run time (lbctl weight). */
static void update_int(_Atomic int *v, int old_cfg, int new_cfg, bool known)
{
	if (!known || old_cfg != new_cfg)
		atomic_store(v, new_cfg);
}

static void sync_backends(struct lb_state *st, struct pool *p, const struct cfg_pool *oldcp,
			  const struct cfg_pool *cp, json_t *changes)
{
	/* Add and update first, remove last: the pool never goes empty in between. */
	for (size_t i = 0; i < cp->nbackends; i++) {
		const struct cfg_backend *cb = &cp->backends[i];
		struct backend *b = pool_find_backend(p, cb_name(cb));
		char key[ADDR_STR_MAX];
		if (b && (strcmp(b->address, cb->address) != 0 || b->backup != cb->backup ||
			  strcmp(b->hash_key, pool_hash_key(cb, key, sizeof(key))) != 0)) {
			note(changes, "replaced", "%s/%s", p->name, b->name);
			retire_backend(st, p, b); /* a new address is a new backend */
			b = NULL;
		}
		if (!b) {
			add_backend(st, p, cb, changes);
			continue;
		}
		const struct cfg_backend *ocb = find_cfg_backend(oldcp, b->name);
		update_int(&b->weight, ocb ? ocb->weight : 0, cb->weight, ocb != NULL);
		update_int(&b->max_conns, ocb ? ocb->max_conns : 0, cb->max_conns, ocb != NULL);
		atomic_store(&b->check_port, cb->check_port);
		atomic_store(&b->agent_port, cb->agent_port);
		atomic_store(&b->slow_start_ms,
			     cb->slow_start_ms ? cb->slow_start_ms : cp->slow_start_ms);
	}
	for (size_t i = 0; i < p->nbackends;) {
		struct backend *b = p->backends[i];
		if (find_cfg_backend(cp, b->name)) {
			i++;
			continue;
		}
		note(changes, "removed", "%s/%s", p->name, b->name);
		retire_backend(st, p, b); /* shifts p->backends down */
	}
}

/* Optional payloads differ (NULL = unset; the bytes may hold NULs). */
static bool bytes_differ(const char *a, size_t alen, const char *b, size_t blen)
{
	if (!a || !b)
		return a != b;
	return alen != blen || memcmp(a, b, alen) != 0;
}

static bool health_differs(const struct cfg_health *a, const struct cfg_health *b)
{
	return strcmp(a->type ? a->type : "none", b->type ? b->type : "none") != 0 ||
	       a->interval_ms != b->interval_ms || a->timeout_ms != b->timeout_ms ||
	       a->rise != b->rise || a->fall != b->fall || a->expect_status != b->expect_status ||
	       a->port != b->port || a->role != b->role ||
	       bytes_differ(a->send, a->send_len, b->send, b->send_len) ||
	       bytes_differ(a->expect, a->expect_len, b->expect, b->expect_len) ||
	       bytes_differ(a->path, a->path ? strlen(a->path) : 0, b->path,
			    b->path ? strlen(b->path) : 0) ||
	       bytes_differ(a->user, a->user ? strlen(a->user) : 0, b->user,
			    b->user ? strlen(b->user) : 0);
}

static void commit_pools(struct lb_state *st, struct plan *pl, json_t *changes)
{
	const struct config *old = st->cfg;

	for (size_t i = 0; i < pl->cfg->npools; i++) {
		const struct cfg_pool *cp = &pl->cfg->pools[i];
		struct pool *p = pl->pools[i];
		if (pl->pool_new[i]) {
			note(changes, "pools_added", "%s", p->name);
			continue;
		}
		const struct cfg_pool *ocp = find_cfg_pool(old, p->name);
		if (!ocp ||
		    strcmp(ocp->algorithm ? ocp->algorithm : "",
			   cp->algorithm ? cp->algorithm : "") != 0 ||
		    ocp->retries != cp->retries || ocp->on_down != cp->on_down ||
		    ocp->panic_threshold != cp->panic_threshold ||
		    ocp->queue_max != cp->queue_max || ocp->slow_start_ms != cp->slow_start_ms ||
		    ocp->agent_port != cp->agent_port ||
		    ocp->agent_interval_ms != cp->agent_interval_ms ||
		    ocp->queue_timeout_ms != cp->queue_timeout_ms ||
		    health_differs(&ocp->health, &cp->health))
			note(changes, "pools_changed", "%s", p->name);
		int rc = pool_reconfigure(p, cp, &st->qsbr);
		if (rc < 0)
			log_error("reload: pool %s: cannot apply its settings: %s", p->name,
				  strerror(-rc));
		sync_backends(st, p, ocp, cp, changes);
	}
	for (size_t i = 0; i < st->npools; i++) {
		struct pool *p = st->pools[i];
		if (find_cfg_pool(pl->cfg, p->name))
			continue;
		/* Freed whole once its backends' last connections are gone. */
		note(changes, "pools_removed", "%s", p->name);
		state_retire_pool(st, p);
	}
}

static bool listener_differs(const struct cfg_listener *a, const struct cfg_listener *b)
{
	return strcmp(a->pool, b->pool) != 0 || a->max_conns != b->max_conns ||
	       a->max_conns_per_client != b->max_conns_per_client ||
	       a->per_client_rate != b->per_client_rate || a->accept_proxy != b->accept_proxy ||
	       a->nallow != b->nallow || a->ndeny != b->ndeny ||
	       a->proxy_protocol != b->proxy_protocol ||
	       a->connect_timeout_ms != b->connect_timeout_ms ||
	       a->idle_timeout_ms != b->idle_timeout_ms;
}

static void commit_listeners(struct lb_state *st, struct plan *pl, json_t *changes)
{
	const struct config *cfg = pl->cfg;

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		struct listener *l = pl->ls[i];
		if (pl->ls_keep[i] && listener_differs(atomic_load(&l->cfg), lc))
			note(changes, "listeners_changed", "%s", lc->name);
		else if (!pl->ls_keep[i])
			note(changes, "listeners_added", "%s (%s)", lc->name, lc->listen);
		atomic_store(&l->cfg, lc);
		atomic_store(&l->pool, pl->pools[lc->pool_index]);
	}
	for (int w = 0; w < st->nworkers; w++) {
		int *fds = &pl->fds[(size_t)w * cfg->nlisteners];
		if (worker_set_listeners(st->workers[w], pl->ls, fds, cfg->nlisteners) < 0) {
			log_error("reload: worker %d: out of memory; it keeps its old listeners",
				  w);
			for (size_t j = 0; j < cfg->nlisteners; j++)
				if (fds[j] >= 0)
					close(fds[j]);
			continue;
		}
		for (size_t j = 0; j < cfg->nlisteners; j++)
			fds[j] = -1; /* the worker owns them now */
	}
	for (int w = 0; w < st->nworkers; w++)
		if (!worker_listeners_wait(st->workers[w], WORKER_ACK_MS))
			log_warn("reload: worker %d has not taken its new listeners yet", w);
	for (size_t i = 0; i < st->nlisteners; i++) {
		struct listener *l = st->listeners[i];
		bool kept = false;
		for (size_t j = 0; j < cfg->nlisteners && !kept; j++)
			kept = pl->ls[j] == l;
		if (kept)
			continue;
		/* Freed once its open connections are gone. */
		note(changes, "listeners_removed", "%s", atomic_load(&l->cfg)->name);
		state_retire_listener(st, l);
	}
}

/* Settings only a restart applies. */
static void note_restart_only(const struct config *old, const struct config *cfg, json_t *changes)
{
	if (old->engine != cfg->engine)
		note(changes, "restart_required", "engine");
	if (old->workers != cfg->workers)
		note(changes, "restart_required", "workers");
	if (strcmp(old->control_socket, cfg->control_socket) != 0 ||
	    old->control_mode != cfg->control_mode)
		note(changes, "restart_required", "control");
	if ((old->metrics_listen == NULL) != (cfg->metrics_listen == NULL) ||
	    (old->metrics_listen && strcmp(old->metrics_listen, cfg->metrics_listen) != 0))
		note(changes, "restart_required", "metrics");
	if (old->log_level != cfg->log_level || old->log_format != cfg->log_format ||
	    old->log_access != cfg->log_access)
		note(changes, "restart_required", "log");
	if (old->uid != cfg->uid || old->gid != cfg->gid) /* 0 without "user" */
		note(changes, "restart_required", "user");
}

static void join_errors(const struct cfg_errors *errs, int ret, const char *path, char *err,
			size_t errlen)
{
	size_t off = 0;

	if (!errs->n) {
		snprintf(err, errlen, "%s: %s", path, strerror(-ret));
		log_error("reload rejected: %s", err);
		return;
	}
	err[0] = '\0';
	for (size_t i = 0; i < errs->n && off < errlen; i++) {
		log_error("reload rejected: %s", errs->msg[i]);
		int n = snprintf(err + off, errlen - off, "%s%s", i ? "; " : "", errs->msg[i]);
		off += n > 0 ? (size_t)n : 0;
	}
}

/* Swap the loaded cfg in (main thread; takes cfg). 0 and *changes, or -1 with err. */
static int apply(struct lb_state *st, struct config *cfg, json_t **changes, char *err,
		 size_t errlen)
{
	struct plan pl = {.cfg = cfg};
	json_t *ch = json_object();

	if (!ch) {
		snprintf(err, errlen, "out of memory");
		plan_abort(&pl, st);
		return -1;
	}
	if (plan_prepare(st, &pl, err, errlen) < 0) {
		log_error("reload rejected: %s", err);
		json_decref(ch);
		plan_abort(&pl, st);
		return -1;
	}

	prober_stop(st->prober); /* pool health settings and membership change under it */
	st->prober = NULL;
	note_restart_only(st->cfg, pl.cfg, ch);
	commit_pools(st, &pl, ch);
	commit_listeners(st, &pl, ch);

	free(st->pools);
	free(st->listeners);
	st->pools = pl.pools;
	st->npools = pl.cfg->npools;
	st->listeners = pl.ls;
	st->nlisteners = pl.cfg->nlisteners;
	/* Freed once no retired listener points into it and no worker reads it. */
	state_retire_config(st, st->cfg);
	st->cfg = pl.cfg;
	free(pl.pool_new);
	free(pl.ls_keep);
	free(pl.fds);
	state_prober_sync(st);
	log_info("reload: %s applied (%zu listeners, %zu pools)", st->config_path, st->nlisteners,
		 st->npools);
	*changes = ch;
	return 0;
}

/* The loader thread: parse, validate, look the names up. Touches only the job. */
static void load_work(struct offload_job *j)
{
	struct reload_job *rj = container_of(j, struct reload_job, job);
	struct cfg_errors errs = {0};
	int ret = config_load(rj->path, &rj->cfg, &errs);

	if (ret < 0) {
		rj->cfg = NULL;
		join_errors(&errs, ret, rj->path, rj->err, sizeof(rj->err));
	}
	cfg_errors_free(&errs);
}

static void load_done(struct offload_job *j)
{
	struct reload_job *rj = container_of(j, struct reload_job, job);
	struct lb_state *st = rj->st;
	json_t *changes = NULL;
	int rc = -1;

	st->reloading = false;
	if (rj->cfg)
		rc = apply(st, rj->cfg, &changes, rj->err, sizeof(rj->err));
	rj->cfg = NULL; /* apply took it */
	if (rc == 0)
		notify_send("READY=1\nSTATUS=serving %zu listeners, %zu pools", st->nlisteners,
			    st->npools);
	else
		notify_send("READY=1\nSTATUS=reload rejected; serving the previous config");
	rj->done(rj, rc, changes, rc < 0 ? rj->err : NULL);
}

static void load_drop(struct offload_job *j)
{
	struct reload_job *rj = container_of(j, struct reload_job, job);

	config_free(rj->cfg);
	rj->free(rj);
}

int reload_start(struct lb_state *st, struct reload_job *rj)
{
	if (st->reloading)
		return -EBUSY;
	rj->job.work = load_work;
	rj->job.done = load_done;
	rj->job.drop = load_drop;
	rj->st = st;
	rj->path = st->config_path; /* lives as long as the process (argv) */
	rj->cfg = NULL;
	rj->err[0] = '\0';
	int rc = offload_start(st->offload, &rj->job);
	if (rc < 0)
		return rc;
	st->reloading = true;
	notify_reloading();
	return 0;
}
