/* fuzz_jwt.c - libFuzzer target for the token path: any bytes as a compact JWT (parsed, then
 * verified with an HS256 secret and an ES256 key, then timed), as a bare JSON object, as
 * base64url; and as an Origin or Cookie value for security.c's matchers. Every returned span
 * must lie where the API says, and nothing may read outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "jwt.h"
#include "security.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(c)                                                                                \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static EVP_PKEY *fz_ec;   /* an ES256 key: signatures never verify, DER conversion runs */
static struct jwt fz_tok; /* about 20 KiB: not on the stack */
static struct jwt_claim fz_claims[JWT_MAX_CLAIMS];
static char fz_text[JWT_MAX_TOKEN];
static uint8_t fz_raw[JWT_MAX_TOKEN];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fz_ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	return fz_ec != NULL ? 0 : 1;
}

/* Every claim: name and value inside text, NUL-terminated where promised. */
static void
fz_check_claims(const struct jwt_claim *c, size_t n, const char *text, size_t text_len,
                size_t textsz)
{
	FZ_CHECK(text_len <= textsz);
	for (size_t i = 0; i < n; i++) {
		FZ_CHECK(c[i].name >= text && c[i].name + c[i].name_len < text + text_len);
		FZ_CHECK(c[i].name[c[i].name_len] == '\0');
		if (c[i].type == JWT_STRING || c[i].type == JWT_NUMBER) {
			FZ_CHECK(c[i].val != NULL);
			FZ_CHECK(c[i].val >= text && c[i].val + c[i].val_len < text + text_len);
			FZ_CHECK(c[i].val[c[i].val_len] == '\0');
		} else {
			FZ_CHECK(c[i].val == NULL);
		}
		/* duplicate names are refused */
		for (size_t j = 0; j < i; j++)
			FZ_CHECK(c[j].name_len != c[i].name_len ||
			         memcmp(c[j].name, c[i].name, c[i].name_len) != 0);
		(void)jwt_claim_is_scalar(&c[i]);
	}
}

static void
fz_token(const char *s, size_t n)
{
	static const uint8_t secret[] = "fuzz-secret";
	struct jwt_key hs = {secret, sizeof(secret) - 1, NULL, JWT_ALG_UNKNOWN};
	struct jwt_key es = {NULL, 0, fz_ec, JWT_ALG_ES256};
	enum jwt_status st;

	if (jwt_parse(s, n, &fz_tok) != JWT_OK)
		return;
	FZ_CHECK(fz_tok.signing_input == s && fz_tok.signing_input_len < n);
	FZ_CHECK(s[fz_tok.signing_input_len] == '.');
	FZ_CHECK(fz_tok.sig_len <= JWT_MAX_SIG && fz_tok.nclaims <= JWT_MAX_CLAIMS);
	fz_check_claims(fz_tok.claims, fz_tok.nclaims, fz_tok.text, fz_tok.text_len,
	                sizeof(fz_tok.text));
	st = jwt_verify(&fz_tok, &hs);
	/* alg none is never accepted, whatever the key */
	FZ_CHECK(fz_tok.alg != JWT_ALG_NONE || st == JWT_ERR_ALG);
	FZ_CHECK(fz_tok.alg == JWT_ALG_HS256 || st != JWT_OK);
	st = jwt_verify(&fz_tok, &es);
	FZ_CHECK(st != JWT_OK); /* nobody can sign with a key made in this process */
	(void)jwt_check_time(&fz_tok, 1700000000, 0);
	(void)jwt_claim_get(&fz_tok, "sub", 3);
}

static void
fz_json(const char *s, size_t n)
{
	size_t nc = 0, tl = 0;

	if (jwt_json_object(s, n, fz_claims, JWT_MAX_CLAIMS, &nc, fz_text, sizeof(fz_text), &tl) ==
	    JWT_OK) {
		FZ_CHECK(nc <= JWT_MAX_CLAIMS);
		fz_check_claims(fz_claims, nc, fz_text, tl, sizeof(fz_text));
	}
}

static void
fz_b64(const char *s, size_t n)
{
	size_t out = 0;

	if (n > sizeof(fz_raw))
		n = sizeof(fz_raw);
	if (jwt_b64url_decode(s, n, fz_raw, sizeof(fz_raw), &out) == 0)
		FZ_CHECK(out == n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0));
	/* too small an output is refused, never overrun */
	(void)jwt_b64url_decode(s, n, fz_raw, n / 2, &out);
}

static void
fz_origin(const char *s, size_t n)
{
	static const char *const patterns[] = {
	    "https://app.example.com",
	    "https://*.example.com",
	    "http://localhost:8080",
	    "http://[::1]:8080",
	    "null",
	    "*",
	};
	static const char *const origins[] = {
	    "https://app.example.com",
	    "https://a.b.example.com",
	    "http://localhost:8080",
	    "null",
	};
	char *pat = malloc(n + 1);
	const char *v;
	size_t vn;

	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
		(void)security_origin_match(patterns[i], s, n);
	if (pat != NULL) {
		memcpy(pat, s, n);
		pat[n] = '\0';
		for (size_t i = 0; i < sizeof(origins) / sizeof(origins[0]); i++)
			(void)security_origin_match(pat, origins[i], strlen(origins[i]));
		/* a pattern matches itself unless it is a wildcard or malformed: no crash either
		 * way */
		(void)security_origin_match(pat, s, n);
		free(pat);
	}
	if (security_cookie_get(s, n, "token", &v, &vn))
		FZ_CHECK(v >= s && v + vn <= s + n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;

	fz_token(s, size);
	fz_json(s, size);
	fz_b64(s, size);
	fz_origin(s, size);
	return 0;
}
