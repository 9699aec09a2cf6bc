/* Intrusive doubly-linked lists, the Linux kernel's way: a struct list_head inside each
 * element, a circular list with the head as its sentinel, container_of to get back from the
 * link to the element. Unlinking is O(1) and needs no knowledge of the owner. */
#ifndef LB_LIST_H
#define LB_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct list_head {
	struct list_head *next, *prev;
};

/* An empty list (or an element linked nowhere). */
static inline void list_init(struct list_head *h)
{
	h->next = h->prev = h;
}

static inline bool list_empty(const struct list_head *h)
{
	return h->next == h;
}

/* Insert n at the front of the list h (right after the head). */
static inline void list_add(struct list_head *n, struct list_head *h)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

/* Unlink n from its list; n is left linked nowhere (list_empty(n) is true). */
static inline void list_del(struct list_head *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#define list_entry(ptr, type, member)	  container_of(ptr, type, member)
#define list_first_entry(h, type, member) list_entry((h)->next, type, member)

/* Walk the links of h front to back; pos may be unlinked (and freed) in the body. */
#define list_for_each_safe(pos, n, h)                                                              \
	for ((pos) = (h)->next, (n) = (pos)->next; (pos) != (h); (pos) = (n), (n) = (pos)->next)

/* Walk the elements of h front to back (pos: a pointer to the element type, member: its
 * list_head); pos may be unlinked (and freed) in the body. */
#define list_for_each_entry_safe(pos, n, h, member)                                                \
	for ((pos) = list_entry((h)->next, __typeof__(*(pos)), member),                            \
	    (n) = list_entry((pos)->member.next, __typeof__(*(pos)), member);                      \
	     &(pos)->member != (h);                                                                \
	     (pos) = (n), (n) = list_entry((n)->member.next, __typeof__(*(n)), member))

#endif
