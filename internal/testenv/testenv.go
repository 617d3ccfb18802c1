// Package testenv holds what the project's tests share: where the shared
// fixtures are, and one GPU engine per test process.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Fixtures returns ../shared/fixtures beside the repository (CI lays
// ../shared beside the checkout). A missing folder fails the test: the
// fixtures are part of the test environment, not optional.
func Fixtures(tb testing.TB) string {
	tb.Helper()
	dir, _ := os.Getwd()
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(d, "..", "shared", "fixtures")
			if _, err := os.Stat(p); err != nil {
				tb.Fatalf("fixtures not found at %s", p)
			}
			return p
		}
	}
	tb.Fatal("go.mod not found above ", dir)
	return ""
}

var (
	mu     sync.Mutex
	engine *gpu.Engine
	err    error
)

// Engine returns the process's engine, opening it on first use. It skips
// the test only when no GPU adapter exists at all.
func Engine(tb testing.TB) *gpu.Engine {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if engine == nil && err == nil {
		engine, err = gpu.Open(gpu.Options{})
	}
	if errors.Is(err, gpu.ErrNoAdapter) {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return engine
}

// Close releases the engine; call it from TestMain after m.Run.
func Close() {
	mu.Lock()
	defer mu.Unlock()
	if engine != nil {
		engine.Close()
		engine = nil
	}
}

// Ref opens sd-tiny/ref/<name> of the fixtures (closed at the end of the
// test) and returns it with a getter that uploads one of its float tensors
// to e.
func Ref(tb testing.TB, e *gpu.Engine, name string) (*safetensors.File, func(key string) *gpu.Tensor) {
	tb.Helper()
	f, err := safetensors.Open(filepath.Join(Fixtures(tb), "sd-tiny", "ref", name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f, func(key string) *gpu.Tensor {
		v, info, err := f.Float32(key)
		if err != nil {
			tb.Fatal(err)
		}
		return e.FromSlice(v, info.Shape...)
	}
}
