/* The health check modules (registered by name in health/check_types.c): each type is a
 * request builder and a reply parser over the bytes received so far, plus the options it
 * reads. Pure functions with no I/O, so that every parser is unit-tested on truncated,
 * oversized and malformed replies (tests/unit/test_checks.c). */
#include "health/checks.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* At most this many reply bytes are quoted in a "bad reply" reason. */
#define HC_EXCERPT_MAX 40

/* ---- shared helpers ---- */

/* snprintf-style copy of n bytes: returns n even when buf is too small (then untouched). */
static size_t copy_out(const void *src, size_t n, uint8_t *buf, size_t len)
{
	if (n <= len && n)
		memcpy(buf, src, n);
	return n;
}

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

void hc_bad_reply(char *reason, size_t rlen, const uint8_t *buf, size_t len)
{
	size_t off, n = min_size(len, HC_EXCERPT_MAX);
	bool cut = len > n;

	if (!rlen)
		return;
	/* The first line is what a human wants to see ("-NOAUTH ...", "HTTP/1.1 ..."). */
	for (size_t i = 1; i < n; i++) {
		if (buf[i] == '\r' || buf[i] == '\n') {
			n = i;
			cut = false;
			break;
		}
	}
	off = (size_t)snprintf(reason, rlen, "bad reply: \"");
	for (size_t i = 0; i < n && off + 5 < rlen; i++) {
		int w = isprint(buf[i]) && buf[i] != '"' && buf[i] != '\\'
			    ? snprintf(reason + off, rlen - off, "%c", buf[i])
			    : snprintf(reason + off, rlen - off, "\\x%02x", buf[i]);
		off += (size_t)w;
	}
	if (off < rlen)
		snprintf(reason + off, rlen - off, "%s\"", cut ? "..." : "");
}

enum hc_result hc_judge(const struct hc_check *c, const uint8_t *buf, size_t len,
			const struct cfg_health *h, char *reason, size_t rlen)
{
	enum hc_result r;

	if (!c->parse)
		return HC_PASS;
	if (rlen)
		reason[0] = '\0';
	r = c->parse(buf, len, h, reason, rlen);
	if (r == HC_NEED_MORE && len >= HC_REPLY_MAX) {
		snprintf(reason, rlen, "bad reply: no verdict in %zu bytes", len);
		return HC_FAIL;
	}
	if (r == HC_FAIL && rlen && !reason[0])
		snprintf(reason, rlen, "bad reply");
	return r;
}

/* ---- none and tcp: no bytes exchanged ---- */

const struct hc_check hc_check_none = {.name = "none"};

const struct hc_check hc_check_tcp = {.name = "tcp", .socktype = SOCK_STREAM};

/* ---- send_expect: write `send`, pass once the reply contains `expect` ---- */

static size_t send_request(const struct cfg_health *h, const char *host, uint8_t *buf, size_t len)
{
	(void)host;
	return h->send ? copy_out(h->send, h->send_len, buf, len) : 0;
}

static enum hc_result send_expect_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
					char *reason, size_t rlen)
{
	size_t elen = h->expect ? h->expect_len : 0;

	(void)reason;
	(void)rlen;
	if (!elen) /* config requires expect; be total anyway: any byte will do */
		return len ? HC_PASS : HC_NEED_MORE;
	return memmem(buf, len, h->expect, elen) ? HC_PASS : HC_NEED_MORE;
}

const struct hc_check hc_check_send_expect = {
    .name = "send_expect",
    .socktype = SOCK_STREAM,
    .options = {[HC_OPT_SEND] = HC_OPTIONAL, [HC_OPT_EXPECT] = HC_REQUIRED},
    .request = send_request,
    .parse = send_expect_parse,
};

/* ---- udp: one datagram out, one back containing `expect` (empty = any reply) ---- */

static enum hc_result udp_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				char *reason, size_t rlen)
{
	size_t elen = h->expect ? h->expect_len : 0;

	/* A datagram is a whole reply: it matches or it does not, never "more to come". */
	if (!elen || memmem(buf, len, h->expect, elen))
		return HC_PASS;
	hc_bad_reply(reason, rlen, buf, len);
	return HC_FAIL;
}

const struct hc_check hc_check_udp = {
    .name = "udp",
    .socktype = SOCK_DGRAM,
    .options = {[HC_OPT_SEND] = HC_REQUIRED, [HC_OPT_EXPECT] = HC_OPTIONAL},
    .request = send_request,
    .parse = udp_parse,
};

/* ---- http: GET path, judge the status line ---- */

/* A status line ("HTTP/1.1 503 Service Unavailable\r\n") longer than this is not one. */
#define HTTP_STATUS_LINE_MAX 512
/* "HTTP/1.1 200" is 12 bytes; the 13th ends the code (SP, or CR/LF with no reason). */
#define HTTP_CODE_END 12

static size_t http_request(const struct cfg_health *h, const char *host, uint8_t *buf, size_t len)
{
	/* HTTP/1.0 with Connection: close, so that the server ends the exchange itself. */
	int n = snprintf((char *)buf, len,
			 "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: lb-health\r\n"
			 "Connection: close\r\n\r\n",
			 h->path ? h->path : "/", host ? host : "");

	return n < 0 ? 0 : (size_t)n;
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static enum hc_result http_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				 char *reason, size_t rlen)
{
	static const char prefix[] = "HTTP/";
	const uint8_t *nl;
	int status;
	bool ok;

	if (memcmp(buf, prefix, min_size(len, sizeof(prefix) - 1)) != 0)
		goto bad;
	nl = memchr(buf, '\n', min_size(len, HTTP_STATUS_LINE_MAX));
	if (!nl) {
		if (len < HTTP_STATUS_LINE_MAX)
			return HC_NEED_MORE;
		snprintf(reason, rlen, "bad reply: status line longer than %d bytes",
			 HTTP_STATUS_LINE_MAX);
		return HC_FAIL;
	}
	/* HTTP-version SP 3DIGIT (SP reason | CRLF), RFC 9112 section 4 */
	if (nl - buf < HTTP_CODE_END || !is_digit(buf[5]) || buf[6] != '.' || !is_digit(buf[7]) ||
	    buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || !is_digit(buf[10]) ||
	    !is_digit(buf[11]) || !strchr(" \r\n", buf[HTTP_CODE_END]))
		goto bad;
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	ok = h->expect_status ? status == h->expect_status : status >= 200 && status < 400;
	if (ok)
		return HC_PASS;
	snprintf(reason, rlen, "status %d", status);
	return HC_FAIL;
bad:
	hc_bad_reply(reason, rlen, buf, len);
	return HC_FAIL;
}

const struct hc_check hc_check_http = {
    .name = "http",
    .socktype = SOCK_STREAM,
    .options = {[HC_OPT_PATH] = HC_OPTIONAL, [HC_OPT_EXPECT_STATUS] = HC_OPTIONAL},
    .request = http_request,
    .parse = http_parse,
};

/* ---- redis: inline PING, answered +PONG ---- */

static const char redis_ping[] = "PING\r\n";
static const char redis_pong[] = "+PONG\r\n";

/* With "role": inline INFO replication, answered by one bulk string ("$N\r\n", N bytes,
 * "\r\n") holding a "role:master" or "role:slave" line. */
static const char redis_info[] = "INFO replication\r\n";

static size_t redis_request(const struct cfg_health *h, const char *host, uint8_t *buf, size_t len)
{
	(void)host;
	if (h->role)
		return copy_out(redis_info, sizeof(redis_info) - 1, buf, len);
	return copy_out(redis_ping, sizeof(redis_ping) - 1, buf, len);
}

static enum hc_result redis_role_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				       char *reason, size_t rlen)
{
	const char *want = h->role == CFG_ROLE_MASTER ? "master" : "slave";
	const uint8_t *crlf = memchr(buf, '\n', len);
	size_t n = 0, head;

	if (len && buf[0] != '$') { /* "-NOAUTH ...": the error shows in the reason */
		hc_bad_reply(reason, rlen, buf, len);
		return HC_FAIL;
	}
	if (!crlf)
		return len > 24 ? (hc_bad_reply(reason, rlen, buf, len), HC_FAIL) : HC_NEED_MORE;
	head = (size_t)(crlf - buf) + 1;
	for (size_t i = 1; i + 2 < head; i++) {
		if (buf[i] < '0' || buf[i] > '9' || n > HC_REPLY_MAX) {
			hc_bad_reply(reason, rlen, buf, len);
			return HC_FAIL;
		}
		n = n * 10 + (size_t)(buf[i] - '0');
	}
	if (head < 4 || buf[head - 2] != '\r') {
		hc_bad_reply(reason, rlen, buf, len);
		return HC_FAIL;
	}
	if (len < head + n + 2)
		return HC_NEED_MORE; /* HC_REPLY_MAX bounds the wait */
	/* The role line, at the start of a line of the bulk string. */
	const char *body = (const char *)buf + head;
	for (size_t i = 0; i + 5 <= n; i++) {
		if ((i == 0 || body[i - 1] == '\n') && memcmp(body + i, "role:", 5) == 0) {
			size_t e = i + 5;
			while (e < n && body[e] != '\r' && body[e] != '\n')
				e++;
			size_t vlen = e - i - 5;
			if (vlen == strlen(want) && memcmp(body + i + 5, want, vlen) == 0)
				return HC_PASS;
			snprintf(reason, rlen, "role %.*s, not %s", (int)(vlen < 16 ? vlen : 16),
				 body + i + 5, want);
			return HC_FAIL;
		}
	}
	snprintf(reason, rlen, "bad reply: no role: line in INFO replication");
	return HC_FAIL;
}

static enum hc_result redis_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				  char *reason, size_t rlen)
{
	const size_t want = sizeof(redis_pong) - 1;

	if (h->role)
		return redis_role_parse(buf, len, h, reason, rlen);
	/* Fail on the first wrong byte: "-NOAUTH ..." or "-LOADING ..." shows in the reason. */
	if (memcmp(buf, redis_pong, min_size(len, want)) != 0) {
		hc_bad_reply(reason, rlen, buf, len);
		return HC_FAIL;
	}
	if (len < want)
		return HC_NEED_MORE;
	if (len > want) { /* one PING gets exactly one reply */
		snprintf(reason, rlen, "bad reply: %zu bytes after +PONG", len - want);
		return HC_FAIL;
	}
	return HC_PASS;
}

const struct hc_check hc_check_redis = {
    .name = "redis",
    .socktype = SOCK_STREAM,
    .options = {[HC_OPT_ROLE] = HC_OPTIONAL},
    .request = redis_request,
    .parse = redis_parse,
};

/* ---- postgres: SSLRequest, answered by the single byte 'S' or 'N' ---- */

/* Int32 length 8, Int32 code 80877103 (0x04d2162f), both big-endian: PostgreSQL protocol,
 * "SSLRequest" message. A server answers one byte and then waits; any server that speaks
 * the protocol answers it before authentication, so no credentials are needed. With 'S' the
 * server expects a TLS handshake next and may log the close as an SSL EOF. */
static const uint8_t pg_ssl_request[8] = {0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f};

static size_t postgres_request(const struct cfg_health *h, const char *host, uint8_t *buf,
			       size_t len)
{
	(void)h;
	(void)host;
	return copy_out(pg_ssl_request, sizeof(pg_ssl_request), buf, len);
}

static enum hc_result postgres_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				     char *reason, size_t rlen)
{
	(void)h;
	if (!len)
		return HC_NEED_MORE;
	if (buf[0] == 'E') { /* ErrorResponse: a server that refuses us before the handshake */
		snprintf(reason, rlen, "bad reply: error response to SSLRequest");
		return HC_FAIL;
	}
	if (buf[0] != 'S' && buf[0] != 'N') {
		hc_bad_reply(reason, rlen, buf, len);
		return HC_FAIL;
	}
	if (len > 1) {
		snprintf(reason, rlen, "bad reply: %zu bytes after '%c'", len - 1, buf[0]);
		return HC_FAIL;
	}
	return HC_PASS;
}

const struct hc_check hc_check_postgres = {
    .name = "postgres",
    .socktype = SOCK_STREAM,
    .request = postgres_request,
    .parse = postgres_parse,
};

/* ---- mysql: the server speaks first, a greeting packet of protocol version 10 ---- */

/* Packet header: 3-byte little-endian payload length, 1-byte sequence number. */
#define MYSQL_HEADER	  4
#define MYSQL_PROTOCOL_10 10
#define MYSQL_ERR_PACKET  0xff
/* A greeting is ~80 bytes (version string, 20-byte scramble, capabilities, plugin name);
 * a payload longer than this is not one. */
#define MYSQL_GREETING_MAX 1024

/* Closing after the greeting without a handshake response counts against the server's
 * max_connect_errors for our address on some MySQL versions; operators raise it. */
static enum hc_result mysql_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				  char *reason, size_t rlen)
{
	size_t plen;
	const uint8_t *payload = buf + MYSQL_HEADER;

	(void)h;
	if (len < MYSQL_HEADER)
		return HC_NEED_MORE;
	plen = (size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16;
	if (plen == 0 || plen > MYSQL_GREETING_MAX) {
		snprintf(reason, rlen, "bad reply: packet length %zu is no greeting", plen);
		return HC_FAIL;
	}
	if (buf[3] != 0) {
		snprintf(reason, rlen, "bad reply: sequence %u, expected 0", buf[3]);
		return HC_FAIL;
	}
	if (len == MYSQL_HEADER)
		return HC_NEED_MORE;
	if (payload[0] != MYSQL_PROTOCOL_10 && payload[0] != MYSQL_ERR_PACKET) {
		snprintf(reason, rlen, "bad reply: protocol version %u, expected 10", payload[0]);
		return HC_FAIL;
	}
	if (len < MYSQL_HEADER + plen)
		return HC_NEED_MORE;
	if (payload[0] == MYSQL_ERR_PACKET) { /* 0xff, 2-byte code, message ("Too many ...") */
		if (plen < 3) {
			snprintf(reason, rlen, "bad reply: error packet");
			return HC_FAIL;
		}
		hc_bad_reply(reason, rlen, payload + 3, plen - 3);
		return HC_FAIL;
	}
	if (len > MYSQL_HEADER + plen) {
		snprintf(reason, rlen, "bad reply: %zu bytes after the greeting",
			 len - MYSQL_HEADER - plen);
		return HC_FAIL;
	}
	if (!memchr(payload + 1, '\0', plen - 1)) { /* NUL-terminated server version */
		snprintf(reason, rlen, "bad reply: greeting without a server version");
		return HC_FAIL;
	}
	return HC_PASS;
}

const struct hc_check hc_check_mysql = {
    .name = "mysql",
    .socktype = SOCK_STREAM,
    .parse = mysql_parse,
};
