# The one test command is `make test` (scripts/test): vet, every test with the race detector,
# and the real-server tests against Dovecot + Postfix, which it installs, starts and stops
# when run as root.
GO ?= go

.PHONY: test vet race bench fuzz-smoke

test:
	GO=$(GO) ./scripts/test

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./session/ ./compress/ . ./keystore/ ./node/ ./mailbox/

# Runs every fuzz target briefly (FUZZTIME=60s for the acceptance run).
FUZZTIME ?= 10s
fuzz-smoke:
	./scripts/fuzz-all $(FUZZTIME)
