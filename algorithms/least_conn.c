/* least_conn: the allowed backend with the fewest active connections per unit of weight.
 * Loads are compared as cross-multiplied integers (a1 * w2 < a2 * w1), never as floats; ties
 * go to whichever comes first from a start offset that rotates with every pick, so that an
 * idle pool is still shared evenly between workers. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "algorithms/algorithm.h"

struct lc_state {
	struct backend **backends; /* the view's array; owned by the snapshot */
	size_t n;
	_Atomic uint64_t *cursor; /* the pool's, shared by its snapshots (pool_view) */
};

static void *lc_build(const struct pool_view *view)
{
	struct lc_state *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->backends = view->backends;
	s->n = view->n;
	s->cursor = view->cursor;
	return s;
}

static struct backend *lc_pick(void *state, const struct pick_ctx *ctx)
{
	struct lc_state *s = state;
	struct backend *best = NULL;
	struct backend_load best_load = {0, 0};
	uint64_t start;

	if (s->n == 0)
		return NULL;
	start = atomic_fetch_add_explicit(s->cursor, 1, memory_order_relaxed);
	for (size_t k = 0; k < s->n; k++) {
		struct backend *b = s->backends[(start + k) % s->n];
		struct backend_load load;

		if (!pick_allowed(ctx, b))
			continue;
		/* Read once: the weight may change under us, and 0 would make every load equal. */
		load = backend_load(b);
		if (load.weight <= 0)
			continue;
		if (!best || backend_load_lighter(load, best_load)) {
			best = b;
			best_load = load;
		}
	}
	return best;
}

static void lc_destroy(void *state)
{
	free(state);
}

const struct lb_algorithm algorithm_least_conn = {
    .name = "least_conn",
    .build = lc_build,
    .pick = lc_pick,
    .destroy = lc_destroy,
};
