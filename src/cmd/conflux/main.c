/*
 * conflux - the Conflux command-line tool (docs/cli.md).
 *
 * Administration goes through confluxd's admin HTTP API (--server, default
 * 127.0.0.1:8080, or CONFLUX_SERVER); producing, consuming and the network
 * benchmarks speak the RocketMQ 5 gRPC API, whose address the admin API
 * tells (GET /v1/status) unless --grpc gives it. `conflux bench store`
 * measures the storage engine in-process and needs no server.
 *
 * Once the server has users, admin calls sign in (--user with --password
 * or --password-file, or --token; CONFLUX_USER, CONFLUX_PASSWORD,
 * CONFLUX_TOKEN) and `user`, `acl` and `whoami` manage and show them
 * (docs/security.md).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/conflux/cli.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: conflux [common options] <command> [options]\n"
		"\n"
		"commands:\n"
		"  topic create|list|describe|update|delete   manage topics\n"
		"  group create|list|describe|update|delete|reset   consumer groups (lag, "
		"positions)\n"
		"  produce TOPIC [MESSAGE...]           send messages (arguments or stdin lines)\n"
		"  consume TOPIC --group G              receive, print and acknowledge messages\n"
		"  message get                          look messages up by id, key or offset\n"
		"  dlq list|redrive GROUP               a group's dead letters; send them back\n"
		"  user create|list|describe|update|delete|token   users and admin tokens\n"
		"  acl create|list|delete               policies: who may do what\n"
		"  whoami                               who the server takes you for\n"
		"  bus create|list|describe|delete|replay   EventBridge buses\n"
		"  rule create|list|describe|delete|test    rules: patterns routing events\n"
		"  target create|list|describe|delete   where matching events are delivered\n"
		"  event put BUS                        send a CloudEvent to a bus\n"
		"  bench produce|consume|e2e            benchmark a running confluxd over gRPC\n"
		"  bench store                          benchmark the storage engine in-process\n"
		"  bench timers                         benchmark delayed messages in-process\n"
		"\n"
		"Options every server command takes:\n"
		"  --server HOST:PORT   admin HTTP API (default $CONFLUX_SERVER or "
		"127.0.0.1:8080)\n"
		"  --grpc HOST:PORT     gRPC API (default: what GET /v1/status reports)\n"
		"  --timeout DURATION   deadline of one request (default 10s)\n"
		"  --json               machine-readable output\n"
		"\n"
		"Signing in (once the server has users):\n"
		"  --user NAME          user name (default $CONFLUX_USER)\n"
		"  --password PW        password (default $CONFLUX_PASSWORD; asked for on a\n"
		"                       terminal when neither is given)\n"
		"  --password-file FILE the password is the first line of FILE\n"
		"  --token TOKEN        an admin token instead (default $CONFLUX_TOKEN)\n"
		"Options win over the environment. In `user create` and `user update`,\n"
		"--password after the command is the user's new password: sign in with\n"
		"options before the command (conflux --user admin --password-file F user ...),\n"
		"with --token, or with the environment.\n"
		"\n"
		"Exit status: 0 success, 1 the operation failed, 2 bad command line,\n"
		"3 the server could not be reached.\n"
		"Run `conflux <command> --help` for the options of a command.\n");
}

int main(int argc, char **argv)
{
	/* A server closing a socket is an error to report, not a reason to die. */
	signal(SIGPIPE, SIG_IGN);
	int skip = cli_global_options(argc, argv);
	if (skip < 0)
		return CLI_EUSAGE;
	argc -= skip;
	argv += skip;
	if (argc < 2) {
		usage(stderr);
		return CLI_EUSAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("conflux %s\n", CLI_VERSION);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "topic"))
		return cli_topic(argc - 1, argv + 1);
	if (!strcmp(argv[1], "group"))
		return cli_group(argc - 1, argv + 1);
	if (!strcmp(argv[1], "produce"))
		return cli_produce(argc - 1, argv + 1);
	if (!strcmp(argv[1], "consume"))
		return cli_consume(argc - 1, argv + 1);
	if (!strcmp(argv[1], "message"))
		return cli_message(argc - 1, argv + 1);
	if (!strcmp(argv[1], "dlq"))
		return cli_dlq(argc - 1, argv + 1);
	if (!strcmp(argv[1], "user"))
		return cli_user(argc - 1, argv + 1);
	if (!strcmp(argv[1], "acl"))
		return cli_acl(argc - 1, argv + 1);
	if (!strcmp(argv[1], "whoami"))
		return cli_whoami(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bus"))
		return cli_bus(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rule"))
		return cli_rule(argc - 1, argv + 1);
	if (!strcmp(argv[1], "target"))
		return cli_target(argc - 1, argv + 1);
	if (!strcmp(argv[1], "event"))
		return cli_event(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench")) {
		if (argc >= 3 && !strcmp(argv[2], "store"))
			return cli_bench_store(argc - 2, argv + 2);
		if (argc >= 3 && !strcmp(argv[2], "timers"))
			return cli_bench_timers(argc - 2, argv + 2);
		return cli_bench_rmq(argc - 1, argv + 1);
	}
	fprintf(stderr, "conflux: unknown command \"%s\"\n\n", argv[1]);
	usage(stderr);
	return CLI_EUSAGE;
}
