// Package ids makes the opaque, prefixed random ids shoplab hands out ("usr_…", "ord_…").
package ids

import (
	"crypto/rand"
	"strings"
)

// New returns prefix, an underscore and 26 random base32 characters (130 bits).
func New(prefix string) string { return prefix + "_" + strings.ToLower(rand.Text()) }
