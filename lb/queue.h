/* A pool's connection queue (the pool's "queue" config): when every usable backend is at its
 * max_conns, a new client waits here instead of being refused, without lb reading its bytes,
 * and gets the next slot that frees, first come first served across workers.
 *
 * The queue is one list per pool under a mutex that only queueing touches. Whoever frees a
 * slot (backend_release on any worker, or a pool_rebuild after a backend came up, was added
 * or got more room) calls queue_dispatch: it picks a backend for the waiter at the head,
 * takes the slot on its behalf, and moves the waiter to its owner worker's inbox, then wakes
 * that worker, which connects. A waiter is owned by its worker while queued and while in the
 * inbox it is only touched under the locks; lock order: pool->lock, queue, inbox. */
#ifndef LB_QUEUE_H
#define LB_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lb/list.h"

struct backend;
struct pool;

/* Upper bounds of the wait-time histogram buckets, in milliseconds (then +Inf). */
#define QUEUE_WAIT_BUCKETS 10
extern const uint32_t queue_wait_bucket_ms[QUEUE_WAIT_BUCKETS];

/* One worker's grants: waiters that got a slot, for the worker to connect. */
struct queue_inbox {
	pthread_mutex_t lock;
	struct list_head granted;
	void (*kick)(void *arg); /* wake the owner (any thread) */
	void *arg;
};

/* A client waiting in a pool's queue (embedded in the connection). */
struct queue_waiter {
	struct list_head link; /* in the queue while waiting, then in the owner's inbox */
	struct queue_inbox *inbox;
	/* What the pick on its behalf needs; the owner does not touch them while queued. */
	const struct sockaddr *client;
	struct backend *const *tried;
	uint8_t ntried;
	uint64_t *turn;
	uint64_t since_ms;	 /* when it was queued (timer_now_ms) */
	struct backend *granted; /* the slot taken for it (backend_take) */
	bool queued;
};

struct pool_queue {
	pthread_mutex_t lock;
	struct list_head waiters; /* oldest first */
	_Atomic int len;
	_Atomic int max;		/* 0: no queue */
	_Atomic uint64_t timeout_ms;	/* how long one may wait */
	_Atomic uint64_t queued_total;	/* clients that waited */
	_Atomic uint64_t full_total;	/* refused: the queue was full */
	_Atomic uint64_t timeout_total; /* closed: waited timeout_ms */
	/* Waits of the clients that got a slot: count per bucket (the last is +Inf), sum. */
	_Atomic uint64_t wait_bucket[QUEUE_WAIT_BUCKETS + 1];
	_Atomic uint64_t wait_sum_ms;
	_Atomic uint64_t wait_count;
	_Atomic uint64_t wait_last_ms; /* the last served client's wait */
};

void queue_init(struct pool_queue *q);
void queue_destroy(struct pool_queue *q);
/* Apply max and timeout (config load or reload); waiters already queued stay. */
void queue_configure(struct pool_queue *q, int max, uint64_t timeout_ms);

void queue_inbox_init(struct queue_inbox *in, void (*kick)(void *), void *arg);
void queue_inbox_destroy(struct queue_inbox *in);
/* Move every grant of in to out (the owner, before connecting them). */
void queue_inbox_take(struct queue_inbox *in, struct list_head *out);

/* Queue wt (its inbox and pick fields set) at the tail of p's queue. 0, or -ENOSPC when
 * the queue is full (counted) or off. */
int queue_enter(struct pool *p, struct queue_waiter *wt);
/* Take wt out (its owner gives up on it: timeout, shutdown). True if it had already been
 * granted a slot: it is then taken out of the inbox too, and wt->granted holds the slot. */
bool queue_cancel(struct pool *p, struct queue_waiter *wt);
/* Hand free slots to the waiters, oldest first, while a backend has room for the head.
 * Any thread that may read p's snapshot (a worker, or the holder of p->lock). */
void queue_dispatch(struct pool *p);

/* The wait in ms at the 99th percentile or so: the upper bound of the bucket the 99th
 * percentile falls in (0 when no client waited). For lbctl. */
uint64_t queue_wait_p99_ms(const struct pool_queue *q);

#endif
