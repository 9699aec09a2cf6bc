/* A per-worker pool of pipes for splice(2). A connection borrows a pipe only while bytes
 * are in flight in one direction and gives it back empty, so idle connections hold none
 * (DESIGN.md "Known pitfalls": 10k idle connections must not pin 20k fds). */
#ifndef LB_PIPE_POOL_H
#define LB_PIPE_POOL_H

#include <stddef.h>

struct lb_pipe {
	int rd, wr;
};

struct pipe_pool {
	struct lb_pipe *spare;
	size_t nspare, cap; /* cap = most empty pipes kept for reuse */
	int size;	    /* F_SETPIPE_SZ applied to new pipes; 0 = kernel default */
	size_t live;	    /* pipes open: lent out plus spare */
};

void pipe_pool_init(struct pipe_pool *pp, size_t cap, int size);
/* Borrow an empty pipe. 0 or -errno (EMFILE, ENFILE). */
int pipe_pool_get(struct pipe_pool *pp, struct lb_pipe *out);
/* Return a pipe; empty says whether it holds no bytes (a non-empty one is closed). */
void pipe_pool_put(struct pipe_pool *pp, struct lb_pipe p, int empty);
void pipe_pool_free(struct pipe_pool *pp);

#endif
