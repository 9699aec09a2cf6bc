/* Hot reload (SPEC.md "Behaviour on the data path", DESIGN.md "Hot reload"): load and
 * validate a new config beside the running one, then swap it in. Pools and backends matched
 * by name keep their objects (counters, health, admin state, open connections); listeners
 * whose address did not change keep their sockets. Also keeps the prober's backend list in
 * step with every membership change. */
#ifndef LB_RELOAD_H
#define LB_RELOAD_H

#include <jansson.h>
#include <stddef.h>

struct backend;
struct config;
struct ctl_env;
struct listener;
struct pool;
struct prober;
struct qsbr;
struct worker;

/* The running set, owned by main.c; main thread only. A reload replaces the arrays; every
 * object it replaces stays alive until reload_env_free, since connections may point at it. */
struct reload_env {
	const char *path;
	struct config **cfgs; /* every config loaded; the last one runs */
	size_t ncfgs;
	struct pool **pools; /* the running pools (the prober and control read this array) */
	size_t npools;
	struct listener **listeners; /* the running listeners */
	size_t nlisteners;
	struct pool **old_pools; /* removed by a reload */
	size_t nold_pools;
	struct listener **old_listeners; /* removed by a reload */
	size_t nold_listeners;
	struct backend **old_backends; /* removed by a reload and owned by nobody else */
	size_t nold_backends;
	struct worker **workers;
	int nworkers;
	struct qsbr *qsbr;
	struct prober *prober;
	struct ctl_env *ctl; /* its cfg and metrics view follow the running set */
};

/* The running config. */
struct config *reload_config(const struct reload_env *re);
/* Reload re->path. On success returns 0 and *changes, a JSON object naming what changed
 * (caller decrefs). On failure returns -1 with every error in err, and the running config
 * is left untouched. */
int reload_run(struct reload_env *re, json_t **changes, char *err, size_t errlen);
/* Backends were added or removed: restart the prober over the running pools so that it
 * checks exactly those (health state lives in the backends and carries over). 0 or -errno
 * (then no prober runs; logged). */
int reload_prober_sync(struct reload_env *re);
/* Free every config, pool, listener and removed backend: only once the workers and the
 * prober are gone and QSBR is destroyed. */
void reload_env_free(struct reload_env *re);

#endif
