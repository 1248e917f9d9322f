package main

import (
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// accessLog writes the gateway's access-log line, one per proxied request. In the text format it writes the
// very line hclog would write (TestAccessLogMatchesHclog), formatted straight into a pooled buffer: hclog's
// general path (a slice of interfaces, a string per field, its own clock read) was ~6 % of the front's CPU
// under load. A line with a value hclog would escape or spread over several lines (a path with a newline
// or a quote, an unusual error) goes through hclog itself, as does everything in the JSON format.
type accessLog struct {
	log  hclog.Logger // front.http: the fallback, and the level
	out  io.Writer    // where log writes; nil in the JSON format
	name string
	bufs sync.Pool
}

// accessEntry is one access-log line's fields.
type accessEntry struct {
	method, path   []byte
	route          string
	status         int
	took           time.Duration
	bytes          int
	requestID      string
	service        string
	upstream       string // the instance that answered; "" when none did
	upstreamStatus int
	retries        int
	err            string
}

// newAccessLog logs through log (named name, as log's own lines are); out is the writer beneath log, or nil
// to send every line through log (the JSON format).
func newAccessLog(log hclog.Logger, out io.Writer, name string) *accessLog {
	return &accessLog{log: log, out: out, name: name, bufs: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

func (l *accessLog) enabled() bool { return l.log.IsInfo() }

// write logs e at now.
func (l *accessLog) write(now time.Time, e *accessEntry) {
	if l.out == nil {
		l.viaHclog(e)
		return
	}
	bp := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(bp)
	b := now.AppendFormat((*bp)[:0], time.RFC3339Nano)
	b = append(b, " [INFO]  "...)
	b = append(b, l.name...)
	b = append(b, ": request:"...)
	ok := true
	b, ok = field(b, "method", e.method, ok)
	b, ok = field(b, "path", e.path, ok)
	b, ok = field(b, "route", e.route, ok)
	b = intField(b, "status", e.status)
	b = append(b, " duration_ms="...)
	b = strconv.AppendFloat(b, float64(e.took.Microseconds())/1000, 'g', -1, 64)
	b = intField(b, "bytes", e.bytes)
	b, ok = field(b, "request_id", e.requestID, ok)
	if e.service != "" {
		b, ok = field(b, "service", e.service, ok)
	}
	if e.upstream != "" {
		b, ok = field(b, "upstream", e.upstream, ok)
		b = intField(b, "upstream_status", e.upstreamStatus)
		b = intField(b, "retries", e.retries)
	}
	if e.err != "" {
		b, ok = field(b, "error", e.err, ok)
	}
	if !ok {
		l.viaHclog(e)
		return
	}
	b = append(b, '\n')
	*bp = b
	_, _ = l.out.Write(b) // a log that cannot be written has nowhere to say so
}

// viaHclog logs e through hclog.
func (l *accessLog) viaHclog(e *accessEntry) {
	fields := []any{"method", string(e.method), "path", string(e.path), "route", e.route, "status", e.status,
		"duration_ms", float64(e.took.Microseconds()) / 1000, "bytes", e.bytes, "request_id", e.requestID}
	if e.service != "" {
		fields = append(fields, "service", e.service)
	}
	if e.upstream != "" {
		fields = append(fields, "upstream", e.upstream, "upstream_status", e.upstreamStatus, "retries", e.retries)
	}
	if e.err != "" {
		fields = append(fields, "error", e.err)
	}
	l.log.Info("request", fields...)
}

func intField(b []byte, key string, v int) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	return strconv.AppendInt(b, int64(v), 10)
}

// field appends key=value as hclog writes a string: bare when every byte is one of '-' to '~', "" when empty,
// in quotes when it only has spaces or other printable ASCII beside them. Anything else (quotes, control
// characters, non-ASCII) makes ok false: hclog escapes those, and the line goes through hclog instead.
func field[T string | []byte](b []byte, key string, v T, ok bool) ([]byte, bool) {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	if len(v) == 0 {
		return append(b, `""`...), ok
	}
	bare := true
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 0x2D && c <= 0x7E:
		case c >= 0x20 && c < 0x7F && c != '"':
			bare = false
		default:
			return b, false
		}
	}
	if bare {
		return append(b, v...), ok
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"'), ok
}
