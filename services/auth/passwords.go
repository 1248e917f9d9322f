package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwords hashes and checks passwords with bcrypt (golang.org/x/crypto): a salted, tunable, well-reviewed
// scheme whose hash string carries its own cost and salt.
//
// Each hash costs tens of milliseconds of CPU, so at most a few run at once (slots); a request that cannot
// get a slot within wait is refused with errOverloaded (503) rather than queued, so a flood of logins cannot
// starve every other request of the machine.
type passwords struct {
	cost  int
	dummy []byte // compared against when the email is unknown, so both answers take the same time
	slots chan struct{}
	wait  time.Duration
}

// errOverloaded means every hashing slot stayed busy for the whole wait.
var errOverloaded = errors.New("password hashing at capacity")

func newPasswords(cost, concurrency int, wait time.Duration) (*passwords, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-real-password"), cost)
	if err != nil {
		return nil, fmt.Errorf("bcrypt cost %d: %w", cost, err)
	}
	return &passwords{cost: cost, dummy: dummy, slots: make(chan struct{}, max(1, concurrency)), wait: wait}, nil
}

// acquire takes a hashing slot, waiting at most p.wait; call the returned function to give it back.
func (p *passwords) acquire(ctx context.Context) (func(), error) {
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	default:
	}
	t := time.NewTimer(p.wait)
	defer t.Stop()
	select {
	case p.slots <- struct{}{}:
		return func() { <-p.slots }, nil
	case <-t.C:
		return nil, errOverloaded
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (p *passwords) hash(ctx context.Context, password string) ([]byte, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	h, err := bcrypt.GenerateFromPassword([]byte(password), p.cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// verify reports whether password matches hash; a nil hash (unknown user) is checked against the dummy hash
// and never matches.
func (p *passwords) verify(ctx context.Context, hash []byte, password string) (bool, error) {
	release, err := p.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(p.dummy, []byte(password))
		return false, nil
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}
