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

/* ---- a fleet: tables that agree across instances (docs/FLEET.md) ---- */

#define FLEET_N_MAX 16

/* An ip_hash pool over backends 10.0.<net[i]>.<i+1>:5432 (net NULL: all 0) listed in the
 * order order[0..n) and named prefix<i>; keys[i] is backend i's hash_key (NULL: none, so the
 * address is the key). The backend's identity is the last octet of its address. */
static struct pool *fleet_pool(int n, const int *order, const char *prefix,
			       const char *const *keys_, const int *net, const int *weights)
{
	struct t_pool_cfg t;
	char addrs[FLEET_N_MAX][32];
	const char *why = "";

	ck_assert_int_le(n, FLEET_N_MAX);
	t_pool_cfg_init(&t, "ip_hash", prefix, n, -1, NULL);
	for (int k = 0; k < n; k++) {
		int i = order ? order[k] : k;
		struct cfg_backend *b = &t.be[k];

		snprintf(t.names[k], sizeof(t.names[k]), "%s%d", prefix, i);
		snprintf(addrs[k], sizeof(addrs[k]), "10.0.%d.%d:5432", net ? net[i] : 0, i + 1);
		ck_assert_int_eq(addr_parse_numeric(addrs[k], &b->addr, &why), 0);
		b->name = t.names[k];
		b->address = addrs[k];
		b->hash_key = keys_ ? (char *)keys_[i] : NULL;
		b->weight = weights ? weights[i] : 1;
	}
	struct pool *p = pool_create(&t.cp);
	ck_assert_ptr_nonnull(p);
	return p;
}

static int addr_id(const struct backend *b)
{
	const char *dot = b ? strrchr(b->address, '.') : NULL;

	return dot ? atoi(dot + 1) - 1 : -1;
}

static int fleet_pick(struct pool *p, uint32_t hash)
{
	struct pick_ctx ctx = {.hash = hash};

	return addr_id(pool_pick(p, &ctx));
}

/* Picks that differ between a and b over every table slot. */
static int disagreements(struct pool *a, struct pool *b)
{
	int differ = 0;

	for (uint32_t h = 0; h < MAGLEV_M; h++)
		differ += fleet_pick(a, h) != fleet_pick(b, h);
	return differ;
}

static void assert_same_fingerprint(struct pool *a, struct pool *b)
{
	char fa[16], fb[16];

	ck_assert(pool_fingerprint(a, fa, sizeof(fa)));
	ck_assert(pool_fingerprint(b, fb, sizeof(fb)));
	ck_assert_str_eq(fa, fb);
}

START_TEST(test_table_depends_on_the_key_set_not_on_order_or_names)
{
	static const int sizes[] = {1, 2, 3, 5, 8, 13, 16};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int n = sizes[k], rev[FLEET_N_MAX], shuf[FLEET_N_MAX];

		for (int i = 0; i < n; i++) {
			rev[i] = n - 1 - i;
			shuf[i] = (i * 7 + 3) % n; /* 7 is prime to every n here but 7, 14 */
		}
		if (n % 7 == 0)
			memcpy(shuf, rev, sizeof(rev));
		struct pool *a = fleet_pool(n, NULL, "b", NULL, NULL, NULL);
		struct pool *b = fleet_pool(n, rev, "other-name-", NULL, NULL, NULL);
		struct pool *c = fleet_pool(n, shuf, "x", NULL, NULL, NULL);

		ck_assert_msg(disagreements(a, b) == 0, "N=%d: reversed order disagrees", n);
		ck_assert_msg(disagreements(a, c) == 0, "N=%d: shuffled, renamed disagrees", n);
		assert_same_fingerprint(a, b);
		assert_same_fingerprint(a, c);
		pool_destroy(a);
		pool_destroy(b);
		pool_destroy(c);
	}
}
END_TEST

START_TEST(test_hash_key_keeps_slots_when_a_backend_is_renumbered)
{
	static const char *const keys_[] = {"pg-a", "pg-b", "pg-c", "pg-d", "pg-e"};
	static const int renumbered[] = {0, 0, 7, 0, 0}; /* backend 2 moves to 10.0.7.3 */
	struct pool *a = fleet_pool(5, NULL, "b", keys_, NULL, NULL);
	struct pool *b = fleet_pool(5, NULL, "b", keys_, renumbered, NULL);
	struct pool *plain_a = fleet_pool(5, NULL, "b", NULL, NULL, NULL);
	struct pool *plain_b = fleet_pool(5, NULL, "b", NULL, renumbered, NULL);
	char fa[16], fb[16];

	ck_assert_int_eq(disagreements(a, b), 0);
	assert_same_fingerprint(a, b);
	/* Keyed by address, a new address is a new backend: its table differs. */
	ck_assert_int_gt(disagreements(plain_a, plain_b), 0);
	ck_assert(pool_fingerprint(plain_a, fa, sizeof(fa)));
	ck_assert(pool_fingerprint(plain_b, fb, sizeof(fb)));
	ck_assert_str_ne(fa, fb);
	pool_destroy(a);
	pool_destroy(b);
	pool_destroy(plain_a);
	pool_destroy(plain_b);
}
END_TEST

START_TEST(test_fingerprint_follows_the_table_not_the_health)
{
	static const int heavier[] = {1, 1, 3, 1, 1};
	struct pool *a = fleet_pool(5, NULL, "b", NULL, NULL, NULL);
	struct pool *w = fleet_pool(5, NULL, "b", NULL, NULL, heavier);
	struct pool *four = fleet_pool(4, NULL, "b", NULL, NULL, NULL);
	char fa[16], fw[16], f4[16], fdown[16];

	ck_assert(pool_fingerprint(a, fa, sizeof(fa)));
	ck_assert(pool_fingerprint(w, fw, sizeof(fw)));
	ck_assert(pool_fingerprint(four, f4, sizeof(f4)));
	ck_assert_str_ne(fa, fw);
	ck_assert_str_ne(fa, f4);
	ck_assert_uint_eq(strlen(fa), 8);
	atomic_store(&a->backends[1]->health, BACKEND_DOWN);
	pool_rebuild(a, NULL);
	ck_assert(pool_fingerprint(a, fdown, sizeof(fdown)));
	ck_assert_str_eq(fa, fdown);
	/* Algorithms without a table have no fingerprint. */
	struct pool *rr = t_pool_make("round_robin", "b", 3, -1, NULL);
	ck_assert(!pool_fingerprint(rr, fa, sizeof(fa)));
	pool_destroy(rr);
	pool_destroy(a);
	pool_destroy(w);
	pool_destroy(four);
}
END_TEST

/* One verdict, many instances: the same backend down everywhere moves the same clients to
 * the same places, retries included, whatever each instance's config order. */
START_TEST(test_a_down_backend_moves_clients_alike_on_every_instance)
{
	static const int rev[] = {5, 4, 3, 2, 1, 0};
	struct pool *a = fleet_pool(6, NULL, "b", NULL, NULL, NULL);
	struct pool *b = fleet_pool(6, rev, "zz", NULL, NULL, NULL);
	int moved = 0;

	for (size_t i = 0; i < 6; i++) {
		if (addr_id(a->backends[i]) == 2)
			atomic_store(&a->backends[i]->health, BACKEND_DOWN);
		if (addr_id(b->backends[i]) == 2)
			atomic_store(&b->backends[i]->health, BACKEND_DOWN);
	}
	ck_assert_int_eq(disagreements(a, b), 0);
	for (size_t i = 0; i < NKEYS; i++) {
		struct pick_ctx ca = {.hash = keys[i]}, cb = {.hash = keys[i]};
		struct backend *fa = pool_pick(a, &ca), *fb = pool_pick(b, &cb);
		struct backend *ta[] = {fa}, *tb[] = {fb};
		struct pick_ctx ra = {.hash = keys[i], .tried = ta, .ntried = 1};
		struct pick_ctx rb = {.hash = keys[i], .tried = tb, .ntried = 1};

		moved += addr_id(pool_pick(a, &ra)) != addr_id(pool_pick(b, &rb));
	}
	ck_assert_int_eq(moved, 0);
	pool_destroy(a);
	pool_destroy(b);
}
END_TEST

/* The measurement: 5 backends keyed by address, one leaves; the ideal is 1/5. */
START_TEST(test_one_of_five_leaving_moves_about_a_fifth_of_clients)
{
	static const int four[] = {0, 1, 3, 4};
	struct pool *all = fleet_pool(5, NULL, "b", NULL, NULL, NULL);
	struct pool *rest = fleet_pool(4, four, "b", NULL, NULL, NULL);
	int moved = 0, others = 0;

	for (size_t i = 0; i < NKEYS; i++) {
		int was = fleet_pick(all, keys[i]), now = fleet_pick(rest, keys[i]);

		moved += was != now;
		others += was != 2 && was != now;
	}
	fprintf(stderr,
		"maglev, 5 backends keyed by address, one leaves: %.2f%% of clients move "
		"(ideal 20%%), %d clients of the other four move\n",
		100.0 * moved / NKEYS, others);
	ck_assert_int_ge(moved, NKEYS / 5 * 9 / 10);
	ck_assert_int_le(moved, NKEYS / 5 * 12 / 10);
	pool_destroy(all);
	pool_destroy(rest);
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

	TCase *fleet = tcase_create("fleet");
	tcase_set_timeout(fleet, 120);
	tcase_add_unchecked_fixture(fleet, keys_init, NULL);
	tcase_add_test(fleet, test_table_depends_on_the_key_set_not_on_order_or_names);
	tcase_add_test(fleet, test_hash_key_keeps_slots_when_a_backend_is_renumbered);
	tcase_add_test(fleet, test_fingerprint_follows_the_table_not_the_health);
	tcase_add_test(fleet, test_a_down_backend_moves_clients_alike_on_every_instance);
	tcase_add_test(fleet, test_one_of_five_leaving_moves_about_a_fifth_of_clients);
	suite_add_tcase(s, fleet);
	return s;
}

int main(void)
{
	return t_run_suite(maglev_suite(), CK_NORMAL);
}
