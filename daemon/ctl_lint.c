/* ctl_lint.c — kairanctl lint REPORT
 * Lists, before anything is queued, every character of the report that
 * ISO-2022-JP cannot carry (FILE:LINE:COLUMN, code point, substitute) and
 * what the report's list will do about them (its charset and its
 * unrepresentable policy). kairanctl send --dry-run prints the same. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "jis.h"
#include "report.h"

static int ctl_lint(struct ctl *c, int argc, char **argv);
CTL_VERB(lint, "lint", ctl_lint,
         "list the characters of a report ISO-2022-JP cannot carry");

static const char usage_text[] =
    "usage: kairanctl lint REPORT\n\n"
    "Checks the report (front matter and body) and lists every character\n"
    "ISO-2022-JP cannot carry as FILE:LINE:COLUMN, with its substitute,\n"
    "then what the report's list (charset, unrepresentable) will do.\n\n"
    "exit status: 0 the report can be sent, 1 its list would refuse it\n"
    "(or it does not parse), 2 usage or config error\n";

int
ctl_jis_check(const struct kr_cfg_list *list, const char *name,
              const char *data, size_t len, FILE *f)
{
	struct kr_buf b;
	size_t n, none = 0;
	const char *what;
	int refused = 0;

	kr_buf_init(&b, 0);
	n = kr_jis_lint(name, data, len, &b, &none);
	if (n > 0)
		fputs(b.data, f);
	if (list->charset != KR_CFG_CHARSET_ISO2022JP) {
		fprintf(f,
		        "%s: list %s sends UTF-8: %zu character%s would need "
		        "care in ISO-2022-JP\n",
		        name, list->id, n, n == 1 ? "" : "s");
		goto out;
	}
	if (n == 0)
		what = "goes in ISO-2022-JP as written";
	else if (list->unrepresentable == KR_CFG_UNREP_REFUSE) {
		what = "is refused (unrepresentable: refuse)";
		refused = 1;
	} else if (list->unrepresentable == KR_CFG_UNREP_UTF8)
		what = "goes in UTF-8 (unrepresentable: utf-8)";
	else if (none > 0)
		what = "goes in UTF-8: some characters have no substitute "
		       "(unrepresentable: substitute)";
	else
		what = "goes in ISO-2022-JP with these substitutions "
		       "(unrepresentable: substitute)";
	fprintf(f,
	        "%s: %zu character%s ISO-2022-JP cannot carry (%zu without "
	        "a substitute); list %s: the report %s\n",
	        name, n, n == 1 ? "" : "s", none, list->id, what);
out:
	kr_buf_fini(&b);
	return refused;
}

static int
ctl_lint(struct ctl *c, int argc, char **argv)
{
	struct kr_report *rep = NULL;
	struct kr_err err = {0};
	struct kr_buf src;
	char chunk[65536];
	ssize_t k;
	int fd = -1, r = CTL_USAGE, rc;

	kr_buf_init(&src, 0);
	if (argc == 2 &&
	    (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		r = CTL_OK;
		goto out;
	}
	if (argc != 2) {
		ctl_error("lint: one REPORT file expected");
		fputs(usage_text, stderr);
		goto out;
	}
	if ((rc = ctl_config(c)) != CTL_OK) {
		r = rc;
		goto out;
	}
	r = CTL_FAIL;
	fd = strcmp(argv[1], "-") == 0 ? STDIN_FILENO
	                               : open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ctl_error("%s: %s", argv[1], strerror(errno));
		goto out;
	}
	while ((k = read(fd, chunk, sizeof(chunk))) != 0) {
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 || src.len + (size_t)k > KR_REPORT_MAX ||
		    kr_buf_append(&src, chunk, (size_t)k) < 0) {
			ctl_error("%s: %s", argv[1],
			          k < 0 ? strerror(errno) : "too large");
			goto out;
		}
	}
	if (kr_report_parse(c->cfg, argv[1], src.data ? src.data : "", src.len,
	                    &rep, &err) < 0) {
		ctl_error("%s", err.msg);
		goto out;
	}
	r = ctl_jis_check(kr_config_list(c->cfg, rep->list_id), argv[1],
	                  src.data ? src.data : "", src.len, stdout)
	        ? CTL_FAIL
	        : CTL_OK;
out:
	if (fd > STDIN_FILENO)
		close(fd);
	kr_report_free(&rep);
	kr_buf_fini(&src);
	return r;
}
