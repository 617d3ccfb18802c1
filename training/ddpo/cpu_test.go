package ddpo

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

// TestStatTracker checks ddpo-pytorch's PerPromptStatTracker semantics on
// hand-computed values: buffers extended before the statistics, the
// batch's global statistics until a prompt's buffer holds MinCount
// rewards, population std + 1e-6, buffers keeping the newest BufferSize.
func TestStatTracker(t *testing.T) {
	s := NewStatTracker(4, 3)
	// Batch 1: no prompt has 3 rewards; all use the batch's mean 2 and
	// std sqrt(2/3).
	adv, err := s.Update([]string{"a", "a", "b"}, []float64{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	sd := math.Sqrt(2.0/3) + 1e-6
	want := []float64{-1 / sd, 0, 1 / sd}
	for i := range want {
		if !near(adv[i], want[i]) {
			t.Fatalf("batch 1: advantages %v, want %v", adv, want)
		}
	}
	// Batch 2: "a" now holds [1 2 4 6 7] -> the newest 4 [2 4 6 7] (mean
	// 4.75, population std sqrt(17.5/4)); "b" holds [3 5], still below 3:
	// the batch's mean 5.5 and std sqrt(1.25).
	adv, _ = s.Update([]string{"a", "b", "a", "a"}, []float64{4, 5, 6, 7})
	sa := math.Sqrt((2.75*2.75+0.75*0.75+1.25*1.25+2.25*2.25)/4) + 1e-6
	sb := math.Sqrt(1.25) + 1e-6
	want = []float64{(4 - 4.75) / sa, (5 - 5.5) / sb, (6 - 4.75) / sa, (7 - 4.75) / sa}
	for i := range want {
		if !near(adv[i], want[i]) {
			t.Fatalf("batch 2: advantages %v, want %v", adv, want)
		}
	}
	if got := s.Buffer("a"); !reflect.DeepEqual(got, []float64{2, 4, 6, 7}) {
		t.Fatalf("buffer a = %v", got)
	}
	// A JSON round trip of the state continues identically.
	js, _ := json.Marshal(s.State())
	var st TrackerState
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatal(err)
	}
	s2 := NewStatTracker(1, 1)
	if err := s2.SetState(st); err != nil {
		t.Fatal(err)
	}
	p, r := []string{"b", "c", "a"}, []float64{0.1, 0.2, 0.30000000000000004}
	a1, _ := s.Update(p, r)
	a2, _ := s2.Update(p, r)
	if !reflect.DeepEqual(a1, a2) || !reflect.DeepEqual(s.State(), s2.State()) {
		t.Fatalf("restored tracker diverged: %v vs %v", a1, a2)
	}
	// "b" reached 3 rewards [3 5 0.1]: its own statistics.
	m, sdb := meanStd([]float64{3, 5, 0.1})
	if !near(a1[0], (0.1-m)/(sdb+1e-6)) {
		t.Fatalf("b with 3 rewards: %v", a1[0])
	}
	if _, err := s.Update([]string{"a"}, nil); err == nil {
		t.Fatal("mismatched lengths accepted")
	}

	// Pooled: groups of 2 with own statistics. "x" differs by 0.5, "y" by
	// 0.002: per prompt both get advantages of ±1; pooled, "y" gets
	// ±0.002/rms where rms = sqrt((0.25² + 0.25² + 0.001² + 0.001²)/4).
	for _, pooled := range []bool{false, true} {
		s := NewStatTracker(2, 2)
		s.Pooled = pooled
		adv, _ := s.Update([]string{"x", "x", "y", "y"}, []float64{0.2, 0.7, 0.5, 0.502})
		want := []float64{-1, 1, -1, 1}
		if pooled {
			rms := math.Sqrt((2*0.25*0.25 + 2*0.001*0.001) / 4)
			want = []float64{-0.25 / rms, 0.25 / rms, -0.001 / rms, 0.001 / rms}
		}
		for i := range want {
			if math.Abs(adv[i]-want[i]) > 2e-3 { // the 1e-6 added to 0.001
				t.Fatalf("pooled %v: advantages %v, want %v", pooled, adv, want)
			}
		}
		js, _ := json.Marshal(s.State())
		var st TrackerState
		json.Unmarshal(js, &st)
		if st.Pooled != pooled {
			t.Fatalf("state %s lost Pooled", js)
		}
	}
}

// TestClippedSurrogate checks the objective, its gradient with respect to
// the new log-probabilities and the diagnostics on hand-computed cases:
// inside the clip range, outside it on the side where the clip binds (no
// gradient) and where it does not.
func TestClippedSurrogate(t *testing.T) {
	c := 0.1
	lr := []float64{0, 0.05, 0.5, 0.5, -0.5, -0.5}
	adv := []float64{2, -1, 1, -1, 1, -1}
	old := []float32{-1, -2, 0.5, 1, -3, 2}
	nw := make([]float32, len(old))
	for i := range old {
		nw[i] = old[i] + float32(lr[i])
	}
	s := ClippedSurrogate(nw, old, adv, c)
	n := float64(len(old))
	var loss, kl float64
	wantG := make([]float64, len(old))
	for i := range old {
		r := math.Exp(float64(nw[i]) - float64(old[i]))
		l := float64(nw[i]) - float64(old[i])
		kl += 0.5 * l * l / n
		switch i {
		case 0, 1: // inside [0.9, 1.1]: both terms equal
			loss += -adv[i] * r
			wantG[i] = -adv[i] * r / n
		case 2: // r = 1.65, A > 0: clipped term -1.1 > -1.65 binds
			loss += -1.1
		case 3: // r = 1.65, A < 0: unclipped 1.65 > 1.1
			loss += r
			wantG[i] = r / n
		case 4: // r = 0.61, A > 0: unclipped -0.61 > -0.9
			loss += -r
			wantG[i] = -r / n
		case 5: // r = 0.61, A < 0: clipped 0.9 > 0.61 binds
			loss += 0.9
		}
	}
	loss /= n
	tol := 1e-6 // the log ratios pass through float32
	if math.Abs(s.Loss-loss) > tol || math.Abs(s.ApproxKL-kl) > tol || s.ClipFrac != 4.0/6 || math.Abs(s.MaxLogRatio-0.5) > tol {
		t.Fatalf("surrogate %+v, want loss %v kl %v clipfrac %v", s, loss, kl, 4.0/6)
	}
	for i := range wantG {
		if math.Abs(s.Grad[i]-wantG[i]) > tol {
			t.Fatalf("gradient %v, want %v", s.Grad, wantG)
		}
	}
	// Finite differences of the loss agree with Grad away from the kinks.
	for i := range nw {
		h := float32(1e-3)
		p := append([]float32(nil), nw...)
		m := append([]float32(nil), nw...)
		p[i] += h
		m[i] -= h
		fd := (ClippedSurrogate(p, old, adv, c).Loss - ClippedSurrogate(m, old, adv, c).Loss) / float64(p[i]-m[i])
		if math.Abs(fd-s.Grad[i]) > 1e-3 {
			t.Errorf("element %d: gradient %v, finite difference %v", i, s.Grad[i], fd)
		}
	}
}

func TestPrompts(t *testing.T) {
	p, err := Prompts(" sks ", "dog", []string{"playing soccer", " riding  a bike "})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a sks dog playing soccer", "a dog playing soccer", "a sks dog riding a bike", "a dog riding a bike"}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("prompts %q", p)
	}
	if p, _ := Prompts("", "cat", []string{"x"}); !reflect.DeepEqual(p, []string{"a cat x"}) {
		t.Fatalf("no identifier: %q", p)
	}
	if _, err := Prompts("sks", "", []string{"x"}); err == nil {
		t.Fatal("no class accepted")
	}
	for class, g := range map[string]Group{"dog": Pets, "Cat": Pets, "red car": Vehicles, "teapot": Containers, "plushie": Toys, "sneaker": Objects} {
		if got := GroupOf(class); got != g {
			t.Errorf("GroupOf(%q) = %s, want %s", class, got, g)
		}
	}
	has := func(l []string, s string) bool {
		for _, x := range l {
			if x == s {
				return true
			}
		}
		return false
	}
	for _, a := range []string{"playing soccer", "riding a bike", "cooking a gourmet meal", "floating on the water"} {
		if !has(DefaultActivities("dog"), a) {
			t.Errorf("pets lack %q", a)
		}
	}
	if !has(DefaultActivities("bowl"), "with popcorn in it") || has(DefaultActivities("bowl"), "riding a bike") {
		t.Errorf("containers: %q", DefaultActivities("bowl"))
	}
	for _, g := range []Group{Pets, Toys, Containers, Vehicles, Objects} {
		if len(defaultActivities[g]) < 8 {
			t.Errorf("group %s has %d activities", g, len(defaultActivities[g]))
		}
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "a.txt")
	os.WriteFile(f, []byte("# activities\nplaying chess\n\n  surfing  \n"), 0o644)
	if got, err := ReadActivities(f); err != nil || !reflect.DeepEqual(got, []string{"playing chess", "surfing"}) {
		t.Fatalf("ReadActivities = %q, %v", got, err)
	}
	os.WriteFile(f, []byte("# none\n"), 0o644)
	if _, err := ReadActivities(f); err == nil || !strings.Contains(err.Error(), "no activities") {
		t.Fatalf("empty file gave %v", err)
	}
}

func TestConfig(t *testing.T) {
	c := Config{Prompts: []string{"a"}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.LR != 2e-5 || c.Beta2 != 0.99 || c.Alpha != 4 || c.numTrain() != 50 || c.accum() != 2 || c.SamplesPerEpoch != 16 || c.BatchSize != 8 {
		t.Fatalf("defaults %+v", c)
	}
	c.TimestepFraction = 0.3
	if c.numTrain() != 15 {
		t.Fatalf("fraction 0.3 of 50 steps trains %d", c.numTrain())
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.SamplesPerEpoch = 12 },
		func(c *Config) { c.AccumBatches = 3 },
		func(c *Config) { c.Eta = -1 },
		func(c *Config) { c.Width = 100 },
		func(c *Config) { c.TimestepFraction = 1.5 },
		func(c *Config) { c.Prompts = nil },
		func(c *Config) { c.SamplesPerPrompt = 3 },
		func(c *Config) { c.SamplesPerPrompt = -1 },
		func(c *Config) { c.EarlyFraction = 1 },
		func(c *Config) { c.EarlyFraction = -0.1 },
	} {
		d := c
		bad(&d)
		if err := d.Validate(); err == nil {
			t.Errorf("accepted %+v", d)
		}
	}
	if g := (Config{Prompts: []string{"a"}, SamplesPerPrompt: 4}).WithDefaults(); g.StatMinCount != 4 {
		t.Fatalf("groups of 4: stat tracker minimum %d", g.StatMinCount)
	}
	// Early steps: a window of the first 8 of 10 steps; half of all 10
	// steps (5) are trained, all inside the window, distinct; a window of
	// 3 caps them at 3.
	e := Config{Prompts: []string{"a"}, Steps: 10, TimestepFraction: 0.5, EarlyFraction: 0.8, Seed: 3}.WithDefaults()
	for _, st := range e.trainedSteps(2, 0, 16) {
		seen := map[int]bool{}
		for _, k := range st {
			if k < 0 || k >= 8 || seen[k] {
				t.Fatalf("trained steps %v: not distinct steps of the first 8", st)
			}
			seen[k] = true
		}
		if len(st) != 5 {
			t.Fatalf("trained steps %v: want 5", st)
		}
	}
	e.EarlyFraction = 0.3
	if e.numTrain() != 3 || len(e.trainedSteps(0, 0, 1)[0]) != 3 {
		t.Fatalf("window of 3: %d trained steps", e.numTrain())
	}
	// Grouped prompts: 4 runs of 4 equal prompts, drawn as the ungrouped
	// epoch draws its first 4, and the same on every call.
	c.Prompts = []string{"a", "b", "c", "d", "e", "f", "g"}
	c.Seed = 7
	flat := c.epochPrompts(3)
	g := c
	g.SamplesPerPrompt = 4
	got := g.epochPrompts(3)
	t.Logf("seed %d epoch 3: ungrouped %v, grouped %v", c.Seed, flat, got)
	if !reflect.DeepEqual(got, g.epochPrompts(3)) || reflect.DeepEqual(flat, c.epochPrompts(4)) {
		t.Fatal("epoch prompts are not a function of the seed and epoch")
	}
	for i, p := range got {
		if p != flat[i/4] {
			t.Fatalf("grouped prompts %v: sample %d is not the group's prompt %d", got, i, flat[i/4])
		}
	}
	a := c.fingerprint("brightness")
	d := c
	d.Epochs, d.WorkDir, d.LR = 99, "/x", 1e-3
	if got := diffKeys(a, d.fingerprint("jpeg")); !reflect.DeepEqual(got, []string{"LR", "Reward"}) {
		t.Fatalf("differences %v", got)
	}
}
