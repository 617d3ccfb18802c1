package gpu

import (
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// withSmallBinding runs f with the shared test engine replaced by one whose
// storage bindings are capped at maxBinding bytes, so that small tensors go
// through the chunked paths (rowChunks, chunks).
func withSmallBinding(t *testing.T, maxBinding uint64, f func()) {
	t.Helper()
	engine(t)
	small, err := Open(Options{MaxBinding: maxBinding})
	if err != nil {
		t.Fatal(err)
	}
	saved := testEng
	testEng = small
	defer func() {
		testEng = saved
		small.Close()
	}()
	f()
}

func TestRowChunks_alignment(t *testing.T) {
	e := engine(t)
	saved := e.maxBinding
	defer func() { e.maxBinding = saved }()
	e.maxBinding = 32 << 10 // 8192 floats
	var got [][2]int
	e.rowChunks(150, []int{77}, 0, func(r0, nr int) { got = append(got, [2]int{r0, nr}) })
	// 77-element rows: windows stay 256-byte aligned only every 64 rows.
	want := [][2]int{{0, 64}, {64, 64}, {128, 22}}
	if len(got) != len(want) {
		t.Fatalf("chunks %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("chunks %v, want %v", got, want)
		}
	}
	got = got[:0]
	e.rowChunks(200, []int{64}, 64, func(r0, nr int) { got = append(got, [2]int{r0, nr}) })
	if len(got) != 4 || got[3] != [2]int{192, 8} {
		t.Fatalf("chunks with maxRows 64: %v", got)
	}
}

// TestRowOps_chunked runs softmax, layer norm and group norm with a 32 KiB
// binding limit so every operand is split into several windows.
func TestRowOps_chunked(t *testing.T) {
	withSmallBinding(t, 32<<10, func() {
		t.Run("softmax", func(t *testing.T) {
			checkOp(t, opCase{
				name:    "softmax-chunked",
				shapes:  [][]int{{150, 77}},
				gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Softmax(in[0]) },
				ref:     func(in []*ref.T) *ref.T { return ref.Softmax(in[0]) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.SoftmaxBackward(in[0], g)} },
			})
		})
		t.Run("layernorm", func(t *testing.T) {
			checkOp(t, opCase{
				name:   "layernorm-chunked",
				shapes: [][]int{{3, 100, 37}, {37}, {37}},
				gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.LayerNorm(in[0], in[1], in[2], 1e-5) },
				ref:    func(in []*ref.T) *ref.T { return ref.LayerNorm(in[0], in[1], in[2], 1e-5) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					dx, dw, db := ref.LayerNormBackward(in[0], in[1], in[2], g, 1e-5)
					return []*ref.T{dx, dw, db}
				},
			})
		})
		t.Run("groupnorm", func(t *testing.T) {
			checkOp(t, opCase{
				name:   "groupnorm-chunked",
				shapes: [][]int{{2, 6, 40, 40}, {6}, {6}},
				gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.GroupNorm(in[0], in[1], in[2], 3, 1e-6) },
				ref:    func(in []*ref.T) *ref.T { return ref.GroupNorm(in[0], in[1], in[2], 3, 1e-6) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					dx, dw, db := ref.GroupNormBackward(in[0], in[1], in[2], g, 3, 1e-6)
					return []*ref.T{dx, dw, db}
				},
			})
		})
	})
}
