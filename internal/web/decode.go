package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// DecodeJSON reads exactly one JSON value from the request body into dst. It refuses a body that is not
// declared as JSON (415), unknown fields, malformed JSON, values of the wrong type and trailing data (400, the
// message names the problem), and a body over the limit set by LimitBody (413).
func DecodeJSON(r *http.Request, dst any) error {
	if err := requireJSON(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	return decodeStrict(r.Body, dst)
}

func requireJSON(contentType string) error {
	if contentType == "" {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json, not %q", contentType)
	}
	return nil
}

func decodeStrict(body io.Reader, dst any) error {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return BadRequest("request body must hold a single JSON value; found trailing data")
	}
	return nil
}

// decodeError turns a decoder error into a client error naming the problem; a body over the limit stays a
// *http.MaxBytesError, which WriteError answers with 413.
func decodeError(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		mbe       *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.Is(err, io.EOF):
		return BadRequest("request body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("malformed JSON: the body ends too early")
	case errors.As(err, &syntaxErr):
		return BadRequest("malformed JSON at byte %d: %s", syntaxErr.Offset, syntaxErr.Error())
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return BadRequest("request body must be a JSON object, not %s", typeErr.Value)
		}
		return BadRequest("field %q must be %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return BadRequest("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return BadRequest("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	default:
		return fmt.Sprintf("of type %s", goKind)
	}
}

// Query parses the request's query string strictly: a malformed one (a bad %-escape, say) is a 400 rather
// than silently dropped parameters.
func Query(r *http.Request) (url.Values, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, BadRequest("malformed query string: %s", strings.TrimPrefix(err.Error(), "invalid URL escape "))
	}
	return v, nil
}
