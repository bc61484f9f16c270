/*
 * kvtool — the sync suite's and bench/sync's view of a bucket, through kv.h only:
 *   kvtool URL BUCKET dump            every key's value, "KEY VALUE" (history 1: the stream, whole)
 *   kvtool URL BUCKET put KEY VALUE   a raw value, bypassing publish's validation
 *   kvtool URL BUCKET del KEY
 *   kvtool URL BUCKET rm              delete the bucket
 *   kvtool URL BUCKET seq             the stream's last sequence
 * The environment's KVTOOL_TLS_CA (a CA file: TLS), KVTOOL_USER and KVTOOL_PASSWORD_FILE,
 * KVTOOL_NKEY (a seed file) or KVTOOL_CREDS (a creds file) say how to reach a secured server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "log.h"

int main(int argc, char **argv)
{
	if (argc < 4) {
		fputs("usage: kvtool URL BUCKET dump|put KEY VALUE|del KEY|rm|seq\n", stderr);
		return 2;
	}
	const char *url = argv[1], *bucket = argv[2], *cmd = argv[3];
	kv_conn_t *c = NULL;
	kv_bucket_t *b = NULL;
	log_set_level(LOG_WARN);
	kv_opts_t o = {.urls = &url,
	               .nurls = 1,
	               .tls_ca = getenv("KVTOOL_TLS_CA"),
	               .user = getenv("KVTOOL_USER"),
	               .password_file = getenv("KVTOOL_PASSWORD_FILE"),
	               .nkey = getenv("KVTOOL_NKEY"),
	               .creds = getenv("KVTOOL_CREDS")};
	int rc = kv_connect_opts(&c, &o, false);
	if (!rc && strcmp(cmd, "rm") == 0)
		rc = kv_bucket_delete(c, bucket);
	else if (!rc)
		rc = kv_bucket_open(c, bucket, strcmp(cmd, "put") == 0 ? 1 : 0, 0, &b);
	if (!rc && strcmp(cmd, "put") == 0 && argc == 6) {
		rc = kv_put(b, argv[4], argv[5], strlen(argv[5]));
		if (!rc)
			rc = kv_flush(b);
	} else if (!rc && strcmp(cmd, "del") == 0 && argc == 5) {
		rc = kv_delete(b, argv[4]);
		if (!rc)
			rc = kv_flush(b);
	} else if (!rc && strcmp(cmd, "seq") == 0) {
		kv_info_t info;
		if (!(rc = kv_info(b, &info)))
			printf("%llu\n", (unsigned long long)info.last);
	} else if (!rc && strcmp(cmd, "dump") == 0) {
		kv_info_t info;
		kv_sub_t *s;
		kv_msg_t m;
		if (!(rc = kv_info(b, &info)) && info.msgs &&
		    !(rc = kv_sub_open_pull(b, 1, 5000, &s))) {
			do {
				if ((rc = kv_sub_next(s, 10000, &m)))
					break;
				if (m.op == KV_PUT)
					printf("%s %.*s\n", m.key, (int)m.len, m.value);
			} while (m.pending);
			kv_sub_close(s);
		}
	}
	if (rc)
		fprintf(stderr, "kvtool: %s: %s\n", cmd, kv_strerror(rc));
	kv_bucket_close(b);
	kv_close(c);
	return rc ? 1 : 0;
}
