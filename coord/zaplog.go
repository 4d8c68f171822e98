package coord

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap logger that forwards entries at or above min to
// logger, or a no-op logger if logger is nil. etcd logs through zap; routing
// it into the process's slog logger keeps one log stream, and the level floor
// keeps etcd's chatty info logs out of it.
func zapToSlog(logger *slog.Logger, min zapcore.Level) *zap.Logger {
	if logger == nil {
		return zap.NewNop()
	}
	return zap.New(slogCore{log: logger, min: min})
}

// slogCore is a zapcore.Core that writes to a *slog.Logger.
type slogCore struct {
	log    *slog.Logger
	min    zapcore.Level
	fields []zapcore.Field
}

func (c slogCore) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c slogCore) With(fs []zapcore.Field) zapcore.Core {
	c.fields = append(slices.Clone(c.fields), fs...)
	return c
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	rec := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	rec.AddAttrs(attrs...)
	if !c.log.Enabled(context.Background(), rec.Level) {
		return nil
	}
	return c.log.Handler().Handle(context.Background(), rec)
}

func (c slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}
