/* New connections (tcp) or sessions (udp) per client IP and second, for a listener's
 * per_client.rate: a token bucket per client (capacity one second's worth, at least 1), in
 * a fixed table so that memory stays bounded whatever the number of clients.
 *
 * The table has CLIENT_RATE_SLOTS entries, allocated on first use. A client hashes to two
 * slots; it takes its own entry, else a free one, else a "spent" one (refilled: its client
 * has been quiet for a second or more), else it evicts the entry of the two that was used
 * longest ago. Eviction forgets that client's spending, so a flood from more addresses than
 * slots can let other clients' buckets refill early — it never blocks a client that is
 * within its rate. Stripes of locks keep workers apart. */
#ifndef LB_CLIENT_RATE_H
#define LB_CLIENT_RATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define CLIENT_RATE_SLOTS   16384 /* 32 bytes each: 512 KiB per rate-limited listener */
#define CLIENT_RATE_STRIPES 64

struct client_rate_slot;

struct client_rate {
	pthread_mutex_t stripe[CLIENT_RATE_STRIPES];
	_Atomic(struct client_rate_slot *) slots; /* NULL until first used */
	pthread_mutex_t alloc_lock;
	_Atomic uint64_t evictions; /* entries taken from another active client */
};

void client_rate_init(struct client_rate *cr);
void client_rate_destroy(struct client_rate *cr);
/* One new connection of client at now_ms (ms, monotonic) under a rate of milli_per_s
 * thousandths of a connection per second ("100/s" is 100000, "30/m" 500). True if allowed
 * (a token taken). Without memory for the table it allows (fail open, as without a limit). */
bool client_rate_take(struct client_rate *cr, const struct sockaddr *client, uint32_t milli_per_s,
		      uint64_t now_ms);

#endif
