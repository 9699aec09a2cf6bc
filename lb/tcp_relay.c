/* TCP relay: one client connection and its backend connection. Bytes move with splice(2)
 * through a pipe borrowed from the worker's pool only while they are in flight, so an idle
 * pair costs one small struct and no pipe. Written once against engine.h for both engines;
 * where the engine can receive and send by completion, tcp_uring.c moves small messages
 * instead and hands a direction back to the readiness path here when it turns bulk. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/addr.h"
#include "lb/engine.h"
#include "lb/list.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/objpool.h"
#include "lb/pool.h"
#include "lb/syserr.h"
#include "lb/tcp_relay.h"
#include "lb/tcp_relay_int.h"
#include "lb/worker.h"

/* Reads up to this size are relayed with recv/send through the worker's scratch buffer (two
 * cheap syscalls); a read that fills it marks the direction bulk, which then splices. 8 KiB
 * is the smallest a pipe can be (2 pages), so an unsent remainder always fits in one. */
#define SMALL_READ 8192
/* Bytes asked of one splice call; the pipe's size bounds what actually moves. */
#define SPLICE_CHUNK (1 << 20)
/* A bulk direction copies through a buffer this large while it streams (recv/send: on
 * loopback 1 MiB chunks moved a stream at about the rate of a direct connection, at less CPU
 * per GB than splice through a pipe; docs/ARCHITECTURE.md "Bulk: copy or splice"). It is
 * borrowed from the worker only while bytes flow and given back when the source runs dry,
 * so an idle connection holds none. */
#define BIG_BUF (1u << 20)
/* Empty big buffers a worker keeps for the next burst (resident: 2 MiB a worker), and the
 * most it lends at once (beyond that, bulk directions splice through pipes as before).
 * They are mapped and unmapped directly, so that one given back beyond the spares returns
 * its memory to the system at once rather than to malloc's heap. */
#define BIG_SPARE 2
#define BIG_MAX	  64
/* Connection objects allocated per slab. */
#define CONN_SLAB 64

/* A worker's TCP side (worker.h: w->tcp). */
struct tcp_state {
	struct list_head conns; /* open connections, newest first */
	size_t nconns;
	struct objpool conn_pool;   /* struct conn objects */
	struct queue_inbox inbox;   /* queued connections granted a slot (lb/queue.h) */
	char relay_buf[SMALL_READ]; /* scratch for small reads (pump_small) */
	char *big_spare[BIG_SPARE]; /* empty big buffers kept for reuse */
	size_t nbig_spare, nbig_lent;
	bool copy_off; /* LB_BULK_COPY=0: bulk always splices (for A/B measurements) */
};

static bool big_get(struct worker *w, struct half *h)
{
	struct tcp_state *t = w->tcp;

	if (t->copy_off || t->nbig_lent >= BIG_MAX)
		return false;
	if (t->nbig_spare) {
		h->big = t->big_spare[--t->nbig_spare];
	} else {
		void *m =
		    mmap(NULL, BIG_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED)
			return false;
		h->big = m;
	}
	t->nbig_lent++;
	h->big_off = h->big_len = 0;
	return true;
}

static void big_put(struct worker *w, struct half *h)
{
	struct tcp_state *t = w->tcp;

	if (!h->big)
		return;
	if (t->nbig_spare < BIG_SPARE)
		t->big_spare[t->nbig_spare++] = h->big;
	else
		munmap(h->big, BIG_BUF);
	t->nbig_lent--;
	h->big = NULL;
	h->big_off = h->big_len = 0;
}

static void connect_next(struct conn *c);
static void conn_take_grant(struct conn *c);

static void set_nodelay(int fd)
{
	int one = 1;
	/* Relaying must not add Nagle delays to small request/response exchanges. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Close fd, with the engine's next wait where it can (no syscall of its own). */
static void close_fd(struct worker *w, int fd, bool reset)
{
	if (fd < 0)
		return;
	if (reset) {
		/* SO_LINGER 0 turns close() into a RST: how a reset is passed on. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	if (!w->ops->close_fd || !w->ops->close_fd(w->eng, fd))
		close(fd);
}

static void half_release_pipe(struct worker *w, struct half *h)
{
	if (h->pipe.rd < 0)
		return;
	pipe_pool_put(&w->pipes, h->pipe, h->in_pipe == 0);
	h->pipe.rd = h->pipe.wr = -1;
	h->in_pipe = 0;
}

static void backend_detach(struct conn *c, bool reset)
{
	struct worker *w = c->w;
	if (c->bconn)
		w->ops->connect_drop(w->eng, c->bconn);
	c->bconn = NULL;
	if (c->bwatch)
		w->ops->unwatch(w->eng, c->bwatch);
	c->bwatch = NULL;
	close_fd(w, c->bfd, reset);
	c->bfd = -1;
	if (c->be)
		backend_release(c->be);
}

void tcp_conn_finish(struct conn *c, const char *how, bool reset_client, bool reset_backend)
{
	struct worker *w = c->w;

	timer_cancel(&w->timers, &c->timer);
	if (c->state == CONN_QUEUED && queue_cancel(c->qpool, &c->qw))
		c->be = c->qw.granted; /* released by backend_detach, for the next waiter */
	backend_detach(c, reset_backend);
	if (c->cwatch)
		w->ops->unwatch(w->eng, c->cwatch);
	close_fd(w, c->cfd, reset_client);
	half_release_pipe(w, &c->up);
	half_release_pipe(w, &c->down);
	big_put(w, &c->up);
	big_put(w, &c->down);
	tcp_uring_release(w, &c->up);
	tcp_uring_release(w, &c->down);
	listener_leave(c->l, (struct sockaddr *)&c->client, c->per_client);
	if (w->log_access)
		listener_access_log(c->l, (struct sockaddr *)&c->client, c->be, c->up.bytes,
				    c->down.bytes, w->now - c->start, how);

	list_del(&c->link);
	w->tcp->nconns--;
	objpool_put(&w->tcp->conn_pool, c);
}

/* Small-message path: recv into the worker's scratch buffer and send at once. What the sink
 * does not take is parked in a pipe, which tcp_pump() then drains with splice like any other.
 * Returns with h->bulk set when a read filled the buffer (the caller switches to splice). */
static enum pump_result pump_small(struct conn *c, struct half *h, int src, int dst)
{
	struct worker *w = c->w;
	char *buf = w->tcp->relay_buf;

	for (;;) {
		ssize_t n = recv(src, buf, SMALL_READ, 0);
		if (n == 0) {
			h->eof = true;
			return PUMP_OK;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return PUMP_SRC_ERR;
			half_release_pipe(w, h); /* empty: idle connections hold no pipe */
			return PUMP_OK;
		}
		c->last_active = w->now;
		ssize_t m = send(dst, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (m < 0) {
			if (errno != EAGAIN && errno != EINTR)
				return PUMP_DST_ERR;
			m = 0;
		}
		h->bytes += (uint64_t)m;
		if (m < n) {
			if (h->pipe.rd < 0 && pipe_pool_get(&w->pipes, &h->pipe) < 0) {
				h->pipe.rd = h->pipe.wr = -1;
				return PUMP_NO_MEM;
			}
			/* An empty pipe holds at least 2 pages: the remainder fits whole. */
			ssize_t r = write(h->pipe.wr, buf + m, (size_t)(n - m));
			if (r != n - m)
				return PUMP_NO_MEM;
			h->in_pipe = (uint32_t)r;
		}
		if (n == SMALL_READ)
			h->bulk = true;
		if (h->in_pipe || h->bulk)
			return PUMP_OK; /* tcp_pump() drains the pipe / switches to splice */
		if (!h->drain) {
			/* A short read emptied the socket: whatever arrives later raises a new
			 * edge (both engines report every wake-up), so skip the recv that would
			 * only say EAGAIN. A FIN that came with the data is flagged RDHUP. */
			half_release_pipe(w, h);
			return PUMP_OK;
		}
	}
}

enum pump_result tcp_pump(struct conn *c, struct half *h, int src, int dst)
{
	struct worker *w = c->w;

	if (h->tx)
		return PUMP_OK; /* the engine is sending; its completion resumes us */
	for (;;) {
		if (h->big_len) {
			ssize_t n =
			    send(dst, h->big + h->big_off, h->big_len, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				h->big_off += (uint32_t)n;
				h->big_len -= (uint32_t)n;
				h->bytes += (uint64_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				return PUMP_OK; /* the sink's WRITE event resumes us */
			return PUMP_DST_ERR;
		}
		if (h->in_pipe) {
			ssize_t n = splice(h->pipe.rd, NULL, dst, NULL, h->in_pipe,
					   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				h->in_pipe -= (uint32_t)n;
				h->bytes += (uint64_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				return PUMP_OK; /* the sink's WRITE event resumes us */
			return PUMP_DST_ERR;
		}
		if (h->eof) {
			half_release_pipe(w, h);
			big_put(w, h);
			if (!h->shut) {
				/* Everything before the FIN is delivered: pass the FIN on; unless
				 * the other way is finished too, when the pair is closed next and
				 * close() sends it (both sockets were read to EOF: no RST). */
				const struct half *other = h == &c->up ? &c->down : &c->up;
				if (!other->shut)
					(void)shutdown(dst, SHUT_WR);
				h->shut = true;
			}
			return PUMP_OK;
		}
		if (h->rx)
			return PUMP_OK; /* the engine reads the source (tcp_uring.c) */
		if (!h->bulk) {
			enum pump_result r = pump_small(c, h, src, dst);
			if (r != PUMP_OK)
				return r;
			if (!h->eof && !h->bulk && !h->in_pipe)
				return PUMP_OK; /* the source is drained */
			continue;		/* forward the FIN, drain the pipe, or splice */
		}
		/* Bulk: into a big copy buffer if the worker has one to lend, else a pipe. */
		bool big = h->big || (h->pipe.rd < 0 && big_get(w, h));
		ssize_t n;
		if (big) {
			n = recv(src, h->big, BIG_BUF, 0);
		} else {
			if (h->pipe.rd < 0 && pipe_pool_get(&w->pipes, &h->pipe) < 0) {
				h->pipe.rd = h->pipe.wr = -1;
				return PUMP_NO_MEM;
			}
			n = splice(src, NULL, h->pipe.wr, NULL, SPLICE_CHUNK,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		}
		if (n > 0) {
			if (big) {
				h->big_off = 0;
				h->big_len = (uint32_t)n;
			} else {
				h->in_pipe = (uint32_t)n;
			}
			c->last_active = w->now;
			continue;
		}
		if (n == 0) {
			h->eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* Empty: the buffer or pipe goes back while the direction is idle. */
			if (big)
				big_put(w, h);
			else
				half_release_pipe(w, h);
			return PUMP_OK;
		}
		return PUMP_SRC_ERR;
	}
}

void tcp_count_bytes(struct conn *c, uint64_t up0, uint64_t down0)
{
	struct backend *b = c->be;
	if (c->up.bytes != up0)
		atomic_fetch_add_explicit(&b->bytes_out, c->up.bytes - up0, memory_order_relaxed);
	if (c->down.bytes != down0)
		atomic_fetch_add_explicit(&b->bytes_in, c->down.bytes - down0,
					  memory_order_relaxed);
}

void tcp_relay_outcome(struct conn *c, enum pump_result r, bool client_failed)
{
	if (r == PUMP_NO_MEM) {
		log_warn("listener %s: no pipe or buffer to relay with (%s); resetting connection",
			 c->l->cfg->name, strerror(errno));
		tcp_conn_finish(c, "out of pipes", true, true);
	} else if (r != PUMP_OK) {
		/* The failed side is gone (reset or aborted): reset the other one too. */
		tcp_conn_finish(c, client_failed ? "client reset" : "backend reset", !client_failed,
				client_failed);
	} else if (c->up.shut && c->down.shut) {
		tcp_conn_finish(c, "closed", false, false);
	}
}

void tcp_relay_run(struct conn *c, bool do_up, bool do_down)
{
	uint64_t up0 = c->up.bytes, down0 = c->down.bytes;
	enum pump_result r = PUMP_OK;
	bool client_failed = false;

	if (do_up) {
		r = tcp_pump(c, &c->up, c->cfd, c->bfd);
		client_failed = r == PUMP_SRC_ERR;
	}
	if (r == PUMP_OK && do_down) {
		r = tcp_pump(c, &c->down, c->bfd, c->cfd);
		client_failed = r == PUMP_DST_ERR;
	}
	tcp_count_bytes(c, up0, down0);
	tcp_relay_outcome(c, r, client_failed);
}

/* Bytes h holds for its sink (a pipe's or a big buffer's): a WRITE event on the sink
 * resumes the direction. */
static bool half_pending(const struct half *h)
{
	return h->in_pipe || h->big_len;
}

static void proxy_in(struct conn *c, uint32_t ev);

static void client_ready(void *arg, uint32_t ev)
{
	struct conn *c = arg;
	if (c->state == CONN_PROXY_IN) {
		proxy_in(c, ev);
		return;
	}
	if (ev & (ENGINE_RDHUP | ENGINE_ERROR))
		c->up.drain = true;
	if (c->state != CONN_RELAY) {
		/* Bytes wait in the socket until the backend is connected. */
		c->up.ready |= (ev & (ENGINE_READ | ENGINE_ERROR)) != 0;
		return;
	}
	tcp_relay_run(c, ev & (ENGINE_READ | ENGINE_ERROR),
		      (ev & (ENGINE_WRITE | ENGINE_ERROR)) && half_pending(&c->down));
}

static void reject(struct conn *c, enum listener_reject why, const char *how)
{
	listener_reject(c->l, why, 1, (struct sockaddr *)&c->client, "closing connection", how,
			c->w->now);
	tcp_conn_finish(c, how, false, false);
}

/* timeouts.lifetime: past it, a connection closes at its first quiet moment (no byte either
 * way for LIFETIME_QUIET_MS, nothing held in lb), and is cut at LIFETIME_CUT_MS past it
 * whatever it is doing. */
#define LIFETIME_QUIET_MS 1000
#define LIFETIME_CUT_MS	  60000

static bool conn_quiet(const struct conn *c, uint64_t now)
{
	return now - c->last_active >= LIFETIME_QUIET_MS && !half_pending(&c->up) &&
	       !half_pending(&c->down) && !c->up.tx && !c->down.tx;
}

/* When conn_timer must look at c next (relaying). */
static uint64_t conn_deadline(const struct conn *c, uint64_t now)
{
	const struct cfg_listener *lc = c->l->cfg;
	uint64_t at = c->last_active + lc->idle_timeout_ms;

	if (lc->lifetime_ms) {
		uint64_t end = c->start + lc->lifetime_ms;
		uint64_t next = now < end ? end : c->last_active + LIFETIME_QUIET_MS;
		if (next <= now) /* quiet long enough but bytes held: look again soon */
			next = now + LIFETIME_QUIET_MS / 4;
		if (next > end + LIFETIME_CUT_MS)
			next = end + LIFETIME_CUT_MS;
		if (next < at)
			at = next;
	}
	return at;
}

/* The backend connect completed (ev: the backend's events). Each side is read only if it
 * signalled data: one that did not raises an edge when its first bytes arrive. */
static void connected(struct conn *c, uint32_t ev)
{
	struct worker *w = c->w;
	const struct cfg_listener *lc = c->l->cfg;

	timer_cancel(&w->timers, &c->timer);
	/* Read first: a store on every connect would bounce the line between workers. */
	if (atomic_load_explicit(&c->be->fail_streak, memory_order_relaxed))
		atomic_store_explicit(&c->be->fail_streak, 0, memory_order_relaxed);
	if (lc->proxy_protocol != CFG_PROXY_NONE) {
		struct sockaddr_storage local;
		socklen_t len = sizeof(local);
		uint8_t hdr[ADDR_PROXY_MAX];
		int n = -1;
		if (getsockname(c->cfd, (struct sockaddr *)&local, &len) == 0)
			n = addr_proxy_header(lc->proxy_protocol, (struct sockaddr *)&c->client,
					      (struct sockaddr *)&local, hdr, sizeof(hdr));
		/* A fresh connection's send buffer is empty: the header goes out whole. */
		if (n < 0 || send(c->bfd, hdr, (size_t)n, MSG_NOSIGNAL) != n) {
			tcp_conn_finish(c, "proxy header not sent", true, true);
			return;
		}
	}
	c->state = CONN_RELAY;
	c->last_active = w->now;
	if (lc->idle_timeout_ms)
		timer_arm(&w->timers, &c->timer, conn_deadline(c, w->now));
	if (c->rx_mode)
		tcp_uring_start(c);
	else
		tcp_relay_run(c, c->up.ready || c->up.drain,
			      (ev & (ENGINE_READ | ENGINE_ERROR)) != 0);
}

static void connect_failed(struct conn *c, int err)
{
	struct backend *b = c->be;
	struct worker *w = c->w;

	timer_cancel(&w->timers, &c->timer);
	atomic_fetch_add_explicit(&b->connect_failures, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&b->fail_streak, 1, memory_order_relaxed);
	log_debug("pool %s: connect to %s (%s) failed: %s", b->pool->name, b->name, b->address,
		  strerror(err));
	backend_detach(c, false);
	c->be = NULL;
	connect_next(c);
}

/* A connect that failed with err: lb's own shortage ends the pair (no backend is to blame,
 * and another would fare no better); anything else blames c->be and tries the next. */
static void connect_error(struct conn *c, int err)
{
	if (syserr_local_shortage(err)) {
		backend_detach(c, false);
		c->be = NULL;
		reject(c, LISTENER_REJECT_RESOURCES, strerror(err));
	} else {
		connect_failed(c, err);
	}
}

/* The engine's connect (engine_ops.connect_start) is over: res 0 or -errno. */
static void backend_connected(void *arg, int res)
{
	struct conn *c = arg;

	c->bconn = NULL;
	if (res < 0) {
		connect_error(c, -res);
		return;
	}
	/* The watch's events until now were noted, not acted on: replay a read. */
	bool rd = c->down.ready || c->down.drain;
	c->down.ready = false;
	connected(c, ENGINE_WRITE | (rd ? ENGINE_READ : 0));
}

static void backend_ready(void *arg, uint32_t ev)
{
	struct conn *c = arg;

	if (ev & (ENGINE_RDHUP | ENGINE_ERROR))
		c->down.drain = true;
	if (c->state == CONN_RELAY) {
		tcp_relay_run(c, (ev & (ENGINE_WRITE | ENGINE_ERROR)) && half_pending(&c->up),
			      ev & (ENGINE_READ | ENGINE_ERROR));
		return;
	}
	if (c->bconn) {
		/* The engine's connect reports the outcome; bytes the backend sends first (a
		 * server greeting) are read once it has. */
		c->down.ready |= (ev & ENGINE_READ) != 0;
		return;
	}
	/* Writable without an error flag is a completed connect: no SO_ERROR call needed. */
	int err = 0;
	socklen_t len = sizeof(err);
	if ((ev & ENGINE_ERROR) && getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err)
		connect_failed(c, err);
	else if (ev & ENGINE_WRITE)
		connected(c, ev);
}

/* Stop watching one socket of c (completion mode: the engine's receive and sends need no
 * watch). */
static void conn_unwatch(struct conn *c, struct engine_watch **wp)
{
	if (*wp)
		c->w->ops->unwatch(c->w->eng, *wp);
	*wp = NULL;
}

bool tcp_half_to_readiness(struct conn *c, struct half *h)
{
	struct worker *w = c->w;
	bool up = h == &c->up;
	struct engine_watch **src = up ? &c->cwatch : &c->bwatch;
	struct engine_watch **dst = up ? &c->bwatch : &c->cwatch;

	conn_unwatch(c, src);
	*src = w->ops->watch(w->eng, up ? c->cfd : c->bfd, ENGINE_READ | ENGINE_WRITE,
			     up ? client_ready : backend_ready, c);
	/* The readiness path waits for its sink's WRITE event when the sink pushes back. */
	if (*src && !*dst)
		*dst = w->ops->watch(w->eng, up ? c->bfd : c->cfd, ENGINE_WRITE,
				     up ? backend_ready : client_ready, c);
	return *src && *dst;
}

void tcp_uring_unwatch(struct conn *c)
{
	conn_unwatch(c, &c->cwatch);
	conn_unwatch(c, &c->bwatch);
}

static void conn_timer(struct timer *t, uint64_t now)
{
	struct conn *c = container_of(t, struct conn, timer);
	const struct cfg_listener *lc = c->l->cfg;

	if (c->state == CONN_CONNECTING) {
		connect_failed(c, ETIMEDOUT);
		return;
	}
	if (c->state == CONN_PROXY_IN) {
		reject(c, LISTENER_REJECT_PROXY, "no whole PROXY header within timeouts.connect");
		return;
	}
	if (c->state == CONN_QUEUED) {
		if (queue_cancel(c->qpool, &c->qw)) {
			conn_take_grant(c); /* a slot came with the timeout: take it */
			return;
		}
		atomic_fetch_add_explicit(&c->qpool->queue.timeout_total, 1, memory_order_relaxed);
		reject(c, LISTENER_REJECT_QUEUE_TIMEOUT,
		       "no backend had room within the queue timeout");
		return;
	}
	if (now - c->last_active >= lc->idle_timeout_ms) {
		tcp_conn_finish(c, "idle timeout", false, false);
		return;
	}
	if (lc->lifetime_ms && now - c->start >= lc->lifetime_ms) {
		if (conn_quiet(c, now)) {
			tcp_conn_finish(c, "lifetime", false, false);
			return;
		}
		if (now - c->start >= lc->lifetime_ms + LIFETIME_CUT_MS) {
			/* Cut mid-stream: a reset, so neither side takes it for the end. */
			tcp_conn_finish(c, "lifetime, cut", true, true);
			return;
		}
	}
	timer_arm(&c->w->timers, t, conn_deadline(c, now));
}

/* Start a non-blocking connect to b. 0 = in progress, or -errno. */
static int start_connect(struct conn *c, struct backend *b)
{
	struct worker *w = c->w;
	int fd = socket(b->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	(void)sock_keepalive(fd, &c->l->cfg->keepalive); /* best effort, as TCP_NODELAY */
	/* The engine connects with its next wait where it can: no syscall of its own. */
	c->down.ready = false;
	if (w->ops->connect_start)
		c->bconn = w->ops->connect_start(w->eng, fd, (const struct sockaddr *)&b->addr.ss,
						 b->addr.len, backend_connected, c);
	if (!c->bconn && connect(fd, (const struct sockaddr *)&b->addr.ss, b->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	/* In completion mode the engine reads the socket once connected, and its connect
	 * reports the outcome: the socket needs a watch only for a connect by syscall
	 * (writability). */
	if (!c->rx_mode || !c->bconn)
		c->bwatch = w->ops->watch(w->eng, fd,
					  c->rx_mode ? ENGINE_WRITE : ENGINE_READ | ENGINE_WRITE,
					  backend_ready, c);
	if (!c->bwatch && (!c->rx_mode || !c->bconn)) {
		if (c->bconn)
			w->ops->connect_drop(w->eng, c->bconn);
		c->bconn = NULL;
		/* Through the engine too: its queued connect names fd, whose number must not be
		 * reused before that is submitted. */
		close_fd(w, fd, false);
		return -ENOMEM;
	}
	c->bfd = fd;
	c->be = b;
	c->kill_gen = atomic_load_explicit(&b->kill_gen, memory_order_relaxed);
	timer_arm(&w->timers, &c->timer, w->now + c->l->cfg->connect_timeout_ms);
	return 0;
}

/* Connect to b, whose slot c holds (backend_take); on failure try the next backend. */
static void connect_to(struct conn *c, struct backend *b)
{
	int err = start_connect(c, b);
	if (err) {
		c->be = b;
		connect_error(c, -err);
	}
}

/* Every backend with room is full: wait in the pool's queue (connect_next decided it may).
 * The client is not read meanwhile; queue_dispatch grants a slot through the inbox. */
static void conn_enqueue(struct conn *c, struct pool *p)
{
	struct worker *w = c->w;

	c->qpool = p;
	c->qw = (struct queue_waiter){
	    .inbox = &w->tcp->inbox,
	    .client = (const struct sockaddr *)&c->client,
	    .tried = c->tried,
	    .ntried = c->ntried,
	    .turn = &c->turn,
	};
	if (queue_enter(p, &c->qw) < 0) {
		reject(c, LISTENER_REJECT_QUEUE_FULL, "every backend is full and so is the queue");
		return;
	}
	c->state = CONN_QUEUED;
	timer_arm(&w->timers, &c->timer,
		  w->now + atomic_load_explicit(&p->queue.timeout_ms, memory_order_relaxed));
	queue_dispatch(p); /* a slot may have freed since the pick */
}

/* Pick the next backend not yet tried and connect; wait in the pool's queue when every
 * backend is full (and it has one); close the client when none is left. */
static void connect_next(struct conn *c)
{
	struct pool *p = atomic_load_explicit(&c->l->pool, memory_order_relaxed);
	uint8_t failed = c->ntried; /* backends whose connect failed */
	struct backend *b = NULL;

	/* First come, first served: while clients wait, a new one queues behind them. */
	if (atomic_load_explicit(&p->queue.len, memory_order_relaxed) == 0)
		b = listener_pick_backend(c->l, (struct sockaddr *)&c->client, c->tried, &c->ntried,
					  0, &c->turn);
	if (!b) {
		/* The backends found full are not tried: a queued client may get any of them. */
		struct pick_ctx ctx = {.tried = c->tried, .ntried = failed};
		if (failed < listener_max_tries(c->l) && pool_may_queue(p, &ctx)) {
			c->ntried = failed;
			conn_enqueue(c, p);
			return;
		}
		reject(c, LISTENER_REJECT_NO_BACKEND,
		       c->ntried ? "no backend could be reached" : "no usable backend");
		return;
	}
	connect_to(c, b);
}

/* A queued connection was granted a slot (c->qw.granted, taken for it): connect there. */
static void conn_take_grant(struct conn *c)
{
	struct backend *b = c->qw.granted;

	timer_cancel(&c->w->timers, &c->timer);
	c->state = CONN_CONNECTING;
	if (c->ntried < LISTENER_MAX_TRIES)
		c->tried[c->ntried++] = b;
	connect_to(c, b);
}

/* Connect the queued connections that were granted a slot (the worker's wake). */
void tcp_relay_queue_run(struct worker *w)
{
	struct list_head granted;

	queue_inbox_take(&w->tcp->inbox, &granted);
	while (!list_empty(&granted)) {
		struct queue_waiter *wt = list_first_entry(&granted, struct queue_waiter, link);
		list_del(&wt->link);
		conn_take_grant(container_of(wt, struct conn, qw));
	}
}

static struct conn *conn_alloc(struct worker *w)
{
	struct conn *c = objpool_get(&w->tcp->conn_pool);
	if (c) {
		memset(c, 0, offsetof(struct conn, tried));
		c->turn = PICK_NO_TURN;
	}
	return c;
}

/* accept_proxy: read the client's PROXY header — peeked, so that not a byte past it is
 * taken — then check the address it names as any client's, and go on to a backend. The
 * payload that came with the header stays in the socket for the relay. */
static void proxy_in(struct conn *c, uint32_t ev)
{
	struct worker *w = c->w;
	const struct cfg_listener *lc = c->l->cfg;
	uint8_t buf[ADDR_PROXY_IN_MAX];
	char err[160], how[200];
	struct sockaddr_storage src;
	bool local;

	ssize_t n = recv(c->cfd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		reject(c, LISTENER_REJECT_PROXY,
		       n == 0 ? "closed before a whole PROXY header"
			      : "reset before its PROXY header");
		return;
	}
	int hlen =
	    addr_proxy_parse(lc->accept_proxy, buf, (size_t)n, &src, &local, err, sizeof(err));
	if (hlen == 0) {
		/* The rest comes with the next read event, or the timer ends it; unless the
		 * client has already hung up behind what it sent. */
		if (ev & (ENGINE_RDHUP | ENGINE_ERROR))
			reject(c, LISTENER_REJECT_PROXY, "closed before a whole PROXY header");
		return;
	}
	if (hlen < 0) {
		snprintf(how, sizeof(how), "bad PROXY header: %s", err);
		reject(c, LISTENER_REJECT_PROXY, how);
		return;
	}
	if (recv(c->cfd, buf, (size_t)hlen, 0) != hlen) {
		reject(c, LISTENER_REJECT_PROXY, "PROXY header could not be read back");
		return;
	}
	if (!local)
		c->client = src;
	if (!listener_screen(c->l, (struct sockaddr *)&c->client, w->now, &c->per_client)) {
		tcp_conn_finish(c, "refused", false, false);
		return;
	}
	timer_cancel(&w->timers, &c->timer);
	c->state = CONN_CONNECTING;
	c->up.ready = true; /* bytes may have come with the header: read them once connected */
	if (c->rx_mode)	    /* from here the engine reads the client (completion mode) */
		conn_unwatch(c, &c->cwatch);
	connect_next(c);
}

void tcp_relay_accept(struct worker *w, struct listener *l, int fd,
		      const struct sockaddr_storage *client, socklen_t len)
{
	bool per_client = false;
	bool proxied = l->cfg->accept_proxy != CFG_PROXY_NONE;

	if (proxied ? !listener_open(l, (const struct sockaddr *)client, w->now)
		    : !listener_admit(l, (const struct sockaddr *)client, 1, w->now, &per_client)) {
		close_fd(w, fd, false);
		return;
	}
	struct conn *c = conn_alloc(w);
	if (!c) {
		listener_leave(l, (const struct sockaddr *)client, per_client);
		close_fd(w, fd, false);
		return;
	}
	c->per_client = per_client;
	c->w = w;
	c->l = l;
	c->cfd = fd;
	c->bfd = -1;
	c->up.pipe.rd = c->up.pipe.wr = c->down.pipe.rd = c->down.pipe.wr = -1;
	c->state = CONN_CONNECTING;
	c->start = c->last_active = w->now;
	memcpy(&c->client, client, len < sizeof(c->client) ? len : sizeof(c->client));
	timer_init(&c->timer, conn_timer);

	list_add(&c->link, &w->tcp->conns);
	w->tcp->nconns++;

	/* TCP_NODELAY comes from the listener socket (inherited on accept). */
	/* In completion mode the engine reads the client once the backend is connected (bytes
	 * wait in the socket until then): no watch, unless a PROXY header is to be read. */
	c->rx_mode = w->ops->recv_available && w->ops->recv_available(w->eng);
	if (!c->rx_mode || proxied) {
		c->cwatch = w->ops->watch(w->eng, fd, ENGINE_READ | ENGINE_WRITE, client_ready, c);
		if (!c->cwatch) {
			tcp_conn_finish(c, "out of memory", true, false);
			return;
		}
	}
	if (proxied) {
		c->state = CONN_PROXY_IN;
		timer_arm(&w->timers, &c->timer, w->now + l->cfg->connect_timeout_ms);
		proxy_in(c, 0); /* the header may be there already */
		return;
	}
	connect_next(c);
}

void tcp_relay_close_all(struct worker *w)
{
	/* Cut, not finished: a reset on both sides, so that neither peer mistakes what it got
	 * so far for the whole stream. */
	while (!list_empty(&w->tcp->conns))
		tcp_conn_finish(list_first_entry(&w->tcp->conns, struct conn, link),
				"shutdown grace over", true, true);
}

void tcp_relay_kill_scan(struct worker *w)
{
	struct conn *c, *next;

	list_for_each_entry_safe(c, next, &w->tcp->conns, link)
	{
		if (c->be &&
		    atomic_load_explicit(&c->be->kill_gen, memory_order_relaxed) != c->kill_gen)
			tcp_conn_finish(c, "killed", true, true);
	}
}

size_t tcp_relay_conns(const struct worker *w)
{
	return w->tcp->nconns;
}

static void queue_kick(void *arg)
{
	worker_wake(arg);
}

int tcp_relay_init(struct worker *w)
{
	struct tcp_state *t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	list_init(&t->conns);
	t->nconns = 0;
	queue_inbox_init(&t->inbox, queue_kick, w);
	objpool_init(&t->conn_pool, sizeof(struct conn), CONN_SLAB);
	const char *copy = getenv("LB_BULK_COPY");
	t->nbig_spare = t->nbig_lent = 0;
	t->copy_off = copy && strcmp(copy, "0") == 0;
	w->tcp = t;
	return 0;
}

void tcp_relay_free(struct worker *w)
{
	struct tcp_state *t = w->tcp;
	if (!t)
		return;
	objpool_destroy(&t->conn_pool);
	queue_inbox_destroy(&t->inbox);
	while (t->nbig_spare)
		munmap(t->big_spare[--t->nbig_spare], BIG_BUF);
	free(t);
	w->tcp = NULL;
}
