package app

import (
	"io"
	"sync"
	"time"
)

// logOutput gathers log lines and writes them together, at most every interval (or as soon as 64 KiB wait):
// logging a request then costs no system call of its own, which at the front's rates is a third of its
// throughput (docs/benchmarks.md). A zero interval writes each line at once. Flush writes what waits; the
// runtime calls it on Close, so a service that stops leaves its last lines behind.
type logOutput struct {
	w        io.Writer
	interval time.Duration

	mu      sync.Mutex
	buf     []byte
	pending bool // a flush is scheduled
}

const logBufferSize = 64 << 10

func newLogOutput(w io.Writer, interval time.Duration) *logOutput {
	return &logOutput{w: w, interval: interval}
}

// Write takes one log line.
func (o *logOutput) Write(p []byte) (int, error) {
	if o.interval <= 0 {
		return o.w.Write(p)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.buf)+len(p) > logBufferSize {
		o.flushLocked()
		if len(p) > logBufferSize {
			return o.w.Write(p)
		}
	}
	o.buf = append(o.buf, p...)
	if !o.pending {
		o.pending = true
		time.AfterFunc(o.interval, o.Flush)
	}
	return len(p), nil
}

// Flush writes the lines that wait.
func (o *logOutput) Flush() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	o.pending = false
}

func (o *logOutput) flushLocked() {
	if len(o.buf) == 0 {
		return
	}
	_, _ = o.w.Write(o.buf) // a log that cannot be written has nowhere to say so
	o.buf = o.buf[:0]
}
