/* Unit tests for ip_hash's Maglev table (M = 65537): balance of table slots, weight-awareness,
 * disruption when a backend is removed, and that a backend becoming unusable moves its own
 * clients only. Slot counts are measured through pool_pick() with hash = 0..M-1, which visits
 * every table entry exactly once. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/algorithm.h"
#include "lb/pool.h"
#include "support.h"

/* The table size ip_hash promises (DESIGN.md "Tests"). */
#define MAGLEV_M 65537u
#define MAX_N	 100
#define NKEYS	 100000
/* Largest N for which removal must stay within 1.2/N at M = 65537 (see the test below). */
#define MAGLEV_TIGHT_N 40
/* Measured ceiling of removal disruption for 40 < N <= 100 at M = 65537 (worst: 1.55/N). */
#define MAGLEV_LOOSE_BOUND 1.6
/* Any fixed non-zero seed: the key set must be the same on every run. */
#define KEY_SEED 0x2545f4914f6cdd1dull

static uint32_t keys[NKEYS];

static void keys_init(void)
{
	uint64_t x = KEY_SEED;

	for (size_t i = 0; i < NKEYS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		keys[i] = (uint32_t)(x >> 32);
	}
}

/* An ip_hash pool of n backends named "backend-<i>", leaving out backend `skip` (-1: none),
 * so that the same name keeps the same identity across pools. weights may be NULL (all 1). */
static struct pool *maglev_pool(int n, int skip, const int *weights)
{
	return t_pool_make("ip_hash", "backend-", n, skip, weights);
}

/* The i in "backend-<i>": identity across pools built with different members; -1 for NULL.
 * (Hot loops avoid ck_assert: Check logs every passing assertion through a file.) */
static int backend_id(const struct backend *b)
{
	return b ? atoi(b->name + strlen("backend-")) : -1;
}

static int pick_id(struct pool *p, uint32_t hash)
{
	struct pick_ctx ctx = {.hash = hash};

	return backend_id(pool_pick(p, &ctx));
}

/* Table slots per backend id, by visiting every slot once. */
static void count_slots(struct pool *p, int *slots, int n)
{
	int misses = 0;

	memset(slots, 0, (size_t)n * sizeof(*slots));
	for (uint32_t h = 0; h < MAGLEV_M; h++) {
		int id = pick_id(p, h);

		if (id < 0 || id >= n)
			misses++;
		else
			slots[id]++;
	}
	ck_assert_int_eq(misses, 0);
}

START_TEST(test_maglev_balances_equal_weights_within_five_percent)
{
	int slots[MAX_N];
	double worst = 0;

	for (int n = 3; n <= MAX_N; n++) {
		struct pool *p = maglev_pool(n, -1, NULL);
		double mean = (double)MAGLEV_M / n;
		int max = 0;

		count_slots(p, slots, n);
		for (int i = 0; i < n; i++) {
			ck_assert_int_gt(slots[i], 0);
			if (slots[i] > max)
				max = slots[i];
		}
		if (max / mean > worst)
			worst = max / mean;
		ck_assert_msg(max / mean <= 1.05, "N=%d: max/mean %.4f", n, max / mean);
		pool_destroy(p);
	}
	fprintf(stderr, "maglev balance: worst max/mean over N=3..%d is %.4f\n", MAX_N, worst);
}
END_TEST

/* Each backend's share of the table is weight/sum(weights), within 3% of itself. */
static void assert_shares_follow(const int *weights, int n)
{
	struct pool *p = maglev_pool(n, -1, weights);
	int slots[MAX_N];
	int sum = 0;

	for (int i = 0; i < n; i++)
		sum += weights[i];
	count_slots(p, slots, n);
	for (int i = 0; i < n; i++) {
		double want = (double)weights[i] / sum;
		double got = (double)slots[i] / MAGLEV_M;

		ck_assert_msg(got >= want * 0.97 && got <= want * 1.03,
			      "weight %d of %d: share %.4f, want %.4f", weights[i], sum, got, want);
	}
	pool_destroy(p);
}

START_TEST(test_maglev_shares_follow_weights)
{
	const int one_two[] = {1, 2};
	const int one_two_three[] = {1, 2, 3};
	const int skewed[] = {1, 5, 10, 1000};

	assert_shares_follow(one_two, 2);
	assert_shares_follow(one_two_three, 3);
	assert_shares_follow(skewed, 4);
}
END_TEST

START_TEST(test_maglev_leaves_weight_zero_out_of_the_table)
{
	const int w[] = {1, 0, 1};
	struct pool *p = maglev_pool(3, -1, w);
	int slots[3];

	count_slots(p, slots, 3);
	ck_assert_int_eq(slots[1], 0);
	ck_assert_int_eq(slots[0] + slots[2], MAGLEV_M);
	pool_destroy(p);
}
END_TEST

START_TEST(test_same_client_keeps_its_backend_across_rebuilds)
{
	struct pool *a = maglev_pool(20, -1, NULL);
	struct pool *b = maglev_pool(20, -1, NULL);
	int before[1000];

	for (int i = 0; i < 1000; i++)
		before[i] = pick_id(a, keys[i]);
	pool_rebuild(a, NULL);
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_ge(before[i], 0);
		ck_assert_int_eq(pick_id(a, keys[i]), before[i]);
		ck_assert_int_eq(pick_id(b, keys[i]), before[i]);
	}
	pool_destroy(a);
	pool_destroy(b);
}
END_TEST

/* Removing one of N backends (rebuild with N-1) should remap between 1/N of the keys (its own,
 * the minimum) and 1.2/N. Maglev meets 1.2/N at M = 65537 only while N is small against M:
 * measured, every N <= 46 is within it, and above that the extra movement grows with N/M
 * (worst 1.55/N at N = 93; M = 655373 would be needed for 1.2/N up to 100). So the bound is
 * 1.2/N for N <= MAGLEV_TIGHT_N and the measured ceiling 1.6/N above it (docs/ALGORITHMS.md).
 * The lower bound allows 3 standard deviations of sampling noise: the
 * removed backend's own share of 100,000 random keys is Binomial(K, 1/N), so in units of 1/N
 * it has sd sqrt((N-1)/K). Every failing N is collected so that one run shows them all. */
START_TEST(test_removing_one_of_n_backends_remaps_about_one_nth_of_keys)
{
	char failures[4096] = "";
	size_t used = 0;
	double lo = 10, hi = 0;

	for (int n = 3; n <= MAX_N; n++) {
		int gone = n / 2;
		struct pool *all = maglev_pool(n, -1, NULL);
		struct pool *rest = maglev_pool(n, gone, NULL);
		int moved = 0, bad = 0;
		double f;

		for (size_t i = 0; i < NKEYS; i++) {
			int was = pick_id(all, keys[i]);
			int now = pick_id(rest, keys[i]);

			if (was < 0 || now < 0 || now == gone)
				bad++;
			else if (now != was)
				moved++;
		}
		ck_assert_int_eq(bad, 0);
		f = (double)moved / NKEYS * n; /* in units of 1/N */
		lo = f < lo ? f : lo;
		hi = f > hi ? f : hi;
		if ((f < 1.0 - 3 * sqrt((n - 1.0) / NKEYS) ||
		     f > (n <= MAGLEV_TIGHT_N ? 1.2 : MAGLEV_LOOSE_BOUND)) &&
		    used < sizeof(failures) - 32)
			used += (size_t)snprintf(failures + used, sizeof(failures) - used,
						 " N=%d:%.3f", n, f);
		pool_destroy(all);
		pool_destroy(rest);
	}
	fprintf(stderr, "maglev disruption: removing 1 of N moves %.3f/N .. %.3f/N of keys\n", lo,
		hi);
	ck_assert_msg(
	    used == 0,
	    "moved keys outside [1/N, 1.2/N] (N <= %d) or [1/N, %.1f/N] (in units of 1/N):%s",
	    MAGLEV_TIGHT_N, MAGLEV_LOOSE_BOUND, failures);
}
END_TEST

/* Ways a backend can become unusable; _i of the loop test below. */
static void make_unusable(struct backend *b, int how)
{
	switch (how) {
	case 0:
		atomic_store(&b->health, BACKEND_DOWN);
		break;
	case 1:
		atomic_store(&b->admin, BACKEND_DISABLED);
		break;
	default:
		atomic_store(&b->max_conns, 1);
		atomic_store(&b->active, 1);
		break;
	}
}

START_TEST(test_an_unusable_backend_moves_only_its_own_keys)
{
	enum { N = 10, GONE = 3 };
	static int before[NKEYS];
	struct pool *p = maglev_pool(N, -1, NULL);
	int got[N] = {0};
	int moved = 0, others_moved = 0, stayed = 0, max = 0, min = NKEYS;

	for (size_t i = 0; i < NKEYS; i++)
		before[i] = pick_id(p, keys[i]);
	make_unusable(p->backends[GONE], _i);
	pool_rebuild(p, NULL); /* what the prober does; must not matter */
	for (size_t i = 0; i < NKEYS; i++) {
		int now = pick_id(p, keys[i]);

		if (before[i] != GONE) {
			others_moved += now != before[i];
		} else if (now < 0 || now == GONE) {
			stayed++;
		} else {
			got[now]++;
			moved++;
		}
	}
	ck_assert_int_eq(others_moved, 0); /* exactly zero other keys move */
	ck_assert_int_eq(stayed, 0);
	for (int i = 0; i < N; i++) {
		if (i == GONE)
			continue;
		max = got[i] > max ? got[i] : max;
		min = got[i] < min ? got[i] : min;
	}
	/* Its keys spread over the nine others about evenly. */
	ck_assert_int_gt(moved, NKEYS / N / 2);
	ck_assert_msg(max <= moved / (N - 1) * 1.2 && min >= moved / (N - 1) * 0.8,
		      "moved keys spread unevenly: %d..%d of %d", min, max, moved);
	pool_destroy(p);
}
END_TEST

START_TEST(test_keys_return_when_the_backend_comes_back)
{
	static int before[NKEYS];
	struct pool *p = maglev_pool(10, -1, NULL);

	int moved = 0;

	for (size_t i = 0; i < NKEYS; i++)
		before[i] = pick_id(p, keys[i]);
	atomic_store(&p->backends[7]->health, BACKEND_DOWN);
	pool_rebuild(p, NULL);
	atomic_store(&p->backends[7]->health, BACKEND_UP);
	pool_rebuild(p, NULL);
	for (size_t i = 0; i < NKEYS; i++)
		moved += pick_id(p, keys[i]) != before[i];
	ck_assert_int_eq(moved, 0);
	pool_destroy(p);
}
END_TEST

START_TEST(test_a_tried_backend_moves_the_client_deterministically)
{
	struct pool *p = maglev_pool(10, -1, NULL);

	for (size_t i = 0; i < 1000; i++) {
		struct pick_ctx ctx = {.hash = keys[i]};
		struct backend *first = pool_pick(p, &ctx);
		struct backend *tried[] = {first};
		struct pick_ctx retry = {.hash = keys[i], .tried = tried, .ntried = 1};
		struct backend *second = pool_pick(p, &retry);

		ck_assert_ptr_nonnull(second);
		ck_assert_ptr_ne(second, first);
		ck_assert_ptr_eq(pool_pick(p, &retry), second);
	}
	pool_destroy(p);
}
END_TEST

START_TEST(test_clients_still_land_when_most_backends_are_down)
{
	struct pool *p = maglev_pool(10, -1, NULL);
	int elsewhere = 0;

	for (int i = 0; i < 9; i++)
		atomic_store(&p->backends[i]->health, BACKEND_DOWN);
	for (size_t i = 0; i < NKEYS; i++)
		elsewhere += pick_id(p, keys[i]) != 9;
	ck_assert_int_eq(elsewhere, 0);
	pool_destroy(p);
}
END_TEST

static Suite *maglev_suite(void)
{
	Suite *s = suite_create("maglev");
	TCase *tc = tcase_create("core");

	/* Building ~200 tables is slow under sanitizers. */
	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, keys_init, NULL);
	tcase_add_test(tc, test_maglev_balances_equal_weights_within_five_percent);
	tcase_add_test(tc, test_maglev_shares_follow_weights);
	tcase_add_test(tc, test_maglev_leaves_weight_zero_out_of_the_table);
	tcase_add_test(tc, test_same_client_keeps_its_backend_across_rebuilds);
	tcase_add_test(tc, test_removing_one_of_n_backends_remaps_about_one_nth_of_keys);
	tcase_add_loop_test(tc, test_an_unusable_backend_moves_only_its_own_keys, 0, 3);
	tcase_add_test(tc, test_keys_return_when_the_backend_comes_back);
	tcase_add_test(tc, test_a_tried_backend_moves_the_client_deterministically);
	tcase_add_test(tc, test_clients_still_land_when_most_backends_are_down);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(maglev_suite(), CK_NORMAL);
}
