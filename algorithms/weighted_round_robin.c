/* weighted_round_robin: nginx's smooth weighted round robin, computed once at build() into a
 * sequence of backend indexes; workers share one atomic cursor over it. Over any window of
 * sum(weights) picks each backend gets exactly its weight, and picks are interleaved (5:1:1
 * gives a a b a c a a), as long as every backend in the sequence stays allowed. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "algorithms/algorithm.h"

/* Cap on the sequence: 2^16 entries (256 KiB of uint32_t per group). Exact whenever
 * sum(weights)/gcd fits, e.g. 65 backends with coprime weights up to the maximum 1000, or any
 * number of equal weights. Above it, weights are scaled down in proportion (rounded down, each
 * kept >= 1), so shares become approximate. */
#define WRR_MAX_SEQ 65536u
/* Building costs n steps per entry; past 2^24 steps (~50 ms) the cap shrinks to
 * WRR_BUILD_BUDGET / n, so that a health change in a huge pool does not stall the prober. */
#define WRR_BUILD_BUDGET (1u << 24)
/* Sequence entries walked past a disallowed backend before scanning the group instead, so
 * that a pick costs O(WRR_WALK_MAX + n) even when most of a long sequence is down. */
#define WRR_WALK_MAX 64u

struct wrr_state {
	struct backend **backends; /* the view's array; owned by the snapshot */
	size_t n;
	uint32_t *seq; /* indexes into backends; NULL if no backend had weight > 0 */
	size_t len;
	_Atomic uint64_t *cursor; /* the pool's, shared by its snapshots (pool_view) */
};

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Divide the weights by their gcd: 2:4:6 has the same interleaving as 1:2:3 in half the
 * memory. Returns the sum of the reduced weights. */
static uint64_t wrr_reduce(uint64_t *w, size_t n)
{
	uint64_t g = 0, sum = 0;

	for (size_t i = 0; i < n; i++)
		g = gcd64(g, w[i]);
	for (size_t i = 0; i < n; i++) {
		w[i] = g ? w[i] / g : 0;
		sum += w[i];
	}
	return sum;
}

/* The longest sequence worth building for a group of n backends. */
static uint64_t wrr_cap(size_t n)
{
	uint64_t budget = WRR_BUILD_BUDGET / (n ? n : 1);

	return budget < WRR_MAX_SEQ ? budget : WRR_MAX_SEQ;
}

/* Scale weights summing to sum down so that they sum to about cap (at most cap + n: a
 * weighted backend keeps at least 1). Returns the new sum. */
static uint64_t wrr_scale(uint64_t *w, size_t n, uint64_t sum, uint64_t cap)
{
	uint64_t scaled = 0;

	for (size_t i = 0; i < n; i++) {
		if (w[i] == 0)
			continue;
		w[i] = w[i] * cap / sum;
		if (w[i] == 0)
			w[i] = 1;
		scaled += w[i];
	}
	return scaled;
}

/* nginx ngx_http_upstream_get_peer(): every backend gains its weight, the richest (first on
 * ties) is chosen and pays the total. */
static void wrr_fill(uint32_t *seq, uint64_t len, const uint64_t *w, int64_t *cur, size_t n)
{
	for (uint64_t t = 0; t < len; t++) {
		size_t best = n;

		for (size_t i = 0; i < n; i++) {
			if (w[i] == 0)
				continue;
			cur[i] += (int64_t)w[i];
			if (best == n || cur[i] > cur[best])
				best = i;
		}
		cur[best] -= (int64_t)len;
		seq[t] = (uint32_t)best;
	}
}

static bool wrr_build_seq(struct wrr_state *s)
{
	uint64_t *w = calloc(s->n, sizeof(*w));
	int64_t *cur = calloc(s->n, sizeof(*cur));
	bool ok = false;

	if (!w || !cur)
		goto out;
	for (size_t i = 0; i < s->n; i++) {
		int weight = backend_weight(s->backends[i]); /* slow start's ramp included */

		w[i] = weight > 0 ? (uint64_t)weight : 0;
	}
	s->len = wrr_reduce(w, s->n);
	if (s->len > wrr_cap(s->n))
		s->len = wrr_scale(w, s->n, s->len, wrr_cap(s->n));
	if (s->len > 0) {
		s->seq = calloc(s->len, sizeof(*s->seq));
		if (!s->seq)
			goto out;
		wrr_fill(s->seq, s->len, w, cur, s->n);
	}
	ok = true;
out:
	free(w);
	free(cur);
	return ok;
}

static void wrr_destroy(void *state)
{
	struct wrr_state *s = state;

	if (!s)
		return;
	free(s->seq);
	free(s);
}

static void *wrr_build(const struct pool_view *view)
{
	struct wrr_state *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->backends = view->backends;
	s->n = view->n;
	s->cursor = view->cursor;
	if (s->n > 0 && !wrr_build_seq(s)) {
		wrr_destroy(s);
		return NULL;
	}
	return s;
}

/* Last resort when the walk found nothing: any allowed backend of the group, starting at a
 * place that rotates with the cursor. */
static struct backend *wrr_scan(const struct wrr_state *s, const struct pick_ctx *ctx,
				uint64_t turn)
{
	for (size_t k = 0; k < s->n; k++) {
		struct backend *b = s->backends[(turn + k) % s->n];

		if (pick_allowed(ctx, b))
			return b;
	}
	return NULL;
}

/* A turn whose backend is not allowed (down, full, or already tried by this connection's
 * retry) moves on to a position that shifts by one with each round through the sequence:
 * over the rounds the skipped backend's turns spread over the others in proportion to their
 * weights, where walking on from its own position would give them all to its neighbour
 * (weights 1:1:2 with the first down: 1:1 instead of 1:2). A retry keeps its connection's turn, as
 * round_robin's does, so that it takes none from new connections. */
static struct backend *wrr_pick(void *state, const struct pick_ctx *ctx)
{
	struct wrr_state *s = state;
	uint64_t turn, pos, walk;

	if (s->n == 0)
		return NULL;
	if (ctx->turn && *ctx->turn != PICK_NO_TURN) {
		turn = *ctx->turn;
	} else {
		turn = atomic_fetch_add_explicit(s->cursor, 1, memory_order_relaxed);
		if (ctx->turn)
			*ctx->turn = turn;
	}
	if (s->len == 0)
		return wrr_scan(s, ctx, turn);
	pos = turn % s->len;
	struct backend *own = s->backends[s->seq[pos]];
	if (pick_allowed(ctx, own))
		return own;
	if (s->len > 1)
		pos = (pos + 1 + (turn / s->len) % (s->len - 1)) % s->len;
	walk = s->len < WRR_WALK_MAX ? s->len : WRR_WALK_MAX;
	for (uint64_t k = 0; k < walk; k++) {
		struct backend *b = s->backends[s->seq[(pos + k) % s->len]];

		if (pick_allowed(ctx, b))
			return b;
	}
	return wrr_scan(s, ctx, turn);
}

const struct lb_algorithm algorithm_weighted_round_robin = {
    .name = "weighted_round_robin",
    .build = wrr_build,
    .pick = wrr_pick,
    .destroy = wrr_destroy,
};
