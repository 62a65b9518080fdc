package harness

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// Redis is a redis-server started by a test on a unix socket.
type Redis struct {
	Proc   *Proc
	Socket string
	bin    string
	dir    string
}

// URL is the zbus broker address of the server.
func (r *Redis) URL() string { return "unix://" + r.Socket }

// StartRedis starts a redis-server of the test's own, without persistence,
// listening only on a unix socket in a temporary folder.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{
		bin: LookBinary(t, "REDIS_SERVER", "redis-server", "scripts/install-deps.sh"),
		dir: t.TempDir(),
	}
	r.Socket = filepath.Join(r.dir, "redis.sock")
	r.start(t)
	return r
}

// Restart stops the server and starts it again on the same socket.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.Proc.Stop()
	r.start(t)
}

func (r *Redis) start(t testing.TB) {
	t.Helper()
	r.Proc = Start(t, r.bin, nil,
		"--port", "0", "--unixsocket", r.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", r.dir)
	WaitFor(t, 10*time.Second, "redis-server", func() error {
		select {
		case <-r.Proc.Done():
			return fmt.Errorf("redis-server exited: %s", r.Proc.Output())
		default:
		}
		c, err := net.Dial("unix", r.Socket)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		if string(buf) != "+PONG\r\n" {
			return fmt.Errorf("unexpected answer %q", buf)
		}
		return nil
	})
}
