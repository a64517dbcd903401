# The one test command is `make test` (scripts/test): vet, every test with the race detector,
# and the real-server tests against Dovecot + Postfix, which it installs, starts and stops
# when run as root.
GO ?= go

.PHONY: test vet race bench bench-real fuzz-smoke

test:
	GO=$(GO) ./scripts/test

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./session/ ./compress/ . ./keystore/ ./node/ ./mailbox/

# The benchmarks on the real Dovecot + Postfix (docs/BENCHMARKS.md, "Real mail servers"), about
# 5 minutes. The servers must run (scripts/mailserver start), and SEALPOST_MAILSERVER_ENV name
# their env file, e.g. make bench-real SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env
bench-real:
	@test -n "$(SEALPOST_MAILSERVER_ENV)" || { echo "bench-real: set SEALPOST_MAILSERVER_ENV to the env file scripts/mailserver start writes (/var/tmp/sealpost-mail/mailserver.env)" >&2; exit 2; }
	SEALPOST_MAILSERVER_ENV=$(SEALPOST_MAILSERVER_ENV) SEALPOST_REQUIRE_REAL_MAIL=1 $(GO) test -run '^$$' -bench 'RealPingRoundTrip' -benchtime 60x -count 1 -timeout 30m ./node/
	SEALPOST_MAILSERVER_ENV=$(SEALPOST_MAILSERVER_ENV) SEALPOST_REQUIRE_REAL_MAIL=1 $(GO) test -run '^$$' -bench 'RealBacklog500' -benchtime 1x -count 2 -timeout 30m ./node/

# Runs every fuzz target briefly (FUZZTIME=60s for the acceptance run).
FUZZTIME ?= 10s
fuzz-smoke:
	./scripts/fuzz-all $(FUZZTIME)
