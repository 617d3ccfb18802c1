package gpu

import (
	"fmt"
	"io"
	"math/rand"
	"time"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// selfCases lists one representative check per op for SelfCheck. The unit
// tests cover many more shapes.
func selfCases() []opCase {
	bin := func(op string, f func(e *Engine, a, b *Tensor) *Tensor, as, bs []int) opCase {
		return opCase{
			name: op + " " + shapeStr(as) + " " + shapeStr(bs), shapes: [][]int{as, bs},
			gpu: func(e *Engine, in []*Tensor) *Tensor { return f(e, in[0], in[1]) },
			ref: func(in []*ref.T) *ref.T { return ref.Binary(op, in[0], in[1]) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T {
				da, db := ref.BinaryBackward(op, in[0], in[1], g)
				return []*ref.T{da, db}
			},
		}
	}
	cases := []opCase{
		bin("add", (*Engine).Add, []int{2, 5, 7, 9}, []int{5, 1, 1}),
		bin("sub", (*Engine).Sub, []int{13, 1}, []int{1, 30}),
		bin("mul", (*Engine).Mul, []int{3, 37}, []int{3, 37}),
	}
	return append(cases, moreSelfCases...)
}

// moreSelfCases is extended by the op files' init functions.
var moreSelfCases []opCase

// SelfCheck runs every op's forward and backward on the engine and compares
// them with the CPU reference, printing one line per op. It returns an
// error naming the ops that failed.
func SelfCheck(e *Engine, w io.Writer, seed int64) error {
	fmt.Fprintf(w, "adapter: %s\n", e.Info)
	fmt.Fprintf(w, "limits: max storage binding %s, max buffer %s, workgroup storage %d B, invocations %d\n",
		fmtBytes(e.Limits.MaxStorageBufferBindingSize), fmtBytes(e.Limits.MaxBufferSize),
		e.Limits.MaxComputeWorkgroupStorageSize, e.Limits.MaxComputeInvocationsPerWorkgroup)
	r := rand.New(rand.NewSource(seed))
	var failed []string
	cases := selfCases()
	for i, c := range cases {
		t0 := time.Now()
		problems, err := runCase(e, c, r, seed)
		status := "ok"
		if err != nil || len(problems) > 0 {
			status = "FAIL"
			failed = append(failed, c.name)
		}
		fmt.Fprintf(w, "[%2d/%d] %-4s %-48s %6.0f ms\n", i+1, len(cases), status, c.name, float64(time.Since(t0).Microseconds())/1000)
		for _, p := range problems {
			fmt.Fprintf(w, "       %s\n", p)
		}
		if err != nil {
			fmt.Fprintf(w, "       %v\n", err)
		}
	}
	d, s := e.Counters()
	fmt.Fprintf(w, "%d dispatches in %d submits; memory: %s\n", d, s, e.MemStats())
	if len(failed) > 0 {
		return fmt.Errorf("self-check: %d of %d ops failed (seed %d): %v", len(failed), len(cases), seed, failed)
	}
	fmt.Fprintf(w, "self-check passed: %d ops match the CPU reference (seed %d)\n", len(cases), seed)
	return nil
}
