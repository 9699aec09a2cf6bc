/* The running state of one lb process: everything main.c starts, in one object (as relayd
 * hangs everything off one struct relayd). Owned by main.c; its fields are written by main.c
 * while starting and stopping and by reload.c while applying a reload, all on the main
 * thread. The control socket and the metrics listener read it on the main thread. Workers
 * and the prober never see it: they get what they need when they are created. */
#ifndef LB_STATE_H
#define LB_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lb/listener.h"
#include "lb/mainloop.h"
#include "lb/qsbr.h"
#include "lb/ready.h"
#include "lb/retire.h"

struct backend;
struct config;
struct engine_ops;
struct listener;
struct offload;
struct pool;
struct prober;
struct worker;

struct lb_state {
	const char *version;
	const char *config_path;	 /* what a reload reads again */
	const struct engine_ops *engine; /* chosen at start-up, for good */
	uint64_t started_ms;		 /* timer_now_ms() at start-up, for the uptime */

	struct config *cfg;  /* the running config */
	struct pool **pools; /* the running pools, one per cfg->pools entry */
	size_t npools;
	struct listener **listeners; /* the running listeners, one per cfg->listeners entry */
	size_t nlisteners;

	struct worker **workers;
	int nworkers;
	struct qsbr qsbr;      /* worker i is reader i */
	struct prober *prober; /* checks exactly the backends of pools[]; NULL when stopped */

	/* Work off the main loop (lb/offload.h): config loads, `lbctl add` name lookups. */
	struct offload *offload;
	bool reloading; /* a reload has started and not finished (one at a time) */

	struct session_budget udp_sessions; /* sized from the fd limit at start-up */
	struct readiness ready;
	/* The main loop's listening sockets: each is paused, not spun on, when lb is out of
	 * fds; written by control.c and metrics.c respectively, counted in the metrics. */
	struct accept_guard control_accept, metrics_accept;
	/* What a reload or `lbctl remove` took out of the running set (configs, pools,
	 * listeners, backends), freed once nothing can reach it any more. */
	struct graveyard graveyard;
};

/* Create the pool and listener objects of st->cfg (no sockets yet). 0 or -errno; on error
 * what was built stays in st for the caller's cleanup. */
int state_build(struct lb_state *st);

/* Hand objects taken out of the running set to the graveyard (freed once unreachable and
 * idle). The caller has unpublished them already. */
void state_retire_pool(struct lb_state *st, struct pool *p);
void state_retire_listener(struct lb_state *st, struct listener *l);
void state_retire_config(struct lb_state *st, struct config *cfg);
/* With kill, b's connections are closed again once no new one can start on it. */
void state_retire_backend(struct lb_state *st, struct backend *b, bool kill);

/* Take b out of its pool for good (`lbctl remove`): unpublish it, close its connections if
 * kill, restart the prober without it and retire it. 0, or -errno with nothing changed. */
int state_remove_backend(struct lb_state *st, struct backend *b, bool kill);
/* Close b's open connections: each worker compares its connections' generation on wake. */
void state_kill_backend(struct lb_state *st, struct backend *b);
/* b was marked down (by the prober, on its thread, or by `lbctl health`): with its pool's
 * on_down "shutdown", close its open connections (state_kill_backend; it reads only the
 * worker array, fixed while the prober runs, and wakes workers through their eventfds). */
void state_backend_down(struct lb_state *st, struct backend *b);
/* Start the prober over the running pools, with state_backend_down as its hook. 0 or
 * -errno. */
int state_prober_start(struct lb_state *st);
/* Restart the prober over the running pools, so that it checks exactly their backends
 * (health state lives in the backends and carries over). 0 or -errno (then no prober runs;
 * logged). */
int state_prober_sync(struct lb_state *st);

#endif
