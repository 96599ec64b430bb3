package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeConnectResponse checks that the connect-reply decoder never panics, fails
// only with ErrBadResponse, accepts only valid JSON, and that what it decodes survives a
// round trip.
func FuzzDecodeConnectResponse(f *testing.F) {
	for _, seed := range []string{
		"", "null", " \n", "{}", `{"userId":"bob","groups":["g1","g2"],"roles":["webpubsub.sendToGroup"],"subprotocol":"json.webpubsub.azure.v1"}`,
		`{"userId":"","groups":[],"roles":[]}`, `{"userId":null,"groups":null}`, `{"UserId":"x","extra":{"a":[1,2]}}`,
		`{"mqtt":{"userProperties":[{"name":"a","value":"b"}]}}`, `{"userId":`, `["a"]`, `{"userId":5}`, `{} {}`,
		`"str"`, `{"groups":"g"}`, `{"subprotocol":"  x  "}`, "\xef\xbb\xbf{}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, err := decodeConnectResponse(body)
		if err != nil {
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("error %v does not wrap ErrBadResponse", err)
			}
			if resp != nil {
				t.Fatal("response with an error")
			}
			return
		}
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) > 0 && !json.Valid(trimmed) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if resp.State != nil {
			t.Fatal("the body set the state")
		}
		// Round trip: encode what was decoded, decode again, get the same.
		again, err := decodeConnectResponse(encodeConnectResponse(resp))
		if err != nil {
			t.Fatalf("re-decoding %+v: %v", resp, err)
		}
		if !reflect.DeepEqual(resp, again) && !(invalidUTF8(resp) && !invalidUTF8(again)) {
			t.Fatalf("round trip changed %+v into %+v", resp, again)
		}
	})
}

func encodeConnectResponse(r *ConnectResponse) []byte {
	out := connectReply{UserID: r.UserID, Groups: r.Groups, Roles: r.Roles}
	if r.Subprotocol != "" {
		out.Subprotocol = &r.Subprotocol
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic(err)
	}
	return b
}

// invalidUTF8 reports whether r holds a string JSON cannot carry unchanged.
func invalidUTF8(r *ConnectResponse) bool {
	all := append(append([]string{r.Subprotocol}, r.Groups...), r.Roles...)
	if r.UserID != nil {
		all = append(all, *r.UserID)
	}
	for _, s := range all {
		if !utf8.ValidString(s) {
			return true
		}
	}
	return false
}

// FuzzReason checks that any rejection body becomes a short, one-line, valid UTF-8 reason.
func FuzzReason(f *testing.F) {
	for _, seed := range []string{"", "Unauthorized", "a\r\nb", "\xff\xfe", string(bytes.Repeat([]byte("é"), 600))} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := reason(body)
		if len(r) > maxReasonBytes || !utf8.ValidString(r) || bytes.ContainsAny([]byte(r), "\r\n\x00") {
			t.Fatalf("reason(%q) = %q", body, r)
		}
	})
}
