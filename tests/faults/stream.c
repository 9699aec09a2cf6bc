/* Verified streams for the fault suite (see stream.h): the pattern, the sums, the echo pump
 * and the stream server. */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "support.h"

/* Bytes per send/recv: large enough that loopback runs at full speed. */
#define FS_CHUNK (256 * 1024)
/* How far an echo pump may send ahead of what came back: enough to fill lb's and the
 * kernel's buffers on the way, bounded so a stalled echo does not queue without end. */
#define FS_WINDOW (4 * 1024 * 1024)
/* How often the server's thread looks at its stop flag while it waits. */
#define FS_POLL_MS 100
/* How long the server gives one connection to finish before it drops it. */
#define FS_CONN_TIMEOUT_MS 60000
#define FNV_OFFSET	   0xcbf29ce484222325ULL
#define FNV_PRIME	   0x100000001b3ULL

/* splitmix64: one well-mixed word per 8 stream bytes, so that a shifted, repeated or
 * dropped block never matches the pattern. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void fs_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint64_t pos = off + i;
		uint64_t w = mix(seed ^ (pos / 8 * 0xd6e8feb86659fd93ULL));
		for (unsigned b = (unsigned)(pos % 8); b < 8 && i < len; b++, i++)
			buf[i] = (uint8_t)(w >> (8 * b));
	}
}

void fs_sum_init(struct fs_sum *s, uint64_t seed)
{
	*s = (struct fs_sum){.seed = seed, .hash = FNV_OFFSET, .first_bad = -1};
}

void fs_sum_add(struct fs_sum *s, const uint8_t *data, size_t n)
{
	static _Thread_local uint8_t want[FS_CHUNK];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(want) ? n - done : sizeof(want);
		fs_fill(s->seed, s->len, want, k);
		if (s->first_bad < 0 && memcmp(want, data + done, k) != 0)
			for (size_t i = 0; i < k; i++)
				if (want[i] != data[done + i]) {
					s->first_bad = (int64_t)(s->len + i);
					break;
				}
		for (size_t i = 0; i < k; i++)
			s->hash = (s->hash ^ data[done + i]) * FNV_PRIME;
		s->len += k;
		done += k;
	}
}

bool fs_sum_same(const struct fs_sum *a, const struct fs_sum *b)
{
	return a->len == b->len && a->hash == b->hash && a->first_bad < 0 && b->first_bad < 0;
}

const char *fs_end_name(enum fs_end e)
{
	static const char *const names[] = {"limit", "eof", "reset", "timeout"};
	return names[e];
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void fs_flow_init(struct fs_flow *f, int fd, uint64_t seed)
{
	f->fd = fd;
	f->err = 0;
	fs_sum_init(&f->out, seed);
	fs_sum_init(&f->in, seed);
	(void)set_nonblock(fd);
}

/* One non-blocking read into the flow: 1 if bytes came, 0 if none yet, or how it ended. */
static int flow_read(struct fs_flow *f, uint8_t *buf, enum fs_end *end)
{
	ssize_t n = recv(f->fd, buf, FS_CHUNK, 0);

	if (n > 0) {
		fs_sum_add(&f->in, buf, (size_t)n);
		return 1;
	}
	if (n == 0) {
		*end = FS_EOF;
		return -1;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	f->err = errno;
	*end = FS_RESET;
	return -1;
}

enum fs_end fs_flow_pump(struct fs_flow *f, uint64_t until_rx, bool send_more, int timeout_ms)
{
	static _Thread_local uint8_t buf[FS_CHUNK];
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	enum fs_end end = FS_TIMEOUT;

	while (f->in.len < until_rx) {
		uint64_t now = t_now_ms();
		if (now >= deadline)
			return FS_TIMEOUT;
		bool want_out = send_more && f->out.len - f->in.len < FS_WINDOW;
		struct pollfd p = {.fd = f->fd, .events = POLLIN | (want_out ? POLLOUT : 0)};
		if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
			f->err = errno;
			return FS_RESET;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			if (flow_read(f, buf, &end) < 0)
				return end;
		if (want_out && (p.revents & POLLOUT)) {
			uint8_t *out = buf;
			fs_fill(f->out.seed, f->out.len, out, FS_CHUNK);
			ssize_t n = send(f->fd, out, FS_CHUNK, MSG_NOSIGNAL);
			if (n > 0)
				fs_sum_add(&f->out, out, (size_t)n);
			else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				 errno != EINTR) {
				/* The peer's reset shows on the next read too; take it there. */
				send_more = false;
				f->err = errno;
			}
		}
	}
	return FS_LIMIT;
}

/* ---- the stream server ---- */

struct fs_server {
	int lfd;
	char address[32];
	pthread_t thread;
	atomic_bool stop;
};

/* Wait until fd is ready for events or the server stops or the deadline passes. */
static bool wait_ready(struct fs_server *s, int fd, short events, uint64_t deadline)
{
	while (!atomic_load(&s->stop) && t_now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, FS_POLL_MS);
		if (r > 0)
			return true;
		if (r < 0 && errno != EINTR)
			return false;
	}
	return false;
}

static bool recv_full(struct fs_server *s, int fd, void *buf, size_t len, uint64_t deadline)
{
	for (size_t got = 0; got < len;) {
		if (!wait_ready(s, fd, POLLIN, deadline))
			return false;
		ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return false;
		if (n > 0)
			got += (size_t)n;
	}
	return true;
}

static bool send_full(struct fs_server *s, int fd, const void *buf, size_t len, uint64_t deadline)
{
	for (size_t done = 0; done < len;) {
		if (!wait_ready(s, fd, POLLOUT, deadline))
			return false;
		ssize_t n =
		    send(fd, (const uint8_t *)buf + done, len - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
		if (n > 0)
			done += (size_t)n;
	}
	return true;
}

static void serve_upload(struct fs_server *s, int fd, uint8_t *buf, uint64_t deadline)
{
	struct fs_sum sum;

	fs_sum_init(&sum, FS_SEED_UP);
	for (;;) {
		if (!wait_ready(s, fd, POLLIN, deadline))
			return;
		ssize_t n = recv(fd, buf, FS_CHUNK, MSG_DONTWAIT);
		if (n == 0)
			break;
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (n > 0)
			fs_sum_add(&sum, buf, (size_t)n);
	}
	struct fs_wire_sum w = {.len = sum.len, .hash = sum.hash, .first_bad = sum.first_bad};
	(void)send_full(s, fd, &w, sizeof(w), deadline);
}

static void serve_download(struct fs_server *s, int fd, uint8_t *buf, uint64_t deadline)
{
	uint64_t total;

	if (!recv_full(s, fd, &total, sizeof(total), deadline))
		return;
	for (uint64_t off = 0; off < total;) {
		size_t k = total - off < FS_CHUNK ? (size_t)(total - off) : FS_CHUNK;
		fs_fill(FS_SEED_DOWN, off, buf, k);
		if (!send_full(s, fd, buf, k, deadline))
			return;
		off += k;
	}
	/* FIN, then wait for the client's: closing first could reset what is in flight. */
	shutdown(fd, SHUT_WR);
	while (wait_ready(s, fd, POLLIN, deadline) && recv(fd, buf, FS_CHUNK, MSG_DONTWAIT) > 0)
		;
}

static void *server_thread(void *arg)
{
	struct fs_server *s = arg;
	uint8_t *buf = malloc(FS_CHUNK);

	while (buf && !atomic_load(&s->stop)) {
		if (!wait_ready(s, s->lfd, POLLIN, UINT64_MAX))
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		uint64_t deadline = t_now_ms() + FS_CONN_TIMEOUT_MS;
		char op;
		if (recv_full(s, fd, &op, 1, deadline)) {
			if (op == 'U')
				serve_upload(s, fd, buf, deadline);
			else if (op == 'D')
				serve_download(s, fd, buf, deadline);
		}
		close(fd);
	}
	free(buf);
	return NULL;
}

struct fs_server *fs_server_start(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sin);
	struct fs_server *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(s->lfd, 16) < 0 || getsockname(s->lfd, (struct sockaddr *)&sin, &slen) < 0 ||
	    pthread_create(&s->thread, NULL, server_thread, s) != 0) {
		if (s->lfd >= 0)
			close(s->lfd);
		free(s);
		return NULL;
	}
	snprintf(s->address, sizeof(s->address), "127.0.0.1:%d", ntohs(sin.sin_port));
	return s;
}

const char *fs_server_address(const struct fs_server *s)
{
	return s->address;
}

void fs_server_free(struct fs_server *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	free(s);
}

/* ---- the clients ---- */

bool fs_upload(int port, uint64_t total, struct fs_sum *sent, struct fs_sum *got, int timeout_ms)
{
	uint64_t deadline = t_now_ms() + (uint64_t)timeout_ms;
	struct fs_wire_sum w;
	uint8_t *buf = malloc(FS_CHUNK);
	int fd = t_connect(NULL, port);
	bool ok = buf && fd >= 0 && t_send_all(fd, "U", 1);

	fs_sum_init(sent, FS_SEED_UP);
	fs_sum_init(got, FS_SEED_UP);
	while (ok && sent->len < total && t_now_ms() < deadline) {
		size_t k = total - sent->len < FS_CHUNK ? (size_t)(total - sent->len) : FS_CHUNK;
		fs_fill(FS_SEED_UP, sent->len, buf, k);
		ok = t_send_all(fd, buf, k);
		if (ok)
			fs_sum_add(sent, buf, k);
	}
	ok = ok && sent->len == total && shutdown(fd, SHUT_WR) == 0;
	uint64_t now = t_now_ms();
	ok = ok && now < deadline && t_recv_exact(fd, &w, sizeof(w), (int)(deadline - now));
	if (ok) {
		got->len = w.len;
		got->hash = w.hash;
		got->first_bad = w.first_bad;
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

enum fs_end fs_download(int port, uint64_t total, struct fs_sum *got, int timeout_ms)
{
	struct fs_flow f;
	int fd = t_connect(NULL, port);

	fs_sum_init(got, FS_SEED_DOWN);
	if (fd < 0 || !t_send_all(fd, "D", 1) || !t_send_all(fd, &total, sizeof(total))) {
		if (fd >= 0)
			close(fd);
		return FS_RESET;
	}
	fs_flow_init(&f, fd, FS_SEED_DOWN);
	/* One byte past the stream: it ends at the server's FIN, or more came than was sent. */
	enum fs_end end = fs_flow_pump(&f, total + 1, false, timeout_ms);
	*got = f.in;
	close(fd);
	return end;
}
