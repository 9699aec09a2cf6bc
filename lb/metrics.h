/* Prometheus metrics (SPEC.md "Metrics"): the text exposition of the pools', backends' and
 * listeners' counters, and a tiny HTTP/1.1 server for GET /metrics on the main loop. */
#ifndef LB_METRICS_H
#define LB_METRICS_H

#include <stddef.h>

#include "lb/addr.h"

struct lb_state;

/* The Prometheus text format (version 0.0.4) of the running state. Returns a malloc'd,
 * NUL-terminated string (caller frees) and its length in *len, or NULL on ENOMEM. */
char *metrics_render(const struct lb_state *st, size_t *len);

/* Label value escaping of the text format: \ " and newline. Writes at most cap bytes with
 * a NUL; returns the length it needs (like snprintf). */
size_t metrics_escape(const char *s, char *buf, size_t cap);

struct metrics_http;

/* Listen on addr and serve GET /metrics and GET /ready (200 or 503, lb/ready.h) from st on
 * epfd (the main loop); it reads st, and writes only st->metrics_accept. 0 and the listener
 * in *out, or -errno. */
int metrics_http_open(int epfd, const struct lb_addr *addr, struct lb_state *st,
		      struct metrics_http **out);
/* Close idle or slow clients past their deadline. Returns the ms until the next call is
 * due, or -1 if none is. */
int metrics_http_tick(struct metrics_http *m);
/* Close the listener and every client. NULL is a no-op. */
void metrics_http_close(struct metrics_http *m);

#endif
