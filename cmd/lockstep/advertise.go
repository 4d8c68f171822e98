package main

import (
	"fmt"
	"net"
	"strings"
)

// advertised is the address a node publishes for one it bound (bound, as
// the listener reports it): the --advertise-* flag's value if given (a
// host alone takes the bound port), else bound itself, unless bound is a
// wildcard (0.0.0.0, ::), which no peer or client can dial: then the host
// becomes this machine's first non-loopback address (see hostIP).
func advertised(bound, flag string) (string, error) {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "", err
	}
	if flag != "" {
		h, p, err := net.SplitHostPort(flag)
		switch {
		case net.ParseIP(strings.Trim(flag, "[]")) != nil: // a bare address, IPv6 too
			h, p = strings.Trim(flag, "[]"), port
		case err != nil && strings.Contains(err.Error(), "missing port"):
			h, p = flag, port
		case err != nil:
			return "", err
		}
		if h == "" || p == "" || p == "0" {
			return "", fmt.Errorf("%q: want host or host:port, with a port other than 0", flag)
		}
		return net.JoinHostPort(h, p), nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort(hostIP(), port), nil
	}
	return bound, nil
}

// hostIP is this machine's first up, non-loopback unicast address,
// IPv4 first, or 127.0.0.1 if it has none.
func hostIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	var v6 string
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			if ip4 := ipn.IP.To4(); ip4 != nil {
				return ip4.String()
			}
			if v6 == "" {
				v6 = ipn.IP.String()
			}
		}
	}
	if v6 != "" {
		return v6
	}
	return "127.0.0.1"
}
