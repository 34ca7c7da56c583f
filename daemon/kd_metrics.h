/* kd_metrics.h — GET /metrics for kairand: the delivery counters of the
 * pool plus gauges read from the store (queue depth by state,
 * subscriptions by list and status, bounces and complaints by kind).
 *
 * The gauges are read on the admin listener's thread through a store
 * connection of their own, opened at the first scrape, and cached: a look
 * is made at most every KD_METRICS_EVERY seconds, or 50 times as long as
 * the last look took, whichever is longer (counting a million rows takes
 * tens of milliseconds). */
#ifndef KD_METRICS_H
#define KD_METRICS_H

#include "common.h"

struct kr_buf;
struct kr_delivery;
struct kd_metrics;

#define KD_METRICS_EVERY 5

/* database and password_file (may be NULL) are copied; delivery is
 * borrowed (may be NULL) and must outlive the scrapes. */
struct kd_metrics *kd_metrics_new(const char *database,
                                  const char *password_file,
                                  struct kr_delivery *delivery);
/* Closes the store connection and frees m; sets *m to NULL. Accepts NULL.
 * Call after the web module stopped calling kd_metrics_write. */
void kd_metrics_free(struct kd_metrics **m);
/* A kr_web_metrics_fn: appends the delivery counters and the gauges to
 * out. ctx is the struct kd_metrics. */
void kd_metrics_write(void *ctx, struct kr_buf *out);
/* Appends s as a Prometheus label value, escaping \, " and newline.
 * Returns 0, or -1 past out's cap. */
KR_NODISCARD int kd_metrics_label(struct kr_buf *out, const char *s);

#endif
