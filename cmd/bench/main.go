// Command bench measures the engine's ops against a CPU reference and
// prints one row per case:
//
//	op  size  GFLOP/s  reference GFLOP/s  ratio
//
// Usage: go run ./cmd/bench [-op matmul] [-min 1s]
//
// Each op contributes cases to the cases slice from its own file (see
// matmul.go); a case uploads its inputs once and returns a GPU run, which
// only records work, and a CPU reference run. Timing: one warm-up run (it
// pays for the shader JIT), one timed run to size the loop, then N runs
// closed by a final wait for the device, N chosen so the loop lasts about
// -min. The wait is Engine.Sync.
package main

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
)

// benchCase is one row of the table.
type benchCase struct {
	op, size string
	flop     float64 // floating-point operations per run
	// refFlop is the work of one reference run when it differs from flop
	// (the SD-shape ops use the engine's own matmul as the reference).
	refFlop float64
	// refGPU marks a reference that records GPU work: the timed loop ends
	// with a wait for the device, as the op's own loop does.
	refGPU bool
	// prepare uploads the inputs and returns the GPU run (records work,
	// does not wait), the CPU reference run, and a cleanup.
	prepare func(e *gpu.Engine, r *rand.Rand) (run, ref, done func())
}

// cases is filled by the ops' files (init functions).
var cases []benchCase

func main() {
	opFilter := flag.String("op", "", "only cases whose op contains this")
	minTime := flag.Duration("min", time.Second, "minimum timed duration per measurement")
	flag.Parse()

	e, err := gpu.Open(gpu.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer e.Close()
	fmt.Printf("device: %s\nmatmul kernel: %s\n\n", e.Info, e.MatMulKernel())
	const row = "%-14s %-18s %9s %19s %7s\n"
	fmt.Printf(row, "op", "size", "GFLOP/s", "reference GFLOP/s", "ratio")
	r := rand.New(rand.NewSource(1))
	for i := range cases {
		c := &cases[i]
		if !strings.Contains(c.op, *opFilter) {
			continue
		}
		run, ref, done := c.prepare(e, r) // may set size and flop
		wait := func() {
			if err := e.Sync(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		g := measure(*minTime, func() { run(); wait() }, func(n int) {
			for i := 0; i < n; i++ {
				run()
			}
			wait()
		})
		refOnce := ref
		if c.refGPU {
			refOnce = func() { ref(); wait() }
		}
		c0 := measure(*minTime, refOnce, func(n int) {
			for i := 0; i < n; i++ {
				ref()
			}
			if c.refGPU {
				wait()
			}
		})
		done()
		refFlop := c.flop
		if c.refFlop > 0 {
			refFlop = c.refFlop
		}
		gf, rf := c.flop/g.Seconds()/1e9, refFlop/c0.Seconds()/1e9
		fmt.Printf(row, c.op, c.size, fmt.Sprintf("%.2f", gf), fmt.Sprintf("%.2f", rf), fmt.Sprintf("%.2f", gf/rf))
	}
}

// measure returns the time per run: once warm-up, once timed to size the
// loop, then loop(n) timed for n runs lasting about min.
func measure(min time.Duration, once func(), loop func(n int)) time.Duration {
	once()
	t0 := time.Now()
	once()
	one := time.Since(t0)
	n := int(min / max(one, time.Microsecond))
	if n < 1 {
		return one
	}
	t0 = time.Now()
	loop(n)
	return time.Since(t0) / time.Duration(n)
}
