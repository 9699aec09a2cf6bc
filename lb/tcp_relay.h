/* One TCP connection pair: choose a backend, connect (timeout, retries on other backends),
 * send the PROXY header, relay both ways with splice, propagate half-close and resets,
 * expire idle connections, and account for all of it. */
#ifndef LB_TCP_RELAY_H
#define LB_TCP_RELAY_H

#include <sys/socket.h>

struct worker;
struct listener;

/* Reads up to this size are relayed with recv/send through the worker's scratch buffer (two
 * cheap syscalls); a read that fills it marks the direction bulk, which then splices. 8 KiB
 * is the smallest a pipe can be (2 pages), so an unsent remainder always fits in one. */
#define TCP_RELAY_SMALL_READ 8192

/* Take ownership of an accepted client socket fd. */
void tcp_relay_accept(struct worker *w, struct listener *l, int fd,
		      const struct sockaddr_storage *client, socklen_t len);
/* Close every connection of w at once (end of the shutdown grace period). */
void tcp_relay_close_all(struct worker *w);
/* Close (reset both sides) every connection of w whose backend was killed since it started
 * (struct backend kill_gen). Runs when the worker is woken, never per byte. */
void tcp_relay_kill_scan(struct worker *w);
/* Set up w's connection-object pool (freed with objpool_destroy(&w->conn_pool)). */
void tcp_relay_init(struct worker *w);

#endif
