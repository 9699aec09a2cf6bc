/* Quiescent-state-based reclamation for pool snapshots (DESIGN.md "Threads and data flow").
 * Workers read snapshots with no reference counting; a replaced snapshot is freed only once
 * every worker has passed a quiescent point (a loop turn) or is offline (blocked in wait). */
#ifndef LB_QSBR_H
#define LB_QSBR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define QSBR_MAX_READERS 256

struct qsbr_item {
	void *ptr;
	void (*free_fn)(void *ptr);
	uint64_t epoch;
	struct qsbr_item *next;
};

struct qsbr {
	_Atomic uint64_t epoch;
	_Atomic uint64_t reader[QSBR_MAX_READERS]; /* last epoch seen, or QSBR_OFFLINE */
	int nreaders;
	pthread_mutex_t lock; /* guards pending: writers only, never the data path */
	struct qsbr_item *pending;
};

void qsbr_init(struct qsbr *q, int nreaders);
/* Reader r holds no reference from now until qsbr_online (e.g. before blocking). */
void qsbr_offline(struct qsbr *q, int r);
/* Reader r may read shared pointers again; also a quiescent point. */
void qsbr_online(struct qsbr *q, int r);
/* Hand ptr to free_fn once no reader can hold it. Takes ownership. Writers only. */
void qsbr_retire(struct qsbr *q, void *ptr, void (*free_fn)(void *ptr));
/* Free what has become safe. Returns how many items are still pending. */
int qsbr_reclaim(struct qsbr *q);
/* Free everything pending: only when no reader runs any more. */
void qsbr_destroy(struct qsbr *q);

#endif
