/* check_runner.c - the one runner of the unit suites (check_runner.h). */
#include "check_runner.h"

#include <stdlib.h>

int
check_runner_main(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
