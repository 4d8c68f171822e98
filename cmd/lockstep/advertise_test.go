package main

import (
	"net"
	"testing"
)

// TestAdvertised: a wildcard bind is published as a dialable address, an
// --advertise-* flag wins (a bare host keeps the bound port), and a
// specific bind is published as it is.
func TestAdvertised(t *testing.T) {
	for _, tc := range []struct{ bound, flag, want string }{
		{"127.0.0.1:7000", "", "127.0.0.1:7000"},
		{"0.0.0.0:7000", "db1.example:7100", "db1.example:7100"},
		{"[::]:7000", "10.1.2.3", "10.1.2.3:7000"},
		{"[::]:7000", "fd00::1", "[fd00::1]:7000"},
		{"127.0.0.1:7000", "[fd00::1]:7001", "[fd00::1]:7001"},
	} {
		got, err := advertised(tc.bound, tc.flag)
		if err != nil || got != tc.want {
			t.Errorf("advertised(%q, %q) = %q, %v; want %q", tc.bound, tc.flag, got, err, tc.want)
		}
	}
	for _, bound := range []string{"0.0.0.0:7000", "[::]:7000"} {
		got, err := advertised(bound, "")
		if err != nil {
			t.Fatal(err)
		}
		host, port, _ := net.SplitHostPort(got)
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || port != "7000" {
			t.Errorf("advertised(%q) = %q: want a dialable address on port 7000", bound, got)
		}
	}
	for _, flag := range []string{"a:b:c", "host:0", ":7000"} {
		if got, err := advertised("127.0.0.1:7000", flag); err == nil {
			t.Errorf("advertised(_, %q) = %q, want an error", flag, got)
		}
	}
}
