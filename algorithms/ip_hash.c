/* ip_hash: consistent hashing of the client IP with a Maglev lookup table (Eisenbud et al.,
 * "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4),
 * weight-aware. The table is built over every backend with weight > 0, whatever its health or
 * admin state, so a backend going down never reshuffles the table: its clients alone rehash
 * to others, deterministically, and come back when it does. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "algorithms/algorithm.h"
#include "lb/hash.h"

/* Table size from the paper: prime (so every skip yields a full permutation) and much larger
 * than the backend count, which keeps max/mean load within 1 + n/M (≤ 1.05 up to 3000
 * backends) at 256 KiB per group. */
#define MAGLEV_M     65537u
#define MAGLEV_EMPTY UINT32_MAX
/* Rehashes tried for a client whose entry is not allowed, before a linear scan. With half the
 * table unusable, 32 attempts all failing has probability 2^-32. */
#define IP_HASH_REHASH_MAX 32u
/* Seeds that make the offset and skip of a backend's permutation independent hashes. */
#define MAGLEV_SEED_OFFSET 0x9e3779b97f4a7c15ull
#define MAGLEV_SEED_SKIP   0xc2b2ae3d27d4eb4full
/* FNV-1a 64-bit parameters (http://www.isthe.com/chongo/tech/comp/fnv/). */
#define FNV64_OFFSET 0xcbf29ce484222325ull
#define FNV64_PRIME  0x100000001b3ull

struct maglev_state {
	struct backend **backends; /* the view's array; owned by the snapshot */
	size_t n;
	uint32_t *table; /* MAGLEV_M indexes into backends; NULL if no backend had weight */
	uint32_t *order; /* the members' indexes into backends, in key order */
	size_t norder;
	uint64_t fingerprint;
};

/* One backend's walk through its permutation of the table, and its weight credit. */
struct maglev_member {
	uint32_t index;	     /* into backends */
	uint64_t key;	     /* fnv1a64(hash_key) */
	const char *key_str; /* the backend's hash_key */
	uint64_t offset, skip, next;
	uint64_t weight, credit;
};

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = FNV64_OFFSET;

	for (; s && *s; s++) {
		h ^= (unsigned char)*s;
		h *= FNV64_PRIME;
	}
	return h;
}

/* The permutation depends on the backend's key, not its position or name, so that adding or
 * removing another backend leaves it unchanged, and so does another lb with the same key. */
static void maglev_member_init(struct maglev_member *m, uint32_t index, const struct backend *b,
			       int weight)
{
	m->key_str = b->hash_key ? b->hash_key : "";
	m->key = fnv1a64(m->key_str);
	m->index = index;
	m->offset = hash_mix64(m->key ^ MAGLEV_SEED_OFFSET) % MAGLEV_M;
	m->skip = hash_mix64(m->key ^ MAGLEV_SEED_SKIP) % (MAGLEV_M - 1) + 1;
	m->next = 0;
	m->weight = (uint64_t)weight;
	m->credit = 0;
}

/* Members in key order, so that contested slots go to the same member whatever the config
 * order. Equal keys (one address listed twice) fall back to the weight. */
static int member_cmp(const void *a, const void *b)
{
	const struct maglev_member *x = a, *y = b;
	int c;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	c = strcmp(x->key_str, y->key_str);
	if (c)
		return c;
	return x->weight < y->weight ? -1 : x->weight > y->weight;
}

/* Member j's next preferred slot that is still empty (always exists: M is prime). */
static void maglev_place(uint32_t *table, struct maglev_member *m, uint32_t j)
{
	uint64_t slot;

	do {
		slot = (m->offset + m->next * m->skip) % MAGLEV_M;
		m->next++;
	} while (table[slot] != MAGLEV_EMPTY);
	table[slot] = j;
}

/* The paper's population loop, made weight-aware: each round every member earns its weight
 * in credit and claims one slot per max_weight of credit, so the heaviest claims one slot a
 * round and the others claim in proportion. Fills table with member positions. */
static void maglev_populate(uint32_t *table, struct maglev_member *m, size_t nm)
{
	uint64_t max_weight = 0;
	size_t filled = 0;

	for (size_t j = 0; j < nm; j++)
		if (m[j].weight > max_weight)
			max_weight = m[j].weight;
	for (size_t i = 0; i < MAGLEV_M; i++)
		table[i] = MAGLEV_EMPTY;
	while (filled < MAGLEV_M) {
		for (size_t j = 0; j < nm && filled < MAGLEV_M; j++) {
			m[j].credit += m[j].weight;
			if (m[j].credit < max_weight)
				continue;
			m[j].credit -= max_weight;
			maglev_place(table, &m[j], (uint32_t)j);
			filled++;
		}
	}
}

/* A digest of the table in terms of what each slot holds (its member's key and weight),
 * never positions: equal on every lb that builds the same table. */
static uint64_t maglev_digest(const uint32_t *table, const struct maglev_member *m, size_t nm)
{
	uint64_t fp = FNV64_OFFSET;

	if (nm == 0)
		return fp;
	for (size_t i = 0; i < MAGLEV_M; i++) {
		const struct maglev_member *x = &m[table[i]];
		fp = hash_mix64(fp ^ x->key ^ (x->weight << 48));
	}
	return fp;
}

static bool maglev_build_table(struct maglev_state *s)
{
	struct maglev_member *m = calloc(s->n ? s->n : 1, sizeof(*m));
	size_t nm = 0;

	if (!m)
		return false;
	for (size_t i = 0; i < s->n && i < MAGLEV_EMPTY; i++) {
		int weight = atomic_load_explicit(&s->backends[i]->weight, memory_order_relaxed);

		if (weight > 0)
			maglev_member_init(&m[nm++], (uint32_t)i, s->backends[i], weight);
	}
	qsort(m, nm, sizeof(*m), member_cmp);
	s->order = malloc((nm ? nm : 1) * sizeof(*s->order));
	if (nm > 0)
		s->table = malloc(MAGLEV_M * sizeof(*s->table));
	if (!s->order || (nm > 0 && !s->table)) {
		free(m);
		return false;
	}
	for (size_t j = 0; j < nm; j++)
		s->order[j] = m[j].index;
	s->norder = nm;
	if (nm > 0) {
		maglev_populate(s->table, m, nm);
		s->fingerprint = maglev_digest(s->table, m, nm);
		for (size_t i = 0; i < MAGLEV_M; i++)
			s->table[i] = m[s->table[i]].index;
	} else {
		s->fingerprint = maglev_digest(NULL, m, 0);
	}
	free(m);
	return true;
}

static void maglev_destroy(void *state)
{
	struct maglev_state *s = state;

	if (!s)
		return;
	free(s->table);
	free(s->order);
	free(s);
}

static void *maglev_build(const struct pool_view *view)
{
	struct maglev_state *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->backends = view->backends;
	s->n = view->n;
	if (!maglev_build_table(s)) {
		maglev_destroy(s);
		return NULL;
	}
	return s;
}

static struct backend *maglev_entry(const struct maglev_state *s, uint64_t key)
{
	return s->backends[s->table[key % MAGLEV_M]];
}

/* Last resort: the first allowed member, in key order, from a place fixed by the client's
 * hash (only members can be allowed: the others have weight 0). */
static struct backend *maglev_scan(const struct maglev_state *s, const struct pick_ctx *ctx)
{
	for (size_t k = 0; k < s->norder; k++) {
		struct backend *b = s->backends[s->order[(ctx->hash + k) % s->norder]];

		if (pick_allowed(ctx, b))
			return b;
	}
	return NULL;
}

static struct backend *maglev_pick(void *state, const struct pick_ctx *ctx)
{
	const struct maglev_state *s = state;
	struct backend *b;

	if (!s->table)
		return NULL; /* no member: every backend of the group has weight 0 */
	b = maglev_entry(s, ctx->hash);
	if (pick_allowed(ctx, b))
		return b;
	/* The attempt number goes into the high half so that each attempt lands on an
	 * independent slot, the same one every time for this client. */
	for (uint64_t attempt = 1; attempt <= IP_HASH_REHASH_MAX; attempt++) {
		b = maglev_entry(s, hash_mix64(attempt << 32 | ctx->hash));
		if (pick_allowed(ctx, b))
			return b;
	}
	return maglev_scan(s, ctx);
}

static uint64_t maglev_fingerprint(const void *state)
{
	return ((const struct maglev_state *)state)->fingerprint;
}

const struct lb_algorithm algorithm_ip_hash = {
    .name = "ip_hash",
    .build = maglev_build,
    .pick = maglev_pick,
    .destroy = maglev_destroy,
    .fingerprint = maglev_fingerprint,
};
