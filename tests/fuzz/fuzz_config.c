/* fuzz_config.c — libFuzzer harness for the YAML config loader. `make fuzz`
 * runs it on tests/fuzz/config/; by hand:
 *   clang -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Ilib \
 *     tests/fuzz/fuzz_config.c lib/config.c lib/buf.c lib/log.c \
 *     lib/xmem.c lib/err.c -lyaml -lsodium -o fuzz_config
 *   ./fuzz_config -max_total_time=60 tests/fuzz/config/
 * Any input must give either a config or error lines, never a crash or a
 * leak; every error line must start with the file name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kr_config *cfg = NULL;
	char *errors = NULL;
	const char *p;

	kr_log_set_level(KR_LOG_ERR);
	if (kr_config_load_buf("fuzz.yaml", (const char *)data, size, &cfg,
	                       &errors) == 0) {
		if (cfg == NULL || errors != NULL || cfg->n_lists == 0 ||
		    cfg->public_url == NULL)
			abort();
		(void)kr_config_list(cfg, cfg->lists[0].id);
		kr_config_free(&cfg);
	} else {
		if (cfg != NULL || errors == NULL || *errors == '\0')
			abort();
		for (p = errors; *p; p = strchr(p, '\n') + 1) {
			if (strncmp(p, "fuzz.yaml:", 10) != 0 ||
			    strchr(p, '\n') == NULL)
				abort();
		}
		free(errors);
	}
	return 0;
}
