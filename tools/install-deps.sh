#!/bin/sh
# Installs the Debian packages Conflux needs to build and test, if missing.
# Used by `make run` and `make test`; safe to run repeatedly (does nothing
# when everything is present). Needs root (or sudo) only when installing.
set -eu

PKGS="build-essential cmake ninja-build pkg-config libcmocka-dev clang llvm libclang-rt-dev
	libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libssl-dev libjansson-dev
	libhttp-parser-dev libwslay-dev openssl curl kcat librdkafka-dev libmosquitto-dev
	zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev mosquitto-clients python3-paho-mqtt"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
# Node.js and npm run the official RocketMQ client in the integration tests;
# python3 checks JSON in the CLI test. Any installation of them will do.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi
if ! command -v python3 >/dev/null 2>&1; then
	missing="$missing python3"
fi

[ -z "$missing" ] && exit 0

echo "install-deps: installing$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
