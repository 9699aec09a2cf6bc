/* Integration: PROXY protocol in (listener accept_proxy). The header an upstream balancer
 * sends names the real client: lb uses it for allow/deny and passes it on in the PROXY
 * header it sends the backend (proxy_protocol), and relays the payload that came in the
 * same packet intact. Malformed, truncated, oversized, slow and wrong-version headers close
 * the connection with a log line, and no backend sees it. */
#include <arpa/inet.h>
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lb/addr.h"
#include "support.h"

#define REPLY_MS  2000
#define HEADER_MS 300 /* the listeners' timeouts.connect: how long a header may take */

static struct t_harness h;
static struct tbackend *rec;

static void setup(void)
{
	memset(&h, 0, sizeof(h));
}

static void teardown(void)
{
	t_harness_finish(&h);
}

/* Listener "pin" accepting version in (1 or 2) and sending v1 to a recording backend;
 * listener_extra (JSON members) added. */
static void start(int in, const char *listener_extra)
{
	static const char *const names[] = {"rec"};
	json_t *cfg = t_cfg_new(2);

	t_backends_add_n(&h.be, TB_RECORD, names, 1);
	rec = h.be.tb[0];
	h.port = t_free_port();
	json_t *l = t_cfg_listener(cfg, "pin", "tcp", "127.0.0.1", h.port, "p");
	t_cfg_set(l,
		  "\"accept_proxy\":\"v%d\",\"proxy_protocol\":\"v1\","
		  "\"timeouts\":{\"connect\":\"%dms\"}",
		  in, HEADER_MS);
	t_cfg_set(l, "%s", listener_extra ? listener_extra : "");
	t_cfg_backends(t_cfg_pool(cfg, "p", NULL, T_HEALTH_NONE), &h.be);
	t_harness_start(&h, cfg, NULL);
}

/* Send hdr (hlen bytes) and "hello\n" in one write, read the echo; then what the backend
 * recorded as the PROXY line lb sent it, into line. */
static void relay_ok(const void *hdr, size_t hlen, char *line, size_t len)
{
	uint8_t msg[ADDR_PROXY_IN_MAX + 16], got[TB_RECORD_MAX];
	char echo[160];
	unsigned before = tb_accepted(rec);

	memcpy(msg, hdr, hlen);
	memcpy(msg + hlen, "hello\n", 6);
	int fd = t_connect(NULL, h.port);
	t_expect(&h, fd >= 0 && t_send_all(fd, msg, hlen + 6), "connect/send failed");
	/* The backend echoes all it gets: the PROXY line lb sent, then the payload. */
	t_expect(&h,
		 t_read_line(fd, echo, sizeof(echo), REPLY_MS) > 0 && !strncmp(echo, "PROXY ", 6),
		 "no PROXY line echoed: \"%s\"", echo);
	t_expect(&h, t_read_line(fd, echo, sizeof(echo), REPLY_MS) > 0 && !strcmp(echo, "hello"),
		 "the payload after the header was not relayed: \"%s\"", echo);
	close(fd);
	int n = tb_recorded(rec, before, got, sizeof(got) - 1);
	t_expect(&h, n > 0, "the backend recorded nothing");
	got[n] = '\0';
	char *eol = strstr((char *)got, "\r\n");
	t_expect(&h, eol && !strcmp(eol + 2, "hello\n"),
		 "the backend did not get the PROXY line then exactly the payload: \"%s\"", got);
	*eol = '\0';
	snprintf(line, len, "%s", (char *)got);
}

/* Send raw (len bytes), optionally close at once; the connection must be closed by lb,
 * with no backend connection, and the log must say why. */
static void refused(const void *raw, size_t len, bool close_after, const char *why)
{
	unsigned before = tb_accepted(rec);
	/* lb logs a refusal at most once a second: let the last one's second pass. */
	usleep(1100 * 1000);
	int fd = t_connect(NULL, h.port);

	t_expect(&h, fd >= 0, "connect failed");
	if (len)
		t_expect(&h, t_send_all(fd, raw, len), "send failed");
	if (close_after)
		shutdown(fd, SHUT_WR);
	t_expect(&h, t_wait_closed(fd, HEADER_MS + REPLY_MS) != -1, "%s: lb kept the connection",
		 why);
	close(fd);
	usleep(50 * 1000);
	t_expect(&h, tb_accepted(rec) == before, "%s: a backend connection was made", why);
	t_expect(&h, lb_log_wait(&h.lb, why, 1500), "%s: not in lb's log", why);
}

/* A v2 header for TCP over v4 or v6 from src:sport to dst:dport (cmd 1) or LOCAL (cmd 0). */
static size_t v2(uint8_t *b, int cmd, int fam, const char *src, const char *dst)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
	size_t alen = fam == AF_INET ? 4 : 16, body = cmd ? 2 * alen + 4 : 0;

	memcpy(b, sig, 12);
	b[12] = (uint8_t)(0x20 | cmd);
	b[13] = cmd ? (fam == AF_INET ? 0x11 : 0x21) : 0x00;
	b[14] = 0;
	b[15] = (uint8_t)body;
	if (cmd) {
		ck_assert_int_eq(inet_pton(fam, src, b + 16), 1);
		ck_assert_int_eq(inet_pton(fam, dst, b + 16 + alen), 1);
		b[16 + 2 * alen] = 0x15; /* 5555 */
		b[17 + 2 * alen] = 0xb3;
		b[18 + 2 * alen] = 0;
		b[19 + 2 * alen] = 80;
	}
	return 16 + body;
}

START_TEST(test_v1_headers_name_the_client)
{
	char line[160];
	const char *v4 = "PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n";
	const char *v6 = "PROXY TCP6 2001:db8::7 2001:db8::1 5555 80\r\n";
	const char *unknown = "PROXY UNKNOWN ffff:f...f:ffff 10.0.0.1 1 2\r\n";

	start(1, NULL);
	relay_ok(v4, strlen(v4), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP4 192.0.2.7 127.0.0.1 5555 ", 36),
		 "v1 TCP4: the backend was told \"%s\"", line);
	relay_ok(v6, strlen(v6), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP6 2001:db8::7 ", 23), "v1 TCP6: told \"%s\"", line);
	relay_ok(unknown, strlen(unknown), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP4 127.0.0.1 127.0.0.1 ", 31),
		 "v1 UNKNOWN: the peer's own address should stand, told \"%s\"", line);
}
END_TEST

START_TEST(test_v2_headers_name_the_client)
{
	uint8_t b[64];
	char line[160];

	start(2, NULL);
	relay_ok(b, v2(b, 1, AF_INET, "198.51.100.9", "10.0.0.1"), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP4 198.51.100.9 127.0.0.1 5555 ", 39),
		 "v2 v4: told \"%s\"", line);
	relay_ok(b, v2(b, 1, AF_INET6, "2001:db8::9", "2001:db8::1"), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP6 2001:db8::9 ", 23), "v2 v6: told \"%s\"", line);
	relay_ok(b, v2(b, 0, AF_INET, NULL, NULL), line, sizeof(line));
	t_expect(&h, !strncmp(line, "PROXY TCP4 127.0.0.1 ", 21), "v2 LOCAL: told \"%s\"", line);
}
END_TEST

START_TEST(test_bad_headers_are_closed_and_logged)
{
	char big[200];
	uint8_t b[64];

	start(1, NULL);
	refused("PROXY TCP4 999.0.2.7 10.0.0.1 5555 80\r\n", 39, false,
		"bad PROXY header: an address that is not IPv4");
	refused("PROXY TCP4 192.0.2.7 10.0.0.1 5555 99999\r\n", 42, false,
		"bad PROXY header: a port that is not 0-65535");
	refused("GET / HTTP/1.1\r\n\r\n", 18, false, "bad PROXY header: does not start with");
	memset(big, 'x', sizeof(big));
	memcpy(big, "PROXY TCP4 ", 11);
	refused(big, sizeof(big), false, "bad PROXY header: no CRLF within 107 bytes");
	refused("PROXY TCP4 192.0.2.7 10.0.", 26, true, "closed before a whole PROXY header");
	refused("PROXY TCP4 192.0.2.7", 20, false, "no whole PROXY header within timeouts.connect");
	refused(b, v2(b, 1, AF_INET, "198.51.100.9", "10.0.0.1"), false,
		"bad PROXY header: a v2 header where v1 is expected");
	/* lb still serves a good one. */
	char line[160];
	const char *ok = "PROXY TCP4 192.0.2.8 10.0.0.1 5555 80\r\n";
	relay_ok(ok, strlen(ok), line, sizeof(line));
}
END_TEST

START_TEST(test_v2_oversized_and_wrong_version)
{
	uint8_t b[64];

	start(2, NULL);
	v2(b, 1, AF_INET, "198.51.100.9", "10.0.0.1");
	b[14] = 0xff; /* length 65292 */
	b[15] = 0x0c;
	refused(b, 28, false, "bad PROXY header: 65308 bytes, more than 1040");
	refused("PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\n", 39, false,
		"bad PROXY header: a v1 header where v2 is expected");
}
END_TEST

/* allow/deny judge the address the header names, not the upstream balancer's. */
START_TEST(test_acl_applies_to_the_proxied_client)
{
	char line[160];

	start(1, "\"deny\":[\"192.0.2.0/24\"]");
	unsigned before = tb_accepted(rec);
	int fd = t_connect(NULL, h.port);
	const char *denied = "PROXY TCP4 192.0.2.7 10.0.0.1 5555 80\r\nhello\n";
	t_expect(&h, fd >= 0 && t_send_all(fd, denied, strlen(denied)), "send failed");
	t_expect(&h, t_wait_closed(fd, REPLY_MS) != -1, "a denied client behind the proxy got in");
	close(fd);
	t_expect(&h, tb_accepted(rec) == before, "a denied client reached the backend");
	const char *allowed = "PROXY TCP4 198.51.100.1 10.0.0.1 5555 80\r\n";
	relay_ok(allowed, strlen(allowed), line, sizeof(line));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proxy_in");
	TCase *tc = tcase_create("proxy_in");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 40);
	tcase_add_test(tc, test_v1_headers_name_the_client);
	tcase_add_test(tc, test_v2_headers_name_the_client);
	tcase_add_test(tc, test_bad_headers_are_closed_and_logged);
	tcase_add_test(tc, test_v2_oversized_and_wrong_version);
	tcase_add_test(tc, test_acl_applies_to_the_proxied_client);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_ENV);
}
