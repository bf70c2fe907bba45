/* jwt.h - pure JSON Web Tokens (JWS compact serialization, RFC 7515/7519): base64url, a small
 * JSON reader for the header and claims objects, HS256/RS256/ES256 checks with OpenSSL. */
#ifndef WSGATE_JWT_H
#define WSGATE_JWT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define JWT_MAX_TOKEN 8192    /* bytes of the compact form; the request head is 8 KiB anyway */
#define JWT_MAX_CLAIMS 64     /* top-level members of the claims object */
#define JWT_MAX_HEADER 16     /* members of the JOSE header */
#define JWT_MAX_SIG 1024      /* RSA up to 8192 bits */
#define JWT_JSON_MAX_DEPTH 16 /* nesting of skipped objects and arrays */

enum jwt_alg {
	JWT_ALG_UNKNOWN = 0, /* anything we do not implement: refused */
	JWT_ALG_NONE,        /* "none": always refused */
	JWT_ALG_HS256,
	JWT_ALG_RS256,
	JWT_ALG_ES256,
};

enum jwt_status {
	JWT_OK = 0,
	JWT_ERR_FORMAT = -1,    /* not three base64url parts */
	JWT_ERR_JSON = -2,      /* header or claims are not a JSON object we accept */
	JWT_ERR_ALG = -3,       /* alg none, unknown, or not the kind of key configured */
	JWT_ERR_SIGNATURE = -4, /* the signature does not verify */
	JWT_ERR_EXPIRED = -5,   /* now >= exp */
	JWT_ERR_NOT_YET = -6,   /* now < nbf */
	JWT_ERR_TOO_LARGE = -7, /* token, signature or claim count above the limits */
	JWT_ERR_KEY = -8,       /* the configured key cannot be used (internal error) */
};

enum jwt_type { JWT_STRING = 0, JWT_NUMBER, JWT_TRUE, JWT_FALSE, JWT_NULL, JWT_OBJECT, JWT_ARRAY };

/* One member of a JSON object. Strings are unescaped (UTF-8, may hold NUL), numbers are their
 * JSON text; both NUL-terminated. val is NULL for true/false/null and nested values. */
struct jwt_claim {
	const char *name;
	size_t name_len;
	enum jwt_type type;
	const char *val;
	size_t val_len;
};

/* A parsed token. Large (about 20 KiB): lives on the stack of one handshake. */
struct jwt {
	enum jwt_alg alg;
	struct jwt_claim claims[JWT_MAX_CLAIMS];
	size_t nclaims;
	int has_exp, has_nbf;
	int64_t exp, nbf;          /* seconds since the epoch, fractions dropped */
	const char *signing_input; /* "header.payload" inside the caller's token */
	size_t signing_input_len;
	uint8_t sig[JWT_MAX_SIG];
	size_t sig_len;
	char text[JWT_MAX_TOKEN]; /* unescaped names and values */
	size_t text_len;
	uint8_t raw[JWT_MAX_TOKEN]; /* base64url-decoded JSON being read */
};

/* What a route verifies with: an HMAC secret and/or one public key (RSA for RS256, EC P-256 for
 * ES256). The token's alg must match one of them: no alg confusion. */
struct jwt_key {
	const uint8_t *secret; /* NULL: HS256 refused */
	size_t secret_len;
	EVP_PKEY *pkey;        /* NULL: RS256/ES256 refused; not owned */
	enum jwt_alg pkey_alg; /* JWT_ALG_RS256 or JWT_ALG_ES256, from jwt_key_alg() */
};

/* Splits and decodes tok[0..n) into t (header alg, claims, signature); checks nothing against
 * a key or the clock. The signing input points into tok, which must outlive t's use. */
enum jwt_status jwt_parse(const char *tok, size_t n, struct jwt *t)
    __attribute__((warn_unused_result));

/* Checks t's signature with key. JWT_OK only for a known alg matching the key kind. */
enum jwt_status jwt_verify(const struct jwt *t, const struct jwt_key *key)
    __attribute__((warn_unused_result));

/* exp and nbf against now (seconds since the epoch), with leeway seconds of clock skew. */
enum jwt_status jwt_check_time(const struct jwt *t, int64_t now, int64_t leeway)
    __attribute__((warn_unused_result));

/* The top-level claim name, or NULL. */
const struct jwt_claim *jwt_claim_get(const struct jwt *t, const char *name, size_t name_len);

/* 1 when c is a string, or a number written as an integer (-?[0-9]+): usable in templates. */
int jwt_claim_is_scalar(const struct jwt_claim *c);

/* Which alg a public key serves: RS256 for RSA of 2048 bits or more, ES256 for EC P-256;
 * JWT_ALG_UNKNOWN otherwise. */
enum jwt_alg jwt_key_alg(EVP_PKEY *pkey);

const char *jwt_strerror(enum jwt_status st);
const char *jwt_alg_name(enum jwt_alg alg);

/* base64url without padding (RFC 7515 2) into out; -1 on a bad character, a bad length, non-zero
 * trailing bits or when out is too small. */
int jwt_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outsz, size_t *outlen)
    __attribute__((warn_unused_result));

/* Reads one JSON object from in[0..n) (only whitespace may follow): its members into claims
 * (at most max; nested objects and arrays are validated and skipped), strings into text.
 * JWT_OK, JWT_ERR_JSON (also for duplicate names) or JWT_ERR_TOO_LARGE. */
enum jwt_status jwt_json_object(const char *in, size_t n, struct jwt_claim *claims, size_t max,
                                size_t *nclaims, char *text, size_t textsz, size_t *text_len)
    __attribute__((warn_unused_result));

#endif
