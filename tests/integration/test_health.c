/* Integration: health checks through the real lb binary on the engine named by $LB_ENGINE.
 * Each test starts its own lb in front of loopback backends — the shared test backends, small
 * scripted servers defined here (HTTP with a switchable status, a MySQL greeting, a UDP echo)
 * and real redis-server and PostgreSQL instances — and times the state transitions lb logs
 * against the bounds SPEC.md promises. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS     2
#define TEST_TIMEOUT_S 60
/* Fast checks for tests whose failures are immediate (refused) or decided by a reply. */
#define FAST_INTERVAL_MS 100
#define FAST_TIMEOUT_MS	 250
/* Checks that fail by timeout: timeout < interval, so fall failures take at most
 * interval x fall + timeout after the backend stops answering. */
#define SLOW_INTERVAL_MS 300
#define SLOW_TIMEOUT_MS	 150
#define RISE		 2
#define FALL		 2
/* What a bound allows beyond the SPEC formula: lb's log write, this suite's 10 ms log polling
 * and scheduling on a loaded (or sanitizer) build. */
#define SLACK_MS 500
/* Waits for things outside lb's promises (a server starting, traffic settling). */
#define SETTLE_MS 5000
#define TAG_MAX	  64

struct bdef {
	const char *name;
	const char *address;
};

/* A reply a scripted server sends; data NULL = accept and never answer. */
struct blob {
	const void *data;
	size_t len;
};

#define SSRV_MAX_HELD 64

/* Scripted server. TCP: answers each connection with replies[variant], which a test switches
 * while lb runs; speaks_first sends on accept (a greeting) instead of after a request.
 * UDP: echoes every datagram. */
struct ssrv {
	int type, lfd, port;
	char address[32];
	bool speaks_first;
	const struct blob *replies;
	_Atomic int variant;
	_Atomic bool stop;
	int held[SSRV_MAX_HELD];
	size_t nheld;
	pthread_t thread;
};

/* Everything the running test started (each Check test runs in its own process): lb and the
 * test backends in h, the scripted server and real databases beside. */
static struct t_harness h;
static struct {
	struct ssrv *ssrv;
	pid_t redis, pg;
	char pg_dir[64];
} srv;

/* ---- diagnostics ---- */

/* ---- lb ---- */

static void health_json(char *buf, size_t len, const char *type, const char *extra, int interval_ms,
			int timeout_ms)
{
	snprintf(buf, len,
		 "{\"type\":\"%s\"%s%s,\"interval\":\"%dms\",\"timeout\":\"%dms\","
		 "\"rise\":%d,\"fall\":%d}",
		 type, extra ? "," : "", extra ? extra : "", interval_ms, timeout_ms, RISE, FALL);
}

/* lb with one round_robin pool "p" behind one tcp listener. retries 0 makes a connection
 * routed to a dead backend fail visibly instead of being retried elsewhere. */
static void start_lb(const char *health, int retries, const struct bdef *b, size_t n)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	h.port = t_free_port();
	ck_assert_int_gt(h.port, 0);
	t_cfg_set(cfg, "\"log\":{\"level\":\"debug\"}");
	t_cfg_listener(cfg, "t", NULL, "127.0.0.1", h.port, "p");
	json_t *pool = t_cfg_pool(cfg, "p", "round_robin", health);
	t_cfg_set(pool, "\"retries\":%d", retries);
	for (size_t i = 0; i < n; i++)
		t_cfg_backend(pool, b[i].name, b[i].address);
	t_harness_start(&h, cfg, NULL);
}

static struct bdef def_of(struct tbackend *tb)
{
	return (struct bdef){.name = tb_name(tb), .address = tb_address(tb)};
}

/* "backend NAME (ADDRESS) is WHAT", the start of every transition line lb logs. */
static void transition(char *buf, size_t len, const char *name, const char *address,
		       const char *what)
{
	snprintf(buf, len, "backend %s (%s) is %s", name, address, what);
}

static int log_count(const char *needle)
{
	char *log = lb_log(&h.lb);
	int n = 0;

	for (const char *s = log; s && (s = strstr(s, needle)); s += strlen(needle))
		n++;
	free(log);
	return n;
}

/* Wait until lb has logged needle more than `before` times (take the count before the event
 * that should cause it); returns the milliseconds that took. Fails the test (with lb's log)
 * beyond limit_ms. */
static int expect_log(const char *needle, int before, int limit_ms)
{
	uint64_t start = t_now_ms(), deadline = start + (uint64_t)limit_ms + 1000;
	int took;

	while (log_count(needle) <= before) {
		t_expect(&h, t_now_ms() < deadline, "lb never logged \"%s\" within %d ms", needle,
			 limit_ms + 1000);
		usleep(10 * 1000);
	}
	took = (int)(t_now_ms() - start);
	t_expect(&h, took <= limit_ms, "lb logged \"%s\" after %d ms; the bound is %d ms", needle,
		 took, limit_ms);
	return took;
}

/* Wait until backend name is up after lb started. Not a timed promise: the first check
 * passes, or after a start-up hiccup on a loaded machine, rise checks do. */
static void expect_up(const char *name, const char *address)
{
	char line[160];

	transition(line, sizeof(line), name, address, "UP (");
	expect_log(line, 0, SETTLE_MS);
}

/* ---- scripted TCP server ---- */

/* Read an HTTP request head (up to the blank line) or whatever comes within the timeout. */
static void read_request(int fd)
{
	char buf[2048];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (n <= 0)
			return;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return;
	}
}

static void ssrv_serve(struct ssrv *s, int fd)
{
	const struct blob *r = &s->replies[atomic_load(&s->variant)];
	struct timeval tv = {.tv_sec = 1};

	if (!r->data) {
		if (s->nheld < SSRV_MAX_HELD)
			s->held[s->nheld++] = fd;
		else
			close(fd);
		return;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (!s->speaks_first)
		read_request(fd);
	(void)t_send_all(fd, r->data, r->len);
	close(fd);
}

static void ssrv_echo_datagram(struct ssrv *s)
{
	char buf[2048];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	ssize_t n =
	    recvfrom(s->lfd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);

	if (n >= 0)
		sendto(s->lfd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen);
}

static void *ssrv_main(void *arg)
{
	struct ssrv *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
		int fd;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		if (s->type == SOCK_DGRAM) {
			ssrv_echo_datagram(s);
			continue;
		}
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0)
			ssrv_serve(s, fd);
	}
	for (size_t i = 0; i < s->nheld; i++)
		close(s->held[i]);
	return NULL;
}

static int bind_loopback(int type, int *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* type SOCK_STREAM (replies, speaks_first) or SOCK_DGRAM (an echo; both unused). */
static struct ssrv *ssrv_start(int type, bool speaks_first, const struct blob *replies)
{
	struct ssrv *s = calloc(1, sizeof(*s));

	ck_assert_ptr_nonnull(s);
	s->type = type;
	s->speaks_first = speaks_first;
	s->replies = replies;
	s->lfd = bind_loopback(type, &s->port);
	ck_assert_int_eq(type == SOCK_DGRAM || listen(s->lfd, 64) == 0, 1);
	snprintf(s->address, sizeof(s->address), "127.0.0.1:%d", s->port);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, ssrv_main, s), 0);
	srv.ssrv = s;
	return s;
}

/* Stop and close the port (datagrams to a closed UDP port draw ICMP port unreachable). */
static void ssrv_free(struct ssrv *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	free(s);
}

/* ---- real servers (redis-server, PostgreSQL) ---- */

static int start_redis(void)
{
	return t_redis_start(&srv.redis);
}

static int start_postgres(void)
{
	return t_pg_start(&srv.pg, srv.pg_dir, sizeof(srv.pg_dir), NULL);
}

/* ---- tear-down ---- */

/* Stop lb (it must exit cleanly on SIGTERM with the prober running) and everything else. */
static void finish(void)
{
	t_harness_finish(&h);
	ssrv_free(srv.ssrv);
	srv.ssrv = NULL;
	t_stop_child(&srv.redis, SIGTERM, 5000);
	t_pg_stop(&srv.pg, srv.pg_dir);
}

static void setup(void)
{
	memset(&h, 0, sizeof(h));
	memset(&srv, 0, sizeof(srv));
	srv.redis = srv.pg = -1;
}

/* ---- clients ---- */

/* n sequential connections through lb reading the tag of a TB_TAGGED backend: hits[i] counts
 * connections answered by names[i]. Returns the number of connections that failed. */
static int fetch_many(int n, const char *const *names, size_t nnames, unsigned *hits)
{
	int failed = 0;
	char tag[TAG_MAX];

	for (int i = 0; i < n; i++) {
		if (t_fetch_tag(NULL, h.port, tag, sizeof(tag)) < 0) {
			failed++;
			continue;
		}
		for (size_t j = 0; j < nnames; j++)
			if (strcmp(tag, names[j]) == 0)
				hits[j]++;
	}
	return failed;
}

/* ---- tests ---- */

START_TEST(test_closed_backend_goes_down_gets_no_connections_and_comes_back)
{
	struct tbackend *b1 = t_backends_add(&h.be, TB_TAGGED, "b1"),
			*b2 = t_backends_add(&h.be, TB_TAGGED, "b2");
	struct bdef b[] = {def_of(b1), def_of(b2)};
	const char *names[] = {"b1", "b2"};
	char health[256], down[160], back[128], any_down[128], any_up[128];
	unsigned hits[2] = {0};
	int failed, took, downs, ups;

	health_json(health, sizeof(health), "tcp", NULL, FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	start_lb(health, 0, b, 2);
	expect_up("b1", tb_address(b1));
	expect_up("b2", tb_address(b2));
	transition(any_down, sizeof(any_down), "b1", tb_address(b1), "DOWN");
	transition(any_up, sizeof(any_up), "b1", tb_address(b1), "UP");
	transition(down, sizeof(down), "b1", tb_address(b1),
		   "DOWN: connection refused (2 consecutive failures)");
	transition(back, sizeof(back), "b1", tb_address(b1), "UP (2 consecutive passes)");
	downs = log_count(any_down);
	ups = log_count(any_up);

	tb_stop(b1);
	took =
	    expect_log(down, log_count(down), FAST_INTERVAL_MS * FALL + FAST_TIMEOUT_MS + SLACK_MS);
	fprintf(stderr, "closed backend marked down in %d ms\n", took);
	/* retries 0: a connection sent to b1 would fail, so none may be */
	failed = fetch_many(20, names, 2, hits);
	t_expect(&h, failed == 0 && hits[1] == 20, "b1 down: %d of 20 failed, b2 got %u", failed,
		 hits[1]);

	t_expect(&h, tb_restart(b1) == 0, "cannot restart b1");
	took = expect_log(back, log_count(back), FAST_INTERVAL_MS * RISE + SLACK_MS);
	fprintf(stderr, "restarted backend marked up in %d ms\n", took);
	memset(hits, 0, sizeof(hits));
	failed = fetch_many(20, names, 2, hits);
	t_expect(&h, failed == 0 && hits[0] >= 5 && hits[1] >= 5,
		 "b1 back: %d of 20 failed, b1 got %u, b2 got %u", failed, hits[0], hits[1]);
	/* each transition is logged once, however many checks ran meanwhile */
	t_expect(&h, log_count(any_down) == downs + 1 && log_count(any_up) == ups + 1,
		 "b1's transitions were not logged exactly once each");
	finish();
}
END_TEST

/* A blackhole next to a healthy backend: the checks must time out on it, not hang. */
static void blackhole_goes_down_by_timeout(const char *type, const char *extra,
					   enum tb_mode good_mode)
{
	struct tbackend *bh = t_backends_add(&h.be, TB_BLACKHOLE, "bh"),
			*ok = t_backends_add(&h.be, good_mode, "ok");
	struct bdef b[] = {def_of(bh), def_of(ok)};
	char health[256], down[128], up[128];

	health_json(health, sizeof(health), type, extra, SLOW_INTERVAL_MS, SLOW_TIMEOUT_MS);
	start_lb(health, 0, b, 2);
	transition(down, sizeof(down), "bh", tb_address(bh), "DOWN: timeout");
	expect_log(down, 0, SLOW_INTERVAL_MS + SLOW_TIMEOUT_MS + SLACK_MS);
	expect_up("ok", tb_address(ok));
	t_expect(&h, tb_accepted(bh) >= 1, "the blackhole was never probed");
	transition(up, sizeof(up), "bh", tb_address(bh), "UP");
	t_expect(&h, log_count(up) == 0, "the blackhole was marked up");
	finish();
}

START_TEST(test_blackhole_is_marked_down_by_send_expect_timeout)
{
	/* the echo backend returns "PONG\r\n", which contains expect */
	blackhole_goes_down_by_timeout("send_expect", "\"send\":\"PONG\\r\\n\",\"expect\":\"PONG\"",
				       TB_ECHO);
}
END_TEST

START_TEST(test_blackhole_is_marked_down_by_http_timeout)
{
	blackhole_goes_down_by_timeout("http", "\"path\":\"/health\"", TB_HTTP);
}
END_TEST

static const char http_200[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char http_503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
			       "Connection: close\r\n\r\n";

START_TEST(test_http_check_follows_status_and_silence)
{
	enum { OK, UNAVAILABLE, SILENT };
	static const struct blob replies[] = {
	    [OK] = {http_200, sizeof(http_200) - 1},
	    [UNAVAILABLE] = {http_503, sizeof(http_503) - 1},
	    [SILENT] = {NULL, 0},
	};
	struct ssrv *s = ssrv_start(SOCK_STREAM, false, replies);
	struct bdef b[] = {{"web", s->address}};
	char health[256], line[160];
	const int down_bound = SLOW_INTERVAL_MS * FALL + SLOW_TIMEOUT_MS + SLACK_MS;

	health_json(health, sizeof(health), "http", NULL, SLOW_INTERVAL_MS, SLOW_TIMEOUT_MS);
	start_lb(health, 0, b, 1);
	expect_up("web", s->address);

	atomic_store(&s->variant, UNAVAILABLE);
	transition(line, sizeof(line), "web", s->address,
		   "DOWN: status 503 (2 consecutive failures)");
	expect_log(line, log_count(line), down_bound);

	atomic_store(&s->variant, OK);
	transition(line, sizeof(line), "web", s->address, "UP (2 consecutive passes)");
	expect_log(line, log_count(line), SLOW_INTERVAL_MS * RISE + SLACK_MS);

	atomic_store(&s->variant, SILENT);
	transition(line, sizeof(line), "web", s->address, "DOWN: timeout (2 consecutive failures)");
	expect_log(line, log_count(line), down_bound);
	finish();
}
END_TEST

/* Patroni's layout: traffic to each database's port, checks to an HTTP endpoint on another
 * port of the same host answering 200 on the leader and 503 elsewhere. p1 is checked on the
 * pool's health.port, p2 on its own check_port; a failover flips the answers and the
 * traffic follows. */
START_TEST(test_checks_go_to_health_port_or_check_port)
{
	enum { OK, UNAVAILABLE };
	static const struct blob replies[] = {
	    [OK] = {http_200, sizeof(http_200) - 1},
	    [UNAVAILABLE] = {http_503, sizeof(http_503) - 1},
	};
	struct tbackend *p1 = t_backends_add(&h.be, TB_TAGGED, "p1"),
			*p2 = t_backends_add(&h.be, TB_TAGGED, "p2");
	struct ssrv *api1 = ssrv_start(SOCK_STREAM, false, replies),
		    *api2 = ssrv_start(SOCK_STREAM, false, replies);
	const char *names[] = {"p1", "p2"};
	char health[256], extra[32], line[160];
	unsigned hits[2] = {0};

	srv.ssrv = api1; /* finish() frees it; api2 below */
	atomic_store(&api2->variant, UNAVAILABLE);
	snprintf(extra, sizeof(extra), "\"port\":%d", api1->port);
	health_json(health, sizeof(health), "http", extra, FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	json_t *cfg = t_cfg_new(LB_WORKERS);
	h.port = t_free_port();
	t_cfg_listener(cfg, "t", NULL, "127.0.0.1", h.port, "p");
	json_t *pool = t_cfg_pool(cfg, "p", "round_robin", health);
	t_cfg_set(pool, "\"retries\":0");
	t_cfg_backend(pool, "p1", tb_address(p1));
	t_cfg_set(t_cfg_backend(pool, "p2", tb_address(p2)), "\"check_port\":%d", api2->port);
	t_harness_start(&h, cfg, NULL);

	expect_up("p1", tb_address(p1));
	transition(line, sizeof(line), "p2", tb_address(p2), "DOWN: status 503");
	expect_log(line, 0, SETTLE_MS);
	int failed = fetch_many(10, names, 2, hits);
	t_expect(&h, failed == 0 && hits[0] == 10,
		 "leader p1 (its API on health.port says 200): %d of 10 failed, p1 got %u, p2 %u",
		 failed, hits[0], hits[1]);
	char *out = NULL;
	t_expect(&h,
		 t_lbctl(h.sock, &out, NULL, "--json", "backends", NULL) == 0 && out &&
		     strstr(out, "\"check_port\"") != NULL,
		 "lbctl backends --json shows no check_port:\n%s", out ? out : "");
	free(out);

	/* Failover: p2 becomes the leader. */
	char line2[160];
	transition(line, sizeof(line), "p2", tb_address(p2), "UP (");
	transition(line2, sizeof(line2), "p1", tb_address(p1), "DOWN: status 503");
	int ups = log_count(line), downs = log_count(line2);
	atomic_store(&api1->variant, UNAVAILABLE);
	atomic_store(&api2->variant, OK);
	expect_log(line, ups, FAST_INTERVAL_MS * (RISE + 1) + SLACK_MS);
	expect_log(line2, downs, FAST_INTERVAL_MS * (FALL + 1) + FAST_TIMEOUT_MS + SLACK_MS);
	memset(hits, 0, sizeof(hits));
	failed = fetch_many(10, names, 2, hits);
	t_expect(&h, failed == 0 && hits[1] == 10,
		 "after failover to p2 (its check_port says 200): %d of 10 failed, p1 got %u, "
		 "p2 %u",
		 failed, hits[0], hits[1]);
	finish();
	ssrv_free(api2);
}
END_TEST

START_TEST(test_udp_check_passes_against_an_echo_and_fails_when_it_stops)
{
	struct ssrv *u = ssrv_start(SOCK_DGRAM, false, NULL);
	struct bdef b[] = {{"dns", u->address}};
	char health[256], line[160];
	int n;

	health_json(health, sizeof(health), "udp", "\"send\":\"ping\",\"expect\":\"ping\"",
		    FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	start_lb(health, 0, b, 1);
	expect_up("dns", u->address);
	/* refused (ICMP port unreachable) on loopback, or a timeout where ICMP is filtered */
	transition(line, sizeof(line), "dns", u->address, "DOWN: ");
	n = log_count(line);
	ssrv_free(u);
	srv.ssrv = NULL;
	expect_log(line, n, FAST_INTERVAL_MS * FALL + FAST_TIMEOUT_MS + SLACK_MS);
	finish();
}
END_TEST

/* lb in front of a real server (name, at 127.0.0.1:port) and an echo backend: the check
 * passes on the server and fails on the echo with a reason starting with echo_reason. */
static void server_up_echo_down(const char *type, const char *name, int port,
				const char *echo_reason)
{
	char address[32], line[160], health[256];
	struct tbackend *echo = t_backends_add(&h.be, TB_ECHO, "echo");
	struct bdef b[] = {{name, address}, def_of(echo)};

	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	health_json(health, sizeof(health), type, NULL, FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	start_lb(health, 0, b, 2);
	expect_up(name, address);
	transition(line, sizeof(line), "echo", tb_address(echo), "DOWN: ");
	expect_log(line, 0, FAST_INTERVAL_MS * FALL + FAST_TIMEOUT_MS + SLACK_MS);
	snprintf(line, sizeof(line), "check of echo failed: %s", echo_reason);
	expect_log(line, 0, FAST_INTERVAL_MS + SLACK_MS);
	transition(line, sizeof(line), "echo", tb_address(echo), "UP");
	t_expect(&h, log_count(line) == 0, "the echo server passed a %s check", type);
}

START_TEST(test_redis_check_passes_against_redis_and_fails_against_echo)
{
	char buf[64];

	server_up_echo_down("redis", "redis", start_redis(), "bad reply: \"PING\"");
	/* with the echo out of rotation (retries 0), every client reaches redis */
	for (int i = 0; i < 6; i++) {
		int n = t_exchange(h.port, "PING\r\n", 6, buf, sizeof(buf), 7);
		t_expect(&h, n == 7 && strcmp(buf, "+PONG\r\n") == 0,
			 "PING %d through lb got %d bytes: %s", i, n, buf);
	}
	finish();
}
END_TEST

/* The port of the redis server that answers a connection to port ("CONFIG GET port"), or
 * -1. */
static int redis_port_via(int port)
{
	char buf[128];
	int n = t_exchange(port, "CONFIG GET port\r\n", 17, buf, sizeof(buf), 26);
	const char *p = n > 0 ? strstr(buf, "port\r\n$") : NULL;
	const char *v = p ? strstr(p + 7, "\r\n") : NULL;

	return v ? atoi(v + 2) : -1;
}

static void redis_replicaof(int port, const char *target)
{
	char cmd[64], buf[32];
	int n = snprintf(cmd, sizeof(cmd), "REPLICAOF %s\r\n", target);

	t_expect(&h,
		 t_exchange(port, cmd, (size_t)n, buf, sizeof(buf), 5) == 5 &&
		     strcmp(buf, "+OK\r\n") == 0,
		 "redis on %d: REPLICAOF %s answered %s", port, target, buf);
}

/* "role": "master" follows the primary through a Sentinel-style failover between two real
 * redis servers: traffic goes only to the one INFO replication calls master. */
START_TEST(test_redis_role_master_follows_a_failover)
{
	int m = start_redis();
	pid_t m_pid = srv.redis;
	int r = start_redis();
	char ma[32], ra[32], target[32], health[256], line[160], line2[160];

	snprintf(ma, sizeof(ma), "127.0.0.1:%d", m);
	snprintf(ra, sizeof(ra), "127.0.0.1:%d", r);
	snprintf(target, sizeof(target), "127.0.0.1 %d", m);
	redis_replicaof(r, target);
	struct bdef b[] = {{"m", ma}, {"r", ra}};
	health_json(health, sizeof(health), "redis", "\"role\":\"master\"", FAST_INTERVAL_MS,
		    FAST_TIMEOUT_MS);
	start_lb(health, 0, b, 2);
	expect_up("m", ma);
	transition(line, sizeof(line), "r", ra, "DOWN: role slave, not master");
	expect_log(line, 0, SETTLE_MS);
	for (int i = 0; i < 6; i++)
		t_expect(&h, redis_port_via(h.port) == m, "connection %d did not reach master %d",
			 i, m);

	/* Failover: r is promoted, m follows it. */
	transition(line, sizeof(line), "r", ra, "UP (");
	transition(line2, sizeof(line2), "m", ma, "DOWN: role slave, not master");
	int ups = log_count(line), downs = log_count(line2);
	redis_replicaof(r, "NO ONE");
	snprintf(target, sizeof(target), "127.0.0.1 %d", r);
	redis_replicaof(m, target);
	expect_log(line, ups, FAST_INTERVAL_MS * (RISE + 1) + FAST_TIMEOUT_MS + SLACK_MS);
	expect_log(line2, downs, FAST_INTERVAL_MS * (FALL + 1) + FAST_TIMEOUT_MS + SLACK_MS);
	for (int i = 0; i < 6; i++)
		t_expect(&h, redis_port_via(h.port) == r,
			 "after the failover, connection %d did not reach the new master %d", i, r);
	finish();
	t_stop_child(&m_pid, SIGTERM, 5000);
}
END_TEST

START_TEST(test_postgres_check_passes_against_postgres_and_fails_against_echo)
{
	server_up_echo_down("postgres", "pg", start_postgres(), "bad reply: ");
	for (int i = 0; i < 6; i++) {
		int a = t_pg_ssl_answer(h.port);
		t_expect(&h, a == 'N' || a == 'S', "SSLRequest %d through lb got %d", i, a);
	}
	finish();
}
END_TEST

/* A MySQL 8 initial handshake (protocol 10), as a server sends it on accept. */
static const uint8_t mysql_greeting[] = {
    0x4a, 0x00, 0x00, 0x00, 0x0a, '8',	'.',  '0',  '.',  '3',	'6',  0x00, 0x2a, 0x00, 0x00, 0x00,
    'a',  'b',	'c',  'd',  'e',  'f',	'g',  'h',  0x00, 0xff, 0xff, 0xff, 0x02, 0x00, 0xff, 0xdf,
    0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 'i',  'j',  'k',	'l',  'm',
    'n',  'o',	'p',  'q',  'r',  's',	't',  0x00, 'c',  'a',	'c',  'h',  'i',  'n',	'g',  '_',
    's',  'h',	'a',  '2',  '_',  'p',	'a',  's',  's',  'w',	'o',  'r',  'd',  0x00,
};
static const char not_mysql[] = "hello, this is not a database\r\n";

START_TEST(test_mysql_check_passes_against_a_greeting_and_fails_against_garbage)
{
	enum { GREETING, GARBAGE };
	static const struct blob replies[] = {
	    [GREETING] = {mysql_greeting, sizeof(mysql_greeting)},
	    [GARBAGE] = {not_mysql, sizeof(not_mysql) - 1},
	};
	struct ssrv *s = ssrv_start(SOCK_STREAM, true, replies);
	struct bdef b[] = {{"db", s->address}};
	char health[256], line[160];

	ck_assert_uint_eq(sizeof(mysql_greeting), 4 + 0x4a);
	health_json(health, sizeof(health), "mysql", NULL, FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	start_lb(health, 0, b, 1);
	expect_up("db", s->address);
	transition(line, sizeof(line), "db", s->address, "DOWN: bad reply: ");
	atomic_store(&s->variant, GARBAGE);
	expect_log(line, log_count(line), FAST_INTERVAL_MS * FALL + FAST_TIMEOUT_MS + SLACK_MS);
	finish();
}
END_TEST

START_TEST(test_passive_failures_mark_down_and_probes_bring_back)
{
	struct tbackend *b1 = t_backends_add(&h.be, TB_TAGGED, "b1"),
			*b2 = t_backends_add(&h.be, TB_TAGGED, "b2");
	struct bdef b[] = {def_of(b1), def_of(b2)};
	const char *names[] = {"b1", "b2"};
	char health[256], down[160], back[128];
	unsigned hits[2] = {0};
	int failed;

	/* no active checks; retries 1 so clients never notice b1's refusals */
	health_json(health, sizeof(health), "none", NULL, FAST_INTERVAL_MS, FAST_TIMEOUT_MS);
	start_lb(health, 1, b, 2);
	tb_stop(b1);
	failed = fetch_many(2 * FALL + 2, names, 2, hits);
	t_expect(&h, failed == 0, "%d connections failed although a retry was allowed", failed);
	transition(down, sizeof(down), "b1", tb_address(b1), "DOWN: ");
	expect_log(down, 0, 100 + SLACK_MS); /* the prober's 100 ms passive tick */
	t_expect(&h, log_count("consecutive failed connects from the data plane") == 1,
		 "passive down not logged once with its reason");

	memset(hits, 0, sizeof(hits));
	failed = fetch_many(10, names, 2, hits);
	t_expect(&h, failed == 0 && hits[1] == 10, "b1 down: %d of 10 failed, b2 got %u", failed,
		 hits[1]);

	t_expect(&h, tb_restart(b1) == 0, "cannot restart b1");
	transition(back, sizeof(back), "b1", tb_address(b1), "UP (2 consecutive passes)");
	expect_log(back, 0, FAST_INTERVAL_MS * RISE + SLACK_MS);
	memset(hits, 0, sizeof(hits));
	failed = fetch_many(20, names, 2, hits);
	t_expect(&h, failed == 0 && hits[0] >= 5, "b1 back: %d of 20 failed, b1 got %u", failed,
		 hits[0]);
	t_expect(&h, log_count(down) == 1, "b1 went down again after coming back");
	finish();
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_closed_backend_goes_down_gets_no_connections_and_comes_back,
	    test_blackhole_is_marked_down_by_send_expect_timeout,
	    test_blackhole_is_marked_down_by_http_timeout,
	    test_http_check_follows_status_and_silence,
	    test_checks_go_to_health_port_or_check_port,
	    test_udp_check_passes_against_an_echo_and_fails_when_it_stops,
	    test_redis_check_passes_against_redis_and_fails_against_echo,
	    test_redis_role_master_follows_a_failover,
	    test_postgres_check_passes_against_postgres_and_fails_against_echo,
	    test_mysql_check_passes_against_a_greeting_and_fails_against_garbage,
	    test_passive_failures_mark_down_and_probes_bring_back,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	/* CK_VERBOSITY=verbose lists every test */
	return t_run_suite(t_suite("health", TEST_TIMEOUT_S, setup, NULL, tests), CK_ENV);
}
