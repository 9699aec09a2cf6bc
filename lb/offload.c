/* Jobs off the main loop: one detached thread per job (jobs are rare: a reload, an `add`
 * with a host name), finished jobs queued under a mutex, an eventfd to wake the main loop.
 * The offload object is reference-counted (main's and each running job's) so that lb can
 * stop at once while a job still waits on DNS. */
#include "lb/offload.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lb/log.h"
#include "lb/mainloop.h"

struct offload {
	struct mainloop_handler h;
	int epfd, efd;
	pthread_mutex_t mu;
	struct list_head finished; /* jobs whose work returned, for the main loop */
	int refs;		   /* main's (until offload_close) and one per running job */
	bool closed;
};

/* Drop a reference, with o->mu held (released here); the last one frees o. */
static void offload_unref(struct offload *o)
{
	bool last = --o->refs == 0;

	pthread_mutex_unlock(&o->mu);
	if (!last)
		return;
	close(o->efd);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

static void *job_thread(void *arg)
{
	struct offload_job *j = arg;
	struct offload *o = j->o;

	j->work(j);
	pthread_mutex_lock(&o->mu);
	if (o->closed) {
		pthread_mutex_unlock(&o->mu);
		j->drop(j);
		pthread_mutex_lock(&o->mu);
	} else {
		uint64_t one = 1;
		list_add(&j->link, o->finished.prev); /* at the tail */
		if (write(o->efd, &one, sizeof(one)) < 0)
			log_error("offload: cannot wake the main loop"); /* cannot happen */
	}
	offload_unref(o);
	return NULL;
}

/* Main loop: run the finished jobs' completions. */
static void offload_ready(struct mainloop_handler *h, uint32_t events)
{
	struct offload *o = (struct offload *)h;
	struct list_head todo;
	uint64_t n;
	(void)events;

	if (read(o->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_error("offload: eventfd read failed");
	list_init(&todo);
	pthread_mutex_lock(&o->mu);
	while (!list_empty(&o->finished)) {
		struct offload_job *j = list_first_entry(&o->finished, struct offload_job, link);
		list_del(&j->link);
		list_add(&j->link, todo.prev);
	}
	pthread_mutex_unlock(&o->mu);
	while (!list_empty(&todo)) {
		struct offload_job *j = list_first_entry(&todo, struct offload_job, link);
		list_del(&j->link);
		j->done(j);
	}
}

int offload_open(int epfd, struct offload **out)
{
	struct offload *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (o->efd < 0) {
		int err = -errno;
		free(o);
		return err;
	}
	o->h.fn = offload_ready;
	o->epfd = epfd;
	o->refs = 1;
	pthread_mutex_init(&o->mu, NULL);
	list_init(&o->finished);
	if (mainloop_watch(epfd, EPOLL_CTL_ADD, o->efd, EPOLLIN, &o->h) < 0) {
		int err = -errno;
		close(o->efd);
		pthread_mutex_destroy(&o->mu);
		free(o);
		return err;
	}
	*out = o;
	return 0;
}

int offload_start(struct offload *o, struct offload_job *j)
{
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!o)
		return -EAGAIN; /* no main loop to complete on (a test or fuzzer's bare state) */
	j->o = o;
	pthread_mutex_lock(&o->mu);
	o->refs++;
	pthread_mutex_unlock(&o->mu);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &attr, job_thread, j);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		pthread_mutex_lock(&o->mu);
		offload_unref(o); /* main's reference remains: never the last */
		return -rc;
	}
	return 0;
}

void offload_close(struct offload *o)
{
	if (!o)
		return;
	epoll_ctl(o->epfd, EPOLL_CTL_DEL, o->efd, NULL);
	pthread_mutex_lock(&o->mu);
	o->closed = true;
	while (!list_empty(&o->finished)) {
		struct offload_job *j = list_first_entry(&o->finished, struct offload_job, link);
		list_del(&j->link);
		j->drop(j);
	}
	offload_unref(o);
}
