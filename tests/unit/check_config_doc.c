/* check_config_doc.c - the docs cannot drift from the code: every row of src/config_keys.c's
 * table has an entry in wsgate.ini(5) under its section, and every entry there is a row. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_runner.h"
#include "config_keys.h"

#ifndef WSGATE_TOP_SRCDIR
#define WSGATE_TOP_SRCDIR "."
#endif
#define MAN_PAGE "man/wsgate.ini.5"
#define DOC_MAX 512

struct doc_key {
	const struct config_section_def *sec;
	char name[64];
	int line;
};

static struct doc_key doc[DOC_MAX];
static size_t ndoc;
static char doc_path[1024];

static void
chomp(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* ".SS "[name]"" or ".SS "[name ARG]"": the section it opens, or NULL (any other heading). */
static const struct config_section_def *
doc_section(const char *line, int lineno)
{
	const char *open = strchr(line, '['), *close = open ? strchr(open, ']') : NULL;
	char name[64];
	size_t n;
	int known;
	const struct config_section_def *s;

	if (open == NULL || close == NULL)
		return NULL;
	n = strcspn(open + 1, " ]");
	ck_assert_msg(n > 0 && n < sizeof(name), "%s:%d: bad section heading: %s", doc_path, lineno,
	              line);
	memcpy(name, open + 1, n);
	name[n] = '\0';
	s = config_section_find(name, open[1 + n] == ' ', &known);
	ck_assert_msg(s != NULL,
	              "%s:%d: documents section %s, which src/config_keys.c's "
	              "config_sections[] does not have",
	              doc_path, lineno, line + 4);
	return s;
}

static void
doc_load(void)
{
	const char *top = getenv("WSGATE_SRCDIR");
	char line[1024];
	const struct config_section_def *cur = NULL;
	int lineno = 0, after_tp = 0;
	FILE *f;

	snprintf(doc_path, sizeof(doc_path), "%s/%s", top ? top : WSGATE_TOP_SRCDIR, MAN_PAGE);
	ck_assert_msg((f = fopen(doc_path, "r")) != NULL, "cannot open %s", doc_path);
	ndoc = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		chomp(line);
		if (strncmp(line, ".SH", 3) == 0) {
			cur = NULL;
		} else if (strncmp(line, ".SS ", 4) == 0) {
			cur = doc_section(line, lineno);
		} else if (after_tp && cur != NULL && strncmp(line, ".B ", 3) == 0) {
			struct doc_key *d = &doc[ndoc];
			const char *k = line + 3;
			size_t n = strcspn(k, " \"");

			ck_assert_msg(ndoc < DOC_MAX, "more than %d keys in %s", DOC_MAX, doc_path);
			ck_assert_msg(n > 0 && n < sizeof(d->name), "%s:%d: bad key entry",
			              doc_path, lineno);
			memcpy(d->name, k, n);
			d->name[n] = '\0';
			d->sec = cur;
			d->line = lineno;
			ndoc++;
		}
		after_tp = strcmp(line, ".TP") == 0;
	}
	fclose(f);
}

static const char *
section_label(const struct config_section_def *s, char *buf, size_t n)
{
	if (s->arg == CFG_ARG_REQUIRED)
		snprintf(buf, n, "[%s %s]", s->name, s->arg_example ? s->arg_example : "ARG");
	else
		snprintf(buf, n, "[%s]", s->name);
	return buf;
}

START_TEST(test_every_key_documented)
{
	size_t missing = 0;
	char label[96];

	doc_load();
	for (size_t i = 0; i < config_nkeys; i++) {
		const struct config_key *k = &config_keys[i];
		const struct config_section_def *s = &config_sections[k->section];
		size_t j;

		for (j = 0; j < ndoc; j++)
			if (doc[j].sec == s && strcmp(doc[j].name, k->name) == 0)
				break;
		if (j < ndoc)
			continue;
		missing++;
		fprintf(
		    stderr,
		    "%s: key \"%s\" of section %s is in src/config_keys.c's table but "
		    "not in wsgate.ini(5): add \".TP\" + \".B %s\" + its meaning and default under "
		    "the .SS heading of %s\n",
		    doc_path, k->name, section_label(s, label, sizeof(label)), k->name, label);
	}
	ck_assert_msg(missing == 0,
	              "%zu key(s) of src/config_keys.c missing from %s (listed "
	              "above)",
	              missing, doc_path);
}
END_TEST

START_TEST(test_every_documented_key_exists)
{
	size_t extra = 0;
	char label[96];

	doc_load();
	ck_assert_msg(ndoc > 0, "no key entries found in %s", doc_path);
	for (size_t j = 0; j < ndoc; j++) {
		if (config_key_find(doc[j].sec->kind, doc[j].name) != NULL)
			continue;
		extra++;
		fprintf(
		    stderr,
		    "%s:%d: wsgate.ini(5) documents key \"%s\" of section %s, which "
		    "src/config_keys.c's table does not have: remove the entry or add the row\n",
		    doc_path, doc[j].line, doc[j].name,
		    section_label(doc[j].sec, label, sizeof(label)));
	}
	ck_assert_msg(extra == 0, "%zu key(s) in %s unknown to src/config_keys.c (listed above)",
	              extra, doc_path);
}
END_TEST

START_TEST(test_documented_once)
{
	doc_load();
	for (size_t i = 0; i < ndoc; i++)
		for (size_t j = i + 1; j < ndoc; j++)
			ck_assert_msg(doc[i].sec != doc[j].sec ||
			                  strcmp(doc[i].name, doc[j].name) != 0,
			              "%s:%d: key \"%s\" documented twice (also line %d)", doc_path,
			              doc[j].line, doc[j].name, doc[i].line);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("config_doc");
	TCase *tc = tcase_create("man page");

	tcase_add_test(tc, test_every_key_documented);
	tcase_add_test(tc, test_every_documented_key_exists);
	tcase_add_test(tc, test_documented_once);
	suite_add_tcase(s, tc);
	return check_runner_main(s);
}
