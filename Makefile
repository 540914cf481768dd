# Conflux - the two commands of the README, and the long-running extras.
#
#   make run          install what is missing, build a release, start confluxd
#   make test         everything CI runs: warnings as errors, all tests,
#                     then the unit tests again under ASan+UBSan
#   make build        build only (binaries in build/)
#   make crash-test N=1000   the long kill -9 crash test of the store
#   make crash-test-broker N=200   the kill -9 crash test of POP state, delays, transactions
#   make fuzz FUZZ_TIME=60   run each libFuzzer target for FUZZ_TIME seconds
#   make bench        the storage benchmark (conflux bench store)
#   make bench-grpc   gRPC produce and end-to-end latency beside the store (bench/grpc.sh)
#   make bench-kafka  Kafka produce and fetch with librdkafka beside the store (bench/kafka.sh)
#   make bench-mqtt   MQTT throughput, idle connections and retained topics, confluxd
#                     against a Mosquitto started beside it (bench/mqtt.sh)
#   make bench-eventbridge  CloudEvents HTTP ingest beside gRPC, rule matching, and
#                     rule-to-webhook latency (bench/eventbridge.sh; needs wrk)

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
N          ?= 1000
FUZZ_TIME  ?= 60

.PHONY: all deps build run test test-release test-asan crash-test crash-test-broker fuzz bench bench-grpc bench-kafka bench-mqtt bench-eventbridge clean

all: build

deps:
	@./tools/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/confluxd

test: deps test-release test-asan

test-release: build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCFX_ASAN=ON -DCFX_UBSAN=ON

test-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest -j $(JOBS) --output-on-failure -L 'unit|fuzz'

crash-test: build
	./$(BUILD)/tests/crash/crash_test --iterations $(N) --dir $(BUILD)/crash-data

crash-test-broker: build
	./$(BUILD)/tests/crash/broker_crash --iterations $(if $(filter command line environment,$(origin N)),$(N),200) --dir $(BUILD)/crash-broker-data

$(FUZZ_BUILD)/build.ninja:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCFX_FUZZ=ON

fuzz: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	./tests/fuzz/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_TIME)

bench: build
	./$(BUILD)/conflux bench store

bench-grpc: build
	BUILD=$(BUILD) ./bench/grpc.sh

bench-kafka: build
	BUILD=$(BUILD) ./bench/kafka.sh

bench-mqtt: build
	BUILD=$(BUILD) ./bench/mqtt.sh

bench-eventbridge: build
	BUILD=$(BUILD) ./bench/eventbridge.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
