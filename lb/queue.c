/* A pool's connection queue: see queue.h. */
#include "lb/queue.h"

#include <errno.h>

#include "lb/pool.h"
#include "lb/timer.h"

const uint32_t queue_wait_bucket_ms[QUEUE_WAIT_BUCKETS] = {1,	5,   10,   50,	 100,
							   250, 500, 1000, 2500, 5000};

/* Picks one waiter may take before dispatch gives up on it for now: a pick is only lost to
 * another worker filling that backend between the pick and the take. */
#define DISPATCH_PICKS 4

void queue_init(struct pool_queue *q)
{
	pthread_mutex_init(&q->lock, NULL);
	list_init(&q->waiters);
}

void queue_destroy(struct pool_queue *q)
{
	pthread_mutex_destroy(&q->lock);
}

void queue_configure(struct pool_queue *q, int max, uint64_t timeout_ms)
{
	atomic_store(&q->max, max);
	atomic_store(&q->timeout_ms, timeout_ms);
}

void queue_inbox_init(struct queue_inbox *in, void (*kick)(void *), void *arg)
{
	pthread_mutex_init(&in->lock, NULL);
	list_init(&in->granted);
	in->kick = kick;
	in->arg = arg;
}

void queue_inbox_destroy(struct queue_inbox *in)
{
	pthread_mutex_destroy(&in->lock);
}

void queue_inbox_take(struct queue_inbox *in, struct list_head *out)
{
	list_init(out);
	pthread_mutex_lock(&in->lock);
	if (!list_empty(&in->granted)) {
		/* Splice the whole list over to out. */
		out->next = in->granted.next;
		out->prev = in->granted.prev;
		out->next->prev = out;
		out->prev->next = out;
		list_init(&in->granted);
	}
	pthread_mutex_unlock(&in->lock);
}

static void list_add_tail(struct list_head *n, struct list_head *h)
{
	list_add(n, h->prev);
}

int queue_enter(struct pool *p, struct queue_waiter *wt)
{
	struct pool_queue *q = &p->queue;
	int ret = 0;

	wt->granted = NULL;
	wt->since_ms = timer_now_ms();
	pthread_mutex_lock(&q->lock);
	if (atomic_load_explicit(&q->len, memory_order_relaxed) >=
	    atomic_load_explicit(&q->max, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&q->full_total, 1, memory_order_relaxed);
		ret = -ENOSPC;
	} else {
		list_add_tail(&wt->link, &q->waiters);
		wt->queued = true;
		atomic_fetch_add_explicit(&q->len, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&q->queued_total, 1, memory_order_relaxed);
	}
	pthread_mutex_unlock(&q->lock);
	return ret;
}

bool queue_cancel(struct pool *p, struct queue_waiter *wt)
{
	struct pool_queue *q = &p->queue;
	bool granted;

	pthread_mutex_lock(&q->lock);
	granted = !wt->queued;
	if (wt->queued) {
		list_del(&wt->link);
		wt->queued = false;
		atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
	} else {
		/* Granted: the grant went into the inbox under q->lock, so it is there now. */
		pthread_mutex_lock(&wt->inbox->lock);
		list_del(&wt->link);
		pthread_mutex_unlock(&wt->inbox->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return granted;
}

/* A free slot for wt, taken (backend_take), or NULL. */
static struct backend *pick_for(struct pool *p, const struct queue_waiter *wt)
{
	struct pick_ctx ctx = {
	    .client = wt->client,
	    .hash = addr_hash_ip(wt->client),
	    .tried = wt->tried,
	    .ntried = wt->ntried,
	    .turn = wt->turn,
	};

	for (int i = 0; i < DISPATCH_PICKS; i++) {
		struct backend *b = pool_pick(p, &ctx);
		if (!b)
			return NULL;
		if (backend_take(b))
			return b;
	}
	return NULL;
}

static void note_wait(struct pool_queue *q, uint64_t ms)
{
	size_t i = 0;

	while (i < QUEUE_WAIT_BUCKETS && ms > queue_wait_bucket_ms[i])
		i++;
	atomic_fetch_add_explicit(&q->wait_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->wait_sum_ms, ms, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->wait_count, 1, memory_order_relaxed);
	atomic_store_explicit(&q->wait_last_ms, ms, memory_order_relaxed);
}

void queue_dispatch(struct pool *p)
{
	struct pool_queue *q = &p->queue;
	uint64_t now = 0;

	if (atomic_load_explicit(&q->len, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&q->lock);
	while (!list_empty(&q->waiters)) {
		struct queue_waiter *wt = list_first_entry(&q->waiters, struct queue_waiter, link);
		struct backend *b = pick_for(p, wt);
		if (!b)
			break; /* first come, first served: nobody overtakes the head */
		list_del(&wt->link);
		wt->queued = false;
		wt->granted = b;
		atomic_fetch_sub_explicit(&q->len, 1, memory_order_relaxed);
		if (!now)
			now = timer_now_ms();
		note_wait(q, now > wt->since_ms ? now - wt->since_ms : 0);

		struct queue_inbox *in = wt->inbox;
		pthread_mutex_lock(&in->lock);
		bool was_empty = list_empty(&in->granted);
		list_add_tail(&wt->link, &in->granted);
		pthread_mutex_unlock(&in->lock);
		if (was_empty)
			in->kick(in->arg);
	}
	pthread_mutex_unlock(&q->lock);
}

uint64_t queue_wait_p99_ms(const struct pool_queue *q)
{
	uint64_t n = atomic_load(&q->wait_count), seen = 0;

	if (!n)
		return 0;
	for (size_t i = 0; i < QUEUE_WAIT_BUCKETS; i++) {
		seen += atomic_load(&q->wait_bucket[i]);
		if (seen * 100 >= n * 99)
			return queue_wait_bucket_ms[i];
	}
	return UINT64_MAX; /* beyond the last bucket */
}
