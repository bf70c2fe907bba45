/* check_security.c - unit tests for security.c and limit.c: Origin matching (wildcards, ports,
 * case), where tokens are found, the handshake verdicts with their statuses, headers and
 * counters, {jwt.NAME} in templates, the per-IP limits table (counts, rate window, expiry, a
 * full table, IPv6 grouping, bounded refusals) and the message token bucket. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "check_runner.h"
#include "limit.h"
#include "route.h"
#include "security.h"

#define NOW 1700000000LL

/* ---- Origin ---- */

START_TEST(origin_rows)
{
	static const struct {
		const char *pattern, *origin;
		int want;
	} rows[] = {
	    {"https://app.example.com", "https://app.example.com", 1},
	    {"https://app.example.com", "HTTPS://APP.Example.COM", 1},
	    {"https://app.example.com", "http://app.example.com", 0},
	    {"https://app.example.com", "https://app.example.com.evil.org", 0},
	    {"https://app.example.com", "https://xapp.example.com", 0},
	    {"https://app.example.com", "https://app.example.com:8443", 0},
	    {"https://app.example.com", "https://app.example.com:443", 1},
	    {"https://app.example.com:443", "https://app.example.com", 1},
	    {"http://localhost:8080", "http://localhost:8080", 1},
	    {"http://localhost:8080", "http://localhost:8081", 0},
	    {"http://localhost:8080", "http://localhost", 0},
	    {"http://localhost", "http://localhost:80", 1},
	    {"https://*.example.com", "https://a.example.com", 1},
	    {"https://*.example.com", "https://a.b.example.com", 1},
	    {"https://*.example.com", "https://example.com", 0},
	    {"https://*.example.com", "https://.example.com", 0},
	    {"https://*.example.com", "https://evilexample.com", 0},
	    {"https://*.example.com", "https://a.example.com.evil.org", 0},
	    {"https://*.example.com", "http://a.example.com", 0},
	    {"https://*.example.com", "https://a.example.com:444", 0},
	    {"https://*.example.com:444", "https://a.example.com:444", 1},
	    {"https://*.Example.COM", "https://A.example.com", 1},
	    {"*", "https://anything.org", 1},
	    {"*", "null", 1},
	    {"null", "null", 1},
	    {"null", "https://a.org", 0},
	    {"https://a.org", "null", 0},
	    {"http://[::1]:8080", "http://[::1]:8080", 1},
	    {"http://[::1]:8080", "http://[::2]:8080", 0},
	    /* malformed origins never match */
	    {"https://a.org", "https://a.org/", 0},
	    {"https://a.org", "https://a.org/path", 0},
	    {"https://a.org", "https://user@a.org", 0},
	    {"https://a.org", "a.org", 0},
	    {"https://a.org", "https://", 0},
	    {"https://a.org", "https://a.org:", 0},
	    {"https://a.org", "https://a.org:123456", 0},
	    {"https://a.org", "https://a.org:8x", 0},
	    {"https://a.org", "", 0},
	    {"https://*.a.org", "https://*.a.org", 0}, /* a wildcard is not a host */
	    /* malformed patterns never match */
	    {"https://*", "https://a.org", 0},
	    {"https://*.", "https://a.", 0},
	    {"https://a*.org", "https://ab.org", 0},
	    {"a.org", "a.org", 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_msg(security_origin_match(rows[i].pattern, rows[i].origin,
		                                    strlen(rows[i].origin)) == rows[i].want,
		              "row %zu: %s vs %s", i, rows[i].pattern, rows[i].origin);
}
END_TEST

START_TEST(origin_lists)
{
	char *list[] = {"https://app.example.com", "https://*.example.com"};

	ck_assert(security_origin_allowed(NULL, 0, NULL, 0)); /* no list: anything */
	ck_assert(security_origin_allowed(NULL, 0, "https://x.org", 13));
	ck_assert(!security_origin_allowed(list, 2, NULL, 0)); /* list: Origin required */
	ck_assert(security_origin_allowed(list, 2, "https://b.example.com", 21));
	ck_assert(!security_origin_allowed(list, 2, "https://example.org", 19));
}
END_TEST

/* ---- tokens in requests ---- */

static struct http_str
hs(const char *s)
{
	struct http_str r = {s, s != NULL ? strlen(s) : 0};

	return r;
}

START_TEST(cookies)
{
	const char *v;
	size_t n;
	const char *c = "a=1; token=abc.def.ghi; tokenx=2;  b=\"q\" ;quoted=\"xyz\"";

	ck_assert(security_cookie_get(c, strlen(c), "token", &v, &n));
	ck_assert_uint_eq(n, 11);
	ck_assert(memcmp(v, "abc.def.ghi", 11) == 0);
	ck_assert(security_cookie_get(c, strlen(c), "quoted", &v, &n));
	ck_assert(n == 3 && memcmp(v, "xyz", 3) == 0);
	ck_assert(security_cookie_get(c, strlen(c), "a", &v, &n) && n == 1 && v[0] == '1');
	ck_assert(!security_cookie_get(c, strlen(c), "toke", &v, &n));
	ck_assert(!security_cookie_get(c, strlen(c), "missing", &v, &n));
	ck_assert(!security_cookie_get("", 0, "token", &v, &n));
	ck_assert(!security_cookie_get("token", 5, "token", &v, &n)); /* no '=' */
}
END_TEST

START_TEST(token_sources)
{
	struct config_route r;
	struct http_request req;
	enum jwt_source only_cookie[] = {JWT_FROM_COOKIE};
	enum jwt_source q_then_h[] = {JWT_FROM_QUERY, JWT_FROM_HEADER};
	const char *tok;
	size_t n;

	memset(&r, 0, sizeof(r));
	memset(&req, 0, sizeof(req));
	ck_assert(!security_find_token(&r, &req, &tok, &n));
	req.authorization = hs("Bearer   h.h.h");
	req.query = hs("x=1&token=q.q.q&y=2");
	req.cookie = hs("token=c.c.c");
	/* default order: header, query, cookie */
	ck_assert(security_find_token(&r, &req, &tok, &n));
	ck_assert(n == 5 && memcmp(tok, "h.h.h", 5) == 0);
	r.jwt_from = q_then_h;
	r.njwt_from = 2;
	ck_assert(security_find_token(&r, &req, &tok, &n));
	ck_assert(n == 5 && memcmp(tok, "q.q.q", 5) == 0);
	r.jwt_from = only_cookie;
	r.njwt_from = 1;
	ck_assert(security_find_token(&r, &req, &tok, &n));
	ck_assert(n == 5 && memcmp(tok, "c.c.c", 5) == 0);
	req.cookie = hs("other=1");
	ck_assert(!security_find_token(&r, &req, &tok, &n)); /* the header is not looked at */
	r.njwt_from = 0;
	/* other schemes, an empty bearer, an empty query value are no token */
	req.authorization = hs("Basic dXNlcjpwYXNz");
	req.query = hs("token=");
	ck_assert(!security_find_token(&r, &req, &tok, &n));
	req.authorization = hs("Bearer");
	ck_assert(!security_find_token(&r, &req, &tok, &n));
	req.authorization = hs("bearer x.y.z");
	ck_assert(security_find_token(&r, &req, &tok, &n) && n == 5);
}
END_TEST

/* ---- the handshake check ---- */

static char *
b64url_str(const uint8_t *in, size_t n, char *out)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	for (i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = al[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = al[(acc << (6 - bits)) & 63];
	out[o] = '\0';
	return out;
}

static void
make_hs256(const char *payload, const char *secret, char *out)
{
	const char *hdr = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	uint8_t mac[32];
	unsigned int maclen;
	size_t n;

	b64url_str((const uint8_t *)hdr, strlen(hdr), out);
	n = strlen(out);
	out[n++] = '.';
	b64url_str((const uint8_t *)payload, strlen(payload), out + n);
	n = strlen(out);
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, n, mac,
	     &maclen);
	out[n++] = '.';
	b64url_str(mac, maclen, out + n);
}

struct fixture {
	struct config cfg;
	struct config_route routes[2];
	char *origins[2];
	struct http_request req;
	char auth[2048 + 16]; /* "Bearer " + tok */
	char tok[2048];
};

static void
fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->origins[0] = "https://app.example.com";
	f->origins[1] = "https://*.example.com";
	f->routes[0].path = "/secure";
	f->routes[0].origins = f->origins;
	f->routes[0].norigins = 2;
	f->routes[0].auth = AUTH_JWT;
	f->routes[0].jwt_secret = "topsecret";
	f->routes[1].path = "/open";
	f->cfg.routes = f->routes;
	f->cfg.nroutes = 2;
	f->req.origin = hs("https://a.example.com");
}

static void
fixture_token(struct fixture *f, const char *payload, const char *secret)
{
	make_hs256(payload, secret, f->tok);
	snprintf(f->auth, sizeof(f->auth), "Bearer %s", f->tok);
	f->req.authorization = hs(f->auth);
}

START_TEST(handshake_verdicts)
{
	struct fixture *f = malloc(sizeof(*f));
	struct security_auth *auth = malloc(sizeof(*auth));
	struct security_stats st;
	struct security *s;
	const char *hdrs, *why;

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(auth);
	fixture_init(f);
	s = security_new(&f->cfg);
	ck_assert_ptr_nonnull(s);

	/* the open route: anything goes */
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[1], &f->req, NOW, auth, &hdrs, &why), 0);
	ck_assert_uint_eq(auth->nclaims, 0);
	/* wrong origin, then none: 403 before the token is looked at */
	f->req.origin = hs("https://evil.org");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 403);
	ck_assert_ptr_null(hdrs);
	f->req.origin = hs(NULL);
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 403);
	f->req.origin = hs("https://app.example.com");
	/* no token */
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	ck_assert_str_eq(hdrs, "WWW-Authenticate: Bearer\r\n");
	ck_assert_str_eq(why, "no token");
	/* forged */
	fixture_token(f, "{\"sub\":\"alice\"}", "guess");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	ck_assert_ptr_nonnull(strstr(hdrs, "invalid_token"));
	ck_assert_str_eq(why, "bad token signature");
	/* expired, not yet valid */
	fixture_token(f, "{\"sub\":\"alice\",\"exp\":1699999999}", "topsecret");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	ck_assert_str_eq(why, "token expired");
	fixture_token(f, "{\"sub\":\"alice\",\"nbf\":1700000500}", "topsecret");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	ck_assert_str_eq(why, "token not yet valid");
	/* garbage */
	f->req.authorization = hs("Bearer not-a-token");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	/* valid */
	fixture_token(f,
	              "{\"sub\":\"alice\",\"exp\":1700000100,\"uid\":42,\"admin\":true,"
	              "\"room\":\"a b\"}",
	              "topsecret");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 0);
	ck_assert_ptr_null(hdrs);
	ck_assert_uint_eq(auth->nclaims, 4); /* sub, exp, uid, room: not the boolean */

	security_stats_get(s, &st);
	ck_assert_uint_eq(st.n[SEC_ORIGIN_REFUSED], 2);
	ck_assert_uint_eq(st.n[SEC_TOKEN_MISSING], 1);
	ck_assert_uint_eq(st.n[SEC_TOKEN_INVALID], 2);
	ck_assert_uint_eq(st.n[SEC_TOKEN_EXPIRED], 2);
	ck_assert_str_eq(security_counter_name(SEC_MESSAGE_RATE), "message_rate");
	security_free(s);
	free(auth);
	free(f);
}
END_TEST

START_TEST(claims_in_templates)
{
	struct fixture *f = malloc(sizeof(*f));
	struct security_auth *auth = malloc(sizeof(*auth));
	struct route_match m;
	struct security *s;
	const char *hdrs, *why;
	char out[128];

	ck_assert_ptr_nonnull(f);
	ck_assert_ptr_nonnull(auth);
	fixture_init(f);
	s = security_new(&f->cfg);
	ck_assert_ptr_nonnull(s);
	fixture_token(f,
	              "{\"sub\":\"alice\",\"uid\":-42,\"room\":\"a b\",\"f\":1.5,"
	              "\"nested\":{\"sub\":\"mallory\"}}",
	              "topsecret");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 0);
	ck_assert_int_eq(route_match(&f->cfg, "/secure", 7, NULL, 0, &m), ROUTE_OK);
	/* before the claims are applied there is nothing to fill {jwt.sub} with */
	ck_assert_int_eq(route_expand("user:{jwt.sub}", &m, out, sizeof(out)), ROUTE_NOT_FOUND);
	security_apply_claims(auth, &m);
	ck_assert_int_eq(route_expand("user:{jwt.sub}", &m, out, sizeof(out)), 10);
	ck_assert_str_eq(out, "user:alice");
	ck_assert_int_gt(route_expand("u{jwt.uid}:{jwt.sub}", &m, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "u-42:alice");
	ck_assert_int_eq(route_expand("room:{jwt.room}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
	ck_assert_int_eq(route_expand("{jwt.f}", &m, out, sizeof(out)), ROUTE_NOT_FOUND);
	ck_assert_int_eq(route_expand("{jwt.nested}", &m, out, sizeof(out)), ROUTE_NOT_FOUND);
	ck_assert_int_eq(route_expand("{jwt.}", &m, out, sizeof(out)), ROUTE_BAD_PARAM);
	ck_assert_int_eq(route_expand("{jwt.missing}", &m, out, sizeof(out)), ROUTE_NOT_FOUND);
	security_free(s);
	free(auth);
	free(f);
}
END_TEST

static char *
write_pubkey(EVP_PKEY *k)
{
	char *path = strdup("/tmp/check_security_keyXXXXXX");
	int fd = mkstemp(path);
	FILE *fp = fdopen(fd, "w");

	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(PEM_write_PUBKEY(fp, k), 1);
	fclose(fp);
	return path;
}

START_TEST(public_key_routes)
{
	struct fixture *f = malloc(sizeof(*f));
	struct security_auth *auth = malloc(sizeof(*auth));
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	char *path = write_pubkey(k), *bad = write_pubkey(small);
	struct security *s;
	const char *hdrs, *why;

	ck_assert_ptr_nonnull(f);
	fixture_init(f);
	f->routes[0].jwt_public_key = path;
	s = security_new(&f->cfg);
	ck_assert_ptr_nonnull(s);
	/* the route has an ES256 key and an HS256 secret: an HS256 token still verifies ... */
	fixture_token(f, "{\"sub\":\"x\"}", "topsecret");
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 0);
	/* ... and with the secret gone, only ES256 would */
	f->routes[0].jwt_secret = NULL;
	ck_assert_int_eq(
	    security_check_handshake(s, &f->routes[0], &f->req, NOW, auth, &hdrs, &why), 401);
	ck_assert_str_eq(why, "token algorithm not accepted");
	security_free(s);
	/* unusable keys fail the whole load: the first load is fatal, a reload keeps the old */
	f->routes[0].jwt_public_key = bad;
	ck_assert_ptr_null(security_new(&f->cfg));
	f->routes[0].jwt_public_key = "/nonexistent/key.pem";
	ck_assert_ptr_null(security_new(&f->cfg));
	f->routes[0].jwt_public_key = NULL;
	ck_assert_ptr_null(security_new(&f->cfg)); /* auth = jwt without any key */
	f->routes[0].jwt_public_key = path;
	s = security_new(&f->cfg);
	ck_assert_ptr_nonnull(s);
	f->routes[0].jwt_public_key = bad;
	ck_assert_int_eq(security_set_config(s, &f->cfg), -1);
	security_free(s);
	unlink(path);
	unlink(bad);
	free(path);
	free(bad);
	EVP_PKEY_free(k);
	EVP_PKEY_free(small);
	free(auth);
	free(f);
}
END_TEST

/* ---- limits ---- */

static struct sockaddr_in
v4(const char *a)
{
	struct sockaddr_in in;

	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	inet_pton(AF_INET, a, &in.sin_addr);
	return in;
}

static struct sockaddr_in6
v6(const char *a)
{
	struct sockaddr_in6 in6;

	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, a, &in6.sin6_addr);
	return in6;
}

static const uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

#define SA(x) ((const struct sockaddr *)(const void *)&(x))

START_TEST(limits_per_ip)
{
	struct limit_table *l = limit_new(0, seed);
	struct config cfg;
	struct limit_ticket t[4], u;
	struct sockaddr_in a = v4("10.0.0.1"), b = v4("10.0.0.2");

	ck_assert_ptr_nonnull(l);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_connections_per_ip = 2;
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 1000, &t[0]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 1000, &t[1]), LIMIT_OK);
	ck_assert_int_ge(t[0].slot, 0);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 1000, &t[2]), LIMIT_PER_IP);
	ck_assert_int_eq(t[2].kind, LIMIT_T_REFUSING);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(b), 1000, &t[3]), LIMIT_OK);
	ck_assert_uint_eq(limit_open(l), 3);
	ck_assert_uint_eq(limit_refusing(l), 1);
	limit_release(l, &t[2]);
	limit_release(l, &t[2]); /* idempotent */
	ck_assert_uint_eq(limit_refusing(l), 0);
	limit_release(l, &t[0]);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 1000, &u), LIMIT_OK);
	limit_release(l, &u);
	limit_release(l, &t[1]);
	limit_release(l, &t[3]);
	ck_assert_uint_eq(limit_open(l), 0);
	/* a zeroed ticket (a connection that never went through admission) gives back nothing */
	memset(&u, 0, sizeof(u));
	limit_release(l, &u);
	ck_assert_uint_eq(limit_open(l), 0);
	limit_free(l);
}
END_TEST

START_TEST(limits_total_and_rate)
{
	struct limit_table *l = limit_new(64, seed);
	struct config cfg;
	struct limit_ticket t[8];
	struct sockaddr_in a = v4("192.0.2.7");
	int i;

	ck_assert_ptr_nonnull(l);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_connections = 3;
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 10, &t[i]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 10, &t[3]), LIMIT_TOTAL);
	limit_release(l, &t[3]);
	for (i = 0; i < 3; i++)
		limit_release(l, &t[i]);
	cfg.max_connections = 0;
	cfg.accept_rate_per_ip = 2;
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 5000, &t[0]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 5100, &t[1]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 5999, &t[2]), LIMIT_RATE);
	limit_release(l, &t[2]);
	/* closing does not give accepts back; the next second does */
	limit_release(l, &t[0]);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 5999, &t[2]), LIMIT_RATE);
	limit_release(l, &t[2]);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 6000, &t[2]), LIMIT_OK);
	limit_release(l, &t[1]);
	limit_release(l, &t[2]);
	limit_free(l);
}
END_TEST

START_TEST(limits_bounded)
{
	struct limit_table *l = limit_new(16, seed); /* one probe window: 16 entries */
	struct config cfg;
	struct limit_ticket t[LIMIT_MAX_REFUSING + 40];
	struct sockaddr_in a;
	char ip[32];
	size_t i, tracked = 0, untracked = 0;

	ck_assert_ptr_nonnull(l);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_connections_per_ip = 1;
	/* 20 addresses: 16 get entries, 4 are admitted untracked rather than refused */
	for (i = 0; i < 20; i++) {
		snprintf(ip, sizeof(ip), "198.51.100.%zu", i + 1);
		a = v4(ip);
		ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 100, &t[i]), LIMIT_OK);
		if (t[i].untracked)
			untracked++;
		else
			tracked++;
	}
	ck_assert_uint_eq(tracked, 16);
	ck_assert_uint_eq(untracked, 4);
	/* entries whose connections closed and whose window passed are reused */
	for (i = 0; i < 20; i++)
		limit_release(l, &t[i]);
	for (i = 0; i < 16; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%zu", i + 1);
		a = v4(ip);
		ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 2000, &t[i]), LIMIT_OK);
		ck_assert(!t[i].untracked);
	}
	for (i = 0; i < 16; i++)
		limit_release(l, &t[i]);
	/* refusals in flight are capped: past the cap, drop without an answer */
	a = v4("203.0.113.1");
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 3000, &t[0]), LIMIT_OK);
	for (i = 1; i <= LIMIT_MAX_REFUSING; i++)
		ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 3000, &t[i]), LIMIT_PER_IP);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 3000, &t[i]), LIMIT_DROP);
	ck_assert_int_eq(t[i].kind, LIMIT_T_NONE);
	ck_assert_uint_eq(limit_refusing(l), LIMIT_MAX_REFUSING);
	for (i = 0; i <= LIMIT_MAX_REFUSING; i++)
		limit_release(l, &t[i]);
	ck_assert_uint_eq(limit_refusing(l), 0);
	ck_assert_uint_eq(limit_open(l), 0);
	limit_free(l);
}
END_TEST

START_TEST(limits_addresses)
{
	struct limit_table *l = limit_new(0, seed);
	struct config cfg;
	struct limit_ticket t[4];
	struct sockaddr_in a = v4("192.0.2.1");
	struct sockaddr_in6 mapped = v6("::ffff:192.0.2.1"), p1 = v6("2001:db8:1:2::1"),
	                    p2 = v6("2001:db8:1:2:ffff::9"), other = v6("2001:db8:1:3::1");
	struct sockaddr un = {.sa_family = AF_UNIX};

	ck_assert_ptr_nonnull(l);
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_connections_per_ip = 1;
	/* an IPv4 peer and the same peer seen on a dual-stack socket are one */
	ck_assert_int_eq(limit_admit(l, &cfg, SA(a), 1, &t[0]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(mapped), 1, &t[1]), LIMIT_PER_IP);
	limit_release(l, &t[1]);
	/* IPv6 counts per /64 */
	ck_assert_int_eq(limit_admit(l, &cfg, SA(p1), 1, &t[1]), LIMIT_OK);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(p2), 1, &t[2]), LIMIT_PER_IP);
	limit_release(l, &t[2]);
	ck_assert_int_eq(limit_admit(l, &cfg, SA(other), 1, &t[2]), LIMIT_OK);
	/* no address, no per-IP accounting */
	ck_assert_int_eq(limit_admit(l, &cfg, &un, 1, &t[3]), LIMIT_OK);
	ck_assert_int_eq(t[3].slot, -1);
	for (int i = 0; i < 4; i++)
		limit_release(l, &t[i]);
	limit_free(l);
}
END_TEST

START_TEST(bucket)
{
	struct limit_bucket b;
	int i, ok = 0;

	memset(&b, 0, sizeof(b));
	for (i = 0; i < 5; i++)
		ck_assert(limit_bucket_take(&b, 5, 1000));
	ck_assert(!limit_bucket_take(&b, 5, 1000));
	ck_assert(!limit_bucket_take(&b, 5, 1100)); /* half a token */
	ck_assert(limit_bucket_take(&b, 5, 1200));  /* one token per 200 ms */
	ck_assert(!limit_bucket_take(&b, 5, 1200));
	/* a long pause refills to one second's worth, no more */
	for (i = 0; i < 10; i++)
		ok += limit_bucket_take(&b, 5, 100000);
	ck_assert_int_eq(ok, 5);
	/* rate 0 is no limit; huge rates and pauses do not overflow */
	ck_assert(limit_bucket_take(&b, 0, 0));
	memset(&b, 0, sizeof(b));
	ck_assert(limit_bucket_take(&b, UINT64_MAX, 1));
	ck_assert(limit_bucket_take(&b, UINT64_MAX, UINT64_MAX));
	/* a clock that does not move gives nothing back */
	memset(&b, 0, sizeof(b));
	ck_assert(limit_bucket_take(&b, 1, 50));
	ck_assert(!limit_bucket_take(&b, 1, 50));
	ck_assert(!limit_bucket_take(&b, 1, 40));
	ck_assert(limit_bucket_take(&b, 1, 1050));
}
END_TEST

static Suite *
security_suite(void)
{
	Suite *s = suite_create("security");
	TCase *tc = tcase_create("origin");

	tcase_add_test(tc, origin_rows);
	tcase_add_test(tc, origin_lists);
	suite_add_tcase(s, tc);
	tc = tcase_create("handshake");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, cookies);
	tcase_add_test(tc, token_sources);
	tcase_add_test(tc, handshake_verdicts);
	tcase_add_test(tc, claims_in_templates);
	tcase_add_test(tc, public_key_routes);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_add_test(tc, limits_per_ip);
	tcase_add_test(tc, limits_total_and_rate);
	tcase_add_test(tc, limits_bounded);
	tcase_add_test(tc, limits_addresses);
	tcase_add_test(tc, bucket);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(security_suite());
}
