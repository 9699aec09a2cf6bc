/* Unit: the per-client connection counts behind a listener's max_conns_per_client
 * (lb/client_count.c): the cap per client IP, ports ignored, v4-mapped IPv6 counted as the
 * IPv4 host, entries gone when their last connection ends, growth to many clients, and
 * counting from several threads at once. */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "lb/client_count.h"
#include "support.h"

static struct sockaddr_storage ip(const char *s, uint16_t port)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

	if (inet_pton(AF_INET, s, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, s, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
	}
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

START_TEST(test_cap_is_per_ip_whatever_the_port_or_family)
{
	struct client_count cc;
	struct sockaddr_storage a1 = ip("10.0.0.1", 1000), a2 = ip("10.0.0.1", 2000);
	struct sockaddr_storage m = ip("::ffff:10.0.0.1", 3000), b = ip("10.0.0.2", 1000);

	client_count_init(&cc);
	ck_assert(client_count_take(&cc, SA(a1), 2));
	ck_assert(client_count_take(&cc, SA(a2), 2)); /* another port of the same host */
	ck_assert(!client_count_take(&cc, SA(m), 2)); /* the same host, v4-mapped */
	ck_assert(client_count_take(&cc, SA(b), 2));  /* another host */
	ck_assert_int_eq(client_count_get(&cc, SA(a1)), 2);
	client_count_release(&cc, SA(m));
	ck_assert_int_eq(client_count_get(&cc, SA(a2)), 1);
	ck_assert(client_count_take(&cc, SA(a1), 2));
	ck_assert(!client_count_take(&cc, SA(a1), 0)); /* 0 admits nobody */
	client_count_release(&cc, SA(a1));
	client_count_release(&cc, SA(a1));
	client_count_release(&cc, SA(b));
	ck_assert_uint_eq(cc.n, 0); /* entries go with their last connection */
	client_count_destroy(&cc);
}
END_TEST

START_TEST(test_many_clients_grow_the_table)
{
	enum { N = 20000 };
	struct client_count cc;
	char s[64];

	client_count_init(&cc);
	for (int i = 0; i < N; i++) {
		snprintf(s, sizeof(s), "2001:db8::%x:%x", i >> 16, i & 0xffff);
		struct sockaddr_storage a = ip(s, 1);
		ck_assert(client_count_take(&cc, SA(a), 1));
		ck_assert(!client_count_take(&cc, SA(a), 1));
	}
	ck_assert_uint_eq(cc.n, N);
	ck_assert_uint_ge(cc.mask + 1, N);
	for (int i = 0; i < N; i++) {
		snprintf(s, sizeof(s), "2001:db8::%x:%x", i >> 16, i & 0xffff);
		struct sockaddr_storage a = ip(s, 1);
		client_count_release(&cc, SA(a));
	}
	ck_assert_uint_eq(cc.n, 0);
	client_count_destroy(&cc);
}
END_TEST

static struct client_count shared;

static void *churn(void *arg)
{
	struct sockaddr_storage a = ip(arg, 1);

	for (int i = 0; i < 20000; i++) {
		if (client_count_take(&shared, SA(a), 3))
			client_count_release(&shared, SA(a));
	}
	return NULL;
}

/* Workers count the same clients at once: the counts must come back to zero. */
START_TEST(test_threads_keep_the_counts_right)
{
	pthread_t t[4];
	static const char *const ips[] = {"10.0.0.1", "10.0.0.1", "10.0.0.2", "::1"};

	client_count_init(&shared);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)ips[i]), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_uint_eq(shared.n, 0);
	client_count_destroy(&shared);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client_count");
	TCase *tc = tcase_create("client_count");

	tcase_add_test(tc, test_cap_is_per_ip_whatever_the_port_or_family);
	tcase_add_test(tc, test_many_clients_grow_the_table);
	tcase_add_test(tc, test_threads_keep_the_counts_right);
	suite_add_tcase(s, tc);
	return t_run_suite(s, CK_NORMAL);
}
