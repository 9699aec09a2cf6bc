/* A data-plane thread: its engine, its SO_REUSEPORT listener copies, its connections, its
 * timers and its pipe pool. Nothing here is touched by another thread except the few
 * atomics used to start and stop it. */
#ifndef LB_WORKER_H
#define LB_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lb/config.h"
#include "lb/engine.h"
#include "lb/listener.h"
#include "lb/pipe_pool.h"
#include "lb/qsbr.h"
#include "lb/timer.h"

struct lb_state;
struct tcp_state;
struct udp_state;
struct worker_ls_update;

/* worker_set_listeners: keep the socket this worker already has for that listener. */
#define WORKER_FD_KEEP (-2)

/* One worker's copy of a listener; allocated one by one so that engine and timer references
 * to it stay valid when the set changes. */
struct worker_listener {
	struct worker *w;
	struct listener *l;
	int fd;
	struct engine_watch *watch;
	struct engine_accept *acc; /* TCP accepts the engine makes (else watch + accept4) */
	struct timer retry;	   /* re-try accept after EMFILE/ENFILE */
};

struct worker {
	int id;
	pthread_t thread;
	struct engine *eng;
	const struct engine_ops *ops;
	struct engine_params eng_params; /* for ops->create, on the worker's thread */
	struct qsbr *qsbr;		 /* the state's: this worker is reader id */
	bool log_access;		 /* the config's log.access (a restart applies a change) */
	struct session_budget *udp_budget; /* the state's: fds all UDP sessions may hold */
	struct timer_heap timers;
	uint64_t now; /* ms, refreshed once per loop turn */
	struct pipe_pool pipes;

	struct worker_listener **ls;
	size_t nls;
	_Atomic(struct worker_ls_update *) ls_pending; /* main thread -> worker (reload) */
	_Atomic uint64_t ls_applied;		       /* gen of the last update applied */
	uint64_t ls_gen;			       /* main thread only: last gen posted */

	struct tcp_state *tcp; /* tcp_relay.c's connections, object pool and scratch buffer */
	struct udp_state *udp; /* udp_relay.c's sessions and buffers */

	int wake_fd;		   /* eventfd: other threads -> worker */
	_Atomic bool kill_pending; /* worker_kick: scan for killed backends' connections */
	struct engine_watch *wake_watch;
	_Atomic int state; /* enum worker_state */
	_Atomic uint64_t grace_ms;
	uint64_t grace_deadline;
	int start_err; /* set by the thread before it reports WORKER_RUNNING/FAILED */
};

enum worker_state {
	WORKER_STARTING,
	WORKER_RUNNING,
	WORKER_FAILED,
	WORKER_DRAIN_REQUESTED,
	WORKER_DRAINING,
	WORKER_DONE,
};

/* Create worker id (QSBR reader id) of st, with st's engine tuned by ep (max_fds 0: the
 * default), owning listen_fds (one per st->listeners entry, -1 for none). What it needs of
 * st it copies now: a worker never reads the running state. */
struct worker *worker_create(int id, const struct lb_state *st, const struct engine_params *ep,
			     const int *listen_fds);
/* Start its thread and wait until its engine is up. 0 or -errno (the worker then did not
 * start; free it with worker_free). */
int worker_start(struct worker *w);
/* Stop accepting; close remaining connections after grace_ms. Returns at once. */
void worker_drain(struct worker *w, uint64_t grace_ms);
/* Wake the worker: it closes the connections and sessions of killed backends.
 * Any thread; returns at once. */
void worker_kick(struct worker *w);
/* Wake the worker to look at what was posted to it (a reload's listeners, queue grants).
 * Any thread; returns at once. */
void worker_wake(struct worker *w);
/* Replace w's listener set (hot reload; main thread): ls[0..n) become its listeners, fds[i]
 * is a fresh socket for ls[i] (w takes ownership), -1 for none, or WORKER_FD_KEEP to keep
 * the socket w has for that same listener object. Sockets of listeners not in ls are closed
 * by the worker itself. Returns at once: 0 or -ENOMEM (nothing changed, fds not taken). */
int worker_set_listeners(struct worker *w, struct listener *const *ls, const int *fds, size_t n);
/* Wait up to timeout_ms until w applied the last worker_set_listeners. True if it did. */
bool worker_listeners_wait(struct worker *w, int timeout_ms);
/* Wait until w's thread has ended (after worker_drain); w stays valid (worker_kick is a
 * no-op in effect). */
void worker_join(struct worker *w);
/* Join w if it runs, then free it. */
void worker_free(struct worker *w);

#endif
