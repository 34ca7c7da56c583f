/* kd_intake.c — the intake thread of kairand; see kd_intake.h.
 *
 * One thread, woken by an eventfd (requests from the main loop) and by
 * the outbox's inotify descriptor. Requests and the reload result are
 * guarded by mu; the outbox, its store connection and the config it
 * works under belong to the thread alone. */
#include "kd_intake.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "delivery.h"
#include "dkim.h"
#include "err.h"
#include "log.h"
#include "outbox.h"
#include "report.h"
#include "store.h"
#include "token.h"
#include "xmem.h"

/* How long SIGTERM waits for the file being read. */
#define STOP_WAIT_SECONDS 5

struct kd_intake {
	pthread_t th;
	int wake_fd; /* main -> thread */
	int done_fd; /* thread -> main: a reload result waits */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	/* requests, under mu */
	bool stop;
	char *reload_path;
	const struct kr_config *watch_cfg;
	unsigned watch_req, watch_done;
	/* the result, under mu */
	bool have_result;
	struct kd_reload result;
	/* the thread's own */
	const struct kr_config *cfg;
	struct kr_store *store;
	struct kr_outbox *outbox;
};

static void
wake(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static void
drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

static int
queue(void *ctx, const char *name, const char *data, size_t len,
    struct kr_err *err)
{
	struct kd_intake *in = ctx;
	int64_t id = 0, n = 0;

	if (kr_report_queue(in->store, in->cfg, name, data, len, false, &id,
		&n, err) < 0)
		return -1;
	kr_log_info("report queued id=%lld recipients=%lld source=outbox "
		    "file=%s",
	    (long long)id, (long long)n, name);
	kr_delivery_kick();
	return 0;
}

/* Closes the outbox and its store, then opens them for cfg. */
static void
watch(struct kd_intake *in, const struct kr_config *cfg)
{
	struct kr_err err = {0};

	kr_outbox_close(&in->outbox);
	kr_store_close(&in->store);
	in->cfg = cfg;
	if (cfg == NULL || cfg->outbox == NULL)
		return;
	if (kr_store_open(cfg->database, cfg->database_password_file,
	                  &in->store, &err) < 0) {
		kr_log_err("outbox: %s", err.msg);
		return;
	}
	if (kr_outbox_open(cfg->outbox, queue, in, &in->outbox, &err) < 0) {
		/* Not fatal: the web form and delivery still work, and a
		 * reload after fixing the folder retries. */
		kr_log_err("%s", err.msg);
		kr_store_close(&in->store);
		return;
	}
	kr_log_info("outbox watching dir=%s", cfg->outbox);
}

static void
reload(struct kd_intake *in, const char *path)
{
	struct kd_reload r;
	struct kr_err err = {0};

	memset(&r, 0, sizeof(r));
	if (kr_config_load(path, &r.cfg, &r.errors) < 0) {
		if (r.errors == NULL)
			r.errors = kr_xstrdup("config: unknown error");
	} else if (kr_token_keyring_load(r.cfg->key_file, 0, &r.ring, &err) <
	        0 ||
	    kr_dkim_set_new(r.cfg, &r.dkim, &err) < 0) {
		/* A token key or a DKIM key that cannot be loaded is a config
		 * error: the old config, its keys and its signers stay. */
		snprintf(r.why, sizeof(r.why), "%s", err.msg);
	}
	pthread_mutex_lock(&in->mu);
	kd_intake_result_fini(&in->result); /* an older one nobody took */
	in->result = r;
	in->have_result = true;
	pthread_mutex_unlock(&in->mu);
	wake(in->done_fd);
}

static void *
run(void *arg)
{
	struct kd_intake *in = arg;
	struct pollfd pfd[2];
	struct timespec now, last = {0, 0};
	char *path;
	const struct kr_config *cfg;
	unsigned req;
	bool stop, rewatch;
	nfds_t n;

	for (;;) {
		pfd[0].fd = in->wake_fd;
		pfd[0].events = POLLIN;
		n = 1;
		if (in->outbox != NULL) {
			pfd[1].fd = kr_outbox_fd(in->outbox);
			pfd[1].events = POLLIN;
			n = 2;
		}
		if (poll(pfd, n, 1000) < 0 && errno != EINTR) {
			kr_log_err_errno("intake: poll");
			break;
		}
		if (pfd[0].revents & POLLIN)
			drain(in->wake_fd);
		pthread_mutex_lock(&in->mu);
		stop = in->stop;
		path = in->reload_path;
		in->reload_path = NULL;
		rewatch = in->watch_req != in->watch_done;
		req = in->watch_req;
		cfg = in->watch_cfg;
		pthread_mutex_unlock(&in->mu);
		if (rewatch) {
			watch(in, cfg);
			pthread_mutex_lock(&in->mu);
			in->watch_done = req;
			pthread_cond_broadcast(&in->cond);
			pthread_mutex_unlock(&in->mu);
			/* files that missed the watch */
			if (in->outbox != NULL)
				kr_outbox_scan(in->outbox);
		}
		if (stop) {
			free(path);
			break;
		}
		if (path != NULL) {
			reload(in, path);
			free(path);
		}
		if (in->outbox == NULL)
			continue;
		if (n == 2 && (pfd[1].revents & POLLIN))
			(void)kr_outbox_process(in->outbox);
		/* a report still being written is looked at again */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec != last.tv_sec) {
			(void)kr_outbox_retry(in->outbox);
			last = now;
		}
	}
	kr_outbox_close(&in->outbox);
	kr_store_close(&in->store);
	return NULL;
}

struct kd_intake *
kd_intake_new(void)
{
	struct kd_intake *in = kr_xcalloc(1, sizeof(*in));

	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->cond, NULL);
	in->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	in->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (in->wake_fd < 0 || in->done_fd < 0 ||
	    pthread_create(&in->th, NULL, run, in) != 0) {
		kr_log_err_errno("intake thread");
		if (in->wake_fd >= 0)
			close(in->wake_fd);
		if (in->done_fd >= 0)
			close(in->done_fd);
		pthread_mutex_destroy(&in->mu);
		pthread_cond_destroy(&in->cond);
		free(in);
		return NULL;
	}
	return in;
}

int
kd_intake_fd(const struct kd_intake *in)
{
	return in->done_fd;
}

void
kd_intake_watch(struct kd_intake *in, const struct kr_config *cfg)
{
	unsigned req;

	pthread_mutex_lock(&in->mu);
	in->watch_cfg = cfg;
	req = ++in->watch_req;
	pthread_mutex_unlock(&in->mu);
	wake(in->wake_fd);
	pthread_mutex_lock(&in->mu);
	while (in->watch_done != req)
		pthread_cond_wait(&in->cond, &in->mu);
	pthread_mutex_unlock(&in->mu);
}

void
kd_intake_reload(struct kd_intake *in, const char *path)
{
	pthread_mutex_lock(&in->mu);
	free(in->reload_path);
	in->reload_path = kr_xstrdup(path);
	pthread_mutex_unlock(&in->mu);
	wake(in->wake_fd);
}

int
kd_intake_result(struct kd_intake *in, struct kd_reload *out)
{
	int r = 0;

	drain(in->done_fd);
	pthread_mutex_lock(&in->mu);
	if (in->have_result) {
		*out = in->result;
		memset(&in->result, 0, sizeof(in->result));
		in->have_result = false;
		r = 1;
	}
	pthread_mutex_unlock(&in->mu);
	return r;
}

void
kd_intake_result_fini(struct kd_reload *r)
{
	kr_config_free(&r->cfg);
	kr_token_keyring_free(&r->ring);
	kr_dkim_set_free(&r->dkim);
	free(r->errors);
	r->errors = NULL;
	r->why[0] = '\0';
}

void
kd_intake_free(struct kd_intake **inp)
{
	struct kd_intake *in;
	struct timespec until;

	if (inp == NULL || (in = *inp) == NULL)
		return;
	*inp = NULL;
	pthread_mutex_lock(&in->mu);
	in->stop = true;
	pthread_mutex_unlock(&in->mu);
	wake(in->wake_fd);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT_SECONDS;
	if (pthread_timedjoin_np(in->th, NULL, &until) != 0) {
		/* Still on one file (it is read again at the next start):
		 * kairand stops without it; the thread ends with the
		 * process. */
		kr_log_warn("outbox: still reading a file after %d s; "
			    "stopping without waiting for it",
		    STOP_WAIT_SECONDS);
		return;
	}
	kd_intake_result_fini(&in->result);
	free(in->reload_path);
	close(in->wake_fd);
	close(in->done_fd);
	pthread_mutex_destroy(&in->mu);
	pthread_cond_destroy(&in->cond);
	free(in);
}
