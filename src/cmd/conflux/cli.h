/*
 * cli.h - the subcommands of the conflux command-line tool.
 */
#ifndef CFX_CMD_CONFLUX_CLI_H
#define CFX_CMD_CONFLUX_CLI_H

/* Each returns the process exit status. argv[0] is the subcommand's own name. */
int cli_bench_store(int argc, char **argv);

#endif
