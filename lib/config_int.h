/* config_int.h — config.c internals exposed to its unit test only. */
#ifndef KR_CONFIG_INT_H
#define KR_CONFIG_INT_H

#include <stddef.h>

/* Returns the number of keys the loader knows and, when names_out is not
 * NULL, stores up to max dotted names ("delivery.per_domain.*.rate",
 * "lists[].id"), newly allocated: the caller frees each. */
size_t kr_config_keys(char **names_out, size_t max);

#endif
