/* Integration: slow start (pool or backend "slow_start"). A backend that comes back up after
 * being down, or is added at run time, gets a small share of new connections at first and
 * its full share once the ramp is over; backends up at lb's start get theirs at once. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define RAMP_MS 3000
/* Connections per sample: sequential, each a few ms through lb on loopback. */
#define SAMPLE 40
/* Right after the ramp begins B's weight is at most a few sixteenths of A's: well under a
 * fifth of the connections even if the sample runs into the first second of the ramp. */
#define EARLY_MAX (SAMPLE / 5)

static struct t_harness h;

static void setup(void)
{
	memset(&h, 0, sizeof(h));
}

static void teardown(void)
{
	t_harness_finish(&h);
}

/* Pool "p" (weighted_round_robin, fast tcp checks) over the test backends, weight 1 each,
 * with pool_extra (JSON members) added. */
static void start(const char *pool_extra)
{
	static const char *const names[] = {"A", "B"};
	json_t *cfg = t_cfg_new(2);

	t_backends_add_n(&h.be, TB_TAGGED, names, 2);
	h.port = t_free_port();
	t_cfg_listener(cfg, "ss", "tcp", "127.0.0.1", h.port, "p");
	json_t *pool = t_cfg_pool(cfg, "p", "weighted_round_robin",
				  "{\"type\":\"tcp\",\"interval\":\"100ms\",\"timeout\":\"100ms\","
				  "\"rise\":1,\"fall\":1}");
	t_cfg_set(pool, "%s", pool_extra);
	t_cfg_backends(pool, &h.be);
	t_harness_start(&h, cfg, NULL);
}

static void sample(unsigned *counts, size_t n)
{
	memset(counts, 0, n * sizeof(*counts));
	t_expect(&h, t_fetch_many(&h.be, h.port, SAMPLE, counts) == 0, "fetches through lb failed");
}

START_TEST(test_backend_back_up_ramps_its_share)
{
	unsigned c[T_BACKENDS_MAX];
	char line[128];

	start("\"slow_start\":\"3s\"");
	/* Up since the start: no ramp, an even split at once. */
	sample(c, 2);
	t_expect(&h, c[1] >= SAMPLE / 2 - 2, "at start B got %u of %d: it was slow-started", c[1],
		 SAMPLE);

	tb_stop(h.be.tb[1]);
	snprintf(line, sizeof(line), "backend B (%s) is DOWN", tb_address(h.be.tb[1]));
	t_expect(&h, lb_log_wait(&h.lb, line, 3000), "B was not marked down");
	t_expect(&h, tb_restart(h.be.tb[1]) == 0, "cannot restart B");
	/* Not the "first check passed" line of lb's start: the one of its return. */
	snprintf(line, sizeof(line), "backend B (%s) is UP (1 consecutive pass)",
		 tb_address(h.be.tb[1]));
	t_expect(&h, lb_log_wait(&h.lb, line, 3000), "B did not come back up");

	sample(c, 2);
	t_expect(&h, c[1] <= EARLY_MAX, "right after coming up B got %u of %d (at most %d)", c[1],
		 SAMPLE, EARLY_MAX);
	char *out = NULL;
	t_expect(&h,
		 t_lbctl(h.sock, &out, NULL, "backends", NULL) == 0 && out &&
		     strstr(out, "slow start"),
		 "lbctl backends does not show the ramp:\n%s", out ? out : "");
	free(out);

	t_expect(&h, lb_log_wait(&h.lb, "backend B slow start over", RAMP_MS + 2000),
		 "the ramp did not end");
	sample(c, 2);
	t_expect(&h, c[1] >= SAMPLE / 2 - 2 && c[1] <= SAMPLE / 2 + 2,
		 "after the ramp B got %u of %d, expected about half", c[1], SAMPLE);
}
END_TEST

START_TEST(test_added_backend_ramps)
{
	unsigned c[T_BACKENDS_MAX];

	start("\"slow_start\":\"1h\"");
	struct tbackend *x = t_backends_add(&h.be, TB_TAGGED, "X");
	t_harness_lbctl_ok(&h, "add", "p", "X", tb_address(x), NULL);
	usleep(300 * 1000); /* its first check */
	sample(c, 3);
	t_expect(&h, c[2] <= 2, "right after `add` X got %u of %d, an hour's ramp allows ~1/32",
		 c[2], SAMPLE);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("slow_start");
	TCase *tc = tcase_create("slow_start");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_backend_back_up_ramps_its_share);
	tcase_add_test(tc, test_added_backend_ramps);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_ENV);
}
