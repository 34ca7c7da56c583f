/* test_outbox.c — the watched folder on a real temporary directory with
 * real inotify: names taken and ignored, the start scan, renames into the
 * folder, done/ and failed/ with the reason, symlinks refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "outbox.h"

struct seen {
	int n;
	char names[8][64];
	char data[8][64];
	int fail; /* the callback refuses names containing "bad" */
};

static int
queue_fn(void *ctx, const char *name, const char *data, size_t len,
    struct kr_err *err)
{
	struct seen *s = ctx;

	if (s->n < 8) {
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
		snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)len,
		    data);
	}
	s->n++;
	if (strstr(name, "bad") != NULL)
		return kr_err_set(err, KR_ERR_INVALID, "front matter: no "
						       "subject");
	return 0;
}

static char tmpl[] = "/tmp/kairan-outbox-XXXXXX";
static char *dir;

static void
put(const char *name, const char *text)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int
exists(const char *rel)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	return lstat(p, &st) == 0;
}

static char *
slurp(const char *rel)
{
	static char buf[512];
	char p[512];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, rel);
	buf[0] = '\0';
	if ((fd = open(p, O_RDONLY)) < 0)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	return buf;
}

static int
setup(void **state)
{
	(void)state;
	strcpy(tmpl, "/tmp/kairan-outbox-XXXXXX");
	dir = mkdtemp(tmpl);
	return dir ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[600];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_outbox_wanted(void **state)
{
	(void)state;
	assert_int_equal(kr_outbox_wanted("2026-11 report.md"), 1);
	assert_int_equal(kr_outbox_wanted("r.md"), 1);
	assert_int_equal(kr_outbox_wanted(".md"), 0);
	assert_int_equal(kr_outbox_wanted(".r.md"), 0);
	assert_int_equal(kr_outbox_wanted("r.md.tmp"), 0);
	assert_int_equal(kr_outbox_wanted("r.md.part"), 0);
	assert_int_equal(kr_outbox_wanted("."), 0);
	assert_int_equal(kr_outbox_wanted(".."), 0);
	assert_int_equal(kr_outbox_wanted("../x.md"), 0);
	assert_int_equal(kr_outbox_wanted(""), 0);
	assert_int_equal(kr_outbox_wanted(NULL), 0);
	assert_int_equal(kr_outbox_wanted("notes.txt"), -1);
	assert_int_equal(kr_outbox_wanted("md"), -1);
}

static void
test_outbox_scan(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	char target[512];

	(void)state;
	put("b.md", "second");
	put("a.md", "first");
	put("c-bad.md", "broken");
	put("notes.txt", "hello");
	put("d.md.tmp", "unfinished");
	put(".e.md", "hidden");
	snprintf(target, sizeof(target), "%s/.e.md", dir);
	{
		char link[512];

		snprintf(link, sizeof(link), "%s/link.md", dir);
		assert_int_equal(symlink(target, link), 0);
	}
	assert_int_equal(kr_outbox_open(dir, queue_fn, &s, &o, &err), 0);
	kr_outbox_scan(o);
	/* In name order; the bad one reached the callback too. */
	assert_int_equal(s.n, 3);
	assert_string_equal(s.names[0], "a.md");
	assert_string_equal(s.data[0], "first");
	assert_string_equal(s.names[1], "b.md");
	assert_string_equal(s.names[2], "c-bad.md");
	assert_true(exists("done/a.md"));
	assert_true(exists("done/b.md"));
	assert_false(exists("a.md"));
	assert_true(exists("failed/c-bad.md"));
	assert_non_null(strstr(slurp("failed/c-bad.md.err"), "no subject"));
	assert_true(exists("failed/notes.txt"));
	assert_true(exists("failed/notes.txt.err"));
	/* The symlink was not followed: moved aside, target untouched. */
	assert_true(exists("failed/link.md"));
	assert_non_null(strstr(slurp("failed/link.md.err"), "symlink"));
	assert_true(exists(".e.md"));
	assert_true(exists("d.md.tmp"));
	kr_outbox_close(&o);
	assert_null(o);
}

static void
test_outbox_inotify(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	struct pollfd pfd;
	char from[512], to[512];
	int i;

	(void)state;
	assert_int_equal(kr_outbox_open(dir, queue_fn, &s, &o, &err), 0);
	/* Written under an ignored name, then renamed: taken once. */
	put("r1.md.part", "report one");
	assert_int_equal(kr_outbox_process(o), 0);
	snprintf(from, sizeof(from), "%s/r1.md.part", dir);
	snprintf(to, sizeof(to), "%s/r1.md", dir);
	assert_int_equal(rename(from, to), 0);
	pfd.fd = kr_outbox_fd(o);
	pfd.events = POLLIN;
	for (i = 0; i < 50 && s.n == 0; i++) {
		(void)poll(&pfd, 1, 100);
		(void)kr_outbox_process(o);
	}
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], "r1.md");
	assert_string_equal(s.data[0], "report one");
	assert_true(exists("done/r1.md"));
	/* The same name again does not overwrite the first in done/. */
	put("r1.md", "report one again");
	for (i = 0; i < 50 && s.n == 1; i++) {
		(void)poll(&pfd, 1, 100);
		(void)kr_outbox_process(o);
	}
	assert_int_equal(s.n, 2);
	assert_true(exists("done/r1.md.1"));
	assert_string_equal(slurp("done/r1.md"), "report one");
	kr_outbox_close(&o);
}

/* A hard link into the outbox reaches a file kept elsewhere: refused
 * like a symlink. */
static void
test_outbox_hard_link(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	char outside[512], in[512];
	FILE *f;

	(void)state;
	snprintf(outside, sizeof(outside), "%s.secret", dir);
	f = fopen(outside, "w");
	assert_non_null(f);
	fputs("---\nsubject: private\n---\nnot for the outbox\n", f);
	fclose(f);
	snprintf(in, sizeof(in), "%s/linked.md", dir);
	assert_int_equal(link(outside, in), 0);
	assert_int_equal(kr_outbox_open(dir, queue_fn, &s, &o, &err), 0);
	kr_outbox_scan(o);
	assert_int_equal(s.n, 0);
	assert_false(exists("linked.md"));
	assert_true(exists("failed/linked.md"));
	assert_non_null(strstr(slurp("failed/linked.md.err"), "hard link"));
	kr_outbox_close(&o);
	unlink(outside);
}

/* Names near NAME_MAX (255): NAME.1 in done/ and NAME.err in failed/
 * must still fit, or the file would stay in the outbox for good. */
static void
test_outbox_long_names(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	char name[256], bad[256];

	(void)state;
	memset(name, 'a', 251);
	memcpy(name + 251, ".md", 4); /* 254 bytes */
	memset(bad, 'b', 251);
	memcpy(bad, "bad", 3);
	memcpy(bad + 251, ".md", 4);
	assert_int_equal(kr_outbox_open(dir, queue_fn, &s, &o, &err), 0);
	put(name, "first");
	kr_outbox_scan(o);
	put(name, "second");
	kr_outbox_scan(o);
	put(bad, "refused by the callback");
	kr_outbox_scan(o);
	assert_int_equal(s.n, 3);
	assert_false(exists(name));
	assert_false(exists(bad));
	kr_outbox_close(&o);
}

/* Renamed in while its writer still appends: taken only once the writer
 * closed it, whole. */
static void
test_outbox_waits_for_writer(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	struct pollfd pfd;
	char from[512], to[512];
	int fd, i;

	(void)state;
	assert_int_equal(kr_outbox_open(dir, queue_fn, &s, &o, &err), 0);
	snprintf(from, sizeof(from), "%s/w.md.part", dir);
	snprintf(to, sizeof(to), "%s/w.md", dir);
	fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "part one", 8), 8);
	assert_int_equal(rename(from, to), 0);
	pfd.fd = kr_outbox_fd(o);
	pfd.events = POLLIN;
	for (i = 0; i < 5; i++) {
		(void)poll(&pfd, 1, 50);
		(void)kr_outbox_process(o);
	}
	assert_int_equal(s.n, 0);
	assert_true(exists("w.md"));
	assert_int_equal(kr_outbox_retry(o), 1); /* still waits */
	assert_int_equal(write(fd, ", part two", 10), 10);
	close(fd);
	for (i = 0; i < 50 && s.n == 0; i++) {
		(void)poll(&pfd, 1, 100);
		(void)kr_outbox_process(o);
	}
	assert_int_equal(s.n, 1);
	assert_string_equal(s.data[0], "part one, part two");
	assert_int_equal(kr_outbox_retry(o), 0);
	kr_outbox_close(&o);
}

static void
test_outbox_missing_dir(void **state)
{
	struct kr_outbox *o = NULL;
	struct kr_err err = {0};
	struct seen s = {0};
	char p[512];

	(void)state;
	snprintf(p, sizeof(p), "%s/nope", dir);
	assert_int_equal(kr_outbox_open(p, queue_fn, &s, &o, &err), -1);
	assert_null(o);
	assert_non_null(strstr(err.msg, "nope"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_outbox_wanted),
	    cmocka_unit_test_setup_teardown(test_outbox_scan, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_inotify, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_hard_link, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_long_names, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_waits_for_writer,
		setup, teardown),
	    cmocka_unit_test_setup_teardown(test_outbox_missing_dir, setup,
		teardown),
	};

	return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
