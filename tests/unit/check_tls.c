/* check_tls.c - unit tests for tls.c without sockets: SNI name matching (exact, one-label
 * wildcards), loading certificates (missing files, a key of another certificate, no [tls]) and
 * reloads that keep the old contexts on failure. Certificates are made here, in a temp dir. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "check_runner.h"
#include "tls.h"

START_TEST(sni_names)
{
	static const struct {
		const char *pattern, *name;
		int want;
	} rows[] = {
	    {"example.org", "example.org", 1},
	    {"example.org", "EXAMPLE.org", 1},
	    {"example.org", "www.example.org", 0},
	    {"example.org", "example.org.", 0},
	    {"*.example.org", "www.example.org", 1},
	    {"*.example.org", "WWW.Example.Org", 1},
	    {"*.example.org", "example.org", 0},
	    {"*.example.org", "a.b.example.org", 0},
	    {"*.example.org", ".example.org", 0},
	    {"*.example.org", "wwwexample.org", 0},
	    {"*.example.org", "www.example.org.evil", 0},
	    {"*", "anything", 0},
	    {"*.", "a.", 0},
	    {NULL, "a", 0},
	    {"a", NULL, 0},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_msg(tls_sni_match(rows[i].pattern, rows[i].name) == rows[i].want,
		              "row %zu", i);
}
END_TEST

static char dir[64];

/* A self-signed certificate for cn: DIR/<file>.pem and DIR/<file>.key. */
static void
make_cert(const char *file, const char *cn)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	char path[128];
	FILE *f;

	ck_assert_ptr_nonnull(k);
	ck_assert_ptr_nonnull(x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	ck_assert_int_gt(X509_sign(x, k, EVP_sha256()), 0);
	snprintf(path, sizeof(path), "%s/%s.pem", dir, file);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, file);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
}

static char *
path_of(const char *file)
{
	char *p = malloc(128);

	ck_assert_ptr_nonnull(p);
	snprintf(p, 128, "%s/%s", dir, file);
	return p;
}

struct tls_fixture {
	struct config cfg;
	struct config_listen listen;
	struct config_tls_cert certs[2];
};

static void
fixture(struct tls_fixture *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->listen.host, sizeof(f->listen.host), "127.0.0.1");
	snprintf(f->listen.port, sizeof(f->listen.port), "0");
	f->listen.tls = 1;
	f->cfg.listens = &f->listen;
	f->cfg.nlistens = 1;
	f->certs[0].cert = path_of("a.pem");
	f->certs[0].key = path_of("a.key");
	f->certs[1].name = "b.example.org";
	f->certs[1].cert = path_of("b.pem");
	f->certs[1].key = path_of("b.key");
	f->cfg.tls_certs = f->certs;
	f->cfg.ntls_certs = 2;
}

static void
fixture_free(struct tls_fixture *f)
{
	for (int i = 0; i < 2; i++) {
		free(f->certs[i].cert);
		free(f->certs[i].key);
	}
}

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_tls_XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	make_cert("a", "a.example.org");
	make_cert("b", "b.example.org");
}

static void
teardown(void)
{
	static const char *const files[] = {"a.pem", "a.key", "b.pem", "b.key"};
	char p[128];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	rmdir(dir);
}

START_TEST(load_and_reload)
{
	struct tls_fixture f;
	struct tls_server *ts = NULL;
	struct tls_stats st;
	char *good;

	fixture(&f);
	ck_assert_int_eq(tls_server_init(&ts, &f.cfg), 0);
	ck_assert_ptr_nonnull(ts);
	/* a reload with a missing file: refused, the server keeps what it had */
	good = f.certs[1].cert;
	f.certs[1].cert = path_of("missing.pem");
	ck_assert_int_eq(tls_reload(ts, &f.cfg), -1);
	free(f.certs[1].cert);
	/* a key that belongs to the other certificate */
	f.certs[1].cert = good;
	free(f.certs[1].key);
	f.certs[1].key = path_of("a.key");
	ck_assert_int_eq(tls_reload(ts, &f.cfg), -1);
	free(f.certs[1].key);
	f.certs[1].key = path_of("b.key");
	/* bad cipher list */
	f.cfg.tls_ciphers = "NOT-A-CIPHER";
	ck_assert_int_eq(tls_reload(ts, &f.cfg), -1);
	f.cfg.tls_ciphers = NULL;
	f.cfg.tls_min_version = TLS_V1_3;
	ck_assert_int_eq(tls_reload(ts, &f.cfg), 0);
	tls_stats_get(ts, &st);
	ck_assert_uint_eq(st.reloads, 1);
	ck_assert_uint_eq(st.reload_failures, 3);
	tls_server_free(ts);
	ck_assert_int_eq(tls_reload(NULL, &f.cfg), 0); /* no TLS listener: nothing to do */
	fixture_free(&f);
}
END_TEST

START_TEST(load_failures)
{
	struct tls_fixture f;
	struct tls_server *ts = (struct tls_server *)&f;

	fixture(&f);
	/* no listener with tls: no server, no error */
	f.listen.tls = 0;
	ck_assert_int_eq(tls_server_init(&ts, &f.cfg), 0);
	ck_assert_ptr_null(ts);
	f.listen.tls = 1;
	/* tls listener without [tls] */
	f.cfg.ntls_certs = 0;
	ck_assert_int_eq(tls_server_init(&ts, &f.cfg), -1);
	ck_assert_ptr_null(ts);
	f.cfg.ntls_certs = 2;
	/* the default's key missing */
	free(f.certs[0].key);
	f.certs[0].key = path_of("nope.key");
	ck_assert_int_eq(tls_server_init(&ts, &f.cfg), -1);
	ck_assert_ptr_null(ts);
	/* only named certificates: the first one is the default */
	free(f.certs[0].key);
	f.certs[0].key = path_of("a.key");
	f.cfg.tls_certs = &f.certs[1];
	f.cfg.ntls_certs = 1;
	ck_assert_int_eq(tls_server_init(&ts, &f.cfg), 0);
	ck_assert_ptr_nonnull(ts);
	tls_server_free(ts);
	fixture_free(&f);
}
END_TEST

static Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("sni");

	tcase_add_test(tc, sni_names);
	suite_add_tcase(s, tc);
	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, load_and_reload);
	tcase_add_test(tc, load_failures);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_runner_main(tls_suite());
}
