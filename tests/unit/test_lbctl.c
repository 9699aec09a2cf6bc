/* Unit tests for lbctl's command table, through the lbctl binary ($LBCTL_BIN): --help lists
 * every command, the generated bash completion script is valid bash and completes commands,
 * flags and choices, usage errors are caught before lbctl dials lb (exit 2), and an lb that
 * cannot serve lbctl (no socket, a connection closed unanswered, a garbled answer) is exit 2
 * too, never 1 (which means lb answered with an error). */
#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

#define RUN_TIMEOUT_MS 5000
#define MAX_ARGS       16

/* Every command lbctl has (the table's first 16, then top): dropping one must fail a test. */
static const char *const known_cmds[] = {
    "status",	 "backends", "enable",	"disable", "drain", "kill",	"weight", "add", "remove",
    "algorithm", "reload",   "metrics", "health",  "ready", "withdraw", "rejoin", "top",
};

/* Run `lbctl ARGS...` (NULL-terminated); out and err as for t_run. Its exit status. */
static int lbctl(char **out, char **err, ...)
{
	char *argv[MAX_ARGS + 2] = {(char *)t_lbctl_bin()};
	int n = 1;
	va_list ap;

	va_start(ap, err);
	for (char *a; n <= MAX_ARGS && (a = va_arg(ap, char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	return t_run(argv, out, err, RUN_TIMEOUT_MS);
}

/* `lbctl completion bash` into a temp file, whose name goes to path. */
static void write_script(char *path, size_t len)
{
	char *script = NULL;
	FILE *f;
	int fd;

	ck_assert_int_eq(lbctl(&script, NULL, "completion", "bash", NULL), 0);
	ck_assert_ptr_nonnull(script);
	snprintf(path, len, "/tmp/lbctl-completion-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	ck_assert_ptr_nonnull(f);
	fputs(script, f);
	ck_assert_int_eq(fclose(f), 0);
	free(script);
}

/* Source the script and complete the command line words... (the last is the word under the
 * cursor): the candidates, one per line, malloc'd. */
static char *complete(const char *script, ...)
{
	char *argv[MAX_ARGS + 6] = {
	    "/bin/bash", "-c",
	    "src=$1; shift; source \"$src\" || exit 2; COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - "
	    "1)); "
	    "_lbctl; [[ ${#COMPREPLY[@]} -eq 0 ]] || printf '%s\\n' \"${COMPREPLY[@]}\"",
	    "bash", (char *)script};
	char *out = NULL, *err = NULL;
	int n = 5, rc;
	va_list ap;

	va_start(ap, script);
	for (char *a; n < MAX_ARGS + 5 && (a = va_arg(ap, char *));)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	rc = t_run(argv, &out, &err, RUN_TIMEOUT_MS);
	ck_assert_msg(rc == 0, "completion exited %d: %s", rc, err ? err : "");
	free(err);
	return out;
}

/* Is word one whole line of lines? */
static bool has_line(const char *lines, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = lines; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, word, n) == 0 && (p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* Does --help list cmd as a command (a line "  cmd ..." under "commands:")? */
static bool help_lists(const char *help, const char *cmd)
{
	const char *sec = strstr(help, "\ncommands:\n"), *end = strstr(help, "\noptions:\n");
	char line[64];

	snprintf(line, sizeof(line), "\n  %s", cmd);
	for (const char *p = sec; p && (p = strstr(p + 1, line)) && (!end || p < end);)
		if (p[strlen(line)] == ' ' || p[strlen(line)] == '\n')
			return true;
	return false;
}

START_TEST(test_help_lists_every_command_that_completion_offers)
{
	char script[64], *help = NULL, *cmds;
	size_t n = 0;

	ck_assert_int_eq(lbctl(&help, NULL, "--help", NULL), 0);
	ck_assert_ptr_nonnull(help);
	write_script(script, sizeof(script));
	cmds = complete(script, "lbctl", "", NULL);
	for (const char *p = cmds; *p; p = strchr(p, '\n') + 1) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "%.*s", (int)strcspn(p, "\n"), p);
		ck_assert_msg(help_lists(help, cmd), "--help does not list %s:\n%s", cmd, help);
		n++;
	}
	for (size_t i = 0; i < sizeof(known_cmds) / sizeof(known_cmds[0]); i++) {
		ck_assert_msg(has_line(cmds, known_cmds[i]), "completion lacks %s:\n%s",
			      known_cmds[i], cmds);
		ck_assert_msg(help_lists(help, known_cmds[i]), "--help lacks %s", known_cmds[i]);
	}
	ck_assert_msg(has_line(cmds, "completion"), "completion does not offer itself");
	ck_assert_uint_eq(n, sizeof(known_cmds) / sizeof(known_cmds[0]) + 1);
	unlink(script);
	free(cmds);
	free(help);
}
END_TEST

START_TEST(test_completion_script_passes_bash_n)
{
	char script[64], *err = NULL;

	write_script(script, sizeof(script));
	char *argv[] = {"/bin/bash", "-n", script, NULL};
	int rc = t_run(argv, NULL, &err, RUN_TIMEOUT_MS);
	ck_assert_msg(rc == 0, "bash -n: exit %d: %s", rc, err ? err : "");
	unlink(script);
	free(err);
}
END_TEST

START_TEST(test_completion_completes_commands_flags_and_choices)
{
	char script[64], *out;

	write_script(script, sizeof(script));
	out = complete(script, "lbctl", "dr", NULL);
	ck_assert_str_eq(out, "drain\n");
	free(out);
	out = complete(script, "lbctl", "--json", "st", NULL); /* an option before the command */
	ck_assert_str_eq(out, "status\n");
	free(out);
	out = complete(script, "lbctl", "-s", "/tmp/x.sock", "remove", "web/a", "--f", NULL);
	ck_assert_str_eq(out, "--force\n");
	free(out);
	out = complete(script, "lbctl", "add", "web", "c", "127.0.0.1:1", "--weight", "2", "--",
		       NULL);
	ck_assert_msg(has_line(out, "--hash-key") && has_line(out, "--max-conns") &&
			  has_line(out, "--backup") && has_line(out, "--json") &&
			  has_line(out, "--socket") && !has_line(out, "--force"),
		      "add's flags: %s", out);
	free(out);
	out = complete(script, "lbctl", "health", "web/a", "", NULL);
	ck_assert_str_eq(out, "up\ndown\nauto\n");
	free(out);
	out = complete(script, "lbctl", "completion", "", NULL);
	ck_assert_str_eq(out, "bash\n");
	free(out);
	unlink(script);
}
END_TEST

/* Each wrong command line draws exit 2 and names the problem, with no lb to talk to. */
START_TEST(test_usage_errors_exit_2_before_dialing)
{
	static const struct {
		const char *args[6], *msg;
	} cases[] = {
	    {{"frobnicate"}, "unknown command \"frobnicate\""},
	    {{"weight", "web/a"}, "usage: lbctl weight POOL/BACKEND N"},
	    {{"weight", "web/a", "1001"}, "(N from 0 to 1000)"},
	    {{"status", "extra"}, "usage: lbctl status"},
	    {{"drain", "web"}, "expected POOL/BACKEND, got \"web\""},
	    {{"health", "web/a", "sideways"}, "usage: lbctl health POOL/BACKEND up|down|auto"},
	    {{"health", "web/a", "up|down"}, "usage: lbctl health POOL/BACKEND up|down|auto"},
	    {{"status", "--force"}, "--force goes with remove"},
	    {{"remove", "web/a", "--weight", "2"}, "--weight goes with add"},
	    {{"add", "web", "c", "127.0.0.1:1", "--weight", "1001"}, "--weight takes 0 to 1000"},
	    {{"add", "web", "c", "127.0.0.1:1", "--max-conns=-1"}, "--max-conns takes a number"},
	    {{"status", "--bogus"}, "unknown option --bogus"},
	    {{"add", "web", "c", "127.0.0.1:1", "--weight"}, "--weight needs a value"},
	    {{"completion", "zsh"}, "usage: lbctl completion bash"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *const *a = cases[i].args;
		char *err = NULL;
		int rc = lbctl(NULL, &err, "-s", "/nonexistent/lb.sock", a[0], a[1], a[2], a[3],
			       a[4], a[5], NULL);
		ck_assert_msg(rc == 2 && err && strstr(err, cases[i].msg),
			      "lbctl %s ...: exit %d, wanted 2 and \"%s\" in: %s", a[0], rc,
			      cases[i].msg, err ? err : "");
		free(err);
	}
}
END_TEST

/* A stand-in for an lb that cannot serve: accepts one client on a Unix socket, reads its
 * request, then closes (reply NULL) or writes reply. */
struct fake_lb {
	int fd;
	const char *reply;
	char path[108];
};

static void *fake_lb_serve(void *arg)
{
	struct fake_lb *f = arg;
	char buf[512];
	int c = accept(f->fd, NULL, NULL);

	if (c >= 0) {
		(void)!read(c, buf, sizeof(buf));
		if (f->reply)
			(void)!write(c, f->reply, strlen(f->reply));
		close(c);
	}
	return NULL;
}

START_TEST(test_lb_that_cannot_serve_is_exit_2)
{
	static const char *const replies[] = {NULL, "not json\n", "{\"data\":1}\n"};
	char *err = NULL;

	ck_assert_int_eq(lbctl(NULL, &err, "-s", "/nonexistent/lb.sock", "status", NULL), 2);
	ck_assert_msg(err && strstr(err, "is lb running?"), "%s", err ? err : "");
	free(err);

	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		struct fake_lb f = {.reply = replies[i]};
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		pthread_t t;

		snprintf(f.path, sizeof(f.path), "/tmp/lbctl-fake-%d-%zu.sock", (int)getpid(), i);
		unlink(f.path);
		strcpy(sun.sun_path, f.path);
		f.fd = socket(AF_UNIX, SOCK_STREAM, 0);
		ck_assert_int_ge(f.fd, 0);
		ck_assert_int_eq(bind(f.fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
		ck_assert_int_eq(listen(f.fd, 1), 0);
		ck_assert_int_eq(pthread_create(&t, NULL, fake_lb_serve, &f), 0);
		err = NULL;
		int rc = lbctl(NULL, &err, "-s", f.path, "status", NULL);
		pthread_join(t, NULL);
		close(f.fd);
		unlink(f.path);
		ck_assert_msg(rc == 2, "reply %s: exit %d (%s)",
			      replies[i] ? replies[i] : "(close)", rc, err ? err : "");
		free(err);
	}
}
END_TEST

START_TEST(test_no_command_prints_usage_and_exits_2)
{
	char *out = NULL, *err = NULL;

	ck_assert_int_eq(lbctl(&out, &err, NULL), 2);
	ck_assert_msg(out && !*out, "stdout: %s", out);
	ck_assert_msg(err && strstr(err, "usage: lbctl") && strstr(err, "commands:"), "%s", err);
	free(out);
	free(err);
}
END_TEST

static Suite *lbctl_suite(void)
{
	Suite *s = suite_create("lbctl");
	TCase *tc = tcase_create("lbctl");

	tcase_add_test(tc, test_help_lists_every_command_that_completion_offers);
	tcase_add_test(tc, test_completion_script_passes_bash_n);
	tcase_add_test(tc, test_completion_completes_commands_flags_and_choices);
	tcase_add_test(tc, test_usage_errors_exit_2_before_dialing);
	tcase_add_test(tc, test_no_command_prints_usage_and_exits_2);
	tcase_add_test(tc, test_lb_that_cannot_serve_is_exit_2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run_suite(lbctl_suite(), CK_NORMAL);
}
