/* fuzz_web.c — libFuzzer harness for the web module's parsers of stranger
 * input: X-Forwarded-For (kr_web_client_ip), Accept (kr_web_accept), form
 * text cleaning (kr_web_clean_text), HTML escaping and the template
 * filler. Beyond memory errors it checks the contracts: the client address
 * is always a canonical IP, cleaned text has no control character and
 * fits, escaped text has no markup character.
 *   build/fuzz/fuzz/fuzz_web -max_total_time=60 tests/fuzz/web */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "web_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond)
{
	if (!cond)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct kr_web_nets *nets;
	char *s, ip[KR_WEB_IP_MAX], clean[256];
	unsigned char a[16];
	struct kr_buf b;
	struct kr_web_var v[2] = {{"x", NULL, false}, {"y", "<&>", true}};
	enum kr_web_fmt f;
	size_t i;

	if (nets == NULL) {
		char n1[] = "127.0.0.1", n2[] = "10.0.0.0/8", n3[] = "fd00::/8";
		char *list[] = {n1, n2, n3};

		if (kr_web_nets_parse(list, 3, &nets, NULL) != 0)
			abort();
	}
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	f = kr_web_accept(s);
	check(f == KR_WEB_FMT_TEXT || f == KR_WEB_FMT_HTML ||
	      f == KR_WEB_FMT_JSON);

	kr_web_client_ip(nets, "127.0.0.1", s, ip);
	check(strlen(ip) < sizeof(ip));
	check(inet_pton(AF_INET, ip, a) == 1 ||
	      inet_pton(AF_INET6, ip, a) == 1);
	kr_web_client_ip(nets, s, NULL, ip);
	check(strlen(ip) < sizeof(ip));

	kr_web_clean_text(s, clean, sizeof(clean));
	check(strlen(clean) < sizeof(clean));
	for (i = 0; clean[i] != '\0'; i++)
		check((unsigned char)clean[i] >= 0x20 &&
		      (unsigned char)clean[i] != 0x7f);

	kr_buf_init(&b, 0);
	check(kr_web_html_escape(&b, s) == 0);
	for (i = 0; i < b.len; i++)
		check(b.data[i] != '<' && b.data[i] != '>' &&
		      b.data[i] != '"' && b.data[i] != '\'');
	kr_buf_reset(&b);
	v[0].value = s;
	check(kr_web_render(&b, s, v, 2) == 0);
	kr_buf_reset(&b);
	check(kr_web_json_escape(&b, s) == 0);
	kr_buf_fini(&b);
	free(s);
	return 0;
}
