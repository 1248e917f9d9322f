package lab

import (
	"slices"
	"testing"
)

// TestServiceEnv: a service of the local lab gets the variables it reads and what a process needs, never the
// operator's other secrets.
func TestServiceEnv(t *testing.T) {
	operator := []string{"PATH=/usr/bin", "HOME=/root", "CONSUL_HTTP_TOKEN=operators-management-token", "AWS_SECRET_ACCESS_KEY=x",
		"SHOPLAB_ADMIN_TOKEN=tok", "PGPASSWORD=pw", "LOG_LEVEL=debug", "DB_RETRY_WAIT=5s", "FRONT_COOKIE_SECURE=true",
		"AUTH_LIMIT_ADDRESS=5/1m", "GOMAXPROCS=1", "LANG=C.UTF-8", "LC_ALL=C", "AUTHX=no", "FRONTIER=no"}
	tests := []struct {
		service string
		want    []string
	}{
		{"front", []string{"PATH=/usr/bin", "LOG_LEVEL=debug", "DB_RETRY_WAIT=5s", "FRONT_COOKIE_SECURE=true", "GOMAXPROCS=1", "LANG=C.UTF-8", "LC_ALL=C"}},
		{"auth", []string{"PATH=/usr/bin", "LOG_LEVEL=debug", "DB_RETRY_WAIT=5s", "AUTH_LIMIT_ADDRESS=5/1m", "GOMAXPROCS=1", "LANG=C.UTF-8", "LC_ALL=C"}},
	}
	for _, tt := range tests {
		if got := ServiceEnv(operator, tt.service); !slices.Equal(got, tt.want) {
			t.Errorf("ServiceEnv(…, %s): got %v; want %v", tt.service, got, tt.want)
		}
	}
}
