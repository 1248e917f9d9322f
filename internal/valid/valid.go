// Package valid checks request fields and answers with a 400 that names the field.
package valid

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"shoplab/internal/web"
)

// Text trims s and checks it has min..max characters and no control characters. It returns the trimmed text.
func Text(field, s string, min, max int) (string, error) {
	s = strings.TrimSpace(s)
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return "", web.BadRequest("%s must be valid UTF-8", field)
	case n == 0 && min > 0:
		return "", web.BadRequest("%s is required", field)
	case n < min:
		return "", web.BadRequest("%s must be at least %d characters", field, min)
	case n > max:
		return "", web.BadRequest("%s must be at most %d characters", field, max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", web.BadRequest("%s must not contain control characters", field)
	}
	return s, nil
}

// Int checks min <= n <= max.
func Int(field string, n, min, max int) error {
	if n < min || n > max {
		return web.BadRequest("%s must be from %d to %d", field, min, max)
	}
	return nil
}
