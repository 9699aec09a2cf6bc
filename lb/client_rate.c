/* Per-client connection rate: see client_rate.h. */
#include "lb/client_rate.h"

#include <stdlib.h>
#include <string.h>

#include "lb/addr.h"

struct client_rate_slot {
	uint8_t key[16];
	uint64_t last_ms; /* when tokens was last brought up to date; 0: free */
	uint32_t tokens;  /* thousandths of a connection */
	uint32_t pad;
};

void client_rate_init(struct client_rate *cr)
{
	memset(cr, 0, sizeof(*cr));
	for (int i = 0; i < CLIENT_RATE_STRIPES; i++)
		pthread_mutex_init(&cr->stripe[i], NULL);
	pthread_mutex_init(&cr->alloc_lock, NULL);
}

void client_rate_destroy(struct client_rate *cr)
{
	free(atomic_load(&cr->slots));
	for (int i = 0; i < CLIENT_RATE_STRIPES; i++)
		pthread_mutex_destroy(&cr->stripe[i]);
	pthread_mutex_destroy(&cr->alloc_lock);
}

static struct client_rate_slot *table(struct client_rate *cr)
{
	struct client_rate_slot *t = atomic_load_explicit(&cr->slots, memory_order_acquire);

	if (t)
		return t;
	pthread_mutex_lock(&cr->alloc_lock);
	t = atomic_load(&cr->slots);
	if (!t) {
		t = calloc(CLIENT_RATE_SLOTS, sizeof(*t));
		atomic_store_explicit(&cr->slots, t, memory_order_release);
	}
	pthread_mutex_unlock(&cr->alloc_lock);
	return t;
}

static uint32_t hash16(const uint8_t key[16], uint32_t seed)
{
	uint32_t h = 2166136261u ^ seed; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h ^ (h >> 15);
}

/* The bucket's level at now: capacity one second's worth (at least one connection). */
static uint32_t level(const struct client_rate_slot *s, uint32_t milli_per_s, uint64_t now_ms)
{
	uint64_t cap = milli_per_s > 1000 ? milli_per_s : 1000;
	/* Workers' clocks are read once per loop turn: another's may be a little behind. */
	uint64_t dt = now_ms > s->last_ms ? now_ms - s->last_ms : 0;
	uint64_t t = s->tokens + dt * milli_per_s / 1000;

	return (uint32_t)(t > cap ? cap : t);
}

bool client_rate_take(struct client_rate *cr, const struct sockaddr *client, uint32_t milli_per_s,
		      uint64_t now_ms)
{
	struct client_rate_slot *t = table(cr), *pick = NULL;
	uint8_t key[16];

	if (!t || !addr_ip_key(client, key))
		return true;
	if (!now_ms)
		now_ms = 1; /* 0 marks a free slot */
	/* Both candidates share one stripe (the first's), so the choice is atomic. */
	uint32_t h = hash16(key, 0), i = h % CLIENT_RATE_SLOTS;
	uint32_t j = (i & ~(uint32_t)(CLIENT_RATE_SLOTS / CLIENT_RATE_STRIPES - 1)) |
		     (hash16(key, h) % (CLIENT_RATE_SLOTS / CLIENT_RATE_STRIPES));
	pthread_mutex_t *lock = &cr->stripe[i / (CLIENT_RATE_SLOTS / CLIENT_RATE_STRIPES)];
	struct client_rate_slot *a = &t[i], *b = &t[j];

	pthread_mutex_lock(lock);
	if (a->last_ms && !memcmp(a->key, key, 16))
		pick = a;
	else if (b->last_ms && !memcmp(b->key, key, 16))
		pick = b;
	if (!pick) {
		uint64_t cap = milli_per_s > 1000 ? milli_per_s : 1000;
		/* Free, or refilled (a new client starts full anyway), or the stalest. */
		if (!a->last_ms || level(a, milli_per_s, now_ms) >= cap)
			pick = a;
		else if (!b->last_ms || level(b, milli_per_s, now_ms) >= cap)
			pick = b;
		else {
			pick = a->last_ms <= b->last_ms ? a : b;
			atomic_fetch_add_explicit(&cr->evictions, 1, memory_order_relaxed);
		}
		memcpy(pick->key, key, 16);
		pick->tokens = (uint32_t)cap;
		pick->last_ms = now_ms;
	}
	pick->tokens = level(pick, milli_per_s, now_ms);
	pick->last_ms = now_ms;
	bool ok = pick->tokens >= 1000;
	if (ok)
		pick->tokens -= 1000;
	pthread_mutex_unlock(lock);
	return ok;
}
