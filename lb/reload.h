/* Hot reload (SPEC.md "Behaviour on the data path", DESIGN.md "Hot reload"): load and
 * validate a new config beside the running one, then swap it in. Pools and backends matched
 * by name keep their objects (counters, health, admin state, open connections); listeners
 * whose address did not change keep their sockets. Restarts the prober over the new
 * pools. The file is read and its host names looked up off the main loop (a slow resolver
 * must not stall signals and lbctl); the swap runs on the main thread. */
#ifndef LB_RELOAD_H
#define LB_RELOAD_H

#include <jansson.h>
#include <stddef.h>

#include "lb/offload.h"

struct config;
struct lb_state;

/* Room for every validation error of a rejected reload. */
#define RELOAD_ERR_MAX 4096

/* One reload, embedded in its caller's object. The caller sets done and free. */
struct reload_job {
	/* On the main thread once the reload is applied (rc 0, changes: the caller decrefs) or
	 * rejected (rc -1, err: every error, joined). The caller owns the job from then on. */
	void (*done)(struct reload_job *rj, int rc, json_t *changes, const char *err);
	/* When lb stops first: free the caller's object, touching nothing else (any thread). */
	void (*free)(struct reload_job *rj);
	/* reload.c's */
	struct offload_job job;
	struct lb_state *st;
	const char *path;
	struct config *cfg;
	char err[RELOAD_ERR_MAX];
};

/* Reload st->config_path into st: read, check and look up its host names on a thread of
 * st->offload (RESOLVE_TIMEOUT_MS at most for the names) while the main loop keeps serving,
 * then swap it in on the main thread and call rj->done. On success what left the running
 * set goes to st's graveyard; on failure nothing running changed. Returns 0; -EBUSY while
 * another reload runs (one at a time); -errno if it cannot start. On error rj is untouched
 * and done is not called. */
int reload_start(struct lb_state *st, struct reload_job *rj);

#endif
