package acmedns

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestStore(t *testing.T) {
	type step struct {
		present, cleanup [2]string     // fqdn, value
		advance          time.Duration // move the clock first
	}
	tests := []struct {
		name  string
		steps []step
		at    string
		want  []string
	}{
		{
			// lego presents the apex and the wildcard value at one name
			// before validating either: both must be there at once.
			name: "two values at one name are both kept in presentation order",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{present: [2]string{testZone, acmeValue2}},
			},
			at:   testZone,
			want: []string{acmeValue, acmeValue2},
		},
		{
			// lego may retry a present; a value must not be doubled.
			name: "presenting the same value twice keeps one",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{present: [2]string{testZone, acmeValue}},
			},
			at:   testZone,
			want: []string{acmeValue},
		},
		{
			// One cleanup per value: the other validation is still running.
			name: "cleanup removes only its value",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{present: [2]string{testZone, acmeValue2}},
				{cleanup: [2]string{testZone, acmeValue}},
			},
			at:   testZone,
			want: []string{acmeValue2},
		},
		{
			name: "cleanup of an unknown value changes nothing",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{cleanup: [2]string{testZone, "unknown"}},
				{cleanup: [2]string{"other." + testZone, acmeValue}},
			},
			at:   testZone,
			want: []string{acmeValue},
		},
		{
			// Names reach the store in whatever form lego or DNS uses.
			name: "names are case-insensitive and the trailing dot optional",
			steps: []step{
				{present: [2]string{"_ACME-Challenge.GW.example", acmeValue}},
			},
			at:   "_acme-challenge.gw.EXAMPLE.",
			want: []string{acmeValue},
		},
		{
			name: "values at other names are not returned",
			steps: []step{
				{present: [2]string{"a." + testZone, acmeValue}},
			},
			at:   testZone,
			want: nil,
		},
		{
			// A lost cleanup must not leave a value forever.
			name: "a value expires after the ttl",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{advance: DefaultValueTTL},
			},
			at:   testZone,
			want: nil,
		},
		{
			name: "a value lives until just before the ttl",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{advance: DefaultValueTTL - time.Nanosecond},
			},
			at:   testZone,
			want: []string{acmeValue},
		},
		{
			// Each value has its own clock.
			name: "values expire one by one",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{advance: 10 * time.Minute},
				{present: [2]string{testZone, acmeValue2}},
				{advance: 10 * time.Minute},
			},
			at:   testZone,
			want: []string{acmeValue2},
		},
		{
			name: "presenting again restarts the ttl",
			steps: []step{
				{present: [2]string{testZone, acmeValue}},
				{advance: 10 * time.Minute},
				{present: [2]string{testZone, acmeValue}},
				{advance: 10 * time.Minute},
			},
			at:   testZone,
			want: []string{acmeValue},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := newTestStore(t, clock)
			for _, st := range tt.steps {
				clock.Advance(st.advance)
				if st.present[0] != "" {
					if err := s.Present(st.present[0], st.present[1]); err != nil {
						t.Fatalf("Present: %v", err)
					}
				}
				if st.cleanup[0] != "" {
					s.Cleanup(st.cleanup[0], st.cleanup[1])
				}
			}
			if got := values(s, tt.at); !slices.Equal(got, tt.want) {
				t.Errorf("values at %q: %q, want %q", tt.at, got, tt.want)
			}
		})
	}
}

// TestStorePrunes guards against expired values piling up in memory when
// nobody asks for their name again.
func TestStorePrunes(t *testing.T) {
	clock := newFakeClock()
	s := newTestStore(t, clock)
	for _, name := range []string{"a." + testZone, "b." + testZone, testZone} {
		if err := s.Present(name, acmeValue); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(DefaultValueTTL)
	if err := s.Present(testZone, acmeValue2); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) != 1 || len(s.names[testZone]) != 1 {
		t.Errorf("store holds %v after expiry, want only %q at %q", s.names, acmeValue2, testZone)
	}
}

func TestStoreLimit(t *testing.T) {
	s, err := NewStore(StoreConfig{MaxValues: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b", "b"} {
		if err := s.Present(testZone, v); err != nil {
			t.Fatalf("Present(%q): %v", v, err)
		}
	}
	if err := s.Present(testZone, "c"); !errors.Is(err, ErrTooManyValues) {
		t.Errorf("Present beyond the limit: error %v, want ErrTooManyValues", err)
	}
	if err := s.Present("other."+testZone, "c"); err != nil {
		t.Errorf("the limit is per name: Present at another name: %v", err)
	}
}

func TestStoreLookupEmptyNonTerminal(t *testing.T) {
	s := newTestStore(t, nil)
	for _, name := range []string{"a.b." + testZone, "xy." + testZone} {
		if err := s.Present(name, acmeValue); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		at     string
		exists bool
	}{
		{name: "name with a value exists", at: "a.b." + testZone, exists: true},
		{name: "parent of a name with a value exists", at: "b." + testZone, exists: true},
		{name: "sibling does not exist", at: "c." + testZone, exists: false},
		{name: "child does not exist", at: "x.a.b." + testZone, exists: false},
		{name: "suffix that is no label boundary does not exist", at: "y." + testZone, exists: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, exists := s.lookup(tt.at, nil); exists != tt.exists {
				t.Errorf("lookup(%q) exists = %v, want %v", tt.at, exists, tt.exists)
			}
		})
	}
}

func TestNewStoreValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  StoreConfig
		ok   bool
	}{
		{name: "zero config takes defaults", cfg: StoreConfig{}, ok: true},
		{name: "negative ttl is refused", cfg: StoreConfig{TTL: -time.Second}},
		{name: "negative limit is refused", cfg: StoreConfig{MaxValues: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStore(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("NewStore(%+v) error = %v, want ok=%v", tt.cfg, err, tt.ok)
			}
		})
	}
}
