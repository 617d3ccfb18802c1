package training_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/training"
)

func TestStreamDeterministic(t *testing.T) {
	a := training.NewStream(7, 12, 3)
	b := training.NewStream(7, 12, 3)
	c := training.NewStream(7, 13, 3)
	d := training.NewStream(7, 12, 4)
	var same, diffStep, diffPurpose int
	for i := 0; i < 100; i++ {
		x, y, z, w := a.Float64(), b.Float64(), c.Float64(), d.Float64()
		if x < 0 || x >= 1 {
			t.Fatalf("Float64 %v outside [0,1)", x)
		}
		if x == y {
			same++
		}
		if x == z {
			diffStep++
		}
		if x == w {
			diffPurpose++
		}
	}
	if same != 100 || diffStep > 0 || diffPurpose > 0 {
		t.Fatalf("same %d/100, equal across steps %d, across purposes %d", same, diffStep, diffPurpose)
	}
	// Uniformity: the mean of 20000 draws is within 4 sigma of 0.5.
	s := training.NewStream(1, 0, 0)
	sum := 0.0
	const n = 20000
	hist := make([]int, 10)
	for i := 0; i < n; i++ {
		sum += s.Float64()
		hist[s.Intn(10)]++
	}
	if m := sum / n; m < 0.5-4*0.2887/141.4 || m > 0.5+4*0.2887/141.4 {
		t.Fatalf("mean %v", m)
	}
	for k, h := range hist {
		if h < n/10-300 || h > n/10+300 {
			t.Fatalf("Intn(10) bucket %d has %d of %d", k, h, n)
		}
	}
	p := training.NewStream(3, 1, 1).Perm(9)
	seen := map[int]bool{}
	for _, v := range p {
		seen[v] = true
	}
	if len(seen) != 9 {
		t.Fatalf("Perm(9) = %v", p)
	}
	v1, v2 := make([]float32, 1001), make([]float32, 1001)
	training.NewStream(5, 2, 1).Normal(v1)
	training.NewStream(5, 2, 1).Normal(v2)
	var m, sq float64
	for i := range v1 {
		if v1[i] != v2[i] {
			t.Fatal("Normal not deterministic")
		}
		m += float64(v1[i])
		sq += float64(v1[i]) * float64(v1[i])
	}
	m /= 1001
	if m < -0.15 || m > 0.15 || sq/1001 < 0.8 || sq/1001 > 1.2 {
		t.Fatalf("Normal mean %v, second moment %v", m, sq/1001)
	}
}

func TestStatusString(t *testing.T) {
	m := training.NewMeter(100, 500)
	s := m.Update(100, nil)
	if s.Rate != 0 || s.ETA != 0 {
		t.Fatalf("before any step of this process: %+v", s)
	}
	s = training.Status{Step: 200, Total: 500, Rate: 2, ETA: 150 * time.Second, Metrics: map[string]float64{"loss": 0.125, "lr": 1e-4}}
	want := "step 200/500 (40%)  loss 0.125  lr 0.0001  2.00 it/s  ETA 2m30s"
	if got := s.String(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	s.Rate = 0.25
	if got := s.String(); !strings.Contains(got, "4.00 s/it") {
		t.Fatalf("slow rate shown as %q", got)
	}
}

func TestCheckFinite(t *testing.T) {
	if err := training.CheckFinite("loss", 1.5); err != nil {
		t.Fatal(err)
	}
	zero := 0.0
	err := training.CheckFinite("loss", zero/zero)
	if err == nil || !strings.Contains(err.Error(), "loss is NaN") {
		t.Fatalf("NaN gave %v", err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	e := testenv.Engine(t)
	dir := t.TempDir()
	mk := func(name string, v []float32, shape ...int) *gpu.Tensor {
		x, err := e.Upload(gpu.Weights, v, shape...)
		if err != nil {
			t.Fatal(err)
		}
		x.Name = name
		x.SetRequiresGrad(true)
		return x
	}
	a := mk("a", []float32{1, 2, 3, 4, 5, 6}, 2, 3)
	b := mk("b", []float32{-1, 0.5}, 2)
	params := []*gpu.Tensor{a, b}
	opt := e.NewAdamW(params, 0.1)
	// One optimizer step so that its moments are not zero.
	loss := e.SumAll(e.Mul(a, a))
	loss2 := e.SumAll(b)
	e.Backward(e.Add(loss, loss2))
	opt.Step()
	opt.ZeroGrad()
	type state struct {
		Losses []float64
		Note   string
	}
	for step := 1; step <= 4; step++ {
		if _, err := training.SaveCheckpoint(dir, step*10, params, opt, state{Losses: []float64{float64(step)}, Note: "x"}, 2); err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("keep=2 left %d files", len(ents))
	}
	want := map[*gpu.Tensor][]float32{}
	for _, p := range params {
		want[p], _ = p.Read()
	}
	// A newer damaged file is skipped in favour of step 40.
	os.WriteFile(training.CheckpointPath(dir, 50), []byte("garbage"), 0o644)
	path, step, skipped := training.LatestCheckpoint(dir)
	if step != 40 || len(skipped) != 1 || path != filepath.Join(dir, "ckpt-00000040.safetensors") {
		t.Fatalf("latest = %s step %d skipped %v", path, step, skipped)
	}
	// Change everything, restore, compare.
	a.Write([]float32{0, 0, 0, 0, 0, 0})
	b.Write([]float32{9, 9})
	opt2 := e.NewAdamW(params, 0.1)
	var st state
	got, err := training.LoadCheckpoint(path, params, opt2, &st)
	if err != nil || got != 40 || st.Note != "x" || st.Losses[0] != 4 {
		t.Fatalf("LoadCheckpoint: step %d state %+v err %v", got, st, err)
	}
	if opt2.Steps() != 1 {
		t.Fatalf("optimizer steps %d after restore, want 1", opt2.Steps())
	}
	for _, p := range params {
		v, _ := p.Read()
		for i := range v {
			if v[i] != want[p][i] {
				t.Fatalf("%s[%d] = %v, want %v", p.Name, i, v[i], want[p][i])
			}
		}
	}
	// A model with a differently shaped parameter is refused, unchanged.
	c := mk("a", []float32{7, 7, 7}, 3)
	if _, err := training.LoadCheckpoint(path, []*gpu.Tensor{c}, nil, nil); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("shape mismatch gave %v", err)
	}
	if v, _ := c.Read(); v[0] != 7 {
		t.Fatal("refused load changed the parameter")
	}
	// An empty or missing folder has no checkpoint.
	if p, s, _ := training.LatestCheckpoint(filepath.Join(dir, "none")); p != "" || s != 0 {
		t.Fatalf("missing dir gave %q %d", p, s)
	}
}
