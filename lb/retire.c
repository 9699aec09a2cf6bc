/* The graveyard (lb/retire.h): each object walks GRACE_PICKS -> WAIT_IDLE -> GRACE_CLOSE and
 * is freed at the end; graveyard_tick drives them from the main loop. */
#include "lb/retire.h"

#include <errno.h>
#include <stdlib.h>

#include "lb/qsbr.h"

/* How often waiting objects are re-examined. */
#define GRAVEYARD_TICK_MS 20

enum grave_state { GRACE_PICKS, WAIT_IDLE, GRACE_CLOSE };

struct grave {
	void *obj;
	const struct retire_ops *ops;
	void *arg;
	enum grave_state state;
	_Atomic bool graced; /* set by QSBR once the grace period started last is over */
	struct grave *next;
};

void graveyard_init(struct graveyard *g, struct qsbr *q)
{
	g->q = q;
	g->head = NULL;
	g->tail = &g->head;
	g->n = 0;
}

static void graced(void *ptr)
{
	struct grave *gr = ptr;
	atomic_store(&gr->graced, true);
}

static void grace_start(struct graveyard *g, struct grave *gr)
{
	atomic_store(&gr->graced, false);
	if (g->q)
		qsbr_retire(g->q, gr, graced); /* may run graced() at once */
	else
		graced(gr);
}

int retire(struct graveyard *g, void *obj, const struct retire_ops *ops, void *arg)
{
	struct grave *gr = calloc(1, sizeof(*gr));

	if (!gr)
		return -ENOMEM;
	gr->obj = obj;
	gr->ops = ops;
	gr->arg = arg;
	gr->state = GRACE_PICKS;
	*g->tail = gr;
	g->tail = &gr->next;
	g->n++;
	grace_start(g, gr);
	return 0;
}

/* Advance gr as far as it goes now; true once it is freed. */
static bool advance(struct graveyard *g, struct grave *gr)
{
	if (gr->state == GRACE_PICKS && atomic_load(&gr->graced)) {
		if (gr->ops->unreachable)
			gr->ops->unreachable(gr->obj, gr->arg);
		gr->state = WAIT_IDLE;
	}
	if (gr->state == WAIT_IDLE && !(gr->ops->busy && gr->ops->busy(gr->obj, g))) {
		gr->state = GRACE_CLOSE;
		grace_start(g, gr);
	}
	if (gr->state == GRACE_CLOSE && atomic_load(&gr->graced)) {
		gr->ops->free(gr->obj);
		return true;
	}
	return false;
}

int graveyard_tick(struct graveyard *g)
{
	if (!g->head)
		return -1;
	if (g->q)
		qsbr_reclaim(g->q);
	for (struct grave **pp = &g->head; *pp;) {
		struct grave *gr = *pp;
		if (!advance(g, gr)) {
			pp = &gr->next;
			continue;
		}
		*pp = gr->next;
		if (!*pp)
			g->tail = pp;
		g->n--;
		free(gr);
	}
	return g->head ? GRAVEYARD_TICK_MS : -1;
}

bool graveyard_any(const struct graveyard *g, const struct retire_ops *ops,
		   bool (*match)(const void *obj, const void *key), const void *key)
{
	for (const struct grave *gr = g->head; gr; gr = gr->next)
		if (gr->ops == ops && match(gr->obj, key))
			return true;
	return false;
}

void graveyard_free_all(struct graveyard *g)
{
	while (g->head) {
		struct grave *gr = g->head;
		g->head = gr->next;
		gr->ops->free(gr->obj);
		free(gr);
	}
	graveyard_init(g, NULL);
}
