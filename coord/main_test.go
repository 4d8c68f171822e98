package coord

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if sessions, watches, reconfigurators or embedded
// etcd servers leave goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
