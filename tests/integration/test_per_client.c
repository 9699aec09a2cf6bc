/* Integration: a listener's per-client limits (per_client.max_conns, per_client.rate), keyed
 * by client IP: a burst from one address is cut to its rate and counted by reason while
 * another address gets in; max_conns under its new name caps one address only. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define BURST 20

static struct t_harness h;

static void setup(void)
{
	memset(&h, 0, sizeof(h));
}

static void teardown(void)
{
	t_harness_finish(&h);
}

static void start(const char *per_client)
{
	static const char *const names[] = {"pc"};
	json_t *cfg = t_cfg_new(2);

	t_backends_add_n(&h.be, TB_TAGGED, names, 1);
	h.port = t_free_port();
	t_cfg_set(t_cfg_listener(cfg, "pc-in", "tcp", "127.0.0.1", h.port, "p"),
		  "\"per_client\":%s", per_client);
	t_cfg_backends(t_cfg_pool(cfg, "p", NULL, T_HEALTH_NONE), &h.be);
	t_harness_start(&h, cfg, NULL);
}

static long long rejected(const char *reason)
{
	char *out = NULL, series[128];
	long long v = -1;

	snprintf(series, sizeof(series),
		 "lb_listener_rejected_total{listener=\"pc-in\",reason=\"%s\"} ", reason);
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "metrics", NULL) == 0 && out, "no metrics");
	const char *p = strstr(out, series);
	if (p)
		v = atoll(p + strlen(series));
	free(out);
	return v;
}

START_TEST(test_rate_cuts_one_address_to_its_rate)
{
	char tag[32];
	int ok = 0;

	start("{\"rate\":\"5/s\"}");
	for (int i = 0; i < BURST; i++)
		ok += t_fetch_tag("127.0.0.2", h.port, tag, sizeof(tag)) == 0;
	/* A burst of 5, plus one per 200 ms if the burst took that long. */
	t_expect(&h, ok >= 5 && ok <= 7, "127.0.0.2 got %d of %d through at 5/s", ok, BURST);
	t_expect(&h, t_fetch_tag("127.0.0.3", h.port, tag, sizeof(tag)) == 0,
		 "another address was refused");
	long long n = rejected("per_client_rate");
	t_expect(&h, n == BURST - ok, "per_client_rate rejections: %lld, expected %d", n,
		 BURST - ok);
	sleep(1);
	t_expect(&h, t_fetch_tag("127.0.0.2", h.port, tag, sizeof(tag)) == 0,
		 "127.0.0.2 still refused after a second");
}
END_TEST

START_TEST(test_max_conns_caps_one_address)
{
	int held[2], idx;

	start("{\"max_conns\":2}");
	for (int i = 0; i < 2; i++)
		held[i] = t_hold(&h.lb, &h.be, h.port, &idx);
	int extra = t_connect(NULL, h.port);
	t_expect(&h, extra >= 0 && t_wait_closed(extra, 2000) != -1,
		 "a third connection from 127.0.0.1 was kept");
	char tag[32];
	t_expect(&h, t_fetch_tag("127.0.0.4", h.port, tag, sizeof(tag)) == 0,
		 "another address was refused");
	t_expect(&h, rejected("max_conns_per_client") == 1, "the refusal was not counted");
	close(extra);
	close(held[0]);
	close(held[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("per_client");
	TCase *tc = tcase_create("per_client");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_rate_cuts_one_address_to_its_rate);
	tcase_add_test(tc, test_max_conns_caps_one_address);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_ENV);
}
