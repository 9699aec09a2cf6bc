/* The graveyard: objects a reload or `lbctl remove` took out of the running set (configs,
 * pools, listeners, backends) wait here until nothing can reach them, then are freed. Three
 * steps per object: a QSBR grace period so that no worker can still pick it up from a
 * published pointer; then until it is idle (no connection or other retired object uses
 * it); then a second grace period for the last touches of the connection that ended last.
 * Main thread only. */
#ifndef LB_RETIRE_H
#define LB_RETIRE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct qsbr;
struct graveyard;

/* What the graveyard needs to know about one kind of object. */
struct retire_ops {
	const char *what; /* "pool", for the log */
	/* Still in use (open connections, or another retired object points at it): wait.
	 * NULL: never in use once unreachable. */
	bool (*busy)(const void *obj, const struct graveyard *g);
	/* Optional: the first grace period is over (no new use can start). arg is retire()'s. */
	void (*unreachable)(void *obj, void *arg);
	void (*free)(void *obj);
};

struct grave;

struct graveyard {
	struct qsbr *q;		    /* NULL: no reader runs, grace periods are over at once */
	struct grave *head, **tail; /* oldest first */
	size_t n;
};

void graveyard_init(struct graveyard *g, struct qsbr *q);
/* Take obj (ownership passes to the graveyard). The caller has already unpublished it.
 * 0, or -ENOMEM (then obj is not taken: the caller decides, usually to let it leak). */
int retire(struct graveyard *g, void *obj, const struct retire_ops *ops, void *arg);
/* Free what has become unreachable and idle. Returns the ms until the next call is due, or
 * -1 if nothing waits. */
int graveyard_tick(struct graveyard *g);
/* True if a waiting object of kind ops satisfies match(obj, key). */
bool graveyard_any(const struct graveyard *g, const struct retire_ops *ops,
		   bool (*match)(const void *obj, const void *key), const void *key);
/* Free everything at once: only when no worker or prober runs and QSBR is destroyed. */
void graveyard_free_all(struct graveyard *g);

#endif
