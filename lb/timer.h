/* Per-worker timers: a binary min-heap of deadlines (milliseconds, monotonic clock).
 * Idle timeouts are lazy: a connection's timer fires at its old deadline and re-arms from
 * its last activity, so moving bytes never touches the heap. */
#ifndef LB_TIMER_H
#define LB_TIMER_H

#include <stddef.h>
#include <stdint.h>

#define TIMER_UNARMED SIZE_MAX

struct timer {
	uint64_t deadline;
	size_t idx; /* position in the heap, TIMER_UNARMED when not armed */
	void (*fn)(struct timer *t, uint64_t now);
};

struct timer_heap {
	struct timer **v;
	size_t n, cap;
};

void timer_init(struct timer *t, void (*fn)(struct timer *t, uint64_t now));
/* Arm or move t to deadline. Returns 0 or -ENOMEM (the heap grows by doubling). */
int timer_arm(struct timer_heap *h, struct timer *t, uint64_t deadline);
void timer_cancel(struct timer_heap *h, struct timer *t);
/* Milliseconds until the next deadline (0 if due), or -1 if no timer is armed. */
int timer_next_ms(const struct timer_heap *h, uint64_t now);
/* Fire every timer due at now; each is disarmed before its fn runs (fn may re-arm it). */
void timer_run(struct timer_heap *h, uint64_t now);
void timer_heap_free(struct timer_heap *h);
/* CLOCK_MONOTONIC in milliseconds. */
uint64_t timer_now_ms(void);

#endif
