/* Unit: the per-client connection rate behind a listener's per_client.rate
 * (lb/client_rate.c): a burst of one second's worth, then the rate; clients apart; per
 * minute; a clock read a little behind; a table overflowing with more clients than slots. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "lb/client_rate.h"
#include "support.h"

static struct sockaddr_storage ip4(uint32_t host)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(host);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static int takes(struct client_rate *cr, const struct sockaddr *c, uint32_t rate, uint64_t now,
		 int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++)
		ok += client_rate_take(cr, c, rate, now);
	return ok;
}

START_TEST(test_burst_then_rate_per_client)
{
	struct client_rate cr;
	struct sockaddr_storage a = ip4(0x0a000001), b = ip4(0x0a000002);

	client_rate_init(&cr);
	ck_assert_int_eq(takes(&cr, SA(a), 5000, 1000, 20), 5);	 /* 5/s: a burst of 5 */
	ck_assert_int_eq(takes(&cr, SA(b), 5000, 1000, 20), 5);	 /* b has its own */
	ck_assert_int_eq(takes(&cr, SA(a), 5000, 1199, 5), 0);	 /* 0.995 tokens */
	ck_assert_int_eq(takes(&cr, SA(a), 5000, 1200, 5), 1);	 /* one per 200 ms */
	ck_assert_int_eq(takes(&cr, SA(a), 5000, 11200, 20), 5); /* refilled, capped at 5 */
	client_rate_destroy(&cr);
}
END_TEST

START_TEST(test_per_minute_and_a_clock_behind)
{
	struct client_rate cr;
	struct sockaddr_storage a = ip4(0x0a000001);
	uint32_t per_min = 60 * 1000 / 60; /* "60/m": one a second */

	client_rate_init(&cr);
	ck_assert_int_eq(takes(&cr, SA(a), per_min, 5000, 3), 1);
	/* Another worker's clock, read a moment earlier: no refill, no wrap-around. */
	ck_assert_int_eq(takes(&cr, SA(a), per_min, 4990, 3), 0);
	ck_assert_int_eq(takes(&cr, SA(a), per_min, 6000, 3), 1);
	client_rate_destroy(&cr);
}
END_TEST

/* Four times as many clients as slots, each over its rate: memory stays the table's, a
 * client within its rate is never refused, and a busy client keeps being limited as long
 * as its entry survives. */
START_TEST(test_more_clients_than_slots)
{
	struct client_rate cr;
	struct sockaddr_storage busy = ip4(0x0b000001);

	client_rate_init(&cr);
	for (uint32_t i = 0; i < 4 * CLIENT_RATE_SLOTS; i++) {
		struct sockaddr_storage c = ip4(0x0c000000 + i);
		ck_assert(client_rate_take(&cr, SA(c), 1000, 1000)); /* first one: always */
		(void)client_rate_take(&cr, SA(c), 1000, 1000);	     /* spends the bucket */
	}
	ck_assert_uint_gt(atomic_load(&cr.evictions), 0);
	ck_assert_int_eq(takes(&cr, SA(busy), 1000, 1000, 10), 1);
	ck_assert_int_eq(takes(&cr, SA(busy), 1000, 1001, 10), 0);
	client_rate_destroy(&cr);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client_rate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_burst_then_rate_per_client);
	tcase_add_test(tc, test_per_minute_and_a_clock_behind);
	tcase_add_test(tc, test_more_clients_than_slots);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_ENV);
}
