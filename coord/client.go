package coord

import (
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zapcore"
)

// dialTimeout bounds connection setup; every later call carries its own
// context.
const dialTimeout = 5 * time.Second

// Dial returns an etcd client for endpoints whose own logs (warnings and
// worse) go to logger, or nowhere if logger is nil. The caller closes it.
// A client made any other way works with this package just as well.
func Dial(endpoints []string, logger *slog.Logger) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: dialTimeout,
		Logger:      zapToSlog(logger, zapcore.WarnLevel),
	})
	if err != nil {
		return nil, fmt.Errorf("coord: dial etcd %v: %w", endpoints, err)
	}
	return cli, nil
}
