/* check_runner.h - the one runner of the unit suites: runs a suite the same way everywhere
 * (CK_VERBOSITY from the environment, CK_RUN_SUITE / CK_RUN_CASE to pick, CK_XML_LOG_FILE_NAME
 * or CK_TAP_LOG_FILE_NAME for a machine-readable log, CK_FORK=no for gdb) and gives make check
 * its exit status. */
#ifndef WSGATE_CHECK_RUNNER_H
#define WSGATE_CHECK_RUNNER_H

#include <check.h>

/* Runs s (the runner takes it); EXIT_SUCCESS when every test passed. */
int check_runner_main(Suite *s);

#endif
