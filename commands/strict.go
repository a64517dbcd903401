package commands

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// shape is the structure a payload may have: an object with a fixed set of member names, an
// array of one shape, or a leaf of one kind. checkShape walks the document's tokens against it
// before anything is decoded, which closes the holes encoding/json leaves open (it matches
// member names case-insensitively, lets the last of two duplicate members win, and accepts null
// for anything) and names the offending member exactly, array index included.
type shape struct {
	members map[string]*shape // an object
	values  *shape            // an object with members of any name, each of this shape (a map)
	elem    *shape            // an array
	kind    kind              // a leaf
}

type kind int

const (
	kString kind = iota + 1
	kBytes       // canonical standard base64 in a string (a []byte field)
	kInt         // an integer in int64 range
	kUint        // an integer in uint64 range
	kFloat       // a finite number
	kBool
	kTime // an RFC 3339 date-time in a string
)

var (
	str      = &shape{kind: kString}
	bytes64  = &shape{kind: kBytes}
	integer  = &shape{kind: kInt}
	uinteger = &shape{kind: kUint}
	number   = &shape{kind: kFloat}
	boolean  = &shape{kind: kBool}
	timeStr  = &shape{kind: kTime}
)

// checkShape checks that b is valid UTF-8 and exactly one JSON object of shape s (surrounding
// white space allowed), with no unknown, duplicate or null members.
func checkShape(b []byte, s *shape) error {
	if !utf8.Valid(b) {
		return decodeErr("", "not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers stay text here; their range is checked when decoding
	if err := walk(dec, s, ""); err != nil {
		return err
	}
	switch tok, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err != nil:
		return syntaxErr(err)
	default:
		return decodeErr("", fmt.Sprintf("data after the JSON object (at byte %d: %v)", dec.InputOffset(), tokenKind(tok)))
	}
}

func walk(dec *json.Decoder, s *shape, path string) error {
	tok, err := dec.Token()
	if err == io.EOF {
		if path == "" {
			return decodeErr("", "empty document")
		}
		return decodeErr(path, "unexpected end of document")
	}
	if err != nil {
		return syntaxErr(err)
	}
	switch {
	case s.members != nil || s.values != nil:
		if tok != json.Delim('{') {
			return decodeErr(path, "want an object, got "+tokenKind(tok))
		}
		seen := make(map[string]bool, len(s.members))
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return syntaxErr(err)
			}
			key, _ := kt.(string) // inside an object the decoder only yields string keys
			sub, ok := s.members[key]
			if s.values != nil {
				sub, ok = s.values, true
			}
			field := join(path, key)
			if !ok {
				return decodeErr(field, "unknown member")
			}
			if seen[key] {
				return decodeErr(field, "duplicate member")
			}
			seen[key] = true
			if err := walk(dec, sub, field); err != nil {
				return err
			}
		}
		_, err := dec.Token() // '}'
		return syntaxErr(err)
	case s.elem != nil:
		if tok != json.Delim('[') {
			return decodeErr(path, "want an array, got "+tokenKind(tok))
		}
		for i := 0; dec.More(); i++ {
			if err := walk(dec, s.elem, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return syntaxErr(err)
	default:
		return checkLeaf(tok, s.kind, path)
	}
}

func checkLeaf(tok json.Token, k kind, path string) error {
	if tok == nil {
		return decodeErr(path, "null is not allowed; leave the member out")
	}
	switch k {
	case kString, kBytes, kTime:
		v, ok := tok.(string)
		if !ok {
			return decodeErr(path, "want a string, got "+tokenKind(tok))
		}
		if k == kTime {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				return decodeErr(path, "not an RFC 3339 time: "+err.Error())
			}
		}
		if k == kBytes && !canonicalBase64(v) {
			return decodeErr(path, "not canonical standard base64 (RFC 4648 section 4, padded, no line breaks)")
		}
	case kInt, kUint, kFloat:
		v, ok := tok.(json.Number)
		if !ok {
			return decodeErr(path, "want a number, got "+tokenKind(tok))
		}
		var err error
		switch k {
		case kInt:
			_, err = strconv.ParseInt(string(v), 10, 64)
		case kUint:
			_, err = strconv.ParseUint(string(v), 10, 64)
		default:
			_, err = strconv.ParseFloat(string(v), 64)
		}
		if err != nil {
			return decodeErr(path, fmt.Sprintf("%s is not %s", v, map[kind]string{
				kInt: "an integer in int64 range", kUint: "a non-negative integer in uint64 range", kFloat: "a finite number"}[k]))
		}
	case kBool:
		if _, ok := tok.(bool); !ok {
			return decodeErr(path, "want a boolean, got "+tokenKind(tok))
		}
	}
	return nil
}

// canonicalBase64 reports whether s is the one standard, padded base64 spelling of its bytes.
func canonicalBase64(s string) bool {
	if strings.ContainsAny(s, "\r\n") {
		return false // the decoder skips line breaks
	}
	_, err := base64.StdEncoding.Strict().DecodeString(s)
	return err == nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "'" + v.String() + "'"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

func syntaxErr(err error) error {
	if err == nil {
		return nil
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return decodeErr("", "unexpected end of document")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return decodeErr("", fmt.Sprintf("invalid JSON at byte %d: %v", se.Offset, se))
	}
	return decodeErr("", "invalid JSON: "+err.Error())
}

// unmarshal decodes a document checkShape accepted into v. timeField names the one time.Time
// member of v, to which a time parse error is attributed.
func unmarshal(b []byte, v any, timeField string) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return decodeErr(te.Field, fmt.Sprintf("want %s, got JSON %s", typeName(te.Type.String()), te.Value))
	}
	// checkShape has ruled out syntax errors and unknown members, so the only other failure is
	// time.Time's UnmarshalJSON, and each payload has one time member.
	return decodeErr(timeField, "not an RFC 3339 time: "+err.Error())
}

func typeName(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "time.Duration", "int", "int64":
		return "an integer (int64)"
	case "uint64":
		return "a non-negative integer (uint64)"
	case "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "[]uint8":
		return "a base64 string"
	}
	return goType
}

// marshal is the one JSON encoding of a payload: compact, no HTML escaping, no trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// validTime reports whether t can be encoded in RFC 3339 (years 0 to 9999 in UTC).
func validTime(field string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return decodeErr(field, fmt.Sprintf("year %d outside 0..9999 (UTC)", y))
	}
	return nil
}

// clip returns s cut to at most n bytes at a rune boundary, made valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const ell = "..."
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}
