package quote

import (
	"strings"
	"testing"
)

func TestShort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a", `"a"`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("x", MaxLength), `"` + strings.Repeat("x", MaxLength) + `"`},
		{strings.Repeat("x", MaxLength+1), `"` + strings.Repeat("x", MaxLength) + `"…`},
	} {
		if got := Short(tc.in); got != tc.want {
			t.Errorf("Short(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
