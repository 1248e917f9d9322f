package main

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// passwords hashes and checks passwords with bcrypt (golang.org/x/crypto): a salted, tunable, well-reviewed
// scheme whose hash string carries its own cost and salt.
type passwords struct {
	cost  int
	dummy []byte // compared against when the email is unknown, so both answers take the same time
}

func newPasswords(cost int) (*passwords, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-real-password"), cost)
	if err != nil {
		return nil, fmt.Errorf("bcrypt cost %d: %w", cost, err)
	}
	return &passwords{cost: cost, dummy: dummy}, nil
}

func (p *passwords) hash(password string) ([]byte, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), p.cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// verify reports whether password matches hash; a nil hash (unknown user) is checked against the dummy hash
// and never matches.
func (p *passwords) verify(hash []byte, password string) bool {
	if hash == nil {
		_ = bcrypt.CompareHashAndPassword(p.dummy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}
