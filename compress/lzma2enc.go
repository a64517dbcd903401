package compress

import (
	"encoding/binary"
	"math/bits"
)

// This file is the sender's LZMA2 encoder. The xz library's own encoder is
// greedy: at every position it takes the longest match it finds, whatever
// that match costs to code, and looks at the four repeated distances only
// for one-byte matches. On line-structured text (numbered lines, logs, JSON
// lines) LZMA's cheap repeated-distance matches are what xz wins with, and
// the library's frames came out 1.3 to 4.8 times the size of `xz -6`'s (see
// docs/BENCHMARKS.md). Its binary-tree matcher is worse still on ratio and
// far slower (under 1 MB/s, and near zero on runs of one repeated line).
//
// The parser below follows the published LZMA "fast" mode heuristics (the
// ones liblzma uses for `xz -0..-3`): prefer a repeated distance unless a
// new match is clearly longer, drop a match when the next position has a
// better one (one step of lazy evaluation), and prefer the shorter distance
// between two matches of nearly equal length. The match finder is a hash
// chain over the whole input (no circular buffer: a frame's input is in
// memory), with a 3-byte table for short matches.
//
// Only the encoder is ours; frames are decoded by the library behind the
// structural checks of xzheader.go, so an encoder bug shows up as a frame
// that Decode refuses (the fuzz target FuzzRoundTrip and TestEncodeCorpora
// check every encoder output through Decode), never as a weaker receiver.

const (
	lzmaLC = 3 // literal context bits: the xz default, best for text
	lzmaLP = 0
	lzmaPB = 2
	// lzmaProps is the LZMA properties byte for lc, lp, pb.
	lzmaProps = (lzmaPB*5+lzmaLP)*9 + lzmaLC

	matchMin = 2
	matchMax = 273

	// niceLen: a match this long is taken without looking further.
	// chainDepth: hash-chain entries visited per position. Both are what
	// `xz -1` uses. A deeper search finds longer matches farther back,
	// which the heuristics cannot price: on 1 MiB of `seq` output depth
	// 24 made a 41,745-byte frame and depth 8 makes 23,409 (xz -6:
	// 37,556), while text, logs and JSON lines lose 1 to 3 % (measured
	// for nice 16..273 and depth 4..48).
	niceLen    = 128
	chainDepth = 8

	// LZMA2 chunk limits: 2 MiB unpacked, 64 KiB packed. A chunk is
	// closed while the range coder still has chunkMargin bytes of room,
	// more than one operation plus the flush can write.
	chunkUnpackedMax = 1 << 21
	chunkPackedMax   = 1 << 16
	chunkMargin      = 64

	probInit  = 1 << 10
	probBits  = 11
	moveBits  = 5
	topValue  = 1 << 24
	numStates = 12
	posStates = 1 << lzmaPB
)

// rangeEncoder is LZMA's binary arithmetic coder.
type rangeEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int
	out       []byte
}

func (e *rangeEncoder) reset() {
	e.low, e.rng, e.cache, e.cacheSize = 0, 0xFFFFFFFF, 0, 1
}

// pending is an upper bound of the bytes flush would have written in all.
func (e *rangeEncoder) pending() int { return len(e.out) + e.cacheSize + 4 }

func (e *rangeEncoder) shiftLow() {
	if uint32(e.low) < 0xFF000000 || e.low>>32 != 0 {
		carry := byte(e.low >> 32)
		temp := e.cache
		for {
			e.out = append(e.out, temp+carry)
			temp = 0xFF
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(e.low >> 24)
	}
	e.cacheSize++
	e.low = (e.low & 0x00FFFFFF) << 8
}

func (e *rangeEncoder) bit(p *uint16, b uint32) {
	bound := (e.rng >> probBits) * uint32(*p)
	if b == 0 {
		e.rng = bound
		*p += (1<<probBits - *p) >> moveBits
	} else {
		e.low += uint64(bound)
		e.rng -= bound
		*p -= *p >> moveBits
	}
	for e.rng < topValue {
		e.rng <<= 8
		e.shiftLow()
	}
}

func (e *rangeEncoder) direct(v uint32, n int) {
	for i := n - 1; i >= 0; i-- {
		e.rng >>= 1
		if (v>>uint(i))&1 != 0 {
			e.low += uint64(e.rng)
		}
		for e.rng < topValue {
			e.rng <<= 8
			e.shiftLow()
		}
	}
}

func (e *rangeEncoder) flush() {
	for i := 0; i < 5; i++ {
		e.shiftLow()
	}
}

// tree codes the n low bits of v, high bit first, with probs[1:1<<n].
func (e *rangeEncoder) tree(probs []uint16, n int, v uint32) {
	m := uint32(1)
	for i := n - 1; i >= 0; i-- {
		b := (v >> uint(i)) & 1
		e.bit(&probs[m], b)
		m = m<<1 | b
	}
}

// reverseTree codes the n low bits of v, low bit first.
func (e *rangeEncoder) reverseTree(probs []uint16, n int, v uint32) {
	m := uint32(1)
	for i := 0; i < n; i++ {
		b := v & 1
		v >>= 1
		e.bit(&probs[m], b)
		m = m<<1 | b
	}
}

type lenCoder struct {
	choice, choice2 uint16
	low             [posStates][1 << 3]uint16
	mid             [posStates][1 << 3]uint16
	high            [1 << 8]uint16
}

func (c *lenCoder) encode(e *rangeEncoder, l uint32, posState uint32) {
	l -= matchMin
	switch {
	case l < 8:
		e.bit(&c.choice, 0)
		e.tree(c.low[posState][:], 3, l)
	case l < 16:
		e.bit(&c.choice, 1)
		e.bit(&c.choice2, 0)
		e.tree(c.mid[posState][:], 3, l-8)
	default:
		e.bit(&c.choice, 1)
		e.bit(&c.choice2, 1)
		e.tree(c.high[:], 8, l-16)
	}
}

// lzmaModel is the adaptive state the decoder mirrors.
type lzmaModel struct {
	state      uint32
	reps       [4]uint32 // distances minus one
	isMatch    [numStates][posStates]uint16
	isRep      [numStates]uint16
	isRepG0    [numStates]uint16
	isRepG1    [numStates]uint16
	isRepG2    [numStates]uint16
	isRep0Long [numStates][posStates]uint16
	posSlot    [4][1 << 6]uint16
	posSpecial [1 + 114]uint16
	align      [1 << 4]uint16
	lens       lenCoder
	repLens    lenCoder
	literal    [0x300 << (lzmaLC + lzmaLP)]uint16
}

func (m *lzmaModel) reset() {
	m.state = 0
	m.reps = [4]uint32{}
	fill := func(p []uint16) {
		for i := range p {
			p[i] = probInit
		}
	}
	for i := range m.isMatch {
		fill(m.isMatch[i][:])
		fill(m.isRep0Long[i][:])
	}
	fill(m.isRep[:])
	fill(m.isRepG0[:])
	fill(m.isRepG1[:])
	fill(m.isRepG2[:])
	for i := range m.posSlot {
		fill(m.posSlot[i][:])
	}
	fill(m.posSpecial[:])
	fill(m.align[:])
	fill(m.literal[:])
	for _, c := range []*lenCoder{&m.lens, &m.repLens} {
		c.choice, c.choice2 = probInit, probInit
		for i := range c.low {
			fill(c.low[i][:])
			fill(c.mid[i][:])
		}
		fill(c.high[:])
	}
}

// lzmaEncoder codes one input (all of it in memory) as LZMA2 chunks.
type lzmaEncoder struct {
	in   []byte
	dict int // largest distance allowed
	rc   rangeEncoder
	m    lzmaModel

	// Match finder.
	head4, head3 []int32
	chain        []int32 // previous position with the same 4-byte hash, by pos & chainMask
	chainMask    int
	hashed       int // positions below this are in the tables
	bits4, bits3 uint

	// Found matches at the current position, increasing in length.
	mlen  [matchMax + 1]uint32
	mdist [matchMax + 1]uint32
	nm    int
}

func newLZMAEncoder(in []byte, dict int) *lzmaEncoder {
	e := &lzmaEncoder{in: in, dict: dict}
	b := uint(bits.Len(uint(len(in))))
	e.bits4 = min(max(b-1, 10), 18)
	e.bits3 = min(max(b-3, 8), 16)
	e.head4 = make([]int32, 1<<e.bits4)
	e.head3 = make([]int32, 1<<e.bits3)
	w := 1 << bits.Len(uint(min(len(in), dict)))
	e.chain = make([]int32, w)
	e.chainMask = w - 1
	for i := range e.head4 {
		e.head4[i] = -1
	}
	for i := range e.head3 {
		e.head3[i] = -1
	}
	e.m.reset()
	return e
}

func (e *lzmaEncoder) hash4(p int) uint32 {
	return (binary.LittleEndian.Uint32(e.in[p:]) * 2654435761) >> (32 - e.bits4)
}

func (e *lzmaEncoder) hash3(p int) uint32 {
	v := uint32(e.in[p]) | uint32(e.in[p+1])<<8 | uint32(e.in[p+2])<<16
	return (v * 2654435761) >> (32 - e.bits3)
}

// insert adds positions up to (not including) end to the hash tables.
func (e *lzmaEncoder) insert(end int) {
	limit := len(e.in) - 4
	for ; e.hashed < end; e.hashed++ {
		p := e.hashed
		if p > limit {
			continue
		}
		h4 := e.hash4(p)
		e.chain[p&e.chainMask] = e.head4[h4]
		e.head4[h4] = int32(p)
		e.head3[e.hash3(p)] = int32(p)
	}
}

// matchLen is the length of the common prefix of in[a:] and in[b:], a < b,
// at most max.
func (e *lzmaEncoder) matchLen(a, b, max int) int {
	in := e.in
	n := 0
	for n+8 <= max {
		x := binary.LittleEndian.Uint64(in[a+n:]) ^ binary.LittleEndian.Uint64(in[b+n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
		n += 8
	}
	for n < max && in[a+n] == in[b+n] {
		n++
	}
	return n
}

// find fills mlen/mdist with the matches at p, each longer than the one
// before, and returns the longest length (0 if none).
func (e *lzmaEncoder) find(p int) int {
	e.insert(p)
	e.nm = 0
	avail := min(len(e.in)-p, matchMax)
	if avail < 4 {
		e.insert(p + 1)
		return 0
	}
	best := 0
	minPos := max(p-e.dict, 0)
	if q := int(e.head3[e.hash3(p)]); q >= minPos && q < p {
		if n := e.matchLen(q, p, avail); n >= 3 {
			best = n
			e.mlen[0], e.mdist[0], e.nm = uint32(n), uint32(p-q-1), 1
		}
	}
	q := int(e.head4[e.hash4(p)])
	for depth := chainDepth; q >= minPos && depth > 0 && best < avail; depth-- {
		if e.in[q+best] == e.in[p+best] {
			if n := e.matchLen(q, p, avail); n > best {
				best = n
				d := uint32(p - q - 1)
				if e.nm > 0 && e.mdist[e.nm-1] == d {
					e.mlen[e.nm-1] = uint32(n)
				} else {
					e.mlen[e.nm], e.mdist[e.nm] = uint32(n), d
					e.nm++
				}
				if n >= niceLen {
					break
				}
			}
		}
		next := int(e.chain[q&e.chainMask])
		if next >= q {
			break // overwritten slot: the chain ends here
		}
		q = next
	}
	e.insert(p + 1)
	return best
}

// changePair reports whether big is so much farther than small that the
// shorter match at small is the better deal.
func changePair(small, big uint32) bool { return big>>7 > small }

// op is one parsed operation: a literal (n == 1, rep < 0 and dist == 0),
// a repeated distance (rep 0..3) or a new match (rep < 0, dist).
type op struct {
	n    int
	rep  int
	dist uint32
}

// next chooses the operation at p, where find(p) has already run and
// returned mainLen. It may run find(p+1); ahead reports that it did and
// with what result, so that the caller does not repeat it.
func (e *lzmaEncoder) next(p, mainLen int) (o op, ahead bool, aheadLen int) {
	in := e.in
	avail := min(len(in)-p, matchMax)
	lit := op{n: 1, rep: -1}
	if avail < matchMin {
		return lit, false, 0
	}
	repLen, repIdx := 0, 0
	for i, r := range e.m.reps {
		q := p - int(r) - 1
		if q < 0 || in[q] != in[p] || in[q+1] != in[p+1] {
			continue
		}
		n := e.matchLen(q, p, avail)
		if n >= niceLen {
			return op{n: n, rep: i}, false, 0
		}
		if n > repLen {
			repLen, repIdx = n, i
		}
	}
	if mainLen >= niceLen {
		return op{n: mainLen, rep: -1, dist: e.mdist[e.nm-1]}, false, 0
	}
	var mainDist uint32
	if mainLen >= matchMin {
		k := e.nm - 1
		mainDist = e.mdist[k]
		for k > 0 && mainLen == int(e.mlen[k-1])+1 && changePair(e.mdist[k-1], mainDist) {
			k--
			mainLen, mainDist = int(e.mlen[k]), e.mdist[k]
		}
		if mainLen == 3 && mainDist >= 0x80<<6 {
			mainLen = 1 // a far 3-byte match costs more than its literals
		}
	}
	if repLen >= matchMin {
		if repLen+1 >= mainLen ||
			(repLen+2 >= mainLen && mainDist > 1<<9) ||
			(repLen+3 >= mainLen && mainDist > 1<<15) {
			return op{n: repLen, rep: repIdx}, false, 0
		}
	}
	if mainLen < 3 || avail <= 2 {
		return lit, false, 0
	}
	// One step of lazy evaluation.
	nextLen := e.find(p + 1)
	if nextLen >= matchMin {
		nextDist := e.mdist[e.nm-1]
		if (nextLen >= mainLen && nextDist < mainDist) ||
			(nextLen == mainLen+1 && !changePair(mainDist, nextDist)) ||
			nextLen > mainLen+1 ||
			(nextLen+1 >= mainLen && mainLen >= 3 && changePair(nextDist, mainDist)) {
			return lit, true, nextLen
		}
	}
	limit := max(mainLen-1, matchMin)
	for _, r := range e.m.reps {
		q := p + 1 - int(r) - 1
		if q >= 0 && p+1+limit <= len(in) && e.matchLen(q, p+1, limit) == limit {
			return lit, true, nextLen
		}
	}
	return op{n: mainLen, rep: -1, dist: mainDist}, true, nextLen
}

func (e *lzmaEncoder) encodeLiteral(p int) {
	m, rc := &e.m, &e.rc
	posState := uint32(p) & (posStates - 1)
	rc.bit(&m.isMatch[m.state][posState], 0)
	var prev uint32
	if p > 0 {
		prev = uint32(e.in[p-1])
	}
	ctx := ((uint32(p) & (1<<lzmaLP - 1)) << lzmaLC) + prev>>(8-lzmaLC)
	probs := m.literal[0x300*ctx : 0x300*(ctx+1)]
	b := uint32(e.in[p])
	if m.state < 7 {
		rc.tree(probs, 8, b)
	} else {
		match := uint32(e.in[p-int(m.reps[0])-1])
		offs, sym := uint32(0x100), uint32(1)
		for i := 7; i >= 0; i-- {
			match <<= 1
			mbit := match & offs
			bit := (b >> uint(i)) & 1
			rc.bit(&probs[offs+mbit+sym], bit)
			sym = sym<<1 | bit
			if bit != 0 {
				offs &= mbit
			} else {
				offs &^= mbit
			}
		}
	}
	switch {
	case m.state < 4:
		m.state = 0
	case m.state < 10:
		m.state -= 3
	default:
		m.state -= 6
	}
}

func (e *lzmaEncoder) encodeMatch(p int, o op) {
	m, rc := &e.m, &e.rc
	posState := uint32(p) & (posStates - 1)
	rc.bit(&m.isMatch[m.state][posState], 1)
	if o.rep < 0 {
		rc.bit(&m.isRep[m.state], 0)
		m.lens.encode(rc, uint32(o.n), posState)
		e.encodeDist(o.dist, uint32(min(o.n-matchMin, 3)))
		m.reps = [4]uint32{o.dist, m.reps[0], m.reps[1], m.reps[2]}
		if m.state < 7 {
			m.state = 7
		} else {
			m.state = 10
		}
		return
	}
	rc.bit(&m.isRep[m.state], 1)
	if o.rep == 0 {
		rc.bit(&m.isRepG0[m.state], 0)
		rc.bit(&m.isRep0Long[m.state][posState], 1)
	} else {
		rc.bit(&m.isRepG0[m.state], 1)
		d := m.reps[o.rep]
		if o.rep == 1 {
			rc.bit(&m.isRepG1[m.state], 0)
		} else {
			rc.bit(&m.isRepG1[m.state], 1)
			rc.bit(&m.isRepG2[m.state], uint32(o.rep-2))
			if o.rep == 3 {
				m.reps[3] = m.reps[2]
			}
			m.reps[2] = m.reps[1]
		}
		m.reps[1] = m.reps[0]
		m.reps[0] = d
	}
	m.repLens.encode(rc, uint32(o.n), posState)
	if m.state < 7 {
		m.state = 8
	} else {
		m.state = 11
	}
}

func (e *lzmaEncoder) encodeDist(dist, lenState uint32) {
	m, rc := &e.m, &e.rc
	var slot uint32
	if dist < 4 {
		slot = dist
	} else {
		n := uint32(bits.Len32(dist)) - 1
		slot = n<<1 | (dist>>(n-1))&1
	}
	rc.tree(m.posSlot[lenState][:], 6, slot)
	if slot < 4 {
		return
	}
	footer := int(slot>>1) - 1
	base := (2 | slot&1) << uint(footer)
	reduced := dist - base
	if slot < 14 {
		rc.reverseTree(m.posSpecial[base-slot:], footer, reduced)
		return
	}
	rc.direct(reduced>>4, footer-4)
	rc.reverseTree(m.align[:], 4, reduced&15)
}

// encodeLZMA2 appends the LZMA2 chunks of e.in and the end marker to dst.
// It gives up (false) once the output would exceed limit bytes.
func (e *lzmaEncoder) encodeLZMA2(dst []byte, limit int) ([]byte, bool) {
	in := e.in
	first := true
	chunkStart := 0
	e.rc.reset()
	// The coder's buffer holds one chunk; a small input needs less.
	e.rc.out = make([]byte, 0, min(chunkPackedMax, len(in)+len(in)/8+64))
	emit := func(end int) bool {
		e.rc.flush()
		u, c := end-chunkStart-1, len(e.rc.out)-1
		ctl := byte(0x80)
		if first {
			ctl = 0xE0 // reset dictionary and state, new properties
		}
		dst = append(dst, ctl|byte(u>>16), byte(u>>8), byte(u), byte(c>>8), byte(c))
		if first {
			dst = append(dst, lzmaProps)
		}
		dst = append(dst, e.rc.out...)
		first = false
		chunkStart = end
		e.rc.reset()
		e.rc.out = e.rc.out[:0]
		return len(dst) <= limit
	}
	p := 0
	mainLen := -1 // -1: find(p) has not run
	for p < len(in) {
		if mainLen < 0 {
			mainLen = e.find(p)
		}
		o, ahead, aheadLen := e.next(p, mainLen)
		if o.n == 1 && o.rep < 0 {
			e.encodeLiteral(p)
		} else {
			e.encodeMatch(p, o)
		}
		np := p + o.n
		switch {
		case ahead && o.n == 1:
			mainLen = aheadLen
		default:
			// Positions inside the match still go into the tables.
			e.insert(np)
			mainLen = -1
		}
		p = np
		if e.rc.pending()+chunkMargin > chunkPackedMax || p-chunkStart+matchMax > chunkUnpackedMax {
			if !emit(p) {
				return nil, false
			}
		}
		if len(dst)+e.rc.pending() > limit {
			return nil, false
		}
	}
	if p > chunkStart && !emit(p) {
		return nil, false
	}
	return append(dst, 0x00), true
}
