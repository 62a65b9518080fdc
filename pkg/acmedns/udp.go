package acmedns

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Buffer sizes of the UDP loop, in bytes.
const (
	// udpReadSize is the largest query read; a longer one arrives cut and
	// gets FORMERR.
	udpReadSize = 4096
	// udpOOBSize holds one IPv4 or IPv6 packet-info control message.
	udpOOBSize = 64
	// udpBatch is how many datagrams one system call reads or writes at
	// most.
	udpBatch = 32
	// udpReadBuffer is the socket receive buffer asked for, so that a burst
	// of queries waits instead of being dropped by the kernel (the system
	// caps it at net.core.rmem_max).
	udpReadBuffer = 2 << 20
)

// udpServer answers queries on one UDP socket with one goroutine that
// reads a batch of queries, answers them and writes the answers: no
// goroutine per query and, for the common queries, no dns.Msg unpacked or
// packed, so that the node answers a flood of queries as cheaply as a
// dedicated DNS server would (docs/BENCHMARKS.md). One reader, because
// readers of one socket contend for it.
type udpServer struct {
	conn    *net.UDPConn
	handler *Handler
	log     zerolog.Logger
	// pktinfo is set when the socket is bound to an unspecified address:
	// answers must then leave from the address the query came to, which
	// the kernel only tells through packet-info control messages.
	pktinfo bool
	// drops counts the answers the kernel refused, for the log.
	drops rateLog
}

// newUDPServer prepares conn for serving.
func newUDPServer(conn *net.UDPConn, h *Handler, log zerolog.Logger) (*udpServer, error) {
	s := &udpServer{conn: conn, handler: h, log: log}
	if err := conn.SetReadBuffer(udpReadBuffer); err != nil {
		log.Warn().Err(err).Msg("enlarging udp receive buffer")
	}
	if addr, ok := conn.LocalAddr().(*net.UDPAddr); ok && addr.IP.IsUnspecified() {
		s.pktinfo = true
		// Either family may fail (an IPv4 socket has no IPv6 options); both
		// failing means no packet info at all.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		if err6 != nil && err4 != nil {
			return nil, fmt.Errorf("asking for packet info on %s: %w", conn.LocalAddr(), err4)
		}
	}
	return s, nil
}

// batchConn reads and writes many datagrams per system call
// (recvmmsg/sendmmsg on Linux, one at a time elsewhere); ipv4.PacketConn
// and ipv6.PacketConn both are one.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serve reads a batch of queries, answers them and writes the batch of
// answers, until the socket is closed; it returns nil then, or the error
// that stopped it. Batches share the system calls, which cost most of the
// time under load.
func (s *udpServer) serve() error {
	var bc batchConn = ipv4.NewPacketConn(s.conn)
	if addr, ok := s.conn.LocalAddr().(*net.UDPAddr); ok && addr.IP.To4() == nil {
		bc = ipv6.NewPacketConn(s.conn)
	}
	write := func(ms []ipv4.Message) (int, error) { return bc.WriteBatch(ms, 0) }
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch) // answer buffers, reused
	// outcomes[k] is counted once out[k] is sent, or dropped.
	outcomes := make([]outcome, udpBatch)
	drop := func(m *ipv4.Message, err error) {
		s.dropped(m, err)
		for k := range out {
			if &out[k] == m {
				outcomes[k].result = resultDropped
				break
			}
		}
	}
	metrics := s.handler.metrics
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		if s.pktinfo {
			in[i].OOB = make([]byte, udpOOBSize)
		}
		out[i].Buffers = make([][]byte, 1)
		bufs[i] = make([]byte, 0, 2*maxUDPSize)
	}
	var src sourceCache
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("reading udp on %s: %w", s.conn.LocalAddr(), err)
		}
		k := 0
		for i := range in[:n] {
			q := &in[i]
			resp, o := s.handler.appendAnswer(bufs[k][:0], q.Buffers[0][:q.N], true)
			if resp == nil {
				metrics.count(o)
				continue
			}
			if cap(resp) <= 2*maxUDPSize {
				bufs[k] = resp[:0]
			}
			out[k].Buffers[0] = resp
			out[k].Addr = q.Addr
			out[k].OOB = nil
			if s.pktinfo {
				out[k].OOB = src.oob(q.OOB[:q.NN])
			}
			outcomes[k] = o
			k++
		}
		writeAll(out[:k], write, drop)
		for _, o := range outcomes[:k] {
			metrics.count(o)
		}
	}
}

// dropped logs, at most once per rateLogInterval, the answers the kernel
// refused to send.
func (s *udpServer) dropped(m *ipv4.Message, err error) {
	if errors.Is(err, net.ErrClosed) {
		return // shutting down
	}
	if n, ok := s.drops.note(time.Now()); ok {
		s.log.Warn().Err(err).Stringer("client", m.Addr).Int("dropped", n).
			Msg("dropping dns answers the system refuses to send (forged sources, firewall rules)")
	}
}

// errNoProgress stands for a write that sent nothing and said nothing.
var errNoProgress = errors.New("sent no datagram")

// writeAll sends ms with write, which sends a prefix of the messages it is
// given and returns how many, as WriteBatch does. The message write fails
// on (the first one unsent) is dropped and handed to drop, and the rest
// still go out: the kernel refuses some answers for good (to a forged
// source port 0 or broadcast address, against a firewall rule), and sending
// them again would never end. Each call of write sends or drops at least
// one message, so write is called at most len(ms) times.
func writeAll(ms []ipv4.Message, write func([]ipv4.Message) (int, error), drop func(*ipv4.Message, error)) {
	for len(ms) > 0 {
		n, err := write(ms)
		// sendmmsg says -1 when the first message fails.
		n = min(max(n, 0), len(ms))
		ms = ms[n:]
		if err == nil && n > 0 {
			continue
		}
		if len(ms) == 0 {
			return // all sent, whatever err says
		}
		if err == nil {
			err = errNoProgress
		}
		drop(&ms[0], err)
		ms = ms[1:]
	}
}

// sourceCache turns the packet info of a query into the control message
// that sends the answer from the address the query came to. It keeps the
// last one: a node answers on few addresses.
type sourceCache struct {
	lastIn, lastOut []byte
}

func (c *sourceCache) oob(in []byte) []byte {
	if len(in) == 0 {
		return nil
	}
	if c.lastOut != nil && string(in) == string(c.lastIn) {
		return c.lastOut
	}
	var dst net.IP
	var cm6 ipv6.ControlMessage
	if cm6.Parse(in) == nil && cm6.Dst != nil {
		dst = cm6.Dst
	} else {
		var cm4 ipv4.ControlMessage
		if cm4.Parse(in) == nil && cm4.Dst != nil {
			dst = cm4.Dst
		}
	}
	var out []byte
	switch {
	case dst == nil:
		out = nil
	case dst.To4() == nil:
		out = (&ipv6.ControlMessage{Src: dst}).Marshal()
	default:
		// An IPv4 query on a dual-stack socket: ipv6's Marshal would drop
		// an IPv4 source.
		out = (&ipv4.ControlMessage{Src: dst}).Marshal()
	}
	c.lastIn = append(c.lastIn[:0], in...)
	c.lastOut = out
	return out
}
