/* Integration: the lb command line and config validation as a user meets them — every bad
 * config in tests/configs/bad is refused with its expected message, every good one and every
 * example passes --check, and the CLI's exit codes follow SPEC.md. */
#include <arpa/inet.h>
#include <check.h>
#include <glob.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

/* The suite of bad configs must stay broad: one per class of mistake at least. */
#define MIN_BAD_CONFIGS 15
/* --check reads one small file; a refusing daemon must exit as fast. */
#define RUN_MS 5000
/* A bad config that starts lb anyway is a failure already: do not wait long for it. */
#define BAD_RUN_MS 2000

/* The whole file, NUL-terminated, trailing newlines stripped; NULL if unreadable. */
static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long len;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		fclose(f);
		return NULL;
	}
	buf = malloc((size_t)len + 1);
	if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (!buf)
		return NULL;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	buf[len] = '\0';
	return buf;
}

/* For dir/X.json the sidecar dir/X.expect (dir/X.json.expect also accepted). */
static char *read_expect(const char *json_path)
{
	char path[4096];
	size_t n = strlen(json_path);
	char *text;

	if (n > 5 && strcmp(json_path + n - 5, ".json") == 0) {
		snprintf(path, sizeof(path), "%.*s.expect", (int)(n - 5), json_path);
		if ((text = read_text(path)))
			return text;
	}
	snprintf(path, sizeof(path), "%s.expect", json_path);
	return read_text(path);
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static const char *or_none(const char *s)
{
	return s ? s : "(none)";
}

/* Run lb with up to three arguments. Exit status as t_run returns it. */
static int run_lb_for(int timeout_ms, const char *a1, const char *a2, const char *a3, char **out,
		      char **err)
{
	char *argv[] = {(char *)t_lb_bin(), (char *)a1, (char *)a2, (char *)a3, NULL};

	return t_run(argv, out, err, timeout_ms);
}

static int run_lb(const char *a1, const char *a2, const char *a3, char **out, char **err)
{
	return run_lb_for(RUN_MS, a1, a2, a3, out, err);
}

/* Config files matching pattern under the source dir; caller globfree()s. */
static size_t find_configs(const char *pattern, glob_t *g)
{
	char full[4096];

	snprintf(full, sizeof(full), "%s/%s", t_src_dir(), pattern);
	if (glob(full, 0, NULL, g) != 0) {
		g->gl_pathc = 0;
		g->gl_pathv = NULL;
		return 0;
	}
	return g->gl_pathc;
}

/* Check lb refuses one bad config in --check and run mode. The number of problems found. */
static int check_bad_config(const char *path)
{
	char *expect = read_expect(path), *err = NULL, *err2 = NULL;
	const char *name = base_name(path);
	int st, problems = 0;

	if (!expect || !*expect) {
		fprintf(stderr, "FAIL %s: no sidecar .expect file (or it is empty)\n", name);
		free(expect);
		return 1;
	}
	st = run_lb("-c", path, "--check", NULL, &err);
	if (st != 2) {
		fprintf(stderr, "FAIL %s: --check exited %d, expected 2\n", name, st);
		problems++;
	}
	if (!err || !strstr(err, expect)) {
		fprintf(stderr, "FAIL %s: --check stderr lacks \"%s\"\n", name, expect);
		problems++;
	}
	if (!err || !strstr(err, name)) {
		fprintf(stderr, "FAIL %s: --check stderr does not name the file\n", name);
		problems++;
	}
	/* Without --check it must refuse just the same, never start half-configured. */
	st = run_lb_for(BAD_RUN_MS, "-c", path, NULL, NULL, &err2);
	if (st != 2) {
		fprintf(stderr, "FAIL %s: lb -c exited %d, expected 2%s\n", name, st,
			st == -1 ? " (it kept running or was killed)" : "");
		problems++;
	}
	if (problems)
		fprintf(stderr, "  --check stderr: %s\n  run stderr: %s\n", or_none(err),
			or_none(err2));
	free(err);
	free(err2);
	free(expect);
	return problems;
}

START_TEST(test_every_bad_config_is_refused_with_its_message)
{
	glob_t g;
	size_t n = find_configs("tests/configs/bad/*.json", &g);
	int failed = 0;

	for (size_t i = 0; i < n; i++)
		failed += check_bad_config(g.gl_pathv[i]) ? 1 : 0;
	globfree(&g);
	ck_assert_msg(n >= MIN_BAD_CONFIGS, "only %zu bad configs in %s/tests/configs/bad, want %d",
		      n, t_src_dir(), MIN_BAD_CONFIGS);
	ck_assert_msg(failed == 0, "%d of %zu bad configs not refused as expected (see stderr)",
		      failed, n);
}
END_TEST

/* --check every file matching pattern; the number that did not pass. */
static int check_good_configs(const char *pattern, size_t *count)
{
	glob_t g;
	int failed = 0;

	*count = find_configs(pattern, &g);
	for (size_t i = 0; i < *count; i++) {
		char *out = NULL, *err = NULL;
		int st = run_lb("-c", g.gl_pathv[i], "--check", &out, &err);
		bool ok = (out && strstr(out, "configuration OK")) ||
			  (err && strstr(err, "configuration OK"));

		if (st != 0 || !ok) {
			fprintf(stderr,
				"FAIL %s: --check exited %d%s\n  stdout: %s\n  stderr: %s\n",
				g.gl_pathv[i], st, ok ? "" : " without \"configuration OK\"",
				or_none(out), or_none(err));
			failed++;
		}
		free(out);
		free(err);
	}
	globfree(&g);
	return failed;
}

START_TEST(test_every_good_config_passes_check)
{
	size_t n;
	int failed = check_good_configs("tests/configs/good/*.json", &n);

	ck_assert_msg(n > 0, "no good configs in %s/tests/configs/good", t_src_dir());
	ck_assert_msg(failed == 0, "%d of %zu good configs failed --check (see stderr)", failed, n);
}
END_TEST

START_TEST(test_every_example_passes_check)
{
	size_t n;
	int failed = check_good_configs("examples/*.json", &n);

	ck_assert_msg(n > 0, "no examples in %s/examples", t_src_dir());
	ck_assert_msg(failed == 0, "%d of %zu examples failed --check (see stderr)", failed, n);
}
END_TEST

START_TEST(test_version_prints_a_version)
{
	char *out = NULL, *err = NULL;
	int st = run_lb("--version", NULL, NULL, &out, &err);

	ck_assert_msg(st == 0, "lb --version exited %d; stderr: %s", st, or_none(err));
#ifdef LB_VERSION
	ck_assert_msg(out && strstr(out, LB_VERSION), "lb --version printed \"%s\", want %s",
		      or_none(out), LB_VERSION);
#else
	ck_assert_msg(out && strpbrk(out, "0123456789"), "lb --version printed \"%s\"",
		      or_none(out));
#endif
	free(out);
	free(err);
}
END_TEST

START_TEST(test_help_exits_0_with_usage)
{
	char *out = NULL, *err = NULL;
	int st = run_lb("--help", NULL, NULL, &out, &err);

	ck_assert_msg(st == 0, "lb --help exited %d", st);
	ck_assert_msg((out && strstr(out, "-c")) || (err && strstr(err, "-c")),
		      "lb --help does not mention -c; stdout: %s", or_none(out));
	free(out);
	free(err);
}
END_TEST

START_TEST(test_unknown_option_exits_2)
{
	char *err = NULL;
	int st = run_lb("--no-such-option", NULL, NULL, NULL, &err);

	ck_assert_msg(st == 2, "unknown option: exit %d, expected 2; stderr: %s", st, or_none(err));
	free(err);
}
END_TEST

START_TEST(test_missing_config_file_exits_2_naming_it)
{
	char path[128], *err = NULL;
	int st;

	snprintf(path, sizeof(path), "/tmp/lbtest-missing-%d/nope.json", (int)getpid());
	st = run_lb("-c", path, NULL, NULL, &err);
	ck_assert_msg(st == 2, "missing config: exit %d, expected 2; stderr: %s", st, or_none(err));
	ck_assert_msg(err && strstr(err, path), "the error does not name %s: %s", path,
		      or_none(err));
	free(err);
	err = NULL;
	st = run_lb("-c", path, "--check", NULL, &err);
	ck_assert_msg(st == 2, "missing config with --check: exit %d, expected 2", st);
	free(err);
}
END_TEST

START_TEST(test_port_in_use_exits_1_naming_the_address)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	char path[300], want[64];
	char *err = NULL;
	int fd, port, st;

	/* Plain bind, no SO_REUSEPORT: lb's SO_REUSEPORT bind must fail against it. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 4), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);

	json_t *cfg = t_cfg_new(2);
	json_object_del(cfg, "shutdown_grace"); /* lb's default: it never gets to stop */
	t_cfg_listener(cfg, "taken", NULL, "127.0.0.1", port, "p");
	t_cfg_backend(t_cfg_pool(cfg, "p", NULL, T_HEALTH_NONE), NULL, "127.0.0.1:9");
	t_cfg_write(cfg, path, sizeof(path));

	st = run_lb("-c", path, NULL, NULL, &err);
	snprintf(want, sizeof(want), "127.0.0.1:%d", port);
	if (st != 1 || !err || !strstr(err, want))
		fprintf(stderr, "lb stderr:\n%s\n", or_none(err));
	t_remove_config(path);
	close(fd);
	ck_assert_msg(st == 1, "listener port in use: exit %d, expected 1", st);
	ck_assert_msg(err && strstr(err, want), "the error does not name %s", want);
	free(err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("configs");

	t_add_test(s, "bad", test_every_bad_config_is_refused_with_its_message, 60);
	t_add_test(s, "good", test_every_good_config_passes_check, 30);
	t_add_test(s, "examples", test_every_example_passes_check, 30);
	t_add_test(s, "version", test_version_prints_a_version, 10);
	t_add_test(s, "help", test_help_exits_0_with_usage, 10);
	t_add_test(s, "unknown_option", test_unknown_option_exits_2, 10);
	t_add_test(s, "missing_file", test_missing_config_file_exits_2_naming_it, 10);
	t_add_test(s, "port_in_use", test_port_in_use_exits_1_naming_the_address, 15);

	return t_run_suite(s, CK_ENV);
}
