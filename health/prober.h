/* The prober: one thread with its own epoll that runs every backend's health checks
 * concurrently on non-blocking sockets, applies rise/fall (and the passive checks counted by
 * the data plane), stores the state in the backends' atomics and republishes pool snapshots.
 * The data plane never waits on it. */
#ifndef LB_HEALTH_PROBER_H
#define LB_HEALTH_PROBER_H

#include <stddef.h>
#include <stdint.h>

#include "lb/pool.h"
#include "lb/qsbr.h"

struct prober;

/* What struct backend's hc_last holds. */
enum prober_last { PROBER_LAST_NONE = 0, PROBER_LAST_PASS = 1, PROBER_LAST_FAIL = 2 };

/* A consistent copy of a backend's last check, for the control plane and metrics. */
struct prober_check {
	int last;	     /* enum prober_last */
	uint32_t latency_us; /* connect start to verdict */
	uint64_t checks;     /* checks completed so far */
	char reason[64];     /* why it failed ("connection refused", "status 503"); "" */
};

/* What the prober tells its owner. */
struct prober_hooks {
	/* On the prober thread, after a check verdict marked b down (not while lbctl forces
	 * its health). */
	void (*backend_down)(void *ctx, struct backend *b);
	void *ctx;
};

/* Start the prober thread over pools[0..npools). The pools (and their backends) stay owned
 * by the caller and must outlive the prober. Replaced snapshots are retired through q (QSBR
 * of the workers); q may be NULL only while no worker reads the pools. hooks (copied; NULL:
 * none). 0 and the prober in *out, or -errno (-EINVAL: a pool names an unknown health
 * type). */
int prober_start(struct pool **pools, size_t npools, struct qsbr *q,
		 const struct prober_hooks *hooks, struct prober **out);
/* Wake the thread, join it, close every probe socket, free. NULL is a no-op. */
void prober_stop(struct prober *p);

/* Read b's last check result; safe from any thread while the prober writes. */
void prober_last_check(const struct backend *b, struct prober_check *out);

#endif
