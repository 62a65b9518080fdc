package acmedns

import (
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheEntries bounds the answer cache: names in the zone that hold
// something are few, and random names must not grow it.
const maxCacheEntries = 256

// Offsets and bits of the DNS header (RFC 1035 4.1.1).
const (
	headerLen  = 12
	flagQR     = 0x80 // in byte 2
	flagRD     = 0x01 // in byte 2
	flagCD     = 0x10 // in byte 3
	opcodeMask = 0x78 // in byte 2
	optDO      = 0x80 // in the first flag byte of an OPT TTL
)

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
	nameLen int       // length of the question name in wire form
	until   time.Time // answer valid before this (zero: no limit)
}

// simpleQuery is a UDP query the cache can answer: one question of class
// IN with a plain name, and at most an OPT without options.
type simpleQuery struct {
	nameLen int    // question name in wire form: query[12:12+nameLen]
	key     []byte // lower-case wire name, qtype, EDNS flags
	qtype   uint16
	edns    bool
	do      bool
}

// appendAnswer answers the packed query and appends the packed answer to
// dst. It returns nil when the query gets no answer (too short to answer,
// or a response). udp says whether the answer goes back over UDP.
//
// It gives the same answers as ServeDNS, and checks the header the way the
// Server's MsgAcceptFunc does before unpacking; for common UDP queries it
// answers from a cache of packed answers.
func (h *Handler) appendAnswer(dst, query []byte, udp bool) []byte {
	if len(query) < headerLen {
		return nil // nothing to answer with, not even an ID
	}
	var dh dns.Header
	dh.Id = binary.BigEndian.Uint16(query[0:])
	dh.Bits = binary.BigEndian.Uint16(query[2:])
	dh.Qdcount = binary.BigEndian.Uint16(query[4:])
	dh.Ancount = binary.BigEndian.Uint16(query[6:])
	dh.Nscount = binary.BigEndian.Uint16(query[8:])
	dh.Arcount = binary.BigEndian.Uint16(query[10:])
	switch acceptQuery(dh) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgReject:
		return appendHeaderReply(dst, query, dns.RcodeFormatError)
	case dns.MsgRejectNotImplemented:
		return appendHeaderReply(dst, query, dns.RcodeNotImplemented)
	}

	var keyBuf [256 + 3]byte
	if udp {
		if q, ok := parseSimpleQuery(query, keyBuf[:0]); ok {
			return h.appendCached(dst, query, q)
		}
	}
	req := new(dns.Msg)
	if err := req.Unpack(query); err != nil {
		return appendHeaderReply(dst, query, dns.RcodeFormatError)
	}
	return h.appendPacked(dst, h.answer(req, udp), req)
}

// appendPacked packs m (the answer to r) after dst, or SERVFAIL when it
// does not pack; nil when m is.
func (h *Handler) appendPacked(dst []byte, m, r *dns.Msg) []byte {
	if m == nil {
		return nil
	}
	out, err := m.PackBuffer(dst[len(dst):cap(dst)])
	if err != nil {
		// Nothing we build should fail to pack; answer something rather
		// than let the client time out.
		h.log.Warn().Err(err).Str("qname", questionName(r)).Msg("packing dns answer")
		if out, err = reply(r, dns.RcodeServerFailure).PackBuffer(dst[len(dst):cap(dst)]); err != nil {
			return nil
		}
	}
	if len(dst) == 0 {
		return out
	}
	return append(dst, out...)
}

// appendHeaderReply appends an answer made of the query's header alone:
// ID, opcode, RD and CD from the query, QR and rcode set, no records.
func appendHeaderReply(dst, query []byte, rcode int) []byte {
	var hdr [headerLen]byte
	copy(hdr[:2], query[:2])
	hdr[2] = flagQR | query[2]&(opcodeMask|flagRD)
	hdr[3] = query[3]&flagCD | byte(rcode&0xF)
	return append(dst, hdr[:]...)
}

// parseSimpleQuery reports whether query (whose header passed
// acceptQuery) is a simpleQuery, and builds its cache key after key.
func parseSimpleQuery(query []byte, key []byte) (simpleQuery, bool) {
	var q simpleQuery
	if binary.BigEndian.Uint16(query[4:]) != 1 || binary.BigEndian.Uint16(query[10:]) > 1 {
		return q, false
	}
	off := headerLen
	for {
		if off >= len(query) {
			return q, false
		}
		l := int(query[off])
		if l == 0 {
			key = append(key, 0)
			off++
			break
		}
		// Compression pointers and odd label types go the long way, as do
		// names the cache key would not tell apart.
		if l > 63 || off+1+l > len(query) || off+1+l-headerLen > 254 {
			return q, false
		}
		key = append(key, byte(l))
		for _, c := range query[off+1 : off+1+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return q, false
			}
			key = append(key, c)
		}
		off += 1 + l
	}
	q.nameLen = off - headerLen
	if off+4 > len(query) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(query[off:])
	if binary.BigEndian.Uint16(query[off+2:]) != dns.ClassINET {
		return q, false
	}
	off += 4
	if binary.BigEndian.Uint16(query[10:]) == 1 {
		// OPT: root name, type, payload size, extended rcode, version,
		// flags, empty rdata; it must end the message.
		if off+11 != len(query) || query[off] != 0 ||
			binary.BigEndian.Uint16(query[off+1:]) != dns.TypeOPT ||
			query[off+6] != 0 || binary.BigEndian.Uint16(query[off+9:]) != 0 {
			return q, false
		}
		q.edns = true
		q.do = query[off+7]&optDO != 0
		off += 11
	}
	if off != len(query) {
		return q, false
	}
	var flags byte
	if q.edns {
		flags |= 1
	}
	if q.do {
		flags |= 2
	}
	q.key = append(key, byte(q.qtype>>8), byte(q.qtype), flags)
	return q, true
}

// appendCached answers the simple query q from the cache, filling the
// cache on a miss.
func (h *Handler) appendCached(dst, query []byte, q simpleQuery) []byte {
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
		req := new(dns.Msg)
		if err := req.Unpack(query); err != nil {
			return appendHeaderReply(dst, query, dns.RcodeFormatError)
		}
		return h.appendPacked(dst, h.answer(req, true), req)
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
	return dst
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
	e := cachedAnswer{wire: wire, nameLen: q.nameLen, until: until}
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

// keyName turns the wire name at the start of a cache key into
// presentation form; parseSimpleQuery lets through only labels that need
// no escaping.
func keyName(wire []byte) string {
	var b strings.Builder
	for off := 0; off < len(wire) && wire[off] != 0; off += 1 + int(wire[off]) {
		b.Write(wire[off+1 : off+1+int(wire[off])])
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}
