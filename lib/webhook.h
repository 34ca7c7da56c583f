/* webhook.h — the operator's notification hook (config `webhook:`): JSON
 * bodies POSTed with libcurl from a thread of its own, so a slow or dead
 * receiver never holds up the daemon. A POST that fails (no connection,
 * timeout, a status other than 2xx) is retried after 1, 2, 4, 8 and 16
 * seconds, then dropped with a warning. */
#ifndef KR_WEBHOOK_H
#define KR_WEBHOOK_H

#include <stddef.h>

#include "common.h"

struct kr_buf;
struct kr_err;
struct kr_webhook;

/* Tries per event, and the most events waiting (more are dropped, with a
 * warning: the receiver is down and a backlog helps nobody). */
#define KR_WEBHOOK_TRIES 6
#define KR_WEBHOOK_QUEUE 256

/* Starts the sender for url (copied). */
KR_NODISCARD int kr_webhook_start(const char *url, struct kr_webhook **w_out,
    struct kr_err *err);
/* Points the sender at another URL (reload); events waiting go there. */
void kr_webhook_set_url(struct kr_webhook *w, const char *url);
/* Queues json (copied) for POST. Never blocks on the network. */
void kr_webhook_post(struct kr_webhook *w, const char *json);
/* Stops the sender: a POST in flight ends within its 10 s timeout, events
 * still waiting are dropped (and counted in the log). Accepts NULL. */
void kr_webhook_stop(struct kr_webhook **w);
/* Seconds to wait before try number tries (1-based: 1 → 0, 2 → 1, 3 → 2…),
 * or -1 when no try is left. */
int kr_webhook_backoff(int tries);
/* Appends s as a JSON string (quoted, escaped; invalid UTF-8 bytes become
 * U+FFFD). Returns 0, or -1 past b's cap. */
KR_NODISCARD int kr_webhook_json_str(struct kr_buf *b, const char *s);

#endif
