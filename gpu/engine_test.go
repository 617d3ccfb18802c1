package gpu

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/shaders"
	"github.com/rajveermalviya/go-webgpu/wgpu"
)

// TestReadbackUnderGC reads back thousands of times while another goroutine
// allocates and forces collections; go-webgpu's own MapAsync panics under
// this load ("misuse of an invalid Handle").
func TestReadbackUnderGC(t *testing.T) {
	e := engine(t)
	n := 3000
	if testing.Short() {
		n = 500
	}
	x := e.FromSlice([]float32{1, 2, 3, 4, 5}, 5)
	defer x.Release()
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var sink [][]byte
		for !stop.Load() {
			for i := 0; i < 100; i++ {
				sink = append(sink, make([]byte, 1024))
			}
			if len(sink) > 10000 {
				sink = nil
			}
			runtime.GC()
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	for i := 0; i < n; i++ {
		y := e.Scale(x, float32(i))
		if i%7 == 0 {
			runtime.GC() // between recording and the map, the worst moment
		}
		got, err := y.Read()
		if err != nil {
			t.Fatalf("readback %d: %v", i, err)
		}
		for j, v := range got {
			if want := float32(i) * float32(j+1); v != want {
				t.Fatalf("readback %d: element %d = %g, want %g", i, j, v, want)
			}
		}
		y.Release()
	}
}

// TestShadersCompile compiles every entry point of every shader file.
func TestShadersCompile(t *testing.T) {
	e := engine(t)
	for _, name := range shaders.Names() {
		if shaders.IsLibrary(name) {
			continue
		}
		src, err := shaders.Source(name)
		if err != nil {
			t.Fatal(err)
		}
		entries := 0
		lines := strings.Split(src, "\n")
		for i, line := range lines {
			if !strings.Contains(line, "@compute") {
				continue
			}
			for j := i; j < len(lines) && j < i+3; j++ {
				if k := strings.Index(lines[j], "fn "); k >= 0 {
					rest := lines[j][k+3:]
					entry := rest[:strings.Index(rest, "(")]
					entries++
					if _, err := e.pipelineFor(Kernel{File: name, Entry: strings.TrimSpace(entry), Consts: testConsts(e, name)}); err != nil {
						t.Errorf("%s:%s: %v", name, entry, err)
					}
					break
				}
			}
		}
		if entries == 0 {
			t.Errorf("%s has no @compute entry point", name)
		}
	}
}

// testConsts returns the Consts a shader specialised by the Go side needs
// to compile on its own: a typical specialisation of each.
func testConsts(e *Engine, name string) string {
	switch name {
	case "attention_fwd.wgsl":
		return e.attnConfig(64, attnFwd).consts()
	case "attention_bwd_dq.wgsl", "attention_bwd_dkdv.wgsl":
		return e.attnConfig(64, attnBwd).consts()
	case "matmul_fwd.wgsl":
		return "const ACCUM: bool = false;"
	case "conv2d_fwd.wgsl", "conv2d_bwd_input.wgsl", "conv2d_bwd_weight.wgsl":
		return convGeom{kh: 3, kw: 3, stride: 1, pad: 1}.consts() + e.gemmTileFor(320).consts()
	case "conv2d_fwd_direct.wgsl":
		return "const XVEC: bool = true;"
	}
	return ""
}

// TestChunkedDispatch runs elementwise ops on tensors many times larger
// than the (artificially small) binding limit.
func TestChunkedDispatch(t *testing.T) {
	engine(t)
	e, err := Open(Options{MaxBinding: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r, seed := seeded(t)
	n := 5000 // 20 KB: five windows of 1024 elements
	a, b := randData(r, n), randData(r, n)
	ta := e.FromSlice(f32s(a), 2, n/2).SetRequiresGrad(true)
	tb := e.FromSlice(f32s(b), 2, n/2).SetRequiresGrad(true)
	bias := e.FromSlice([]float32{0.5}, 1)
	y := e.Add(e.Mul(ta, tb), bias)
	want := make([]float64, n)
	for i := range want {
		want[i] = a[i]*b[i] + 0.5
	}
	compare(t, "chunked mul+add", y.MustRead(), want, 1e-6, 1e-6)
	g := e.Full(1, y.Shape()...)
	if err := e.BackwardWith(y, g); err != nil {
		t.Fatal(err)
	}
	compare(t, "chunked d/da", ta.Grad.MustRead(), b, 1e-6, 1e-6)
	compare(t, "chunked d/db", tb.Grad.MustRead(), a, 1e-6, 1e-6)
	_ = seed
}

// TestGrid1D_foldsPastLimit fills more elements than 65,535 workgroups of 256
// threads can cover in one dimension.
func TestGrid1D_foldsPastLimit(t *testing.T) {
	e := engine(t)
	n := 65535*256 + 1000
	g := e.Grid1D(n, 256)
	if g[1] < 2 || int(g[0])*int(g[1])*256 < n || g[0] > 65535 {
		t.Fatalf("Grid1D(%d) = %v", n, g)
	}
	x := e.Full(3, n)
	defer x.Release()
	got := x.MustRead()
	for _, i := range []int{0, 65535 * 256, n - 1} {
		if got[i] != 3 {
			t.Fatalf("element %d = %g after fill", i, got[i])
		}
	}
}

func TestChooseAdapter(t *testing.T) {
	props := []wgpu.AdapterProperties{
		{Name: "llvmpipe (LLVM 15)", AdapterType: wgpu.AdapterType_CPU},
		{Name: "Intel Iris", AdapterType: wgpu.AdapterType_IntegratedGPU},
		{Name: "NVIDIA H200", AdapterType: wgpu.AdapterType_DiscreteGPU},
	}
	for pref, want := range map[string]int{"": 2, "cpu": 0, "integrated": 1, "LLVMpipe": 0, "h200": 2} {
		got, err := chooseAdapter(props, pref)
		if err != nil || got != want {
			t.Errorf("chooseAdapter(%q) = %d, %v; want %d", pref, got, err, want)
		}
	}
	if _, err := chooseAdapter(props, "radeon"); err == nil || !strings.Contains(err.Error(), "llvmpipe") {
		t.Errorf("unmatched preference: %v", err)
	}
	if !strings.Contains(ErrNoAdapter.Error(), "mesa-vulkan-drivers") {
		t.Error("ErrNoAdapter does not name the driver package")
	}
}

// TestMemStats_accounting checks live/peak bookkeeping and pool reuse.
func TestMemStats_accounting(t *testing.T) {
	e := engine(t)
	before := e.MemStats()
	a, _ := e.NewTensor(Weights, 1000) // 4000 B -> 4096 B class
	b, _ := e.NewTensor(Activations, 70000)
	s := e.MemStats()
	if s.Live[Weights]-before.Live[Weights] != 4096 {
		t.Errorf("weights live grew by %d, want 4096", s.Live[Weights]-before.Live[Weights])
	}
	if got := s.Live[Activations] - before.Live[Activations]; got != sizeClass(280000) || got < 280000 || got > 280000*5/4 {
		t.Errorf("activations live grew by %d for 280000 bytes", got)
	}
	b.Release()
	s2 := e.MemStats()
	if s2.Live[Activations] != before.Live[Activations] || s2.Cached < sizeClass(280000) {
		t.Errorf("after release: %v", s2)
	}
	c, _ := e.NewTensor(Activations, 69999) // same class: reused
	if e.MemStats().Reuses <= s2.Reuses {
		t.Error("a freed buffer of the same size class was not reused")
	}
	c.Release()
	a.Release()
	for _, n := range []uint64{1, 255, 256, 65536, 65537, 1 << 20, 3<<20 + 1} {
		if c := sizeClass(n); c < n || (n > 64<<10 && float64(c) > 1.25*float64(n)) {
			t.Errorf("sizeClass(%d) = %d", n, c)
		}
	}
}

func TestErrDeviceLost_isSticky(t *testing.T) {
	e := &Engine{}
	err := e.fail(errors.New("wgpu: Device lost: removed"))
	if !errors.Is(err, ErrDeviceLost) || !errors.Is(e.Err(), ErrDeviceLost) {
		t.Fatalf("fail did not classify device loss: %v", err)
	}
}

// TestReadback_afterLongBatch reads the result of a batch that keeps the
// device busy for several seconds on lavapipe: wgpu 0.17's blocking wait
// gives up after 5 s and would hand back stale data; the engine's readback
// polls instead and must see the finished result.
func TestReadback_afterLongBatch(t *testing.T) {
	e := engine(t)
	const n = 768
	id := make([]float32, n*n)
	x := make([]float32, n*n)
	r, _ := seeded(t)
	for i := 0; i < n; i++ {
		id[i*n+i] = 1
	}
	for i := range x {
		x[i] = float32(r.Intn(100)) // exact under repeated identity products
	}
	w := e.FromSlice(id, n, n)
	h := e.FromSlice(x, n, n)
	defer w.Release()
	steps := 80 // ~6 s of work on two lavapipe cores, milliseconds on a GPU
	if testing.Short() {
		steps = 10
	}
	start := time.Now()
	e.NoGrad(func() {
		for i := 0; i < steps; i++ {
			next := e.MatMul(h, w, false, i%2 == 1)
			h.Release()
			h = next
		}
	})
	got := h.MustRead()
	t.Logf("%d chained %dx%d products read back after %v", steps, n, n, time.Since(start))
	for i := range x {
		if got[i] != x[i] {
			t.Fatalf("element %d = %g, want %g (stale readback?)", i, got[i], x[i])
		}
	}
	h.Release()
}
