/* ctl_send.c — kairanctl send FILE|URL|- [--again]
 *                              [--dry-run [N] [--out DIR]]
 * Reads a report (a file, "-" for stdin, or an http(s) URL), and queues it
 * to every active subscriber of its list through kr_report_queue — the
 * same path as the outbox folder. --dry-run renders the first N messages
 * (default 3) for the current subscribers, or for one example subscriber
 * when there are none, to stdout or as DIR/NNN.eml, and queues nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "ctl.h"
#include "err.h"
#include "fetch.h"
#include "report.h"
#include "store.h"
#include "token.h"

static int ctl_send(struct ctl *c, int argc, char **argv);
CTL_VERB(send, "send", ctl_send,
         "queue a report (FILE, URL or -) to its list; --dry-run renders only");

static void
send_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: kairanctl send FILE|URL|- [--again] "
	    "[--dry-run [N] [--out DIR]]\n\n"
	    "Queues the report (Markdown with YAML front matter: subject,\n"
	    "list, date, send_at, preheader) to every active subscriber of\n"
	    "its list and prints \"report ID queued to N subscribers\".\n\n"
	    "  --again      queue it even if the same content was queued "
	    "before\n"
	    "  --dry-run N  render the first N messages (default 3) and queue\n"
	    "               nothing; to stdout, or with --out DIR as "
	    "DIR/001.eml…\n\n"
	    "exit status: 0 queued (or rendered), 1 refused or failed,\n"
	    "2 usage or config error\n");
}

/* Reads all of path ("-": stdin) into b, refusing more than max bytes. */
static int
read_source(const char *path, size_t max, struct kr_buf *b, struct kr_err *err)
{
	char chunk[65536];
	ssize_t n;
	int fd = -1, r = -1;

	fd = strcmp(path, "-") == 0 ? STDIN_FILENO
	                            : open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		kr_err_set(err, KR_ERR_IO, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			kr_err_set(err, KR_ERR_IO, "%s: %s", path,
			           strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (b->len + (size_t)n > max ||
		    kr_buf_append(b, chunk, (size_t)n) < 0) {
			kr_err_set(err, KR_ERR_INVALID,
			           "%s: larger than %zu bytes, refused", path,
			           max);
			goto out;
		}
	}
	r = 0;
out:
	if (fd > STDIN_FILENO)
		close(fd);
	return r;
}

static bool
is_url(const char *s)
{
	return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0;
}

/* The subscribers a dry run renders for. */
struct pick {
	struct kr_subscriber *v;
	size_t n, max;
};

static int
pick_one(void *ctx, const struct kr_subscriber *sub)
{
	struct pick *p = ctx;

	if (p->n >= p->max)
		return 1; /* enough: stop */
	p->v[p->n++] = *sub;
	return 0;
}

static int
write_file(const char *dir, size_t i, const struct kr_buf *msg)
{
	char path[4096];
	FILE *f;
	int r = -1;

	snprintf(path, sizeof(path), "%s/%03zu.eml", dir, i);
	if ((f = fopen(path, "wb")) == NULL) {
		ctl_error("%s: %s", path, strerror(errno));
		return -1;
	}
	if (fwrite(msg->data, 1, msg->len, f) == msg->len)
		r = 0;
	if (fclose(f) != 0)
		r = -1;
	if (r < 0)
		ctl_error("%s: write failed", path);
	return r;
}

static int
dry_run(struct ctl *c, const char *name, const struct kr_buf *src, size_t n,
        const char *outdir)
{
	struct kr_report *rep = NULL;
	struct kr_report_row row;
	struct kr_compose_cache *cache = NULL;
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	struct pick pick = {0};
	struct kr_buf msg;
	const struct kr_cfg_list *list;
	int64_t total = 0, now = (int64_t)time(NULL);
	char env[256];
	size_t i;
	int r = CTL_FAIL, rc;

	kr_buf_init(&msg, 0);
	if ((rc = ctl_store(c)) != CTL_OK) {
		r = rc;
		goto out;
	}
	if (kr_report_parse(c->cfg, name, src->data ? src->data : "", src->len,
	                    &rep, &err) < 0) {
		ctl_error("%s", err.msg);
		goto out;
	}
	list = kr_config_list(c->cfg, rep->list_id);
	/* every substitution and refusal, before anything else */
	if (list->charset == KR_CFG_CHARSET_ISO2022JP &&
	    ctl_jis_check(list, name, src->data ? src->data : "", src->len,
	                  stderr))
		goto out;
	if (kr_token_keyring_open(c->cfg->key_file, c->store, &ring, &err) < 0) {
		ctl_error("%s", err.msg);
		goto out;
	}
	if (outdir != NULL && mkdir(outdir, 0755) < 0 && errno != EEXIST) {
		ctl_error("%s: %s", outdir, strerror(errno));
		goto out;
	}
	pick.max = n;
	pick.v = calloc(n ? n : 1, sizeof(*pick.v));
	if (pick.v == NULL)
		abort();
	if (kr_store_subscriber_count(c->store, list->id, KR_SUB_ACTIVE, &total,
	                              &err) < 0 ||
	    kr_store_subscriber_foreach(c->store, list->id, KR_SUB_ACTIVE,
	                                pick_one, &pick, &err) < 0) {
		ctl_error("%s", err.msg);
		goto out;
	}
	if (pick.n == 0 && n > 0) {
		/* nobody yet: show the message an example reader would get */
		snprintf(pick.v[0].email, sizeof(pick.v[0].email),
		         "reader@example.com");
		snprintf(pick.v[0].name, sizeof(pick.v[0].name), "Example");
		pick.n = 1;
	}
	memset(&row, 0, sizeof(row));
	snprintf(row.list_id, sizeof(row.list_id), "%s", rep->list_id);
	row.subject = rep->subject;
	row.preheader = rep->preheader;
	row.text = rep->text;
	row.html = rep->html;
	memcpy(row.hash, rep->hash, sizeof(row.hash));
	row.send_at = rep->send_at;
	cache = kr_compose_prepare(c->cfg, list, &row);
	for (i = 0; i < pick.n; i++) {
		struct kr_claim cl;

		memset(&cl, 0, sizeof(cl));
		cl.kind = KR_DELIVERY_REPORT;
		cl.subscriber_id = pick.v[i].id;
		snprintf(cl.list_id, sizeof(cl.list_id), "%s", list->id);
		snprintf(cl.email, sizeof(cl.email), "%s", pick.v[i].email);
		kr_buf_reset(&msg);
		if (kr_compose_report_cached(cache, &cl, pick.v[i].name, ring,
		                             now, &msg, env, &err) < 0) {
			ctl_error("%s: %s", cl.email, err.msg);
			goto out;
		}
		if (outdir != NULL) {
			if (write_file(outdir, i + 1, &msg) < 0)
				goto out;
		} else {
			printf(
			    "%s==> dry run %zu/%zu, envelope sender %s <==\n",
			    i ? "\n" : "", i + 1, pick.n, env);
			fwrite(msg.data, 1, msg.len, stdout);
		}
	}
	fprintf(stderr,
	        "dry run: report \"%s\" for list %s would go to %lld "
	        "subscriber%s; rendered %zu message%s%s%s, queued nothing\n",
	        rep->subject, list->id, (long long)total, total == 1 ? "" : "s",
	        pick.n, pick.n == 1 ? "" : "s", outdir ? " into " : "",
	        outdir ? outdir : "");
	r = CTL_OK;
out:
	kr_compose_cache_free(&cache);
	kr_token_keyring_free(&ring);
	kr_report_free(&rep);
	kr_buf_fini(&msg);
	free(pick.v);
	return r;
}

static int
ctl_send(struct ctl *c, int argc, char **argv)
{
	struct kr_err err = {0};
	struct kr_buf src;
	const char *what = NULL, *outdir = NULL;
	bool again = false, dry = false;
	size_t n = 3;
	int64_t id = 0, queued = 0;
	char *end, name[4096];
	int i, r = CTL_USAGE, rc;

	kr_buf_init(&src, 0);
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			send_usage(stdout);
			r = CTL_OK;
			goto out;
		} else if (strcmp(argv[i], "--again") == 0) {
			again = true;
		} else if (strcmp(argv[i], "--dry-run") == 0) {
			dry = true;
			if (i + 1 < argc && argv[i + 1][0] >= '0' &&
			    argv[i + 1][0] <= '9') {
				n = strtoul(argv[++i], &end, 10);
				if (*end != '\0' || n > 100000) {
					ctl_error(
					    "--dry-run: expected a count, "
					    "got '%s'",
					    argv[i]);
					goto out;
				}
			}
		} else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
			outdir = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			ctl_error("send: unknown option %s", argv[i]);
			send_usage(stderr);
			goto out;
		} else if (what == NULL) {
			what = argv[i];
		} else {
			ctl_error("send: one report at a time");
			goto out;
		}
	}
	if (what == NULL || (outdir != NULL && !dry)) {
		if (what == NULL)
			ctl_error("send: which report? (FILE, URL or -)");
		else
			ctl_error("send: --out goes with --dry-run");
		send_usage(stderr);
		goto out;
	}
	if ((rc = ctl_config(c)) != CTL_OK) {
		r = rc;
		goto out;
	}
	r = CTL_FAIL;
	if (is_url(what)) {
		if (kr_fetch_url(what, KR_REPORT_MAX, KR_FETCH_DEFAULT_TIMEOUT,
		                 &src, NULL, 0, &err) < 0) {
			ctl_error("%s", err.msg);
			goto out;
		}
	} else if (read_source(what, KR_REPORT_MAX, &src, &err) < 0) {
		ctl_error("%s", err.msg);
		goto out;
	}
	/* the name in messages and the store: no URL password or token */
	if (strcmp(what, "-") == 0)
		snprintf(name, sizeof(name), "(stdin)");
	else if (is_url(what))
		kr_fetch_redact(what, name, sizeof(name));
	else
		snprintf(name, sizeof(name), "%s", what);
	if (dry) {
		r = dry_run(c, name, &src, n, outdir);
		goto out;
	}
	if ((rc = ctl_store(c)) != CTL_OK) {
		r = rc;
		goto out;
	}
	if (kr_report_queue(c->store, c->cfg, name, src.data ? src.data : "",
	                    src.len, again, &id, &queued, &err) < 0) {
		struct kr_report *rep = NULL;
		const struct kr_cfg_list *list;

		/* refused for its characters: list every one */
		if (kr_report_parse(c->cfg, name, src.data ? src.data : "",
		                    src.len, &rep, NULL) == 0 &&
		    (list = kr_config_list(c->cfg, rep->list_id)) != NULL &&
		    list->charset == KR_CFG_CHARSET_ISO2022JP &&
		    list->unrepresentable == KR_CFG_UNREP_REFUSE &&
		    strstr(err.msg, "cannot be sent as ISO-2022-JP") != NULL)
			(void)ctl_jis_check(list, name,
			                    src.data ? src.data : "", src.len,
			                    stderr);
		else
			ctl_error("%s", err.msg);
		kr_report_free(&rep);
		goto out;
	}
	printf("report %lld queued to %lld subscribers\n", (long long)id,
	       (long long)queued);
	r = CTL_OK;
out:
	kr_buf_fini(&src);
	return r;
}
