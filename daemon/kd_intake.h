/* kd_intake.h — kairand's intake thread: what an operator or a stranger
 * hands kairand as a file is parsed here, never on the main loop (a
 * hostile YAML or Markdown file could otherwise hold the watchdog and
 * SIGTERM): the outbox folder (inotify, its own store connection) and
 * the config file on SIGHUP.
 *
 * The main loop asks for a reload (kd_intake_reload()), polls
 * kd_intake_fd(), and takes the parsed result (kd_intake_result()); it
 * applies it itself, as before. kd_intake_watch() points the outbox at a
 * config and returns once the thread has let go of the previous one, so
 * the caller may retire it. */
#ifndef KD_INTAKE_H
#define KD_INTAKE_H

struct kr_config;
struct kr_keyring;
struct kr_dkim_set;
struct kd_intake;

/* A parsed config (on success cfg, ring and dkim are set; on failure
 * errors — config errors, one per line — or why is). The caller owns
 * it: kd_intake_result_fini() frees what is left in it. */
struct kd_reload {
	struct kr_config *cfg;
	struct kr_keyring *ring;
	struct kr_dkim_set *dkim;
	char *errors;
	char why[512];
};

struct kd_intake *kd_intake_new(void);
/* Readable when a reload result waits. */
int kd_intake_fd(const struct kd_intake *in);
/* Watches cfg->outbox (none when NULL) under cfg, which must stay valid
 * until the next call or kd_intake_free(); returns once the thread uses
 * it. Files there are taken at once. */
void kd_intake_watch(struct kd_intake *in, const struct kr_config *cfg);
/* Parses path (config, token keys, DKIM keys) on the thread. */
void kd_intake_reload(struct kd_intake *in, const char *path);
/* 1 and *out filled when a result was waiting, else 0. */
int kd_intake_result(struct kd_intake *in, struct kd_reload *out);
void kd_intake_result_fini(struct kd_reload *r);
/* Stops the thread (after the file it is on) and frees everything. */
void kd_intake_free(struct kd_intake **in);

#endif
