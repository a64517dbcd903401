// Forked from go-imap v2.0.0-beta.8, imapserver/imapmemserver (see relaymem_user.go for the
// licence and for why the relay carries its own copy).

package mailbox

import (
	"bytes"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// memMailbox is an in-memory mailbox.
//
// The same mailbox can be shared between multiple connections and multiple
// users.
type memMailbox struct {
	tracker     *imapserver.MailboxTracker
	uidValidity uint32

	mutex      sync.Mutex
	name       string
	subscribed bool
	specialUse []imap.MailboxAttr
	l          []*memMessage
	uidNext    imap.UID

	// db, when not nil, records every change before it is made here (under mutex), as user.
	db   *relayDB
	user string
}

// persist records ops in the relay's store, if it has one. Callers hold mbox.mutex and make
// the change in memory only when it returned nil.
func (mbox *memMailbox) persist(ops []relayOp) error {
	if mbox.db == nil || len(ops) == 0 {
		return nil
	}
	if err := mbox.db.write(mbox.user, ops); err != nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Cannot store the change: " + err.Error()}
	}
	return nil
}

// newMemMailbox creates a new mailbox.
func newMemMailbox(name string, uidValidity uint32) *memMailbox {
	return &memMailbox{
		tracker:     imapserver.NewMailboxTracker(0),
		uidValidity: uidValidity,
		name:        name,
		uidNext:     1,
	}
}

func (mbox *memMailbox) list(options *imap.ListOptions) *imap.ListData {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()

	if options.SelectSubscribed && !mbox.subscribed {
		return nil
	}
	if options.SelectSpecialUse && len(mbox.specialUse) == 0 {
		return nil
	}

	data := imap.ListData{
		Mailbox: mbox.name,
		Delim:   memDelim,
	}
	if mbox.subscribed {
		data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
	}
	if (options.ReturnSpecialUse || options.SelectSpecialUse) && len(mbox.specialUse) > 0 {
		data.Attrs = append(data.Attrs, mbox.specialUse...)
	}
	if options.ReturnStatus != nil {
		data.Status = mbox.statusDataLocked(options.ReturnStatus)
	}
	return &data
}

// StatusData returns data for the STATUS command.
func (mbox *memMailbox) StatusData(options *imap.StatusOptions) *imap.StatusData {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	return mbox.statusDataLocked(options)
}

func (mbox *memMailbox) statusDataLocked(options *imap.StatusOptions) *imap.StatusData {
	data := imap.StatusData{Mailbox: mbox.name}
	if options.NumMessages {
		num := uint32(len(mbox.l))
		data.NumMessages = &num
	}
	if options.UIDNext {
		data.UIDNext = mbox.uidNext
	}
	if options.UIDValidity {
		data.UIDValidity = mbox.uidValidity
	}
	if options.NumUnseen {
		num := uint32(len(mbox.l)) - mbox.countByFlagLocked(imap.FlagSeen)
		data.NumUnseen = &num
	}
	if options.NumDeleted {
		num := mbox.countByFlagLocked(imap.FlagDeleted)
		data.NumDeleted = &num
	}
	if options.Size {
		size := mbox.sizeLocked()
		data.Size = &size
	}
	if options.NumRecent {
		num := uint32(0)
		data.NumRecent = &num
	}
	return &data
}

func (mbox *memMailbox) countByFlagLocked(flag imap.Flag) uint32 {
	var n uint32
	for _, msg := range mbox.l {
		if _, ok := msg.flags[memFlag(flag)]; ok {
			n++
		}
	}
	return n
}

func (mbox *memMailbox) sizeLocked() int64 {
	var size int64
	for _, msg := range mbox.l {
		size += int64(len(msg.buf))
	}
	return size
}

func (mbox *memMailbox) appendLiteral(r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return mbox.appendBytes(buf.Bytes(), options)
}

// copiesLocked returns copies of msgs numbered for mbox (whose mutex the caller holds) and the
// store operations that append them; addLocked adds them once those are stored.
func (mbox *memMailbox) copiesLocked(msgs []*memMessage) ([]*memMessage, []relayOp) {
	out := make([]*memMessage, len(msgs))
	ops := make([]relayOp, len(msgs))
	for i, m := range msgs {
		c := &memMessage{uid: mbox.uidNext + imap.UID(i), buf: m.buf, t: m.t, flags: make(map[imap.Flag]struct{}, len(m.flags))}
		for f := range m.flags {
			c.flags[f] = struct{}{}
		}
		out[i] = c
		ops[i] = relayOp{uv: mbox.uidValidity, uid: c.uid, msg: c}
	}
	return out, ops
}

// addLocked appends msgs, numbered by copiesLocked, to mbox (whose mutex the caller holds).
func (mbox *memMailbox) addLocked(msgs []*memMessage) {
	if len(msgs) == 0 {
		return
	}
	for _, m := range msgs {
		mbox.l = append(mbox.l, m)
		mbox.uidNext = m.uid + 1
	}
	mbox.tracker.QueueNumMessages(uint32(len(mbox.l)))
}

func (mbox *memMailbox) appendBytes(buf []byte, options *imap.AppendOptions) (*imap.AppendData, error) {
	msg := &memMessage{
		flags: make(map[imap.Flag]struct{}),
		buf:   buf,
	}

	if options.Time.IsZero() {
		msg.t = time.Now()
	} else {
		msg.t = options.Time
	}

	for _, flag := range options.Flags {
		msg.flags[memFlag(flag)] = struct{}{}
	}

	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()

	msg.uid = mbox.uidNext
	if err := mbox.persist([]relayOp{{uv: mbox.uidValidity, uid: msg.uid, msg: msg}}); err != nil {
		return nil, err
	}
	mbox.addLocked([]*memMessage{msg})

	return &imap.AppendData{
		UIDValidity: mbox.uidValidity,
		UID:         msg.uid,
	}, nil
}

func (mbox *memMailbox) rename(newName string) {
	mbox.mutex.Lock()
	mbox.name = newName
	mbox.mutex.Unlock()
}

// setSubscribed changes the subscription state of this mailbox.
func (mbox *memMailbox) setSubscribed(subscribed bool) error {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	if mbox.db != nil {
		if err := mbox.db.subscribe(mbox.user, mbox.uidValidity, subscribed); err != nil {
			return err
		}
	}
	mbox.subscribed = subscribed
	return nil
}

func (mbox *memMailbox) selectDataLocked() *imap.SelectData {
	flags := mbox.flagsLocked()

	permanentFlags := make([]imap.Flag, len(flags))
	copy(permanentFlags, flags)
	permanentFlags = append(permanentFlags, imap.FlagWildcard)

	// TODO: skip if IMAP4rev1 is disabled by the server, or IMAP4rev2 is
	// enabled by the client
	firstUnseenSeqNum := mbox.firstUnseenSeqNumLocked()

	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    permanentFlags,
		NumMessages:       uint32(len(mbox.l)),
		FirstUnseenSeqNum: firstUnseenSeqNum,
		UIDNext:           mbox.uidNext,
		UIDValidity:       mbox.uidValidity,
	}
}

func (mbox *memMailbox) firstUnseenSeqNumLocked() uint32 {
	for i, msg := range mbox.l {
		seqNum := uint32(i) + 1
		if _, ok := msg.flags[memFlag(imap.FlagSeen)]; !ok {
			return seqNum
		}
	}
	return 0
}

func (mbox *memMailbox) flagsLocked() []imap.Flag {
	m := make(map[imap.Flag]struct{})
	for _, msg := range mbox.l {
		for flag := range msg.flags {
			m[flag] = struct{}{}
		}
	}

	var l []imap.Flag
	for flag := range m {
		l = append(l, flag)
	}

	sort.Slice(l, func(i, j int) bool {
		return l[i] < l[j]
	})

	return l
}

func (mbox *memMailbox) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	expunged := make(map[*memMessage]struct{})
	var ops []relayOp
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	for _, msg := range mbox.l {
		if uids != nil && !uids.Contains(msg.uid) {
			continue
		}
		if _, ok := msg.flags[memFlag(imap.FlagDeleted)]; ok {
			expunged[msg] = struct{}{}
			ops = append(ops, relayOp{uv: mbox.uidValidity, uid: msg.uid, expunge: true})
		}
	}

	if len(expunged) == 0 {
		return nil
	}
	if err := mbox.persist(ops); err != nil {
		return err
	}
	mbox.expungeLocked(expunged)
	return nil
}

func (mbox *memMailbox) expungeLocked(expunged map[*memMessage]struct{}) (seqNums []uint32) {
	// TODO: optimize

	// Iterate in reverse order, to keep sequence numbers consistent
	var filtered []*memMessage
	for i := len(mbox.l) - 1; i >= 0; i-- {
		msg := mbox.l[i]
		if _, ok := expunged[msg]; ok {
			seqNum := uint32(i) + 1
			seqNums = append(seqNums, seqNum)
			mbox.tracker.QueueExpunge(seqNum)
		} else {
			filtered = append(filtered, msg)
		}
	}

	// Reverse filtered
	for i := 0; i < len(filtered)/2; i++ {
		j := len(filtered) - i - 1
		filtered[i], filtered[j] = filtered[j], filtered[i]
	}

	mbox.l = filtered

	return seqNums
}

// NewView creates a new view into this mailbox.
//
// Callers must call memView.Close once they are done with the mailbox view.
func (mbox *memMailbox) NewView() *memView {
	return &memView{
		memMailbox: mbox,
		tracker:    mbox.tracker.NewSession(),
	}
}

// A memView is a view into a mailbox.
//
// Each view has its own queue of pending unilateral updates.
//
// Once the mailbox view is no longer used, Close must be called.
//
// Typically, a new memView is created for each IMAP connection in the
// selected state.
type memView struct {
	*memMailbox
	tracker   *imapserver.SessionTracker
	searchRes imap.UIDSet
}

// Close releases the resources allocated for the mailbox view.
func (mbox *memView) Close() {
	mbox.tracker.Close()
}

func (mbox *memView) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	for _, bs := range options.BodySection {
		if !bs.Peek {
			markSeen = true
			break
		}
	}

	if markSeen {
		// Set \Seen first (stored, then in memory), then answer: the answer shows it.
		seen := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}
		if err := mbox.storeFlags(numSet, seen, nil, true); err != nil {
			return err
		}
	}

	var err error
	mbox.forEach(numSet, func(seqNum uint32, msg *memMessage) {
		if err != nil {
			return
		}

		respWriter := w.CreateMessage(mbox.tracker.EncodeSeqNum(seqNum))
		err = msg.fetch(respWriter, options)
	})
	return err
}

func (mbox *memView) Search(numKind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()

	mbox.staticSearchCriteria(criteria)

	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i, msg := range mbox.l {
		seqNum := mbox.tracker.EncodeSeqNum(uint32(i) + 1)

		if !msg.search(seqNum, criteria) {
			continue
		}

		// Always populate the UID set, since it may be saved later for SEARCHRES
		uidSet.AddNum(msg.uid)

		var num uint32
		switch numKind {
		case imapserver.NumKindSeq:
			if seqNum == 0 {
				continue
			}
			seqSet.AddNum(seqNum)
			num = seqNum
		case imapserver.NumKindUID:
			num = uint32(msg.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if data.Max == 0 || num > data.Max {
			data.Max = num
		}
		data.Count++
	}

	switch numKind {
	case imapserver.NumKindSeq:
		data.All = seqSet
	case imapserver.NumKindUID:
		data.All = uidSet
	}

	if options.ReturnSave {
		mbox.searchRes = uidSet
	}

	return &data, nil
}

func (mbox *memView) staticSearchCriteria(criteria *imap.SearchCriteria) {
	seqNums := make([]imap.SeqSet, 0, len(criteria.SeqNum))
	for _, seqSet := range criteria.SeqNum {
		numSet := mbox.staticNumSet(seqSet)
		switch numSet := numSet.(type) {
		case imap.SeqSet:
			seqNums = append(seqNums, numSet)
		case imap.UIDSet: // can happen with SEARCHRES
			criteria.UID = append(criteria.UID, numSet)
		}
	}
	criteria.SeqNum = seqNums

	for i, uidSet := range criteria.UID {
		criteria.UID[i] = mbox.staticNumSet(uidSet).(imap.UIDSet)
	}

	for i := range criteria.Not {
		mbox.staticSearchCriteria(&criteria.Not[i])
	}
	for i := range criteria.Or {
		for j := range criteria.Or[i] {
			mbox.staticSearchCriteria(&criteria.Or[i][j])
		}
	}
}

func (mbox *memView) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if err := mbox.storeFlags(numSet, flags, mbox.tracker, false); err != nil {
		return err
	}
	if !flags.Silent {
		return mbox.Fetch(w, numSet, &imap.FetchOptions{Flags: true})
	}
	return nil
}

// storeFlags changes the flags of the messages in numSet: stored first, then in memory, and
// queued for the other sessions (all of them but skip's). With onlyChanged, messages whose
// flags stay the same are left out.
func (mbox *memView) storeFlags(numSet imap.NumSet, flags *imap.StoreFlags, skip *imapserver.SessionTracker, onlyChanged bool) error {
	type change struct {
		seqNum uint32
		msg    *memMessage
		flags  map[imap.Flag]struct{}
	}
	var (
		changes []change
		ops     []relayOp
	)
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	mbox.forEachLocked(numSet, func(seqNum uint32, msg *memMessage) {
		next := msg.stored(flags)
		if onlyChanged && maps.Equal(next, msg.flags) {
			return
		}
		changes = append(changes, change{seqNum, msg, next})
		ops = append(ops, relayOp{uv: mbox.uidValidity, uid: msg.uid, flags: slices.Collect(maps.Keys(next))})
	})
	if err := mbox.persist(ops); err != nil {
		return err
	}
	for _, c := range changes {
		c.msg.flags = c.flags
		mbox.memMailbox.tracker.QueueMessageFlags(c.seqNum, c.msg.uid, c.msg.flagList(), skip)
	}
	return nil
}

func (mbox *memView) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	return mbox.tracker.Poll(w, allowExpunge)
}

func (mbox *memView) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	return mbox.tracker.Idle(w, stop)
}

func (mbox *memView) forEach(numSet imap.NumSet, f func(seqNum uint32, msg *memMessage)) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	mbox.forEachLocked(numSet, f)
}

func (mbox *memView) forEachLocked(numSet imap.NumSet, f func(seqNum uint32, msg *memMessage)) {
	// TODO: optimize

	numSet = mbox.staticNumSet(numSet)

	for i, msg := range mbox.l {
		seqNum := uint32(i) + 1

		var contains bool
		switch numSet := numSet.(type) {
		case imap.SeqSet:
			seqNum := mbox.tracker.EncodeSeqNum(seqNum)
			contains = seqNum != 0 && numSet.Contains(seqNum)
		case imap.UIDSet:
			contains = numSet.Contains(msg.uid)
		}
		if !contains {
			continue
		}

		f(seqNum, msg)
	}
}

// staticNumSet converts a dynamic sequence set into a static one.
//
// This is necessary to properly handle the special symbol "*", which
// represents the maximum sequence number or UID in the mailbox.
//
// This function also handles the special SEARCHRES marker "$".
func (mbox *memView) staticNumSet(numSet imap.NumSet) imap.NumSet {
	if imap.IsSearchRes(numSet) {
		return mbox.searchRes
	}

	switch numSet := numSet.(type) {
	case imap.SeqSet:
		max := uint32(len(mbox.l))
		for i := range numSet {
			r := &numSet[i]
			memStaticNumRange(&r.Start, &r.Stop, max)
		}
	case imap.UIDSet:
		max := uint32(mbox.uidNext) - 1
		for i := range numSet {
			r := &numSet[i]
			memStaticNumRange((*uint32)(&r.Start), (*uint32)(&r.Stop), max)
		}
	}

	return numSet
}

func memStaticNumRange(start, stop *uint32, max uint32) {
	dyn := false
	if *start == 0 {
		*start = max
		dyn = true
	}
	if *stop == 0 {
		*stop = max
		dyn = true
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}
