package coord

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	zl := zapToSlog(logger.With("component", "etcd"), zapcore.ErrorLevel).With(zap.String("member", "m1"))
	zl.Warn("below the floor")
	zl.Error("disk full", zap.Int("free", 0))
	out := buf.String()
	if strings.Contains(out, "below the floor") {
		t.Fatalf("warning passed an error-level floor: %q", out)
	}
	for _, want := range []string{"level=ERROR", `msg="disk full"`, "component=etcd", "member=m1", "free=0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log %q lacks %q", out, want)
		}
	}
	zapToSlog(nil, zapcore.DebugLevel).Error("discarded") // must not panic
}
