/* Helpers that fail the running Check test when something is wrong, and the runner every
 * suite's main uses. Only the Check suites link these (they need libcheck). */
#include "support.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long t_stop_lb gives lb to exit on SIGTERM. */
#define T_STOP_TIMEOUT_MS 5000
/* How long t_hold waits for the tag line. */
#define T_HOLD_TAG_MS 3000
/* Tags are backend names; test backends have short ones. */
#define T_TAG_MAX 64

struct tbackend *t_backends_add(struct t_backends *set, enum tb_mode mode, const char *name)
{
	struct tbackend *tb;

	ck_assert_uint_lt(set->n, T_BACKENDS_MAX);
	tb = tb_start("127.0.0.1:0", mode, name);
	ck_assert_msg(tb != NULL, "cannot start test backend %s", name);
	set->tb[set->n++] = tb;
	return tb;
}

int t_hold(struct lbproc *lb, const struct t_backends *set, int port, int *idx)
{
	char tag[T_TAG_MAX];
	int fd = t_connect(NULL, port);

	t_check_lb(lb, fd >= 0, "connect to lb port %d failed: %s", port, strerror(errno));
	int n = t_read_line(fd, tag, sizeof(tag), T_HOLD_TAG_MS);
	t_check_lb(lb, n > 0, "held connection brought no tag (read returned %d)", n);
	*idx = t_backends_index(set, tag);
	t_check_lb(lb, *idx >= 0, "unknown tag '%s'", tag);
	return fd;
}

void t_stop_lb(struct lbproc *lb)
{
	int status = lb_stop(lb, T_STOP_TIMEOUT_MS);

	t_check_lb(lb, status == 0, "lb did not exit with 0 on SIGTERM (got %d)", status);
	lb_cleanup(lb);
}

void t_write_config(const char *json, char *path, size_t len)
{
	char dir[] = "/tmp/lbtest-cfg-XXXXXX";
	char *text;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, len, "%s/lb.json", dir);
	text = t_expand_dir(json, dir);
	ck_assert_ptr_nonnull(text);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	free(text);
	ck_assert_int_eq(fclose(f), 0);
}

Suite *t_suite(const char *name, int timeout_s, void (*setup)(void), void (*teardown)(void),
	       const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout_s);
	if (setup || teardown)
		tcase_add_checked_fixture(tc, setup, teardown);
	for (; *tests; tests++)
		tcase_add_test(tc, *tests);
	suite_add_tcase(s, tc);
	return s;
}

void t_add_test(Suite *s, const char *name, const TTest *t, int timeout_s)
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, timeout_s);
	tcase_add_test(tc, t);
	suite_add_tcase(s, tc);
}

int t_run_suite(Suite *s, int print_mode)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, (enum print_output)print_mode);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
