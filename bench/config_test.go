package bench

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestParseRatio(t *testing.T) {
	good := map[string][2]int{"1:1": {1, 1}, "9:1": {9, 1}, "0:1": {0, 1}, "1:0": {1, 0}, " 3 : 7 ": {3, 7}}
	for s, want := range good {
		g, st, err := ParseRatio(s)
		if err != nil || g != want[0] || st != want[1] {
			t.Errorf("ParseRatio(%q) = %d, %d, %v; want %v", s, g, st, err, want)
		}
	}
	for _, s := range []string{"", "a:b", "0:0", "1", "1:", ":1", "1:2:3", "-1:1", "1:-1", "1.5:1", "99999999:1", "0x1:1"} {
		if _, _, err := ParseRatio(s); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseRatio(%q) error %v, want ErrInvalidConfig", s, err)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"addr":        func(c *Config) { c.Addr = "localhost" },
		"empty port":  func(c *Config) { c.Addr = "localhost:" },
		"clients":     func(c *Config) { c.Clients = 0 },
		"pipeline":    func(c *Config) { c.Pipeline = 0 },
		"keys":        func(c *Config) { c.Keys = 0 },
		"value-size":  func(c *Config) { c.ValueSize = -1 },
		"batch bytes": func(c *Config) { c.Pipeline, c.ValueSize = 1000, 1<<20 },
		"requests":    func(c *Config) { c.Requests = -1 },
		"duration":    func(c *Config) { c.Duration = 0 },
		"warmup":      func(c *Config) { c.Warmup = -1 },
		"ratio":       func(c *Config) { c.GetRatio, c.SetRatio = 0, 0 },
		"hot-keys":    func(c *Config) { c.HotKeys = c.Keys + 1 },
		"hot-percent": func(c *Config) { c.HotKeys, c.HotPercent = 10, 101 },
	} {
		cfg := DefaultConfig()
		mutate(&cfg)
		if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: error %v, want ErrInvalidConfig", name, err)
		}
	}
	cfg := DefaultConfig()
	cfg.Duration, cfg.Requests = 0, 10
	if err := cfg.Validate(); err != nil {
		t.Errorf("--requests without --duration: %v", err)
	}
}

func TestAppendKey(t *testing.T) {
	for n, want := range map[int]string{0: "key:000000000000", 42: "key:000000000042", 1234567890123: "key:1234567890123"} {
		if got := string(appendKey(nil, n)); got != want {
			t.Errorf("appendKey(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestHotKeys: with a hot set, about HotPercent of the keys drawn are in it.
func TestHotKeys(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HotKeys, cfg.HotPercent = 10, 90
	c := &client{rng: rand.New(rand.NewPCG(1, 2))}
	hot := 0
	for range 10000 {
		if c.pickKey(&cfg) < 10 {
			hot++
		}
	}
	if hot < 8800 || hot > 9200 {
		t.Fatalf("%d of 10000 keys hot, want about 9000", hot)
	}
}
