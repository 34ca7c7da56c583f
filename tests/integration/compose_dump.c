/* compose_dump — writes one confirmation mail (kr_compose_confirm) to
 * stdout, for test_mime_parse.py and test_spamassassin.py (built by them
 * against the build's libkairan.a).
 * usage: compose_dump KEYFILE ja|en [LIST_NAME] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "compose.h"
#include "config.h"
#include "err.h"
#include "store.h"
#include "token.h"

int
main(int argc, char **argv)
{
	char id[] = "sips-report", name[] = "SIPS セキュリティレポート";
	char from_name[] = "SIPS Security Report";
	char from_addr[] = "report@news.example.jp",
	     reply[] = "info@example.jp";
	char url[] = "https://news.example.jp", bounce[] = "bounces.example.jp";
	struct kr_cfg_list list = {0};
	struct kr_config cfg = {0};
	struct kr_keyring *ring = NULL;
	struct kr_err err = {0};
	struct kr_claim cl;
	struct kr_buf out;
	char env[256];
	int r = 1;

	if (argc < 3) {
		fprintf(stderr, "usage: compose_dump KEYFILE ja|en [LIST]\n");
		return 2;
	}
	list.id = id;
	list.name = argc > 3 ? argv[3] : name;
	list.from_name = from_name;
	list.from_addr = from_addr;
	list.reply_to = reply;
	list.language = argv[2];
	cfg.public_url = url;
	cfg.lists = &list;
	cfg.n_lists = 1;
	cfg.delivery.bounce_domain = bounce;
	memset(&cl, 0, sizeof(cl));
	cl.kind = KR_DELIVERY_CONFIRM;
	cl.subscriber_id = 5;
	snprintf(cl.list_id, sizeof(cl.list_id), "%s", id);
	snprintf(cl.email, sizeof(cl.email), "new.reader@example.org");
	kr_buf_init(&out, 0);
	if (kr_token_keyring_load(argv[1], 1, &ring, &err) < 0 ||
	    kr_compose_confirm(&cfg, &list, &cl, ring, 1764115200, &out, env,
	                       &err) < 0) {
		fprintf(stderr, "compose_dump: %s\n", err.msg);
		goto out;
	}
	fwrite(out.data, 1, out.len, stdout);
	fprintf(stderr, "envelope: %s\n", env);
	r = 0;
out:
	kr_buf_fini(&out);
	kr_token_keyring_free(&ring);
	return r;
}
