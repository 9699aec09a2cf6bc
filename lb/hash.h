/* Integer hashing shared by the data path, the algorithms and the prober. */
#ifndef LB_HASH_H
#define LB_HASH_H

#include <stdint.h>

/* splitmix64's finalizer: a cheap bijective mixer; every input bit moves about half the
 * output bits. */
static inline uint64_t hash_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* murmur3's 32-bit finalizer, the same idea on 32 bits (addr_hash_ip). */
static inline uint32_t hash_mix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

#endif
