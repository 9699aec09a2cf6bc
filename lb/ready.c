/* Readiness for the routing layer (docs/FLEET.md): a verdict from the readiness flags and
 * the pools' live state, computed on demand on the main thread. */
#include "lb/ready.h"

#include <stdio.h>

#include "lb/listener.h"
#include "lb/pool.h"
#include "lb/state.h"
#include "lb/timer.h"

static bool pool_has_usable(const struct pool *p)
{
	for (size_t i = 0; i < p->nbackends; i++)
		if (backend_usable(p->backends[i]))
			return true;
	return false;
}

bool ready_check(const struct lb_state *st, char *why, size_t len)
{
	const struct readiness *r = &st->ready;

	if (r->stopping) {
		snprintf(why, len, "stopping");
		return false;
	}
	if (r->withdrawn) {
		snprintf(why, len, "withdrawn");
		return false;
	}
	for (size_t i = 0; i < st->nlisteners; i++) {
		const struct listener *l = st->listeners[i];
		const struct pool *p = atomic_load(&l->pool);

		if (!pool_has_usable(p)) {
			snprintf(why, len, "listener %s: pool %s has no usable backend",
				 atomic_load(&l->cfg)->name, p->name);
			return false;
		}
	}
	snprintf(why, len, "ready");
	return true;
}

bool ready_set_withdrawn(struct readiness *r, bool withdrawn)
{
	if (r->withdrawn == withdrawn)
		return false;
	r->withdrawn = withdrawn;
	if (withdrawn && !r->stopping)
		r->since_ms = timer_now_ms();
	return true;
}

uint64_t ready_stop(struct readiness *r, uint64_t delay_ms)
{
	uint64_t now = timer_now_ms(), spent;

	if (!r->withdrawn && !r->stopping)
		r->since_ms = now;
	r->stopping = true;
	spent = now - r->since_ms;
	return spent >= delay_ms ? 0 : delay_ms - spent;
}
