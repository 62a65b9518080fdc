package gateway

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/vmihailenco/msgpack"
	"github.com/vmihailenco/msgpack/codes"
)

// Arg is one argument of a bus call as it came over the wire: its msgpack
// bytes (zbus v1 encodes each argument on its own with msgpack v4). Object's
// methods take their arguments as Args, so that zbus accepts a call of any
// length and the dispatch can tell the generations of the contract apart by
// the arguments' types before decoding them.
type Arg []byte

// UnmarshalMsgpack keeps the argument's bytes. msgpack's nil never reaches
// it: the Arg stays empty, which kind reads as nil.
func (a *Arg) UnmarshalMsgpack(b []byte) error {
	*a = append((*a)[:0], b...)
	return nil
}

// MarshalMsgpack returns the bytes as they came, so that an Arg encodes as
// the value it holds.
func (a Arg) MarshalMsgpack() ([]byte, error) {
	if len(a) == 0 {
		return []byte{byte(codes.Nil)}, nil
	}
	return a, nil
}

// ArgOf encodes v as a caller's stub does.
func ArgOf(v any) (Arg, error) {
	b, err := msgpack.Marshal(v)
	return Arg(b), err
}

// Kinds of msgpack values, as errors name them.
const (
	kindNil     = "nil"
	kindBool    = "a boolean"
	kindInt     = "an integer"
	kindFloat   = "a float"
	kindString  = "a string"
	kindBinary  = "binary data"
	kindArray   = "an array"
	kindMap     = "a map"
	kindExt     = "a msgpack extension"
	kindUnknown = "an unknown msgpack value"
)

// kind tells which kind of value the argument holds, from its first byte.
func (a Arg) kind() string {
	if len(a) == 0 {
		return kindNil
	}
	c := codes.Code(a[0])
	switch {
	case c == codes.Nil:
		return kindNil
	case c == codes.True || c == codes.False:
		return kindBool
	case codes.IsFixedNum(c) || c >= codes.Uint8 && c <= codes.Int64:
		return kindInt
	case c == codes.Float || c == codes.Double:
		return kindFloat
	case codes.IsString(c):
		return kindString
	case codes.IsBin(c):
		return kindBinary
	case codes.IsFixedArray(c) || c == codes.Array16 || c == codes.Array32:
		return kindArray
	case codes.IsFixedMap(c) || c == codes.Map16 || c == codes.Map32:
		return kindMap
	case codes.IsExt(c):
		return kindExt
	}
	return kindUnknown
}

// decodeString reads a string argument.
func (a Arg) decodeString() (string, error) {
	if k := a.kind(); k != kindString {
		return "", fmt.Errorf("expected a string, got %s", k)
	}
	var s string
	if err := msgpack.Unmarshal(a, &s); err != nil {
		return "", fmt.Errorf("decoding a string: %w", err)
	}
	return s, nil
}

// decodeBool reads a boolean argument.
func (a Arg) decodeBool() (bool, error) {
	if k := a.kind(); k != kindBool {
		return false, fmt.Errorf("expected a boolean, got %s", k)
	}
	return codes.Code(a[0]) == codes.True, nil
}

// decodeUint32 reads an integer argument that fits a uint32.
func (a Arg) decodeUint32() (uint32, error) {
	if k := a.kind(); k != kindInt {
		return 0, fmt.Errorf("expected an unsigned integer, got %s", k)
	}
	v, err := msgpack.NewDecoder(strings.NewReader(string(a))).DecodeInterface()
	if err != nil {
		return 0, fmt.Errorf("decoding an integer: %w", err)
	}
	var n uint64
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n = rv.Uint()
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if rv.Int() < 0 {
			return 0, fmt.Errorf("expected an unsigned integer, got %d", rv.Int())
		}
		n = uint64(rv.Int())
	default:
		return 0, fmt.Errorf("expected an unsigned integer, got %T", v)
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("expected an unsigned 32-bit integer, got %d", n)
	}
	return uint32(n), nil
}

// decodeStrings reads an array of strings; nil reads as no strings.
func (a Arg) decodeStrings() ([]string, error) {
	switch k := a.kind(); k {
	case kindNil:
		return nil, nil
	case kindArray:
	default:
		return nil, fmt.Errorf("expected an array of strings, got %s", k)
	}
	var elems []Arg
	if err := msgpack.Unmarshal(a, &elems); err != nil {
		return nil, fmt.Errorf("decoding an array: %w", err)
	}
	out := make([]string, 0, len(elems))
	for i, e := range elems {
		s, err := e.decodeString()
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// decodeFields reads a struct as zbus encodes it, a map keyed by Go field
// name. Each field must be one of known: a field this gateway does not know
// could change what the caller means, so it is refused rather than ignored.
func (a Arg) decodeFields(typ string, known ...string) (map[string]Arg, error) {
	if k := a.kind(); k != kindMap {
		return nil, fmt.Errorf("expected a %s config, got %s", typ, k)
	}
	var fields map[string]Arg
	if err := msgpack.Unmarshal(a, &fields); err != nil {
		return nil, fmt.Errorf("decoding a %s config, a map keyed by field names: %w", typ, err)
	}
	for name := range fields {
		found := false
		for _, k := range known {
			found = found || name == k
		}
		if !found {
			return nil, fmt.Errorf("%s has no field %q (it has %s)", typ, name, strings.Join(known, ", "))
		}
	}
	return fields, nil
}
