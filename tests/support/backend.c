/* In-process test backends: one thread and one epoll loop per backend, non-blocking sockets,
 * any number of connections. Tests, the demo server (lb-testsrv) and the benchmark use them
 * as the far side of lb; their behaviour per mode is described in support.h. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Per-connection output buffer: large enough to keep a loopback stream busy, small enough
 * that thousands of idle connections stay cheap (allocated on first use). */
#define TB_BUF_SIZE (256 * 1024)
/* Longest HTTP request head we accept; anything longer is answered with 431 and closed. */
#define TB_HTTP_HEAD_MAX (16 * 1024)
/* Stop reading HTTP requests while this much response data waits (pipelining backpressure). */
#define TB_HTTP_OUT_HIGH (64 * 1024)
/* How long the control functions wait for the backend thread to act on a command. */
#define TB_CMD_TIMEOUT_MS 5000
/* After EMFILE/ENFILE, stop accepting this long instead of spinning on a ready listener. */
#define TB_ACCEPT_PAUSE_MS 50
#define TB_MAX_EVENTS	   128
/* "[" + 39-char IPv6 + "]:" + 5-digit port + NUL, rounded up */
#define TB_ADDR_MAX 64
/* Largest UDP payload a test backend answers (IPv4's limit). */
#define TB_UDP_MAX 65507
/* How often tb_wait_active looks: fine enough that a wait ends within 5 ms of its event. */
#define TB_WAIT_STEP_US 5000

enum tb_cmd { TB_CMD_NONE, TB_CMD_STOP, TB_CMD_RESTART, TB_CMD_QUIT };

struct tb_conn {
	int fd;
	unsigned idx;	  /* accept order, for TB_RECORD */
	uint32_t events;  /* epoll interest currently registered */
	bool rd_eof;	  /* peer sent FIN */
	bool close_after; /* HTTP: close once the output is written */
	uint8_t *out;	  /* bytes to send: [out_off, out_off + out_len) */
	size_t out_off, out_len;
	uint8_t *in; /* HTTP: request bytes not yet parsed */
	size_t in_len;
	size_t body_left; /* HTTP: request body bytes still to skip */
	struct tb_conn *prev, *next;
};

struct tb_record {
	uint8_t data[TB_RECORD_MAX];
	size_t len;
};

struct tbackend {
	enum tb_mode mode;
	char name[128];
	char address[TB_ADDR_MAX];
	struct sockaddr_storage ss; /* bound address, with the real port */
	socklen_t sslen;
	int port;

	int listen_fd; /* -1 while stopped */
	int epfd;
	int wake_fd; /* eventfd: a command is waiting */
	pthread_t thread;
	bool thread_running;
	uint64_t accept_paused_until;

	struct tb_conn *conns; /* owned by the thread */
	_Atomic unsigned accepted, active;
	_Atomic unsigned peak;	    /* most connections open at once */
	uint8_t scratch[64 * 1024]; /* TB_SINK reads into this */

	pthread_mutex_t lock; /* protects cmd*, records */
	pthread_cond_t cond;
	enum tb_cmd cmd;
	int cmd_result;
	bool cmd_done;
	struct tb_record *records;
	size_t nrecords, records_cap;
};

/* epoll data pointers that are not connections */
static char tag_listener, tag_wake;

static const char *const mode_names[] = {
    [TB_ECHO] = "echo",		[TB_TAGGED] = "tagged",		[TB_HTTP] = "http",
    [TB_SINK] = "sink",		[TB_BLACKHOLE] = "blackhole",	[TB_RECORD] = "record",
    [TB_UDP_ECHO] = "udp-echo", [TB_UDP_TAGGED] = "udp-tagged", [TB_UDP_ECHO_GRO] = "udp-echo-gro",
};

int tb_mode_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(s, mode_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *tb_mode_name(enum tb_mode mode)
{
	return (unsigned)mode < sizeof(mode_names) / sizeof(mode_names[0]) ? mode_names[mode] : "?";
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *h = s;
	size_t hlen;
	char *end;

	memset(ss, 0, sizeof(*ss));
	colon = strrchr(s, ':');
	if (!colon)
		return -EINVAL;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hlen < 2 || s[hlen - 1] != ']')
			return -EINVAL;
		h = s + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
		return -EINVAL;

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool is_udp(enum tb_mode mode)
{
	return mode == TB_UDP_ECHO || mode == TB_UDP_TAGGED || mode == TB_UDP_ECHO_GRO;
}

/* A non-blocking listener on ss (a bound UDP socket for the UDP modes); SO_REUSEADDR so that a
 * restart can bind the same port while old connections sit in TIME_WAIT. The fd or -errno. */
static int open_listener(enum tb_mode mode, const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, fd, err;
	bool udp = is_udp(mode);

	fd = socket(ss->ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		goto fail;
	if (!udp && listen(fd, SOMAXCONN) < 0)
		goto fail;
	if (mode == TB_UDP_ECHO_GRO && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof(one)) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

/* ---- connections ---- */

static void conn_free(struct tbackend *tb, struct tb_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		tb->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	/* Deregister explicitly: close() alone keeps the registration alive while a forked child
	 * (an lb being spawned) still holds a copy of the fd, and a late event would then name
	 * this freed connection. */
	if (tb->mode != TB_BLACKHOLE)
		epoll_ctl(tb->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c->in);
	free(c);
	atomic_fetch_sub(&tb->active, 1);
}

static void close_all(struct tbackend *tb)
{
	while (tb->conns)
		conn_free(tb, tb->conns);
}

/* Room for more output: compact, allocating the buffer on first use. */
static size_t out_room(struct tb_conn *c)
{
	if (!c->out) {
		c->out = malloc(TB_BUF_SIZE);
		if (!c->out)
			return 0;
	}
	if (c->out_len == 0)
		c->out_off = 0;
	if (c->out_off + c->out_len == TB_BUF_SIZE && c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len);
		c->out_off = 0;
	}
	return TB_BUF_SIZE - c->out_off - c->out_len;
}

static bool out_append(struct tb_conn *c, const void *data, size_t len)
{
	if (out_room(c) < len)
		return false;
	memcpy(c->out + c->out_off + c->out_len, data, len);
	c->out_len += len;
	return true;
}

static void record(struct tbackend *tb, struct tb_conn *c, const uint8_t *data, size_t len)
{
	pthread_mutex_lock(&tb->lock);
	if (c->idx < tb->nrecords) {
		struct tb_record *r = &tb->records[c->idx];
		size_t n = TB_RECORD_MAX - r->len < len ? TB_RECORD_MAX - r->len : len;
		memcpy(r->data + r->len, data, n);
		r->len += n;
	}
	pthread_mutex_unlock(&tb->lock);
}

/* Read what fits into the output buffer (echo modes). 0, or -1 when the connection is dead. */
static int read_echo(struct tbackend *tb, struct tb_conn *c)
{
	for (;;) {
		size_t room = out_room(c);
		if (room == 0)
			return c->out ? 0 : -1; /* full: wait for the peer to read (backpressure) */
		uint8_t *dst = c->out + c->out_off + c->out_len;
		ssize_t n = recv(c->fd, dst, room, 0);
		if (n > 0) {
			if (tb->mode == TB_RECORD)
				record(tb, c, dst, (size_t)n);
			c->out_len += (size_t)n;
			continue;
		}
		if (n == 0) {
			c->rd_eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
}

static int read_sink(struct tbackend *tb, struct tb_conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, tb->scratch, sizeof(tb->scratch), 0);
		if (n > 0)
			continue;
		if (n == 0) {
			c->rd_eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
}

/* Does the header block (NUL-terminated) contain "name: value" (case-insensitive)? */
static bool header_has(const char *head, const char *name, const char *value)
{
	size_t nlen = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
			continue;
		const char *v = line + nlen + 1;
		const char *eol = strstr(v, "\r\n");
		size_t vlen = eol ? (size_t)(eol - v) : strlen(v);
		for (size_t i = 0; i + strlen(value) <= vlen; i++)
			if (strncasecmp(v + i, value, strlen(value)) == 0)
				return true;
	}
	return false;
}

static long header_long(const char *head, const char *name)
{
	size_t nlen = strlen(name);

	for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':')
			return strtol(line + nlen + 1, NULL, 10);
	}
	return 0;
}

/* Answer every complete request in c->in. 0, or -1 on a malformed request. */
static int http_serve(struct tbackend *tb, struct tb_conn *c)
{
	char resp[512];

	while (c->in_len > 0 && !c->close_after) {
		if (c->body_left > 0) {
			size_t n = c->body_left < c->in_len ? c->body_left : c->in_len;
			memmove(c->in, c->in + n, c->in_len - n);
			c->in_len -= n;
			c->body_left -= n;
			continue;
		}
		if (c->out_len > TB_HTTP_OUT_HIGH)
			return 0;
		c->in[c->in_len] = '\0';
		char *end = strstr((char *)c->in, "\r\n\r\n");
		if (!end)
			return c->in_len >= TB_HTTP_HEAD_MAX ? -1 : 0;
		size_t head_len = (size_t)(end - (char *)c->in) + 4;
		end[2] = '\0'; /* keep the last header's CRLF for header_has() */
		const char *head = (const char *)c->in;
		bool http10 = strstr(head, "HTTP/1.0\r\n") != NULL;
		if (header_has(head, "Connection", "close") ||
		    (http10 && !header_has(head, "Connection", "keep-alive")))
			c->close_after = true;
		long body = header_long(head, "Content-Length");
		c->body_left = body > 0 ? (size_t)body : 0;
		size_t nlen = strlen(tb->name) + 1;
		int n = snprintf(resp, sizeof(resp),
				 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				 "Content-Length: %zu\r\n%s\r\n%s\n",
				 nlen, c->close_after ? "Connection: close\r\n" : "", tb->name);
		if (!out_append(c, resp, (size_t)n))
			return -1;
		memmove(c->in, c->in + head_len, c->in_len - head_len);
		c->in_len -= head_len;
	}
	return 0;
}

static int read_http(struct tbackend *tb, struct tb_conn *c)
{
	if (!c->in) {
		c->in = malloc(TB_HTTP_HEAD_MAX + 1);
		if (!c->in)
			return -1;
	}
	for (;;) {
		if (c->close_after || c->out_len > TB_HTTP_OUT_HIGH)
			return 0;
		size_t room = TB_HTTP_HEAD_MAX - c->in_len;
		if (room == 0)
			return -1; /* a request head that never ends */
		ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			if (http_serve(tb, c) < 0)
				return -1;
			continue;
		}
		if (n == 0) {
			c->rd_eof = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
}

static int write_out(struct tb_conn *c)
{
	while (c->out_len > 0) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			c->out_len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
	}
	return 0;
}

static bool wants_read(const struct tbackend *tb, const struct tb_conn *c)
{
	if (c->rd_eof)
		return false;
	switch (tb->mode) {
	case TB_SINK:
		return true;
	case TB_HTTP:
		return !c->close_after && c->out_len <= TB_HTTP_OUT_HIGH;
	case TB_BLACKHOLE:
		return false;
	default:
		return c->out_len < TB_BUF_SIZE;
	}
}

/* After any progress: finish the connection, or update its epoll interest. */
static void conn_settle(struct tbackend *tb, struct tb_conn *c)
{
	bool done_reading = c->rd_eof || c->close_after;

	if (done_reading && c->out_len == 0) {
		/* all echoed (or the last response sent): our FIN follows the data */
		shutdown(c->fd, SHUT_WR);
		conn_free(tb, c);
		return;
	}
	uint32_t ev = (wants_read(tb, c) ? EPOLLIN : 0) | (c->out_len ? EPOLLOUT : 0);
	if (ev != c->events) {
		struct epoll_event e = {.events = ev, .data.ptr = c};
		if (epoll_ctl(tb->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) {
			conn_free(tb, c);
			return;
		}
		c->events = ev;
	}
}

static void conn_event(struct tbackend *tb, struct tb_conn *c, uint32_t ev)
{
	int rc = 0;

	if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (tb->mode == TB_SINK)
			rc = read_sink(tb, c);
		else if (tb->mode == TB_HTTP)
			rc = read_http(tb, c);
		else if (wants_read(tb, c))
			rc = read_echo(tb, c);
	}
	if (rc == 0 && (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR) || c->out_len))
		rc = write_out(c);
	if (rc == 0 && tb->mode == TB_HTTP && c->in_len && !c->close_after)
		rc = http_serve(tb, c); /* requests held back by backpressure */
	if (rc == 0 && (ev & EPOLLERR) && c->out_len == 0 && !c->rd_eof)
		rc = -1;
	if (rc < 0) {
		conn_free(tb, c);
		return;
	}
	conn_settle(tb, c);
}

static void conn_new(struct tbackend *tb, int fd)
{
	struct tb_conn *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->idx = atomic_fetch_add(&tb->accepted, 1);
	unsigned now = atomic_fetch_add(&tb->active, 1) + 1, peak = atomic_load(&tb->peak);
	while (now > peak && !atomic_compare_exchange_weak(&tb->peak, &peak, now))
		;
	c->next = tb->conns;
	if (tb->conns)
		tb->conns->prev = c;
	tb->conns = c;

	if (tb->mode == TB_RECORD) {
		pthread_mutex_lock(&tb->lock);
		if (tb->nrecords == tb->records_cap) {
			size_t cap = tb->records_cap ? tb->records_cap * 2 : 64;
			struct tb_record *r = realloc(tb->records, cap * sizeof(*r));
			if (r) {
				tb->records = r;
				tb->records_cap = cap;
			}
		}
		if (tb->nrecords < tb->records_cap && c->idx == tb->nrecords)
			tb->records[tb->nrecords++].len = 0;
		pthread_mutex_unlock(&tb->lock);
	}
	if (tb->mode == TB_BLACKHOLE)
		return; /* held open, never polled, until stop */
	if (tb->mode == TB_TAGGED) {
		char line[sizeof(tb->name) + 1];
		int n = snprintf(line, sizeof(line), "%s\n", tb->name);
		if (!out_append(c, line, (size_t)n)) {
			conn_free(tb, c);
			return;
		}
		write_out(c);
	}
	struct epoll_event e = {.events = 0, .data.ptr = c};
	if (epoll_ctl(tb->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		conn_free(tb, c);
		return;
	}
	conn_settle(tb, c);
}

static void set_listening(struct tbackend *tb, bool on)
{
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &tag_listener};

	if (tb->listen_fd >= 0)
		epoll_ctl(tb->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, tb->listen_fd, &e);
}

static void accept_ready(struct tbackend *tb)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(tb->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(tb, fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			set_listening(tb, false);
			tb->accept_paused_until = now_ms() + TB_ACCEPT_PAUSE_MS;
		}
		return;
	}
}

/* TB_UDP_ECHO_GRO: echo one message as it came; a GRO run goes back as one GSO message.
 * false when nothing is left to read. */
static bool udp_echo_gro(struct tbackend *tb)
{
	static _Thread_local uint8_t buf[65536];
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
	struct sockaddr_storage from;
	struct iovec v = {buf, sizeof(buf)};
	struct msghdr mh = {.msg_name = &from,
			    .msg_namelen = sizeof(from),
			    .msg_iov = &v,
			    .msg_iovlen = 1,
			    .msg_control = ctl,
			    .msg_controllen = sizeof(ctl)};
	ssize_t n = recvmsg(tb->listen_fd, &mh, 0);
	if (n < 0)
		return false;
	int seg = 0;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	if (cm && cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO)
		memcpy(&seg, CMSG_DATA(cm), sizeof(seg));
	unsigned count = seg > 0 && n > seg ? (unsigned)((n + seg - 1) / seg) : 1;
	atomic_fetch_add(&tb->accepted, count);
	v.iov_len = (size_t)n;
	mh.msg_control = NULL;
	mh.msg_controllen = 0;
	if (count > 1) {
		uint16_t size = (uint16_t)seg;
		memset(ctl, 0, sizeof(ctl));
		mh.msg_control = ctl;
		mh.msg_controllen = CMSG_SPACE(sizeof(size));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(size));
		memcpy(CMSG_DATA(cm), &size, sizeof(size));
	}
	(void)sendmsg(tb->listen_fd, &mh, 0);
	return true;
}

/* UDP modes: answer what has arrived (at most 64 messages a turn; epoll is level-triggered). */
static void udp_ready(struct tbackend *tb)
{
	static _Thread_local uint8_t out[TB_UDP_MAX];

	for (int i = 0; i < 64; i++) {
		if (tb->mode == TB_UDP_ECHO_GRO) {
			if (!udp_echo_gro(tb))
				return;
			continue;
		}
		struct sockaddr_storage from;
		socklen_t flen = sizeof(from);
		size_t off = 0;
		if (tb->mode == TB_UDP_TAGGED)
			off = (size_t)snprintf((char *)out, sizeof(out), "%s\n", tb->name);
		ssize_t n = recvfrom(tb->listen_fd, out + off, sizeof(out) - off, 0,
				     (struct sockaddr *)&from, &flen);
		if (n < 0)
			return;
		atomic_fetch_add(&tb->accepted, 1);
		(void)sendto(tb->listen_fd, out, off + (size_t)n, 0, (struct sockaddr *)&from,
			     flen);
	}
}

/* ---- commands from other threads ---- */

static void stop_listening(struct tbackend *tb)
{
	if (tb->listen_fd < 0)
		return;
	set_listening(tb, false); /* fails harmlessly while accepts are paused */
	close(tb->listen_fd);
	tb->listen_fd = -1;
	tb->accept_paused_until = 0;
}

/* Run the pending command in the backend thread. Returns true when the thread must exit. */
static bool run_command(struct tbackend *tb)
{
	uint64_t v;
	bool quit = false;
	int rc = 0;

	if (read(tb->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return false;
	pthread_mutex_lock(&tb->lock);
	enum tb_cmd cmd = tb->cmd;
	pthread_mutex_unlock(&tb->lock);
	switch (cmd) {
	case TB_CMD_NONE:
		return false;
	case TB_CMD_STOP:
	case TB_CMD_QUIT:
		stop_listening(tb);
		close_all(tb);
		quit = cmd == TB_CMD_QUIT;
		break;
	case TB_CMD_RESTART:
		if (tb->listen_fd >= 0)
			break;
		rc = open_listener(tb->mode, &tb->ss, tb->sslen);
		if (rc >= 0) {
			tb->listen_fd = rc;
			set_listening(tb, true);
			rc = 0;
		}
		break;
	}
	pthread_mutex_lock(&tb->lock);
	tb->cmd = TB_CMD_NONE;
	tb->cmd_result = rc;
	tb->cmd_done = true;
	pthread_cond_broadcast(&tb->cond);
	pthread_mutex_unlock(&tb->lock);
	return quit;
}

static void *tb_thread(void *arg)
{
	struct tbackend *tb = arg;
	struct epoll_event evs[TB_MAX_EVENTS];

	for (;;) {
		int timeout = -1;
		if (tb->accept_paused_until) {
			uint64_t now = now_ms();
			if (now >= tb->accept_paused_until) {
				tb->accept_paused_until = 0;
				set_listening(tb, true);
			} else {
				timeout = (int)(tb->accept_paused_until - now);
			}
		}
		int n = epoll_wait(tb->epfd, evs, TB_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			break;
		bool command = false;
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &tag_wake)
				command = true; /* after the batch: it may free connections */
			else if (p == &tag_listener && is_udp(tb->mode))
				udp_ready(tb);
			else if (p == &tag_listener)
				accept_ready(tb);
			else
				conn_event(tb, p, evs[i].events);
		}
		if (command && run_command(tb))
			break;
	}
	return NULL;
}

/* Hand cmd to the backend thread and wait (bounded) until it is done. */
static int send_command(struct tbackend *tb, enum tb_cmd cmd)
{
	uint64_t one = 1, deadline = now_ms() + TB_CMD_TIMEOUT_MS;
	int rc = -ETIMEDOUT;

	if (!tb->thread_running)
		return -ESRCH;
	pthread_mutex_lock(&tb->lock);
	while (tb->cmd != TB_CMD_NONE && now_ms() < deadline) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		pthread_mutex_unlock(&tb->lock);
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&tb->lock);
	}
	if (tb->cmd != TB_CMD_NONE)
		goto out;
	tb->cmd = cmd;
	tb->cmd_done = false;
	if (write(tb->wake_fd, &one, sizeof(one)) < 0) {
		tb->cmd = TB_CMD_NONE;
		rc = -errno;
		goto out;
	}
	while (!tb->cmd_done) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 20 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&tb->cond, &tb->lock, &ts);
		if (!tb->cmd_done && now_ms() >= deadline)
			goto out;
	}
	rc = tb->cmd_result;
out:
	pthread_mutex_unlock(&tb->lock);
	return rc;
}

/* ---- public interface ---- */

struct tbackend *tb_start(const char *addr, enum tb_mode mode, const char *name)
{
	struct tbackend *tb = calloc(1, sizeof(*tb));
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &tag_wake};

	if (!tb)
		return NULL;
	tb->mode = mode;
	tb->listen_fd = tb->epfd = tb->wake_fd = -1;
	snprintf(tb->name, sizeof(tb->name), "%s", name ? name : "");
	pthread_mutex_init(&tb->lock, NULL);
	pthread_cond_init(&tb->cond, NULL);
	if (parse_addr(addr, &tb->ss, &tb->sslen) < 0)
		goto fail;
	tb->listen_fd = open_listener(tb->mode, &tb->ss, tb->sslen);
	if (tb->listen_fd < 0)
		goto fail;
	/* learn the real port so that tb_restart binds the same one */
	if (getsockname(tb->listen_fd, (struct sockaddr *)&tb->ss, &tb->sslen) < 0)
		goto fail;
	format_addr(&tb->ss, tb->address, sizeof(tb->address));
	tb->port = ntohs(tb->ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&tb->ss)->sin6_port
						      : ((struct sockaddr_in *)&tb->ss)->sin_port);
	if (!name)
		snprintf(tb->name, sizeof(tb->name), "%s", tb->address);

	tb->epfd = epoll_create1(EPOLL_CLOEXEC);
	tb->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (tb->epfd < 0 || tb->wake_fd < 0)
		goto fail;
	if (epoll_ctl(tb->epfd, EPOLL_CTL_ADD, tb->wake_fd, &e) < 0)
		goto fail;
	set_listening(tb, true);
	if (pthread_create(&tb->thread, NULL, tb_thread, tb) != 0)
		goto fail;
	tb->thread_running = true;
	return tb;
fail:
	tb_free(tb);
	return NULL;
}

void tb_stop(struct tbackend *tb)
{
	send_command(tb, TB_CMD_STOP);
}

int tb_restart(struct tbackend *tb)
{
	return send_command(tb, TB_CMD_RESTART);
}

void tb_free(struct tbackend *tb)
{
	if (!tb)
		return;
	if (tb->thread_running) {
		if (send_command(tb, TB_CMD_QUIT) == 0)
			pthread_join(tb->thread, NULL);
		else
			pthread_detach(tb->thread); /* wedged: leak rather than hang the test */
		tb->thread_running = false;
	} else {
		close_all(tb);
	}
	if (tb->listen_fd >= 0)
		close(tb->listen_fd);
	if (tb->epfd >= 0)
		close(tb->epfd);
	if (tb->wake_fd >= 0)
		close(tb->wake_fd);
	pthread_mutex_destroy(&tb->lock);
	pthread_cond_destroy(&tb->cond);
	free(tb->records);
	free(tb);
}

int tb_port(const struct tbackend *tb)
{
	return tb->port;
}

const char *tb_address(const struct tbackend *tb)
{
	return tb->address;
}

const char *tb_name(const struct tbackend *tb)
{
	return tb->name;
}

unsigned tb_accepted(struct tbackend *tb)
{
	return atomic_load(&tb->accepted);
}

unsigned tb_peak_active(struct tbackend *tb)
{
	return atomic_load(&tb->peak);
}

unsigned tb_active(struct tbackend *tb)
{
	return atomic_load(&tb->active);
}

bool tb_wait_active(struct tbackend *tb, unsigned want, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;

	while (tb_active(tb) != want) {
		if (t_now_ms() >= deadline)
			return false;
		usleep(TB_WAIT_STEP_US);
	}
	return true;
}

int t_backends_index(const struct t_backends *set, const char *tag)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(tb_name(set->tb[i]), tag) == 0)
			return (int)i;
	return -1;
}

void t_backends_free(struct t_backends *set)
{
	for (size_t i = 0; i < set->n; i++)
		tb_free(set->tb[i]);
	set->n = 0;
}

int tb_recorded(struct tbackend *tb, unsigned i, uint8_t *buf, size_t len)
{
	int rc = -1;

	pthread_mutex_lock(&tb->lock);
	if (i < tb->nrecords) {
		const struct tb_record *r = &tb->records[i];
		size_t n = r->len < len ? r->len : len;
		memcpy(buf, r->data, n);
		rc = (int)n;
	}
	pthread_mutex_unlock(&tb->lock);
	return rc;
}
