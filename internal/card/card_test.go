package card

import (
	"testing"
	"time"
)

func TestLuhnAndBrand(t *testing.T) {
	tests := []struct {
		number string
		luhn   bool
		brand  string
	}{
		{"4242424242424242", true, "visa"},
		{"4000000000000002", true, "visa"},
		{"4242424242424241", false, "visa"},
		{"5555555555554444", true, "mastercard"},
		{"2223003122003222", true, "mastercard"},
		{"378282246310005", true, "amex"},
		{"6011111111111117", true, "discover"},
		{"1234567812345670", true, "unknown"},
		{"", false, "unknown"},
		{"42424242424242a2", false, "visa"},
	}
	for _, tc := range tests {
		if got := Luhn(tc.number); got != tc.luhn {
			t.Errorf("Luhn(%q): got %v; want %v", tc.number, got, tc.luhn)
		}
		if got := Brand(tc.number); got != tc.brand {
			t.Errorf("Brand(%q): got %q; want %q", tc.number, got, tc.brand)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := Input{Number: "4242 4242 4242 4242", ExpMonth: 12, ExpYear: 2030, CVC: "123"}
	got, err := Check("card", ok)
	if err != nil || got.Number != "4242424242424242" {
		t.Fatalf("valid card: got %+v, %v; want the number normalised", got, err)
	}
	bad := []Input{
		{Number: "", ExpMonth: 1, ExpYear: 2030, CVC: "123"},
		{Number: "4242424242424241", ExpMonth: 1, ExpYear: 2030, CVC: "123"},
		{Number: "42424242", ExpMonth: 1, ExpYear: 2030, CVC: "123"},
		{Number: "4242424242424242", ExpMonth: 13, ExpYear: 2030, CVC: "123"},
		{Number: "4242424242424242", ExpMonth: 1, ExpYear: 30, CVC: "123"},
		{Number: "4242424242424242", ExpMonth: 1, ExpYear: 2030, CVC: "12"},
		{Number: "4242424242424242", ExpMonth: 1, ExpYear: 2030, CVC: "12a"},
	}
	for _, in := range bad {
		if _, err := Check("card", in); err == nil {
			t.Errorf("Check(%+v): got nil; want an error", in)
		}
	}
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	if (Input{ExpMonth: 11, ExpYear: 2026}).Expired(now) || !(Input{ExpMonth: 10, ExpYear: 2026}).Expired(now) {
		t.Error("Expired: want the current month valid and the previous one expired")
	}
}
