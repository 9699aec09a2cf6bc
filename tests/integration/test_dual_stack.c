/* Integration: IPv6 listeners and IPv4 clients (issue 17, item 4) on the engine named by
 * $LB_ENGINE. "[::]:port" is IPv6-only by default (IPV6_V6ONLY, as nginx's); with
 * "ipv6only": false it also takes IPv4 clients, which the socket shows as ::ffff:a.b.c.d and
 * lb must treat as the IPv4 clients they are: ACLs written for IPv4, the access log, PROXY
 * headers. A reload that changes the key gives the listener new sockets. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define LB_WORKERS     2
#define TEST_TIMEOUT_S 30
/* A tag or an echo through lb on loopback; generous for a loaded machine. */
#define REPLY_MS 3000
/* How long a denied client may wait for its close. */
#define CLOSE_MS 1000

static struct t_harness h;

/* lb with one tcp listener on [::]:port (extra: more listener keys, e.g. "ipv6only": false)
 * in front of one backend "b1" of the given mode; log: a "log" key for the config, or NULL. */
static void start_lb(const char *extra, const char *log, enum tb_mode mode)
{
	json_t *cfg = t_cfg_new(LB_WORKERS);

	/* the backend first, so that its port is taken when lb's is picked */
	t_backends_add(&h.be, mode, "b1");
	h.port = t_free_port_any();
	ck_assert_int_gt(h.port, 0);
	if (log)
		t_cfg_set(cfg, "%s", log);
	t_cfg_set(t_cfg_listener(cfg, "v6", "tcp", "[::]", h.port, "p"), "%s", extra ? extra : "");
	t_cfg_backends(t_cfg_pool(cfg, "p", "round_robin", T_HEALTH_NONE), &h.be);
	/* the control socket comes after the listeners: lbctl must find it */
	t_harness_start(&h, cfg, "control socket ");
}

/* A connection from src (NULL: any) to dst:h.port answered with b1's tag. */
static bool tagged(const char *src, const char *dst)
{
	char tag[32];
	int fd = t_connect_to(src, dst, h.port), n;

	if (fd < 0)
		return false;
	n = t_read_line(fd, tag, sizeof(tag), REPLY_MS);
	close(fd);
	return n > 0 && strcmp(tag, "b1") == 0;
}

/* A connect to dst:h.port is refused: no socket listens there for that family. */
static bool refused(const char *dst)
{
	int fd = t_connect_to(NULL, dst, h.port);

	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == ECONNREFUSED;
}

static void setup(void)
{
	memset(&h, 0, sizeof(h));
}

START_TEST(test_ipv6_wildcard_listener_takes_only_ipv6_clients_by_default)
{
	start_lb(NULL, NULL, TB_TAGGED);
	t_expect(&h, tagged(NULL, "::1"), "a client of [::1] was not relayed");
	t_expect(&h, refused("127.0.0.1"), "[::]:%d took an IPv4 client without ipv6only false",
		 h.port);
	t_harness_finish(&h);
}
END_TEST

START_TEST(test_dual_stack_listener_takes_ipv4_and_ipv6_clients)
{
	start_lb("\"ipv6only\":false", NULL, TB_TAGGED);
	t_expect(&h, tagged(NULL, "::1"), "a client of [::1] was not relayed");
	t_expect(&h, tagged(NULL, "127.0.0.1"), "a client of 127.0.0.1 was not relayed");
	t_harness_finish(&h);
}
END_TEST

/* An IPv4 ACL and the access log see 127.0.0.x, not ::ffff:127.0.0.x. */
START_TEST(test_dual_stack_ipv4_clients_are_ipv4_to_acls_and_the_log)
{
	char line[128];
	int fd;

	start_lb("\"ipv6only\":false,\"deny\":[\"127.0.0.9/32\"]", "\"log\":{\"access\":true}",
		 TB_TAGGED);
	fd = t_connect_to("127.0.0.9", "127.0.0.1", h.port);
	if (fd >= 0) {
		t_expect(&h, t_wait_closed(fd, CLOSE_MS) != -1,
			 "a client of denied 127.0.0.9 was not closed");
		close(fd);
	}
	t_expect(&h, tagged("127.0.0.8", "127.0.0.1"), "allowed 127.0.0.8 was not relayed");
	snprintf(line, sizeof(line), "access listener=v6 client=127.0.0.8:");
	t_expect(&h, lb_log_wait(&h.lb, line, REPLY_MS),
		 "no access log line for client 127.0.0.8 (as IPv4)");
	char *out = NULL;
	t_expect(&h,
		 t_lbctl(h.sock, &out, NULL, "metrics", NULL) == 0 && out &&
		     strstr(out, "lb_listener_rejected_total{listener=\"v6\",reason=\"acl\"} 1\n"),
		 "the denied client was not counted as an acl rejection");
	free(out);
	t_expect(&h, !lb_log_wait(&h.lb, "::ffff:", 0), "lb logged a v4-mapped address");
	t_harness_finish(&h);
}
END_TEST

/* The PROXY header of an IPv4 client of a dual-stack listener is TCP4, with the IPv4
 * addresses, as on an IPv4 listener. */
START_TEST(test_dual_stack_ipv4_client_gets_a_tcp4_proxy_header)
{
	static const char payload[] = "hello\n";
	char want[128];
	uint8_t got[TB_RECORD_MAX];
	int fd, n = -1, cport;
	uint64_t deadline;

	start_lb("\"ipv6only\":false,\"proxy_protocol\":\"v1\"", NULL, TB_RECORD);
	unsigned idx = tb_accepted(h.be.tb[0]);
	fd = t_connect_to("127.0.0.5", "127.0.0.1", h.port);
	t_expect(&h, fd >= 0, "connect from 127.0.0.5 failed");
	cport = t_local_port(fd);
	snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.5 127.0.0.1 %d %d\r\n%s", cport, h.port,
		 payload);
	t_expect(&h, t_send_all(fd, payload, strlen(payload)), "send failed");
	deadline = t_now_ms() + REPLY_MS;
	while (t_now_ms() < deadline) {
		n = tb_recorded(h.be.tb[0], idx, got, sizeof(got) - 1);
		if (n >= (int)strlen(want))
			break;
		usleep(10 * 1000);
	}
	got[n > 0 ? n : 0] = '\0';
	t_expect(&h, n == (int)strlen(want) && memcmp(got, want, strlen(want)) == 0,
		 "the backend got \"%s\", expected \"%s\"", (char *)got, want);
	close(fd);
	t_harness_finish(&h);
}
END_TEST

/* "ipv6only" is fixed when the socket is bound: a reload that changes it binds anew. */
START_TEST(test_reload_that_changes_ipv6only_rebinds_the_listener)
{
	json_t *cfg;
	char *out = NULL;

	start_lb(NULL, NULL, TB_TAGGED);
	t_expect(&h, refused("127.0.0.1"), "[::]:%d took an IPv4 client by default", h.port);

	cfg = t_cfg_new(LB_WORKERS);
	t_cfg_set(t_cfg_listener(cfg, "v6", "tcp", "[::]", h.port, "p"), "\"ipv6only\":false");
	t_cfg_backends(t_cfg_pool(cfg, "p", "round_robin", T_HEALTH_NONE), &h.be);
	t_rewrite_config(&h.lb, cfg); /* takes cfg */
	char *err = NULL;
	int rc = t_lbctl(h.sock, &out, &err, "reload", NULL);
	t_expect(&h, rc == 0, "reload failed (%d): %s%s", rc, out ? out : "", err ? err : "");
	free(err);
	t_expect(&h, out && strstr(out, "listeners_added"),
		 "the reload kept the old IPv6-only sockets: %s", out ? out : "");
	free(out);
	t_expect(&h, tagged(NULL, "127.0.0.1"), "no IPv4 client after the reload");
	t_expect(&h, tagged(NULL, "::1"), "no IPv6 client after the reload");
	t_harness_finish(&h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {
	    test_ipv6_wildcard_listener_takes_only_ipv6_clients_by_default,
	    test_dual_stack_listener_takes_ipv4_and_ipv6_clients,
	    test_dual_stack_ipv4_clients_are_ipv4_to_acls_and_the_log,
	    test_dual_stack_ipv4_client_gets_a_tcp4_proxy_header,
	    test_reload_that_changes_ipv6only_rebinds_the_listener,
	    NULL,
	};

	signal(SIGPIPE, SIG_IGN);
	return t_run_suite(t_suite("dual_stack", TEST_TIMEOUT_S, setup, NULL, tests), CK_ENV);
}
