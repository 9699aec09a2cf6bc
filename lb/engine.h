/* The event-engine interface: edge-triggered readiness for sockets, one engine per worker.
 * Like Redis's ae.c, the relay logic is written once against this header and each kernel
 * mechanism (epoll, io_uring multishot poll) lives in its own small file. */
#ifndef LB_ENGINE_H
#define LB_ENGINE_H

#include <stdint.h>

#define ENGINE_READ  0x1u
#define ENGINE_WRITE 0x2u
#define ENGINE_ERROR 0x4u /* error or hang-up: the handler should find out with a syscall */
#define ENGINE_RDHUP 0x8u /* the peer shut down its sending side: read on until EOF */

struct engine;
struct engine_watch; /* engine-owned registration of one fd */

/* Called with the events that fired (edge-triggered: drain until EAGAIN). */
typedef void (*engine_cb)(void *owner, uint32_t events);

struct engine_ops {
	const char *name;
	/* Create an engine sized for about max_fds registrations. NULL + errno on failure. */
	struct engine *(*create)(unsigned max_fds);
	void (*destroy)(struct engine *e);
	/* Watch fd for ENGINE_READ|ENGINE_WRITE (errors are always reported). NULL on failure. */
	struct engine_watch *(*watch)(struct engine *e, int fd, uint32_t events, engine_cb cb,
				      void *owner);
	/* Stop watching. After it returns cb is never called again for w, and the caller must
	 * close the fd before it next waits (the engine may rely on close to drop the fd). */
	void (*unwatch)(struct engine *e, struct engine_watch *w);
	/* Submit what is queued and wait up to timeout_ms (-1 = forever) for events; callbacks
	 * do not run yet. Returns 0 or -errno (EINTR and timeouts are not errors). */
	int (*wait)(struct engine *e, int timeout_ms);
	/* Run the callbacks of the events the last wait collected. Split from wait so that the
	 * caller can read the clock once the wait is over (timers armed in callbacks must not
	 * start from the time before a long sleep). Returns how many events ran. */
	int (*dispatch)(struct engine *e);
};

extern const struct engine_ops engine_epoll;
extern const struct engine_ops engine_uring;

/* Probe whether io_uring can be set up here (honours LB_TEST_FAIL_URING for tests).
 * Returns 0 or -errno with a reason in *why. */
int engine_uring_probe(const char **why);

#endif
