/* Integration: lb out of file descriptors (issue 13, items 1 and 3). lb's fd limit is lowered
 * (prlimit, the soft limit) to what it holds plus a few relayed connections; once those fill it, a
 * control client and a scrape wait in their backlogs. lb must not spin on accept (before the fix
 * its main thread used a whole CPU and logged every failed accept), must log the shortage a bounded
 * number of times, must not blame the healthy backend (no connect failure, not marked down by the
 * data plane or by the prober), and must answer lbctl and /metrics again as soon as descriptors
 * free up, with the shortage counted. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 60
/* Relayed connections that fill lb's table: two descriptors each. */
#define HELD 3
/* How long lb sits out of fds with clients waiting. */
#define STARVE_MS 2000
/* CPU lb may use meanwhile (clock ticks, 100 a second): a spinning main thread takes all
 * 200; a paused one next to nothing. */
#define STARVE_TICKS_MAX 50
/* Log lines about failed accepts allowed meanwhile (one a second per socket, plus the
 * first ones). */
#define ACCEPT_LINES_MAX 12

static struct t_harness h;

static size_t count_lines(const char *log, const char *needle)
{
	size_t n = 0;

	for (const char *p = log; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* A connection to lb's control socket, left waiting in its backlog. */
static int control_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", h.sock);
	t_expect(&h, fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
		 "cannot connect to the control socket");
	return fd;
}

static double metric(const char *text, const char *series)
{
	const char *p = strstr(text, series);
	return p ? strtod(p + strlen(series), NULL) : -1;
}

START_TEST(test_out_of_fds_pauses_accepts_and_blames_no_backend)
{
	int mport = t_free_port(), held[HELD], n = 0;
	json_t *cfg = t_cfg_new(1);

	t_backends_add(&h.be, TB_ECHO, "e");
	h.port = t_free_port();
	t_cfg_set(cfg, "\"metrics\":{\"listen\":\"127.0.0.1:%d\"}", mport);
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	json_t *pool =
	    t_cfg_pool(cfg, "web", NULL, "{\"type\":\"tcp\",\"interval\":\"100ms\",\"fall\":2}");
	t_cfg_backends(pool, &h.be);
	t_harness_start(&h, cfg, "control socket");
	t_harness_lbctl_ok(&h, "status", NULL); /* the prober's first checks are done */
	usleep(300 * 1000);

	/* Room for exactly HELD relayed connections. */
	int used = lb_fd_count(&h.lb);
	struct rlimit orig;
	struct rlimit rl;
	t_expect(&h, prlimit(h.lb.pid, RLIMIT_NOFILE, NULL, &orig) == 0, "cannot read lb's limit");
	rl = orig;
	rl.rlim_cur = (rlim_t)(used + 2 * HELD); /* the soft limit: lowered and raised freely */
	t_expect(&h, used > 0 && prlimit(h.lb.pid, RLIMIT_NOFILE, &rl, NULL) == 0,
		 "cannot lower lb's fd limit");
	for (int i = 0; i < HELD; i++) {
		held[i] = t_connect(NULL, h.port);
		t_expect(&h, held[i] >= 0 && t_echo_byte(held[i], 'a', 3000),
			 "relayed connection %d of %d failed with room for it", i + 1, HELD);
		n++;
	}
	t_expect(&h, lb_fd_count(&h.lb) == used + 2 * HELD, "lb holds %d fds, expected %d",
		 lb_fd_count(&h.lb), used + 2 * HELD);

	/* Now every accept fails: a control client and a scrape wait. */
	int cfd = control_connect();
	int mfd = t_connect(NULL, mport);
	int extra = t_connect(NULL, h.port);
	t_expect(&h, mfd >= 0 && extra >= 0, "cannot queue connections to lb");
	char *before = lb_log(&h.lb);
	long t0 = lb_cpu_ticks(h.lb.pid);
	usleep(STARVE_MS * 1000);
	long t1 = lb_cpu_ticks(h.lb.pid);
	char *log = lb_log(&h.lb);
	size_t lines = count_lines(log, "accept: Too many open files") -
		       count_lines(before, "accept: Too many open files");
	fprintf(stderr,
		"test_fd_exhaustion (%s): %ld CPU ticks and %zu accept log lines in %d ms\n",
		t_engine(), t1 - t0, lines, STARVE_MS);
	t_expect(&h, t0 >= 0 && t1 - t0 <= STARVE_TICKS_MAX,
		 "lb used %ld clock ticks in %d ms out of fds (spinning?)", t1 - t0, STARVE_MS);
	t_expect(&h, lines >= 1 && lines <= ACCEPT_LINES_MAX,
		 "%zu log lines about failed accepts in %d ms", lines, STARVE_MS);
	free(before);
	free(log);

	/* One descriptor free: the waiting connection is accepted, but its backend socket
	 * cannot be made. lb's shortage, not the backend's: the client is closed and the
	 * rejection counted as "resources". */
	close(cfd);
	close(mfd);
	rl.rlim_cur++;
	t_expect(&h, prlimit(h.lb.pid, RLIMIT_NOFILE, &rl, NULL) == 0, "cannot raise the limit");
	t_expect(&h, t_wait_closed(extra, 5000) == 0,
		 "the connection accepted without a backend socket was not closed");
	close(extra);

	/* Free descriptors: everything answers again, and the shortage was counted. */
	for (int i = 0; i < n; i++)
		close(held[i]);
	t_expect(&h, prlimit(h.lb.pid, RLIMIT_NOFILE, &orig, NULL) == 0,
		 "cannot restore the limit: %s", strerror(errno));
	char *out = NULL;
	int rc = t_lbctl(h.sock, &out, NULL, "backends", "--json", NULL);
	t_expect(&h, rc == 0 && out, "lbctl backends exited %d after the shortage", rc);
	t_expect(&h, strstr(out, "\"failures\": 0,") && strstr(out, "\"state\": \"up\""),
		 "the backend was blamed for lb's shortage: %s", out);
	free(out);
	int status = 0;
	char *text = t_http_get(mport, "/metrics", &status);
	t_expect(&h, text && status == 200, "no /metrics after the shortage");
	t_expect(&h,
		 metric(text, "lb_control_accept_errors_total{socket=\"control\"} ") >= 1 &&
		     metric(text, "lb_control_accept_errors_total{socket=\"metrics\"} ") >= 1 &&
		     metric(text, "lb_listener_accept_errors_total{listener=\"web\"} ") >= 1,
		 "the failed accepts were not counted:\n%s", text);
	free(text);
}
END_TEST

static void finish(void)
{
	t_harness_finish(&h);
}

int main(void)
{
	const TTest *tests[] = {test_out_of_fds_pauses_accepts_and_blames_no_backend, NULL};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("fd_exhaustion", TEST_TIMEOUT_S, NULL, finish, tests), CK_ENV);
}
