/* Pipe pool for splice; see pipe_pool.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "lb/pipe_pool.h"

void pipe_pool_init(struct pipe_pool *pp, size_t cap, int size)
{
	pp->spare = calloc(cap, sizeof(*pp->spare));
	pp->cap = pp->spare ? cap : 0;
	pp->nspare = 0;
	pp->size = size;
	pp->live = 0;
}

int pipe_pool_get(struct pipe_pool *pp, struct lb_pipe *out)
{
	if (pp->nspare) {
		*out = pp->spare[--pp->nspare];
		return 0;
	}
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
		return -errno;
	/* Larger pipes mean fewer splice calls per megabyte; failure just keeps the default. */
	if (pp->size)
		(void)fcntl(fds[1], F_SETPIPE_SZ, pp->size);
	out->rd = fds[0];
	out->wr = fds[1];
	pp->live++;
	return 0;
}

void pipe_pool_put(struct pipe_pool *pp, struct lb_pipe p, int empty)
{
	if (empty && pp->nspare < pp->cap) {
		pp->spare[pp->nspare++] = p;
		return;
	}
	close(p.rd);
	close(p.wr);
	pp->live--;
}

void pipe_pool_free(struct pipe_pool *pp)
{
	while (pp->nspare) {
		struct lb_pipe p = pp->spare[--pp->nspare];
		close(p.rd);
		close(p.wr);
		pp->live--;
	}
	free(pp->spare);
	pp->spare = NULL;
	pp->cap = 0;
}
