/* Unit: the UDP session budget (lb/listener.c): sized from the fd limit less a reserve,
 * spent and given back, and following the fd limit when it changes while lb runs (a worker
 * reads it again at most every 100 ms). */
#include <check.h>
#include <sys/resource.h>

#include "lb/listener.h"
#include "support.h"

START_TEST(test_budget_is_the_limit_less_a_reserve)
{
	struct session_budget b;

	ck_assert_int_eq(session_budget_size(&b, 1000), 250);
	ck_assert_int_eq(b.max, 750);
	ck_assert_int_eq(session_budget_size(&b, 100), 64); /* the reserve's floor */
	ck_assert_int_eq(b.max, 36);
	ck_assert_int_eq(session_budget_size(&b, 10), 64);
	ck_assert_int_eq(b.max, 0);
}
END_TEST

START_TEST(test_spent_budget_refuses_until_released)
{
	struct session_budget b;
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	session_budget_size(&b, (long)rl.rlim_cur); /* what a re-read finds: no change */
	b.max = 3;
	for (int i = 0; i < 3; i++)
		ck_assert(session_budget_take(&b, 1000 + (uint64_t)i));
	ck_assert(!session_budget_take(&b, 1010));
	session_budget_release(&b);
	ck_assert(session_budget_take(&b, 1020));
	ck_assert(!session_budget_take(&b, 1030));
}
END_TEST

/* The limit lowered at run time: the next take after the re-check interval shrinks the
 * budget below what is already open, so nothing more is taken; raised again, it grows. */
START_TEST(test_budget_follows_the_fd_limit)
{
	struct session_budget b;
	struct rlimit orig, low;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &orig), 0);
	ck_assert_uint_ge(orig.rlim_cur, 400);
	session_budget_size(&b, (long)orig.rlim_cur);
	for (int i = 0; i < 100; i++)
		ck_assert(session_budget_take(&b, 1000));

	low = orig;
	low.rlim_cur = 200; /* budget 136: 36 more */
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	ck_assert(session_budget_take(&b, 1050)); /* within 100 ms of the last read: old size */
	int more = 0;
	while (more < 1000 && session_budget_take(&b, 1200))
		more++;
	ck_assert_int_eq(more, 35);
	ck_assert_int_eq(b.nofile, 200);

	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &orig), 0);
	ck_assert(session_budget_take(&b, 1400));
	ck_assert_int_eq(b.nofile, (long)orig.rlim_cur);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("session_budget");
	TCase *tc = tcase_create("session_budget");

	tcase_add_test(tc, test_budget_is_the_limit_less_a_reserve);
	tcase_add_test(tc, test_spent_budget_refuses_until_released);
	tcase_add_test(tc, test_budget_follows_the_fd_limit);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_NORMAL);
}
