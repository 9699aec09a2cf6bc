/* A fixed-size object pool: objects come from slabs and go back to a free list, so the
 * steady state never calls malloc, and tearing the pool down frees every object, including
 * ones still lent out (e.g. io_uring watches whose final completion never arrived). */
#ifndef LB_OBJPOOL_H
#define LB_OBJPOOL_H

#include <stddef.h>

struct objpool {
	size_t size; /* object size, rounded up to hold the free-list link */
	size_t per_slab;
	void *free_list;
	void *slabs; /* singly linked through the first word of each slab */
};

void objpool_init(struct objpool *p, size_t size, size_t per_slab);
/* An object (uninitialised), or NULL on ENOMEM. */
void *objpool_get(struct objpool *p);
void objpool_put(struct objpool *p, void *obj);
/* Free every slab: all objects, lent out or not, are gone. */
void objpool_destroy(struct objpool *p);

#endif
