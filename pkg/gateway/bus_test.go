package gateway

import "testing"

// The broker URL is logged: a Redis password in it must not be.
func TestRedactBroker(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///var/run/redis.sock":  "unix:///var/run/redis.sock",
		"tcp://127.0.0.1:6379":        "tcp://127.0.0.1:6379",
		"tcp://s3cret@127.0.0.1:6379": "tcp://xxxxx@127.0.0.1:6379",
		"tcp://u:s3cret@[::1]:6379":   "tcp://xxxxx@[::1]:6379",
	} {
		if got := RedactBroker(in); got != want {
			t.Errorf("RedactBroker(%q) = %q, want %q", in, got, want)
		}
	}
}
