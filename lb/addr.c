/* Addresses: parsing of "host:port" / "[v6]:port", CIDR matching, PROXY protocol headers and
 * the client-IP hash. Pure functions: config loading uses the parsers, the data path uses
 * cidr_admit, addr_proxy_header and addr_hash_ip (none of which allocate). The one
 * exception, addr_lookup (getaddrinfo), runs only on resolve.c's threads. */
#include "lb/addr.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb/hash.h"

/* PROXY protocol v2 (haproxy proxy-protocol.txt section 2.2). */
static const uint8_t proxy_v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
					 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
#define PROXY_V2_VER_CMD   0x21 /* version 2, command PROXY */
#define PROXY_V2_UNSPEC	   0x00
#define PROXY_V2_TCP4	   0x11
#define PROXY_V2_TCP6	   0x21
#define PROXY_V2_HDR_LEN   16 /* signature + ver/cmd + family + 16-bit length */
#define PROXY_V2_TCP4_BODY 12 /* two IPv4 addresses and two ports */
#define PROXY_V2_TCP6_BODY 36 /* two IPv6 addresses and two ports */

/* FNV-1a 32-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/). */
#define FNV32_BASIS 2166136261u
#define FNV32_PRIME 16777619u

/* An IP address reduced to its plain form: v4-mapped v6 becomes v4. */
struct ip_norm {
	int family; /* AF_INET, AF_INET6, or AF_UNSPEC if sa was neither */
	uint8_t b[16];
	uint16_t port; /* host byte order */
};

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void ip_normalize(const struct sockaddr *sa, struct ip_norm *n)
{
	memset(n, 0, sizeof(*n));
	n->family = AF_UNSPEC;
	if (!sa)
		return;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		n->family = AF_INET;
		memcpy(n->b, &in->sin_addr, 4);
		n->port = ntohs(in->sin_port);
		return;
	}
	if (sa->sa_family != AF_INET6)
		return;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
	n->port = ntohs(in6->sin6_port);
	if (memcmp(in6->sin6_addr.s6_addr, v4_mapped_prefix, 12) == 0) {
		n->family = AF_INET;
		memcpy(n->b, in6->sin6_addr.s6_addr + 12, 4);
		return;
	}
	n->family = AF_INET6;
	memcpy(n->b, in6->sin6_addr.s6_addr, 16);
}

/* Port: 1..5 decimal digits, value 1..65535, nothing after it. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5)
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || v < 1 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* Split "host:port" or "[v6]:port" into host (brackets removed) and port text.
 * *bracketed tells whether the host was written in brackets. */
static int split_host_port(const char *s, char *host, size_t hostlen, const char **port,
			   bool *bracketed, const char **why)
{
	const char *colon, *h = s;
	size_t n;

	*bracketed = false;
	if (!s || !*s) {
		*why = "empty address";
		return -EINVAL;
	}
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close) {
			*why = "missing ']'";
			return -EINVAL;
		}
		if (close[1] != ':') {
			*why = "missing port after ']'";
			return -EINVAL;
		}
		h = s + 1;
		n = (size_t)(close - h);
		colon = close + 1;
		*bracketed = true;
	} else {
		colon = strrchr(s, ':');
		if (!colon) {
			*why = "missing port";
			return -EINVAL;
		}
		n = (size_t)(colon - s);
		if (memchr(s, ':', n)) {
			*why = "IPv6 address must be written in brackets: \"[v6]:port\"";
			return -EINVAL;
		}
	}
	if (n == 0) {
		*why = "missing host";
		return -EINVAL;
	}
	if (n >= hostlen) {
		*why = "host too long";
		return -EINVAL;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	*port = colon + 1;
	return 0;
}

static void set_v4(struct lb_addr *out, const struct in_addr *a, uint16_t port)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&out->ss;

	memset(out, 0, sizeof(*out));
	in->sin_family = AF_INET;
	in->sin_addr = *a;
	in->sin_port = htons(port);
	out->len = sizeof(*in);
}

static void set_v6(struct lb_addr *out, const struct in6_addr *a, uint16_t port)
{
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;

	memset(out, 0, sizeof(*out));
	in6->sin6_family = AF_INET6;
	in6->sin6_addr = *a;
	in6->sin6_port = htons(port);
	out->len = sizeof(*in6);
}

/* Parses the split address numerically. Returns 0, or -ENOENT if host is not numeric (it may
 * still be a name), or -EINVAL for a definite syntax error. */
static int parse_split_numeric(const char *host, bool bracketed, const char *port_s,
			       struct lb_addr *out, const char **why)
{
	struct in_addr a4;
	struct in6_addr a6;
	uint16_t port;

	if (parse_port(port_s, &port) < 0) {
		*why = "port must be a number 1-65535";
		return -EINVAL;
	}
	if (bracketed) {
		if (inet_pton(AF_INET6, host, &a6) != 1) {
			*why = "not an IPv6 address inside the brackets";
			return -EINVAL;
		}
		set_v6(out, &a6, port);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4) != 1) {
		*why = "host names are not allowed here, only numeric IP addresses";
		return -ENOENT;
	}
	set_v4(out, &a4, port);
	return 0;
}

int addr_parse_numeric(const char *s, struct lb_addr *out, const char **why)
{
	char host[ADDR_HOST_MAX];
	const char *port_s, *dummy;
	bool bracketed;
	struct lb_addr tmp;
	int rc;

	if (!why)
		why = &dummy;
	rc = split_host_port(s, host, sizeof(host), &port_s, &bracketed, why);
	if (rc < 0)
		return rc;
	rc = parse_split_numeric(host, bracketed, port_s, &tmp, why);
	if (rc < 0)
		return -EINVAL;
	*out = tmp;
	return 0;
}

/* Host names: letters, digits, '-', '.', '_' (the latter seen in service records). */
static bool valid_hostname(const char *h)
{
	for (; *h; h++) {
		char c = *h;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.' || c == '_'))
			return false;
	}
	return true;
}

int addr_lookup(const char *host, uint16_t port, struct lb_addr *out, const char **why)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res, *ai, *pick = NULL;
	int rc;

	rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0) {
		*why = gai_strerror(rc);
		return -ENOENT;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family == AF_INET) {
			pick = ai;
			break;
		}
		if (ai->ai_family == AF_INET6 && !pick)
			pick = ai;
	}
	if (!pick) {
		freeaddrinfo(res);
		*why = "no IPv4 or IPv6 address for this name";
		return -ENOENT;
	}
	if (pick->ai_family == AF_INET)
		set_v4(out, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, port);
	else
		set_v6(out, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, port);
	freeaddrinfo(res);
	return 0;
}

int addr_parse_host(const char *s, struct lb_addr *out, char *host, uint16_t *port,
		    const char **why)
{
	const char *port_s, *dummy;
	bool bracketed;
	struct lb_addr tmp;
	int rc;

	if (!why)
		why = &dummy;
	rc = split_host_port(s, host, ADDR_HOST_MAX, &port_s, &bracketed, why);
	if (rc < 0)
		return rc;
	rc = parse_split_numeric(host, bracketed, port_s, &tmp, why);
	if (rc == -EINVAL)
		return rc;
	if (rc == 0) {
		*out = tmp;
		return 0;
	}
	if (!valid_hostname(host)) {
		*why = "not an IP address or host name";
		return -EINVAL;
	}
	if (parse_port(port_s, port) < 0) /* checked above; keeps port defined */
		return -EINVAL;
	return 1;
}

bool addr_equal(const struct lb_addr *a, const struct lb_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

char *addr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (!buf || len == 0)
		return buf;
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
	return buf;
}

bool addr_dual_covers(const struct lb_addr *six, const struct lb_addr *v4)
{
	const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&six->ss;
	const struct sockaddr_in *b = (const struct sockaddr_in *)&v4->ss;

	if (six->ss.ss_family != AF_INET6 || v4->ss.ss_family != AF_INET ||
	    a->sin6_port != b->sin_port)
		return false;
	if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr) || b->sin_addr.s_addr == htonl(INADDR_ANY))
		return true;
	return memcmp(a->sin6_addr.s6_addr, v4_mapped_prefix, 12) == 0 &&
	       memcmp(a->sin6_addr.s6_addr + 12, &b->sin_addr, 4) == 0;
}

char *addr_format_client(const struct sockaddr *sa, char *buf, size_t len)
{
	struct ip_norm n;
	struct sockaddr_in in = {.sin_family = AF_INET};

	ip_normalize(sa, &n);
	if (n.family != AF_INET || sa->sa_family == AF_INET)
		return addr_format(sa, buf, len);
	memcpy(&in.sin_addr, n.b, 4);
	in.sin_port = htons(n.port);
	return addr_format((const struct sockaddr *)&in, buf, len);
}

/* Prefix: 1..3 decimal digits, no more than max. */
static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
	unsigned v = 0;
	size_t i;

	for (i = 0; s[i]; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 3)
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (i == 0 || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Clears the bits past the prefix so that equal networks compare equal. */
static void mask_bits(uint8_t *b, size_t nbytes, unsigned prefix)
{
	for (size_t i = 0; i < nbytes; i++) {
		unsigned first = (unsigned)i * 8;
		if (prefix >= first + 8)
			continue;
		if (prefix <= first)
			b[i] = 0;
		else
			b[i] &= (uint8_t)(0xff << (8 - (prefix - first)));
	}
}

int cidr_parse(const char *s, struct cidr *out)
{
	char ip[INET6_ADDRSTRLEN];
	const char *slash;
	struct cidr c = {0};
	size_t n;
	unsigned max;

	if (!s || !*s)
		return -EINVAL;
	slash = strchr(s, '/');
	n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, c.addr) == 1) {
		c.family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, c.addr) == 1) {
		c.family = AF_INET6;
		max = 128;
	} else {
		return -EINVAL;
	}
	c.prefix = max;
	if (slash && parse_prefix(slash + 1, max, &c.prefix) < 0)
		return -EINVAL;
	mask_bits(c.addr, max / 8, c.prefix);
	*out = c;
	return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	struct ip_norm n;
	uint8_t mapped[16];

	ip_normalize(sa, &n);
	if (n.family == AF_UNSPEC)
		return false;
	if (c->family == AF_INET)
		return n.family == AF_INET && prefix_equal(c->addr, n.b, c->prefix);
	if (c->family != AF_INET6)
		return false;
	if (n.family == AF_INET6)
		return prefix_equal(c->addr, n.b, c->prefix);
	/* A v4 client against a v6 network: only a network written inside ::ffff:0:0/96 can
	 * hold it (compared in its v4-mapped form ::ffff:a.b.c.d). A wider one such as ::/0 or
	 * ::/64 means IPv6 clients: it would otherwise take in every IPv4 client as well. */
	if (c->prefix < 96 || memcmp(c->addr, v4_mapped_prefix, 12) != 0)
		return false;
	memcpy(mapped, v4_mapped_prefix, 12);
	memcpy(mapped + 12, n.b, 4);
	return prefix_equal(c->addr, mapped, c->prefix);
}

bool cidr_admit(const struct cidr *allow, size_t nallow, const struct cidr *deny, size_t ndeny,
		const struct sockaddr *sa)
{
	for (size_t i = 0; i < ndeny; i++)
		if (cidr_match(&deny[i], sa))
			return false;
	if (nallow == 0)
		return true;
	for (size_t i = 0; i < nallow; i++)
		if (cidr_match(&allow[i], sa))
			return true;
	return false;
}

static int proxy_v1(const struct ip_norm *s, const struct ip_norm *d, uint8_t *buf, size_t len)
{
	char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
	int n;

	if (s->family == AF_UNSPEC || s->family != d->family) {
		n = snprintf((char *)buf, len, "PROXY UNKNOWN\r\n");
	} else {
		inet_ntop(s->family, s->b, sip, sizeof(sip));
		inet_ntop(d->family, d->b, dip, sizeof(dip));
		n = snprintf((char *)buf, len, "PROXY %s %s %s %u %u\r\n",
			     s->family == AF_INET ? "TCP4" : "TCP6", sip, dip, s->port, d->port);
	}
	if (n < 0 || (size_t)n >= len)
		return -EINVAL;
	return n;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static int proxy_v2(const struct ip_norm *s, const struct ip_norm *d, uint8_t *buf, size_t len)
{
	size_t alen = 0, body = 0;
	uint8_t fam = PROXY_V2_UNSPEC;

	if (s->family != AF_UNSPEC && s->family == d->family) {
		bool v4 = s->family == AF_INET;
		fam = v4 ? PROXY_V2_TCP4 : PROXY_V2_TCP6;
		body = v4 ? PROXY_V2_TCP4_BODY : PROXY_V2_TCP6_BODY;
		alen = v4 ? 4 : 16;
	}
	if (len < PROXY_V2_HDR_LEN + body)
		return -EINVAL;
	memcpy(buf, proxy_v2_sig, sizeof(proxy_v2_sig));
	buf[12] = PROXY_V2_VER_CMD;
	buf[13] = fam;
	put_be16(buf + 14, (uint16_t)body);
	if (body) {
		uint8_t *p = buf + PROXY_V2_HDR_LEN;
		memcpy(p, s->b, alen);
		memcpy(p + alen, d->b, alen);
		put_be16(p + 2 * alen, s->port);
		put_be16(p + 2 * alen + 2, d->port);
	}
	return (int)(PROXY_V2_HDR_LEN + body);
}

/* n as an IPv6 address: an IPv4 one becomes ::ffff:a.b.c.d. */
static void ip_to_v6(struct ip_norm *n)
{
	if (n->family != AF_INET)
		return;
	memmove(n->b + 12, n->b, 4);
	memcpy(n->b, v4_mapped_prefix, 12);
	n->family = AF_INET6;
}

int addr_proxy_header(int version, const struct sockaddr *src, const struct sockaddr *dst,
		      uint8_t *buf, size_t len)
{
	struct ip_norm s, d;

	if (!buf)
		return -EINVAL;
	ip_normalize(src, &s);
	ip_normalize(dst, &d);
	/* An IPv6 client (named by a PROXY header lb received) reached an IPv4 listener, or
	 * the other way round: one header carries one family, so both go as IPv6. */
	if (s.family != AF_UNSPEC && d.family != AF_UNSPEC && s.family != d.family) {
		ip_to_v6(&s);
		ip_to_v6(&d);
	}
	if (version == 1)
		return proxy_v1(&s, &d, buf, len);
	if (version == 2)
		return proxy_v2(&s, &d, buf, len);
	return -EINVAL;
}

#define PROXY_V1_MAX 107 /* "PROXY TCP6 " + two full IPv6 + two ports + CRLF */

/* A PROXY v1 port: decimal 0-65535, 1 to 5 digits, no sign, no leading zero. */
static bool proxy_port(const char *s, uint16_t *out)
{
	size_t n = strlen(s);
	unsigned long v;

	if (n < 1 || n > 5 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
		return false;
	v = strtoul(s, NULL, 10);
	if (v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

static int proxy_v1_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src, bool *local,
			  char *err, size_t errlen)
{
	char line[PROXY_V1_MAX + 1], *tok[7], *save = NULL;
	const uint8_t *crlf = NULL;
	int n = 0;

	if (memcmp(buf, "PROXY ", len < 6 ? len : 6) != 0) {
		snprintf(err, errlen, "does not start with \"PROXY \"");
		return -1;
	}
	for (size_t i = 0; i + 1 < len && i + 1 < PROXY_V1_MAX; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n') {
			crlf = buf + i;
			break;
		}
	if (!crlf) {
		if (len >= PROXY_V1_MAX) {
			snprintf(err, errlen, "no CRLF within %d bytes", PROXY_V1_MAX);
			return -1;
		}
		return 0;
	}
	size_t hlen = (size_t)(crlf - buf) + 2;
	memcpy(line, buf, hlen - 2);
	line[hlen - 2] = '\0';
	if (strlen(line) != hlen - 2) {
		snprintf(err, errlen, "a NUL byte in the v1 line");
		return -1;
	}
	for (char *t = strtok_r(line, " ", &save); t && n < 7; t = strtok_r(NULL, " ", &save))
		tok[n++] = t;
	if (n >= 2 && strcmp(tok[1], "UNKNOWN") == 0) {
		*local = true; /* the rest of the line is to be ignored */
		return (int)hlen;
	}
	if (n != 6 || (strcmp(tok[1], "TCP4") != 0 && strcmp(tok[1], "TCP6") != 0)) {
		snprintf(err, errlen, "expected \"PROXY TCP4|TCP6 SRC DST SPORT DPORT\"");
		return -1;
	}
	bool v4 = tok[1][3] == '4';
	struct sockaddr_storage ss = {0}, ds = {0};
	uint16_t sport, dport;
	int fam = v4 ? AF_INET : AF_INET6;
	void *sa = v4 ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
		      : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
	void *da = v4 ? (void *)&((struct sockaddr_in *)&ds)->sin_addr
		      : (void *)&((struct sockaddr_in6 *)&ds)->sin6_addr;
	if (inet_pton(fam, tok[2], sa) != 1 || inet_pton(fam, tok[3], da) != 1) {
		snprintf(err, errlen, "an address that is not %s", v4 ? "IPv4" : "IPv6");
		return -1;
	}
	if (!proxy_port(tok[4], &sport) || !proxy_port(tok[5], &dport)) {
		snprintf(err, errlen, "a port that is not 0-65535");
		return -1;
	}
	ss.ss_family = (sa_family_t)fam;
	if (v4)
		((struct sockaddr_in *)&ss)->sin_port = htons(sport);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons(sport);
	*src = ss;
	return (int)hlen;
}

static int proxy_v2_parse(const uint8_t *buf, size_t len, struct sockaddr_storage *src, bool *local,
			  char *err, size_t errlen)
{
	size_t cmp = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);

	if (memcmp(buf, proxy_v2_sig, cmp) != 0) {
		snprintf(err, errlen, "%s",
			 memcmp(buf, "PROXY ", len < 6 ? len : 6) == 0
			     ? "a v1 header where v2 is expected"
			     : "no v2 signature");
		return -1;
	}
	if (len < PROXY_V2_HDR_LEN)
		return 0;
	uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13];
	size_t body = (size_t)buf[14] << 8 | buf[15];
	if (ver != 2 || cmd > 1) {
		snprintf(err, errlen, "version/command byte 0x%02x", buf[12]);
		return -1;
	}
	if (PROXY_V2_HDR_LEN + body > ADDR_PROXY_IN_MAX) {
		snprintf(err, errlen, "%zu bytes, more than %d", PROXY_V2_HDR_LEN + body,
			 ADDR_PROXY_IN_MAX);
		return -1;
	}
	if (len < PROXY_V2_HDR_LEN + body)
		return 0;
	int hlen = (int)(PROXY_V2_HDR_LEN + body);
	if (cmd == 0 || fam == PROXY_V2_UNSPEC) {
		*local = true; /* LOCAL (a health check of the sender's) or no address */
		return hlen;
	}
	const uint8_t *p = buf + PROXY_V2_HDR_LEN;
	struct sockaddr_storage ss = {0};
	if (fam == PROXY_V2_TCP4 && body >= PROXY_V2_TCP4_BODY) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, p, 4);
		memcpy(&in->sin_port, p + 8, 2);
	} else if (fam == PROXY_V2_TCP6 && body >= PROXY_V2_TCP6_BODY) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, p, 16);
		memcpy(&in6->sin6_port, p + 32, 2);
	} else {
		snprintf(err, errlen,
			 "family 0x%02x with %zu address bytes (TCP over IPv4 or IPv6 "
			 "expected)",
			 fam, body);
		return -1;
	}
	*src = ss;
	return hlen;
}

int addr_proxy_parse(int version, const uint8_t *buf, size_t len, struct sockaddr_storage *src,
		     bool *local, char *err, size_t errlen)
{
	*local = false;
	if (len == 0)
		return 0;
	if (version == 1) {
		if (buf[0] == proxy_v2_sig[0] && len >= 2 && buf[1] == proxy_v2_sig[1]) {
			snprintf(err, errlen, "a v2 header where v1 is expected");
			return -1;
		}
		return proxy_v1_parse(buf, len, src, local, err, errlen);
	}
	return proxy_v2_parse(buf, len, src, local, err, errlen);
}

bool addr_ip_key(const struct sockaddr *sa, uint8_t key[16])
{
	struct ip_norm n;

	ip_normalize(sa, &n);
	if (n.family == AF_INET) {
		memcpy(key, v4_mapped_prefix, 12);
		memcpy(key + 12, n.b, 4);
	} else if (n.family == AF_INET6) {
		memcpy(key, n.b, 16);
	}
	return n.family != AF_UNSPEC;
}

uint32_t addr_hash_ip(const struct sockaddr *sa)
{
	struct ip_norm n;
	uint32_t h = FNV32_BASIS;
	size_t len;

	ip_normalize(sa, &n);
	len = n.family == AF_INET ? 4 : n.family == AF_INET6 ? 16 : 0;
	for (size_t i = 0; i < len; i++) {
		h ^= n.b[i];
		h *= FNV32_PRIME;
	}
	/* FNV-1a alone mixes the last bytes poorly into the high bits. */
	return hash_mix32(h);
}
