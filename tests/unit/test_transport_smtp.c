/* test_transport_smtp.c — the SMTP transport against a real SMTP server:
 * tests/integration/smtp_server.py (aiosmtpd), started here on a free
 * loopback port with a JSON rules file, and stopped by its pid. TLS
 * material (a test CA, a server certificate for "localhost", a second CA
 * that signed nothing) is made with the openssl command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "err.h"
#include "transport_smtp.h"
#include "xmem.h"

static char base[64];   /* temporary folder of this run */
/* The second run of every test: each relay offers PIPELINING and answers
 * a burst of commands in one write (smtp_server.py --cork). */
static bool pipelining_relays;
static char *server_py; /* tests/integration/smtp_server.py */

struct server {
	pid_t pid;
	int port;
	char *dir;
	char *rules;
};

static int
free_port(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int
port_open(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), r;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return r == 0;
}

static void
write_file(const char *path, const char *text)
{
	char *tmp = kr_xasprintf("%s.tmp", path);
	FILE *fp = fopen(tmp, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(rename(tmp, path), 0);
	free(tmp);
}

/* Waits (15 s at most) until the server s started listens. */
static void
server_wait(const struct server *s)
{
	int i;

	for (i = 0; i < 300 && !port_open(s->port); i++) {
		struct timespec ts = {0, 50 * 1000 * 1000};

		assert_int_equal(waitpid(s->pid, NULL, WNOHANG), 0);
		nanosleep(&ts, NULL);
	}
	assert_true(port_open(s->port));
}

/* Starts smtp_server.py with rules (JSON) and extra arguments (NULL
 * terminated). */
static unsigned started; /* servers started so far */

static void
server_start(struct server *s, const char *rules, const char *const *extra)
{
	const char *argv[32];
	char port[16], *log;
	size_t n = 0;
	int i, fd;

	s->port = free_port();
	assert_true(s->port > 0);
	/* A folder of its own even when a port comes round again: a later
	 * server must not count an earlier one's messages. */
	started++;
	s->dir = kr_xasprintf("%s/smtp-%d-%u", base, s->port, started);
	s->rules = kr_xasprintf("%s/rules-%d-%u.json", base, s->port, started);
	log = kr_xasprintf("%s/smtp-%d-%u.log", base, s->port, started);
	write_file(s->rules, rules != NULL ? rules : "{}");
	snprintf(port, sizeof(port), "%d", s->port);
	argv[n++] = "/usr/bin/python3";
	argv[n++] = server_py;
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--dir";
	argv[n++] = s->dir;
	argv[n++] = "--rules";
	argv[n++] = s->rules;
	for (i = 0; extra != NULL && extra[i] != NULL && n < 28; i++)
		argv[n++] = extra[i];
	if (pipelining_relays) {
		argv[n++] = "--pipelining";
		argv[n++] = "--cork"; /* replies to a burst in one write */
	}
	argv[n] = NULL;
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	free(log);
	server_wait(s);
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
	free(s->dir);
	free(s->rules);
	s->dir = s->rules = NULL;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	struct kr_buf b;
	char chunk[65536];
	size_t r;

	if (fp == NULL)
		return NULL;
	kr_buf_init(&b, 0);
	while ((r = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		assert_int_equal(kr_buf_append(&b, chunk, r), 0);
	fclose(fp);
	*len = b.len;
	return kr_buf_steal(&b);
}

/* Messages the server accepted so far (lines of log.jsonl). */
static int
server_count(const struct server *s)
{
	char *p = kr_xasprintf("%s/log.jsonl", s->dir);
	size_t len = 0, i;
	char *text = slurp(p, &len);
	int n = 0;

	for (i = 0; text != NULL && i < len; i++)
		n += text[i] == '\n';
	free(text);
	free(p);
	return n;
}

/* The raw message the server stored for rcpt (its log line names the
 * recipient and the file number), or NULL. */
static char *
server_message_for(const struct server *s, const char *rcpt, size_t *len)
{
	char *p = kr_xasprintf("%s/log.jsonl", s->dir);
	size_t l = 0;
	char *text = slurp(p, &l), *line, *save = NULL, *res = NULL;
	char *needle = kr_xasprintf("\"rcpt\": [\"%s\"]", rcpt);

	for (line = text != NULL ? strtok_r(text, "\n", &save) : NULL;
	     line != NULL && res == NULL; line = strtok_r(NULL, "\n", &save)) {
		int n;

		if (strstr(line, needle) == NULL ||
		    sscanf(line, "{\"n\": %d", &n) != 1)
			continue;
		free(p);
		p = kr_xasprintf("%s/%d.eml", s->dir, n);
		res = slurp(p, len);
	}
	free(needle);
	free(text);
	free(p);
	return res;
}

/* ---- messages and outcomes ---- */

struct outcome {
	int calls;
	int64_t ids[16];
	int server_count_at[16]; /* what the server had when done came */
	const struct server *srv;
};

static void
on_done(void *ctx, struct kr_msg *msg)
{
	struct outcome *o = ctx;

	if (o->calls < 16) {
		o->ids[o->calls] = msg->id;
		o->server_count_at[o->calls] =
		    o->srv != NULL ? server_count(o->srv) : -1;
	}
	o->calls++;
}

/* A complete message for rcpt; with body_lines > 0 a long body. Lines
 * that start with dots test the dot-stuffing. */
static char *
make_message(const char *rcpt, int body_lines)
{
	struct kr_buf b;
	int i;

	kr_buf_init(&b, 0);
	assert_int_equal(
	    kr_buf_printf(&b,
	                  "From: SIPS <report@news.example.jp>\r\n"
	                  "To: <%s>\r\n"
	                  "Date: Wed, 25 Nov 2026 10:00:00 +0900\r\n"
	                  "Message-ID: <%s.1@news.example.jp>\r\n"
	                  "Subject: =?UTF-8?B?44K744Kt44Ol44Oq44OG44Kj?=\r\n"
	                  "MIME-Version: 1.0\r\n"
	                  "Content-Type: text/plain; charset=UTF-8\r\n"
	                  "Content-Transfer-Encoding: 8bit\r\n"
	                  "\r\n"
	                  "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3"
	                  "\x81\xaf\r\n"
	                  ".\r\n"
	                  "..\r\n"
	                  ".leading dot\r\n"
	                  ". \r\n"
	                  "\r\n.\r\n",
	                  rcpt, rcpt),
	    0);
	for (i = 0; i < body_lines; i++)
		assert_int_equal(
		    kr_buf_printf(&b,
		                  "%s%06d 0123456789abcdefghijklmnopqrstuvwxyz"
		                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n",
		                  i % 7 == 0 ? "." : "", i),
		    0);
	assert_int_equal(kr_buf_puts(&b, "end\r\n"), 0);
	return kr_buf_steal(&b);
}

static void
init_msg(struct kr_msg *m, int64_t id, const char *rcpt, char *data)
{
	memset(m, 0, sizeof(*m));
	m->id = id;
	m->mail_from = "bounces+t1@news.example.jp";
	m->rcpt = rcpt;
	m->data = data;
	m->len = data != NULL ? strlen(data) : 0;
	m->result = (enum kr_send_result)99;
}

static void
free_msgs(struct kr_msg *m, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free((char *)(uintptr_t)m[i].data);
}

struct relay_spec {
	const char *host;
	int port;
	enum kr_cfg_tls tls;
	const char *ca_file;
	const char *user;
	const char *password;
};

static void
make_config(struct kr_config *cfg, struct kr_cfg_relay *relays,
            const struct relay_spec *spec, size_t n, unsigned timeout)
{
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	memset(relays, 0, n * sizeof(*relays));
	for (i = 0; i < n; i++) {
		relays[i].host = (char *)(uintptr_t)spec[i].host;
		relays[i].port = (unsigned)spec[i].port;
		relays[i].tls = spec[i].tls;
		relays[i].ca_file = (char *)(uintptr_t)spec[i].ca_file;
		relays[i].user = (char *)(uintptr_t)spec[i].user;
		relays[i].password = (char *)(uintptr_t)spec[i].password;
		relays[i].pipelining = true; /* the config's default */
	}
	cfg->delivery.transport = KR_CFG_TRANSPORT_SMTP;
	cfg->delivery.timeout = timeout;
	cfg->relays = relays;
	cfg->n_relays = n;
}

static void
assert_exact(const struct server *s, const struct kr_msg *m)
{
	size_t len = 0;
	char *got = server_message_for(s, m->rcpt, &len);

	assert_non_null(got);
	assert_int_equal(len, m->len);
	assert_memory_equal(got, m->data, m->len);
	free(got);
}

/* ---- tests ---- */

/* 550 for one recipient, 451 for another, the rest arrive byte-exact,
 * and every outcome is reported before the next message is sent. */
static void
test_smtp_batch_outcomes(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[5];
	struct outcome o = {0};
	const char *rcpt[5] = {"a@example.jp", "nobody@example.jp",
	                       "later@example.jp", "b@example.jp",
	                       "c@example.jp"};
	char hp[64];
	int i;

	(void)state;
	server_start(
	    &s,
	    "{\"rcpt\": {\"nobody@example.jp\": "
	    "\"550 5.1.1 no such user\"}, \"data\": {\"later@example.jp\": "
	    "\"451 4.3.0 try later\"}}",
	    NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	for (i = 0; i < 5; i++)
		init_msg(&m[i], 100 + i, rcpt[i],
		         make_message(rcpt[i], i == 3 ? 20000 : 10));
	o.srv = &s;
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 5, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(o.ids[i], 100 + i);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_int_equal(m[0].code, 250);
	assert_non_null(strstr(m[0].reply, "queued as T"));
	assert_int_equal(m[1].result, KR_SEND_PERM);
	assert_int_equal(m[1].code, 550);
	assert_non_null(strstr(m[1].reply, "no such user"));
	assert_int_equal(m[2].result, KR_SEND_TEMP);
	assert_int_equal(m[2].code, 451);
	assert_int_equal(m[3].result, KR_SEND_OK);
	assert_int_equal(m[4].result, KR_SEND_OK);
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
	assert_string_equal(m[4].relay, hp);
	/* done(i) came right after the reply to message i, before the
	 * next message was sent */
	assert_int_equal(o.server_count_at[0], 1);
	assert_int_equal(o.server_count_at[1], 1);
	assert_int_equal(o.server_count_at[2], 1);
	assert_int_equal(o.server_count_at[3], 2);
	assert_int_equal(o.server_count_at[4], 3);
	assert_int_equal(server_count(&s), 3);
	/* dot lines and a 1.4 MB body arrive exactly as given */
	assert_exact(&s, &m[0]);
	assert_exact(&s, &m[3]);
	assert_exact(&s, &m[4]);
	kr_transport_smtp_ops.destroy(&t);
	assert_null(t);
	free_msgs(m, 5);
	server_stop(&s);
}

/* The server closes the connection after the whole message came, with no
 * reply: uncertain. The messages after it go in a new session. */
static void
test_smtp_drop_after_data_is_uncertain(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[3];
	struct outcome o = {0};
	const char *rcpt[3] = {"a@example.jp", "drop@example.jp",
	                       "b@example.jp"};
	int i;

	(void)state;
	server_start(&s, "{\"drop_data\": [\"drop@example.jp\"]}", NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	for (i = 0; i < 3; i++)
		init_msg(&m[i], i, rcpt[i], make_message(rcpt[i], 5));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 3, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 3);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_int_equal(m[1].result, KR_SEND_UNCERTAIN);
	assert_int_equal(m[1].code, 0);
	assert_int_equal(m[2].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 2);
	assert_exact(&s, &m[2]);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 3);
	server_stop(&s);
}

/* The connection drops at the DATA command (nothing of the message was
 * sent): temporary. A server that takes the message and never answers:
 * uncertain, after the DATA timeout. */
static void
test_smtp_drop_before_data_is_temp_and_hang_uncertain(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[3];
	struct outcome o = {0};
	const char *rcpt[3] = {"dropcmd@example.jp", "a@example.jp",
	                       "hang@example.jp"};
	int i;

	(void)state;
	server_start(&s,
	             "{\"drop_at_data\": [\"dropcmd@example.jp\"], "
	             "\"hang_data\": [\"hang@example.jp\"]}",
	             NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 2);
	for (i = 0; i < 3; i++)
		init_msg(&m[i], i, rcpt[i], make_message(rcpt[i], 5));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 3, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 3);
	assert_int_equal(m[0].result, KR_SEND_TEMP);
	assert_int_equal(m[1].result, KR_SEND_OK);
	assert_int_equal(m[2].result, KR_SEND_UNCERTAIN);
	assert_int_equal(server_count(&s), 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 3);
	server_stop(&s);
}

/* The server hangs up in the middle of a message: it cannot have it,
 * temporary, not uncertain. 21 MB, more than loopback socket buffers
 * hold, so the hang-up is seen before the end whatever the timing. */
static void
test_smtp_drop_mid_data_is_temp(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[2];
	struct outcome o = {0};

	(void)state;
	server_start(&s, "{\"drop_mid_data\": [\"mid@example.jp\"]}", NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	init_msg(&m[0], 1, "mid@example.jp",
	         make_message("mid@example.jp", 300000));
	init_msg(&m[1], 2, "b@example.jp", make_message("b@example.jp", 3));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 2, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 2);
	assert_int_equal(m[0].result, KR_SEND_TEMP);
	assert_int_equal(m[1].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 2);
	server_stop(&s);
}

/* Relay 1 refuses connections, relay 2 answers 421: relay 3 takes all. */
static void
test_smtp_failover(void **state)
{
	struct server busy = {0}, s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[3];
	struct relay_spec spec[3] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[2];
	struct outcome o = {0};
	char hp[64];

	(void)state;
	server_start(&busy, "{\"connect\": \"421 4.7.0 busy\"}", NULL);
	server_start(&s, NULL, NULL);
	spec[0].port = free_port(); /* nothing listens there */
	spec[1].port = busy.port;
	spec[2].port = s.port;
	make_config(&cfg, relays, spec, 3, 20);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 3));
	init_msg(&m[1], 2, "b@example.jp", make_message("b@example.jp", 3));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.probe(t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 2, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 2);
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_int_equal(m[1].result, KR_SEND_OK);
	assert_string_equal(m[0].relay, hp);
	assert_int_equal(server_count(&s), 2);
	assert_int_equal(server_count(&busy), 0);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 2);
	server_stop(&busy);
	server_stop(&s);
}

/* A refused envelope sender is the sender's problem, not the
 * subscriber's: temporary even for a 5xx; the other messages go. */
static void
test_smtp_mail_from_refused_is_temp(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[2];
	struct outcome o = {0};

	(void)state;
	server_start(&s,
	             "{\"mail\": {\"bad-sender@news.example.jp\": "
	             "\"553 5.7.1 sender rejected\"}}",
	             NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 3));
	m[0].mail_from = "bad-sender@news.example.jp";
	init_msg(&m[1], 2, "b@example.jp", make_message("b@example.jp", 3));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 2, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 2);
	assert_int_equal(m[0].result, KR_SEND_TEMP);
	assert_int_equal(m[0].code, 553);
	assert_non_null(strstr(m[0].reply, "sender rejected"));
	assert_int_equal(m[1].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 2);
	server_stop(&s);
}

/* A relay that accepts the connection and never greets times out (the
 * greeting stage timeout) and the next relay takes the batch. */
static void
test_smtp_greeting_timeout_fails_over(void **state)
{
	struct server mute = {0}, s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[2];
	struct relay_spec spec[2] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[1];
	struct outcome o = {0};

	(void)state;
	server_start(&mute, "{\"hang\": true}", NULL);
	server_start(&s, NULL, NULL);
	spec[0].port = mute.port;
	spec[1].port = s.port;
	make_config(&cfg, relays, spec, 2, 1);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 3));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 1, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 1);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 1);
	server_stop(&mute);
	server_stop(&s);
}

/* No relay reachable: -1, every message deferred, done still called. */
static void
test_smtp_all_relays_down(void **state)
{
	struct kr_config cfg;
	struct kr_cfg_relay relays[2];
	struct relay_spec spec[2] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL},
	};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[2];
	struct outcome o = {0};

	(void)state;
	spec[0].port = free_port();
	spec[1].port = free_port();
	make_config(&cfg, relays, spec, 2, 5);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 1));
	init_msg(&m[1], 2, "b@example.jp", make_message("b@example.jp", 1));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.probe(t, &err), -1);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 2, on_done, &o, &err),
	                 -1);
	assert_int_equal(err.code, KR_ERR_TEMP);
	assert_true(err.msg[0] != '\0');
	assert_int_equal(o.calls, 2);
	assert_int_equal(m[0].result, KR_SEND_TEMP);
	assert_int_equal(m[1].result, KR_SEND_TEMP);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 2);
}

/* Looks, from inside the session (the done callback runs in it), for
 * the client socket connected to the server and reads its TCP_NODELAY. */
struct nodelay_probe {
	int port;
	int seen;    /* sockets to the server found */
	int nodelay; /* their TCP_NODELAY, ANDed */
	int corked;  /* their TCP_CORK, ORed: must be off after a message */
	struct kr_transport *t; /* whose kairan-smtp process to look into */
};

static void
probe_fd(struct nodelay_probe *p, int fd)
{
	struct sockaddr_in peer;
	socklen_t l;
	int type, v;

	l = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0 ||
	    type != SOCK_STREAM)
		return;
	l = sizeof(peer);
	if (getpeername(fd, (struct sockaddr *)&peer, &l) != 0 ||
	    peer.sin_family != AF_INET || ntohs(peer.sin_port) != p->port)
		return;
	l = sizeof(v);
	if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) != 0)
		return;
	p->seen++;
	p->nodelay = p->nodelay && v != 0;
	l = sizeof(v);
	if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &l) == 0)
		p->corked = p->corked || v != 0;
}

static void
on_done_nodelay(void *ctx, struct kr_msg *msg)
{
	struct nodelay_probe *p = ctx;
	int fd, rfd, pidfd;

	(void)msg;
	/* The session's socket is in the kairan-smtp process, which waits
	 * for this callback: a copy of each of its descriptors is looked at
	 * (pidfd_getfd, Linux 5.6). */
	pidfd = (int)syscall(SYS_pidfd_open, (pid_t)kr_transport_smtp_pid(p->t),
	                     0);
	assert_true(pidfd >= 0);
	for (rfd = 3; rfd < 64; rfd++) {
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, rfd, 0);
		if (fd < 0)
			continue;
		probe_fd(p, fd);
		close(fd);
	}
	close(pidfd);
}

/* libesmtp's socket gets TCP_NODELAY through our connect(), and does not
 * when the benchmark switch turns it off. */
static void
test_smtp_sets_tcp_nodelay(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[1];
	struct nodelay_probe p = {0, 0, 1, 0, NULL};

	(void)state;
	server_start(&s, NULL, NULL);
	spec[0].port = s.port;
	p.port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 1));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	p.t = t;
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 1, on_done_nodelay, &p, &err), 0);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_int_equal(p.seen, 1);
	assert_int_equal(p.nodelay, 1);
	assert_int_equal(p.corked, 0);

	kr_transport_smtp_set_nodelay(0);
	p.seen = 0;
	p.nodelay = 1;
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 1, on_done_nodelay, &p, &err), 0);
	kr_transport_smtp_set_nodelay(1);
	assert_int_equal(p.seen, 1);
	assert_int_equal(p.nodelay, 0);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 1);
	server_stop(&s);
}

/* What libesmtp writes through its 2 KB buffer leaves in one write(2)
 * per wait for the server: four per message with this server, which
 * offers no PIPELINING (MAIL; RCPT; DATA; the message and its dot; three
 * with PIPELINING), not one per 2 KB. The messages still arrive
 * byte-exact. Nagle (the benchmark's "as shipped" switch) writes as
 * libesmtp does: many more. */
static void
test_smtp_one_write_per_message(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[20];
	struct outcome o = {0};
	char rcpt[20][32];
	unsigned long w0, a0, buffered, shipped;
	size_t i;

	(void)state;
	server_start(&s, NULL, NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	for (i = 0; i < 20; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "r%zu@example.jp", i);
		/* ~29 KB each, like a composed Japanese report */
		init_msg(&m[i], (int64_t)(300 + i), rcpt[i],
		         make_message(rcpt[i], 420));
	}
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	w0 = kr_transport_smtp_writes();
	a0 = kr_transport_smtp_ahead();
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 20, on_done, &o, &err), 0);
	buffered = kr_transport_smtp_writes() - w0;
	assert_int_equal(kr_transport_smtp_ahead() - a0,
	                 pipelining_relays ? 19 : 0);
	assert_int_equal(o.calls, 20);
	for (i = 0; i < 20; i++) {
		assert_int_equal(m[i].result, KR_SEND_OK);
		assert_exact(&s, &m[i]);
	}
	assert_true(buffered >= 20);
	assert_true(buffered <= 20 * 4 + 4);

	kr_transport_smtp_set_nodelay(0);
	memset(&o, 0, sizeof(o));
	w0 = kr_transport_smtp_writes();
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 20, on_done, &o, &err), 0);
	shipped = kr_transport_smtp_writes() - w0;
	kr_transport_smtp_set_nodelay(1);
	assert_int_equal(o.calls, 20);
	assert_true(shipped >= 20 * 14);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 20);
	server_stop(&s);
}

/* What the libc wrappers rely on in the installed libESMTP (README, "On
 * the wire"), each checked on its own so that an upgrade that changes
 * one fails here by name instead of degrading to 22 messages/s:
 * - it opens its socket with connect(2) (our connect() sets TCP_NODELAY:
 *   test_smtp_sets_tcp_nodelay);
 * - it writes with write(2), one command or the message and its dot per
 *   wait for a reply: exactly EHLO, 4 per message and QUIT into a relay
 *   without PIPELINING (a move to send() or writev() shows as 0);
 * - it reads the replies with read(2) (else no reply reaches the pipe,
 *   and no copy is recorded as sent);
 * - after a lone MAIL FROM it writes RCPT TO and DATA together, byte for
 *   byte as smtp_pipe.c types them, and waits for the reply to MAIL FROM
 *   and to the dot itself (its cmd_mail() TODO): with PIPELINING exactly
 *   N - 1 envelopes go ahead, EHLO, MAIL, RCPT+DATA, one write a message
 *   and QUIT. If upstream pipelines MAIL itself, this fails: then the
 *   sending ahead can go (README). */
static void
contract(bool ok, const char *what, unsigned long got, unsigned long want)
{
	if (!ok)
		fail_msg("the installed libesmtp no longer %s (got %lu, "
		         "expected %lu): the libc wrappers depend on it, see "
		         "README \"On the wire\"",
		         what, got, want);
}

static void
test_smtp_libesmtp_contract(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[5];
	struct outcome o = {0};
	char rcpt[5][32];
	const char *extra[] = {"--pipelining", NULL};
	unsigned long w0, a0, writes, ahead, ok;
	size_t i;
	int run;

	(void)state;
	/* the second group's relays all offer PIPELINING (with --cork) */
	for (run = pipelining_relays ? 1 : 0; run < 2; run++) {
		server_start(&s, NULL, run == 0 ? NULL : extra);
		spec[0].port = s.port;
		make_config(&cfg, relays, spec, 1, 20);
		for (i = 0; i < 5; i++) {
			snprintf(rcpt[i], sizeof(rcpt[i]), "c%zu@example.jp", i);
			init_msg(&m[i], (int64_t)(900 + i), rcpt[i],
			         make_message(rcpt[i], 40));
		}
		assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err),
		                 0);
		memset(&o, 0, sizeof(o));
		w0 = kr_transport_smtp_writes();
		a0 = kr_transport_smtp_ahead();
		(void)kr_transport_smtp_ops.send(t, m, 5, on_done, &o, &err);
		writes = kr_transport_smtp_writes() - w0;
		ahead = kr_transport_smtp_ahead() - a0;
		for (ok = 0, i = 0; i < 5; i++)
			ok += m[i].result == KR_SEND_OK;
		contract(o.calls == 5 && ok == 5,
		         "lets its replies through read(2): messages sent", ok,
		         5);
		if (run == 0) {
			contract(writes == 1 + 5 * 4 + 1,
			         "writes with write(2) once per command and once "
			         "per message with its dot: writes for 5 messages",
			         writes, 1 + 5 * 4 + 1);
			contract(ahead == 0, "needs nothing sent ahead without "
			                     "PIPELINING: envelopes ahead",
			         ahead, 0);
		} else {
			contract(ahead == 4,
			         "waits for MAIL FROM's reply and then writes "
			         "RCPT TO + DATA as smtp_pipe.c types them: "
			         "envelopes sent ahead for 5 messages",
			         ahead, 4);
			contract(writes == 1 + 1 + 1 + 5 + 1,
			         "writes one group per wait with PIPELINING: "
			         "writes for 5 messages",
			         writes, 1 + 1 + 1 + 5 + 1);
		}
		for (i = 0; i < 5; i++)
			assert_exact(&s, &m[i]);
		kr_transport_smtp_ops.destroy(&t);
		free_msgs(m, 5);
		server_stop(&s);
		memset(&s, 0, sizeof(s));
	}
}

/* Against a relay with PIPELINING (and no CHUNKING), each next envelope
 * (MAIL FROM, RCPT TO, DATA) goes behind the previous message's dot, and
 * a lone MAIL FROM takes its RCPT TO and DATA: about one write per
 * message, not three. Refusals in such a group keep their
 * meaning: a refused MAIL (one- and multi-line, 5xx and 4xx, two in a
 * row: the replies to the RCPT and DATA that went with it never reach
 * libesmtp) is TEMP with its own reply, a refused RCPT PERM, a 451 after
 * the dot TEMP; every other message arrives once, byte-exact. */
static void
test_smtp_pipelined_mail(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[12];
	struct outcome o = {0};
	char rcpt[12][32];
	/* in the second run, replies also come several to a read */
	const char *pipelining[] = {"--pipelining", "--cork", NULL};
	unsigned long w0, writes;
	size_t i;

	(void)state;
	if (!pipelining_relays)
		pipelining[1] = NULL;
	server_start(&s,
	             "{\"mail\": {"
	             "\"multi@news.example.jp\": "
	             "\"553-5.7.1 sender\\r\\n553 5.7.1 not welcome here\", "
	             "\"later@news.example.jp\": \"451 4.3.0 try later\"}, "
	             "\"rcpt\": {\"r5@example.jp\": \"550 5.1.1 no such user\"}, "
	             "\"data\": {\"r7@example.jp\": \"451 4.3.0 disk full\"}}",
	             pipelining);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	for (i = 0; i < 12; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "r%zu@example.jp", i);
		init_msg(&m[i], (int64_t)(700 + i), rcpt[i],
		         make_message(rcpt[i], i == 9 ? 3000 : 40));
	}
	m[2].mail_from = "multi@news.example.jp";
	m[3].mail_from = "later@news.example.jp";
	m[4].mail_from = "multi@news.example.jp";
	m[11].mail_from = "later@news.example.jp"; /* the last one, too */
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	w0 = kr_transport_smtp_writes();
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 12, on_done, &o, &err), 0);
	writes = kr_transport_smtp_writes() - w0;
	assert_int_equal(o.calls, 12);
	for (i = 0; i < 12; i++)
		assert_int_equal(o.ids[i], 700 + (int64_t)i);
	assert_int_equal(m[2].result, KR_SEND_TEMP);
	assert_int_equal(m[2].code, 553);
	assert_non_null(strstr(m[2].reply, "not welcome here"));
	assert_int_equal(m[3].result, KR_SEND_TEMP);
	assert_int_equal(m[3].code, 451);
	assert_int_equal(m[4].result, KR_SEND_TEMP);
	assert_int_equal(m[4].code, 553);
	assert_int_equal(m[5].result, KR_SEND_PERM);
	assert_int_equal(m[5].code, 550);
	assert_non_null(strstr(m[5].reply, "no such user"));
	assert_int_equal(m[7].result, KR_SEND_TEMP);
	assert_int_equal(m[7].code, 451);
	assert_non_null(strstr(m[7].reply, "disk full"));
	assert_int_equal(m[11].result, KR_SEND_TEMP);
	assert_int_equal(m[11].code, 451);
	for (i = 0; i < 12; i++) {
		if (i == 2 || i == 3 || i == 4 || i == 5 || i == 7 || i == 11)
			continue;
		assert_int_equal(m[i].result, KR_SEND_OK);
		assert_int_equal(m[i].code, 250);
		assert_exact(&s, &m[i]);
	}
	assert_int_equal(server_count(&s), 6);
	/* Waiting for each reply would take about 30 writes here; ahead
	 * of libesmtp 19: the 451 after message 7's dot ends that
	 * connection (the relay took message 8's envelope), and messages
	 * 8-11 go in a second one. */
	assert_true(writes <= 22);

	/* The same batch again, all welcome: 2 writes a message. */
	write_file(s.rules, "{}");
	memset(&o, 0, sizeof(o));
	for (i = 0; i < 12; i++)
		m[i].mail_from = "bounces+t1@news.example.jp";
	w0 = kr_transport_smtp_writes();
	assert_int_equal(
	    kr_transport_smtp_ops.send(t, m, 12, on_done, &o, &err), 0);
	writes = kr_transport_smtp_writes() - w0;
	assert_int_equal(o.calls, 12);
	for (i = 0; i < 12; i++)
		assert_int_equal(m[i].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 18);
	/* EHLO; MAIL; RCPT+DATA; each message with its dot and the next
	 * envelope; QUIT (waiting for each reply would be 1 + 3 * 12 + 1) */
	assert_true(writes <= 1 + 2 + 12 + 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 12);
	server_stop(&s);
}

/* A relay that offers PIPELINING but throws away what comes behind the
 * end of a message's data: the MAIL FROM sent ahead goes unanswered, the
 * stage timeout ends the session, and from then on nothing is sent ahead
 * to that relay; every message arrives once. With `pipelining: false`
 * nothing is sent ahead from the start. */
static void
test_smtp_relay_that_drops_pipelined_input(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[6];
	struct outcome o = {0};
	char rcpt[6][32];
	const char *extra[] = {"--pipelining", "--discard-pipelined", NULL};
	unsigned long a0;
	size_t i;

	(void)state;
	server_start(&s, NULL, extra);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 2); /* 2 s stage timeout */
	for (i = 0; i < 6; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "d%zu@example.jp", i);
		init_msg(&m[i], (int64_t)(800 + i), rcpt[i],
		         make_message(rcpt[i], 3));
	}
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	a0 = kr_transport_smtp_ahead();
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 6, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 6);
	for (i = 0; i < 6; i++) {
		assert_int_equal(m[i].result, KR_SEND_OK);
		assert_exact(&s, &m[i]);
	}
	assert_int_equal(server_count(&s), 6);
	/* once, behind message 0; never again to this relay */
	assert_int_equal(kr_transport_smtp_ahead() - a0, 1);
	memset(&o, 0, sizeof(o));
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 6, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 6);
	for (i = 0; i < 6; i++)
		assert_int_equal(m[i].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 12);
	assert_int_equal(kr_transport_smtp_ahead() - a0, 1);
	kr_transport_smtp_ops.destroy(&t);

	/* Configured off (`pipelining: false`): nothing goes ahead, not
	 * even once, and no stage timeout is waited for. */
	relays[0].pipelining = false;
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	a0 = kr_transport_smtp_ahead();
	memset(&o, 0, sizeof(o));
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 6, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 6);
	for (i = 0; i < 6; i++)
		assert_int_equal(m[i].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 18);
	assert_int_equal(kr_transport_smtp_ahead() - a0, 0);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 6);
	server_stop(&s);
}

/* ---- relays out of step (tests/integration/hostile_relay.py) ---- */

/* Starts hostile_relay.py in mode (offering PIPELINING in the second
 * run, as the other relays do). */
static void
hostile_start(struct server *s, const char *mode)
{
	char *py = kr_xasprintf("%s", server_py);
	char *slash = strrchr(py, '/');
	char port[16], *path;

	assert_non_null(slash);
	*slash = '\0';
	path = kr_xasprintf("%s/hostile_relay.py", py);
	s->port = free_port();
	s->dir = kr_xasprintf("%s/hostile-%d", base, s->port);
	s->rules = NULL;
	snprintf(port, sizeof(port), "%d", s->port);
	s->pid = fork();
	assert_true(s->pid >= 0);
	if (s->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 1);
		execl("/usr/bin/python3", "python3", path, "--port", port,
		      "--dir", s->dir, "--mode", mode,
		      pipelining_relays ? "--pipelining" : (char *)NULL,
		      (char *)NULL);
		_exit(127);
	}
	free(path);
	free(py);
	server_wait(s);
}

/* Whether the relay received the whole body of a message to rcpt. */
static bool
hostile_got_body(const struct server *s, const char *rcpt)
{
	char *p = kr_xasprintf("%s/bodies.txt", s->dir);
	char *want = kr_xasprintf("BODY %s\n", rcpt);
	size_t len = 0;
	char *text = slurp(p, &len);
	bool got = text != NULL && strstr(text, want) != NULL;

	free(text);
	free(want);
	free(p);
	return got;
}

/* Sends n (at most 3) messages to a relay in mode; fails if a message is
 * reported sent whose body the relay did not receive; gives the results
 * in res[]. */
static void
hostile_send(const char *mode, unsigned timeout, size_t n,
             enum kr_send_result *res)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[3];
	struct outcome o = {0};
	const char *rcpt[3] = {"h1@example.jp", "h2@example.jp",
	                       "h3@example.jp"};
	size_t i;

	assert_true(n <= 3);
	hostile_start(&s, mode);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, timeout);
	for (i = 0; i < n; i++)
		init_msg(&m[i], 300 + (int64_t)i, rcpt[i],
		         make_message(rcpt[i], 50));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	(void)kr_transport_smtp_ops.send(t, m, n, on_done, &o, &err);
	assert_int_equal(o.calls, (int)n);
	for (i = 0; i < n; i++) {
		res[i] = m[i].result;
		if (m[i].result == KR_SEND_OK && !hostile_got_body(&s, rcpt[i]))
			fail_msg("mode %s: %s reported sent, its body never "
			         "arrived (%s)",
			         mode, rcpt[i], m[i].reply);
	}
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, n);
	server_stop(&s);
}

/* A reply that belongs to no command, or does not fit the one it
 * answers, is never taken for a success: the connection is given up and
 * the copies in flight deferred (the hardening issue's stray 2xx). */
static void
test_smtp_out_of_step_never_sent(void **state)
{
	enum kr_send_result r[3];
	size_t i;

	(void)state;
	/* the control: a relay in step takes all three */
	hostile_send("none", 20, 3, r);
	for (i = 0; i < 3; i++)
		assert_int_equal(r[i], KR_SEND_OK);
	/* two stray 250s behind the greeting: nothing was sent */
	hostile_send("greeting-extra", 20, 3, r);
	for (i = 0; i < 3; i++)
		assert_int_equal(r[i], KR_SEND_TEMP);
	/* 250 to DATA: the body was never asked for */
	hostile_send("data-250", 20, 3, r);
	for (i = 0; i < 3; i++)
		assert_int_equal(r[i], KR_SEND_TEMP);
	/* 354 and a "250 queued" before the body left */
	hostile_send("early-250", 20, 3, r);
	for (i = 0; i < 3; i++)
		assert_int_equal(r[i], KR_SEND_TEMP);
	/* a second 250 after the dot: the first message is sent (its
	 * body came and the first 250 answers its dot), the others are
	 * deferred */
	hostile_send("extra-250-dot", 20, 3, r);
	assert_int_equal(r[0], KR_SEND_OK);
	assert_int_equal(r[1], KR_SEND_TEMP);
	assert_int_equal(r[2], KR_SEND_TEMP);
}

/* delivery.timeout bounds a stage, not the gap between two bytes: a
 * relay dripping a byte every 0.4 s (its reply would be complete after
 * ~10 s) loses the message at the 2 s deadline. */
static void
test_smtp_stage_deadline(void **state)
{
	enum kr_send_result r[3];

	(void)state;
	/* the dot's reply dripped: the body left, no reply in time */
	hostile_send("drip-dot", 2, 1, r);
	assert_int_equal(r[0], KR_SEND_UNCERTAIN);
	/* the greeting dripped: nothing was sent */
	hostile_send("drip-greeting", 2, 1, r);
	assert_int_equal(r[0], KR_SEND_TEMP);
}

/* An address that would smuggle a command is refused, never sent; a 452
 * at RCPT defers only that message. */
static void
test_smtp_refuses_command_injection(void **state)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec[1] = {
	    {"127.0.0.1", 0, KR_CFG_TLS_NONE, NULL, NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[3];
	struct outcome o = {0};

	(void)state;
	server_start(&s,
	             "{\"rcpt\": {\"full@example.jp\": "
	             "\"452 4.2.2 mailbox full\"}}",
	             NULL);
	spec[0].port = s.port;
	make_config(&cfg, relays, spec, 1, 20);
	init_msg(&m[0], 1, "x@example.jp>\r\nRCPT TO:<victim@example.jp",
	         make_message("x@example.jp", 1));
	init_msg(&m[1], 2, "full@example.jp",
	         make_message("full@example.jp", 1));
	init_msg(&m[2], 3, "b@example.jp", make_message("b@example.jp", 1));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 3, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 3);
	assert_int_equal(m[0].result, KR_SEND_PERM);
	assert_int_equal(m[1].result, KR_SEND_TEMP);
	assert_int_equal(m[1].code, 452);
	assert_non_null(strstr(m[1].reply, "mailbox full"));
	assert_int_equal(m[2].result, KR_SEND_OK);
	assert_int_equal(server_count(&s), 1);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 3);
	server_stop(&s);
}

/* Configurations that would send in plain text are refused at create. */
static void
test_smtp_refuses_plaintext_configs(void **state)
{
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec auth_clear[1] = {
	    {"127.0.0.1", 25, KR_CFG_TLS_NONE, NULL, "kairan", "secret"}};
	struct relay_spec bad_ca[1] = {{"127.0.0.1", 587, KR_CFG_TLS_STARTTLS,
	                                "/nonexistent/ca.pem", NULL, NULL}};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};

	(void)state;
	make_config(&cfg, relays, auth_clear, 1, 20);
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), -1);
	assert_null(t);
	assert_int_equal(err.code, KR_ERR_INVALID);
	assert_non_null(strstr(err.msg, "starttls"));
	make_config(&cfg, relays, bad_ca, 1, 20);
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), -1);
	assert_non_null(strstr(err.msg, "ca_file"));
	make_config(&cfg, relays, bad_ca, 0, 20);
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), -1);
}

/* ---- TLS ---- */

static char *ca_pem, *other_ca_pem, *srv_pem, *srv_key;

static int
make_tls_material(void)
{
	char *cmd;
	int r;

	ca_pem = kr_xasprintf("%s/ca.pem", base);
	other_ca_pem = kr_xasprintf("%s/other-ca.pem", base);
	srv_pem = kr_xasprintf("%s/srv.pem", base);
	srv_key = kr_xasprintf("%s/srv.key", base);
	cmd = kr_xasprintf(
	    "set -e; cd '%s';"
	    "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
	    "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2"
	    " -subj /CN=kairan-test-ca 2>/dev/null;"
	    "openssl req -x509 $K -keyout other-ca.key -out other-ca.pem"
	    " -days 2 -subj /CN=kairan-other-ca 2>/dev/null;"
	    "openssl req $K -keyout srv.key -out srv.csr -subj /CN=localhost"
	    " 2>/dev/null;"
	    "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE"
	    "\\nextendedKeyUsage=serverAuth\\n' > srv.ext;"
	    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key"
	    " -CAcreateserial -out srv.pem -days 2 -extfile srv.ext"
	    " 2>/dev/null",
	    base);
	r = system(cmd);
	free(cmd);
	return r == 0 ? 0 : -1;
}

/* sni.txt holds one line per TLS connection: the name the client sent.
 * True when kairan's n connections each named "localhost"; with implicit
 * TLS aiosmtpd's controller also checks its own port once, naming nobody
 * ("None"), at a moment of its own. */
static bool
sni_ok(const char *sni, int n)
{
	int named = 0, none = 0;
	const char *p = sni, *nl;

	for (; *p != '\0'; p = nl + 1) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			return false;
		if ((size_t)(nl - p) == 9 && strncmp(p, "localhost", 9) == 0)
			named++;
		else if ((size_t)(nl - p) == 4 && strncmp(p, "None", 4) == 0)
			none++;
		else
			return false;
	}
	return named == n && none <= 1;
}

/* One message through a STARTTLS relay; returns send()'s result and the
 * message's outcome; *delivered how many the server took. */
static int
tls_send(const struct relay_spec *spec, const char *const *extra,
         enum kr_send_result *res, int *delivered, struct kr_err *err)
{
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec sp = *spec;
	struct kr_transport *t = NULL;
	struct kr_msg m[1];
	struct outcome o = {0};
	int r;

	server_start(&s, NULL, extra);
	sp.port = s.port;
	make_config(&cfg, relays, &sp, 1, 20);
	init_msg(&m[0], 1, "a@example.jp", make_message("a@example.jp", 50));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, err), 0);
	r = kr_transport_smtp_ops.send(t, m, 1, on_done, &o, err);
	assert_int_equal(o.calls, 1);
	*res = m[0].result;
	*delivered = server_count(&s);
	if (*delivered == 1) {
		/* the client named the relay (SNI) */
		char *p = kr_xasprintf("%s/sni.txt", s.dir);
		size_t l = 0;
		char *sni = slurp(p, &l);

		assert_non_null(sni);
		if (!sni_ok(sni, 1))
			fail_msg("SNI seen: %s", sni);
		free(sni);
		free(p);
	}
	if (*delivered == 1)
		assert_exact(&s, &m[0]);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 1);
	server_stop(&s);
	return r;
}

/* A relay that must be refused: send() fails, the message is deferred
 * (TEMP), the server got nothing, and the error names why. */
static void
assert_refused(const struct relay_spec *spec, const char *const *extra,
               const char *why)
{
	struct kr_err err = {0};
	enum kr_send_result res;
	int delivered;

	assert_int_equal(tls_send(spec, extra, &res, &delivered, &err), -1);
	assert_int_equal(res, KR_SEND_TEMP);
	assert_int_equal(delivered, 0);
	assert_int_equal(err.code, KR_ERR_TEMP);
	if (strstr(err.msg, why) == NULL)
		fail_msg("refused, but the error does not say '%s': %s", why,
		         err.msg);
}

static void
test_smtp_starttls_verified(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", NULL};
	struct relay_spec spec = {"localhost", 0,    KR_CFG_TLS_STARTTLS,
	                          ca_pem,      NULL, NULL};
	struct kr_err err = {0};
	enum kr_send_result res;
	int delivered;

	(void)state;
	assert_int_equal(tls_send(&spec, extra, &res, &delivered, &err), 0);
	assert_int_equal(res, KR_SEND_OK);
	assert_int_equal(delivered, 1);
}

static void
test_smtp_starttls_wrong_ca_refused(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", NULL};
	struct relay_spec spec = {"localhost",  0,    KR_CFG_TLS_STARTTLS,
	                          other_ca_pem, NULL, NULL};
	(void)state;
	assert_refused(&spec, extra, "TLS");
}

static void
test_smtp_starttls_wrong_name_refused(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", NULL};
	/* the certificate names "localhost", not 127.0.0.1 */
	struct relay_spec spec = {"127.0.0.1", 0,    KR_CFG_TLS_STARTTLS,
	                          ca_pem,      NULL, NULL};
	struct kr_err err = {0};
	enum kr_send_result res;
	int delivered;

	(void)state;
	assert_int_equal(tls_send(&spec, extra, &res, &delivered, &err), -1);
	assert_int_equal(res, KR_SEND_TEMP);
	assert_int_equal(delivered, 0);
}

static void
test_smtp_starttls_not_offered_no_downgrade(void **state)
{
	struct relay_spec spec = {"localhost", 0,    KR_CFG_TLS_STARTTLS,
	                          ca_pem,      NULL, NULL};
	(void)state;
	assert_refused(&spec, NULL, "STARTTLS");
}

/* Starts a TLS relay (smtp_server.py with extra) in *s and sends it 4
 * messages, one of them long, in one session: all arrive byte-exact,
 * the envelopes of messages 1-3 sent ahead when it offers PIPELINING.
 * The server is left running. */
static void
send_four_over_tls(struct server *s, const char *const *extra,
                   enum kr_cfg_tls tls)
{
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct relay_spec spec = {"localhost", 0, tls, ca_pem, NULL, NULL};
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[4];
	struct outcome o = {0};
	char rcpt[4][32];
	unsigned long a0;
	size_t i;

	server_start(s, NULL, extra);
	spec.port = s->port;
	make_config(&cfg, relays, &spec, 1, 20);
	for (i = 0; i < 4; i++) {
		snprintf(rcpt[i], sizeof(rcpt[i]), "t%zu@example.jp", i);
		init_msg(&m[i], (int64_t)(400 + i), rcpt[i],
		         make_message(rcpt[i], i == 2 ? 1300 : 30));
	}
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	a0 = kr_transport_smtp_ahead();
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 4, on_done, &o, &err),
	                 0);
	assert_int_equal(o.calls, 4);
	for (i = 0; i < 4; i++) {
		assert_int_equal(m[i].result, KR_SEND_OK);
		assert_exact(s, &m[i]);
	}
	assert_int_equal(server_count(s), 4);
	assert_int_equal(kr_transport_smtp_ahead() - a0,
	                 pipelining_relays ? 3 : 0);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 4);
}

/* STARTTLS is kairan's own (libesmtp's hung on TLS 1.3 tickets): against
 * a relay that speaks TLS 1.3 only, 4 messages in one session arrive
 * byte-exact, and with PIPELINING the envelopes go ahead inside TLS. */
static void
test_smtp_starttls_tls13_and_ahead(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", "--tls13-only",
	                       NULL};
	struct server s = {0};

	(void)state;
	send_four_over_tls(&s, extra, KR_CFG_TLS_STARTTLS);
	server_stop(&s);
}

/* A greeting with a NUL byte in it (a hostile relay's) goes to libesmtp
 * whole, after STARTTLS, and the message is delivered. */
static void
test_smtp_starttls_greeting_with_nul(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", NULL};
	struct relay_spec spec = {"localhost", 0,    KR_CFG_TLS_STARTTLS,
	                          ca_pem,      NULL, NULL};
	struct server s = {0};
	struct kr_config cfg;
	struct kr_cfg_relay relays[1];
	struct kr_transport *t = NULL;
	struct kr_err err = {0};
	struct kr_msg m[1];
	struct outcome o = {0};

	(void)state;
	server_start(&s, "{\"greeting_host\": \"relay\\u0000with a NUL\"}",
	             extra);
	spec.port = s.port;
	make_config(&cfg, relays, &spec, 1, 20);
	init_msg(&m[0], 1, "n@example.jp", make_message("n@example.jp", 3));
	assert_int_equal(kr_transport_smtp_ops.create(&cfg, &t, &err), 0);
	assert_int_equal(kr_transport_smtp_ops.send(t, m, 1, on_done, &o, &err),
	                 0);
	assert_int_equal(m[0].result, KR_SEND_OK);
	assert_exact(&s, &m[0]);
	kr_transport_smtp_ops.destroy(&t);
	free_msgs(m, 1);
	server_stop(&s);
}

/* Plain text smuggled behind the 220 to STARTTLS (it would be read as if
 * it came through TLS) makes the relay unusable; nothing is sent. */
static void
test_smtp_starttls_injection_refused(void **state)
{
	const char *extra[] = {"--tls-cert",         srv_pem,
	                       "--tls-key",          srv_key,
	                       "--require-starttls", "--starttls-inject",
	                       NULL};
	struct relay_spec spec = {"localhost", 0,    KR_CFG_TLS_STARTTLS,
	                          ca_pem,      NULL, NULL};

	(void)state;
	assert_refused(&spec, extra, "more than its STARTTLS reply");
}

static void
test_smtp_auth(void **state)
{
	const char *extra[] = {
	    "--tls-cert",         srv_pem,  "--tls-key",          srv_key,
	    "--require-starttls", "--auth", "kairan:s3cret pass", NULL};
	struct relay_spec good = {"localhost", 0,        KR_CFG_TLS_STARTTLS,
	                          ca_pem,      "kairan", "s3cret pass"};
	struct relay_spec bad = {"localhost", 0,        KR_CFG_TLS_STARTTLS,
	                         ca_pem,      "kairan", "wrong"};
	struct kr_err err = {0};
	enum kr_send_result res;
	int delivered;

	(void)state;
	assert_int_equal(tls_send(&good, extra, &res, &delivered, &err), 0);
	assert_int_equal(res, KR_SEND_OK);
	assert_int_equal(delivered, 1);
	/* a refused password defers (the relay is unusable), it never
	 * fails the subscriber's message */
	assert_int_equal(tls_send(&bad, extra, &res, &delivered, &err), -1);
	assert_int_equal(res, KR_SEND_TEMP);
	assert_int_equal(delivered, 0);
	assert_non_null(strstr(err.msg, "AUTH"));
}

/* Implicit TLS (`tls: tls`, port 465 style): kairan's connect() makes
 * the TLS connection and carries libesmtp through it. Against a relay
 * that speaks TLS 1.3 only, several messages, one of ~90 KB (many TLS
 * records), arrive byte-exact in one session, and the client named the
 * relay (SNI) on its connection. */
static void
test_smtp_implicit_tls(void **state)
{
	const char *extra[] = {"--tls-cert",     srv_pem,        "--tls-key",
	                       srv_key,          "--implicit-tls", "--tls13-only",
	                       NULL};
	struct server s = {0};
	char *p, *sni;
	size_t l = 0;

	(void)state;
	send_four_over_tls(&s, extra, KR_CFG_TLS_TLS);
	p = kr_xasprintf("%s/sni.txt", s.dir);
	sni = slurp(p, &l);
	assert_non_null(sni);
	/* one connection, naming the relay */
	if (!sni_ok(sni, 1))
		fail_msg("SNI seen: %s", sni);
	free(sni);
	free(p);
	server_stop(&s);
}

/* Implicit TLS is verified like STARTTLS: another CA, a name the
 * certificate does not hold, or a relay that answers in plain text are
 * refused before a byte of mail goes out; AUTH works inside it. */
static void
test_smtp_implicit_tls_refusals_and_auth(void **state)
{
	const char *tls[] = {"--tls-cert", srv_pem, "--tls-key", srv_key,
	                     "--implicit-tls", NULL};
	const char *tls_auth[] = {"--tls-cert",     srv_pem, "--tls-key",
	                          srv_key,          "--implicit-tls",
	                          "--auth",         "kairan:s3cret pass",
	                          NULL};
	struct relay_spec other_ca = {"localhost", 0,    KR_CFG_TLS_TLS,
	                              other_ca_pem, NULL, NULL};
	struct relay_spec by_ip = {"127.0.0.1", 0, KR_CFG_TLS_TLS, ca_pem,
	                           NULL, NULL};
	struct relay_spec good = {"localhost", 0, KR_CFG_TLS_TLS, ca_pem,
	                          NULL, NULL};
	struct relay_spec auth = {"localhost", 0,        KR_CFG_TLS_TLS,
	                          ca_pem,      "kairan", "s3cret pass"};
	struct kr_err err = {0};
	enum kr_send_result res;
	int delivered;

	(void)state;
	assert_refused(&other_ca, tls, "certificate verify failed");
	assert_refused(&by_ip, tls, "certificate verify failed");
	/* a plain-text server on the "TLS" port: no handshake, no mail */
	assert_refused(&good, NULL, "TLS");
	assert_int_equal(tls_send(&auth, tls_auth, &res, &delivered, &err), 0);
	assert_int_equal(res, KR_SEND_OK);
	assert_int_equal(delivered, 1);
}

static int
group_setup(void **state)
{
	const char *root = getenv("KAIRAN_ROOT");

	(void)state;
	signal(SIGPIPE, SIG_DFL); /* the transport must cope on its own */
	snprintf(base, sizeof(base), "/tmp/kairan-smtp-XXXXXX");
	if (mkdtemp(base) == NULL)
		return -1;
	server_py = kr_xasprintf("%s/tests/integration/smtp_server.py",
	                         root != NULL ? root : ".");
	if (access(server_py, R_OK) != 0)
		return -1;
	return make_tls_material();
}

static int
group_teardown(void **state)
{
	char *cmd = kr_xasprintf("rm -rf '%s'", base);

	(void)state;
	if (getenv("KAIRAN_KEEP") == NULL && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
	free(cmd);
	free(server_py);
	free(ca_pem);
	free(other_ca_pem);
	free(srv_pem);
	free(srv_key);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_batch_outcomes),
	    cmocka_unit_test(test_smtp_drop_after_data_is_uncertain),
	    cmocka_unit_test(
	        test_smtp_drop_before_data_is_temp_and_hang_uncertain),
	    cmocka_unit_test(test_smtp_drop_mid_data_is_temp),
	    cmocka_unit_test(test_smtp_failover),
	    cmocka_unit_test(test_smtp_mail_from_refused_is_temp),
	    cmocka_unit_test(test_smtp_greeting_timeout_fails_over),
	    cmocka_unit_test(test_smtp_all_relays_down),
	    cmocka_unit_test(test_smtp_sets_tcp_nodelay),
	    cmocka_unit_test(test_smtp_one_write_per_message),
	    cmocka_unit_test(test_smtp_libesmtp_contract),
	    cmocka_unit_test(test_smtp_pipelined_mail),
	    cmocka_unit_test(test_smtp_relay_that_drops_pipelined_input),
	    cmocka_unit_test(test_smtp_refuses_command_injection),
	    cmocka_unit_test(test_smtp_out_of_step_never_sent),
	    cmocka_unit_test(test_smtp_stage_deadline),
	    cmocka_unit_test(test_smtp_refuses_plaintext_configs),
	    cmocka_unit_test(test_smtp_starttls_verified),
	    cmocka_unit_test(test_smtp_starttls_wrong_ca_refused),
	    cmocka_unit_test(test_smtp_starttls_wrong_name_refused),
	    cmocka_unit_test(test_smtp_starttls_not_offered_no_downgrade),
	    cmocka_unit_test(test_smtp_starttls_tls13_and_ahead),
	    cmocka_unit_test(test_smtp_starttls_injection_refused),
	    cmocka_unit_test(test_smtp_starttls_greeting_with_nul),
	    cmocka_unit_test(test_smtp_auth),
	    cmocka_unit_test(test_smtp_implicit_tls),
	    cmocka_unit_test(test_smtp_implicit_tls_refusals_and_auth),
	};
	int failed;

	/* Every test twice: against aiosmtpd as it is (no PIPELINING: the
	 * transport waits for each reply), then offering PIPELINING (the
	 * transport sends ahead of libesmtp, see pipe_ahead()). */
	if (getenv("KAIRAN_TEST_FILTER") != NULL) /* by hand: one test */
		cmocka_set_test_filter(getenv("KAIRAN_TEST_FILTER"));
	failed = cmocka_run_group_tests_name("transport_smtp", tests,
	                                     group_setup, group_teardown);
	pipelining_relays = true;
	failed += cmocka_run_group_tests_name("transport_smtp, PIPELINING relays",
	                                      tests, group_setup, group_teardown);
	return failed;
}
