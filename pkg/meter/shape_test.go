//go:build linux

package meter

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// fakeShape is a table's base part as a reading gives it back, for
// misshapen without root.
type fakeShape struct {
	sets   []*nftables.Set
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
	err    error // of every reading
}

func (f *fakeShape) GetSets(*nftables.Table) ([]*nftables.Set, error) { return f.sets, f.err }

func (f *fakeShape) ListChainsOfTableFamily(nftables.TableFamily) ([]*nftables.Chain, error) {
	return f.chains, f.err
}

func (f *fakeShape) GetRules(_ *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error) {
	return f.rules[c.Name], f.err
}

// shapeKernel is a Kernel with no connection, and the shape it makes as a
// reading gives it back: maps, base chains and rules as setUp sends them,
// but the rules' batch-local set IDs, which the kernel does not return.
func shapeKernel() (*Kernel, *fakeShape) {
	table := &nftables.Table{Name: "meter_test", Family: nftables.TableFamilyINet}
	k := &Kernel{table: table, maps: newMaps(table)}
	f := &fakeShape{rules: make(map[string][]*nftables.Rule)}
	for _, maps := range k.maps {
		for i, m := range maps {
			m.ID = uint32(10 + i) // as AddSet gives them
			f.sets = append(f.sets, &nftables.Set{Table: table, Name: m.Name, IsMap: true})
		}
	}
	for _, c := range k.baseChains() {
		f.chains = append(f.chains, c)
		for _, r := range k.baseRules(c) {
			got := *r
			got.Exprs = make([]expr.Any, len(r.Exprs))
			for i, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok {
					c := *l
					c.SetID = 0
					e = &c
				}
				got.Exprs[i] = e
			}
			f.rules[c.Name] = append(f.rules[c.Name], &got)
		}
	}
	return k, f
}

// TestMisshapen guards the check of a table found at start: the one setUp
// makes is reused with its counters, and any other is told apart, with the
// reason logged, to be replaced.
func TestMisshapen(t *testing.T) {
	tests := []struct {
		name string
		edit func(k *Kernel, f *fakeShape)
		want string // in the reason; "" for a table reused
	}{
		{name: "as setUp makes it", edit: func(*Kernel, *fakeShape) {}},
		{
			name: "a map that is an interval set",
			edit: func(_ *Kernel, f *fakeShape) { f.sets[0].Interval = true },
			want: `set "tx4" is not a plain map`,
		},
		{
			name: "a map missing",
			edit: func(_ *Kernel, f *fakeShape) { f.sets = f.sets[1:] },
			want: "maps [",
		},
		{
			name: "a base chain missing",
			edit: func(_ *Kernel, f *fakeShape) { f.chains = f.chains[:1] },
			want: "no chain rx",
		},
		{
			name: "a base chain of another table",
			edit: func(_ *Kernel, f *fakeShape) {
				c := *f.chains[1]
				c.Table = &nftables.Table{Name: "other", Family: nftables.TableFamilyINet}
				f.chains[1] = &c
			},
			want: "no chain rx",
		},
		{
			name: "a base chain of another priority",
			edit: func(_ *Kernel, f *fakeShape) {
				c := *f.chains[0]
				c.Priority = nftables.ChainPriorityFilter
				f.chains[0] = &c
			},
			want: "chain tx is not a filter chain of hook",
		},
		{
			// nft flush table: the chains stay, their rules go.
			name: "the rules flushed",
			edit: func(_ *Kernel, f *fakeShape) { f.rules["rx"] = nil },
			want: "chain rx has 0 rules, not 2",
		},
		{
			name: "a rule that differs",
			edit: func(_ *Kernel, f *fakeShape) {
				r := *f.rules["tx"][1]
				r.Exprs = append([]expr.Any{}, r.Exprs[:len(r.Exprs)-1]...)
				r.Exprs = append(r.Exprs, &expr.Lookup{SourceRegister: 1, IsDestRegSet: true, SetName: "rx6"})
				f.rules["tx"][1] = &r
			},
			want: "rule 2 of chain tx differs",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, f := shapeKernel()
			tc.edit(k, f)
			got, err := k.misshapen(f)
			if err != nil {
				t.Fatal(err)
			}
			if (got == "") != (tc.want == "") || !strings.Contains(got, tc.want) {
				t.Errorf("misshapen = %q, want %q", got, tc.want)
			}
		})
	}
	k, f := shapeKernel()
	f.err = errors.New("netlink gone")
	if _, err := k.misshapen(f); !errors.Is(err, f.err) {
		t.Errorf("misshapen with a failing reading: %v, want the reading's error", err)
	}
}
