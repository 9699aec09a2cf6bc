/* Integration: lb at a database edge, driven by the real clients users run against it —
 * pgbench and psql against two real PostgreSQL servers, redis-benchmark against real
 * redis-servers. Through lb: pgbench runs without a failed transaction; with backends capped
 * at max_conns 4 and a pool queue, 32 clients that connect per transaction all get through
 * while no server ever takes a fifth connection (the servers themselves refuse one); a
 * Patroni-style role endpoint moves new connections to the new primary and on_down
 * "shutdown" resets the sessions of the old one; redis-benchmark sees no error. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS 2
/* A client run: pgbench -T 10 plus connection set-up and teardown, with room for a loaded
 * (sanitizer) build. */
#define CLIENT_RUN_MS 60000
/* Role-check timing: a flip of the role endpoint is seen within interval x fall. */
#define ROLE_INTERVAL_MS 200
#define ROLE_FALL	 2
#define SLACK_MS	 1500

static struct t_harness h;
static struct {
	pid_t pg[2], redis[2];
	char pg_dir[2][64];
	int pg_port[2];
} srv;

static void setup(void)
{
	memset(&h, 0, sizeof(h));
	memset(&srv, 0, sizeof(srv));
	srv.pg[0] = srv.pg[1] = srv.redis[0] = srv.redis[1] = -1;
}

static void teardown(void)
{
	for (int i = 0; i < 2; i++) {
		t_stop_child(&srv.redis[i], SIGTERM, 5000);
		t_pg_stop(&srv.pg[i], srv.pg_dir[i]);
	}
}

static const char *pgbench_bin(void)
{
	return access("/usr/bin/pgbench", X_OK) == 0 ? "/usr/bin/pgbench" : "pgbench";
}

/* Two PostgreSQL servers with opts (NULL: defaults), each initialised for pgbench. */
static void start_two_postgres(const char *const *opts)
{
	char port_s[16], *out = NULL, *err = NULL;

	for (int i = 0; i < 2; i++) {
		srv.pg_port[i] = t_pg_start(&srv.pg[i], srv.pg_dir[i], sizeof(srv.pg_dir[i]), opts);
		snprintf(port_s, sizeof(port_s), "%d", srv.pg_port[i]);
		char *const argv[] = {(char *)pgbench_bin(),
				      "-i",
				      "-q",
				      "-h",
				      "127.0.0.1",
				      "-p",
				      port_s,
				      "-U",
				      "postgres",
				      "postgres",
				      NULL};
		int rc = t_run(argv, &out, &err, CLIENT_RUN_MS);
		ck_assert_msg(rc == 0, "pgbench -i on port %d: exit %d\n%.1500s\n%.1500s",
			      srv.pg_port[i], rc, out ? out : "", err ? err : "");
		free(out);
		free(err);
		out = err = NULL;
	}
}

/* lb with listener "db" in front of pool "pg" over both servers; pool_extra and
 * backend_extra[i] (JSON members without braces, NULL for none) are added. */
static void start_lb_pg(const char *health, const char *pool_extra,
			const char *const *backend_extra)
{
	char addr[32], name[8];
	json_t *cfg = t_cfg_new(LB_WORKERS);

	h.port = t_free_port();
	t_cfg_listener(cfg, "db", "tcp", "127.0.0.1", h.port, "pg");
	json_t *pool = t_cfg_pool(cfg, "pg", "least_conn", health);
	t_cfg_set(pool, "%s", pool_extra ? pool_extra : "");
	for (int i = 0; i < 2; i++) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", srv.pg_port[i]);
		snprintf(name, sizeof(name), "pg%d", i);
		json_t *b = t_cfg_backend(pool, name, addr);
		if (backend_extra && backend_extra[i])
			t_cfg_set(b, "%s", backend_extra[i]);
	}
	t_harness_start(&h, cfg, NULL);
}

/* pgbench through lb with args (NULL-terminated, at most 16); fails the test unless it
 * exits 0 and reports 0 failed transactions and some processed. Returns its stdout. */
static char *pgbench_through_lb(const char *const *args)
{
	char port_s[16], *out = NULL, *err = NULL;
	char *argv[32] = {(char *)pgbench_bin(), "-h", "127.0.0.1", "-p", port_s, "-U", "postgres"};
	size_t n = 7;

	snprintf(port_s, sizeof(port_s), "%d", h.port);
	for (size_t i = 0; args[i] && n < 30; i++)
		argv[n++] = (char *)args[i];
	argv[n++] = "postgres";
	argv[n] = NULL;
	int rc = t_run(argv, &out, &err, CLIENT_RUN_MS);
	/* Check's messages are short: the head of the output says enough. */
	t_expect(&h, rc == 0, "pgbench through lb: exit %d\n%.1500s\n%.1500s", rc, out ? out : "",
		 err ? err : "");
	t_expect(&h, out && strstr(out, "number of failed transactions: 0 "),
		 "pgbench through lb reports failed transactions:\n%.1500s\n%.1500s",
		 out ? out : "", err ? err : "");
	const char *p = out ? strstr(out, "number of transactions actually processed: ") : NULL;
	t_expect(&h, p && atol(p + strlen("number of transactions actually processed: ")) > 0,
		 "pgbench through lb processed nothing:\n%.1500s", out ? out : "");
	free(err);
	return out;
}

/* A metric's value in lb's /metrics text (the first line starting with series), or -1. */
static long long metric(const char *series)
{
	char *out = NULL;
	long long v = -1;

	t_expect(&h, t_lbctl(h.sock, &out, NULL, "metrics", NULL) == 0 && out, "no metrics");
	for (const char *p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, series, strlen(series)) == 0 && p[strlen(series)] == ' ') {
			v = atoll(p + strlen(series) + 1);
			break;
		}
	free(out);
	return v;
}

/* Poll the metric until it reads want (or timeout_ms passes); the last value read. */
static long long metric_wait(const char *series, long long want, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	long long v;

	while ((v = metric(series)) != want && t_now_ms() < deadline)
		usleep(20000);
	return v;
}

START_TEST(test_pgbench_through_lb_has_no_failed_transaction)
{
	static const char *const args[] = {"-c", "16", "-j", "4", "-T", "10", NULL};

	start_two_postgres(NULL);
	start_lb_pg("{\"type\":\"postgres\",\"interval\":\"1s\"}", NULL, NULL);
	free(pgbench_through_lb(args));
	for (int i = 0; i < 2; i++) {
		char series[96];
		snprintf(series, sizeof(series),
			 "lb_backend_connections_total{pool=\"pg\",backend=\"pg%d\"}", i);
		t_expect(&h, metric(series) > 0, "pg%d got no connection from pgbench", i);
	}
	t_harness_finish(&h);
}
END_TEST

/* Each server takes 4 connections and not one more (superuser_reserved_connections 0: the
 * fifth is refused with "too many clients"), lb's backends have max_conns 4 and the pool a
 * queue: 32 clients connecting for every transaction all get through, having waited. */
START_TEST(test_pgbench_32_clients_queue_for_4_connections_per_server)
{
	static const char *const pg_opts[] = {"-c", "max_connections=4", "-c",
					      "superuser_reserved_connections=0", NULL};
	static const char *const cap[] = {"\"max_conns\":4", "\"max_conns\":4"};
	static const char *const args[] = {"-c", "32", "-j", "32", "-C", "-S", "-T", "5", NULL};

	start_two_postgres(pg_opts);
	/* No active check: it would take one of the four connections itself. */
	start_lb_pg(T_HEALTH_NONE, "\"queue\":{\"max\":1000,\"timeout\":\"20s\"}", cap);
	free(pgbench_through_lb(args));
	t_expect(&h, metric("lb_pool_queued_total{pool=\"pg\"}") > 0,
		 "no client had to wait: the test did not exercise the queue");
	t_expect(&h, metric("lb_pool_queue_rejected_total{pool=\"pg\",reason=\"timeout\"}") == 0,
		 "clients timed out in the queue");
	t_harness_finish(&h);
}
END_TEST

/* A Patroni-style role endpoint: GET /primary answers 200 on the leader, 503 elsewhere. */
struct role_srv {
	int lfd, port;
	_Atomic bool primary, stop;
	pthread_t thread;
};

static void *role_main(void *arg)
{
	struct role_srv *r = arg;
	char buf[1024];

	while (!atomic_load(&r->stop)) {
		struct pollfd pfd = {.fd = r->lfd, .events = POLLIN};
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		int fd = accept(r->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		(void)t_wait_readable(fd, 1000);
		(void)recv(fd, buf, sizeof(buf), 0);
		const char *resp =
		    atomic_load(&r->primary)
			? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
			: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
			  "Connection: close\r\n\r\n";
		(void)t_send_all(fd, resp, strlen(resp));
		close(fd);
	}
	return NULL;
}

static void role_start(struct role_srv *r, bool primary)
{
	atomic_store(&r->primary, primary);
	atomic_store(&r->stop, false);
	r->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(r->lfd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	ck_assert_int_eq(bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(r->lfd, 16), 0);
	ck_assert_int_eq(getsockname(r->lfd, (struct sockaddr *)&sa, &len), 0);
	r->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&r->thread, NULL, role_main, r), 0);
}

static void role_stop(struct role_srv *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->lfd);
}

/* The port of the server a new psql session through lb lands on, or -1. */
static int psql_server_port(void)
{
	char port_s[16], *out = NULL;
	snprintf(port_s, sizeof(port_s), "%d", h.port);
	char *const argv[] = {"/usr/bin/psql",
			      "-h",
			      "127.0.0.1",
			      "-p",
			      port_s,
			      "-U",
			      "postgres",
			      "-Atc",
			      "select inet_server_port()",
			      "postgres",
			      NULL};
	int rc = t_run(argv, &out, NULL, 10000);
	int port = rc == 0 && out ? atoi(out) : -1;
	free(out);
	return port;
}

START_TEST(test_role_endpoint_failover_moves_clients_and_resets_old_primary)
{
	struct role_srv role[2];
	char extra[2][48], health[160];

	start_two_postgres(NULL);
	role_start(&role[0], true);
	role_start(&role[1], false);
	for (int i = 0; i < 2; i++)
		snprintf(extra[i], sizeof(extra[i]), "\"check_port\":%d", role[i].port);
	const char *const backend_extra[] = {extra[0], extra[1]};
	snprintf(health, sizeof(health),
		 "{\"type\":\"http\",\"path\":\"/primary\",\"interval\":\"%dms\","
		 "\"timeout\":\"150ms\",\"rise\":1,\"fall\":%d}",
		 ROLE_INTERVAL_MS, ROLE_FALL);
	start_lb_pg(health, "\"on_down\":\"shutdown\"", backend_extra);

	/* Only the leader is up: sessions land there. */
	char line[128];
	snprintf(line, sizeof(line), "backend pg1 (127.0.0.1:%d) is DOWN", srv.pg_port[1]);
	t_expect(&h, lb_log_wait(&h.lb, line, 5000), "the replica was not marked down");
	int port = psql_server_port();
	t_expect(&h, port == srv.pg_port[0], "psql through lb reached port %d, leader is %d", port,
		 srv.pg_port[0]);
	/* An open session on the leader: a real startup exchange (SSLRequest, answered N). */
	int held = t_connect(NULL, h.port);
	char b;
	t_expect(&h,
		 held >= 0 && t_send_all(held, "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8) &&
		     t_recv_exact(held, &b, 1, 2000) && b == 'N',
		 "no session to the leader through lb");
	/* 1 once the psql sessions before it have closed their pair. */
	long long on_leader =
	    metric_wait("lb_backend_active_connections{pool=\"pg\",backend=\"pg0\"}", 1, 2000);
	t_expect(&h, on_leader == 1, "the leader holds %lld sessions, expected 1", on_leader);

	/* Failover: the replica becomes the leader. */
	uint64_t t0 = t_now_ms();
	atomic_store(&role[0].primary, false);
	atomic_store(&role[1].primary, true);
	int r = t_wait_closed(held, ROLE_INTERVAL_MS * (ROLE_FALL + 1) + SLACK_MS);
	uint64_t closed_ms = t_now_ms() - t0;
	t_expect(&h, r == 1, "the old leader's session was not reset (%d) after %llu ms", r,
		 (unsigned long long)closed_ms);
	close(held);
	uint64_t deadline = t0 + ROLE_INTERVAL_MS * (ROLE_FALL + 1) + SLACK_MS;
	while ((port = psql_server_port()) != srv.pg_port[1] && t_now_ms() < deadline)
		usleep(50000);
	t_expect(&h, port == srv.pg_port[1],
		 "within interval x fall, new sessions still reach port %d, new leader is %d", port,
		 srv.pg_port[1]);
	for (int i = 0; i < 3; i++)
		t_expect(&h, psql_server_port() == srv.pg_port[1],
			 "session %d after the failover missed the new leader", i);
	t_harness_finish(&h);
	role_stop(&role[0]);
	role_stop(&role[1]);
}
END_TEST

START_TEST(test_redis_benchmark_through_lb_has_no_error)
{
	char addr[2][32], port_s[16], *out = NULL, *err = NULL;

	json_t *cfg = t_cfg_new(LB_WORKERS);
	h.port = t_free_port();
	t_cfg_listener(cfg, "cache", "tcp", "127.0.0.1", h.port, "redis");
	json_t *pool =
	    t_cfg_pool(cfg, "redis", "round_robin", "{\"type\":\"redis\",\"interval\":\"1s\"}");
	for (int i = 0; i < 2; i++) {
		snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", t_redis_start(&srv.redis[i]));
		t_cfg_backend(pool, NULL, addr[i]);
	}
	t_harness_start(&h, cfg, NULL);
	snprintf(port_s, sizeof(port_s), "%d", h.port);
	char *const argv[] = {"/usr/bin/redis-benchmark",
			      "-h",
			      "127.0.0.1",
			      "-p",
			      port_s,
			      "-c",
			      "20",
			      "-n",
			      "20000",
			      "-t",
			      "set,get",
			      "--csv",
			      NULL};
	int rc = t_run(argv, &out, &err, CLIENT_RUN_MS);
	t_expect(&h, rc == 0, "redis-benchmark through lb: exit %d\n%.1500s\n%.1500s", rc,
		 out ? out : "", err ? err : "");
	t_expect(&h, out && strstr(out, "\"SET\"") && strstr(out, "\"GET\""),
		 "redis-benchmark printed no SET/GET results:\n%.1500s\n%.1500s", out ? out : "",
		 err ? err : "");
	t_expect(&h, !strcasestr(out, "error") && !(err && strcasestr(err, "error")),
		 "redis-benchmark through lb saw errors:\n%.1500s\n%.1500s", out, err ? err : "");
	free(out);
	free(err);
	t_harness_finish(&h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dbclients");
	TCase *tc;

#define ADD(name, fn, timeout)                                                                     \
	tc = tcase_create(name);                                                                   \
	tcase_add_checked_fixture(tc, setup, teardown);                                            \
	tcase_set_timeout(tc, timeout);                                                            \
	tcase_add_test(tc, fn);                                                                    \
	suite_add_tcase(s, tc)

	ADD("pgbench", test_pgbench_through_lb_has_no_failed_transaction, 120);
	ADD("pgbench_queue", test_pgbench_32_clients_queue_for_4_connections_per_server, 120);
	ADD("failover", test_role_endpoint_failover_moves_clients_and_resets_old_primary, 120);
	ADD("redis_benchmark", test_redis_benchmark_through_lb_has_no_error, 60);
	return t_run_suite(s, CK_ENV);
}
