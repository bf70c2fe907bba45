/* check_jwt.c - unit tests for jwt.c: base64url edge cases, the JSON reader (escapes, numbers,
 * nesting, duplicates, limits), token splitting, HS256/RS256/ES256 with keys made here, alg
 * none and alg confusion refused, exp/nbf, and which claims are usable in templates. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "check_runner.h"
#include "jwt.h"

#define NOW 1700000000LL

/* ---- helpers: building tokens ---- */

static size_t
b64url(const uint8_t *in, size_t n, char *out)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = al[v >> 18];
		out[o++] = al[(v >> 12) & 63];
		out[o++] = al[(v >> 6) & 63];
		out[o++] = al[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = al[v >> 18];
		out[o++] = al[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = al[v >> 18];
		out[o++] = al[(v >> 12) & 63];
		out[o++] = al[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

/* "b64(header).b64(payload)" into out; returns its length. */
static size_t
signing_input(const char *header, const char *payload, char *out)
{
	size_t n = b64url((const uint8_t *)header, strlen(header), out);

	out[n++] = '.';
	return n + b64url((const uint8_t *)payload, strlen(payload), out + n);
}

static void
append_sig(char *tok, size_t n, const uint8_t *sig, size_t siglen)
{
	tok[n++] = '.';
	b64url(sig, siglen, tok + n);
}

static char *
make_hs256(const char *header, const char *payload, const char *secret)
{
	char *tok = malloc(JWT_MAX_TOKEN * 2);
	uint8_t mac[32];
	unsigned int maclen = 0;
	size_t n;

	ck_assert_ptr_nonnull(tok);
	n = signing_input(header, payload, tok);
	ck_assert_ptr_nonnull(HMAC(EVP_sha256(), secret, (int)strlen(secret),
	                           (const unsigned char *)tok, n, mac, &maclen));
	append_sig(tok, n, mac, maclen);
	return tok;
}

static EVP_PKEY *
keygen_rsa(int bits)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);

	ck_assert_ptr_nonnull(k);
	return k;
}

static EVP_PKEY *
keygen_ec(const char *curve)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

	ck_assert_ptr_nonnull(k);
	return k;
}

static size_t
digest_sign(EVP_PKEY *k, const char *data, size_t n, uint8_t *sig, size_t sigcap)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t siglen = sigcap;

	ck_assert_int_eq(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)data, n), 1);
	EVP_MD_CTX_free(ctx);
	return siglen;
}

static char *
make_rs256(const char *payload, EVP_PKEY *k)
{
	char *tok = malloc(JWT_MAX_TOKEN * 2);
	uint8_t sig[1024];
	size_t n, siglen;

	ck_assert_ptr_nonnull(tok);
	n = signing_input("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, tok);
	siglen = digest_sign(k, tok, n, sig, sizeof(sig));
	append_sig(tok, n, sig, siglen);
	return tok;
}

/* ES256 in JWS form: the DER signature turned into r || s, 32 bytes each. */
static char *
make_es256(const char *payload, EVP_PKEY *k)
{
	char *tok = malloc(JWT_MAX_TOKEN * 2);
	uint8_t der[128], raw[64];
	const uint8_t *p = der;
	const BIGNUM *r, *s;
	ECDSA_SIG *es;
	size_t n, derlen;

	ck_assert_ptr_nonnull(tok);
	n = signing_input("{\"alg\":\"ES256\"}", payload, tok);
	derlen = digest_sign(k, tok, n, der, sizeof(der));
	es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	ck_assert_ptr_nonnull(es);
	ECDSA_SIG_get0(es, &r, &s);
	ck_assert_int_eq(BN_bn2binpad(r, raw, 32), 32);
	ck_assert_int_eq(BN_bn2binpad(s, raw + 32, 32), 32);
	ECDSA_SIG_free(es);
	append_sig(tok, n, raw, 64);
	return tok;
}

static enum jwt_status
parse_verify(const char *tok, const struct jwt_key *key, struct jwt *t)
{
	enum jwt_status st = jwt_parse(tok, strlen(tok), t);

	return st != JWT_OK ? st : jwt_verify(t, key);
}

/* ---- base64url ---- */

START_TEST(b64_vectors)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
	    {"", ""},           {"Zg", "f"},          {"Zm8", "fo"},          {"Zm9v", "foo"},
	    {"Zm9vYg", "foob"}, {"Zm9vYmE", "fooba"}, {"Zm9vYmFy", "foobar"}, {"-_8", "\xfb\xff"},
	};
	static const char *const bad[] = {
	    "Z", "Zm9vY", "Zh", "Zm9=", "Zm9v====", "Zm+v", "Zm/v", "Zm 9", "Zm9\n", "Zm9v.",
	};
	uint8_t out[16];
	size_t n;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_int_eq(
		    jwt_b64url_decode(ok[i].in, strlen(ok[i].in), out, sizeof(out), &n), 0);
		ck_assert_uint_eq(n, strlen(ok[i].out));
		ck_assert(memcmp(out, ok[i].out, n) == 0);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(jwt_b64url_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n) < 0,
		              "accepted %s", bad[i]);
	/* "Zm8" is "fo" with the two spare bits zero; "Zm9" has one set: not canonical. */
	ck_assert_int_eq(jwt_b64url_decode("Zm8", 3, out, sizeof(out), &n), 0);
	ck_assert_int_lt(jwt_b64url_decode("Zm9", 3, out, sizeof(out), &n), 0);
	/* Output that does not fit is refused before anything is written past it. */
	ck_assert_int_lt(jwt_b64url_decode("Zm9vYmFy", 8, out, 5, &n), 0);
	ck_assert_int_eq(jwt_b64url_decode("Zm9vYmFy", 8, out, 6, &n), 0);
}
END_TEST

/* ---- JSON ---- */

static enum jwt_status
json(const char *s, struct jwt_claim *c, size_t max, size_t *n)
{
	static char text[4096];
	size_t tl;

	return jwt_json_object(s, strlen(s), c, max, n, text, sizeof(text), &tl);
}

START_TEST(json_values)
{
	struct jwt_claim c[16];
	size_t n;

	ck_assert_int_eq(json(" { \"a\" : \"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\", \"n\": -12.5e+3,"
	                      "\"t\":true,\"f\":false,\"z\":null,\"o\":{\"k\":[1,{\"d\":[]},\"s\"]}"
	                      ",\"arr\":[] }\n",
	                      c, 16, &n),
	                 JWT_OK);
	ck_assert_uint_eq(n, 7);
	ck_assert_str_eq(c[0].name, "a");
	ck_assert_int_eq(c[0].type, JWT_STRING);
	ck_assert_uint_eq(c[0].val_len, 11);
	ck_assert(memcmp(c[0].val, "x\"y\\z/\b\f\n\r\t", 11) == 0);
	ck_assert_int_eq(c[1].type, JWT_NUMBER);
	ck_assert_str_eq(c[1].val, "-12.5e+3");
	ck_assert_int_eq(c[2].type, JWT_TRUE);
	ck_assert_int_eq(c[3].type, JWT_FALSE);
	ck_assert_int_eq(c[4].type, JWT_NULL);
	ck_assert_int_eq(c[5].type, JWT_OBJECT);
	ck_assert_ptr_null(c[5].val);
	ck_assert_int_eq(c[6].type, JWT_ARRAY);
	ck_assert_int_eq(json("{}", c, 16, &n), JWT_OK);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(json_unicode)
{
	struct jwt_claim c[4];
	size_t n;

	ck_assert_int_eq(json("{\"u\":\"\\u00e9\\u20AC\\ud83d\\ude00A\"}", c, 4, &n), JWT_OK);
	ck_assert_str_eq(c[0].val, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
	                           "A");
	ck_assert_int_eq(json("{\"raw\":\"\xc3\xa9\"}", c, 4, &n), JWT_OK);
	/* \u0000 is a value byte, not the end: the length says so. */
	ck_assert_int_eq(json("{\"z\":\"a\\u0000b\"}", c, 4, &n), JWT_OK);
	ck_assert_uint_eq(c[0].val_len, 3);
	ck_assert_int_eq(json("{\"u\":\"\\ud83d\"}", c, 4, &n), JWT_ERR_JSON); /* lone high */
	ck_assert_int_eq(json("{\"u\":\"\\ude00\"}", c, 4, &n), JWT_ERR_JSON); /* lone low */
	ck_assert_int_eq(json("{\"u\":\"\\ud83dx\"}", c, 4, &n), JWT_ERR_JSON);
	ck_assert_int_eq(json("{\"u\":\"\\ud83d\\u0041\"}", c, 4, &n), JWT_ERR_JSON);
	ck_assert_int_eq(json("{\"u\":\"\\u12\"}", c, 4, &n), JWT_ERR_JSON);
	ck_assert_int_eq(json("{\"u\":\"\\u12g4\"}", c, 4, &n), JWT_ERR_JSON);
	ck_assert_int_eq(json("{\"u\":\"\xc3\"}", c, 4, &n), JWT_ERR_JSON); /* cut UTF-8 */
	ck_assert_int_eq(json("{\"u\":\"\xc3\\u0041\"}", c, 4, &n), JWT_ERR_JSON);
	ck_assert_int_eq(json("{\"u\":\"\xed\xa0\x80\"}", c, 4, &n), JWT_ERR_JSON); /* surrogate */
	ck_assert_int_eq(json("{\"u\":\"\xff\"}", c, 4, &n), JWT_ERR_JSON);
}
END_TEST

START_TEST(json_malformed)
{
	static const char *const bad[] = {
	    "",
	    " ",
	    "[]",
	    "\"s\"",
	    "1",
	    "{",
	    "}",
	    "{\"a\"}",
	    "{\"a\":}",
	    "{\"a\":1,}",
	    "{,}",
	    "{\"a\":1 \"b\":2}",
	    "{a:1}",
	    "{'a':1}",
	    "{\"a\":1}}",
	    "{\"a\":1} x",
	    "{\"a\":01}",
	    "{\"a\":1.}",
	    "{\"a\":.5}",
	    "{\"a\":-}",
	    "{\"a\":1e}",
	    "{\"a\":+1}",
	    "{\"a\":tru}",
	    "{\"a\":nul}",
	    "{\"a\":True}",
	    "{\"a\":\"x\ny\"}",
	    "{\"a\":\"\\x\"}",
	    "{\"a\":\"open}",
	    "{\"a\":[1,]}",
	    "{\"a\":[1 2]}",
	    "{\"a\":{\"k\"}}",
	    "{\"a\":{\"k\":1,}}",
	    "{\"a\":[}",
	    "{\"a\":1,\"a\":2}",
	    "{\"a\":NaN}",
	    "{\"a\":Infinity}",
	    "{\"a\":\"\\",
	    "{\"a\":1",
	};
	struct jwt_claim c[8];
	size_t n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(json(bad[i], c, 8, &n) != JWT_OK, "accepted %s", bad[i]);
}
END_TEST

START_TEST(json_limits)
{
	char deep[256], many[2048];
	struct jwt_claim c[4];
	size_t n, o = 0;
	char text[8];
	int i;

	/* 15 nested arrays inside a member (depth 16 with the object): fine; 16: refused. */
	o = (size_t)snprintf(deep, sizeof(deep), "{\"a\":");
	for (i = 0; i < 15; i++)
		deep[o++] = '[';
	for (i = 0; i < 15; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	deep[o] = '\0';
	ck_assert_int_eq(json(deep, c, 4, &n), JWT_OK);
	o = (size_t)snprintf(deep, sizeof(deep), "{\"a\":");
	for (i = 0; i < 16; i++)
		deep[o++] = '[';
	for (i = 0; i < 16; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	deep[o] = '\0';
	ck_assert_int_eq(json(deep, c, 4, &n), JWT_ERR_JSON);
	/* More members than room: TOO_LARGE, not a silent truncation. */
	o = (size_t)snprintf(many, sizeof(many), "{");
	for (i = 0; i < 5; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%s\"k%d\":%d", i ? "," : "", i,
		                      i);
	snprintf(many + o, sizeof(many) - o, "}");
	ck_assert_int_eq(json(many, c, 4, &n), JWT_ERR_TOO_LARGE);
	{
		struct jwt_claim c5[5];

		ck_assert_int_eq(json(many, c5, 5, &n), JWT_OK);
		ck_assert_uint_eq(n, 5);
	}
	/* A text buffer too small for the strings. */
	ck_assert_int_eq(
	    jwt_json_object("{\"name\":\"value\"}", 16, c, 4, &n, text, sizeof(text), &o),
	    JWT_ERR_TOO_LARGE);
}
END_TEST

/* ---- tokens ---- */

START_TEST(parse_parts)
{
	struct jwt *t = malloc(sizeof(*t));
	static const char *const bad[] = {
	    "",
	    ".",
	    "..",
	    "a.b",
	    "a.b.c.d",
	    ".e30.",
	    "eyJhbGciOiJIUzI1NiJ9..sig",
	    "eyJhbGciOiJIUzI1NiJ9.e30.a.b",
	    "eyJhbGciOiJIUzI1NiJ9.e30=.",
	    "eyJhbGciOiJIUzI1NiJ9.e30.***",
	};
	char *tok;

	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(jwt_parse(bad[i], strlen(bad[i]), t) != JWT_OK, "accepted %s",
		              bad[i]);
	/* alg missing, not a string, a crit header, a header that is not an object */
	tok = make_hs256("{\"typ\":\"JWT\"}", "{}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_JSON);
	free(tok);
	tok = make_hs256("{\"alg\":256}", "{}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_JSON);
	free(tok);
	tok = make_hs256("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_FORMAT);
	free(tok);
	tok = make_hs256("[\"alg\"]", "{}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_JSON);
	free(tok);
	tok = make_hs256("{\"alg\":\"HS256\"}", "{\"exp\":\"tomorrow\"}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_JSON);
	free(tok);
	tok = make_hs256("{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_ERR_JSON);
	free(tok);
	/* the parts and the claims of a good one */
	tok =
	    make_hs256("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
	               "{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":1699999000.9,\"n\":42}", "k");
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_OK);
	ck_assert_int_eq(t->alg, JWT_ALG_HS256);
	ck_assert_uint_eq(t->nclaims, 4);
	ck_assert(t->has_exp && t->has_nbf);
	ck_assert_int_eq(t->exp, 1700000100);
	ck_assert_int_eq(t->nbf, 1699999000);
	ck_assert_uint_eq(t->sig_len, 32);
	ck_assert_ptr_eq(t->signing_input, tok);
	ck_assert_uint_eq(t->signing_input_len, (size_t)(strrchr(tok, '.') - tok));
	ck_assert_str_eq(jwt_claim_get(t, "sub", 3)->val, "alice");
	ck_assert_ptr_null(jwt_claim_get(t, "su", 2));
	free(tok);
	free(t);
}
END_TEST

START_TEST(parse_too_large)
{
	struct jwt *t = malloc(sizeof(*t));
	char *big = malloc(JWT_MAX_TOKEN + 2);

	ck_assert_ptr_nonnull(t);
	ck_assert_ptr_nonnull(big);
	memset(big, 'A', JWT_MAX_TOKEN + 1);
	big[10] = '.';
	big[20] = '.';
	ck_assert_int_eq(jwt_parse(big, JWT_MAX_TOKEN + 1, t), JWT_ERR_TOO_LARGE);
	free(big);
	free(t);
}
END_TEST

START_TEST(hs256)
{
	struct jwt *t = malloc(sizeof(*t));
	struct jwt_key key = {(const uint8_t *)"s3cret", 6, NULL, JWT_ALG_UNKNOWN};
	struct jwt_key other = {(const uint8_t *)"s3creT", 6, NULL, JWT_ALG_UNKNOWN};
	struct jwt_key none = {NULL, 0, NULL, JWT_ALG_UNKNOWN};
	char *tok = make_hs256("{\"alg\":\"HS256\"}", "{\"sub\":\"bob\"}", "s3cret");
	char *p;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(parse_verify(tok, &key, t), JWT_OK);
	ck_assert_int_eq(parse_verify(tok, &other, t), JWT_ERR_SIGNATURE);
	ck_assert_int_eq(parse_verify(tok, &none, t), JWT_ERR_ALG);
	/* One changed character of the payload, then of the signature. */
	p = strchr(tok, '.') + 2;
	*p = *p == 'a' ? 'b' : 'a';
	ck_assert_int_ne(parse_verify(tok, &key, t), JWT_OK);
	*p = *p == 'a' ? 'b' : 'a';
	p = strrchr(tok, '.') + 3;
	*p = *p == 'a' ? 'b' : 'a';
	ck_assert_int_ne(parse_verify(tok, &key, t), JWT_OK);
	free(tok);
	/* a truncated MAC */
	tok = make_hs256("{\"alg\":\"HS256\"}", "{}", "s3cret");
	tok[strlen(tok) - 4] = '\0';
	ck_assert_int_ne(parse_verify(tok, &key, t), JWT_OK);
	free(tok);
	free(t);
}
END_TEST

START_TEST(alg_none_and_unknown)
{
	struct jwt *t = malloc(sizeof(*t));
	struct jwt_key key = {(const uint8_t *)"k", 1, NULL, JWT_ALG_UNKNOWN};
	static const char *const hdrs[] = {
	    "{\"alg\":\"none\"}",  "{\"alg\":\"None\"}",  "{\"alg\":\"NONE\"}",
	    "{\"alg\":\"HS512\"}", "{\"alg\":\"hs256\"}", "{\"alg\":\"\"}",
	};
	char tok[256];
	size_t n;

	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		n = signing_input(hdrs[i], "{\"sub\":\"x\"}", tok);
		tok[n] = '.';
		tok[n + 1] = '\0'; /* the empty signature of alg none */
		ck_assert_int_eq(jwt_parse(tok, n + 1, t), JWT_OK);
		ck_assert_int_eq(jwt_verify(t, &key), JWT_ERR_ALG);
	}
	n = signing_input("{\"alg\":\"none\"}", "{}", tok);
	tok[n] = '\0';
	ck_assert_int_eq(jwt_parse(tok, n, t), JWT_ERR_FORMAT); /* two parts */
	free(t);
}
END_TEST

START_TEST(rs256)
{
	struct jwt *t = malloc(sizeof(*t));
	EVP_PKEY *k = keygen_rsa(2048), *k2 = keygen_rsa(2048), *ec = keygen_ec("P-256");
	struct jwt_key key = {NULL, 0, k, JWT_ALG_RS256};
	struct jwt_key wrong = {NULL, 0, k2, JWT_ALG_RS256};
	struct jwt_key eckey = {NULL, 0, ec, JWT_ALG_ES256};
	struct jwt_key hmac_only = {(const uint8_t *)"secret", 6, NULL, JWT_ALG_UNKNOWN};
	char *tok = make_rs256("{\"sub\":\"carol\",\"exp\":1700000100}", k);

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(jwt_key_alg(k), JWT_ALG_RS256);
	ck_assert_int_eq(parse_verify(tok, &key, t), JWT_OK);
	ck_assert_int_eq(parse_verify(tok, &wrong, t), JWT_ERR_SIGNATURE);
	ck_assert_int_eq(parse_verify(tok, &eckey, t), JWT_ERR_ALG);
	ck_assert_int_eq(parse_verify(tok, &hmac_only, t), JWT_ERR_ALG);
	tok[strlen(tok) - 5] ^= 1;
	ck_assert_int_ne(parse_verify(tok, &key, t), JWT_OK);
	free(tok);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(ec);
	free(t);
}
END_TEST

START_TEST(es256)
{
	struct jwt *t = malloc(sizeof(*t));
	EVP_PKEY *k = keygen_ec("P-256"), *k2 = keygen_ec("P-256"), *rsa = keygen_rsa(2048);
	struct jwt_key key = {NULL, 0, k, JWT_ALG_ES256};
	struct jwt_key wrong = {NULL, 0, k2, JWT_ALG_ES256};
	struct jwt_key rsakey = {NULL, 0, rsa, JWT_ALG_RS256};
	char *tok = make_es256("{\"sub\":\"dave\"}", k);
	uint8_t der[128];
	size_t n, derlen;
	char *p;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(jwt_key_alg(k), JWT_ALG_ES256);
	ck_assert_int_eq(parse_verify(tok, &key, t), JWT_OK);
	ck_assert_int_eq(parse_verify(tok, &wrong, t), JWT_ERR_SIGNATURE);
	ck_assert_int_eq(parse_verify(tok, &rsakey, t), JWT_ERR_ALG);
	free(tok);
	/* A DER signature where JWS wants r || s is refused, not guessed at. */
	tok = malloc(1024);
	ck_assert_ptr_nonnull(tok);
	n = signing_input("{\"alg\":\"ES256\"}", "{}", tok);
	derlen = digest_sign(k, tok, n, der, sizeof(der));
	append_sig(tok, n, der, derlen);
	ck_assert_int_eq(parse_verify(tok, &key, t), JWT_ERR_SIGNATURE);
	free(tok);
	/* s flipped */
	tok = make_es256("{}", k);
	p = tok + strlen(tok) - 3;
	*p = *p == 'A' ? 'B' : 'A';
	ck_assert_int_ne(parse_verify(tok, &key, t), JWT_OK);
	free(tok);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(rsa);
	free(t);
}
END_TEST

START_TEST(key_kinds)
{
	EVP_PKEY *small = keygen_rsa(1024), *p384 = keygen_ec("P-384");

	ck_assert_int_eq(jwt_key_alg(small), JWT_ALG_UNKNOWN);
	ck_assert_int_eq(jwt_key_alg(p384), JWT_ALG_UNKNOWN);
	ck_assert_int_eq(jwt_key_alg(NULL), JWT_ALG_UNKNOWN);
	EVP_PKEY_free(small);
	EVP_PKEY_free(p384);
}
END_TEST

START_TEST(times)
{
	struct jwt *t = malloc(sizeof(*t));
	static const struct {
		const char *payload;
		long long now;
		int leeway;
		enum jwt_status want;
	} rows[] = {
	    {"{}", NOW, 0, JWT_OK},
	    {"{\"exp\":1700000001}", NOW, 0, JWT_OK},
	    {"{\"exp\":1700000000}", NOW, 0, JWT_ERR_EXPIRED}, /* exp is exclusive */
	    {"{\"exp\":1699999999}", NOW, 0, JWT_ERR_EXPIRED},
	    {"{\"exp\":1699999999}", NOW, 5, JWT_OK},
	    {"{\"exp\":1.7e9}", NOW, 0, JWT_ERR_EXPIRED},
	    {"{\"exp\":1.8e9}", NOW, 0, JWT_OK},
	    {"{\"exp\":99999999999999999999999}", NOW, 0, JWT_OK},
	    {"{\"exp\":-1}", NOW, 0, JWT_ERR_EXPIRED},
	    {"{\"nbf\":1700000000}", NOW, 0, JWT_OK},
	    {"{\"nbf\":1700000001}", NOW, 0, JWT_ERR_NOT_YET},
	    {"{\"nbf\":1700000003}", NOW, 5, JWT_OK},
	    {"{\"nbf\":1e300}", NOW, 0, JWT_ERR_NOT_YET},
	    {"{\"nbf\":1699999000,\"exp\":1700001000}", NOW, 0, JWT_OK},
	};
	char *tok;

	ck_assert_ptr_nonnull(t);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		tok = make_hs256("{\"alg\":\"HS256\"}", rows[i].payload, "k");
		ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_OK);
		ck_assert_msg(jwt_check_time(t, rows[i].now, rows[i].leeway) == rows[i].want,
		              "row %zu (%s)", i, rows[i].payload);
		free(tok);
	}
	free(t);
}
END_TEST

START_TEST(scalar_claims)
{
	struct jwt *t = malloc(sizeof(*t));
	char *tok =
	    make_hs256("{\"alg\":\"HS256\"}",
	               "{\"s\":\"x\",\"i\":42,\"neg\":-7,\"f\":1.5,\"e\":1e3,\"b\":true,\"z\":null,"
	               "\"o\":{},\"a\":[1]}",
	               "k");
	static const struct {
		const char *name;
		int scalar;
	} rows[] = {
	    {"s", 1}, {"i", 1}, {"neg", 1}, {"f", 0}, {"e", 0},
	    {"b", 0}, {"z", 0}, {"o", 0},   {"a", 0},
	};

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(jwt_parse(tok, strlen(tok), t), JWT_OK);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct jwt_claim *c = jwt_claim_get(t, rows[i].name, strlen(rows[i].name));

		ck_assert_ptr_nonnull(c);
		ck_assert_msg(jwt_claim_is_scalar(c) == rows[i].scalar, "claim %s", rows[i].name);
	}
	free(tok);
	free(t);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(jwt_alg_name(JWT_ALG_ES256), "ES256");
	ck_assert_str_eq(jwt_alg_name(JWT_ALG_UNKNOWN), "unknown");
	ck_assert_str_eq(jwt_strerror(JWT_ERR_EXPIRED), "token expired");
	ck_assert_str_eq(jwt_strerror(JWT_ERR_SIGNATURE), "bad token signature");
}
END_TEST

static Suite *
jwt_suite(void)
{
	Suite *s = suite_create("jwt");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, b64_vectors);
	tcase_add_test(tc, json_values);
	tcase_add_test(tc, json_unicode);
	tcase_add_test(tc, json_malformed);
	tcase_add_test(tc, json_limits);
	suite_add_tcase(s, tc);
	tc = tcase_create("token");
	tcase_set_timeout(tc, 30); /* RSA key generation */
	tcase_add_test(tc, parse_parts);
	tcase_add_test(tc, parse_too_large);
	tcase_add_test(tc, hs256);
	tcase_add_test(tc, alg_none_and_unknown);
	tcase_add_test(tc, rs256);
	tcase_add_test(tc, es256);
	tcase_add_test(tc, key_kinds);
	tcase_add_test(tc, times);
	tcase_add_test(tc, scalar_claims);
	tcase_add_test(tc, names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(jwt_suite());
}
