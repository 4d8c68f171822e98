package transport

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestHelloRoundTrip(t *testing.T) {
	want := hello{kind: kindStream, cluster: "prod-eu", name: "node-7"}
	got, err := readHello(bufio.NewReader(bytes.NewReader(appendHello(nil, want))))
	if err != nil || got != want {
		t.Fatalf("readHello = %+v, %v; want %+v", got, err, want)
	}
}

func TestReadHelloRejects(t *testing.T) {
	good := appendHello(nil, hello{kind: kindMessages, cluster: "c", name: "n"})
	long := appendHello(nil, hello{kind: kindMessages, cluster: strings.Repeat("x", maxHelloString+1), name: "n"})
	for name, in := range map[string][]byte{
		"redis client": []byte("*1\r\n$4\r\nPING\r\n"),
		"short":        good[:5],
		"cut name":     good[:len(good)-1],
		"long cluster": long,
	} {
		if _, err := readHello(bufio.NewReader(bytes.NewReader(in))); !errors.Is(err, ErrHandshake) {
			t.Errorf("%s: readHello error %v, want ErrHandshake", name, err)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	cases := []struct {
		code byte
		want error
	}{
		{statusOK, nil},
		{statusWrongCluster, ErrWrongCluster},
		{statusRefused, ErrHandshake},
	}
	for _, c := range cases {
		err := readStatus(bufio.NewReader(bytes.NewReader(appendStatus(nil, c.code, "because"))))
		if c.want == nil {
			if err != nil {
				t.Errorf("code %d: %v, want nil", c.code, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "because") {
			t.Errorf("code %d: %v, want %v with the reason", c.code, err, c.want)
		}
	}
	if err := readStatus(bufio.NewReader(bytes.NewReader(nil))); !errors.Is(err, ErrHandshake) {
		t.Errorf("no reply: %v, want ErrHandshake", err)
	}
}

func TestMessageFrames(t *testing.T) {
	var b []byte
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 127), bytes.Repeat([]byte("z"), 128), make([]byte, 70000)}
	for _, p := range payloads {
		before := len(b)
		b = appendMessage(b, p)
		if got := len(b) - before; got != messageFrameLen(len(p)) {
			t.Fatalf("frame of %d bytes is %d long, messageFrameLen says %d", len(p), got, messageFrameLen(len(p)))
		}
	}
	r := bufio.NewReader(bytes.NewReader(b))
	for _, p := range payloads {
		got, err := readFrame(r, 1<<20)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("readFrame = %d bytes, %v; want %d bytes", len(got), err, len(p))
		}
	}
	if _, err := readFrame(r, 1<<20); err != io.EOF {
		t.Fatalf("readFrame at the end: %v, want io.EOF", err)
	}
	big := appendMessage(nil, make([]byte, 11))
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(big)), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("readFrame above the limit: %v, want ErrFrameTooLarge", err)
	}
}

func TestConfigValidation(t *testing.T) {
	resolve := func(string) (string, bool) { return "", false }
	for name, cfg := range map[string]Config{
		"no name":     {ClusterID: "c", Resolve: resolve},
		"no cluster":  {Name: "n", Resolve: resolve},
		"no resolver": {Name: "n", ClusterID: "c"},
		"negative":    {Name: "n", ClusterID: "c", Resolve: resolve, QueueBytes: -1},
	} {
		if _, err := Listen(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Listen error %v, want ErrInvalidConfig", name, err)
		}
	}
}
