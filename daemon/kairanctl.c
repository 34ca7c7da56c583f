/* kairanctl — the operator's tool. Argument parsing and dispatch only; each
 * verb lives in daemon/ctl_<verb>.c and the logic in lib/. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctl.h"
#include "err.h"
#include "store.h"
#include "version.h"

#define DEFAULT_CONFIG "/etc/kairan/kairan.yaml"

/* Every CTL_VERB of the ctl_<verb>.c files, gathered by the linker. */
/* The linker names the section bounds so; they cannot be renamed. */
extern const struct ctl_verb __start_ctl_verbs[]; /* NOLINT(bugprone-reserved-identifier) */
extern const struct ctl_verb __stop_ctl_verbs[]; /* NOLINT(bugprone-reserved-identifier) */

/* help is always there, so the section is never empty. */
static int
ctl_help(struct ctl *c, int argc, char **argv);
CTL_VERB(help, "help", ctl_help, "show this summary");

static const struct ctl_verb *
verb_find(const char *name)
{
	const struct ctl_verb *v;

	/* The linker puts both bounds around one section: one object. */
	/* cppcheck-suppress comparePointers */
	for (v = __start_ctl_verbs; v < __stop_ctl_verbs; v++)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static void
usage(FILE *f)
{
	const struct ctl_verb *v;

	fprintf(f,
	    "usage: kairanctl [--config FILE] COMMAND [ARGS...]\n"
	    "       kairanctl COMMAND --help\n"
	    "       kairanctl --version\n\n"
	    "The operator's tool for kairan. The config is FILE, or\n"
	    "$KAIRAN_CONFIG, or " DEFAULT_CONFIG ".\n\ncommands:\n");
	/* cppcheck-suppress comparePointers ; one linker section */
	for (v = __start_ctl_verbs; v < __stop_ctl_verbs; v++)
		fprintf(f, "  %-16s %s\n", v->name, v->summary);
	fprintf(f, "\nexit status: 0 ok, 1 runtime failure, 2 usage or "
		   "config error\n");
}

static int
ctl_help(struct ctl *c, int argc, char **argv)
{
	(void)c;
	(void)argc;
	(void)argv;
	usage(stdout);
	return CTL_OK;
}

void
ctl_error(const char *fmt, ...)
{
	va_list ap;

	fputs("kairanctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int
ctl_config(struct ctl *c)
{
	char *errors = NULL;

	if (c->cfg != NULL)
		return CTL_OK;
	/* kairanctl never sends mail itself: it needs no relay password, and
	 * an operator who may not read the password file can still use it
	 * (check-config reads everything). */
	if (kr_config_load_flags(c->config_path, KR_CONFIG_NO_SECRETS, &c->cfg,
	    &errors) < 0) {
		fputs(errors ? errors : "config: unknown error\n", stderr);
		free(errors);
		return CTL_USAGE;
	}
	return CTL_OK;
}

int
ctl_store(struct ctl *c)
{
	struct kr_err err = {0};
	int r;

	if (c->store != NULL)
		return CTL_OK;
	if ((r = ctl_config(c)) != CTL_OK)
		return r;
	if (kr_store_open(c->cfg->database, c->cfg->database_password_file,
	                  &c->store, &err) < 0) {
		ctl_error("%s", err.msg);
		return CTL_FAIL;
	}
	return CTL_OK;
}

void
ctl_progress(const struct ctl *c, const char *what, long long done,
    long long total)
{
	int width = 40, fill;

	if (!c->tty || total <= 0)
		return;
	fill = (int)(done * width / total);
	fprintf(stderr, "\r%-12s [%.*s%*s] %lld/%lld", what, fill,
	    "########################################", width - fill, "", done,
	    total);
	if (done >= total)
		fputc('\n', stderr);
	fflush(stderr);
}

int
main(int argc, char **argv)
{
	struct ctl c = {0};
	const char *env;
	const struct ctl_verb *v;
	int i = 1, r = CTL_USAGE;

	c.config_path = (env = getenv("KAIRAN_CONFIG")) ? env : DEFAULT_CONFIG;
	c.tty = isatty(STDERR_FILENO);
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			c.config_path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			c.config_path = argv[i] + 9;
		} else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return CTL_OK;
		} else if (strcmp(argv[i], "-V") == 0 ||
		    strcmp(argv[i], "--version") == 0) {
			printf("kairanctl %s\n", kr_version());
			return CTL_OK;
		} else {
			ctl_error("unknown option %s", argv[i]);
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	if ((v = verb_find(argv[i])) == NULL) {
		ctl_error("unknown command '%s'", argv[i]);
		usage(stderr);
		goto out;
	}
	r = v->fn(&c, argc - i, argv + i);
out:
	kr_store_close(&c.store);
	kr_config_free(&c.cfg);
	return r;
}
