/* Unit tests for lb/addr.c: address parsing and formatting, CIDR matching and admission,
 * PROXY protocol v1/v2 bytes and the client-IP hash. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "lb/addr.h"
#include "lb/resolve.h"
#include "support.h"

static struct sockaddr_storage ss_v4(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;

	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &in->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage ss_v6(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

/* ---- parsing and formatting ---- */

START_TEST(test_numeric_v4_address_parses)
{
	struct lb_addr a;
	const char *why = NULL;
	const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;

	ck_assert_int_eq(addr_parse_numeric("10.1.2.3:8080", &a, &why), 0);
	ck_assert_int_eq(in->sin_family, AF_INET);
	ck_assert_int_eq(ntohs(in->sin_port), 8080);
	ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x0a010203);
	ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in));
}
END_TEST

START_TEST(test_numeric_v6_address_in_brackets_parses)
{
	struct lb_addr a;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
	struct in6_addr want;

	ck_assert_int_eq(addr_parse_numeric("[2001:db8::1]:443", &a, NULL), 0);
	ck_assert_int_eq(in6->sin6_family, AF_INET6);
	ck_assert_int_eq(ntohs(in6->sin6_port), 443);
	inet_pton(AF_INET6, "2001:db8::1", &want);
	ck_assert_mem_eq(&in6->sin6_addr, &want, 16);
	ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
}
END_TEST

static const char *const good_numeric[] = {
    "0.0.0.0:1", "255.255.255.255:65535", "[::]:80",
    "[::1]:1",	 "[::ffff:10.0.0.1]:80",  "127.0.0.1:080",
};

START_TEST(test_numeric_address_edge_values_are_accepted)
{
	struct lb_addr a;

	ck_assert_msg(addr_parse_numeric(good_numeric[_i], &a, NULL) == 0, "%s", good_numeric[_i]);
}
END_TEST

static const char *const bad_numeric[] = {
    "",
    "1.2.3.4",
    "1.2.3.4:",
    ":80",
    "1.2.3.4:0",
    "1.2.3.4:65536",
    "1.2.3.4:80x",
    "1.2.3.4:+80",
    "1.2.3.4:-1",
    "::1:80",
    "[::1]80",
    "[::1:80",
    "[1.2.3.4]:80",
    "localhost:80",
    "1.2.3:80",
    " 1.2.3.4:80",
    "1.2.3.4:80 ",
    "1.2.3.4:123456",
    "[::1]:",
    "[]:80",
    "1.2.3.256:80",
    "1.2.3.4:8 0",
    "[::1]:80]",
    "1.2.3.4::80",
};

START_TEST(test_numeric_address_garbage_is_rejected_with_reason)
{
	struct lb_addr a;
	const char *why = NULL;

	ck_assert_msg(addr_parse_numeric(bad_numeric[_i], &a, &why) == -EINVAL, "accepted \"%s\"",
		      bad_numeric[_i]);
	ck_assert_ptr_nonnull(why);
	ck_assert_int_gt(strlen(why), 0);
}
END_TEST

START_TEST(test_v6_without_brackets_reason_mentions_brackets)
{
	struct lb_addr a;
	const char *why = NULL;

	ck_assert_int_eq(addr_parse_numeric("::1:80", &a, &why), -EINVAL);
	ck_assert_ptr_nonnull(strstr(why, "brackets"));
}
END_TEST

START_TEST(test_hostname_resolves_preferring_ipv4)
{
	struct lb_addr a;
	const char *why = NULL;
	const struct sockaddr_in *in = (const struct sockaddr_in *)&a.ss;

	ck_assert_int_eq(resolve_address("localhost:80", &a, RESOLVE_TIMEOUT_MS, &why), 0);
	ck_assert_int_eq(in->sin_family, AF_INET);
	ck_assert_int_eq(ntohs(in->sin_port), 80);
	ck_assert_uint_eq(ntohl(in->sin_addr.s_addr), 0x7f000001);
}
END_TEST

START_TEST(test_resolve_accepts_numeric_addresses_unchanged)
{
	struct lb_addr a, b;

	ck_assert_int_eq(resolve_address("[::1]:9000", &a, RESOLVE_TIMEOUT_MS, NULL), 0);
	ck_assert_int_eq(addr_parse_numeric("[::1]:9000", &b, NULL), 0);
	ck_assert_mem_eq(&a.ss, &b.ss, b.len);
}
END_TEST

START_TEST(test_unresolvable_hostname_is_enoent)
{
	struct lb_addr a;
	const char *why = NULL;

	ck_assert_int_eq(resolve_address("no-such-host.invalid:80", &a, RESOLVE_TIMEOUT_MS, &why),
			 -ENOENT);
	ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(test_resolve_rejects_bad_port_and_bad_names_without_lookup)
{
	struct lb_addr a;
	const char *why = NULL;

	ck_assert_int_eq(resolve_address("localhost:0", &a, RESOLVE_TIMEOUT_MS, &why), -EINVAL);
	ck_assert_int_eq(resolve_address("localhost:99999", &a, RESOLVE_TIMEOUT_MS, &why), -EINVAL);
	ck_assert_int_eq(resolve_address("bad host!:80", &a, RESOLVE_TIMEOUT_MS, &why), -EINVAL);
	ck_assert_int_eq(resolve_address("localhost", &a, RESOLVE_TIMEOUT_MS, &why), -EINVAL);
	ck_assert_int_eq(resolve_address("[localhost]:80", &a, RESOLVE_TIMEOUT_MS, &why), -EINVAL);
}
END_TEST

START_TEST(test_resolve_names_answers_each_name_of_a_mixed_batch)
{
	struct resolve_name rn[] = {
	    {.address = "127.0.0.1:80"},
	    {.address = "localhost:81"},
	    {.address = "bad host!:80"},
	    {.address = "localhost:82"},
	};
	struct lb_addr want;

	ck_assert_uint_eq(resolve_names(rn, 4, RESOLVE_TIMEOUT_MS), 1);
	ck_assert_int_eq(rn[0].err, 0);
	ck_assert_str_eq(rn[0].host, "");
	ck_assert_int_eq(rn[1].err, 0);
	ck_assert_str_eq(rn[1].host, "localhost");
	ck_assert_int_eq(addr_parse_numeric("127.0.0.1:81", &want, NULL), 0);
	ck_assert_int_eq(rn[1].addr.len, want.len);
	ck_assert_mem_eq(&rn[1].addr.ss, &want.ss, want.len);
	ck_assert_int_eq(rn[2].err, -EINVAL);
	ck_assert_int_eq(rn[3].err, 0);
}
END_TEST

START_TEST(test_format_round_trips_v4_and_v6)
{
	static const char *const in[] = {"1.2.3.4:80", "[::1]:443", "[2001:db8::5]:65535",
					 "[::ffff:10.0.0.1]:8080"};
	char buf[ADDR_STR_MAX];
	struct lb_addr a;

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		ck_assert_int_eq(addr_parse_numeric(in[i], &a, NULL), 0);
		ck_assert_str_eq(addr_format((struct sockaddr *)&a.ss, buf, sizeof(buf)), in[i]);
	}
}
END_TEST

START_TEST(test_equal_addresses_need_same_family_address_and_port)
{
	struct lb_addr a, b;

	memset(&a, 0xaa, sizeof(a)); /* parsing must not leave garbage that memcmp would see */
	memset(&b, 0x55, sizeof(b));
	ck_assert_int_eq(addr_parse_numeric("10.0.0.1:80", &a, NULL), 0);
	ck_assert_int_eq(addr_parse_numeric("10.0.0.1:80", &b, NULL), 0);
	ck_assert(addr_equal(&a, &b));
	ck_assert_int_eq(addr_parse_numeric("10.0.0.1:81", &b, NULL), 0);
	ck_assert(!addr_equal(&a, &b));
	ck_assert_int_eq(addr_parse_numeric("10.0.0.2:80", &b, NULL), 0);
	ck_assert(!addr_equal(&a, &b));
	/* Not normalised: a v4-mapped v6 listener is another socket than the v4 one. */
	ck_assert_int_eq(addr_parse_numeric("[::ffff:10.0.0.1]:80", &b, NULL), 0);
	ck_assert(!addr_equal(&a, &b));
	ck_assert_int_eq(addr_parse_numeric("[2001:db8::1]:80", &a, NULL), 0);
	ck_assert_int_eq(addr_parse_numeric("[2001:db8::1]:80", &b, NULL), 0);
	ck_assert(addr_equal(&a, &b));
}
END_TEST

/* An IPv4 client of a dual-stack listener is logged as the IPv4 client it is. */
START_TEST(test_client_format_shows_v4_mapped_clients_as_v4)
{
	char buf[ADDR_STR_MAX];
	struct lb_addr a;

	ck_assert_int_eq(addr_parse_numeric("[::ffff:10.0.0.1]:8080", &a, NULL), 0);
	ck_assert_str_eq(addr_format_client((struct sockaddr *)&a.ss, buf, sizeof(buf)),
			 "10.0.0.1:8080");
	ck_assert_int_eq(addr_parse_numeric("[2001:db8::5]:443", &a, NULL), 0);
	ck_assert_str_eq(addr_format_client((struct sockaddr *)&a.ss, buf, sizeof(buf)),
			 "[2001:db8::5]:443");
	ck_assert_int_eq(addr_parse_numeric("1.2.3.4:80", &a, NULL), 0);
	ck_assert_str_eq(addr_format_client((struct sockaddr *)&a.ss, buf, sizeof(buf)),
			 "1.2.3.4:80");
}
END_TEST

START_TEST(test_dual_stack_address_covers_ipv4_of_its_port)
{
	static const struct {
		const char *six, *v4;
		bool covers;
	} c[] = {
	    {"[::]:80", "0.0.0.0:80", true},
	    {"[::]:80", "10.0.0.1:80", true},
	    {"[::]:80", "10.0.0.1:81", false},
	    {"[::ffff:10.0.0.1]:80", "10.0.0.1:80", true},
	    {"[::ffff:10.0.0.1]:80", "0.0.0.0:80", true},
	    {"[::ffff:10.0.0.1]:80", "10.0.0.2:80", false},
	    {"[::1]:80", "127.0.0.1:80", false},
	    {"[::]:80", "[::]:80", false},	 /* not IPv4 */
	    {"0.0.0.0:80", "0.0.0.0:80", false}, /* not IPv6 */
	};
	struct lb_addr a, b;

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		ck_assert_int_eq(addr_parse_numeric(c[i].six, &a, NULL), 0);
		ck_assert_int_eq(addr_parse_numeric(c[i].v4, &b, NULL), 0);
		ck_assert_msg(addr_dual_covers(&a, &b) == c[i].covers, "%s over %s: expected %d",
			      c[i].six, c[i].v4, c[i].covers);
	}
}
END_TEST

START_TEST(test_format_unknown_family_is_question_mark)
{
	struct sockaddr_storage ss = {0};
	char buf[ADDR_STR_MAX];

	ss.ss_family = AF_UNIX;
	ck_assert_str_eq(addr_format(SA(ss), buf, sizeof(buf)), "?");
}
END_TEST

/* ---- CIDR ---- */

START_TEST(test_cidr_v4_and_v6_parse_with_and_without_prefix)
{
	struct cidr c;

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &c), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_uint_eq(c.prefix, 8);
	ck_assert_int_eq(cidr_parse("192.168.1.7", &c), 0);
	ck_assert_uint_eq(c.prefix, 32);
	ck_assert_int_eq(cidr_parse("2001:db8::/32", &c), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_uint_eq(c.prefix, 32);
	ck_assert_int_eq(cidr_parse("::1", &c), 0);
	ck_assert_uint_eq(c.prefix, 128);
	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &c), 0);
	ck_assert_uint_eq(c.prefix, 0);
	ck_assert_int_eq(cidr_parse("::/0", &c), 0);
}
END_TEST

static const char *const bad_cidrs[] = {
    "",
    "10.0.0.0/33",
    "::/129",
    "10.0.0.0/",
    "10.0.0.0/8x",
    "10.0.0.0/-1",
    "junk",
    "10.0.0/8",
    "/8",
    "10.0.0.0/8/8",
    "10.0.0.0 /8",
    "1::2::3/64",
    "10.0.0.0/1000",
};

START_TEST(test_cidr_junk_and_long_prefixes_are_rejected)
{
	struct cidr c;

	ck_assert_msg(cidr_parse(bad_cidrs[_i], &c) == -EINVAL, "accepted \"%s\"", bad_cidrs[_i]);
}
END_TEST

START_TEST(test_cidr_v4_match_honours_prefix)
{
	struct cidr c;
	struct sockaddr_storage in = ss_v4("10.200.3.4", 1), out = ss_v4("11.0.0.1", 1);

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &c), 0);
	ck_assert(cidr_match(&c, SA(in)));
	ck_assert(!cidr_match(&c, SA(out)));
	/* Host bits in the network are ignored. */
	ck_assert_int_eq(cidr_parse("10.1.2.3/8", &c), 0);
	ck_assert(cidr_match(&c, SA(in)));
	ck_assert_int_eq(cidr_parse("10.200.3.0/25", &c), 0);
	ck_assert(cidr_match(&c, SA(in)));
	in = ss_v4("10.200.3.128", 1);
	ck_assert(!cidr_match(&c, SA(in)));
}
END_TEST

START_TEST(test_cidr_v6_match_honours_prefix)
{
	struct cidr c;
	struct sockaddr_storage in = ss_v6("2001:db8:1::5", 1), out = ss_v6("2001:db9::1", 1);

	ck_assert_int_eq(cidr_parse("2001:db8::/32", &c), 0);
	ck_assert(cidr_match(&c, SA(in)));
	ck_assert(!cidr_match(&c, SA(out)));
	ck_assert_int_eq(cidr_parse("2001:db8:1::/49", &c), 0);
	ck_assert(cidr_match(&c, SA(in)));
}
END_TEST

START_TEST(test_v4_mapped_client_matches_v4_cidr)
{
	struct cidr c;
	struct sockaddr_storage mapped = ss_v6("::ffff:10.1.2.3", 1);
	struct sockaddr_storage other = ss_v6("::ffff:11.1.2.3", 1);

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &c), 0);
	ck_assert(cidr_match(&c, SA(mapped)));
	ck_assert(!cidr_match(&c, SA(other)));
}
END_TEST

START_TEST(test_families_do_not_cross_match)
{
	struct cidr v4, v6;
	struct sockaddr_storage a6 = ss_v6("::1", 1), a4 = ss_v4("127.0.0.1", 1);

	ck_assert_int_eq(cidr_parse("0.0.0.0/0", &v4), 0);
	ck_assert(!cidr_match(&v4, SA(a6)));
	ck_assert_int_eq(cidr_parse("::1/128", &v6), 0);
	ck_assert(!cidr_match(&v6, SA(a4)));
}
END_TEST

START_TEST(test_v4_client_matches_v4_mapped_v6_cidr)
{
	struct cidr c;
	struct sockaddr_storage a4 = ss_v4("10.1.2.3", 1);

	ck_assert_int_eq(cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	ck_assert(cidr_match(&c, SA(a4)));
}
END_TEST

/* ::/0 and ::/64 cover ::ffff:0:0/96 on paper, but they are written for IPv6 clients: an
 * IPv4 client (plain or v4-mapped) matches only a v6 network inside ::ffff:0:0/96. */
START_TEST(test_wide_v6_cidrs_do_not_match_v4_clients)
{
	static const char *const wide[] = {"::/0", "::/64", "::/95", "::ffff:0:0/95"};
	struct sockaddr_storage a4 = ss_v4("10.1.2.3", 1), m4 = ss_v6("::ffff:10.1.2.3", 1);
	struct sockaddr_storage a6 = ss_v6("::1", 1);
	struct cidr c;

	for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++) {
		ck_assert_int_eq(cidr_parse(wide[i], &c), 0);
		ck_assert_msg(!cidr_match(&c, SA(a4)), "%s matched an IPv4 client", wide[i]);
		ck_assert_msg(!cidr_match(&c, SA(m4)), "%s matched a v4-mapped client", wide[i]);
	}
	ck_assert_int_eq(cidr_parse("::/0", &c), 0);
	ck_assert(cidr_match(&c, SA(a6)));
	ck_assert_int_eq(cidr_parse("::ffff:0:0/96", &c), 0);
	ck_assert(cidr_match(&c, SA(a4)));
	ck_assert(cidr_match(&c, SA(m4)));
	ck_assert(!cidr_admit(NULL, 0, &c, 1, SA(a4)));
}
END_TEST

START_TEST(test_empty_allow_admits_everyone)
{
	struct sockaddr_storage a = ss_v4("203.0.113.9", 1);

	ck_assert(cidr_admit(NULL, 0, NULL, 0, SA(a)));
}
END_TEST

START_TEST(test_deny_wins_over_allow)
{
	struct cidr allow[1], deny[1];
	struct sockaddr_storage a = ss_v4("10.9.1.1", 1), b = ss_v4("10.1.1.1", 1);

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &allow[0]), 0);
	ck_assert_int_eq(cidr_parse("10.9.0.0/16", &deny[0]), 0);
	ck_assert(!cidr_admit(allow, 1, deny, 1, SA(a)));
	ck_assert(cidr_admit(allow, 1, deny, 1, SA(b)));
	ck_assert(!cidr_admit(NULL, 0, deny, 1, SA(a)));
}
END_TEST

START_TEST(test_nonempty_allow_rejects_everyone_else)
{
	struct cidr allow[2];
	struct sockaddr_storage in6 = ss_v6("2001:db8::1", 1), out = ss_v4("192.0.2.1", 1);

	ck_assert_int_eq(cidr_parse("10.0.0.0/8", &allow[0]), 0);
	ck_assert_int_eq(cidr_parse("2001:db8::/32", &allow[1]), 0);
	ck_assert(cidr_admit(allow, 2, NULL, 0, SA(in6)));
	ck_assert(!cidr_admit(allow, 2, NULL, 0, SA(out)));
}
END_TEST

/* ---- PROXY protocol ---- */

START_TEST(test_proxy_v1_tcp4_line)
{
	struct sockaddr_storage s = ss_v4("192.0.2.10", 56324), d = ss_v4("10.0.0.1", 443);
	uint8_t buf[ADDR_PROXY_MAX];
	const char *want = "PROXY TCP4 192.0.2.10 10.0.0.1 56324 443\r\n";
	int n = addr_proxy_header(1, SA(s), SA(d), buf, sizeof(buf));

	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(buf, want, strlen(want));
}
END_TEST

START_TEST(test_proxy_v1_tcp6_line)
{
	struct sockaddr_storage s = ss_v6("2001:db8::1", 1000), d = ss_v6("::1", 80);
	uint8_t buf[ADDR_PROXY_MAX];
	const char *want = "PROXY TCP6 2001:db8::1 ::1 1000 80\r\n";
	int n = addr_proxy_header(1, SA(s), SA(d), buf, sizeof(buf));

	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(buf, want, strlen(want));
}
END_TEST

START_TEST(test_proxy_v1_mapped_addresses_are_sent_as_tcp4)
{
	struct sockaddr_storage s = ss_v6("::ffff:192.0.2.10", 5), d = ss_v6("::ffff:10.0.0.1", 6);
	uint8_t buf[ADDR_PROXY_MAX];
	const char *want = "PROXY TCP4 192.0.2.10 10.0.0.1 5 6\r\n";
	int n = addr_proxy_header(1, SA(s), SA(d), buf, sizeof(buf));

	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(buf, want, strlen(want));
}
END_TEST

/* Mixed families (a client named by an incoming PROXY header on a listener of the other
 * family): both go out as IPv6, the IPv4 one v4-mapped, so the client is passed on. */
START_TEST(test_proxy_v1_mixed_families_go_as_tcp6)
{
	struct sockaddr_storage s = ss_v4("192.0.2.10", 5), d = ss_v6("2001:db8::1", 6);
	uint8_t buf[ADDR_PROXY_MAX];
	const char *want = "PROXY TCP6 ::ffff:192.0.2.10 2001:db8::1 5 6\r\n";
	int n = addr_proxy_header(1, SA(s), SA(d), buf, sizeof(buf));

	ck_assert_int_eq(n, (int)strlen(want));
	ck_assert_mem_eq(buf, want, strlen(want));
}
END_TEST

START_TEST(test_proxy_v1_worst_case_fits_addr_proxy_max)
{
	struct sockaddr_storage s = ss_v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
	struct sockaddr_storage d = ss_v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", 65535);
	uint8_t buf[ADDR_PROXY_MAX];
	int n = addr_proxy_header(1, SA(s), SA(d), buf, sizeof(buf));

	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, 107);
}
END_TEST

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

START_TEST(test_proxy_v2_tcp4_bytes)
{
	struct sockaddr_storage s = ss_v4("192.0.2.10", 0x1234), d = ss_v4("10.0.0.1", 443);
	uint8_t buf[ADDR_PROXY_MAX], want[28];
	static const uint8_t tail[] = {0x21, 0x11, 0x00, 0x0C, 192,  0,	   2,	 10,
				       10,   0,	   0,	 1,    0x12, 0x34, 0x01, 0xBB};
	int n = addr_proxy_header(2, SA(s), SA(d), buf, sizeof(buf));

	memcpy(want, v2_sig, 12);
	memcpy(want + 12, tail, sizeof(tail));
	ck_assert_int_eq(n, 28);
	ck_assert_mem_eq(buf, want, 28);
}
END_TEST

START_TEST(test_proxy_v2_tcp6_bytes)
{
	struct sockaddr_storage s = ss_v6("2001:db8::1", 1000), d = ss_v6("::1", 80);
	uint8_t buf[ADDR_PROXY_MAX], want[52] = {0};
	int n = addr_proxy_header(2, SA(s), SA(d), buf, sizeof(buf));

	memcpy(want, v2_sig, 12);
	want[12] = 0x21;
	want[13] = 0x21;
	want[14] = 0x00;
	want[15] = 36;
	inet_pton(AF_INET6, "2001:db8::1", want + 16);
	inet_pton(AF_INET6, "::1", want + 32);
	want[48] = 0x03; /* 1000 */
	want[49] = 0xE8;
	want[50] = 0x00; /* 80 */
	want[51] = 0x50;
	ck_assert_int_eq(n, 52);
	ck_assert_mem_eq(buf, want, 52);
}
END_TEST

START_TEST(test_proxy_v2_mapped_addresses_are_sent_as_tcp4)
{
	struct sockaddr_storage s = ss_v6("::ffff:192.0.2.10", 0x1234);
	struct sockaddr_storage d = ss_v6("::ffff:10.0.0.1", 443);
	struct sockaddr_storage s4 = ss_v4("192.0.2.10", 0x1234), d4 = ss_v4("10.0.0.1", 443);
	uint8_t a[ADDR_PROXY_MAX], b[ADDR_PROXY_MAX];

	ck_assert_int_eq(addr_proxy_header(2, SA(s), SA(d), a, sizeof(a)), 28);
	ck_assert_int_eq(addr_proxy_header(2, SA(s4), SA(d4), b, sizeof(b)), 28);
	ck_assert_mem_eq(a, b, 28);
}
END_TEST

START_TEST(test_proxy_v2_mixed_families_go_as_tcp6)
{
	struct sockaddr_storage s = ss_v4("192.0.2.10", 5), d = ss_v6("2001:db8::1", 6);
	uint8_t buf[ADDR_PROXY_MAX];
	static const uint8_t head[] = {0x21, 0x21, 0x00, 36};
	static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10};

	ck_assert_int_eq(addr_proxy_header(2, SA(s), SA(d), buf, sizeof(buf)), 52);
	ck_assert_mem_eq(buf, v2_sig, 12);
	ck_assert_mem_eq(buf + 12, head, 4);
	ck_assert_mem_eq(buf + 16, mapped, 16);
}
END_TEST

START_TEST(test_proxy_header_rejects_bad_version_and_short_buffer)
{
	struct sockaddr_storage s = ss_v4("192.0.2.10", 5), d = ss_v4("10.0.0.1", 6);
	uint8_t buf[ADDR_PROXY_MAX];

	ck_assert_int_eq(addr_proxy_header(3, SA(s), SA(d), buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(addr_proxy_header(1, SA(s), SA(d), buf, 10), -EINVAL);
	ck_assert_int_eq(addr_proxy_header(2, SA(s), SA(d), buf, 27), -EINVAL);
}
END_TEST

/* ---- hashing ---- */

START_TEST(test_hash_of_v4_mapped_equals_plain_v4)
{
	struct sockaddr_storage a = ss_v4("198.51.100.7", 1), b = ss_v6("::ffff:198.51.100.7", 2);

	ck_assert_uint_eq(addr_hash_ip(SA(a)), addr_hash_ip(SA(b)));
}
END_TEST

START_TEST(test_hash_ignores_port)
{
	struct sockaddr_storage a = ss_v6("2001:db8::7", 1), b = ss_v6("2001:db8::7", 65000);

	ck_assert_uint_eq(addr_hash_ip(SA(a)), addr_hash_ip(SA(b)));
}
END_TEST

/* Neighbouring addresses must spread over the whole 32 bits: each top nibble gets roughly
 * 1/16 of 4096 consecutive IPv4 addresses. */
START_TEST(test_hash_spreads_neighbouring_addresses)
{
	unsigned buckets[16] = {0};

	for (unsigned i = 0; i < 4096; i++) {
		struct sockaddr_storage ss = {0};
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(0x0a000000u + i);
		buckets[addr_hash_ip(SA(ss)) >> 28]++;
	}
	for (int b = 0; b < 16; b++) {
		ck_assert_uint_gt(buckets[b], 256 * 3 / 4);
		ck_assert_uint_lt(buckets[b], 256 * 5 / 4);
	}
}
END_TEST

static Suite *addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *parse = tcase_create("parse");
	TCase *cidr = tcase_create("cidr");
	TCase *proxy = tcase_create("proxy");
	TCase *hash = tcase_create("hash");

	tcase_add_test(parse, test_numeric_v4_address_parses);
	tcase_add_test(parse, test_numeric_v6_address_in_brackets_parses);
	tcase_add_loop_test(parse, test_numeric_address_edge_values_are_accepted, 0,
			    sizeof(good_numeric) / sizeof(good_numeric[0]));
	tcase_add_loop_test(parse, test_numeric_address_garbage_is_rejected_with_reason, 0,
			    sizeof(bad_numeric) / sizeof(bad_numeric[0]));
	tcase_add_test(parse, test_v6_without_brackets_reason_mentions_brackets);
	tcase_add_test(parse, test_hostname_resolves_preferring_ipv4);
	tcase_add_test(parse, test_resolve_accepts_numeric_addresses_unchanged);
	tcase_add_test(parse, test_unresolvable_hostname_is_enoent);
	tcase_add_test(parse, test_resolve_rejects_bad_port_and_bad_names_without_lookup);
	tcase_add_test(parse, test_resolve_names_answers_each_name_of_a_mixed_batch);
	tcase_add_test(parse, test_format_round_trips_v4_and_v6);
	tcase_add_test(parse, test_format_unknown_family_is_question_mark);
	tcase_add_test(parse, test_client_format_shows_v4_mapped_clients_as_v4);
	tcase_add_test(parse, test_dual_stack_address_covers_ipv4_of_its_port);
	tcase_add_test(parse, test_equal_addresses_need_same_family_address_and_port);
	suite_add_tcase(s, parse);

	tcase_add_test(cidr, test_cidr_v4_and_v6_parse_with_and_without_prefix);
	tcase_add_loop_test(cidr, test_cidr_junk_and_long_prefixes_are_rejected, 0,
			    sizeof(bad_cidrs) / sizeof(bad_cidrs[0]));
	tcase_add_test(cidr, test_cidr_v4_match_honours_prefix);
	tcase_add_test(cidr, test_cidr_v6_match_honours_prefix);
	tcase_add_test(cidr, test_v4_mapped_client_matches_v4_cidr);
	tcase_add_test(cidr, test_families_do_not_cross_match);
	tcase_add_test(cidr, test_v4_client_matches_v4_mapped_v6_cidr);
	tcase_add_test(cidr, test_wide_v6_cidrs_do_not_match_v4_clients);
	tcase_add_test(cidr, test_empty_allow_admits_everyone);
	tcase_add_test(cidr, test_deny_wins_over_allow);
	tcase_add_test(cidr, test_nonempty_allow_rejects_everyone_else);
	suite_add_tcase(s, cidr);

	tcase_add_test(proxy, test_proxy_v1_tcp4_line);
	tcase_add_test(proxy, test_proxy_v1_tcp6_line);
	tcase_add_test(proxy, test_proxy_v1_mapped_addresses_are_sent_as_tcp4);
	tcase_add_test(proxy, test_proxy_v1_mixed_families_go_as_tcp6);
	tcase_add_test(proxy, test_proxy_v1_worst_case_fits_addr_proxy_max);
	tcase_add_test(proxy, test_proxy_v2_tcp4_bytes);
	tcase_add_test(proxy, test_proxy_v2_tcp6_bytes);
	tcase_add_test(proxy, test_proxy_v2_mapped_addresses_are_sent_as_tcp4);
	tcase_add_test(proxy, test_proxy_v2_mixed_families_go_as_tcp6);
	tcase_add_test(proxy, test_proxy_header_rejects_bad_version_and_short_buffer);
	suite_add_tcase(s, proxy);

	tcase_add_test(hash, test_hash_of_v4_mapped_equals_plain_v4);
	tcase_add_test(hash, test_hash_ignores_port);
	tcase_add_test(hash, test_hash_spreads_neighbouring_addresses);
	suite_add_tcase(s, hash);
	return s;
}

int main(void)
{
	return t_run_suite(addr_suite(), CK_NORMAL);
}
