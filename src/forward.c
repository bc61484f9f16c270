/* forward.c — placeholder until the forwarding issue lands: every query is refused
 * here, so the server answers SERVFAIL. */
#include "forward.h"

#include <errno.h>

int fwd_create(fwd_t **out, uv_loop_t *loop, const fwd_conf_t *conf)
{
	(void)out, (void)loop, (void)conf;
	return -ENOSYS;
}

int fwd_query(fwd_t *f, const uint8_t *pkt, size_t len, size_t max, bool tcp, fwd_done_fn done,
	      void *arg)
{
	(void)f, (void)pkt, (void)len, (void)max, (void)tcp, (void)done, (void)arg;
	return -EINVAL;
}

void fwd_close(fwd_t *f)
{
	(void)f;
}
