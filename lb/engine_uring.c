/* io_uring engine: one multishot poll per fd (edge-triggered, like EPOLLET), submitted and
 * reaped in the same io_uring_enter as the wait. Registration and teardown are SQEs batched
 * into that call, so accept/close churn costs no extra syscalls. Relayed sockets are read
 * with multishot recv into a provided-buffer ring instead: the data arrives in the
 * completion, with no readiness event and no recv syscall in between. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <liburing.h>

#include "lb/engine.h"
#include "lb/log.h"
#include "lb/objpool.h"

/* Submission queue depth: registrations and removals queued between two waits. */
#define URING_SQ_ENTRIES 1024
/* Completion queue: multishot polls can post several CQEs per fd per turn; overflow is
 * never lost (IORING_FEAT_NODROP) but costs a slow path, so keep it roomy. */
#define URING_CQ_ENTRIES 16384
/* Watches allocated per slab. */
#define URING_WATCH_SLAB 256
/* user_data of cancel requests; never a valid pointer. */
#define URING_TAG_REMOVE 1ull
/* user_data of a close: (fd << 8) | URING_TAG_CLOSE, never a valid pointer either (objects
 * are 8-byte aligned). Only a failed close posts a completion (IOSQE_CQE_SKIP_SUCCESS). */
#define URING_TAG_CLOSE 2ull
/* Accept requests kept in the kernel per listening socket: each takes one connection per
 * wait (the kernel wakes one of them per connection), so this bounds the connections a
 * listener copy takes per loop turn. */
#define URING_ACCEPTS 8
/* Provided-buffer ring for multishot recv: default entries and its group id. When all are in
 * use a receive ends with ENOBUFS and its owner reads the fd itself. engine_params.recv_bufs
 * sets the entries (LB_URING_RECV, for A/B measurements and for tests that make the buffers
 * run out). */
#define URING_BUFS     256
#define URING_BUFS_MAX 32768
#define URING_BGID     7
/* Busy batching: after a dispatch that ran at least URING_BATCH_NR completions, the next
 * wait asks for that many, but for at most URING_BATCH_US: under load the worker sleeps and
 * wakes once per batch instead of once per event (with DEFER_TASKRUN the kernel wakes it
 * only when the batch is complete); under light load nothing changes. engine_params.batch_nr
 * and batch_us override it (LB_URING_BATCH, for A/B measurements). */
#define URING_BATCH_NR 8
#define URING_BATCH_US 100
/* Receives allocated per slab. */
#define URING_RECV_SLAB 256

enum uring_kind { URING_POLL, URING_RECV, URING_SEND, URING_ACCEPT, URING_CONNECT };

struct engine_watch {
	uint8_t kind; /* URING_POLL; first, like in engine_recv: the CQE says which it is */
	engine_cb cb;
	void *owner; /* NULL once unwatched */
	int fd;
	uint32_t mask;
	int armed; /* a poll request is outstanding in the kernel */
};

struct engine_recv {
	uint8_t kind;  /* URING_RECV */
	bool stopping; /* a cancel is queued */
	bool done;     /* the final completion is being delivered */
	engine_data_cb cb;
	void *owner; /* NULL once dropped */
};

struct engine_send {
	uint8_t kind; /* URING_SEND */
	unsigned buf; /* engine buffer holding the data */
	engine_sent_cb cb;
	void *owner; /* NULL once dropped */
};

struct accept_slot {
	uint8_t kind; /* URING_ACCEPT */
	bool armed;   /* its accept request is in the kernel */
	struct engine_accept *a;
	socklen_t len;
	struct sockaddr_storage ss;
};

struct engine_accept {
	engine_accept_cb cb;
	void *owner; /* NULL once stopped */
	int fd;
	bool failed;	 /* an error was reported: slots are not armed again */
	unsigned narmed; /* slots armed */
	struct accept_slot slot[URING_ACCEPTS];
};

struct engine_connect {
	uint8_t kind; /* URING_CONNECT */
	engine_sent_cb cb;
	void *owner; /* NULL once dropped */
	socklen_t len;
	struct sockaddr_storage ss; /* the kernel reads it when the request is submitted */
};

struct engine {
	struct io_uring ring;
	struct objpool watches;
	struct objpool recvs;
	struct objpool sends;
	struct objpool accepts;
	struct objpool connects;
	struct io_uring_buf_ring *br; /* NULL: no completion-based receive here */
	char *bufs;		      /* nbufs x ENGINE_RECV_BUF bytes */
	unsigned nbufs;
	bool recv_broken;	     /* the kernel refused multishot recv once */
	unsigned last_n;	     /* completions the last dispatch ran */
	unsigned noted;		     /* items callbacks of this dispatch reported (note_work) */
	unsigned batch_nr, batch_us; /* busy batching; batch_nr < 2: off */
	bool conn_ops;		     /* accept_start and close_fd work */
	bool close_broken;	     /* the kernel refused a ring close once: close(2) from now */
	/* Cancels that found the SQ full and a submit failing: queued again before the next
	 * wait submits (never dropped: a poll left armed keeps a closed socket alive). */
	void **cancels;
	size_t ncancels, cancels_cap;
	uint64_t submit_errors;	    /* io_uring_submit failures (SQ full, kernel busy) */
	uint64_t cancel_unexpected; /* cancel results other than done / not found / too late */
	uint64_t close_errors;	    /* ring closes that failed (the fd was not ours?) */
};

static int uring_init(struct io_uring *ring, unsigned sq, unsigned cq)
{
	/* Cheapest task-work mode first; older kernels reject the newer flags with EINVAL. */
	static const unsigned flag_sets[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	int ret = -EINVAL;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | (cq ? IORING_SETUP_CQSIZE : 0);
		p.cq_entries = cq;
		ret = io_uring_queue_init_params(sq, ring, &p);
		if (ret != -EINVAL)
			break;
	}
	if (ret < 0)
		return ret;
	if (!(ring->features & IORING_FEAT_NODROP) || !(ring->features & IORING_FEAT_EXT_ARG)) {
		io_uring_queue_exit(ring);
		return -EOPNOTSUPP;
	}
	return 0;
}

int engine_uring_probe(const char **why)
{
	struct io_uring ring;

	if (getenv("LB_TEST_FAIL_URING")) {
		*why = "refused for testing (LB_TEST_FAIL_URING is set)";
		return -EPERM;
	}
	int ret = uring_init(&ring, 8, 0);
	if (ret < 0) {
		*why =
		    ret == -EOPNOTSUPP ? "kernel lacks IORING_FEAT_NODROP/EXT_ARG" : strerror(-ret);
		return ret;
	}
	io_uring_queue_exit(&ring);
	return 0;
}

static void ur_buf_put(struct engine *e, unsigned buf)
{
	io_uring_buf_ring_add(e->br, e->bufs + (size_t)buf * ENGINE_RECV_BUF, ENGINE_RECV_BUF,
			      (unsigned short)buf, io_uring_buf_ring_mask(e->nbufs), 0);
	io_uring_buf_ring_advance(e->br, 1);
}

/* Register the provided-buffer ring of about want buffers. Without it (an old kernel, or
 * want == 0) every socket is read after a readiness event, as with epoll. Pages are mapped
 * lazily: a buffer costs memory once the kernel first fills it. */
static void setup_bufs(struct engine *e, unsigned long want)
{
	unsigned n = 1;
	if (want == 0)
		return;
	while (n * 2 <= want && n * 2 <= URING_BUFS_MAX)
		n *= 2;
	size_t ring_len = n * sizeof(struct io_uring_buf);
	size_t bufs_len = (size_t)n * ENGINE_RECV_BUF;
	void *br = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *bufs =
	    mmap(NULL, bufs_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct io_uring_buf_reg reg = {
	    .ring_addr = (uintptr_t)br,
	    .ring_entries = n,
	    .bgid = URING_BGID,
	};
	if (br == MAP_FAILED || bufs == MAP_FAILED ||
	    io_uring_register_buf_ring(&e->ring, &reg, 0) < 0) {
		if (br != MAP_FAILED)
			munmap(br, ring_len);
		if (bufs != MAP_FAILED)
			munmap(bufs, bufs_len);
		return;
	}
	e->br = br;
	e->bufs = bufs;
	e->nbufs = n;
	io_uring_buf_ring_init(e->br);
	for (unsigned i = 0; i < n; i++)
		ur_buf_put(e, i);
}

static struct engine *ur_create(const struct engine_params *p)
{
	struct engine *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	int ret = uring_init(&e->ring, URING_SQ_ENTRIES, URING_CQ_ENTRIES);
	if (ret < 0) {
		free(e);
		errno = -ret;
		return NULL;
	}
	objpool_init(&e->watches, sizeof(struct engine_watch), URING_WATCH_SLAB);
	objpool_init(&e->recvs, sizeof(struct engine_recv), URING_RECV_SLAB);
	objpool_init(&e->sends, sizeof(struct engine_send), URING_RECV_SLAB);
	objpool_init(&e->accepts, sizeof(struct engine_accept), 4);
	objpool_init(&e->connects, sizeof(struct engine_connect), URING_RECV_SLAB);
	/* Sizes are fixed (URING_SQ_ENTRIES...): p->max_fds is not needed. */
	setup_bufs(e, p->recv_bufs < 0 ? URING_BUFS : (unsigned long)p->recv_bufs);
	e->batch_nr = p->batch_nr < 0 ? URING_BATCH_NR : (unsigned)p->batch_nr;
	e->batch_us = p->batch_us < 0 ? URING_BATCH_US : (unsigned)p->batch_us;
	if (e->batch_us >= 1000000)
		e->batch_us = 999999;
	e->conn_ops = p->conn_ops != 0;
#ifdef __SANITIZE_THREAD__
	/* ThreadSanitizer follows fds through the calls it intercepts: one the kernel opens or
	 * closes through the ring is invisible to it, and a number another worker reuses then
	 * looks like a race. Its builds accept and close with calls unless told otherwise. */
	if (p->conn_ops == ENGINE_DEFAULT)
		e->conn_ops = false;
#endif
	return e;
}

static void ur_destroy(struct engine *e)
{
	if (e->submit_errors || e->cancel_unexpected || e->ncancels || e->close_errors)
		log_debug("io_uring engine: %llu failed submits, %llu unexpected cancel results, "
			  "%zu cancels never queued, %llu failed closes",
			  (unsigned long long)e->submit_errors,
			  (unsigned long long)e->cancel_unexpected, e->ncancels,
			  (unsigned long long)e->close_errors);
	/* Closes still queued go to the kernel: fds must not outlive the engine. */
	(void)io_uring_submit(&e->ring);
	io_uring_queue_exit(&e->ring);
	if (e->br) {
		munmap(e->br, e->nbufs * sizeof(struct io_uring_buf));
		munmap(e->bufs, (size_t)e->nbufs * ENGINE_RECV_BUF);
	}
	objpool_destroy(&e->watches);
	objpool_destroy(&e->recvs);
	objpool_destroy(&e->sends);
	objpool_destroy(&e->accepts);
	objpool_destroy(&e->connects);
	free(e->cancels);
	free(e);
}

/* Count a failed io_uring_submit; the log gets the 1st, 2nd, 4th, 8th... so that a kernel
 * that keeps refusing does not flood it. */
static void submit_failed(struct engine *e, int err)
{
	e->submit_errors++;
	if ((e->submit_errors & (e->submit_errors - 1)) == 0)
		log_warn("io_uring: submitting queued requests failed: %s (%llu times so far)",
			 strerror(-err), (unsigned long long)e->submit_errors);
}

static struct io_uring_sqe *get_sqe(struct engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (sqe)
		return sqe;
	/* SQ full: hand what is queued to the kernel and take a fresh slot. */
	int ret;
	do
		ret = io_uring_submit(&e->ring);
	while (ret == -EINTR);
	if (ret < 0) {
		submit_failed(e, ret);
		return NULL; /* the SQ is still full; callers cope */
	}
	return io_uring_get_sqe(&e->ring);
}

static void prep_cancel(struct io_uring_sqe *sqe, void *target)
{
	io_uring_prep_cancel(sqe, target, 0);
	io_uring_sqe_set_data64(sqe, URING_TAG_REMOVE);
}

/* Cancel the request whose user_data is target (a watch, receive or send). Without an SQE
 * now, it waits in e->cancels for the next wait. */
static void cancel(struct engine *e, void *target)
{
	struct io_uring_sqe *sqe = get_sqe(e);
	if (sqe) {
		prep_cancel(sqe, target);
		return;
	}
	if (e->ncancels == e->cancels_cap) {
		size_t cap = e->cancels_cap ? e->cancels_cap * 2 : 16;
		void **v = realloc(e->cancels, cap * sizeof(*v));
		if (!v) {
			log_error("io_uring: out of memory for a cancel; a request stays armed");
			return;
		}
		e->cancels = v;
		e->cancels_cap = cap;
	}
	e->cancels[e->ncancels++] = target;
}

/* Queue the cancels that found no SQE, while there are free SQEs. */
static void queue_deferred_cancels(struct engine *e)
{
	size_t i = 0;
	for (; i < e->ncancels; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
		if (!sqe)
			break;
		prep_cancel(sqe, e->cancels[i]);
	}
	e->ncancels -= i;
	memmove(e->cancels, e->cancels + i, e->ncancels * sizeof(*e->cancels));
}

/* target's request is over and its object goes back to a pool: a deferred cancel must not
 * hit whoever gets the object next. */
static void forget_cancel(struct engine *e, void *target)
{
	for (size_t i = 0; i < e->ncancels; i++) {
		if (e->cancels[i] == target) {
			e->cancels[i] = e->cancels[--e->ncancels];
			return;
		}
	}
}

static int arm(struct engine *e, struct engine_watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(e);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, w->fd, w->mask);
	io_uring_sqe_set_data(sqe, w);
	w->armed = 1;
	return 0;
}

static void recycle(struct engine *e, struct engine_watch *w)
{
	if (e->ncancels)
		forget_cancel(e, w);
	objpool_put(&e->watches, w);
}

static struct engine_watch *ur_watch(struct engine *e, int fd, uint32_t events, engine_cb cb,
				     void *owner)
{
	struct engine_watch *w = objpool_get(&e->watches);
	if (!w)
		return NULL;
	w->kind = URING_POLL;
	w->cb = cb;
	w->owner = owner;
	w->fd = fd;
	w->mask = POLLERR | POLLHUP | POLLRDHUP;
	if (events & ENGINE_READ)
		w->mask |= POLLIN;
	if (events & ENGINE_WRITE)
		w->mask |= POLLOUT;
	if (arm(e, w) < 0) {
		recycle(e, w);
		return NULL;
	}
	return w;
}

static void ur_unwatch(struct engine *e, struct engine_watch *w)
{
	w->owner = NULL;
	if (!w->armed) {
		recycle(e, w);
		return;
	}
	/* The poll holds its own file reference, so the caller may close the fd at once; the
	 * watch is recycled when the poll's final completion (-ECANCELED) arrives. An async
	 * cancel, not a poll remove: a remove fails (-EALREADY) while a wake-up of the poll
	 * waits to run, leaving the poll armed and the closed socket alive (never sending its
	 * FIN); a cancel marks the poll so that wake-up ends it. */
	cancel(e, w);
}

/* An object from pool p for a request, and an SQE for it; NULL + errno if either is
 * missing (nothing is kept). */
static void *op_get(struct engine *e, struct objpool *p, struct io_uring_sqe **sqe)
{
	void *o = objpool_get(p);
	*sqe = o ? get_sqe(e) : NULL;
	if (!*sqe) {
		if (o)
			objpool_put(p, o);
		errno = ENOMEM;
		return NULL;
	}
	return o;
}

static bool ur_recv_available(const struct engine *e)
{
	return e->br && !e->recv_broken;
}

static struct engine_recv *ur_recv_start(struct engine *e, int fd, engine_data_cb cb, void *owner)
{
	if (!ur_recv_available(e)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	struct io_uring_sqe *sqe;
	struct engine_recv *r = op_get(e, &e->recvs, &sqe);
	if (!r)
		return NULL;
	*r = (struct engine_recv){.kind = URING_RECV, .cb = cb, .owner = owner};
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = URING_BGID;
	io_uring_sqe_set_data(sqe, r);
	return r;
}

static void ur_recv_stop(struct engine *e, struct engine_recv *r)
{
	if (r->stopping || r->done)
		return;
	r->stopping = true;
	cancel(e, r);
}

static void ur_recv_drop(struct engine *e, struct engine_recv *r)
{
	r->owner = NULL;
	ur_recv_stop(e, r);
}

static void handle_recv(struct engine *e, struct engine_recv *r, struct io_uring_cqe *cqe)
{
	bool more = cqe->flags & IORING_CQE_F_MORE;
	int res = cqe->res;
	char *data = NULL;
	unsigned buf = 0;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		buf = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		data = e->bufs + (size_t)buf * ENGINE_RECV_BUF;
	}
	if (res == -EINVAL) {
		/* A kernel without multishot recv (before 6.0) refuses it: stop asking. */
		e->recv_broken = true;
		res = -EOPNOTSUPP;
	}
	r->done = !more;
	if (!r->owner) {
		if (data)
			ur_buf_put(e, buf);
	} else if (data && res > 0) {
		r->cb(r->owner, res, data, buf, more);
	} else {
		if (data)
			ur_buf_put(e, buf);
		r->cb(r->owner, res > 0 ? 0 : res, NULL, 0, more);
	}
	if (!more) {
		if (e->ncancels)
			forget_cancel(e, r);
		objpool_put(&e->recvs, r);
	}
}

static struct engine_send *ur_send_start(struct engine *e, int fd, const char *data, uint32_t len,
					 unsigned buf, engine_sent_cb cb, void *owner)
{
	struct io_uring_sqe *sqe;
	struct engine_send *s = op_get(e, &e->sends, &sqe);
	if (!s)
		return NULL;
	*s = (struct engine_send){.kind = URING_SEND, .buf = buf, .cb = cb, .owner = owner};
	/* MSG_WAITALL: the kernel retries a short send on a stream socket itself. */
	io_uring_prep_send(sqe, fd, data, len, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data(sqe, s);
	return s;
}

static void ur_send_drop(struct engine *e, struct engine_send *s)
{
	s->owner = NULL;
	cancel(e, s);
}

static void handle_send(struct engine *e, struct engine_send *s, int res)
{
	if (s->owner)
		s->cb(s->owner, res);
	else
		ur_buf_put(e, s->buf);
	if (e->ncancels)
		forget_cancel(e, s);
	objpool_put(&e->sends, s);
}

static int arm_accept(struct engine *e, struct accept_slot *sl)
{
	struct io_uring_sqe *sqe = get_sqe(e);
	if (!sqe)
		return -EBUSY;
	sl->len = sizeof(sl->ss);
	io_uring_prep_accept(sqe, sl->a->fd, (struct sockaddr *)&sl->ss, &sl->len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data(sqe, sl);
	sl->armed = true;
	sl->a->narmed++;
	return 0;
}

static void accept_free(struct engine *e, struct engine_accept *a)
{
	if (e->ncancels)
		for (unsigned i = 0; i < URING_ACCEPTS; i++)
			forget_cancel(e, &a->slot[i]);
	objpool_put(&e->accepts, a);
}

static struct engine_accept *ur_accept_start(struct engine *e, int fd, engine_accept_cb cb,
					     void *owner)
{
	if (!e->conn_ops) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	struct engine_accept *a = objpool_get(&e->accepts);
	if (!a)
		return NULL;
	*a = (struct engine_accept){.cb = cb, .owner = owner, .fd = fd};
	for (unsigned i = 0; i < URING_ACCEPTS; i++) {
		a->slot[i].kind = URING_ACCEPT;
		a->slot[i].a = a;
		(void)arm_accept(e, &a->slot[i]);
	}
	if (!a->narmed) {
		objpool_put(&e->accepts, a);
		errno = EBUSY;
		return NULL;
	}
	return a;
}

static void ur_accept_stop(struct engine *e, struct engine_accept *a)
{
	a->owner = NULL;
	if (!a->narmed) {
		accept_free(e, a);
		return;
	}
	for (unsigned i = 0; i < URING_ACCEPTS; i++)
		if (a->slot[i].armed)
			cancel(e, &a->slot[i]);
}

static void handle_accept(struct engine *e, struct accept_slot *sl, int res)
{
	struct engine_accept *a = sl->a;

	sl->armed = false;
	a->narmed--;
	if (!a->owner) {
		/* Stopped: a connection taken before the cancel got there is not wanted. */
		if (res >= 0)
			close(res);
		if (!a->narmed)
			accept_free(e, a);
		return;
	}
	if (res >= 0) {
		a->cb(a->owner, res, (const struct sockaddr *)&sl->ss, sl->len);
	} else if (res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
		/* Report the first error only; the owner stops this accept and pauses. */
		if (!a->failed) {
			a->failed = true;
			a->cb(a->owner, res, NULL, 0);
		}
	}
	if (!a->owner) { /* the callback stopped it */
		if (!a->narmed)
			accept_free(e, a);
		return;
	}
	if (!a->failed && arm_accept(e, sl) < 0 && !a->narmed) {
		/* No SQE for any slot: hand the pause to the owner rather than stop quietly. */
		a->failed = true;
		a->cb(a->owner, -EBUSY, NULL, 0);
	}
}

static struct engine_connect *ur_connect_start(struct engine *e, int fd, const struct sockaddr *sa,
					       socklen_t len, engine_sent_cb cb, void *owner)
{
	if (!e->conn_ops || len > sizeof(struct sockaddr_storage)) {
		errno = EOPNOTSUPP;
		return NULL;
	}
	struct io_uring_sqe *sqe;
	struct engine_connect *c = op_get(e, &e->connects, &sqe);
	if (!c)
		return NULL;
	c->kind = URING_CONNECT;
	c->cb = cb;
	c->owner = owner;
	c->len = len;
	memcpy(&c->ss, sa, len);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->ss, len);
	io_uring_sqe_set_data(sqe, c);
	return c;
}

static void ur_connect_drop(struct engine *e, struct engine_connect *c)
{
	c->owner = NULL;
	cancel(e, c);
}

static void handle_connect(struct engine *e, struct engine_connect *c, int res)
{
	if (c->owner)
		c->cb(c->owner, res);
	if (e->ncancels)
		forget_cancel(e, c);
	objpool_put(&e->connects, c);
}

static bool ur_close_fd(struct engine *e, int fd)
{
	if (!e->conn_ops || e->close_broken || fd < 0)
		return false;
	struct io_uring_sqe *sqe = get_sqe(e);
	if (!sqe)
		return false;
	io_uring_prep_close(sqe, fd);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ((uint64_t)(unsigned)fd << 8) | URING_TAG_CLOSE);
	return true;
}

static void handle_close(struct engine *e, uint64_t user_data, int res)
{
	int fd = (int)(user_data >> 8);
	if (res == -EINVAL || res == -EOPNOTSUPP) {
		/* A kernel without ring close or CQE_SKIP_SUCCESS: the fd is still open. */
		e->close_broken = true;
		close(fd);
		return;
	}
	if (res < 0)
		e->close_errors++;
}

static uint32_t to_events(int res)
{
	if (res < 0)
		return ENGINE_ERROR;
	uint32_t ev = 0;
	if (res & (POLLIN | POLLRDHUP))
		ev |= ENGINE_READ;
	if (res & POLLOUT)
		ev |= ENGINE_WRITE;
	if (res & (POLLERR | POLLHUP))
		ev |= ENGINE_ERROR;
	if (res & POLLRDHUP)
		ev |= ENGINE_RDHUP;
	return ev;
}

static void handle_cqe(struct engine *e, struct io_uring_cqe *cqe)
{
	if (cqe->user_data == URING_TAG_REMOVE) {
		/* 0: cancelled; -ENOENT: already over; -EALREADY: ending anyway. Anything else
		 * (-EINVAL...) is a bug of ours or a kernel surprise: counted, shown at destroy. */
		if (cqe->res != 0 && cqe->res != -ENOENT && cqe->res != -EALREADY)
			e->cancel_unexpected++;
		return;
	}
	if ((cqe->user_data & 0xff) == URING_TAG_CLOSE) {
		handle_close(e, cqe->user_data, cqe->res);
		return;
	}
	switch (*(const uint8_t *)io_uring_cqe_get_data(cqe)) {
	case URING_RECV:
		handle_recv(e, io_uring_cqe_get_data(cqe), cqe);
		return;
	case URING_SEND:
		handle_send(e, io_uring_cqe_get_data(cqe), cqe->res);
		return;
	case URING_ACCEPT:
		handle_accept(e, io_uring_cqe_get_data(cqe), cqe->res);
		return;
	case URING_CONNECT:
		handle_connect(e, io_uring_cqe_get_data(cqe), cqe->res);
		return;
	}
	struct engine_watch *w = io_uring_cqe_get_data(cqe);
	int more = cqe->flags & IORING_CQE_F_MORE;

	if (!more)
		w->armed = 0;
	if (!w->owner) {
		if (!more)
			recycle(e, w);
		return;
	}
	if (cqe->res != -ECANCELED)
		w->cb(w->owner, to_events(cqe->res));
	/* A multishot poll can end (e.g. CQ overflow); re-arm so no edge is missed: a fresh
	 * poll reports current readiness at once. The callback may have unwatched w. */
	if (!more && w->owner && !w->armed && arm(e, w) < 0)
		w->cb(w->owner, ENGINE_ERROR);
}

static int ur_wait(struct engine *e, int timeout_ms)
{
	struct io_uring_cqe *cqe;
	int ret;

	if (e->ncancels)
		queue_deferred_cancels(e);
	if (e->batch_nr > 1 && e->last_n >= e->batch_nr && timeout_ms != 0) {
		/* Busy: wait for a batch, but not long (the timers' next deadline is at least
		 * a millisecond away, longer than any batch wait). */
		struct __kernel_timespec ts = {.tv_sec = 0,
					       .tv_nsec = (long long)e->batch_us * 1000};
		ret = io_uring_submit_and_wait_timeout(&e->ring, &cqe, e->batch_nr, &ts, NULL);
	} else if (timeout_ms < 0) {
		ret = io_uring_submit_and_wait(&e->ring, 1);
	} else {
		struct __kernel_timespec ts = {
		    .tv_sec = timeout_ms / 1000,
		    .tv_nsec = (long long)(timeout_ms % 1000) * 1000000,
		};
		ret = io_uring_submit_and_wait_timeout(&e->ring, &cqe, 1, &ts, NULL);
	}
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
		return ret;
	return 0;
}

static int ur_dispatch(struct engine *e)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&e->ring, head, cqe)
	{
		handle_cqe(e, cqe);
		n++;
	}
	io_uring_cq_advance(&e->ring, n);
	e->last_n = n + e->noted;
	e->noted = 0;
	return (int)n;
}

static void ur_note_work(struct engine *e, unsigned n)
{
	e->noted += n;
}

const struct engine_ops engine_uring = {
    .name = "io_uring",
    .create = ur_create,
    .destroy = ur_destroy,
    .watch = ur_watch,
    .unwatch = ur_unwatch,
    .wait = ur_wait,
    .dispatch = ur_dispatch,
    .note_work = ur_note_work,
    .recv_available = ur_recv_available,
    .recv_start = ur_recv_start,
    .recv_stop = ur_recv_stop,
    .recv_drop = ur_recv_drop,
    .buf_put = ur_buf_put,
    .send_start = ur_send_start,
    .send_drop = ur_send_drop,
    .accept_start = ur_accept_start,
    .accept_stop = ur_accept_stop,
    .connect_start = ur_connect_start,
    .connect_drop = ur_connect_drop,
    .close_fd = ur_close_fd,
};
