/* The TCP relay's completion path, for engines that can receive and send by completion
 * (io_uring): small messages arrive in engine buffers and go out from them with no syscall
 * of lb's own. A direction falls back to the readiness path of tcp_relay.c for good when it
 * turns bulk or its sink pushes back. */
#include <errno.h>
#include <stdlib.h>

#include "lb/engine.h"
#include "lb/log.h"
#include "lb/tcp_relay_int.h"
#include "lb/worker.h"

/* Buffers one direction may hold for a slow sink before it falls back to the readiness path
 * (whose pipe then bounds what sits in lb). */
#define RX_HELD_MAX 8

/* Engine buffers received but not yet fully sent, oldest first (allocated when needed). */
struct held_q {
	uint32_t head, n, cap;
	struct held {
		char *data;
		uint32_t len;
		uint32_t buf;
	} e[];
};

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

void tcp_uring_release(struct worker *w, struct half *h)
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

static void up_sent(void *arg, int res);
static void down_sent(void *arg, int res);

/* Have the engine send len bytes of engine buffer buf to h's sink. */
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
		r = tcp_pump(c, h, up ? c->cfd : c->bfd, up ? c->bfd : c->cfd);
	tcp_count_bytes(c, up0, down0);
	tcp_relay_outcome(c, r, up ? r == PUMP_SRC_ERR : r == PUMP_DST_ERR);
}

/* The engine read res bytes of h's source into its buffer buf (or res is EOF / an error).
 * They go straight to the engine to send; while a send is in flight more are held behind
 * it. A full buffer (bulk), or a sink that lets RX_HELD_MAX buffers pile up, ends
 * completion mode on h: once the held data is out, tcp_pump() carries on with recv/splice. */
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
		if (!tcp_half_to_readiness(c, h))
			r = PUMP_NO_MEM;
	}
	rx_continue(c, h, r, up0, down0);
}

/* The engine's send on h finished. Send the next held buffer, or let tcp_pump() forward a
 * FIN or take over reading. */
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

void tcp_uring_start(struct conn *c)
{
	struct worker *w = c->w;
	bool ok = true;

	tcp_uring_unwatch(c);
	c->up.rx = w->ops->recv_start(w->eng, c->cfd, up_data, c);
	c->down.rx = w->ops->recv_start(w->eng, c->bfd, down_data, c);
	if (!c->up.rx)
		ok = tcp_half_to_readiness(c, &c->up);
	if (ok && !c->down.rx)
		ok = tcp_half_to_readiness(c, &c->down);
	if (!ok) {
		tcp_conn_finish(c, "out of memory", true, true);
		return;
	}
	if (!c->up.rx || !c->down.rx)
		tcp_relay_run(c, !c->up.rx, !c->down.rx);
}
