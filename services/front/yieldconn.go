package main

import "runtime"

// Yielding before a read (FRONT_YIELD_BEFORE_READ, on by default) saves the front a system call on each hop of
// nearly every proxied request. Go reads a socket by trying the read first and waiting in the network poller
// only when it finds nothing, and right after the front writes a request upstream (or an answer to its client)
// the reply is never there yet: each such read is a wasted read(2) that returns EAGAIN, two per request, on a
// hot path where system calls are two thirds of the front's CPU (docs/benchmarks.md). Letting the goroutine
// step aside once (runtime.Gosched) before that read gives every other ready connection its turn first; by the
// time it runs again the reply has usually arrived and the read finds it at once. With nothing else to run,
// the step aside costs a trip through the scheduler, far less than the system call. nginx avoids the same
// call differently: it knows from a short read that the socket is drained.

// afterWrite is the state the yield needs of one connection: whether the last call on it was a write.
type afterWrite struct {
	on    bool
	wrote bool
}

// beforeRead yields once when the connection's last call was a write.
func (a *afterWrite) beforeRead() {
	if a.wrote {
		a.wrote = false
		if a.on {
			runtime.Gosched()
		}
	}
}
