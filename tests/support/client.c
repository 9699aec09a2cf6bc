/* Client-side helpers for the suites: free ports, connects from chosen loopback sources,
 * line reads and close detection. Every call is bounded by a timeout. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Receive/send timeout put on every t_connect socket: no test may hang on a silent peer. */
#define T_SOCKET_TIMEOUT_MS 5000
/* How long t_fetch_tag waits for the tag line. */
#define T_TAG_TIMEOUT_MS 3000
/* Tags are backend names; test backends have short ones. */
#define T_TAG_MAX 64

uint64_t t_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

int t_free_port(void)
{
	struct sockaddr_in sin = loopback(0);
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = -1;

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
		port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

int t_free_port_any(void)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	socklen_t len = sizeof(sin6);
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), off = 0, port = -1;

	if (fd < 0)
		return -1;
	/* [::] with IPV6_V6ONLY off: a port no IPv4 or IPv6 socket holds on any address */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)) == 0 &&
	    bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin6, &len) == 0)
		port = ntohs(sin6.sin6_port);
	close(fd);
	return port;
}

/* ip (IPv4 or IPv6, numeric) and port into ss; false if ip is neither. */
static bool ip_port(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return true;
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return true;
	}
	return false;
}

int t_connect_to(const char *src_ip, const char *dst_ip, int port)
{
	struct sockaddr_storage dst, src;
	socklen_t dlen, slen;
	struct timeval tv = {T_SOCKET_TIMEOUT_MS / 1000, (T_SOCKET_TIMEOUT_MS % 1000) * 1000};
	int fd;

	if (!ip_port(dst_ip, port, &dst, &dlen))
		return -1;
	fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Linux bounds a blocking connect by SO_SNDTIMEO too */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		goto fail;
	if (src_ip && (!ip_port(src_ip, 0, &src, &slen) || src.ss_family != dst.ss_family ||
		       bind(fd, (struct sockaddr *)&src, slen) < 0))
		goto fail;
	if (connect(fd, (struct sockaddr *)&dst, dlen) < 0)
		goto fail;
	return fd;
fail:;
	int err = errno;
	close(fd);
	errno = err;
	return -1;
}

int t_connect(const char *src_ip, int port)
{
	return t_connect_to(src_ip, "127.0.0.1", port);
}

/* Wait until fd is readable or the deadline passes. 1 readable, 0 timeout, -1 error. */
static int wait_readable(int fd, uint64_t deadline)
{
	for (;;) {
		uint64_t now = t_now_ms();
		if (now >= deadline)
			return 0;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)(deadline - now));
		if (r > 0)
			return 1;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

int t_read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	size_t n = 0;

	if (len == 0)
		return -1;
	/* one byte at a time: whatever follows the line stays in the socket for the caller */
	for (;;) {
		char ch;
		if (wait_readable(fd, deadline) != 1)
			return -1;
		ssize_t r = recv(fd, &ch, 1, MSG_DONTWAIT);
		if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return n == 0 ? 0 : -1;
		if (ch == '\n') {
			buf[n] = '\0';
			return (int)n;
		}
		if (n + 1 >= len)
			return -1;
		buf[n++] = ch;
	}
}

int t_fetch_tag(const char *src_ip, int port, char *buf, size_t len)
{
	int fd = t_connect(src_ip, port);

	if (fd < 0)
		return -1;
	int n = t_read_line(fd, buf, len, T_TAG_TIMEOUT_MS);
	close(fd);
	return n > 0 ? 0 : -1;
}

int t_wait_closed(int fd, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	char buf[4096];

	for (;;) {
		int w = wait_readable(fd, deadline);
		if (w == 0)
			return -1;
		if (w < 0)
			return 1;
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == 0)
			return 0;
		if (r > 0)
			continue; /* data before the close is not what we wait for */
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			continue;
		return 1; /* ECONNRESET, or any other error ending the connection */
	}
}

bool t_send_all(int fd, const void *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(fd, (const char *)buf + off, len - off, MSG_NOSIGNAL);

		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

bool t_wait_readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, timeout_ms) == 1;
}

bool t_recv_exact(int fd, void *buf, size_t len, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	size_t got = 0;

	while (got < len) {
		uint64_t now = t_now_ms();
		ssize_t n;

		if (now >= deadline || !t_wait_readable(fd, (int)(deadline - now)))
			return false;
		n = recv(fd, (char *)buf + got, len - got, 0);
		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return true;
}

bool t_echo_byte(int fd, char c, int timeout_ms)
{
	char r = 0;

	return t_send_all(fd, &c, 1) && t_recv_exact(fd, &r, 1, timeout_ms) && r == c;
}

int t_local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return -1;
	return ntohs(sa.sin_port);
}

int t_fetch(const struct t_backends *set, const char *src, int port)
{
	char tag[T_TAG_MAX];

	if (t_fetch_tag(src, port, tag, sizeof(tag)) < 0)
		return -1;
	return t_backends_index(set, tag);
}

int t_fetch_many(const struct t_backends *set, int port, int n, unsigned *counts)
{
	int failed = 0;

	for (int i = 0; i < n; i++) {
		int b = t_fetch(set, NULL, port);
		if (b < 0)
			failed++;
		else
			counts[b]++;
	}
	return failed;
}

/* Largest answer t_http_get reads: a metrics page of the test configs is a few KiB. */
#define T_HTTP_MAX (1 << 20)

char *t_http_get(int port, const char *path, int *status)
{
	char req[256], *buf = malloc(T_HTTP_MAX), *out = NULL;
	size_t len = 0;
	int fd = buf ? t_connect(NULL, port) : -1;

	*status = 0;
	if (fd < 0) {
		free(buf);
		return NULL;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	if (t_send_all(fd, req, strlen(req)))
		for (ssize_t n; (n = recv(fd, buf + len, T_HTTP_MAX - 1 - len, 0)) > 0;)
			len += (size_t)n; /* lb closes after the answer; t_connect set a timeout */
	close(fd);
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", status) == 1) {
		char *body = strstr(buf, "\r\n\r\n");
		out = strdup(body ? body + 4 : "");
	}
	free(buf);
	return out;
}
