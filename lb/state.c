/* What the owner of the running state does to it besides reloading: retire what leaves the
 * running set, close a backend's connections, keep the prober on the running pools. */
#include "lb/state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "health/prober.h"
#include "lb/config.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/pool.h"
#include "lb/worker.h"

/* ---- the kinds of retired objects ---- */

static bool backend_busy(const void *obj, const struct graveyard *g)
{
	(void)g;
	return atomic_load(&((const struct backend *)obj)->active) > 0;
}

static void backend_unreachable(void *obj, void *arg)
{
	/* `remove --force`: close what started while it was still published. */
	if (arg)
		state_kill_backend(arg, obj);
}

static void backend_free(void *obj)
{
	pool_backend_free(obj);
}

static const struct retire_ops backend_ops = {.what = "backend",
					      .busy = backend_busy,
					      .unreachable = backend_unreachable,
					      .free = backend_free};

static bool listener_busy(const void *obj, const struct graveyard *g)
{
	(void)g;
	return atomic_load(&((const struct listener *)obj)->active) > 0;
}

static void listener_free(void *obj)
{
	listener_destroy(obj);
}

static const struct retire_ops listener_ops = {
    .what = "listener", .busy = listener_busy, .free = listener_free};

static bool backend_in_pool(const void *obj, const void *key)
{
	return ((const struct backend *)obj)->pool == key;
}

static bool listener_on_pool(const void *obj, const void *key)
{
	return atomic_load(&((const struct listener *)obj)->pool) == key;
}

/* A removed pool is in use while connections run on its backends, or a retired listener or
 * backend still points at it. */
static bool pool_busy(const void *obj, const struct graveyard *g)
{
	const struct pool *p = obj;

	if (atomic_load(&p->queue.len) > 0)
		return true; /* clients wait in its queue */
	for (size_t i = 0; i < p->nbackends; i++)
		if (atomic_load(&p->backends[i]->active) > 0)
			return true;
	return graveyard_any(g, &backend_ops, backend_in_pool, p) ||
	       graveyard_any(g, &listener_ops, listener_on_pool, p);
}

static void pool_free(void *obj)
{
	pool_destroy(obj);
}

static const struct retire_ops pool_ops = {.what = "pool", .busy = pool_busy, .free = pool_free};

static bool listener_in_config(const void *obj, const void *key)
{
	const struct config *cfg = key;
	const struct cfg_listener *lc = atomic_load(&((const struct listener *)obj)->cfg);

	return lc >= cfg->listeners && lc < cfg->listeners + cfg->nlisteners;
}

/* An old config is in use while a retired listener still points into it (kept listeners were
 * re-pointed at the new config by the reload). */
static bool config_busy(const void *obj, const struct graveyard *g)
{
	return graveyard_any(g, &listener_ops, listener_in_config, obj);
}

static void config_free_cb(void *obj)
{
	config_free(obj);
}

static const struct retire_ops config_ops = {
    .what = "config", .busy = config_busy, .free = config_free_cb};

static void retire_or_leak(struct lb_state *st, void *obj, const struct retire_ops *ops, void *arg)
{
	if (retire(&st->graveyard, obj, ops, arg) < 0)
		log_error("out of memory: a removed %s is never freed", ops->what);
}

int state_build(struct lb_state *st)
{
	const struct config *cfg = st->cfg;

	st->pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*st->pools));
	st->listeners = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*st->listeners));
	if (!st->pools || !st->listeners)
		return -ENOMEM;
	for (; st->npools < cfg->npools; st->npools++) {
		st->pools[st->npools] = pool_create(&cfg->pools[st->npools]);
		if (!st->pools[st->npools])
			return -ENOMEM;
	}
	for (; st->nlisteners < cfg->nlisteners; st->nlisteners++) {
		const struct cfg_listener *lc = &cfg->listeners[st->nlisteners];
		int rc =
		    listener_create(lc, st->pools[lc->pool_index], &st->listeners[st->nlisteners]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void state_retire_pool(struct lb_state *st, struct pool *p)
{
	retire_or_leak(st, p, &pool_ops, NULL);
}

void state_retire_listener(struct lb_state *st, struct listener *l)
{
	retire_or_leak(st, l, &listener_ops, NULL);
}

void state_retire_config(struct lb_state *st, struct config *cfg)
{
	retire_or_leak(st, cfg, &config_ops, NULL);
}

void state_retire_backend(struct lb_state *st, struct backend *b, bool kill)
{
	retire_or_leak(st, b, &backend_ops, kill ? st : NULL);
}

/* ---- operations ---- */

int state_remove_backend(struct lb_state *st, struct backend *b, bool kill)
{
	int rc = pool_remove_backend(b->pool, b, &st->qsbr);

	if (rc < 0)
		return rc;
	if (kill)
		state_kill_backend(st, b);
	/* The prober must let go of b before it can be freed; the graveyard waits longer. */
	state_prober_sync(st);
	state_retire_backend(st, b, kill);
	return 0;
}

void state_kill_backend(struct lb_state *st, struct backend *b)
{
	atomic_fetch_add(&b->kill_gen, 1);
	for (int i = 0; i < st->nworkers; i++)
		if (st->workers[i])
			worker_kick(st->workers[i]);
}

void state_backend_down(struct lb_state *st, struct backend *b)
{
	if (atomic_load(&b->pool->on_down) != CFG_ON_DOWN_SHUTDOWN)
		return;
	log_info("pool %s: backend %s is down: closing its connections (on_down shutdown)",
		 b->pool->name, b->name);
	state_kill_backend(st, b);
}

static void backend_down_hook(void *ctx, struct backend *b)
{
	state_backend_down(ctx, b);
}

int state_prober_start(struct lb_state *st)
{
	const struct prober_hooks hooks = {.backend_down = backend_down_hook, .ctx = st};

	return prober_start(st->pools, st->npools, &st->qsbr, &hooks, &st->prober);
}

int state_prober_sync(struct lb_state *st)
{
	prober_stop(st->prober);
	st->prober = NULL;
	int rc = state_prober_start(st);
	if (rc < 0)
		log_error("cannot restart the health prober: %s", strerror(-rc));
	return rc;
}
