/* QSBR; see qsbr.h. Readers pay one seq_cst store per loop turn and per blocking wait. */
#include <stdlib.h>

#include "lb/qsbr.h"

#define QSBR_OFFLINE UINT64_MAX

void qsbr_init(struct qsbr *q, int nreaders)
{
	atomic_init(&q->epoch, 1);
	q->nreaders = nreaders < QSBR_MAX_READERS ? nreaders : QSBR_MAX_READERS;
	for (int i = 0; i < QSBR_MAX_READERS; i++)
		atomic_init(&q->reader[i], QSBR_OFFLINE);
	pthread_mutex_init(&q->lock, NULL);
	q->pending = NULL;
}

void qsbr_offline(struct qsbr *q, int r)
{
	if (r < q->nreaders)
		atomic_store_explicit(&q->reader[r], QSBR_OFFLINE, memory_order_release);
}

void qsbr_online(struct qsbr *q, int r)
{
	/* seq_cst: the store must be visible before this reader's next pointer loads. */
	if (r < q->nreaders)
		atomic_store(&q->reader[r], atomic_load(&q->epoch));
}

void qsbr_retire(struct qsbr *q, void *ptr, void (*free_fn)(void *ptr))
{
	struct qsbr_item *it = malloc(sizeof(*it));
	/* The old pointer was already unpublished: readers that come online after this bump
	 * cannot see it. */
	uint64_t e = atomic_fetch_add(&q->epoch, 1) + 1;
	if (!it) {
		/* No memory to defer: wait for every reader instead (rare, off the data path). */
		for (int r = 0; r < q->nreaders; r++)
			while (atomic_load(&q->reader[r]) < e)
				;
		free_fn(ptr);
		return;
	}
	it->ptr = ptr;
	it->free_fn = free_fn;
	it->epoch = e;
	pthread_mutex_lock(&q->lock);
	it->next = q->pending;
	q->pending = it;
	pthread_mutex_unlock(&q->lock);
	qsbr_reclaim(q);
}

static int safe(struct qsbr *q, uint64_t e)
{
	for (int r = 0; r < q->nreaders; r++)
		if (atomic_load(&q->reader[r]) < e)
			return 0;
	return 1;
}

int qsbr_reclaim(struct qsbr *q)
{
	struct qsbr_item *done = NULL;
	int left = 0;

	pthread_mutex_lock(&q->lock);
	for (struct qsbr_item **pp = &q->pending; *pp;) {
		struct qsbr_item *it = *pp;
		if (safe(q, it->epoch)) {
			*pp = it->next;
			it->next = done;
			done = it;
		} else {
			pp = &it->next;
			left++;
		}
	}
	pthread_mutex_unlock(&q->lock);
	while (done) {
		struct qsbr_item *it = done;
		done = it->next;
		it->free_fn(it->ptr);
		free(it);
	}
	return left;
}

void qsbr_destroy(struct qsbr *q)
{
	for (int r = 0; r < q->nreaders; r++)
		atomic_store(&q->reader[r], QSBR_OFFLINE);
	qsbr_reclaim(q);
	pthread_mutex_destroy(&q->lock);
}
