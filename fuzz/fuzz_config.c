/* libFuzzer target: the config loader. Each input is a config file's text; what loads is
 * checked for what the rest of lb relies on (unique names, values in range) and built into
 * pools and listeners the way main.c does at start-up (which runs the algorithms' table
 * builds on fuzzed weights and keys), then everything is freed. */
#include <errno.h>
#include <stdbool.h>
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

/* A name lbctl can address and metrics can label: 1..CFG_NAME_MAX bytes, no control
 * characters, '/' only where allowed (listener names). */
static void check_name(const char *s, bool slash_ok)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_NAME_MAX)
		abort();
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || (*s == '/' && !slash_ok))
			abort();
}

/* What the rest of lb relies on in a config that loaded: unique names, values in range. */
static void check_config(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *p = &cfg->pools[i];
		check_name(p->name, false);
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->pools[j].name, p->name) == 0)
				abort();
		for (size_t k = 0; k < p->nbackends; k++) {
			const struct cfg_backend *b = &p->backends[k];
			check_name(b->name ? b->name : b->address, false);
			if (b->weight < 0 || b->weight > CFG_MAX_WEIGHT || b->max_conns < 0 ||
			    (b->hash_key &&
			     (!*b->hash_key || strlen(b->hash_key) > CFG_HASH_KEY_MAX)))
				abort();
			for (size_t m = 0; m < k; m++) {
				const struct cfg_backend *o = &p->backends[m];
				if (strcmp(o->name ? o->name : o->address,
					   b->name ? b->name : b->address) == 0)
					abort();
			}
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *l = &cfg->listeners[i];
		check_name(l->name, true);
		/* The loader resolved each listener's pool to an index: in range, the same name. */
		if (l->pool_index >= cfg->npools || strcmp(cfg->pools[l->pool_index].name, l->pool))
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(cfg->listeners[j].name, l->name) == 0)
				abort();
	}
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
		check_config(cfg);
		build_and_free(cfg);
		config_free(cfg);
	}
	cfg_errors_free(&errs);
	free(text);
	return 0;
}
