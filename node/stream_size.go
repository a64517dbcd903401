package node

import (
	"context"

	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// How large a chunk is (docs/PROTOCOL.md section 20): as large as fits in one mail under the mail
// server's size limit, and at most session.MaxChunkData (1 MiB). The limit is the smaller of the
// one the submission server advertises (SMTP SIZE, mailbox.SizeLimiter) and the configured one
// (`init --max-mail-size`, MailConfig.MaxMailSize, DefaultMaxMailSize when not set): the peer's
// own server may take less than ours, which only the operator can know.

// DefaultMaxMailSize is the largest mail this node sends a chunk in unless configured: well under
// the 10 MiB that most providers take, the smallest common limit.
const DefaultMaxMailSize = 10_000_000

// chunkFrameOverhead bounds what a compression frame adds to the bytes it carries (a frame of
// incompressible bytes is stored: its header and the bytes).
const chunkFrameOverhead = session.MaxChunkPayload - session.MaxChunkData

// minChunkData is the least a chunk carries however small the limit: a server that takes less
// than a mail of it cannot carry any answer, and its refusal then breaks the stream.
const minChunkData = 1 << 10

// chunkSizeFor is how many plain bytes each chunk of a stream to the address to carries: as
// many as keep the chunk's mail within mailLimit, at most session.MaxChunkData (fit); and at most
// Options.ChunkSize when that is set (size).
func (n *Node) chunkSizeFor(ctx context.Context, to string) (size, fit int) {
	fit = chunkDataFor(n.mailLimit(ctx), n.cfg.Address, to, session.MaxChunkData)
	size = fit
	if n.opts.ChunkSize > 0 {
		size = min(n.opts.ChunkSize, size)
	}
	return size, fit
}

// chunkSize is the chunk size without the mail limit: Options.ChunkSize, at most
// session.MaxChunkData: only for a push recorded before its chunk size was (stream_file.go).
func (n *Node) chunkSize() int {
	if n.opts.ChunkSize > 0 {
		return min(n.opts.ChunkSize, session.MaxChunkData)
	}
	return session.MaxChunkData
}

// mailLimit is the largest mail this node sends: the configured limit, or the mail server's SIZE
// when that is smaller. Learning the server's may connect to it, once per transport.
func (n *Node) mailLimit(ctx context.Context) int64 {
	limit := n.cfg.MaxMailSize
	if limit <= 0 {
		limit = DefaultMaxMailSize
	}
	tr, err := n.transport()
	if err != nil {
		return limit
	}
	sl, ok := tr.(mailbox.SizeLimiter)
	if !ok {
		return limit
	}
	max, err := sl.MaxMessageSize(ctx)
	if err != nil {
		n.log.Debug("the mail server's size limit is unknown; using the configured one", "op", "stream", "limit", limit, "err", err)
		return limit
	}
	if max > 0 {
		limit = min(limit, max)
	}
	return limit
}

// chunkDataFor is the most plain bytes, at most most, whose chunk's mail from one address to
// another is at most limit bytes, even when they do not compress (minChunkData when none fits).
func chunkDataFor(limit int64, from, to string, most int) int {
	lo, hi := minChunkData, most // the answer is in [lo, hi] when hi's mail is too large
	if chunkMailSize(from, to, hi) <= limit {
		return hi
	}
	if chunkMailSize(from, to, lo) > limit {
		return lo
	}
	for hi-lo > 1 { // chunkMailSize grows with n: the largest n that fits
		mid := lo + (hi-lo)/2
		if chunkMailSize(from, to, mid) <= limit {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// chunkMailSize bounds the mail of a chunk carrying n plain bytes: the package (header, body
// padded to its bucket, tag) of the largest frame of n bytes, base64 in mail lines.
func chunkMailSize(from, to string, n int) int64 {
	body := paddedLen(4+1+8+4+n+chunkFrameOverhead) + 16 // index, part, offset, payload length; tag
	return mailbox.MailSize(from, to, session.HeaderSize+body)
}

// paddedLen is the bucket a sealed plaintext of n bytes is padded to (docs/PROTOCOL.md section 9).
func paddedLen(n int) int {
	switch {
	case n <= 256:
		return 256
	case n <= 65536:
		b := 256
		for b < n {
			b <<= 1
		}
		return b
	}
	return (n + 16383) / 16384 * 16384 // above 64 KiB, steps of 16 KiB
}
