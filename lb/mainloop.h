/* The main thread's epoll loop (DESIGN.md "Threads and data flow"): signals, the control
 * socket and the metrics HTTP listener each register fds with a handler. Level-triggered,
 * so a handler may do a bounded amount of work per call and be called again. */
#ifndef LB_MAINLOOP_H
#define LB_MAINLOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct mainloop_handler {
	void (*fn)(struct mainloop_handler *h, uint32_t events);
};

/* op: EPOLL_CTL_ADD or EPOLL_CTL_MOD. 0 or -1 with errno. */
static inline int mainloop_watch(int epfd, int op, int fd, uint32_t events,
				 struct mainloop_handler *h)
{
	struct epoll_event ev = {.events = events, .data.ptr = h};
	return epoll_ctl(epfd, op, fd, &ev);
}

#endif
