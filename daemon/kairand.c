/* kairand — the kairan daemon: wiring, the main loop, signals, sd_notify.
 * No SQL, no MIME, no HTTP parsing here: those live in lib/ and
 * subscribers/.
 *
 * Threads: the main thread runs the loop below (signals through a
 * signalfd, the watchdog and STATUS= timer, checkpoints, applying a
 * reload); the intake thread (kd_intake.c) reads and parses what comes
 * as files — the outbox and, on SIGHUP, the config — so that no file
 * stalls this loop; libmicrohttpd runs its own threads for the two
 * listeners; the delivery pool runs cfg->delivery.workers threads.
 *
 * Config lifetime: a reload builds a new struct kr_config and swaps it in.
 * The web module lets go of the old one when kr_web_set_config returns, but
 * a delivery batch in flight may still read it, so a retired config (and
 * its keyring and DKIM signers) is freed at a later reload, once no
 * worker is on its generation any more, or at exit. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>

#include "buf.h"
#include "config.h"
#include "delivery.h"
#include "dkim.h"
#include "err.h"
#include "kd_events.h"
#include "kd_metrics.h"
#include "log.h"
#include "kd_intake.h"
#include "report.h"
#include "store.h"
#include "token.h"
#include "version.h"
#include "web.h"
#include "webhook.h"
#include "xmem.h"

#define DEFAULT_CONFIG "/etc/kairan/kairan.yaml"
/* STATUS= is refreshed this often (ms) when it changed. */
#define STATUS_EVERY 1000
/* Report life-cycle events for the webhook are looked for this often. */
#define EVENTS_EVERY 2000
/* The store's upkeep (SQLite: the WAL copied back into the database)
 * runs this often (ms), here, rather than inside a delivery worker's
 * commit (kr_store_upkeep_from_loop()). */
#define CKPT_EVERY 200

/* Exit codes (kairand(8)). */
enum { KD_OK = 0, KD_FAIL = 1, KD_USAGE = 2 };

struct retired {
	struct kr_config *cfg;
	struct kr_keyring *ring;
	struct kr_dkim_set *dkim;
	unsigned gen;
};

struct kd {
	const char *config_path;
	struct kr_config *cfg; /* in force */
	struct kr_keyring *ring;
	struct kr_dkim_set *dkim; /* cfg's DKIM signers (maybe empty) */
	unsigned gen;          /* delivery's generation of cfg and ring */
	struct retired *old;   /* replaced, maybe still read (see top) */
	size_t n_old;

	struct kr_store *store; /* the main thread's: checkpoints, STATUS */
	struct kr_web *web;
	struct kd_intake *intake; /* outbox and reloads, off this loop */
	bool reloading, reload_again;
	struct kr_delivery *delivery;
	struct kr_webhook *hook;     /* NULL: no webhook configured */
	struct kd_events *events;    /* report life-cycle, for the hook */
	struct kd_metrics *metrics;  /* GET /metrics (kd_metrics.c) */
	int sigfd;

	uint64_t watchdog_usec; /* 0: no watchdog */
	char status[256];
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: kairand [--config FILE] [--check]\n\n"
	    "The kairan daemon: serves the sign-up, confirm and unsubscribe\n"
	    "pages, watches the outbox folder and delivers queued mail.\n\n"
	    "  -c, --config FILE  the YAML config ($KAIRAN_CONFIG, or "
	    DEFAULT_CONFIG ")\n"
	    "  --check            validate the config and exit\n"
	    "  -V, --version      print \"kairand VERSION\" and exit\n"
	    "  -h, --help         this text\n\n"
	    "Signals: SIGHUP reloads the config (a bad file is logged and the\n"
	    "running config stays); SIGTERM and SIGINT finish the SMTP\n"
	    "transactions in flight and exit.\n"
	    "Exit status: 0 ok, 1 runtime failure, 2 usage or config error.\n");
}

static uint64_t
now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Logs each line of a multi-line error text. */
static void
log_lines(enum kr_log_level level, const char *prefix, const char *text)
{
	const char *p = text, *nl;

	while (p != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		kr_log_msg(level, 0, "%s%.*s", prefix,
		    (int)(nl ? (size_t)(nl - p) : strlen(p)), p);
		p = nl ? nl + 1 : NULL;
	}
}

/* Retires the config and keyring in force, and frees the retired ones no
 * delivery worker can be reading any more. */
static void
retire(struct kd *kd)
{
	unsigned in_use;
	size_t i, k = 0;

	kd->old = kr_xrealloc(kd->old, (kd->n_old + 1) * sizeof(*kd->old));
	kd->old[kd->n_old].cfg = kd->cfg;
	kd->old[kd->n_old].ring = kd->ring;
	kd->old[kd->n_old].dkim = kd->dkim;
	kd->old[kd->n_old].gen = kd->gen;
	kd->n_old++;
	in_use = kd->delivery ? kr_delivery_gen_in_use(kd->delivery) : 0;
	for (i = 0; i < kd->n_old; i++) {
		if (kd->old[i].gen < in_use) {
			kr_config_free(&kd->old[i].cfg);
			kr_token_keyring_free(&kd->old[i].ring);
			kr_dkim_set_free(&kd->old[i].dkim);
		} else {
			kd->old[k++] = kd->old[i];
		}
	}
	if (k < kd->n_old)
		kr_log_debug("reload freed=%zu retired=%zu", kd->n_old - k, k);
	kd->n_old = k;
}

static void
apply_log_level(const struct kr_config *cfg)
{
	kr_log_set_level((enum kr_log_level)cfg->log_level);
}

/* ---- outbox: reports dropped in the folder ---- */

/* Reports dropped in the folder are read, parsed and queued on the intake
 * thread (kd_intake.c), which now works under kd->cfg. Reopened at every
 * reload: a folder that was removed and made again is watched again, and
 * files that missed the watch are picked up by its scan. */
static void
outbox_open(struct kd *kd)
{
	if (kd->intake != NULL)
		kd_intake_watch(kd->intake, kd->cfg);
}

/* ---- /healthz: what keeps delivery from working ---- */

static int
health(void *ctx, struct kr_buf *out)
{
	struct kd *kd = ctx;
	int r;

	if (kd->delivery == NULL)
		return 0;
	r = kr_delivery_health(kd->delivery, out);
	return r == 0 ? 0 : 1;
}

/* ---- systemd ---- */

static void
notify(const char *fmt, ...) KR_PRINTF(1, 2);

static void
notify(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	(void)sd_notify(0, buf);
}

static void
update_status(struct kd *kd)
{
	struct kr_delivery_counts c;
	struct kr_err err = {0};
	char s[256];
	int64_t rid, total, done;

	rid = kd->delivery ? kr_delivery_current_report(kd->delivery) : 0;
	if (rid <= 0) {
		snprintf(s, sizeof(s), "idle");
	} else {
		memset(&c, 0, sizeof(c));
		if (kr_store_delivery_counts(kd->store, rid, &c, &err) < 0)
			return;
		total = c.queued + c.sent + c.deferred + c.failed +
		    c.uncertain;
		done = c.sent + c.failed + c.uncertain;
		if (c.queued + c.deferred > 0)
			snprintf(s, sizeof(s),
			    "sending report %lld: %lld/%lld (%lld failed, "
			    "%lld deferred)",
			    (long long)rid, (long long)done, (long long)total,
			    (long long)c.failed, (long long)c.deferred);
		else
			snprintf(s, sizeof(s),
			    "idle; report %lld done: %lld sent, %lld failed",
			    (long long)rid, (long long)c.sent,
			    (long long)c.failed);
	}
	if (strcmp(s, kd->status) != 0) {
		snprintf(kd->status, sizeof(kd->status), "%s", s);
		notify("STATUS=%s", s);
	}
}

/* ---- the webhook ---- */

/* Starts, repoints or stops the webhook sender to match kd->cfg. */
static void
webhook_apply(struct kd *kd)
{
	struct kr_err err = {0};

	if (kd->cfg->webhook == NULL) {
		kr_webhook_stop(&kd->hook);
		return;
	}
	if (kd->hook != NULL) {
		kr_webhook_set_url(kd->hook, kd->cfg->webhook);
		return;
	}
	if (kr_webhook_start(kd->cfg->webhook, &kd->hook, &err) < 0)
		kr_log_err("%s", err.msg);
}

/* ---- the same DKIM keys on every host ---- */

/* kr_dkim_set_check for cfg's signers as this host; hint (1024 bytes)
 * gets both fingerprints and the way out when a key is not the one the
 * database knows, "" otherwise. */
static int
dkim_check(struct kd *kd, const struct kr_config *cfg,
    const struct kr_dkim_set *set, char hint[1024], struct kr_err *err)
{
	char host[256];

	return kr_dkim_set_check(set, cfg, kd->store,
	    kr_config_host_id(cfg, host, sizeof(host)), (int64_t)time(NULL),
	    hint, 1024, err);
}

/* ---- reload ---- */

/* SIGHUP: the file is parsed on the intake thread (a hostile or huge
 * file cannot stall the watchdog or SIGTERM here); reload_done() applies
 * the result. A SIGHUP meanwhile runs once more afterwards. */
static void
reload(struct kd *kd)
{
	if (kd->reloading) {
		kd->reload_again = true;
		return;
	}
	notify("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
	    (unsigned long long)now_usec());
	kr_log_info("reload config=%s", kd->config_path);
	kd->reloading = true;
	kd_intake_reload(kd->intake, kd->config_path);
}

static void
reload_done(struct kd *kd, struct kd_reload *r)
{
	struct kr_err err = {0};
	char hint[1024] = "";
	unsigned next_gen;

	if (r->errors != NULL) {
		log_lines(KR_LOG_ERR, "reload: ", r->errors);
		kr_log_err("reload failed: keeping the running config");
		goto out;
	}
	/* Keys added by `kairanctl keys rotate` sign from now on; DKIM keys
	 * (a new selector, or a file copied after `kairanctl dkim
	 * replace`) must be the ones the database knows. */
	if (r->why[0] != '\0' ||
	    kr_token_keyring_check(r->ring, r->cfg->key_file, kd->store,
		(int64_t)time(NULL), &err) < 0 ||
	    dkim_check(kd, r->cfg, r->dkim, hint, &err) < 0) {
		kr_log_err("reload failed: %s: keeping the running config",
		    r->why[0] != '\0' ? r->why : err.msg);
		if (r->why[0] == '\0' && hint[0] != '\0')
			kr_log_err("%s", hint);
		goto out;
	}
	if (kd->web != NULL && kr_web_set_config(kd->web, r->cfg, r->ring,
				   &err) < 0) {
		kr_log_err("reload failed: web: %s: keeping the running "
			   "config",
		    err.msg);
		goto out;
	}
	if (strcmp(r->cfg->database, kd->cfg->database) != 0)
		kr_log_warn("reload: database change takes effect at restart");
	next_gen = kd->delivery != NULL ?
	    kr_delivery_set_config_dkim(kd->delivery, r->cfg, r->ring,
		r->dkim) :
	    kd->gen + 1;
	/* The intake thread lets go of the config in force before it is
	 * retired. */
	kd_intake_watch(kd->intake, r->cfg);
	retire(kd);
	kd->cfg = r->cfg;
	kd->ring = r->ring;
	kd->dkim = r->dkim;
	kd->gen = next_gen;
	r->cfg = NULL;
	r->ring = NULL;
	r->dkim = NULL;
	apply_log_level(kd->cfg);
	webhook_apply(kd);
	kr_log_info("reload done lists=%zu relays=%zu", kd->cfg->n_lists,
	    kd->cfg->n_relays);
	kr_delivery_kick();
out:
	kd_intake_result_fini(r);
	kd->reloading = false;
	kd->status[0] = '\0';
	notify("READY=1");
	update_status(kd);
	if (kd->reload_again) {
		kd->reload_again = false;
		reload(kd);
	}
}

/* ---- start and stop ---- */

static int
listen_fds(struct kr_web_listen *l)
{
	char **names = NULL;
	int n, i;

	l->http_fd = -1;
	l->admin_fd = -1;
	n = sd_listen_fds_with_names(1, &names);
	if (n < 0) {
		kr_log_err("socket activation: %s", strerror(-n));
		return -1;
	}
	for (i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names ? names[i] : "";

		if (strcmp(name, "admin") == 0 && l->admin_fd < 0)
			l->admin_fd = fd;
		else if (l->http_fd < 0)
			l->http_fd = fd;
		else
			kr_log_warn("socket activation: extra fd %d (%s) "
				    "ignored",
			    fd, name);
	}
	if (names != NULL) {
		for (i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	if (n > 0)
		kr_log_info("socket activation fds=%d http_fd=%d admin_fd=%d",
		    n, l->http_fd, l->admin_fd);
	return 0;
}

static int
setup_signals(struct kd *kd)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	/* Blocked before any thread starts, so every thread inherits the
	 * mask and the signals only reach the signalfd. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	kd->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return kd->sigfd < 0 ? -1 : 0;
}

static int
start(struct kd *kd)
{
	struct kr_web_listen l;
	struct kr_err err = {0};
	char hint[1024] = "";

	/* Opening migrates the schema, once, before any other connection.
	 * Every connection of kairand leaves checkpoints to loop(). */
	kr_store_upkeep_from_loop();
	if (kr_store_open(kd->cfg->database, kd->cfg->database_password_file,
	                  &kd->store, &err) < 0 ||
	    kr_store_lock_daemon(kd->store, &err) < 0) {
		kr_log_err("%s", err.msg);
		return -1;
	}
	/* Created only for an empty database; checked against the keys
	 * the database has seen. */
	if (kr_token_keyring_open(kd->cfg->key_file, kd->store, &kd->ring,
		&err) < 0) {
		kr_log_err("%s", err.msg);
		return -1;
	}
	/* Every host of one database signs with the same DKIM keys: the
	 * first one to start records them. */
	if (dkim_check(kd, kd->cfg, kd->dkim, hint, &err) < 0) {
		kr_log_err("%s", err.msg);
		if (hint[0] != '\0')
			kr_log_err("%s", hint);
		return -1;
	}
	/* Delivery (and its kairan-smtp child, which thus never sees a
	 * listening socket) and the metrics exist before the first request
	 * can arrive: a scrape or a health check answered during start-up
	 * would otherwise lack the store's gauges and the delivery side. */
	if (kr_delivery_start_dkim(kd->cfg, kd->ring, kd->dkim, &kd->delivery,
		&err) < 0) {
		kr_log_err("%s", err.msg);
		return -1;
	}
	kd->metrics = kd_metrics_new(kd->cfg->database,
	                             kd->cfg->database_password_file,
	                             kd->delivery);
	if (listen_fds(&l) < 0)
		return -1;
	if (kr_web_start(kd->cfg, kd->ring, &l, &kd->web, &err) < 0) {
		kr_log_err("web: %s", err.msg);
		return -1;
	}
	/* The callbacks run on MHD's threads; until both are set the admin
	 * listener answers 503 (kr_web_set_health()). */
	kr_web_set_metrics(kd->web, kd_metrics_write, kd->metrics);
	kr_web_set_health(kd->web, health, kd);
	kd->events = kd_events_new();
	webhook_apply(kd);
	kr_log_info("kairand ready pid=%ld http=%s admin=%s",
	    (long)getpid(),
	    l.http_fd >= 0 ? "socket-activated" : kd->cfg->http_listen,
	    l.admin_fd >= 0 ? "socket-activated" : kd->cfg->admin_listen);
	if ((kd->intake = kd_intake_new()) == NULL)
		return -1;
	notify("READY=1\nSTATUS=ready\nMAINPID=%ld", (long)getpid());
	outbox_open(kd);
	return 0;
}

static void
shutdown_all(struct kd *kd)
{
	size_t i;

	/* The outbox stops first (after the file it is on), then new
	 * requests, then delivery drains. */
	kd_intake_free(&kd->intake);
	kr_web_stop(&kd->web);
	kd_metrics_free(&kd->metrics);
	kr_delivery_stop(&kd->delivery);
	kr_webhook_stop(&kd->hook);
	kd_events_free(&kd->events);
	kr_store_close(&kd->store);
	for (i = 0; i < kd->n_old; i++) {
		kr_config_free(&kd->old[i].cfg);
		kr_token_keyring_free(&kd->old[i].ring);
		kr_dkim_set_free(&kd->old[i].dkim);
	}
	free(kd->old);
	kr_token_keyring_free(&kd->ring);
	kr_dkim_set_free(&kd->dkim);
	kr_config_free(&kd->cfg);
	if (kd->sigfd >= 0)
		close(kd->sigfd);
}

/* Returns 1 to go on, 0 to stop. */
static int
handle_signals(struct kd *kd)
{
	struct signalfd_siginfo si;
	int go = 1;

	while (read(kd->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			reload(kd);
			break;
		case SIGTERM:
		case SIGINT:
			kr_log_info("signal %s: stopping",
			    si.ssi_signo == SIGTERM ? "TERM" : "INT");
			go = 0;
			break;
		default:
			break;
		}
	}
	return go;
}

/* The wait before the next look: every_ms, or 50 times what the look
 * that started at since took, whichever is longer (µs). */
static uint64_t
later(unsigned every_ms, uint64_t since)
{
	uint64_t took = now_usec() - since, wait = every_ms * 1000u;

	return took * 50 > wait ? took * 50 : wait;
}

/* Milliseconds from now until deadline (µs), 0 when passed. */
static uint64_t
ms_until(uint64_t deadline, uint64_t now)
{
	return deadline > now ? (deadline - now) / 1000u : 0;
}

static void
loop(struct kd *kd)
{
	struct pollfd pfd[2];
	uint64_t next_wd = 0, next_status = 0, next_events = 0, next_ckpt = 0;
	uint64_t now, wait_ms;
	struct kr_err err = {0};
	bool ckpt_failing = false;
	nfds_t n;

	for (;;) {
		now = now_usec();
		if (kd->watchdog_usec && now >= next_wd) {
			notify("WATCHDOG=1");
			next_wd = now + kd->watchdog_usec / 2;
		}
		/* Counting a report's rows costs ~80 ms at 1,000,000: each
		 * look waits at least 50 times as long as the last one took,
		 * so the main thread spends at most 2 % of its time on it. */
		if (now >= next_status) {
			update_status(kd);
			next_status = now + later(STATUS_EVERY, now);
		}
		if (kd->hook != NULL && now >= next_events) {
			now = now_usec();
			kd_events_tick(kd->events, kd->cfg, kd->store,
			    kd->hook);
			next_events = now + later(EVENTS_EVERY, now);
		}
		if (now_usec() >= next_ckpt) {
			now = now_usec();
			if (kr_store_upkeep(kd->store, &err) < 0) {
				if (!ckpt_failing)
					kr_log_err("%s", err.msg);
				ckpt_failing = true;
			} else {
				ckpt_failing = false;
			}
			next_ckpt = now + CKPT_EVERY * 1000u;
		}
		now = now_usec();
		wait_ms = ms_until(next_status, now);
		if (ms_until(next_ckpt, now) < wait_ms)
			wait_ms = ms_until(next_ckpt, now);
		if (kd->hook != NULL && ms_until(next_events, now) < wait_ms)
			wait_ms = ms_until(next_events, now);
		if (kd->watchdog_usec && ms_until(next_wd, now) < wait_ms)
			wait_ms = ms_until(next_wd, now);
		pfd[0].fd = kd->sigfd;
		pfd[0].events = POLLIN;
		pfd[1].fd = kd_intake_fd(kd->intake);
		pfd[1].events = POLLIN;
		n = 2;
		if (poll(pfd, n, (int)wait_ms + 1) < 0) {
			if (errno == EINTR)
				continue;
			kr_log_err_errno("poll");
			break;
		}
		if (pfd[0].revents & POLLIN) {
			if (!handle_signals(kd))
				break;
			continue;
		}
		if (pfd[1].revents & POLLIN) {
			struct kd_reload r;

			if (kd_intake_result(kd->intake, &r))
				reload_done(kd, &r);
		}
	}
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'C'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {NULL, 0, NULL, 0},
	};
	struct kd kd;
	struct kr_err err = {0};
	char *errors = NULL;
	const char *env;
	bool check = false;
	int ch, rc = KD_FAIL;
	uint64_t wd = 0;

	memset(&kd, 0, sizeof(kd));
	kd.sigfd = -1;
	kd.config_path = (env = getenv("KAIRAN_CONFIG")) && *env ?
	    env : DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			kd.config_path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'h':
			usage(stdout);
			return KD_OK;
		case 'V':
			printf("kairand %s\n", kr_version());
			return KD_OK;
		default:
			usage(stderr);
			return KD_USAGE;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "kairand: unexpected argument '%s'\n",
		    argv[optind]);
		usage(stderr);
		return KD_USAGE;
	}
	if (kr_config_load(kd.config_path, &kd.cfg, &errors) < 0) {
		fputs(errors ? errors : "config: unknown error\n", stderr);
		if (errors && errors[0] && errors[strlen(errors) - 1] != '\n')
			fputc('\n', stderr);
		free(errors);
		return KD_USAGE;
	}
	kd.gen = 1;
	/* The keys are part of the config: one that cannot be loaded stops
	 * the start (and --check) like a config error. */
	if (kr_dkim_set_new(kd.cfg, &kd.dkim, &err) < 0) {
		fprintf(stderr, "%s: %s\n", kd.config_path, err.msg);
		rc = KD_USAGE;
		goto out;
	}
	if (check && kr_store_probe(kd.cfg->database,
	                            kd.cfg->database_password_file, &err) < 0) {
		fprintf(stderr, "%s: %s\n", kd.config_path, err.msg);
		rc = KD_USAGE;
		goto out;
	}
	if (check) {
		printf("%s: ok\n", kd.config_path);
		rc = KD_OK;
		goto out;
	}
	apply_log_level(kd.cfg);
	if (sodium_init() < 0) {
		kr_log_err("libsodium failed to initialise");
		goto out;
	}
	if (setup_signals(&kd) < 0) {
		kr_log_err_errno("signals");
		goto out;
	}
	if (sd_watchdog_enabled(0, &wd) > 0)
		kd.watchdog_usec = wd;
	kr_log_info("kairand starting config=%s", kd.config_path);
	if (start(&kd) < 0) {
		notify("STATUS=failed to start; see the log");
		goto out;
	}
	loop(&kd);
	notify("STOPPING=1\nSTATUS=stopping: finishing deliveries in "
	       "flight");
	rc = KD_OK;
out:
	shutdown_all(&kd);
	if (rc == KD_OK && !check)
		kr_log_info("kairand stopped");
	return rc;
}
