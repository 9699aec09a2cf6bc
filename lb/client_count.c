/* A chained hash table of client IPs under one mutex (lb/client_count.h): new connections
 * are rare next to bytes, so a lock is simpler than anything lock-free here. An entry lives
 * while its client has a connection; the table doubles when clients outnumber buckets. */
#include "lb/client_count.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb/addr.h"

#define BUCKETS_MIN 64

struct client_entry {
	struct client_entry *next;
	uint8_t key[16];
	uint32_t hash;
	int count;
};

void client_count_init(struct client_count *cc)
{
	memset(cc, 0, sizeof(*cc));
	pthread_mutex_init(&cc->lock, NULL);
}

void client_count_destroy(struct client_count *cc)
{
	for (size_t i = 0; cc->buckets && i <= cc->mask; i++)
		while (cc->buckets[i]) {
			struct client_entry *e = cc->buckets[i];
			cc->buckets[i] = e->next;
			free(e);
		}
	free(cc->buckets);
	pthread_mutex_destroy(&cc->lock);
}

static uint32_t key_hash(const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h ^ (h >> 16);
}

/* Double the table (best effort: a failed allocation keeps the old one). */
static void grow(struct client_count *cc)
{
	size_t n = cc->buckets ? (cc->mask + 1) * 2 : BUCKETS_MIN;
	struct client_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; cc->buckets && i <= cc->mask; i++)
		while (cc->buckets[i]) {
			struct client_entry *e = cc->buckets[i];
			cc->buckets[i] = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(cc->buckets);
	cc->buckets = b;
	cc->mask = n - 1;
}

static struct client_entry **find(struct client_count *cc, const uint8_t key[16], uint32_t h)
{
	struct client_entry **pp = &cc->buckets[h & cc->mask];

	while (*pp && memcmp((*pp)->key, key, 16) != 0)
		pp = &(*pp)->next;
	return pp;
}

bool client_count_take(struct client_count *cc, const struct sockaddr *client, int max)
{
	uint8_t key[16];
	bool ok = false;

	if (max <= 0 || !addr_ip_key(client, key))
		return max > 0; /* not an IP client: nothing to count it by */
	uint32_t h = key_hash(key);
	pthread_mutex_lock(&cc->lock);
	if (!cc->buckets || cc->n > cc->mask)
		grow(cc);
	if (!cc->buckets)
		goto out;
	struct client_entry **pp = find(cc, key, h);
	if (*pp) {
		ok = (*pp)->count < max;
		(*pp)->count += ok;
		goto out;
	}
	struct client_entry *e = malloc(sizeof(*e));
	if (e) {
		memcpy(e->key, key, 16);
		e->hash = h;
		e->count = 1;
		e->next = NULL;
		*pp = e;
		cc->n++;
		ok = true;
	}
out:
	pthread_mutex_unlock(&cc->lock);
	return ok;
}

void client_count_release(struct client_count *cc, const struct sockaddr *client)
{
	uint8_t key[16];

	if (!addr_ip_key(client, key))
		return;
	uint32_t h = key_hash(key);
	pthread_mutex_lock(&cc->lock);
	struct client_entry **pp = cc->buckets ? find(cc, key, h) : NULL;
	if (pp && *pp && --(*pp)->count == 0) {
		struct client_entry *e = *pp;
		*pp = e->next;
		cc->n--;
		free(e);
	}
	pthread_mutex_unlock(&cc->lock);
}

int client_count_get(struct client_count *cc, const struct sockaddr *client)
{
	uint8_t key[16];
	int n = 0;

	if (!addr_ip_key(client, key))
		return 0;
	pthread_mutex_lock(&cc->lock);
	struct client_entry **pp = cc->buckets ? find(cc, key, key_hash(key)) : NULL;
	if (pp && *pp)
		n = (*pp)->count;
	pthread_mutex_unlock(&cc->lock);
	return n;
}
