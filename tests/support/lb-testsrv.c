/* lb-testsrv: the test backends of tests/support as a standalone program, for `make demo`
 * and the benchmark. Each --listen starts one server; --mode and --name after it apply to
 * it (given before any --listen, they become the defaults). Runs until SIGINT/SIGTERM. */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS 64

struct server_spec {
	const char *listen;
	const char *name; /* NULL = the address */
	int mode;	  /* enum tb_mode, -1 = the default */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: lb-testsrv --listen HOST:PORT [--mode MODE] [--name NAME] "
		   "[--listen ...]...\n"
		   "  MODE: tagged (send NAME on connect, then echo), echo, http (200 with body "
		   "NAME), sink,\n"
		   "        blackhole, record. Default echo; NAME defaults to the address.\n"
		   "  Each --listen starts a server; --mode/--name apply to the last --listen,\n"
		   "  or, before any --listen, to all servers. Runs until SIGINT or SIGTERM.\n");
}

int main(int argc, char **argv)
{
	struct server_spec specs[MAX_SERVERS];
	struct tbackend *tbs[MAX_SERVERS];
	const char *default_name = NULL;
	int default_mode = TB_ECHO;
	size_t n = 0;

	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i];
		if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			usage(stderr);
			return 2;
		}
		const char *val = argv[++i];
		struct server_spec *cur = n ? &specs[n - 1] : NULL;
		if (strcmp(opt, "--listen") == 0) {
			if (n == MAX_SERVERS) {
				fprintf(stderr, "lb-testsrv: at most %d servers\n", MAX_SERVERS);
				return 2;
			}
			specs[n++] = (struct server_spec){.listen = val, .mode = -1};
		} else if (strcmp(opt, "--mode") == 0) {
			int mode = tb_mode_parse(val);
			if (mode < 0) {
				fprintf(stderr, "lb-testsrv: unknown mode: %s\n", val);
				return 2;
			}
			if (cur)
				cur->mode = mode;
			else
				default_mode = mode;
		} else if (strcmp(opt, "--name") == 0) {
			if (cur)
				cur->name = val;
			else
				default_name = val;
		} else {
			fprintf(stderr, "lb-testsrv: unknown option: %s\n", opt);
			usage(stderr);
			return 2;
		}
	}
	if (n == 0) {
		usage(stderr);
		return 2;
	}

	/* block before any thread starts, so that only sigwait below sees them */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = 0;
	size_t started = 0;
	for (; started < n; started++) {
		const struct server_spec *s = &specs[started];
		enum tb_mode mode = (enum tb_mode)(s->mode >= 0 ? s->mode : default_mode);
		const char *name = s->name ? s->name : default_name;
		tbs[started] = tb_start(s->listen, mode, name);
		if (!tbs[started]) {
			fprintf(stderr, "lb-testsrv: cannot listen on %s\n", s->listen);
			rc = 1;
			break;
		}
		printf("lb-testsrv: %s (%s) listening on %s\n", tb_name(tbs[started]),
		       tb_mode_name(mode), tb_address(tbs[started]));
		fflush(stdout);
	}
	if (rc == 0) {
		int sig;
		sigwait(&set, &sig);
	}
	for (size_t i = 0; i < started; i++)
		tb_free(tbs[i]);
	return rc;
}
