/* ctl_keys.c — `kairanctl keys rotate|list|retire ID`: the token signing
 * keys in the config's key_file. Never prints key bytes. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "ctl.h"
#include "err.h"
#include "store.h"
#include "token.h"

static void
keys_usage(FILE *f)
{
	fprintf(
	    f, "usage: kairanctl keys rotate      add a new key; it signs from "
	       "now on\n"
	       "       kairanctl keys list        show key ids and creation "
	       "times\n"
	       "       kairanctl keys retire ID   remove an old key: links it "
	       "signed stop working\n"
	       "       kairanctl keys rotate --replace-lost\n"
	       "                                  the key file is lost for "
	       "good: start a new one\n"
	       "                                  (every link already sent "
	       "stops working)\n\n"
	       "Old keys keep verifying after a rotation, so links in mails "
	       "already sent\n"
	       "keep working. Reload kairand afterwards (systemctl reload "
	       "kairan) so it\n"
	       "signs with the new key.\n");
}

static int
keys_list(const char *path)
{
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	struct tm tm;
	char when[32];
	size_t i, n;
	uint32_t id;
	int64_t created;
	time_t t;
	int rc = CTL_FAIL;

	if (kr_token_keyring_load(path, 0, &ring, &err) < 0) {
		if (err.code == KR_ERR_NOTFOUND)
			ctl_error("%s; kairand creates it on first start, or "
			          "run `kairanctl keys rotate`",
			          err.msg);
		else
			ctl_error("%s", err.msg);
		goto out;
	}
	n = kr_token_keyring_count(ring);
	printf("%-10s  %-20s  %s\n", "ID", "CREATED (UTC)", "USE");
	for (i = 0; i < n; i++) {
		if (kr_token_keyring_key(ring, i, &id, &created) < 0)
			goto out;
		t = (time_t)created;
		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm) == 0)
			snprintf(when, sizeof(when), "%" PRId64, created);
		printf("%-10" PRIu32 "  %-20s  %s\n", id, when,
		       i + 1 == n ? "signs and verifies" : "verifies");
	}
	rc = CTL_OK;
out:
	kr_token_keyring_free(&ring);
	return rc;
}

static int
ctl_keys(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	unsigned long long v;
	uint32_t id = 0;
	char *end;
	int r;
	bool replace_lost = false;
	struct stat st;
	int64_t issued = 0;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		keys_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CTL_USAGE : CTL_OK;
	}
	if (strcmp(argv[1], "rotate") != 0 && strcmp(argv[1], "list") != 0 &&
	    strcmp(argv[1], "retire") != 0) {
		ctl_error("keys: unknown command '%s'", argv[1]);
		keys_usage(stderr);
		return CTL_USAGE;
	}
	if (strcmp(argv[1], "rotate") == 0 && argc == 3 &&
	    strcmp(argv[2], "--replace-lost") == 0)
		replace_lost = true;
	else if ((strcmp(argv[1], "retire") == 0) != (argc == 3) || argc > 3) {
		keys_usage(stderr);
		return CTL_USAGE;
	}
	if ((r = ctl_config(c)) != CTL_OK)
		return r;

	if (strcmp(argv[1], "list") == 0)
		return keys_list(c->cfg->key_file);

	if (strcmp(argv[1], "rotate") == 0) {
		/* A missing key file with a database that issued tokens is
		 * a lost file, not a first start: a new one breaks every
		 * link already sent, so only on request. */
		if (stat(c->cfg->key_file, &st) < 0 && errno == ENOENT &&
		    stat(c->cfg->database, &st) == 0) {
			if ((r = ctl_store(c)) != CTL_OK)
				return r;
			if (kr_store_tokens_issued(c->store, &issued, &err) < 0) {
				ctl_error("%s", err.msg);
				return CTL_FAIL;
			}
			if (issued > 0 && !replace_lost) {
				ctl_error("keys rotate: key file %s is missing, "
				          "and the database has subscribers "
				          "whose links it signed: restore it "
				          "from a backup; `kairanctl keys rotate "
				          "--replace-lost` starts a new one (every "
				          "link already sent stops working)",
				          c->cfg->key_file);
				return CTL_FAIL;
			}
			if (issued > 0 &&
			    kr_store_keys_forget(c->store, &err) < 0) {
				ctl_error("%s", err.msg);
				return CTL_FAIL;
			}
		} else if (replace_lost) {
			ctl_error("keys rotate --replace-lost: %s exists; "
			          "plain `kairanctl keys rotate` adds a key",
			          c->cfg->key_file);
			return CTL_USAGE;
		}
		if (kr_token_rotate(c->cfg->key_file, &id, &err) < 0) {
			ctl_error("%s", err.msg);
			return CTL_FAIL;
		}
		printf("key %" PRIu32 " now signs new tokens; older keys "
		       "still verify (%s)\n"
		       "reload kairand so it signs with it: systemctl reload "
		       "kairan\n",
		       id, c->cfg->key_file);
		return CTL_OK;
	}

	errno = 0;
	v = strtoull(argv[2], &end, 10);
	if (errno != 0 || end == argv[2] || *end != '\0' || v == 0 ||
	    v > UINT32_MAX || argv[2][0] == '-') {
		ctl_error("keys retire: '%s' is not a key id (see `kairanctl "
		          "keys list`)",
		          argv[2]);
		return CTL_USAGE;
	}
	if (kr_token_retire(c->cfg->key_file, (uint32_t)v, &err) < 0) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	printf("key %llu retired: links it signed no longer work (%s)\n"
	       "reload kairand so it forgets it: systemctl reload kairan\n",
	       v, c->cfg->key_file);
	return CTL_OK;
}

CTL_VERB(keys, "keys", ctl_keys,
         "rotate | list | retire ID: the token signing keys");
