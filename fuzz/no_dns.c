/* A resolver that never leaves the process, linked into every fuzz target: a fuzz input that
 * names a host ("db1:5432" in a config or an `add`) must not send a DNS query per execution.
 * Numeric hosts resolve as usual and "localhost" as 127.0.0.1; every other name is unknown,
 * the same answer lb gets from a resolver that knows nothing. */
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
			      struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static getaddrinfo_fn real;
	struct addrinfo h = {0};

	if (!real)
		real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if (!real)
		return EAI_FAIL;
	if (hints)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	if (node && strcasecmp(node, "localhost") == 0)
		node = "127.0.0.1";
	return real(node, service, &h, res);
}
