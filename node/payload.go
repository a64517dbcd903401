package node

import (
	"fmt"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
)

// The payload of a COMMAND or RESPONSE is a compression frame holding the commands package's
// JSON request or result (docs/PROTOCOL.md sections 10 and 19).

func encodeRequest(req commands.Request) ([]byte, error) {
	b, err := commands.EncodeRequest(req)
	if err != nil {
		return nil, err
	}
	return compress.Encode(b)
}

func decodeRequest(frame []byte) (commands.Request, error) {
	b, err := compress.Decode(frame, commands.MaxRequestSize)
	if err != nil {
		return commands.Request{}, fmt.Errorf("command payload: %w", err)
	}
	return commands.DecodeRequest(b)
}

func encodeResult(r commands.Result) ([]byte, error) {
	b, err := commands.EncodeResult(r)
	if err != nil {
		return nil, err
	}
	return compress.Encode(b)
}

func decodeResult(frame []byte) (commands.Result, error) {
	b, err := compress.Decode(frame, 0)
	if err != nil {
		return commands.Result{}, fmt.Errorf("result payload: %w", err)
	}
	return commands.DecodeResult(b)
}
