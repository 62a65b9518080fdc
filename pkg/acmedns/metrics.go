package acmedns

import (
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// metricQueries counts the queries the DNS server got, over UDP and TCP,
// labelled type and result.
const metricQueries = "gateway_dns_queries_total"

// queryType is the value of the label type: the question's type, for the
// types the zone has or a resolver asks for; other for the rest; none when
// no question was read: the query was answered or dropped on its header
// alone (no question or several, records where a query has none, an opcode
// other than QUERY, a response) or did not parse.
type queryType uint8

const (
	typeA queryType = iota
	typeAAAA
	typeTXT
	typeSOA
	typeNS
	typeCAA
	typeANY
	typeOther
	typeNone
	numQueryTypes
)

var queryTypeNames = [numQueryTypes]string{
	typeA: "A", typeAAAA: "AAAA", typeTXT: "TXT", typeSOA: "SOA", typeNS: "NS",
	typeCAA: "CAA", typeANY: "ANY", typeOther: "other", typeNone: "none",
}

// typeOf returns the label of question type qtype.
func typeOf(qtype uint16) queryType {
	switch qtype {
	case dns.TypeA:
		return typeA
	case dns.TypeAAAA:
		return typeAAAA
	case dns.TypeTXT:
		return typeTXT
	case dns.TypeSOA:
		return typeSOA
	case dns.TypeNS:
		return typeNS
	case dns.TypeCAA:
		return typeCAA
	case dns.TypeANY:
		return typeANY
	}
	return typeOther
}

// typeOfMsg returns the label of the question of r; none unless r has
// exactly one.
func typeOfMsg(r *dns.Msg) queryType {
	if r == nil || len(r.Question) != 1 {
		return typeNone
	}
	return typeOf(r.Question[0].Qtype)
}

// queryResult is the value of the label result: the rcode of the answer
// sent, or dropped when none was (a response, a query too short to answer,
// an answer the system refused to send).
type queryResult uint8

const (
	resultNoError queryResult = iota
	resultFormErr
	resultServFail
	resultNXDomain
	resultNotImp
	resultRefused
	// resultBadVers answers an EDNS version other than 0 (RFC 6891).
	resultBadVers
	// resultOther stands for an rcode the Handler never gives.
	resultOther
	resultDropped
	numQueryResults
)

var queryResultNames = [numQueryResults]string{
	resultNoError: "NOERROR", resultFormErr: "FORMERR", resultServFail: "SERVFAIL",
	resultNXDomain: "NXDOMAIN", resultNotImp: "NOTIMP", resultRefused: "REFUSED",
	resultBadVers: "BADVERS", resultOther: "other", resultDropped: "dropped",
}

// resultOf returns the label of rcode, extended rcodes included.
func resultOf(rcode int) queryResult {
	switch rcode {
	case dns.RcodeSuccess:
		return resultNoError
	case dns.RcodeFormatError:
		return resultFormErr
	case dns.RcodeServerFailure:
		return resultServFail
	case dns.RcodeNameError:
		return resultNXDomain
	case dns.RcodeNotImplemented:
		return resultNotImp
	case dns.RcodeRefused:
		return resultRefused
	case dns.RcodeBadVers:
		return resultBadVers
	}
	return resultOther
}

// outcome is what became of one query: its labels.
type outcome struct {
	qtype  queryType
	result queryResult
}

// queryMetrics holds one counter per pair of labels, all created up front:
// the UDP loop counts each query with a bare Inc, no label lookup and no
// allocation.
type queryMetrics struct {
	queries [numQueryTypes][numQueryResults]prometheus.Counter
}

// newQueryMetrics creates the counters and registers them on reg, unless
// reg is nil.
func newQueryMetrics(reg prometheus.Registerer) (*queryMetrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricQueries,
		Help: "DNS queries of the _acme-challenge zone server, UDP and TCP, by question type (none: no question read) and answer rcode (dropped: no answer sent).",
	}, []string{"type", "result"})
	m := &queryMetrics{}
	for t, tname := range queryTypeNames {
		for r, rname := range queryResultNames {
			m.queries[t][r] = vec.WithLabelValues(tname, rname)
		}
	}
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			return nil, fmt.Errorf("registering dns query metrics: %w", err)
		}
	}
	return m, nil
}

// count counts one query.
func (m *queryMetrics) count(o outcome) {
	m.queries[o.qtype][o.result].Inc()
}
