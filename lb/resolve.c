/* Bounded name lookups: getaddrinfo has no timeout of its own, so each batch of names is
 * looked up by a few detached threads while the caller waits on a condition variable with a
 * deadline. The batch is reference-counted: the caller and each thread hold one, so that a
 * lookup still running when the caller gives up writes into live memory and frees it last. */
#include "lb/resolve.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Lookup threads per batch: a config with many names looks them up this many at a time, so
 * 1,000 names at 100 ms each take 3 s, while a dead resolver holds at most this many threads
 * until its own timeouts end. */
#define RESOLVE_THREADS_MAX 32

struct slot {
	char host[ADDR_HOST_MAX];
	uint16_t port;
	size_t idx; /* in the caller's names[] */
	struct lb_addr addr;
	int err;
	const char *why;
	bool done;
};

struct batch {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled at each finished lookup */
	struct slot *slots;
	size_t n, next, ndone;
	int refs;	/* the caller's and one per thread */
	bool abandoned; /* the caller has stopped waiting: take no more names */
};

/* Drop a reference, with b->mu held (released here); the last one frees b. */
static void batch_unref(struct batch *b)
{
	bool last = --b->refs == 0;

	pthread_mutex_unlock(&b->mu);
	if (!last)
		return;
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	free(b->slots);
	free(b);
}

static void *lookup_thread(void *arg)
{
	struct batch *b = arg;

	pthread_mutex_lock(&b->mu);
	while (!b->abandoned && b->next < b->n) {
		struct slot *s = &b->slots[b->next++];
		struct lb_addr addr;
		const char *why = "";

		pthread_mutex_unlock(&b->mu);
		int err = addr_lookup(s->host, s->port, &addr, &why); /* host, port: read-only */
		pthread_mutex_lock(&b->mu);
		s->addr = addr;
		s->err = err;
		s->why = why;
		s->done = true;
		b->ndone++;
		pthread_cond_signal(&b->cv);
	}
	batch_unref(b);
	return NULL;
}

static struct batch *batch_new(size_t n)
{
	struct batch *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;

	if (!b || !(b->slots = calloc(n, sizeof(*b->slots)))) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);
	b->refs = 1;
	return b;
}

/* Start up to RESOLVE_THREADS_MAX detached threads on b. Returns how many started. */
static int batch_start(struct batch *b)
{
	size_t want = b->n < RESOLVE_THREADS_MAX ? b->n : RESOLVE_THREADS_MAX;
	pthread_attr_t attr;
	int started = 0;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	for (size_t i = 0; i < want; i++) {
		pthread_t t;
		pthread_mutex_lock(&b->mu);
		b->refs++;
		pthread_mutex_unlock(&b->mu);
		if (pthread_create(&t, &attr, lookup_thread, b) != 0) {
			pthread_mutex_lock(&b->mu);
			b->refs--;
			pthread_mutex_unlock(&b->mu);
			break;
		}
		started++;
	}
	pthread_attr_destroy(&attr);
	return started;
}

static void deadline_after(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Wait for b's lookups until the deadline, copy what finished into names, mark the rest
 * timed out, and let go of b. */
static void batch_collect(struct batch *b, struct resolve_name *names, int timeout_ms, bool threads)
{
	struct timespec deadline;

	deadline_after(&deadline, timeout_ms);
	pthread_mutex_lock(&b->mu);
	while (threads && b->ndone < b->n)
		if (pthread_cond_timedwait(&b->cv, &b->mu, &deadline) == ETIMEDOUT)
			break;
	for (size_t i = 0; i < b->n; i++) {
		const struct slot *s = &b->slots[i];
		struct resolve_name *rn = &names[s->idx];
		if (s->done) {
			rn->err = s->err;
			rn->why = s->why;
			if (!s->err)
				rn->addr = s->addr;
		} else if (threads) {
			rn->err = -ETIMEDOUT;
			rn->why = "no answer in time";
		} else {
			rn->err = -EAGAIN;
			rn->why = "cannot start a thread to look it up";
		}
	}
	b->abandoned = true;
	batch_unref(b);
}

size_t resolve_names(struct resolve_name *names, size_t n, int timeout_ms)
{
	struct batch *b = NULL;
	size_t failed = 0;

	for (size_t i = 0; i < n; i++) {
		struct resolve_name *rn = &names[i];
		uint16_t port;

		rn->why = "";
		rn->err = addr_parse_host(rn->address, &rn->addr, rn->host, &port, &rn->why);
		if (rn->err != 1) {
			rn->host[0] = '\0'; /* numeric, or no address at all */
			continue;
		}
		if (!b && !(b = batch_new(n - i))) { /* room for every name still to come */
			rn->err = -ENOMEM;
			rn->why = "out of memory";
			continue;
		}
		struct slot *s = &b->slots[b->n++];
		memcpy(s->host, rn->host, sizeof(s->host));
		s->port = port;
		s->idx = i;
	}
	if (b)
		batch_collect(b, names, timeout_ms, batch_start(b) > 0);
	for (size_t i = 0; i < n; i++)
		failed += names[i].err != 0;
	return failed;
}

int resolve_address(const char *s, struct lb_addr *out, int timeout_ms, const char **why)
{
	struct resolve_name rn = {.address = s};

	resolve_names(&rn, 1, timeout_ms);
	if (why)
		*why = rn.why;
	if (rn.err == 0)
		*out = rn.addr;
	return rn.err;
}
