/*
 * kv.c — the NATS C client (libnats) behind include/kv.h: the connection, buckets,
 * regional mirrors and writes (kv_read.c: the consumers and point reads). With kv_read.c
 * and kv_impl.h the only files that include <nats/nats.h>: publish and follow see
 * buckets, keys, values and stream sequences, never a NATS type. It must never touch
 * the registry.
 */
#include "kv_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* The caller's thread's: NATS's own threads (the ack handler) write into the bucket,
 * which kv_flush copies here. */
static __thread char last_error[256];

/* Cuts the userinfo out of every URL in s ("tls://u:p@h" -> "tls://h"), in place: no
 * text this module logs or returns may hold a password. */
static void cut_userinfo(char *s)
{
	for (char *p = strstr(s, "://"); p; p = strstr(p, "://")) {
		p += 3;
		size_t host = strcspn(p, "/ ,\"'@");
		if (p[host] != '@')
			continue;
		memmove(p, p + host + 1, strlen(p + host + 1) + 1);
	}
}

const char *kv_url_public(const char *url, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", url);
	cut_userinfo(buf);
	return buf;
}

/* Cuts libnats' "(conn.c:1905): " places out of s, in place: a user reads the reason. */
static void cut_source_places(char *s)
{
	for (char *p = strchr(s, '('); p; p = strchr(p, '(')) {
		size_t name = strspn(p + 1, "abcdefghijklmnopqrstuvwxyz_.");
		size_t line =
		        name > 2 && strncmp(p + 1 + name - 2, ".c", 2) == 0 && p[1 + name] == ':'
		                ? strspn(p + 2 + name, "0123456789")
		                : 0;
		const char *end = p + 2 + name + line;
		if (!line || strncmp(end, "): ", 3) != 0) {
			p++;
			continue;
		}
		memmove(p, end + 3, strlen(end + 3) + 1);
	}
}

/* Maps a NATS status to our codes, keeping its text for kv_strerror. */
int kv_fail(natsStatus s, const char *what)
{
	const char *detail = nats_GetLastError(NULL);
	snprintf(last_error, sizeof(last_error), "%s: %s%s%s", what, natsStatus_GetText(s),
	         detail && *detail ? ": " : "", detail ? detail : "");
	cut_userinfo(last_error);
	cut_source_places(last_error);
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_TIMEOUT:
		return -ETIMEDOUT;
	case NATS_NOT_FOUND:
		return -ENOENT;
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_NOT_PERMITTED:
		return -EACCES;
	case NATS_NOT_YET_CONNECTED:
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NO_SERVER:
	case NATS_STALE_CONNECTION:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

void kv_set_error(const char *text)
{
	snprintf(last_error, sizeof(last_error), "%s", text);
}

const char *kv_strerror(int err)
{
	if ((err == -EIO || err == -EREMOTEIO || err == -EACCES || err == -EINVAL) && last_error[0])
		return last_error;
	if (err == -ENOTCONN)
		return "NATS is unreachable";
	return strerror(-err);
}

/* ---- connection ---------------------------------------------------------------------- */

/* A lost connection is a warning (journalctl -p warning shows it); the rest is news. */
static void log_state(natsConnection *nc, const char *state)
{
	char url[256] = "";
	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	cut_userinfo(url);
	log_msg(strcmp(state, "disconnected") == 0 ? LOG_WARN : LOG_INFO,
	        "event=nats nats=%s url=%s", state, url[0] ? url : "-");
}

static void on_connected(natsConnection *nc, void *arg)
{
	(void)arg;
	log_state(nc, "connected");
}
static void on_disconnected(natsConnection *nc, void *arg)
{
	kv_conn_t *c = arg;
	pthread_mutex_lock(&c->mu);
	bool closing = c->closing;
	pthread_mutex_unlock(&c->mu);
	if (!closing)
		log_state(nc, "disconnected");
}
/* Closed: by kv_close, or by the library giving up (a server that refused the
 * credentials twice in a row: libnats then stops reconnecting, for good). */
static void on_closed(natsConnection *nc, void *arg)
{
	kv_conn_t *c = arg;
	const char *text = NULL;
	natsStatus s = natsConnection_GetLastError(nc, &text);
	char why[256];
	/* no server left: at the first connection libnats drops a server whose handshake
	 * failed (its text gone by now); later ones end so on the same refusal twice */
	snprintf(why, sizeof(why), "%s",
	         s == NATS_NO_SERVER
	                 ? "every server failed the handshake (credentials refused, TLS, a timeout)"
	         : text && *text ? text
	         : s != NATS_OK  ? natsStatus_GetText(s)
	                         : "closed");
	cut_userinfo(why);
	pthread_mutex_lock(&c->mu);
	if (!c->closing)
		snprintf(c->gave_up, sizeof(c->gave_up), "%s", why);
	c->closed = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}
static void on_reconnected(natsConnection *nc, void *arg)
{
	kv_conn_t *c = arg;
	__atomic_add_fetch(&c->reconnects, 1, __ATOMIC_RELAXED);
	log_state(nc, "reconnected");
}

/* Back-off between attempts: 100 ms doubling to 5 s (attempts restart at 1 after each
 * successful connection). */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *arg)
{
	(void)nc, (void)arg;
	int64_t ms = 100;
	for (int i = 1; i < attempts && ms < 5000; i++)
		ms *= 2;
	return ms < 5000 ? ms : 5000;
}

/* The server's asynchronous errors (a permissions violation: a subscribe or publish
 * this user may not make), on NATS's thread: kept for kv_denied and kv_flush, and each
 * new text logged once (a follower retrying would repeat it every few seconds). */
static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *arg)
{
	(void)sub;
	kv_conn_t *c = arg;
	const char *text = NULL;
	natsConnection_GetLastError(nc, &text);
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", text && *text ? text : natsStatus_GetText(err));
	cut_userinfo(msg);
	pthread_mutex_lock(&c->mu);
	bool news = err == NATS_NOT_PERMITTED && strcmp(c->denied, msg) != 0;
	if (news)
		snprintf(c->denied, sizeof(c->denied), "%s", msg);
	pthread_mutex_unlock(&c->mu);
	if (news)
		log_warn("event=nats nats=denied error=\"%s\"", msg);
	else if (err == NATS_CONNECTION_AUTH_FAILED) /* a reconnection's credentials refused */
		log_warn("event=nats nats=refused error=\"%s\"", msg);
	else if (err != NATS_NOT_PERMITTED)
		log_debug("event=nats nats=error error=\"%s\"", msg);
}

/* Whether the connection's message field (c->denied, c->gave_up) is set; its copy into
 * buf[cap] when buf is not NULL. */
static bool said(kv_conn_t *c, const char *field, char *buf, size_t cap)
{
	pthread_mutex_lock(&c->mu);
	bool set = field[0] != '\0';
	if (set && buf)
		snprintf(buf, cap, "%s", field);
	pthread_mutex_unlock(&c->mu);
	return set;
}

bool kv_denied(kv_conn_t *c, char *buf, size_t cap)
{
	return said(c, c->denied, buf, cap);
}

/* A secret's one line from path into buf[cap] (trailing white space cut). -EINVAL with
 * last_error naming the file (never its content). */
static int read_secret(const char *what, const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;
	int e = 0;
	if (!f) {
		e = errno;
	} else {
		n = fread(buf, 1, cap, f);
		if (ferror(f))
			e = errno ? errno : EIO;
		fclose(f);
	}
	if (!e && n == cap)
		snprintf(last_error, sizeof(last_error), "%s file %s: longer than %zu bytes", what,
		         path, cap - 1);
	else if (e)
		snprintf(last_error, sizeof(last_error), "%s file %s: %s", what, path, strerror(e));
	if (e || n == cap) {
		explicit_bzero(buf, cap);
		return -EINVAL;
	}
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
	             buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	if (n == 0 || memchr(buf, '\n', n)) {
		snprintf(last_error, sizeof(last_error), "%s file %s: %s", what, path,
		         n ? "more than one line" : "empty");
		explicit_bzero(buf, cap);
		return -EINVAL;
	}
	return 0;
}

/* The public key that goes with an nkey seed file: a line of it that is a user's public
 * key ("U" and 55 more of A-Z2-7, as nk -gen user -pubout prints after the seed). */
static int nkey_public(const char *path, char *pub, size_t cap)
{
	char buf[1024], *save = NULL;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(last_error, sizeof(last_error), "nkey file %s: %s", path, strerror(errno));
		return -EINVAL;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	int rc = -EINVAL;
	for (char *l = strtok_r(buf, " \t\r\n", &save); l; l = strtok_r(NULL, " \t\r\n", &save))
		if (l[0] == 'U' && strlen(l) == 56 &&
		    strspn(l, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == 56 && strlen(l) < cap) {
			snprintf(pub, cap, "%s", l);
			rc = 0;
		}
	explicit_bzero(buf, sizeof(buf));
	if (rc)
		snprintf(last_error, sizeof(last_error),
		         "nkey file %s: no user public key (U...) beside the seed: add the line "
		         "'nk -inkey %s -pubout' prints",
		         path, path);
	return rc;
}

/* Whether any of the URLs asks for TLS. */
static bool wants_tls(const kv_opts_t *o)
{
	for (size_t i = 0; i < o->nurls; i++)
		if (strncmp(o->urls[i], "tls://", 6) == 0)
			return true;
	return o->tls_ca || o->tls_cert;
}

/* Who we are, and TLS, into opts. -EINVAL (last_error says why) or a NATS failure. */
static int set_identity(natsOptions *opts, const kv_opts_t *o)
{
	int rc = 0;
	natsStatus s = NATS_OK;
	int ways = !!o->password_file + !!o->token_file + !!o->creds + !!o->nkey;
	if (ways > 1 || !o->user != !o->password_file || !o->tls_cert != !o->tls_key) {
		snprintf(last_error, sizeof(last_error), "%s",
		         ways > 1 ? "give one of a password, a token, a creds file, an nkey"
		         : !o->tls_cert != !o->tls_key
		                 ? "a client certificate and its key go together"
		                 : "a user and a password file go together");
		return -EINVAL;
	}
	if (wants_tls(o)) {
		s = natsOptions_SetSecure(opts, true);
		if (s == NATS_OK && o->tls_ca)
			s = natsOptions_LoadCATrustedCertificates(opts, o->tls_ca);
		if (s == NATS_OK && o->tls_cert)
			s = natsOptions_LoadCertificatesChain(opts, o->tls_cert, o->tls_key);
		if (s != NATS_OK)
			return kv_fail(s, "TLS");
	}
	if (o->password_file) {
		char pw[1024];
		if (!(rc = read_secret("password", o->password_file, pw, sizeof(pw))))
			s = natsOptions_SetUserInfo(opts, o->user, pw);
		explicit_bzero(pw, sizeof(pw));
	} else if (o->token_file) {
		char tok[1024];
		if (!(rc = read_secret("token", o->token_file, tok, sizeof(tok))))
			s = natsOptions_SetToken(opts, tok);
		explicit_bzero(tok, sizeof(tok));
	} else if (o->creds) {
		FILE *f = fopen(o->creds, "r"); /* libnats reads it at each connection: fail now */
		if (!f) {
			snprintf(last_error, sizeof(last_error), "creds file %s: %s", o->creds,
			         strerror(errno));
			return -EINVAL;
		}
		fclose(f);
		s = natsOptions_SetUserCredentialsFromFiles(opts, o->creds, NULL);
	} else if (o->nkey) {
		char pub[64];
		if (!(rc = nkey_public(o->nkey, pub, sizeof(pub))))
			s = natsOptions_SetNKeyFromSeed(opts, pub, o->nkey);
	}
	if (rc)
		return rc;
	return s == NATS_OK ? 0 : kv_fail(s, "credentials");
}

/* The options of a connection to o's servers as o's identity (TLS, credentials, time-outs;
 * no callbacks) into *out (natsOptions_Destroy). 0, -EINVAL or a NATS failure. */
static int base_opts(natsOptions **out, const kv_opts_t *o, bool forever)
{
	natsOptions *opts = NULL;
	int rc = 0;
	natsStatus s = natsOptions_Create(&opts);
	if (s == NATS_OK)
		s = natsOptions_SetServers(opts, (const char **)o->urls, (int)o->nurls);
	if (s == NATS_OK && (rc = set_identity(opts, o))) {
		natsOptions_Destroy(opts);
		return rc;
	}
	/* publish tries the servers in the order given (after a node is lost, the next
	 * one); followers spread over them as the library picks */
	if (s == NATS_OK && !forever)
		s = natsOptions_SetNoRandomize(opts, true);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(opts, 2000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(opts, forever ? -1 : 2);
	if (s == NATS_OK)
		s = natsOptions_SetCustomReconnectDelay(opts, reconnect_delay, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(opts, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(opts, 3);
	if (s != NATS_OK) {
		natsOptions_Destroy(opts);
		return kv_fail(s, "options");
	}
	*out = opts;
	return 0;
}

/* A follower's first connection, tried once in the foreground on options of its own:
 * -EACCES (kv_strerror: the server's reason) when a server refuses the credentials, 0
 * otherwise (connected, or not reachable now: the background attempts take it from
 * there). libnats' own first attempt in the background, when a handshake fails, drops
 * the server and closes the connection for good, its reason lost (kv_gave_up). */
static int probe(const kv_opts_t *o)
{
	natsOptions *once = NULL;
	natsConnection *nc = NULL;
	int rc = base_opts(&once, o, true);
	if (rc)
		return rc;
	natsStatus s = natsConnection_Connect(&nc, once);
	if (s == NATS_CONNECTION_AUTH_FAILED)
		rc = kv_fail(s, "connect") ? -EACCES : 0;
	natsConnection_Destroy(nc);
	natsOptions_Destroy(once);
	return rc;
}

int kv_connect_opts(kv_conn_t **out, const kv_opts_t *o, bool forever)
{
	kv_conn_t *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	natsStatus s = NATS_OK;
	int rc = base_opts(&c->opts, o, forever);
	if (!rc && forever)
		rc = probe(o);
	if (rc)
		goto refused;
	if (s == NATS_OK && forever)
		s = natsOptions_SetRetryOnFailedConnect(c->opts, true, on_connected, NULL);
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(c->opts, on_disconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(c->opts, on_reconnected, c);
	if (s == NATS_OK)
		s = natsOptions_SetClosedCB(c->opts, on_closed, c);
	if (s == NATS_OK)
		s = natsOptions_SetErrorHandler(c->opts, on_error, c);
	if (s == NATS_OK)
		s = natsConnection_Connect(&c->nc, c->opts);
	if (s == NATS_NOT_YET_CONNECTED && forever) {
		char url[256];
		log_info("event=nats nats=connecting url=%s",
		         kv_url_public(o->urls[0], url, sizeof(url)));
		s = NATS_OK;
	} else if (s == NATS_OK) {
		log_state(c->nc, "connected");
	}
	if (s != NATS_OK)
		rc = kv_fail(s, "connect");
	if (!rc) {
		*out = c;
		return 0;
	}
refused:
	kv_close(c);
	return rc;
}

int kv_connect(kv_conn_t **out, const char *const *urls, size_t n, bool forever)
{
	kv_opts_t o = {.urls = urls, .nurls = n};
	return kv_connect_opts(out, &o, forever);
}

uint64_t kv_reconnects(kv_conn_t *c)
{
	return __atomic_load_n(&c->reconnects, __ATOMIC_RELAXED);
}

bool kv_gave_up(kv_conn_t *c, char *buf, size_t cap)
{
	return said(c, c->gave_up, buf, cap);
}

bool kv_connected(kv_conn_t *c)
{
	return natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

void kv_close(kv_conn_t *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_mutex_unlock(&c->mu);
	if (c->nc) {
		natsConnection_Close(c->nc);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		pthread_mutex_lock(&c->mu);
		while (!c->closed && pthread_cond_timedwait(&c->cv, &c->mu, &until) == 0)
			;
		bool closed = c->closed;
		pthread_mutex_unlock(&c->mu);
		natsConnection_Destroy(c->nc);
		if (!closed)
			return; /* a callback may still come: leave c to it rather than free it */
	}
	natsOptions_Destroy(c->opts);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

/* ---- bucket ---------------------------------------------------------------------------- */

static bool is_delete(natsMsg *m)
{
	const char *op = NULL;
	return natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op;
}

/* Every asynchronous write's answer, on NATS's thread: counts the acknowledged ones and
 * keeps the first failure's reason in the bucket (the caller's thread reads it in
 * kv_flush). A JetStream error code is the server refusing the write itself (a value
 * past the bucket's size limit, say): sending it again gets the same answer, unlike a
 * lost answer (no responders, a stream leader being elected). */
static void on_pub_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *arg)
{
	(void)js;
	kv_bucket_t *b = arg;
	pthread_mutex_lock(&b->mutex);
	if (pa) {
		is_delete(m) ? b->deletes++ : b->puts++;
	} else if (pae && b->failed++ == 0) {
		const char *subj = natsMsg_GetSubject(m), *key = subj ? subj : "?";
		size_t plen = strlen(b->prefix);
		if (subj && strncmp(subj, b->prefix, plen) == 0)
			key = subj + plen;
		b->refused = pae->ErrCode != 0 && pae->ErrCode != JSClusterNotAvailErr;
		snprintf(b->error, sizeof(b->error), "the %s of key %.100s was %s: %s",
		         is_delete(m) ? "delete" : "put", key,
		         b->refused ? "refused" : "not stored",
		         pae->ErrText && *pae->ErrText ? pae->ErrText
		                                       : natsStatus_GetText(pae->Err));
	}
	pthread_mutex_unlock(&b->mutex);
	natsMsg_Destroy(m);
}

int kv_bucket_open(kv_conn_t *c, const char *name, int replicas, long ack_wait_ms,
                   kv_bucket_t **out)
{
	if (strlen(name) == 0 || strlen(name) >= 64 || strpbrk(name, ".*> \t"))
		return -EINVAL;
	kv_bucket_t *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->c = c;
	b->ack_wait_ms = ack_wait_ms > 0 ? ack_wait_ms : KV_ACK_WAIT_MS;
	snprintf(b->name, sizeof(b->name), "%s", name);
	snprintf(b->stream, sizeof(b->stream), "KV_%s", name);
	snprintf(b->prefix, sizeof(b->prefix), "$KV.%s.", name);
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = 5000;
	o.PublishAsync.MaxPending = 4096;
	o.PublishAsync.StallWait = b->ack_wait_ms; /* a busy server slows a big publish */
	o.PublishAsync.AckHandler = on_pub_ack;
	o.PublishAsync.AckHandlerClosure = b;
	if (c->domain[0])
		o.Domain = c->domain;
	kvStore *kv = NULL;
	pthread_mutex_init(&b->mutex, NULL);
	natsStatus s = natsConnection_JetStream(&b->js, c->nc, &o);
	if (s == NATS_OK)
		s = js_KeyValue(&kv, b->js, name);
	if (s == NATS_NOT_FOUND && replicas > 0) {
		kvConfig cfg;
		kvConfig_Init(&cfg);
		cfg.Bucket = name;
		cfg.History = 1;
		cfg.Replicas = replicas;
		cfg.StorageType = js_FileStorage;
		s = js_CreateKeyValue(&kv, b->js, &cfg);
		if (s == NATS_OK)
			log_info("event=bucket status=created name=%s replicas=%d", name, replicas);
	}
	kvStore_Destroy(kv);
	if (s != NATS_OK) {
		int rc = kv_fail(s, "bucket");
		kv_bucket_close(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* Buckets whose writes' answers never all came (kv_bucket_close): kept, and reachable, for
 * the life of the process, since a late answer may still run on_pub_ack with one. */
static pthread_mutex_t left_mu = PTHREAD_MUTEX_INITIALIZER;
static kv_bucket_t *left;

void kv_bucket_close(kv_bucket_t *b)
{
	if (!b)
		return;
	/* answers to asynchronous writes still outstanding (a failed publish stops early) run
	 * on_pub_ack with b on NATS's thread: wait for them (at most 5 s, and no longer than
	 * --ack-wait), and if some never come, leave b to a late one rather than free it
	 * under it (as kv_close leaves c) */
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = b->ack_wait_ms < 5000 ? b->ack_wait_ms : 5000;
	bool idle = !b->js || js_PublishAsyncComplete(b->js, &po) == NATS_OK;
	jsCtx_Destroy(b->js);
	if (!idle) {
		pthread_mutex_lock(&left_mu);
		b->left_next = left;
		left = b;
		pthread_mutex_unlock(&left_mu);
		return;
	}
	pthread_mutex_destroy(&b->mutex);
	free(b);
}

int kv_bucket_delete(kv_conn_t *c, const char *name)
{
	jsCtx *js = NULL;
	natsStatus s = natsConnection_JetStream(&js, c->nc, NULL);
	if (s == NATS_OK)
		s = js_DeleteKeyValue(js, name);
	jsCtx_Destroy(js);
	return s == NATS_OK ? 0 : kv_fail(s, "delete bucket");
}

static int stream_info(kv_bucket_t *b, jsStreamInfo **si)
{
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(si, b->js, b->stream, NULL, &jerr);
	if (s == NATS_OK)
		return 0;
	if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
		return kv_fail(NATS_NOT_FOUND, "stream info");
	return kv_fail(s, "stream info");
}

/* ---- regional mirrors -------------------------------------------------------------------- */

bool kv_name_valid(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

int kv_set_domain(kv_conn_t *c, const char *domain)
{
	if (!domain || !*domain) {
		c->domain[0] = '\0';
		return 0;
	}
	if (!kv_name_valid(domain, sizeof(c->domain) - 1))
		return -EINVAL;
	snprintf(c->domain, sizeof(c->domain), "%s", domain);
	return 0;
}

/* The identity (creation time) of the stream that si, a mirror, mirrors: asked once per
 * bucket, through the API prefix the mirror itself reaches it by (the hub's domain). A
 * hub out of reach leaves it unknown for this bucket's life rather than waiting for it
 * at every kv_info. */
static void mirror_origin(kv_bucket_t *b, const jsStreamInfo *si)
{
	const jsStreamSource *m = si->Config ? si->Config->Mirror : NULL;
	if (b->origin_asked || !m || !m->Name)
		return;
	b->origin_asked = true;
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = 2000;
	if (m->External && m->External->APIPrefix && *m->External->APIPrefix)
		o.Prefix = m->External->APIPrefix;
	else if (b->c->domain[0])
		o.Domain = b->c->domain;
	jsCtx *js = NULL;
	jsStreamInfo *osi = NULL;
	jsErrCode jerr = 0;
	natsStatus s = natsConnection_JetStream(&js, b->c->nc, &o);
	if (s == NATS_OK)
		s = js_GetStreamInfo(&osi, js, m->Name, NULL, &jerr);
	if (s == NATS_OK)
		snprintf(b->origin, sizeof(b->origin), "%" PRId64, osi->Created);
	log_info("event=mirror mirror=%s of=%s api=%s origin=%s", b->stream, m->Name,
	         o.Prefix ? o.Prefix : "-", b->origin[0] ? b->origin : "unreachable");
	jsStreamInfo_Destroy(osi);
	jsCtx_Destroy(js);
}

int kv_mirror_create(kv_conn_t *c, const char *name, const char *from, int replicas)
{
	if (!kv_name_valid(name, 63) || !kv_name_valid(from, 63) || replicas < 1 || replicas > 5)
		return -EINVAL;
	char stream[72], api[96];
	snprintf(stream, sizeof(stream), "KV_%s", name);
	snprintf(api, sizeof(api), "$JS.%s.API", from);
	jsOptions o;
	jsOptions_Init(&o);
	o.Wait = 5000;
	if (c->domain[0])
		o.Domain = c->domain;
	jsExternalStream ext = {.APIPrefix = api, .DeliverPrefix = ""}; /* libnats: not NULL */
	jsStreamSource src = {.Name = stream, .External = &ext};
	jsStreamConfig cfg;
	jsStreamConfig_Init(&cfg);
	cfg.Name = stream;
	cfg.Mirror = &src;
	cfg.MaxMsgsPerSubject = 1; /* as the hub's: history 1 */
	cfg.Storage = js_FileStorage;
	cfg.Replicas = replicas;
	cfg.Discard = js_DiscardNew;
	cfg.AllowRollup = true;
	cfg.DenyDelete = true;
	cfg.AllowDirect = true;
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = natsConnection_JetStream(&js, c->nc, &o);
	if (s == NATS_OK)
		s = js_AddStream(&si, js, &cfg, NULL, &jerr);
	int rc = 0;
	if (s == NATS_OK) {
		log_info("event=mirror status=created name=%s from=%s replicas=%d", name, from,
		         replicas);
	} else if (jerr == JSStreamNameExistErr &&
	           js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK) {
		const jsStreamSource *m = si->Config ? si->Config->Mirror : NULL;
		const char *p = m && m->External ? m->External->APIPrefix : NULL;
		if (!m || !m->Name || strcmp(m->Name, stream) != 0 || !p || strcmp(p, api) != 0) {
			if (!m)
				snprintf(
				        last_error, sizeof(last_error),
				        "bucket %s exists here and is no mirror (is this the hub?)",
				        name);
			else
				snprintf(last_error, sizeof(last_error),
				         "bucket %s exists and mirrors %s through %s, not domain "
				         "%s's",
				         name, m->Name ? m->Name : "?", p ? p : "its own domain",
				         from);
			rc = -EIO;
		} /* else the mirror is there, only configured otherwise (replicas): keep it */
	} else {
		rc = kv_fail(s, "create mirror");
	}
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	return rc;
}

int kv_info(kv_bucket_t *b, kv_info_t *out)
{
	jsStreamInfo *si;
	int rc = stream_info(b, &si);
	if (rc)
		return rc;
	snprintf(out->id, sizeof(out->id), "%" PRId64, si->Created);
	out->first = si->State.FirstSeq;
	out->last = si->State.LastSeq;
	out->msgs = si->State.Msgs;
	mirror_origin(b, si);
	snprintf(out->origin, sizeof(out->origin), "%s", b->origin);
	jsStreamInfo_Destroy(si);
	return 0;
}

/* ---- writes ------------------------------------------------------------------------------ */

int kv_subject(kv_bucket_t *b, const char *key, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s%s", b->prefix, key);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int kv_put(kv_bucket_t *b, const char *key, const char *value, size_t len)
{
	char subj[512];
	int rc = kv_subject(b, key, subj, sizeof(subj));
	if (rc)
		return rc;
	natsStatus s = js_PublishAsync(b->js, subj, value, (int)len, NULL);
	return s == NATS_OK ? 0 : kv_fail(s, "put");
}

int kv_delete(kv_bucket_t *b, const char *key)
{
	char subj[512];
	natsMsg *m = NULL;
	int rc = kv_subject(b, key, subj, sizeof(subj));
	if (rc)
		return rc;
	natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
	if (s == NATS_OK)
		s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
	if (s == NATS_OK)
		s = js_PublishMsgAsync(b->js, &m, NULL);
	natsMsg_Destroy(m);
	return s == NATS_OK ? 0 : kv_fail(s, "delete");
}

int kv_flush(kv_bucket_t *b)
{
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = b->ack_wait_ms;
	natsStatus s = js_PublishAsyncComplete(b->js, &po);
	pthread_mutex_lock(&b->mutex);
	int failed = b->failed;
	bool refused = b->refused;
	if (failed == 1)
		snprintf(last_error, sizeof(last_error), "%s", b->error);
	else if (failed)
		snprintf(last_error, sizeof(last_error), "%.200s (%d writes failed in all)",
		         b->error, failed);
	b->failed = 0;
	b->refused = false;
	pthread_mutex_unlock(&b->mutex);
	if (failed) /* the server's answer says more than a timeout waiting for the rest */
		return refused ? -EREMOTEIO : -EIO;
	if (s == NATS_OK)
		return 0;
	/* a publish NATS denies this user is dropped without an answer: say so rather than
	 * that the server is slow */
	char denied[256];
	if (kv_denied(b->c, denied, sizeof(denied))) {
		snprintf(last_error, sizeof(last_error), "NATS denies this user the write: %.200s",
		         denied);
		return -EACCES;
	}
	return kv_fail(s, "waiting for acknowledgements");
}

void kv_acked(kv_bucket_t *b, uint64_t *puts, uint64_t *deletes)
{
	pthread_mutex_lock(&b->mutex);
	*puts = b->puts;
	*deletes = b->deletes;
	pthread_mutex_unlock(&b->mutex);
}
