/* Integration: host names and a resolver that never answers (issue 13, item 5). lb runs in a
 * mount namespace of its own whose /etc/resolv.conf names a blackhole DNS server of the test
 * (a UDP socket that reads nothing and answers nothing; "timeout:10 attempts:1", so glibc
 * alone would wait 10 s per name). Reloads and `lbctl add` look their names up off the main
 * loop with a 5 s bound: meanwhile lbctl is answered and SIGTERM stops lb at once, and the
 * reload or add fails with a clear error once the bound is over. Needs root (unshare, mount):
 * without it the suite is skipped (exit 77). */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 60
#define SKIP_EXIT      77
/* lb's bound on name lookups (RESOLVE_TIMEOUT_MS) and the error it gives past it. */
#define BOUND_MS 5000
#define BOUND_S	 "5 s"
/* A failed lookup answers after the bound, well before glibc's own 10 s; the slack is for a
 * loaded machine and sanitizer builds. */
#define ANSWER_MIN_MS (BOUND_MS - 500)
#define ANSWER_MAX_MS (BOUND_MS + 3000)
/* What must not wait on DNS: another client's lbctl, and SIGTERM. */
#define STATUS_MAX_MS 1000
#define STOP_MAX_MS   2000
/* Names no /etc/hosts has: each costs a query to the blackhole. */
static const char *const dead[] = {"dead1.lbtest", "dead2.lbtest", "dead3.lbtest"};
#define NDEAD (sizeof(dead) / sizeof(dead[0]))

static struct t_harness h;
static char dir[64];	  /* the wrapper script and the resolv.conf */
static char wrapper[128]; /* runs lb in its own mount namespace */
static int dns_fd = -1;	  /* the blackhole DNS server */
static char dns_ip[32];	  /* 127.53.X.Y, port 53 */

/* ---- a resolver that never answers ---- */

/* Bind UDP port 53 on a loopback address of our own; its queries are never read. */
static int blackhole_dns(void)
{
	for (int k = 0; k < 64; k++) {
		struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(53)};
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		unsigned v = ((unsigned)getpid() + (unsigned)k * 7919u) % 65000u + 1;

		snprintf(dns_ip, sizeof(dns_ip), "127.53.%u.%u", (v >> 8) & 255, v & 255);
		inet_pton(AF_INET, dns_ip, &sin.sin_addr);
		if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0)
			return fd;
		if (fd >= 0)
			close(fd);
	}
	return -1;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* LB_BIN becomes a script that runs the real lb with the blackhole as its resolver. */
static void setup(void)
{
	char path[160], text[1024];

	snprintf(dir, sizeof(dir), "/tmp/lb-resolve-XXXXXX");
	ck_assert_msg(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	dns_fd = blackhole_dns();
	ck_assert_msg(dns_fd >= 0, "cannot bind a blackhole DNS server on 127.53.*.*:53");
	snprintf(path, sizeof(path), "%s/resolv.conf", dir);
	snprintf(text, sizeof(text), "nameserver %s\noptions timeout:10 attempts:1\n", dns_ip);
	write_file(path, text, 0644);
	snprintf(wrapper, sizeof(wrapper), "%s/lb", dir);
	snprintf(text, sizeof(text),
		 "#!/bin/sh\n"
		 "exec unshare --mount sh -c "
		 "'mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"' %s %s \"$@\"\n",
		 path, t_lb_bin());
	write_file(wrapper, text, 0755);
	setenv("LB_BIN", wrapper, 1);
}

static void teardown(void)
{
	t_harness_finish(&h);
	if (dns_fd >= 0)
		close(dns_fd);
	t_remove_tree(dir);
}

/* ---- lb and its control socket ---- */

static json_t *config(size_t ndead)
{
	json_t *cfg = t_cfg_new(1);

	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	json_t *p = t_cfg_pool(cfg, "web", NULL, T_HEALTH_NONE);
	t_cfg_backends(p, &h.be);
	for (size_t i = 0; i < ndead; i++) {
		char addr[64];
		snprintf(addr, sizeof(addr), "%s:80", dead[i]);
		t_cfg_backend(p, dead[i], addr);
	}
	return cfg;
}

static void start_lb(void)
{
	static const char *const names[] = {"a"};

	t_backends_add_n(&h.be, TB_TAGGED, names, 1);
	h.port = t_free_port();
	t_harness_start(&h, config(0), "control socket");
}

static int ctl_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", h.sock);
	t_expect(&h, fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
		 "cannot connect to the control socket: %s", strerror(errno));
	return fd;
}

/* Send one request line on a connection of its own, answered later. */
static int request(const char *line)
{
	int fd = ctl_connect();

	t_expect(&h, t_send_all(fd, line, strlen(line)), "send: %s", strerror(errno));
	return fd;
}

/* The answer on fd within timeout_ms: its "error" (malloc'd, "" if ok), or NULL if none. */
static char *answer_error(int fd, int timeout_ms)
{
	char buf[8192];
	json_error_t je;

	if (t_read_line(fd, buf, sizeof(buf), timeout_ms) <= 0)
		return NULL;
	json_t *resp = json_loads(buf, 0, &je);
	t_expect(&h, resp, "not JSON: %s", buf);
	const char *err = json_string_value(json_object_get(resp, "error"));
	char *copy = strdup(json_is_true(json_object_get(resp, "ok")) ? "" : err ? err : "?");
	json_decref(resp);
	return copy;
}

/* `lbctl status` from another client is answered, and soon. */
static void status_answers_at_once(const char *during)
{
	uint64_t t0 = t_now_ms();
	int rc = t_lbctl(h.sock, NULL, NULL, "status", NULL);
	uint64_t ms = t_now_ms() - t0;

	fprintf(stderr, "resolve: lbctl status %s: %llu ms\n", during, (unsigned long long)ms);
	t_expect(&h, rc == 0 && ms <= STATUS_MAX_MS,
		 "lbctl status %s: exit %d after %llu ms (at most %d allowed)", during, rc,
		 (unsigned long long)ms, STATUS_MAX_MS);
}

/* ---- tests ---- */

START_TEST(test_reload_waiting_on_dns_blocks_no_other_client)
{
	start_lb();
	t_rewrite_config(&h.lb, config(NDEAD));

	uint64_t t0 = t_now_ms();
	int fd = request("{\"cmd\":\"reload\"}\n");
	t_expect(&h, lb_log_wait(&h.lb, "control: reloading", 2000), "the reload did not start");
	status_answers_at_once("while a reload waits on DNS");

	/* One reload at a time: a second one is refused at once, not queued behind DNS. */
	int fd2 = request("{\"cmd\":\"reload\"}\n");
	char *err2 = answer_error(fd2, STATUS_MAX_MS);
	t_expect(&h, err2 && strstr(err2, "a reload is already running"), "a second reload got: %s",
		 err2 ? err2 : "(no answer within 1 s)");
	free(err2);
	close(fd2);
	status_answers_at_once("while a reload waits on DNS");

	char *err = answer_error(fd, ANSWER_MAX_MS + 2000);
	uint64_t ms = t_now_ms() - t0;
	t_expect(&h, err, "the reload never answered");
	fprintf(stderr, "resolve: reload with %zu unanswered names answered in %llu ms\n", NDEAD,
		(unsigned long long)ms);
	t_expect(&h, ms >= ANSWER_MIN_MS && ms <= ANSWER_MAX_MS,
		 "the reload answered after %llu ms; expected about %d", (unsigned long long)ms,
		 BOUND_MS);
	for (size_t i = 0; i < NDEAD; i++) {
		char want[160];
		snprintf(want, sizeof(want), "backend \"%s:80\": cannot resolve \"%s\" within %s",
			 dead[i], dead[i], BOUND_S);
		t_expect(&h, strstr(err, want), "reload error lacks '%s': %s", want, err);
	}
	free(err);
	close(fd);

	/* Nothing changed, and lb still relays. */
	char *out = NULL;
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "--json", "backends", NULL) == 0, "backends");
	t_expect(&h, out && !strstr(out, "dead1"), "a dead backend got in: %s", out);
	free(out);
	t_expect(&h, t_fetch(&h.be, NULL, h.port) == 0, "lb no longer relays");
}
END_TEST

START_TEST(test_sigterm_during_a_reload_waiting_on_dns_stops_at_once)
{
	start_lb();
	t_rewrite_config(&h.lb, config(NDEAD));
	t_expect(&h, kill(h.lb.pid, SIGHUP) == 0, "kill: %s", strerror(errno));
	t_expect(&h, lb_log_wait(&h.lb, "SIGHUP: reloading", 2000), "SIGHUP did not reload");
	status_answers_at_once("while a SIGHUP reload waits on DNS");

	uint64_t t0 = t_now_ms();
	int rc = lb_stop(&h.lb, STOP_MAX_MS + 3000);
	uint64_t ms = t_now_ms() - t0;
	h.lb_started = false;
	fprintf(stderr, "resolve: SIGTERM during a reload waiting on DNS: exit %d in %llu ms\n", rc,
		(unsigned long long)ms);
	char *log = lb_log(&h.lb);
	lb_cleanup(&h.lb);
	ck_assert_msg(rc == 0 && ms <= STOP_MAX_MS,
		      "SIGTERM during a reload waiting on DNS: exit %d after %llu ms (at most %d "
		      "allowed); log:\n%s",
		      rc, (unsigned long long)ms, STOP_MAX_MS, log ? log : "");
	free(log);
}
END_TEST

START_TEST(test_add_with_an_unanswered_name_blocks_no_other_client)
{
	start_lb();

	uint64_t t0 = t_now_ms();
	int fd = request("{\"cmd\":\"add\",\"pool\":\"web\",\"name\":\"d\","
			 "\"address\":\"dead1.lbtest:80\"}\n");
	/* The same client's next request waits behind its add; other clients do not. */
	t_expect(&h, t_send_all(fd, "{\"cmd\":\"status\"}\n", 17), "send: %s", strerror(errno));
	usleep(200 * 1000);
	status_answers_at_once("while an add waits on DNS");

	char *err = answer_error(fd, ANSWER_MAX_MS + 2000);
	uint64_t ms = t_now_ms() - t0;
	t_expect(&h, err, "the add never answered");
	fprintf(stderr, "resolve: add with an unanswered name answered in %llu ms\n",
		(unsigned long long)ms);
	t_expect(&h, ms >= ANSWER_MIN_MS && ms <= ANSWER_MAX_MS,
		 "the add answered after %llu ms; expected about %d", (unsigned long long)ms,
		 BOUND_MS);
	t_expect(&h,
		 strstr(err, "bad address \"dead1.lbtest:80\": cannot resolve \"dead1.lbtest\" "
			     "within " BOUND_S),
		 "add error: %s", err);
	free(err);
	err = answer_error(fd, STATUS_MAX_MS);
	t_expect(&h, err && !*err, "the status queued behind the add got: %s",
		 err ? err : "(no answer)");
	free(err);
	close(fd);

	/* A client that leaves while its add waits: lb forgets it and stays well. */
	fd = request("{\"cmd\":\"add\",\"pool\":\"web\",\"name\":\"e\","
		     "\"address\":\"dead2.lbtest:80\"}\n");
	usleep(200 * 1000);
	close(fd);
	usleep(BOUND_MS * 1000 + 500 * 1000);
	status_answers_at_once("after an abandoned add");
}
END_TEST

START_TEST(test_a_config_with_unanswered_names_is_refused_within_the_bound)
{
	char path[512], *err = NULL;

	h.port = t_free_port();
	t_cfg_write(config(NDEAD), path, sizeof(path));
	char *argv[] = {wrapper, "--check", "-c", path, NULL};
	uint64_t t0 = t_now_ms();
	int rc = t_run(argv, NULL, &err, ANSWER_MAX_MS + 5000);
	uint64_t ms = t_now_ms() - t0;

	fprintf(stderr, "resolve: lb --check with %zu unanswered names: exit %d in %llu ms\n",
		NDEAD, rc, (unsigned long long)ms);
	ck_assert_msg(rc == 2 && ms <= ANSWER_MAX_MS,
		      "lb --check: exit %d after %llu ms (names are looked up in parallel, %d ms "
		      "in all); stderr: %s",
		      rc, (unsigned long long)ms, BOUND_MS, err ? err : "");
	for (size_t i = 0; i < NDEAD; i++) {
		char want[200];
		snprintf(want, sizeof(want),
			 "pools[0].backends[%zu].address: backend \"%s:80\": cannot resolve \"%s\" "
			 "within %s",
			 i, dead[i], dead[i], BOUND_S);
		ck_assert_msg(err && strstr(err, want), "stderr lacks '%s': %s", want, err);
	}
	free(err);
	t_remove_config(path);
}
END_TEST

START_TEST(test_names_that_resolve_are_added_and_reloaded)
{
	char addr[64], *out = NULL;

	start_lb();
	/* /etc/hosts answers for localhost: no DNS query, no wait. */
	snprintf(addr, sizeof(addr), "localhost:%d", tb_port(h.be.tb[0]));
	t_harness_lbctl_ok(&h, "add", "web", "byname", addr, NULL);
	json_t *cfg = config(0);
	t_cfg_backend(json_array_get(json_object_get(cfg, "pools"), 0), "fromfile", addr);
	t_rewrite_config(&h.lb, cfg);
	t_harness_lbctl_ok(&h, "reload", NULL);
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "--json", "backends", NULL) == 0, "backends");
	t_expect(&h, out && strstr(out, "\"fromfile\"") && strstr(out, "127.0.0.1"),
		 "the backend named by host name is missing: %s", out);
	free(out);
}
END_TEST

/* The suite needs root: a mount namespace to give lb a resolv.conf of its own. */
static bool can_unshare(void)
{
	char *argv[] = {"/usr/bin/unshare", "--mount", "true", NULL};

	return geteuid() == 0 && access(argv[0], X_OK) == 0 && t_run(argv, NULL, NULL, 5000) == 0;
}

int main(void)
{
	const TTest *tests[] = {
	    test_reload_waiting_on_dns_blocks_no_other_client,
	    test_sigterm_during_a_reload_waiting_on_dns_stops_at_once,
	    test_add_with_an_unanswered_name_blocks_no_other_client,
	    test_a_config_with_unanswered_names_is_refused_within_the_bound,
	    test_names_that_resolve_are_added_and_reloaded,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	if (!can_unshare()) {
		fprintf(stderr, "test_resolve: skipped: needs root and unshare --mount\n");
		return SKIP_EXIT;
	}
	return t_run_suite(t_suite("resolve", TEST_TIMEOUT_S, setup, teardown, tests), CK_ENV);
}
