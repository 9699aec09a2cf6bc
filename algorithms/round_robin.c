/* round_robin: strict rotation over the allowed backends of a group, weights ignored.
 * One shared atomic cursor numbers the picks of every worker, so N workers together still
 * hand out exactly one turn per backend per round. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "algorithms/algorithm.h"

struct rr_state {
	struct backend **backends; /* the view's array; owned by the snapshot */
	size_t n;
	_Atomic uint64_t *cursor; /* the pool's, shared by its snapshots (pool_view) */
};

static void *rr_build(const struct pool_view *view)
{
	struct rr_state *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->backends = view->backends;
	s->n = view->n;
	s->cursor = view->cursor;
	return s;
}

static size_t rr_count_allowed(const struct rr_state *s, const struct pick_ctx *ctx)
{
	size_t allowed = 0;

	for (size_t i = 0; i < s->n; i++)
		if (pick_allowed(ctx, s->backends[i]))
			allowed++;
	return allowed;
}

/* The want-th allowed backend, or the first allowed one if the set shrank since counting. */
static struct backend *rr_nth_allowed(const struct rr_state *s, const struct pick_ctx *ctx,
				      size_t want)
{
	struct backend *first = NULL;

	for (size_t i = 0; i < s->n; i++) {
		struct backend *b = s->backends[i];

		if (!pick_allowed(ctx, b))
			continue;
		if (want-- == 0)
			return b;
		if (!first)
			first = b;
	}
	return first;
}

/* The turn indexes the allowed set rather than the whole group: skipping a disallowed
 * backend by walking forward would hand its turns to its neighbour (A, B down, C would
 * give C two picks in three), which is not a rotation over the usable backends. A retry
 * keeps its connection's turn, over the set less what it tried: with [dead, A, B] the
 * connections whose turn hit dead alternate between A and B (nginx's 15/15 of 30), where a
 * fresh turn per retry gave B 22 and A 8. */
static struct backend *rr_pick(void *state, const struct pick_ctx *ctx)
{
	struct rr_state *s = state;
	uint64_t turn;
	size_t allowed;

	if (s->n == 0)
		return NULL;
	if (ctx->turn && *ctx->turn != PICK_NO_TURN) {
		turn = *ctx->turn; /* a retry: the backends already tried are not allowed */
	} else {
		turn = atomic_fetch_add_explicit(s->cursor, 1, memory_order_relaxed);
		if (ctx->turn)
			*ctx->turn = turn;
	}
	allowed = rr_count_allowed(s, ctx);
	if (allowed == 0)
		return NULL;
	if (allowed == s->n)
		return s->backends[turn % s->n];
	return rr_nth_allowed(s, ctx, turn % allowed);
}

static void rr_destroy(void *state)
{
	free(state);
}

const struct lb_algorithm algorithm_round_robin = {
    .name = "round_robin",
    .build = rr_build,
    .pick = rr_pick,
    .destroy = rr_destroy,
};
