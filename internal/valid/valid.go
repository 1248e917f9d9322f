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

// currencies are the ISO 4217 codes of currencies in circulation (funds, precious metals, the test code and
// "no currency" are left out: a price is never in them).
var currencies = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range strings.Fields(`AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD
		BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP
		GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
		LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK
		PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT
		TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL`) {
		m[c] = true
	}
	return m
}()

// Currency checks that code is an ISO 4217 currency code in upper case, such as USD.
func Currency(field, code string) error {
	if !currencies[code] {
		return web.BadRequest("%s must be an ISO 4217 currency code such as USD (got %q)", field, code)
	}
	return nil
}
