/* ctl_backup.c — `kairanctl backup FILE`: an online, consistent copy of
 * the database (SQLite backup API), safe while kairand runs. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "err.h"
#include "store.h"

static const char usage_text[] =
    "usage: kairanctl backup [--force] FILE\n"
    "\n"
    "Writes a consistent copy of the database to FILE while kairand keeps\n"
    "running (written to FILE.tmp, then renamed). An existing FILE is\n"
    "kept unless --force. Restore: stop kairand, copy FILE over the\n"
    "database path, remove its -wal and -shm files, start kairand.\n"
    "exit status: 0 ok, 1 failure, 2 usage\n";

static int
ctl_backup(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	struct stat sb;
	const char *file = NULL;
	bool force = false;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			return CTL_OK;
		} else if (strcmp(argv[i], "--force") == 0) {
			force = true;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			ctl_error("backup: unknown option %s", argv[i]);
			fputs(usage_text, stderr);
			return CTL_USAGE;
		} else if (file == NULL) {
			file = argv[i];
		} else {
			ctl_error("backup: one FILE expected");
			return CTL_USAGE;
		}
	}
	if (file == NULL) {
		ctl_error("backup: FILE expected");
		fputs(usage_text, stderr);
		return CTL_USAGE;
	}
	if (!force && stat(file, &sb) == 0) {
		ctl_error("%s exists; choose another name or add --force",
		          file);
		return CTL_FAIL;
	}
	if ((r = ctl_store(c)) != CTL_OK)
		return r;
	if (kr_store_backup(c->store, file, &err) < 0) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	if (stat(file, &sb) == 0)
		printf("backup written to %s (%lld bytes)\n", file,
		       (long long)sb.st_size);
	return CTL_OK;
}

CTL_VERB(backup, "backup", ctl_backup,
         "write a consistent copy of the database while kairand runs");
