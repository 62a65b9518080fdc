package acmedns

// The DNS wire format, read and written without miekg/dns: the Handler's
// UDP fast path parses common queries and builds header-only answers here.

import (
	"encoding/binary"
	"strings"

	"github.com/miekg/dns"
)

// Offsets and bits of the DNS header (RFC 1035 4.1.1).
const (
	headerLen  = 12
	flagQR     = 0x80 // in byte 2
	flagRD     = 0x01 // in byte 2
	flagCD     = 0x10 // in byte 3
	opcodeMask = 0x78 // in byte 2
	optDO      = 0x80 // in the first flag byte of an OPT TTL
)

// simpleQuery is a UDP query the cache can answer: one question of class
// IN with a plain name, and at most an OPT without options.
type simpleQuery struct {
	nameLen int    // question name in wire form: query[12:12+nameLen]
	key     []byte // lower-case wire name, qtype, EDNS flags
	qtype   uint16
	edns    bool
	do      bool
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
