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

/* ---- agent: one line, up to a newline (or the agent closing: probe_read) ---- */

static enum hc_result agent_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				  char *reason, size_t rlen)
{
	(void)h;
	if (memchr(buf, '\n', len))
		return HC_PASS;
	if (len >= HC_AGENT_LINE_MAX) {
		snprintf(reason, rlen, "agent line longer than %d bytes", HC_AGENT_LINE_MAX);
		return HC_FAIL;
	}
	return HC_NEED_MORE;
}

const struct hc_check hc_check_agent = {
    .name = "agent", .socktype = SOCK_STREAM, .parse = agent_parse};

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

/* ---- mysql: the server speaks first, a greeting packet of protocol version 10; with
 * "user", lb logs in as that user with no password and quits ---- */

/* Packet header: 3-byte little-endian payload length, 1-byte sequence number. */
#define MYSQL_HEADER	  4
#define MYSQL_PROTOCOL_10 10
#define MYSQL_OK_PACKET	  0x00
#define MYSQL_AUTH_SWITCH 0xfe
#define MYSQL_ERR_PACKET  0xff
/* A greeting is ~80 bytes (version string, 20-byte scramble, capabilities, plugin name), and
 * an OK or ERR packet fewer than 600 (MYSQL_ERRMSG_SIZE 512); a payload longer than this is
 * neither. */
#define MYSQL_PACKET_MAX 1024
/* Capability flags of the HandshakeResponse41, what HAProxy's mysql-check sends:
 * CLIENT_PROTOCOL_41 (0x200) | CLIENT_SECURE_CONNECTION (0x8000), so the auth response is one
 * length byte (0: no password). No CLIENT_PLUGIN_AUTH: the server takes the response as
 * mysql_native_password's, which accepts an empty one for a user without a password. */
#define MYSQL_CLIENT_CAPS 0x00008200u
/* Largest packet we would take (16 MiB, the protocol's packet size) and charset 33
 * (utf8_general_ci), as clients send them. */
#define MYSQL_MAX_PACKET 0x01000000u
#define MYSQL_CHARSET	 33
/* Fixed part of HandshakeResponse41 before the user name: caps 4, max packet 4, charset 1,
 * 23 reserved zero bytes. */
#define MYSQL_RESPONSE_FIXED 32
/* The server's reply to our response comes as sequence 2 (greeting 0, response 1). */
#define MYSQL_REPLY_SEQ 2
#define MYSQL_COM_QUIT	0x01

static void put_le24(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le24(p, v);
	p[3] = (uint8_t)(v >> 24);
}

/* With a user: HandshakeResponse41 (sequence 1) and COM_QUIT (sequence 0 of a new command),
 * sent together as soon as the connection is up (HAProxy 1.x did the same): the server reads
 * them after its greeting, answers OK or ERR, then takes the QUIT and closes its side. Without
 * a user nothing: the greeting alone decides, and the server counts the close as an aborted
 * connect (README "Health checks"). */
static size_t mysql_request(const struct cfg_health *h, const char *host, uint8_t *buf, size_t len)
{
	uint8_t p[MYSQL_HEADER + MYSQL_RESPONSE_FIXED + CFG_MYSQL_USER_MAX + 2 + MYSQL_HEADER + 1];
	size_t ulen = h->user ? strlen(h->user) : 0, n = MYSQL_HEADER;

	(void)host;
	if (!ulen || ulen > CFG_MYSQL_USER_MAX) /* the config refuses both */
		return 0;
	memset(p, 0, sizeof(p));
	put_le32(p + n, MYSQL_CLIENT_CAPS);
	put_le32(p + n + 4, MYSQL_MAX_PACKET);
	p[n + 8] = MYSQL_CHARSET;
	n += MYSQL_RESPONSE_FIXED;	  /* the 23 reserved bytes stay zero */
	memcpy(p + n, h->user, ulen + 1); /* NUL-terminated */
	n += ulen + 1;
	p[n++] = 0; /* auth response length: no password */
	put_le24(p, n - MYSQL_HEADER);
	p[3] = 1;
	put_le24(p + n, 1); /* COM_QUIT: payload of one byte, sequence 0 */
	p[n + 3] = 0;
	p[n + 4] = MYSQL_COM_QUIT;
	n += MYSQL_HEADER + 1;
	return copy_out(p, n, buf, len);
}

/* The packet at buf: HC_NEED_MORE until its header and first payload byte are in, else
 * HC_PASS with its payload length in *plen, or HC_FAIL with the reason. */
static enum hc_result mysql_packet(const uint8_t *buf, size_t len, unsigned seq, const char *what,
				   size_t *plen, char *reason, size_t rlen)
{
	if (len < MYSQL_HEADER)
		return HC_NEED_MORE;
	*plen = (size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16;
	if (*plen == 0 || *plen > MYSQL_PACKET_MAX) {
		snprintf(reason, rlen, "bad reply: packet length %zu is no %s", *plen, what);
		return HC_FAIL;
	}
	if (buf[3] != seq) {
		snprintf(reason, rlen, "bad reply: sequence %u, expected %u", buf[3], seq);
		return HC_FAIL;
	}
	return len == MYSQL_HEADER ? HC_NEED_MORE : HC_PASS;
}

/* ERR packet payload (0xff, 2-byte code, with protocol 41 '#' and a 5-byte SQLSTATE, then
 * the message): "error 1045: Access denied for user ...", the message escaped and cut. */
static void mysql_error(const uint8_t *p, size_t plen, char *reason, size_t rlen)
{
	size_t off = 3;
	int n;

	if (plen < 3) {
		snprintf(reason, rlen, "bad reply: error packet");
		return;
	}
	if (plen >= 9 && p[3] == '#')
		off = 9;
	n = snprintf(reason, rlen, "error %u: ", (unsigned)p[1] | (unsigned)p[2] << 8);
	for (size_t i = off; i < plen && n > 0 && (size_t)n + 5 < rlen; i++)
		n += isprint(p[i]) ? snprintf(reason + n, rlen - (size_t)n, "%c", p[i])
				   : snprintf(reason + n, rlen - (size_t)n, "\\x%02x", p[i]);
}

/* The server's answer to our login (sequence 2): OK passes, ERR fails with its message. */
static enum hc_result mysql_login_parse(const uint8_t *buf, size_t len, char *reason, size_t rlen)
{
	size_t plen;
	enum hc_result r =
	    mysql_packet(buf, len, MYSQL_REPLY_SEQ, "login reply", &plen, reason, rlen);
	const uint8_t *p = buf + MYSQL_HEADER;

	if (r != HC_PASS)
		return r;
	if (p[0] != MYSQL_OK_PACKET && p[0] != MYSQL_ERR_PACKET && p[0] != MYSQL_AUTH_SWITCH) {
		hc_bad_reply(reason, rlen, p, len - MYSQL_HEADER);
		return HC_FAIL;
	}
	if (len < MYSQL_HEADER + plen)
		return HC_NEED_MORE;
	if (p[0] == MYSQL_ERR_PACKET) {
		mysql_error(p, plen, reason, rlen);
		return HC_FAIL;
	}
	if (p[0] == MYSQL_AUTH_SWITCH) { /* 0xfe, the plugin's name NUL-terminated, its data */
		const uint8_t *nul = memchr(p + 1, '\0', plen - 1);
		size_t n = nul ? (size_t)(nul - p - 1) : 0;
		snprintf(reason, rlen, "auth switch to %.*s: not supported (no password expected)",
			 (int)min_size(n, 32), (const char *)p + 1);
		return HC_FAIL;
	}
	if (len > MYSQL_HEADER + plen) {
		snprintf(reason, rlen, "bad reply: %zu bytes after the OK packet",
			 len - MYSQL_HEADER - plen);
		return HC_FAIL;
	}
	return HC_PASS;
}

static enum hc_result mysql_parse(const uint8_t *buf, size_t len, const struct cfg_health *h,
				  char *reason, size_t rlen)
{
	size_t plen;
	enum hc_result r = mysql_packet(buf, len, 0, "greeting", &plen, reason, rlen);
	const uint8_t *payload = buf + MYSQL_HEADER;

	if (r != HC_PASS)
		return r;
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
	if (!memchr(payload + 1, '\0', plen - 1)) { /* NUL-terminated server version */
		snprintf(reason, rlen, "bad reply: greeting without a server version");
		return HC_FAIL;
	}
	if (h->user)
		return mysql_login_parse(buf + MYSQL_HEADER + plen, len - MYSQL_HEADER - plen,
					 reason, rlen);
	if (len > MYSQL_HEADER + plen) {
		snprintf(reason, rlen, "bad reply: %zu bytes after the greeting",
			 len - MYSQL_HEADER - plen);
		return HC_FAIL;
	}
	return HC_PASS;
}

const struct hc_check hc_check_mysql = {
    .name = "mysql",
    .socktype = SOCK_STREAM,
    .options = {[HC_OPT_USER] = HC_OPTIONAL},
    .request = mysql_request,
    .parse = mysql_parse,
};
