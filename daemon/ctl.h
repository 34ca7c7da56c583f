/* ctl.h — what the kairanctl verbs (daemon/ctl_<verb>.c) share. */
#ifndef KR_CTL_H
#define KR_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kr_config;
struct kr_store;

/* Exit codes, documented in --help and README. */
enum { CTL_OK = 0, CTL_FAIL = 1, CTL_USAGE = 2 };

struct ctl {
	const char *config_path; /* --config, KAIRAN_CONFIG, or the default */
	struct kr_config *cfg;   /* loaded by ctl_config() */
	struct kr_store *store;  /* opened by ctl_store() */
	bool tty;                /* stderr is a terminal: progress bars */
};

/* Loads the config once; on error prints every FILE:LINE:COL line to stderr
 * and returns CTL_USAGE, else CTL_OK. */
int ctl_config(struct ctl *c);
/* Loads the config and opens the store once; returns CTL_OK, CTL_USAGE or
 * CTL_FAIL (message printed). */
int ctl_store(struct ctl *c);
/* Prints "kairanctl: " + message to stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A progress bar on stderr when it is a terminal; done == total ends it. */
void ctl_progress(const struct ctl *c, const char *what, long long done,
    long long total);

/* Prints to f every character of a report source (data, len; name is
 * FILE) that ISO-2022-JP cannot carry and what list will do with the
 * report; returns 1 when list refuses it, else 0 (ctl_lint.c). */
struct kr_cfg_list;
int ctl_jis_check(const struct kr_cfg_list *list, const char *name,
    const char *data, size_t len, FILE *f);

/* subscribers consent: prints every subscription of addr (one list with
 * list_opt) with its whole record; CTL_OK, or CTL_FAIL when there is none.
 * The store is open. (ctl_consent.c) */
int ctl_sub_consent(struct ctl *c, const char *addr, const char *list_opt);
/* subscribers remove --forget for one subscription (already not active):
 * deletes every record of it when consent.retention allows, else says
 * when it will; CTL_OK deleted, CTL_FAIL not yet or an error. */
struct kr_subscriber;
int ctl_sub_forget(struct ctl *c, const struct kr_subscriber *sub,
    int64_t now);

/* The verbs: argv[0] is the verb; they return a CTL_* code. */
typedef int (*ctl_verb_fn)(struct ctl *c, int argc, char **argv);

struct ctl_verb {
	const char *name;
	ctl_verb_fn fn;
	const char *summary; /* one line for `kairanctl --help` */
};

/* Registers a verb from its own ctl_<verb>.c, with no central table to
 * edit: the linker gathers every CTL_VERB into the section "ctl_verbs".
 *   CTL_VERB(check_config, "check-config", ctl_check_config, "…");  */
#define CTL_VERB(id, name, fn, summary)                                   \
	static const struct ctl_verb ctl_verb_##id                        \
	    __attribute__((used, section("ctl_verbs"), aligned(8))) = {    \
		name, fn, summary}

#endif
