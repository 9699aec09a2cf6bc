/* Slab-backed object pool; see objpool.h. */
#include <stdlib.h>

#include "lb/objpool.h"

/* A slab starts with its link, padded so objects stay max-aligned. */
#define SLAB_HEADER sizeof(max_align_t)

void objpool_init(struct objpool *p, size_t size, size_t per_slab)
{
	size_t align = sizeof(max_align_t);
	if (size < sizeof(void *))
		size = sizeof(void *);
	p->size = (size + align - 1) / align * align;
	p->per_slab = per_slab ? per_slab : 1;
	p->free_list = NULL;
	p->slabs = NULL;
}

void *objpool_get(struct objpool *p)
{
	if (!p->free_list) {
		char *slab = malloc(SLAB_HEADER + p->size * p->per_slab);
		if (!slab)
			return NULL;
		*(void **)slab = p->slabs;
		p->slabs = slab;
		for (size_t i = 0; i < p->per_slab; i++)
			objpool_put(p, slab + SLAB_HEADER + i * p->size);
	}
	void *obj = p->free_list;
	p->free_list = *(void **)obj;
	return obj;
}

void objpool_put(struct objpool *p, void *obj)
{
	*(void **)obj = p->free_list;
	p->free_list = obj;
}

void objpool_destroy(struct objpool *p)
{
	while (p->slabs) {
		void *next = *(void **)p->slabs;
		free(p->slabs);
		p->slabs = next;
	}
	p->free_list = NULL;
}
