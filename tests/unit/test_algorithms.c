/* Unit tests for the balancing algorithms and the pool around them: each algorithm's
 * distribution promise (also when several worker threads pick at once), the usability rules
 * every pick must honour, backups, snapshots and the connection counters. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/algorithm.h"
#include "lb/pool.h"
#include "lb/qsbr.h"
#include "support.h"

#define MAX_BACKENDS 80
#define NALGORITHMS  5

static const char *const all_algorithms[NALGORITHMS] = {
    "round_robin", "weighted_round_robin", "least_conn", "ip_hash", "random_two",
};

/* Index of b in the pool, or nbackends if b is NULL or foreign. */
static size_t backend_slot(const struct pool *p, const struct backend *b)
{
	size_t i = 0;

	while (i < p->nbackends && p->backends[i] != b)
		i++;
	return i;
}

static size_t backend_index(const struct pool *p, const struct backend *b)
{
	size_t i = backend_slot(p, b);

	ck_assert_msg(i < p->nbackends, "picked NULL or a backend that is not in the pool");
	return i;
}

/* Pick n times with one context, adding to counts[] by backend index. Asserts once at the
 * end: Check logs every passing assertion through a file, which is slow in a loop. */
static void pick_n(struct pool *p, const struct pick_ctx *ctx, int n, int *counts)
{
	int misses = 0;

	for (int i = 0; i < n; i++) {
		size_t j = backend_slot(p, pool_pick(p, ctx));

		if (j == p->nbackends)
			misses++;
		else
			counts[j]++;
	}
	ck_assert_int_eq(misses, 0);
}

/* ---- picks from several threads at once ---- */

struct picker {
	pthread_t thread;
	pthread_barrier_t *start;
	struct pool *p;
	int picks;
	int counts[MAX_BACKENDS];
	int misses; /* NULL picks or foreign backends, checked by the main thread */
};

static void *picker_run(void *arg)
{
	struct picker *pk = arg;
	struct pick_ctx ctx = {0};

	pthread_barrier_wait(pk->start);
	for (int i = 0; i < pk->picks; i++) {
		size_t j = backend_slot(pk->p, pool_pick(pk->p, &ctx));

		if (j == pk->p->nbackends)
			pk->misses++;
		else
			pk->counts[j]++;
	}
	return NULL;
}

/* nthreads threads each pick picks_each times, all starting together; totals in counts. */
static void pick_concurrently(struct pool *p, int nthreads, int picks_each, int *counts)
{
	struct picker pk[8];
	pthread_barrier_t start;

	ck_assert_int_le(nthreads, 8);
	pthread_barrier_init(&start, NULL, (unsigned)nthreads);
	memset(pk, 0, sizeof(pk));
	for (int t = 0; t < nthreads; t++) {
		pk[t] = (struct picker){.start = &start, .p = p, .picks = picks_each};
		ck_assert_int_eq(pthread_create(&pk[t].thread, NULL, picker_run, &pk[t]), 0);
	}
	for (int t = 0; t < nthreads; t++) {
		pthread_join(pk[t].thread, NULL);
		ck_assert_int_eq(pk[t].misses, 0);
		for (size_t i = 0; i < p->nbackends; i++)
			counts[i] += pk[t].counts[i];
	}
	pthread_barrier_destroy(&start);
}

/* ---- registry ---- */

START_TEST(test_registry_resolves_every_listed_name_and_the_alias)
{
	char names[256];
	char *save = NULL;
	int found = 0;

	snprintf(names, sizeof(names), "%s", algorithm_names());
	for (char *n = strtok_r(names, ", ", &save); n; n = strtok_r(NULL, ", ", &save)) {
		const struct lb_algorithm *alg = algorithm_find(n);

		ck_assert_ptr_nonnull(alg);
		ck_assert_str_eq(alg->name, n);
		found++;
	}
	ck_assert_int_eq(found, NALGORITHMS);
	ck_assert_ptr_eq(algorithm_find("weighted"), &algorithm_weighted_round_robin);
	ck_assert_ptr_null(algorithm_find("least_connections"));
	ck_assert_ptr_null(algorithm_find(NULL));
}
END_TEST

START_TEST(test_pool_create_refuses_an_unknown_algorithm)
{
	struct t_pool_cfg t;

	t_pool_cfg_init(&t, "fastest", "b", 2, -1, NULL);
	ck_assert_ptr_null(pool_create(&t.cp));
}
END_TEST

/* ---- round_robin ---- */

START_TEST(test_round_robin_is_exact)
{
	struct pool *p = t_pool_make("round_robin", "b", 3, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[3] = {0};

	pick_n(p, &ctx, 30, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);
	pool_destroy(p);
}
END_TEST

/* [dead, A, B], dead refusing but not marked down: 30 connections, each retried once when
 * its pick is dead, as the relays do (pick_ctx.turn kept across the retry). A retry must
 * not take a turn from new connections: A and B get 15 each (nginx's stream_upstream.t
 * "failures"), where a fresh turn per retry gave B 22 and A 8. */
/* One retry when the pick is dead, as the relays do it: the backend each of 30 connections
 * lands on, counted in a and b (backends 1 and 2 of p). */
static void retry_dead_first(struct pool *p, int *a, int *b)
{
	struct backend *dead = p->backends[0];

	for (int i = 0; i < 30; i++) {
		struct backend *tried[2];
		uint64_t turn = PICK_NO_TURN;
		struct pick_ctx ctx = {.tried = tried, .turn = &turn};
		struct backend *got = pool_pick(p, &ctx);
		if (got == dead) {
			tried[ctx.ntried++] = got;
			got = pool_pick(p, &ctx);
		}
		ck_assert(got != dead);
		*a += got == p->backends[1];
		*b += got == p->backends[2];
	}
}

START_TEST(test_round_robin_retries_keep_the_rotation_fair)
{
	struct pool *p = t_pool_make("round_robin", "b", 3, -1, NULL);
	int a = 0, b = 0;

	retry_dead_first(p, &a, &b);
	ck_assert_int_eq(a, 15);
	ck_assert_int_eq(b, 15);
	pool_destroy(p);
}
END_TEST

/* The same for weighted_round_robin, whose retries now keep their turn too (with a fresh
 * turn per retry this case happened to come out even as well). */
START_TEST(test_weighted_round_robin_retries_keep_the_rotation_fair)
{
	struct pool *p = t_pool_make("weighted_round_robin", "b", 3, -1, NULL);
	int a = 0, b = 0;

	retry_dead_first(p, &a, &b);
	ck_assert_int_eq(a, 15);
	ck_assert_int_eq(b, 15);
	pool_destroy(p);
}
END_TEST

/* Slow start's ramp: from 1/16 of a weight-1 backend to all of it, linear, never 0. */
START_TEST(test_slow_start_ramp_weight)
{
	ck_assert_int_eq(backend_ramp_weight(1, 0, 30000), 1);
	ck_assert_int_eq(backend_ramp_weight(1, 15000, 30000), BACKEND_WEIGHT_SCALE / 2);
	ck_assert_int_eq(backend_ramp_weight(10, 3000, 30000), 10 * BACKEND_WEIGHT_SCALE / 10);
	ck_assert_int_eq(backend_ramp_weight(10, 30000, 30000), 10 * BACKEND_WEIGHT_SCALE);
	ck_assert_int_eq(backend_ramp_weight(10, 99999, 30000), 10 * BACKEND_WEIGHT_SCALE);
	ck_assert_int_eq(backend_ramp_weight(1000, 1, 1000000), 1);
	ck_assert_int_eq(backend_ramp_weight(1000, 1000, 1000000), 16);
}
END_TEST

/* weighted_round_robin follows a ramping backend's effective weight: b0 at a quarter of its
 * weight 1 (4 of 16) against b1 at full weight gets 1 pick in 5. */
START_TEST(test_weighted_round_robin_follows_the_ramp)
{
	struct pool *p = t_pool_make("weighted_round_robin", "b", 2, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[2] = {0};

	atomic_store(&p->backends[0]->slow_start_ms, 1000);
	atomic_store(&p->backends[0]->ramp_start_ms, 1);
	atomic_store(&p->backends[0]->ramp_weight, BACKEND_WEIGHT_SCALE / 4);
	ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	pick_n(p, &ctx, 200, counts);
	ck_assert_int_eq(counts[0], 40);
	ck_assert_int_eq(counts[1], 160);
	pool_destroy(p);
}
END_TEST

/* Marked down (not merely refusing), a backend's share goes to the others by weight, not to
 * its neighbour in the sequence: weights 1:1:2 with the first down give 1:2 of 30. */
START_TEST(test_weighted_round_robin_spreads_a_down_backends_turns_by_weight)
{
	static const int w[] = {1, 1, 2};
	struct pool *p = t_pool_make("weighted_round_robin", "b", 3, -1, w);
	struct pick_ctx ctx = {0};
	int counts[3] = {0};

	atomic_store(&p->backends[0]->health, BACKEND_DOWN);
	pick_n(p, &ctx, 300, counts);
	ck_assert_int_eq(counts[0], 0);
	ck_assert_int_ge(counts[1], 90);
	ck_assert_int_le(counts[1], 110);
	pool_destroy(p);
}
END_TEST

/* A rebuild (every health or admin change does one) must not restart the rotation at the
 * first backend: with checks flapping, that would hand b0 extra turns. */
START_TEST(test_round_robin_rotation_survives_rebuilds)
{
	struct pool *p = t_pool_make("round_robin", "b", 3, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[3] = {0};

	for (int i = 0; i < 30; i++) {
		int one[3] = {0};
		pick_n(p, &ctx, 1, one);
		for (int j = 0; j < 3; j++)
			counts[j] += one[j];
		ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	}
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);
	pool_destroy(p);
}
END_TEST

START_TEST(test_round_robin_is_exact_across_threads)
{
	struct pool *p = t_pool_make("round_robin", "b", 3, -1, NULL);
	int counts[3] = {0};

	pick_concurrently(p, 2, 15, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);

	memset(counts, 0, sizeof(counts));
	pick_concurrently(p, 4, 3000, counts);
	ck_assert_int_eq(counts[0], 4000);
	ck_assert_int_eq(counts[1], 4000);
	ck_assert_int_eq(counts[2], 4000);
	pool_destroy(p);
}
END_TEST

/* panic_threshold 50: with 1 of 4 up (25 %) picks go over all four, health ignored, the
 * pool counts one entry into panic; with 2 of 4 up it is out again. Disabled backends stay
 * out in panic too. Threshold 0: no panic, every pick fails with all down. */
START_TEST(test_panic_threshold_balances_over_all_backends)
{
	struct pool *p = t_pool_make("round_robin", "b", 4, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[4] = {0};

	for (int i = 0; i < 4; i++)
		atomic_store(&p->backends[i]->health, BACKEND_DOWN);
	ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	ck_assert_ptr_null(pool_pick(p, &ctx)); /* threshold 0: off */
	ck_assert(!atomic_load(&p->panic));

	atomic_store(&p->panic_threshold, 50);
	atomic_store(&p->backends[0]->health, BACKEND_UP);
	atomic_store(&p->backends[3]->admin, BACKEND_DISABLED);
	ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	ck_assert(atomic_load(&p->panic));
	ck_assert_uint_eq(atomic_load(&p->panic_total), 1);
	pick_n(p, &ctx, 30, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);
	ck_assert_int_eq(counts[3], 0); /* disabled: an operator's decision wins */

	atomic_store(&p->backends[1]->health, BACKEND_UP);
	ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	ck_assert(!atomic_load(&p->panic)); /* 2 of 4 = 50 %: not below */
	memset(counts, 0, sizeof(counts));
	pick_n(p, &ctx, 20, counts);
	ck_assert_int_eq(counts[0] + counts[1], 20);
	ck_assert_uint_eq(atomic_load(&p->panic_total), 1);
	pool_destroy(p);
}
END_TEST

START_TEST(test_round_robin_rotates_over_usable_backends_only)
{
	struct pool *p = t_pool_make("round_robin", "b", 4, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[4] = {0};

	atomic_store(&p->backends[1]->health, BACKEND_DOWN);
	pick_n(p, &ctx, 30, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 0);
	ck_assert_int_eq(counts[2], 10);
	ck_assert_int_eq(counts[3], 10);
	pool_destroy(p);
}
END_TEST

/* ---- weighted_round_robin ---- */

START_TEST(test_weighted_round_robin_gives_each_its_weight)
{
	const int w[] = {1, 2, 3};
	struct pool *p = t_pool_make("weighted_round_robin", "b", 3, -1, w);
	struct pick_ctx ctx = {0};
	int counts[3] = {0};

	pick_n(p, &ctx, 60, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 20);
	ck_assert_int_eq(counts[2], 30);
	pool_destroy(p);
}
END_TEST

START_TEST(test_weighted_round_robin_is_exact_across_threads)
{
	const int w[] = {1, 2, 3};
	struct pool *p = t_pool_make("weighted", "b", 3, -1, w);
	int counts[3] = {0};

	pick_concurrently(p, 2, 30, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 20);
	ck_assert_int_eq(counts[2], 30);

	memset(counts, 0, sizeof(counts));
	pick_concurrently(p, 4, 6000, counts);
	ck_assert_int_eq(counts[0], 4000);
	ck_assert_int_eq(counts[1], 8000);
	ck_assert_int_eq(counts[2], 12000);
	pool_destroy(p);
}
END_TEST

START_TEST(test_weighted_round_robin_interleaves_and_every_window_is_exact)
{
	enum { PICKS = 70, WINDOW = 7 };
	const int w[] = {5, 1, 1};
	struct pool *p = t_pool_make("weighted_round_robin", "b", 3, -1, w);
	struct pick_ctx ctx = {0};
	size_t seq[PICKS];
	int run = 1;

	for (int i = 0; i < PICKS; i++) {
		seq[i] = backend_index(p, pool_pick(p, &ctx));
		run = i > 0 && seq[i] == seq[i - 1] ? run + 1 : 1;
		ck_assert_msg(run < 5, "run of %d picks of b%zu at pick %d", run, seq[i], i);
	}
	for (int start = 0; start + WINDOW <= PICKS; start++) {
		int counts[3] = {0};

		for (int i = start; i < start + WINDOW; i++)
			counts[seq[i]]++;
		ck_assert_int_eq(counts[0], 5);
		ck_assert_int_eq(counts[1], 1);
		ck_assert_int_eq(counts[2], 1);
	}
	pool_destroy(p);
}
END_TEST

START_TEST(test_weighted_round_robin_reads_weights_at_rebuild)
{
	const int w[] = {1, 1};
	struct pool *p = t_pool_make("weighted_round_robin", "b", 2, -1, w);
	struct pick_ctx ctx = {0};
	int counts[2] = {0};

	atomic_store(&p->backends[1]->weight, 3);
	pool_rebuild(p, NULL);
	pick_n(p, &ctx, 40, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 30);
	pool_destroy(p);
}
END_TEST

START_TEST(test_weighted_round_robin_skips_a_down_backend)
{
	const int w[] = {1, 2, 3};
	struct pool *p = t_pool_make("weighted_round_robin", "b", 3, -1, w);
	struct pick_ctx ctx = {0};
	int counts[3] = {0};

	atomic_store(&p->backends[2]->health, BACKEND_DOWN);
	pick_n(p, &ctx, 600, counts);
	ck_assert_int_eq(counts[2], 0);
	ck_assert_int_gt(counts[0], 0);
	ck_assert_int_gt(counts[1], counts[0]);
	pool_destroy(p);
}
END_TEST

START_TEST(test_weighted_round_robin_stays_proportional_above_the_sequence_cap)
{
	enum { N = 70, PICKS = 655360 };
	int w[N], counts[N] = {0}, sum = 0;
	struct pool *p;
	struct pick_ctx ctx = {0};

	/* 1000, 999, ... 931: sum 67585 with gcd 1 passes the 65536-entry cap. */
	for (int i = 0; i < N; i++) {
		w[i] = 1000 - i;
		sum += w[i];
	}
	p = t_pool_make("weighted_round_robin", "b", N, -1, w);
	pick_n(p, &ctx, PICKS, counts);
	for (int i = 0; i < N; i++) {
		double want = (double)PICKS * w[i] / sum;

		ck_assert_msg(counts[i] > want * 0.99 && counts[i] < want * 1.01,
			      "weight %d: %d picks, want %.0f", w[i], counts[i], want);
	}
	pool_destroy(p);
}
END_TEST

/* ---- least_conn ---- */

START_TEST(test_least_conn_prefers_fewer_active_per_weight)
{
	const int w[] = {1, 1, 2};
	struct pool *p = t_pool_make("least_conn", "b", 3, -1, w);
	struct pick_ctx ctx = {0};

	atomic_store(&p->backends[0]->active, 5);
	atomic_store(&p->backends[1]->active, 3);
	atomic_store(&p->backends[2]->active, 8); /* 8/2 = 4 per unit of weight */
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[1]);
	atomic_store(&p->backends[2]->active, 4); /* 4/2 = 2: now the lightest */
	for (int i = 0; i < 10; i++)
		ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[2]);
	pool_destroy(p);
}
END_TEST

START_TEST(test_least_conn_breaks_ties_by_rotation)
{
	struct pool *p = t_pool_make("least_conn", "b", 3, -1, NULL);
	int counts[3] = {0};

	pick_concurrently(p, 2, 15, counts);
	ck_assert_int_eq(counts[0], 10);
	ck_assert_int_eq(counts[1], 10);
	ck_assert_int_eq(counts[2], 10);
	pool_destroy(p);
}
END_TEST

START_TEST(test_least_conn_follows_connections_as_they_open)
{
	struct pool *p = t_pool_make("least_conn", "b", 3, -1, NULL);
	struct pick_ctx ctx = {0};

	/* Every connection stays open: least_conn must fill the backends evenly. */
	for (int i = 0; i < 30; i++)
		ck_assert(backend_take(pool_pick(p, &ctx)));
	for (size_t i = 0; i < 3; i++)
		ck_assert_int_eq(atomic_load(&p->backends[i]->active), 10);
	pool_destroy(p);
}
END_TEST

/* ---- random_two ---- */

START_TEST(test_random_two_never_returns_an_unusable_or_tried_backend)
{
	const int w[] = {1, 1, 1, 1, 0, 1, 1, 1};
	struct pool *p = t_pool_make("random_two", "b", 8, -1, w);
	struct backend *tried[] = {p->backends[5]};
	struct pick_ctx ctx = {.tried = tried, .ntried = 1};
	int counts[8] = {0};

	atomic_store(&p->backends[0]->admin, BACKEND_DISABLED);
	atomic_store(&p->backends[1]->health, BACKEND_DOWN);
	atomic_store(&p->backends[2]->max_conns, 1);
	ck_assert(backend_take(p->backends[2])); /* now full */
	atomic_store(&p->backends[3]->admin, BACKEND_DRAINING);
	pick_n(p, &ctx, 10000, counts);
	for (int i = 0; i < 6; i++)
		ck_assert_msg(counts[i] == 0, "b%d picked %d times", i, counts[i]);
	ck_assert_int_gt(counts[6], 0);
	ck_assert_int_gt(counts[7], 0);
	ck_assert_int_eq(counts[6] + counts[7], 10000);
	pool_destroy(p);
}
END_TEST

START_TEST(test_random_two_takes_the_lighter_of_two)
{
	struct pool *p = t_pool_make("random_two", "b", 2, -1, NULL);
	struct pick_ctx ctx = {0};

	/* With two allowed backends both are always drawn, so the lighter always wins. */
	atomic_store(&p->backends[0]->active, 7);
	for (int i = 0; i < 1000; i++)
		ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[1]);
	pool_destroy(p);
}
END_TEST

START_TEST(test_random_two_returns_the_only_allowed_backend)
{
	struct pool *p = t_pool_make("random_two", "b", 5, -1, NULL);
	struct pick_ctx ctx = {0};

	for (size_t i = 0; i < 5; i++)
		if (i != 3)
			atomic_store(&p->backends[i]->health, BACKEND_DOWN);
	for (int i = 0; i < 1000; i++)
		ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[3]);
	pool_destroy(p);
}
END_TEST

START_TEST(test_random_two_spreads_load_across_threads)
{
	struct pool *p = t_pool_make("random_two", "b", 4, -1, NULL);
	int counts[4] = {0};

	pick_concurrently(p, 4, 5000, counts);
	for (int i = 0; i < 4; i++)
		ck_assert_int_gt(counts[i], 20000 / 4 / 2);
	pool_destroy(p);
}
END_TEST

/* ---- rules every algorithm follows (loop tests: _i indexes all_algorithms) ---- */

START_TEST(test_pick_never_returns_a_tried_backend)
{
	struct pool *p = t_pool_make(all_algorithms[_i], "b", 4, -1, NULL);
	struct backend *tried[] = {p->backends[0], p->backends[2]};
	struct pick_ctx ctx = {.tried = tried, .ntried = 2};

	for (uint32_t i = 0; i < 2000; i++) {
		struct backend *b;

		ctx.hash = i * 2654435761u;
		b = pool_pick(p, &ctx);
		ck_assert_ptr_nonnull(b);
		ck_assert(b != p->backends[0] && b != p->backends[2]);
	}
	pool_destroy(p);
}
END_TEST

START_TEST(test_weight_zero_gets_nothing)
{
	const int w[] = {0, 1, 0, 2};
	struct pool *p = t_pool_make(all_algorithms[_i], "b", 4, -1, w);
	struct pick_ctx ctx = {0};

	for (uint32_t i = 0; i < 2000; i++) {
		struct backend *b;

		ctx.hash = i * 2654435761u;
		b = pool_pick(p, &ctx);
		ck_assert_ptr_nonnull(b);
		ck_assert(b == p->backends[1] || b == p->backends[3]);
	}
	pool_destroy(p);
}
END_TEST

START_TEST(test_unusable_backends_are_never_picked)
{
	struct pool *p = t_pool_make(all_algorithms[_i], "b", 6, -1, NULL);
	struct pick_ctx ctx = {0};
	int counts[6] = {0};

	atomic_store(&p->backends[0]->health, BACKEND_DOWN);
	atomic_store(&p->backends[1]->admin, BACKEND_DISABLED);
	atomic_store(&p->backends[2]->admin, BACKEND_DRAINING);
	atomic_store(&p->backends[3]->max_conns, 2);
	atomic_store(&p->backends[3]->active, 2);
	for (uint32_t i = 0; i < 2000; i++) {
		ctx.hash = i * 2654435761u;
		pick_n(p, &ctx, 1, counts);
	}
	ck_assert_int_eq(counts[0] + counts[1] + counts[2] + counts[3], 0);
	ck_assert_int_gt(counts[4], 0);
	ck_assert_int_gt(counts[5], 0);
	pool_destroy(p);
}
END_TEST

START_TEST(test_pick_returns_null_when_nothing_is_allowed)
{
	struct pool *p = t_pool_make(all_algorithms[_i], "b", 3, -1, NULL);
	struct pool *empty = t_pool_make(all_algorithms[_i], "b", 0, -1, NULL);
	struct pick_ctx ctx = {.hash = 12345};

	for (size_t i = 0; i < 3; i++)
		atomic_store(&p->backends[i]->health, BACKEND_DOWN);
	ck_assert_ptr_null(pool_pick(p, &ctx));
	ck_assert_ptr_null(pool_pick(empty, &ctx));
	pool_destroy(p);
	pool_destroy(empty);
}
END_TEST

START_TEST(test_pool_pick_uses_backups_only_when_no_primary_is_allowed)
{
	struct t_pool_cfg t;
	struct pool *p;
	struct pick_ctx ctx = {0};

	t_pool_cfg_init(&t, all_algorithms[_i], "b", 4, -1, NULL);
	t.be[2].backup = true;
	t.be[3].backup = true;
	p = pool_create(&t.cp);
	ck_assert_ptr_nonnull(p);

	for (uint32_t i = 0; i < 500; i++) {
		ctx.hash = i * 2654435761u;
		ck_assert(!pool_pick(p, &ctx)->backup);
	}
	atomic_store(&p->backends[0]->health, BACKEND_DOWN);
	for (uint32_t i = 0; i < 500; i++) {
		ctx.hash = i * 2654435761u;
		ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[1]);
	}
	atomic_store(&p->backends[1]->admin, BACKEND_DISABLED);
	for (uint32_t i = 0; i < 500; i++) {
		ctx.hash = i * 2654435761u;
		ck_assert(pool_pick(p, &ctx)->backup);
	}
	pool_destroy(p);
}
END_TEST

START_TEST(test_retry_falls_to_backups_once_every_primary_was_tried)
{
	struct t_pool_cfg t;
	struct pool *p;
	struct backend *tried[2];
	struct pick_ctx ctx = {.tried = tried, .ntried = 2};

	t_pool_cfg_init(&t, all_algorithms[_i], "b", 3, -1, NULL);
	t.be[2].backup = true;
	p = pool_create(&t.cp);
	ck_assert_ptr_nonnull(p);
	tried[0] = p->backends[0];
	tried[1] = p->backends[1];
	ck_assert_ptr_eq(pool_pick(p, &ctx), p->backends[2]);
	pool_destroy(p);
}
END_TEST

/* ---- pool ---- */

START_TEST(test_pool_create_copies_the_config)
{
	struct t_pool_cfg t;
	struct pool *p;

	t_pool_cfg_init(&t, "least_conn", "b", 2, -1, NULL);
	t.cp.health.type = "http";
	t.cp.health.path = "/healthz";
	t.be[1].max_conns = 7;
	t.be[1].weight = 4;
	p = pool_create(&t.cp);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_eq(p->algorithm, &algorithm_least_conn);
	ck_assert_str_eq(p->health.type, "http");
	ck_assert_ptr_ne(p->health.type, t.cp.health.type);
	ck_assert_str_eq(p->health.path, "/healthz");
	ck_assert_ptr_ne(p->health.path, t.cp.health.path);
	ck_assert_ptr_null(p->health.send);
	ck_assert_uint_eq(p->nbackends, 2);
	ck_assert_str_eq(p->backends[1]->name, "b1");
	ck_assert_ptr_ne(p->backends[1]->name, t.names[1]);
	ck_assert_ptr_eq(p->backends[1]->pool, p);
	ck_assert_int_eq(atomic_load(&p->backends[1]->max_conns), 7);
	ck_assert_int_eq(atomic_load(&p->backends[1]->weight), 4);
	ck_assert_int_eq(atomic_load(&p->backends[0]->admin), BACKEND_ENABLED);
	pool_destroy(p);
}
END_TEST

START_TEST(test_backends_start_up_only_without_active_health_checks)
{
	struct t_pool_cfg t;
	struct pool *p;

	t_pool_cfg_init(&t, "round_robin", "b", 1, -1, NULL);
	p = pool_create(&t.cp);
	ck_assert_int_eq(atomic_load(&p->backends[0]->health), BACKEND_UP);
	pool_destroy(p);

	t.cp.health.type = "tcp";
	p = pool_create(&t.cp);
	ck_assert_int_eq(atomic_load(&p->backends[0]->health), BACKEND_UNKNOWN);
	ck_assert(backend_usable(p->backends[0])); /* unknown is usable until the first check */
	pool_destroy(p);
}
END_TEST

START_TEST(test_pool_rebuild_publishes_a_new_snapshot_and_retires_the_old)
{
	struct pool *p = t_pool_make("ip_hash", "b", 3, -1, NULL);
	struct pool_snapshot *first = atomic_load(&p->snap);
	struct qsbr q;

	/* One reader, online and never quiescent: the old snapshot must wait for it. */
	qsbr_init(&q, 1);
	qsbr_online(&q, 0);
	ck_assert_int_eq(pool_rebuild(p, &q), 0);
	ck_assert_ptr_ne(atomic_load(&p->snap), first);
	ck_assert_int_eq(qsbr_reclaim(&q), 1);
	qsbr_offline(&q, 0);
	ck_assert_int_eq(qsbr_reclaim(&q), 0);

	/* A switched algorithm takes effect at the next rebuild. */
	p->algorithm = &algorithm_least_conn;
	ck_assert_int_eq(pool_rebuild(p, NULL), 0);
	ck_assert_ptr_eq(atomic_load(&p->snap)->alg, &algorithm_least_conn);
	qsbr_destroy(&q);
	pool_destroy(p);
}
END_TEST

struct rebuilder {
	struct pool *p;
	struct qsbr *q;
};

static void *rebuilder_run(void *arg)
{
	struct rebuilder *r = arg;

	for (int i = 0; i < 200; i++) {
		atomic_store(&r->p->backends[i % 4]->weight, 1 + i % 3);
		pool_rebuild(r->p, r->q);
	}
	return NULL;
}

START_TEST(test_picks_race_safely_with_rebuilds)
{
	const char *alg = all_algorithms[_i];
	struct pool *p = t_pool_make(alg, "b", 4, -1, NULL);
	struct qsbr q;
	struct rebuilder r = {.p = p, .q = &q};
	pthread_t thread;
	int counts[4] = {0};

	/* The pickers are one QSBR reader that stays online until they have joined, so every
	 * retired snapshot must still be there for them (ASan/TSan would catch a free). */
	qsbr_init(&q, 1);
	qsbr_online(&q, 0);
	ck_assert_int_eq(pthread_create(&thread, NULL, rebuilder_run, &r), 0);
	pick_concurrently(p, 2, 20000, counts);
	pthread_join(thread, NULL);
	ck_assert_int_eq(counts[0] + counts[1] + counts[2] + counts[3], 40000);
	ck_assert_int_eq(qsbr_reclaim(&q), 200);
	qsbr_offline(&q, 0);
	ck_assert_int_eq(qsbr_reclaim(&q), 0);
	qsbr_destroy(&q);
	pool_destroy(p);
}
END_TEST

/* ---- connection counters ---- */

START_TEST(test_backend_take_respects_max_conns)
{
	struct pool *p = t_pool_make("round_robin", "b", 1, -1, NULL);
	struct backend *b = p->backends[0];

	atomic_store(&b->max_conns, 2);
	ck_assert(backend_take(b));
	ck_assert(backend_take(b));
	ck_assert(!backend_take(b));
	ck_assert_int_eq(atomic_load(&b->active), 2);
	ck_assert_uint_eq(atomic_load(&b->total), 2);
	ck_assert(!backend_usable(b));
	backend_release(b);
	ck_assert(backend_usable(b));
	ck_assert(backend_take(b));
	ck_assert_uint_eq(atomic_load(&b->total), 3);
	pool_destroy(p);
}
END_TEST

struct taker {
	pthread_t thread;
	struct backend *b;
	int won;
};

static void *taker_run(void *arg)
{
	struct taker *t = arg;

	for (int i = 0; i < 1000; i++)
		if (backend_take(t->b))
			t->won++;
	return NULL;
}

START_TEST(test_backend_take_never_overshoots_max_conns_across_threads)
{
	struct pool *p = t_pool_make("round_robin", "b", 1, -1, NULL);
	struct taker t[4];
	int won = 0;

	atomic_store(&p->backends[0]->max_conns, 100);
	for (int i = 0; i < 4; i++) {
		t[i] = (struct taker){.b = p->backends[0]};
		ck_assert_int_eq(pthread_create(&t[i].thread, NULL, taker_run, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i].thread, NULL);
		won += t[i].won;
	}
	ck_assert_int_eq(won, 100);
	ck_assert_int_eq(atomic_load(&p->backends[0]->active), 100);
	ck_assert_uint_eq(atomic_load(&p->backends[0]->total), 100);
	pool_destroy(p);
}
END_TEST

static Suite *algorithms_suite(void)
{
	Suite *s = suite_create("algorithms");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_registry_resolves_every_listed_name_and_the_alias);
	tcase_add_test(tc, test_pool_create_refuses_an_unknown_algorithm);
	tcase_add_test(tc, test_round_robin_is_exact);
	tcase_add_test(tc, test_round_robin_retries_keep_the_rotation_fair);
	tcase_add_test(tc, test_weighted_round_robin_retries_keep_the_rotation_fair);
	tcase_add_test(tc, test_slow_start_ramp_weight);
	tcase_add_test(tc, test_weighted_round_robin_follows_the_ramp);
	tcase_add_test(tc, test_weighted_round_robin_spreads_a_down_backends_turns_by_weight);
	tcase_add_test(tc, test_panic_threshold_balances_over_all_backends);
	tcase_add_test(tc, test_round_robin_rotation_survives_rebuilds);
	tcase_add_test(tc, test_round_robin_is_exact_across_threads);
	tcase_add_test(tc, test_round_robin_rotates_over_usable_backends_only);
	tcase_add_test(tc, test_weighted_round_robin_gives_each_its_weight);
	tcase_add_test(tc, test_weighted_round_robin_is_exact_across_threads);
	tcase_add_test(tc, test_weighted_round_robin_interleaves_and_every_window_is_exact);
	tcase_add_test(tc, test_weighted_round_robin_reads_weights_at_rebuild);
	tcase_add_test(tc, test_weighted_round_robin_skips_a_down_backend);
	tcase_add_test(tc, test_weighted_round_robin_stays_proportional_above_the_sequence_cap);
	tcase_add_test(tc, test_least_conn_prefers_fewer_active_per_weight);
	tcase_add_test(tc, test_least_conn_breaks_ties_by_rotation);
	tcase_add_test(tc, test_least_conn_follows_connections_as_they_open);
	tcase_add_test(tc, test_random_two_never_returns_an_unusable_or_tried_backend);
	tcase_add_test(tc, test_random_two_takes_the_lighter_of_two);
	tcase_add_test(tc, test_random_two_returns_the_only_allowed_backend);
	tcase_add_test(tc, test_random_two_spreads_load_across_threads);
	tcase_add_loop_test(tc, test_pick_never_returns_a_tried_backend, 0, NALGORITHMS);
	tcase_add_loop_test(tc, test_weight_zero_gets_nothing, 0, NALGORITHMS);
	tcase_add_loop_test(tc, test_unusable_backends_are_never_picked, 0, NALGORITHMS);
	tcase_add_loop_test(tc, test_pick_returns_null_when_nothing_is_allowed, 0, NALGORITHMS);
	tcase_add_loop_test(tc, test_pool_pick_uses_backups_only_when_no_primary_is_allowed, 0,
			    NALGORITHMS);
	tcase_add_loop_test(tc, test_retry_falls_to_backups_once_every_primary_was_tried, 0,
			    NALGORITHMS);
	tcase_add_test(tc, test_pool_create_copies_the_config);
	tcase_add_test(tc, test_backends_start_up_only_without_active_health_checks);
	tcase_add_test(tc, test_pool_rebuild_publishes_a_new_snapshot_and_retires_the_old);
	tcase_add_loop_test(tc, test_picks_race_safely_with_rebuilds, 0, NALGORITHMS);
	tcase_add_test(tc, test_backend_take_respects_max_conns);
	tcase_add_test(tc, test_backend_take_never_overshoots_max_conns_across_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(algorithms_suite(), CK_NORMAL);
}
