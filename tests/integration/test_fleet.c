/* Integration: what a fleet of lb instances relies on (docs/FLEET.md), on loopback with the
 * engine named by $LB_ENGINE: two lbs with reordered and renamed configs send every client
 * to the same backend and show the same table fingerprint; GET /ready and lbctl
 * ready/withdraw/rejoin; SIGTERM with withdraw_delay keeps accepting until the delay ends;
 * lbctl health forces a verdict; a second lb cannot join a running one's listener. The
 * multi-namespace test with routers is tests/fleet/test_fleet.sh. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define TEST_TIMEOUT_S 60
#define NBACKENDS      5
/* Client addresses 127.0.0.2 .. 127.0.0.(1 + NCLIENTS): ip_hash keys on the client IP. */
#define NCLIENTS 60
/* The prober's interval in these configs, and how long a verdict may take to show. */
#define CHECK_INTERVAL "100ms"
#define SETTLE_MS      3000

static struct t_backends be; /* fresh for each test: a checked fixture, in its process */

static void backends_up(void)
{
	static const char *const names[NBACKENDS] = {"b0", "b1", "b2", "b3", "b4"};

	t_backends_add_n(&be, TB_TAGGED, names, NBACKENDS);
}

static void backends_down(void)
{
	t_backends_free(&be);
}

/* A config for one instance: its listener on port, metrics on mport, the backends listed in
 * the order order[] under names prefix<i>, extra top-level members in top ("" for none). */
static json_t *instance_config(int port, int mport, const int *order, const char *prefix,
			       const char *top)
{
	json_t *cfg = t_cfg_new(2);
	char name[32];

	t_cfg_set(cfg, "%s", top);
	t_cfg_set(cfg, "\"metrics\":{\"listen\":\"127.0.0.1:%d\"}", mport);
	t_cfg_listener(cfg, "vip", NULL, "127.0.0.1", port, "db");
	json_t *pool = t_cfg_pool(cfg, "db", "ip_hash",
				  "{\"type\":\"tcp\",\"interval\":\"" CHECK_INTERVAL
				  "\",\"rise\":1,\"fall\":1}");
	for (int k = 0; k < NBACKENDS; k++) {
		int i = order ? order[k] : k;
		snprintf(name, sizeof(name), "%s%d", prefix, i);
		t_cfg_backend(pool, name, tb_address(be.tb[i]));
	}
	return cfg;
}

static void start_instance(struct lbproc *lb, int port, int mport, const int *order,
			   const char *prefix, const char *top)
{
	int ports[] = {port, mport};

	t_lb_start(lb, instance_config(port, mport, order, prefix, top), ports, 2);
}

static void sock_of(const struct lbproc *lb, char *sock, size_t len)
{
	snprintf(sock, len, "%s/lb.sock", lb->dir);
}

/* The backend index each client reaches through port (-1 if none). */
static void client_map(int port, int *map)
{
	char src[32];

	for (int c = 0; c < NCLIENTS; c++) {
		snprintf(src, sizeof(src), "127.0.0.%d", c + 2);
		map[c] = t_fetch(&be, src, port);
	}
}

/* The pool's fingerprint as `lbctl --json status` shows it, into fp. */
static void fingerprint_of(const struct lbproc *lb, char *fp, size_t len)
{
	char sock[320], *out = NULL, *at;

	sock_of(lb, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, &out, NULL, "--json", "status", NULL), 0);
	at = strstr(out, "\"fingerprint\": \"");
	ck_assert_msg(at, "no fingerprint in status: %s", out);
	snprintf(fp, len, "%.8s", at + strlen("\"fingerprint\": \""));
	free(out);
}

/* Wait until `lbctl backends` shows want (e.g. "down") for backend name. */
static bool wait_state(const struct lbproc *lb, const char *name, const char *want)
{
	char sock[320], needle[64];
	uint64_t deadline = t_now_ms() + SETTLE_MS;

	sock_of(lb, sock, sizeof(sock));
	snprintf(needle, sizeof(needle), " %s ", name);
	do {
		char *out = NULL;
		bool seen = false;
		if (t_lbctl(sock, &out, NULL, "backends", NULL) == 0) {
			char *line = strstr(out, needle);
			char *eol = line ? strchr(line, '\n') : NULL;
			if (eol)
				*eol = '\0';
			seen = line && strstr(line, want);
		}
		free(out);
		if (seen)
			return true;
		usleep(50 * 1000);
	} while (t_now_ms() < deadline);
	return false;
}

START_TEST(test_reordered_and_renamed_instances_send_every_client_to_the_same_backend)
{
	static const int rev[NBACKENDS] = {4, 3, 2, 1, 0};
	struct lbproc a, b;
	int pa = t_free_port(), pb = t_free_port();
	int ma[NCLIENTS], mb[NCLIENTS], used[NBACKENDS] = {0};
	char fa[16], fb[16], sock[320];

	start_instance(&a, pa, t_free_port(), NULL, "pg", "");
	start_instance(&b, pb, t_free_port(), rev, "other-", "");
	fingerprint_of(&a, fa, sizeof(fa));
	fingerprint_of(&b, fb, sizeof(fb));
	ck_assert_str_eq(fa, fb);
	client_map(pa, ma);
	client_map(pb, mb);
	for (int c = 0; c < NCLIENTS; c++) {
		t_check_lb(&a, ma[c] >= 0 && mb[c] == ma[c],
			   "client 127.0.0.%d: backend %d through a, %d through b", c + 2, ma[c],
			   mb[c]);
		used[ma[c]]++;
	}
	for (int i = 0; i < NBACKENDS; i++)
		ck_assert_msg(used[i] > 0, "no client reached backend %d", i);

	/* One verdict on both: the same clients move, to the same places. */
	sock_of(&a, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/pg2", "down", NULL), 0);
	sock_of(&b, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/other-2", "down", NULL), 0);
	int before[NCLIENTS];
	memcpy(before, ma, sizeof(before));
	client_map(pa, ma);
	client_map(pb, mb);
	for (int c = 0; c < NCLIENTS; c++) {
		ck_assert_int_eq(ma[c], mb[c]);
		ck_assert_int_ne(ma[c], 2);
		if (before[c] != 2)
			ck_assert_int_eq(ma[c], before[c]); /* only backend 2's clients move */
	}
	t_stop_lb(&a);
	t_stop_lb(&b);
}
END_TEST

START_TEST(test_ready_follows_the_pools_and_withdraw_until_rejoin)
{
	struct lbproc lb;
	int port = t_free_port(), mport = t_free_port(), status;
	char sock[320], *body, *out = NULL, *metrics;

	start_instance(&lb, port, mport, NULL, "pg", "");
	sock_of(&lb, sock, sizeof(sock));
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 200);
	ck_assert_str_eq(body, "ready\n");
	free(body);
	ck_assert_int_eq(t_lbctl(sock, &out, NULL, "ready", NULL), 0);
	ck_assert_str_eq(out, "ready\n");
	free(out);

	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "withdraw", NULL), 0);
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 503);
	ck_assert_str_eq(body, "not ready: withdrawn\n");
	free(body);
	ck_assert_int_eq(t_lbctl(sock, &out, NULL, "ready", NULL), 1);
	ck_assert_str_eq(out, "not ready: withdrawn\n");
	free(out);
	metrics = t_http_get(mport, "/metrics", &status);
	ck_assert_ptr_nonnull(strstr(metrics, "\nlb_ready 0\n"));
	free(metrics);
	/* Withdrawn is for the routers: lb itself keeps serving. */
	ck_assert_int_ge(t_fetch(&be, NULL, port), 0);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "rejoin", NULL), 0);
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 200);
	free(body);

	/* No usable backend behind a listener: not ready, with the reason. */
	for (int i = 0; i < NBACKENDS; i++) {
		char target[32];
		snprintf(target, sizeof(target), "db/pg%d", i);
		ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", target, "down", NULL), 0);
	}
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 503);
	ck_assert_str_eq(body, "not ready: listener vip: pool db has no usable backend\n");
	free(body);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/pg3", "auto", NULL), 0);
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 200);
	free(body);
	t_stop_lb(&lb);
}
END_TEST

START_TEST(test_sigterm_with_withdraw_delay_keeps_accepting_until_the_delay_ends)
{
	struct lbproc lb;
	int port = t_free_port(), mport = t_free_port(), status, served = 0;
	char *body;

	start_instance(&lb, port, mport, NULL, "pg", "\"withdraw_delay\":\"1500ms\"");
	uint64_t t0 = t_now_ms();
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);
	ck_assert(lb_log_wait(&lb, "withdraw_delay", 2000));
	body = t_http_get(mport, "/ready", &status);
	ck_assert_int_eq(status, 503);
	ck_assert_str_eq(body, "not ready: stopping\n");
	free(body);
	/* New connections are still served while the routers converge. */
	while (t_now_ms() - t0 < 1000) {
		t_check_lb(&lb, t_fetch(&be, NULL, port) >= 0,
			   "connection refused %llu ms into the withdraw delay",
			   (unsigned long long)(t_now_ms() - t0));
		served++;
		usleep(20 * 1000);
	}
	ck_assert_int_gt(served, 10);
	int rc = t_wait_exit(lb.pid, 5000);
	uint64_t took = t_now_ms() - t0;
	t_check_lb(&lb, rc == 0, "lb exited %d", rc);
	lb.pid = 0;
	ck_assert_msg(took >= 1500, "stopped after %llu ms, before the delay",
		      (unsigned long long)took);
	ck_assert_int_lt(t_fetch(&be, NULL, port), 0); /* listeners are closed now */
	lb_cleanup(&lb);
}
END_TEST

START_TEST(test_withdrawn_long_enough_before_sigterm_does_not_wait_again)
{
	struct lbproc lb;
	char sock[320];

	start_instance(&lb, t_free_port(), t_free_port(), NULL, "pg", "\"withdraw_delay\":\"1s\"");
	sock_of(&lb, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "withdraw", NULL), 0);
	usleep(1100 * 1000);
	uint64_t t0 = t_now_ms();
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);
	int rc = t_wait_exit(lb.pid, 5000);
	uint64_t took = t_now_ms() - t0;
	t_check_lb(&lb, rc == 0, "lb exited %d", rc);
	lb.pid = 0;
	ck_assert_msg(took < 900, "waited %llu ms after a withdraw older than the delay",
		      (unsigned long long)took);
	ck_assert(lb_log_wait(&lb, "stopping; open connections", 0));
	lb_cleanup(&lb);
}
END_TEST

START_TEST(test_a_second_sigterm_skips_the_withdraw_delay)
{
	struct lbproc lb;

	start_instance(&lb, t_free_port(), t_free_port(), NULL, "pg", "\"withdraw_delay\":\"30s\"");
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);
	ck_assert(lb_log_wait(&lb, "withdraw_delay", 2000));
	ck_assert_int_eq(kill(lb.pid, SIGTERM), 0);
	int rc = t_wait_exit(lb.pid, 3000);
	t_check_lb(&lb, rc == 0, "lb exited %d (still waiting out the delay?)", rc);
	lb.pid = 0;
	lb_cleanup(&lb);
}
END_TEST

START_TEST(test_forced_health_overrides_the_prober_until_auto)
{
	struct lbproc lb;
	int port = t_free_port();
	char sock[320], *out = NULL;

	start_instance(&lb, port, t_free_port(), NULL, "pg", "");
	sock_of(&lb, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, &out, NULL, "health", "db/pg1", "down", NULL), 0);
	ck_assert_str_eq(out, "db/pg1: down (forced)\n");
	free(out);
	/* The prober keeps passing its checks; the forced verdict stands. */
	usleep(400 * 1000);
	ck_assert(wait_state(&lb, "pg1", "down (forced)"));
	int map[NCLIENTS];
	client_map(port, map);
	for (int c = 0; c < NCLIENTS; c++)
		ck_assert_int_ne(map[c], 1);
	/* A reload keeps it (the backend object carries over). */
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "reload", NULL), 0);
	ck_assert(wait_state(&lb, "pg1", "down (forced)"));

	/* Forced up beats a failing prober; auto hands the backend back to it. */
	tb_stop(be.tb[3]);
	ck_assert(wait_state(&lb, "pg3", "down"));
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/pg3", "up", NULL), 0);
	usleep(400 * 1000);
	ck_assert(wait_state(&lb, "pg3", "up (forced)"));
	ck_assert_int_eq(t_lbctl(sock, &out, NULL, "health", "db/pg3", "auto", NULL), 0);
	ck_assert_str_eq(out, "db/pg3: down (decided by the prober)\n");
	free(out);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/pg1", "auto", NULL), 0);
	ck_assert(wait_state(&lb, "pg1", "up"));
	ck_assert_int_eq(tb_restart(be.tb[3]), 0);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/pg1", "sideways", NULL), 2);
	ck_assert_int_eq(t_lbctl(sock, NULL, NULL, "health", "db/nope", "up", NULL), 1);
	t_stop_lb(&lb);
}
END_TEST

START_TEST(test_a_second_lb_cannot_join_a_running_listener)
{
	struct lbproc a;
	int port = t_free_port(), mport = t_free_port();
	char path[320], *err = NULL;

	start_instance(&a, port, mport, NULL, "pg", "");
	/* A hold on a connection, so that stopping a leaves it in TIME_WAIT on the port. */
	int held = t_connect(NULL, port);
	ck_assert_int_ge(held, 0);

	t_cfg_write(instance_config(port, t_free_port(), NULL, "pg", ""), path, sizeof(path));
	char *argv[] = {(char *)t_lb_bin(), "-c", path, NULL};
	int rc = t_run(argv, NULL, &err, 5000);
	ck_assert_msg(rc == 1, "second lb exited %d: %s", rc, err);
	ck_assert_msg(strstr(err, "listener vip: tcp 127.0.0.1:") &&
			  strstr(err, "is already in use by another process"),
		      "no clear message: %s", err);
	free(err);
	ck_assert_int_ge(t_fetch(&be, NULL, port), 0); /* the first is unharmed */

	/* Once the first has stopped, a successor starts on the same port at once. */
	t_stop_lb(&a);
	close(held);
	struct lbproc b;
	start_instance(&b, port, mport, NULL, "pg", "");
	ck_assert_int_ge(t_fetch(&be, NULL, port), 0);
	t_stop_lb(&b);
	t_remove_config(path);
}
END_TEST

/* A tcp listener on tport and a udp one on uport, in front of backend 0. */
static json_t *tcp_udp_config(int tport, int uport)
{
	json_t *cfg = t_cfg_new(0);

	t_cfg_listener(cfg, "t", NULL, "127.0.0.1", tport, "d");
	t_cfg_listener(cfg, "dns", "udp", "127.0.0.1", uport, "d");
	t_cfg_backend(t_cfg_pool(cfg, "d", NULL, NULL), NULL, tb_address(be.tb[0]));
	return cfg;
}

START_TEST(test_a_second_lb_cannot_join_a_running_udp_listener)
{
	struct lbproc a;
	int uport = t_free_port(), tport = t_free_port();
	char path[320], *err = NULL;

	t_lb_start(&a, tcp_udp_config(tport, uport), &tport, 1);
	/* The second one shares only the udp listener's address: that alone must stop it. */
	t_cfg_write(tcp_udp_config(t_free_port(), uport), path, sizeof(path));
	char *argv[] = {(char *)t_lb_bin(), "-c", path, NULL};
	int rc = t_run(argv, NULL, &err, 5000);
	ck_assert_msg(rc == 1, "second lb exited %d: %s", rc, err);
	ck_assert_msg(strstr(err, "listener dns: udp 127.0.0.1:") &&
			  strstr(err, "is already in use by another process"),
		      "no clear message: %s", err);
	ck_assert_msg(!strstr(err, "listener t:"), "the free tcp listener was refused: %s", err);
	free(err);
	t_stop_lb(&a);
	t_remove_config(path);
}
END_TEST

START_TEST(test_reload_refuses_a_listener_another_process_holds)
{
	struct lbproc a, b;
	int pa = t_free_port(), pb = t_free_port();
	char sock[320], *err = NULL;

	start_instance(&a, pa, t_free_port(), NULL, "pg", "");
	start_instance(&b, pb, t_free_port(), NULL, "pg", "");
	/* b's config now also claims a's port: the reload must fail and change nothing. */
	json_t *cfg = instance_config(pb, t_free_port(), NULL, "pg", "");
	t_cfg_listener(cfg, "stolen", NULL, "127.0.0.1", pa, "db");
	t_rewrite_config(&b, cfg);
	sock_of(&b, sock, sizeof(sock));
	ck_assert_int_eq(t_lbctl(sock, NULL, &err, "reload", NULL), 1);
	ck_assert_msg(strstr(err, "listener stolen: tcp 127.0.0.1:") &&
			  strstr(err, "is already in use by another process"),
		      "reload error: %s", err);
	free(err);
	ck_assert_int_ge(t_fetch(&be, NULL, pb), 0);
	t_stop_lb(&a);
	t_stop_lb(&b);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_reordered_and_renamed_instances_send_every_client_to_the_same_backend,
	    test_ready_follows_the_pools_and_withdraw_until_rejoin,
	    test_sigterm_with_withdraw_delay_keeps_accepting_until_the_delay_ends,
	    test_withdrawn_long_enough_before_sigterm_does_not_wait_again,
	    test_a_second_sigterm_skips_the_withdraw_delay,
	    test_forced_health_overrides_the_prober_until_auto,
	    test_a_second_lb_cannot_join_a_running_listener,
	    test_a_second_lb_cannot_join_a_running_udp_listener,
	    test_reload_refuses_a_listener_another_process_holds,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("fleet", TEST_TIMEOUT_S, backends_up, backends_down, tests),
			   CK_ENV);
}
