/* smtp_wire.c — frames between kairand and kairan-smtp; see smtp_wire.h. */
#include "smtp_wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "xmem.h"

static void
put(struct kr_buf *b, const void *p, size_t n)
{
	if (kr_buf_append(b, p, n) < 0)
		abort(); /* only past a cap, and these buffers have none */
}

void
kr_wire_begin(struct kr_buf *b, uint32_t type)
{
	uint32_t zero = 0;

	kr_buf_reset(b);
	put(b, &type, sizeof(type));
	put(b, &zero, sizeof(zero));
}

void
kr_wire_u32(struct kr_buf *b, uint32_t v)
{
	put(b, &v, sizeof(v));
}

void
kr_wire_u64(struct kr_buf *b, uint64_t v)
{
	put(b, &v, sizeof(v));
}

void
kr_wire_str(struct kr_buf *b, const char *s)
{
	uint32_t n = s != NULL ? (uint32_t)strlen(s) + 1 : 0;

	put(b, &n, sizeof(n));
	if (n > 0)
		put(b, s, n);
}

void
kr_wire_end(struct kr_buf *b)
{
	uint32_t n = (uint32_t)(b->len - 8);

	memcpy(b->data + 4, &n, sizeof(n));
}

int
kr_wire_writev(int fd, struct iovec *iov, int n)
{
	struct msghdr mh;
	ssize_t w;

	while (n > 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)(n > 1024 ? 1024 : n);
		w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

int
kr_wire_write(int fd, const struct kr_buf *b)
{
	struct iovec iov;

	iov.iov_base = b->data;
	iov.iov_len = b->len;
	return kr_wire_writev(fd, &iov, 1);
}

/* Reads exactly n bytes: 1, 0 at the end before any, -1 error. */
static int
read_all(int fd, void *p, size_t n)
{
	size_t off = 0;
	ssize_t r;

	while (off < n) {
		r = read(fd, (char *)p + off, n - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			if (off == 0)
				return 0;
			errno = EPROTO;
			return -1;
		}
		off += (size_t)r;
	}
	return 1;
}

int
kr_wire_read(int fd, struct kr_buf *b, uint32_t *type)
{
	uint32_t hdr[2];
	int r;

	kr_buf_reset(b);
	if ((r = read_all(fd, hdr, sizeof(hdr))) <= 0)
		return r;
	if (hdr[1] > KR_WIRE_MAX) {
		errno = EPROTO;
		return -1;
	}
	if (kr_buf_reserve(b, hdr[1]) < 0)
		abort(); /* only past a cap, and these buffers have none */
	if (hdr[1] > 0 && read_all(fd, b->data, hdr[1]) != 1) {
		if (errno == 0)
			errno = EPROTO;
		return -1;
	}
	b->len = hdr[1];
	b->data[b->len] = '\0';
	*type = hdr[0];
	return 1;
}

void
kr_wire_rd_init(struct kr_wire_rd *rd)
{
	rd->off = rd->len = 0;
}

/* Exactly n bytes into p, first from what rd holds; a short rest is read
 * into rd with whatever follows it. 1, 0 at the end before any byte (only
 * when at_start), -1 error. */
static int
rd_take(int fd, struct kr_wire_rd *rd, void *p, size_t n, bool at_start)
{
	size_t k = rd->len - rd->off < n ? rd->len - rd->off : n;
	ssize_t r;
	int got;

	memcpy(p, rd->buf + rd->off, k);
	rd->off += k;
	if (k == n)
		return 1;
	p = (char *)p + k;
	n -= k;
	at_start = at_start && k == 0;
	if (n >= sizeof(rd->buf)) {
		/* a large payload goes straight to its buffer */
		got = read_all(fd, p, n);
		if (got == 0 && !at_start) {
			errno = EPROTO;
			got = -1;
		}
		return got;
	}
	rd->off = rd->len = 0;
	while (rd->len < n) {
		r = read(fd, rd->buf + rd->len, sizeof(rd->buf) - rd->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0) {
			if (at_start && rd->len == 0)
				return 0;
			errno = EPROTO;
			return -1;
		}
		rd->len += (size_t)r;
	}
	memcpy(p, rd->buf, n);
	rd->off = n;
	return 1;
}

int
kr_wire_read_rd(int fd, struct kr_wire_rd *rd, struct kr_buf *b,
                uint32_t *type)
{
	uint32_t hdr[2];
	int r;

	kr_buf_reset(b);
	if ((r = rd_take(fd, rd, hdr, sizeof(hdr), true)) <= 0)
		return r;
	if (hdr[1] > KR_WIRE_MAX) {
		errno = EPROTO;
		return -1;
	}
	if (kr_buf_reserve(b, hdr[1]) < 0)
		abort(); /* only past a cap, and these buffers have none */
	if (hdr[1] > 0 && rd_take(fd, rd, b->data, hdr[1], false) != 1) {
		if (errno == 0)
			errno = EPROTO;
		return -1;
	}
	b->len = hdr[1];
	b->data[b->len] = '\0';
	*type = hdr[0];
	return 1;
}

void
kr_wire_in_init(struct kr_wire_in *in, const struct kr_buf *b)
{
	in->p = b->data;
	in->n = b->len;
	in->off = 0;
	in->bad = false;
}

static const char *
take(struct kr_wire_in *in, size_t n)
{
	const char *p;

	if (in->bad || in->p == NULL || n > in->n - in->off) {
		in->bad = true;
		return NULL;
	}
	p = in->p + in->off;
	in->off += n;
	return p;
}

uint32_t
kr_wire_get_u32(struct kr_wire_in *in)
{
	const char *p = take(in, 4);
	uint32_t v = 0;

	if (p != NULL)
		memcpy(&v, p, 4);
	return v;
}

uint64_t
kr_wire_get_u64(struct kr_wire_in *in)
{
	const char *p = take(in, 8);
	uint64_t v = 0;

	if (p != NULL)
		memcpy(&v, p, 8);
	return v;
}

const char *
kr_wire_get_str(struct kr_wire_in *in, size_t *len_out)
{
	uint32_t n = kr_wire_get_u32(in);
	const char *p;

	if (len_out != NULL)
		*len_out = 0;
	if (in->bad || n == 0)
		return NULL;
	p = take(in, n);
	if (p == NULL || p[n - 1] != '\0' || memchr(p, '\0', n - 1) != NULL) {
		in->bad = true;
		return NULL;
	}
	if (len_out != NULL)
		*len_out = n - 1;
	return p;
}

const char *
kr_wire_get_bytes(struct kr_wire_in *in, size_t len)
{
	return take(in, len);
}
