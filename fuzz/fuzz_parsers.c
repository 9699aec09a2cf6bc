/* libFuzzer target: the pure parsers. The input's first byte picks one, the rest is its
 * input; each is checked against what it promises (round trips, a naive reference), not only
 * for memory errors:
 *   0 addresses: addr_parse_numeric / addr_parse_resolve, addr_format back, parse again
 *   1 CIDRs: cidr_parse, and cidr_match of an address against a bit-by-bit reference
 *   2 durations: config_parse_duration against a reference
 *   3 PROXY headers: addr_proxy_header (lb sends them; it never reads one) for fuzzed
 *     addresses and buffer sizes, read back by a reference PROXY v1/v2 parser
 *   4 health check replies: each check type's parse() and hc_judge() on every prefix, as
 *     the prober calls them
 * A selector byte past the last wraps around. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/check_types.h"
#include "health/checks.h"
#include "lb/addr.h"
#include "lb/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of data[0..size) (the parsers take C strings). */
static char *cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s) {
		memcpy(s, data, size);
		s[size] = '\0';
	}
	return s;
}

/* ---- 0: addresses ---- */

static void roundtrip(const struct lb_addr *a)
{
	char buf[ADDR_STR_MAX];
	struct lb_addr back;
	const char *why = NULL;

	addr_format((const struct sockaddr *)&a->ss, buf, sizeof(buf));
	CHECK(addr_parse_numeric(buf, &back, &why) == 0);
	CHECK(addr_equal(a, &back));
}

static void fuzz_addr(const uint8_t *data, size_t size)
{
	char *s = cstr(data, size), small[ADDR_STR_MAX];
	struct lb_addr a;
	const char *why = NULL;

	if (!s)
		return;
	if (addr_parse_numeric(s, &a, &why) == 0) {
		roundtrip(&a);
		/* A cut buffer still holds a NUL-terminated prefix. */
		size_t cut = size ? data[0] % sizeof(small) + 1 : 1;
		addr_format((const struct sockaddr *)&a.ss, small, cut);
		CHECK(strnlen(small, cut) < cut);
	} else {
		CHECK(why != NULL);
	}
	why = NULL;
	char host[ADDR_HOST_MAX];
	uint16_t port = 0;
	int rc = addr_parse_host(s, &a, host, &port, &why);
	if (rc == 0) {
		roundtrip(&a);
	} else if (rc == 1) {
		/* A well-formed name: not empty, fits, and its port is in range. */
		CHECK(host[0] != '\0' && strnlen(host, sizeof(host)) < sizeof(host) && port > 0);
		why = NULL;
		if (addr_lookup(host, port, &a, &why) == 0)
			roundtrip(&a); /* a name the stub resolver knows (localhost) */
		else
			CHECK(why != NULL);
	} else {
		CHECK(why != NULL);
	}
	free(s);
}

/* ---- 1: CIDRs ---- */

/* Bit i (from the most significant) of a. */
static int bit(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

/* The reference: the first prefix bits agree, with an IPv4 client seen as ::ffff:a.b.c.d by
 * a v6 network written within ::ffff:0:0/96 only (addr.h). */
static bool ref_match(const struct cidr *c, int fam, const uint8_t *ip)
{
	static const uint8_t mapped_pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	uint8_t m[16];

	if (fam == AF_INET6 && memcmp(ip, mapped_pfx, 12) == 0) {
		fam = AF_INET;
		ip += 12;
	}
	if (c->family == AF_INET6 && fam == AF_INET) {
		if (c->prefix < 96 || memcmp(c->addr, mapped_pfx, 12) != 0)
			return false;
		memcpy(m, mapped_pfx, 12);
		memcpy(m + 12, ip, 4);
		ip = m;
		fam = AF_INET6;
	}
	if (c->family != fam)
		return false;
	for (unsigned i = 0; i < c->prefix; i++)
		if (bit(c->addr, i) != bit(ip, i))
			return false;
	return true;
}

static void fuzz_cidr(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t n = nl ? (size_t)(nl - data) : size;
	char *s = cstr(data, n), again[80], ip[INET6_ADDRSTRLEN];
	struct sockaddr_in in = {.sin_family = AF_INET};
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	struct cidr c, c2;

	if (!s)
		return;
	if (cidr_parse(s, &c) < 0) {
		free(s);
		return;
	}
	CHECK(c.family == AF_INET ? c.prefix <= 32 : c.family == AF_INET6 && c.prefix <= 128);
	/* Written out again, it parses to the same network. */
	inet_ntop(c.family, c.addr, ip, sizeof(ip));
	snprintf(again, sizeof(again), "%s/%u", ip, c.prefix);
	CHECK(cidr_parse(again, &c2) == 0 && c2.family == c.family && c2.prefix == c.prefix &&
	      memcmp(c2.addr, c.addr, sizeof(c.addr)) == 0);
	/* The network's own address lies in it. */
	if (c.family == AF_INET) {
		memcpy(&in.sin_addr, c.addr, 4);
		CHECK(cidr_match(&c, (struct sockaddr *)&in));
	} else {
		memcpy(&in6.sin6_addr, c.addr, 16);
		CHECK(cidr_match(&c, (struct sockaddr *)&in6));
	}
	/* The rest of the input is a client: 4 bytes IPv4, else 16 bytes IPv6. */
	const uint8_t *rest = nl ? nl + 1 : data + size;
	size_t rlen = (size_t)(data + size - rest);
	if (rlen >= 16) {
		memcpy(&in6.sin6_addr, rest, 16);
		CHECK(cidr_match(&c, (struct sockaddr *)&in6) == ref_match(&c, AF_INET6, rest));
		CHECK(cidr_admit(NULL, 0, &c, 1, (struct sockaddr *)&in6) ==
		      !ref_match(&c, AF_INET6, rest));
	} else if (rlen >= 4) {
		memcpy(&in.sin_addr, rest, 4);
		CHECK(cidr_match(&c, (struct sockaddr *)&in) == ref_match(&c, AF_INET, rest));
		CHECK(cidr_admit(&c, 1, NULL, 0, (struct sockaddr *)&in) ==
		      ref_match(&c, AF_INET, rest));
	}
	free(s);
}

/* ---- 2: durations ---- */

static void fuzz_duration(const uint8_t *data, size_t size)
{
	static const struct {
		const char *unit;
		unsigned __int128 ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	char *s = cstr(data, size);
	uint64_t ms = 0;
	unsigned __int128 v = 0;
	bool ok = size > 0 && s && s[0] >= '0' && s[0] <= '9', big = false;
	const char *p;

	if (!s)
		return;
	int rc = config_parse_duration(s, &ms);
	/* Reference: digits (the value may not pass 2^64 - 1 even before the unit), one unit. */
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			big = true, v = (unsigned __int128)UINT64_MAX + 1;
	}
	size_t i;
	for (i = 0; i < sizeof(units) / sizeof(units[0]) && strcmp(p, units[i].unit) != 0; i++)
		;
	ok = ok && !big && i < sizeof(units) / sizeof(units[0]) && v * units[i].ms <= UINT64_MAX;
	CHECK((rc == 0) == ok);
	if (ok)
		CHECK(ms == (uint64_t)(v * units[i].ms));
	free(s);
}

/* ---- 3: PROXY headers, read back by a reference parser ---- */

struct ref_end {
	int family; /* AF_INET, AF_INET6, or AF_UNSPEC for UNKNOWN/LOCAL */
	uint8_t ip[16];
	uint16_t port;
};

/* A sockaddr from fuzz bytes: kind 0 IPv4, 1 IPv6, 2 v4-mapped IPv6, 3 neither (AF_UNIX). */
static void make_sa(const uint8_t *b, struct sockaddr_storage *ss, struct ref_end *want)
{
	memset(ss, 0, sizeof(*ss));
	memset(want, 0, sizeof(*want));
	uint16_t port = (uint16_t)(b[1] << 8 | b[2]);
	switch (b[0] % 4) {
	case 0: {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, b + 3, 4);
		want->family = AF_INET;
		memcpy(want->ip, b + 3, 4);
		break;
	}
	case 1:
	case 2: {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		memcpy(&in6->sin6_addr, b + 3, 16);
		if (b[0] % 4 == 2) {
			memset(in6->sin6_addr.s6_addr, 0, 10);
			memset(in6->sin6_addr.s6_addr + 10, 0xff, 2);
		}
		want->family = AF_INET6;
		memcpy(want->ip, &in6->sin6_addr, 16);
		if (b[0] % 4 == 2 || memcmp(want->ip, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
			want->family = AF_INET;
			memmove(want->ip, want->ip + 12, 4);
			memset(want->ip + 4, 0, 12);
		}
		break;
	}
	default:
		ss->ss_family = AF_UNIX;
		want->family = AF_UNSPEC;
		break;
	}
	want->port = port;
}

/* "PROXY TCP4 1.2.3.4 5.6.7.8 1000 80\r\n" or "PROXY UNKNOWN\r\n" (proxy-protocol.txt 2.1). */
static void ref_v1(const uint8_t *h, int n, struct ref_end *s, struct ref_end *d)
{
	char line[ADDR_PROXY_MAX + 1], proto[8], sip[64], dip[64];
	unsigned sp, dp;
	int used = 0;

	CHECK(n >= 8 && n <= 107 && h[n - 2] == '\r' && h[n - 1] == '\n');
	CHECK(memchr(h, '\0', (size_t)n) == NULL);
	memcpy(line, h, (size_t)n);
	line[n] = '\0';
	if (strcmp(line, "PROXY UNKNOWN\r\n") == 0) {
		s->family = d->family = AF_UNSPEC;
		return;
	}
	CHECK(sscanf(line, "PROXY %7s %63s %63s %u %u\r\n%n", proto, sip, dip, &sp, &dp, &used) ==
	      5);
	CHECK(used == n && sp <= 65535 && dp <= 65535);
	s->family = d->family = strcmp(proto, "TCP4") == 0 ? AF_INET : AF_INET6;
	CHECK(strcmp(proto, "TCP4") == 0 || strcmp(proto, "TCP6") == 0);
	CHECK(inet_pton(s->family, sip, s->ip) == 1 && inet_pton(d->family, dip, d->ip) == 1);
	s->port = (uint16_t)sp;
	d->port = (uint16_t)dp;
}

/* The 16-byte v2 header, then 12 (TCP4) or 36 (TCP6) address bytes, or none for LOCAL/UNSPEC
 * (proxy-protocol.txt 2.2). */
static void ref_v2(const uint8_t *h, int n, struct ref_end *s, struct ref_end *d)
{
	static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

	CHECK(n >= 16 && memcmp(h, sig, 12) == 0 && (h[12] & 0xf0) == 0x20);
	size_t body = (size_t)h[14] << 8 | h[15];
	CHECK((size_t)n == 16 + body);
	if (h[13] == 0x00) {
		CHECK(body == 0);
		s->family = d->family = AF_UNSPEC;
		return;
	}
	CHECK(h[12] == 0x21 && (h[13] == 0x11 || h[13] == 0x21));
	size_t alen = h[13] == 0x11 ? 4 : 16;
	CHECK(body == 2 * alen + 4);
	s->family = d->family = alen == 4 ? AF_INET : AF_INET6;
	memcpy(s->ip, h + 16, alen);
	memcpy(d->ip, h + 16 + alen, alen);
	s->port = (uint16_t)(h[16 + 2 * alen] << 8 | h[17 + 2 * alen]);
	d->port = (uint16_t)(h[18 + 2 * alen] << 8 | h[19 + 2 * alen]);
}

static void fuzz_proxy(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss, ds;
	struct ref_end ws, wd, gs = {0}, gd = {0};

	if (size < 2 + 19 + 19)
		return;
	int version = data[0] % 3; /* 0 is no version: refused */
	size_t len = data[1] % (ADDR_PROXY_MAX + 8);
	make_sa(data + 2, &ss, &ws);
	make_sa(data + 21, &ds, &wd);
	uint8_t *buf = malloc(len ? len : 1); /* exactly len: ASan sees any write past it */
	if (!buf)
		return;
	int n =
	    addr_proxy_header(version, (struct sockaddr *)&ss, (struct sockaddr *)&ds, buf, len);
	if (version == 0) {
		CHECK(n == -EINVAL);
		free(buf);
		return;
	}
	if (n < 0) {
		/* Only a buffer too small for the header is refused; the largest fits. */
		CHECK(n == -EINVAL && len < ADDR_PROXY_MAX);
		free(buf);
		return;
	}
	CHECK((size_t)n <= len && n <= ADDR_PROXY_MAX);
	if (version == 1)
		ref_v1(buf, n, &gs, &gd);
	else
		ref_v2(buf, n, &gs, &gd);
	/* An unknown end makes it UNKNOWN; mixed families go as IPv6 (the IPv4 end
	 * v4-mapped); then every address and port as given. */
	if (ws.family != AF_UNSPEC && wd.family != AF_UNSPEC && ws.family != wd.family) {
		static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		struct ref_end *e[2] = {&ws, &wd};
		for (int i = 0; i < 2; i++)
			if (e[i]->family == AF_INET) {
				memmove(e[i]->ip + 12, e[i]->ip, 4);
				memcpy(e[i]->ip, pfx, 12);
				e[i]->family = AF_INET6;
			}
	}
	if (ws.family == AF_UNSPEC || ws.family != wd.family) {
		CHECK(gs.family == AF_UNSPEC && gd.family == AF_UNSPEC);
	} else {
		size_t alen = ws.family == AF_INET ? 4 : 16;
		CHECK(gs.family == ws.family && gd.family == wd.family);
		CHECK(memcmp(gs.ip, ws.ip, alen) == 0 && memcmp(gd.ip, wd.ip, alen) == 0);
		CHECK(gs.port == ws.port && gd.port == wd.port);
	}
	free(buf);
}

/* ---- 5: PROXY headers in (listener accept_proxy) ---- */

/* Whatever a client sends: a verdict within the bytes given, never past the cap; a whole
 * header that names a client names an IPv4 or IPv6 one; more bytes never undo a verdict. */
static void fuzz_proxy_in(const uint8_t *data, size_t size)
{
	struct sockaddr_storage src;
	char err[160];
	bool local;

	if (size < 1)
		return;
	int version = 1 + (data[0] & 1);
	data++;
	size--;
	if (size > ADDR_PROXY_IN_MAX + 64)
		size = ADDR_PROXY_IN_MAX + 64;
	uint8_t *buf = malloc(size ? size : 1); /* exactly size: ASan sees any read past it */
	if (!buf)
		return;
	memcpy(buf, data, size);
	int whole = addr_proxy_parse(version, buf, size, &src, &local, err, sizeof(err));
	CHECK(whole <= (int)size && whole <= ADDR_PROXY_IN_MAX);
	if (whole > 0 && !local)
		CHECK(src.ss_family == AF_INET || src.ss_family == AF_INET6);
	if (whole != 0) {
		for (size_t n = 1; n < size; n++) {
			int r = addr_proxy_parse(version, buf, n, &src, &local, err, sizeof(err));
			CHECK(r == 0 || r == whole || (r < 0 && whole < 0));
		}
	}
	free(buf);
}

/* ---- 4: health check replies ---- */

/* Replies are judged at every length up to this, then whole (each prefix is a copy). */
#define WALK_MAX 512

static void fuzz_health(const uint8_t *data, size_t size)
{
	static const struct hc_check *const checks[] = {
	    &hc_check_send_expect, &hc_check_http,     &hc_check_udp,
	    &hc_check_redis,	   &hc_check_postgres, &hc_check_mysql,
	};
	struct cfg_health h = {0};
	char reason[64];

	if (size < 3)
		return;
	const struct hc_check *chk = checks[data[0] % (sizeof(checks) / sizeof(checks[0]))];
	/* expect: the next data[1] % 8 bytes; expect_status from data[2]. */
	size_t elen = data[1] % 8 < size - 3 ? data[1] % 8 : size - 3;
	char *expect = cstr(data + 3, elen);
	if (!expect)
		return;
	h.type = (char *)chk->name;
	h.expect = elen ? expect : NULL;
	h.expect_len = elen;
	h.expect_status = data[2] % 2 ? 100 + data[2] : 0;
	h.user =
	    data[2] & 0x40 ? (char *)"lbcheck" : NULL; /* mysql: greeting, then the login reply */
	const uint8_t *reply = data + 3 + elen;
	size_t rlen = size - 3 - elen;
	/* Each prefix in a buffer of its own size, so that ASan sees any read past it: every
	 * length up to WALK_MAX (as bytes trickle in), then the whole reply. */
	for (size_t n = 0; n <= rlen; n = n < WALK_MAX ? n + 1 : (n < rlen ? rlen : n + 1)) {
		uint8_t *b = malloc(n ? n : 1);
		if (!b)
			break;
		memcpy(b, reply, n);
		memset(reason, 'X', sizeof(reason));
		enum hc_result raw = chk->parse(b, n, &h, reason, sizeof(reason));
		CHECK(raw == HC_NEED_MORE || raw == HC_PASS || raw == HC_FAIL);
		if (raw == HC_FAIL)
			CHECK(memchr(reason, '\0', sizeof(reason)) != NULL);
		/* What the prober calls: the same verdict, but undecided at HC_REPLY_MAX fails. */
		enum hc_result r = hc_judge(chk, b, n, &h, reason, sizeof(reason));
		free(b);
		CHECK(r == raw || (raw == HC_NEED_MORE && n >= HC_REPLY_MAX && r == HC_FAIL));
		if (r == HC_FAIL)
			CHECK(memchr(reason, '\0', sizeof(reason)) != NULL && reason[0] != '\0');
		if (r != HC_NEED_MORE)
			break; /* the prober stops reading at a verdict */
	}
	free(expect);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static void (*const targets[])(const uint8_t *, size_t) = {
	    fuzz_addr, fuzz_cidr, fuzz_duration, fuzz_proxy, fuzz_health, fuzz_proxy_in,
	};

	if (size < 1)
		return 0;
	targets[data[0] % (sizeof(targets) / sizeof(targets[0]))](data + 1, size - 1);
	return 0;
}
