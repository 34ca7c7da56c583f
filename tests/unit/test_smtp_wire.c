/* test_smtp_wire.c — frames between kairand and kairan-smtp: built with
 * kr_wire_begin()/…/end(), read back over a socket pair with the plain
 * reader and with the read-ahead one (kr_wire_read_rd()), several frames
 * to a write or one frame over several, and the end of the stream at a
 * frame boundary (0) or inside a frame (-1, EPROTO). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "smtp_wire.h"

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

/* Appends one frame (type, a u32, a string) to all. */
static void
frame(struct kr_buf *all, uint32_t type, uint32_t v, const char *str)
{
	struct kr_buf b;

	kr_buf_init(&b, 0);
	kr_wire_begin(&b, type);
	kr_wire_u32(&b, v);
	kr_wire_str(&b, str);
	kr_wire_end(&b);
	assert_int_equal(kr_buf_append(all, b.data, b.len), 0);
	kr_buf_fini(&b);
}

static void
expect(int fd, struct kr_wire_rd *rd, uint32_t type, uint32_t v,
       const char *str)
{
	struct kr_buf b;
	struct kr_wire_in in;
	uint32_t t = 0;
	size_t len = 0;
	const char *s;

	kr_buf_init(&b, 0);
	if (rd != NULL)
		assert_int_equal(kr_wire_read_rd(fd, rd, &b, &t), 1);
	else
		assert_int_equal(kr_wire_read(fd, &b, &t), 1);
	assert_int_equal(t, type);
	kr_wire_in_init(&in, &b);
	assert_int_equal(kr_wire_get_u32(&in), v);
	s = kr_wire_get_str(&in, &len);
	assert_false(in.bad);
	assert_non_null(s);
	assert_string_equal(s, str);
	assert_int_equal(len, strlen(str));
	kr_buf_fini(&b);
}

static void
test_wire_frames_read_ahead(void **state)
{
	struct kr_buf all;
	struct kr_wire_rd rd;
	char *big = malloc(5000);
	int sv[2], round;
	size_t i;

	(void)state;
	memset(big, 'x', 4999);
	big[4999] = '\0';
	for (round = 0; round < 2; round++) {
		pair(sv);
		kr_buf_init(&all, 0);
		frame(&all, KR_W_OUTCOME, 1, "250 2.0.0 Ok: queued as A");
		frame(&all, KR_W_ACK, 2, "");
		frame(&all, KR_W_SEND, 3, big); /* over the read-ahead */
		frame(&all, KR_W_OUTCOME, 4, "451 later");
		frame(&all, KR_W_DONE, 5, "done");
		if (round == 0) {
			/* all frames in one write */
			assert_int_equal(write(sv[1], all.data, all.len),
			                 (ssize_t)all.len);
		} else {
			/* a write per octet, from another process */
			if (fork() == 0) {
				for (i = 0; i < all.len; i++)
					if (write(sv[1], all.data + i, 1) != 1)
						_exit(1);
				_exit(0);
			}
		}
		close(sv[1]);
		kr_wire_rd_init(&rd);
		expect(sv[0], &rd, KR_W_OUTCOME, 1,
		       "250 2.0.0 Ok: queued as A");
		expect(sv[0], &rd, KR_W_ACK, 2, "");
		expect(sv[0], &rd, KR_W_SEND, 3, big);
		expect(sv[0], &rd, KR_W_OUTCOME, 4, "451 later");
		expect(sv[0], &rd, KR_W_DONE, 5, "done");
		{
			struct kr_buf b;
			uint32_t t;

			/* the end at a frame boundary */
			kr_buf_init(&b, 0);
			assert_int_equal(kr_wire_read_rd(sv[0], &rd, &b, &t),
			                 0);
			kr_buf_fini(&b);
		}
		close(sv[0]);
		kr_buf_fini(&all);
	}
	free(big);
}

/* The same frames through the plain reader, which never reads past a
 * frame: a read-ahead reader can take over the socket after it. */
static void
test_wire_plain_then_read_ahead(void **state)
{
	struct kr_buf all;
	struct kr_wire_rd rd;
	int sv[2];

	(void)state;
	pair(sv);
	kr_buf_init(&all, 0);
	frame(&all, KR_W_READY, 0, "");
	frame(&all, KR_W_OUTCOME, 7, "550 no");
	assert_int_equal(write(sv[1], all.data, all.len), (ssize_t)all.len);
	close(sv[1]);
	expect(sv[0], NULL, KR_W_READY, 0, "");
	kr_wire_rd_init(&rd);
	expect(sv[0], &rd, KR_W_OUTCOME, 7, "550 no");
	close(sv[0]);
	kr_buf_fini(&all);
}

/* The other end gone inside a frame: in its header or in its payload,
 * from the read-ahead or after it. */
static void
test_wire_end_inside_a_frame(void **state)
{
	struct kr_buf all, b;
	struct kr_wire_rd rd;
	uint32_t t;
	size_t cut[] = {3, 8, 12, 0};
	int sv[2], k;

	(void)state;
	kr_buf_init(&all, 0);
	frame(&all, KR_W_OUTCOME, 1, "250 ok");
	cut[3] = all.len - 1;
	for (k = 0; k < 4; k++) {
		pair(sv);
		assert_int_equal(write(sv[1], all.data, cut[k]),
		                 (ssize_t)cut[k]);
		close(sv[1]);
		kr_wire_rd_init(&rd);
		kr_buf_init(&b, 0);
		errno = 0;
		assert_int_equal(kr_wire_read_rd(sv[0], &rd, &b, &t), -1);
		assert_int_equal(errno, EPROTO);
		kr_buf_fini(&b);
		close(sv[0]);
	}
	kr_buf_fini(&all);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wire_frames_read_ahead),
	    cmocka_unit_test(test_wire_plain_then_read_ahead),
	    cmocka_unit_test(test_wire_end_inside_a_frame),
	};

	return cmocka_run_group_tests_name("smtp_wire", tests, NULL, NULL);
}
