/* The event-engine interface: edge-triggered readiness for sockets, one engine per worker.
 * Like Redis's ae.c, the relay logic is written once against this header and each kernel
 * mechanism (epoll, io_uring multishot poll) lives in its own small file. */
#ifndef LB_ENGINE_H
#define LB_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define ENGINE_READ  0x1u
#define ENGINE_WRITE 0x2u
#define ENGINE_ERROR 0x4u /* error or hang-up: the handler should find out with a syscall */
#define ENGINE_RDHUP 0x8u /* the peer shut down its sending side: read on until EOF */

/* Size of the buffers a completion-based receive fills: a result this size means more was
 * waiting (bulk). */
#define ENGINE_RECV_BUF 8192

struct engine;
struct engine_watch;   /* engine-owned registration of one fd */
struct engine_recv;    /* engine-owned completion-based receive on one fd */
struct engine_send;    /* engine-owned send of one engine buffer */
struct engine_accept;  /* engine-owned accepts on one listening socket */
struct engine_connect; /* engine-owned connect of one socket */

/* Called with the events that fired (edge-triggered: drain until EAGAIN). */
typedef void (*engine_cb)(void *owner, uint32_t events);

/* Called for each result of a completion-based receive: res > 0 bytes at data, held in engine
 * buffer buf until the owner hands it back with buf_put; 0 = EOF; < 0 = -errno, where
 * -ECANCELED (after recv_stop), -ENOBUFS (the engine's buffers ran out) and -EOPNOTSUPP (the
 * kernel cannot) only mean "read the fd yourself from now on". more == false: the last call. */
typedef void (*engine_data_cb)(void *owner, int res, char *data, unsigned buf, bool more);

/* Called when a send_start finished: res = bytes sent (all of them unless the socket
 * failed) or -errno. */
typedef void (*engine_sent_cb)(void *owner, int res);

/* Called for each connection a ring accept took: fd >= 0 (non-blocking, close-on-exec) with
 * the peer's address, or -errno. After an error nothing more is accepted until the owner
 * stops this accept and starts a new one (a pause, e.g. after EMFILE, is the owner's). */
typedef void (*engine_accept_cb)(void *owner, int fd, const struct sockaddr *sa, socklen_t len);

/* Leave this setting of struct engine_params to the engine. */
#define ENGINE_DEFAULT (-1)

/* Tuning for one engine, filled by its creator: the engine reads no environment or config
 * of its own. A field an engine has no use for is ignored. */
struct engine_params {
	unsigned max_fds; /* registrations to size for */
	/* Completion-based receive: buffers per engine (rounded down to a power of two), or 0
	 * for none (every socket is read after a readiness event). */
	long recv_bufs;
	/* Busy batching: once a dispatch ran at least batch_nr completions, the next wait asks
	 * for that many but waits at most batch_us microseconds; batch_nr < 2 turns it off. */
	long batch_nr, batch_us;
	/* Accept and close through the engine where it can (accept_start, close_fd); 0: off. */
	long conn_ops;
};

struct engine_ops {
	const char *name;
	/* Create an engine tuned by p (not kept). NULL + errno on failure. */
	struct engine *(*create)(const struct engine_params *p);
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
	/* Optional (NULL where the engine does not batch): a callback of this dispatch moved n
	 * items on one event (a readiness event that found a batch of datagrams): count them
	 * towards busy batching as if they were n completions. */
	void (*note_work)(struct engine *e, unsigned n);

	/* Optional completion-based receive (NULL where the engine has none): the kernel reads
	 * fd into buffers of the engine's own and cb gets each chunk, with no readiness event
	 * and no read syscall in between. The fd's watch should then leave out ENGINE_READ. */
	bool (*recv_available)(const struct engine *e);
	/* Start receiving on fd. NULL + errno if it cannot (the caller reads fd itself). */
	struct engine_recv *(*recv_start)(struct engine *e, int fd, engine_data_cb cb, void *owner);
	/* Ask r to end: cb still gets what was read already, the last call with more == false. */
	void (*recv_stop)(struct engine *e, struct engine_recv *r);
	/* Forget r: cb is never called again, buffers still in flight go straight back, and the
	 * caller may close fd at once. Not to be called after cb got more == false. */
	void (*recv_drop)(struct engine *e, struct engine_recv *r);
	/* Hand back a buffer that an engine_data_cb received. */
	void (*buf_put)(struct engine *e, unsigned buf);
	/* Send len bytes at data (inside engine buffer buf) on fd in the kernel, without a
	 * syscall of its own: it goes out with the next wait, and cb reports the end. One send
	 * at a time per fd keeps the bytes in order. NULL + errno if it cannot be queued. */
	struct engine_send *(*send_start)(struct engine *e, int fd, const char *data, uint32_t len,
					  unsigned buf, engine_sent_cb cb, void *owner);
	/* Forget s: cb is never called; the send is cancelled and the engine takes its buffer
	 * back when it is over. */
	void (*send_drop)(struct engine *e, struct engine_send *s);

	/* Optional connection set-up and teardown without syscalls of their own (NULL where the
	 * engine has none): they ride the next wait. Accept on the listening socket fd in the
	 * kernel, several connections per wait; NULL + errno if it cannot (the caller watches
	 * fd and calls accept4 itself). */
	struct engine_accept *(*accept_start)(struct engine *e, int fd, engine_accept_cb cb,
					      void *owner);
	/* cb is never called again; connections accepted meanwhile are closed by the engine.
	 * The caller may close fd at once. */
	void (*accept_stop)(struct engine *e, struct engine_accept *a);
	/* Connect the non-blocking socket fd to sa in the kernel; cb gets 0 once connected, or
	 * -errno. NULL + errno if it cannot be queued (the caller calls connect itself). */
	struct engine_connect *(*connect_start)(struct engine *e, int fd, const struct sockaddr *sa,
						socklen_t len, engine_sent_cb cb, void *owner);
	/* Forget c: cb is never called; the connect is cancelled. The caller may close fd. */
	void (*connect_drop)(struct engine *e, struct engine_connect *c);
	/* Close fd with the next wait. False if it cannot be queued: the caller closes it. */
	bool (*close_fd)(struct engine *e, int fd);
};

extern const struct engine_ops engine_epoll;
extern const struct engine_ops engine_uring;

/* Probe whether io_uring can be set up here (honours LB_TEST_FAIL_URING for tests).
 * Returns 0 or -errno with a reason in *why. */
int engine_uring_probe(const char **why);

#endif
