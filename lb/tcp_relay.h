/* One TCP connection pair: choose a backend, connect (timeout, retries on other backends),
 * send the PROXY header, relay both ways with splice, propagate half-close and resets,
 * expire idle connections, and account for all of it. */
#ifndef LB_TCP_RELAY_H
#define LB_TCP_RELAY_H

#include <stddef.h>
#include <sys/socket.h>

struct worker;
struct listener;

/* Take ownership of an accepted client socket fd. */
void tcp_relay_accept(struct worker *w, struct listener *l, int fd,
		      const struct sockaddr_storage *client, socklen_t len);
/* Reset every connection of w at once, both sides (end of the shutdown grace period, or a
 * failed engine). */
void tcp_relay_close_all(struct worker *w);
/* Close (reset both sides) every connection of w whose backend was killed since it started
 * (struct backend kill_gen). Runs when the worker is woken, never per byte. */
void tcp_relay_kill_scan(struct worker *w);
/* Connect the queued connections granted a slot since the last call (on the worker's wake). */
void tcp_relay_queue_run(struct worker *w);
/* Connections open on w. */
size_t tcp_relay_conns(const struct worker *w);
/* Set up / free w's TCP state (w->tcp: its connections, their object pool and a scratch
 * buffer). Init returns 0 or -ENOMEM; free takes the connection objects with it. */
int tcp_relay_init(struct worker *w);
void tcp_relay_free(struct worker *w);

#endif
