/* jwt.c - pure JSON Web Token handling: split the compact form, decode base64url, read the
 * header and claims (with jwt_json.c's reader), verify HS256/RS256/ES256, check exp and nbf. */
#include "jwt.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/hmac.h>

#include "base64.h"

/* ---- base64url ---- */

int
jwt_b64url_decode(const char *in, size_t n, uint8_t *out, size_t outsz, size_t *outlen)
{
	/* JWS forbids padding (RFC 7515 2): '=' is not in the alphabet. */
	return base64_decode_unpadded(in, n, BASE64_URL, out, outsz, outlen);
}

/* ---- the token ---- */

static const struct jwt_claim *
jwt_find(const struct jwt_claim *claims, size_t n, const char *name, size_t name_len)
{
	for (size_t i = 0; i < n; i++)
		if (claims[i].name_len == name_len && memcmp(claims[i].name, name, name_len) == 0)
			return &claims[i];
	return NULL;
}

const struct jwt_claim *
jwt_claim_get(const struct jwt *t, const char *name, size_t name_len)
{
	return jwt_find(t->claims, t->nclaims, name, name_len);
}

int
jwt_claim_is_scalar(const struct jwt_claim *c)
{
	size_t i = 0;

	if (c->type == JWT_STRING)
		return 1;
	if (c->type != JWT_NUMBER || c->val == NULL)
		return 0;
	if (c->val_len > 0 && c->val[0] == '-')
		i = 1;
	if (i == c->val_len)
		return 0;
	for (; i < c->val_len; i++)
		if (c->val[i] < '0' || c->val[i] > '9')
			return 0;
	return 1;
}

/* A NumericDate (validated JSON number text) as whole seconds, saturating. */
static void
jwt_seconds(const char *s, size_t n, int64_t *out)
{
	int neg = 0;
	size_t i = 0;
	uint64_t v = 0;

	if (memchr(s, 'e', n) != NULL || memchr(s, 'E', n) != NULL) {
		double d = strtod(s, NULL);

		if (d >= 9.2e18)
			*out = INT64_MAX;
		else if (d <= -9.2e18)
			*out = INT64_MIN;
		else
			*out = (int64_t)d;
		return;
	}
	if (n > 0 && s[0] == '-') {
		neg = 1;
		i = 1;
	}
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (v > (uint64_t)INT64_MAX / 10) {
			v = (uint64_t)INT64_MAX;
			break;
		}
		v = v * 10 + (uint64_t)(s[i] - '0');
		if (v > (uint64_t)INT64_MAX)
			v = (uint64_t)INT64_MAX;
	}
	*out = neg ? -(int64_t)v : (int64_t)v;
}

static enum jwt_alg
jwt_alg_from(const struct jwt_claim *c)
{
	static const struct {
		const char *name;
		enum jwt_alg alg;
	} algs[] = {
	    {"none", JWT_ALG_NONE},
	    {"HS256", JWT_ALG_HS256},
	    {"RS256", JWT_ALG_RS256},
	    {"ES256", JWT_ALG_ES256},
	};

	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (c->val_len == strlen(algs[i].name) &&
		    memcmp(c->val, algs[i].name, c->val_len) == 0)
			return algs[i].alg;
	return JWT_ALG_UNKNOWN;
}

/* Decodes one part into t->raw and reads it as an object; strings go after t->text_len. */
static enum jwt_status
jwt_part(struct jwt *t, const char *p, size_t n, struct jwt_claim *claims, size_t max,
         size_t *nclaims)
{
	size_t rawlen, used;
	enum jwt_status st;

	if (jwt_b64url_decode(p, n, t->raw, sizeof(t->raw), &rawlen) < 0)
		return JWT_ERR_FORMAT;
	st = jwt_json_object((const char *)t->raw, rawlen, claims, max, nclaims,
	                     t->text + t->text_len, sizeof(t->text) - t->text_len, &used);
	if (st == JWT_OK)
		t->text_len += used;
	return st;
}

static enum jwt_status
jwt_time_claim(const struct jwt *t, const char *name, int *has, int64_t *out)
{
	const struct jwt_claim *c = jwt_claim_get(t, name, strlen(name));

	*has = 0;
	if (c == NULL)
		return JWT_OK;
	if (c->type != JWT_NUMBER)
		return JWT_ERR_JSON;
	jwt_seconds(c->val, c->val_len, out);
	*has = 1;
	return JWT_OK;
}

enum jwt_status
jwt_parse(const char *tok, size_t n, struct jwt *t)
{
	struct jwt_claim hdr[JWT_MAX_HEADER];
	const struct jwt_claim *alg;
	const char *d1, *d2;
	size_t nhdr;
	enum jwt_status st;

	t->alg = JWT_ALG_UNKNOWN;
	t->nclaims = 0;
	t->has_exp = t->has_nbf = 0;
	t->exp = t->nbf = 0;
	t->sig_len = 0;
	t->text_len = 0;
	t->signing_input = NULL;
	t->signing_input_len = 0;
	if (tok == NULL || n == 0)
		return JWT_ERR_FORMAT;
	if (n > JWT_MAX_TOKEN)
		return JWT_ERR_TOO_LARGE;
	/* Exactly three parts: a JWE (five) or anything else is not ours. */
	if ((d1 = memchr(tok, '.', n)) == NULL ||
	    (d2 = memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok))) == NULL ||
	    memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok)) != NULL || d1 == tok || d2 == d1 + 1)
		return JWT_ERR_FORMAT;

	if ((st = jwt_part(t, tok, (size_t)(d1 - tok), hdr, JWT_MAX_HEADER, &nhdr)) != JWT_OK)
		return st == JWT_ERR_TOO_LARGE ? JWT_ERR_JSON : st;
	if ((alg = jwt_find(hdr, nhdr, "alg", 3)) == NULL || alg->type != JWT_STRING)
		return JWT_ERR_JSON;
	t->alg = jwt_alg_from(alg);
	/* Extensions the token says must be understood: we understand none (RFC 7515 4.1.11). */
	if (jwt_find(hdr, nhdr, "crit", 4) != NULL)
		return JWT_ERR_FORMAT;

	st = jwt_part(t, d1 + 1, (size_t)(d2 - d1 - 1), t->claims, JWT_MAX_CLAIMS, &t->nclaims);
	if (st != JWT_OK)
		return st;
	if ((st = jwt_time_claim(t, "exp", &t->has_exp, &t->exp)) != JWT_OK ||
	    (st = jwt_time_claim(t, "nbf", &t->has_nbf, &t->nbf)) != JWT_OK)
		return st;

	if (jwt_b64url_decode(d2 + 1, n - (size_t)(d2 + 1 - tok), t->sig, sizeof(t->sig),
	                      &t->sig_len) < 0)
		return (n - (size_t)(d2 + 1 - tok)) / 4 * 3 > sizeof(t->sig) ? JWT_ERR_TOO_LARGE
		                                                             : JWT_ERR_FORMAT;
	t->signing_input = tok;
	t->signing_input_len = (size_t)(d2 - tok);
	return JWT_OK;
}

/* ---- verification ---- */

static enum jwt_status
jwt_verify_digest(EVP_PKEY *pkey, const uint8_t *sig, size_t siglen, const struct jwt *t)
{
	EVP_MD_CTX *ctx;
	enum jwt_status st = JWT_ERR_KEY;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return JWT_ERR_KEY;
	if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1)
		st = EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)t->signing_input,
		                      t->signing_input_len) == 1
		         ? JWT_OK
		         : JWT_ERR_SIGNATURE;
	EVP_MD_CTX_free(ctx);
	/* A failed verify leaves errors that the TLS layer must not mistake for its own. */
	ERR_clear_error();
	return st;
}

/* JWS carries ES256 as r || s, 32 bytes each; OpenSSL verifies DER. */
static enum jwt_status
jwt_verify_es256(EVP_PKEY *pkey, const struct jwt *t)
{
	uint8_t der[80], *p = der;
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	int len;

	if (t->sig_len != 64)
		return JWT_ERR_SIGNATURE;
	if ((es = ECDSA_SIG_new()) == NULL)
		return JWT_ERR_KEY;
	r = BN_bin2bn(t->sig, 32, NULL);
	s = BN_bin2bn(t->sig + 32, 32, NULL);
	if (r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return JWT_ERR_KEY;
	}
	len = i2d_ECDSA_SIG(es, NULL);
	if (len <= 0 || (size_t)len > sizeof(der) || i2d_ECDSA_SIG(es, &p) != len) {
		ECDSA_SIG_free(es);
		return JWT_ERR_KEY;
	}
	ECDSA_SIG_free(es);
	return jwt_verify_digest(pkey, der, (size_t)len, t);
}

enum jwt_status
jwt_verify(const struct jwt *t, const struct jwt_key *key)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;

	if (t->signing_input == NULL)
		return JWT_ERR_FORMAT;
	switch (t->alg) {
	case JWT_ALG_HS256:
		if (key->secret == NULL || key->secret_len == 0 || key->secret_len > INT_MAX)
			return JWT_ERR_ALG;
		if (HMAC(EVP_sha256(), key->secret, (int)key->secret_len,
		         (const unsigned char *)t->signing_input, t->signing_input_len, mac,
		         &maclen) == NULL) {
			ERR_clear_error();
			return JWT_ERR_KEY;
		}
		if (t->sig_len != maclen || CRYPTO_memcmp(mac, t->sig, maclen) != 0)
			return JWT_ERR_SIGNATURE;
		return JWT_OK;
	case JWT_ALG_RS256:
		if (key->pkey == NULL || key->pkey_alg != JWT_ALG_RS256)
			return JWT_ERR_ALG;
		return jwt_verify_digest(key->pkey, t->sig, t->sig_len, t);
	case JWT_ALG_ES256:
		if (key->pkey == NULL || key->pkey_alg != JWT_ALG_ES256)
			return JWT_ERR_ALG;
		return jwt_verify_es256(key->pkey, t);
	case JWT_ALG_NONE:
	case JWT_ALG_UNKNOWN:
	default:
		return JWT_ERR_ALG;
	}
}

enum jwt_status
jwt_check_time(const struct jwt *t, int64_t now, int64_t leeway)
{
	int64_t edge;

	if (leeway < 0)
		leeway = 0;
	if (t->has_exp) {
		/* RFC 7519 4.1.4: the token is only good before exp. */
		edge = t->exp > INT64_MAX - leeway ? INT64_MAX : t->exp + leeway;
		if (now >= edge)
			return JWT_ERR_EXPIRED;
	}
	if (t->has_nbf) {
		edge = t->nbf < INT64_MIN + leeway ? INT64_MIN : t->nbf - leeway;
		if (now < edge)
			return JWT_ERR_NOT_YET;
	}
	return JWT_OK;
}

enum jwt_alg
jwt_key_alg(EVP_PKEY *pkey)
{
	char group[64];
	size_t glen = 0;

	if (pkey == NULL)
		return JWT_ALG_UNKNOWN;
	if (EVP_PKEY_is_a(pkey, "RSA"))
		return EVP_PKEY_get_bits(pkey) >= 2048 ? JWT_ALG_RS256 : JWT_ALG_UNKNOWN;
	if (EVP_PKEY_is_a(pkey, "EC") &&
	    EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) == 1 &&
	    (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
		return JWT_ALG_ES256;
	ERR_clear_error();
	return JWT_ALG_UNKNOWN;
}

const char *
jwt_strerror(enum jwt_status st)
{
	switch (st) {
	case JWT_OK:
		return "valid";
	case JWT_ERR_FORMAT:
		return "malformed token";
	case JWT_ERR_JSON:
		return "malformed token JSON";
	case JWT_ERR_ALG:
		return "token algorithm not accepted";
	case JWT_ERR_SIGNATURE:
		return "bad token signature";
	case JWT_ERR_EXPIRED:
		return "token expired";
	case JWT_ERR_NOT_YET:
		return "token not yet valid";
	case JWT_ERR_TOO_LARGE:
		return "token too large";
	case JWT_ERR_KEY:
		return "token key unusable";
	}
	return "unknown token error";
}

const char *
jwt_alg_name(enum jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_NONE:
		return "none";
	case JWT_ALG_HS256:
		return "HS256";
	case JWT_ALG_RS256:
		return "RS256";
	case JWT_ALG_ES256:
		return "ES256";
	case JWT_ALG_UNKNOWN:
		break;
	}
	return "unknown";
}
