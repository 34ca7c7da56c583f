/* ctl_store.c — `kairanctl store copy --to DEST`: moves the whole store
 * from the configured database to another, of either backend (SQLite to
 * PostgreSQL when a list outgrows one host, and back). */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl store copy --to DEST [--to-password-file FILE]\n"
    "\n"
    "Copies every row of the configured database (database: in the\n"
    "config) into DEST: an SQLite file path or a postgresql:// URI without\n"
    "a password. DEST is created or migrated to this kairan's schema and\n"
    "must hold no rows. Ids are kept, and DEST never gives out an id the\n"
    "source gave. Each table's rows are counted in both at the end.\n"
    "Stop kairand first: what it writes during the copy is not copied.\n"
    "Then point database: at DEST and start kairand (on every host).\n"
    "\n"
    "  --to-password-file FILE  DEST's password (PostgreSQL), else\n"
    "                           KAIRAN_DB_PASSWORD\n"
    "exit status: 0 ok, 1 failure, 2 usage\n";

struct progress {
	const struct ctl *c;
	const char *last;
};

static void
on_progress(void *ctx, const char *table, int64_t done, int64_t total)
{
	struct progress *p = ctx;

	ctl_progress(p->c, table, (long long)done, (long long)total);
	if (done == total)
		printf("%-15s %lld rows\n", table, (long long)total);
	p->last = table;
}

static int
ctl_store_cmd(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	struct kr_store *dst = NULL;
	struct progress p = {c, NULL};
	const char *to = NULL, *to_pw = NULL;
	int i, r;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 ||
	                  strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CTL_OK;
	}
	if (argc < 2 || strcmp(argv[1], "copy") != 0) {
		ctl_error("store: copy expected");
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			return CTL_OK;
		} else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			to = argv[++i];
		} else if (strcmp(argv[i], "--to-password-file") == 0 &&
		           i + 1 < argc) {
			to_pw = argv[++i];
		} else {
			ctl_error("store copy: unexpected argument %s", argv[i]);
			fputs(usage_text, stderr);
			return CTL_USAGE;
		}
	}
	if (to == NULL) {
		ctl_error("store copy: --to DEST expected");
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	if (strstr(to, "://") != NULL && strchr(strstr(to, "://") + 3, ':') &&
	    strchr(to, '@') != NULL &&
	    strchr(strstr(to, "://") + 3, ':') < strchr(to, '@')) {
		/* user:password@ would sit in argv and the shell's history */
		ctl_error("store copy: DEST holds a password; give it with "
		          "--to-password-file or KAIRAN_DB_PASSWORD instead");
		return CTL_USAGE;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (strcmp(to, c->cfg->database) == 0) {
		ctl_error("store copy: DEST is the configured database");
		return CTL_USAGE;
	}
	if (kr_store_open(to, to_pw, &dst, &err) < 0) {
		ctl_error("store copy: %s", err.msg);
		return CTL_FAIL;
	}
	printf("copying %s (%s) to %s (%s)\n", c->cfg->database,
	       kr_store_backend(c->store), to, kr_store_backend(dst));
	r = kr_store_copy(c->store, dst, on_progress, &p, &err);
	kr_store_close(&dst);
	if (r < 0) {
		ctl_error("store copy: %s", err.msg);
		return CTL_FAIL;
	}
	printf("copied: every table has as many rows in %s as in the "
	       "source\n",
	       to);
	return CTL_OK;
}

CTL_VERB(store, "store", ctl_store_cmd,
         "copy the whole store to another database (SQLite, PostgreSQL)");
