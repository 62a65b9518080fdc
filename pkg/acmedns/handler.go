package acmedns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Record TTLs and SOA timers, in seconds.
const (
	// txtTTL is short: values come and go within seconds and a cached stale
	// value fails a validation.
	txtTTL = 1
	// negativeTTL is the SOA minimum, which resolvers cache "no such value"
	// answers for (RFC 2308). It is short for the same reason as txtTTL: a
	// resolver that looked before the value was presented must look again.
	negativeTTL = 1
	soaTTL      = 60
	nsTTL       = 3600
	soaRefresh  = 3600
	soaRetry    = 600
	soaExpire   = 86400
)

// Message sizes, in bytes.
const (
	// maxUDPSize is the largest UDP answer we send, whatever the client
	// advertises: the DNS flag day 2020 value, which avoids fragmentation.
	maxUDPSize = 1232
	// maxTXTString is the longest character-string in a TXT record.
	maxTXTString = 255
)

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Domain is the gateway domain, e.g. "gw.example"; the Handler answers
	// for "_acme-challenge.<Domain>.". Required.
	Domain string
	// Store holds the values answered as TXT records. Required.
	Store *Store
	// Logger receives the few events worth logging; queries are not logged.
	Logger zerolog.Logger
	// Registry receives the query counter, gateway_dns_queries_total
	// (labels type and result). Nil: no metrics are registered.
	Registry prometheus.Registerer
}

// Handler is the authoritative dns.Handler of the _acme-challenge zone of
// the gateway domain: SOA and NS at the apex, the Store's values as TXT
// records, REFUSED outside the zone.
type Handler struct {
	zone    string // canonical, "_acme-challenge.gw.example."
	store   *Store
	log     zerolog.Logger
	soa     *dns.SOA
	ns      *dns.NS
	bufs    sync.Pool // *[]byte, for packing answers
	cache   answerCache
	metrics *queryMetrics
}

var _ dns.Handler = (*Handler)(nil)

// NewHandler returns the Handler of the challenge zone of cfg.Domain.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if err := validateZone(cfg.Domain, cfg.Store); err != nil {
		return nil, fmt.Errorf("validating handler config: %w", err)
	}
	metrics, err := newQueryMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	domain := CanonicalName(cfg.Domain)
	zone := ChallengeZone(cfg.Domain)
	h := &Handler{
		zone:    zone,
		store:   cfg.Store,
		metrics: metrics,
		log:     cfg.Logger.With().Str("component", "acmedns").Logger(),
		soa: &dns.SOA{
			Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: soaTTL},
			Ns:      domain,
			Mbox:    "hostmaster." + domain,
			Serial:  uint32(time.Now().Unix()),
			Refresh: soaRefresh,
			Retry:   soaRetry,
			Expire:  soaExpire,
			Minttl:  negativeTTL,
		},
		// The delegation names the gateway domain itself as the name server
		// of the zone; say the same so that resolvers see one story.
		ns: &dns.NS{
			Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: nsTTL},
			Ns:  domain,
		},
	}
	h.bufs.New = func() any {
		b := make([]byte, 0, 2048)
		return &b
	}
	return h, nil
}

// validateZone checks the settings the Handler and the Server share.
func validateZone(domain string, store *Store) error {
	if err := checkDomain(domain); err != nil {
		return err
	}
	if store == nil {
		return errors.New("store is required")
	}
	return nil
}

// ServeDNS answers one query and counts it. It implements dns.Handler.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	bp := h.bufs.Get().(*[]byte)
	out, o := h.appendMsg((*bp)[:0], r, isUDP(w))
	if out != nil {
		if _, err := w.Write(out); err != nil {
			h.log.Debug().Err(err).Msg("writing dns answer")
			o.result = resultDropped
		}
		if cap(out) <= 64*1024 {
			*bp = out[:0]
		}
	}
	h.bufs.Put(bp)
	h.metrics.count(o)
}

// appendMsg answers r and appends the packed answer to dst; nil when r gets
// no answer. udp says whether the answer goes back over UDP.
func (h *Handler) appendMsg(dst []byte, r *dns.Msg, udp bool) ([]byte, outcome) {
	o := outcome{qtype: typeOfMsg(r), result: resultDropped}
	out, rcode := h.appendPacked(dst, h.answer(r, udp), r)
	if out != nil {
		o.result = resultOf(rcode)
	}
	return out, o
}

// answer builds the answer to r, or nil when r gets no answer. udp says
// whether the answer goes back over UDP, where its size is limited.
func (h *Handler) answer(r *dns.Msg, udp bool) *dns.Msg {
	if r == nil || r.Response {
		// Never answer an answer: that is how reflection loops start.
		return nil
	}
	if r.Opcode != dns.OpcodeQuery {
		return reply(r, dns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return reply(r, dns.RcodeFormatError)
	}
	// EDNS(0): at most one OPT, version 0 only (RFC 6891).
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return reply(r, dns.RcodeFormatError)
			}
			opt = o
		}
	}
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
		if opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
	}
	var m *dns.Msg
	if opt != nil && opt.Version() != 0 {
		m = reply(r, dns.RcodeBadVers)
	} else {
		m = h.answerQuestion(r, r.Question[0])
	}
	if opt != nil {
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(maxUDPSize)
		o.SetDo(opt.Do())
		m.Extra = append(m.Extra, o)
	}
	m.Truncate(size)
	return m
}

// answerQuestion answers the one question q of r, without EDNS.
func (h *Handler) answerQuestion(r *dns.Msg, q dns.Question) *dns.Msg {
	if q.Qclass != dns.ClassINET {
		return reply(r, dns.RcodeRefused)
	}
	name := strings.ToLower(q.Name)
	if !isBelowOrAt(name, h.zone) {
		// Not our zone, and we are no resolver.
		return reply(r, dns.RcodeRefused)
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// Nobody needs a copy of a zone whose content lives for seconds.
		return reply(r, dns.RcodeRefused)
	case dns.TypeOPT:
		return reply(r, dns.RcodeFormatError)
	}

	m := reply(r, dns.RcodeSuccess)
	m.Authoritative = true
	apex := name == h.zone
	var values []string
	exists := apex
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY || !apex {
		var found bool
		values, found = h.store.lookup(name, nil)
		exists = exists || found
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{h.soa}
		return m
	}
	if apex && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY) {
		m.Answer = append(m.Answer, h.soa)
	}
	if apex && (q.Qtype == dns.TypeNS || q.Qtype == dns.TypeANY) {
		m.Answer = append(m.Answer, h.ns)
	}
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		for _, v := range values {
			m.Answer = append(m.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: txtTTL},
				Txt: txtStrings(v),
			})
		}
	}
	if len(m.Answer) == 0 {
		// NODATA: the name exists, the type does not.
		m.Ns = []dns.RR{h.soa}
	}
	return m
}

// reply returns an empty answer to r with rcode: the ID, opcode, RD and CD
// bits and (when there is exactly one) the question of r.
func reply(r *dns.Msg, rcode int) *dns.Msg {
	m := &dns.Msg{}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.CheckingDisabled = r.CheckingDisabled
	m.Rcode = rcode
	if len(r.Question) == 1 {
		m.Question = r.Question[:1:1]
	}
	return m
}

// txtStrings splits v into character-strings of at most 255 bytes, escaped
// the way miekg/dns expects TXT strings in presentation form.
func txtStrings(v string) []string {
	if len(v) <= maxTXTString && !needsEscape(v) {
		return []string{v}
	}
	out := make([]string, 0, (len(v)+maxTXTString-1)/maxTXTString)
	for len(v) > maxTXTString {
		out = append(out, escapeTXT(v[:maxTXTString]))
		v = v[maxTXTString:]
	}
	return append(out, escapeTXT(v))
}

// needsEscape reports whether s holds a byte miekg/dns would read as an
// escape or that is not printable ASCII.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}

// escapeTXT escapes s so that miekg/dns packs exactly the bytes of s.
func escapeTXT(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isUDP reports whether w answers over UDP (or anything that is not a
// stream), where answers must fit the client's buffer.
func isUDP(w dns.ResponseWriter) bool {
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	return !tcp
}

// questionName returns the name asked about in r, for logs.
func questionName(r *dns.Msg) string {
	if r == nil || len(r.Question) == 0 {
		return ""
	}
	return r.Question[0].Name
}

// acceptCounted is acceptQuery for miekg/dns's server (TCP), counting the
// queries it turns away: the server answers those itself, or drops them,
// without calling the Handler.
func (h *Handler) acceptCounted(dh dns.Header) dns.MsgAcceptAction {
	action := acceptQuery(dh)
	switch action {
	case dns.MsgIgnore:
		h.metrics.count(outcome{typeNone, resultDropped})
	case dns.MsgReject:
		h.metrics.count(outcome{typeNone, resultFormErr})
	case dns.MsgRejectNotImplemented:
		h.metrics.count(outcome{typeNone, resultNotImp})
	}
	return action
}

// invalidCounted counts, as miekg/dns's MsgInvalidFunc, the queries its
// server could not unpack: it drops those without a whole header and
// answers the others FORMERR, without calling the Handler.
func (h *Handler) invalidCounted(m []byte, _ error) {
	if len(m) < headerLen {
		h.metrics.count(outcome{typeNone, resultDropped})
		return
	}
	h.metrics.count(outcome{typeNone, resultFormErr})
}

// acceptQuery rejects, before unpacking, what the Handler would not answer
// anyway: answers are ignored, opcodes other than QUERY get NOTIMP, and
// queries with other than one question or with records in the answer or
// authority section get FORMERR. The Server's TCP side and appendAnswer
// both check with it.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// appendAnswer answers the packed query and appends the packed answer to
// dst. It returns nil when the query gets no answer (too short to answer,
// or a response). udp says whether the answer goes back over UDP. The
// outcome is what the caller counts once the answer is sent, or not.
//
// It gives the same answers as ServeDNS, and checks the header the way the
// Server's MsgAcceptFunc does before unpacking; for common UDP queries it
// answers from a cache of packed answers.
func (h *Handler) appendAnswer(dst, query []byte, udp bool) ([]byte, outcome) {
	if len(query) < headerLen {
		// Nothing to answer with, not even an ID.
		return nil, outcome{typeNone, resultDropped}
	}
	var dh dns.Header
	dh.Id = binary.BigEndian.Uint16(query[0:])
	dh.Bits = binary.BigEndian.Uint16(query[2:])
	dh.Qdcount = binary.BigEndian.Uint16(query[4:])
	dh.Ancount = binary.BigEndian.Uint16(query[6:])
	dh.Nscount = binary.BigEndian.Uint16(query[8:])
	dh.Arcount = binary.BigEndian.Uint16(query[10:])
	// Answered on the header alone, like miekg/dns's server does for TCP:
	// the question is not read.
	switch acceptQuery(dh) {
	case dns.MsgIgnore:
		return nil, outcome{typeNone, resultDropped}
	case dns.MsgReject:
		return appendHeaderReply(dst, query, dns.RcodeFormatError), outcome{typeNone, resultFormErr}
	case dns.MsgRejectNotImplemented:
		return appendHeaderReply(dst, query, dns.RcodeNotImplemented), outcome{typeNone, resultNotImp}
	}

	var keyBuf [256 + 3]byte
	if udp {
		if q, ok := parseSimpleQuery(query, keyBuf[:0]); ok {
			return h.appendCached(dst, query, q)
		}
	}
	return h.appendUnpacked(dst, query, udp)
}

// appendUnpacked answers query the long way: unpacked, answered, packed.
func (h *Handler) appendUnpacked(dst, query []byte, udp bool) ([]byte, outcome) {
	req := new(dns.Msg)
	if err := req.Unpack(query); err != nil {
		return appendHeaderReply(dst, query, dns.RcodeFormatError), outcome{typeNone, resultFormErr}
	}
	return h.appendMsg(dst, req, udp)
}

// appendPacked packs m (the answer to r) after dst, or SERVFAIL when it
// does not pack, and returns the rcode packed; nil when m is.
func (h *Handler) appendPacked(dst []byte, m, r *dns.Msg) ([]byte, int) {
	if m == nil {
		return nil, 0
	}
	rcode := m.Rcode
	out, err := m.PackBuffer(dst[len(dst):cap(dst)])
	if err != nil {
		// Nothing we build should fail to pack; answer something rather
		// than let the client time out.
		h.log.Warn().Err(err).Str("qname", questionName(r)).Msg("packing dns answer")
		rcode = dns.RcodeServerFailure
		if out, err = reply(r, rcode).PackBuffer(dst[len(dst):cap(dst)]); err != nil {
			return nil, 0
		}
	}
	if len(dst) == 0 {
		return out, rcode
	}
	return append(dst, out...), rcode
}

// maxCacheEntries bounds the answer cache: names in the zone that hold
// something are few, and random names must not grow it.
const maxCacheEntries = 256

// answerCache holds packed answers to the common queries, so that the UDP
// path answers them without unpacking or packing a dns.Msg. An entry is an
// answer to the question with its name in lower case, ID 0 and RD and CD
// clear; serving it means copying it and patching those from the query.
type answerCache struct {
	mu      sync.RWMutex
	version uint64 // store version of every entry
	entries map[string]cachedAnswer
}

type cachedAnswer struct {
	wire    []byte
	nameLen int         // length of the question name in wire form
	until   time.Time   // answer valid before this (zero: no limit)
	result  queryResult // the rcode of wire, counted for each query
}

// appendCached answers the simple query q from the cache, filling the
// cache on a miss.
func (h *Handler) appendCached(dst, query []byte, q simpleQuery) ([]byte, outcome) {
	version := h.store.version.Load()
	now := h.store.now()
	h.cache.mu.RLock()
	e, ok := h.cache.entries[string(q.key)]
	ok = ok && h.cache.version == version && (e.until.IsZero() || now.Before(e.until))
	h.cache.mu.RUnlock()
	if !ok {
		e = h.fillCache(q)
	}
	if e.wire == nil {
		// Truncated at 512 bytes: answer the long way, for the size the
		// client asked for.
		return h.appendUnpacked(dst, query, true)
	}
	start := len(dst)
	dst = append(dst, e.wire...)
	out := dst[start:]
	copy(out[:2], query[:2])
	out[2] = out[2]&^flagRD | query[2]&flagRD
	out[3] = out[3]&^flagCD | query[3]&flagCD
	// The question as asked: resolvers randomise the case of names and
	// check that it comes back (the answer names point at it).
	copy(out[headerLen:headerLen+q.nameLen], query[headerLen:headerLen+q.nameLen])
	return dst, outcome{typeOf(q.qtype), e.result}
}

// fillCache builds the answer to the normalised form of q and returns it;
// wire is nil when it does not fit 512 bytes. Answers from the zone are
// kept for the next queries; others (REFUSED) are not, so that random names
// outside the zone cannot fill the cache.
func (h *Handler) fillCache(q simpleQuery) cachedAnswer {
	version, until := h.store.state()
	req := new(dns.Msg)
	req.Question = []dns.Question{{Name: keyName(q.key[:q.nameLen]), Qtype: q.qtype, Qclass: dns.ClassINET}}
	if q.edns {
		req.SetEdns0(dns.MinMsgSize, q.do)
	}
	m := h.answer(req, true)
	if m == nil || m.Truncated {
		return cachedAnswer{}
	}
	// Compressed, the answer names point at the question, so they take
	// the case of the question copied in from each query.
	m.Compress = true
	wire, err := m.Pack()
	if err != nil {
		return cachedAnswer{}
	}
	e := cachedAnswer{wire: wire, nameLen: q.nameLen, until: until, result: resultOf(m.Rcode)}
	if !m.Authoritative {
		return e
	}
	h.cache.mu.Lock()
	defer h.cache.mu.Unlock()
	switch {
	case h.cache.entries == nil || version > h.cache.version:
		h.cache.version = version
		h.cache.entries = make(map[string]cachedAnswer)
	case version < h.cache.version:
		return e // built from an older state than the cache holds
	}
	if len(h.cache.entries) < maxCacheEntries {
		h.cache.entries[string(q.key)] = e
	}
	return e
}
