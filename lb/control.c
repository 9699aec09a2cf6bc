/* The control socket's I/O on the main loop: accept many clients, frame their input into
 * lines (capped at CTL_LINE_MAX), hand each line to control_cmds.c and write the answers
 * back without ever blocking. A client that does not read its answers stops being read
 * from; nobody else waits for it. A command that answers later (a reload, an `add` looking
 * up a host name) holds back only its own client's later requests. */
#include "lb/control.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lb/config.h"
#include "lb/control_cmds.h"
#include "lb/list.h"
#include "lb/log.h"
#include "lb/mainloop.h"
#include "lb/state.h"
#include "lb/timer.h"

/* Bytes read from one client per wake-up, so that a flood from one is interleaved with
 * the others' requests. */
#define READ_CHUNK (16 * 1024)
/* Stop executing a client's queued requests while this much output is unsent. */
#define OUT_HIGH (256 * 1024)
/* Open control connections (lbctl holds one per command). At the cap, a new client closes
 * the one idle longest, so that idle clients can never lock lbctl out. */
#define MAX_CLIENTS    1024
#define LISTEN_BACKLOG 128
/* A client that neither sends nor takes anything this long is closed. */
#define CLIENT_IDLE_MS 30000
/* At most one "closing the client idle longest" line this often. */
#define EVICT_LOG_MS 1000

struct ctl_client {
	struct mainloop_handler h;
	struct ctl *ctl;
	int fd;
	char *in; /* up to CTL_LINE_MAX bytes of unprocessed input */
	size_t inlen;
	bool discard; /* inside an oversized line: drop up to the next newline */
	bool eof;     /* the client shut down its side: answer what is complete, then close */
	char *out;
	size_t outlen, outoff, outcap;
	uint32_t events;	  /* what epoll watches now */
	uint64_t last_active;	  /* timer_now_ms() of its last byte in or out */
	struct ctl_waiter waiter; /* .pending: a command of its answers later; wait for it */
	struct list_head link;
};

struct ctl {
	struct mainloop_handler h;
	int epfd, fd;
	char *path;
	dev_t dev;
	ino_t ino; /* of the socket file we bound: unlink only that one */
	struct lb_state *st;
	struct list_head clients; /* newest first */
	size_t nclients;
	uint64_t evict_logged; /* timer_now_ms() of the last eviction line */
	uint64_t evicted;      /* since that line */
};

/* ---- clients ---- */

static void client_close(struct ctl_client *cl)
{
	struct ctl *c = cl->ctl;

	ctl_cmds_abandon(&cl->waiter);
	close(cl->fd);
	list_del(&cl->link);
	c->nclients--;
	free(cl->in);
	free(cl->out);
	free(cl);
}

static bool out_append(struct ctl_client *cl, const char *s, size_t n)
{
	if (cl->outoff == cl->outlen)
		cl->outoff = cl->outlen = 0;
	if (cl->outlen + n > cl->outcap) {
		size_t cap = cl->outcap ? cl->outcap : 4096;
		while (cap < cl->outlen + n)
			cap *= 2;
		char *o = realloc(cl->out, cap);
		if (!o)
			return false;
		cl->out = o;
		cl->outcap = cap;
	}
	memcpy(cl->out + cl->outlen, s, n);
	cl->outlen += n;
	return true;
}

static bool answer(struct ctl_client *cl, char *line, size_t len)
{
	bool ok = line && out_append(cl, line, len);
	free(line);
	return ok;
}

static bool answer_error(struct ctl_client *cl, const char *msg)
{
	size_t len = 0;
	char *line = ctl_cmds_error(msg, &len); /* before reading len */
	return answer(cl, line, len);
}

/* Execute complete lines while the output is below OUT_HIGH. false: out of memory. */
static bool run_lines(struct ctl_client *cl)
{
	size_t off = 0;
	bool ok = true;

	while (ok && cl->outlen - cl->outoff < OUT_HIGH && !cl->waiter.pending) {
		char *nl = memchr(cl->in + off, '\n', cl->inlen - off);
		size_t len;

		if (!nl && !(cl->eof && off < cl->inlen))
			break;
		/* At EOF an unterminated last line still counts (printf ... | nc -U). */
		len = nl ? (size_t)(nl - (cl->in + off)) : cl->inlen - off;
		size_t linelen = len;
		if (linelen && cl->in[off + linelen - 1] == '\r')
			linelen--;
		if (linelen) {
			size_t n = 0;
			char *resp =
			    ctl_cmds_execute(cl->ctl->st, cl->in + off, linelen, &n, &cl->waiter);
			ok = cl->waiter.pending || answer(cl, resp, n);
		}
		off += nl ? len + 1 : len;
	}
	memmove(cl->in, cl->in + off, cl->inlen - off);
	cl->inlen -= off;
	return ok;
}

/* Read once. Returns false when the client is gone or broken. */
static bool client_read(struct ctl_client *cl)
{
	size_t room = CTL_LINE_MAX - cl->inlen;
	ssize_t n;

	if (room > READ_CHUNK)
		room = READ_CHUNK;
	n = recv(cl->fd, cl->in + cl->inlen, room, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	cl->last_active = timer_now_ms();
	if (n == 0) {
		cl->eof = true;
		if (cl->discard)
			cl->inlen = 0;
		return true;
	}
	if (cl->discard) {
		char *nl = memchr(cl->in + cl->inlen, '\n', (size_t)n);
		if (!nl)
			return true; /* still inside the oversized line: drop it all */
		size_t keep = (size_t)n - (size_t)(nl + 1 - (cl->in + cl->inlen));
		memmove(cl->in, nl + 1, keep);
		cl->inlen = keep;
		cl->discard = false;
		return true;
	}
	cl->inlen += (size_t)n;
	if (cl->inlen == CTL_LINE_MAX && !memchr(cl->in, '\n', cl->inlen)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "request line longer than %d bytes; skipped",
			 CTL_LINE_MAX);
		cl->inlen = 0;
		cl->discard = true;
		return answer_error(cl, msg);
	}
	return true;
}

/* Write what is pending. false when the client is gone. */
static bool client_write(struct ctl_client *cl)
{
	while (cl->outoff < cl->outlen) {
		ssize_t n = send(cl->fd, cl->out + cl->outoff, cl->outlen - cl->outoff,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			cl->outoff += (size_t)n;
			cl->last_active = timer_now_ms();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
	return true;
}

static void client_ready(struct mainloop_handler *h, uint32_t events)
{
	struct ctl_client *cl = (struct ctl_client *)h;
	bool pending_out;
	uint32_t want;

	if (!client_write(cl))
		goto gone;
	if (cl->waiter.pending) {
		/* Not read from until answered; a client that hung up is closed now. */
		if (events & (EPOLLHUP | EPOLLERR))
			goto gone;
	} else if (cl->outoff == cl->outlen) {
		bool has_line = memchr(cl->in, '\n', cl->inlen) != NULL;
		if (!has_line && !cl->eof && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
		    !client_read(cl))
			goto gone;
		if (!run_lines(cl) || !client_write(cl))
			goto gone;
	}
	pending_out = cl->outoff < cl->outlen;
	if (!pending_out && cl->eof && !cl->waiter.pending && !memchr(cl->in, '\n', cl->inlen))
		goto gone; /* everything answered */
	/* Output first: a client that does not read its answers is not read from either. */
	want = pending_out ? EPOLLOUT : cl->waiter.pending ? 0 : EPOLLIN;
	if (!pending_out && !cl->waiter.pending && memchr(cl->in, '\n', cl->inlen))
		want = EPOLLOUT; /* queued requests left: come back at once */
	if (want != cl->events) {
		if (mainloop_watch(cl->ctl->epfd, EPOLL_CTL_MOD, cl->fd, want, &cl->h) < 0)
			goto gone;
		cl->events = want;
	}
	return;
gone:
	client_close(cl);
}

/* The answer of a command that answered later: queue it and go on with the client. */
static void client_answered(struct ctl_waiter *w, char *line, size_t len)
{
	struct ctl_client *cl = container_of(w, struct ctl_client, waiter);

	cl->last_active = timer_now_ms();
	if (!answer(cl, line, len)) {
		client_close(cl);
		return;
	}
	client_ready(&cl->h, 0); /* write it, run the requests queued behind it */
}

/* Make room for a new client at the cap: close the one idle longest. */
static void evict_idlest(struct ctl *c)
{
	struct ctl_client *cl, *nx, *idlest = NULL;
	uint64_t now = timer_now_ms();

	list_for_each_entry_safe(cl, nx, &c->clients, link)
	{
		if (!cl->waiter.pending && (!idlest || cl->last_active <= idlest->last_active))
			idlest = cl;
	}
	if (!idlest)
		return;
	if (now - c->evict_logged >= EVICT_LOG_MS || !c->evict_logged) {
		log_warn("control: %d clients open; closing the one idle longest (%llu ms; %llu "
			 "more closed since the last line)",
			 MAX_CLIENTS, (unsigned long long)(now - idlest->last_active),
			 (unsigned long long)c->evicted);
		c->evict_logged = now;
		c->evicted = 0;
	} else {
		c->evicted++;
	}
	client_close(idlest);
}

static void accept_ready(struct mainloop_handler *h, uint32_t events)
{
	struct ctl *c = (struct ctl *)h;
	(void)events;

	for (;;) {
		int fd = mainloop_accept(c->epfd, c->fd, &c->h, &c->st->control_accept);
		if (fd < 0)
			return;
		if (c->nclients >= MAX_CLIENTS)
			evict_idlest(c);
		struct ctl_client *cl = calloc(1, sizeof(*cl));
		char *in = cl ? malloc(CTL_LINE_MAX) : NULL;
		if (!cl || !in) {
			static const char busy[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";
			(void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			free(cl);
			free(in);
			continue;
		}
		cl->h.fn = client_ready;
		cl->ctl = c;
		cl->fd = fd;
		cl->in = in;
		cl->waiter.answer = client_answered;
		cl->events = EPOLLIN;
		cl->last_active = timer_now_ms();
		if (mainloop_watch(c->epfd, EPOLL_CTL_ADD, fd, EPOLLIN, &cl->h) < 0) {
			close(fd);
			free(in);
			free(cl);
			continue;
		}
		list_add(&cl->link, &c->clients);
		c->nclients++;
	}
}

/* ---- the socket file ---- */

/* A socket file at path: stale (nobody answers) -> removed; live or not a socket -> error.
 * 0 or -errno with a message in why, like bind_socket. */
static int clear_stale(const char *path, const struct sockaddr_un *sun, char *why, size_t len)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		int err = errno;
		if (err == ENOENT)
			return 0;
		snprintf(why, len, "%s: %s", path, strerror(err));
		return -err;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(why, len, "%s exists and is not a socket; not replacing it", path);
		return -EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(why, len, "socket: %s", strerror(e));
		return -e;
	}
	int rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	int err = errno;
	close(fd);
	if (rc == 0) {
		snprintf(why, len, "%s: another lb is running there (it answers); not replacing it",
			 path);
		return -EADDRINUSE;
	}
	if (err != ECONNREFUSED) {
		snprintf(why, len, "%s: cannot tell whether it is in use: %s", path, strerror(err));
		return -err;
	}
	log_warn("control: removing stale socket %s", path);
	if (unlink(path) < 0 && errno != ENOENT) {
		int e = errno;
		snprintf(why, len, "cannot remove stale %s: %s", path, strerror(e));
		return -e;
	}
	return 0;
}

static int bind_socket(struct ctl *c, mode_t mode, char *why, size_t len)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct stat st;

	if (strlen(c->path) >= sizeof(sun.sun_path)) {
		snprintf(why, len, "%s: path longer than %zu bytes", c->path,
			 sizeof(sun.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, c->path);
	int rc = clear_stale(c->path, &sun, why, len);
	if (rc < 0)
		return rc;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		int e = errno;
		snprintf(why, len, "socket: %s", strerror(e));
		return -e;
	}
	/* Create the file with no access for others, then open it up to the configured mode:
	 * nobody can connect in between with more rights than configured. */
	mode_t old = umask(0177);
	rc = bind(c->fd, (const struct sockaddr *)&sun, sizeof(sun));
	int err = errno;
	umask(old);
	if (rc < 0) {
		snprintf(why, len, "bind %s: %s", c->path, strerror(err));
		return -err;
	}
	if (chmod(c->path, mode) < 0 || stat(c->path, &st) < 0 ||
	    listen(c->fd, LISTEN_BACKLOG) < 0) {
		err = errno;
		snprintf(why, len, "%s: %s", c->path, strerror(err));
		unlink(c->path);
		return -err;
	}
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	return 0;
}

int ctl_open(int epfd, struct lb_state *st, struct ctl **out, char *why, size_t whylen)
{
	struct ctl *c = calloc(1, sizeof(*c));
	int rc = -ENOMEM;

	if (!c || !(c->path = strdup(st->cfg->control_socket))) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	c->h.fn = accept_ready;
	c->epfd = epfd;
	c->fd = -1;
	c->st = st;
	st->control_accept.what = "control socket";
	list_init(&c->clients);
	rc = bind_socket(c, st->cfg->control_mode, why, whylen);
	if (rc < 0)
		goto fail;
	if (mainloop_watch(epfd, EPOLL_CTL_ADD, c->fd, EPOLLIN, &c->h) < 0) {
		rc = -errno;
		snprintf(why, whylen, "epoll: %s", strerror(-rc));
		unlink(c->path);
		goto fail;
	}
	log_info("control socket %s (mode %04o)", c->path, (unsigned)st->cfg->control_mode);
	*out = c;
	return 0;
fail:
	if (c && c->fd >= 0)
		close(c->fd);
	if (c)
		free(c->path);
	free(c);
	return rc;
}

int ctl_tick(struct ctl *c)
{
	struct ctl_client *cl, *nx;
	uint64_t now = timer_now_ms(), next = UINT64_MAX;

	if (!c || c->fd < 0)
		return -1;
	list_for_each_entry_safe(cl, nx, &c->clients, link)
	{
		uint64_t due = cl->last_active + CLIENT_IDLE_MS;
		if (cl->waiter.pending)
			continue; /* waiting for lb, not idle */
		if (now >= due) {
			log_debug("control: closing a client idle for %d ms", CLIENT_IDLE_MS);
			client_close(cl);
		} else if (due < next) {
			next = due;
		}
	}
	int paused = mainloop_accept_tick(c->epfd, c->fd, &c->h, &c->st->control_accept);
	if (paused >= 0 && now + (uint64_t)paused < next)
		next = now + (uint64_t)paused;
	return next == UINT64_MAX ? -1 : (int)(next - now);
}

void ctl_shutdown(struct ctl *c)
{
	struct stat st;

	if (!c || c->fd < 0)
		return;
	while (!list_empty(&c->clients))
		client_close(list_first_entry(&c->clients, struct ctl_client, link));
	close(c->fd);
	c->fd = -1;
	/* Only our own file: a second lb may have replaced it meanwhile. */
	if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
		unlink(c->path);
}

void ctl_free(struct ctl *c)
{
	if (!c)
		return;
	ctl_shutdown(c);
	free(c->path);
	free(c);
}
