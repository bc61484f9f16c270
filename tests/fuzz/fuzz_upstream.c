/* fuzz_upstream — what an upstream (or anyone spoofing one) sends back: the input is a
 * client query and an answer; validation and relaying must never read or write out of
 * bounds, and a relayed answer never exceeds what the client takes. The answer also goes
 * through the cache's insert path and back out of it: what the cache keeps and writes
 * back stays within the message and what the client takes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[65536];
	if (size < 2)
		return 0;
	size_t qlen = data[0] % (size - 1);
	const uint8_t *pkt = data + 1, *resp = data + 1 + qlen;
	size_t rlen = size - 1 - qlen;
	wire_query_t q;
	if (wire_parse_query(pkt, qlen, &q) != WIRE_OK)
		return 0;
	uint16_t id = rlen >= 2 ? (uint16_t)(resp[0] << 8 | resp[1]) : 0;
	if (!wire_answers(&q, id, resp, rlen))
		return 0;
	size_t max = 512 + (data[0] & 0x80 ? 720 : 0);
	size_t n = wire_relay(pkt, &q, resp, rlen, max, out);
	if (n > max && n != rlen)
		abort();
	if (n > max && rlen > max)
		abort();
	static cache_t *cache;
	static uint64_t now = 1000000;
	cache_conf_t conf = {.max_bytes = CACHE_MIN_BYTES,
	                     .max_ttl = 86400,
	                     .neg_max_ttl = 3600,
	                     .stale_ttl = 86400};
	if (!cache && cache_create(&cache, &conf))
		abort();
	now += 1000;
	if (cache_insert(cache, &q, resp, rlen, now) == 0) {
		size_t len = 0;
		int r = cache_lookup(cache, pkt, &q, max, now, false, out, sizeof(out), &len);
		if (r == CACHE_MISS || len > max || (len > rlen && len != q.question_end))
			abort();
	}
	return 0;
}
