// Package quote shows values taken from outside (callers, files, packets) in
// error messages: quoted, so that control characters cannot forge a log line,
// and cut, so that a hostile value cannot flood one.
package quote

import "strconv"

// MaxLength is how many bytes of a value Short shows.
const MaxLength = 64

// Short returns s as a Go string literal, cut to MaxLength bytes with "…"
// after the closing quote when it was longer.
func Short(s string) string {
	if len(s) > MaxLength {
		return strconv.Quote(s[:MaxLength]) + "…"
	}
	return strconv.Quote(s)
}
