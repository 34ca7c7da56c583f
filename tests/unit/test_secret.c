/* test_secret.c — kr_secret_read: the one reader of key files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "err.h"
#include "secret.h"

static char dir[64];

static int
setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/kairan-secret-XXXXXX");
	if (mkdtemp(dir) == NULL || sodium_init() < 0)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes data to dir/name with mode; returns the path (static). */
static const char *
put(const char *name, const char *data, mode_t mode)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(data, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void
test_secret_reads_a_0600_file(void **state)
{
	struct kr_err err = {0};
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	const char *p = put("k", "1 c2VjcmV0\n", 0600);

	(void)state;
	assert_int_equal(
	    kr_secret_read(p, "key file", 64, 0, &data, &len, &st, &err), 0);
	assert_int_equal(len, 11);
	assert_string_equal(data, "1 c2VjcmV0\n");
	assert_int_equal(st.st_size, 11);
	sodium_free(data);
	/* 0400 is fine too */
	assert_int_equal(chmod(p, 0400), 0);
	data = NULL;
	assert_int_equal(
	    kr_secret_read(p, "key file", 64, 0, &data, &len, NULL, &err), 0);
	sodium_free(data);
}

static void
test_secret_refuses_what_others_could_read(void **state)
{
	struct kr_err err = {0};
	char *data = NULL;
	size_t len = 0;
	const char *p = put("open", "x\n", 0644);

	(void)state;
	assert_int_equal(kr_secret_read(p, "dkim key file", 64, 0, &data, &len,
	                                NULL, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_non_null(strstr(err.msg, "dkim key file"));
	assert_non_null(strstr(err.msg, "mode 0644"));
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_null(data);
	/* group-writable alone is refused as well */
	assert_int_equal(chmod(p, 0620), 0);
	assert_int_equal(
	    kr_secret_read(p, "key file", 64, 0, &data, &len, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "mode 0620"));
}

static void
test_secret_missing_links_dirs_sizes(void **state)
{
	struct kr_err err = {0};
	char *data = NULL, path[128], link[160];
	size_t len = 0;
	const char *p;

	(void)state;
	snprintf(path, sizeof(path), "%s/none", dir);
	/* missing: NOTFOUND, or 1 when the caller creates it */
	assert_int_equal(
	    kr_secret_read(path, "key file", 64, 0, &data, &len, NULL, &err),
	    -1);
	assert_int_equal(err.code, KR_ERR_NOTFOUND);
	assert_int_equal(kr_secret_read(path, "key file", 64,
	                                KR_SECRET_MISSING_OK, &data, &len,
	                                NULL, &err),
	                 1);
	assert_null(data);

	/* a symbolic link: refused with NOFOLLOW, followed without */
	p = put("real", "abc", 0600);
	snprintf(link, sizeof(link), "%s/link", dir);
	assert_int_equal(symlink(p, link), 0);
	assert_int_equal(kr_secret_read(link, "key file", 64,
	                                KR_SECRET_NOFOLLOW, &data, &len, NULL,
	                                &err),
	                 -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_int_equal(
	    kr_secret_read(link, "key file", 64, 0, &data, &len, NULL, &err),
	    0);
	assert_string_equal(data, "abc");
	sodium_free(data);
	data = NULL;

	/* a directory */
	assert_int_equal(
	    kr_secret_read(dir, "key file", 64, 0, &data, &len, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "not a regular file"));

	/* over the cap; empty when a key is required */
	p = put("big", "0123456789", 0600);
	assert_int_equal(
	    kr_secret_read(p, "key file", 9, 0, &data, &len, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "larger than 9 bytes"));
	assert_int_equal(
	    kr_secret_read(p, "key file", 10, 0, &data, &len, NULL, &err), 0);
	sodium_free(data);
	data = NULL;
	p = put("empty", "", 0600);
	assert_int_equal(
	    kr_secret_read(p, "key file", 9, 0, &data, &len, NULL, &err), 0);
	assert_int_equal(len, 0);
	assert_string_equal(data, "");
	sodium_free(data);
	data = NULL;
	assert_int_equal(kr_secret_read(p, "dkim key file", 9,
	                                KR_SECRET_NONEMPTY, &data, &len, NULL,
	                                &err),
	                 -1);
	assert_non_null(strstr(err.msg, "is empty"));
	assert_null(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_secret_reads_a_0600_file),
	    cmocka_unit_test(test_secret_refuses_what_others_could_read),
	    cmocka_unit_test(test_secret_missing_links_dirs_sizes),
	};

	return cmocka_run_group_tests_name("secret", tests, setup, teardown);
}
