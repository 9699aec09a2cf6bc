/* TCP relay: one client connection and its backend connection. Bytes move with splice(2)
 * through a pipe borrowed from the worker's pool only while they are in flight, so an idle
 * pair costs one small struct and no pipe. Written once against engine.h for both engines;
 * where the engine can receive and send by completion (io_uring), small messages arrive in
 * engine buffers and go out from them with no syscall of lb's own, and a direction falls
 * back to the readiness path below for good when it turns bulk or its sink pushes back. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lb/addr.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/pool.h"
#include "lb/tcp_relay.h"
#include "lb/worker.h"

/* Most backends one connection may try: the first pick plus up to 15 retries. */
#define CONN_MAX_TRIES 16
/* Bytes asked of one splice call; the pipe's size bounds what actually moves. */
#define SPLICE_CHUNK (1 << 20)
/* Connection objects allocated per slab. */
#define CONN_SLAB 64
/* Completion mode: buffers one direction may hold for a slow sink before it falls back to
 * the readiness path (whose pipe then bounds what sits in lb). */
#define RX_HELD_MAX 8

enum conn_state { CONN_CONNECTING, CONN_RELAY };

/* Engine buffers received but not yet fully sent, oldest first (allocated when needed). */
struct held_q {
	uint32_t head, n, cap;
	struct held {
		char *data;
		uint32_t len;
		uint32_t buf;
	} e[];
};

/* One direction of the pair. */
struct half {
	struct engine_recv *rx; /* the engine reads the source (completion mode); NULL: not */
	struct engine_send *tx; /* completion mode: the send in flight to the sink */
	char *tx_data;		/* ... its bytes, */
	uint32_t tx_len;	/* ... their count */
	uint32_t tx_buf;	/* ... and the engine buffer holding them */
	struct held_q *held;	/* completion mode: data waiting behind tx */
	struct lb_pipe pipe;	/* rd == -1: none borrowed */
	uint32_t in_pipe;	/* bytes read from the source, not yet written to the sink */
	bool eof;		/* the source sent FIN */
	bool shut;		/* FIN forwarded to the sink */
	bool bulk;		/* a read filled a whole buffer: splice from now on */
	bool drain;		/* the source hung up or failed: read until EOF/EAGAIN */
	bool ready;		/* the source signalled data before the backend was connected */
	uint64_t bytes;		/* delivered to the sink */
};

struct conn {
	struct worker *w;
	struct listener *l;
	struct backend *be;
	int cfd, bfd;
	struct engine_watch *cwatch, *bwatch;
	uint8_t state;
	uint8_t ntried;
	bool rx_mode; /* the engine reads both sockets (engine_recv) once connected */
	uint32_t hash;
	uint32_t kill_gen;  /* c->be->kill_gen when the connect started */
	struct half up;	    /* client -> backend */
	struct half down;   /* backend -> client */
	struct timer timer; /* connect timeout, then idle timeout */
	uint64_t start, last_active;
	struct conn *prev, *next;
	struct backend *tried[CONN_MAX_TRIES];
	struct sockaddr_storage client;
};

enum pump_result { PUMP_OK, PUMP_SRC_ERR, PUMP_DST_ERR, PUMP_NO_MEM };

static void connect_next(struct conn *c);
static void rx_start(struct conn *c);

static struct conn *conn_of_timer(struct timer *t)
{
	return (struct conn *)((char *)t - offsetof(struct conn, timer));
}

static void set_nodelay(int fd)
{
	int one = 1;
	/* Relaying must not add Nagle delays to small request/response exchanges. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void close_fd(int fd, bool reset)
{
	if (fd < 0)
		return;
	if (reset) {
		/* SO_LINGER 0 turns close() into a RST: how a reset is passed on. */
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
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

static uint32_t held_count(const struct half *h)
{
	return h->held ? h->held->n : 0;
}

/* Take the oldest held buffer; the queue is freed when it empties. False if none. */
static bool held_pop(struct half *h, struct held *out)
{
	struct held_q *q = h->held;
	if (!q)
		return false;
	*out = q->e[q->head];
	q->head = (q->head + 1) % q->cap;
	if (--q->n == 0) {
		free(q);
		h->held = NULL;
	}
	return true;
}

/* Queue an engine buffer behind what the sink has not taken yet. */
static bool held_push(struct half *h, char *data, uint32_t len, unsigned buf)
{
	struct held_q *q = h->held;
	if (!q || q->n == q->cap) {
		uint32_t cap = q ? q->cap * 2 : 4;
		struct held_q *nq = malloc(sizeof(*nq) + cap * sizeof(nq->e[0]));
		struct held x;
		if (!nq)
			return false;
		nq->head = 0;
		nq->n = 0;
		nq->cap = cap;
		while (held_pop(h, &x))
			nq->e[nq->n++] = x;
		h->held = q = nq;
	}
	q->e[(q->head + q->n++) % q->cap] = (struct held){data, len, buf};
	return true;
}

/* Stop the engine's receive and send, give back every held buffer (the pair is ending). */
static void half_release_rx(struct worker *w, struct half *h)
{
	if (h->rx)
		w->ops->recv_drop(w->eng, h->rx);
	h->rx = NULL;
	if (h->tx)
		w->ops->send_drop(w->eng, h->tx);
	h->tx = NULL;
	for (struct held x; held_pop(h, &x);)
		w->ops->buf_put(w->eng, x.buf);
}

static void access_log(struct conn *c, const char *how)
{
	char client[ADDR_STR_MAX];
	addr_format((struct sockaddr *)&c->client, client, sizeof(client));
	log_info("access listener=%s client=%s backend=%s/%s bytes_up=%llu bytes_down=%llu "
		 "duration_ms=%llu end=\"%s\"",
		 c->l->cfg->name, client, c->be ? c->be->pool->name : "-",
		 c->be ? c->be->name : "-", (unsigned long long)c->up.bytes,
		 (unsigned long long)c->down.bytes, (unsigned long long)(c->w->now - c->start),
		 how);
}

static void backend_detach(struct conn *c, bool reset)
{
	struct worker *w = c->w;
	if (c->bwatch)
		w->ops->unwatch(w->eng, c->bwatch);
	c->bwatch = NULL;
	close_fd(c->bfd, reset);
	c->bfd = -1;
	if (c->be)
		backend_release(c->be);
}

/* End the pair: close both sides (resetting those asked), give everything back. */
static void conn_finish(struct conn *c, const char *how, bool reset_client, bool reset_backend)
{
	struct worker *w = c->w;

	timer_cancel(&w->timers, &c->timer);
	backend_detach(c, reset_backend);
	if (c->cwatch)
		w->ops->unwatch(w->eng, c->cwatch);
	close_fd(c->cfd, reset_client);
	half_release_pipe(w, &c->up);
	half_release_pipe(w, &c->down);
	half_release_rx(w, &c->up);
	half_release_rx(w, &c->down);
	listener_release(c->l);
	if (w->rt->log_access)
		access_log(c, how);

	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nconns--;
	objpool_put(&w->conn_pool, c);
}

/* Small-message path: recv into the worker's scratch buffer and send at once. What the sink
 * does not take is parked in a pipe, which pump() then drains with splice like any other.
 * Returns with h->bulk set when a read filled the buffer (the caller switches to splice). */
static enum pump_result pump_small(struct conn *c, struct half *h, int src, int dst)
{
	struct worker *w = c->w;

	for (;;) {
		ssize_t n = recv(src, w->relay_buf, sizeof(w->relay_buf), 0);
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
		ssize_t m = send(dst, w->relay_buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
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
			ssize_t r = write(h->pipe.wr, w->relay_buf + m, (size_t)(n - m));
			if (r != n - m)
				return PUMP_NO_MEM;
			h->in_pipe = (uint32_t)r;
		}
		if (n == (ssize_t)sizeof(w->relay_buf))
			h->bulk = true;
		if (h->in_pipe || h->bulk)
			return PUMP_OK; /* pump() drains the pipe / switches to splice */
		if (!h->drain) {
			/* A short read emptied the socket: whatever arrives later raises a new
			 * edge (both engines report every wake-up), so skip the recv that would
			 * only say EAGAIN. A FIN that came with the data is flagged RDHUP. */
			half_release_pipe(w, h);
			return PUMP_OK;
		}
	}
}

/* Move what the source has towards the sink until one of them would block. */
static enum pump_result pump(struct conn *c, struct half *h, int src, int dst)
{
	struct worker *w = c->w;

	if (h->tx)
		return PUMP_OK; /* the engine is sending; its completion resumes us */
	for (;;) {
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
			return PUMP_OK; /* the engine reads the source and calls rx_data */
		if (!h->bulk) {
			enum pump_result r = pump_small(c, h, src, dst);
			if (r != PUMP_OK)
				return r;
			if (!h->eof && !h->bulk && !h->in_pipe)
				return PUMP_OK; /* the source is drained */
			continue;		/* forward the FIN, drain the pipe, or splice */
		}
		if (h->pipe.rd < 0 && pipe_pool_get(&w->pipes, &h->pipe) < 0) {
			h->pipe.rd = h->pipe.wr = -1;
			return PUMP_NO_MEM;
		}
		ssize_t n = splice(src, NULL, h->pipe.wr, NULL, SPLICE_CHUNK,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			h->in_pipe = (uint32_t)n;
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
			half_release_pipe(w, h); /* empty: back to the pool while idle */
			return PUMP_OK;
		}
		return PUMP_SRC_ERR;
	}
}

static void count_bytes(struct conn *c, uint64_t up0, uint64_t down0)
{
	struct backend *b = c->be;
	if (c->up.bytes != up0)
		atomic_fetch_add_explicit(&b->bytes_out, c->up.bytes - up0, memory_order_relaxed);
	if (c->down.bytes != down0)
		atomic_fetch_add_explicit(&b->bytes_in, c->down.bytes - down0,
					  memory_order_relaxed);
}

/* Act on a pump's outcome: end the pair on error or once both FINs are through. */
static void relay_outcome(struct conn *c, enum pump_result r, bool client_failed)
{
	if (r == PUMP_NO_MEM) {
		log_warn("listener %s: no pipe or buffer to relay with (%s); resetting connection",
			 c->l->cfg->name, strerror(errno));
		conn_finish(c, "out of pipes", true, true);
	} else if (r != PUMP_OK) {
		/* The failed side is gone (reset or aborted): reset the other one too. */
		conn_finish(c, client_failed ? "client reset" : "backend reset", !client_failed,
			    client_failed);
	} else if (c->up.shut && c->down.shut) {
		conn_finish(c, "closed", false, false);
	}
}

/* Run the directions asked for. */
static void relay(struct conn *c, bool do_up, bool do_down)
{
	uint64_t up0 = c->up.bytes, down0 = c->down.bytes;
	enum pump_result r = PUMP_OK;
	bool client_failed = false;

	if (do_up) {
		r = pump(c, &c->up, c->cfd, c->bfd);
		client_failed = r == PUMP_SRC_ERR;
	}
	if (r == PUMP_OK && do_down) {
		r = pump(c, &c->down, c->bfd, c->cfd);
		client_failed = r == PUMP_DST_ERR;
	}
	count_bytes(c, up0, down0);
	relay_outcome(c, r, client_failed);
}

static void client_ready(void *arg, uint32_t ev)
{
	struct conn *c = arg;
	if (ev & (ENGINE_RDHUP | ENGINE_ERROR))
		c->up.drain = true;
	if (c->state != CONN_RELAY) {
		/* Bytes wait in the socket until the backend is connected. */
		c->up.ready |= (ev & (ENGINE_READ | ENGINE_ERROR)) != 0;
		return;
	}
	relay(c, ev & (ENGINE_READ | ENGINE_ERROR),
	      (ev & (ENGINE_WRITE | ENGINE_ERROR)) && c->down.in_pipe);
}

static void reject(struct conn *c, enum listener_reject why, const char *how)
{
	listener_reject(c->l, why, (struct sockaddr *)&c->client, "closing connection", how,
			c->w->now);
	conn_finish(c, how, false, false);
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
			conn_finish(c, "proxy header not sent", true, true);
			return;
		}
	}
	c->state = CONN_RELAY;
	c->last_active = w->now;
	if (lc->idle_timeout_ms)
		timer_arm(&w->timers, &c->timer, w->now + lc->idle_timeout_ms);
	if (c->rx_mode)
		rx_start(c);
	else
		relay(c, c->up.ready || c->up.drain, (ev & (ENGINE_READ | ENGINE_ERROR)) != 0);
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

static void backend_ready(void *arg, uint32_t ev)
{
	struct conn *c = arg;

	if (ev & (ENGINE_RDHUP | ENGINE_ERROR))
		c->down.drain = true;
	if (c->state == CONN_RELAY) {
		relay(c, (ev & (ENGINE_WRITE | ENGINE_ERROR)) && c->up.in_pipe,
		      ev & (ENGINE_READ | ENGINE_ERROR));
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

/* Leave completion mode on h for good: the source's watch asks for READ again and pump()
 * reads the source itself. False if the new watch could not be made. */
static bool half_to_readiness(struct conn *c, struct half *h)
{
	struct worker *w = c->w;
	bool up = h == &c->up;
	struct engine_watch **wp = up ? &c->cwatch : &c->bwatch;

	w->ops->unwatch(w->eng, *wp);
	*wp = w->ops->watch(w->eng, up ? c->cfd : c->bfd, ENGINE_READ | ENGINE_WRITE,
			    up ? client_ready : backend_ready, c);
	return *wp != NULL;
}

static void up_sent(void *arg, int res);
static void down_sent(void *arg, int res);

/* Completion mode: have the engine send len bytes of engine buffer buf to h's sink. */
static bool tx_start(struct conn *c, struct half *h, char *data, uint32_t len, unsigned buf)
{
	struct worker *w = c->w;
	bool up = h == &c->up;

	h->tx = w->ops->send_start(w->eng, up ? c->bfd : c->cfd, data, len, buf,
				   up ? up_sent : down_sent, c);
	h->tx_data = data;
	h->tx_len = len;
	h->tx_buf = buf;
	return h->tx != NULL;
}

/* After a completion-mode event on h: carry on the readiness way where needed, then end the
 * pair if it failed or is done. */
static void rx_continue(struct conn *c, struct half *h, enum pump_result r, uint64_t up0,
			uint64_t down0)
{
	bool up = h == &c->up;
	if (r == PUMP_OK)
		r = pump(c, h, up ? c->cfd : c->bfd, up ? c->bfd : c->cfd);
	count_bytes(c, up0, down0);
	relay_outcome(c, r, up ? r == PUMP_SRC_ERR : r == PUMP_DST_ERR);
}

/* Completion mode: the engine read res bytes of h's source into its buffer buf (or res is
 * EOF / an error). They go straight to the engine to send; while a send is in flight more
 * are held behind it. A full buffer (bulk), or a sink that lets RX_HELD_MAX buffers pile
 * up, ends completion mode on h: once the held data is out, pump() carries on with
 * recv/splice. */
static void rx_data(struct conn *c, struct half *h, int res, char *data, unsigned buf, bool more)
{
	struct worker *w = c->w;
	uint64_t up0 = c->up.bytes, down0 = c->down.bytes;
	enum pump_result r = PUMP_OK;

	if (!more)
		h->rx = NULL; /* the engine is done with it */
	if (res > 0) {
		c->last_active = w->now;
		bool ok = h->tx ? held_push(h, data, (uint32_t)res, buf)
				: tx_start(c, h, data, (uint32_t)res, buf);
		if (!ok) {
			w->ops->buf_put(w->eng, buf);
			r = PUMP_NO_MEM;
		}
		if (res == ENGINE_RECV_BUF)
			h->bulk = true;
		if (h->rx && (h->bulk || held_count(h) >= RX_HELD_MAX))
			w->ops->recv_stop(w->eng, h->rx);
	} else if (res == 0) {
		h->eof = true;
	} else if (res != -ECANCELED && res != -ENOBUFS && res != -EOPNOTSUPP) {
		errno = -res;
		r = PUMP_SRC_ERR;
	}
	if (r == PUMP_OK && !more && !h->eof) {
		log_debug("listener %s: %s reads the %s socket itself from now on", c->l->cfg->name,
			  h->bulk	    ? "bulk transfer"
			  : res == -ENOBUFS ? "out of receive buffers"
			  : held_count(h)   ? "slow receiver"
					    : "engine stopped",
			  h == &c->up ? "client" : "backend");
		if (!half_to_readiness(c, h))
			r = PUMP_NO_MEM;
	}
	rx_continue(c, h, r, up0, down0);
}

/* Completion mode: the engine's send on h finished. Send the next held buffer, or let pump()
 * forward a FIN or take over reading. */
static void tx_done(struct conn *c, struct half *h, int res)
{
	struct worker *w = c->w;
	uint64_t up0 = c->up.bytes, down0 = c->down.bytes;
	enum pump_result r = PUMP_OK;

	h->tx = NULL;
	if (res <= 0) {
		w->ops->buf_put(w->eng, h->tx_buf);
		errno = res < 0 ? -res : EPIPE;
		r = PUMP_DST_ERR;
	} else if ((uint32_t)res < h->tx_len) {
		/* Short (interrupted): send the rest. */
		h->bytes += (uint64_t)res;
		if (!tx_start(c, h, h->tx_data + res, h->tx_len - (uint32_t)res, h->tx_buf)) {
			w->ops->buf_put(w->eng, h->tx_buf);
			r = PUMP_NO_MEM;
		}
	} else {
		h->bytes += (uint64_t)res;
		w->ops->buf_put(w->eng, h->tx_buf);
		struct held x;
		if (held_pop(h, &x) && !tx_start(c, h, x.data, x.len, x.buf)) {
			w->ops->buf_put(w->eng, x.buf);
			r = PUMP_NO_MEM;
		}
	}
	rx_continue(c, h, r, up0, down0);
}

static void up_sent(void *arg, int res)
{
	struct conn *c = arg;
	tx_done(c, &c->up, res);
}

static void down_sent(void *arg, int res)
{
	struct conn *c = arg;
	tx_done(c, &c->down, res);
}

static void up_data(void *arg, int res, char *data, unsigned buf, bool more)
{
	struct conn *c = arg;
	rx_data(c, &c->up, res, data, buf, more);
}

static void down_data(void *arg, int res, char *data, unsigned buf, bool more)
{
	struct conn *c = arg;
	rx_data(c, &c->down, res, data, buf, more);
}

/* Connected in completion mode: the engine reads both sockets from now on. A side it cannot
 * take is read the readiness way. */
static void rx_start(struct conn *c)
{
	struct worker *w = c->w;
	bool ok = true;

	c->up.rx = w->ops->recv_start(w->eng, c->cfd, up_data, c);
	c->down.rx = w->ops->recv_start(w->eng, c->bfd, down_data, c);
	if (!c->up.rx)
		ok = half_to_readiness(c, &c->up);
	if (ok && !c->down.rx)
		ok = half_to_readiness(c, &c->down);
	if (!ok) {
		conn_finish(c, "out of memory", true, true);
		return;
	}
	if (!c->up.rx || !c->down.rx)
		relay(c, !c->up.rx, !c->down.rx);
}

static void conn_timer(struct timer *t, uint64_t now)
{
	struct conn *c = conn_of_timer(t);
	uint64_t idle = c->l->cfg->idle_timeout_ms;

	if (c->state == CONN_CONNECTING) {
		connect_failed(c, ETIMEDOUT);
		return;
	}
	if (now - c->last_active >= idle) {
		conn_finish(c, "idle timeout", false, false);
		return;
	}
	timer_arm(&c->w->timers, t, c->last_active + idle);
}

/* Start a non-blocking connect to b. 0 = in progress, or -errno. */
static int start_connect(struct conn *c, struct backend *b)
{
	struct worker *w = c->w;
	int fd = socket(b->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	set_nodelay(fd);
	if (connect(fd, (const struct sockaddr *)&b->addr.ss, b->addr.len) < 0 &&
	    errno != EINPROGRESS) {
		int err = -errno;
		close(fd);
		return err;
	}
	/* In completion mode the engine reads the socket: watch it for writability only. */
	c->bwatch = w->ops->watch(
	    w->eng, fd, c->rx_mode ? ENGINE_WRITE : ENGINE_READ | ENGINE_WRITE, backend_ready, c);
	if (!c->bwatch) {
		close(fd);
		return -ENOMEM;
	}
	c->bfd = fd;
	c->be = b;
	c->kill_gen = atomic_load_explicit(&b->kill_gen, memory_order_relaxed);
	timer_arm(&w->timers, &c->timer, w->now + c->l->cfg->connect_timeout_ms);
	return 0;
}

/* Pick the next backend not yet tried and connect; close the client when none is left. */
static void connect_next(struct conn *c)
{
	struct pool *p = c->l->pool;
	int max_tries = p->retries + 1 < CONN_MAX_TRIES ? p->retries + 1 : CONN_MAX_TRIES;

	while (c->ntried < max_tries) {
		struct pick_ctx ctx = {
		    .client = (struct sockaddr *)&c->client,
		    .hash = c->hash,
		    .tried = c->tried,
		    .ntried = c->ntried,
		};
		struct backend *b = pool_pick(p, &ctx);
		if (!b)
			break;
		c->tried[c->ntried++] = b;
		if (!backend_take(b))
			continue; /* filled up since the pick: try another */
		int err = start_connect(c, b);
		if (!err)
			return;
		c->be = b;
		connect_failed(c, -err);
		return;
	}
	reject(c, LISTENER_REJECT_NO_BACKEND,
	       c->ntried ? "no backend could be reached" : "no usable backend");
}

static struct conn *conn_alloc(struct worker *w)
{
	struct conn *c = objpool_get(&w->conn_pool);
	if (c)
		memset(c, 0, offsetof(struct conn, tried));
	return c;
}

void tcp_relay_accept(struct worker *w, struct listener *l, int fd,
		      const struct sockaddr_storage *client, socklen_t len)
{
	const struct cfg_listener *lc = l->cfg;
	const struct sockaddr *sa = (const struct sockaddr *)client;

	atomic_fetch_add_explicit(&l->accepted, 1, memory_order_relaxed);
	if (!cidr_admit(lc->allow, lc->nallow, lc->deny, lc->ndeny, sa)) {
		listener_reject(l, LISTENER_REJECT_ACL, sa, NULL, NULL, w->now);
		close(fd);
		return;
	}
	if (!listener_take(l)) {
		listener_reject(l, LISTENER_REJECT_MAX_CONNS, sa, NULL, NULL, w->now);
		close(fd);
		return;
	}
	struct conn *c = conn_alloc(w);
	if (!c) {
		listener_release(l);
		close(fd);
		return;
	}
	c->w = w;
	c->l = l;
	c->cfd = fd;
	c->bfd = -1;
	c->up.pipe.rd = c->up.pipe.wr = c->down.pipe.rd = c->down.pipe.wr = -1;
	c->state = CONN_CONNECTING;
	c->start = c->last_active = w->now;
	memcpy(&c->client, client, len < sizeof(c->client) ? len : sizeof(c->client));
	c->hash = addr_hash_ip(sa);
	timer_init(&c->timer, conn_timer);

	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;

	/* TCP_NODELAY comes from the listener socket (inherited on accept). */
	c->rx_mode = w->ops->recv_available && w->ops->recv_available(w->eng);
	c->cwatch = w->ops->watch(
	    w->eng, fd, c->rx_mode ? ENGINE_WRITE : ENGINE_READ | ENGINE_WRITE, client_ready, c);
	if (!c->cwatch) {
		conn_finish(c, "out of memory", true, false);
		return;
	}
	connect_next(c);
}

void tcp_relay_close_all(struct worker *w)
{
	while (w->conns)
		conn_finish(w->conns, "shutdown", false, false);
}

void tcp_relay_kill_scan(struct worker *w)
{
	for (struct conn *c = w->conns, *next; c; c = next) {
		next = c->next;
		if (c->be &&
		    atomic_load_explicit(&c->be->kill_gen, memory_order_relaxed) != c->kill_gen)
			conn_finish(c, "killed", true, true);
	}
}

void tcp_relay_init(struct worker *w)
{
	objpool_init(&w->conn_pool, sizeof(struct conn), CONN_SLAB);
}
