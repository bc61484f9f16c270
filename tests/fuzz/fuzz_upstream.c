/* fuzz_upstream — what an upstream (or anyone spoofing one) sends back: the input is a
 * client query and an answer; validation and relaying must never read or write out of
 * bounds, and a relayed answer never exceeds what the client takes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	return 0;
}
