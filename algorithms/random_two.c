/* random_two: the power of two random choices (Mitzenmacher): draw two allowed backends at
 * random and take the one with fewer active connections per unit of weight. O(1) per pick
 * with load nearly as even as least_conn, and no shared cursor for workers to fight over:
 * each thread draws from its own xorshift generator. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "algorithms/algorithm.h"
#include "lb/hash.h"

/* Random draws spent looking for an allowed backend before a scan from a random start: with
 * half the group unusable, 8 misses in a row happen once in 256 picks. */
#define RANDOM_TWO_DRAWS 8
/* xorshift64* output multiplier (Vigna, "An experimental exploration of Marsaglia's xorshift
 * generators, scrambled", 2016). */
#define XORSHIFT64_STAR_MUL 0x2545f4914f6cdd1dull

struct r2_state {
	struct backend **backends; /* the view's array; owned by the snapshot */
	size_t n;
};

/* Per-thread generator state; 0 = not seeded yet (xorshift never reaches 0 once seeded). */
static _Thread_local uint64_t r2_rng;

/* Seed from the clock and the address of this thread's own state, which differs between
 * live threads, mixed by splitmix64's finalizer (hash_mix64). */
static uint64_t r2_seed(void)
{
	struct timespec ts;
	uint64_t x;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	x = hash_mix64(x ^ (uint64_t)(uintptr_t)&r2_rng);
	return x ? x : 1;
}

static uint64_t r2_next(void)
{
	uint64_t x = r2_rng ? r2_rng : r2_seed();

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r2_rng = x;
	return x * XORSHIFT64_STAR_MUL;
}

/* Uniform in [0, n) by multiply-shift on the high 32 bits (Lemire), no division. */
static size_t r2_below(size_t n)
{
	return (size_t)(((r2_next() >> 32) * (uint64_t)n) >> 32);
}

static void *r2_build(const struct pool_view *view)
{
	struct r2_state *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->backends = view->backends;
	s->n = view->n;
	return s;
}

/* An allowed backend other than except: random draws first, then a scan from a random start. */
static struct backend *r2_draw(const struct r2_state *s, const struct pick_ctx *ctx,
			       const struct backend *except)
{
	size_t start;

	for (int i = 0; i < RANDOM_TWO_DRAWS; i++) {
		struct backend *b = s->backends[r2_below(s->n)];

		if (b != except && pick_allowed(ctx, b))
			return b;
	}
	start = r2_below(s->n);
	for (size_t k = 0; k < s->n; k++) {
		struct backend *b = s->backends[(start + k) % s->n];

		if (b != except && pick_allowed(ctx, b))
			return b;
	}
	return NULL;
}

static struct backend *r2_pick(void *state, const struct pick_ctx *ctx)
{
	const struct r2_state *s = state;
	struct backend *a, *b;

	if (s->n == 0)
		return NULL;
	a = r2_draw(s, ctx, NULL);
	if (!a)
		return NULL;
	b = r2_draw(s, ctx, a);
	if (!b)
		return a;
	return backend_load_lighter(backend_load(b), backend_load(a)) ? b : a;
}

static void r2_destroy(void *state)
{
	free(state);
}

const struct lb_algorithm algorithm_random_two = {
    .name = "random_two",
    .build = r2_build,
    .pick = r2_pick,
    .destroy = r2_destroy,
};
