package app

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flush timer's goroutine.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) read() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestLogOutputGathersLines(t *testing.T) {
	var w lockedBuffer
	o := newLogOutput(&w, 50*time.Millisecond)
	for _, line := range []string{"one\n", "two\n", "three\n"} {
		if _, err := o.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := w.read(); got != "" {
		t.Fatalf("right after writing: got %q; want nothing written yet", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, writes := w.read()
		if got == "one\ntwo\nthree\n" {
			if writes != 1 {
				t.Fatalf("writes for three lines: got %d; want 1", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after writing: got %q; want the three lines", got)
		}
		time.Sleep(10 * time.Millisecond)
	}

	o.Write([]byte("four\n"))
	o.Flush()
	if got, _ := w.read(); got != "one\ntwo\nthree\nfour\n" {
		t.Fatalf("after Flush: got %q; want the fourth line too", got)
	}
}

func TestLogOutputLimits(t *testing.T) {
	var w lockedBuffer
	o := newLogOutput(&w, time.Hour)
	line := bytes.Repeat([]byte("x"), 1000)
	line[len(line)-1] = '\n'
	for range 100 { // 100 000 bytes: more than one buffer's worth
		o.Write(line)
	}
	if got, writes := w.read(); writes != 1 || len(got) != 65000 {
		t.Fatalf("after 100 lines of 1000 bytes: got %d bytes in %d writes; want 65000 in 1 (a full buffer written at once)", len(got), writes)
	}

	var direct lockedBuffer
	o = newLogOutput(&direct, 0)
	o.Write([]byte("now\n"))
	if got, _ := direct.read(); got != "now\n" {
		t.Fatalf("with no interval: got %q; want the line written at once", got)
	}
}
