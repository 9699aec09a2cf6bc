/* libFuzzer target: the config loader. Each input is a config file's text; what loads is
 * also built into pools and listeners the way main.c does at start-up (which runs the
 * algorithms' table builds on fuzzed weights and keys), then everything is freed. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lb/config.h"
#include "lb/listener.h"
#include "lb/log.h"
#include "lb/pool.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOG_ERROR, 0);
	return 0;
}

/* Pools and listeners from cfg, as main.c's build_pools; all freed again. */
static void build_and_free(const struct config *cfg)
{
	struct pool **pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*pools));

	if (!pools)
		return;
	for (size_t i = 0; i < cfg->npools; i++)
		pools[i] = pool_create(&cfg->pools[i]);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		struct listener *l = NULL;
		/* The loader resolved each listener's pool to an index: it must be in range. */
		if (lc->pool_index >= cfg->npools)
			abort();
		if (pools[lc->pool_index] && listener_create(lc, pools[lc->pool_index], &l) == 0)
			free(l);
	}
	for (size_t i = 0; i < cfg->npools; i++)
		if (pools[i])
			pool_destroy(pools[i]);
	free(pools);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct cfg_errors errs = {0};
	struct config *cfg = NULL;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	int rc = config_load_string(text, "fuzz.json", &cfg, &errs);
	/* The contract (config.h): success with a config and no error, or failure with every
	 * error collected (only running out of memory may leave none). */
	if ((rc == 0) != (cfg != NULL) || (rc == 0 && errs.n) ||
	    (rc < 0 && rc != -ENOMEM && !errs.n))
		abort();
	if (cfg) {
		build_and_free(cfg);
		config_free(cfg);
	}
	cfg_errors_free(&errs);
	free(text);
	return 0;
}
