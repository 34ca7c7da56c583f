/* ctl_doctor.c — `kairanctl doctor [--list L] [--json]`: lib/doctor.c's
 * checks, one line each ("ok", "warn", "fail"), or a JSON array. Exit 0
 * when nothing fails, 1 when something does, 2 for bad usage or config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "ctl.h"
#include "doctor.h"
#include "err.h"
#include "webhook.h"

struct out {
	bool json;
	size_t n;
	int warns;
};

static void
doctor_usage(FILE *f)
{
	fprintf(f,
	        "usage: kairanctl doctor [--config FILE] [--list LIST] "
	        "[--json]\n\n"
	        "Checks what Gmail, Yahoo and Microsoft ask of bulk senders:\n"
	        "SPF for the envelope domain and doctor.egress, the DKIM keys,\n"
	        "DMARC and its alignment, forward-confirmed reverse DNS, MX\n"
	        "records, the relays' TLS, public_url and RFC 8058 one-click,\n"
	        "and the List-* headers of a dry-run copy. DNS goes to\n"
	        "dns.resolver (IP[:PORT]) when set.\n\n"
	        "exit status: 0 nothing failed (warnings allowed), 1 a check\n"
	        "failed, 2 bad usage or config\n");
}

static const char *const level_names[] = {"ok", "warn", "fail"};

static void
print_line(void *ctx, const char *list_id, const char *check,
           enum kr_doctor_level level, const char *msg)
{
	struct out *o = ctx;
	struct kr_buf b;

	if (level == KR_DOCTOR_WARN)
		o->warns++;
	if (!o->json) {
		printf("%-4s %s %s: %s\n", level_names[level], list_id, check,
		       msg);
		fflush(stdout);
		return;
	}
	kr_buf_init(&b, 0);
	if (kr_buf_puts(&b, o->n++ == 0 ? "[\n  {\"list\": " : ",\n  {\"list\": ") <
	        0 ||
	    kr_webhook_json_str(&b, list_id) < 0 ||
	    kr_buf_puts(&b, ", \"check\": ") < 0 ||
	    kr_webhook_json_str(&b, check) < 0 ||
	    kr_buf_puts(&b, ", \"status\": ") < 0 ||
	    kr_webhook_json_str(&b, level_names[level]) < 0 ||
	    kr_buf_puts(&b, ", \"message\": ") < 0 ||
	    kr_webhook_json_str(&b, msg) < 0 || kr_buf_puts(&b, "}") < 0) {
		kr_buf_fini(&b);
		return;
	}
	fputs(b.data, stdout);
	kr_buf_fini(&b);
}

static int
ctl_doctor(struct ctl *c, int argc, char **argv)
{
	struct out o = {0};
	struct kr_err err = {0};
	const char *list = NULL;
	char *errors = NULL;
	int i, n, r = CTL_USAGE;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--list") == 0 && i + 1 < argc) {
			list = argv[++i];
		} else if (strncmp(argv[i], "--list=", 7) == 0) {
			list = argv[i] + 7;
		} else if (strcmp(argv[i], "--json") == 0) {
			o.json = true;
		} else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			c->config_path = argv[++i];
		} else if (strcmp(argv[i], "-h") == 0 ||
		           strcmp(argv[i], "--help") == 0) {
			doctor_usage(stdout);
			r = CTL_OK;
			goto out;
		} else {
			ctl_error("doctor: unexpected argument '%s'", argv[i]);
			doctor_usage(stderr);
			goto out;
		}
	}
	/* with the relay passwords, as kairand: the relays are connected to */
	if (c->cfg == NULL &&
	    kr_config_load(c->config_path, &c->cfg, &errors) < 0) {
		fputs(errors != NULL ? errors : "config: unknown error\n",
		      stderr);
		goto out;
	}
	n = kr_doctor_run(c->cfg, list, print_line, &o, &err);
	if (o.json)
		fputs(o.n > 0 ? "\n]\n" : "[]\n", stdout);
	if (n < 0) {
		ctl_error("doctor: %s", err.msg);
		r = err.code == KR_ERR_NOTFOUND ? CTL_USAGE : CTL_FAIL;
		goto out;
	}
	if (n > 0)
		fprintf(stderr, "kairanctl: doctor: %d check%s failed, %d "
		        "warning%s\n", n, n == 1 ? "" : "s", o.warns,
		        o.warns == 1 ? "" : "s");
	r = n > 0 ? CTL_FAIL : CTL_OK;
out:
	free(errors);
	return r;
}

CTL_VERB(doctor, "doctor", ctl_doctor,
         "check SPF, DKIM, DMARC, reverse DNS, MX, relays' TLS, one-click");
