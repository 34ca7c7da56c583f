/* ctl_check_config.c — `kairanctl check-config [--config FILE]`: loads the
 * operator's file as kairand would and prints every problem as
 * FILE:LINE:COLUMN: message, then loads every list's DKIM keys as kairand
 * would (a missing or unreadable key file shows up before a reload).
 * Exit 0 when the file is good, 2 when not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dkim.h"
#include "err.h"
#include "ctl.h"
#include "token.h"

static void
check_config_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: kairanctl check-config [--config FILE]\n\n"
	    "Loads the config as kairand would (password files included) and\n"
	    "prints every problem as FILE:LINE:COLUMN: message on stderr;\n"
	    "then loads the DKIM keys of every list that signs.\n\n"
	    "exit status: 0 config OK, 2 errors found or bad usage\n");
}

static int
ctl_check_config(struct ctl *c, int argc, char **argv)
{
	struct kr_config *cfg = NULL;
	struct kr_dkim_set *dkim = NULL;
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	char *errors = NULL;
	int i, r = CTL_USAGE;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			c->config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			c->config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			check_config_usage(stdout);
			r = CTL_OK;
			goto out;
		} else {
			ctl_error("check-config: unexpected argument '%s'",
			          argv[i]);
			check_config_usage(stderr);
			goto out;
		}
	}
	if (kr_config_load(c->config_path, &cfg, &errors) < 0) {
		fputs(errors != NULL ? errors : "config: unknown error\n",
		      stderr);
		goto out;
	}
	if (kr_dkim_set_new(cfg, &dkim, &err) < 0) {
		fprintf(stderr, "%s: %s\n", c->config_path, err.msg);
		goto out;
	}
	/* The token key file as kairand loads it (mode 0600, its format):
	 * a file kairand would refuse is an error here too. A missing one
	 * is made at the first start of an empty database only. */
	if (kr_token_keyring_load(cfg->key_file, 0, &ring, &err) < 0) {
		if (err.code != KR_ERR_NOTFOUND) {
			fprintf(stderr, "%s: key_file: %s\n", c->config_path,
			        err.msg);
			goto out;
		}
		fprintf(stderr,
		        "%s: note: key file %s does not exist: kairand "
		        "creates it on its first start with an empty "
		        "database, and refuses to start without it otherwise\n",
		        c->config_path, cfg->key_file);
	}
	printf("%s: config OK (%zu list%s, transport %s, %zu relay%s)\n",
	       c->config_path, cfg->n_lists, cfg->n_lists == 1 ? "" : "s",
	       cfg->delivery.transport == KR_CFG_TRANSPORT_MAILDIR ? "maildir"
	                                                           : "smtp",
	       cfg->n_relays, cfg->n_relays == 1 ? "" : "s");
	r = CTL_OK;
out:
	free(errors);
	kr_dkim_set_free(&dkim);
	kr_token_keyring_free(&ring);
	kr_config_free(&cfg);
	return r;
}

CTL_VERB(check_config, "check-config", ctl_check_config,
         "validate the config file, print every error as FILE:LINE:COLUMN");
