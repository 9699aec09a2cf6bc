/* Unit: the health check modules (health/checks.c) — the registry, the exact bytes each
 * check sends, and each reply parser on good, truncated (need more), oversized and malformed
 * replies, as they arrive from a real server — and the prober (health/prober.c) in-process
 * against loopback listeners, with a concurrent reader of the results (for TSan). */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "health/checks.h"
#include "health/prober.h"
#include "lb/log.h"
#include "support.h"

/* ---- helpers ---- */

static struct cfg_health health(const char *type)
{
	return (struct cfg_health){
	    .type = (char *)type,
	    .interval_ms = 2000,
	    .timeout_ms = 1000,
	    .rise = 2,
	    .fall = 3,
	};
}

static const struct hc_check *check(const char *name)
{
	const struct hc_check *c = hc_find(name);

	ck_assert_msg(c != NULL, "no check module named %s", name);
	ck_assert_str_eq(c->name, name);
	return c;
}

/* Judge len bytes of buf; the reason (if it failed) lands in reason. */
static enum hc_result judge_n(const char *name, const struct cfg_health *h, const void *buf,
			      size_t len, char *reason)
{
	memset(reason, 0, HC_REASON_MAX);
	return hc_judge(check(name), buf, len, h, reason, HC_REASON_MAX);
}

static enum hc_result judge(const char *name, const struct cfg_health *h, const char *reply,
			    char *reason)
{
	return judge_n(name, h, reply, strlen(reply), reason);
}

/* Every proper prefix of a good reply must ask for more, never decide early. */
static void assert_prefixes_need_more(const char *name, const struct cfg_health *h,
				      const uint8_t *buf, size_t len)
{
	char reason[HC_REASON_MAX];

	for (size_t i = 0; i < len; i++)
		ck_assert_msg(judge_n(name, h, buf, i, reason) == HC_NEED_MORE,
			      "%s: %zu of %zu bytes decided early (%s)", name, i, len, reason);
}

/* The request a check sends, NUL-terminated into buf; returns its length. */
static size_t request(const char *name, const struct cfg_health *h, const char *host, uint8_t *buf,
		      size_t len)
{
	const struct hc_check *c = check(name);
	size_t n;

	ck_assert_ptr_nonnull(c->request);
	n = c->request(h, host, NULL, 0);
	ck_assert_uint_lt(n, len);
	ck_assert_uint_eq(c->request(h, host, buf, len), n);
	buf[n] = '\0';
	return n;
}

/* A MySQL 8 initial handshake packet (protocol 10), as the server sends it on connect. */
static size_t mysql_greeting(uint8_t *buf, size_t len)
{
	static const char version[] = "8.0.36";
	static const char plugin[] = "caching_sha2_password";
	uint8_t p[128];
	size_t n = 0;

	p[n++] = 10;
	memcpy(p + n, version, sizeof(version)); /* with its NUL */
	n += sizeof(version);
	memcpy(p + n, "\x2a\x00\x00\x00", 4); /* thread id */
	n += 4;
	memcpy(p + n, "abcdefgh", 8); /* auth-plugin-data part 1 */
	n += 8;
	p[n++] = 0;					      /* filler */
	memcpy(p + n, "\xff\xff\xff\x02\x00\xff\xdf\x15", 8); /* caps, charset, status, caps */
	n += 8;
	memset(p + n, 0, 10); /* reserved */
	n += 10;
	memcpy(p + n, "ijklmnopqrst", 13); /* auth-plugin-data part 2, NUL included */
	n += 13;
	memcpy(p + n, plugin, sizeof(plugin));
	n += sizeof(plugin);
	ck_assert_uint_le(n + 4, len);
	buf[0] = (uint8_t)(n & 0xff);
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = 0;
	buf[3] = 0; /* sequence 0 */
	memcpy(buf + 4, p, n);
	return n + 4;
}

/* ---- registry ---- */

/* Start a prober over the one pool *pool (the prober keeps the pointer); fails the test if
 * it cannot. */
static struct prober *start_prober(struct pool **pool)
{
	struct prober *pr = NULL;
	int rc = prober_start(pool, 1, NULL, NULL, &pr);

	ck_assert_msg(rc == 0, "prober_start: %s", strerror(-rc));
	return pr;
}

START_TEST(test_every_configured_type_has_a_module)
{
	static const char *const stream[] = {"tcp",   "send_expect", "http",
					     "redis", "postgres",    "mysql"};

	for (size_t i = 0; i < sizeof(stream) / sizeof(stream[0]); i++)
		ck_assert_int_eq(check(stream[i])->socktype, SOCK_STREAM);
	ck_assert_int_eq(check("udp")->socktype, SOCK_DGRAM);
	ck_assert_int_eq(check("none")->socktype, 0);
	ck_assert_ptr_eq(hc_find("tcp"), &hc_check_tcp);
	ck_assert_ptr_null(hc_find("icmp"));
	ck_assert_ptr_null(hc_find("TCP"));
	ck_assert_ptr_null(hc_find(""));
	ck_assert_ptr_null(hc_find(NULL));
}
END_TEST

/* The list in config errors comes from the registry: every name in it is a module. */
START_TEST(test_registry_names_list_every_module_in_order)
{
	char names[256], *save = NULL;
	size_t n = 0;

	hc_names(names, sizeof(names));
	ck_assert_str_eq(names, "none, tcp, send_expect, http, udp, redis, postgres, mysql");
	for (char *t = strtok_r(names, ", ", &save); t; t = strtok_r(NULL, ", ", &save), n++)
		check(t);
	ck_assert_uint_eq(n, 8);
	ck_assert(!hc_probes(check("none")));
	ck_assert(hc_probes(check("tcp")));
	ck_assert(hc_probes(check("udp")));
}
END_TEST

/* What each type needs is declared by its module; the config loader only enforces it. */
START_TEST(test_modules_declare_the_options_they_read)
{
	ck_assert_int_eq(check("send_expect")->options[HC_OPT_EXPECT], HC_REQUIRED);
	ck_assert_int_eq(check("send_expect")->options[HC_OPT_SEND], HC_OPTIONAL);
	ck_assert_int_eq(check("udp")->options[HC_OPT_SEND], HC_REQUIRED);
	ck_assert_int_eq(check("udp")->options[HC_OPT_EXPECT], HC_OPTIONAL);
	ck_assert_int_eq(check("http")->options[HC_OPT_PATH], HC_OPTIONAL);
	ck_assert_int_eq(check("http")->options[HC_OPT_EXPECT_STATUS], HC_OPTIONAL);
	ck_assert_int_eq(check("redis")->options[HC_OPT_ROLE], HC_OPTIONAL);
	for (int o = 0; o < HC_NOPTIONS; o++) {
		ck_assert_int_eq(check("tcp")->options[o], HC_REFUSED);
		ck_assert_int_eq(check("redis")->options[o],
				 o == HC_OPT_ROLE ? HC_OPTIONAL : HC_REFUSED);
		ck_assert_int_eq(check("none")->options[o], HC_REFUSED);
	}
}
END_TEST

START_TEST(test_tcp_passes_on_connect_alone)
{
	struct cfg_health h = health("tcp");
	char reason[HC_REASON_MAX];

	ck_assert_ptr_null(hc_check_tcp.request);
	ck_assert_ptr_null(hc_check_tcp.parse);
	ck_assert_int_eq(judge_n("tcp", &h, "", 0, reason), HC_PASS);
}
END_TEST

/* ---- send_expect ---- */

START_TEST(test_send_expect_sends_send_and_finds_expect_anywhere)
{
	struct cfg_health h = health("send_expect");
	char reason[HC_REASON_MAX];
	uint8_t req[64];

	h.send = "HELLO\r\n";
	h.send_len = strlen(h.send);
	h.expect = "READY";
	h.expect_len = strlen(h.expect);
	ck_assert_uint_eq(request("send_expect", &h, "db:1", req, sizeof(req)), 7);
	ck_assert_str_eq((char *)req, "HELLO\r\n");
	ck_assert_int_eq(judge("send_expect", &h, "READY", reason), HC_PASS);
	ck_assert_int_eq(judge("send_expect", &h, "banner\r\nstatus: READY\r\n", reason), HC_PASS);
	/* binary bytes before the text do not hide it */
	ck_assert_int_eq(judge_n("send_expect", &h, "\0\x01READY", 7, reason), HC_PASS);
}
END_TEST

START_TEST(test_send_expect_waits_for_a_truncated_match)
{
	struct cfg_health h = health("send_expect");
	char reason[HC_REASON_MAX];

	h.expect = "READY";
	h.expect_len = strlen(h.expect);
	ck_assert_int_eq(judge("send_expect", &h, "", reason), HC_NEED_MORE);
	ck_assert_int_eq(judge("send_expect", &h, "status: REA", reason), HC_NEED_MORE);
	ck_assert_int_eq(judge("send_expect", &h, "NOT-READ", reason), HC_NEED_MORE);
}
END_TEST

START_TEST(test_send_expect_fails_when_the_reply_grows_past_the_limit)
{
	struct cfg_health h = health("send_expect");
	char reason[HC_REASON_MAX];
	uint8_t *big = malloc(HC_REPLY_MAX);

	h.expect = "READY";
	h.expect_len = strlen(h.expect);
	memset(big, 'x', HC_REPLY_MAX);
	ck_assert_int_eq(judge_n("send_expect", &h, big, HC_REPLY_MAX - 1, reason), HC_NEED_MORE);
	ck_assert_int_eq(judge_n("send_expect", &h, big, HC_REPLY_MAX, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: no verdict in 4096 bytes");
	memcpy(big + HC_REPLY_MAX - 5, "READY", 5); /* found in the last bytes allowed */
	ck_assert_int_eq(judge_n("send_expect", &h, big, HC_REPLY_MAX, reason), HC_PASS);
	free(big);
}
END_TEST

/* ---- http ---- */

START_TEST(test_http_request_is_a_closing_http10_get)
{
	struct cfg_health h = health("http");
	uint8_t req[256];

	h.path = "/healthz?full=1";
	request("http", &h, "web1.internal:8080", req, sizeof(req));
	ck_assert_str_eq((char *)req, "GET /healthz?full=1 HTTP/1.0\r\n"
				      "Host: web1.internal:8080\r\n"
				      "User-Agent: lb-health\r\n"
				      "Connection: close\r\n"
				      "\r\n");
	h.path = NULL; /* default path */
	request("http", &h, "10.0.0.1:80", req, sizeof(req));
	ck_assert_msg(strncmp((char *)req, "GET / HTTP/1.0\r\n", 16) == 0, "got %s", req);
}
END_TEST

START_TEST(test_http_2xx_and_3xx_pass_by_default)
{
	struct cfg_health h = health("http");
	char reason[HC_REASON_MAX];

	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 200 OK\r\n", reason), HC_PASS);
	ck_assert_int_eq(judge("http", &h, "HTTP/1.0 204 No Content\r\nServer: x\r\n\r\n", reason),
			 HC_PASS);
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 301 Moved Permanently\r\n", reason), HC_PASS);
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 399 Odd\n", reason), HC_PASS);
	/* the reason phrase is optional */
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 200\r\n", reason), HC_PASS);
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 200 \r\n", reason), HC_PASS);
}
END_TEST

START_TEST(test_http_other_statuses_fail_with_the_status_as_reason)
{
	struct cfg_health h = health("http");
	char reason[HC_REASON_MAX];

	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 503 Service Unavailable\r\n", reason),
			 HC_FAIL);
	ck_assert_str_eq(reason, "status 503");
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 404 Not Found\r\n", reason), HC_FAIL);
	ck_assert_str_eq(reason, "status 404");
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 199 Early\r\n", reason), HC_FAIL);
	ck_assert_str_eq(reason, "status 199");
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 400 Bad Request\r\n", reason), HC_FAIL);
	ck_assert_str_eq(reason, "status 400");
}
END_TEST

START_TEST(test_http_expect_status_must_match_exactly)
{
	struct cfg_health h = health("http");
	char reason[HC_REASON_MAX];

	h.expect_status = 418;
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 418 I'm a teapot\r\n", reason), HC_PASS);
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 200 OK\r\n", reason), HC_FAIL);
	ck_assert_str_eq(reason, "status 200");
	h.expect_status = 503; /* e.g. a standby that must answer 503 */
	ck_assert_int_eq(judge("http", &h, "HTTP/1.1 503 Standby\r\n", reason), HC_PASS);
}
END_TEST

START_TEST(test_http_truncated_status_line_needs_more)
{
	struct cfg_health h = health("http");
	static const char ok[] = "HTTP/1.1 200 OK\r\n";

	assert_prefixes_need_more("http", &h, (const uint8_t *)ok, strlen(ok) - 1);
}
END_TEST

START_TEST(test_http_malformed_status_lines_fail_as_bad_reply)
{
	static const char *const bad[] = {
	    "SSH-2.0-OpenSSH_9.6\r\n", "HTTP/1.1 2x0 OK\r\n",
	    "HTTP/1.1 20\r\n",	       "HTTP/1.1  200 OK\r\n",
	    "HTTP/x.1 200 OK\r\n",     "HTTP/1.1 600 Odd\r\n",
	    "HTTP/1.1 099 Odd\r\n",    "HTTP/1.1 2000 OK\r\n",
	    "http/1.1 200 OK\r\n",     "+PONG\r\n",
	};
	struct cfg_health h = health("http");
	char reason[HC_REASON_MAX];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(judge("http", &h, bad[i], reason) == HC_FAIL, "passed: %s", bad[i]);
		ck_assert_msg(strncmp(reason, "bad reply: ", 11) == 0, "%s -> reason %s", bad[i],
			      reason);
	}
	/* a non-HTTP answer fails on its first bytes, without waiting for a line */
	ck_assert_int_eq(judge("http", &h, "SSH", reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: \"SSH\"");
}
END_TEST

START_TEST(test_http_oversized_status_line_fails)
{
	struct cfg_health h = health("http");
	char reason[HC_REASON_MAX];
	char *line = malloc(HC_REPLY_MAX + 1);

	memset(line, 'a', HC_REPLY_MAX);
	memcpy(line, "HTTP/1.1 200 ", 13);
	line[HC_REPLY_MAX] = '\0';
	ck_assert_int_eq(judge_n("http", &h, line, 300, reason), HC_NEED_MORE);
	ck_assert_int_eq(judge_n("http", &h, line, 512, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: status line longer than 512 bytes");
	ck_assert_int_eq(judge("http", &h, line, reason), HC_FAIL);
	free(line);
}
END_TEST

/* ---- udp ---- */

START_TEST(test_udp_reply_must_contain_expect)
{
	struct cfg_health h = health("udp");
	char reason[HC_REASON_MAX];
	uint8_t req[64];

	h.send = "ping";
	h.send_len = strlen(h.send);
	h.expect = "pong";
	h.expect_len = strlen(h.expect);
	ck_assert_uint_eq(request("udp", &h, "10.0.0.1:53", req, sizeof(req)), 4);
	ck_assert_str_eq((char *)req, "ping");
	ck_assert_int_eq(judge("udp", &h, "pong", reason), HC_PASS);
	ck_assert_int_eq(judge("udp", &h, "1 pong 2", reason), HC_PASS);
	/* a datagram is whole: a partial match is a failure, not "more to come" */
	ck_assert_int_eq(judge("udp", &h, "pon", reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: \"pon\"");
	ck_assert_int_eq(judge("udp", &h, "ping", reason), HC_FAIL);
	ck_assert_int_eq(judge_n("udp", &h, "", 0, reason), HC_FAIL);
}
END_TEST

START_TEST(test_udp_empty_expect_takes_any_reply)
{
	struct cfg_health h = health("udp");
	char reason[HC_REASON_MAX];

	h.send = "ping";
	h.send_len = strlen(h.send);
	ck_assert_int_eq(judge("udp", &h, "anything", reason), HC_PASS);
	ck_assert_int_eq(judge_n("udp", &h, "", 0, reason), HC_PASS); /* an empty datagram */
	h.expect = "";
	h.expect_len = strlen(h.expect);
	ck_assert_int_eq(judge_n("udp", &h, "\xff", 1, reason), HC_PASS);
}
END_TEST

/* ---- redis ---- */

START_TEST(test_redis_ping_is_answered_pong)
{
	struct cfg_health h = health("redis");
	char reason[HC_REASON_MAX];
	uint8_t req[16];

	ck_assert_uint_eq(request("redis", &h, "cache:6379", req, sizeof(req)), 6);
	ck_assert_str_eq((char *)req, "PING\r\n");
	ck_assert_int_eq(judge("redis", &h, "+PONG\r\n", reason), HC_PASS);
	assert_prefixes_need_more("redis", &h, (const uint8_t *)"+PONG\r\n", 7);
}
END_TEST

START_TEST(test_redis_error_and_echo_replies_fail)
{
	struct cfg_health h = health("redis");
	char reason[HC_REASON_MAX];

	ck_assert_int_eq(judge("redis", &h, "-NOAUTH Authentication required.\r\n", reason),
			 HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: \"-NOAUTH Authentication required.\"");
	ck_assert_int_eq(judge("redis", &h, "-LOADING", reason), HC_FAIL);
	ck_assert_int_eq(judge("redis", &h, "PING\r\n", reason), HC_FAIL); /* an echo server */
	ck_assert_str_eq(reason, "bad reply: \"PING\"");
	ck_assert_int_eq(judge("redis", &h, "+PONX\r\n", reason), HC_FAIL);
	ck_assert_int_eq(judge("redis", &h, "+pong\r\n", reason), HC_FAIL);
}
END_TEST

START_TEST(test_redis_bytes_after_pong_fail)
{
	struct cfg_health h = health("redis");
	char reason[HC_REASON_MAX];

	ck_assert_int_eq(judge("redis", &h, "+PONG\r\n+PONG\r\n", reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: 7 bytes after +PONG");
}
END_TEST

/* "role": INFO replication, and the role: line decides. */
START_TEST(test_redis_role_reads_info_replication)
{
	static const char master[] = "$68\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
				     "master_repl_offset:0\r\n";
	static const char replica[] = "$42\r\n# Replication\r\nrole:slave\r\nmaster_link:1\r\n\r\n";
	struct cfg_health h = health("redis");
	char reason[HC_REASON_MAX], buf[256];
	uint8_t req[32];

	h.role = CFG_ROLE_MASTER;
	ck_assert_uint_eq(request("redis", &h, "cache:6379", req, sizeof(req)), 18);
	ck_assert_str_eq((char *)req, "INFO replication\r\n");
	/* the bulk lengths above, checked: a wrong one would leave the judge waiting */
	ck_assert_uint_eq(strlen(master), 5 + 68 + 2);
	ck_assert_uint_eq(strlen(replica), 5 + 42 + 2);
	ck_assert_int_eq(judge("redis", &h, master, reason), HC_PASS);
	assert_prefixes_need_more("redis", &h, (const uint8_t *)master, strlen(master));
	ck_assert_int_eq(judge("redis", &h, replica, reason), HC_FAIL);
	ck_assert_str_eq(reason, "role slave, not master");
	h.role = CFG_ROLE_SLAVE;
	ck_assert_int_eq(judge("redis", &h, replica, reason), HC_PASS);
	ck_assert_int_eq(judge("redis", &h, master, reason), HC_FAIL);
	ck_assert_str_eq(reason, "role master, not slave");
	ck_assert_int_eq(judge("redis", &h, "-NOAUTH Authentication required.\r\n", reason),
			 HC_FAIL);
	ck_assert_int_eq(judge("redis", &h, "+PONG\r\n", reason), HC_FAIL);
	ck_assert_int_eq(judge("redis", &h, "$x\r\n", reason), HC_FAIL);
	snprintf(buf, sizeof(buf), "$10\r\n# Replicat\r\n");
	ck_assert_int_eq(judge("redis", &h, buf, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: no role: line in INFO replication");
}
END_TEST

/* ---- postgres ---- */

START_TEST(test_postgres_sends_the_exact_ssl_request)
{
	struct cfg_health h = health("postgres");
	uint8_t req[16];
	uint32_t length, code;

	ck_assert_uint_eq(request("postgres", &h, "pg:5432", req, sizeof(req)), 8);
	length = (uint32_t)req[0] << 24 | (uint32_t)req[1] << 16 | (uint32_t)req[2] << 8 | req[3];
	code = (uint32_t)req[4] << 24 | (uint32_t)req[5] << 16 | (uint32_t)req[6] << 8 | req[7];
	ck_assert_uint_eq(length, 8);
	ck_assert_uint_eq(code, 80877103); /* 1234 << 16 | 5679 */
	ck_assert_int_eq(memcmp(req, "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8), 0);
}
END_TEST

START_TEST(test_postgres_single_s_or_n_passes)
{
	struct cfg_health h = health("postgres");
	char reason[HC_REASON_MAX];

	ck_assert_int_eq(judge("postgres", &h, "S", reason), HC_PASS);
	ck_assert_int_eq(judge("postgres", &h, "N", reason), HC_PASS);
	ck_assert_int_eq(judge_n("postgres", &h, "", 0, reason), HC_NEED_MORE);
}
END_TEST

START_TEST(test_postgres_other_replies_fail)
{
	struct cfg_health h = health("postgres");
	char reason[HC_REASON_MAX];

	/* an echo server sends our own SSLRequest back */
	ck_assert_int_eq(judge_n("postgres", &h, "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, reason),
			 HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: \"\\x00\\x00\\x00\\x08\\x04\\xd2\\x16/\"");
	ck_assert_int_eq(judge_n("postgres", &h, "\x00", 1, reason), HC_FAIL);
	ck_assert_int_eq(judge("postgres", &h, "EFATAL", reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: error response to SSLRequest");
	ck_assert_int_eq(judge("postgres", &h, "s", reason), HC_FAIL);
	ck_assert_int_eq(judge("postgres", &h, "NX", reason), HC_FAIL); /* oversized */
	ck_assert_str_eq(reason, "bad reply: 1 bytes after 'N'");
}
END_TEST

/* ---- mysql ---- */

START_TEST(test_mysql_greeting_passes_and_sends_nothing)
{
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t g[256];
	size_t n = mysql_greeting(g, sizeof(g));

	/* the server speaks first; without a user lb only reads its greeting */
	ck_assert_uint_eq(check("mysql")->request(&h, "db:3306", NULL, 0), 0);
	ck_assert_int_eq(judge_n("mysql", &h, g, n, reason), HC_PASS);
}
END_TEST

START_TEST(test_mysql_truncated_greeting_needs_more)
{
	struct cfg_health h = health("mysql");
	uint8_t g[256];
	size_t n = mysql_greeting(g, sizeof(g));

	assert_prefixes_need_more("mysql", &h, g, n);
}
END_TEST

START_TEST(test_mysql_malformed_greetings_fail)
{
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t g[256], b[256];
	size_t n = mysql_greeting(g, sizeof(g));

	memcpy(b, g, n);
	b[4] = 9; /* protocol 9 (MySQL 3.x) */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: protocol version 9, expected 10");
	memcpy(b, g, n);
	b[3] = 1; /* not the first packet */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: sequence 1, expected 0");
	memcpy(b, g, n);
	memset(b + 5, 'x', n - 5); /* server version never terminated */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: greeting without a server version");
	ck_assert_int_eq(judge("mysql", &h, "hello world\n", reason), HC_FAIL); /* garbage */
	ck_assert_str_eq(reason, "bad reply: packet length 7103848 is no greeting");
	ck_assert_int_eq(judge_n("mysql", &h, "\0\0\0\0", 4, reason), HC_FAIL);
}
END_TEST

START_TEST(test_mysql_oversized_greetings_fail)
{
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t g[256];
	size_t n = mysql_greeting(g, sizeof(g));

	/* a declared length no greeting has */
	ck_assert_int_eq(judge_n("mysql", &h, "\x01\x04\x00\x00\x0a", 5, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: packet length 1025 is no greeting");
	/* bytes beyond the packet: the server sends nothing after its greeting */
	g[n] = 'x';
	ck_assert_int_eq(judge_n("mysql", &h, g, n + 1, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: 1 bytes after the greeting");
}
END_TEST

START_TEST(test_mysql_error_packet_fails_with_its_message)
{
	static const char msg[] = "Too many connections";
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t b[64];
	size_t plen = 3 + sizeof(msg) - 1;

	b[0] = (uint8_t)plen;
	b[1] = b[2] = b[3] = 0;
	b[4] = 0xff;
	b[5] = 0x10; /* 1040, ER_CON_COUNT_ERROR */
	b[6] = 0x04;
	memcpy(b + 7, msg, sizeof(msg) - 1);
	ck_assert_int_eq(judge_n("mysql", &h, b, 4 + plen - 1, reason), HC_NEED_MORE);
	ck_assert_int_eq(judge_n("mysql", &h, b, 4 + plen, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: \"Too many connections\"");
}
END_TEST

/* A greeting followed by the server's answer to the login: a packet of sequence 2. */
static size_t mysql_greeting_and(uint8_t *buf, size_t len, const void *payload, size_t plen)
{
	size_t n = mysql_greeting(buf, len);

	ck_assert_uint_le(n + 4 + plen, len);
	buf[n] = (uint8_t)plen;
	buf[n + 1] = buf[n + 2] = 0;
	buf[n + 3] = 2;
	memcpy(buf + n + 4, payload, plen);
	return n + 4 + plen;
}

/* OK: header 0x00, affected rows 0, last insert id 0, status SERVER_STATUS_AUTOCOMMIT,
 * 0 warnings, as MariaDB answers a login. */
static const uint8_t mysql_ok[] = {0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00};

START_TEST(test_mysql_user_request_is_a_login_without_password_then_quit)
{
	static const uint8_t want[] = {
	    /* HandshakeResponse41: 41-byte payload, sequence 1 */
	    0x29, 0x00, 0x00, 0x01,
	    /* CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION */
	    0x00, 0x82, 0x00, 0x00,
	    /* max packet 16 MiB, charset 33 (utf8_general_ci), 23 reserved zero bytes */
	    0x00, 0x00, 0x00, 0x01, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 0,
	    /* "lbcheck\0", then an auth response of length 0 */
	    'l', 'b', 'c', 'h', 'e', 'c', 'k', 0x00, 0x00,
	    /* COM_QUIT: 1-byte payload, sequence 0 */
	    0x01, 0x00, 0x00, 0x00, 0x01};
	struct cfg_health h = health("mysql");
	uint8_t buf[128];
	size_t n;

	h.user = "lbcheck";
	n = request("mysql", &h, "db:3306", buf, sizeof(buf));
	ck_assert_uint_eq(n, sizeof(want));
	ck_assert_mem_eq(buf, want, sizeof(want));
	/* the longest name the config allows fits */
	h.user = "abcdefghijklmnopqrstuvwxyz012345";
	n = request("mysql", &h, "db:3306", buf, sizeof(buf));
	ck_assert_uint_eq(n, sizeof(want) - 7 + 32);
	ck_assert_uint_eq(buf[0], 0x29 - 7 + 32);
	ck_assert_mem_eq(buf + 36, h.user, 33);
}
END_TEST

START_TEST(test_mysql_user_passes_on_ok_after_the_greeting_only)
{
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t b[256];
	size_t n = mysql_greeting_and(b, sizeof(b), mysql_ok, sizeof(mysql_ok));

	h.user = "lbcheck";
	/* the greeting alone is not enough with a user: the login must succeed */
	assert_prefixes_need_more("mysql", &h, b, n);
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_PASS);
	b[n] = 0;
	ck_assert_int_eq(judge_n("mysql", &h, b, n + 1, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: 1 bytes after the OK packet");
}
END_TEST

START_TEST(test_mysql_user_error_fails_with_the_server_message)
{
	static const char err[] = "\xff\x15\x04#28000Access denied for user 'nobody'@'localhost'";
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t b[256];
	size_t n = mysql_greeting_and(b, sizeof(b), err, sizeof(err) - 1);

	h.user = "nobody";
	ck_assert_int_eq(judge_n("mysql", &h, b, n - 1, reason), HC_NEED_MORE);
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "error 1045: Access denied for user 'nobody'@'localhost'");
	/* an ERR packet without the SQLSTATE marker (pre-4.1 style) still shows its message */
	n = mysql_greeting_and(b, sizeof(b), "\xff\x15\x04no\n", 6);
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "error 1045: no\\x0a");
}
END_TEST

START_TEST(test_mysql_user_odd_login_replies_fail)
{
	static const char sw[] = "\xfe"
				 "caching_sha2_password\0"
				 "12345678901234567890";
	struct cfg_health h = health("mysql");
	char reason[HC_REASON_MAX];
	uint8_t b[256];
	size_t n, g;

	h.user = "lbcheck";
	n = mysql_greeting_and(b, sizeof(b), sw, sizeof(sw) - 1);
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(
	    reason, "auth switch to caching_sha2_password: not supported (no password expected)");
	n = mysql_greeting_and(b, sizeof(b), mysql_ok, sizeof(mysql_ok));
	g = n - 4 - sizeof(mysql_ok);
	b[g + 3] = 1; /* sequence 1: not an answer to our response */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: sequence 1, expected 2");
	b[g + 3] = 2;
	b[g + 4] = 'x'; /* neither OK, ERR nor auth switch */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	b[g + 4] = 0;
	b[g] = b[g + 1] = 0xff; /* 65535-byte payload */
	ck_assert_int_eq(judge_n("mysql", &h, b, n, reason), HC_FAIL);
	ck_assert_str_eq(reason, "bad reply: packet length 65535 is no login reply");
}
END_TEST

/* ---- shared ---- */

START_TEST(test_bad_reply_reason_is_escaped_and_cut)
{
	char reason[HC_REASON_MAX];
	char long_line[200];

	hc_bad_reply(reason, sizeof(reason), (const uint8_t *)"a\"b\\c\x01", 6);
	ck_assert_str_eq(reason, "bad reply: \"a\\x22b\\x5cc\\x01\"");
	memset(long_line, 'z', sizeof(long_line));
	hc_bad_reply(reason, sizeof(reason), (const uint8_t *)long_line, sizeof(long_line));
	ck_assert_str_eq(reason, "bad reply: \"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz...\"");
	/* a tiny buffer still ends in a NUL */
	hc_bad_reply(reason, 8, (const uint8_t *)long_line, sizeof(long_line));
	ck_assert_uint_lt(strlen(reason), 8);
	/* the first line only; a leading newline is shown, not taken as the end */
	hc_bad_reply(reason, sizeof(reason), (const uint8_t *)"\nERR x\r\nmore", 12);
	ck_assert_str_eq(reason, "bad reply: \"\\x0aERR x\"");
}
END_TEST

/* ---- the prober, in-process ---- */

/* A loopback TCP listener that the kernel completes connects on (no accept needed). */
static int listener(int *port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;

	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)*port);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 128), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A one-backend pool at 127.0.0.1:port with fast checks of the given type. */
static struct pool *one_backend_pool(const char *type, int port)
{
	char address[32];
	const char *why = "";
	struct cfg_backend cb = {.name = "b1", .address = address, .weight = 1};
	struct cfg_pool cp = {
	    .name = "p",
	    .algorithm = "round_robin",
	    .health = health(type),
	    .backends = &cb,
	    .nbackends = 1,
	};
	struct pool *p;

	cp.health.interval_ms = 20;
	cp.health.timeout_ms = 200;
	cp.health.rise = 2;
	cp.health.fall = 2;
	snprintf(address, sizeof(address), "127.0.0.1:%d", port);
	ck_assert_int_eq(addr_parse_numeric(address, &cb.addr, &why), 0);
	p = pool_create(&cp);
	ck_assert_ptr_nonnull(p);
	return p;
}

static bool wait_health(struct backend *b, int want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 5) {
		if (atomic_load(&b->health) == want)
			return true;
		usleep(5000);
	}
	return atomic_load(&b->health) == want;
}

/* Reads the results the whole time the prober writes them, as the control plane will. */
struct reader {
	struct backend *b;
	_Atomic bool stop;
	unsigned torn; /* results that mixed a pass with a failure reason */
	pthread_t thread;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct prober_check c;

	while (!atomic_load(&r->stop)) {
		prober_last_check(r->b, &c);
		if (c.last == PROBER_LAST_PASS && c.reason[0])
			r->torn++;
		if (c.last == PROBER_LAST_FAIL && !c.reason[0])
			r->torn++;
	}
	return NULL;
}

START_TEST(test_prober_marks_down_and_up_and_records_results)
{
	int port = 0, lfd = listener(&port);
	struct pool *pool = one_backend_pool("tcp", port);
	struct backend *b = pool->backends[0];
	struct reader r = {.b = b};
	struct prober *pr;
	struct prober_check c;

	ck_assert_int_eq(atomic_load(&b->health), BACKEND_UNKNOWN);
	ck_assert_int_eq(pthread_create(&r.thread, NULL, reader_main, &r), 0);
	pr = start_prober(&pool);
	ck_assert_ptr_nonnull(pr);
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "never up against a listener");
	prober_last_check(b, &c);
	ck_assert_int_eq(c.last, PROBER_LAST_PASS);
	ck_assert_str_eq(c.reason, "");
	ck_assert_uint_ge(c.checks, 1);

	close(lfd); /* connects are refused from now on */
	ck_assert_msg(wait_health(b, BACKEND_DOWN, 2000), "never down with the listener closed");
	prober_last_check(b, &c);
	ck_assert_int_eq(c.last, PROBER_LAST_FAIL);
	ck_assert_str_eq(c.reason, "connection refused");

	lfd = listener(&port); /* same port again */
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "never back up");
	prober_stop(pr);
	atomic_store(&r.stop, true);
	pthread_join(r.thread, NULL);
	ck_assert_uint_eq(r.torn, 0);
	close(lfd);
	pool_destroy(pool);
}
END_TEST

START_TEST(test_prober_passive_failures_mark_down_and_tcp_probes_recover)
{
	int port = 0, lfd = listener(&port);
	struct pool *pool = one_backend_pool("none", port);
	struct backend *b = pool->backends[0];
	struct prober *pr = start_prober(&pool);

	ck_assert_ptr_nonnull(pr);
	ck_assert_int_eq(atomic_load(&b->health), BACKEND_UP);
	usleep(100 * 1000);
	ck_assert_uint_eq(atomic_load(&b->hc_checks), 0); /* type none probes nothing */
	atomic_store(&b->fail_streak, 2);		  /* what the data plane counts */
	ck_assert_msg(wait_health(b, BACKEND_DOWN, 1000), "passive failures ignored");
	/* the listener still accepts, so the recovery probes pass rise times */
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "recovery probes never brought it up");
	ck_assert_int_eq(atomic_load(&b->fail_streak), 0);
	ck_assert_uint_ge(atomic_load(&b->hc_checks), 2);
	prober_stop(pr);
	close(lfd);
	pool_destroy(pool);
}
END_TEST

static bool wait_checks(struct backend *b, uint64_t want, int timeout_ms)
{
	for (int waited = 0; waited < timeout_ms; waited += 5) {
		if (atomic_load(&b->hc_checks) >= want)
			return true;
		usleep(5000);
	}
	return atomic_load(&b->hc_checks) >= want;
}

START_TEST(test_prober_sends_the_whole_request_on_a_new_connection_every_check)
{
	struct tbackend *tb = tb_start("127.0.0.1:0", TB_RECORD, "rec"); /* echoes it back */
	struct pool *pool = one_backend_pool("http", tb_port(tb));
	struct backend *b = pool->backends[0];
	uint8_t want[256], got[TB_RECORD_MAX];
	size_t wlen = check("http")->request(&pool->health, b->address, want, sizeof(want));
	struct prober *pr = start_prober(&pool);
	struct prober_check c;

	ck_assert_ptr_nonnull(pr);
	ck_assert_msg(wait_checks(b, 3, 2000), "fewer than 3 checks in 2 s");
	prober_stop(pr);
	/* the prober keeps its tcp socket between checks, yet each check is a new connection */
	ck_assert_uint_ge(tb_accepted(tb), 3);
	for (unsigned i = 0; i < 3; i++) {
		int n = tb_recorded(tb, i, got, sizeof(got));

		ck_assert_int_eq(n, (int)wlen);
		ck_assert_mem_eq(got, want, wlen);
	}
	prober_last_check(b, &c);
	ck_assert_int_eq(c.last, PROBER_LAST_FAIL); /* an echo is no HTTP server */
	ck_assert_str_eq(c.reason, "bad reply: \"GET / HTTP/1.0\"");
	ck_assert_int_eq(atomic_load(&b->health), BACKEND_DOWN);
	tb_free(tb);
	pool_destroy(pool);
}
END_TEST

START_TEST(test_prober_http_check_follows_a_backend_that_stops_and_restarts)
{
	struct tbackend *tb = tb_start("127.0.0.1:0", TB_HTTP, "web");
	struct pool *pool = one_backend_pool("http", tb_port(tb));
	struct backend *b = pool->backends[0];
	struct prober *pr = start_prober(&pool);
	struct prober_check c;

	ck_assert_ptr_nonnull(pr);
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "never up against an HTTP server");
	tb_stop(tb); /* the request is sent without waiting for the connect: refused must show */
	ck_assert_msg(wait_health(b, BACKEND_DOWN, 2000), "never down with the server stopped");
	prober_last_check(b, &c);
	ck_assert_str_eq(c.reason, "connection refused");
	ck_assert_int_eq(tb_restart(tb), 0);
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "never back up");
	prober_last_check(b, &c);
	ck_assert_int_eq(c.last, PROBER_LAST_PASS);
	prober_stop(pr);
	tb_free(tb);
	pool_destroy(pool);
}
END_TEST

/* A restart (reload, lbctl add/remove) must not push a kept backend's next check back. */
START_TEST(test_prober_restart_keeps_each_backends_beat)
{
	const int interval = 1000;
	int port = 0, lfd = listener(&port);
	struct pool *pool = one_backend_pool("tcp", port);
	struct backend *b = pool->backends[0];
	struct prober *pr;
	uint64_t first, second;

	pool->health.interval_ms = interval;
	pr = start_prober(&pool);
	struct prober_check c1, c2;

	ck_assert_msg(wait_checks(b, 1, 2 * interval), "no first check");
	first = t_now_ms();
	prober_last_check(b, &c1);
	for (int i = 0; i < 3; i++) { /* restarted three times within the interval */
		prober_stop(pr);
		pr = start_prober(&pool);
		ck_assert_ptr_nonnull(pr);
		if (i < 2)
			usleep(interval / 4 * 1000);
	}
	ck_assert_msg(wait_checks(b, 2, 2 * interval), "no second check");
	second = t_now_ms();
	prober_last_check(b, &c2);
	ck_assert_uint_eq(atomic_load(&b->hc_checks), 2);
	/* The checks' starts one interval apart (a new random start would land anywhere from
	 * the restart on). Seen from here each check ends a connect later, which on a loaded
	 * machine can take a while: compare when they began. */
	first -= c1.latency_us / 1000;
	second -= c2.latency_us / 1000;
	ck_assert_msg(second - first >= (uint64_t)interval - 100 &&
			  second - first <= (uint64_t)interval + 300,
		      "checks began %llu ms apart (latencies %u and %u us)",
		      (unsigned long long)(second - first), c1.latency_us, c2.latency_us);
	prober_stop(pr);
	close(lfd);
	pool_destroy(pool);
}
END_TEST

START_TEST(test_prober_restart_keeps_probing_a_backend_passive_checks_took_down)
{
	int port = 0, lfd = listener(&port);
	struct pool *pool = one_backend_pool("none", port);
	struct backend *b = pool->backends[0];
	struct prober *pr = start_prober(&pool);

	ck_assert_ptr_nonnull(pr);
	close(lfd); /* the recovery probes fail from now on */
	atomic_store(&b->fail_streak, 2);
	ck_assert_msg(wait_health(b, BACKEND_DOWN, 1000), "passive failures ignored");
	prober_stop(pr);
	pr = start_prober(&pool);
	ck_assert_ptr_nonnull(pr);
	lfd = listener(&port); /* same port again */
	ck_assert_msg(wait_health(b, BACKEND_UP, 2000), "the restarted prober left it down");
	prober_stop(pr);
	close(lfd);
	pool_destroy(pool);
}
END_TEST

START_TEST(test_prober_rejects_an_unknown_check_type)
{
	struct pool *pool = one_backend_pool("tcp", 9);

	free(pool->health.type);
	pool->health.type = strdup("icmp");
	struct prober *pr = NULL;
	ck_assert_int_eq(prober_start(&pool, 1, NULL, NULL, &pr), -EINVAL);
	ck_assert_ptr_null(pr);
	prober_stop(NULL); /* a no-op */
	pool_destroy(pool);
}
END_TEST

static Suite *checks_suite(void)
{
	Suite *s = suite_create("checks");
	TCase *tc = tcase_create("checks");

	tcase_add_test(tc, test_every_configured_type_has_a_module);
	tcase_add_test(tc, test_registry_names_list_every_module_in_order);
	tcase_add_test(tc, test_modules_declare_the_options_they_read);
	tcase_add_test(tc, test_tcp_passes_on_connect_alone);
	tcase_add_test(tc, test_send_expect_sends_send_and_finds_expect_anywhere);
	tcase_add_test(tc, test_send_expect_waits_for_a_truncated_match);
	tcase_add_test(tc, test_send_expect_fails_when_the_reply_grows_past_the_limit);
	tcase_add_test(tc, test_http_request_is_a_closing_http10_get);
	tcase_add_test(tc, test_http_2xx_and_3xx_pass_by_default);
	tcase_add_test(tc, test_http_other_statuses_fail_with_the_status_as_reason);
	tcase_add_test(tc, test_http_expect_status_must_match_exactly);
	tcase_add_test(tc, test_http_truncated_status_line_needs_more);
	tcase_add_test(tc, test_http_malformed_status_lines_fail_as_bad_reply);
	tcase_add_test(tc, test_http_oversized_status_line_fails);
	tcase_add_test(tc, test_udp_reply_must_contain_expect);
	tcase_add_test(tc, test_udp_empty_expect_takes_any_reply);
	tcase_add_test(tc, test_redis_ping_is_answered_pong);
	tcase_add_test(tc, test_redis_role_reads_info_replication);
	tcase_add_test(tc, test_redis_error_and_echo_replies_fail);
	tcase_add_test(tc, test_redis_bytes_after_pong_fail);
	tcase_add_test(tc, test_postgres_sends_the_exact_ssl_request);
	tcase_add_test(tc, test_postgres_single_s_or_n_passes);
	tcase_add_test(tc, test_postgres_other_replies_fail);
	tcase_add_test(tc, test_mysql_greeting_passes_and_sends_nothing);
	tcase_add_test(tc, test_mysql_truncated_greeting_needs_more);
	tcase_add_test(tc, test_mysql_malformed_greetings_fail);
	tcase_add_test(tc, test_mysql_oversized_greetings_fail);
	tcase_add_test(tc, test_mysql_error_packet_fails_with_its_message);
	tcase_add_test(tc, test_mysql_user_request_is_a_login_without_password_then_quit);
	tcase_add_test(tc, test_mysql_user_passes_on_ok_after_the_greeting_only);
	tcase_add_test(tc, test_mysql_user_error_fails_with_the_server_message);
	tcase_add_test(tc, test_mysql_user_odd_login_replies_fail);
	tcase_add_test(tc, test_bad_reply_reason_is_escaped_and_cut);
	suite_add_tcase(s, tc);

	tc = tcase_create("prober");
	tcase_add_test(tc, test_prober_marks_down_and_up_and_records_results);
	tcase_add_test(tc, test_prober_passive_failures_mark_down_and_tcp_probes_recover);
	tcase_add_test(tc, test_prober_sends_the_whole_request_on_a_new_connection_every_check);
	tcase_add_test(tc, test_prober_http_check_follows_a_backend_that_stops_and_restarts);
	tcase_add_test(tc, test_prober_restart_keeps_each_backends_beat);
	tcase_add_test(tc, test_prober_restart_keeps_probing_a_backend_passive_checks_took_down);
	tcase_add_test(tc, test_prober_rejects_an_unknown_check_type);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_setup(LOG_ERROR, 0); /* the prober's transition lines are not this suite's output */
	return t_run_suite(checks_suite(), CK_ENV);
}
