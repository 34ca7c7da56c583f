/* test_transport.c — the Maildir transport and kr_transport_for. Real
 * files in a temporary folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "err.h"
#include "transport.h"
#include "xmem.h"

struct fixture {
	char dir[64];
	char *maildir;
	struct kr_config cfg;
};

static int
rm_rf(const char *path)
{
	char *cmd = kr_xasprintf("rm -rf '%s'", path);
	int r = system(cmd);

	free(cmd);
	return r;
}

static int
setup(void **state)
{
	struct fixture *f = kr_xcalloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/kairan-md-XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	f->maildir = kr_xasprintf("%s/mail", f->dir);
	f->cfg.delivery.transport = KR_CFG_TRANSPORT_MAILDIR;
	f->cfg.delivery.maildir = f->maildir;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	(void)rm_rf(f->dir);
	free(f->maildir);
	free(f);
	return 0;
}

/* Names of the files in dir/sub, sorted; returns how many. */
static size_t
list_dir(const char *dir, const char *sub, char names[][256], size_t max)
{
	char *p = kr_xasprintf("%s/%s", dir, sub);
	DIR *d = opendir(p);
	struct dirent *e;
	size_t n = 0;

	free(p);
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n < max)
			snprintf(names[n], 256, "%s", e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long sz;

	if (fp == NULL)
		return NULL;
	fseek(fp, 0, SEEK_END);
	sz = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = kr_xmalloc((size_t)sz + 1);
	*len = fread(buf, 1, (size_t)sz, fp);
	buf[*len] = '\0';
	fclose(fp);
	return buf;
}

struct calls {
	int n;
	int64_t ids[8];
};

static void
on_done(void *ctx, struct kr_msg *msg)
{
	struct calls *c = ctx;

	if (c->n < 8)
		c->ids[c->n] = msg->id;
	c->n++;
}

static void
init_msg(struct kr_msg *m, int64_t id, const char *rcpt, const char *data)
{
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->mail_from = "bounces+x@news.example.jp";
	m->rcpt = rcpt;
	m->data = data;
	m->len = data != NULL ? strlen(data) : 0;
}

static void
test_transport_for_picks_backend(void **state)
{
	struct fixture *f = *state;

	assert_ptr_equal(kr_transport_for(&f->cfg), &kr_transport_maildir_ops);
	f->cfg.delivery.transport = KR_CFG_TRANSPORT_SMTP;
	assert_ptr_equal(kr_transport_for(&f->cfg), &kr_transport_smtp_ops);
	assert_string_equal(kr_transport_maildir_ops.name, "maildir");
	assert_string_equal(kr_transport_smtp_ops.name, "smtp");
}

static void
test_transport_maildir_delivers_each_message(void **state)
{
	struct fixture *f = *state;
	const struct kr_transport_ops *ops = &kr_transport_maildir_ops;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg msgs[3];
	struct calls calls = {0};
	char names[8][256];
	const char *bodies[3] = {
	    "Subject: one\r\n\r\nfirst\r\n",
	    "Subject: two\r\n\r\n.leading dot\r\n",
	    "Subject: =?UTF-8?B?5pel5pys?=\r\n\r\n\xe6\x97\xa5\xe6\x9c\xac\r\n",
	};
	size_t i, n, seen = 0;

	assert_int_equal(ops->create(&f->cfg, &t, &err), 0);
	/* tmp/ new/ cur/ were created */
	assert_int_equal(ops->probe(t, &err), 0);
	init_msg(&msgs[0], 11, "a@example.jp", bodies[0]);
	init_msg(&msgs[1], 12, "b@example.jp", bodies[1]);
	init_msg(&msgs[2], 13, "c@example.jp", bodies[2]);
	assert_int_equal(ops->send(t, msgs, 3, on_done, &calls, &err), 0);
	assert_int_equal(calls.n, 3);
	assert_int_equal(calls.ids[0], 11);
	assert_int_equal(calls.ids[2], 13);
	for (i = 0; i < 3; i++) {
		assert_int_equal(msgs[i].result, KR_SEND_OK);
		assert_int_equal(msgs[i].code, 250);
		assert_string_equal(msgs[i].relay, "maildir");
	}
	assert_int_equal(list_dir(f->maildir, "tmp", names, 8), 0);
	n = list_dir(f->maildir, "new", names, 8);
	assert_int_equal(n, 3);
	for (i = 0; i < n; i++) {
		char *p = kr_xasprintf("%s/new/%s", f->maildir, names[i]);
		size_t len, j;
		char *got = slurp(p, &len);

		assert_non_null(got);
		for (j = 0; j < 3; j++) {
			char *want = kr_xasprintf(
			    "Return-Path: "
			    "<bounces+x@news.example.jp>\r\nDelivered-To: %s"
			    "\r\n%s",
			    msgs[j].rcpt, bodies[j]);

			if (strcmp(got, want) == 0)
				seen |= 1u << j;
			free(want);
		}
		/* the reply names the file */
		free(got);
		free(p);
	}
	assert_int_equal(seen, 7);
	ops->destroy(&t);
	assert_null(t);
}

static void
test_transport_maildir_refuses_header_injection(void **state)
{
	struct fixture *f = *state;
	const struct kr_transport_ops *ops = &kr_transport_maildir_ops;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg msgs[3];
	struct calls calls = {0};
	char names[8][256];

	assert_int_equal(ops->create(&f->cfg, &t, &err), 0);
	init_msg(&msgs[0], 1, "a@example.jp\r\nBcc: x@evil.example",
	         "Subject: x\r\n\r\nx\r\n");
	init_msg(&msgs[1], 2, "ok@example.jp", "Subject: y\r\n\r\ny\r\n");
	init_msg(&msgs[2], 3, "empty@example.jp", NULL);
	assert_int_equal(ops->send(t, msgs, 3, on_done, &calls, &err), 0);
	assert_int_equal(calls.n, 3);
	assert_int_equal(msgs[0].result, KR_SEND_PERM);
	assert_int_equal(msgs[1].result, KR_SEND_OK);
	assert_int_equal(msgs[2].result, KR_SEND_PERM);
	assert_int_equal(list_dir(f->maildir, "new", names, 8), 1);
	ops->destroy(&t);
}

static void
test_transport_maildir_bad_dir_is_an_error(void **state)
{
	struct fixture *f = *state;
	const struct kr_transport_ops *ops = &kr_transport_maildir_ops;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	FILE *fp;

	/* a file where the Maildir should be */
	fp = fopen(f->maildir, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(ops->create(&f->cfg, &t, &err), -1);
	assert_null(t);
	assert_int_equal(err.code, KR_ERR_IO);
	assert_non_null(strstr(err.msg, f->maildir));

	f->cfg.delivery.maildir = NULL;
	assert_int_equal(ops->create(&f->cfg, &t, &err), -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	f->cfg.delivery.maildir = f->maildir;
}

static void
test_transport_maildir_unwritable_defers(void **state)
{
	struct fixture *f = *state;
	const struct kr_transport_ops *ops = &kr_transport_maildir_ops;
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg msgs[2];
	struct calls calls = {0};
	char *tmp = kr_xasprintf("%s/tmp", f->maildir);

	assert_int_equal(ops->create(&f->cfg, &t, &err), 0);
	/* tmp/ gone and replaced by a file: nothing can be written */
	assert_int_equal(rmdir(tmp), 0);
	fclose(fopen(tmp, "w"));
	init_msg(&msgs[0], 1, "a@example.jp", "Subject: x\r\n\r\nx\r\n");
	init_msg(&msgs[1], 2, "b@example.jp", "Subject: y\r\n\r\ny\r\n");
	assert_int_equal(ops->send(t, msgs, 2, on_done, &calls, &err), -1);
	assert_int_equal(err.code, KR_ERR_TEMP);
	assert_int_equal(calls.n, 2);
	assert_int_equal(msgs[0].result, KR_SEND_TEMP);
	assert_int_equal(msgs[1].result, KR_SEND_TEMP);
	assert_int_equal(ops->probe(t, &err), -1);
	ops->destroy(&t);
	free(tmp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_transport_for_picks_backend,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_transport_maildir_delivers_each_message, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_transport_maildir_refuses_header_injection, setup,
	        teardown),
	    cmocka_unit_test_setup_teardown(
	        test_transport_maildir_bad_dir_is_an_error, setup, teardown),
	    cmocka_unit_test_setup_teardown(
	        test_transport_maildir_unwritable_defers, setup, teardown),
	};

	return cmocka_run_group_tests_name("transport", tests, NULL, NULL);
}
