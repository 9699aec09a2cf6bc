/* Integration: the control plane of the real lb driven by the real lbctl ($LBCTL_BIN) on the
 * engine named by $LB_ENGINE — each admin command's effect on traffic, lbctl's exit codes
 * and messages, the socket file's life, and hostile input on the control socket while other
 * clients and the data plane keep working. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS     2
#define MAX_BACKENDS   4
#define TEST_TIMEOUT_S 60

static struct t_harness h;

/* ---- set-up ---- */

static void backends(size_t n)
{
	static const char *const names[] = {"a", "b", "c", "d"};
	t_backends_add_n(&h.be, TB_TAGGED, names, n);
}

/* lb over the first nconf test backends, weights[i] (0 = default). */
static void start_lb(const char *algorithm, size_t nconf, const int *weights)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	h.port = t_free_port();
	t_cfg_set(json_object_get(cfg, "control"), "\"mode\":\"0600\"");
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	json_t *pool = t_cfg_pool(cfg, "web", algorithm, T_HEALTH_NONE);
	for (size_t i = 0; i < nconf; i++) {
		json_t *b = t_cfg_backend(pool, tb_name(h.be.tb[i]), tb_address(h.be.tb[i]));
		if (weights && weights[i])
			t_cfg_set(b, "\"weight\":%d", weights[i]);
	}
	t_harness_start(&h, cfg, "control socket");
}

/* ---- traffic ---- */

/* A held connection still relays both ways. */
static bool still_echoes(int fd)
{
	char buf[32];
	if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5)
		return false;
	return t_read_line(fd, buf, sizeof(buf), 3000) == 4 && strcmp(buf, "ping") == 0;
}

/* Hold connections until one reaches backend want (at most 16 tries); others closed. */
static int hold_on(int want)
{
	for (int i = 0; i < 16; i++) {
		int idx, fd = t_hold(&h.lb, &h.be, h.port, &idx);
		if (idx == want)
			return fd;
		close(fd);
	}
	t_expect(&h, 0, "no connection reached backend %s", tb_name(h.be.tb[want]));
	return -1;
}

/* ---- admin commands and traffic ---- */

static _Atomic bool traffic_stop;

static void *traffic(void *arg)
{
	unsigned counts[MAX_BACKENDS];
	(void)arg;
	for (int i = 0; i < 400 && !atomic_load(&traffic_stop); i++) {
		memset(counts, 0, sizeof(counts));
		(void)t_fetch_many(&h.be, h.port, 2, counts);
		usleep(5000);
	}
	return NULL;
}

/* lbctl top, not on a terminal: N plain refreshes a second apart, every backend in each,
 * rates from the second one on, no escape codes. */
START_TEST(test_top_prints_plain_refreshes_with_rates)
{
	pthread_t t;
	char *out = NULL, *err = NULL;

	backends(2);
	start_lb("round_robin", 2, NULL);
	atomic_store(&traffic_stop, false);
	ck_assert_int_eq(pthread_create(&t, NULL, traffic, NULL), 0);
	int rc = t_lbctl(h.sock, &out, &err, "top", "-n", "3", NULL);
	atomic_store(&traffic_stop, true);
	pthread_join(t, NULL);
	t_expect(&h, rc == 0 && out, "lbctl top -n 3 exited %d: %s", rc, err ? err : "");
	int heads = 0, rated = 0;
	for (const char *s = out; (s = strstr(s, "lbctl top")); s++)
		heads++;
	t_expect(&h, heads == 3, "%d refreshes, not 3:\n%s", heads, out);
	t_expect(&h, !strchr(out, '\033'), "escape codes when not on a terminal:\n%s", out);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char pool[32], name[32], conns[32];
		if (sscanf(line, "%31s %31s %*s %*s %*s %*s %31s", pool, name, conns) == 3 &&
		    strcmp(pool, "web") == 0 && strcmp(conns, "-") != 0 && atof(conns) > 0)
			rated++;
	}
	t_expect(&h, rated >= 2, "no connections/s under traffic (%d rows with a rate)", rated);
	free(out);
	free(err);
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "top", "-n", "0", NULL) == 2,
		 "top -n 0 is not a usage error");
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_drain_keeps_open_connections_and_sends_no_new_ones)
{
	unsigned counts[MAX_BACKENDS] = {0};

	backends(2);
	start_lb("round_robin", 2, NULL);
	int fd = hold_on(0);
	t_harness_lbctl_ok(&h, "drain", "web/a", NULL);
	t_expect(&h, t_fetch_many(&h.be, h.port, 10, counts) == 0,
		 "connections failed after drain");
	t_expect(&h, counts[0] == 0 && counts[1] == 10, "drained a still got %u of 10", counts[0]);
	t_expect(&h, still_echoes(fd),
		 "the open connection to the drained backend stopped relaying");
	char *out = NULL;
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "backends", "web", NULL) == 0,
		 "lbctl backends failed");
	t_expect(&h, strstr(out, "draining") != NULL, "backends does not show draining:\n%s", out);
	free(out);
	t_harness_lbctl_ok(&h, "enable", "web/a", NULL);
	memset(counts, 0, sizeof(counts));
	t_expect(&h, t_fetch_many(&h.be, h.port, 4, counts) == 0 && counts[0] == 2,
		 "enable did not bring a back");
	close(fd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_disable_stops_new_connections)
{
	unsigned counts[MAX_BACKENDS] = {0};

	backends(2);
	start_lb("round_robin", 2, NULL);
	int fd = hold_on(1);
	t_harness_lbctl_ok(&h, "disable", "web/b", NULL);
	t_expect(&h, t_fetch_many(&h.be, h.port, 8, counts) == 0 && counts[0] == 8,
		 "disabled b got %u of 8", counts[1]);
	t_expect(&h, still_echoes(fd), "disable closed an open connection");
	close(fd);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_kill_closes_open_connections_of_that_backend_only)
{
	int fds[6], idx[6];
	char *out = NULL;

	backends(2);
	start_lb("round_robin", 2, NULL);
	for (int i = 0; i < 6; i++)
		fds[i] = t_hold(&h.lb, &h.be, h.port, &idx[i]);
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "kill", "web/a", NULL) == 0, "lbctl kill failed");
	t_expect(&h, strstr(out, "closing 3") != NULL, "kill output: %s", out);
	free(out);
	for (int i = 0; i < 6; i++) {
		if (idx[i] == 0)
			t_expect(&h, t_wait_closed(fds[i], 3000) >= 0,
				 "killed connection %d still open", i);
		else
			t_expect(&h, still_echoes(fds[i]), "connection %d to b died with a's kill",
				 i);
		close(fds[i]);
	}
	/* kill is not disable: a takes new connections. */
	unsigned counts[MAX_BACKENDS] = {0};
	t_expect(&h, t_fetch_many(&h.be, h.port, 4, counts) == 0 && counts[0] == 2,
		 "a gets no traffic after kill");
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_weight_zero_takes_no_new_connections)
{
	unsigned counts[MAX_BACKENDS] = {0};
	char *out = NULL;

	backends(2);
	start_lb("weighted_round_robin", 2, NULL);
	t_harness_lbctl_ok(&h, "weight", "web/a", "0", NULL);
	t_expect(&h, t_fetch_many(&h.be, h.port, 8, counts) == 0 && counts[0] == 0,
		 "weight 0 still got %u", counts[0]);
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "--json", "backends", NULL) == 0,
		 "lbctl --json failed");
	t_expect(&h, strstr(out, "\"weight\": 0") != NULL, "weight not shown: %s", out);
	free(out);
	t_harness_lbctl_ok(&h, "weight", "web/a", "3", NULL);
	memset(counts, 0, sizeof(counts));
	t_expect(&h,
		 t_fetch_many(&h.be, h.port, 8, counts) == 0 && counts[0] == 6 && counts[1] == 2,
		 "weights 3:1 gave %u:%u", counts[0], counts[1]);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_add_makes_a_new_backend_take_traffic_and_remove_stops_it)
{
	unsigned counts[MAX_BACKENDS] = {0};

	backends(3);
	start_lb("round_robin", 2, NULL);
	t_harness_lbctl_ok(&h, "add", "web", "c", tb_address(h.be.tb[2]), "--weight", "2", NULL);
	t_expect(&h, t_fetch_many(&h.be, h.port, 9, counts) == 0 && counts[2] == 3,
		 "added c got %u of 9", counts[2]);
	/* A busy runtime-added backend, removed by force: its memory goes only once idle. */
	t_harness_lbctl_ok(&h, "disable", "web/a", NULL);
	t_harness_lbctl_ok(&h, "disable", "web/b", NULL);
	int idx, fd = t_hold(&h.lb, &h.be, h.port, &idx);
	t_expect(&h, idx == 2, "only c is enabled, got %d", idx);
	t_harness_lbctl_ok(&h, "enable", "web/a", NULL);
	t_harness_lbctl_ok(&h, "enable", "web/b", NULL);
	t_harness_lbctl_ok(&h, "remove", "web/c", "--force", NULL);
	t_expect(&h, t_wait_closed(fd, 3000) >= 0, "force-removed backend's connection stays open");
	close(fd);
	memset(counts, 0, sizeof(counts));
	t_expect(&h, t_fetch_many(&h.be, h.port, 6, counts) == 0 && counts[2] == 0,
		 "removed c still got %u", counts[2]);
	/* Add it again under the same name, then remove it idle. */
	t_harness_lbctl_ok(&h, "add", "web", "c", tb_address(h.be.tb[2]), NULL);
	t_expect(&h, t_fetch_many(&h.be, h.port, 6, counts) == 0 && counts[2] == 2,
		 "re-added c got %u", counts[2]);
	/* The clients have closed, but lb finishes a pair only after the backend's FIN too:
	 * wait until lb counts c idle, then a plain remove must succeed. */
	uint64_t end = t_now_ms() + 3000;
	char *out = NULL;
	for (;;) {
		free(out);
		out = NULL;
		if (t_lbctl(h.sock, &out, NULL, "--json", "backends", "web", NULL) == 0 && out &&
		    strstr(out, "\"name\": \"c\"") &&
		    strstr(strstr(out, "\"name\": \"c\""), "\"active\": 0"))
			break;
		if (t_now_ms() > end)
			break;
		usleep(20 * 1000);
	}
	free(out);
	t_harness_lbctl_ok(&h, "remove", "web/c", NULL);
	usleep(200 * 1000); /* let the reaper free it while lb runs (ASan watches) */
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_remove_refuses_while_busy_unless_forced)
{
	char *err = NULL, *out = NULL;
	unsigned counts[MAX_BACKENDS] = {0};

	backends(2);
	start_lb("round_robin", 2, NULL);
	int fd = hold_on(0);
	int rc = t_lbctl(h.sock, NULL, &err, "remove", "web/a", NULL);
	t_expect(&h, rc == 1 && strstr(err, "open connections"), "remove of busy a: rc %d, %s", rc,
		 err);
	free(err);
	t_expect(&h, still_echoes(fd), "a refused remove disturbed the connection");
	t_harness_lbctl_ok(&h, "remove", "web/a", "--force", NULL);
	t_expect(&h, t_wait_closed(fd, 3000) >= 0, "forced remove left the connection open");
	close(fd);
	t_expect(&h, t_lbctl(h.sock, &out, NULL, "backends", NULL) == 0 && !strstr(out, "\na "),
		 "a still listed: %s", out);
	free(out);
	t_expect(&h, t_fetch_many(&h.be, h.port, 4, counts) == 0 && counts[1] == 4,
		 "traffic after remove went wrong");
	t_expect(&h,
		 t_lbctl(h.sock, NULL, &err, "enable", "web/a", NULL) == 1 &&
		     strstr(err, "no such backend"),
		 "enable of removed a: %s", err);
	free(err);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_algorithm_switch_changes_the_distribution)
{
	static const int weights[] = {3, 1};
	unsigned counts[MAX_BACKENDS] = {0};
	char *err = NULL;

	backends(2);
	start_lb("weighted_round_robin", 2, weights);
	t_expect(&h, t_fetch_many(&h.be, h.port, 8, counts) == 0 && counts[0] == 6,
		 "wrr 3:1 gave %u:%u", counts[0], counts[1]);
	t_harness_lbctl_ok(&h, "algorithm", "web", "round_robin", NULL);
	memset(counts, 0, sizeof(counts));
	t_expect(&h, t_fetch_many(&h.be, h.port, 8, counts) == 0 && counts[0] == 4,
		 "round_robin gave %u:%u", counts[0], counts[1]);
	t_expect(&h,
		 t_lbctl(h.sock, NULL, &err, "algorithm", "web", "fastest", NULL) == 1 &&
		     strstr(err, "unknown algorithm"),
		 "bad algorithm: %s", err);
	free(err);
	t_harness_finish(&h);
}
END_TEST

/* ---- lbctl itself ---- */

START_TEST(test_lbctl_exit_codes_and_messages)
{
	char *out = NULL, *err = NULL;

	backends(1);
	start_lb("round_robin", 1, NULL);
	t_expect(&h,
		 t_lbctl(h.sock, &out, NULL, "status", NULL) == 0 && strstr(out, "engine:") &&
		     strstr(out, "LISTENER"),
		 "status: %s", out);
	free(out);
	t_expect(&h,
		 t_lbctl(h.sock, &out, NULL, "--json", "status", NULL) == 0 &&
		     strstr(out, "\"uptime_s\""),
		 "status --json: %s", out);
	free(out);
	t_expect(&h,
		 t_lbctl(h.sock, NULL, &err, "disable", "web/zz", NULL) == 1 &&
		     strstr(err, "no such backend"),
		 "unknown backend: %s", err);
	free(err);
	/* The file on disk is the one lb started with: a reload with no changes succeeds. */
	t_expect(&h, t_lbctl(h.sock, NULL, &err, "reload", NULL) == 0, "reload: %s", err);
	free(err);
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "frobnicate", NULL) == 2,
		 "unknown command is not exit 2");
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "weight", "web/a", NULL) == 2,
		 "missing N is not exit 2");
	t_expect(&h, t_lbctl(h.sock, NULL, NULL, "weight", "web/a", "1001", NULL) == 2,
		 "weight 1001 accepted");
	t_expect(&h,
		 t_lbctl("/nonexistent/lb.sock", NULL, &err, "status", NULL) == 2 &&
		     strstr(err, "cannot connect to /nonexistent/lb.sock: is lb running? (ENOENT)"),
		 "unreachable: %s", err);
	free(err);
	struct stat st;
	t_expect(&h, stat(h.sock, &st) == 0 && (st.st_mode & 0777) == 0600, "socket mode %o",
		 st.st_mode & 0777);
	t_harness_finish(&h);
	t_expect(&h, stat(h.sock, &st) < 0, "socket file left behind after shutdown");
}
END_TEST

START_TEST(test_stale_socket_is_replaced_and_a_live_one_refused)
{
	char dir[] = "/tmp/lbctl-test-XXXXXX", json[1024];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct lbproc second;

	backends(1);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/ctl.sock", dir);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(s); /* a stale socket file: nobody listens */

	h.port = t_free_port();
	snprintf(json, sizeof(json),
		 "{\"engine\":\"%s\",\"workers\":1,\"shutdown_grace\":\"1s\","
		 "\"control\":{\"socket\":\"%s\"},\"listeners\":[{\"name\":\"web\","
		 "\"listen\":\"127.0.0.1:%d\",\"pool\":\"web\"}],\"pools\":[{\"name\":\"web\","
		 "\"backends\":[{\"address\":\"%s\"}]}]}",
		 t_engine(), sun.sun_path, h.port, tb_address(h.be.tb[0]));
	t_expect(&h, lb_start(&h.lb, json, &h.port, 1) == 0, "lb refused a stale socket file");
	h.lb_started = true;
	snprintf(h.sock, sizeof(h.sock), "%s", sun.sun_path);
	t_expect(&h, lb_log_wait(&h.lb, "control socket", 3000), "no control socket");
	t_harness_lbctl_ok(&h, "status", NULL);

	/* A second lb on the same socket must refuse to start, and leave the first alone. */
	int port2 = t_free_port();
	snprintf(json, sizeof(json),
		 "{\"engine\":\"%s\",\"workers\":1,\"control\":{\"socket\":\"%s\"},"
		 "\"listeners\":[{\"name\":\"web\",\"listen\":\"127.0.0.1:%d\",\"pool\":\"web\"}],"
		 "\"pools\":[{\"name\":\"web\",\"backends\":[{\"address\":\"%s\"}]}]}",
		 t_engine(), sun.sun_path, port2, tb_address(h.be.tb[0]));
	memset(&second, 0, sizeof(second));
	lb_start(&second, json, &port2, 1); /* may or may not see the port listen first */
	int st2 = lb_stop(&second, 5000);
	char *log2 = lb_log(&second);
	t_expect(&h, log2 && strstr(log2, "another lb is running"), "second lb log: %s",
		 log2 ? log2 : "");
	t_expect(&h, st2 != 0, "second lb exited 0");
	free(log2);
	lb_cleanup(&second);
	t_harness_lbctl_ok(&h, "status", NULL);
	t_harness_finish(&h);
	rmdir(dir);
}
END_TEST

/* ---- hostile input ---- */

static int ctl_connect(void)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct timeval tv = {5, 0};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", h.sock);
	t_expect(&h, fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
		 "cannot connect to the control socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void ctl_send(int fd, const char *buf, size_t len)
{
	t_expect(&h, t_send_all(fd, buf, len), "send to the control socket: %s", strerror(errno));
}

/* Send line, read one response line into buf; true if it has "ok":want. */
static bool ask(int fd, const char *line, char *buf, size_t len, bool want)
{
	ctl_send(fd, line, strlen(line));
	if (t_read_line(fd, buf, len, 3000) <= 0)
		return false;
	return strstr(buf, want ? "\"ok\":true" : "\"ok\":false") != NULL;
}

START_TEST(test_bad_input_gets_errors_and_others_keep_working)
{
	static char resp[256 * 1024];
	int idle[100], good, flood;

	backends(2);
	start_lb("round_robin", 2, NULL);
	for (int i = 0; i < 100; i++) {
		idle[i] = ctl_connect();
		if (i % 2)
			ctl_send(idle[i], "{\"cmd\":", 7); /* half a line, then silence */
	}
	good = ctl_connect();
	t_expect(&h, ask(good, "not json\n", resp, sizeof(resp), false) && strstr(resp, "bad JSON"),
		 "non-JSON: %s", resp);
	t_expect(&h, ask(good, "[1,2]\n", resp, sizeof(resp), false), "array: %s", resp);
	t_expect(&h,
		 ask(good, "{\"cmd\":\"fly\"}\n", resp, sizeof(resp), false) &&
		     strstr(resp, "unknown command"),
		 "unknown: %s", resp);
	t_expect(&h, ask(good, "{\"cmd\":7}\n", resp, sizeof(resp), false), "cmd 7: %s", resp);
	t_expect(&h,
		 ask(good,
		     "{\"cmd\":\"weight\",\"pool\":\"web\",\"backend\":\"a\",\"weight\":\"x\"}\n",
		     resp, sizeof(resp), false) &&
		     strstr(resp, "must be an integer"),
		 "weight x: %s", resp);
	t_expect(&h, ask(good, "{\"cmd\":\"backends\",\"pool\":[]}\n", resp, sizeof(resp), false),
		 "pool []: %s", resp);
	t_expect(
	    &h,
	    ask(good, "{\"cmd\":\"backends\",\"pool\":\"web2\"}\n", resp, sizeof(resp), false) &&
		strstr(resp, "no such pool: web2"),
	    "web2: %s", resp);

	/* A 1 MiB line: one error, then the same connection works again. */
	size_t big = 1 << 20;
	char *line = malloc(big + 1);
	memset(line, 'x', big);
	line[big] = '\n';
	ctl_send(good, line, big + 1);
	free(line);
	t_expect(&h, t_read_line(good, resp, sizeof(resp), 3000) > 0 && strstr(resp, "longer than"),
		 "1 MiB line: %s", resp);
	t_expect(&h, ask(good, "{\"cmd\":\"status\"}\n", resp, sizeof(resp), true),
		 "status after the big line: %s", resp);

	/* Mid-line disconnects, and a client that floods requests but never reads. */
	for (int i = 0; i < 10; i++) {
		int fd = ctl_connect();
		ctl_send(fd, "{\"cmd\":\"sta", 11);
		close(fd);
	}
	flood = ctl_connect();
	char *many = malloc(20000 * 18 + 1);
	size_t off = 0;
	for (int i = 0; i < 20000; i++)
		off += (size_t)sprintf(many + off, "{\"cmd\":\"metrics\"}\n");
	struct timeval tv = {0, 200000};
	setsockopt(flood, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)send(flood, many, off, MSG_NOSIGNAL); /* may stop short: lb stops reading it */
	free(many);

	/* Everyone else is still served: raw clients, lbctl and the data plane. */
	t_expect(&h, ask(good, "{\"cmd\":\"backends\"}\n", resp, sizeof(resp), true),
		 "backends: %s", resp);
	t_harness_lbctl_ok(&h, "status", NULL);
	unsigned counts[MAX_BACKENDS] = {0};
	t_expect(&h, t_fetch_many(&h.be, h.port, 10, counts) == 0 && counts[0] == 5,
		 "data plane: %u:%u", counts[0], counts[1]);
	close(flood);
	for (int i = 0; i < 100; i++)
		close(idle[i]);
	t_expect(&h, ask(good, "{\"cmd\":\"status\"}\n", resp, sizeof(resp), true), "final: %s",
		 resp);
	close(good);
	t_harness_finish(&h);
}
END_TEST

/* Idle clients beyond the caps (1,024 control clients, 64 scrapers) used to lock lbctl out
 * for ever and scrapes out for 10 s: now a new client closes the one idle longest. */
START_TEST(test_idle_clients_never_lock_lbctl_or_scrapes_out)
{
	enum { IDLE_CTL = 1100, IDLE_HTTP = 70 };
	static int ctl[IDLE_CTL], web[IDLE_HTTP];
	struct rlimit rl;
	int mport = t_free_port(), status = 0;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max; /* this test holds over a thousand sockets */
	ck_assert_msg(setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > IDLE_CTL + IDLE_HTTP + 64,
		      "the fd limit (%llu) is too low for this test",
		      (unsigned long long)rl.rlim_cur);
	backends(1);
	h.port = t_free_port();
	json_t *cfg = t_cfg_new(LB_WORKERS);
	t_cfg_set(cfg, "\"metrics\":{\"listen\":\"127.0.0.1:%d\"}", mport);
	t_cfg_listener(cfg, "web", NULL, "127.0.0.1", h.port, "web");
	t_cfg_backends(t_cfg_pool(cfg, "web", NULL, T_HEALTH_NONE), &h.be);
	t_harness_start(&h, cfg, "control socket");

	for (int i = 0; i < IDLE_CTL; i++)
		ctl[i] = ctl_connect();
	t_harness_lbctl_ok(&h, "status", NULL);
	t_expect(&h, t_wait_closed(ctl[0], 3000) >= 0,
		 "the control client idle longest was not closed to make room");
	for (int i = 0; i < IDLE_HTTP; i++) {
		web[i] = t_connect(NULL, mport);
		t_expect(&h, web[i] >= 0, "cannot connect to the metrics listener");
	}
	usleep(200 * 1000); /* let lb accept them all */
	char *text = t_http_get(mport, "/metrics", &status);
	t_expect(&h, text && status == 200, "a scrape behind %d idle connections got %d", IDLE_HTTP,
		 status);
	free(text);
	for (int i = 0; i < IDLE_CTL; i++)
		close(ctl[i]);
	for (int i = 0; i < IDLE_HTTP; i++)
		close(web[i]);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_drain_keeps_open_connections_and_sends_no_new_ones,
	    test_disable_stops_new_connections,
	    test_kill_closes_open_connections_of_that_backend_only,
	    test_weight_zero_takes_no_new_connections,
	    test_add_makes_a_new_backend_take_traffic_and_remove_stops_it,
	    test_remove_refuses_while_busy_unless_forced,
	    test_algorithm_switch_changes_the_distribution,
	    test_lbctl_exit_codes_and_messages,
	    test_stale_socket_is_replaced_and_a_live_one_refused,
	    test_bad_input_gets_errors_and_others_keep_working,
	    test_idle_clients_never_lock_lbctl_or_scrapes_out,
	    test_top_prints_plain_refreshes_with_rates,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("control", TEST_TIMEOUT_S, NULL, NULL, tests), CK_ENV);
}
