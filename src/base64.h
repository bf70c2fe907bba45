/* base64.h - pure base64 decoding for both alphabets; encoding is OpenSSL's EVP_EncodeBlock. */
#ifndef WSGATE_BASE64_H
#define WSGATE_BASE64_H

#include <stddef.h>
#include <stdint.h>

enum base64_alphabet {
	BASE64_STD = 0, /* A-Z a-z 0-9 + / (RFC 4648 4) */
	BASE64_URL,     /* A-Z a-z 0-9 - _ (RFC 4648 5) */
};

/* The 6-bit value of c in alphabet a, or -1 ('=' included). */
int base64_sextet(unsigned char c, enum base64_alphabet a);

/* Unpadded base64 of alphabet a into out: -1 on a character outside the alphabet (so on any
 * '='), a length no encoding has, output larger than outsz, or non-zero leftover bits (one
 * encoding per byte string); else 0 and *outlen. */
int base64_decode_unpadded(const char *in, size_t n, enum base64_alphabet a, uint8_t *out,
                           size_t outsz, size_t *outlen);

#endif
