/* Addresses: "host:port" / "[v6]:port" parsing, CIDR matching and PROXY protocol headers.
 * Pure functions with no state; used by config loading and the data path. Host names are
 * looked up by lb/resolve.h, with a time bound, through addr_lookup. */
#ifndef LB_ADDR_H
#define LB_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct lb_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned prefix;
};

/* Longest PROXY header we ever build: v1 worst case is 107 bytes, v2 with IPv6 is 52. */
#define ADDR_PROXY_MAX 108
/* "[" + 39-char IPv6 + "]:" + 5-digit port + NUL, rounded up */
#define ADDR_STR_MAX 64

/* Parse a numeric "a.b.c.d:port" or "[v6]:port". Port must be 1..65535.
 * Returns 0, or -EINVAL with a short reason in *why (static string). */
int addr_parse_numeric(const char *s, struct lb_addr *out, const char **why);

/* Longest host part we accept: a DNS name is at most 253 characters (RFC 1035). */
#define ADDR_HOST_MAX 256

/* Like addr_parse_numeric, but the host may also be a name, which is not looked up here
 * (lb/resolve.h does, with a time bound). 0 with *out set for a numeric address; 1 for a
 * well-formed name, copied into host (ADDR_HOST_MAX bytes), with its port in *port and *out
 * untouched; -EINVAL with *why set. */
int addr_parse_host(const char *s, struct lb_addr *out, char *host, uint16_t *port,
		    const char **why);

/* Look host up with getaddrinfo and keep the first IPv4 result, else the first IPv6, with
 * port. Blocks for as long as the system resolver takes: only lb/resolve.c calls it, on
 * threads of its own. 0, or -ENOENT with *why set (static text). */
int addr_lookup(const char *host, uint16_t port, struct lb_addr *out, const char **why);

/* Same address and port: the same bytes in the same length, as parsing produces them. */
bool addr_equal(const struct lb_addr *a, const struct lb_addr *b);

/* six, an IPv6 address bound with IPV6_V6ONLY off, takes v4's IPv4 clients: v4 is IPv4 on
 * the same port, and one of them is a wildcard or six is v4 as ::ffff:a.b.c.d. */
bool addr_dual_covers(const struct lb_addr *six, const struct lb_addr *v4);

/* Format as "1.2.3.4:80" or "[::1]:80" into buf (ADDR_STR_MAX). Returns buf. */
char *addr_format(const struct sockaddr *sa, char *buf, size_t len);
/* The same for a client's address, an IPv4 client of a dual-stack listener (::ffff:a.b.c.d)
 * as the IPv4 client it is: "a.b.c.d:port". */
char *addr_format_client(const struct sockaddr *sa, char *buf, size_t len);

/* Parse "10.0.0.0/8", "::1/128" or a bare address (full-length prefix). 0 or -EINVAL. */
int cidr_parse(const char *s, struct cidr *out);

/* True if sa (v4, v6 or v4-mapped v6) lies inside c. An IPv4 client lies only inside v4
 * networks and v6 networks within ::ffff:0:0/96 (so ::/0 means every IPv6 client only). */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);

/* True if sa is admitted: not in any deny entry, and allow is empty or sa is in one. */
bool cidr_admit(const struct cidr *allow, size_t nallow, const struct cidr *deny, size_t ndeny,
		const struct sockaddr *sa);

/* Build a PROXY protocol header (version 1 or 2, TCP) for a connection from src to dst
 * (dst = the address the client connected to). Returns its length, or -EINVAL. */
int addr_proxy_header(int version, const struct sockaddr *src, const struct sockaddr *dst,
		      uint8_t *buf, size_t len);

/* Longest PROXY header lb accepts (listener accept_proxy): v1 is at most 107 bytes by the
 * spec; v2 is 16 plus its length, addresses and TLVs, which lb skips up to this size. */
#define ADDR_PROXY_IN_MAX 1040

/* Parse a PROXY header of version (1 or 2) at the start of buf[0, len), the bytes a client
 * sent so far. Returns the header's length once it is whole, 0 if more bytes are needed, or
 * -1 with why in err (malformed, oversized, the other version). *src receives the client
 * address it carries; *local is set (and *src untouched) for v1 UNKNOWN and v2 LOCAL or
 * UNSPEC, where the connection's own peer address stands. */
int addr_proxy_parse(int version, const uint8_t *buf, size_t len, struct sockaddr_storage *src,
		     bool *local, char *err, size_t errlen);

/* 32-bit hash of the client's IP address (port excluded); v4-mapped v6 hashes as v4. */
uint32_t addr_hash_ip(const struct sockaddr *sa);
/* The client IP of sa as 16 bytes (IPv4 and v4-mapped IPv6 as ::ffff:a.b.c.d), so that one
 * host has one key whichever socket family it came through. False if sa is neither. */
bool addr_ip_key(const struct sockaddr *sa, uint8_t key[16]);

#endif
