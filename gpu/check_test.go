package gpu

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"
)

// The shared test engine: one device for the whole package.
var (
	testEng    *Engine
	testEngErr error
)

func TestMain(m *testing.M) {
	testEng, testEngErr = Open(Options{})
	if testEngErr == nil {
		fmt.Fprintf(os.Stderr, "gpu tests on %s\n", testEng.Info)
	}
	code := m.Run()
	if testEng != nil {
		testEng.Close()
	}
	os.Exit(code)
}

// engine returns the shared engine; it skips only when no adapter exists.
func engine(t testing.TB) *Engine {
	t.Helper()
	if errors.Is(testEngErr, ErrNoAdapter) {
		t.Skip("no GPU adapter: ", testEngErr)
	}
	if testEngErr != nil {
		t.Fatal(testEngErr)
	}
	return testEng
}

// seeded returns a generator whose seed is logged (IB_SEED overrides it).
func seeded(t testing.TB) (*rand.Rand, int64) {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("IB_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (rerun with IB_SEED=%d)", seed, seed)
	return rand.New(rand.NewSource(seed)), seed
}

// checkOp runs c through runCase and reports every mismatch.
func checkOp(t *testing.T, c opCase) {
	t.Helper()
	e := engine(t)
	r, seed := seeded(t)
	problems, err := runCase(e, c, r, seed)
	for _, p := range problems {
		t.Error(p)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func compare(t *testing.T, what string, got []float32, want []float64, atol, rtol float64) {
	t.Helper()
	if msg := compareMsg(what, got, want, atol, rtol); msg != "" {
		t.Error(msg)
	}
}
