/* mhd_bare.c — the reference for bench/web.sh: libmicrohttpd answering one
 * fixed buffer (the same page, the same daemon flags and thread pool as
 * kairand's public listener) and nothing else, to show the library's
 * ceiling on this machine. It answers in the first call of the access
 * handler, as the simplest server does; libmicrohttpd then cannot know the
 * request body was read and ends every connection ("Connection: close"),
 * so each request pays for a TCP handshake. kairand answers in the second
 * call and keeps connections alive: that difference is most of the gap
 * this benchmark shows. Usage: mhd_bare PORT FILE */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <microhttpd.h>

static struct MHD_Response *page;

static enum MHD_Result
answer(void *cls, struct MHD_Connection *c, const char *url, const char *method,
       const char *version, const char *upload_data, size_t *upload_data_size,
       void **con_cls)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	return MHD_queue_response(c, MHD_HTTP_OK, page);
}

int
main(int argc, char **argv)
{
	static char buf[1 << 20];
	struct MHD_Daemon *d;
	size_t n;
	FILE *f;

	if (argc != 3 || (f = fopen(argv[2], "rb")) == NULL)
		return 2;
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	page = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(page, "Content-Type",
	                        "text/html; charset=utf-8");
	d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO,
	    (unsigned short)atoi(argv[1]), NULL, NULL, answer, NULL,
	    MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
	if (d == NULL)
		return 1;
	for (;;)
		pause();
}
