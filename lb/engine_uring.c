/* io_uring engine: one multishot poll per fd (edge-triggered, like EPOLLET), submitted and
 * reaped in the same io_uring_enter as the wait. Registration and teardown are SQEs batched
 * into that call, so accept/close churn costs no extra syscalls. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>

#include "lb/engine.h"
#include "lb/objpool.h"

/* Submission queue depth: registrations and removals queued between two waits. */
#define URING_SQ_ENTRIES 1024
/* Completion queue: multishot polls can post several CQEs per fd per turn; overflow is
 * never lost (IORING_FEAT_NODROP) but costs a slow path, so keep it roomy. */
#define URING_CQ_ENTRIES 16384
/* Watches allocated per slab. */
#define URING_WATCH_SLAB 256
/* user_data of poll-remove requests; never a valid watch pointer. */
#define URING_TAG_REMOVE 1ull

struct engine_watch {
	engine_cb cb;
	void *owner; /* NULL once unwatched */
	int fd;
	uint32_t mask;
	int armed; /* a poll request is outstanding in the kernel */
};

struct engine {
	struct io_uring ring;
	struct objpool watches;
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

static struct engine *ur_create(unsigned max_fds)
{
	(void)max_fds;
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
	return e;
}

static void ur_destroy(struct engine *e)
{
	io_uring_queue_exit(&e->ring);
	objpool_destroy(&e->watches);
	free(e);
}

static struct io_uring_sqe *get_sqe(struct engine *e)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
	if (!sqe) {
		/* SQ full: hand what is queued to the kernel and take a fresh slot. */
		io_uring_submit(&e->ring);
		sqe = io_uring_get_sqe(&e->ring);
	}
	return sqe;
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
	objpool_put(&e->watches, w);
}

static struct engine_watch *ur_watch(struct engine *e, int fd, uint32_t events, engine_cb cb,
				     void *owner)
{
	struct engine_watch *w = objpool_get(&e->watches);
	if (!w)
		return NULL;
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
	 * watch is recycled when the poll's final completion (-ECANCELED) arrives. */
	struct io_uring_sqe *sqe = get_sqe(e);
	if (!sqe)
		return; /* cannot happen after a submit; the poll then ends when the file does */
	io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)w);
	io_uring_sqe_set_data64(sqe, URING_TAG_REMOVE);
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
	if (cqe->user_data == URING_TAG_REMOVE)
		return;
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

	if (timeout_ms < 0) {
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
	return (int)n;
}

const struct engine_ops engine_uring = {
    .name = "io_uring",
    .create = ur_create,
    .destroy = ur_destroy,
    .watch = ur_watch,
    .unwatch = ur_unwatch,
    .wait = ur_wait,
    .dispatch = ur_dispatch,
};
