/* base64.c - decoding of both alphabets (base64.h): the standard one (RFC 4648 4) for
 * Sec-WebSocket-Key, the URL-safe one (RFC 4648 5) for JWTs. Moved from jwt.c and http.c, which
 * had a copy each. Encoding is OpenSSL's EVP_EncodeBlock (standard alphabet, padded). */
#include "base64.h"

int
base64_sextet(unsigned char c, enum base64_alphabet a)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (a == BASE64_URL ? '-' : '+'))
		return 62;
	if (c == (a == BASE64_URL ? '_' : '/'))
		return 63;
	return -1;
}

int
base64_decode_unpadded(const char *in, size_t n, enum base64_alphabet a, uint8_t *out, size_t outsz,
                       size_t *outlen)
{
	size_t i, o = 0, tail = n % 4, need;
	uint32_t acc = 0;
	int v, bits = 0;

	*outlen = 0;
	if (tail == 1)
		return -1; /* 6 bits cannot make a byte */
	need = n / 4 * 3 + (tail == 0 ? 0 : tail - 1);
	if (need > outsz)
		return -1;
	for (i = 0; i < n; i++) {
		if ((v = base64_sextet((unsigned char)in[i], a)) < 0)
			return -1; /* includes '=' */
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero: one encoding per byte string. */
	if (acc != 0)
		return -1;
	*outlen = o;
	return 0;
}
