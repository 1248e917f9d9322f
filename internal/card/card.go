// Package card checks payment card input (digits, Luhn, expiry fields, CVC) and names the brand. It never
// keeps a card number: callers store only Brand and Last4.
package card

import (
	"strings"
	"time"

	"shoplab/internal/web"
)

// Input is a card as a client sends it.
type Input struct {
	Number   string `json:"number"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
	CVC      string `json:"cvc"`
}

// Normalize strips the spaces and dashes people type inside card numbers.
func Normalize(number string) string {
	return strings.NewReplacer(" ", "", "-", "").Replace(number)
}

// Luhn reports whether number (digits only) passes the Luhn checksum.
func Luhn(number string) bool {
	if number == "" {
		return false
	}
	sum := 0
	double := false
	for i := len(number) - 1; i >= 0; i-- {
		c := number[i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// Brand names the card network from the number's prefix.
func Brand(number string) string {
	p := func(n int) string {
		if len(number) < n {
			return ""
		}
		return number[:n]
	}
	switch {
	case strings.HasPrefix(number, "4"):
		return "visa"
	case p(2) >= "51" && p(2) <= "55", p(4) >= "2221" && p(4) <= "2720":
		return "mastercard"
	case p(2) == "34", p(2) == "37":
		return "amex"
	case p(4) == "6011", p(2) == "65":
		return "discover"
	}
	return "unknown"
}

// Last4 is the last four digits.
func Last4(number string) string {
	if len(number) < 4 {
		return number
	}
	return number[len(number)-4:]
}

// Check validates in (field path prefix names the JSON field, e.g. "card") and returns it with the number
// normalised. A number failing Luhn is a 400 naming card.number.
func Check(prefix string, in Input) (Input, error) {
	in.Number = Normalize(in.Number)
	switch {
	case in.Number == "":
		return in, web.BadRequest("%s.number is required", prefix)
	case len(in.Number) < 12 || len(in.Number) > 19 || strings.Trim(in.Number, "0123456789") != "":
		return in, web.BadRequest("%s.number must be 12 to 19 digits", prefix)
	case !Luhn(in.Number):
		return in, web.BadRequest("%s.number is not a valid card number (Luhn check failed)", prefix)
	case in.ExpMonth < 1 || in.ExpMonth > 12:
		return in, web.BadRequest("%s.exp_month must be from 1 to 12", prefix)
	case in.ExpYear < 2000 || in.ExpYear > 2100:
		return in, web.BadRequest("%s.exp_year must be a four-digit year", prefix)
	case len(in.CVC) < 3 || len(in.CVC) > 4 || strings.Trim(in.CVC, "0123456789") != "":
		return in, web.BadRequest("%s.cvc must be 3 or 4 digits", prefix)
	}
	return in, nil
}

// Expired reports whether the card's expiry month has passed at now.
func (in Input) Expired(now time.Time) bool {
	y, m, _ := now.UTC().Date()
	return in.ExpYear < y || (in.ExpYear == y && in.ExpMonth < int(m))
}
