/* Binary min-heap of timers; see timer.h. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "lb/timer.h"

void timer_init(struct timer *t, void (*fn)(struct timer *t, uint64_t now))
{
	t->deadline = 0;
	t->idx = TIMER_UNARMED;
	t->fn = fn;
}

static void place(struct timer_heap *h, size_t i, struct timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void sift_up(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->deadline <= t->deadline)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct timer_heap *h, size_t i)
{
	struct timer *t = h->v[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->v[child + 1]->deadline < h->v[child]->deadline)
			child++;
		if (t->deadline <= h->v[child]->deadline)
			break;
		place(h, i, h->v[child]);
		i = child;
	}
	place(h, i, t);
}

int timer_arm(struct timer_heap *h, struct timer *t, uint64_t deadline)
{
	if (t->idx != TIMER_UNARMED) {
		uint64_t old = t->deadline;
		t->deadline = deadline;
		if (deadline < old)
			sift_up(h, t->idx);
		else
			sift_down(h, t->idx);
		return 0;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct timer **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->deadline = deadline;
	place(h, h->n++, t);
	sift_up(h, t->idx);
	return 0;
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
	size_t i = t->idx;
	if (i == TIMER_UNARMED)
		return;
	t->idx = TIMER_UNARMED;
	struct timer *last = h->v[--h->n];
	if (last == t)
		return;
	place(h, i, last);
	sift_up(h, i);
	sift_down(h, last->idx);
}

int timer_next_ms(const struct timer_heap *h, uint64_t now)
{
	if (!h->n)
		return -1;
	uint64_t d = h->v[0]->deadline;
	if (d <= now)
		return 0;
	return d - now > INT32_MAX ? INT32_MAX : (int)(d - now);
}

void timer_run(struct timer_heap *h, uint64_t now)
{
	while (h->n && h->v[0]->deadline <= now) {
		struct timer *t = h->v[0];
		timer_cancel(h, t);
		t->fn(t, now);
	}
}

void timer_heap_free(struct timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

uint64_t timer_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
