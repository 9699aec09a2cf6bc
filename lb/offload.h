/* Work off the main loop: a job's slow part runs on a thread of its own and its completion
 * runs back on the main loop, woken through an eventfd. Reloads (reading the config, looking
 * up its host names) and `lbctl add` with a host name use it, so that signals, lbctl and
 * metrics are served meanwhile. */
#ifndef LB_OFFLOAD_H
#define LB_OFFLOAD_H

#include "lb/list.h"

struct offload;

/* Embedded in the caller's job object; the caller sets work, done and drop. */
struct offload_job {
	/* On the job's own thread: must not touch the running state. */
	void (*work)(struct offload_job *j);
	/* Then on the main loop; owns the job from then on (frees it). */
	void (*done)(struct offload_job *j);
	/* Instead of done when lb stops first: free the job and what it holds, touching nothing
	 * else (it may run on the job's thread, after the running state is gone). */
	void (*drop)(struct offload_job *j);
	struct list_head link; /* offload.c's */
	struct offload *o;     /* offload.c's */
};

/* Serve completions on epfd (the main loop). 0 and *out, or -errno. */
int offload_open(int epfd, struct offload **out);
/* Run j on a new thread. 0, or -errno with j untouched (no callback will run); -EAGAIN
 * when o is NULL. */
int offload_start(struct offload *o, struct offload_job *j);
/* Stop: jobs finished but not yet done are dropped now, jobs still running drop themselves
 * when their work returns (nobody waits for them). Call it after ctl_shutdown, once nothing
 * refers to a job any more. NULL: no-op. */
void offload_close(struct offload *o);

#endif
