/* Integration: the TCP data path at its edges — many idle connections, caps, ACLs, PROXY
 * headers, timeouts, resets, graceful shutdown, the access log and the engine fallback.
 * Each test starts the real lb on loopback in front of in-process test backends. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

/* Enough to show that idle connections cost no fds beyond their two sockets. */
#define MANY_CONNS 2000
/* "Within a few fds": spare pipes a worker may keep after the warm-up, plus slack. */
#define FD_SLACK 8
/* A reply on loopback through lb takes microseconds; this only bounds a broken daemon. */
#define REPLY_MS 2000

/* One tcp listener "edge-in" on 127.0.0.1:port (with the members in listener, if not NULL)
 * in front of one round-robin pool "edge" without health checks, which *pool receives for
 * the test's backends. "@DIR@" in a config stands for the temp dir holding it. */
static json_t *edge_config(int port, const char *listener, json_t **pool)
{
	json_t *cfg = t_cfg_new(2);

	/* lb's default shutdown grace: only the SIGTERM tests set their own. */
	json_object_del(cfg, "shutdown_grace");
	t_cfg_set(t_cfg_listener(cfg, "edge-in", "tcp", "127.0.0.1", port, "edge"), "%s",
		  listener ? listener : "");
	*pool = t_cfg_pool(cfg, "edge", "round_robin", T_HEALTH_NONE);
	return cfg;
}

/* A backend of pool named after the test backend tb. Returns it for t_cfg_set. */
static json_t *edge_backend(json_t *pool, struct tbackend *tb)
{
	return t_cfg_backend(pool, tb_name(tb), tb_address(tb));
}

static void set_linger_zero(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Poll lb's fd count until it is at most want. The last count seen. */
static int wait_fd_count_at_most(const struct lbproc *lb, int want, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	int n;

	while ((n = lb_fd_count(lb)) > want && t_now_ms() < deadline)
		usleep(50000);
	return n;
}

START_TEST(test_many_idle_connections_echo_and_leave_no_fds)
{
	struct rlimit rl;
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "many");
	struct lbproc lb;
	int port = t_free_port(), baseline, after, opened = 0, echoed = 0;
	int *fds = calloc(MANY_CONNS, sizeof(*fds));

	ck_assert_ptr_nonnull(be);
	ck_assert_ptr_nonnull(fds);
	/* Both ends of every connection live in this process: the clients and the backend. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	ck_assert_msg(rl.rlim_cur >= 2 * MANY_CONNS + 100, "RLIMIT_NOFILE hard limit %llu too low",
		      (unsigned long long)rl.rlim_max);

	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	/* Warm up (lazily made state such as spare pipes), then take the baseline. */
	for (int i = 0; i < 16; i++) {
		int fd = t_connect(NULL, port);

		t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'w', REPLY_MS),
			   "warm-up connection %d failed", i);
		close(fd);
	}
	t_check_lb(&lb, tb_wait_active(be, 0, 3000),
		   "warm-up connections still open at the backend");
	usleep(200000);
	baseline = lb_fd_count(&lb);
	t_check_lb(&lb, baseline > 0, "cannot count lb's fds");

	for (; opened < MANY_CONNS; opened++) {
		fds[opened] = t_connect(NULL, port);
		if (fds[opened] < 0)
			break;
	}
	t_check_lb(&lb, opened == MANY_CONNS, "only %d of %d connections opened", opened,
		   MANY_CONNS);
	t_check_lb(&lb, tb_wait_active(be, MANY_CONNS, 5000), "backend has %u of %d connections",
		   tb_active(be), MANY_CONNS);
	for (; echoed < MANY_CONNS; echoed++)
		if (!t_echo_byte(fds[echoed], (char)('a' + echoed % 26), REPLY_MS))
			break;
	t_check_lb(&lb, echoed == MANY_CONNS, "connection %d of %d did not echo", echoed,
		   MANY_CONNS);

	for (int i = 0; i < MANY_CONNS; i++)
		close(fds[i]);
	free(fds);
	t_check_lb(&lb, tb_wait_active(be, 0, 5000), "backend still has %u connections",
		   tb_active(be));
	after = wait_fd_count_at_most(&lb, baseline + FD_SLACK, 5000);
	t_check_lb(&lb, after <= baseline + FD_SLACK,
		   "lb holds %d fds after the connections closed, baseline %d (leak)", after,
		   baseline);

	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_listener_max_conns_closes_the_extra_connection)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "capped");
	struct lbproc lb;
	int port = t_free_port(), held[3], extra, r;
	bool reopened = false;
	uint64_t deadline;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, "\"max_conns\":3", &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	for (int i = 0; i < 3; i++) {
		held[i] = t_connect(NULL, port);
		t_check_lb(&lb, held[i] >= 0 && t_echo_byte(held[i], 'h', REPLY_MS),
			   "held connection %d failed", i);
	}
	extra = t_connect(NULL, port);
	if (extra >= 0) {
		r = t_wait_closed(extra, 1000);
		t_check_lb(&lb, r != -1, "a 4th connection over max_conns 3 was not closed in 1 s");
		close(extra);
	}
	for (int i = 1; i < 3; i++)
		t_check_lb(&lb, t_echo_byte(held[i], 'k', REPLY_MS), "held connection %d broke", i);

	/* Once one closes, lb must notice and admit a new one. */
	close(held[0]);
	deadline = t_now_ms() + 2000;
	while (!reopened && t_now_ms() < deadline) {
		int fd = t_connect(NULL, port);

		reopened = fd >= 0 && t_echo_byte(fd, 'n', REPLY_MS);
		if (fd >= 0 && !reopened)
			close(fd);
		else if (reopened)
			held[0] = fd;
		if (!reopened)
			usleep(50000);
	}
	t_check_lb(&lb, reopened, "no new connection admitted within 2 s after one of 3 closed");

	for (int i = 0; i < 3; i++)
		close(held[i]);
	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

/* max_conns_per_client: one host gets 2 connections, another host is not affected, and a
 * freed place is taken again. */
START_TEST(test_max_conns_per_client_caps_one_host_only)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "per-client");
	struct lbproc lb;
	int port = t_free_port(), held[2], other, extra;
	char sock[320], *out = NULL;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, "\"max_conns_per_client\":2", &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);
	snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);

	for (int i = 0; i < 2; i++) {
		held[i] = t_connect("127.0.0.1", port);
		t_check_lb(&lb, held[i] >= 0 && t_echo_byte(held[i], 'h', REPLY_MS),
			   "connection %d of 127.0.0.1 failed", i + 1);
	}
	extra = t_connect("127.0.0.1", port);
	t_check_lb(&lb, extra < 0 || t_wait_closed(extra, 1000) != -1,
		   "a 3rd connection of 127.0.0.1 over max_conns_per_client 2 was not closed");
	if (extra >= 0)
		close(extra);
	other = t_connect("127.0.0.2", port);
	t_check_lb(&lb, other >= 0 && t_echo_byte(other, 'o', REPLY_MS),
		   "127.0.0.2 was refused for 127.0.0.1's connections");
	close(held[0]);
	bool again = false;
	for (uint64_t end = t_now_ms() + 2000; !again && t_now_ms() < end;) {
		int fd = t_connect("127.0.0.1", port);
		again = fd >= 0 && t_echo_byte(fd, 'n', REPLY_MS);
		if (again)
			held[0] = fd;
		else {
			if (fd >= 0)
				close(fd);
			usleep(50000);
		}
	}
	t_check_lb(&lb, again, "127.0.0.1 was not admitted again after one of its 2 closed");
	t_check_lb(&lb,
		   t_lbctl(sock, &out, NULL, "metrics", NULL) == 0 && out &&
		       strstr(out, "lb_listener_rejected_total{listener=\"edge-in\",reason=\"max_"
				   "conns_per_client\"} "),
		   "no max_conns_per_client rejection in the metrics:\n%s", out ? out : "");
	t_check_lb(&lb, !strstr(out, "reason=\"max_conns_per_client\"} 0\n"),
		   "the refused connection was not counted:\n%s", out);
	free(out);
	close(held[0]);
	close(held[1]);
	close(other);
	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_backend_max_conns_spreads_then_refuses)
{
	struct tbackend *a = tb_start("127.0.0.1:0", TB_TAGGED, "bm-a");
	struct tbackend *b = tb_start("127.0.0.1:0", TB_TAGGED, "bm-b");
	char tag1[64], tag2[64];
	struct lbproc lb;
	int port = t_free_port(), c1, c2, c3, r;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(edge_backend(pool, a), "\"max_conns\":1");
	t_cfg_set(edge_backend(pool, b), "\"max_conns\":1");
	t_lb_start(&lb, cfg, &port, 1);

	c1 = t_connect(NULL, port);
	t_check_lb(&lb, c1 >= 0 && t_read_line(c1, tag1, sizeof(tag1), REPLY_MS) > 0,
		   "first connection got no tag");
	c2 = t_connect(NULL, port);
	t_check_lb(&lb, c2 >= 0 && t_read_line(c2, tag2, sizeof(tag2), REPLY_MS) > 0,
		   "second connection got no tag");
	t_check_lb(&lb, strcmp(tag1, tag2) != 0,
		   "two held connections both landed on %s despite max_conns 1", tag1);

	c3 = t_connect(NULL, port);
	if (c3 >= 0) {
		r = t_wait_closed(c3, 1000);
		t_check_lb(&lb, r != -1, "3rd connection with both backends full was not closed");
		close(c3);
	}
	t_check_lb(&lb, tb_active(a) == 1 && tb_active(b) == 1,
		   "backends hold %u and %u connections, expected 1 each", tb_active(a),
		   tb_active(b));

	close(c1);
	close(c2);
	t_stop_lb(&lb);
	tb_free(a);
	tb_free(b);
}
END_TEST

START_TEST(test_deny_wins_over_allow_without_backend_connection)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "acl");
	struct lbproc lb;
	int port = t_free_port(), fd, r;
	unsigned before;

	ck_assert_ptr_nonnull(be);
	const char *acl = "\"allow\":[\"127.0.0.0/8\"],\"deny\":[\"127.0.0.9/32\"]";
	json_t *pool, *cfg = edge_config(port, acl, &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	before = tb_accepted(be);
	fd = t_connect("127.0.0.9", port);
	if (fd >= 0) {
		r = t_wait_closed(fd, 1000);
		t_check_lb(&lb, r != -1, "connection from denied 127.0.0.9 was not closed");
		close(fd);
	}
	usleep(100000);
	t_check_lb(&lb, tb_accepted(be) == before,
		   "a denied client caused %u backend connection(s)", tb_accepted(be) - before);

	fd = t_connect("127.0.0.8", port);
	t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'a', REPLY_MS),
		   "allowed 127.0.0.8 did not get through");
	close(fd);

	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

/* Send payload through a proxy_protocol listener from 127.0.0.5 and compare what the
 * recording backend saw with expected header + payload. */
static void check_proxy_header(const char *version)
{
	static const char payload[] = "client payload, unchanged\n";
	static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	struct tbackend *be = tb_start("127.0.0.1:0", TB_RECORD, "rec");
	char lst[64];
	uint8_t want[TB_RECORD_MAX], got[TB_RECORD_MAX];
	size_t hlen = 0;
	struct lbproc lb;
	int port = t_free_port(), fd, cport, n = -1;
	uint64_t deadline;

	ck_assert_ptr_nonnull(be);
	snprintf(lst, sizeof(lst), "\"proxy_protocol\":\"%s\"", version);
	json_t *pool, *cfg = edge_config(port, lst, &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	/* Our connection is the next one the backend accepts. */
	unsigned idx = tb_accepted(be);

	fd = t_connect("127.0.0.5", port);
	t_check_lb(&lb, fd >= 0, "connect from 127.0.0.5 failed");
	cport = t_local_port(fd);
	if (strcmp(version, "v1") == 0) {
		hlen = (size_t)snprintf((char *)want, sizeof(want),
					"PROXY TCP4 127.0.0.5 127.0.0.1 %d %d\r\n", cport, port);
	} else {
		memcpy(want, v2_sig, sizeof(v2_sig));
		hlen = sizeof(v2_sig);
		want[hlen++] = 0x21; /* version 2, PROXY */
		want[hlen++] = 0x11; /* TCP over IPv4 */
		want[hlen++] = 0;
		want[hlen++] = 12;
		uint8_t addrs[12] = {127, 0, 0, 5, 127, 0, 0, 1};
		addrs[8] = (uint8_t)(cport >> 8);
		addrs[9] = (uint8_t)cport;
		addrs[10] = (uint8_t)(port >> 8);
		addrs[11] = (uint8_t)port;
		memcpy(want + hlen, addrs, sizeof(addrs));
		hlen += sizeof(addrs);
	}
	memcpy(want + hlen, payload, strlen(payload));
	t_check_lb(&lb, t_send_all(fd, payload, strlen(payload)), "send failed");

	deadline = t_now_ms() + 2000;
	while (t_now_ms() < deadline) {
		n = tb_recorded(be, idx, got, sizeof(got));
		if (n >= (int)(hlen + strlen(payload)))
			break;
		usleep(10000);
	}
	t_check_lb(&lb, n == (int)(hlen + strlen(payload)),
		   "backend recorded %d bytes, expected %zu header + %zu payload", n, hlen,
		   strlen(payload));
	if (memcmp(got, want, hlen) != 0) {
		fprintf(stderr, "proxy %s header: want/got bytes:\n", version);
		for (size_t i = 0; i < hlen; i++)
			fprintf(stderr, "%02x/%02x%s", want[i], got[i], i % 16 == 15 ? "\n" : " ");
		fprintf(stderr, "\n");
	}
	t_check_lb(&lb, memcmp(got, want, hlen) == 0, "PROXY %s header differs (bytes on stderr)",
		   version);
	t_check_lb(&lb, memcmp(got + hlen, payload, strlen(payload)) == 0,
		   "payload after the PROXY %s header was altered", version);

	close(fd);
	t_stop_lb(&lb);
	tb_free(be);
}

START_TEST(test_proxy_protocol_v1_header_precedes_payload)
{
	check_proxy_header("v1");
}
END_TEST

START_TEST(test_proxy_protocol_v2_header_precedes_payload)
{
	check_proxy_header("v2");
}
END_TEST

START_TEST(test_connect_timeout_moves_on_to_live_backend)
{
	struct tbackend *live = tb_start("127.0.0.1:0", TB_TAGGED, "live");
	char tag[64];
	struct lbproc lb;
	int port = t_free_port(), hport = 0, hole;

	ck_assert_ptr_nonnull(live);
	hole = tb_blackhole_listener(&hport);
	ck_assert_int_ge(hole, 0);
	json_t *pool, *cfg = edge_config(port, "\"timeouts\":{\"connect\":\"300ms\"}", &pool);
	char hole_addr[32];
	snprintf(hole_addr, sizeof(hole_addr), "127.0.0.1:%d", hport);
	t_cfg_backend(pool, "hole", hole_addr);
	edge_backend(pool, live);
	t_lb_start(&lb, cfg, &port, 1);

	for (int i = 0; i < 6; i++) {
		uint64_t t0 = t_now_ms(), took;
		int r = t_fetch_tag(NULL, port, tag, sizeof(tag));

		took = t_now_ms() - t0;
		t_check_lb(&lb, r == 0, "connection %d got no tag (closed after %llu ms)", i,
			   (unsigned long long)took);
		t_check_lb(&lb, strcmp(tag, "live") == 0, "connection %d landed on %s", i, tag);
		t_check_lb(&lb, took < 1000, "connection %d took %llu ms to reach the live backend",
			   i, (unsigned long long)took);
	}

	t_stop_lb(&lb);
	close(hole);
	tb_free(live);
}
END_TEST

/* A worker that slept longer than the connect timeout must not arm the next connection's
 * timer from the time before its sleep (regression: such connects "timed out" at once). */
START_TEST(test_connect_after_idle_gap_longer_than_connect_timeout)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_TAGGED, "after-gap");
	char tag[64];
	struct lbproc lb;
	int port = t_free_port();

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, "\"timeouts\":{\"connect\":\"200ms\"}", &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	for (int i = 0; i < 4; i++) {
		usleep(600 * 1000); /* both workers idle for 3x the connect timeout */
		t_check_lb(&lb, t_fetch_tag(NULL, port, tag, sizeof(tag)) == 0,
			   "connection %d after an idle gap got no tag", i);
		t_check_lb(&lb, strcmp(tag, "after-gap") == 0, "connection %d landed on %s", i,
			   tag);
	}
	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_idle_timeout_closes_only_silent_connections)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "idle");
	struct lbproc lb;
	int port = t_free_port(), quiet, busy, r;
	uint64_t t0;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, "\"timeouts\":{\"idle\":\"500ms\"}", &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	quiet = t_connect(NULL, port);
	busy = t_connect(NULL, port);
	t0 = t_now_ms();
	t_check_lb(&lb, quiet >= 0 && busy >= 0, "connect failed");
	/* Every 200 ms a byte: never idle for 500 ms. */
	while (t_now_ms() - t0 < 1500) {
		t_check_lb(&lb, t_echo_byte(busy, 'b', REPLY_MS),
			   "a connection sending every 200 ms was closed after %llu ms",
			   (unsigned long long)(t_now_ms() - t0));
		usleep(200000);
	}
	r = t_wait_closed(quiet, (int)(t0 + 2000 - t_now_ms()));
	t_check_lb(&lb, r != -1, "an idle connection was still open 2 s after it went quiet");

	close(quiet);
	close(busy);
	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

/* A backend that reads RST_AFTER bytes of each connection (or to EOF), then resets it. One
 * connection at a time is enough for one client. */
#define RST_AFTER 5
struct rst_server {
	int lfd, port;
	atomic_bool stop;
	pthread_t thread;
};

static void rst_one(int fd)
{
	char buf[64];
	size_t got = 0;

	while (got < RST_AFTER && t_wait_readable(fd, 5000)) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	set_linger_zero(fd);
	close(fd);
}

static void *rst_server_main(void *arg)
{
	struct rst_server *s = arg;

	while (!atomic_load(&s->stop)) {
		int fd;

		if (!t_wait_readable(s->lfd, 100))
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd >= 0)
			rst_one(fd);
	}
	return NULL;
}

static int rst_server_start(struct rst_server *s)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	atomic_init(&s->stop, false);
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		return -1;
	if (bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s->lfd, 8) != 0)
		return -1;
	s->port = t_local_port(s->lfd);
	return pthread_create(&s->thread, NULL, rst_server_main, s) == 0 ? 0 : -1;
}

static void rst_server_stop(struct rst_server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
}

/* lb's established TCP sockets as `ss` shows them: how many have a local port of lport
 * (client side) or a peer port of bport (backend side), and how many of those have a
 * keepalive timer that fires within a minute (Linux's own default is two hours). */
static void keepalive_sockets(int lport, int bport, int *n, int *ka)
{
	char cmd[256], line[512];
	FILE *f;

	*n = *ka = 0;
	snprintf(cmd, sizeof(cmd),
		 "ss -tnoH state established '( sport = :%d or dport = :%d )' 2>/dev/null", lport,
		 bport);
	f = popen(cmd, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char local[128], peer[128];
		if (sscanf(line, "%*u %*u %127s %127s", local, peer) != 2)
			continue;
		const char *lp = strrchr(local, ':'), *pp = strrchr(peer, ':');
		if (!lp || !pp || (atoi(lp + 1) != lport && atoi(pp + 1) != bport))
			continue;
		(*n)++;
		/* "timer:(keepalive,6.9sec,0)"; two hours shows as "119min" */
		char *t = strstr(line, "timer:(keepalive,"), *end = t ? strchr(t, ')') : NULL;
		if (end) {
			*end = '\0';
			*ka += !strstr(t, "min");
		}
	}
	pclose(f);
}

/* "keepalive": lb's socket to the client (inherited from the listener socket) and its socket
 * to the backend both carry TCP keepalive with the configured idle time; without the block,
 * neither does. */
/* lb's sockets of listener port and backend port bport, and those with keepalive, once they
 * number want_n and want_ka (or after 2 s). */
static void wait_keepalive(int port, int bport, int want_n, int want_ka, int *n, int *ka)
{
	for (uint64_t end = t_now_ms() + 2000; t_now_ms() < end; usleep(50000)) {
		keepalive_sockets(port, bport, n, ka);
		if (*n == want_n && *ka == want_ka)
			return;
	}
}

#define KA_SETTINGS "\"keepalive\":{\"idle\":\"7s\",\"interval\":\"3s\",\"count\":2}"

/* "keepalive": lb's socket to the client (inherited from the listener socket) and its socket
 * to the backend both carry TCP keepalive with the configured idle time; without the block,
 * neither does; a reload that adds it gives the listener new sockets that have it. */
START_TEST(test_keepalive_on_both_sides)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "ka");
	char sock[320];

	ck_assert_ptr_nonnull(be);
	int bport = tb_port(be);
	for (int with = 0; with < 2; with++) {
		struct lbproc lb;
		int port = t_free_port(), n = 0, ka = 0;
		json_t *pool, *cfg = edge_config(port, with ? KA_SETTINGS : NULL, &pool);
		edge_backend(pool, be);
		t_lb_start(&lb, cfg, &port, 1);
		int fd = t_connect(NULL, port);
		t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'k', REPLY_MS),
			   "echo through lb failed");
		wait_keepalive(port, bport, 2, with ? 2 : 0, &n, &ka);
		t_check_lb(&lb, n == 2, "ss shows %d of lb's 2 sockets (is iproute2 installed?)",
			   n);
		t_check_lb(&lb, ka == (with ? 2 : 0), "%s keepalive: %d of lb's 2 sockets have it",
			   with ? "with" : "without", ka);
		close(fd);
		if (!with) {
			cfg = edge_config(port, KA_SETTINGS, &pool);
			edge_backend(pool, be);
			t_rewrite_config(&lb, cfg);
			snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);
			t_check_lb(&lb, t_lbctl(sock, NULL, NULL, "reload", NULL) == 0,
				   "reload adding keepalive failed");
			fd = t_connect(NULL, port);
			t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'r', REPLY_MS),
				   "echo after the reload failed");
			wait_keepalive(port, bport, 2, 2, &n, &ka);
			t_check_lb(&lb, n == 2 && ka == 2,
				   "after a reload adding keepalive: %d of lb's %d sockets have it",
				   ka, n);
			close(fd);
		}
		t_stop_lb(&lb);
	}
	tb_free(be);
}
END_TEST

/* A backend the test plays by hand: a listening socket on 127.0.0.1, so that its listener
 * can close (health checks then fail) while the connection it accepted stays open. */
static int hand_listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Accept on lfd until a connection carries byte c (health checks connect too and send
 * nothing); that connection's fd, or -1 within 2 s. */
static int hand_accept_data(int lfd, char c)
{
	for (uint64_t end = t_now_ms() + 2000; t_now_ms() < end;) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		char got = 0;
		if (fd >= 0 && t_wait_readable(fd, 300) && read(fd, &got, 1) == 1 && got == c)
			return fd;
		if (fd >= 0)
			close(fd);
	}
	return -1;
}

/* on_down "shutdown": when the prober (or `lbctl health ... down`) marks a backend down, its
 * open connections are reset (the client sees it at once); with "keep" (the default) they
 * go on. */
START_TEST(test_on_down_shutdown_resets_connections_of_a_backend_marked_down)
{
	for (int round = 0; round < 3; round++) {
		bool shutdown = round > 0, forced = round == 2;
		struct lbproc lb;
		int bport, port = t_free_port();
		int lfd = hand_listener(&bport);
		char addr[32], pool_json[256];

		snprintf(addr, sizeof(addr), "127.0.0.1:%d", bport);
		json_t *cfg = t_cfg_new(2);
		t_cfg_listener(cfg, "edge-in", "tcp", "127.0.0.1", port, "edge");
		json_t *pool = t_cfg_pool(
		    cfg, "edge", "round_robin",
		    "{\"type\":\"tcp\",\"interval\":\"100ms\",\"timeout\":\"100ms\",\"rise\":1,"
		    "\"fall\":1}");
		snprintf(pool_json, sizeof(pool_json), "\"on_down\":\"%s\"",
			 shutdown ? "shutdown" : "keep");
		t_cfg_set(pool, "%s", pool_json);
		t_cfg_backend(pool, "hand", addr);
		t_lb_start(&lb, cfg, &port, 1);

		int cfd = -1, sfd = -1;
		/* Until the first check passes the backend is not usable: retry for a while. */
		for (uint64_t end = t_now_ms() + 3000; sfd < 0 && t_now_ms() < end;) {
			cfd = t_connect(NULL, port);
			if (cfd >= 0 && t_send_all(cfd, "x", 1))
				sfd = hand_accept_data(lfd, 'x');
			if (sfd < 0 && cfd >= 0) {
				close(cfd);
				usleep(100000);
			}
		}
		t_check_lb(&lb, sfd >= 0, "no connection through lb reached the backend");
		if (forced) {
			char sock[320];
			snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);
			t_check_lb(&lb,
				   t_lbctl(sock, NULL, NULL, "health", "edge/hand", "down", NULL) ==
				       0,
				   "lbctl health down failed");
		} else {
			close(lfd); /* checks are refused from now on: down within ~200 ms */
		}
		int r = t_wait_closed(cfd, shutdown ? 3000 : 1000);
		if (shutdown) {
			t_check_lb(&lb, r == 1, "on_down shutdown: the client saw %s, not a reset",
				   r == 0 ? "a clean EOF" : "nothing within 3 s");
		} else {
			t_check_lb(&lb, r == -1, "on_down keep: the connection was closed (%d)", r);
			t_check_lb(&lb, t_send_all(sfd, "y", 1), "backend side broken");
			char got = 0;
			t_check_lb(&lb, t_recv_exact(cfd, &got, 1, 2000) && got == 'y',
				   "on_down keep: the connection no longer relays");
		}
		close(cfd);
		close(sfd);
		if (forced)
			close(lfd);
		t_stop_lb(&lb);
	}
}
END_TEST

/* timeouts.lifetime: a connection past it closes (FIN, not reset) at its first quiet second;
 * one that keeps talking is left alone until it pauses. */
START_TEST(test_lifetime_closes_at_a_quiet_moment)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "life");
	struct lbproc lb;
	int port = t_free_port();

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, "\"timeouts\":{\"lifetime\":\"2s\"}", &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	int quiet = t_connect(NULL, port), busy = t_connect(NULL, port);
	t_check_lb(&lb,
		   quiet >= 0 && busy >= 0 && t_echo_byte(quiet, 'q', REPLY_MS) &&
		       t_echo_byte(busy, 'b', REPLY_MS),
		   "echo through lb failed");
	uint64_t t0 = t_now_ms();
	/* Talk on busy every 200 ms for 3.5 s: past the lifetime, never a quiet second. */
	bool busy_ok = true;
	while (t_now_ms() - t0 < 3500 && busy_ok) {
		busy_ok = t_echo_byte(busy, 'b', REPLY_MS);
		usleep(200000);
	}
	t_check_lb(&lb, busy_ok, "a connection talking every 200 ms was closed %llu ms in",
		   (unsigned long long)(t_now_ms() - t0));
	int r = t_wait_closed(quiet, 100);
	t_check_lb(&lb, r == 0, "the quiet connection past its 2 s lifetime: %s",
		   r == 1 ? "reset, not closed" : "still open at 3.5 s");
	/* busy now pauses: it closes within a quiet second or so. */
	uint64_t t1 = t_now_ms();
	r = t_wait_closed(busy, 3000);
	t_check_lb(&lb, r == 0, "the busy connection after it paused: %s",
		   r == 1 ? "reset, not closed" : "still open 3 s later");
	t_check_lb(&lb, t_now_ms() - t1 >= 500, "the busy connection closed before a quiet second");
	close(quiet);
	close(busy);
	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

/* Round robin over [dead, A, B], dead refusing connections but not marked down (passive
 * fall 100): each connection whose turn hits dead is retried on the next of A and B, and
 * 30 connections split 15/15 (nginx's stream_upstream.t "failures"; it was B 22, A 8). */
START_TEST(test_round_robin_retries_split_evenly)
{
	struct tbackend *a = tb_start("127.0.0.1:0", TB_TAGGED, "A"),
			*b = tb_start("127.0.0.1:0", TB_TAGGED, "B");
	struct lbproc lb;
	int port = t_free_port(), na = 0, nb = 0, failed = 0;
	char dead[32], tag[32];

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", t_free_port());
	json_t *cfg = t_cfg_new(2);
	t_cfg_listener(cfg, "edge-in", "tcp", "127.0.0.1", port, "edge");
	json_t *pool = t_cfg_pool(cfg, "edge", "round_robin", "{\"type\":\"none\",\"fall\":100}");
	t_cfg_backend(pool, "dead", dead);
	edge_backend(pool, a);
	edge_backend(pool, b);
	t_lb_start(&lb, cfg, &port, 1);
	for (int i = 0; i < 30; i++) {
		if (t_fetch_tag(NULL, port, tag, sizeof(tag)) < 0)
			failed++;
		else if (strcmp(tag, "A") == 0)
			na++;
		else if (strcmp(tag, "B") == 0)
			nb++;
	}
	t_check_lb(&lb, failed == 0 && na == 15 && nb == 15,
		   "30 connections over [dead, A, B]: A %d, B %d, failed %d (want 15/15)", na, nb,
		   failed);
	t_stop_lb(&lb);
	tb_free(a);
	tb_free(b);
}
END_TEST

/* panic_threshold: both backends marked down (lbctl health down, as a fleet's verdict or a
 * prober under CPU saturation would) while they serve: with 50 the pool balances over both
 * and clients get through, counted in lb_pool_panic; with 0 (off) they are refused. */
START_TEST(test_panic_threshold_keeps_serving_when_all_are_marked_down)
{
	struct tbackend *a = tb_start("127.0.0.1:0", TB_TAGGED, "A"),
			*b = tb_start("127.0.0.1:0", TB_TAGGED, "B");
	char sock[320], tag[32], *out = NULL;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	for (int threshold = 50; threshold >= 0; threshold -= 50) {
		struct lbproc lb;
		int port = t_free_port(), ok = 0;
		json_t *pool, *cfg = edge_config(port, NULL, &pool);
		t_cfg_set(pool, "\"panic_threshold\":%d", threshold);
		edge_backend(pool, a);
		edge_backend(pool, b);
		t_lb_start(&lb, cfg, &port, 1);
		snprintf(sock, sizeof(sock), "%s/lb.sock", lb.dir);
		t_check_lb(&lb,
			   t_lbctl(sock, NULL, NULL, "health", "edge/A", "down", NULL) == 0 &&
			       t_lbctl(sock, NULL, NULL, "health", "edge/B", "down", NULL) == 0,
			   "lbctl health down failed");
		for (int i = 0; i < 4; i++)
			ok += t_fetch_tag(NULL, port, tag, sizeof(tag)) == 0;
		t_check_lb(&lb, t_lbctl(sock, &out, NULL, "metrics", NULL) == 0 && out,
			   "no metrics");
		if (threshold) {
			t_check_lb(&lb, ok == 4, "panic_threshold 50, all down: %d of 4 served",
				   ok);
			t_check_lb(&lb,
				   strstr(out, "lb_pool_panic{pool=\"edge\"} 1") &&
				       strstr(out, "lb_pool_panic_total{pool=\"edge\"} 1"),
				   "panic not in the metrics:\n%s", out);
		} else {
			t_check_lb(&lb, ok == 0, "panic_threshold 0, all down: %d of 4 served", ok);
			t_check_lb(&lb, strstr(out, "lb_pool_panic{pool=\"edge\"} 0") != NULL,
				   "lb_pool_panic not 0 without a threshold:\n%s", out);
		}
		free(out);
		out = NULL;
		t_stop_lb(&lb);
	}
	tb_free(a);
	tb_free(b);
}
END_TEST

START_TEST(test_backend_reset_mid_stream_resets_client)
{
	struct rst_server srv;
	struct lbproc lb;
	int port = t_free_port(), fd, r;

	ck_assert_int_eq(rst_server_start(&srv), 0);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", srv.port);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_backend(pool, "rst", addr);
	t_lb_start(&lb, cfg, &port, 1);

	fd = t_connect(NULL, port);
	t_check_lb(&lb, fd >= 0, "connect failed");
	t_check_lb(&lb, t_send_all(fd, "hello, reset me", 15), "send failed");
	r = t_wait_closed(fd, 3000);
	t_check_lb(&lb, r == 1, "client saw %s, expected a reset",
		   r == 0 ? "a clean close" : "nothing (timeout)");

	close(fd);
	t_stop_lb(&lb);
	rst_server_stop(&srv);
}
END_TEST

START_TEST(test_client_reset_closes_backend_connection)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "victim");
	struct lbproc lb;
	int port = t_free_port(), fd;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	fd = t_connect(NULL, port);
	t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'r', REPLY_MS), "connection failed");
	t_check_lb(&lb, tb_active(be) == 1, "backend has %u connections", tb_active(be));
	set_linger_zero(fd);
	close(fd);
	t_check_lb(&lb, tb_wait_active(be, 0, 2000),
		   "backend connection still open 2 s after the client reset");

	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

/* Loopback round trip through lb, generously; a connect left unanswered this long sits in
 * the accept queue of a listener nobody serves. */
#define UNANSWERED_MS 150
/* Connects that must all be refused once one was: SO_REUSEPORT spreads them over the
 * workers' sockets, so one refusal alone does not show that every copy is closed. */
#define REFUSED_PROBES 10

/* A refused connect fails, or is closed or reset unanswered; one that is relayed or left
 * hanging is not refused. */
static bool connect_refused(int port)
{
	int fd = t_connect(NULL, port);
	char c;
	bool refused;

	if (fd < 0)
		return true;
	refused = !t_send_all(fd, "x", 1) ||
		  (t_wait_readable(fd, UNANSWERED_MS) && recv(fd, &c, 1, 0) <= 0);
	close(fd);
	return refused;
}

/* True if, within timeout_ms, REFUSED_PROBES connects in a row are refused. Each worker
 * closes its own listener copy when it wakes, so for a moment after the first copy closes
 * another may still accept (a connect queued on the closed copy was reset): what counts is
 * that all of them close promptly, not that they close in the same microsecond. */
static bool new_connections_refused(int port, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	int in_a_row = 0;

	while (in_a_row < REFUSED_PROBES) {
		if (connect_refused(port)) {
			in_a_row++;
			continue;
		}
		in_a_row = 0;
		if (t_now_ms() >= deadline)
			return false;
		usleep(20000);
	}
	return true;
}

START_TEST(test_sigterm_lets_open_connection_finish)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "grace");
	struct lbproc lb;
	int port = t_free_port(), fd, st;
	uint64_t t0, closed_at;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(cfg, "\"shutdown_grace\":\"2s\"");
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	fd = t_connect(NULL, port);
	t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, '1', REPLY_MS), "connection failed");
	t0 = t_now_ms();
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);

	t_check_lb(&lb, new_connections_refused(port, 500),
		   "new connections not refused (relayed or left unanswered) after SIGTERM");
	t_check_lb(&lb, t_echo_byte(fd, '2', REPLY_MS),
		   "the open connection stopped working after SIGTERM");
	close(fd);
	closed_at = t_now_ms();

	st = t_wait_exit(lb.pid, 1500);
	t_check_lb(&lb, st == 0, "lb %s after its last connection closed",
		   st == -2 ? "did not exit within 1.5 s" : "exited non-zero");
	t_check_lb(&lb, t_now_ms() - closed_at < 1000 && t_now_ms() - t0 < 1900,
		   "lb waited out the grace period (%llu ms after SIGTERM) instead of exiting "
		   "when the connection closed",
		   (unsigned long long)(t_now_ms() - t0));
	lb_cleanup(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_sigterm_closes_lingering_connection_after_grace)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "linger");
	struct lbproc lb;
	int port = t_free_port(), fd, st;
	uint64_t t0, took;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(cfg, "\"shutdown_grace\":\"2s\"");
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);

	fd = t_connect(NULL, port);
	t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, '1', REPLY_MS), "connection failed");
	t0 = t_now_ms();
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);

	st = t_wait_exit(lb.pid, 3000);
	took = t_now_ms() - t0;
	if (st == -2)
		(void)lb_stop(&lb, 1000);
	t_check_lb(&lb, st == 0, "lb %s with a connection open past shutdown_grace 2s",
		   st == -2 ? "did not exit within 3 s" : "exited non-zero");
	t_check_lb(&lb, took >= 1500, "lb exited %llu ms after SIGTERM, before the 2 s grace",
		   (unsigned long long)took);
	/* Cut by the grace period: a reset, so that the client cannot take what it got for the
	 * whole stream (a clean EOF would look complete). */
	int closed = t_wait_closed(fd, 500);
	t_check_lb(&lb, closed == 1, "client connection %s when the grace period cut it",
		   closed == 0 ? "got a clean EOF, not a reset" : "was not closed");

	close(fd);
	lb_cleanup(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_access_log_names_listener_client_backend_and_bytes)
{
	enum { SENT = 12345 };
	struct tbackend *be = tb_start("127.0.0.1:0", TB_TAGGED, "acc-be");
	char tag[64], want_back[16];
	static char out[SENT], back[SENT];
	struct lbproc lb;
	int port = t_free_port(), fd;
	bool found = false;
	char *log, *line;

	ck_assert_ptr_nonnull(be);
	/* The listener is named "edge-in"; the backend sends "acc-be\n" before echoing, so the
	 * backend-to-client count differs from the client-to-backend one. */
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(cfg, "\"log\":{\"access\":true}");
	edge_backend(pool, be);
	t_lb_start(&lb, cfg, &port, 1);
	snprintf(want_back, sizeof(want_back), "%d", SENT + (int)strlen("acc-be\n"));

	for (int i = 0; i < SENT; i++)
		out[i] = (char)('A' + i % 23);
	fd = t_connect("127.0.0.7", port);
	t_check_lb(&lb, fd >= 0 && t_read_line(fd, tag, sizeof(tag), REPLY_MS) > 0,
		   "no tag from the backend");
	t_check_lb(&lb, t_send_all(fd, out, SENT) && t_recv_exact(fd, back, SENT, 5000),
		   "echo of %d bytes failed", SENT);
	t_check_lb(&lb, memcmp(out, back, SENT) == 0, "echoed bytes differ");
	close(fd);

	t_check_lb(&lb, lb_log_wait(&lb, "127.0.0.7", 2000), "no log line names client 127.0.0.7");
	log = lb_log(&lb);
	ck_assert_ptr_nonnull(log);
	for (char *save = NULL, *s = log; !found && (line = strtok_r(s, "\n", &save)); s = NULL)
		found = strstr(line, "127.0.0.7") && strstr(line, "edge-in") &&
			(strstr(line, "acc-be") || strstr(line, tb_address(be))) &&
			strstr(line, "12345") && strstr(line, want_back);
	free(log);
	t_check_lb(&lb, found,
		   "no access log line with listener edge-in, client 127.0.0.7, backend acc-be, "
		   "12345 bytes in and %s out",
		   want_back);

	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_auto_engine_falls_back_to_epoll)
{
	struct tbackend *be = tb_start("127.0.0.1:0", TB_ECHO, "fallback");
	struct lbproc lb;
	int port = t_free_port(), fd, rc;

	ck_assert_ptr_nonnull(be);
	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(cfg, "\"engine\":\"auto\"");
	edge_backend(pool, be);
	char *json = t_cfg_text(cfg);
	json_decref(cfg);
	setenv("LB_TEST_FAIL_URING", "1", 1);
	rc = lb_start(&lb, json, &port, 1);
	unsetenv("LB_TEST_FAIL_URING");
	free(json);
	t_check_lb(&lb, rc == 0, "lb with engine auto did not start when io_uring was refused");
	t_check_lb(&lb, lb_log_wait(&lb, "engine: epoll (io_uring unavailable", 2000),
		   "lb did not log that it fell back to epoll");
	fd = t_connect(NULL, port);
	t_check_lb(&lb, fd >= 0 && t_echo_byte(fd, 'e', REPLY_MS),
		   "no relaying on the epoll fallback");
	close(fd);

	t_stop_lb(&lb);
	tb_free(be);
}
END_TEST

START_TEST(test_explicit_io_uring_refused_exits_1)
{
	char path[300];
	char *err = NULL;
	int port = t_free_port(), st;

	json_t *pool, *cfg = edge_config(port, NULL, &pool);
	t_cfg_set(cfg, "\"engine\":\"io_uring\"");
	t_cfg_backend(pool, "x", "127.0.0.1:9");
	t_cfg_write(cfg, path, sizeof(path));
	char *argv[] = {(char *)t_lb_bin(), "-c", path, NULL};

	setenv("LB_TEST_FAIL_URING", "1", 1);
	st = t_run(argv, NULL, &err, 5000);
	unsetenv("LB_TEST_FAIL_URING");
	t_remove_config(path);
	if (st != 1 || !err || !strstr(err, "io_uring"))
		fprintf(stderr, "lb stderr:\n%s\n", err ? err : "(none)");
	ck_assert_msg(st == 1, "engine io_uring without io_uring: exit %d, expected 1", st);
	ck_assert_msg(err && strstr(err, "io_uring"), "the error does not mention io_uring");
	free(err);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tcp_edges");

	t_add_test(s, "many_idle", test_many_idle_connections_echo_and_leave_no_fds, 60);
	t_add_test(s, "listener_cap", test_listener_max_conns_closes_the_extra_connection, 20);
	t_add_test(s, "per_client_cap", test_max_conns_per_client_caps_one_host_only, 20);
	t_add_test(s, "backend_cap", test_backend_max_conns_spreads_then_refuses, 20);
	t_add_test(s, "acl", test_deny_wins_over_allow_without_backend_connection, 20);
	t_add_test(s, "proxy_v1", test_proxy_protocol_v1_header_precedes_payload, 20);
	t_add_test(s, "proxy_v2", test_proxy_protocol_v2_header_precedes_payload, 20);
	t_add_test(s, "connect_timeout", test_connect_timeout_moves_on_to_live_backend, 30);
	t_add_test(s, "idle_gap", test_connect_after_idle_gap_longer_than_connect_timeout, 20);
	t_add_test(s, "idle_timeout", test_idle_timeout_closes_only_silent_connections, 20);
	t_add_test(s, "keepalive", test_keepalive_on_both_sides, 20);
	t_add_test(s, "on_down", test_on_down_shutdown_resets_connections_of_a_backend_marked_down,
		   30);
	t_add_test(s, "lifetime", test_lifetime_closes_at_a_quiet_moment, 20);
	t_add_test(s, "rr_retries", test_round_robin_retries_split_evenly, 20);
	t_add_test(s, "panic", test_panic_threshold_keeps_serving_when_all_are_marked_down, 20);
	t_add_test(s, "backend_reset", test_backend_reset_mid_stream_resets_client, 20);
	t_add_test(s, "client_reset", test_client_reset_closes_backend_connection, 20);
	t_add_test(s, "graceful", test_sigterm_lets_open_connection_finish, 20);
	t_add_test(s, "grace_expiry", test_sigterm_closes_lingering_connection_after_grace, 20);
	t_add_test(s, "access_log", test_access_log_names_listener_client_backend_and_bytes, 20);
	t_add_test(s, "engine_fallback", test_auto_engine_falls_back_to_epoll, 20);
	t_add_test(s, "engine_refused", test_explicit_io_uring_refused_exits_1, 20);

	return t_run_suite(s, CK_ENV);
}
