/*
 * conflux - the Conflux command-line tool.
 *
 * Subcommands grow with the server; today: `conflux bench store`, the
 * in-process benchmark of the storage engine.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/conflux/cli.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: conflux <command> [options]\n"
		     "\n"
		     "commands:\n"
		     "  bench store    benchmark the storage engine in-process (no server needed)\n"
		     "\n"
		     "Run `conflux <command> --help` for the options of a command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "bench")) {
		if (argc >= 3 && !strcmp(argv[2], "store"))
			return cli_bench_store(argc - 2, argv + 2);
		fprintf(stderr, "usage: conflux bench store [options]\n");
		return 2;
	}
	fprintf(stderr, "conflux: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}
