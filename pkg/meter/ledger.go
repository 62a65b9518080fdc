package meter

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/threefoldtech/gateway/internal/atomicfile"
	"github.com/threefoldtech/gateway/internal/quote"
)

// ledgerVersion is the version of the file Save writes and OpenLedger reads.
const ledgerVersion = 1

// limboObserves is how many Observe calls in a row an address no workload
// claims may miss before the Ledger forgets its last reading. While its
// counter lives, every Observe of a Read has it; once the counter is gone
// (Sync returned its final reading, or the node rebooted) it never comes
// back. Forgetting it too early would make the next workload to claim the
// address pay for the bytes of the counter before its claim, so this is
// generous: half an hour of Observe every two seconds.
const limboObserves = 1000

// Totals is what a workload's backends moved, in bytes, headers included.
type Totals struct {
	// Tx is the bytes sent to the backends: the requests the workload
	// received.
	Tx uint64 `json:"tx"`
	// Rx is the bytes received from the backends: the responses the
	// workload sent.
	Rx uint64 `json:"rx"`
}

func (t *Totals) add(o Totals) {
	t.Tx += o.Tx
	t.Rx += o.Rx
}

// Ledger turns counter readings into per-workload totals that never go
// backwards, and keeps them in a file. Its methods are safe for concurrent
// use.
//
// The bytes of an address go to exactly one workload: of the workloads that
// list it, the one that started listing it most recently. A tenant that
// points its route at someone else's backend thus pays for the traffic of
// that route itself, from the moment it does so, and can never make the
// backend's owner pay: listing an address can only take its bytes over,
// never hand them to another. When that workload drops the address, the
// most recent of the others takes over. Each claim of a workload on an
// address has a sequence number from a counter that only grows, kept in the
// file; listing an address again keeps the number of the claim that already
// exists, so that re-listing cannot take an address back.
//
// An address no workload lists any more keeps its last reading for as long
// as its counters show up in Observe (see limboObserves), so that the final
// reading still counts only once, and a workload that takes the address
// over pays only from then on.
//
// The file is JSON (ledgerFile). Workload IDs and instances are JSON
// strings, so bytes that are not UTF-8 come back as U+FFFD.
type Ledger struct {
	backing Backing
	saveMu  sync.Mutex // held by Save, so that writes land in order

	mu           sync.Mutex
	seq          uint64 // the sequence number of the latest claim
	observes     uint64 // Observe calls so far
	workloads    map[string]*workload
	pending      map[string][]Totals // of removed workloads, oldest first
	addrs        map[netip.AddrPort]*address
	limbo        map[netip.AddrPort]bool // addrs no workload claims
	unattributed Totals
	changes      uint64 // count of changes to save
	saved        uint64 // changes when the last Save encoded the state
	sizeHint     int    // of the next encoding, in bytes
}

type workload struct {
	totals Totals
	claims map[netip.AddrPort]uint64 // sequence numbers
}

// address is what the Ledger knows of an address: who claims it, and the
// last reading of its counters.
type address struct {
	claims   []claim // by sequence number: the last one owns the address
	reading  Reading
	seen     bool   // whether reading is one
	lastSeen uint64 // the Observe call that saw it last
}

type claim struct {
	wlID string
	seq  uint64
}

// Backing keeps a Ledger's encoded state: a file (OpenLedger), or a value
// of the gateway's store (store.Blob).
type Backing interface {
	// Load returns the state last saved; nil when there is none.
	Load() ([]byte, error)
	// Save replaces it, durably.
	Save(data []byte) error
}

// fileBacking keeps the ledger in a file, replaced atomically with mode
// 0600.
type fileBacking struct{ path string }

func (f fileBacking) Load() ([]byte, error) {
	// Temporary files of a Save the process did not live to finish.
	if base := filepath.Base(f.path); !strings.ContainsAny(base, `*?[\`) {
		stale, _ := filepath.Glob(filepath.Join(filepath.Dir(f.path), "."+base+".*"+atomicfile.TempSuffix))
		for _, s := range stale {
			os.Remove(s)
		}
	}
	data, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func (f fileBacking) Save(data []byte) error { return atomicfile.Write(f.path, data, 0o600) }

// OpenLedger loads the ledger kept in the file path, or starts an empty one
// when path does not exist.
func OpenLedger(path string) (*Ledger, error) {
	if path == "" {
		return nil, errors.New("ledger path: empty")
	}
	return NewLedger(fileBacking{path})
}

// NewLedger loads the ledger b keeps, or starts an empty one when it keeps
// none. A state that cannot be read back whole is an error, never an empty
// ledger: that would restart every total from zero.
func NewLedger(b Backing) (*Ledger, error) {
	l := &Ledger{
		backing:   b,
		workloads: make(map[string]*workload),
		pending:   make(map[string][]Totals),
		addrs:     make(map[netip.AddrPort]*address),
		limbo:     make(map[netip.AddrPort]bool),
	}
	data, err := b.Load()
	if err != nil {
		return nil, fmt.Errorf("reading ledger: %w", err)
	}
	if data == nil {
		return l, nil
	}
	if err := l.decode(data); err != nil {
		return nil, fmt.Errorf("reading ledger: %w", err)
	}
	return l, nil
}

// Assign makes addrs the backend addresses of workload wlID, in place of
// those it had; a workload that was not there starts from zero. Invalid
// addresses are ignored; addresses are taken in the form the kernel counts
// them (see Kernel.Sync).
func (l *Ledger) Assign(wlID string, addrs []netip.AddrPort) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.workloads[wlID]
	if w == nil {
		w = &workload{claims: make(map[netip.AddrPort]uint64)}
		l.workloads[wlID] = w
		l.changes++
	}
	want := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		if a.Addr().IsValid() {
			want[normalize(a)] = true
		}
	}
	for a := range w.claims {
		if !want[a] {
			l.unclaim(wlID, a)
			delete(w.claims, a)
		}
	}
	for _, a := range addrs {
		a = normalize(a)
		if _, ok := w.claims[a]; ok || !want[a] {
			continue
		}
		l.seq++
		w.claims[a] = l.seq
		st := l.addrs[a]
		if st == nil {
			st = &address{}
			l.addrs[a] = st
		}
		st.claims = append(st.claims, claim{wlID: wlID, seq: l.seq})
		delete(l.limbo, a)
		l.changes++
	}
}

// Remove deletes workload wlID: its addresses go to their other claimants,
// and its totals are reported once more, by the next Report, then dropped.
// Removing a workload that is not there does nothing.
func (l *Ledger) Remove(wlID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.workloads[wlID]
	if w == nil {
		return
	}
	for a := range w.claims {
		l.unclaim(wlID, a)
	}
	delete(l.workloads, wlID)
	// One final total per wlID however often it was set and removed
	// before a Report: the bytes of every removed instance, once.
	if q := l.pending[wlID]; len(q) > 0 {
		q[len(q)-1].add(w.totals)
	} else {
		l.pending[wlID] = []Totals{w.totals}
	}
	l.changes++
}

// unclaim drops the claim of wlID on a. An address no one claims keeps its
// last reading, in limbo, for the final reading of its counters to come.
func (l *Ledger) unclaim(wlID string, a netip.AddrPort) {
	st := l.addrs[a]
	if st == nil {
		return
	}
	st.claims = slices.DeleteFunc(st.claims, func(c claim) bool { return c.wlID == wlID })
	if len(st.claims) == 0 {
		if st.seen {
			l.limbo[a] = true
			st.lastSeen = l.observes // the wait starts now
		} else {
			delete(l.addrs, a)
		}
	}
	l.changes++
}

// Observe takes readings of counters (Kernel.Read, or the final readings
// of Kernel.Sync) and adds what they counted since the last reading to the
// workloads that own their addresses. A reading of counters not seen before
// (another Instance, or values lower than the last: new counters, or the
// node rebooted) counts whole. Bytes of an address no workload claims are
// dropped, and added to Unattributed.
func (l *Ledger) Observe(readings map[netip.AddrPort]Reading) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observes++
	for a, r := range readings {
		a = normalize(a)
		st := l.addrs[a]
		if st == nil {
			st = &address{}
			l.addrs[a] = st
			l.limbo[a] = true
		}
		delta := Totals{Tx: r.Tx, Rx: r.Rx}
		if last := st.reading; st.seen && last.Instance == r.Instance {
			// Each direction on its own: a counter of one direction
			// reset (lower than its last reading) counts whole, and
			// never makes the other count again.
			if r.Tx >= last.Tx {
				delta.Tx = r.Tx - last.Tx
			}
			if r.Rx >= last.Rx {
				delta.Rx = r.Rx - last.Rx
			}
		}
		if len(st.claims) > 0 {
			l.workloads[st.claims[len(st.claims)-1].wlID].totals.add(delta)
		} else {
			l.unattributed.add(delta)
		}
		if !st.seen || st.reading != r {
			l.changes++
		}
		st.reading, st.seen, st.lastSeen = r, true, l.observes
	}
	for a := range l.limbo {
		if st := l.addrs[a]; l.observes-st.lastSeen >= limboObserves {
			delete(l.addrs, a)
			delete(l.limbo, a)
			l.changes++
		}
	}
}

// Totals returns the live total of every workload, and the final total of
// each one removed since the last Report and not set again: what a metric
// of each workload shows now.
func (l *Ledger) Totals() map[string]Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Totals, len(l.workloads)+len(l.pending))
	for id, q := range l.pending {
		out[id] = q[0]
	}
	for id, w := range l.workloads {
		out[id] = w.totals
	}
	return out
}

// Report returns the totals of every workload, the final totals of a
// removed one taking the place of a workload of the same ID set again, and
// forgets the removed ones it reports: a removed workload is reported by
// one Report after its removal, and the next Report gives the one set again,
// which started from zero. The caller saves the ledger, then calls done
// with whether the save succeeded: the removed workloads are forgotten only
// once that is saved, so that a failed save never loses a final bill.
func (l *Ledger) Report() (totals map[string]Totals, done func(saved bool)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Totals, len(l.workloads)+len(l.pending))
	for id, w := range l.workloads {
		out[id] = w.totals
	}
	dropped := make(map[string]Totals, len(l.pending))
	for id, q := range l.pending {
		out[id] = q[0]
		dropped[id] = q[0]
		if len(q) > 1 {
			l.pending[id] = q[1:]
		} else {
			delete(l.pending, id)
		}
		l.changes++
	}
	return out, func(saved bool) {
		if saved || len(dropped) == 0 {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for id, t := range dropped {
			l.pending[id] = append([]Totals{t}, l.pending[id]...)
		}
		l.changes++
	}
}

// Unattributed returns the bytes observed for addresses no workload
// claimed, since the ledger began. It should stay zero; logs tell when not.
func (l *Ledger) Unattributed() Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unattributed
}

// Save replaces the state its Backing keeps, in one write (one transaction
// of the store), unless nothing changed since the last Save.
func (l *Ledger) Save() error {
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	if l.changes == l.saved {
		l.mu.Unlock()
		return nil
	}
	data := l.encode()
	changes := l.changes
	l.mu.Unlock()
	if err := l.backing.Save(data); err != nil {
		return fmt.Errorf("saving ledger: %w", err)
	}
	l.mu.Lock()
	l.saved = changes
	l.mu.Unlock()
	return nil
}

// ledgerFile is the file of a Ledger, in JSON, as decode reads it and
// encode writes it.
type ledgerFile struct {
	Version      int            `json:"version"`
	Seq          uint64         `json:"seq"`
	Observes     uint64         `json:"observes"`
	Unattributed Totals         `json:"unattributed"`
	Workloads    []fileWorkload `json:"workloads"`
	Pending      []filePending  `json:"pending"`
	Readings     []fileReading  `json:"readings"`
}

type fileWorkload struct {
	ID     string      `json:"id"`
	Tx     uint64      `json:"tx"`
	Rx     uint64      `json:"rx"`
	Claims []fileClaim `json:"claims"`
}

type fileClaim struct {
	Addr string `json:"a"`
	Seq  uint64 `json:"s"`
}

type filePending struct {
	ID     string   `json:"id"`
	Totals []Totals `json:"totals"`
}

type fileReading struct {
	Addr     string `json:"a"`
	Instance string `json:"i"`
	Tx       uint64 `json:"tx"`
	Rx       uint64 `json:"rx"`
	LastSeen uint64 `json:"seen"` // of an address no workload claims
}

// encode renders the state as the JSON of a ledgerFile; l.mu is held. It
// writes the JSON itself: encoding/json takes several times as long, and
// the state is saved every second or two.
func (l *Ledger) encode() []byte {
	b := make([]byte, 0, l.sizeHint)
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, ledgerVersion, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, l.seq, 10)
	b = append(b, `,"observes":`...)
	b = strconv.AppendUint(b, l.observes, 10)
	b = append(b, `,"unattributed":`...)
	b = appendTotals(b, l.unattributed)
	b = append(b, `,"workloads":[`...)
	first := true
	for id, w := range l.workloads {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"tx":`...)
		b = strconv.AppendUint(b, w.totals.Tx, 10)
		b = append(b, `,"rx":`...)
		b = strconv.AppendUint(b, w.totals.Rx, 10)
		b = append(b, `,"claims":[`...)
		firstClaim := true
		for a, seq := range w.claims {
			if !firstClaim {
				b = append(b, ',')
			}
			firstClaim = false
			b = append(b, `{"a":"`...)
			b = a.AppendTo(b)
			b = append(b, `","s":`...)
			b = strconv.AppendUint(b, seq, 10)
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	b = append(b, `],"pending":[`...)
	first = true
	for id, q := range l.pending {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"id":`...)
		b = appendString(b, id)
		b = append(b, `,"totals":[`...)
		for i, t := range q {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendTotals(b, t)
		}
		b = append(b, "]}"...)
	}
	b = append(b, `],"readings":[`...)
	first = true
	for a, st := range l.addrs {
		if !st.seen {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"a":"`...)
		b = a.AppendTo(b)
		b = append(b, `","i":`...)
		b = appendString(b, st.reading.Instance)
		b = append(b, `,"tx":`...)
		b = strconv.AppendUint(b, st.reading.Tx, 10)
		b = append(b, `,"rx":`...)
		b = strconv.AppendUint(b, st.reading.Rx, 10)
		if l.limbo[a] {
			b = append(b, `,"seen":`...)
			b = strconv.AppendUint(b, st.lastSeen, 10)
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	l.sizeHint = len(b) + len(b)/8
	return b
}

func appendTotals(b []byte, t Totals) []byte {
	b = append(b, `{"tx":`...)
	b = strconv.AppendUint(b, t.Tx, 10)
	b = append(b, `,"rx":`...)
	b = strconv.AppendUint(b, t.Rx, 10)
	return append(b, '}')
}

// appendString appends s as a JSON string. JSON strings are UTF-8: invalid
// bytes become U+FFFD, as encoding/json has them.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decode loads a file into the empty l, and checks that it makes sense.
func (l *Ledger) decode(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f ledgerFile
	if err := dec.Decode(&f); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the ledger")
	}
	if f.Version != ledgerVersion {
		return fmt.Errorf("version %d, not %d", f.Version, ledgerVersion)
	}
	l.seq, l.observes, l.unattributed = f.Seq, f.Observes, f.Unattributed
	seqs := make(map[uint64]bool)
	for _, fw := range f.Workloads {
		if l.workloads[fw.ID] != nil {
			return fmt.Errorf("workload %s listed twice", quote.Short(fw.ID))
		}
		w := &workload{totals: Totals{Tx: fw.Tx, Rx: fw.Rx}, claims: make(map[netip.AddrPort]uint64, len(fw.Claims))}
		l.workloads[fw.ID] = w
		for _, c := range fw.Claims {
			a, err := parseAddr(c.Addr)
			if err != nil {
				return fmt.Errorf("workload %s: %w", quote.Short(fw.ID), err)
			}
			if c.Seq == 0 || c.Seq > f.Seq || seqs[c.Seq] {
				return fmt.Errorf("workload %s: claim on %s has sequence number %d, not a new one up to %d", quote.Short(fw.ID), a, c.Seq, f.Seq)
			}
			if _, ok := w.claims[a]; ok {
				return fmt.Errorf("workload %s: address %s listed twice", quote.Short(fw.ID), a)
			}
			seqs[c.Seq] = true
			w.claims[a] = c.Seq
			st := l.addrs[a]
			if st == nil {
				st = &address{}
				l.addrs[a] = st
			}
			st.claims = append(st.claims, claim{wlID: fw.ID, seq: c.Seq})
		}
	}
	for _, st := range l.addrs {
		slices.SortFunc(st.claims, func(a, b claim) int { return cmp.Compare(a.seq, b.seq) })
	}
	for _, fp := range f.Pending {
		if _, ok := l.pending[fp.ID]; ok || len(fp.Totals) == 0 {
			return fmt.Errorf("removed workload %s listed twice or without totals", quote.Short(fp.ID))
		}
		l.pending[fp.ID] = fp.Totals
	}
	for _, fr := range f.Readings {
		a, err := parseAddr(fr.Addr)
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		if fr.LastSeen > f.Observes {
			return fmt.Errorf("reading of %s seen at observation %d, after the last one, %d", a, fr.LastSeen, f.Observes)
		}
		st := l.addrs[a]
		if st == nil {
			st = &address{}
			l.addrs[a] = st
			l.limbo[a] = true
		} else if st.seen {
			return fmt.Errorf("address %s read twice", a)
		}
		st.reading = Reading{Tx: fr.Tx, Rx: fr.Rx, Instance: fr.Instance}
		st.seen, st.lastSeen = true, fr.LastSeen
	}
	return nil
}

// parseAddr reads an address of the file, in the form the kernel counts.
func parseAddr(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %s: %w", quote.Short(s), err)
	}
	if a != normalize(a) {
		return netip.AddrPort{}, fmt.Errorf("address %s: not in the form the kernel counts", quote.Short(s))
	}
	return a, nil
}
