// Package acmedns serves the _acme-challenge zone of the gateway domain so
// that Traefik can obtain the wildcard certificate of the gateway with the
// ACME DNS-01 challenge.
//
// The node's DNS provider delegates _acme-challenge.<domain> to the node with
// an NS record. Traefik (lego inside it) hands the challenge values to the
// gateway through lego's httpreq provider (HTTPReqHandler, served on loopback
// by APIServer); the values are kept in a Store and answered as TXT records by
// an authoritative DNS server (Server, Handler). CheckDelegation tells whether
// the delegation is in place. Service puts these parts together and gives
// the environment and resolvers Traefik needs.
//
// The server answers over TCP through miekg/dns's server and over UDP with
// its own loop (batched reads and writes, a cache of packed answers), which
// gives the same answers as the Handler at a dnsmasq-like rate. Both count
// every query, by question type and answer, in gateway_dns_queries_total.
//
// The server faces the Internet, and shares the gateway process and its
// descriptors: an answer the system refuses to send (to a forged source) is
// dropped; TCP connections are capped overall (DefaultMaxTCPConns, 128)
// and per source (DefaultMaxTCPConnsPerSource, 8), never above a quarter of
// the process's open-file limit, and held for seconds at most (see
// Server); events an attacker can repeat at will are logged at most once a
// minute.
package acmedns
