/*
 * nkeytool — the sync suite's NATS identities, so that --nkey and --creds are tried
 * against a real nats-server without the nk and nsc tools:
 *   nkeytool gen user|account|operator   a new key pair: its seed, then its public key,
 *                                        one a line (as nk -gen user -pubout prints them)
 *   nkeytool pub SEEDFILE                the public key of the seed in SEEDFILE
 *   nkeytool jwt SEEDFILE SUBJECT NAME NATS
 *                                        a JWT for SUBJECT (a public key) named NAME, its
 *                                        "nats" claim the JSON object NATS, issued and
 *                                        signed by the key of SEEDFILE
 * An nkey is base32 (RFC 4648, no padding) of a prefix, the 32 bytes of an ed25519 key and
 * a CRC-16 (XMODEM, little-endian) of what precedes it; a seed's two prefix bytes carry
 * 'S' and the type. A NATS JWT is header.claims.signature in base64url without padding,
 * signed with ed25519 ("alg":"ed25519-nkey"). Seeds are read from files, never argv.
 * Test code: it exits on the first failure, with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define PREFIX_SEED     (18 << 3)
#define PREFIX_OPERATOR (14 << 3)
#define PREFIX_ACCOUNT  0
#define PREFIX_USER     (20 << 3)

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static void die(const char *what)
{
	fprintf(stderr, "nkeytool: %s\n", what);
	exit(1);
}

static uint16_t crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0;
	while (n--) {
		crc ^= (uint16_t)(*p++ << 8);
		for (int i = 0; i < 8; i++)
			crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

/* raw[n] (the CRC appended here: raw has room for 2 more) as an nkey into out */
static void encode(uint8_t *raw, size_t n, char *out)
{
	uint16_t crc = crc16(raw, n);
	raw[n++] = crc & 0xff;
	raw[n++] = crc >> 8;
	unsigned acc = 0, bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | raw[i];
		for (bits += 8; bits >= 5; bits -= 5)
			*out++ = B32[acc >> (bits - 5) & 31];
	}
	if (bits)
		*out++ = B32[acc << (5 - bits) & 31];
	*out = '\0';
}

/* The 32-byte ed25519 seed of an encoded seed "S..."; its type's prefix into *type. */
static void decode_seed(const char *s, uint8_t seed[32], uint8_t *type)
{
	uint8_t raw[40];
	size_t n = 0;
	unsigned acc = 0, bits = 0;
	if (strlen(s) != 58)
		die("a seed is 58 characters");
	for (const char *c = s; *c; c++) {
		const char *at = strchr(B32, *c);
		if (!at)
			die("a seed is base32");
		acc = acc << 5 | (unsigned)(at - B32);
		if ((bits += 5) >= 8) {
			raw[n++] = (uint8_t)(acc >> (bits - 8));
			bits -= 8;
		}
	}
	if (n != 36 || (raw[0] & 0xf8) != PREFIX_SEED)
		die("not an nkey seed");
	if (crc16(raw, 34) != (raw[34] | raw[35] << 8))
		die("the seed's checksum is wrong");
	*type = (uint8_t)((raw[0] & 7) << 5 | raw[1] >> 3);
	memcpy(seed, raw + 2, 32);
}

static EVP_PKEY *key_of(const uint8_t seed[32])
{
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
	if (!k)
		die("openssl refuses the ed25519 key");
	return k;
}

static void public_of(EVP_PKEY *k, uint8_t type, char *out)
{
	uint8_t raw[35];
	size_t len = 32;
	raw[0] = type;
	if (EVP_PKEY_get_raw_public_key(k, raw + 1, &len) != 1 || len != 32)
		die("no ed25519 public key");
	encode(raw, 33, out);
}

/* The seed in file path: its first word that starts with 'S'. */
static void read_seed(const char *path, uint8_t seed[32], uint8_t *type)
{
	char buf[4096], *save = NULL;
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot read the seed file");
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (char *w = strtok_r(buf, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save))
		if (w[0] == 'S' && strlen(w) == 58) {
			decode_seed(w, seed, type);
			return;
		}
	die("no seed in the seed file");
}

/* base64url without padding of in[n] into out (room for 4 * n / 3 + 4) */
static void b64url(const uint8_t *in, size_t n, char *out)
{
	int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	while (len && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *c = out; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

static void jwt(const char *seedfile, const char *sub, const char *name, const char *nats)
{
	uint8_t seed[32], type;
	char iss[64], jti[64];
	read_seed(seedfile, seed, &type);
	EVP_PKEY *k = key_of(seed);
	public_of(k, type, iss);
	/* jti: a unique id of the claims (nats-server does not check how it is made) */
	uint8_t raw[34];
	RAND_bytes(raw, 32);
	encode(raw, 32, jti);
	size_t cap = strlen(nats) + strlen(name) + 512;
	char *claims = malloc(cap), *enc = malloc(cap * 2), *hdr = malloc(128);
	if (!claims || !enc || !hdr)
		die("out of memory");
	snprintf(claims, cap,
	         "{\"jti\":\"%s\",\"iat\":%lld,\"iss\":\"%s\",\"name\":\"%s\",\"sub\":\"%s\","
	         "\"nats\":%s}",
	         jti, (long long)time(NULL), iss, name, sub, nats);
	static const char h[] = "{\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}";
	b64url((const uint8_t *)h, strlen(h), hdr);
	size_t hl = strlen(hdr);
	memcpy(enc, hdr, hl);
	enc[hl] = '.';
	b64url((const uint8_t *)claims, strlen(claims), enc + hl + 1);
	uint8_t sig[64];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) != 1 ||
	    EVP_DigestSign(ctx, sig, &siglen, (const uint8_t *)enc, strlen(enc)) != 1)
		die("ed25519 signing failed");
	char sigtxt[100];
	b64url(sig, siglen, sigtxt);
	printf("%s.%s\n", enc, sigtxt);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	free(claims);
	free(enc);
	free(hdr);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "gen") == 0) {
		uint8_t type = strcmp(argv[2], "user") == 0       ? PREFIX_USER
		               : strcmp(argv[2], "account") == 0  ? PREFIX_ACCOUNT
		               : strcmp(argv[2], "operator") == 0 ? PREFIX_OPERATOR
		                                                  : 1;
		if (type == 1)
			die("gen: user, account or operator");
		uint8_t raw[36];
		char seedtxt[64], pub[64];
		if (RAND_bytes(raw + 2, 32) != 1)
			die("no random bytes");
		EVP_PKEY *k = key_of(raw + 2);
		public_of(k, type, pub);
		EVP_PKEY_free(k);
		raw[0] = (uint8_t)(PREFIX_SEED | type >> 5);
		raw[1] = (uint8_t)((type & 31) << 3);
		encode(raw, 34, seedtxt);
		printf("%s\n%s\n", seedtxt, pub);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "pub") == 0) {
		uint8_t seed[32], type;
		char pub[64];
		read_seed(argv[2], seed, &type);
		EVP_PKEY *k = key_of(seed);
		public_of(k, type, pub);
		EVP_PKEY_free(k);
		printf("%s\n", pub);
		return 0;
	}
	if (argc == 6 && strcmp(argv[1], "jwt") == 0) {
		jwt(argv[2], argv[3], argv[4], argv[5]);
		return 0;
	}
	fputs("usage: nkeytool gen user|account|operator | pub SEEDFILE | "
	      "jwt SEEDFILE SUBJECT NAME NATS-JSON\n",
	      stderr);
	return 2;
}
