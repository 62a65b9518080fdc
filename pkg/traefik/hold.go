package traefik

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// While the gateway imports the routes folder of an earlier version, the hold file makes Traefik
// refuse each reload at once (see holdFile). Traefik handles the events of
// the folder one after the other, each by reading the whole folder again,
// and lags behind: taken away as soon as the last old file is gone, the hold
// file would leave thousands of events to handle, each a full read of every
// route. So release first waits until Traefik has left the folder alone
// for holdIdle: it opens the folder and the hold file at each event it
// handles.

// holdIdle is how long no entry of the routes folder may be opened before
// release takes the hold file away. Traefik handles one event of a held
// folder in a few milliseconds.
const holdIdle = 300 * time.Millisecond

// holdMaxWait bounds that wait; the hold file goes after it all the same:
// the folder is converted, Traefik only pays more to read it.
const holdMaxWait = 2 * time.Minute

// opensWatch sees the opens of a folder and of the files in it (inotify
// IN_OPEN), by any process.
type opensWatch struct {
	fd int
}

// watchOpens starts seeing the opens of dir.
func watchOpens(dir string) (*opensWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	return &opensWatch{fd: fd}, nil
}

// waitIdle returns once nothing was opened in the folder for idle, or after
// max.
func (w *opensWatch) waitIdle(idle, max time.Duration) {
	deadline := time.Now().Add(max)
	buf := make([]byte, 64<<10)
	for {
		wait := min(idle, time.Until(deadline))
		if wait <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(wait.Milliseconds())+1)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil, n == 0:
			return
		}
		// Opens seen: drain them and wait again.
		for {
			if _, err := unix.Read(w.fd, buf); err != nil {
				break
			}
		}
	}
}

// close stops seeing opens.
func (w *opensWatch) close() { unix.Close(w.fd) }
